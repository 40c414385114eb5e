//! Signing in: a user's id and password (too many wrong ones in a row lock
//! the user), and what a sign-in yields: an API token (`rhu_` and 64 hex
//! digits, for `Authorization: Bearer`) or a browser's session (a cookie of
//! the same shape). Only a SHA-256 of either is stored, as for API tokens
//! (`crate::auth`): they are random, so a fast hash is enough.
//!
//! A browser gets a session before it signs in (to carry the invitation it
//! confirmed and to bind its forms); signing in replaces it with a new one,
//! so a session id seen before sign-in is worth nothing after.
//!
//! Forms are bound by one-use tokens: each rendered form gets a token tied
//! to the browser's session, the form and its subject (an invitation, an
//! offer), valid for `[provisioning] form_minutes`. A token from another
//! session, for another form or subject, expired, or used already is
//! refused, and nothing else happens.

use serde::Serialize;

use super::{Provisioning, ProvisioningError, User, ms, password};
use crate::secret;
use crate::store::provisioning::{self as q, UserSessionRow};
use crate::store::{self, StoreError, rfc3339};

/// The prefix of a user's API token and of a browser session's cookie.
pub const PREFIX: &str = "rhu_";
const SECRET_BYTES: usize = 32;

/// A fresh secret from the OS's RNG.
fn new_secret() -> Result<String, ProvisioningError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| ProvisioningError::Random(e.to_string()))?;
    Ok(format!("{PREFIX}{}", hex::encode(bytes)))
}

/// Whether `text` has the shape of a secret made here.
pub fn well_formed(text: &str) -> bool {
    text.strip_prefix(PREFIX).is_some_and(|hex| {
        hex.len() == SECRET_BYTES * 2 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Why a form's submit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("this form is not from this browser's session, or is too old; open the page again")]
    Unknown,
    #[error("this form is for another page; open the page again")]
    OtherSubject,
    #[error("this form was left open too long; open the page again")]
    Stale,
    #[error("this form was sent already; nothing more was done")]
    Replayed,
}

/// A token made with a password.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub user: String,
    pub expires_at: String,
}

/// A browser session just made: the cookie's value and its end.
#[derive(Debug, Clone)]
pub struct SiteSession {
    pub cookie: String,
    pub expires_at: i64,
    /// Seconds it lasts, for the cookie's `Max-Age`.
    pub max_age: u64,
}

/// What a browser session holds.
#[derive(Debug, Clone)]
pub struct SiteState {
    pub user: Option<User>,
    /// The invitation whose email this browser confirmed.
    pub invitee: Option<String>,
}

impl Provisioning {
    /// The user with this id and password. Wrong passwords count; the
    /// `max_attempts`-th in a row locks the user for `lock`, during which
    /// even the right one is refused. An unknown id costs the time of a
    /// wrong password and says the same.
    pub fn authenticate(&self, user_id: &str, password: &str) -> Result<User, ProvisioningError> {
        let now = store::now_ms();
        let Some(row) = self.store.read(|c| q::get_user(c, user_id))? else {
            password::waste_a_verification(password);
            return Err(ProvisioningError::BadCredentials);
        };
        if let Some(until) = row.locked_until.filter(|until| *until > now) {
            return Err(locked(until, now));
        }
        let right = password::verify(password, &row.password_hash);
        let settings = &self.settings;
        // The count of wrong passwords must commit, so the closure answers
        // Ok whatever the outcome (an Err would roll it back).
        self.store.write(|tx| {
            // Again in the write: sign-ins sent side by side all passed the
            // read above; one that locked the user locks the others out, the
            // right password among them.
            let now = store::now_ms();
            let current = q::get_user(tx, &row.id)?;
            if let Some(until) = current
                .as_ref()
                .and_then(|u| u.locked_until)
                .filter(|until| *until > now)
            {
                return Ok::<_, StoreError>(Err(locked(until, now)));
            }
            if right {
                if row.failed_attempts > 0 || row.locked_until.is_some() {
                    q::clear_failures(tx, &row.id)?;
                }
                return Ok(Ok(User::from(&row)));
            }
            let failures = q::count_failure(tx, &row.id)?;
            if failures >= settings.max_attempts {
                let until = now.saturating_add(ms(settings.lock));
                q::lock_user(tx, &row.id, until)?;
                tracing::warn!(user = %row.id, until = %rfc3339(until), "user locked after wrong passwords");
                return Ok(Err(locked(until, now)));
            }
            Ok(Err(ProvisioningError::BadCredentials))
        })?
    }

    /// An API token for `user`, valid for `[provisioning] api_token_minutes`.
    pub fn issue_token(&self, user: &User) -> Result<IssuedToken, ProvisioningError> {
        let token = new_secret()?;
        let now = store::now_ms();
        let expires_at = now.saturating_add(ms(self.settings.api_token));
        let row = UserSessionRow {
            hash: secret::digest(&token),
            kind: "api".into(),
            user_id: Some(user.id.clone()),
            invitee_id: None,
            created_at: now,
            expires_at,
        };
        self.store.write(|tx| q::insert_session(tx, &row))?;
        Ok(IssuedToken {
            token,
            user: user.id.clone(),
            expires_at: rfc3339(expires_at),
        })
    }

    /// The user an unexpired API token belongs to.
    pub fn user_of_token(&self, token: &str) -> Result<Option<User>, ProvisioningError> {
        self.signed_in(token, "api")
            .map(|s| s.and_then(|(_, user)| user))
    }

    /// The session `secret` names, if it is of `kind` and unexpired, with
    /// its user.
    fn signed_in(
        &self,
        secret: &str,
        kind: &str,
    ) -> Result<Option<(UserSessionRow, Option<User>)>, ProvisioningError> {
        if !well_formed(secret) {
            return Ok(None);
        }
        let hash = secret::digest(secret);
        let now = store::now_ms();
        Ok(self.store.read(|c| {
            let Some(session) = q::get_session(c, &hash, now)?.filter(|s| s.kind == kind) else {
                return Ok::<_, StoreError>(None);
            };
            let user = match &session.user_id {
                Some(id) => q::get_user(c, id)?.map(|u| User::from(&u)),
                None => None,
            };
            Ok(Some((session, user)))
        })?)
    }

    /// A new browser session: signed in as `user` when given, carrying
    /// `invitee`. The old one (`replacing`) ends.
    pub fn open_site_session(
        &self,
        replacing: Option<&str>,
        user: Option<&User>,
        invitee: Option<&str>,
    ) -> Result<SiteSession, ProvisioningError> {
        let cookie = new_secret()?;
        let now = store::now_ms();
        let expires_at = now.saturating_add(ms(self.settings.site_session));
        let row = UserSessionRow {
            hash: secret::digest(&cookie),
            kind: "site".into(),
            user_id: user.map(|u| u.id.clone()),
            invitee_id: invitee.map(str::to_owned),
            created_at: now,
            expires_at,
        };
        let old = replacing.filter(|c| well_formed(c)).map(secret::digest);
        self.store.write(|tx| {
            if let Some(old) = &old {
                q::delete_session(tx, old)?;
            }
            // What expires is deleted by the pruner (`store::retention`).
            q::insert_session(tx, &row)
        })?;
        Ok(SiteSession {
            cookie,
            expires_at,
            max_age: self.settings.site_session.as_secs(),
        })
    }

    /// What the browser session `cookie` holds; `None` when it is unknown
    /// or expired.
    pub fn site_state(&self, cookie: &str) -> Result<Option<SiteState>, ProvisioningError> {
        Ok(self
            .signed_in(cookie, "site")?
            .map(|(session, user)| SiteState {
                user,
                invitee: session.invitee_id,
            }))
    }

    /// Records that the browser session confirmed `invitee`'s email.
    pub fn remember_invitee(&self, cookie: &str, invitee: &str) -> Result<(), ProvisioningError> {
        let Some((session, _)) = self.signed_in(cookie, "site")? else {
            return Err(FormError::Unknown.into());
        };
        self.store.write(|tx| {
            q::update_session(tx, &session.hash, session.user_id.as_deref(), Some(invitee))
        })?;
        Ok(())
    }

    /// Revokes every API token of `user` (a password's way out when a
    /// token was lost); how many.
    pub fn revoke_tokens(&self, user: &User) -> Result<usize, ProvisioningError> {
        Ok(self.store.write(|tx| q::delete_api_tokens(tx, &user.id))?)
    }

    /// Ends a browser session or an API token.
    pub fn sign_out(&self, secret: &str) -> Result<(), ProvisioningError> {
        if well_formed(secret) {
            let hash = secret::digest(secret);
            self.store.write(|tx| q::delete_session(tx, &hash))?;
        }
        Ok(())
    }

    /// A one-use token for `form` about `subject`, bound to the session.
    pub fn form_token(
        &self,
        cookie: &str,
        form: &str,
        subject: &str,
    ) -> Result<String, ProvisioningError> {
        if self.signed_in(cookie, "site")?.is_none() {
            return Err(FormError::Unknown.into());
        }
        let token = new_secret()?;
        let expires_at = store::now_ms().saturating_add(ms(self.settings.form));
        let (hash, session) = (secret::digest(&token), secret::digest(cookie));
        self.store
            .write(|tx| q::insert_form_token(tx, &hash, &session, form, subject, expires_at))?;
        Ok(token)
    }

    /// Uses a form's token: it must be this session's, for this form and
    /// subject, unexpired and unused. Once used, it never passes again.
    pub fn take_form_token(
        &self,
        cookie: &str,
        form: &str,
        subject: &str,
        token: &str,
    ) -> Result<(), ProvisioningError> {
        if !well_formed(cookie) || !well_formed(token) {
            return Err(FormError::Unknown.into());
        }
        let (hash, session) = (secret::digest(token), secret::digest(cookie));
        let now = store::now_ms();
        self.store.write(|tx| {
            let Some(row) = q::get_form_token(tx, &hash)? else {
                return Err(FormError::Unknown.into());
            };
            if !secret::same(&row.session_hash, &session) {
                return Err(FormError::Unknown.into());
            }
            if row.form != form || row.subject != subject {
                return Err(FormError::OtherSubject.into());
            }
            if row.used_at.is_some() {
                return Err(FormError::Replayed.into());
            }
            if row.expires_at <= now {
                return Err(FormError::Stale.into());
            }
            if !q::use_form_token(tx, &hash, now)? {
                return Err(FormError::Replayed.into());
            }
            Ok(())
        })
    }
}

fn locked(until: i64, now: i64) -> ProvisioningError {
    let seconds = u64::try_from((until - now).max(0))
        .unwrap_or(0)
        .div_ceil(1000);
    ProvisioningError::Locked {
        until: rfc3339(until),
        retry_after: seconds.max(1),
    }
}
