//! Hostile test plugin `hostile-loop`: `verify` never returns, unless the
//! request's description is `answer` (then it passes at once, so tests can
//! mix fast calls among the slow ones). As a plan policy, `restriction`
//! never returns either, unless the plan's parameter `answer` is `true`
//! (then it restricts nothing).
//!
//! It exists for the host's tests (it is not registered in `rules/`): the
//! host must stop the call at the service's `timeout_ms` (epoch
//! interruption), turn it into an error naming the plugin and the cause, and
//! keep serving. The loop goes through `black_box` so that the optimizer
//! cannot reason it away.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, PlanPolicy, Verifier};

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
        spin()
    }
}

impl PlanPolicy for HostileLoop {
    fn restriction(
        _ctx: &Context,
        plan: &Plan,
        _account: &PlanAccount,
        _usage: &Usage,
        _communication: &Communication,
    ) -> Result<Option<Restriction>, Error> {
        if plan.config("answer") == Some("true") {
            return Ok(None);
        }
        spin()
    }
}

fn spin() -> ! {
    let mut spins: u64 = 0;
    loop {
        spins = core::hint::black_box(spins.wrapping_add(1));
    }
}

rulehost_sdk::export!(HostileLoop: verifier, plan_policy);
