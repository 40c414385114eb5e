//! A plugin bound to one service's limits, with its pool of warm instances.
//!
//! A warm instance serves calls one at a time and goes back to the pool
//! after each. It is dropped (and its pool slot reset) after a trap, a time
//! or memory limit, an oversize answer, or `max_calls_per_instance` calls,
//! and with the binding itself when a swap replaces it. Memory a plugin
//! keeps between calls on one instance is therefore not guaranteed to be
//! there on the next call, and never leaks across a fault.
//!
//! A binding also counts its slow calls (longer than [`SLOW_CALL`]), which
//! operators see in `GET /v1/plugins`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::bindings::{self, Guests, InvokeError};
use super::engine::EPOCH_TICK;
use super::state::{LogLine, StoreState};
use super::{CallError, CallErrorKind, InstanceMode, Limits, Plugin};
use crate::contract::{Call, Context, Outcome};

/// A call longer than this counts as slow (`BindingStats::slow_calls`).
pub const SLOW_CALL: Duration = Duration::from_millis(1);

/// A live instance and its typed exports.
struct Instance {
    store: Store<StoreState>,
    guests: Guests,
    calls: u32,
}

/// What one call produced.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub outcome: Outcome,
    /// Time inside the plugin (instantiation aside).
    pub elapsed: Duration,
    /// Fuel the call consumed, when the runtime counts fuel.
    pub fuel: Option<u64>,
    pub logs: Vec<LogLine>,
}

/// Counters operators read (`GET /v1/plugins`, metrics).
#[derive(Debug, Default)]
pub struct BindingStats {
    pub calls: AtomicU64,
    pub faults: AtomicU64,
    pub instantiations: AtomicU64,
    /// Faulted calls answered by the previous good version instead.
    pub fallbacks: AtomicU64,
    /// Calls longer than [`SLOW_CALL`].
    pub slow_calls: AtomicU64,
}

/// A plugin version with a service's limits and a pool of warm instances.
pub struct Binding {
    plugin: Arc<Plugin>,
    limits: Limits,
    idle: Mutex<Vec<Instance>>,
    max_idle: usize,
    pub stats: BindingStats,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("plugin", &self.plugin)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Binding {
    pub fn new(plugin: Arc<Plugin>, limits: Limits) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Binding {
            plugin,
            limits,
            idle: Mutex::new(Vec::new()),
            max_idle: cores + 1,
            stats: BindingStats::default(),
        }
    }

    fn note_call(&self, elapsed: Duration) {
        if elapsed > SLOW_CALL {
            self.stats.slow_calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Makes one call. A fault of the plugin (trap, limit, bad answer) is an
    /// error naming the plugin, its version and the cause; it never panics
    /// and never affects another call.
    pub fn call(&self, ctx: &Context, call: &Call) -> Result<CallReport, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if !self.plugin.exports(call.capability()) {
            return Err(self.error(CallErrorKind::Unsupported(call.capability())));
        }
        let mut instance = self.checkout()?;
        let fuel_budget = u64::MAX / 2;
        let store = &mut instance.store;
        store.set_epoch_deadline(ticks(self.limits.timeout));
        if self.plugin.runtime.options().fuel {
            store
                .set_fuel(fuel_budget)
                .map_err(|e| self.error(CallErrorKind::Instantiate(e.to_string())))?;
        }
        let started = Instant::now();
        let result = bindings::invoke(&mut instance.guests, &mut instance.store, ctx, call);
        let elapsed = started.elapsed();
        let fuel = self.plugin.runtime.options().fuel.then(|| {
            instance
                .store
                .get_fuel()
                .map(|left| fuel_budget - left)
                .unwrap_or(0)
        });
        let logs = instance.store.data_mut().take_logs();
        instance.calls += 1;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let mut kind = self.classify(&instance, e);
                if let (CallErrorKind::Trap(message), Some(panic)) =
                    (&mut kind, panic_message(&logs))
                {
                    *message = format!("panicked: {panic} ({message})");
                }
                self.note_call(elapsed);
                self.stats.faults.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.plugin.name(), digest = %self.plugin.digest().short(), "{kind}");
                // The instance is dropped here: its state after a fault is not trusted.
                return Err(CallError {
                    logs,
                    ..self.error(kind)
                });
            }
        };
        self.note_call(elapsed);
        let bytes = output_bytes(&outcome);
        if bytes > self.limits.output_bytes {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            let kind = CallErrorKind::OutputTooLarge {
                bytes,
                limit: self.limits.output_bytes,
            };
            return Err(CallError {
                logs,
                ..self.error(kind)
            });
        }
        self.checkin(instance);
        Ok(CallReport {
            outcome,
            elapsed,
            fuel,
            logs,
        })
    }

    fn error(&self, kind: CallErrorKind) -> CallError {
        CallError {
            plugin: self.plugin.name().to_owned(),
            digest: self.plugin.digest(),
            kind,
            logs: Vec::new(),
        }
    }

    fn classify(&self, instance: &Instance, error: InvokeError) -> CallErrorKind {
        match error {
            InvokeError::Unsupported(c) => CallErrorKind::Unsupported(c),
            InvokeError::Malformed(m) => CallErrorKind::Malformed(m),
            InvokeError::Wasm(e) => {
                if instance.store.data().memory_exceeded {
                    CallErrorKind::MemoryLimit {
                        limit: self.limits.memory_bytes,
                    }
                } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    CallErrorKind::Timeout {
                        limit: self.limits.timeout,
                    }
                } else if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
                    CallErrorKind::Trap("ran out of fuel".into())
                } else {
                    CallErrorKind::Trap(trap_message(&e))
                }
            }
        }
    }

    /// A warm instance from the pool, or a new one.
    fn checkout(&self) -> Result<Instance, CallError> {
        if self.limits.instances == InstanceMode::Warm
            && let Some(instance) = self.idle.lock().ok().and_then(|mut idle| idle.pop())
        {
            return Ok(instance);
        }
        self.instantiate()
            .map_err(|e| self.error(CallErrorKind::Instantiate(e)))
    }

    fn checkin(&self, instance: Instance) {
        if self.limits.instances != InstanceMode::Warm
            || instance.calls >= self.limits.max_calls_per_instance
        {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(instance);
        }
    }

    fn instantiate(&self) -> Result<Instance, String> {
        self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        let engine = &self.plugin.runtime.inner.engine;
        let state = StoreState::new(self.plugin.name_arc(), self.limits.memory_bytes);
        let mut store = Store::new(engine, state);
        store.limiter(|s| s);
        // Instantiation runs the component's start code: bound it too.
        store.set_epoch_deadline(ticks(self.limits.timeout));
        if self.plugin.runtime.options().fuel {
            store.set_fuel(u64::MAX / 2).map_err(|e| e.to_string())?;
        }
        let instance = self
            .plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("{e:#}"))?;
        let guests = self
            .plugin
            .indices
            .load(&mut store, &instance)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Instance {
            store,
            guests,
            calls: 0,
        })
    }

    /// Warm instances waiting in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }
}

/// `limit` in epoch ticks, at least one.
fn ticks(limit: Duration) -> u64 {
    let ticks = limit.as_micros().div_ceil(EPOCH_TICK.as_micros()).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The first line of a trap, plus the plugin's own panic message when the
/// guest printed one.
fn trap_message(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The message of a Rust panic inside the plugin, from what it wrote to
/// stderr (`thread '..' panicked at file:line:col:` then the message).
fn panic_message(logs: &[LogLine]) -> Option<String> {
    let at = logs
        .iter()
        .rposition(|l| l.level == "stderr" && l.message.contains("panicked at"))?;
    let next = logs[at + 1..].iter().find(|l| l.level == "stderr")?;
    Some(next.message.clone())
}

/// Bytes of text and list items a plugin returned.
fn output_bytes(outcome: &Outcome) -> u64 {
    use crate::contract::{Procedure, Verdict};
    let notice = |n: &crate::contract::AsyncNotice| {
        n.contact.name.len()
            + n.contact.email.len()
            + match &n.channel {
                crate::contract::Channel::Email => 0,
                crate::contract::Channel::Webhook(url) => url.len(),
            }
    };
    let bytes = match outcome {
        Outcome::Verdict(Verdict::Pass { level }) => level.len(),
        Outcome::Verdict(Verdict::Fail(f)) => f.reason.len(),
        Outcome::Procedure(Procedure::Async(n) | Procedure::SyncThenAsync(n)) => notice(n),
        Outcome::Procedure(_) => 0,
        Outcome::Reset {
            dissociate, reason, ..
        } => reason.len() + dissociate.iter().map(String::len).sum::<usize>(),
        Outcome::Restriction {
            reason, alternate, ..
        } => reason.as_ref().map_or(0, String::len) + alternate.as_ref().map_or(0, String::len),
        Outcome::Charges { charges } => charges
            .iter()
            .map(|c| 16 + c.participant.len() + c.account_id.len() + c.description.len())
            .sum(),
        Outcome::Error { error } => error.len(),
    };
    bytes as u64
}
