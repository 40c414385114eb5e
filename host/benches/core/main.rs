//! In-process costs of the core, in one benchmark binary (each binary links
//! wasmtime, so there are few): plugin calls (`verify/…`), full checks with
//! the rule as a plugin and natively (`check/…`), a check that starts a
//! reconciliation (`reconcile/…`), a flow step (`flow/…`) and the cheapest
//! commit the store can make (`store/…`), and a communication authorized
//! and completed (`communication/…`), and a session event charged
//! (`session/…`). Needs
//! `cargo xtask plugins` first.
//!
//! `cargo bench -p rulehost --bench core` (all), or with a filter:
//! `cargo bench -p rulehost --bench core -- check/`.

// A benchmark that cannot set up has nothing to measure: failing loudly is right.
#![allow(clippy::panic)]

mod calls;
mod check;
mod plans;
mod sessions;

criterion::criterion_group!(
    benches,
    calls::plugin_calls,
    check::checks,
    check::commit_floor,
    check::flow_step,
    plans::communications,
    sessions::events
);
criterion::criterion_main!(benches);
