//! Hostile test plugin `hostile-panic`: `verify` and `on_event` panic.
//!
//! It exists for the host's tests (it is not registered in `rules/`): a
//! panic in a wasm32 plugin is a trap, which the host must confine to the one
//! call, report as an error naming the plugin and the cause, and recover from
//! (a trapped warm instance is not reused). The panic message goes to the
//! plugin's stderr, which the host logs under the plugin's name.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, SessionCharging, Verifier};

pub struct HostilePanic;

/// What the panic says, for tests that look for it in the host's log.
pub const MESSAGE: &str = "hostile plugin panicked on purpose";

impl Verifier for HostilePanic {
    #[allow(clippy::panic, reason = "panicking is this test plugin's whole point")]
    fn verify(
        _ctx: &Context,
        _request: &ServiceRequest,
        _account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        panic!("{MESSAGE}");
    }
}

impl SessionCharging for HostilePanic {
    #[allow(clippy::panic, reason = "panicking is this test plugin's whole point")]
    fn on_event(
        _ctx: &Context,
        _session: &Session,
        _event: &SessionEventAt,
    ) -> Result<Vec<Charge>, Error> {
        panic!("{MESSAGE}");
    }
}

rulehost_sdk::export!(HostilePanic: verifier, session_charging);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "hostile plugin panicked on purpose")]
    fn verify_panics() {
        let request = ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: vec![],
        };
        let _ = HostilePanic::verify(&Context::new("hostile", 0), &request, None);
    }
}
