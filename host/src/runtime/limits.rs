//! Per-service limits on what one plugin call may use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How instances are handled between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// Reuse warm instances (the fast path): a plugin's memory may carry over
    /// between calls until the instance is recycled.
    #[default]
    Warm,
    /// A fresh instance per call: nothing is shared between calls.
    Fresh,
}

/// The limits of one service's plugin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time per call.
    pub timeout: Duration,
    /// The size of a call's answer (strings and lists it returns), in bytes.
    pub output_bytes: u64,
    pub instances: InstanceMode,
    /// A warm instance is recycled after this many calls.
    pub max_calls_per_instance: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 16 << 20,
            timeout: Duration::from_millis(50),
            output_bytes: 1 << 20,
            instances: InstanceMode::Warm,
            max_calls_per_instance: 10_000,
        }
    }
}
