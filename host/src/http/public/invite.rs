//! An invitee's steps on the public site: the link (confirm the email),
//! the offer, registration or sign-in, and the terms. Every step checks the
//! link and the offer's expiry again (provisioning does, in the
//! transaction that records it); every form's token is taken first.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::form_rejected;
use super::provisioning::{
    Browser, Page, Refused, call, call_hashing, cookie_of, link_key, path_id, refuse_with,
    see_other, take,
};
use super::provisioning_pages::{
    Link, RegisterFields, invite_link, render_answered, render_invitation, render_invite_signin,
    render_offer, render_register, render_terms,
};
use crate::provisioning::{InvitationView, Provisioning, ProvisioningError, Registration};

type P = State<Arc<Provisioning>>;
type Id = Result<Path<String>, PathRejection>;
type Key = Result<Query<KeyQuery>, QueryRejection>;

#[derive(Deserialize)]
pub(super) struct KeyQuery {
    key: Option<String>,
}

/// The invitation's id and key from the address.
fn link(path: Id, query: Key) -> Result<(String, String), Refused> {
    let iid = path_id(path, ProvisioningError::WrongLink)?;
    let key = query.ok().and_then(|Query(q)| q.key);
    Ok((iid, link_key(key.as_deref())?))
}

/// A posted form, or the page saying why it cannot be read.
fn posted<F>(form: Result<Form<F>, FormRejection>) -> Result<F, Refused> {
    form.map(|Form(f)| f)
        .map_err(|rejection| Refused::page(form_rejected(&rejection)))
}

/// The session must have confirmed this invitee's email.
fn confirmed(invitee: Option<&str>, iid: &str) -> Result<(), ProvisioningError> {
    if invitee == Some(iid) {
        Ok(())
    } else {
        Err(ProvisioningError::Forbidden(
            "confirm the email this invitation was sent to first, on the invitation's page".into(),
        ))
    }
}

/// `GET /invite/{iid}?key=`: the link checked, the email to confirm.
pub(super) async fn show(State(p): P, path: Id, query: Key, headers: HeaderMap) -> Page {
    let (iid, key) = link(path, query)?;
    let cookie = cookie_of(&headers);
    let (browser, view, token) = {
        let key = key.clone();
        call(&p, move |p| {
            // The link first: a wrong one opens no session.
            let view = p.invitation(&iid, &key)?;
            let browser = Browser::open(p, cookie.as_deref())?;
            let token = browser.token(p, "confirm", &iid)?;
            Ok((browser, view, token))
        })
        .await?
    };
    Ok(browser.page(StatusCode::OK, render_invitation(&view, &key, &token, None)))
}

#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    key: Option<String>,
    token: Option<String>,
    email: Option<String>,
}

/// `POST /invite/{iid}/confirm`: the right email shows the offer, and the
/// session remembers it; a wrong one is denied.
pub(super) async fn confirm(
    State(p): P,
    path: Id,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Page {
    let iid = path_id(path, ProvisioningError::WrongLink)?;
    let form = posted(form)?;
    let key = link_key(form.key.as_deref())?;
    let cookie = cookie_of(&headers);
    let view = {
        let key = key.clone();
        call(&p, move |p| {
            let (cookie, _) = take(p, cookie.as_deref(), "confirm", &iid, form.token.as_deref())?;
            let view = p.confirm_email(&iid, &key, form.email.as_deref().unwrap_or(""))?;
            p.remember_invitee(&cookie, &iid)?;
            Ok(view)
        })
        .await?
    };
    Ok(super::html(StatusCode::OK, render_offer(&view, &key)))
}

/// What a step's page shows, once looked up.
enum Shown {
    Form(Browser, Box<InvitationView>, String),
    /// The email is not confirmed in this session: back to the link.
    Back(Browser),
    /// Registered already: sign in instead.
    SignIn(Browser),
}

/// The page of a step that needs the email confirmed in this session.
async fn step(
    p: &Arc<Provisioning>,
    iid: String,
    key: String,
    headers: &HeaderMap,
    form: &'static str,
) -> Result<Shown, Refused> {
    let cookie = cookie_of(headers);
    call(p, move |p| {
        let view = p.invitation(&iid, &key)?;
        let browser = Browser::open(p, cookie.as_deref())?;
        if browser.state.invitee.as_deref() != Some(iid.as_str()) {
            return Ok(Shown::Back(browser));
        }
        if form == "register" && view.user.is_some() {
            return Ok(Shown::SignIn(browser));
        }
        let token = browser.token(p, form, &iid)?;
        Ok(Shown::Form(browser, Box::new(view), token))
    })
    .await
}

/// `GET /invite/{iid}/register?key=`: the registration form, prefilled.
pub(super) async fn show_register(State(p): P, path: Id, query: Key, headers: HeaderMap) -> Page {
    let (iid, key) = link(path, query)?;
    Ok(
        match step(&p, iid.clone(), key.clone(), &headers, "register").await? {
            Shown::Form(browser, view, token) => {
                let fields = RegisterFields::prefilled(&view);
                browser.page(
                    StatusCode::OK,
                    render_register(&view, &key, &token, &fields, None),
                )
            }
            Shown::Back(browser) => browser.see_other(&invite_link(&iid, "", &key)),
            Shown::SignIn(browser) => browser.see_other(&invite_link(&iid, "/signin", &key)),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct RegisterForm {
    key: Option<String>,
    token: Option<String>,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    phone: String,
}

/// After a registration or a sign-in: the new session, or the form again
/// with why not (and a fresh token: the old one is used).
enum Signed {
    In(crate::provisioning::SiteSession),
    Again(Box<InvitationView>, String, ProvisioningError),
}

/// `POST /invite/{iid}/register`: a new user, signed in on a new session,
/// on to the terms.
pub(super) async fn register(
    State(p): P,
    path: Id,
    headers: HeaderMap,
    form: Result<Form<RegisterForm>, FormRejection>,
) -> Page {
    let iid = path_id(path, ProvisioningError::WrongLink)?;
    let form = posted(form)?;
    let key = link_key(form.key.as_deref())?;
    let fields = RegisterFields {
        user_id: form.user_id.clone(),
        email: form.email.clone(),
        name: form.name.clone(),
        organization: form.organization.clone(),
        phone: form.phone.clone(),
    };
    let cookie = cookie_of(&headers);
    let signed = {
        let (iid, key) = (iid.clone(), key.clone());
        call_hashing(&p, move |p| {
            let (cookie, state) = take(
                p,
                cookie.as_deref(),
                "register",
                &iid,
                form.token.as_deref(),
            )?;
            confirmed(state.invitee.as_deref(), &iid)?;
            let registration = Registration {
                user_id: form.user_id.trim().to_owned(),
                password: form.password,
                email: form.email,
                name: form.name,
                organization: form.organization,
                phone: form.phone,
            };
            match p.register(&iid, &key, registration) {
                Ok(user) => Ok(Signed::In(p.open_site_session(
                    Some(&cookie),
                    Some(&user),
                    Some(&iid),
                )?)),
                Err(e @ (ProvisioningError::Invalid(_) | ProvisioningError::Exists { .. })) => {
                    let view = p.invitation(&iid, &key)?;
                    let token = p.form_token(&cookie, "register", &iid)?;
                    Ok(Signed::Again(Box::new(view), token, e))
                }
                Err(e) => Err(e),
            }
        })
        .await?
    };
    Ok(match signed {
        Signed::In(session) => see_other(&invite_link(&iid, "/terms", &key), Some(&session)),
        Signed::Again(view, token, e) => {
            let status = match e {
                ProvisioningError::Exists { .. } => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            super::html(
                status,
                render_register(&view, &key, &token, &fields, Some(&e.to_string())),
            )
        }
    })
}

/// `GET /invite/{iid}/signin?key=`: sign in with an account one has.
pub(super) async fn show_signin(State(p): P, path: Id, query: Key, headers: HeaderMap) -> Page {
    let (iid, key) = link(path, query)?;
    Ok(
        match step(&p, iid.clone(), key.clone(), &headers, "signin").await? {
            Shown::Form(browser, view, token) => browser.page(
                StatusCode::OK,
                render_invite_signin(&view, &key, &token, "", None),
            ),
            Shown::Back(browser) | Shown::SignIn(browser) => {
                browser.see_other(&invite_link(&iid, "", &key))
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    key: Option<String>,
    token: Option<String>,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    password: String,
}

/// `POST /invite/{iid}/signin`: the invitation becomes the user's, on a
/// new session, on to the terms.
pub(super) async fn signin(
    State(p): P,
    path: Id,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Page {
    let iid = path_id(path, ProvisioningError::WrongLink)?;
    let form = posted(form)?;
    let key = link_key(form.key.as_deref())?;
    let user_id = form.user_id.trim().to_owned();
    let cookie = cookie_of(&headers);
    let signed = {
        let (iid, key, user_id) = (iid.clone(), key.clone(), user_id.clone());
        call_hashing(&p, move |p| {
            let (cookie, state) =
                take(p, cookie.as_deref(), "signin", &iid, form.token.as_deref())?;
            confirmed(state.invitee.as_deref(), &iid)?;
            // The link before the password: an expired one costs no attempt.
            let view = p.invitation(&iid, &key)?;
            match p.authenticate(&user_id, &form.password) {
                Ok(user) => {
                    p.take_up(&iid, &key, &user)?;
                    let session = p.open_site_session(Some(&cookie), Some(&user), Some(&iid))?;
                    Ok(Signed::In(session))
                }
                Err(e @ ProvisioningError::BadCredentials) => {
                    let token = p.form_token(&cookie, "signin", &iid)?;
                    Ok(Signed::Again(Box::new(view), token, e))
                }
                Err(e) => Err(e),
            }
        })
        .await?
    };
    Ok(match signed {
        Signed::In(session) => see_other(&invite_link(&iid, "/terms", &key), Some(&session)),
        Signed::Again(view, token, e) => super::html(
            StatusCode::UNAUTHORIZED,
            render_invite_signin(&view, &key, &token, &user_id, Some(&e.to_string())),
        ),
    })
}

/// The terms' page, once looked up.
enum Terms {
    Form(InvitationView, crate::provisioning::User, String),
    Answered(InvitationView),
    SignInFirst,
}

/// `GET /invite/{iid}/terms?key=`: for the signed-in user whose
/// invitation it is.
pub(super) async fn show_terms(State(p): P, path: Id, query: Key, headers: HeaderMap) -> Page {
    let (iid, key) = link(path, query)?;
    let cookie = cookie_of(&headers);
    let terms = {
        let (iid, key) = (iid.clone(), key.clone());
        call(&p, move |p| {
            let view = p.invitation(&iid, &key)?;
            let state = match cookie.as_deref() {
                Some(cookie) => p.site_state(cookie)?,
                None => None,
            };
            let user = state.and_then(|s| s.user);
            let (Some(user), Some(cookie)) = (user, cookie) else {
                return Ok(Terms::SignInFirst);
            };
            if view.user.as_deref() != Some(user.id.as_str()) {
                return Ok(Terms::SignInFirst);
            }
            if view.accepted || view.declined {
                return Ok(Terms::Answered(view));
            }
            let token = p.form_token(&cookie, "terms", &iid)?;
            Ok(Terms::Form(view, user, token))
        })
        .await?
    };
    Ok(match terms {
        Terms::Form(view, user, token) => {
            super::html(StatusCode::OK, render_terms(&view, &user, &key, &token))
        }
        Terms::Answered(view) => super::html(
            StatusCode::OK,
            render_answered(&view.service_name, view.accepted, true),
        ),
        Terms::SignInFirst => return Err(sign_in_first(&iid, &key)),
    })
}

fn sign_in_first(iid: &str, key: &str) -> Refused {
    refuse_with(
        StatusCode::FORBIDDEN,
        "Sign in to answer these terms",
        "Only the person who registered or signed in through this invitation can answer its terms, in the browser they did it in. Nothing was changed.",
        &[Link {
            id: "invitation",
            href: invite_link(iid, "", key),
            text: "Open the invitation".into(),
        }],
    )
}

#[derive(Deserialize)]
pub(super) struct TermsForm {
    key: Option<String>,
    token: Option<String>,
    decision: Option<String>,
}

/// `POST /invite/{iid}/terms`: accept or decline.
pub(super) async fn answer(
    State(p): P,
    path: Id,
    headers: HeaderMap,
    form: Result<Form<TermsForm>, FormRejection>,
) -> Page {
    let iid = path_id(path, ProvisioningError::WrongLink)?;
    let form = posted(form)?;
    let key = link_key(form.key.as_deref())?;
    let accept = match form.decision.as_deref() {
        Some("accept") => true,
        Some("decline") => false,
        _ => {
            return Err(
                ProvisioningError::Invalid("choose Accept or Decline on the page".into()).into(),
            );
        }
    };
    let cookie = cookie_of(&headers);
    let answered = {
        let (iid, key) = (iid.clone(), key.clone());
        call(&p, move |p| {
            let (_, state) = take(p, cookie.as_deref(), "terms", &iid, form.token.as_deref())?;
            let Some(user) = state.user else {
                return Ok(None);
            };
            let view = p.invitation(&iid, &key)?;
            let answered = p.answer(&iid, &key, &user, accept)?;
            Ok(Some((view, answered)))
        })
        .await?
    };
    let Some((view, answered)) = answered else {
        return Err(sign_in_first(&iid, &key));
    };
    Ok(super::html(
        StatusCode::OK,
        render_answered(&view.service_name, answered.accepted, answered.again),
    ))
}
