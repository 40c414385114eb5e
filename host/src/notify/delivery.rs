//! The delivery worker: a thread that sends due notifications: a webhook
//! target (`http://`, `https://`) gets the payload POSTed, a `mailto:` target
//! gets it mailed (see [`super::mail`]). Both retry with the same backoff.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::mail::{self, MailConfig};
use super::{Signal, Worker};
use crate::store::outbox::Notification;
use crate::store::{self, Store, StoreError, outbox};

/// Longest wait between two retries of one notification.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the worker looks even when nobody wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The wait before attempt `attempts + 1`: 250 ms, doubling, at most 30 s.
pub fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_millis(250u64.saturating_mul(1 << exponent)).min(MAX_BACKOFF)
}

pub struct DeliveryWorker(Worker);

impl DeliveryWorker {
    /// Starts the worker; `signal` is raised by whoever enqueues. `mail` is
    /// the SMTP server for `mailto:` targets; without one they fail (and
    /// are retried) with "no SMTP server configured". An unusable `mail`
    /// configuration is refused here (`InvalidInput`).
    pub fn start(
        store: Store,
        signal: Arc<Signal>,
        mail: Option<MailConfig>,
    ) -> std::io::Result<DeliveryWorker> {
        match &mail {
            Some(config) => {
                config
                    .check()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                tracing::info!(smtp = %config.smtp, from = %config.from, "outbox: mail goes through SMTP");
            }
            None => tracing::info!("outbox: no SMTP server configured; mail cannot be sent"),
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("rulehost/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let worker = Worker::start("rulehost-outbox", signal, move || {
            deliver_due(&store, &agent, mail.as_ref()).unwrap_or_else(|e| {
                tracing::error!("outbox delivery: {e}");
                IDLE_POLL
            })
        })?;
        Ok(DeliveryWorker(worker))
    }

    /// Stops after the attempt in progress, if any.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

/// The address of a `mailto:` target (scheme case-insensitive), or `None`
/// for any other target.
fn mailto(target: &str) -> Option<&str> {
    const SCHEME: &str = "mailto:";
    let (scheme, address) = target.split_at_checked(SCHEME.len())?;
    scheme.eq_ignore_ascii_case(SCHEME).then_some(address)
}

/// POSTs the payload to a webhook.
fn post(agent: &ureq::Agent, url: &str, notification: &Notification) -> Result<(), String> {
    let result = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &notification.event_id)
        .header("X-Rulehost-Event", &notification.event_id)
        .header("X-Rulehost-Kind", &notification.kind)
        .send(notification.payload.to_string());
    match result {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "the receiver answered HTTP {}",
            response.status().as_u16()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Mails the payload.
fn send_mail(config: Option<&MailConfig>, payload: &Value) -> Result<(), String> {
    let config = config.ok_or_else(|| "no SMTP server configured".to_owned())?;
    mail::send(config, payload).map_err(|e| {
        if e.is_permanent() {
            format!("{e} (permanent)")
        } else {
            e.to_string()
        }
    })
}

/// Sends what is due; returns how long to wait before looking again.
fn deliver_due(
    store: &Store,
    agent: &ureq::Agent,
    mail: Option<&MailConfig>,
) -> Result<Duration, StoreError> {
    const BATCH: u32 = 32;
    let now = store::now_ms();
    let due = store.read(|c| outbox::due(c, now, BATCH))?;
    for notification in &due {
        let Some(target) = notification.target.as_deref() else {
            continue;
        };
        let outcome = match mailto(target) {
            Some(_) => send_mail(mail, &notification.payload),
            None => post(agent, target, notification),
        };
        let now = store::now_ms();
        match outcome {
            Ok(()) => {
                store.write(|tx| outbox::mark_delivered(tx, notification.id, now))?;
                tracing::debug!(event = %notification.event_id, kind = %notification.kind, "delivered");
            }
            Err(error) => {
                let next = now
                    + i64::try_from(backoff(notification.attempts).as_millis()).unwrap_or(i64::MAX);
                store.write(|tx| outbox::mark_failed(tx, notification.id, next, &error))?;
                tracing::warn!(event = %notification.event_id, target, attempts = notification.attempts + 1, "delivery failed: {error}");
            }
        }
    }
    if due.len() as u32 == BATCH {
        return Ok(Duration::ZERO);
    }
    let (_, next) = store.read(outbox::backlog)?;
    let wait = next.map_or(IDLE_POLL, |next| {
        Duration::from_millis(u64::try_from(next - store::now_ms()).unwrap_or(0))
    });
    Ok(wait.min(IDLE_POLL).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(20), MAX_BACKOFF);
    }

    #[test]
    fn mailto_targets() {
        assert_eq!(mailto("mailto:ada@acme.test"), Some("ada@acme.test"));
        assert_eq!(mailto("MAILTO:ada@acme.test"), Some("ada@acme.test"));
        assert_eq!(mailto("http://hooks.test/mailto:x"), None);
        assert_eq!(mailto("mail"), None);
        assert_eq!(mailto("é"), None);
    }

    fn one(store: &Store) -> Notification {
        let all = store.read(|c| outbox::list(c, None, 10)).unwrap();
        assert_eq!(all.len(), 1, "{all:#?}");
        all.into_iter().next().unwrap()
    }

    #[test]
    fn mail_without_smtp_stays_pending_with_backoff() {
        let store = Store::in_memory().unwrap();
        let data = serde_json::json!({"to": "ada@acme.test", "subject": "s", "text": "t"});
        store
            .write(|tx| outbox::enqueue(tx, "mail", Some("mailto:ada@acme.test"), &data, 0))
            .unwrap();
        let agent = ureq::Agent::new_with_defaults();
        let before = store::now_ms();
        deliver_due(&store, &agent, None).unwrap();
        let mail = one(&store);
        assert_eq!(mail.state, "pending");
        assert_eq!(mail.attempts, 1);
        assert_eq!(
            mail.last_error.as_deref(),
            Some("no SMTP server configured")
        );
        assert!(mail.next_attempt_at >= before + 250, "{mail:#?}");
    }

    #[test]
    fn an_invalid_mail_is_retried_and_says_why() {
        let store = Store::in_memory().unwrap();
        let data = serde_json::json!({"to": "not an address", "subject": "s", "text": "t"});
        store
            .write(|tx| outbox::enqueue(tx, "mail", Some("mailto:x"), &data, 0))
            .unwrap();
        let agent = ureq::Agent::new_with_defaults();
        // Nothing listens on port 9 of 127.0.0.1, but the mail is refused before connecting.
        let config = MailConfig::new("127.0.0.1:9");
        deliver_due(&store, &agent, Some(&config)).unwrap();
        let mail = one(&store);
        assert_eq!(mail.state, "pending");
        let error = mail.last_error.unwrap_or_default();
        assert!(
            error.contains("`data.to`") && error.ends_with("(permanent)"),
            "{error}"
        );
    }
}
