//! Provisioning: who may use which service, and how they come to.
//!
//! Organizations own services; users belong to one organization, some are
//! its administrators, and sign in with an id and a password (Argon2id,
//! `password.rs`; too many wrong ones lock the user for a while). An
//! administrator of the owning organization, or a user whose permission
//! lets them offer a service onwards, makes an **offer** of it with an
//! expiry (`offers.rs`) and adds **invitees** to it, each with a link
//! carrying a random key kept only as a SHA-256. An invitee opens the
//! link, confirms the email the provider gave, registers (or signs in),
//! and accepts or declines the terms (`invitation.rs`); accepting records a
//! **permission** (grantor: the provider; grantee: the invitee), at most
//! one per invitation. The **directory** (`directory.rs`) is what each
//! user can see and use, rewritten in every transaction that changes what
//! it derives from. An offer's expiry is a timer flow on the flow engine
//! (`expiry.rs`): a restart loses nothing. Sign-ins (browser sessions and
//! API tokens) and one-use form tokens are in `signin.rs`.
//!
//! Every call here blocks (SQLite, Argon2): callers run them off the async
//! runtime. Every refusal leaves the store as it was.

mod directory;
mod expiry;
mod invitation;
mod offers;
pub mod password;
mod signin;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use directory::{DirectoryEntry, DirectoryView};
pub use expiry::install;
pub use invitation::{Answered, InvitationView, Prefill, Registration};
pub use offers::{
    InviteeCreated, InviteeView, NewInvitee, NewInvitees, NewOffer, OfferCreated, OfferSummary,
    OfferView,
};
pub use signin::{FormError, IssuedToken, PREFIX as TOKEN_PREFIX, SiteSession, SiteState};

use crate::entitlement::valid_id;
use crate::flow::{FlowEngine, FlowError};
use crate::notify::Signal;
use crate::registry::Registry;
use crate::store::provisioning::{self as q, OrganizationRow, UserRow};
use crate::store::{self, Store, StoreError, Tx, outbox, rfc3339};
use crate::text;

/// Why a provisioning call was refused. Every refusal leaves the store as
/// it was.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("{0}")]
    Invalid(String),
    #[error("no service `{0}`; `GET /v1/services` lists them")]
    UnknownService(String),
    #[error("{what} `{id}` exists already; choose another id")]
    Exists { what: &'static str, id: String },
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("wrong user id or password")]
    BadCredentials,
    #[error("too many wrong passwords: user locked until {until}; try again then")]
    Locked { until: String, retry_after: u64 },
    #[error("this link is not valid; ask the provider of the offer for a new one")]
    WrongLink,
    #[error("access denied: that is not the email this invitation was sent for")]
    AccessDenied,
    #[error("offer `{offer}` has expired (at {at})")]
    Expired { offer: String, at: String },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Form(#[from] FormError),
    #[error("no secure randomness available: {0}")]
    Random(String),
    #[error("cannot hash a password: {0}")]
    Hash(String),
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProvisioningError {
    /// The code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ProvisioningError::Invalid(_) => "invalid",
            ProvisioningError::UnknownService(_) => "unknown-service",
            ProvisioningError::Exists { .. } => "exists",
            ProvisioningError::NotFound { .. } => "not-found",
            ProvisioningError::Forbidden(_) => "forbidden",
            ProvisioningError::BadCredentials => "bad-credentials",
            ProvisioningError::Locked { .. } => "locked",
            ProvisioningError::WrongLink => "wrong-link",
            ProvisioningError::AccessDenied => "access-denied",
            ProvisioningError::Expired { .. } => "offer-expired",
            ProvisioningError::Conflict(_) => "conflict",
            ProvisioningError::Form(_) => "form",
            ProvisioningError::Random(_) | ProvisioningError::Hash(_) => "internal",
            ProvisioningError::Flow(_) | ProvisioningError::Store(_) => "internal",
        }
    }

    fn not_found(what: &'static str, id: &str) -> ProvisioningError {
        ProvisioningError::NotFound {
            what,
            id: id.to_owned(),
        }
    }
}

/// `[provisioning]` in the settings file, with the public URL and mail.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public site's base URL (invitation links are built on it).
    pub public_url: String,
    /// Whether mail goes out over SMTP; without, it is held in the outbox.
    pub mail: bool,
    /// An offer's expiry when the provider chooses none.
    pub default_expiry: Duration,
    /// The furthest expiry a provider may choose.
    pub max_expiry: Duration,
    /// Wrong passwords in a row that lock a user.
    pub max_attempts: i64,
    /// How long the lock lasts.
    pub lock: Duration,
    /// How long a browser's sign-in lasts.
    pub site_session: Duration,
    /// How long an API token obtained with a password lasts.
    pub api_token: Duration,
    /// How long a form may be left open before it is stale.
    pub form: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            public_url: "http://127.0.0.1:7701".into(),
            mail: false,
            default_expiry: Duration::from_secs(60 * 86_400),
            max_expiry: Duration::from_secs(366 * 86_400),
            max_attempts: 5,
            lock: Duration::from_secs(15 * 60),
            site_session: Duration::from_secs(8 * 3600),
            api_token: Duration::from_secs(3600),
            form: Duration::from_secs(3600),
        }
    }
}

/// A signed-in user, as the calls here take them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub organization: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
}

impl From<&UserRow> for User {
    fn from(u: &UserRow) -> User {
        User {
            id: u.id.clone(),
            organization: u.organization_id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            admin: u.admin,
        }
    }
}

/// Who reads: a user (who sees what is theirs) or an API token of role
/// operator or viewer (who sees everything).
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    User(&'a User),
    Operator,
}

/// The body of `POST /v1/organizations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrganization {
    pub id: String,
    pub name: String,
    /// The services it owns (known services).
    #[serde(default)]
    pub owns: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrganizationView {
    pub id: String,
    pub name: String,
    pub owns: Vec<String>,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub created_at: i64,
}

/// The body of `POST /v1/users`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub id: String,
    pub organization: String,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

/// A user as shown: never the password or its hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: String,
    pub organization: String,
    pub email: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub admin: bool,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub created_at: i64,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> UserView {
        UserView {
            id: u.id.clone(),
            organization: u.organization_id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            phone: u.phone.clone(),
            admin: u.admin,
            created_at: u.created_at,
        }
    }
}

/// A permission as shown.
#[derive(Debug, Clone, Serialize)]
pub struct PermissionView {
    pub id: i64,
    pub service: String,
    pub grantor: String,
    pub grantee: String,
    pub may_offer: bool,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub granted_at: i64,
    pub offer: String,
    pub invitee: String,
    /// The grantor's own permission, when they offered it onwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_permission: Option<i64>,
}

impl From<q::PermissionRow> for PermissionView {
    fn from(p: q::PermissionRow) -> PermissionView {
        PermissionView {
            id: p.id,
            service: p.service,
            grantor: p.grantor_id,
            grantee: p.grantee_id,
            may_offer: p.may_offer,
            granted_at: p.granted_at,
            offer: p.offer_id,
            invitee: p.invitee_id,
            via_permission: p.via_permission,
        }
    }
}

/// The most permissions one listing returns.
pub const MAX_LIST: u32 = 1000;

/// The provisioning part of the host.
pub struct Provisioning {
    store: Store,
    registry: Arc<ArcSwap<Registry>>,
    engine: Arc<FlowEngine>,
    outbox_signal: Arc<Signal>,
    settings: Settings,
}

/// A line of text a person gave: trimmed, not empty, at most `max` bytes,
/// no control characters.
fn line(field: &str, value: &str, max: usize) -> Result<String, ProvisioningError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ProvisioningError::Invalid(format!(
            "`{field}` must not be empty"
        )));
    }
    if value.len() > max {
        return Err(ProvisioningError::Invalid(format!(
            "`{field}` is longer than {max} bytes"
        )));
    }
    text::line(field, value).map_err(ProvisioningError::Invalid)?;
    Ok(value.to_owned())
}

/// An optional line: blank is none.
fn optional_line(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, ProvisioningError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => line(field, v, max).map(Some),
    }
}

/// An email address: one line with an `@` between two non-empty parts.
fn email(field: &str, value: &str) -> Result<String, ProvisioningError> {
    let value = line(field, value, 254)?;
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !value.contains(' ') =>
        {
            Ok(value)
        }
        _ => Err(ProvisioningError::Invalid(format!(
            "`{field}` is not an email address: `{value}`"
        ))),
    }
}

/// Whether two email addresses are the same person's (case folded).
fn same_email(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// An id chosen by a caller.
fn id(field: &str, value: &str) -> Result<(), ProvisioningError> {
    if valid_id(value) && value.len() <= 64 {
        Ok(())
    } else {
        Err(ProvisioningError::Invalid(format!(
            "`{field}` must be 1 to 64 printable characters without spaces, `/`, `?` or `#`"
        )))
    }
}

/// A user's id: an [`id`] without `:`, which HTTP Basic could not carry.
fn user_id(field: &str, value: &str) -> Result<(), ProvisioningError> {
    id(field, value)?;
    if value.contains(':') {
        return Err(ProvisioningError::Invalid(format!(
            "`{field}` must not contain `:` (HTTP Basic separates the id from the password with it)"
        )));
    }
    Ok(())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Provisioning {
    pub fn new(
        store: Store,
        registry: Arc<ArcSwap<Registry>>,
        engine: Arc<FlowEngine>,
        outbox_signal: Arc<Signal>,
        settings: Settings,
    ) -> Provisioning {
        Provisioning {
            store,
            registry,
            engine,
            outbox_signal,
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The service's display name, or its id when it has gone.
    fn service_name(&self, service: &str) -> String {
        self.registry
            .load()
            .service(service)
            .map_or(service.to_owned(), |s| s.manifest.display_name.clone())
    }

    fn known_service(&self, service: &str) -> Result<(), ProvisioningError> {
        if self.registry.load().service(service).is_some() {
            Ok(())
        } else {
            Err(ProvisioningError::UnknownService(service.to_owned()))
        }
    }

    /// `POST /v1/organizations` (an operator).
    pub fn create_organization(
        &self,
        new: NewOrganization,
    ) -> Result<OrganizationView, ProvisioningError> {
        id("id", &new.id)?;
        let name = line("name", &new.name, 200)?;
        let mut owns = new.owns.clone();
        owns.sort();
        owns.dedup();
        for service in &owns {
            self.known_service(service)?;
        }
        let now = store::now_ms();
        let row = OrganizationRow {
            id: new.id.clone(),
            name,
            created_at: now,
        };
        self.store.write(|tx| {
            if !q::insert_organization(tx, &row)? {
                return Err(ProvisioningError::Exists {
                    what: "organization",
                    id: row.id.clone(),
                });
            }
            for service in &owns {
                q::add_owned_service(tx, &row.id, service)?;
            }
            Ok(())
        })?;
        Ok(OrganizationView {
            id: row.id,
            name: row.name,
            owns,
            created_at: now,
        })
    }

    /// `POST /v1/users` (an operator).
    pub fn create_user(&self, new: NewUser) -> Result<UserView, ProvisioningError> {
        user_id("id", &new.id)?;
        let email = email("email", &new.email)?;
        let name = line("name", &new.name, 200)?;
        let phone = optional_line("phone", new.phone.as_deref(), 64)?;
        password::check_policy(&new.password)?;
        // Argon2 is slow: hash before the write, never inside it.
        let password_hash = password::hash(&new.password)?;
        let now = store::now_ms();
        let row = UserRow {
            id: new.id,
            organization_id: new.organization,
            email,
            name,
            phone,
            admin: new.admin,
            password_hash,
            failed_attempts: 0,
            locked_until: None,
            created_at: now,
        };
        self.store.write(|tx| {
            if q::get_organization(tx, &row.organization_id)?.is_none() {
                return Err(ProvisioningError::Invalid(format!(
                    "no organization `{}`; create it first with `POST /v1/organizations`",
                    row.organization_id
                )));
            }
            insert_user(tx, &row, now)
        })?;
        Ok(UserView::from(&row))
    }

    /// A user, for the user themself, an administrator of their
    /// organization, or an operator.
    pub fn user(&self, reader: Reader<'_>, user_id: &str) -> Result<UserView, ProvisioningError> {
        let row = self
            .store
            .read(|c| q::get_user(c, user_id))?
            .ok_or_else(|| ProvisioningError::not_found("user", user_id))?;
        if !may_read_user(reader, &row) {
            return Err(ProvisioningError::not_found("user", user_id));
        }
        Ok(UserView::from(&row))
    }

    /// `GET /v1/permissions`: an operator sees all; a user those they
    /// granted or hold.
    pub fn permissions(
        &self,
        reader: Reader<'_>,
        service: Option<&str>,
        grantee: Option<&str>,
    ) -> Result<Vec<PermissionView>, ProvisioningError> {
        let party = match reader {
            Reader::User(u) => Some(u.id.as_str()),
            Reader::Operator => None,
        };
        let rows = self
            .store
            .read(|c| q::list_permissions(c, service, grantee, party, MAX_LIST))?;
        Ok(rows.into_iter().map(PermissionView::from).collect())
    }
}

/// Inserts a user and writes their directory (an error when the id is taken).
fn insert_user(tx: &Tx<'_>, row: &UserRow, now: i64) -> Result<(), ProvisioningError> {
    if !q::insert_user(tx, row)? {
        return Err(ProvisioningError::Exists {
            what: "user",
            id: row.id.clone(),
        });
    }
    directory::refresh(tx, &row.id, now)?;
    Ok(())
}

fn may_read_user(reader: Reader<'_>, row: &UserRow) -> bool {
    match reader {
        Reader::Operator => true,
        Reader::User(u) => u.id == row.id || (u.admin && u.organization == row.organization_id),
    }
}

/// A message to someone through the outbox: a mail, held when no SMTP
/// server is configured.
fn mail(
    settings: &Settings,
    tx: &Tx<'_>,
    to: &str,
    to_name: &str,
    subject: &str,
    text: &str,
    now: i64,
) -> Result<(), StoreError> {
    let data = json!({"to": to, "to_name": to_name, "subject": subject, "text": text});
    let target = settings.mail.then(|| format!("mailto:{to}"));
    if target.is_none() {
        tracing::info!(%to, %subject, "mail held in the outbox (no SMTP server configured)");
    }
    outbox::enqueue(tx, "mail", target.as_deref(), &data, now)?;
    Ok(())
}

/// The time shown for a stored one.
fn when(ms: i64) -> String {
    rfc3339(ms)
}
