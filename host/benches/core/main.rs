//! In-process costs of the core, in one benchmark binary (each binary links
//! wasmtime, so there are few): plugin calls (`verify/…`), full checks with
//! the rule as a plugin and natively (`check/…`), a check that starts a
//! reconciliation (`reconcile/…`) and a flow step (`flow/…`). Needs
//! `cargo xtask plugins` first.
//!
//! `cargo bench -p rulehost --bench core` (all), or with a filter:
//! `cargo bench -p rulehost --bench core -- check/`.

// A benchmark that cannot set up has nothing to measure: failing loudly is right.
#![allow(clippy::panic)]

mod calls;
mod check;

criterion::criterion_group!(
    benches,
    calls::plugin_calls,
    check::checks,
    check::flow_step
);
criterion::criterion_main!(benches);
