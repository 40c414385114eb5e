//! Authorizing a communication: check the account and the destination,
//! choose the plan, apply its resets and restriction, and record the
//! communication (or the alternate offered), in one write.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rate::{self, talk_cost};
use super::select::{self, Attributes};
use super::{Plans, PlansError, policy};
use crate::contract::{
    Association, Billing, Communication, Plan, PlanAccount, PlanKind, Properties, Reset,
    RestrictionInput, Usage,
};
use crate::entitlement::{valid_attributes, valid_id};
use crate::ledger::{self, PinCheck, PinPolicy};
use crate::registry::Service;
use crate::registry::plan_file::{AssociateOn, PlanDef, Rates, ServicePlans, valid_access_method};
use crate::store::plans::{self as q, AssociationRow, CommunicationRow};
use crate::store::{self, Conn, new_id};
use crate::{secret, text};

/// The body of `POST /v1/communications`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    pub account_id: String,
    pub pin: String,
    pub access_method: String,
    pub destination: String,
    /// When it starts; now when absent.
    #[serde(default)]
    pub at: Option<Timestamp>,
    #[serde(default)]
    pub carrier: String,
    #[serde(default)]
    pub attributes: Properties,
}

/// The answer: authorized under a plan, or restricted with an alternate
/// offered (the caller then chooses).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Authorized {
    Plan {
        id: String,
        plan: String,
        balance: i64,
        rates: Rates,
        /// None for a postpaid account under a plan with no cap.
        max_duration_secs: Option<u64>,
    },
    Restricted {
        id: String,
        restricted: RestrictedPlan,
        alternate: Offer,
        balance: i64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RestrictedPlan {
    pub plan: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    pub plan: String,
    pub rates: Rates,
    pub max_duration_secs: Option<u64>,
}

/// What was read for one account before deciding.
struct Read {
    billing: Billing,
    group: String,
    balance: i64,
    sequence: u64,
    preferred: Option<String>,
    status: String,
    pin: Option<store::ledger::PinState>,
}

/// One plan's counters and associations as read.
pub(super) struct PlanState {
    usage: q::UsageRow,
    recent: Vec<i64>,
    associations: Vec<AssociationRow>,
}

/// A plan found usable, with what recording it takes.
struct Usable {
    plan: String,
    rates: Rates,
    max_duration_secs: Option<u64>,
    reset: Option<Reset>,
    associate_now: bool,
    association_expires: Option<i64>,
}

/// What one plan says of this communication.
enum Verdict {
    Usable(Usable),
    Restricted {
        reason: String,
        alternate: Option<String>,
        reset: Option<Reset>,
    },
    Unaffordable {
        needed: i64,
    },
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl AuthorizeRequest {
    fn validate(&self) -> Result<(), PlansError> {
        if !valid_id(&self.account_id) {
            return Err(PlansError::Invalid("`account_id` must be 1 to 200 printable characters without spaces, `/`, `?` or `#`".into()));
        }
        if !valid_access_method(&self.access_method) {
            return Err(PlansError::Invalid(
                "`access_method` must be 1 to 200 printable characters without spaces".into(),
            ));
        }
        if self.pin.len() > 64 {
            return Err(PlansError::Invalid("`pin` is too long".into()));
        }
        text::line("carrier", &self.carrier).map_err(PlansError::Invalid)?;
        if self.carrier.len() > 200 {
            return Err(PlansError::Invalid("`carrier` is at most 200 bytes".into()));
        }
        valid_attributes(&self.attributes).map_err(|e| PlansError::Invalid(e.to_string()))?;
        Ok(())
    }
}

impl Plans {
    /// Authorizes a communication (see the module doc).
    pub fn authorize(&self, req: AuthorizeRequest) -> Result<Authorized, PlansError> {
        req.validate()?;
        let at = req.at.unwrap_or_else(Timestamp::now);
        let registry = self.registry();
        let book = &registry.plans;
        let plans = book
            .by_access_method(&req.access_method)
            .ok_or_else(|| PlansError::UnknownAccessMethod(req.access_method.clone()))?;
        let service = registry
            .service(&plans.service)
            .ok_or_else(|| PlansError::UnknownAccessMethod(req.access_method.clone()))?
            .clone();

        let read = self
            .store
            .read(|conn| read_account(conn, &req.account_id))?;
        let read = read.ok_or_else(|| PlansError::NoAccount(req.account_id.clone()))?;
        // Nothing about the account is told before its PIN is right.
        self.check_pin(&req, &read)?;
        if read.status != "active" {
            return Err(PlansError::AccountInactive(
                req.account_id.clone(),
                read.status,
            ));
        }

        select::check_destination(plans, &req.destination)
            .map_err(PlansError::InvalidDestination)?;
        let region = select::region_of(plans, &req.destination)
            .unwrap_or_default()
            .to_owned();
        let groups = plans
            .access_methods
            .get(&req.access_method)
            .cloned()
            .unwrap_or_default();
        let local_minutes = at.as_second().div_euclid(60) + i64::from(plans.utc_offset_minutes);
        let sequence = read.sequence + 1;
        let attrs = Attributes {
            account_id: &req.account_id,
            account_group: &read.group,
            access_method: &req.access_method,
            access_groups: &groups,
            destination: &req.destination,
            region: &region,
            carrier: &req.carrier,
            local_minutes,
            sequence,
            attributes: &req.attributes,
        };
        let ranked: Vec<String> = select::rank(plans, &attrs, read.preferred.as_deref())
            .into_iter()
            .map(str::to_owned)
            .collect();
        if ranked.is_empty() {
            return Err(PlansError::NoPlan);
        }

        let communication = Communication {
            id: new_id("com", 12),
            access_method: req.access_method.clone(),
            access_groups: groups.clone(),
            carrier: req.carrier.clone(),
            destination: req.destination.clone(),
            region: region.clone(),
            start: at,
            sequence,
            attributes: req.attributes.clone(),
        };
        let account = PlanAccount {
            id: req.account_id.clone(),
            group: read.group.clone(),
            billing: read.billing,
            balance: read.balance,
        };
        let judge = |plan_id: &str| -> Result<Verdict, PlansError> {
            let def = &plans.plans[plan_id];
            let state = self
                .store
                .read(|conn| read_plan_state(conn, &account.id, def, ms(at)))?;
            self.judge(&service, plans, def, &account, &communication, state, at)
        };

        let first = ranked[0].clone();
        let (chosen, restricted) = match judge(&first)? {
            Verdict::Usable(usable) => (usable, None),
            Verdict::Unaffordable { needed } => {
                return Err(PlansError::InsufficientBalance {
                    plan: first,
                    balance: read.balance,
                    needed,
                });
            }
            Verdict::Restricted {
                reason,
                alternate,
                reset,
            } => {
                let mut tried = vec![first.clone()];
                let offers = alternate.into_iter().chain(ranked[1..].iter().cloned());
                let mut found = None;
                for plan in offers {
                    if tried.contains(&plan) || !plans.plans.contains_key(&plan) {
                        continue;
                    }
                    tried.push(plan.clone());
                    if let Verdict::Usable(usable) = judge(&plan)? {
                        found = Some(usable);
                        break;
                    }
                }
                match found {
                    Some(alternate) => (alternate, Some((first.clone(), reason, reset))),
                    None => {
                        return Err(PlansError::Restricted {
                            plan: first,
                            reason,
                        });
                    }
                }
            }
        };

        let row = CommunicationRow {
            id: communication.id.clone(),
            service: plans.service.clone(),
            account_id: req.account_id.clone(),
            state: if restricted.is_some() {
                "awaiting-choice"
            } else {
                "authorized"
            }
            .into(),
            plan: restricted
                .as_ref()
                .map_or(chosen.plan.clone(), |(plan, ..)| plan.clone()),
            rates: serde_json::to_value(&chosen.rates).unwrap_or(Value::Null),
            max_duration_secs: chosen.max_duration_secs.and_then(|s| i64::try_from(s).ok()),
            restriction: restricted.as_ref().map(|(_, reason, _)| reason.clone()),
            alternate_plan: restricted.as_ref().map(|_| chosen.plan.clone()),
            alternate_rates: restricted
                .as_ref()
                .map(|_| serde_json::to_value(&chosen.rates).unwrap_or(Value::Null)),
            alternate_max_secs: restricted
                .as_ref()
                .and(chosen.max_duration_secs)
                .and_then(|s| i64::try_from(s).ok()),
            access_method: req.access_method.clone(),
            access_groups: json!(groups),
            destination: req.destination.clone(),
            region,
            carrier: req.carrier.clone(),
            attributes: serde_json::to_value(&req.attributes).unwrap_or(Value::Null),
            sequence: 0,
            started_at: ms(at),
            created_at: store::now_ms(),
            completed_at: None,
        };
        // While a choice is pending, the row's rates are the alternate's
        // too: completing without choosing is refused anyway.
        let resets: Vec<(String, Reset)> = [
            restricted
                .as_ref()
                .and_then(|(plan, _, reset)| reset.clone().map(|r| (plan.clone(), r))),
            chosen.reset.clone().map(|r| (chosen.plan.clone(), r)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let pin = req.pin.clone();
        let clear_failures = read.pin.as_ref().is_some_and(|p| p.failures > 0);
        let settings = self.settings;
        let account_id = req.account_id.clone();
        let associate = (chosen.associate_now && restricted.is_none()).then(|| {
            (
                chosen.plan.clone(),
                req.destination.clone(),
                chosen.association_expires,
            )
        });
        self.store
            .write(move |tx| -> Result<Result<(), PinCheck>, PlansError> {
                // A right PIN after wrong ones: the count starts again.
                if clear_failures {
                    let policy = PinPolicy {
                        lock_after: settings.pin_attempts,
                        lock_for: std::time::Duration::from_secs(settings.pin_lock_secs),
                    };
                    match ledger::verify_pin(tx, &account_id, &pin, store::now_ms(), &policy)? {
                        PinCheck::Right => {}
                        refused => return Ok(Err(refused)),
                    }
                }
                let mut row = row;
                row.sequence = q::take_sequence(tx, &account_id)?;
                q::insert_communication(tx, &row)?;
                for (plan, reset) in &resets {
                    q::reset(
                        tx,
                        &account_id,
                        plan,
                        &reset.dissociate,
                        reset.reset_counters,
                        ms(at),
                    )?;
                }
                if let Some((plan, destination, expires)) = &associate {
                    q::associate(tx, &account_id, plan, destination, ms(at), *expires)?;
                }
                Ok(Ok(()))
            })
            .and_then(|pin| pin.map_err(|refused| pin_error(refused, &req.account_id, ms(at))))?;

        Ok(match restricted {
            None => Authorized::Plan {
                id: communication.id,
                plan: chosen.plan,
                balance: read.balance,
                rates: chosen.rates,
                max_duration_secs: chosen.max_duration_secs,
            },
            Some((plan, reason, _)) => Authorized::Restricted {
                id: communication.id,
                restricted: RestrictedPlan { plan, reason },
                alternate: Offer {
                    plan: chosen.plan,
                    rates: chosen.rates,
                    max_duration_secs: chosen.max_duration_secs,
                },
                balance: read.balance,
            },
        })
    }

    /// The PIN, checked on what was read; a wrong one is counted (and may
    /// lock the PIN) in a write of its own, committed whatever the answer.
    fn check_pin(&self, req: &AuthorizeRequest, read: &Read) -> Result<(), PlansError> {
        let now = store::now_ms();
        let state = read.pin.as_ref();
        let (Some(salt), Some(hash)) = (
            state.and_then(|p| p.salt.as_deref()),
            state.and_then(|p| p.hash.as_deref()),
        ) else {
            return Err(PlansError::NoPin(req.account_id.clone()));
        };
        if let Some(until) = state.and_then(|p| p.locked_until).filter(|u| *u > now) {
            return Err(locked(until, now));
        }
        // Hashed whatever its shape, so the time says nothing of it.
        let right = secret::same_bytes(&ledger::hash_pin(&req.pin, salt), hash)
            && ledger::valid_pin(&req.pin).is_ok();
        if right {
            return Ok(());
        }
        let policy = PinPolicy {
            lock_after: self.settings.pin_attempts,
            lock_for: std::time::Duration::from_secs(self.settings.pin_lock_secs),
        };
        let account = req.account_id.clone();
        let pin = req.pin.clone();
        match self
            .store
            .write(move |tx| ledger::verify_pin(tx, &account, &pin, now, &policy))?
        {
            // Set anew meanwhile, to what was given.
            PinCheck::Right => Ok(()),
            refused => Err(pin_error(refused, &req.account_id, now)),
        }
    }

    /// What one plan says of this communication: resets first (so the
    /// restriction sees their effect), then the unlimited plan's maximum of
    /// destinations, the plugin's restriction, and the balance.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        service: &Service,
        plans: &ServicePlans,
        def: &PlanDef,
        account: &PlanAccount,
        communication: &Communication,
        state: PlanState,
        at: Timestamp,
    ) -> Result<Verdict, PlansError> {
        let plan = Plan {
            id: def.id.clone(),
            kind: def.kind,
            config: def.config.clone(),
            max_destinations: max_destinations(plans, def, account, &communication.region),
        };
        let mut usage = usage_of(&state, at);
        let reset = if usage.total_uses > 0 || !usage.associations.is_empty() {
            policy::reset(service, at, plan.clone(), usage.clone())?
        } else {
            None
        };
        if let Some(reset) = &reset {
            usage
                .associations
                .retain(|a| !reset.dissociate.contains(&a.destination));
            if reset.reset_counters {
                usage.total_uses = 0;
                usage.recent_uses.clear();
                usage.counters_since = at;
            }
        }

        let associated = usage
            .associations
            .iter()
            .any(|a| a.destination == communication.destination);
        if def.kind == PlanKind::Unlimited && !associated {
            let max = plan.max_destinations.unwrap_or(0);
            if usage.associations.len() >= max as usize {
                return Ok(Verdict::Restricted {
                    reason: format!("all {max} destinations of this unlimited plan are taken"),
                    alternate: None,
                    reset,
                });
            }
        }

        if let Some(found) = policy::restriction(
            service,
            at,
            RestrictionInput {
                plan: plan.clone(),
                account: account.clone(),
                usage: usage.clone(),
                communication: communication.clone(),
            },
        )? {
            return Ok(Verdict::Restricted {
                reason: found.reason,
                alternate: found.alternate,
                reset,
            });
        }

        let first_use = state.usage.activated_at.is_none();
        let subscription_due = def.kind == PlanKind::Subscription
            && state.usage.paid_until.is_none_or(|until| until <= ms(at));
        let cap = def
            .max_duration_secs
            .unwrap_or(self.settings.max_duration_secs);
        let max_duration_secs = match account.billing {
            Billing::Postpaid => Some(cap),
            Billing::Prepaid => {
                let fixed = rate::fixed_cost(&def.rates, first_use, subscription_due);
                let available = account.balance - fixed;
                match rate::max_duration(&def.rates, available, cap) {
                    Some(secs) => Some(secs),
                    None => {
                        return Ok(Verdict::Unaffordable {
                            needed: fixed + talk_cost(&def.rates, 1),
                        });
                    }
                }
            }
        };
        let associate_now = def.kind == PlanKind::Unlimited
            && !associated
            && def.associate_on == AssociateOn::Attempt;
        Ok(Verdict::Usable(Usable {
            plan: def.id.clone(),
            rates: def.rates.clone(),
            max_duration_secs,
            reset,
            associate_now,
            association_expires: def
                .association_secs
                .and_then(|s| i64::try_from(s.saturating_mul(1000)).ok())
                .map(|s| ms(at).saturating_add(s)),
        }))
    }
}

/// The maximum of associated destinations for this account: the most
/// specific setting wins (account, account group, region, plan, file).
pub(super) fn max_destinations(
    plans: &ServicePlans,
    def: &PlanDef,
    account: &PlanAccount,
    region: &str,
) -> Option<u32> {
    let by = &def.max_destinations_by;
    by.account
        .get(&account.id)
        .or_else(|| by.account_group.get(&account.group))
        .or_else(|| by.region.get(region))
        .copied()
        .or(def.max_destinations)
        .or(plans.max_destinations)
}

pub(super) fn usage_of(state: &PlanState, at: Timestamp) -> Usage {
    Usage {
        total_uses: u64::try_from(state.usage.total_uses).unwrap_or(0),
        recent_uses: state.recent.iter().map(|ms| ts(*ms)).collect(),
        counters_since: state.usage.counters_since.map_or(at, ts),
        associations: state
            .associations
            .iter()
            .map(|a| Association {
                destination: a.destination.clone(),
                associated_at: ts(a.associated_at),
                uses: u64::try_from(a.uses).unwrap_or(0),
                last_used: a.last_used.map(ts),
                expires_at: a.expires_at.map(ts),
            })
            .collect(),
    }
}

/// The most recent uses passed to a plugin, at most.
const MAX_RECENT_USES: u32 = 1000;

pub(super) fn read_plan_state(
    conn: &Conn<'_>,
    account: &str,
    def: &PlanDef,
    at: i64,
) -> Result<PlanState, PlansError> {
    let usage = q::usage(conn, account, &def.id)?;
    let window = i64::try_from(def.usage_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Uses since the counters started (that instant included), within
    // the window before `at` (its start excluded, as plugins count).
    let since = usage
        .counters_since
        .unwrap_or(i64::MIN)
        .max(at.saturating_sub(window).saturating_add(1));
    Ok(PlanState {
        recent: q::recent_uses(conn, account, &def.id, since, MAX_RECENT_USES)?,
        associations: q::associations(conn, account, Some(&def.id), at)?,
        usage,
    })
}

fn read_account(conn: &Conn<'_>, id: &str) -> Result<Option<Read>, PlansError> {
    let Some(account) = store::entitlement::get_account(conn, id)? else {
        return Ok(None);
    };
    Ok(Some(Read {
        status: account.status,
        pin: store::ledger::pin_state(conn, id)?,
        billing: Billing::parse(&account.billing).unwrap_or_default(),
        group: account.group,
        balance: store::ledger::balance(conn, id)?.unwrap_or(0),
        sequence: u64::try_from(q::last_sequence(conn, id)?).unwrap_or(0),
        preferred: q::preferred(conn, id)?.map(|p| p.plan),
    }))
}

fn locked(until: i64, now: i64) -> PlansError {
    PlansError::PinLocked {
        until: store::rfc3339(until),
        retry_after_secs: u64::try_from((until - now).max(0) / 1000 + 1).unwrap_or(1),
    }
}

fn pin_error(check: PinCheck, account: &str, now: i64) -> PlansError {
    match check {
        PinCheck::Right => PlansError::Invalid("internal: a right PIN refused".into()),
        PinCheck::Wrong { remaining } => PlansError::WrongPin { remaining },
        PinCheck::Locked { until } => locked(until, now),
        PinCheck::NoPin => PlansError::NoPin(account.to_owned()),
    }
}
