//! Sessions: open one, report its events (joins, leaves, the end), read it
//! and its events back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::access::Caller;
use super::json::{Json, Path, Query};
use super::{ApiError, AppState, blocking};
use crate::sessions::{Answered, EndRequest, EventRequest, MAX_PAGE, OpenRequest, SessionsError};

impl From<SessionsError> for ApiError {
    fn from(e: SessionsError) -> Self {
        let e = match e {
            SessionsError::Ledger(e) => return ApiError::from(e),
            SessionsError::Store(e) => return ApiError::internal(e),
            e => e,
        };
        let status = match &e {
            SessionsError::Invalid(_)
            | SessionsError::UnknownService(_)
            | SessionsError::NoSessionCharging(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SessionsError::NoSession(_) | SessionsError::NoAccount(_) => StatusCode::NOT_FOUND,
            SessionsError::EventIdReused { .. }
            | SessionsError::AlreadyPresent(_)
            | SessionsError::NotPresent(_)
            | SessionsError::OutOfOrder { .. }
            | SessionsError::Ended { .. }
            | SessionsError::Full(_)
            | SessionsError::Conflict(_) => StatusCode::CONFLICT,
            SessionsError::Plugin(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionsError::Ledger(_) | SessionsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// `POST /v1/sessions`: 201 `{"id", "service", "status", "started_at"}`.
pub async fn open(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<OpenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.acting_for(&body.service)?;
    let opened = blocking(move || Ok(s.sessions.open(body)?)).await?;
    Ok((StatusCode::CREATED, axum::Json(opened)))
}

/// 404 unless the session exists and the caller may act for its service
/// (`write`) or read what belongs to it.
async fn owned(s: &AppState, caller: &Caller, id: &str, write: bool) -> Result<(), ApiError> {
    let sessions = s.sessions.clone();
    let key = id.to_owned();
    let service = blocking(move || Ok(sessions.service_of(&key)?)).await?;
    match service {
        Some(service) if write && caller.0.acts_for(&service) => Ok(()),
        Some(service) if !write && caller.0.reads_for(&service) => Ok(()),
        // Another service's session is as good as none.
        _ => Err(SessionsError::NoSession(id.to_owned()).into()),
    }
}

/// An event's answer: 201 the first time, 200 with the same body when the
/// same event comes again.
fn answered(answered: Answered) -> impl IntoResponse {
    let status = if answered.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, axum::Json(answered.answer))
}

/// `POST /v1/sessions/{id}/events`: a join or a leave, and its charges.
pub async fn event(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<EventRequest>,
) -> Result<impl IntoResponse, ApiError> {
    owned(&s, &caller, &id, true).await?;
    let answer = s.sessions.clone().event_async(id, body).await?;
    Ok(answered(answer))
}

/// `POST /v1/sessions/{id}/end`: the end, and the charges of whoever was present.
pub async fn end(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<EndRequest>,
) -> Result<impl IntoResponse, ApiError> {
    owned(&s, &caller, &id, true).await?;
    let answer = blocking(move || Ok(s.sessions.end(&id, body)?)).await?;
    Ok(answered(answer))
}

/// `GET /v1/sessions/{id}`: participants, status, charges so far per
/// participant and in all.
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let view = blocking(move || Ok(s.sessions.session(&id).map(|v| (id, v))?)).await?;
    match view {
        (_, Some(view)) if caller.0.reads_for(&view.service) => Ok(axum::Json(view)),
        (id, _) => Err(SessionsError::NoSession(id).into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Continue after this event (its `seq`).
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/sessions/{id}/events?after=&limit=`: the events in order, each
/// with its charges, `{"session_id", "events": [...], "next": seq | null}`.
pub async fn events(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "`limit` is from 1 to {MAX_PAGE}"
        )));
    }
    let after = i64::try_from(query.after.unwrap_or(0)).map_err(|_| {
        ApiError::invalid("`after` is larger than any event; give the `next` of the previous page")
    })?;
    owned(&s, &caller, &id, false).await?;
    let page = blocking(move || {
        s.sessions
            .events(&id, after, limit)?
            .ok_or_else(|| SessionsError::NoSession(id).into())
    })
    .await?;
    Ok(axum::Json(page))
}
