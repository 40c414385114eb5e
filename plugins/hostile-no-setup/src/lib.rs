//! Hostile test plugin `hostile-no-setup`: built for the newest contract
//! (0.3, `plugin-sdk/wit`) but without the `setup` export, so the host could
//! never give its instances their service and config.
//!
//! It does not use `rulehost-sdk` (whose `export!` always exports `setup`):
//! it is generated with wit-bindgen from `plugin-sdk/wit`'s
//! `verifier-plugin` world alone. The host must refuse it at load, saying
//! what is missing.

wit_bindgen::generate!({
    path: "../../plugin-sdk/wit",
    world: "verifier-plugin",
});

use exports::rulehost::plugin::verifier::Guest;
use rulehost::plugin::types::{Account, ServiceRequest, Timestamp, Verdict};

pub struct NoSetup;

impl Guest for NoSetup {
    fn verify(
        _now: Timestamp,
        _request: ServiceRequest,
        _account: Option<Account>,
    ) -> Result<Verdict, String> {
        Ok(Verdict::Pass("standard".into()))
    }
}

// Only the wasm32 build exports; natively the crate just compiles and tests.
#[cfg(target_arch = "wasm32")]
export!(NoSetup);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_passes_everyone() {
        let request = ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: vec![],
        };
        let verdict = NoSetup::verify(0, request, None);
        assert!(matches!(verdict, Ok(Verdict::Pass(level)) if level == "standard"));
    }
}
