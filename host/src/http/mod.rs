//! The internal HTTP API (default 127.0.0.1:7700), for services and
//! operators: JSON in and out, errors as `{"error": {"code", "message"}}`.
//!
//! Architecture invariant: handlers translate HTTP to calls of the domain
//! parts and back; blocking work (SQLite, plugins) runs on the blocking pool
//! or, for checks, on the store's group-commit thread, never on the
//! executor's threads. (wasmtime-wasi's synchronous bindings even refuse to
//! run there: a plugin's print would panic the worker.)
//!
//! Every route needs an API token of a role that may call it, except
//! `/healthz` and `/metrics` by default (`access.rs` holds the table; the
//! tokens themselves are `auth`'s).

pub mod access;
pub mod edge;
mod entitlement;
mod error;
mod flows;
pub mod inspect;
mod json;
mod ledger;
mod metrics;
mod ops;
mod plans;
mod plugins;
mod provisioning;
pub mod public;
mod sessions;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use access::OpenRoutes;
pub use error::ApiError;
pub use inspect::{MAX_BODY, MAX_DEPTH};
pub use metrics::Metrics;

use crate::auth::{Access, Tokens};
use crate::entitlement::Entitlement;
use crate::flow::FlowEngine;
use crate::plans::Plans;
use crate::provisioning::Provisioning;
use crate::registry::Live;
use crate::sessions::Sessions;
use crate::store::retention::PruneStats;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<FlowEngine>,
    pub live: Arc<Live>,
    pub entitlement: Arc<Entitlement>,
    pub plans: Arc<Plans>,
    pub sessions: Arc<Sessions>,
    pub provisioning: Arc<Provisioning>,
    pub metrics: Arc<Metrics>,
    /// Records the pruner deleted past their retention, for `/metrics`.
    pub pruned: Arc<PruneStats>,
    /// Who a presented API token belongs to.
    pub tokens: Arc<Tokens>,
    /// Which routes need no token.
    pub open: OpenRoutes,
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

/// Runs password hashing (Argon2id: tens of milliseconds of CPU and 19 MiB
/// each) one at a time, apart from [`blocking`]'s permits, so that a flood
/// of wrong passwords queues here and never starves checks. The permit goes
/// with the job: a client that hangs up frees it only when the hash is done.
pub(crate) async fn hashing<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = hashing_permit().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await?
}

/// The one permit to hash passwords (the internal API's and the public
/// site's sign-ins and registrations share it).
pub(crate) async fn hashing_permit()
-> Result<tokio::sync::SemaphorePermit<'static>, tokio::sync::AcquireError> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    PERMITS.acquire().await
}

/// The internal API. Every route is added with the [`Access`] it needs
/// (`access::Routes`); `access::authorize` enforces it before any handler.
pub fn router(state: AppState) -> Router {
    let (routes, table) = routes(state.open).finish();
    let guard = access::Guard {
        table,
        tokens: state.tokens.clone(),
        users: state.provisioning.clone(),
    };
    routes
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::map_response(error::as_json))
        .layer(middleware::from_fn_with_state(guard, access::authorize))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Every route of the internal API with who may call it: the route table.
pub(crate) fn routes(open: OpenRoutes) -> access::Routes {
    use Access::{Open, Operate, Read, ServiceRead, ServiceWrite, Token, UserRead, UserWrite};
    let (healthz, metrics) = (
        if open.healthz { Open } else { Token },
        if open.metrics { Open } else { Read },
    );
    access::Routes::default()
        .get("/healthz", healthz, ops::healthz)
        .get("/metrics", metrics, ops::metrics)
        .get("/v1/outbox", Read, ops::outbox)
        .post("/v1/outbox/{id}/retry", Operate, ops::retry)
        .get("/v1/services", Read, entitlement::services)
        .put("/v1/accounts/{id}", ServiceWrite, entitlement::put_account)
        .get("/v1/accounts/{id}", ServiceRead, entitlement::get_account)
        .get("/v1/accounts/{id}/balance", ServiceRead, ledger::balance)
        .post("/v1/accounts/{id}/topup", Operate, ledger::topup)
        .get("/v1/accounts/{id}/ledger", ServiceRead, ledger::movements)
        .post(
            "/v1/account-groups/{group}/accounts",
            Operate,
            ledger::create_accounts,
        )
        .post("/v1/checks", ServiceWrite, entitlement::check)
        .get("/v1/decisions", ServiceRead, entitlement::decisions)
        .get("/v1/requests/{id}", ServiceRead, entitlement::request)
        .post(
            "/v1/reconciliations/{id}/link",
            ServiceWrite,
            entitlement::reissue_link,
        )
        .post("/v1/communications", ServiceWrite, plans::authorize)
        .post(
            "/v1/communications/{id}/choice",
            ServiceWrite,
            plans::choice,
        )
        .post(
            "/v1/communications/{id}/complete",
            ServiceWrite,
            plans::complete,
        )
        .get("/v1/records", Read, plans::records)
        .get(
            "/v1/accounts/{id}/associations",
            ServiceRead,
            plans::associations,
        )
        .put(
            "/v1/accounts/{id}/preferred-plan",
            ServiceWrite,
            plans::put_preferred,
        )
        .get(
            "/v1/accounts/{id}/preferred-plan",
            ServiceRead,
            plans::get_preferred,
        )
        .post("/v1/sessions", ServiceWrite, sessions::open)
        .get("/v1/sessions/{id}", ServiceRead, sessions::get)
        .post("/v1/sessions/{id}/events", ServiceWrite, sessions::event)
        .get("/v1/sessions/{id}/events", ServiceRead, sessions::events)
        .post("/v1/sessions/{id}/end", ServiceWrite, sessions::end)
        .post(
            "/v1/organizations",
            Operate,
            provisioning::create_organization,
        )
        .post("/v1/users", Operate, provisioning::create_user)
        .get("/v1/users/{id}", UserRead, provisioning::user)
        .get(
            "/v1/users/{id}/directory",
            UserRead,
            provisioning::directory,
        )
        .post("/v1/user-tokens", UserWrite, provisioning::create_token)
        .post(
            "/v1/user-tokens/revoke",
            UserWrite,
            provisioning::revoke_tokens,
        )
        .post("/v1/offers", UserWrite, provisioning::make_offer)
        .get("/v1/offers", UserWrite, provisioning::offers)
        .get("/v1/offers/{id}", UserRead, provisioning::offer)
        .post(
            "/v1/offers/{id}/invitees",
            UserWrite,
            provisioning::add_invitees,
        )
        .get(
            "/v1/offers/{id}/invitees/{iid}",
            UserRead,
            provisioning::invitee,
        )
        .get("/v1/permissions", UserRead, provisioning::permissions)
        .get("/v1/plugins", Read, plugins::list)
        .post_large(
            "/v1/plugins/{name}",
            Operate,
            plugins::MAX_PLUGIN,
            plugins::upload,
        )
        .get("/v1/plugins/{name}/history", Read, plugins::history)
        .post("/v1/plugins/{name}/rollback", Operate, plugins::rollback)
        .post_large(
            "/v1/plugins/{name}/replay",
            Operate,
            plugins::MAX_PLUGIN,
            plugins::replay,
        )
        .post("/v1/flows", Operate, flows::start)
        .get("/v1/flows", Read, flows::list)
        .get("/v1/flows/{id}", Read, flows::get)
        .post("/v1/flows/{id}/demands", Operate, flows::demand)
        .post("/v1/flows/{id}/cancel", Operate, flows::cancel)
        .get("/v1/flow-definitions", Read, flows::definitions)
        .get("/v1/tasks", Read, flows::tasks)
        .post("/v1/tasks/{id}/complete", Operate, flows::complete)
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
