//! A provider's pages on the public site: sign in and out, their offers,
//! making one, and an offer's invitees (their status, and adding more,
//! mailed or with the links shown once).

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::form_rejected;
use super::provisioning::{
    Browser, Page, Refused, call, call_hashing, clear_cookie, cookie_of, path_id, see_other, take,
};
use super::provisioning_pages::{
    InviteesFields, OfferFields, ProviderTokens, offer_path, render_provider,
    render_provider_offer, render_provider_signin,
};
use crate::provisioning::{
    NewInvitee, NewInvitees, NewOffer, Provisioning, ProvisioningError, Reader, User,
};

type P = State<Arc<Provisioning>>;

/// Every provider form's subject.
const SUBJECT: &str = "provider";

fn posted<F>(form: Result<Form<F>, FormRejection>) -> Result<F, Refused> {
    form.map(|Form(f)| f)
        .map_err(|rejection| Refused::page(form_rejected(&rejection)))
}

/// The signed-in provider's page, with fresh tokens. Blocking.
fn provider_page(
    p: &Provisioning,
    cookie: &str,
    user: &User,
    form: &OfferFields,
    notice: Option<&str>,
) -> Result<String, ProvisioningError> {
    let offers = p.offers_of(user)?;
    let offerable = p.offerable(user)?;
    let offer = p.form_token(cookie, "provider-offer", SUBJECT)?;
    let signout = p.form_token(cookie, "provider-signout", SUBJECT)?;
    let tokens = ProviderTokens {
        offer: &offer,
        signout: &signout,
    };
    Ok(render_provider(
        user, &offers, &offerable, &tokens, form, notice,
    ))
}

/// `GET /provider`: the sign-in form, or the provider's offers.
pub(super) async fn show(State(p): P, headers: HeaderMap) -> Page {
    let cookie = cookie_of(&headers);
    let (browser, body) = call(&p, move |p| {
        let browser = Browser::open(p, cookie.as_deref())?;
        let body = match &browser.state.user {
            Some(user) => provider_page(p, &browser.cookie, user, &OfferFields::default(), None)?,
            None => {
                let token = browser.token(p, "provider-signin", SUBJECT)?;
                render_provider_signin(&token, "", None)
            }
        };
        Ok((browser, body))
    })
    .await?;
    Ok(browser.page(StatusCode::OK, body))
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    token: Option<String>,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    password: String,
}

/// `POST /provider/signin`: a new, signed-in session.
pub(super) async fn signin(
    State(p): P,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Page {
    let form = posted(form)?;
    let cookie = cookie_of(&headers);
    let user_id = form.user_id.trim().to_owned();
    let signed = {
        let user_id = user_id.clone();
        call_hashing(&p, move |p| {
            let (cookie, state) = take(
                p,
                cookie.as_deref(),
                "provider-signin",
                SUBJECT,
                form.token.as_deref(),
            )?;
            match p.authenticate(&user_id, &form.password) {
                Ok(user) => Ok(Ok(p.open_site_session(
                    Some(&cookie),
                    Some(&user),
                    state.invitee.as_deref(),
                )?)),
                Err(e @ ProvisioningError::BadCredentials) => {
                    let token = p.form_token(&cookie, "provider-signin", SUBJECT)?;
                    Ok(Err((token, e)))
                }
                Err(e) => Err(e),
            }
        })
        .await?
    };
    Ok(match signed {
        Ok(session) => see_other("/provider", Some(&session)),
        Err((token, e)) => super::html(
            StatusCode::UNAUTHORIZED,
            render_provider_signin(&token, &user_id, Some(&e.to_string())),
        ),
    })
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    token: Option<String>,
}

/// `POST /provider/signout`: the session ends, here and in the browser.
pub(super) async fn signout(
    State(p): P,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Page {
    let form = posted(form)?;
    let cookie = cookie_of(&headers);
    call(&p, move |p| {
        let (cookie, _) = take(
            p,
            cookie.as_deref(),
            "provider-signout",
            SUBJECT,
            form.token.as_deref(),
        )?;
        p.sign_out(&cookie)
    })
    .await?;
    let mut response = see_other("/provider", None);
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie());
    Ok(response)
}

#[derive(Deserialize)]
pub(super) struct OfferForm {
    token: Option<String>,
    #[serde(default)]
    service: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires: String,
    onwards: Option<String>,
}

/// The expiry a provider chose: `YYYY-MM-DD` is the end of that day (UTC);
/// a full RFC 3339 time is taken as is; blank is the default.
fn expiry(text: &str) -> Result<Option<jiff::Timestamp>, ProvisioningError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(at));
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|date| {
            date.at(23, 59, 59, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .ok()
        })
        .map(|zoned| Some(zoned.timestamp()))
        .ok_or_else(|| {
            ProvisioningError::Invalid(format!(
                "`{text}` is not a date: give it as YYYY-MM-DD, or leave it blank"
            ))
        })
}

/// `POST /provider/offers`: the offer, then its page.
pub(super) async fn make_offer(
    State(p): P,
    headers: HeaderMap,
    form: Result<Form<OfferForm>, FormRejection>,
) -> Page {
    let form = posted(form)?;
    let cookie = cookie_of(&headers);
    let fields = OfferFields {
        service: form.service.trim().to_owned(),
        description: form.description.clone(),
        expires: form.expires.trim().to_owned(),
        onwards: form.onwards.is_some(),
    };
    let made = call(&p, move |p| {
        let (cookie, state) = take(
            p,
            cookie.as_deref(),
            "provider-offer",
            SUBJECT,
            form.token.as_deref(),
        )?;
        let user = state.user.ok_or_else(sign_in_first)?;
        let offer = expiry(&fields.expires).and_then(|expires_at| {
            p.make_offer(
                &user,
                NewOffer {
                    service: fields.service.clone(),
                    description: fields.description.clone(),
                    expires_at,
                    onwards: fields.onwards,
                },
            )
        });
        match offer {
            Ok(made) => Ok(Ok(made.id)),
            Err(
                e @ (ProvisioningError::Invalid(_)
                | ProvisioningError::UnknownService(_)
                | ProvisioningError::Forbidden(_)),
            ) => {
                let status = match e {
                    ProvisioningError::Forbidden(_) => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let body = provider_page(p, &cookie, &user, &fields, Some(&e.to_string()))?;
                Ok(Err((status, body)))
            }
            Err(e) => Err(e),
        }
    })
    .await?;
    Ok(match made {
        Ok(id) => see_other(&offer_path(&id), None),
        Err((status, body)) => super::html(status, body),
    })
}

fn sign_in_first() -> ProvisioningError {
    ProvisioningError::Forbidden("sign in on the provider page (/provider) first".into())
}

/// `GET /provider/offers/{id}`: the offer and each invitee's status.
pub(super) async fn show_offer(
    State(p): P,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Page {
    let id = path_id(path, not_found())?;
    let cookie = cookie_of(&headers);
    let shown = call(&p, move |p| {
        let browser = Browser::open(p, cookie.as_deref())?;
        let Some(user) = browser.state.user.clone() else {
            return Ok(Err(browser));
        };
        let offer = p.offer(Reader::User(&user), &id)?;
        let token = browser.token(p, "provider-invitees", &id)?;
        let body = render_provider_offer(&offer, &token, &InviteesFields::default(), None);
        Ok(Ok((browser, body)))
    })
    .await?;
    Ok(match shown {
        Ok((browser, body)) => browser.page(StatusCode::OK, body),
        // Not signed in: the sign-in form first.
        Err(browser) => browser.see_other("/provider"),
    })
}

fn not_found() -> ProvisioningError {
    ProvisioningError::NotFound {
        what: "offer",
        id: String::new(),
    }
}

#[derive(Deserialize)]
pub(super) struct InviteesForm {
    token: Option<String>,
    #[serde(default)]
    invitees: String,
    send: Option<String>,
}

/// The invitees of the textarea, one a line: `email, name, organization,
/// phone`, all but the email optional; blank lines skipped. With each, its
/// line's number.
fn invitees(text: &str) -> Result<Vec<(usize, NewInvitee)>, ProvisioningError> {
    let part = |p: Option<&str>| {
        p.map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    };
    let found: Vec<(usize, NewInvitee)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let mut parts = line.splitn(4, ',');
            let email = parts.next().unwrap_or("").trim().to_owned();
            let invitee = NewInvitee {
                email,
                name: part(parts.next()),
                organization: part(parts.next()),
                phone: part(parts.next()),
            };
            (n + 1, invitee)
        })
        .collect();
    if found.is_empty() {
        return Err(ProvisioningError::Invalid(
            "give at least one invitee, one a line: `email, name, organization, phone`".into(),
        ));
    }
    Ok(found)
}

/// Provisioning names an invitee by its place in the list; the page by its
/// line.
fn by_line(why: &str, lines: &[usize]) -> String {
    let mut why = why.to_owned();
    for (k, line) in lines.iter().enumerate().rev() {
        why = why.replace(&format!("`invitees[{k}]."), &format!("line {line}: `"));
    }
    why
}

/// `POST /provider/offers/{id}/invitees`: the invitees added, their links
/// mailed or shown this once.
pub(super) async fn add_invitees(
    State(p): P,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    form: Result<Form<InviteesForm>, FormRejection>,
) -> Page {
    let id = path_id(path, not_found())?;
    let form = posted(form)?;
    let cookie = cookie_of(&headers);
    let (status, body) = call(&p, move |p| {
        let (cookie, state) = take(
            p,
            cookie.as_deref(),
            "provider-invitees",
            &id,
            form.token.as_deref(),
        )?;
        let user = state.user.ok_or_else(sign_in_first)?;
        let send = form.send.is_some();
        let added = invitees(&form.invitees).and_then(|found| {
            let lines: Vec<usize> = found.iter().map(|(n, _)| *n).collect();
            let new = NewInvitees {
                invitees: found.into_iter().map(|(_, i)| i).collect(),
                send,
            };
            p.add_invitees(&user, &id, new).map_err(|e| match e {
                ProvisioningError::Invalid(why) => {
                    ProvisioningError::Invalid(by_line(&why, &lines))
                }
                e => e,
            })
        });
        let (status, fields, notice) = match added {
            Ok(created) => (
                StatusCode::OK,
                InviteesFields {
                    lines: String::new(),
                    send,
                    created,
                },
                None,
            ),
            Err(ProvisioningError::Invalid(why)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                InviteesFields {
                    lines: form.invitees.clone(),
                    send,
                    created: Vec::new(),
                },
                Some(why),
            ),
            Err(e) => return Err(e),
        };
        let offer = p.offer(Reader::User(&user), &id)?;
        let token = p.form_token(&cookie, "provider-invitees", &id)?;
        Ok((
            status,
            render_provider_offer(&offer, &token, &fields, notice.as_deref()),
        ))
    })
    .await?;
    Ok(super::html(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitee_lines_are_read_with_their_numbers() {
        let found = invitees("a@x.test, Ann, Acme, 123\n\n  b@x.test  \nc@x.test,,Org").unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].0, 1);
        assert_eq!(found[0].1.email, "a@x.test");
        assert_eq!(found[0].1.name.as_deref(), Some("Ann"));
        assert_eq!(found[0].1.organization.as_deref(), Some("Acme"));
        assert_eq!(found[0].1.phone.as_deref(), Some("123"));
        assert_eq!(found[1].0, 3);
        assert_eq!(found[1].1.email, "b@x.test");
        assert_eq!(found[1].1.name, None);
        assert_eq!(found[2].0, 4);
        assert_eq!(found[2].1.name, None);
        assert_eq!(found[2].1.organization.as_deref(), Some("Org"));
        assert!(invitees(" \n\n").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let why = "`invitees[1].email` is not an email address: `x`";
        assert_eq!(
            by_line(why, &[1, 4]),
            "line 4: `email` is not an email address: `x`"
        );
    }

    #[test]
    fn expiry_dates() {
        assert_eq!(expiry(" ").unwrap(), None);
        assert_eq!(
            expiry("2027-01-31").unwrap().unwrap().to_string(),
            "2027-01-31T23:59:59Z"
        );
        assert_eq!(
            expiry("2027-01-31T10:00:00Z").unwrap().unwrap().to_string(),
            "2027-01-31T10:00:00Z"
        );
        assert!(expiry("next week").is_err());
    }
}
