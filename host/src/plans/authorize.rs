//! Authorizing a communication: check the account and the destination,
//! choose the plan, apply its resets and restriction, and record the
//! communication (or the alternate offered), in one write.

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rate::{self, talk_cost};
use super::select::{self, Attributes};
use super::{Owner, Plans, PlansError, policy};
use crate::contract::{
    Association, Billing, Communication, Plan, PlanAccount, PlanKind, Properties, Reset,
    RestrictionInput, Usage,
};
use crate::entitlement::{valid_attributes, valid_id};
use crate::ledger::{self, PinCheck, PinPolicy};
use crate::registry::plan_file::{AssociateOn, PlanDef, Rates, ServicePlans, valid_access_method};
use crate::registry::{Registry, Service};
use crate::store::plans::{self as q, AssociationRow, CommunicationRow};
use crate::store::{self, Conn, StoreError, Tx, new_id};
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

impl Authorized {
    /// The communication's id.
    pub fn id(&self) -> &str {
        match self {
            Authorized::Plan { id, .. } | Authorized::Restricted { id, .. } => id,
        }
    }
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
    pin: store::ledger::PinState,
}

/// One plan's counters and associations as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlanState {
    usage: q::UsageRow,
    recent: Vec<i64>,
    associations: Vec<AssociationRow>,
    /// Communications under the plan still in progress: (destination, start).
    pending: Vec<(String, i64)>,
}

/// What a decision read of one plan, in a form cheap to read again: the
/// counters, the associations, the communications in progress. The uses
/// themselves are not read again: every answered use is counted in
/// `usage` (`total_uses`, `changes`) in the transaction that records it,
/// and a reset raises `changes` too, so the counters differ whenever the
/// uses a decision saw could (detail records are never deleted). Counting
/// the uses again grew with the account's history, inside the writer.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Mark {
    usage: q::UsageRow,
    associations: Vec<AssociationRow>,
    pending: Vec<(String, i64)>,
}

impl PlanState {
    pub(super) fn mark(&self) -> Mark {
        Mark {
            usage: self.usage,
            associations: self.associations.clone(),
            pending: self.pending.clone(),
        }
    }

    /// Destinations taken on an unlimited plan: those associated and those
    /// of communications in progress (associated when they complete).
    fn destinations_taken(&self) -> std::collections::BTreeSet<&str> {
        self.associations
            .iter()
            .map(|a| a.destination.as_str())
            .chain(self.pending.iter().map(|(d, _)| d.as_str()))
            .collect()
    }
}

/// The restricted plan whose alternate is offered, and what was read of it.
struct Held {
    plan: String,
    reason: String,
    reset: Option<Reset>,
    state: PlanState,
}

/// What the write of an authorization did.
enum Recorded {
    /// Recorded: the answer.
    Done(Box<Authorized>),
    /// What the decision read changed: decide again.
    Changed,
}

/// Judges one plan by id: its verdict and what was read of it.
type Judge<'a> = dyn Fn(&str) -> Result<(Verdict, PlanState), PlansError> + 'a;

/// Decisions made again before an authorization gives up (409).
const MAX_TRIES: usize = 5;

/// A plan found usable, with what recording it takes.
struct Usable {
    plan: String,
    rates: Rates,
    max_duration_secs: Option<u64>,
    reset: Option<Reset>,
    associate_now: bool,
    association_expires: Option<i64>,
    /// What was read of the plan.
    state: PlanState,
}

/// What one plan says of this communication.
enum Verdict {
    Usable(Box<Usable>),
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

/// An authorization ready to decide: the request checked, the account
/// read and its PIN found right, the plans ranked. Owned, so that a worker
/// thread can decide it while the caller waits without one.
struct Prepared {
    req: AuthorizeRequest,
    at: Timestamp,
    registry: Arc<Registry>,
    service: Arc<Service>,
    read: Read,
    groups: Vec<String>,
    region: String,
    ranked: Vec<String>,
    /// The first plan's state, read with the account: used by the first
    /// decision only (a decision made again reads afresh).
    first: Option<(String, PlanState)>,
    communication: Communication,
    account: PlanAccount,
}

impl Prepared {
    fn plans(&self) -> Result<&ServicePlans, PlansError> {
        self.registry
            .plans
            .by_access_method(&self.req.access_method)
            .ok_or_else(|| PlansError::UnknownAccessMethod(self.req.access_method.clone()))
    }
}

/// An async authorization's next try: prepared on its first, then
/// decided again on what was prepared.
enum Attempt {
    First(AuthorizeRequest),
    Again(Box<Prepared>),
}

/// An authorization decided: what to record, if what it read of its plans
/// is unchanged, and the answer then.
struct Decided {
    account_id: String,
    at: i64,
    cap_secs: u64,
    row: CommunicationRow,
    /// What was read of each plan judged on the way (its id), to compare.
    read_states: Vec<(String, PlanState)>,
    resets: Vec<(String, Reset)>,
    /// (plan, destination, expiry) associated at the attempt.
    associate: Option<(String, String, Option<i64>)>,
    answer: Authorized,
}

impl Plans {
    /// Authorizes a communication (see the module doc), on the caller's
    /// thread, committing alone.
    pub fn authorize(&self, req: AuthorizeRequest) -> Result<Authorized, PlansError> {
        let at = self.admit(&req)?;
        let turn = self.turn(&req.account_id);
        let _turn = turn.blocking_lock();
        let mut prepared = self.prepare(req, at)?;
        for _ in 0..MAX_TRIES {
            let decided = self.decide(&mut prepared)?;
            if let Recorded::Done(answer) = self.store.write(|tx| record(tx, decided))? {
                self.remember(&prepared, &answer);
                return Ok(*answer);
            }
        }
        Err(too_contended())
    }

    /// [`Plans::authorize`] for async callers: the account's turn is
    /// awaited without a thread, the decision runs on a worker thread,
    /// which queues its record in the store's group commit, and the answer
    /// comes once that group committed, with no thread held for the fsync.
    pub async fn authorize_async(
        self: Arc<Self>,
        req: AuthorizeRequest,
    ) -> Result<Authorized, PlansError> {
        let at = self.admit(&req)?;
        let _turn = self.turn(&req.account_id).lock_owned().await;
        let mut attempt = Attempt::First(req);
        for _ in 0..MAX_TRIES {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                let mut prepared = match attempt {
                    Attempt::Again(prepared) => *prepared,
                    Attempt::First(req) => match this.prepare(req, at) {
                        Ok(prepared) => prepared,
                        Err(e) => return drop(reply.send(Err(e))),
                    },
                };
                let decided = match this.decide(&mut prepared) {
                    Ok(decided) => decided,
                    Err(e) => return drop(reply.send(Err(e))),
                };
                // Not queued (the writer stopped): `reply` goes with the
                // write, and the caller hears it below.
                let _ = this.store.queue_write(
                    move |tx| record(tx, decided),
                    move |recorded| drop(reply.send(recorded.map(|r| (r, prepared)))),
                );
            });
            let (recorded, prepared) = answer.await.map_err(|_| {
                PlansError::Store(StoreError::Commit(
                    "authorizing failed: the database writer has stopped".into(),
                ))
            })??;
            match recorded {
                Recorded::Done(answer) => {
                    self.remember(&prepared, &answer);
                    return Ok(*answer);
                }
                Recorded::Changed => attempt = Attempt::Again(Box::new(prepared)),
            }
        }
        Err(too_contended())
    }

    /// Remembers whose the communication just recorded is, for its
    /// completion.
    fn remember(&self, p: &Prepared, answer: &Authorized) {
        if let Ok(plans) = p.plans() {
            let owner = Owner {
                service: plans.service.clone(),
                account: p.req.account_id.clone(),
            };
            self.owners.insert(answer.id(), owner);
        }
    }

    /// The request's own checks, before the account's turn: the time the
    /// communication starts.
    fn admit(&self, req: &AuthorizeRequest) -> Result<Timestamp, PlansError> {
        req.validate()?;
        let now = Timestamp::now();
        let at = req.at.unwrap_or(now);
        // The time drives selection, restrictions and counters: a client
        // may not move it far from the clock.
        if let Some(skew) = self.settings.max_clock_skew_secs {
            let off = (at.as_second() - now.as_second()).unsigned_abs();
            if off > skew {
                return Err(PlansError::Invalid(format!(
                    "`at` is {off} s from the host's clock; at most {skew} s either way (`[plans] max_clock_skew_seconds`)"
                )));
            }
        }
        Ok(at)
    }

    /// In the account's turn: the account read, its PIN checked, the
    /// destination checked and the plans ranked.
    fn prepare(&self, req: AuthorizeRequest, at: Timestamp) -> Result<Prepared, PlansError> {
        let registry = self.registry();
        let book = &registry.plans;
        let plans = book
            .by_access_method(&req.access_method)
            .ok_or_else(|| PlansError::UnknownAccessMethod(req.access_method.clone()))?;
        let service = registry
            .service(&plans.service)
            .ok_or_else(|| PlansError::UnknownAccessMethod(req.access_method.clone()))?
            .clone();

        // What does not depend on the account, before reading it.
        let region = select::region_of(plans, &req.destination)
            .unwrap_or_default()
            .to_owned();
        let groups = plans
            .access_methods
            .get(&req.access_method)
            .cloned()
            .unwrap_or_default();
        let local_minutes = at.as_second().div_euclid(60) + i64::from(plans.utc_offset_minutes);
        let cap = self.settings.max_duration_secs;
        // One read transaction for the account and the state of the plan
        // ranked first, which is usually the only one judged.
        let read = self.store.read(|conn| {
            let Some(read) = read_account(conn, &req.account_id)? else {
                return Ok::<_, PlansError>(None);
            };
            let attrs = Attributes {
                account_id: &req.account_id,
                account_group: &read.group,
                access_method: &req.access_method,
                access_groups: &groups,
                destination: &req.destination,
                region: &region,
                carrier: &req.carrier,
                local_minutes,
                sequence: read.sequence + 1,
                attributes: &req.attributes,
            };
            let ranked: Vec<String> = select::rank(plans, &attrs, read.preferred.as_deref())
                .into_iter()
                .map(str::to_owned)
                .collect();
            // Only for a caller who will be told something: read on a
            // wrong PIN, it would make the refusal slower the more the
            // account was used.
            let pin_right = pin_right_at_once(&req.pin, &read.pin, store::now_ms());
            let told = pin_right
                && read.status == "active"
                && select::check_destination(plans, &req.destination).is_ok();
            let first = match ranked.first() {
                Some(id) if told && let Some(def) = plans.plans.get(id) => Some((
                    id.clone(),
                    read_plan_state(conn, &req.account_id, def, ms(at), cap)?,
                )),
                _ => None,
            };
            Ok(Some((read, pin_right, ranked, first)))
        })?;
        let (read, pin_right, ranked, first) =
            read.ok_or_else(|| PlansError::NoAccount(req.account_id.clone()))?;
        // Nothing about the account is told before its PIN is right.
        self.check_pin(&req, &read, pin_right)?;
        if read.status != "active" {
            return Err(PlansError::AccountInactive(
                req.account_id.clone(),
                read.status,
            ));
        }

        select::check_destination(plans, &req.destination)
            .map_err(PlansError::InvalidDestination)?;
        if ranked.is_empty() {
            return Err(PlansError::NoPlan);
        }
        let sequence = read.sequence + 1;

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
        Ok(Prepared {
            req,
            at,
            registry: registry.clone(),
            service,
            read,
            groups,
            region,
            ranked,
            first,
            communication,
            account,
        })
    }

    /// Chooses the plan on what the store holds (the first plan's state as
    /// `prepare` read it, the others' read now): what to record, and what
    /// it read, to record it only if that is unchanged (a completion, a
    /// reset or another authorization in between may change a limit's
    /// answer; then it is decided again, reading every state afresh).
    fn decide(&self, p: &mut Prepared) -> Result<Decided, PlansError> {
        let first = std::cell::Cell::new(p.first.take());
        let p = &*p;
        let plans = p.plans()?;
        let (req, at, account) = (&p.req, p.at, &p.account);
        let cap = self.settings.max_duration_secs;
        let judge = |plan_id: &str| -> Result<(Verdict, PlanState), PlansError> {
            let def = &plans.plans[plan_id];
            let state = match first.take() {
                Some((plan, state)) if plan == plan_id => state,
                _ => self
                    .store
                    .read(|conn| read_plan_state(conn, &account.id, def, ms(at), cap))?,
            };
            let verdict = self.judge(
                &p.service,
                plans,
                def,
                account,
                &p.communication,
                &state,
                at,
            )?;
            Ok((verdict, state))
        };
        let (chosen, restricted) = self.choose_plan(plans, &p.ranked, &judge, p.read.balance)?;
        let row = CommunicationRow {
            id: p.communication.id.clone(),
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
                .map_or(chosen.plan.clone(), |r| r.plan.clone()),
            rates: serde_json::to_value(&chosen.rates).unwrap_or(Value::Null),
            max_duration_secs: chosen.max_duration_secs.and_then(|s| i64::try_from(s).ok()),
            restriction: restricted.as_ref().map(|r| r.reason.clone()),
            alternate_plan: restricted.as_ref().map(|_| chosen.plan.clone()),
            alternate_rates: restricted
                .as_ref()
                .map(|_| serde_json::to_value(&chosen.rates).unwrap_or(Value::Null)),
            alternate_max_secs: restricted
                .as_ref()
                .and(chosen.max_duration_secs)
                .and_then(|s| i64::try_from(s).ok()),
            access_method: req.access_method.clone(),
            access_groups: json!(p.groups),
            destination: req.destination.clone(),
            region: p.region.clone(),
            carrier: req.carrier.clone(),
            attributes: serde_json::to_value(&req.attributes).unwrap_or(Value::Null),
            sequence: 0,
            started_at: ms(at),
            created_at: store::now_ms(),
            completed_at: None,
        };
        let mut read_states = vec![(chosen.plan.clone(), chosen.state.clone())];
        if let Some(r) = &restricted {
            read_states.push((r.plan.clone(), r.state.clone()));
        }
        let resets: Vec<(String, Reset)> = [
            restricted
                .as_ref()
                .and_then(|r| r.reset.clone().map(|reset| (r.plan.clone(), reset))),
            chosen.reset.clone().map(|r| (chosen.plan.clone(), r)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let associate = (chosen.associate_now && restricted.is_none()).then(|| {
            (
                chosen.plan.clone(),
                req.destination.clone(),
                chosen.association_expires,
            )
        });
        let answer = match restricted {
            None => Authorized::Plan {
                id: p.communication.id.clone(),
                plan: chosen.plan,
                balance: p.read.balance,
                rates: chosen.rates,
                max_duration_secs: chosen.max_duration_secs,
            },
            Some(r) => Authorized::Restricted {
                id: p.communication.id.clone(),
                restricted: RestrictedPlan {
                    plan: r.plan,
                    reason: r.reason,
                },
                alternate: Offer {
                    plan: chosen.plan,
                    rates: chosen.rates,
                    max_duration_secs: chosen.max_duration_secs,
                },
                balance: p.read.balance,
            },
        };
        Ok(Decided {
            account_id: req.account_id.clone(),
            at: ms(at),
            cap_secs: cap,
            row,
            read_states,
            resets,
            associate,
            answer,
        })
    }

    /// The plan to go under, judging the ranked plans in turn: the first
    /// usable one; when an earlier one was restricted, it is the alternate
    /// offered (the restriction's own alternate is tried first). A plan the
    /// balance cannot start is passed over.
    fn choose_plan(
        &self,
        plans: &ServicePlans,
        ranked: &[String],
        judge: &Judge<'_>,
        balance: i64,
    ) -> Result<(Usable, Option<Held>), PlansError> {
        let mut queue: std::collections::VecDeque<String> = ranked.iter().cloned().collect();
        let mut tried: Vec<String> = Vec::new();
        let mut restricted: Option<Held> = None;
        let mut unaffordable: Option<(String, i64)> = None;
        while let Some(plan) = queue.pop_front() {
            if tried.contains(&plan) || !plans.plans.contains_key(&plan) {
                continue;
            }
            tried.push(plan.clone());
            match judge(&plan)? {
                (Verdict::Usable(usable), _) => return Ok((*usable, restricted)),
                (Verdict::Unaffordable { needed }, _) => {
                    unaffordable.get_or_insert((plan, needed));
                }
                (
                    Verdict::Restricted {
                        reason,
                        alternate,
                        reset,
                    },
                    state,
                ) => {
                    if restricted.is_none() {
                        restricted = Some(Held {
                            plan,
                            reason,
                            reset,
                            state,
                        });
                        if let Some(alternate) = alternate {
                            queue.push_front(alternate);
                        }
                    }
                }
            }
        }
        Err(match (restricted, unaffordable) {
            (Some(held), _) => PlansError::Restricted {
                plan: held.plan,
                reason: held.reason,
            },
            (None, Some((plan, needed))) => PlansError::InsufficientBalance {
                plan,
                balance,
                needed,
            },
            (None, None) => PlansError::NoPlan,
        })
    }

    /// The PIN, checked on what was read (`right_at_once`: what
    /// [`pin_right_at_once`] said of it); a wrong one is counted (and may
    /// lock the PIN) in a write of its own, committed whatever the answer.
    fn check_pin(
        &self,
        req: &AuthorizeRequest,
        read: &Read,
        right_at_once: bool,
    ) -> Result<(), PlansError> {
        let now = store::now_ms();
        let state = &read.pin;
        if state.salt.is_none() || state.hash.is_none() {
            return Err(PlansError::NoPin(req.account_id.clone()));
        }
        if let Some(until) = state.locked_until.filter(|u| *u > now) {
            return Err(locked(until, now));
        }
        if right_at_once {
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
        state: &PlanState,
        at: Timestamp,
    ) -> Result<Verdict, PlansError> {
        let plan = Plan {
            id: def.id.clone(),
            kind: def.kind,
            config: def.config.clone(),
            max_destinations: max_destinations(plans, def, account, &communication.region),
        };
        let mut usage = usage_of(state, at);
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
        let mut taken = state.destinations_taken();
        if let Some(reset) = &reset {
            for dropped in &reset.dissociate {
                taken.remove(dropped.as_str());
            }
        }
        if def.kind == PlanKind::Unlimited && !taken.contains(communication.destination.as_str()) {
            let max = plan.max_destinations.unwrap_or(0);
            if taken.len() >= max as usize {
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
        Ok(Verdict::Usable(Box::new(Usable {
            plan: def.id.clone(),
            rates: def.rates.clone(),
            max_duration_secs,
            reset,
            associate_now,
            association_expires: def.association_expires(ms(at)),
            state: state.clone(),
        })))
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

/// What the plugin sees: completed uses and those in progress, newest first.
pub(super) fn usage_of(state: &PlanState, at: Timestamp) -> Usage {
    let mut recent: Vec<i64> = state
        .recent
        .iter()
        .copied()
        .chain(state.pending.iter().map(|(_, start)| *start))
        .collect();
    recent.sort_unstable_by(|a, b| b.cmp(a));
    Usage {
        total_uses: u64::try_from(state.usage.total_uses).unwrap_or(0),
        recent_uses: recent.into_iter().map(ts).collect(),
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

/// [`read_plan_state`]'s [`Mark`], read again (in a write, to compare).
pub(super) fn read_mark(
    conn: &Conn<'_>,
    account: &str,
    plan: &str,
    at: i64,
    cap_secs: u64,
) -> Result<Mark, PlansError> {
    let cap_ms = i64::try_from(cap_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    Ok(Mark {
        usage: q::usage(conn, account, plan)?,
        associations: q::associations(conn, account, Some(plan), at)?,
        pending: q::pending(conn, account, plan, at, cap_ms)?,
    })
}

/// The most recent uses passed to a plugin, at most.
const MAX_RECENT_USES: u32 = 1000;

pub(super) fn read_plan_state(
    conn: &Conn<'_>,
    account: &str,
    def: &PlanDef,
    at: i64,
    cap_secs: u64,
) -> Result<PlanState, PlansError> {
    let usage = q::usage(conn, account, &def.id)?;
    let window = i64::try_from(def.usage_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Uses since the counters started (that instant included), within
    // the window before `at` (its start excluded, as plugins count).
    let since = usage
        .counters_since
        .unwrap_or(i64::MIN)
        .max(at.saturating_sub(window).saturating_add(1));
    let cap_ms = i64::try_from(cap_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    Ok(PlanState {
        recent: q::recent_uses(conn, account, &def.id, since, MAX_RECENT_USES)?,
        associations: q::associations(conn, account, Some(&def.id), at)?,
        pending: q::pending(conn, account, &def.id, at, cap_ms)?,
        usage,
    })
}

fn read_account(conn: &Conn<'_>, id: &str) -> Result<Option<Read>, PlansError> {
    Ok(q::caller(conn, id)?.map(|a| Read {
        status: a.status,
        pin: a.pin,
        billing: Billing::parse(&a.billing).unwrap_or_default(),
        group: a.group,
        balance: a.balance,
        sequence: u64::try_from(a.last_sequence).unwrap_or(0),
        preferred: a.preferred,
    }))
}

/// Records a decision in `tx` if what it read of its plans is unchanged.
fn record(tx: &Tx<'_>, d: Decided) -> Result<Recorded, PlansError> {
    for (plan, state) in &d.read_states {
        if read_mark(tx, &d.account_id, plan, d.at, d.cap_secs)? != state.mark() {
            return Ok(Recorded::Changed);
        }
    }
    let mut row = d.row;
    row.sequence = q::take_sequence(tx, &d.account_id)?;
    q::insert_communication(tx, &row)?;
    for (plan, reset) in &d.resets {
        q::reset(
            tx,
            &d.account_id,
            plan,
            &reset.dissociate,
            reset.reset_counters,
            d.at,
        )?;
    }
    if let Some((plan, destination, expires)) = &d.associate {
        q::start_usage(tx, &d.account_id, plan, d.at)?;
        q::associate(tx, &d.account_id, plan, destination, d.at, *expires)?;
    }
    Ok(Recorded::Done(Box::new(d.answer)))
}

/// The PIN is right and nothing needs writing: the account has a PIN, it
/// is not locked, and no wrong try came before this one (a right PIN after
/// wrong ones starts the count again, a write).
fn pin_right_at_once(pin: &str, state: &store::ledger::PinState, now: i64) -> bool {
    let (Some(salt), Some(hash)) = (state.salt.as_deref(), state.hash.as_deref()) else {
        return false;
    };
    // Hashed whatever its shape, so the time says nothing of it.
    let right =
        secret::same_bytes(&ledger::hash_pin(pin, salt), hash) && ledger::valid_pin(pin).is_ok();
    right && state.failures == 0 && state.locked_until.is_none_or(|u| u <= now)
}

fn too_contended() -> PlansError {
    PlansError::Conflict(format!(
        "the account's use of its plans changed {MAX_TRIES} times while this communication was decided; try again"
    ))
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
