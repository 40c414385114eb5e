//! The data that crosses the plugin boundary. Field names and enum values are
//! the ones used in case files and the HTTP API (snake_case keys,
//! kebab-case values); timestamps are RFC 3339 text.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Capability, Properties};

/// What every call receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub service: String,
    pub config: Properties,
    pub now: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountStatus {
    Active,
    Expired,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub id: String,
    pub status: AccountStatus,
    pub paid_up: bool,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub contract_end: Option<Timestamp>,
    #[serde(default)]
    pub contact: Option<Contact>,
    #[serde(default)]
    pub attributes: Properties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub id: String,
    pub account_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub attributes: Properties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureCode {
    NoAccount,
    Expired,
    Unpaid,
    PaymentPerIncident,
    NeedsAuthorization,
    Other,
}

impl FailureCode {
    /// The code as it is written in JSON and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::NoAccount => "no-account",
            FailureCode::Expired => "expired",
            FailureCode::Unpaid => "unpaid",
            FailureCode::PaymentPerIncident => "payment-per-incident",
            FailureCode::NeedsAuthorization => "needs-authorization",
            FailureCode::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub code: FailureCode,
    #[serde(default)]
    pub reason: String,
}

/// The outcome of a check: `{"verdict": "pass", "level": ...}` or
/// `{"verdict": "fail", "code": ..., "reason": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Pass { level: String },
    Fail(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Email,
    Webhook(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncNotice {
    pub contact: Contact,
    pub channel: Channel,
    /// Seconds from the notice until the chance lapses.
    pub lapse_after: u64,
    /// Seconds before the lapse at which a second notice goes out.
    pub second_notice_before: Option<u64>,
}

/// What happens when a check fails: `{"procedure": "none" | "sync" | "async" | "sync-then-async", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "procedure", rename_all = "kebab-case")]
pub enum Procedure {
    None,
    Sync,
    Async(AsyncNotice),
    SyncThenAsync(AsyncNotice),
}

/// What kind of plan a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// Each communication is rated and paid for.
    #[default]
    PayAsYouGo,
    /// A paid period; communications within it are rated by the plan's rates.
    Subscription,
    /// Destinations are associated with the plan, up to a maximum.
    Unlimited,
}

impl PlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::PayAsYouGo => "pay-as-you-go",
            PlanKind::Subscription => "subscription",
            PlanKind::Unlimited => "unlimited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    #[serde(default)]
    pub kind: PlanKind,
    #[serde(default)]
    pub config: Properties,
    #[serde(default)]
    pub max_destinations: Option<u32>,
}

/// How an account pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Billing {
    /// Pays in advance: charged at most its balance, never below zero.
    #[default]
    Prepaid,
    /// Pays afterwards: charged in full; a negative balance is owed.
    Postpaid,
}

impl Billing {
    pub fn as_str(self) -> &'static str {
        match self {
            Billing::Prepaid => "prepaid",
            Billing::Postpaid => "postpaid",
        }
    }

    pub fn parse(raw: &str) -> Option<Billing> {
        match raw {
            "prepaid" => Some(Billing::Prepaid),
            "postpaid" => Some(Billing::Postpaid),
            _ => None,
        }
    }
}

/// The account a communication is placed for, as plans see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanAccount {
    pub id: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub billing: Billing,
    /// Minor units, before this communication.
    #[serde(default)]
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Communication {
    pub id: String,
    pub access_method: String,
    #[serde(default)]
    pub access_groups: Vec<String>,
    #[serde(default)]
    pub carrier: String,
    pub destination: String,
    #[serde(default)]
    pub region: String,
    pub start: Timestamp,
    /// The account's communication count including this one.
    #[serde(default = "first_in_sequence")]
    pub sequence: u64,
    #[serde(default)]
    pub attributes: Properties,
}

fn first_in_sequence() -> u64 {
    1
}

/// A destination associated with an "unlimited" plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Association {
    pub destination: String,
    pub associated_at: Timestamp,
    #[serde(default)]
    pub uses: u64,
    #[serde(default)]
    pub last_used: Option<Timestamp>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default)]
    pub total_uses: u64,
    /// Start times of recent uses, newest first.
    #[serde(default)]
    pub recent_uses: Vec<Timestamp>,
    /// When the counters were last reset (or first used).
    pub counters_since: Timestamp,
    #[serde(default)]
    pub associations: Vec<Association>,
}

/// Why a plan may not be used now, and what to offer instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    pub reason: String,
    #[serde(default)]
    pub alternate: Option<String>,
}

/// What a reset condition that is due does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    #[serde(default)]
    pub dissociate: Vec<String>,
    #[serde(default)]
    pub reset_counters: bool,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub id: String,
    pub account_id: String,
    pub joined_at: Timestamp,
    #[serde(default)]
    pub attributes: Properties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub id: String,
    pub started_at: Timestamp,
    pub last_event_at: Timestamp,
    #[serde(default)]
    pub attributes: Properties,
    #[serde(default)]
    pub participants: Vec<Participant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    Join(Participant),
    /// The id of the participant who leaves.
    Leave(String),
    /// The session ends; whoever is present is charged.
    End {},
}

/// `{"at": ..., "join": {...}}`, `{"at": ..., "leave": "p2"}` or `{"at": ..., "end": {}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEventAt {
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: SessionEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub participant: String,
    pub account_id: String,
    /// Minor units.
    pub amount: i64,
    pub description: String,
    pub period_start: Timestamp,
    pub period_end: Timestamp,
}

/// Inputs of `verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    pub request: ServiceRequest,
    /// Absent when the host knows no such account.
    #[serde(default)]
    pub account: Option<Account>,
}

/// Inputs of `procedure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureInput {
    pub request: ServiceRequest,
    pub failure: Failure,
    #[serde(default)]
    pub account: Option<Account>,
}

/// Inputs of `restriction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictionInput {
    pub plan: Plan,
    pub account: PlanAccount,
    pub usage: Usage,
    pub communication: Communication,
}

/// Inputs of `reset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetInput {
    pub plan: Plan,
    pub usage: Usage,
}

/// Inputs of `on_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnEventInput {
    pub session: Session,
    pub event: SessionEventAt,
}

/// One call into a plugin, with its inputs (the context aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    Verify(VerifyInput),
    Procedure(ProcedureInput),
    Restriction(RestrictionInput),
    Reset(ResetInput),
    OnEvent(OnEventInput),
}

impl Call {
    /// The capability a plugin must export to answer this call.
    pub fn capability(&self) -> Capability {
        match self {
            Call::Verify(_) => Capability::Verifier,
            Call::Procedure(_) => Capability::Reconciler,
            Call::Restriction(_) | Call::Reset(_) => Capability::PlanPolicy,
            Call::OnEvent(_) => Capability::SessionCharging,
        }
    }

    /// The call's name as written in case files (`on_event`).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Verify(_) => "verify",
            Call::Procedure(_) => "procedure",
            Call::Restriction(_) => "restriction",
            Call::Reset(_) => "reset",
            Call::OnEvent(_) => "on_event",
        }
    }
}

/// What a call produced, in the JSON shape cases match against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Verdict(Verdict),
    Procedure(Procedure),
    Restriction {
        restricted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        alternate: Option<String>,
    },
    Reset {
        reset: bool,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        dissociate: Vec<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reset_counters: bool,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    Charges {
        charges: Vec<Charge>,
    },
    /// The plugin declined to decide and said why (an `err` it returned:
    /// data, not a fault of the plugin's sandbox).
    Error {
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_have_the_documented_json_shape() {
        let fail = Outcome::Verdict(Verdict::Fail(Failure {
            code: FailureCode::NoAccount,
            reason: "none".into(),
        }));
        assert_eq!(
            serde_json::to_value(&fail).ok(),
            Some(serde_json::json!({"verdict": "fail", "code": "no-account", "reason": "none"}))
        );
        let notice = Outcome::Procedure(Procedure::SyncThenAsync(AsyncNotice {
            contact: Contact {
                name: "A".into(),
                email: "a@x.test".into(),
            },
            channel: Channel::Webhook("https://crm.test".into()),
            lapse_after: 10,
            second_notice_before: None,
        }));
        assert_eq!(
            serde_json::to_value(&notice).ok(),
            Some(serde_json::json!({"procedure": "sync-then-async",
                "contact": {"name": "A", "email": "a@x.test"},
                "channel": {"webhook": "https://crm.test"},
                "lapse_after": 10, "second_notice_before": null}))
        );
    }

    #[test]
    fn session_events_read_flat() {
        let leave: SessionEventAt =
            serde_json::from_str(r#"{"at": "2026-01-01T00:00:00Z", "leave": "p2"}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leave.event, SessionEvent::Leave("p2".into()));
    }
}
