//! Test plugin `contract-v0-2`: a verifier and a plan policy built for
//! contract 0.2, proving that the host still loads and serves plugins built
//! before 0.3.
//!
//! It does not use `rulehost-sdk` (which builds for the newest contract): it
//! is generated with wit-bindgen from the frozen `plugin-sdk/wit-0.2`, from
//! one world that includes 0.2's `setup-plugin`, `verifier-plugin` and
//! `plan-policy-plugin`. As 0.2 has it, `setup.configure` gives the
//! instance its service and config once and each call carries only `now`.
//!
//! - `verify`: support-contract's rule, except that the level a pass grants
//!   comes from the service's config (`level`, default `standard`), so the
//!   tests see the config arrive through `configure`.
//! - `restriction` (0.2: `option<string>`): at most `max_uses` (a plan
//!   parameter) uses in all, counted from `usage.total-uses`; the reason
//!   names the account and access group the host converted into 0.2's
//!   communication: "at most 3 uses of `basic` by acme-1 via mobile; 3 used".
//! - `reset-due` (0.2: one association, a bool): the destination has been
//!   used `reset_after_destination_uses` (a plan parameter) times.
//!
//! A plan parameter that is not a whole number is an `err` naming it.

wit_bindgen::generate!({
    path: "../../plugin-sdk/wit-0.2",
    inline: "
        package rulehost-test:contract-v0-2;

        world contract-v0-2 {
            include rulehost:plugin/setup-plugin@0.2.0;
            include rulehost:plugin/verifier-plugin@0.2.0;
            include rulehost:plugin/plan-policy-plugin@0.2.0;
        }
    ",
    world: "contract-v0-2",
    additional_derives: [PartialEq],
    generate_all,
});

use std::cell::RefCell;

use exports::rulehost::plugin::{plan_policy, setup, verifier};
use rulehost::plugin::types::{
    Account, AccountStatus, Association, Communication, Context, Failure, FailureCode, Plan,
    ServiceRequest, Timestamp, Usage, Verdict,
};

pub struct ContractV02;

std::thread_local! {
    /// The service and config from `configure`.
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

fn fail(code: FailureCode, reason: &str) -> Verdict {
    Verdict::Fail(Failure {
        code,
        reason: reason.into(),
    })
}

/// The plan parameter `key` as a whole number, if set.
fn whole(plan: &Plan, key: &str) -> Result<Option<u64>, String> {
    plan.config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, raw)| {
            raw.trim()
                .parse()
                .map_err(|_| format!("plan parameter `{key}` is `{raw}`, expected a whole number"))
        })
        .transpose()
}

impl setup::Guest for ContractV02 {
    fn configure(ctx: Context) -> Result<(), String> {
        CONTEXT.set(Some(ctx));
        Ok(())
    }
}

impl verifier::Guest for ContractV02 {
    fn verify(
        now: Timestamp,
        _request: ServiceRequest,
        account: Option<Account>,
    ) -> Result<Verdict, String> {
        let level = CONTEXT.with_borrow(|ctx| {
            let ctx = ctx.as_ref().ok_or("called before `setup.configure`")?;
            let level = ctx.config.iter().find(|(k, _)| k == "level");
            Ok::<_, String>(level.map_or("standard".into(), |(_, v)| v.clone()))
        })?;
        let Some(account) = account else {
            return Ok(fail(
                FailureCode::NoAccount,
                "there is no account with this id",
            ));
        };
        let expired = account.contract_end.is_some_and(|end| end <= now);
        Ok(match (account.status, account.paid_up) {
            (AccountStatus::Active, true) if !expired => Verdict::Pass(level),
            (_, false) => fail(FailureCode::Unpaid, "the contract is not paid up"),
            _ => fail(FailureCode::Expired, "the support contract has expired"),
        })
    }
}

impl plan_policy::Guest for ContractV02 {
    fn restriction(
        _now: Timestamp,
        plan: Plan,
        usage: Usage,
        communication: Communication,
    ) -> Result<Option<String>, String> {
        let Some(max) = whole(&plan, "max_uses")? else {
            return Ok(None);
        };
        Ok((usage.total_uses >= max).then(|| {
            format!(
                "at most {max} uses of `{}` by {} via {}; {} used",
                plan.id, communication.account_id, communication.access_group, usage.total_uses
            )
        }))
    }

    fn reset_due(
        _now: Timestamp,
        plan: Plan,
        association: Association,
        _usage: Usage,
    ) -> Result<bool, String> {
        Ok(whole(&plan, "reset_after_destination_uses")?.is_some_and(|n| association.uses >= n))
    }
}

// Only the wasm32 build exports; natively the crate just compiles and tests.
#[cfg(target_arch = "wasm32")]
export!(ContractV02);

#[cfg(test)]
mod tests {
    use super::*;
    use plan_policy::Guest as _;
    use setup::Guest as _;
    use verifier::Guest as _;

    fn plan(config: &[(&str, &str)]) -> Plan {
        Plan {
            id: "basic".into(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            max_destinations: Some(3),
        }
    }

    fn usage(total_uses: u64) -> Usage {
        Usage {
            total_uses,
            recent_uses: vec![],
            associated_destinations: 1,
        }
    }

    fn communication() -> Communication {
        Communication {
            id: "c1".into(),
            account_id: "acme-1".into(),
            access_group: "mobile".into(),
            carrier: "telco".into(),
            destination: "+4930123456".into(),
            start: 1_700_000_000,
        }
    }

    fn association(uses: u64) -> Association {
        Association {
            destination: "+4930123456".into(),
            associated_at: 1_700_000_000,
            uses,
            last_used: 1_700_000_000,
        }
    }

    fn account() -> Account {
        Account {
            id: "acme-1".into(),
            status: AccountStatus::Active,
            paid_up: true,
            tier: "standard".into(),
            contract_end: None,
            contact: None,
            attributes: vec![],
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
        let ctx = |config: Vec<(String, String)>| Context {
            service: "support".into(),
            config,
            now: 0,
        };
        assert_eq!(
            ContractV02::configure(ctx(vec![("level".into(), "gold".into())])),
            Ok(())
        );
        let verdict = ContractV02::verify(0, request(), Some(account()));
        assert_eq!(verdict, Ok(Verdict::Pass("gold".into())));
        assert_eq!(ContractV02::configure(ctx(vec![])), Ok(()));
        let verdict = ContractV02::verify(0, request(), Some(account()));
        assert_eq!(verdict, Ok(Verdict::Pass("standard".into())));
        let missing = ContractV02::verify(0, request(), None);
        assert!(matches!(missing, Ok(Verdict::Fail(f)) if f.code == FailureCode::NoAccount));
    }

    #[test]
    fn restriction_counts_total_uses() {
        let config = [("max_uses", "3")];
        assert_eq!(
            ContractV02::restriction(0, plan(&config), usage(2), communication()),
            Ok(None)
        );
        assert_eq!(
            ContractV02::restriction(0, plan(&config), usage(3), communication()),
            Ok(Some(
                "at most 3 uses of `basic` by acme-1 via mobile; 3 used".into()
            ))
        );
        assert_eq!(
            ContractV02::restriction(0, plan(&[]), usage(300), communication()),
            Ok(None)
        );
        assert_eq!(
            ContractV02::restriction(0, plan(&[("max_uses", "x")]), usage(0), communication()),
            Err("plan parameter `max_uses` is `x`, expected a whole number".into())
        );
    }

    #[test]
    fn reset_is_due_after_n_uses_of_the_destination() {
        let config = [("reset_after_destination_uses", "5")];
        let due = |uses| ContractV02::reset_due(0, plan(&config), association(uses), usage(9));
        assert_eq!(due(4), Ok(false));
        assert_eq!(due(5), Ok(true));
        assert_eq!(
            ContractV02::reset_due(0, plan(&[]), association(100), usage(9)),
            Ok(false)
        );
    }
}
