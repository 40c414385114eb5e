//! Communication plans: a subscriber reaches a service through an access
//! method, names an account (with its PIN) and a destination; the host
//! checks them, chooses a plan by the communication's attributes, applies
//! the plan's restriction and reset conditions (its plan-policy plugin),
//! offers an alternate plan when the chosen one is restricted, and when the
//! communication ends rates it, debits the account's ledger and writes a
//! detail record, all in one transaction.
//!
//! Plans are data (`rules/plans/<service>.toml`, read by
//! `registry::plan_file`); selection (`select`) and rating (`rate`) are
//! pure functions of them; restrictions and resets are the plugin's.
//!
//! Authorizing is decide-then-record like a check: the account, its
//! counters and associations are read on a reader, the plugin runs on the
//! worker thread, and one write records the communication and any reset.
//! Authorizing reserves nothing: completing charges what the communication
//! cost, a prepaid balance down to zero at most (the record says what was
//! not covered), and `max_duration_secs` is how the caller avoids that.

mod authorize;
mod complete;
mod owners;
mod policy;
pub mod rate;
pub mod select;
mod sweep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use serde::Serialize;

pub use authorize::{AuthorizeRequest, Authorized};
pub use complete::{CompleteRequest, Record};
pub use owners::Owner;
pub use sweep::{DEFINITION as RESET_FLOW, Sweeper, install};

use crate::ledger::LedgerError;
use crate::registry::Registry;
use crate::store::{Store, StoreError};

/// Why a communication was refused, or a call about one failed. Every
/// refusal leaves the store as it was (a wrong PIN aside: it counts).
#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    #[error("{0}")]
    Invalid(String),
    #[error("no account `{0}`")]
    NoAccount(String),
    #[error("wrong PIN; {remaining} tries left before the PIN locks")]
    WrongPin { remaining: u32 },
    #[error("the PIN is locked after too many wrong tries; try again after {until}")]
    PinLocked {
        until: String,
        retry_after_secs: u64,
    },
    #[error("the account has no PIN; set one with PUT /v1/accounts/{0}")]
    NoPin(String),
    #[error("account `{0}` is {1}, not active")]
    AccountInactive(String, String),
    #[error("no service places communications through access method `{0}`")]
    UnknownAccessMethod(String),
    #[error("invalid destination: {0}")]
    InvalidDestination(String),
    #[error("no plan serves this communication")]
    NoPlan,
    #[error(
        "the balance ({balance}) does not cover the start of a communication under plan `{plan}` ({needed})"
    )]
    InsufficientBalance {
        plan: String,
        balance: i64,
        needed: i64,
    },
    #[error(
        "plan `{plan}` may not be used now: {reason}; no alternate plan serves this communication"
    )]
    Restricted { plan: String, reason: String },
    #[error("no communication `{0}`")]
    NoCommunication(String),
    #[error("communication `{id}` is {state}: {what}")]
    WrongState {
        id: String,
        state: String,
        what: &'static str,
    },
    /// Decided again too many times while others changed what it read.
    #[error("{0}")]
    Conflict(String),
    #[error("no plan `{0}` for this account's services")]
    NoSuchPlan(String),
    #[error("the plan policy failed: {0}")]
    Plugin(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlansError {
    /// The code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            PlansError::Invalid(_) => "invalid",
            PlansError::NoAccount(_) => "no-account",
            PlansError::WrongPin { .. } => "wrong-pin",
            PlansError::PinLocked { .. } => "pin-locked",
            PlansError::NoPin(_) => "no-pin",
            PlansError::AccountInactive(..) => "account-inactive",
            PlansError::UnknownAccessMethod(_) => "unknown-access-method",
            PlansError::InvalidDestination(_) => "invalid-destination",
            PlansError::NoPlan => "no-plan",
            PlansError::InsufficientBalance { .. } => "insufficient-balance",
            PlansError::Restricted { .. } => "restricted",
            PlansError::NoCommunication(_) => "no-communication",
            PlansError::WrongState { state, .. } if state == "completed" => "already-completed",
            PlansError::WrongState { .. } => "wrong-state",
            PlansError::NoSuchPlan(_) => "no-plan",
            PlansError::Conflict(_) => "conflict",
            PlansError::Plugin(_) => "plugin-error",
            PlansError::Ledger(_) => "ledger",
            PlansError::Store(_) => "internal",
        }
    }
}

/// How PINs are guarded, host-wide (`[plans]`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Wrong PINs in a row that lock an account's PIN.
    pub pin_attempts: u32,
    /// How long a locked PIN stays locked.
    pub pin_lock_secs: u64,
    /// The longest communication authorized when neither the balance nor
    /// the plan sets a shorter one.
    pub max_duration_secs: u64,
    /// How often the reset timer sweeps every plan's reset conditions.
    pub reset_sweep_secs: u64,
    /// How far a communication's `at` may be from the host's clock; `None`
    /// takes any time (tests and replays of recorded traffic).
    pub max_clock_skew_secs: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pin_attempts: 5,
            pin_lock_secs: 15 * 60,
            max_duration_secs: 4 * 3600,
            reset_sweep_secs: 3600,
            max_clock_skew_secs: Some(300),
        }
    }
}

/// One account's turn (see [`Plans`]).
type Turn = tokio::sync::Mutex<()>;

/// The plans part of the host: authorize, choose, complete.
pub struct Plans {
    store: Store,
    registry: Arc<ArcSwap<Registry>>,
    settings: Settings,
    /// One account's authorizations and completions, taken in turn within
    /// this host: each changes what the others read, so side by side they
    /// would only decide again. Across hosts the version check still holds.
    /// An async lock: a call waiting for its account's turn over HTTP holds
    /// no thread, so it never delays other accounts' calls.
    turns: Mutex<HashMap<String, Weak<Turn>>>,
    /// Whose the communications this host authorized and that have not
    /// ended here are (a shortcut; the store says the same).
    owners: owners::Owners,
}

impl Plans {
    pub fn new(store: Store, registry: Arc<ArcSwap<Registry>>, settings: Settings) -> Plans {
        Plans {
            store,
            registry,
            settings,
            turns: Mutex::default(),
            owners: owners::Owners::default(),
        }
    }

    /// The account's turn: held while one of its communications is
    /// decided and recorded.
    fn turn(&self, account: &str) -> Arc<Turn> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(turn) = turns.get(account).and_then(Weak::upgrade) {
            return turn;
        }
        // Forget the accounts no one holds, now and then.
        if turns.len() > 1024 {
            turns.retain(|_, turn| turn.strong_count() > 0);
        }
        let turn = Arc::new(Turn::new(()));
        turns.insert(account.to_owned(), Arc::downgrade(&turn));
        turn
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }
}

/// A preferred plan as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Preferred {
    pub account_id: String,
    pub plan: Option<String>,
    pub set_by: Option<String>,
    pub set_at: Option<String>,
}
