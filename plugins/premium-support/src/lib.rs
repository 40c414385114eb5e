//! Sample plugin `premium-support`: a support desk with two levels of
//! service, `basic` and `premium`, where the level an account gets depends on
//! its tier and on how severe the request is.
//!
//! Verifier, in this order:
//! - no account: fail `no-account`;
//! - status `expired`, or a `contract_end` at or before now: fail `expired`;
//! - status `suspended`: fail `other`;
//! - not paid up: fail `unpaid`;
//! - a tier in neither tier list: fail `other`;
//! - a request `severity` in neither severity list: fail `other` (a request
//!   without a `severity` attribute counts as `normal`);
//! - a premium tier: pass at `premium`, whatever the severity;
//! - a basic tier with a basic severity: pass at `basic`;
//! - a basic tier with a premium severity: fail `needs-authorization`
//!   ("severity high needs premium support").
//!
//! Tiers and severities match case-insensitively. Config keys (comma-separated
//! lists):
//! - `premium_tiers`, default `premium,gold`;
//! - `basic_tiers`, default `basic`;
//! - `premium_severities` (severities a basic tier does not cover), default
//!   `high,critical`;
//! - `basic_severities`, default `low,normal`.
//!
//! Reconciler, by failure code:
//! - `expired`: the requester is sent to the reconciliation page now, then the
//!   account's contact is mailed (`sync-then-async`); the chance lapses after
//!   `lapse_days` (config, default 10, at least 1) with a second notice
//!   `second_notice_days` (default 1; 0 for none) before the lapse. Without a
//!   contact there is nobody to mail, so only the page (`sync`).
//! - `unpaid`: the page (`sync`), where the requester can pay.
//! - `needs-authorization`: denied (`none`): premium support is sold, not
//!   reconciled.
//! - `no-account` and anything else: denied (`none`).

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Reconciler, Verifier};

pub struct PremiumSupport;

/// The level names this plugin passes at.
pub const BASIC: &str = "basic";
pub const PREMIUM: &str = "premium";

/// The service's parameters, read from its config.
struct Levels {
    premium_tiers: Vec<String>,
    basic_tiers: Vec<String>,
    premium_severities: Vec<String>,
    basic_severities: Vec<String>,
}

impl Levels {
    fn from_config(ctx: &Context) -> Self {
        let list = |key: &str, default: &str| -> Vec<String> {
            ctx.config(key)
                .unwrap_or(default)
                .split(',')
                .map(|item| item.trim().to_ascii_lowercase())
                .filter(|item| !item.is_empty())
                .collect()
        };
        Levels {
            premium_tiers: list("premium_tiers", "premium,gold"),
            basic_tiers: list("basic_tiers", "basic"),
            premium_severities: list("premium_severities", "high,critical"),
            basic_severities: list("basic_severities", "low,normal"),
        }
    }

    /// Every severity this service knows, for error messages.
    fn known_severities(&self) -> String {
        let all: Vec<&str> = self
            .basic_severities
            .iter()
            .chain(&self.premium_severities)
            .map(String::as_str)
            .collect();
        all.join(", ")
    }
}

fn contains(list: &[String], item: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(item))
}

impl Verifier for PremiumSupport {
    fn verify(
        ctx: &Context,
        request: &ServiceRequest,
        account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        let account = match standing(account, ctx.now, "support contract") {
            Ok(account) => account,
            Err(failed) => return Ok(failed),
        };

        let levels = Levels::from_config(ctx);
        let tier = account.tier.trim();
        let premium_tier = contains(&levels.premium_tiers, tier);
        if !premium_tier && !contains(&levels.basic_tiers, tier) {
            return Ok(Verdict::fail(
                FailureCode::Other,
                format!("tier `{tier}` includes no support"),
            ));
        }
        let severity = request.attribute("severity").unwrap_or("normal").trim();
        let premium_severity = contains(&levels.premium_severities, severity);
        if !premium_severity && !contains(&levels.basic_severities, severity) {
            return Ok(Verdict::fail(
                FailureCode::Other,
                format!(
                    "severity `{severity}` is not one of {}",
                    levels.known_severities()
                ),
            ));
        }
        Ok(match (premium_tier, premium_severity) {
            (true, _) => Verdict::pass(PREMIUM),
            (false, false) => Verdict::pass(BASIC),
            (false, true) => Verdict::fail(
                FailureCode::NeedsAuthorization,
                format!("severity {severity} needs premium support"),
            ),
        })
    }
}

impl Reconciler for PremiumSupport {
    fn procedure(
        ctx: &Context,
        _request: &ServiceRequest,
        failure: &Failure,
        account: Option<&Account>,
    ) -> Result<Procedure, Error> {
        // Read the config whatever the failure, so a bad value shows at once.
        let (lapse_after, second_notice_before) = notice_timing(ctx)?;

        Ok(match failure.code {
            FailureCode::Expired => match account.and_then(|a| a.contact.clone()) {
                Some(contact) => Procedure::SyncThenAsync(AsyncNotice {
                    contact,
                    channel: Channel::Email,
                    lapse_after,
                    second_notice_before,
                }),
                None => Procedure::Sync,
            },
            FailureCode::Unpaid => Procedure::Sync,
            FailureCode::NoAccount
            | FailureCode::NeedsAuthorization
            | FailureCode::PaymentPerIncident
            | FailureCode::Other => Procedure::None,
        })
    }
}

rulehost_sdk::export!(PremiumSupport: verifier, reconciler);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = 1_795_185_000; // 2026-11-20T14:30:00Z

    fn ctx() -> Context {
        Context::new("premium-support", NOW)
    }

    fn request(severity: Option<&str>) -> ServiceRequest {
        ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: "printer on fire".into(),
            attributes: severity
                .map(|s| vec![("severity".to_owned(), s.to_owned())])
                .unwrap_or_default(),
        }
    }

    fn account(tier: &str) -> Account {
        Account {
            id: "acme-1".into(),
            status: AccountStatus::Active,
            paid_up: true,
            tier: tier.into(),
            contract_end: Some(NOW + DAY as Timestamp),
            contact: Some(ada()),
            attributes: vec![],
        }
    }

    fn ada() -> Contact {
        Contact {
            name: "Ada".into(),
            email: "ada@acme.test".into(),
        }
    }

    fn verify(ctx: &Context, severity: Option<&str>, account: Option<&Account>) -> Verdict {
        match PremiumSupport::verify(ctx, &request(severity), account) {
            Ok(verdict) => verdict,
            Err(e) => Verdict::fail(FailureCode::Other, format!("plugin error: {e}")),
        }
    }

    fn code(verdict: &Verdict) -> Option<FailureCode> {
        match verdict {
            Verdict::Pass(_) => None,
            Verdict::Fail(f) => Some(f.code),
        }
    }

    fn failure(code: FailureCode) -> Failure {
        Failure {
            code,
            reason: String::new(),
        }
    }

    #[test]
    fn missing_account_fails_with_no_account() {
        assert_eq!(
            code(&verify(&ctx(), Some("low"), None)),
            Some(FailureCode::NoAccount)
        );
    }

    #[test]
    fn expired_status_or_ended_contract_fails_with_expired() {
        let mut expired = account("premium");
        expired.status = AccountStatus::Expired;
        assert_eq!(
            code(&verify(&ctx(), None, Some(&expired))),
            Some(FailureCode::Expired)
        );
        let mut ended = account("premium");
        ended.contract_end = Some(NOW);
        assert_eq!(
            code(&verify(&ctx(), None, Some(&ended))),
            Some(FailureCode::Expired)
        );
        // Expired wins over unpaid.
        ended.paid_up = false;
        assert_eq!(
            code(&verify(&ctx(), None, Some(&ended))),
            Some(FailureCode::Expired)
        );
    }

    #[test]
    fn open_ended_contract_does_not_expire() {
        let mut open = account("basic");
        open.contract_end = None;
        assert_eq!(verify(&ctx(), None, Some(&open)), Verdict::pass(BASIC));
    }

    #[test]
    fn suspended_account_fails_with_other() {
        let mut suspended = account("premium");
        suspended.status = AccountStatus::Suspended;
        assert_eq!(
            verify(&ctx(), None, Some(&suspended)),
            Verdict::fail(FailureCode::Other, "the account is suspended")
        );
    }

    #[test]
    fn unpaid_account_fails_with_unpaid() {
        let mut unpaid = account("premium");
        unpaid.paid_up = false;
        assert_eq!(
            code(&verify(&ctx(), Some("critical"), Some(&unpaid))),
            Some(FailureCode::Unpaid)
        );
    }

    #[test]
    fn premium_and_gold_tiers_pass_at_premium_for_every_severity() {
        for tier in ["premium", "gold", "Gold"] {
            for severity in ["low", "normal", "high", "critical"] {
                assert_eq!(
                    verify(&ctx(), Some(severity), Some(&account(tier))),
                    Verdict::pass(PREMIUM),
                    "tier {tier}, severity {severity}"
                );
            }
        }
    }

    #[test]
    fn basic_tier_passes_at_basic_for_low_and_normal() {
        for severity in [Some("low"), Some("normal"), Some("NORMAL"), None] {
            assert_eq!(
                verify(&ctx(), severity, Some(&account("basic"))),
                Verdict::pass(BASIC),
                "severity {severity:?}"
            );
        }
    }

    #[test]
    fn basic_tier_with_high_or_critical_needs_authorization() {
        assert_eq!(
            verify(&ctx(), Some("high"), Some(&account("basic"))),
            Verdict::fail(
                FailureCode::NeedsAuthorization,
                "severity high needs premium support"
            )
        );
        assert_eq!(
            code(&verify(&ctx(), Some("critical"), Some(&account("basic")))),
            Some(FailureCode::NeedsAuthorization)
        );
    }

    #[test]
    fn unknown_tier_fails_with_other() {
        assert_eq!(
            verify(&ctx(), Some("low"), Some(&account("bronze"))),
            Verdict::fail(FailureCode::Other, "tier `bronze` includes no support")
        );
    }

    #[test]
    fn unknown_severity_fails_with_other() {
        assert_eq!(
            verify(&ctx(), Some("urgent"), Some(&account("premium"))),
            Verdict::fail(
                FailureCode::Other,
                "severity `urgent` is not one of low, normal, high, critical"
            )
        );
    }

    #[test]
    fn tiers_and_severities_are_configurable() {
        let ctx = ctx()
            .with_config("premium_tiers", "platinum")
            .with_config("basic_tiers", "standard, gold")
            .with_config("basic_severities", "low,normal,high")
            .with_config("premium_severities", "critical");
        assert_eq!(
            verify(&ctx, Some("high"), Some(&account("gold"))),
            Verdict::pass(BASIC)
        );
        assert_eq!(
            code(&verify(&ctx, Some("critical"), Some(&account("standard")))),
            Some(FailureCode::NeedsAuthorization)
        );
        assert_eq!(
            verify(&ctx, Some("critical"), Some(&account("platinum"))),
            Verdict::pass(PREMIUM)
        );
        assert_eq!(
            code(&verify(&ctx, Some("low"), Some(&account("premium")))),
            Some(FailureCode::Other)
        );
    }

    #[test]
    fn expired_is_reconciled_now_then_by_mail_to_the_contact() {
        let got = PremiumSupport::procedure(
            &ctx(),
            &request(None),
            &failure(FailureCode::Expired),
            Some(&account("basic")),
        );
        assert_eq!(
            got,
            Ok(Procedure::SyncThenAsync(AsyncNotice {
                contact: ada(),
                channel: Channel::Email,
                lapse_after: 10 * DAY,
                second_notice_before: Some(DAY),
            }))
        );
    }

    #[test]
    fn lapse_and_second_notice_are_configurable() {
        let notice = |lapse: &str, second: &str| {
            let ctx = ctx()
                .with_config("lapse_days", lapse)
                .with_config("second_notice_days", second);
            match PremiumSupport::procedure(
                &ctx,
                &request(None),
                &failure(FailureCode::Expired),
                Some(&account("basic")),
            ) {
                Ok(Procedure::SyncThenAsync(n)) => Some((n.lapse_after, n.second_notice_before)),
                _ => None,
            }
        };
        assert_eq!(notice("3", "2"), Some((3 * DAY, Some(2 * DAY))));
        assert_eq!(notice("3", "0"), Some((3 * DAY, None)));
        assert_eq!(notice("1", "1"), Some((DAY, None)));
    }

    #[test]
    fn expired_without_contact_is_reconciled_now_only() {
        let mut no_contact = account("basic");
        no_contact.contact = None;
        let got = PremiumSupport::procedure(
            &ctx(),
            &request(None),
            &failure(FailureCode::Expired),
            Some(&no_contact),
        );
        assert_eq!(got, Ok(Procedure::Sync));
    }

    #[test]
    fn unpaid_is_reconciled_now() {
        let got = PremiumSupport::procedure(
            &ctx(),
            &request(None),
            &failure(FailureCode::Unpaid),
            Some(&account("basic")),
        );
        assert_eq!(got, Ok(Procedure::Sync));
    }

    #[test]
    fn other_failures_are_denied() {
        for code in [
            FailureCode::NoAccount,
            FailureCode::NeedsAuthorization,
            FailureCode::PaymentPerIncident,
            FailureCode::Other,
        ] {
            let got = PremiumSupport::procedure(
                &ctx(),
                &request(None),
                &failure(code),
                Some(&account("basic")),
            );
            assert_eq!(got, Ok(Procedure::None), "{code:?}");
        }
        let got = PremiumSupport::procedure(
            &ctx(),
            &request(None),
            &failure(FailureCode::NoAccount),
            None,
        );
        assert_eq!(got, Ok(Procedure::None));
    }

    #[test]
    fn bad_lapse_config_is_an_error_naming_the_key() {
        for bad in ["ten", "0", "-1", "300000000000000"] {
            let ctx = ctx().with_config("lapse_days", bad);
            let err = PremiumSupport::procedure(
                &ctx,
                &request(None),
                &failure(FailureCode::NeedsAuthorization),
                None,
            )
            .err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.message().contains("`lapse_days`")),
                "{bad}: {err:?}"
            );
        }
    }
}
