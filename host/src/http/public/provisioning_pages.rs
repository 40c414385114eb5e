//! The provisioning pages (invitations, the provider's pages), rendered
//! from `templates/` through the site's one template environment
//! (`pages.rs`). Pure functions of what provisioning answered, so every
//! page is unit-tested here; every value is autoescaped, and addresses are
//! built from percent-encoded segments before they are marked `safe`.

use axum::http::StatusCode;
use serde::Serialize;

use super::pages::{Deadline, deadline, encode_segment, render};
use crate::provisioning::{
    InvitationView, InviteeCreated, InviteeView, OfferSummary, OfferView, ProvisioningError, User,
};
use crate::store::rfc3339;

/// An invitation's address: `/invite/<iid><rest>`, the id encoded.
pub(super) fn invite_path(invitee: &str, rest: &str) -> String {
    format!("/invite/{}{rest}", encode_segment(invitee))
}

/// An invitation's address with its key in the query.
pub(super) fn invite_link(invitee: &str, rest: &str, key: &str) -> String {
    format!("{}?key={}", invite_path(invitee, rest), encode_segment(key))
}

/// An offer's page for its provider.
pub(super) fn offer_path(offer: &str) -> String {
    format!("/provider/offers/{}", encode_segment(offer))
}

fn time(ms: i64) -> Deadline {
    deadline(&rfc3339(ms))
}

/// A notice worth showing: a blank one is none.
fn notice(notice: Option<&str>) -> Option<&str> {
    notice.filter(|n| !n.trim().is_empty())
}

// ---------------------------------------------------------------------------
// The invitee's pages.

/// What every invitation page shows of the offer.
#[derive(Serialize)]
struct Offered<'a> {
    service_name: &'a str,
    description: &'a str,
    provider_name: &'a str,
    provider_organization: &'a str,
    expires: Deadline,
}

fn offered(view: &InvitationView) -> Offered<'_> {
    Offered {
        service_name: &view.service_name,
        description: &view.description,
        provider_name: &view.provider_name,
        provider_organization: &view.provider_organization,
        expires: deadline(&view.expires_at),
    }
}

/// Step 1: confirm the email (the form carries the key and `token`).
pub fn render_invitation(
    view: &InvitationView,
    key: &str,
    token: &str,
    note: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        #[serde(flatten)]
        offered: Offered<'a>,
        key: &'a str,
        token: &'a str,
        notice: Option<&'a str>,
        action: String,
    }
    render(
        "invite.html",
        &View {
            offered: offered(view),
            key,
            token,
            notice: notice(note),
            action: invite_path(&view.invitee, "/confirm"),
        },
    )
}

/// Step 2: the offer, with the ways on.
pub fn render_offer(view: &InvitationView, key: &str) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        #[serde(flatten)]
        offered: Offered<'a>,
        may_register: bool,
        register: String,
        signin: String,
    }
    render(
        "offer.html",
        &View {
            offered: offered(view),
            may_register: view.user.is_none(),
            register: invite_link(&view.invitee, "/register", key),
            signin: invite_link(&view.invitee, "/signin", key),
        },
    )
}

/// What the registration form holds (the password never goes back).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegisterFields {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub organization: String,
    pub phone: String,
}

impl RegisterFields {
    /// The form as the provider's details prefill it.
    pub fn prefilled(view: &InvitationView) -> RegisterFields {
        RegisterFields {
            user_id: String::new(),
            email: view.prefill.email.clone(),
            name: view.prefill.name.clone(),
            organization: view.prefill.organization.clone(),
            phone: view.prefill.phone.clone(),
        }
    }
}

/// Step 3: the registration form.
pub fn render_register(
    view: &InvitationView,
    key: &str,
    token: &str,
    form: &RegisterFields,
    note: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        service_name: &'a str,
        key: &'a str,
        token: &'a str,
        form: &'a RegisterFields,
        notice: Option<&'a str>,
        action: String,
        signin: String,
    }
    render(
        "register.html",
        &View {
            service_name: &view.service_name,
            key,
            token,
            form,
            notice: notice(note),
            action: invite_path(&view.invitee, "/register"),
            signin: invite_link(&view.invitee, "/signin", key),
        },
    )
}

#[derive(Serialize)]
struct SignIn<'a> {
    title: &'a str,
    intro: String,
    action: String,
    key: Option<&'a str>,
    token: &'a str,
    user_id: &'a str,
    notice: Option<&'a str>,
}

/// Step 4, for an invitee who has an account.
pub fn render_invite_signin(
    view: &InvitationView,
    key: &str,
    token: &str,
    user_id: &str,
    note: Option<&str>,
) -> String {
    render(
        "signin.html",
        &SignIn {
            title: "Sign in to take up the offer",
            intro: format!(
                "Sign in with the account you have, to take up the offer of {} from {}.",
                view.service_name, view.provider_name
            ),
            action: invite_path(&view.invitee, "/signin"),
            key: Some(key),
            token,
            user_id,
            notice: notice(note),
        },
    )
}

/// Step 5: the terms, with Accept and Decline.
pub fn render_terms(view: &InvitationView, user: &User, key: &str, token: &str) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        #[serde(flatten)]
        offered: Offered<'a>,
        user: &'a str,
        key: &'a str,
        token: &'a str,
        action: String,
    }
    render(
        "terms.html",
        &View {
            offered: offered(view),
            user: &user.id,
            key,
            token,
            action: invite_path(&view.invitee, "/terms"),
        },
    )
}

/// The terms' answer, as recorded now or before.
pub fn render_answered(service_name: &str, accepted: bool, again: bool) -> String {
    let (title, message) = match (accepted, again) {
        (true, false) => (
            format!("You can now use {service_name}"),
            format!("You accepted the offer: you are granted use of {service_name}."),
        ),
        (true, true) => (
            format!("You had already accepted the offer of {service_name}"),
            "You had already accepted: nothing more was recorded.".to_owned(),
        ),
        (false, false) => (
            format!("You declined the offer of {service_name}"),
            "You declined: the provider has been told. Nothing was granted.".to_owned(),
        ),
        (false, true) => (
            format!("You had already declined the offer of {service_name}"),
            "You had already declined: nothing more was recorded.".to_owned(),
        ),
    };
    #[derive(Serialize)]
    struct View {
        title: String,
        message: String,
    }
    render("answered.html", &View { title, message })
}

// ---------------------------------------------------------------------------
// The provider's pages.

/// The provider's sign-in form.
pub fn render_provider_signin(token: &str, user_id: &str, note: Option<&str>) -> String {
    render(
        "signin.html",
        &SignIn {
            title: "Sign in to your offers",
            intro: "Sign in to make offers of your services and to follow your invitees.".into(),
            action: "/provider/signin".into(),
            key: None,
            token,
            user_id,
            notice: notice(note),
        },
    )
}

/// What the make-an-offer form holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OfferFields {
    pub service: String,
    pub description: String,
    /// `YYYY-MM-DD`, or empty.
    pub expires: String,
    pub onwards: bool,
}

/// The tokens of the provider page's forms.
pub struct ProviderTokens<'a> {
    pub offer: &'a str,
    pub signout: &'a str,
}

/// A signed-in provider's page: offers, the form to make one, sign-out.
pub fn render_provider(
    user: &User,
    offers: &[OfferSummary],
    offerable: &[String],
    tokens: &ProviderTokens<'_>,
    form: &OfferFields,
    note: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct Offer<'a> {
        id: &'a str,
        href: String,
        service_name: &'a str,
        description: &'a str,
        expires: Deadline,
        expired: bool,
    }
    #[derive(Serialize)]
    struct View<'a> {
        user_id: &'a str,
        user_name: &'a str,
        organization: &'a str,
        offers: Vec<Offer<'a>>,
        offerable: &'a [String],
        offer_token: &'a str,
        signout_token: &'a str,
        form: &'a OfferFields,
        notice: Option<&'a str>,
    }
    render(
        "provider.html",
        &View {
            user_id: &user.id,
            user_name: &user.name,
            organization: &user.organization,
            offers: offers
                .iter()
                .map(|o| Offer {
                    id: &o.id,
                    href: offer_path(&o.id),
                    service_name: &o.service_name,
                    description: &o.description,
                    expires: time(o.expires_at),
                    expired: o.expired,
                })
                .collect(),
            offerable,
            offer_token: tokens.offer,
            signout_token: tokens.signout,
            form,
            notice: notice(note),
        },
    )
}

/// What the add-invitees form holds, and what the last submit made.
#[derive(Debug, Clone, Default)]
pub struct InviteesFields {
    pub lines: String,
    pub send: bool,
    pub created: Vec<InviteeCreated>,
}

/// An invitee's status in words.
fn status(i: &InviteeView) -> &'static str {
    match (i.accepted, i.declined, i.registered, i.offer_expired) {
        (true, _, _, _) => "accepted",
        (_, true, _, _) => "declined",
        (_, _, true, false) => "registered, not answered",
        (_, _, true, true) => "registered, never answered",
        (_, _, false, false) => "invited",
        (_, _, false, true) => "never registered",
    }
}

/// One offer for its provider: each invitee's status, links made just now
/// (shown this once), and the form to add more.
pub fn render_provider_offer(
    offer: &OfferView,
    token: &str,
    form: &InviteesFields,
    note: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct Invitee<'a> {
        id: &'a str,
        email: &'a str,
        name: &'a str,
        organization: Option<&'a str>,
        status: &'static str,
        user: Option<&'a str>,
        registered_at: Option<Deadline>,
        answered_at: Option<Deadline>,
    }
    #[derive(Serialize)]
    struct Created<'a> {
        email: &'a str,
        url: &'a str,
    }
    #[derive(Serialize)]
    struct View<'a> {
        id: &'a str,
        service_name: &'a str,
        description: &'a str,
        expires: Deadline,
        expired: bool,
        onwards: bool,
        invitees: Vec<Invitee<'a>>,
        created: Vec<Created<'a>>,
        mailed: bool,
        token: &'a str,
        lines: &'a str,
        send: bool,
        notice: Option<&'a str>,
        action: String,
    }
    let mailed = form.created.iter().any(|c| c.sent_to.is_some());
    render(
        "provider_offer.html",
        &View {
            id: &offer.id,
            service_name: &offer.service_name,
            description: &offer.description,
            expires: time(offer.expires_at),
            expired: offer.expired,
            onwards: offer.onwards,
            invitees: offer
                .invitees
                .iter()
                .map(|i| Invitee {
                    id: &i.id,
                    email: &i.email,
                    name: i.name.as_deref().unwrap_or(""),
                    organization: i.organization.as_deref(),
                    status: status(i),
                    user: i.user.as_deref(),
                    registered_at: i.registered_at.map(time),
                    answered_at: i.accepted_at.or(i.declined_at).map(time),
                })
                .collect(),
            created: form
                .created
                .iter()
                .map(|c| Created {
                    email: &c.email,
                    url: c.url.as_deref().unwrap_or(""),
                })
                .collect(),
            mailed,
            token,
            lines: &form.lines,
            send: form.send,
            notice: notice(note),
            action: format!("{}/invitees", offer_path(&offer.id)),
        },
    )
}

// ---------------------------------------------------------------------------
// Pages that explain.

/// A link on a notice page.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub id: &'static str,
    pub href: String,
    pub text: String,
}

/// A page that explains, with links on.
pub fn render_notice(title: &str, message: &str, detail: Option<&str>, links: &[Link]) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        title: &'a str,
        message: &'a str,
        detail: Option<&'a str>,
        links: &'a [Link],
    }
    render(
        "message.html",
        &View {
            title,
            message,
            detail: detail.filter(|d| !d.trim().is_empty()),
            links,
        },
    )
}

/// The page for a refusal of provisioning, with its status. Internal
/// failures get a generic page (the caller logs them).
pub fn render_refusal(error: &ProvisioningError) -> (StatusCode, String) {
    use crate::provisioning::FormError;
    use ProvisioningError as E;
    const NOTHING: &str = "Nothing was changed.";
    let detail = error.to_string();
    let (status, title, message, detail) = match error {
        E::WrongLink => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "This link is not valid: open it exactly as you received it, or ask the provider of the offer for a new one. Nothing was changed.",
            None,
        ),
        E::Expired { .. } => (
            StatusCode::GONE,
            "This offer has expired",
            "This offer has expired: it can no longer be taken up. Ask its provider for a new one if you still need it. Nothing was changed.",
            Some(detail),
        ),
        E::AccessDenied => (
            StatusCode::FORBIDDEN,
            "Access denied",
            "Access denied: that is not the email address this invitation was sent to. Nothing was changed.",
            None,
        ),
        E::BadCredentials => (
            StatusCode::UNAUTHORIZED,
            "Wrong user id or password",
            "Wrong user id or password. You were not signed in.",
            None,
        ),
        E::Locked { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "This user is locked for now",
            "Too many wrong passwords were tried for this user, so it does not sign in for a while. Nothing else was changed.",
            Some(detail),
        ),
        E::Form(form) => {
            let status = match form {
                FormError::Replayed => StatusCode::CONFLICT,
                FormError::Unknown | FormError::OtherSubject | FormError::Stale => {
                    StatusCode::FORBIDDEN
                }
            };
            (
                status,
                "This form cannot be used",
                "This form cannot be used: nothing was done.",
                Some(detail),
            )
        }
        E::Invalid(_) | E::UnknownService(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The form could not be used",
            NOTHING,
            Some(detail),
        ),
        E::Exists { .. } | E::Conflict(_) => (
            StatusCode::CONFLICT,
            "That cannot be done now",
            NOTHING,
            Some(detail),
        ),
        E::NotFound { .. } => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing of yours at this address. Nothing was changed.",
            None,
        ),
        E::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed", NOTHING, Some(detail)),
        E::Random(_) | E::Hash(_) | E::Flow(_) | E::Store(_) => return render_internal(),
    };
    (
        status,
        render_notice(title, message, detail.as_deref(), &[]),
    )
}

/// The page for a fault on our side.
pub fn render_internal() -> (StatusCode, String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        render_notice(
            "Something went wrong on our side",
            "Nothing was changed. Try again in a few minutes.",
            None,
            &[],
        ),
    )
}

#[cfg(test)]
#[path = "provisioning_pages_tests.rs"]
mod tests;
