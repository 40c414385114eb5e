//! Hostile test plugin `hostile-loop`: `verify` never returns, unless the
//! request's description is `answer` (then it passes at once, so tests can
//! mix fast calls among the slow ones).
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
        request: &ServiceRequest,
        _account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        if request.description == "answer" {
            return Ok(Verdict::pass("answered"));
        }
        let mut spins: u64 = 0;
        loop {
            spins = core::hint::black_box(spins.wrapping_add(1));
        }
    }
}

rulehost_sdk::export!(HostileLoop: verifier);
