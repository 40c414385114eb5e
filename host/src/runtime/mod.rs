//! The plugin runtime: one wasmtime engine (component model, pooling
//! allocator, epoch interruption), compiled components cached by digest,
//! plugins checked against the contract at load, and warm instance pools
//! bound to each service's limits.
//!
//! Architecture invariant: the runtime knows nothing of HTTP, SQL or
//! services' business; it turns a `contract::Call` into a `contract::Outcome`
//! or a `CallError`, and nothing a plugin does can panic or stall the host.

mod binding;
pub mod bindings;
mod cache;
mod digest;
mod engine;
mod limits;
mod output;
mod plugin;
mod state;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use binding::{Binding, BindingStats, CallReport, SLOW_CALL};
pub use digest::Digest;
pub use engine::{Runtime, RuntimeOptions};
pub use limits::{InstanceMode, Limits};
pub use plugin::Plugin;
pub use state::LogLine;

use crate::contract::{Capability, ContractVersion};

/// The runtime could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not configure the wasm engine: {0}")]
    Engine(String),
    #[error("could not use the compile cache folder `{}`: {source}", dir.display())]
    Cache {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start the epoch ticker thread that enforces time limits: {0}")]
    Ticker(std::io::Error),
}

impl RuntimeError {
    fn engine(e: wasmtime::Error) -> Self {
        RuntimeError::Engine(format!("{e:#}"))
    }
}

/// A plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`{}: {kind}", digest.map(|d| format!(" ({d:?})")).unwrap_or_default())]
pub struct LoadError {
    pub plugin: String,
    pub digest: Option<Digest>,
    pub kind: LoadErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    #[error("cannot read `{}`: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error(
        "built for contract rulehost:plugin@{plugin}, but this host serves {}; rebuild it against rulehost-sdk {}.{}",
        crate::contract::supported_list(), host.major, host.minor
    )]
    ContractVersion {
        plugin: ContractVersion,
        host: ContractVersion,
    },
    #[error("exports no rulehost:plugin interface; export one with `rulehost_sdk::export!`")]
    NoCapabilities,
    #[error("bad exports: {0}")]
    Exports(String),
    #[error(
        "imports something the host does not provide (plugins may import only `host.log` and WASI): {0}"
    )]
    Link(String),
}

/// One call failed because of the plugin: the message names the plugin, its
/// version (digest) and the cause.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` ({digest:?}) {kind}")]
pub struct CallError {
    pub plugin: String,
    pub digest: Digest,
    pub kind: CallErrorKind,
    /// What the plugin logged before it failed.
    pub logs: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallErrorKind {
    #[error("does not export `{0}`")]
    Unsupported(Capability),
    #[error("timed out after {}", DisplayDuration(*limit))]
    Timeout { limit: Duration },
    #[error("exceeded its memory limit of {}", DisplayBytes(*limit))]
    MemoryLimit { limit: u64 },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned {} of output, over the limit of {}", DisplayBytes(*bytes), DisplayBytes(*limit))]
    OutputTooLarge { bytes: u64, limit: u64 },
    #[error("returned a value the contract does not allow: {0}")]
    Malformed(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl CallErrorKind {
    /// A short, stable name for logs, metrics and decision records.
    pub fn code(&self) -> &'static str {
        match self {
            CallErrorKind::Unsupported(_) => "unsupported",
            CallErrorKind::Timeout { .. } => "timeout",
            CallErrorKind::MemoryLimit { .. } => "memory-limit",
            CallErrorKind::Trap(_) => "trap",
            CallErrorKind::OutputTooLarge { .. } => "output-too-large",
            CallErrorKind::Malformed(_) => "malformed-output",
            CallErrorKind::Instantiate(_) => "instantiate",
        }
    }
}

struct DisplayBytes(u64);

impl fmt::Display for DisplayBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b >= 1 << 20 && b % (1 << 20) == 0 => write!(f, "{} MiB", b >> 20),
            b if b >= 1 << 10 && b % (1 << 10) == 0 => write!(f, "{} KiB", b >> 10),
            b => write!(f, "{b} bytes"),
        }
    }
}

struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0.as_millis())
    }
}
