//! End-to-end tests: the runtime on real plugin components (sample and
//! hostile), and the `rulehost` binary as a user runs it.
//!
//! The plugins must be built first (`cargo xtask plugins`, which
//! `cargo xtask test` does).

mod browser;
mod cli;
mod entitlement;
mod live;
mod mail;
mod runtime;
mod serve;
mod server;
mod support;
mod webhook;
