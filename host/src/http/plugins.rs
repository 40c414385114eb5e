//! Plugin lifecycle: live versions, history, upload, rollback.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::json::{Json, Path, Query, RawBody};
use super::{ApiError, AppState, blocking};
use crate::registry::{Offered, Rejection, RollbackError, Source, valid_plugin_name};
use crate::runtime::Digest;

/// The longest a replay over HTTP runs; the report says where it stopped.
const REPLAY_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest plugin accepted over HTTP.
pub const MAX_PLUGIN: usize = 16 << 20;

pub async fn list(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let plugins = blocking(move || Ok(s.live.status()?)).await?;
    Ok(axum::Json(json!({"plugins": plugins})))
}

fn known(s: &AppState, name: &str) -> Result<(), ApiError> {
    if !valid_plugin_name(name) {
        return Err(ApiError::invalid(
            "a plugin name is letters, digits, `-` and `_`",
        ));
    }
    if !s.live.registry().load().plugins.contains_key(name) {
        return Err(ApiError::not_found(format!("no live plugin `{name}`")));
    }
    Ok(())
}

pub async fn history(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    known(&s, &name)?;
    let events = blocking(move || Ok(s.live.history(&name, 500)?)).await?;
    Ok(axum::Json(json!({"events": events})))
}

fn offered(name: &str, offered: Offered) -> serde_json::Value {
    match offered {
        Offered::Activated { digest, services } => {
            json!({"plugin": name, "digest": digest, "result": "activated", "services": services})
        }
        Offered::Unchanged { digest } => {
            json!({"plugin": name, "digest": digest, "result": "unchanged", "services": []})
        }
    }
}

fn rejected(r: Rejection) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", r.to_string())
}

/// A new version, as the raw component bytes.
pub async fn upload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawBody(body): RawBody<MAX_PLUGIN>,
) -> Result<impl IntoResponse, ApiError> {
    known(&s, &name)?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the body must be the plugin's .wasm bytes",
        ));
    }
    let answer = blocking(move || {
        s.live
            .offer(&name, &body, Source::Api, None)
            .map(|o| offered(&name, o))
            .map_err(rejected)
    })
    .await?;
    Ok(axum::Json(answer))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default)]
    digest: Option<String>,
}

pub async fn rollback(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<Rollback>,
) -> Result<impl IntoResponse, ApiError> {
    known(&s, &name)?;
    let digest = match &body.digest {
        Some(text) => Some(Digest::parse(text).ok_or_else(|| {
            ApiError::invalid(format!("`digest` `{text}` is not sha256:<64 hex digits>"))
        })?),
        None => None,
    };
    let answer = blocking(move || {
        s.live
            .rollback(&name, digest, Source::Rollback)
            .map(|o| offered(&name, o))
            .map_err(|e| match e {
                RollbackError::UnknownPlugin(_) | RollbackError::UnknownVersion(_) => {
                    ApiError::not_found(e.to_string())
                }
                RollbackError::NothingBefore(_) => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                RollbackError::Rejected(r) => rejected(r),
                RollbackError::Store(e) => ApiError::internal(e),
            })
    })
    .await?;
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    service: String,
    last: Option<u32>,
}

/// Re-runs the service's last recorded decisions on the candidate in the body.
pub async fn replay(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ReplayQuery>,
    RawBody(body): RawBody<MAX_PLUGIN>,
) -> Result<impl IntoResponse, ApiError> {
    known(&s, &name)?;
    // A thread of its own, not one of the permits every read shares: a slow
    // candidate holds it up to the budget.
    let report = tokio::task::spawn_blocking(move || {
        let registry = s.live.registry().load_full();
        let service = registry.service(&query.service).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-service",
                format!("no service `{}`", query.service),
            )
        })?;
        let runtime = s.live.runtime();
        let candidate = runtime
            .load(&name, &body)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let binding = crate::runtime::Binding::new(candidate, service.manifest.limits);
        let last = query.last.unwrap_or(100).clamp(1, 10_000);
        let decisions = s.live.store().read(|c| {
            crate::store::entitlement::list_decisions(c, Some(&query.service), None, last)
        })?;
        Ok::<_, ApiError>(crate::harness::replay::replay_within(
            &binding,
            &decisions,
            Some(REPLAY_BUDGET),
        ))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(axum::Json(report))
}
