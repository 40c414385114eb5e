//! Hostile test plugin `hostile-memory`: `verify` allocates until memory runs
//! out.
//!
//! It exists for the host's tests (it is not registered in `rules/`): the
//! host's store limits must refuse to grow the plugin's memory past the
//! service's `memory_mib`, the allocation failure traps, and the host turns
//! the trap into an error naming the plugin and the cause, then keeps
//! serving. Each MiB is written to and kept alive through `black_box`, so
//! the optimizer can neither skip nor free it.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Verifier};

pub struct HostileMemory;

/// The size of each allocation.
const MIB: usize = 1 << 20;

impl Verifier for HostileMemory {
    fn verify(
        _ctx: &Context,
        _request: &ServiceRequest,
        _account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(core::hint::black_box(vec![0xA5; MIB]));
            core::hint::black_box(&hoard);
        }
    }
}

rulehost_sdk::export!(HostileMemory: verifier);
