//! The provisioning pages of the public site: their routes, the browser
//! session cookie, one-use form tokens, and how a refusal becomes a page.
//! The handlers are in `invite.rs` (an invitee's steps) and `provider.rs`
//! (a provider's pages); rendering is in `provisioning_pages.rs`.
//!
//! Routes:
//! - `GET /invite/{iid}?key=` (confirm the email), `POST /invite/{iid}/confirm`;
//! - `GET|POST /invite/{iid}/register`, `GET|POST /invite/{iid}/signin`;
//! - `GET|POST /invite/{iid}/terms`;
//! - `GET /provider`, `POST /provider/signin`, `POST /provider/signout`,
//!   `POST /provider/offers`, `GET /provider/offers/{id}`,
//!   `POST /provider/offers/{id}/invitees`.
//!
//! A browser gets an anonymous session (cookie `rh_site`) when it is first
//! shown a form; signing in replaces it with a new one. Every form carries
//! a one-use token bound to that session, the form and its subject (the
//! invitee, the offer, or `provider`), taken before anything is done: a
//! form of another session, page or invitation, a stale one or one sent
//! twice is refused with a page, and nothing happens.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::provisioning_pages::{Link, render_internal, render_notice, render_refusal};
use super::{MAX_ID, MAX_KEY, html, invite, provider};
use crate::provisioning::{FormError, Provisioning, ProvisioningError, SiteSession, SiteState};

/// The browser session's cookie.
pub(super) const COOKIE: &str = "rh_site";

/// The provisioning routes, ready to merge into the site.
pub(super) fn routes(provisioning: Arc<Provisioning>) -> Router {
    Router::new()
        .route("/invite/{iid}", get(invite::show))
        .route("/invite/{iid}/confirm", post(invite::confirm))
        .route(
            "/invite/{iid}/register",
            get(invite::show_register).post(invite::register),
        )
        .route(
            "/invite/{iid}/signin",
            get(invite::show_signin).post(invite::signin),
        )
        .route(
            "/invite/{iid}/terms",
            get(invite::show_terms).post(invite::answer),
        )
        .route("/provider", get(provider::show))
        .route("/provider/signin", post(provider::signin))
        .route("/provider/signout", post(provider::signout))
        .route("/provider/offers", post(provider::make_offer))
        .route("/provider/offers/{id}", get(provider::show_offer))
        .route(
            "/provider/offers/{id}/invitees",
            post(provider::add_invitees),
        )
        .with_state(provisioning)
}

/// A page that refuses: its response, ready to return (boxed: it travels
/// in every `Err`).
pub(super) struct Refused(Box<Response>);

impl Refused {
    pub fn page(response: Response) -> Refused {
        Refused(Box::new(response))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<ProvisioningError> for Refused {
    fn from(e: ProvisioningError) -> Refused {
        if e.code() == "internal" {
            tracing::error!(error = %e, "public site: a provisioning call failed");
        }
        let (status, body) = render_refusal(&e);
        let mut response = html(status, body);
        if let ProvisioningError::Locked { retry_after, .. } = e
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        Refused::page(response)
    }
}

impl From<FormError> for Refused {
    fn from(e: FormError) -> Refused {
        ProvisioningError::from(e).into()
    }
}

/// A page with links on, as a refusal.
pub(super) fn refuse_with(
    status: StatusCode,
    title: &str,
    message: &str,
    links: &[Link],
) -> Refused {
    Refused::page(html(status, render_notice(title, message, None, links)))
}

/// What the handlers return: a page either way.
pub(super) type Page = Result<Response, Refused>;

/// Runs a blocking call of provisioning on the blocking pool.
pub(super) async fn call<T: Send + 'static>(
    provisioning: &Arc<Provisioning>,
    f: impl FnOnce(&Provisioning) -> Result<T, ProvisioningError> + Send + 'static,
) -> Result<T, Refused> {
    let provisioning = provisioning.clone();
    match tokio::task::spawn_blocking(move || f(&provisioning)).await {
        Ok(result) => result.map_err(Refused::from),
        Err(e) => {
            tracing::error!(error = %e, "public site: a provisioning call did not finish");
            let (status, body) = render_internal();
            Err(Refused::page(html(status, body)))
        }
    }
}

/// [`call`] for a step that hashes a password (sign-in, registration): it
/// waits for the one hashing permit, which goes with the job.
pub(super) async fn call_hashing<T: Send + 'static>(
    provisioning: &Arc<Provisioning>,
    f: impl FnOnce(&Provisioning) -> Result<T, ProvisioningError> + Send + 'static,
) -> Result<T, Refused> {
    let Ok(permit) = crate::http::hashing_permit().await else {
        let (status, body) = render_internal();
        return Err(Refused::page(html(status, body)));
    };
    call(provisioning, move |p| {
        let _permit = permit;
        f(p)
    })
    .await
}

/// The id in the path; a malformed or oversize one is a link that is not
/// valid (or, for an offer, nothing of the provider's).
pub(super) fn path_id(
    path: Result<Path<String>, PathRejection>,
    unknown: ProvisioningError,
) -> Result<String, Refused> {
    match path {
        Ok(Path(id)) if !id.is_empty() && id.len() <= MAX_ID => Ok(id),
        _ => Err(unknown.into()),
    }
}

/// The link's key, which must be there.
pub(super) fn link_key(key: Option<&str>) -> Result<String, Refused> {
    match key {
        Some(key) if !key.is_empty() && key.len() <= MAX_KEY => Ok(key.to_owned()),
        _ => Err(ProvisioningError::WrongLink.into()),
    }
}

/// The session cookie the browser sent, if it has the shape of one.
pub(super) fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        // Ours are 68 bytes: anything much longer is not worth a lookup.
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

/// `Set-Cookie` for a new session. `Secure` holds on `http://127.0.0.1`
/// too (browsers treat loopback as a secure origin).
fn set_cookie(session: &SiteSession) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        session.cookie, session.max_age
    ))
    .ok()
}

/// `Set-Cookie` that ends the session in the browser.
pub(super) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("rh_site=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

/// A browser's session, for a page with forms: the one it has, or a new
/// anonymous one (sent with the page).
pub(super) struct Browser {
    pub cookie: String,
    pub state: SiteState,
    fresh: Option<SiteSession>,
}

impl Browser {
    /// Looks the cookie up; opens a new session when there is none or it
    /// has ended. Blocking: call it inside [`call`].
    pub fn open(
        provisioning: &Provisioning,
        cookie: Option<&str>,
    ) -> Result<Browser, ProvisioningError> {
        if let Some(cookie) = cookie
            && let Some(state) = provisioning.site_state(cookie)?
        {
            return Ok(Browser {
                cookie: cookie.to_owned(),
                state,
                fresh: None,
            });
        }
        let session = provisioning.open_site_session(cookie, None, None)?;
        Ok(Browser {
            cookie: session.cookie.clone(),
            state: SiteState {
                user: None,
                invitee: None,
            },
            fresh: Some(session),
        })
    }

    /// A one-use token for `form` about `subject`.
    pub fn token(
        &self,
        provisioning: &Provisioning,
        form: &str,
        subject: &str,
    ) -> Result<String, ProvisioningError> {
        provisioning.form_token(&self.cookie, form, subject)
    }

    /// The page, with the cookie of a session opened for it.
    pub fn page(&self, status: StatusCode, body: String) -> Response {
        with_session(html(status, body), self.fresh.as_ref())
    }

    /// A 303 elsewhere, with the cookie of a session opened for it.
    pub fn see_other(&self, location: &str) -> Response {
        see_other(location, self.fresh.as_ref())
    }
}

/// `response`, setting the cookie of `session` when there is one.
pub(super) fn with_session(mut response: Response, session: Option<&SiteSession>) -> Response {
    if let Some(value) = session.and_then(set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A 303 to `location` (after a form was acted on).
pub(super) fn see_other(location: &str, session: Option<&SiteSession>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    with_session(response, session)
}

/// A posted form's session: its token is taken (one use) for `form` and
/// `subject`, then the session's state is read. Blocking.
pub(super) fn take(
    provisioning: &Provisioning,
    cookie: Option<&str>,
    form: &str,
    subject: &str,
    token: Option<&str>,
) -> Result<(String, SiteState), ProvisioningError> {
    let (Some(cookie), Some(token)) = (cookie, token) else {
        return Err(FormError::Unknown.into());
    };
    provisioning.take_form_token(cookie, form, subject, token)?;
    let state = provisioning
        .site_state(cookie)?
        .ok_or(ProvisioningError::Form(FormError::Unknown))?;
    Ok((cookie.to_owned(), state))
}
