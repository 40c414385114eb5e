//! End-to-end tests: the runtime on real plugin components (sample and
//! hostile), and the `rulehost` binary as a user runs it.
//!
//! The plugins must be built first (`cargo xtask plugins`, which
//! `cargo xtask test` does).

// Test support code panics on purpose: a fixture that cannot be set up must
// stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod cli;
mod decisions;
mod embedded;
mod entitlement;
mod hardening_http;
mod hardening_reconcile;
mod ledger;
mod live;
mod mail;
mod plans;
mod props;
mod provisioning;
mod provisioning_site;
mod reload;
mod runtime;
mod serve;
mod server;
mod sessions;
mod store;
mod support;
mod tokens;
mod webhook;
