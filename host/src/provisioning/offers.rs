//! Offers and their invitees, from the provider's side: who may offer a
//! service, making an offer (and its expiry flow, in the same
//! transaction), adding invitees with their links, and the status of each.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Provisioning, ProvisioningError, Reader, User, email, line, ms, optional_line, when};
use crate::secret;
use crate::store::provisioning::{self as q, InviteeRow, OfferRow};
use crate::store::{self, Conn, StoreError, new_id};

/// The most invitees one call may add.
pub const MAX_INVITEES: usize = 1000;
/// The most offers a provider's listing shows.
pub const MAX_OFFERS: u32 = 200;

/// The body of `POST /v1/offers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    pub service: String,
    pub description: String,
    /// When it expires; `[provisioning] offer_days` from now when absent.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Whether those who accept may offer the service onwards.
    #[serde(default)]
    pub onwards: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfferCreated {
    pub id: String,
    pub service: String,
    pub expires_at: String,
    pub expiry_chosen: bool,
    pub onwards: bool,
    /// The provider's permission it is offered under, when not an owner's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_permission: Option<i64>,
}

/// One invitee as the provider knows them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitee {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// The body of `POST /v1/offers/{id}/invitees`: one or many.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitees {
    pub invitees: Vec<NewInvitee>,
    /// Mail each link (true) or return it to send yourself (false).
    #[serde(default = "yes")]
    pub send: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize)]
pub struct InviteeCreated {
    pub id: String,
    pub email: String,
    /// The link, when the provider sends it (`send: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where it was mailed (`send: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
}

/// An invitee's status.
#[derive(Debug, Clone, Serialize)]
pub struct InviteeView {
    pub id: String,
    pub offer: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub invited_at: i64,
    pub registered: bool,
    #[serde(serialize_with = "store::serde_ms::opt_time")]
    pub registered_at: Option<i64>,
    /// The user who registered or signed in through the invitation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub accepted: bool,
    #[serde(serialize_with = "store::serde_ms::opt_time")]
    pub accepted_at: Option<i64>,
    pub declined: bool,
    #[serde(serialize_with = "store::serde_ms::opt_time")]
    pub declined_at: Option<i64>,
    /// Whether the offer has expired.
    pub offer_expired: bool,
}

impl InviteeView {
    pub(super) fn new(row: InviteeRow, offer_expired: bool) -> InviteeView {
        InviteeView {
            id: row.id,
            offer: row.offer_id,
            email: row.email,
            name: row.name,
            organization: row.organization,
            phone: row.phone,
            invited_at: row.created_at,
            registered: row.registered_at.is_some(),
            registered_at: row.registered_at,
            user: row.user_id,
            accepted: row.accepted_at.is_some(),
            accepted_at: row.accepted_at,
            declined: row.declined_at.is_some(),
            declined_at: row.declined_at,
            offer_expired,
        }
    }
}

/// An offer with every invitee's status.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    pub id: String,
    pub service: String,
    pub service_name: String,
    pub organization: String,
    pub provider: String,
    pub description: String,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub created_at: i64,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub expires_at: i64,
    pub expiry_chosen: bool,
    pub expired: bool,
    pub onwards: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_permission: Option<i64>,
    pub invitees: Vec<InviteeView>,
}

/// An offer in a provider's list.
#[derive(Debug, Clone, Serialize)]
pub struct OfferSummary {
    pub id: String,
    pub service: String,
    pub service_name: String,
    pub description: String,
    #[serde(serialize_with = "store::serde_ms::time")]
    pub expires_at: i64,
    pub expired: bool,
}

/// Whether the offer is past its expiry at `now` (or its flow ran).
pub(super) fn expired(offer: &OfferRow, now: i64) -> bool {
    offer.expired_at.is_some() || offer.expires_at <= now
}

pub(super) fn expired_error(offer: &OfferRow) -> ProvisioningError {
    ProvisioningError::Expired {
        offer: offer.id.clone(),
        at: when(offer.expires_at),
    }
}

/// Under what `user` may offer `service`: `Ok(None)` as an administrator of
/// an organization that owns it, `Ok(Some(permission))` as a grantee
/// allowed to offer it onwards; otherwise why not.
fn offering_right(
    conn: &Conn<'_>,
    user: &User,
    service: &str,
) -> Result<Option<i64>, ProvisioningError> {
    if user.admin && q::owns(conn, &user.organization, service)? {
        return Ok(None);
    }
    let held = q::permissions_held(conn, &user.id, Some(service))?;
    if let Some(p) = held.iter().rev().find(|p| p.may_offer) {
        return Ok(Some(p.id));
    }
    let why = if q::owns(conn, &user.organization, service)? {
        "only an administrator of the owning organization may offer it"
    } else if held.is_empty() {
        "your organization does not own it and you hold no permission for it"
    } else {
        "your permission for it does not let you offer it onwards"
    };
    Err(ProvisioningError::Forbidden(format!(
        "user `{}` may not offer service `{service}`: {why}",
        user.id
    )))
}

impl Provisioning {
    /// `POST /v1/offers`.
    pub fn make_offer(
        &self,
        user: &User,
        new: NewOffer,
    ) -> Result<OfferCreated, ProvisioningError> {
        self.known_service(&new.service)?;
        let description = line("description", &new.description, 2000)?;
        let now = store::now_ms();
        let (expires_at, chosen) = match new.expires_at {
            None => (now.saturating_add(ms(self.settings.default_expiry)), false),
            Some(at) => {
                let at = at.as_millisecond();
                if at <= now {
                    return Err(ProvisioningError::Invalid(format!(
                        "`expires_at` ({}) is not in the future",
                        when(at)
                    )));
                }
                let furthest = now.saturating_add(ms(self.settings.max_expiry));
                if at > furthest {
                    return Err(ProvisioningError::Invalid(format!(
                        "`expires_at` ({}) is further than {} days ahead",
                        when(at),
                        self.settings.max_expiry.as_secs() / 86_400
                    )));
                }
                (at, true)
            }
        };
        let id = new_id("ofr", 8);
        let (created, flow) = self.store.write(|tx| {
            let via = offering_right(tx, user, &new.service)?;
            let row = OfferRow {
                id: id.clone(),
                service: new.service.clone(),
                organization_id: user.organization.clone(),
                provider_id: user.id.clone(),
                description,
                onwards: new.onwards,
                via_permission: via,
                expires_at,
                expiry_chosen: chosen,
                expired_at: None,
                created_at: now,
            };
            q::insert_offer(tx, &row)?;
            // The expiry timer commits with the offer, or neither does.
            let flow = super::expiry::start(&self.engine, tx, &row)?;
            let created = OfferCreated {
                id: row.id,
                service: row.service,
                expires_at: when(expires_at),
                expiry_chosen: chosen,
                onwards: row.onwards,
                via_permission: via,
            };
            Ok::<_, ProvisioningError>((created, flow))
        })?;
        // Sets the timer now rather than at the flow driver's next round.
        if let Err(e) = self.engine.advance(&flow) {
            tracing::warn!(%flow, "offer expiry flow: {e}; the flow driver will set its timer");
        }
        tracing::info!(offer = %created.id, service = %created.service, provider = %user.id, "offer made");
        Ok(created)
    }

    /// The offer, if `user` made it; 404 otherwise (another's offer is as
    /// good as none).
    fn own_offer(
        &self,
        conn: &Conn<'_>,
        user: &User,
        offer: &str,
    ) -> Result<OfferRow, ProvisioningError> {
        q::get_offer(conn, offer)?
            .filter(|o| o.provider_id == user.id)
            .ok_or_else(|| ProvisioningError::not_found("offer", offer))
    }

    /// `POST /v1/offers/{id}/invitees`: each invitee gets a link with a key
    /// of its own, mailed or returned.
    pub fn add_invitees(
        &self,
        user: &User,
        offer_id: &str,
        new: NewInvitees,
    ) -> Result<Vec<InviteeCreated>, ProvisioningError> {
        if new.invitees.is_empty() {
            return Err(ProvisioningError::Invalid(
                "`invitees` is empty; give at least one".into(),
            ));
        }
        if new.invitees.len() > MAX_INVITEES {
            return Err(ProvisioningError::Invalid(format!(
                "{} invitees in one call; at most {MAX_INVITEES}",
                new.invitees.len()
            )));
        }
        let mut rows = Vec::with_capacity(new.invitees.len());
        let mut keys = Vec::with_capacity(new.invitees.len());
        let now = store::now_ms();
        for (n, invitee) in new.invitees.iter().enumerate() {
            let field = |f: &str| format!("invitees[{n}].{f}");
            let key = super::invitation::new_key()?;
            rows.push(InviteeRow {
                id: new_id("inv", 8),
                offer_id: offer_id.to_owned(),
                email: email(&field("email"), &invitee.email)?,
                name: optional_line(&field("name"), invitee.name.as_deref(), 200)?,
                organization: optional_line(
                    &field("organization"),
                    invitee.organization.as_deref(),
                    200,
                )?,
                phone: optional_line(&field("phone"), invitee.phone.as_deref(), 64)?,
                key_hash: secret::digest(&key),
                created_at: now,
                user_id: None,
                registered_at: None,
                accepted_at: None,
                declined_at: None,
            });
            keys.push(key);
        }
        let created = self.store.write(|tx| {
            let offer = self.own_offer(tx, user, offer_id)?;
            if expired(&offer, now) {
                return Err(expired_error(&offer));
            }
            let service = self.service_name(&offer.service);
            let mut created = Vec::with_capacity(rows.len());
            for (row, key) in rows.iter().zip(&keys) {
                q::insert_invitee(tx, row)?;
                let url = self.invitation_url(&row.id, key);
                let sent_to = if new.send {
                    let text = format!(
                        "{} ({}) offers you the service {service}:\n\n{}\n\nOpen this link to see the offer, register and accept it (it works until {}):\n{url}\n",
                        user.name,
                        offer.organization_id,
                        offer.description,
                        when(offer.expires_at),
                    );
                    let to_name = row.name.as_deref().unwrap_or("");
                    super::mail(&self.settings, tx, &row.email, to_name, &format!("An offer of {service}"), &text, now)?;
                    Some(row.email.clone())
                } else {
                    None
                };
                created.push(InviteeCreated {
                    id: row.id.clone(),
                    email: row.email.clone(),
                    url: (!new.send).then_some(url),
                    sent_to,
                });
            }
            Ok(created)
        })?;
        if new.send {
            self.outbox_signal.raise();
        }
        Ok(created)
    }

    /// The link an invitee opens.
    pub(super) fn invitation_url(&self, invitee: &str, key: &str) -> String {
        format!(
            "{}/invite/{invitee}?key={key}",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    /// May `reader` see this offer: its provider, or an operator.
    fn readable_offer(
        &self,
        conn: &Conn<'_>,
        reader: Reader<'_>,
        offer: &str,
    ) -> Result<OfferRow, ProvisioningError> {
        match reader {
            Reader::User(user) => self.own_offer(conn, user, offer),
            Reader::Operator => q::get_offer(conn, offer)?
                .ok_or_else(|| ProvisioningError::not_found("offer", offer)),
        }
    }

    /// `GET /v1/offers/{id}`: the offer and every invitee's status.
    pub fn offer(&self, reader: Reader<'_>, offer: &str) -> Result<OfferView, ProvisioningError> {
        let now = store::now_ms();
        let (row, invitees) = self.store.read(|c| {
            let row = self.readable_offer(c, reader, offer)?;
            let invitees = q::invitees_of(c, offer)?;
            Ok::<_, ProvisioningError>((row, invitees))
        })?;
        let is_expired = expired(&row, now);
        Ok(OfferView {
            service_name: self.service_name(&row.service),
            invitees: invitees
                .into_iter()
                .map(|i| InviteeView::new(i, is_expired))
                .collect(),
            id: row.id,
            service: row.service,
            organization: row.organization_id,
            provider: row.provider_id,
            description: row.description,
            created_at: row.created_at,
            expires_at: row.expires_at,
            expiry_chosen: row.expiry_chosen,
            expired: is_expired,
            onwards: row.onwards,
            via_permission: row.via_permission,
        })
    }

    /// `GET /v1/offers/{id}/invitees/{iid}`.
    pub fn invitee(
        &self,
        reader: Reader<'_>,
        offer: &str,
        invitee: &str,
    ) -> Result<InviteeView, ProvisioningError> {
        let now = store::now_ms();
        let (row, found) = self.store.read(|c| {
            let row = self.readable_offer(c, reader, offer)?;
            let found = q::get_invitee(c, invitee)?.filter(|i| i.offer_id == offer);
            Ok::<_, ProvisioningError>((row, found))
        })?;
        let found = found.ok_or_else(|| ProvisioningError::not_found("invitee", invitee))?;
        Ok(InviteeView::new(found, expired(&row, now)))
    }

    /// The offers `user` made, newest first.
    pub fn offers_of(&self, user: &User) -> Result<Vec<OfferSummary>, ProvisioningError> {
        let now = store::now_ms();
        let rows = self.store.read(|c| q::offers_by(c, &user.id, MAX_OFFERS))?;
        Ok(rows
            .into_iter()
            .map(|o| OfferSummary {
                service_name: self.service_name(&o.service),
                expired: expired(&o, now),
                id: o.id,
                service: o.service,
                description: o.description,
                expires_at: o.expires_at,
            })
            .collect())
    }

    /// The services `user` may offer: their organization's (as an
    /// administrator) and those their permissions let them offer onwards.
    pub fn offerable(&self, user: &User) -> Result<Vec<String>, ProvisioningError> {
        let mut services = self.store.read(|c| {
            let mut services = if user.admin {
                q::owned_services(c, &user.organization)?
            } else {
                Vec::new()
            };
            for p in q::permissions_held(c, &user.id, None)? {
                if p.may_offer {
                    services.push(p.service);
                }
            }
            Ok::<_, StoreError>(services)
        })?;
        services.sort();
        services.dedup();
        Ok(services)
    }
}
