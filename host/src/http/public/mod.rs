//! The public site (default 127.0.0.1:7701): the reconciliation pages, for
//! the people a failed check sends to a page, and the provisioning pages,
//! for invitees and providers (`provisioning.rs`, `invite.rs`,
//! `provider.rs`). Plain server-rendered HTML, usable without JavaScript,
//! on its own listener.
//!
//! The reconciliation routes (the provisioning ones are listed in
//! `provisioning.rs`); every other address is a 404 page, and nothing of
//! the internal API is mounted here:
//! - `GET /reconcile/{id}?key=...`: the problem and the options that fit it;
//! - `POST /reconcile/{id}` (form: `key`, `choice` = `other-account` |
//!   `renew` | `pay`, `account_id`): the done page, or the page again with
//!   why it is still not entitled;
//! - `POST /reconcile/{id}/leave` (form: `key`): "not now", the contact will
//!   be asked;
//! - `GET /reconcile/{id}/confirm?key=...` and `POST /reconcile/{id}/confirm`
//!   (form: `key`): the link mailed to another account's contact, to confirm
//!   that the request goes on their account ("use another account").
//!
//! Every response is HTML and carries [`SECURITY_HEADERS`]: no scripts, no
//! framing, no referrer (the address carries the link's key), no caching.
//! Handlers only translate HTTP to calls of [`Entitlement`] (or
//! [`Provisioning`]) and back; those calls block (SQLite, plugins, Argon2),
//! so they run on the blocking pool.

mod invite;
mod pages;
mod provider;
mod provisioning;
mod provisioning_pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub use pages::{
    render_confirm, render_done, render_error, render_left, render_message, render_page,
};

use crate::entitlement::{
    Choice, ConfirmOutcome, Entitlement, LinkError, ReconcilePage, SubmitOutcome, TRANSFER_ASKED,
    TransferPage,
};
use crate::provisioning::Provisioning;

/// The largest form body accepted.
pub const MAX_FORM: usize = 64 * 1024;

/// Ids and keys longer than this are not ours: refused before any lookup.
const MAX_ID: usize = 256;
const MAX_KEY: usize = 512;

/// Sent with every response of the site.
pub const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// The site, on entitlement and provisioning.
pub fn router(entitlement: Arc<Entitlement>, provisioning: Arc<Provisioning>) -> Router {
    finish(reconciliation(entitlement).merge(provisioning::routes(provisioning)))
}

/// What the site asks of entitlement (blocking calls). [`Entitlement`] is
/// the one implementation; the tests put a fake behind the same router.
trait Reconciler: Send + Sync + 'static {
    fn page(&self, id: &str, key: &str) -> Result<ReconcilePage, LinkError>;
    fn submit(&self, id: &str, key: &str, choice: Choice) -> Result<SubmitOutcome, LinkError>;
    fn leave(&self, id: &str, key: &str) -> Result<(), LinkError>;
    fn transfer_page(&self, id: &str, key: &str) -> Result<TransferPage, LinkError>;
    fn transfer_confirm(&self, id: &str, key: &str) -> Result<ConfirmOutcome, LinkError>;
}

impl Reconciler for Entitlement {
    fn page(&self, id: &str, key: &str) -> Result<ReconcilePage, LinkError> {
        self.reconcile_page(id, key)
    }

    fn submit(&self, id: &str, key: &str, choice: Choice) -> Result<SubmitOutcome, LinkError> {
        self.reconcile_submit(id, key, choice)
    }

    fn leave(&self, id: &str, key: &str) -> Result<(), LinkError> {
        self.reconcile_leave(id, key)
    }

    fn transfer_page(&self, id: &str, key: &str) -> Result<TransferPage, LinkError> {
        Entitlement::transfer_page(self, id, key)
    }

    fn transfer_confirm(&self, id: &str, key: &str) -> Result<ConfirmOutcome, LinkError> {
        Entitlement::transfer_confirm(self, id, key)
    }
}

/// The reconciliation site alone (the tests run it on a fake).
#[cfg(test)]
fn site<R: Reconciler>(reconciler: Arc<R>) -> Router {
    finish(reconciliation(reconciler))
}

fn reconciliation<R: Reconciler>(reconciler: Arc<R>) -> Router {
    Router::new()
        .route("/reconcile/{id}", get(show::<R>).post(submit::<R>))
        .route("/reconcile/{id}/leave", post(leave::<R>))
        .route(
            "/reconcile/{id}/confirm",
            get(show_confirm::<R>).post(confirm::<R>),
        )
        .with_state(reconciler)
}

/// What every route of the site shares: the 404 and 405 pages (after every
/// route is in), the form size limit and the security headers.
fn finish(routes: Router) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .layer(middleware::map_response(secure))
}

/// Adds [`SECURITY_HEADERS`] to a response, whichever handler made it.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// An HTML page with its status.
fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn error_page(error: &LinkError) -> Response {
    let (status, body) = render_error(error);
    let mut response = html(status, body);
    if let LinkError::Locked { retry_after, .. } = error
        && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// Runs a blocking call of entitlement on the blocking pool.
async fn call<R: Reconciler, T: Send + 'static>(
    reconciler: Arc<R>,
    f: impl FnOnce(&R) -> Result<T, LinkError> + Send + 'static,
) -> Result<T, LinkError> {
    match tokio::task::spawn_blocking(move || f(&reconciler)).await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "public site: a reconciliation call did not finish");
            Err(LinkError::Internal)
        }
    }
}

/// The link's id from the path; a malformed or oversize one is unknown.
fn link_id(path: Result<Path<String>, PathRejection>) -> Result<String, LinkError> {
    match path {
        Ok(Path(id)) if !id.is_empty() && id.len() <= MAX_ID => Ok(id),
        _ => Err(LinkError::NotFound),
    }
}

/// The key, which must be there: a link without one is a wrong link.
fn link_key(key: Option<String>) -> Result<String, LinkError> {
    match key {
        Some(key) if !key.is_empty() && key.len() <= MAX_KEY => Ok(key),
        _ => Err(LinkError::WrongKey),
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// The id and key of a link from its path and its `?key=`.
fn link_in(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<(String, String), LinkError> {
    let id = link_id(path)?;
    let key = query.ok().and_then(|Query(q)| q.key);
    Ok((id, link_key(key)?))
}

/// `GET /reconcile/{id}?key=...`
async fn show<R: Reconciler>(
    State(reconciler): State<Arc<R>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Response {
    let (id, key) = match link_in(path, query) {
        Ok(link) => link,
        Err(e) => return error_page(&e),
    };
    let page = {
        let (id, key) = (id.clone(), key.clone());
        call(reconciler, move |r| r.page(&id, &key)).await
    };
    match page {
        Ok(page) => html(StatusCode::OK, render_page(&page, &key, None)),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct SubmitForm {
    key: Option<String>,
    choice: Option<String>,
    account_id: Option<String>,
}

/// What the form asks for; `Ok(None)`: another account, but no id given.
fn choice(form: &SubmitForm) -> Result<Option<Choice>, LinkError> {
    match form.choice.as_deref().map(str::trim) {
        Some("other-account") => Ok(form
            .account_id
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| Choice::OtherAccount(a.to_owned()))),
        Some("renew") => Ok(Some(Choice::Renew)),
        Some("pay") => Ok(Some(Choice::PayForRequest)),
        Some(other) if !other.is_empty() => Err(LinkError::BadForm(format!(
            "`{other}` is not one of the options on the page"
        ))),
        _ => Err(LinkError::BadForm(
            "choose one of the options on the page".to_owned(),
        )),
    }
}

/// A form the site cannot read: too large, not a form, or malformed.
fn form_rejected(rejection: &FormRejection) -> Response {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => html(
            StatusCode::PAYLOAD_TOO_LARGE,
            render_message(
                "The form is too large",
                "Nothing was changed. Go back to the page and try again.",
                None,
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => html(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            render_message(
                "The form could not be read",
                "This address takes the forms of the page (application/x-www-form-urlencoded). Nothing was changed.",
                None,
            ),
        ),
        _ => error_page(&LinkError::BadForm(
            "the form's fields could not be read".to_owned(),
        )),
    }
}

/// A posted link's id, its form, and the key the form carries; or the page
/// that says which of them is wrong.
fn link_form<F>(
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<F>, FormRejection>,
    key: impl FnOnce(&F) -> Option<String>,
) -> Result<(String, F, String), Box<Response>> {
    let id = link_id(path).map_err(|e| Box::new(error_page(&e)))?;
    let Form(form) = form.map_err(|rejection| Box::new(form_rejected(&rejection)))?;
    let key = link_key(key(&form)).map_err(|e| Box::new(error_page(&e)))?;
    Ok((id, form, key))
}

/// `POST /reconcile/{id}`
async fn submit<R: Reconciler>(
    State(reconciler): State<Arc<R>>,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<SubmitForm>, FormRejection>,
) -> Response {
    let (id, form, key) = match link_form(path, form, |f: &SubmitForm| f.key.clone()) {
        Ok(parts) => parts,
        Err(page) => return *page,
    };
    let choice = match choice(&form) {
        Ok(Some(choice)) => choice,
        // "Use another account" without one: the page again, saying so.
        Ok(None) => {
            let page = {
                let (id, key) = (id.clone(), key.clone());
                call(reconciler, move |r| r.page(&id, &key)).await
            };
            return match page {
                Ok(page) => html(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    render_page(&page, &key, Some("Enter the id of the account to use.")),
                ),
                Err(e) => error_page(&e),
            };
        }
        Err(e) => return error_page(&e),
    };
    let outcome = {
        let (id, key) = (id.clone(), key.clone());
        call(reconciler, move |r| r.submit(&id, &key, choice)).await
    };
    match outcome {
        Ok(SubmitOutcome::Reconciled { account_id, level }) => {
            html(StatusCode::OK, render_done(&account_id, &level))
        }
        Ok(SubmitOutcome::StillFailing { page, reason }) => {
            html(StatusCode::OK, render_page(&page, &key, Some(&reason)))
        }
        Ok(SubmitOutcome::TransferAsked { page }) => html(
            StatusCode::OK,
            render_page(&page, &key, Some(TRANSFER_ASKED)),
        ),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct LeaveForm {
    key: Option<String>,
}

/// `POST /reconcile/{id}/leave`
async fn leave<R: Reconciler>(
    State(reconciler): State<Arc<R>>,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<LeaveForm>, FormRejection>,
) -> Response {
    let (id, _form, key) = match link_form(path, form, |f: &LeaveForm| f.key.clone()) {
        Ok(parts) => parts,
        Err(page) => return *page,
    };
    match call(reconciler, move |r| r.leave(&id, &key)).await {
        Ok(()) => html(StatusCode::OK, render_left()),
        Err(e) => error_page(&e),
    }
}

/// `GET /reconcile/{id}/confirm?key=...`
async fn show_confirm<R: Reconciler>(
    State(reconciler): State<Arc<R>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Response {
    let (id, key) = match link_in(path, query) {
        Ok(link) => link,
        Err(e) => return error_page(&e),
    };
    let page = {
        let key = key.clone();
        call(reconciler, move |r| r.transfer_page(&id, &key)).await
    };
    match page {
        Ok(page) => html(StatusCode::OK, render_confirm(&page, &key)),
        Err(e) => error_page(&e),
    }
}

/// `POST /reconcile/{id}/confirm`
async fn confirm<R: Reconciler>(
    State(reconciler): State<Arc<R>>,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<LeaveForm>, FormRejection>,
) -> Response {
    let (id, _form, key) = match link_form(path, form, |f: &LeaveForm| f.key.clone()) {
        Ok(parts) => parts,
        Err(page) => return *page,
    };
    match call(reconciler, move |r| r.transfer_confirm(&id, &key)).await {
        Ok(ConfirmOutcome::Reconciled { account_id, level }) => {
            html(StatusCode::OK, render_done(&account_id, &level))
        }
        Ok(ConfirmOutcome::NotEntitled { reason }) => html(
            StatusCode::OK,
            render_message(
                "Your account cannot take this request",
                "The request was not moved to your account, and this link is used up. Nothing else was changed.",
                Some(&reason),
            ),
        ),
        Err(e) => error_page(&e),
    }
}

/// Any other address: a page, never JSON, never the internal API.
async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        render_message(
            "Page not found",
            "There is no page at this address. If you followed a link from a message, check that you opened all of it.",
            None,
        ),
    )
}

/// A known address, another method (the router adds the `Allow` header).
async fn method_not_allowed() -> Response {
    html(
        StatusCode::METHOD_NOT_ALLOWED,
        render_message(
            "This page cannot be used that way",
            "Open the link from your message, and use the buttons on the page.",
            None,
        ),
    )
}

#[cfg(test)]
mod provisioning_tests;
#[cfg(test)]
mod tests;
