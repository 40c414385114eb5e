//! rulehost: the fixed core that runs per-service business rules written as
//! WebAssembly components. See ARCHITECTURE.md for the map of its parts.

pub mod cli;
pub mod contract;
pub mod harness;
pub mod registry;
pub mod runtime;
