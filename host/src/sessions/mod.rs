//! Session charging: a generic session manager for many types of service
//! (a conference call, a webinar, a metered room…), where what differs per
//! type is the service's `session_charging` plugin.
//!
//! A session belongs to a service and has attributes, a start and, once
//! ended, an end. The caller reports one event per change of one
//! participant's status (a join, a leave) and the session's end, each with
//! an id of its own choosing and a time. Each event is handed on its own
//! to the plugin with the session's current state only (who is present,
//! since when, the time of the previous event), never the history of events
//! or charges; the plugin answers charges for any participants, which may
//! depend on the others' joins and leaves.
//!
//! One event is decided then recorded, like a check (`event.rs`): the
//! session's state is read on a reader, the plugin runs on the caller's
//! worker thread (`charging.rs`, with the service's `on_plugin_error`), and
//! one write records it if the session's version is unchanged (otherwise it
//! is decided again, a bounded number of times): the event, its change to
//! who is present, each charge debited from the participant's account
//! through `ledger` (prepaid down to zero at most, the rest recorded as
//! uncovered and the service told through the outbox), all in one
//! transaction. Events of one session are taken in turn within a host, so
//! only another host sharing the database makes one decide again.
//!
//! An event's id is unique in its session: the same id with the same
//! content again is answered as the first time and charges nothing more;
//! with other content it is refused. Times are kept to the second, as
//! plugins see them.

mod charging;
mod event;
mod view;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use event::{Answered, EndRequest, EventRequest, EventType};
pub use view::{
    Event, EventAnswer, EventsPage, MAX_PAGE, ParticipantView, PluginRef, SessionCharge,
    SessionView, Totals,
};

use crate::contract::{Capability, Properties};
use crate::entitlement::{valid_attributes, valid_id};
use crate::ledger::LedgerError;
use crate::notify::Signal;
use crate::registry::Registry;
use crate::store::sessions::{self as q, SessionRow};
use crate::store::{self, Store, StoreError, new_id};

/// Why an event or a session was refused. Every refusal leaves the store
/// as it was.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("{0}")]
    Invalid(String),
    #[error("no service `{0}`")]
    UnknownService(String),
    #[error("service `{0}` has no session_charging plugin")]
    NoSessionCharging(String),
    #[error("no session `{0}`")]
    NoSession(String),
    #[error("no account `{0}`")]
    NoAccount(String),
    #[error(
        "event `{id}` of this session was recorded with other content ({recorded}); give each event its own id"
    )]
    EventIdReused { id: String, recorded: String },
    #[error("participant `{0}` is present already; a join needs someone who is not")]
    AlreadyPresent(String),
    #[error("participant `{0}` is not present; only someone present can leave")]
    NotPresent(String),
    #[error("the event is at {at}, earlier than the session's last event ({last})")]
    OutOfOrder { at: String, last: String },
    #[error("session `{id}` ended at {at}; it takes no more events")]
    Ended { id: String, at: String },
    #[error("session `{0}` has {MAX_PRESENT} participants present, as many as it may")]
    Full(String),
    #[error("session `{0}` changed {MAX_TRIES} times while this event was decided; try again")]
    Conflict(String),
    #[error("the session's charging plugin failed: {0}")]
    Plugin(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionsError {
    /// The code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            SessionsError::Invalid(_) => "invalid",
            SessionsError::UnknownService(_) => "unknown-service",
            SessionsError::NoSessionCharging(_) => "no-session-charging",
            SessionsError::NoSession(_) => "no-session",
            SessionsError::NoAccount(_) => "no-account",
            SessionsError::EventIdReused { .. } => "event-id-reused",
            SessionsError::AlreadyPresent(_) => "already-present",
            SessionsError::NotPresent(_) => "not-present",
            SessionsError::OutOfOrder { .. } => "out-of-order",
            SessionsError::Ended { .. } => "session-ended",
            SessionsError::Full(_) => "session-full",
            SessionsError::Conflict(_) => "conflict",
            SessionsError::Plugin(_) => "plugin-error",
            SessionsError::Ledger(_) => "ledger",
            SessionsError::Store(_) => "internal",
        }
    }
}

/// How often an event is decided again because its session changed
/// between the read and the record, before it is refused with a conflict.
pub const MAX_TRIES: usize = 8;

/// The longest event or participant id, in bytes (they make up ledger
/// references, which are at most 200).
pub const MAX_NAME: usize = 64;

/// The most participants present in one session at once: each event hands
/// them all to the plugin.
pub const MAX_PRESENT: usize = 1000;

/// An event or participant id: 1 to [`MAX_NAME`] printable characters
/// without spaces, `/`, `?`, `#` or `:` (the ledger reference's separator).
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME && valid_id(name) && !name.contains(':')
}

/// The body of `POST /v1/sessions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    pub service: String,
    #[serde(default)]
    pub attributes: Properties,
    /// When it started; now when absent.
    #[serde(default)]
    pub at: Option<Timestamp>,
}

/// A session just opened.
#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    pub id: String,
    pub service: String,
    pub status: &'static str,
    pub started_at: String,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Events recorded.
    pub events: AtomicU64,
    /// Events whose session changed between their read and their record,
    /// so were decided again.
    pub redecided: AtomicU64,
    /// Events refused with 409 after being decided again too often.
    pub conflicts: AtomicU64,
}

/// Locks that take the events of one session in turn (by a hash of its id,
/// so a few sessions share one). Async locks: an event waiting for its
/// turn over HTTP holds no thread.
struct Turns(Vec<Arc<tokio::sync::Mutex<()>>>);

impl Turns {
    fn new(n: usize) -> Turns {
        Turns((0..n.max(1)).map(|_| Arc::default()).collect())
    }

    fn slot(&self, session_id: &str) -> &Arc<tokio::sync::Mutex<()>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        session_id.hash(&mut hasher);
        &self.0[(hasher.finish() % self.0.len() as u64) as usize]
    }

    /// The session's turn, waited for on this thread (not an executor's).
    fn take(&self, session_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.slot(session_id).blocking_lock()
    }

    /// The session's turn, awaited.
    async fn take_async(&self, session_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.slot(session_id).clone().lock_owned().await
    }
}

/// The sessions part of the host: open a session, record its events, read
/// it back.
pub struct Sessions {
    store: Store,
    registry: Arc<ArcSwap<Registry>>,
    outbox_signal: Arc<Signal>,
    turns: Turns,
    pub stats: SessionStats,
}

/// A stored time (ms) as the contract's.
fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A time to the second, in ms: what the store keeps and plugins see.
fn to_second(t: Timestamp) -> i64 {
    t.as_millisecond().div_euclid(1000) * 1000
}

/// Stored attributes (a JSON object of text) as properties.
fn properties(value: &serde_json::Value) -> Properties {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

impl Sessions {
    pub fn new(
        store: Store,
        registry: Arc<ArcSwap<Registry>>,
        outbox_signal: Arc<Signal>,
    ) -> Sessions {
        Sessions {
            store,
            registry,
            outbox_signal,
            turns: Turns::new(256),
            stats: SessionStats::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Opens a session of a service that charges sessions.
    pub fn open(&self, req: OpenRequest) -> Result<Opened, SessionsError> {
        valid_attributes(&req.attributes).map_err(|e| SessionsError::Invalid(e.to_string()))?;
        let registry = self.registry();
        let service = registry
            .service(&req.service)
            .ok_or_else(|| SessionsError::UnknownService(req.service.clone()))?;
        if service.binding(Capability::SessionCharging).is_none() {
            return Err(SessionsError::NoSessionCharging(req.service.clone()));
        }
        let started = to_second(req.at.unwrap_or_else(Timestamp::now));
        let row = SessionRow {
            id: new_id("ses", 8),
            service: req.service.clone(),
            attributes: serde_json::to_value(&req.attributes).unwrap_or_default(),
            started_at: started,
            ended_at: None,
            last_event_at: started,
            events: 0,
            version: 0,
            created_at: store::now_ms(),
        };
        self.store.write(|tx| q::insert_session(tx, &row))?;
        Ok(Opened {
            id: row.id,
            service: row.service,
            status: "open",
            started_at: store::rfc3339(started),
        })
    }

    /// The service a session belongs to, `None` when there is no such session.
    pub fn service_of(&self, id: &str) -> Result<Option<String>, SessionsError> {
        if !valid_id(id) {
            return Ok(None);
        }
        Ok(self.store.read(|conn| q::service_of(conn, id))?)
    }
}

#[cfg(test)]
mod tests;
