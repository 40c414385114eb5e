//! The directory: for each user, the services they can see and those they
//! can use. It is derived, and rewritten for a user in every transaction
//! that changes what it derives from (a user made, a registration, an
//! answer to the terms, an offer's expiry), so it never lags them:
//! - the services their organization owns: usable (`owner`);
//! - the services they hold a permission for: usable (`permission`);
//! - the services of offers they registered for and have not answered,
//!   while the offer runs: visible, not usable (`invited`).

use std::collections::BTreeMap;

use crate::store::provisioning::{self as q, DirectoryRow};
use crate::store::{StoreError, Tx};

/// Rewrites `user`'s directory from what it derives from, as of `now`.
pub(super) fn refresh(tx: &Tx<'_>, user: &str, now: i64) -> Result<(), StoreError> {
    let Some(row) = q::get_user(tx, user)? else {
        return Ok(());
    };
    // The strongest reason wins: owner, then permission, then invited.
    let mut entries: BTreeMap<String, (bool, &'static str)> = BTreeMap::new();
    for invitation in q::invitations_of_user(tx, user)? {
        if invitation.accepted_at.is_some() || invitation.declined_at.is_some() {
            continue;
        }
        let Some(offer) = q::get_offer(tx, &invitation.offer_id)? else {
            continue;
        };
        if offer.expired_at.is_none() && offer.expires_at > now {
            entries.insert(offer.service, (false, "invited"));
        }
    }
    for permission in q::permissions_held(tx, user, None)? {
        entries.insert(permission.service, (true, "permission"));
    }
    for service in q::owned_services(tx, &row.organization_id)? {
        entries.insert(service, (true, "owner"));
    }
    let rows: Vec<DirectoryRow> = entries
        .into_iter()
        .map(|(service, (usable, why))| DirectoryRow {
            service,
            usable,
            why: why.to_owned(),
            updated_at: now,
        })
        .collect();
    q::put_directory(tx, user, &rows)
}

/// A user's directory, as `GET /v1/users/{id}/directory` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectoryView {
    pub user: String,
    /// Every service the user can see; `usable` says whether they can use it.
    pub services: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectoryEntry {
    pub service: String,
    pub name: String,
    pub visible: bool,
    pub usable: bool,
    /// `owner`, `permission` or `invited`.
    pub why: String,
    #[serde(serialize_with = "crate::store::serde_ms::time")]
    pub since: i64,
}

impl super::Provisioning {
    /// A user's directory, for the user, an administrator of their
    /// organization, or an operator.
    pub fn directory(
        &self,
        reader: super::Reader<'_>,
        user: &str,
    ) -> Result<DirectoryView, super::ProvisioningError> {
        let (row, entries) = self.store.read(|c| {
            let row = q::get_user(c, user)?;
            let entries = q::directory(c, user)?;
            Ok::<_, StoreError>((row, entries))
        })?;
        let row = row
            .filter(|row| super::may_read_user(reader, row))
            .ok_or_else(|| super::ProvisioningError::not_found("user", user))?;
        Ok(DirectoryView {
            user: row.id,
            services: entries
                .into_iter()
                .map(|e| DirectoryEntry {
                    name: self.service_name(&e.service),
                    service: e.service,
                    visible: true,
                    usable: e.usable,
                    why: e.why,
                    since: e.updated_at,
                })
                .collect(),
        })
    }
}
