//! The delivery worker: a thread that sends due notifications.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Signal;
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

pub struct DeliveryWorker {
    stop: Arc<AtomicBool>,
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl DeliveryWorker {
    /// Starts the worker; `signal` is raised by whoever enqueues.
    pub fn start(store: Store, signal: Arc<Signal>) -> std::io::Result<DeliveryWorker> {
        let stop = Arc::new(AtomicBool::new(false));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("rulehost/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let thread = {
            let (stop, signal) = (stop.clone(), signal.clone());
            std::thread::Builder::new()
                .name("rulehost-outbox".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let wait = match deliver_due(&store, &agent) {
                            Ok(wait) => wait,
                            Err(e) => {
                                tracing::error!("outbox delivery: {e}");
                                IDLE_POLL
                            }
                        };
                        if !wait.is_zero() {
                            signal.wait(wait);
                        }
                    }
                })?
        };
        Ok(DeliveryWorker {
            stop,
            signal,
            thread: Some(thread),
        })
    }

    /// Stops after the attempt in progress, if any.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.signal.raise();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DeliveryWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends what is due; returns how long to wait before looking again.
fn deliver_due(store: &Store, agent: &ureq::Agent) -> Result<Duration, StoreError> {
    const BATCH: u32 = 32;
    let now = store::now_ms();
    let due = store.read(|c| outbox::due(c, now, BATCH))?;
    for notification in &due {
        let Some(url) = notification.target.as_deref() else {
            continue;
        };
        let result = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &notification.event_id)
            .header("X-Rulehost-Event", &notification.kind)
            .send(notification.payload.to_string());
        let outcome = match result {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "the receiver answered HTTP {}",
                response.status().as_u16()
            )),
            Err(e) => Err(e.to_string()),
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
                tracing::warn!(event = %notification.event_id, url, attempts = notification.attempts + 1, "delivery failed: {error}");
            }
        }
    }
    if due.len() as u32 == BATCH {
        return Ok(Duration::ZERO);
    }
    let (_, next) = store.read(|c| outbox::backlog(c))?;
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
}
