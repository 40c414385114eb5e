//! Reset conditions checked by time, not only on use: a timer flow on the
//! flow engine (`plan-resets`: wait until `sweep_at`, then sweep) wakes a
//! worker thread that asks each plan's plugin, for every account with
//! counters or associations on it, whether a reset is due, and records
//! what is. The plugin runs on that worker, never inside the flow step's
//! transaction; the worker then starts the next flow. There is no timer
//! until some account has counters or associations on a plan. A restart
//! keeps the running flow's timer; a crash between a sweep and the next
//! flow is healed at start (no running flow: one is started, due at once).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::authorize::{max_destinations, read_mark, read_plan_state, usage_of};
use super::{Plans, PlansError, policy};
use crate::contract::{Billing, Plan, PlanAccount};
use crate::flow::{ActionHandler, ActionOutcome, Definition, FlowEngine, FlowError, TaskSpec};
use crate::notify::{Signal, Worker};
use crate::store::flows::{FlowRecord, TaskRecord};
use crate::store::{self, Tx, flows as fq, plans as q};

/// The flow definition of the reset timer.
pub const DEFINITION: &str = "plan-resets";
const ACTION: &str = "plan-reset-sweep";
/// The longest the worker waits before it looks at the timer flow again.
const RECHECK: Duration = Duration::from_secs(5);
/// Accounts read per query while sweeping a plan.
const BATCH: u32 = 200;

/// The definition and the action, for the engine (before it is shared).
pub fn install(engine: &mut FlowEngine, wake: Arc<Signal>) {
    let tasks = vec![
        TaskSpec::timer_until("until the next sweep", "sweep_at"),
        TaskSpec::auto("sweep", ACTION),
    ];
    match Definition::new(DEFINITION, tasks) {
        Ok(definition) => engine.add_definition(definition),
        Err(e) => tracing::error!("the plan reset flow cannot be defined: {e}"),
    }
    engine.add_action(ACTION, Arc::new(Wake(wake)));
}

/// The timer fired: the worker sweeps (outside this transaction).
struct Wake(Arc<Signal>);

impl ActionHandler for Wake {
    fn run(
        &self,
        _: &Tx<'_>,
        _: &FlowRecord,
        _: &TaskRecord,
        _: i64,
    ) -> Result<ActionOutcome, FlowError> {
        self.0.raise();
        Ok(ActionOutcome::default())
    }
}

/// The worker thread that sweeps when the flow's timer fires.
pub struct Sweeper(Worker);

impl Sweeper {
    /// Starts the worker; `wake` is the signal given to [`install`].
    pub fn start(
        plans: Arc<Plans>,
        engine: Arc<FlowEngine>,
        wake: Arc<Signal>,
        every: Duration,
    ) -> std::io::Result<Sweeper> {
        // Whether this worker started the flow that may just have fired.
        let mut started = false;
        let worker = Worker::start("rulehost-plan-resets", wake, move || {
            let running = engine
                .store()
                .read(|c| fq::list_flows(c, Some("running"), Some(DEFINITION), 1))
                .map(|f| !f.is_empty());
            match running {
                // A flow waits: its timer wakes this thread.
                Ok(true) => {}
                Ok(false) => {
                    // Nothing has counters or associations yet: no timer.
                    let due = match plans.store.read(q::any_usage) {
                        Ok(false) => return every.min(RECHECK),
                        Err(e) => {
                            tracing::error!("plan reset timer: {e}");
                            return every.min(RECHECK);
                        }
                        // Our flow fired: sweep, then the next one.
                        Ok(true) if started => {
                            if let Err(e) = plans.sweep(Timestamp::now()) {
                                tracing::error!("plan reset sweep: {e}");
                            }
                            store::now_ms() + every.as_millis() as i64
                        }
                        // The first (or the first since a restart, or one
                        // lost between a sweep and its successor): due now.
                        Ok(true) => store::now_ms(),
                    };
                    match engine.start(DEFINITION, "plan resets", json!({"sweep_at": due}), "plans")
                    {
                        Ok(_) => started = true,
                        Err(e) => tracing::error!("cannot start the plan reset timer: {e}"),
                    }
                }
                Err(e) => tracing::error!("plan reset timer: {e}"),
            }
            // The wake comes inside the flow step's transaction, maybe
            // before its commit: look again soon rather than miss it.
            every.min(RECHECK)
        })?;
        Ok(Sweeper(worker))
    }

    pub fn stop(&mut self) {
        self.0.stop();
    }
}

impl Plans {
    /// Applies every reset due at `now` on every plan with a plan-policy
    /// plugin; how many accounts were reset. One account's failure is
    /// logged and the sweep goes on.
    pub fn sweep(&self, now: Timestamp) -> Result<usize, PlansError> {
        let registry = self.registry();
        let mut done = 0;
        for plans in registry.plans.services.values() {
            let Some(service) = registry.service(&plans.service) else {
                continue;
            };
            for def in plans.plans.values() {
                let mut after = String::new();
                loop {
                    let accounts = self
                        .store
                        .read(|c| q::accounts_on_plan(c, &def.id, &after, BATCH))?;
                    let Some(last) = accounts.last() else {
                        break;
                    };
                    after = last.clone();
                    for account in &accounts {
                        match self.sweep_one(service, plans, def, account, now) {
                            Ok(true) => done += 1,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(plan = %def.id, account = %account, "reset not checked: {e}")
                            }
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    fn sweep_one(
        &self,
        service: &crate::registry::Service,
        plans: &crate::registry::plan_file::ServicePlans,
        def: &crate::registry::plan_file::PlanDef,
        account: &str,
        now: Timestamp,
    ) -> Result<bool, PlansError> {
        let at = now.as_millisecond();
        let cap = self.settings.max_duration_secs;
        let (state, holder) = self.store.read(|c| {
            let state = read_plan_state(c, account, def, at, cap)?;
            let row = store::entitlement::get_account(c, account)?;
            let holder = PlanAccount {
                id: account.to_owned(),
                group: row.as_ref().map(|a| a.group.clone()).unwrap_or_default(),
                billing: row
                    .as_ref()
                    .and_then(|a| Billing::parse(&a.billing))
                    .unwrap_or_default(),
                balance: store::ledger::balance(c, account)?.unwrap_or(0),
            };
            Ok::<_, PlansError>((state, holder))
        })?;
        let plan = Plan {
            id: def.id.clone(),
            kind: def.kind,
            config: def.config.clone(),
            max_destinations: max_destinations(plans, def, &holder, ""),
        };
        let usage = usage_of(&state, now);
        if usage.total_uses == 0 && usage.associations.is_empty() {
            return Ok(false);
        }
        let Some(reset) = policy::reset(service, now, plan, usage)? else {
            return Ok(false);
        };
        // Recorded only on what the plugin saw; a change meanwhile waits
        // for the next use or the next sweep.
        self.store.write(|tx| {
            if read_mark(tx, account, &def.id, at, cap)? != state.mark() {
                return Ok::<_, PlansError>(false);
            }
            q::reset(
                tx,
                account,
                &def.id,
                &reset.dissociate,
                reset.reset_counters,
                at,
            )?;
            Ok(true)
        })
    }
}
