//! The contract's data types, with helpers for the lookups every rule makes.

/// What a reset condition that is due does (the contract's `plan-reset`).
pub use crate::__private::setup_world::rulehost::plugin::types::PlanReset as Reset;
/// Why a plan may not be used now, and what to offer instead (the
/// contract's `plan-restriction`).
pub use crate::__private::setup_world::rulehost::plugin::types::PlanRestriction as Restriction;
pub use crate::__private::setup_world::rulehost::plugin::types::{
    Account, AccountStatus, Association, AsyncNotice, Billing, Channel, Charge, Communication,
    Contact, Context, Failure, FailureCode, Money, Participant, Plan, PlanAccount, PlanKind,
    Procedure, Properties, ServiceRequest, Session, SessionEvent, SessionEventAt, Timestamp, Usage,
    Verdict,
};

use crate::Error;

/// The value of `key` in a list of properties, if present.
pub fn property<'a>(properties: &'a [(String, String)], key: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses `key` from a list of properties, or returns `default` when absent.
/// `what` names the list in the error (e.g. "config").
fn parse_property<T: core::str::FromStr>(
    properties: &[(String, String)],
    what: &str,
    key: &str,
    default: T,
) -> Result<T, Error> {
    match property(properties, key) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            Error::new(format!(
                "{what} `{key}` is `{raw}`, which is not a valid {}",
                core::any::type_name::<T>()
            ))
        }),
    }
}

impl Context {
    /// A context for tests: the given service and time, no config.
    pub fn new(service: impl Into<String>, now: Timestamp) -> Self {
        Context {
            service: service.into(),
            config: Vec::new(),
            now,
        }
    }

    /// Adds a config entry (builder style, for tests).
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// The raw config value of `key`.
    pub fn config(&self, key: &str) -> Option<&str> {
        property(&self.config, key)
    }

    /// The config value of `key` parsed as `T`, or `default` when the service
    /// does not set it. A value that does not parse is an error naming the key.
    pub fn config_or<T: core::str::FromStr>(&self, key: &str, default: T) -> Result<T, Error> {
        parse_property(&self.config, "config", key, default)
    }
}

impl ServiceRequest {
    /// The request attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        property(&self.attributes, key)
    }
}

impl Account {
    /// The account attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        property(&self.attributes, key)
    }
}

impl Plan {
    /// A plan for tests: the given id and kind, no parameters, no maximum
    /// of destinations.
    pub fn new(id: impl Into<String>, kind: PlanKind) -> Self {
        Plan {
            id: id.into(),
            kind,
            config: Vec::new(),
            max_destinations: None,
        }
    }

    /// Adds a plan parameter (builder style, for tests).
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// The plan parameter `key`.
    pub fn config(&self, key: &str) -> Option<&str> {
        property(&self.config, key)
    }

    /// The plan parameter `key` parsed as `T`, or `default` when absent.
    pub fn config_or<T: core::str::FromStr>(&self, key: &str, default: T) -> Result<T, Error> {
        parse_property(&self.config, "plan parameter", key, default)
    }
}

impl PlanAccount {
    /// An account for tests: no group.
    pub fn new(id: impl Into<String>, billing: Billing, balance: Money) -> Self {
        PlanAccount {
            id: id.into(),
            group: String::new(),
            billing,
            balance,
        }
    }
}

impl Communication {
    /// A communication for tests: the account's first, to `destination`
    /// starting at `start`, with no access method, carrier, region or
    /// attributes.
    pub fn new(id: impl Into<String>, destination: impl Into<String>, start: Timestamp) -> Self {
        Communication {
            id: id.into(),
            access_method: String::new(),
            access_groups: Vec::new(),
            carrier: String::new(),
            destination: destination.into(),
            region: String::new(),
            start,
            sequence: 1,
            attributes: Vec::new(),
        }
    }

    /// The communication attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        property(&self.attributes, key)
    }
}

impl Association {
    /// A destination associated at `associated_at`, not used since and
    /// with no expiry (for tests).
    pub fn new(destination: impl Into<String>, associated_at: Timestamp) -> Self {
        Association {
            destination: destination.into(),
            associated_at,
            uses: 0,
            last_used: None,
            expires_at: None,
        }
    }
}

impl Usage {
    /// No uses and no associations since `counters_since` (for tests).
    pub fn since(counters_since: Timestamp) -> Self {
        Usage {
            total_uses: 0,
            recent_uses: Vec::new(),
            counters_since,
            associations: Vec::new(),
        }
    }

    /// Adds an association (builder style, for tests).
    pub fn with_association(mut self, association: Association) -> Self {
        self.associations.push(association);
        self
    }
}

impl Restriction {
    /// Restricted for `reason`, leaving the alternate to the host's plan
    /// selection.
    pub fn new(reason: impl Into<String>) -> Self {
        Restriction {
            reason: reason.into(),
            alternate: None,
        }
    }

    /// Names the plan to offer instead.
    pub fn with_alternate(mut self, plan: impl Into<String>) -> Self {
        self.alternate = Some(plan.into());
        self
    }
}

impl Reset {
    /// Dissociates every destination of `usage` and resets the counters.
    pub fn everything(usage: &Usage, reason: impl Into<String>) -> Self {
        Reset {
            dissociate: usage
                .associations
                .iter()
                .map(|a| a.destination.clone())
                .collect(),
            reset_counters: true,
            reason: reason.into(),
        }
    }

    /// Dissociates these destinations, leaving the counters as they are.
    pub fn dissociate(destinations: Vec<String>, reason: impl Into<String>) -> Self {
        Reset {
            dissociate: destinations,
            reset_counters: false,
            reason: reason.into(),
        }
    }
}

impl Participant {
    /// The participant attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        property(&self.attributes, key)
    }
}

impl Session {
    /// The session attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        property(&self.attributes, key)
    }
}

impl Verdict {
    /// Entitled at `level`.
    pub fn pass(level: impl Into<String>) -> Self {
        Verdict::Pass(level.into())
    }

    /// Not entitled, for `code`, with a reason people can read.
    pub fn fail(code: FailureCode, reason: impl Into<String>) -> Self {
        Verdict::Fail(Failure {
            code,
            reason: reason.into(),
        })
    }
}

/// The checks most verifiers start with: the account exists, its `contract`
/// (named in the reasons, e.g. "support contract") has not expired or ended,
/// it is not suspended, and it is paid up. Returns the account when it is in
/// good standing, or the failing verdict.
///
/// ```
/// # use rulehost_sdk::types::*;
/// let failed = standing(None, 0, "support contract");
/// assert_eq!(failed.err(), Some(Verdict::fail(FailureCode::NoAccount, "there is no account with this id")));
/// ```
pub fn standing<'a>(
    account: Option<&'a Account>,
    now: Timestamp,
    contract: &str,
) -> Result<&'a Account, Verdict> {
    let Some(account) = account else {
        return Err(Verdict::fail(
            FailureCode::NoAccount,
            "there is no account with this id",
        ));
    };
    let ended = account.contract_end.is_some_and(|end| end <= now);
    if account.status == AccountStatus::Expired || ended {
        return Err(Verdict::fail(
            FailureCode::Expired,
            format!("the {contract} has expired"),
        ));
    }
    if account.status == AccountStatus::Suspended {
        return Err(Verdict::fail(
            FailureCode::Other,
            "the account is suspended",
        ));
    }
    if !account.paid_up {
        return Err(Verdict::fail(
            FailureCode::Unpaid,
            format!("the {contract} is not paid up"),
        ));
    }
    Ok(account)
}

/// When a reconciliation notice lapses and when its second notice goes out,
/// from the service's config: `lapse_days` (default 10) and
/// `second_notice_days` (default 1; 0 for none), or, for tests and short
/// procedures, `lapse_seconds` and `second_notice_seconds`, which win when
/// set. Returns (seconds until the lapse, seconds before it for the second
/// notice); a second notice not before the lapse is dropped.
///
/// ```
/// # use rulehost_sdk::types::*;
/// let ctx = Context::new("s", 0).with_config("lapse_seconds", "30").with_config("second_notice_seconds", "10");
/// assert_eq!(notice_timing(&ctx), Ok((30, Some(10))));
/// assert_eq!(notice_timing(&Context::new("s", 0)), Ok((10 * DAY, Some(DAY))));
/// ```
pub fn notice_timing(ctx: &Context) -> Result<(u64, Option<u64>), Error> {
    let days: u64 = ctx.config_or("lapse_days", 10)?;
    let second_days: u64 = ctx.config_or("second_notice_days", 1)?;
    let lapse = match ctx.config("lapse_seconds") {
        Some(_) => ctx.config_or("lapse_seconds", 0u64)?,
        None => days.checked_mul(DAY).ok_or_else(|| {
            Error::new(format!(
                "config `lapse_days` is `{days}`, which is too long"
            ))
        })?,
    };
    if lapse == 0 {
        return Err(Error::new(
            "the lapse must be at least one second: set `lapse_days` or `lapse_seconds` above 0",
        ));
    }
    let second = match ctx.config("second_notice_seconds") {
        Some(_) => ctx.config_or("second_notice_seconds", 0u64)?,
        None => second_days.saturating_mul(DAY),
    };
    Ok((lapse, (second > 0 && second < lapse).then_some(second)))
}

/// Seconds in a day, for durations given in days.
pub const DAY: u64 = 24 * 60 * 60;
