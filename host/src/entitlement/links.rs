//! What guards a reconciliation link: wrong keys lock it for a growing
//! cool-down (never end the request), the contact is told of each lock, and
//! an operator or the service can issue a fresh link that kills the old.

use serde::Serialize;
use serde_json::{Value, json};

use super::reconcile::{hash_key, link, new_key, still_held_or_ended};
use super::site::LinkError;
use super::{Entitlement, EntitlementError, Settings, Shared, valid_id};
use crate::contract::{Channel, Contact, Procedure};
use crate::store::entitlement::{self as q, ReconciliationRow};
use crate::store::{self, Tx, outbox, rfc3339};

/// How long the `locks`-th lock of a link lasts (ms): the first lock,
/// doubling, at most the longest.
pub(super) fn lock_ms(settings: &Settings, locks: i64) -> i64 {
    let exponent = u32::try_from((locks - 1).clamp(0, 30)).unwrap_or(30);
    let lock = settings
        .first_lock
        .saturating_mul(1u32 << exponent)
        .min(settings.max_lock);
    i64::try_from(lock.as_millis()).unwrap_or(i64::MAX)
}

/// The error for a link locked until `until`.
pub(super) fn locked(until: i64, now: i64) -> LinkError {
    let seconds = u64::try_from((until - now).max(0))
        .unwrap_or(0)
        .div_ceil(1000);
    LinkError::Locked {
        until: rfc3339(until),
        retry_after: seconds.max(1),
    }
}

/// Who is told about a reconciliation's link: the contact its procedure
/// names (async modes), else the account's own contact, by mail.
pub(super) fn contact_of(
    tx: &Tx<'_>,
    row: &ReconciliationRow,
) -> Result<Option<(Contact, Channel)>, EntitlementError> {
    if let Ok(Procedure::Async(n) | Procedure::SyncThenAsync(n)) =
        serde_json::from_value::<Procedure>(row.procedure.clone())
    {
        return Ok(Some((n.contact, n.channel)));
    }
    account_contact(tx, &row.account_id)
}

/// An account's contact, to be mailed; `None` without one.
pub(super) fn account_contact(
    tx: &Tx<'_>,
    account_id: &str,
) -> Result<Option<(Contact, Channel)>, EntitlementError> {
    let account = q::get_account(tx, account_id)?;
    Ok(account
        .and_then(|a| a.contact)
        .and_then(|c| serde_json::from_value::<Contact>(c).ok())
        .map(|c| (c, Channel::Email)))
}

/// A message to a contact through the outbox: a mail (held when no SMTP
/// server is configured) or, for a webhook channel, an event of `kind`
/// carrying `data`. Returns where it went, for operators.
#[allow(clippy::too_many_arguments)]
pub(super) fn tell_contact(
    shared: &Shared,
    tx: &Tx<'_>,
    contact: &Contact,
    channel: &Channel,
    subject: &str,
    text: &str,
    kind: &str,
    data: Value,
    now: i64,
) -> Result<String, EntitlementError> {
    match channel {
        Channel::Email => {
            let data = json!({"to": contact.email, "to_name": contact.name, "subject": subject, "text": text});
            let target = shared
                .settings
                .mail
                .then(|| format!("mailto:{}", contact.email));
            if target.is_none() {
                tracing::info!(to = %contact.email, %subject, "mail held in the outbox (no SMTP server configured)");
            }
            outbox::enqueue(tx, "mail", target.as_deref(), &data, now)?;
            Ok(contact.email.clone())
        }
        Channel::Webhook(target) => {
            outbox::enqueue(tx, kind, Some(target), &data, now)?;
            Ok(target.clone())
        }
    }
}

/// The service's display name.
pub(super) fn service_name(shared: &Shared, service: &str) -> String {
    shared
        .registry
        .load()
        .service(service)
        .map_or(service.to_owned(), |s| s.manifest.display_name.clone())
}

/// A fresh link, as [`Entitlement::reissue_link`] answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reissued {
    pub reconciliation_id: String,
    /// The link itself, while the requesting user is the one to use it
    /// (`sync`, or `sync-then-async` before the contact was asked), as the
    /// check's answer gave it; otherwise it went to the contact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where the link was sent (an address or a webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
}

impl Entitlement {
    /// Counts a wrong key or a failed try against the link. Past
    /// `max_attempts` the link locks (each lock twice as long as the last),
    /// the contact and the service are told, and the lock's error is
    /// returned. The request is never touched.
    pub(super) fn count_attempt(
        &self,
        tx: &Tx<'_>,
        row: &mut ReconciliationRow,
        now: i64,
    ) -> Result<Option<LinkError>, EntitlementError> {
        let shared = &self.shared;
        row.attempts += 1;
        if row.attempts < shared.settings.max_attempts {
            q::put_reconciliation(tx, row)?;
            return Ok(None);
        }
        row.attempts = 0;
        row.locks += 1;
        let until = now.saturating_add(lock_ms(&shared.settings, row.locks));
        row.locked_until = Some(until);
        q::put_reconciliation(tx, row)?;
        let service = service_name(shared, &row.service);
        let data = json!({
            "reconciliation_id": row.id, "service": row.service, "request_id": row.request_id,
            "account_id": row.account_id, "locked_until": rfc3339(until), "locks": row.locks,
        });
        if let Some((contact, channel)) = contact_of(tx, row)? {
            let subject = format!("A link for a {service} request was locked");
            let text = format!(
                "Hello {},\n\nThe link to settle a {service} request for account {} was tried {} times with a wrong key, so it is locked until {}.\nIf that was not you, nothing is lost: the request stays as it was. If you need to settle it sooner, ask {service} for a fresh link.\n",
                contact.name,
                row.account_id,
                shared.settings.max_attempts,
                rfc3339(until)
            );
            let mut to_contact = data.clone();
            to_contact["contact"] = json!(contact);
            tell_contact(
                shared,
                tx,
                &contact,
                &channel,
                &subject,
                &text,
                "reconciliation.locked",
                to_contact,
                now,
            )?;
        }
        let webhook = shared
            .registry
            .load()
            .service(&row.service)
            .and_then(|s| s.manifest.webhook.clone());
        outbox::enqueue(tx, "reconciliation.locked", webhook.as_deref(), &data, now)?;
        tracing::warn!(reconciliation = %row.id, locks = row.locks, until = %rfc3339(until), "reconciliation link locked after too many attempts");
        Ok(Some(locked(until, now)))
    }

    /// `POST /v1/reconciliations/{id}/link`: a new single-use link for a
    /// reconciliation still open. Every earlier key dies, the lock (if any)
    /// is lifted, and the link goes to the contact (or, while the requesting
    /// user is the one to use it, back to the caller).
    ///
    /// `services`: the services the caller acts for (`None`: all). Another
    /// service's reconciliation is answered as not found, so that a service
    /// cannot learn which ids exist.
    pub fn reissue_link(
        &self,
        id: &str,
        services: Option<&[String]>,
    ) -> Result<Reissued, EntitlementError> {
        let not_found = || EntitlementError::NotFound(format!("no reconciliation `{id}`"));
        let ours = |service: &str| services.is_none_or(|s| s.iter().any(|s| s == service));
        if !valid_id(id) {
            return Err(not_found());
        }
        let shared = &self.shared;
        let now = store::now_ms();
        let result = shared.store.write(|tx| {
            let Some(mut row) = q::get_reconciliation(tx, id)?.filter(|r| ours(&r.service)) else {
                if services.is_some() {
                    return Ok(Err(not_found()));
                }
                return Ok(Err(match q::tombstone(tx, id)? {
                    Some(outcome) => EntitlementError::Conflict(format!(
                        "reconciliation `{id}` has ended ({outcome}); there is no link to issue"
                    )),
                    None => not_found(),
                }));
            };
            if row.deadline.is_some_and(|d| d <= now) {
                return Ok(Err(EntitlementError::Conflict(format!(
                    "reconciliation `{id}` has lapsed; there is no link to issue"
                ))));
            }
            if !still_held_or_ended(shared, &self.engine, tx, &row, now)? {
                return Ok(Err(EntitlementError::Conflict(format!(
                    "the request of reconciliation `{id}` was decided otherwise; there is no link to issue"
                ))));
            }
            let key = new_key()?;
            row.key_hashes = vec![hash_key(&key)];
            row.attempts = 0;
            row.locked_until = None;
            q::put_reconciliation(tx, &row)?;
            let url = link(&shared.settings, &row.id, &key);
            let user_page =
                row.mode == "sync" || (row.mode == "sync-then-async" && row.deadline.is_none());
            let contact = if user_page {
                None
            } else {
                contact_of(tx, &row)?
            };
            let Some((contact, channel)) = contact else {
                return Ok(Ok(Reissued {
                    reconciliation_id: row.id,
                    url: Some(url),
                    sent_to: None,
                }));
            };
            let service = service_name(shared, &row.service);
            let deadline = row.deadline.map(rfc3339).unwrap_or_default();
            let subject = format!(
                "A new link for a {service} request for account {}",
                row.account_id
            );
            let text = format!(
                "Hello {},\n\nA request to {service} for account {} could not be served: {}.\nRequest: {}\n\nHere is a new link to resolve it until {deadline}; the earlier link no longer works:\n{url}\n\nThe link works once.\n",
                contact.name, row.account_id, row.reason, row.description
            );
            let data = json!({
                "reconciliation_id": row.id, "service": row.service, "request_id": row.request_id,
                "account_id": row.account_id, "contact": contact, "url": url, "deadline": deadline,
                "second": false, "reissued": true,
            });
            let sent_to = tell_contact(
                shared,
                tx,
                &contact,
                &channel,
                &subject,
                &text,
                "reconciliation.notice",
                data,
                now,
            )?;
            Ok::<_, EntitlementError>(Ok(Reissued {
                reconciliation_id: row.id,
                url: None,
                sent_to: Some(sent_to),
            }))
        });
        self.outbox_signal.raise();
        result?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn locks_double_from_the_first_and_are_capped() {
        let settings = Settings {
            first_lock: Duration::from_secs(60),
            max_lock: Duration::from_secs(600),
            ..Settings::default()
        };
        let minutes: Vec<i64> = (1..=6).map(|n| lock_ms(&settings, n) / 60_000).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 10, 10]);
        assert_eq!(lock_ms(&settings, i64::MAX), 600_000);
    }

    #[test]
    fn a_lock_says_until_when_and_how_long() {
        assert_eq!(
            locked(61_500, 0),
            LinkError::Locked {
                until: rfc3339(61_500),
                retry_after: 62
            }
        );
    }
}
