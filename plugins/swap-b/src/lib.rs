//! Test plugin `swap-b`: a verifier that passes every request at level `b`.
//!
//! It exists for the hot-reload tests (it is not registered in `rules/`):
//! `swap-a` and `swap-b` export the same capability and differ only in the
//! level they answer, so a test swapping one for the other under load can
//! tell from each answer which version served it. A request without an
//! account fails with `no-account` in both, so one sandbox case holds for
//! either.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Verifier};

pub struct SwapB;

/// The level every pass carries.
pub const LEVEL: &str = "b";

impl Verifier for SwapB {
    fn verify(
        _ctx: &Context,
        _request: &ServiceRequest,
        account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        Ok(match account {
            Some(_) => Verdict::pass(LEVEL),
            None => Verdict::fail(FailureCode::NoAccount, "there is no account with this id"),
        })
    }
}

rulehost_sdk::export!(SwapB: verifier);

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ServiceRequest {
        ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: vec![],
        }
    }

    #[test]
    fn any_account_passes_at_level_b() {
        let account = Account {
            id: "acme-1".into(),
            status: AccountStatus::Suspended,
            paid_up: false,
            tier: "t".into(),
            contract_end: None,
            contact: None,
            attributes: vec![],
        };
        let verdict = SwapB::verify(&Context::new("swap", 0), &request(), Some(&account));
        assert_eq!(verdict, Ok(Verdict::pass("b")));
    }

    #[test]
    fn no_account_fails_with_no_account() {
        let verdict = SwapB::verify(&Context::new("swap", 0), &request(), None);
        let Ok(Verdict::Fail(failure)) = verdict else {
            panic!("expected a failure, got {verdict:?}")
        };
        assert_eq!(failure.code, FailureCode::NoAccount);
    }
}
