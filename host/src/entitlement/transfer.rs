//! "Use another account": the person on a reconciliation page names another
//! account; the request moves there only when that account's own contact
//! confirms through a single-use link sent to them. The person is told the
//! same whether or not the account exists or could take the request, and
//! each ask counts against the link like a wrong key.

use serde_json::json;

use super::accounts::to_account;
use super::check::Verified;
use super::links::{account_contact, service_name, tell_contact};
use super::reconcile::{Settled, hash_key, held_request, new_key};
use super::site::{ConfirmOutcome, LinkError, SubmitOutcome, TransferPage};
use super::{Entitlement, EntitlementError, valid_id};
use crate::contract::{Channel, Verdict};
use crate::registry::Service;
use crate::secret::same;
use crate::store::entitlement::{self as q, ReconciliationRow};
use crate::store::{self, rfc3339};

impl Entitlement {
    /// Counts the ask as an attempt; then, if `other` exists, has a contact
    /// and passes verification for the held request, mails its contact a
    /// confirmation link. The answer never says which of these held.
    pub(super) fn ask_other_account(
        &self,
        row: &ReconciliationRow,
        service: Option<&Service>,
        other: &str,
    ) -> Result<SubmitOutcome, LinkError> {
        let store = &self.shared.store;
        let now = store::now_ms();
        let counted = store.write(|tx| {
            let Some(mut current) = q::get_reconciliation(tx, &row.id)? else {
                return Ok(Err(LinkError::Used));
            };
            let lock = self.count_attempt(tx, &mut current, now)?;
            Ok::<_, EntitlementError>(match lock {
                Some(lock) => Err(lock),
                None => Ok(current),
            })
        });
        self.outbox_signal.raise();
        let current = counted.map_err(|e| {
            tracing::error!("reconciliation `{}`: {e}", row.id);
            LinkError::Internal
        })??;
        if let Some(service) = service
            && valid_id(other)
            && other != row.account_id
            && let Err(e) = self.offer_transfer(&current, service, other)
        {
            // Not shown: the answer must not differ.
            tracing::error!("reconciliation `{}`: asking account `{other}`: {e}", row.id);
        }
        Ok(SubmitOutcome::TransferAsked {
            page: self.page(&current),
        })
    }

    fn offer_transfer(
        &self,
        row: &ReconciliationRow,
        service: &Service,
        other: &str,
    ) -> Result<(), EntitlementError> {
        let shared = &self.shared;
        let (found, held) = shared.store.read(|c| {
            Ok::<_, EntitlementError>((
                q::get_account(c, other)?,
                q::get_request(c, &row.request_id)?,
            ))
        })?;
        let (Some(found), Some(held)) = (found, held) else {
            return Ok(());
        };
        if found.contact.is_none() {
            return Ok(());
        }
        let mut request = held_request(&held);
        request.account_id = other.to_owned();
        let account = to_account(&found)?;
        if !matches!(
            self.verify(service, &request, Some(account))?,
            Verified::Verdict(Verdict::Pass { .. }, _)
        ) {
            return Ok(());
        }
        let key = new_key()?;
        let now = store::now_ms();
        shared.store.write(|tx| {
            if q::get_reconciliation(tx, &row.id)?.is_none() {
                return Ok(());
            }
            let Some((contact, _)) = account_contact(tx, other)? else {
                return Ok(());
            };
            q::put_transfer(tx, &row.id, other, &hash_key(&key), now)?;
            let url = format!(
                "{}/reconcile/{}/confirm?key={key}",
                shared.settings.public_url.trim_end_matches('/'),
                row.id
            );
            let name = service_name(shared, &row.service);
            let subject = format!("Confirm: a {name} request to go on account {other}?");
            let text = format!(
                "Hello {},\n\nSomeone settling a {name} request of account {} asked for it to go on your account {other} instead.\nRequest: {}\n\nIf you agree, confirm here (the link works once):\n{url}\n\nIf you do not, ignore this message: nothing changes.\n",
                contact.name, row.account_id, row.description
            );
            let data = json!({"reconciliation_id": row.id, "account_id": other, "url": url});
            tell_contact(
                shared,
                tx,
                &contact,
                &Channel::Email,
                &subject,
                &text,
                "reconciliation.transfer",
                data,
                now,
            )?;
            Ok::<_, EntitlementError>(())
        })?;
        self.outbox_signal.raise();
        Ok(())
    }

    /// Checks a confirmation link: the account its key was sent for. A
    /// wrong key counts against the reconciliation like any other.
    fn authorize_transfer(
        &self,
        id: &str,
        key: &str,
    ) -> Result<(ReconciliationRow, String), LinkError> {
        let hashed = hash_key(key);
        self.authorize_with(id, |tx, row| {
            let asked = q::transfers(tx, &row.id)?;
            // Every hash is compared, so the time does not say which matched.
            Ok(asked.into_iter().fold(None, |found, (account, hash)| {
                let matched = same(&hash, &hashed);
                found.or(matched.then_some(account))
            }))
        })
    }

    /// The page of a confirmation link.
    pub fn transfer_page(&self, id: &str, key: &str) -> Result<TransferPage, LinkError> {
        let (row, account) = self.authorize_transfer(id, key)?;
        Ok(TransferPage {
            service: service_name(&self.shared, &row.service),
            description: row.description.clone(),
            from_account: row.account_id.clone(),
            to_account: account,
            deadline: row.deadline.map(rfc3339),
            id: row.id,
        })
    }

    /// The other account's contact confirms: the held request is verified
    /// on their account and, on a pass, fulfilled there. Their link is used
    /// up either way.
    pub fn transfer_confirm(&self, id: &str, key: &str) -> Result<ConfirmOutcome, LinkError> {
        let (row, other) = self.authorize_transfer(id, key)?;
        let internal = |e: EntitlementError| {
            tracing::error!("reconciliation `{id}`: {e}");
            LinkError::Internal
        };
        let store = &self.shared.store;
        store
            .write(|tx| q::delete_transfer(tx, &row.id, &other))
            .map_err(|e| internal(e.into()))?;
        let registry = self.registry();
        let not_now = |reason: &str| {
            Ok(ConfirmOutcome::NotEntitled {
                reason: reason.to_owned(),
            })
        };
        let Some(service) = registry.service(&row.service) else {
            return not_now("the service is not available at the moment");
        };
        let (held, found) = store
            .read(|c| {
                Ok::<_, EntitlementError>((
                    q::get_request(c, &row.request_id)?,
                    q::get_account(c, &other)?,
                ))
            })
            .map_err(internal)?;
        let (Some(held), Some(found)) = (held, found) else {
            return not_now("the account is no longer there");
        };
        let mut request = held_request(&held);
        request.account_id = other.clone();
        let account = to_account(&found).map_err(internal)?;
        match self.settle(&row, service, &held, request, Some(account), false)? {
            Settled::Reconciled { account_id, level } => {
                Ok(ConfirmOutcome::Reconciled { account_id, level })
            }
            Settled::Failed(reason) => not_now(&reason),
        }
    }
}
