//! Hostile test plugin `hostile-contract`: a plugin built for a contract
//! version the host does not serve.
//!
//! It exists for the host's tests (it is not registered in `rules/`). It does
//! not use `rulehost-sdk`: it is generated with wit-bindgen from its own
//! `wit/plugin.wit`, which declares `package rulehost:plugin@2.0.0` with an
//! incompatible `verifier.verify(account-id) -> bool`. The host must refuse
//! it at load with a message naming both versions (2.0.0 and the one it
//! serves), and keep serving the previous version.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

use exports::rulehost::plugin::verifier::Guest;

pub struct HostileContract;

impl Guest for HostileContract {
    fn verify(_account_id: String) -> bool {
        true
    }
}

// Only the wasm32 build exports; natively the crate just compiles and tests.
#[cfg(target_arch = "wasm32")]
export!(HostileContract);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_says_yes() {
        assert!(HostileContract::verify("acme-1".into()));
    }
}
