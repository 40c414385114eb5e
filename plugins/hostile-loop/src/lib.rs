//! Hostile test plugin `hostile-loop`: `verify` never returns.
//!
//! It exists for the host's tests (it is not registered in `rules/`): the
//! host must stop the call at the service's `timeout_ms` (epoch
//! interruption), turn it into an error naming the plugin and the cause, and
//! keep serving. The loop goes through `black_box` so that the optimizer
//! cannot reason it away.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Verifier};

pub struct HostileLoop;

impl Verifier for HostileLoop {
    fn verify(
        _ctx: &Context,
        _request: &ServiceRequest,
        _account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        let mut spins: u64 = 0;
        loop {
            spins = core::hint::black_box(spins.wrapping_add(1));
        }
    }
}

rulehost_sdk::export!(HostileLoop: verifier);
