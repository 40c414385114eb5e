//! rulehost: the fixed core that runs per-service business rules written as
//! WebAssembly components. See ARCHITECTURE.md for the map of its parts.

pub mod auth;
pub mod cli;
pub mod contract;
pub mod entitlement;
pub mod flow;
pub mod harness;
pub mod http;
pub mod ledger;
pub mod notify;
pub mod plans;
#[cfg(test)]
mod prop_text;
pub mod provisioning;
pub mod registry;
pub mod runtime;
pub mod secret;
pub mod sessions;
pub mod store;
pub mod text;
