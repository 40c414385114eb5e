//! The delivery worker: a thread that sends due notifications: a webhook
//! target (`http://`, `https://`) gets the payload POSTed, a `mailto:` target
//! gets it mailed (see [`super::mail`]). Both retry with the same backoff,
//! a bounded number of times ([`RetryPolicy`]); a notification that cannot
//! be delivered goes `dead` with its reason, and the others go on.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::mail::{self, MailConfig};
use super::{Signal, Worker};
use crate::store::outbox::Notification;
use crate::store::{self, Store, StoreError, outbox};

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the worker looks even when nobody wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often and how long a notification is retried before it goes `dead`
/// (the `[outbox]` section of the host's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all before a notification that keeps failing goes dead.
    pub max_attempts: i64,
    /// Attempts in all for one the receiver refuses for good (a webhook's
    /// 4xx other than 408, 425 and 429): a receiver being redeployed may
    /// answer 404 for a moment, so a few tries, then dead.
    pub refused_attempts: i64,
    /// The wait after the first failure; it doubles after each.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 40 attempts, 250 ms doubling to an hour: about 27 hours of trying.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 40,
            refused_attempts: 3,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`: `first_backoff`, doubling,
    /// at most `max_backoff`.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
        self.first_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff)
    }
}

/// The wait before attempt `attempts + 1` under the default policy.
pub fn backoff(attempts: i64) -> Duration {
    RetryPolicy::default().backoff(attempts)
}

/// Why an attempt failed, and so whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The receiver or the network may do better later.
    Transient(String),
    /// The receiver refused it (a webhook's 4xx): a few more tries.
    Refused(String),
    /// It can never be delivered as stored (unreadable, not a valid mail,
    /// an SMTP 5xx): dead at once, as a mail server bounces on a 5xx.
    Permanent(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Transient(m) | Failure::Refused(m) | Failure::Permanent(m) => m,
        }
    }
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
        DeliveryWorker::start_with(store, signal, mail, RetryPolicy::default())
    }

    /// [`DeliveryWorker::start`] with `policy` for retries.
    pub fn start_with(
        store: Store,
        signal: Arc<Signal>,
        mail: Option<MailConfig>,
        policy: RetryPolicy,
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
            deliver_due(&store, &agent, mail.as_ref(), &policy).unwrap_or_else(|e| {
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

/// POSTs the payload to a webhook. A 4xx is a refusal, except 408
/// (timeout), 425 (too early) and 429 (too many requests), which ask for
/// another try.
fn post(agent: &ureq::Agent, url: &str, notification: &Notification) -> Result<(), Failure> {
    let result = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &notification.event_id)
        .header("X-Rulehost-Event", &notification.event_id)
        .header("X-Rulehost-Kind", &notification.kind)
        .send(notification.payload.to_string());
    match result {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status().as_u16();
            let message = format!("the receiver answered HTTP {status}");
            Err(match status {
                408 | 425 | 429 => Failure::Transient(message),
                400..=499 => Failure::Refused(message),
                _ => Failure::Transient(message),
            })
        }
        Err(e) => Err(Failure::Transient(e.to_string())),
    }
}

/// Mails the payload. Without an SMTP server it is a transient failure:
/// a restart with `[mail]` configured sends it.
fn send_mail(config: Option<&MailConfig>, payload: &Value) -> Result<(), Failure> {
    let config =
        config.ok_or_else(|| Failure::Transient("no SMTP server configured".to_owned()))?;
    mail::send(config, payload).map_err(|e| {
        if e.is_permanent() {
            Failure::Permanent(format!("{e} (permanent)"))
        } else {
            Failure::Transient(e.to_string())
        }
    })
}

/// One attempt at `notification`.
fn attempt(
    agent: &ureq::Agent,
    mail: Option<&MailConfig>,
    notification: &Notification,
) -> Result<(), Failure> {
    if let Some(why) = &notification.unreadable {
        return Err(Failure::Permanent(format!(
            "the stored notification cannot be read: {why}"
        )));
    }
    let Some(target) = notification.target.as_deref() else {
        return Err(Failure::Permanent("it has no target".to_owned()));
    };
    match mailto(target) {
        Some(_) => send_mail(mail, &notification.payload),
        None => post(agent, target, notification),
    }
}

/// Sends what is due; returns how long to wait before looking again. One
/// notification's failure, however it fails, is recorded on it alone.
fn deliver_due(
    store: &Store,
    agent: &ureq::Agent,
    mail: Option<&MailConfig>,
    policy: &RetryPolicy,
) -> Result<Duration, StoreError> {
    const BATCH: u32 = 32;
    let now = store::now_ms();
    let due = store.read(|c| outbox::due(c, now, BATCH))?;
    for notification in &due {
        let outcome = attempt(agent, mail, notification);
        let now = store::now_ms();
        let failure = match outcome {
            Ok(()) => {
                store.write(|tx| outbox::mark_delivered(tx, notification.id, now))?;
                tracing::debug!(event = %notification.event_id, kind = %notification.kind, "delivered");
                continue;
            }
            Err(failure) => failure,
        };
        let attempts = notification.attempts + 1;
        let dead = match &failure {
            Failure::Permanent(_) => true,
            Failure::Refused(_) => attempts >= policy.refused_attempts.min(policy.max_attempts),
            Failure::Transient(_) => attempts >= policy.max_attempts,
        };
        let error = failure.message();
        let target = notification.target.as_deref().unwrap_or_default();
        if dead {
            store.write(|tx| outbox::mark_dead(tx, notification.id, now, error))?;
            tracing::error!(event = %notification.event_id, id = notification.id, target, attempts, "notification is dead (retry it with POST /v1/outbox/{}/retry): {error}", notification.id);
        } else {
            let wait = policy.backoff(notification.attempts);
            let next = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            store.write(|tx| outbox::mark_failed(tx, notification.id, next, error))?;
            tracing::warn!(event = %notification.event_id, target, attempts, "delivery failed: {error}");
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
        assert_eq!(backoff(20), Duration::from_secs(3600));
        assert_eq!(backoff(i64::MAX), Duration::from_secs(3600));
        let policy = RetryPolicy {
            max_backoff: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(10), Duration::from_secs(30));
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
        deliver_due(&store, &agent, None, &RetryPolicy::default()).unwrap();
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
    fn an_invalid_mail_is_dead_at_once_and_says_why() {
        let store = Store::in_memory().unwrap();
        let data = serde_json::json!({"to": "not an address", "subject": "s", "text": "t"});
        store
            .write(|tx| outbox::enqueue(tx, "mail", Some("mailto:x"), &data, 0))
            .unwrap();
        let agent = ureq::Agent::new_with_defaults();
        // Nothing listens on port 9 of 127.0.0.1, but the mail is refused before connecting.
        let config = MailConfig::new("127.0.0.1:9");
        deliver_due(&store, &agent, Some(&config), &RetryPolicy::default()).unwrap();
        let mail = one(&store);
        assert_eq!(mail.state, "dead");
        assert_eq!(mail.attempts, 1);
        let error = mail.last_error.unwrap_or_default();
        assert!(
            error.contains("`data.to`") && error.ends_with("(permanent)"),
            "{error}"
        );
    }

    /// A webhook receiver on 127.0.0.1 that answers every request with
    /// `status`; its URL and a count of the requests it got.
    fn receiver(status: u16) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead as _, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = std::io::BufReader::new(&stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, hits)
    }

    fn enqueue_to(store: &Store, target: &str) -> i64 {
        let event = store
            .write(|tx| outbox::enqueue(tx, "test", Some(target), &serde_json::json!({}), 0))
            .unwrap();
        let all = store.read(|c| outbox::list(c, None, 100)).unwrap();
        all.iter().find(|n| n.event_id == event).unwrap().id
    }

    fn state_of(store: &Store, id: i64) -> Notification {
        store.read(|c| outbox::get(c, id)).unwrap().unwrap()
    }

    /// Runs passes until nothing is due right away (backoff zeroed).
    fn drain(store: &Store, policy: &RetryPolicy) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for _ in 0..20 {
            deliver_due(store, &agent, None, policy).unwrap();
        }
    }

    #[test]
    fn an_unreadable_notification_goes_dead_and_the_next_one_is_delivered() {
        let store = Store::in_memory().unwrap();
        let (url, hits) = receiver(200);
        let bad = enqueue_to(&store, &url);
        let good = enqueue_to(&store, &url);
        // Nested deeper than the JSON reader's limit, as an earlier host stored.
        let deep = format!("{{\"id\": {}{}}}", "[".repeat(300), "]".repeat(300));
        store
            .write(|tx| outbox::overwrite_payload(tx, bad, &deep))
            .unwrap();
        drain(&store, &RetryPolicy::default());
        let dead = state_of(&store, bad);
        assert_eq!(dead.state, "dead", "{dead:#?}");
        assert!(
            dead.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("the stored notification cannot be read")),
            "{dead:#?}"
        );
        assert_eq!(state_of(&store, good).state, "delivered");
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "only the readable one was sent"
        );
    }

    #[test]
    fn a_refused_webhook_is_dead_after_its_few_tries_a_failing_one_after_all() {
        let store = Store::in_memory().unwrap();
        let policy = RetryPolicy {
            max_attempts: 5,
            refused_attempts: 2,
            first_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        };
        let (refusing, refused_hits) = receiver(400);
        let (throttling, _) = receiver(429);
        let (failing, _) = receiver(503);
        let refused = enqueue_to(&store, &refusing);
        let throttled = enqueue_to(&store, &throttling);
        let failed = enqueue_to(&store, &failing);
        drain(&store, &policy);
        let refused = state_of(&store, refused);
        assert_eq!(
            (refused.state.as_str(), refused.attempts),
            ("dead", 2),
            "{refused:#?}"
        );
        assert_eq!(
            refused.last_error.as_deref(),
            Some("the receiver answered HTTP 400")
        );
        assert_eq!(refused_hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        for id in [throttled, failed] {
            let n = state_of(&store, id);
            assert_eq!((n.state.as_str(), n.attempts), ("dead", 5), "{n:#?}");
        }
    }
}
