//! Flows, manual tasks and demands.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{Json, Path, Query};
use super::{ApiError, AppState, blocking};
use crate::flow::TaskSpec;
use crate::store::flows as q;

/// Who is acting, for the history: the `X-Rulehost-Actor` header (one line
/// of text, at most 200 bytes), or "api".
fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-rulehost-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && crate::text::control_in_line(v).is_none())
        .unwrap_or("api")
        .to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartFlow {
    definition: String,
    subject: String,
    #[serde(default)]
    context: Value,
}

pub async fn start(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<StartFlow>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers);
    let flow = blocking(move || {
        Ok(s.engine
            .start(&body.definition, &body.subject, body.context, &actor)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(flow)))
}

pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let flow = blocking(move || Ok(s.engine.flow(&id)?)).await?;
    Ok(axum::Json(flow))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    definition: Option<String>,
    limit: Option<u32>,
}

const FLOW_STATES: [&str; 4] = ["running", "completed", "failed", "cancelled"];

pub async fn list(
    State(s): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(state) = &query.state
        && !FLOW_STATES.contains(&state.as_str())
    {
        return Err(ApiError::invalid(format!(
            "`state` is `{state}`; use one of {}",
            FLOW_STATES.join(", ")
        )));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let flows = blocking(move || {
        Ok(s.engine.store().read(|c| {
            q::list_flows(
                c,
                query.state.as_deref(),
                query.definition.as_deref(),
                limit,
            )
        })?)
    })
    .await?;
    Ok(axum::Json(json!({"flows": flows})))
}

pub async fn definitions(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({"definitions": s.engine.definitions()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksQuery {
    state: Option<String>,
    role: Option<String>,
    limit: Option<u32>,
}

pub async fn tasks(
    State(s): State<AppState>,
    Query(query): Query<TasksQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(state) = &query.state
        && state != "open"
    {
        return Err(ApiError::invalid(format!(
            "`state` is `{state}`; manual tasks waiting on someone are `open`"
        )));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let tasks = blocking(move || {
        Ok(s.engine
            .store()
            .read(|c| q::open_tasks(c, query.role.as_deref(), limit))?)
    })
    .await?;
    let tasks: Vec<Value> = tasks
        .into_iter()
        .map(|t| json!({"id": t.id, "flow_id": t.flow_id, "name": t.name, "role": t.role, "opened_at": t.opened_at.map(crate::store::rfc3339)}))
        .collect();
    Ok(axum::Json(json!({"tasks": tasks})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Complete {
    #[serde(default = "done")]
    outcome: String,
    #[serde(default)]
    data: Value,
}

fn done() -> String {
    "done".into()
}

pub async fn complete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Complete>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers);
    let task =
        blocking(move || Ok(s.engine.complete(&id, &body.outcome, body.data, &actor)?)).await?;
    Ok(axum::Json(task))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    problem: String,
    #[serde(default)]
    task: Option<TaskSpec>,
    #[serde(default)]
    before: Option<String>,
}

pub async fn demand(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Demand>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers);
    let flow = blocking(move || {
        Ok(s.engine
            .demand(&id, &body.problem, body.task, body.before, &actor)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(flow)))
}

pub async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers);
    let flow = blocking(move || Ok(s.engine.cancel(&id, &actor)?)).await?;
    Ok(axum::Json(flow))
}
