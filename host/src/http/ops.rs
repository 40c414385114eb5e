//! Health, metrics, the outbox view, and the JSON answers for unknown routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::json::Query;
use super::metrics::{counter, gauge};
use super::{ApiError, AppState, blocking};
use crate::store::retention::Kind;
use crate::store::{flows, outbox};

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let engine = s.engine.clone();
    let ((by_state, open), (backlog, _)) = blocking(move || {
        engine
            .store()
            .read(|c| Ok::<_, ApiError>((flows::counts(c)?, outbox::backlog(c)?)))
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
    let group = s.engine.store().group_stats();
    let checks = &s.entitlement.stats;
    let counters = [
        (
            "rulehost_store_group_commits_total",
            "Group commits (each one SQLite transaction carrying queued checks).",
            &group.commits,
        ),
        (
            "rulehost_store_group_writes_total",
            "Writes carried by group commits; divided by the commits, the mean group size.",
            &group.writes,
        ),
        (
            "rulehost_checks_decided_apart_total",
            "Checks of services with a slow plugin, decided off the store's writer thread.",
            &checks.decided_apart,
        ),
        (
            "rulehost_checks_redecided_total",
            "Checks decided apart whose account or held request changed before they were recorded, so were decided again.",
            &checks.redecided,
        ),
    ];
    for (name, help, value) in counters {
        let value = value.load(std::sync::atomic::Ordering::Relaxed) as i64;
        counter(&mut out, name, help, &[(String::new(), value)]);
    }
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
    s.metrics.render(&mut out);
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    state: Option<String>,
    limit: Option<u32>,
}

pub async fn outbox(
    State(s): State<AppState>,
    Query(query): Query<OutboxQuery>,
) -> Result<impl IntoResponse, ApiError> {
    const STATES: [&str; 3] = ["pending", "delivered", "held"];
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
    Ok(axum::Json(json!({"notifications": list})))
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
