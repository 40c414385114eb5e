//! Test plugin `contract-v0-1`: a verifier built for contract 0.1, proving
//! that the host still loads and serves plugins built before 0.2.
//!
//! It does not use `rulehost-sdk` (which builds for the newest contract): it
//! is generated with wit-bindgen from the frozen `plugin-sdk/wit-0.1`, where
//! every call carries the whole context. The rule is support-contract's,
//! except that the level a pass grants comes from the service's config
//! (`level`, default `standard`), so the tests see the config arrive.

wit_bindgen::generate!({
    path: "../../plugin-sdk/wit-0.1",
    world: "verifier-plugin",
    additional_derives: [PartialEq],
});

use exports::rulehost::plugin::verifier::Guest;
use rulehost::plugin::types::{
    Account, AccountStatus, Context, Failure, FailureCode, ServiceRequest, Verdict,
};

pub struct ContractV01;

fn fail(code: FailureCode, reason: &str) -> Verdict {
    Verdict::Fail(Failure {
        code,
        reason: reason.into(),
    })
}

impl Guest for ContractV01 {
    fn verify(
        ctx: Context,
        _request: ServiceRequest,
        account: Option<Account>,
    ) -> Result<Verdict, String> {
        let Some(account) = account else {
            return Ok(fail(
                FailureCode::NoAccount,
                "there is no account with this id",
            ));
        };
        let expired = account.contract_end.is_some_and(|end| end <= ctx.now);
        Ok(match (account.status, account.paid_up) {
            (AccountStatus::Active, true) if !expired => {
                let level = ctx.config.iter().find(|(k, _)| k == "level");
                Verdict::Pass(level.map_or("standard".into(), |(_, v)| v.clone()))
            }
            (_, false) => fail(FailureCode::Unpaid, "the contract is not paid up"),
            _ => fail(FailureCode::Expired, "the support contract has expired"),
        })
    }
}

// Only the wasm32 build exports; natively the crate just compiles and tests.
#[cfg(target_arch = "wasm32")]
export!(ContractV01);

#[cfg(test)]
mod tests {
    use super::*;

    fn account(status: AccountStatus, paid_up: bool) -> Account {
        Account {
            id: "acme-1".into(),
            status,
            paid_up,
            tier: "standard".into(),
            contract_end: None,
            contact: None,
            attributes: vec![],
        }
    }

    fn ctx(config: &[(&str, &str)]) -> Context {
        Context {
            service: "support".into(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            now: 1_700_000_000,
        }
    }

    fn request() -> ServiceRequest {
        ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: vec![],
        }
    }

    #[test]
    fn a_pass_grants_the_configured_level() {
        let verdict = ContractV01::verify(
            ctx(&[("level", "gold")]),
            request(),
            Some(account(AccountStatus::Active, true)),
        );
        assert_eq!(verdict, Ok(Verdict::Pass("gold".into())));
        let verdict = ContractV01::verify(
            ctx(&[]),
            request(),
            Some(account(AccountStatus::Active, true)),
        );
        assert_eq!(verdict, Ok(Verdict::Pass("standard".into())));
    }

    #[test]
    fn unpaid_and_missing_accounts_fail() {
        let unpaid = ContractV01::verify(
            ctx(&[]),
            request(),
            Some(account(AccountStatus::Active, false)),
        );
        assert!(matches!(unpaid, Ok(Verdict::Fail(f)) if f.code == FailureCode::Unpaid));
        let missing = ContractV01::verify(ctx(&[]), request(), None);
        assert!(matches!(missing, Ok(Verdict::Fail(f)) if f.code == FailureCode::NoAccount));
    }
}
