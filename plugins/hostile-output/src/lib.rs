//! Hostile test plugin `hostile-output`: `verify` passes with a level name of
//! 4 MiB.
//!
//! It exists for the host's tests (it is not registered in `rules/`): the
//! answer fits easily in the default 16 MiB of plugin memory but is four times
//! the default 1 MiB output limit (`output_kib`), so the host must refuse it as
//! oversize output instead of storing or forwarding it, and report an error
//! naming the plugin and the cause.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Verifier};

pub struct HostileOutput;

/// The length of the level name, in bytes.
pub const LEVEL_BYTES: usize = 4 << 20;

impl Verifier for HostileOutput {
    fn verify(
        _ctx: &Context,
        _request: &ServiceRequest,
        _account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        Ok(Verdict::pass("x".repeat(LEVEL_BYTES)))
    }
}

rulehost_sdk::export!(HostileOutput: verifier);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_four_mib() {
        let request = ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: vec![],
        };
        let level = match HostileOutput::verify(&Context::new("hostile", 0), &request, None) {
            Ok(Verdict::Pass(level)) => level.len(),
            _ => 0,
        };
        assert_eq!(level, 4 * 1024 * 1024);
    }
}
