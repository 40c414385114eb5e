//! Entitlement: may this account have this service, at what level; and when
//! it may not, reconciliation (a flow on the engine) that can turn the
//! answer around without anyone resubmitting the request.
//!
//! A check runs the service's verifier plugin on the stored account, records
//! the decision, and on a failure asks the reconciler plugin for a procedure:
//! `none` (denied), `sync` (a page for the requesting user now), `async` (a
//! notice to the contact with a single-use link and a deadline) or
//! `sync-then-async`. The request is held meanwhile; success fulfils it
//! (once at most), a lapse removes it, a later pass ends the reconciliation.
//! Wrong keys lock a link for a while and never end the request. Keys of
//! links are stored only as hashes.

mod accounts;
mod check;
mod links;
mod reconcile;
mod site;
mod transfer;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;

pub use accounts::{AccountInput, AccountView, valid_attributes, valid_id, view as account_view};
pub use check::{CheckRequest, CheckResponse, MAX_TRIES, NativeVerifier};
pub use links::Reissued;
pub use reconcile::{Installed, install};
pub use site::{
    Choice, ConfirmOutcome, LinkError, ReconcileOption, ReconcilePage, SubmitOutcome,
    TRANSFER_ASKED, TransferPage,
};

use crate::flow::{FlowEngine, FlowError};
use crate::notify::Signal;
use crate::registry::Registry;
use crate::store::{Store, StoreError};

/// How reconciliation behaves, host-wide.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public site's base URL, as people reach it (links are built on it).
    pub public_url: String,
    /// Whether mail goes out over SMTP; without, mail is held in the outbox.
    pub mail: bool,
    /// How long a sync page waits for the user before the contact is asked
    /// (or, in `sync` mode, before the chance lapses). A service may set
    /// `sync_window_seconds` in its config.
    pub sync_window: Duration,
    /// Wrong keys and failed tries a link takes before it locks.
    pub max_attempts: i64,
    /// How long a link's first lock lasts; each further lock doubles it.
    pub first_lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
    /// Whether the page offers "use another account" (a service may set
    /// `other_account` in its config).
    pub other_account: OtherAccount,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            public_url: "http://127.0.0.1:7701".into(),
            mail: false,
            sync_window: Duration::from_secs(15 * 60),
            max_attempts: 10,
            first_lock: Duration::from_secs(60),
            max_lock: Duration::from_secs(3600),
            other_account: OtherAccount::Off,
        }
    }
}

/// What "use another account" on the reconciliation page does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherAccount {
    /// Not offered (the default: moving a request to another account is
    /// something a service chooses).
    #[default]
    Off,
    /// Offered; the other account's own contact confirms through a
    /// single-use link before the request moves.
    Confirm,
}

impl OtherAccount {
    pub fn parse(text: &str) -> Option<OtherAccount> {
        match text {
            "off" => Some(OtherAccount::Off),
            "confirm" => Some(OtherAccount::Confirm),
            _ => None,
        }
    }
}

/// What entitlement's parts share (the flow actions hold it too).
pub(crate) struct Shared {
    pub store: Store,
    pub registry: Arc<ArcSwap<Registry>>,
    pub settings: Settings,
}

pub struct Entitlement {
    shared: Arc<Shared>,
    engine: Arc<FlowEngine>,
    outbox_signal: Arc<Signal>,
    pub stats: CheckStats,
}

/// Counters of how checks were decided, for metrics.
#[derive(Debug, Default)]
pub struct CheckStats {
    /// Checks whose account or held request changed between their read
    /// and their record, so were decided again.
    pub redecided: AtomicU64,
    /// Checks refused with a conflict after [`MAX_TRIES`] decisions.
    pub conflicts: AtomicU64,
}

impl Entitlement {
    /// `installed` comes from [`install`] on the same `engine`.
    pub fn new(installed: Installed, engine: Arc<FlowEngine>, outbox_signal: Arc<Signal>) -> Self {
        Entitlement {
            shared: installed.0,
            engine,
            outbox_signal,
            stats: CheckStats::default(),
        }
    }

    /// Tells the outbox's worker there may be something to send.
    pub fn wake_outbox(&self) {
        self.outbox_signal.raise();
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.shared.registry.load_full()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EntitlementError {
    #[error("no service `{name}`; services: {}", known.join(", "))]
    UnknownService { name: String, known: Vec<String> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// The plugin faulted (trap, limit) or declined to decide; the request
    /// is neither passed nor failed.
    #[error("{0}")]
    Plugin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// A bug of the host's (a panicked task), not the client's.
    #[error("{0}")]
    Internal(String),
}
