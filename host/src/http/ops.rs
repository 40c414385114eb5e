//! Health, metrics, the outbox view, and the JSON answers for unknown routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::access::Caller;
use super::edge::{self, Listener};
use super::json::{Path, Query};
use super::metrics::{counter, gauge};
use super::{ApiError, AppState, blocking};
use crate::auth::Role;
use crate::store::outbox::Retried;
use crate::store::retention::Kind;
use crate::store::{self, flows, outbox};

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let engine = s.engine.clone();
    let ((by_state, open), (backlog, _), dead) = blocking(move || {
        engine.store().read(|c| {
            Ok::<_, ApiError>((
                flows::counts(c)?,
                outbox::backlog(c)?,
                outbox::dead_count(c)?,
            ))
        })
    })
    .await?;
    let mut out = String::new();
    let states = ["running", "completed", "failed", "cancelled"].map(|state| {
        let n = by_state
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        (format!("state=\"{state}\""), n)
    });
    gauge(&mut out, "rulehost_flows", "Flows by state.", &states);
    gauge(
        &mut out,
        "rulehost_open_tasks",
        "Manual tasks waiting on someone.",
        &[(String::new(), open)],
    );
    gauge(
        &mut out,
        "rulehost_outbox_backlog",
        "Notifications not yet delivered.",
        &[(String::new(), backlog)],
    );
    gauge(
        &mut out,
        "rulehost_outbox_dead",
        "Notifications that could not be read or delivered after their retries, waiting for an operator (GET /v1/outbox?state=dead, POST /v1/outbox/{id}/retry).",
        &[(String::new(), dead)],
    );
    let store = s.engine.store().stats();
    let checks = &s.entitlement.stats;
    let sessions = &s.sessions.stats;
    let counters = [
        (
            "rulehost_store_group_commits_total",
            "Commits of the store's writer: group commits and lone writes, each one SQLite COMMIT (fsynced with sync = full).",
            &store.commits,
        ),
        (
            "rulehost_store_group_writes_total",
            "Writes those commits carried; divided by the commits, the mean group size.",
            &store.writes,
        ),
        (
            "rulehost_store_failed_groups_total",
            "Groups that could not commit; every write in them was answered with the error.",
            &store.failed_groups,
        ),
        (
            "rulehost_store_queue_full_waits_total",
            "Writes that found the writer's queue full and waited (backpressure).",
            &store.queue_full_waits,
        ),
        (
            "rulehost_store_commit_microseconds_total",
            "Time spent in COMMIT (with its fsync), in microseconds.",
            &store.commit_micros,
        ),
        (
            "rulehost_store_checkpoints_total",
            "Passive checkpoints of the WAL into the database file.",
            &store.checkpoints,
        ),
        (
            "rulehost_store_wal_restarts_total",
            "Times the writer started the WAL over from its beginning, between two groups.",
            &store.wal_restarts,
        ),
        (
            "rulehost_store_wal_truncations_total",
            "Times the WAL file was truncated to zero.",
            &store.wal_truncations,
        ),
        (
            "rulehost_checks_redecided_total",
            "Checks whose account or held request changed between their read and their record, so were decided again.",
            &checks.redecided,
        ),
        (
            "rulehost_checks_conflicts_total",
            "Checks refused with 409 after being decided again too often.",
            &checks.conflicts,
        ),
        (
            "rulehost_session_events_total",
            "Session events (joins, leaves, ends) recorded with their charges.",
            &sessions.events,
        ),
        (
            "rulehost_session_events_redecided_total",
            "Session events whose session changed between their read and their record, so were decided again.",
            &sessions.redecided,
        ),
        (
            "rulehost_session_events_conflicts_total",
            "Session events refused with 409 after being decided again too often.",
            &sessions.conflicts,
        ),
    ];
    for (name, help, value) in counters {
        let value = value.load(std::sync::atomic::Ordering::Relaxed) as i64;
        counter(&mut out, name, help, &[(String::new(), value)]);
    }
    gauge(
        &mut out,
        "rulehost_store_wal_bytes",
        "Size of the SQLite WAL file at the last checkpoint.",
        &[(
            String::new(),
            store.wal_bytes.load(std::sync::atomic::Ordering::Relaxed) as i64,
        )],
    );
    let pruned = Kind::ALL.map(|kind| {
        let n = i64::try_from(s.pruned.get(kind)).unwrap_or(i64::MAX);
        (format!("kind=\"{}\"", kind.name()), n)
    });
    counter(
        &mut out,
        "rulehost_pruned_total",
        "Stored records deleted past their retention ([retention]), by kind; flows count without their tasks and history.",
        &pruned,
    );
    edge_metrics(&mut out);
    s.metrics.render(&mut out);
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}

/// Each listener's connections, from its edge.
fn edge_metrics(out: &mut String) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let label = |l: Listener| format!("listener=\"{}\"", l.name());
    let open = Listener::ALL.map(|l| (label(l), l.stats().open.load(Relaxed)));
    gauge(
        out,
        "rulehost_http_connections",
        "Connections open now, by listener.",
        &open,
    );
    type Field = fn(&edge::ListenerStats) -> &AtomicU64;
    let counters: [(&str, &str, Field); 3] = [
        (
            "rulehost_http_connections_total",
            "Connections taken, by listener.",
            |s| &s.accepted,
        ),
        (
            "rulehost_http_connections_refused_total",
            "Connections closed at once because their client address had max_connections_per_address open.",
            |s| &s.refused,
        ),
        (
            "rulehost_http_header_timeouts_total",
            "Connections closed because a request's head did not arrive in full within header_timeout_seconds.",
            |s| &s.header_timeouts,
        ),
    ];
    for (name, help, field) in counters {
        let samples = Listener::ALL.map(|l| {
            let n = field(l.stats()).load(Relaxed);
            (label(l), i64::try_from(n).unwrap_or(i64::MAX))
        });
        counter(out, name, help, &samples);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    state: Option<String>,
    limit: Option<u32>,
}

pub async fn outbox(
    State(s): State<AppState>,
    caller: Caller,
    Query(query): Query<OutboxQuery>,
) -> Result<impl IntoResponse, ApiError> {
    const STATES: [&str; 4] = ["pending", "delivered", "held", "dead"];
    if let Some(state) = &query.state
        && !STATES.contains(&state.as_str())
    {
        return Err(ApiError::invalid(format!(
            "`state` is `{state}`; use one of {}",
            STATES.join(", ")
        )));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let list = blocking(move || {
        Ok(s.engine
            .store()
            .read(|c| outbox::list(c, query.state.as_deref(), limit))?)
    })
    .await?;
    let mut list = list;
    if caller.0.role != Role::Operator {
        list.iter_mut().for_each(redact_mail);
    }
    Ok(axum::Json(json!({"notifications": list})))
}

/// A mail's text carries single-use links (reconciliation, invitations)
/// until it is delivered: only an operator's token reads it.
fn redact_mail(notification: &mut outbox::Notification) {
    if notification.kind != "mail" {
        return;
    }
    if let Some(text) = notification.payload.pointer_mut("/data/text") {
        *text =
            json!("(not shown: a mail may carry a single-use link; an operator token shows it)");
    }
}

/// `POST /v1/outbox/{id}/retry`: a dead notification is pending again,
/// due now, with a fresh budget of attempts and the same event id.
pub async fn retry(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::not_found(format!(
            "no notification `{id}`: ids are the numbers `GET /v1/outbox` lists"
        ))
    })?;
    let engine = s.engine.clone();
    let retried = blocking(move || {
        Ok(engine
            .store()
            .write(|tx| outbox::retry(tx, id, store::now_ms()))?)
    })
    .await?;
    match retried {
        Retried::Pending(notification) => {
            s.entitlement.wake_outbox();
            Ok(axum::Json(json!({"notification": notification})))
        }
        Retried::NotFound => Err(ApiError::not_found(format!("no notification `{id}`"))),
        Retried::NotDead { state } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("notification `{id}` is {state}; only a dead notification is retried"),
        )),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see the README for the API")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method",
    )
}
