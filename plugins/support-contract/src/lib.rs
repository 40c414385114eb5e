//! Sample plugin `support-contract`: a support service whose clients file
//! requests automatically.
//!
//! Verifier: pass at level `standard` when the account is active, paid up and
//! its contract has not ended; otherwise fail with `no-account`, `expired`,
//! `unpaid` (or `other` for a suspended account).
//!
//! Reconciler: an asynchronous notice by mail to the account's contact; the
//! chance lapses after `lapse_days` (config, default 10) with a second notice
//! `second_notice_days` (default 1) before the lapse (or `lapse_seconds` and
//! `second_notice_seconds`, see `rulehost_sdk::types::notice_timing`). Without a contact there
//! is nobody to ask, so the request is denied.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Reconciler, Verifier};

pub struct SupportContract;

impl Verifier for SupportContract {
    fn verify(
        ctx: &Context,
        _request: &ServiceRequest,
        account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        if let Err(failed) = standing(account, ctx.now, "support contract") {
            return Ok(failed);
        }
        Ok(Verdict::pass("standard"))
    }
}

impl Reconciler for SupportContract {
    fn procedure(
        ctx: &Context,
        _request: &ServiceRequest,
        failure: &Failure,
        account: Option<&Account>,
    ) -> Result<Procedure, Error> {
        let (lapse_after, second_notice_before) = notice_timing(ctx)?;
        let contact = account.and_then(|a| a.contact.clone());
        Ok(match (failure.code, contact) {
            (FailureCode::NoAccount, _) | (_, None) => Procedure::None,
            (_, Some(contact)) => Procedure::Async(AsyncNotice {
                contact,
                channel: Channel::Email,
                lapse_after,
                second_notice_before,
            }),
        })
    }
}

rulehost_sdk::export!(SupportContract: verifier, reconciler);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = 1_700_000_000;

    fn ctx() -> Context {
        Context::new("support-contract", NOW)
    }

    fn request() -> ServiceRequest {
        ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: "printer on fire".into(),
            attributes: vec![],
        }
    }

    fn account(status: AccountStatus, paid_up: bool) -> Account {
        Account {
            id: "acme-1".into(),
            status,
            paid_up,
            tier: "standard".into(),
            contract_end: Some(NOW + 86_400),
            contact: Some(Contact {
                name: "Ada".into(),
                email: "ada@acme.test".into(),
            }),
            attributes: vec![],
        }
    }

    fn code(verdict: Verdict) -> Option<FailureCode> {
        match verdict {
            Verdict::Pass(_) => None,
            Verdict::Fail(f) => Some(f.code),
        }
    }

    #[test]
    fn active_paid_account_passes_at_standard() {
        let verdict = SupportContract::verify(
            &ctx(),
            &request(),
            Some(&account(AccountStatus::Active, true)),
        );
        assert_eq!(verdict, Ok(Verdict::pass("standard")));
    }

    #[test]
    fn failures_carry_the_right_code() {
        let v = |a: Option<&Account>| {
            code(
                SupportContract::verify(&ctx(), &request(), a)
                    .unwrap_or_else(|e| Verdict::fail(FailureCode::Other, e.to_string())),
            )
        };
        assert_eq!(v(None), Some(FailureCode::NoAccount));
        assert_eq!(
            v(Some(&account(AccountStatus::Expired, true))),
            Some(FailureCode::Expired)
        );
        assert_eq!(
            v(Some(&account(AccountStatus::Active, false))),
            Some(FailureCode::Unpaid)
        );
        let mut ended = account(AccountStatus::Active, true);
        ended.contract_end = Some(NOW);
        assert_eq!(v(Some(&ended)), Some(FailureCode::Expired));
    }

    #[test]
    fn reconciliation_notifies_the_contact_with_configured_lapse() {
        let failure = Failure {
            code: FailureCode::Expired,
            reason: String::new(),
        };
        let ctx = ctx().with_config("lapse_days", "3");
        let got = SupportContract::procedure(
            &ctx,
            &request(),
            &failure,
            Some(&account(AccountStatus::Expired, true)),
        );
        let Ok(Procedure::Async(notice)) = got else {
            panic!("expected an async notice, got {got:?}")
        };
        assert_eq!(notice.lapse_after, 3 * DAY);
        assert_eq!(notice.second_notice_before, Some(DAY));
        assert_eq!(notice.contact.email, "ada@acme.test");
    }

    #[test]
    fn bad_config_is_an_error_naming_the_key() {
        let failure = Failure {
            code: FailureCode::Expired,
            reason: String::new(),
        };
        let ctx = ctx().with_config("lapse_days", "ten");
        let err = SupportContract::procedure(&ctx, &request(), &failure, None).err();
        assert!(err.is_some_and(|e| e.message().contains("`lapse_days`")));
    }
}
