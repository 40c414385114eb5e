//! The internal HTTP API (default 127.0.0.1:7700), for services and
//! operators: JSON in and out, errors as `{"error": {"code", "message"}}`.
//!
//! Architecture invariant: handlers translate HTTP to calls of the domain
//! parts and back; blocking work (SQLite, plugins) runs on the blocking pool
//! or, for checks, on the store's group-commit thread, never on the
//! executor's threads. (wasmtime-wasi's synchronous bindings even refuse to
//! run there: a plugin's print would panic the worker.)

pub mod edge;
mod entitlement;
mod error;
mod flows;
pub mod inspect;
mod json;
mod metrics;
mod ops;
mod plugins;
pub mod public;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

pub use error::ApiError;
pub use inspect::{MAX_BODY, MAX_DEPTH};
pub use metrics::Metrics;

use crate::entitlement::Entitlement;
use crate::flow::FlowEngine;
use crate::registry::Live;
use crate::store::retention::PruneStats;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<FlowEngine>,
    pub live: Arc<Live>,
    pub entitlement: Arc<Entitlement>,
    pub metrics: Arc<Metrics>,
    /// Records the pruner deleted past their retention, for `/metrics`.
    pub pruned: Arc<PruneStats>,
}

/// Runs blocking work (SQLite, plugin calls) off the executor's threads.
///
/// At most one piece of blocking work per core runs at once: the work
/// serializes on the database anyway, and more threads only add context
/// switches and lock contention (profiled: two thirds of the time went to the
/// kernel). Requests beyond that wait here, on the executor, which is cheap.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _permit = permits.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(f).await?
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/outbox", get(ops::outbox))
        .route("/v1/services", get(entitlement::services))
        .route(
            "/v1/accounts/{id}",
            put(entitlement::put_account).get(entitlement::get_account),
        )
        .route("/v1/checks", post(entitlement::check))
        .route("/v1/plugins", get(plugins::list))
        .route(
            "/v1/plugins/{name}",
            post(plugins::upload).layer(DefaultBodyLimit::max(plugins::MAX_PLUGIN)),
        )
        .route("/v1/plugins/{name}/history", get(plugins::history))
        .route("/v1/plugins/{name}/rollback", post(plugins::rollback))
        .route(
            "/v1/plugins/{name}/replay",
            post(plugins::replay).layer(DefaultBodyLimit::max(plugins::MAX_PLUGIN)),
        )
        .route("/v1/decisions", get(entitlement::decisions))
        .route("/v1/requests/{id}", get(entitlement::request))
        .route("/v1/flows", post(flows::start).get(flows::list))
        .route("/v1/flows/{id}", get(flows::get))
        .route("/v1/flows/{id}/demands", post(flows::demand))
        .route("/v1/flows/{id}/cancel", post(flows::cancel))
        .route("/v1/flow-definitions", get(flows::definitions))
        .route("/v1/tasks", get(flows::tasks))
        .route("/v1/tasks/{id}/complete", post(flows::complete))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::map_response(error::as_json))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts and times every request by its route pattern.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
