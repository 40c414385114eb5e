//! The process-flow engine: durable flows of automatic, manual and timer
//! tasks, with demands that insert tasks into running flows. Reconciliation
//! and provisioning run on it.
//!
//! Architecture invariant: the engine does no network I/O of its own. A
//! transition that must tell someone queues a notification in the same
//! transaction; `notify` delivers it.

mod definition;
mod driver;
mod engine;
#[cfg(test)]
mod props;
mod roles;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use definition::{
    ACTIONS, Definition, DemandSpec, TaskKind, TaskSpec, load_definitions, parse_duration,
};
pub use driver::Driver;
pub use engine::{ActionHandler, ActionOutcome, FlowEngine, SYSTEM};
pub use roles::{Role, Roles};

use crate::store::StoreError;
use crate::store::flows::{FlowRecord, HistoryRecord, TaskRecord};

/// A flow as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowView {
    #[serde(flatten)]
    pub flow: FlowRecord,
    pub tasks: Vec<TaskRecord>,
    pub history: Vec<HistoryRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no flow definition `{name}`; definitions: {}", known.join(", "))]
    UnknownDefinition { name: String, known: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}
