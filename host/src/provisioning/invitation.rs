//! An invitation from the invitee's side: the link (its key compared in
//! constant time to the stored SHA-256), the email they confirm, the
//! registration (or a sign-in with an account they have), and the answer
//! to the terms. Every step checks the link and the offer's expiry again,
//! in the transaction that records it.

use serde::Serialize;

use super::offers::{expired, expired_error};
use super::{
    Provisioning, ProvisioningError, User, directory, email, line, optional_line, password,
    same_email, user_id, when,
};
use crate::secret;
use crate::store::provisioning::{
    self as q, InviteeRow, OfferRow, OrganizationRow, PermissionRow, UserRow,
};
use crate::store::{self, Conn, Tx, new_id};

const KEY_BYTES: usize = 32;

/// A fresh key for a link: 256 bits from the OS's RNG, in hex.
pub(super) fn new_key() -> Result<String, ProvisioningError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| ProvisioningError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// What the invitation pages show.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationView {
    pub invitee: String,
    pub offer: String,
    pub service: String,
    pub service_name: String,
    pub description: String,
    pub provider_name: String,
    pub provider_organization: String,
    pub expires_at: String,
    /// What the provider gave, to prefill the registration form.
    pub prefill: Prefill,
    /// The user who registered or signed in through it.
    pub user: Option<String>,
    pub accepted: bool,
    pub declined: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Prefill {
    pub email: String,
    pub name: String,
    pub organization: String,
    pub phone: String,
}

/// The registration form.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub user_id: String,
    pub password: String,
    pub email: String,
    pub name: String,
    pub organization: String,
    pub phone: String,
}

/// The answer to the terms, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Answered {
    pub accepted: bool,
    /// The permission accepting recorded (or had recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<super::PermissionView>,
    /// True when this answer had been given already: nothing more was recorded.
    pub again: bool,
}

/// The invitee and offer behind a right key; `WrongLink` for anything
/// else (an unknown invitee and a wrong key look the same).
fn open(
    conn: &Conn<'_>,
    invitee: &str,
    key: &str,
) -> Result<(InviteeRow, OfferRow), ProvisioningError> {
    let row = q::get_invitee(conn, invitee)?.ok_or(ProvisioningError::WrongLink)?;
    if key.len() != KEY_BYTES * 2 || !secret::same(&secret::digest(key), &row.key_hash) {
        return Err(ProvisioningError::WrongLink);
    }
    let offer = q::get_offer(conn, &row.offer_id)?.ok_or(ProvisioningError::WrongLink)?;
    Ok((row, offer))
}

/// [`open`], and the offer must still run at `now`.
fn open_running(
    conn: &Conn<'_>,
    invitee: &str,
    key: &str,
    now: i64,
) -> Result<(InviteeRow, OfferRow), ProvisioningError> {
    let (row, offer) = open(conn, invitee, key)?;
    if expired(&offer, now) {
        return Err(expired_error(&offer));
    }
    Ok((row, offer))
}

/// The invitation must be `user`'s: registered or signed in through by them.
fn owned_by(row: &InviteeRow, user: &User) -> Result<(), ProvisioningError> {
    match &row.user_id {
        Some(id) if *id == user.id => Ok(()),
        Some(_) => Err(ProvisioningError::Forbidden(
            "this invitation was taken up by another user; sign in as them".into(),
        )),
        None => Err(ProvisioningError::Conflict(
            "register or sign in through this invitation before answering its terms".into(),
        )),
    }
}

impl Provisioning {
    fn view(
        &self,
        conn: &Conn<'_>,
        row: InviteeRow,
        offer: OfferRow,
    ) -> Result<InvitationView, ProvisioningError> {
        let provider = q::get_user(conn, &offer.provider_id)?;
        let organization = q::get_organization(conn, &offer.organization_id)?;
        Ok(InvitationView {
            service_name: self.service_name(&offer.service),
            provider_name: provider.map_or(offer.provider_id.clone(), |p| p.name),
            provider_organization: organization.map_or(offer.organization_id.clone(), |o| o.name),
            expires_at: when(offer.expires_at),
            prefill: Prefill {
                email: row.email.clone(),
                name: row.name.clone().unwrap_or_default(),
                organization: row.organization.clone().unwrap_or_default(),
                phone: row.phone.clone().unwrap_or_default(),
            },
            user: row.user_id.clone(),
            accepted: row.accepted_at.is_some(),
            declined: row.declined_at.is_some(),
            invitee: row.id,
            offer: offer.id,
            service: offer.service,
            description: offer.description,
        })
    }

    /// The invitation behind a link, while its offer runs.
    pub fn invitation(
        &self,
        invitee: &str,
        key: &str,
    ) -> Result<InvitationView, ProvisioningError> {
        let now = store::now_ms();
        self.store.read(|c| {
            let (row, offer) = open_running(c, invitee, key, now)?;
            self.view(c, row, offer)
        })
    }

    /// The invitee confirms who they are by the email the provider gave.
    pub fn confirm_email(
        &self,
        invitee: &str,
        key: &str,
        email: &str,
    ) -> Result<InvitationView, ProvisioningError> {
        let view = self.invitation(invitee, key)?;
        if !same_email(&view.prefill.email, email) {
            tracing::info!(%invitee, "invitation: email not confirmed");
            return Err(ProvisioningError::AccessDenied);
        }
        Ok(view)
    }

    /// Registers the invitee: a new user, administrator of a new
    /// organization, linked to the invitation, which becomes `registered`.
    pub fn register(
        &self,
        invitee: &str,
        key: &str,
        form: Registration,
    ) -> Result<User, ProvisioningError> {
        user_id("user id", &form.user_id)?;
        let email = email("email", &form.email)?;
        let name = line("name", &form.name, 200)?;
        let organization = line("organization", &form.organization, 200)?;
        let phone = optional_line("phone", Some(&form.phone), 64)?;
        password::check_policy(&form.password)?;
        // The link and expiry are checked before the slow hash, and again
        // in the write.
        let now = store::now_ms();
        self.store.read(|c| open_running(c, invitee, key, now))?;
        let password_hash = password::hash(&form.password)?;
        let now = store::now_ms();
        let user = self.store.write(|tx| {
            let (row, offer) = open_running(tx, invitee, key, now)?;
            if row.user_id.is_some() {
                return Err(ProvisioningError::Conflict(
                    "this invitation is registered already; sign in to answer its terms".into(),
                ));
            }
            let organization_id = found_organization(tx, &organization, now)?;
            let user = UserRow {
                id: form.user_id.clone(),
                organization_id,
                email,
                name,
                phone,
                admin: true,
                password_hash,
                failed_attempts: 0,
                locked_until: None,
                created_at: now,
            };
            // Registered first, so that the user's one directory write sees
            // the invitation.
            if !q::insert_user(tx, &user)? {
                return Err(ProvisioningError::Exists {
                    what: "user",
                    id: user.id.clone(),
                });
            }
            q::set_registered(tx, &row.id, &user.id, now)?;
            directory::refresh(tx, &user.id, now)?;
            tracing::info!(invitee = %row.id, offer = %offer.id, user = %user.id, "invitee registered");
            Ok(User::from(&user))
        })?;
        Ok(user)
    }

    /// An invitee who has an account signed in: the invitation becomes
    /// theirs (`registered`, once).
    pub fn take_up(
        &self,
        invitee: &str,
        key: &str,
        user: &User,
    ) -> Result<InvitationView, ProvisioningError> {
        let now = store::now_ms();
        self.store.write(|tx| {
            let (row, offer) = open_running(tx, invitee, key, now)?;
            if row.user_id.is_none() {
                q::set_registered(tx, &row.id, &user.id, now)?;
                directory::refresh(tx, &user.id, now)?;
            }
            let row = q::get_invitee(tx, &row.id)?.ok_or(ProvisioningError::WrongLink)?;
            owned_by(&row, user)?;
            self.view(tx, row, offer)
        })
    }

    /// The terms' answer: accepting records the permission (grantor: the
    /// provider; grantee: `user`), updates the directory and tells the
    /// provider; declining records that and tells them too. The same answer
    /// again records nothing more; the other answer after one is refused.
    pub fn answer(
        &self,
        invitee: &str,
        key: &str,
        user: &User,
        accept: bool,
    ) -> Result<Answered, ProvisioningError> {
        let now = store::now_ms();
        self.store.write(|tx| {
            let (row, offer) = open_running(tx, invitee, key, now)?;
            owned_by(&row, user)?;
            let given = if row.accepted_at.is_some() {
                Some(true)
            } else if row.declined_at.is_some() {
                Some(false)
            } else {
                None
            };
            match given {
                Some(given) if given == accept => {
                    let permission = q::permission_of_invitee(tx, &row.id)?.map(Into::into);
                    return Ok(Answered {
                        accepted: accept,
                        permission,
                        again: true,
                    });
                }
                Some(given) => {
                    return Err(ProvisioningError::Conflict(format!(
                        "this invitation was {} already; that answer stands",
                        if given { "accepted" } else { "declined" }
                    )));
                }
                None => {}
            }
            if !q::set_answer(tx, &row.id, accept, now)? {
                // Answered between the read and this write: cannot happen in
                // one transaction, but never record twice.
                return Err(ProvisioningError::Conflict("this invitation was answered already".into()));
            }
            let permission = if accept {
                let grant = PermissionRow {
                    id: 0,
                    service: offer.service.clone(),
                    grantor_id: offer.provider_id.clone(),
                    grantee_id: user.id.clone(),
                    may_offer: offer.onwards,
                    granted_at: now,
                    offer_id: offer.id.clone(),
                    invitee_id: row.id.clone(),
                    via_permission: offer.via_permission,
                };
                q::insert_permission(tx, &grant)?;
                q::permission_of_invitee(tx, &row.id)?.map(Into::into)
            } else {
                None
            };
            directory::refresh(tx, &user.id, now)?;
            self.tell_provider(tx, &offer, &row, user, accept, now)?;
            tracing::info!(invitee = %row.id, offer = %offer.id, user = %user.id, accept, "invitation answered");
            Ok(Answered {
                accepted: accept,
                permission,
                again: false,
            })
        })
        .inspect(|_| self.outbox_signal.raise())
    }

    fn tell_provider(
        &self,
        tx: &Tx<'_>,
        offer: &OfferRow,
        row: &InviteeRow,
        user: &User,
        accepted: bool,
        now: i64,
    ) -> Result<(), ProvisioningError> {
        let Some(provider) = q::get_user(tx, &offer.provider_id)? else {
            return Ok(());
        };
        let service = self.service_name(&offer.service);
        let verb = if accepted { "accepted" } else { "declined" };
        let text = format!(
            "{} ({}, user {}) {verb} your offer of {service} ({}).\n",
            user.name, row.email, user.id, offer.id
        );
        super::mail(
            &self.settings,
            tx,
            &provider.email,
            &provider.name,
            &format!("Your offer of {service} was {verb}"),
            &text,
            now,
        )?;
        Ok(())
    }
}

/// A registering invitee's organization: always a new one, of the name
/// they gave, with a fresh id, and they its administrator. Never an
/// existing one by name: a provider cannot vouch anyone into an
/// organization (and its services).
fn found_organization(tx: &Tx<'_>, name: &str, now: i64) -> Result<String, ProvisioningError> {
    let org = OrganizationRow {
        id: new_id("org", 8),
        name: name.to_owned(),
        created_at: now,
    };
    if !q::insert_organization(tx, &org)? {
        return Err(ProvisioningError::Conflict(
            "a new organization's id was taken; send the form again".into(),
        ));
    }
    Ok(org.id)
}
