//! The rest of a communication's life: the caller's choice of an alternate
//! plan, its completion (rating, the debit, the detail record, counters and
//! associations, a low-balance notice: one transaction), and the reads
//! around it (records, associations, the preferred plan).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::authorize::max_destinations;
use super::rate::{self, Line, Occasion};
use super::{Owner, Plans, PlansError, Preferred};
use crate::contract::{Billing, PlanAccount, PlanKind};
use crate::ledger;
use crate::registry::plan_file::{AssociateOn, PlanDef, Rates};
use crate::store::plans::{self as q, CommunicationRow, PreferredRow, RecordFilter, RecordRow};
use crate::store::{self, Tx, outbox};

/// The body of `POST /v1/communications/{id}/complete`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub duration_secs: u64,
    pub answered: bool,
}

/// The longest communication a completion may report: a week.
pub const MAX_DURATION_SECS: u64 = 7 * 86_400;

/// A detail record as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: i64,
    pub communication_id: String,
    pub service: String,
    pub account_id: String,
    pub plan: String,
    pub access_method: String,
    pub destination: String,
    pub region: String,
    pub started_at: String,
    pub duration_secs: i64,
    pub answered: bool,
    pub lines: Vec<Line>,
    pub total: i64,
    /// What the ledger was debited: the total, or for a prepaid balance
    /// that could not cover it, what there was.
    pub charged: i64,
    /// What the balance did not cover (prepaid only).
    pub uncovered: i64,
    pub balance_after: i64,
    /// Whether the destination is associated with the (unlimited) plan.
    pub associated: bool,
}

impl From<RecordRow> for Record {
    fn from(r: RecordRow) -> Record {
        Record {
            id: r.id,
            communication_id: r.communication_id,
            service: r.service,
            account_id: r.account_id,
            plan: r.plan,
            access_method: r.access_method,
            destination: r.destination,
            region: r.region,
            started_at: store::rfc3339(r.started_at),
            duration_secs: r.duration_secs,
            answered: r.answered,
            lines: serde_json::from_value(r.lines).unwrap_or_default(),
            total: r.total,
            charged: r.charged,
            uncovered: r.uncovered,
            balance_after: r.balance_after,
            associated: r.associated,
        }
    }
}

/// What a choice led to.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub id: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<i64>,
}

fn wrong_state(c: &CommunicationRow, what: &'static str) -> PlansError {
    PlansError::WrongState {
        id: c.id.clone(),
        state: c.state.clone(),
        what,
    }
}

impl Plans {
    /// The service a communication belongs to, `None` when there is none.
    pub fn service_of(&self, id: &str) -> Result<Option<String>, PlansError> {
        Ok(self.owner_of(id)?.map(|owner| owner.service))
    }

    /// Goes on under the alternate plan offered, or ends the communication
    /// with nothing charged.
    pub fn choose(&self, id: &str, go_on: bool) -> Result<Chosen, PlansError> {
        let key = id.to_owned();
        let registry = self.registry();
        let chosen = self.store.write(move |tx| {
            let id = key;
            let c = q::get_communication(tx, &id)?
                .ok_or_else(|| PlansError::NoCommunication(id.clone()))?;
            if c.state != "awaiting-choice" {
                return Err(wrong_state(
                    &c,
                    "only a communication offered an alternate plan takes a choice",
                ));
            }
            if go_on {
                q::continue_with_alternate(tx, &id)?;
                // An unlimited plan that associates at the attempt does so now.
                if let Some(alternate) = &c.alternate_plan
                    && let Some((_, def)) = registry.plans.plan(alternate)
                    && def.kind == PlanKind::Unlimited
                    && def.associate_on == AssociateOn::Attempt
                {
                    let expires = def.association_expires(c.started_at);
                    q::start_usage(tx, &c.account_id, alternate, c.started_at)?;
                    q::associate(
                        tx,
                        &c.account_id,
                        alternate,
                        &c.destination,
                        c.started_at,
                        expires,
                    )?;
                }
                Ok(Chosen {
                    id,
                    state: "authorized".into(),
                    plan: c.alternate_plan,
                    rates: c.alternate_rates,
                    max_duration_secs: c.alternate_max_secs,
                })
            } else {
                q::finish_communication(tx, &id, "awaiting-choice", "declined", store::now_ms())?;
                Ok(Chosen {
                    id,
                    state: "declined".into(),
                    plan: None,
                    rates: None,
                    max_duration_secs: None,
                })
            }
        });
        // Declined, it ended; otherwise it goes on under the same owner.
        if !go_on {
            self.owners.remove(id);
        }
        chosen
    }

    /// Rates and records a communication that ended, on the caller's
    /// thread, committing alone.
    pub fn complete(&self, id: &str, req: CompleteRequest) -> Result<Record, PlansError> {
        check_completion(&req)?;
        let registry = self.registry();
        let id = id.to_owned();
        // In the account's turn: a completion changes what its next
        // authorization reads.
        let account = self
            .owner_of(&id)?
            .map(|owner| owner.account)
            .ok_or_else(|| PlansError::NoCommunication(id.clone()))?;
        let turn = self.turn(&account);
        let _turn = turn.blocking_lock();
        let key = id.clone();
        let record = self
            .store
            .write(move |tx| complete_in(tx, &registry, &key, &req));
        self.owners.remove(&id);
        record
    }

    /// [`Plans::complete`] for async callers that read the communication's
    /// account already ([`Plans::owner_of`]): the account's turn awaited
    /// without a thread, the completion written in the store's next group
    /// commit (it reads only inside its write, so no worker is needed).
    pub async fn complete_async(
        &self,
        id: String,
        account: &str,
        req: CompleteRequest,
    ) -> Result<Record, PlansError> {
        check_completion(&req)?;
        let registry = self.registry();
        let _turn = self.turn(account).lock_owned().await;
        let key = id.clone();
        let record = self
            .store
            .write_async(move |tx| complete_in(tx, &registry, &key, &req))
            .await;
        self.owners.remove(&id);
        record
    }

    /// The service and the account of a communication, `None` when there
    /// is none.
    pub fn owner_of(&self, id: &str) -> Result<Option<Owner>, PlansError> {
        if let Some(owner) = self.known_owner(id) {
            return Ok(Some(owner));
        }
        Ok(self
            .store
            .read(|conn| q::owner_of(conn, id))?
            .map(|(service, account)| Owner { service, account }))
    }

    /// The owner of a communication this host authorized and that has not
    /// ended here, without reading the store; `None` when not known here (ask
    /// [`Plans::owner_of`]).
    pub fn known_owner(&self, id: &str) -> Option<Owner> {
        self.owners.get(id)
    }

    pub fn records(&self, filter: RecordFilter<'_>) -> Result<Vec<Record>, PlansError> {
        Ok(self
            .store
            .read(|conn| q::page_records(conn, &filter))?
            .into_iter()
            .map(Record::from)
            .collect())
    }

    /// The account's associations with unlimited plans that have not lapsed.
    pub fn associations(&self, account: &str) -> Result<Value, PlansError> {
        let now = store::now_ms();
        self.store.read(|conn| {
            if store::entitlement::account_version(conn, account)?.is_none() {
                return Err(PlansError::NoAccount(account.to_owned()));
            }
            let rows = q::associations(conn, account, None, now)?;
            Ok(json!({
                "account_id": account,
                "associations": rows.iter().map(|a| json!({
                    "plan": a.plan,
                    "destination": a.destination,
                    "associated_at": store::rfc3339(a.associated_at),
                    "uses": a.uses,
                    "last_used": a.last_used.map(store::rfc3339),
                    "expires_at": a.expires_at.map(store::rfc3339),
                })).collect::<Vec<_>>(),
            }))
        })
    }

    /// Sets (or with `None` clears) the account's preferred plan.
    pub fn set_preferred(
        &self,
        account: &str,
        plan: Option<String>,
        set_by: &str,
    ) -> Result<Preferred, PlansError> {
        if !["subscriber", "issuer", "administrator"].contains(&set_by) {
            return Err(PlansError::Invalid(
                "`set_by` is `subscriber`, `issuer` or `administrator`".into(),
            ));
        }
        if let Some(plan) = &plan
            && self.registry().plans.plan(plan).is_none()
        {
            return Err(PlansError::NoSuchPlan(plan.clone()));
        }
        let account = account.to_owned();
        let set_by = set_by.to_owned();
        let at = store::now_ms();
        self.store.write(move |tx| {
            if store::entitlement::account_version(tx, &account)?.is_none() {
                return Err(PlansError::NoAccount(account.clone()));
            }
            let row = plan.map(|plan| PreferredRow {
                plan,
                set_by,
                set_at: at,
            });
            q::set_preferred(tx, &account, row.as_ref())?;
            Ok(preferred_view(&account, row))
        })
    }

    pub fn preferred(&self, account: &str) -> Result<Preferred, PlansError> {
        self.store.read(|conn| {
            if store::entitlement::account_version(conn, account)?.is_none() {
                return Err(PlansError::NoAccount(account.to_owned()));
            }
            Ok(preferred_view(account, q::preferred(conn, account)?))
        })
    }
}

/// A completion's own checks, before anything is read.
fn check_completion(req: &CompleteRequest) -> Result<(), PlansError> {
    if req.duration_secs > MAX_DURATION_SECS {
        return Err(PlansError::Invalid(format!(
            "`duration_secs` is at most {MAX_DURATION_SECS}"
        )));
    }
    if !req.answered && req.duration_secs > 0 {
        return Err(PlansError::Invalid(
            "an unanswered communication has `duration_secs` 0".into(),
        ));
    }
    Ok(())
}

/// Rates, debits and records the communication `id` in `tx`.
fn complete_in(
    tx: &Tx<'_>,
    registry: &crate::registry::Registry,
    id: &str,
    req: &CompleteRequest,
) -> Result<Record, PlansError> {
    let c =
        q::get_communication(tx, id)?.ok_or_else(|| PlansError::NoCommunication(id.to_owned()))?;
    match c.state.as_str() {
        "authorized" => {}
        "completed" => {
            return Err(wrong_state(
                &c,
                "it was completed before and is charged once",
            ));
        }
        "awaiting-choice" => return Err(wrong_state(&c, "choose first (POST .../choice)")),
        _ => return Err(wrong_state(&c, "it ended without being placed")),
    }
    let rates: Rates = serde_json::from_value(c.rates.clone())
        .map_err(|e| store::StoreError::Corrupt(format!("rates of communication {id}: {e}")))?;
    let found = registry.plans.plan(&c.plan);
    let def = found.map(|(_, def)| def.clone());
    let kind = def.as_ref().map_or(PlanKind::PayAsYouGo, |d| d.kind);
    let at = c.started_at;
    let ended =
        at.saturating_add(i64::try_from(req.duration_secs.saturating_mul(1000)).unwrap_or(0));
    let usage = q::usage(tx, &c.account_id, &c.plan)?;
    let first_use = req.answered && usage.activated_at.is_none();
    let subscription_due = req.answered
        && kind == PlanKind::Subscription
        && usage.paid_until.is_none_or(|until| until <= at);
    let rated = rate::rate(
        &rates,
        Occasion {
            duration_secs: req.duration_secs,
            answered: req.answered,
            first_use,
            subscription_due,
        },
    );

    let account = store::ledger::holder(tx, &c.account_id)?
        .ok_or_else(|| PlansError::NoAccount(c.account_id.clone()))?;
    let billing = Billing::parse(&account.billing).unwrap_or_default();
    let before = account.balance;
    let detail = json!({"communication": id, "plan": c.plan});
    let charged = ledger::charge(
        tx,
        &c.account_id,
        billing,
        rated.total,
        &format!("communication:{id}"),
        ended,
        Some(&detail),
    )?;

    let associated = if req.answered
        && let Some((plans, def)) = found
        && def.kind == PlanKind::Unlimited
    {
        let holder = PlanAccount {
            id: c.account_id.clone(),
            group: account.group,
            billing,
            balance: before,
        };
        let max = max_destinations(plans, def, &holder, &c.region).unwrap_or(0);
        account_for_use(tx, &c, def, max, ended)?
    } else {
        false
    };
    if req.answered {
        let paid_until = subscription_due.then(|| {
            let period = rates.subscription_period_secs.unwrap_or(0);
            at.saturating_add(i64::from(period).saturating_mul(1000))
        });
        q::count_use(tx, &c.account_id, &c.plan, at, first_use, paid_until)?;
    }
    let mut row = RecordRow {
        id: 0,
        communication_id: id.to_owned(),
        service: c.service.clone(),
        account_id: c.account_id.clone(),
        plan: c.plan.clone(),
        access_method: c.access_method.clone(),
        destination: c.destination.clone(),
        region: c.region.clone(),
        started_at: at,
        duration_secs: i64::try_from(req.duration_secs).unwrap_or(0),
        answered: req.answered,
        lines: serde_json::to_value(&rated.lines).unwrap_or(Value::Null),
        total: rated.total,
        charged: charged.charged,
        uncovered: charged.uncovered,
        balance_after: charged.balance_after,
        associated,
        created_at: store::now_ms(),
    };
    row.id = q::insert_record(tx, &row)?;
    if !q::finish_communication(tx, id, "authorized", "completed", store::now_ms())? {
        return Err(wrong_state(&c, "it changed while being completed"));
    }
    if let Some(threshold) = def.as_ref().and_then(|d| d.low_balance_threshold)
        && billing == Billing::Prepaid
        && before >= threshold
        && charged.balance_after < threshold
    {
        notify_low_balance(tx, registry, &c, threshold, charged.balance_after, ended)?;
    }
    Ok(Record::from(row))
}

fn preferred_view(account: &str, row: Option<PreferredRow>) -> Preferred {
    Preferred {
        account_id: account.to_owned(),
        plan: row.as_ref().map(|r| r.plan.clone()),
        set_by: row.as_ref().map(|r| r.set_by.clone()),
        set_at: row.map(|r| store::rfc3339(r.set_at)),
    }
}

/// Counts an answered communication against an unlimited plan's
/// associations: a use of an associated destination, or a new association
/// while there is room. Whether the destination is associated afterwards.
fn account_for_use(
    tx: &Tx<'_>,
    c: &CommunicationRow,
    def: &PlanDef,
    max: u32,
    ended: i64,
) -> Result<bool, PlansError> {
    let current = q::associations(tx, &c.account_id, Some(&def.id), c.started_at)?;
    if current.iter().any(|a| a.destination == c.destination) {
        q::use_association(tx, &c.account_id, &def.id, &c.destination, ended)?;
        return Ok(true);
    }
    // Room was checked when it was authorized; checked again here, where
    // concurrent completions are serialized.
    if def.associate_on == AssociateOn::Completion && current.len() < max as usize {
        let expires = def.association_expires(c.started_at);
        q::associate(
            tx,
            &c.account_id,
            &def.id,
            &c.destination,
            c.started_at,
            expires,
        )?;
        q::use_association(tx, &c.account_id, &def.id, &c.destination, ended)?;
        return Ok(true);
    }
    Ok(false)
}

fn notify_low_balance(
    tx: &Tx<'_>,
    registry: &crate::registry::Registry,
    c: &CommunicationRow,
    threshold: i64,
    balance: i64,
    at: i64,
) -> Result<(), PlansError> {
    let webhook = registry
        .service(&c.service)
        .and_then(|s| s.manifest.webhook.clone());
    let data = json!({
        "service": c.service,
        "account_id": c.account_id,
        "plan": c.plan,
        "balance": balance,
        "threshold": threshold,
        "communication_id": c.id,
    });
    outbox::enqueue(tx, "balance.low", webhook.as_deref(), &data, at)?;
    Ok(())
}
