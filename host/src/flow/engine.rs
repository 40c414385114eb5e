//! The engine: starts flows, moves them task by task, and takes manual
//! completions and demands. Every transition is one SQLite transaction, so
//! after a crash a flow is exactly where its last committed step left it; an
//! automatic task interrupted half-way simply runs again (its action and its
//! completion commit together).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::{Conn, Tx};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::definition::{Definition, TaskKind, TaskSpec};
use super::{FlowError, FlowView, Roles};
use crate::notify::Signal;
use crate::store::flows::{self as q, FlowRecord, NewTask, TaskRecord};
use crate::store::{self, Store, outbox};

/// Most steps one `advance` takes before yielding (a flow of only automatic
/// tasks cannot be longer than its definition, plus demands).
const MAX_STEPS: usize = 1_000;

pub struct FlowEngine {
    store: Store,
    definitions: BTreeMap<String, Definition>,
    roles: Roles,
    /// Raised after a commit that queued notifications.
    outbox_signal: Arc<Signal>,
    /// Actions other parts of the core add (reconciliation's).
    actions: BTreeMap<String, Arc<dyn ActionHandler>>,
}

/// An automatic action another part of the core provides. It runs inside
/// the step's transaction, so its effects commit with the task's completion.
pub trait ActionHandler: Send + Sync {
    fn run(
        &self,
        tx: &Tx<'_>,
        flow: &FlowRecord,
        task: &TaskRecord,
        now: i64,
    ) -> Result<ActionOutcome, FlowError>;
}

/// What an action did.
#[derive(Debug, Default)]
pub struct ActionOutcome {
    /// It queued notifications.
    pub notified: bool,
    /// The flow's new context, if it changed.
    pub context: Option<Value>,
}

/// Who asked for a change, for the history.
pub const SYSTEM: &str = "system";

impl FlowEngine {
    pub fn new(
        store: Store,
        definitions: BTreeMap<String, Definition>,
        roles: Roles,
        outbox_signal: Arc<Signal>,
    ) -> Self {
        FlowEngine {
            store,
            definitions,
            roles,
            outbox_signal,
            actions: BTreeMap::new(),
        }
    }

    /// Adds definitions built from code (before the engine is shared).
    pub fn add_definition(&mut self, definition: Definition) {
        self.definitions.insert(definition.name.clone(), definition);
    }

    /// Adds an action (before the engine is shared).
    pub fn add_action(&mut self, name: &str, handler: Arc<dyn ActionHandler>) {
        self.actions.insert(name.to_owned(), handler);
    }

    /// Ends a running flow early (its goal was reached another way): open
    /// and pending tasks are skipped, the flow is completed, `event` goes in
    /// the history. Runs inside the caller's transaction.
    pub fn finish_in(
        &self,
        tx: &Tx<'_>,
        flow_id: &str,
        event: &str,
        actor: &str,
        now: i64,
    ) -> Result<(), FlowError> {
        let Some(flow) = q::get_flow(tx, flow_id)? else {
            return Ok(());
        };
        if flow.state != "running" {
            return Ok(());
        }
        close_flow(tx, flow_id, "completed", event, actor, now)
    }

    /// Makes the flow's current timer due now (someone gave up waiting), then moves the flow on.
    pub fn expedite(&self, flow_id: &str, actor: &str) -> Result<(), FlowError> {
        let now = store::now_ms();
        self.store.write(|tx| {
            if let Some(mut task) = q::current_task(tx, flow_id)?
                && task.kind == "timer"
                && task.state == "open"
            {
                task.due_at = Some(now);
                q::update_task(tx, &task)?;
                q::add_history(
                    tx,
                    flow_id,
                    now,
                    actor,
                    "timer-expedited",
                    &json!({"task": task.name}),
                )?;
            }
            Ok::<_, FlowError>(())
        })?;
        self.advance(flow_id)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn definitions(&self) -> &BTreeMap<String, Definition> {
        &self.definitions
    }

    /// Starts a flow of `definition` about `subject`, and runs it as far as it goes.
    pub fn start(
        &self,
        definition: &str,
        subject: &str,
        context: Value,
        actor: &str,
    ) -> Result<FlowView, FlowError> {
        let id = self
            .store
            .write(|tx| self.start_in(tx, definition, subject, context, actor))?;
        self.advance(&id)?;
        self.flow(&id)
    }

    /// Creates a flow inside the caller's transaction, so that it commits
    /// (or not) with the caller's own changes. The caller runs
    /// [`FlowEngine::advance`] after the commit; until then the driver would.
    pub fn start_in(
        &self,
        tx: &Tx<'_>,
        definition: &str,
        subject: &str,
        context: Value,
        actor: &str,
    ) -> Result<String, FlowError> {
        let def = self
            .definitions
            .get(definition)
            .ok_or_else(|| FlowError::UnknownDefinition {
                name: definition.into(),
                known: self.definitions.keys().cloned().collect(),
            })?;
        if subject.trim().is_empty() {
            return Err(FlowError::Invalid("`subject` must not be empty".into()));
        }
        crate::text::line("subject", subject).map_err(FlowError::Invalid)?;
        let context = match context {
            Value::Null => Value::Object(Map::new()),
            Value::Object(map) => Value::Object(map),
            _ => return Err(FlowError::Invalid("`context` must be a JSON object".into())),
        };
        let now = store::now_ms();
        let id = store::new_id("flw", 8);
        let flow = FlowRecord {
            id: id.clone(),
            definition: definition.into(),
            subject: subject.into(),
            state: "running".into(),
            context,
            created_at: now,
            updated_at: now,
        };
        q::insert_flow(tx, &flow)?;
        for (seq, spec) in def.tasks.iter().enumerate() {
            q::insert_task(tx, &id, &new_task(spec, seq as i64, false))?;
        }
        q::add_history(
            tx,
            &id,
            now,
            actor,
            "started",
            &json!({"definition": definition, "subject": subject}),
        )?;
        Ok(id)
    }

    /// The flow with its tasks and history.
    pub fn flow(&self, id: &str) -> Result<FlowView, FlowError> {
        self.store
            .read(|c| view(c, id))?
            .ok_or_else(|| FlowError::NotFound(format!("no flow `{id}`")))
    }

    /// Completes an open manual task (`outcome` "done" or "failed"), then moves the flow on.
    pub fn complete(
        &self,
        task_id: &str,
        outcome: &str,
        data: Value,
        actor: &str,
    ) -> Result<TaskRecord, FlowError> {
        if outcome != "done" && outcome != "failed" {
            return Err(FlowError::Invalid(format!(
                "`outcome` is `{outcome}`; use \"done\" or \"failed\""
            )));
        }
        if !(data.is_null() || data.is_object()) {
            return Err(FlowError::Invalid("`data` must be a JSON object".into()));
        }
        let now = store::now_ms();
        let task = self.store.write(|tx| {
            let mut task = q::get_task(tx, task_id)?
                .ok_or_else(|| FlowError::NotFound(format!("no task `{task_id}`")))?;
            let flow = q::get_flow(tx, &task.flow_id)?
                .ok_or_else(|| FlowError::NotFound(format!("no flow `{}`", task.flow_id)))?;
            if flow.state != "running" {
                return Err(FlowError::Conflict(format!(
                    "task `{task_id}` belongs to a flow that is {}",
                    flow.state
                )));
            }
            if task.kind != "manual" {
                return Err(FlowError::Conflict(format!(
                    "task `{task_id}` is {}: it completes by itself",
                    task.kind
                )));
            }
            if task.state != "open" {
                return Err(FlowError::Conflict(format!(
                    "task `{task_id}` is {}, not open",
                    task.state
                )));
            }
            task.state = if outcome == "done" { "done" } else { "failed" }.into();
            task.completed_at = Some(now);
            task.outcome = Some(outcome.into());
            task.data = (!data.is_null()).then_some(data.clone());
            q::update_task(tx, &task)?;
            if let Value::Object(fields) = &data {
                let mut context = flow.context.clone();
                merge(&mut context, fields);
                q::set_flow_context(tx, &flow.id, &context, now)?;
            }
            q::add_history(
                tx,
                &flow.id,
                now,
                actor,
                "task-completed",
                &json!({"task": task.name, "outcome": outcome}),
            )?;
            if outcome == "failed" {
                q::set_flow_state(tx, &flow.id, "failed", now)?;
                q::add_history(
                    tx,
                    &flow.id,
                    now,
                    actor,
                    "failed",
                    &json!({"task": task.name}),
                )?;
            }
            Ok(task)
        })?;
        self.advance(&task.flow_id)?;
        Ok(task)
    }

    /// Inserts a task for a problem found while the flow runs: `task` (or the
    /// definition's task for `problem`) goes before the first pending task
    /// named `before`, or right after the current task.
    pub fn demand(
        &self,
        flow_id: &str,
        problem: &str,
        task: Option<TaskSpec>,
        before: Option<String>,
        actor: &str,
    ) -> Result<FlowView, FlowError> {
        if problem.trim().is_empty() {
            return Err(FlowError::Invalid(
                "`problem` must say what was found".into(),
            ));
        }
        crate::text::free_text("problem", problem).map_err(FlowError::Invalid)?;
        let now = store::now_ms();
        self.store.write(|tx| {
            let flow = q::get_flow(tx, flow_id)?
                .ok_or_else(|| FlowError::NotFound(format!("no flow `{flow_id}`")))?;
            if flow.state != "running" {
                return Err(FlowError::Conflict(format!(
                    "flow `{flow_id}` is {}; demands apply to running flows",
                    flow.state
                )));
            }
            let known = self
                .definitions
                .get(&flow.definition)
                .and_then(|d| d.demands.get(problem));
            let (spec, before) = match (task, known) {
                (Some(spec), _) => (spec, before),
                (None, Some(known)) => {
                    (known.task.clone(), before.or_else(|| known.before.clone()))
                }
                (None, None) => {
                    return Err(FlowError::Invalid(format!(
                        "no `task` given, and flow `{}` declares no demand `{problem}`",
                        flow.definition
                    )));
                }
            };
            spec.validate().map_err(FlowError::Invalid)?;
            let tasks = q::tasks_of(tx, flow_id)?;
            let seq = match &before {
                Some(name) => tasks
                    .iter()
                    .find(|t| &t.name == name && t.state == "pending")
                    .map(|t| t.seq)
                    .ok_or_else(|| {
                        FlowError::Invalid(format!(
                            "`before`: flow `{flow_id}` has no pending task named `{name}`"
                        ))
                    })?,
                None => {
                    let current = tasks
                        .iter()
                        .find(|t| t.state == "pending" || t.state == "open");
                    current.map_or_else(|| tasks.last().map_or(0, |t| t.seq + 1), |t| t.seq + 1)
                }
            };
            q::shift_tasks(tx, flow_id, seq)?;
            q::insert_task(tx, flow_id, &new_task(&spec, seq, true))?;
            q::add_history(
                tx,
                flow_id,
                now,
                actor,
                "demand",
                &json!({"problem": problem, "task": spec.name, "before": before}),
            )?;
            Ok::<_, FlowError>(())
        })?;
        self.advance(flow_id)?;
        self.flow(flow_id)
    }

    /// Cancels a running flow: open and pending tasks are skipped.
    pub fn cancel(&self, flow_id: &str, actor: &str) -> Result<FlowView, FlowError> {
        let now = store::now_ms();
        self.store.write(|tx| {
            let flow = q::get_flow(tx, flow_id)?
                .ok_or_else(|| FlowError::NotFound(format!("no flow `{flow_id}`")))?;
            if flow.state != "running" {
                return Err(FlowError::Conflict(format!(
                    "flow `{flow_id}` is already {}",
                    flow.state
                )));
            }
            close_flow(tx, flow_id, "cancelled", "cancelled", actor, now)
        })?;
        self.flow(flow_id)
    }

    /// Moves every flow that can move now (due timers, pending tasks left by
    /// a crash). Returns how many flows moved.
    pub fn advance_ready(&self) -> Result<usize, FlowError> {
        let now = store::now_ms();
        let (mut ready, stuck) = self.store.read(|c| {
            Ok::<_, FlowError>((q::flows_ready(c, now)?, q::running_without_current(c)?))
        })?;
        ready.extend(stuck);
        for id in &ready {
            self.advance(id)?;
        }
        Ok(ready.len())
    }

    /// When the next timer falls due (ms since the epoch).
    pub fn next_timer(&self) -> Result<Option<i64>, FlowError> {
        Ok(self.store.read(q::next_timer)?)
    }

    /// Takes steps until the flow waits (a manual task, a timer) or ends.
    pub fn advance(&self, flow_id: &str) -> Result<(), FlowError> {
        for _ in 0..MAX_STEPS {
            let (moved, notified) = self.store.write(|tx| self.step(tx, flow_id))?;
            if notified {
                self.outbox_signal.raise();
            }
            if !moved {
                return Ok(());
            }
        }
        tracing::warn!(
            flow = flow_id,
            "flow took {MAX_STEPS} steps in a row; continuing later"
        );
        Ok(())
    }

    /// One transition. Returns (whether the flow moved, whether it queued notifications).
    fn step(&self, tx: &Tx<'_>, flow_id: &str) -> Result<(bool, bool), FlowError> {
        let Some(flow) = q::get_flow(tx, flow_id)? else {
            return Ok((false, false));
        };
        if flow.state != "running" {
            return Ok((false, false));
        }
        let now = store::now_ms();
        let Some(mut task) = q::current_task(tx, flow_id)? else {
            q::set_flow_state(tx, flow_id, "completed", now)?;
            q::add_history(tx, flow_id, now, SYSTEM, "completed", &json!({}))?;
            return Ok((true, false));
        };
        let mut notified = false;
        match (task.kind.as_str(), task.state.as_str()) {
            ("auto", "pending") => {
                notified = self.run_action(tx, &flow, &task, now)?;
                mark_done(tx, &mut task, "task-done", now)?;
            }
            ("manual", "pending") => {
                task.state = "open".into();
                task.opened_at = Some(now);
                q::update_task(tx, &task)?;
                let role = task.role.clone().unwrap_or_default();
                let data = json!({
                    "task": {"id": task.id, "flow_id": flow.id, "name": task.name, "role": role, "opened_at": store::rfc3339(now)},
                    "flow": flow_summary(&flow),
                });
                outbox::enqueue(tx, "task.opened", self.roles.webhook(&role), &data, now)?;
                notified = true;
                q::add_history(
                    tx,
                    flow_id,
                    now,
                    SYSTEM,
                    "task-opened",
                    &json!({"task": task.name, "role": role}),
                )?;
            }
            ("timer", "pending") => {
                // `until`: a time held in the context; else `after` from now.
                let due = match task.params.get("until").and_then(Value::as_str) {
                    Some(key) => flow.context.get(key).and_then(Value::as_i64).unwrap_or(now),
                    None => now.saturating_add(
                        task.params
                            .get("after_ms")
                            .and_then(Value::as_i64)
                            .unwrap_or(0),
                    ),
                };
                task.state = "open".into();
                task.opened_at = Some(now);
                task.due_at = Some(due);
                q::update_task(tx, &task)?;
                q::add_history(
                    tx,
                    flow_id,
                    now,
                    SYSTEM,
                    "timer-set",
                    &json!({"task": task.name, "due_at": store::rfc3339(due)}),
                )?;
            }
            ("timer", "open") if task.due_at.is_some_and(|due| due <= now) => {
                mark_done(tx, &mut task, "timer-fired", now)?;
            }
            _ => return Ok((false, false)),
        }
        q::set_flow_state(tx, flow_id, "running", now)?;
        Ok((true, notified))
    }

    /// Runs an automatic task's action inside the step's transaction.
    /// Returns whether it queued a notification.
    fn run_action(
        &self,
        tx: &Tx<'_>,
        flow: &FlowRecord,
        task: &TaskRecord,
        now: i64,
    ) -> Result<bool, FlowError> {
        let action = task.action.as_deref().unwrap_or_default();
        match action {
            "allocate-credentials" => {
                // Derived from the task id, so running the task again allocates the same.
                let suffix = hex::encode(&Sha256::digest(task.id.as_bytes())[..4]);
                let mut context = flow.context.clone();
                merge(
                    &mut context,
                    &Map::from_iter([(
                        "credentials".to_owned(),
                        json!({"login": format!("{}-{suffix}", flow.subject)}),
                    )]),
                );
                q::set_flow_context(tx, &flow.id, &context, now)?;
                Ok(false)
            }
            "set" => {
                if let Value::Object(params) = &task.params {
                    let mut params = params.clone();
                    params.remove("after_ms");
                    let mut context = flow.context.clone();
                    merge(&mut context, &params);
                    q::set_flow_context(tx, &flow.id, &context, now)?;
                }
                Ok(false)
            }
            "notify" => {
                let role = task.role.as_deref().unwrap_or_default();
                let data = json!({"flow": flow_summary(flow), "task": task.name, "role": role});
                outbox::enqueue(
                    tx,
                    "flow.notification",
                    self.roles.webhook(role),
                    &data,
                    now,
                )?;
                Ok(true)
            }
            other => {
                let handler = self.actions.get(other).ok_or_else(|| {
                    FlowError::Invalid(format!("task `{}` has unknown action `{other}`", task.name))
                })?;
                let outcome = handler.run(tx, flow, task, now)?;
                if let Some(context) = &outcome.context {
                    q::set_flow_context(tx, &flow.id, context, now)?;
                }
                Ok(outcome.notified)
            }
        }
    }
}

/// Marks an automatic task or a timer done and records `event` for it.
fn mark_done(tx: &Tx<'_>, task: &mut TaskRecord, event: &str, now: i64) -> Result<(), FlowError> {
    task.state = "done".into();
    task.completed_at = Some(now);
    task.outcome = Some("done".into());
    q::update_task(tx, task)?;
    q::add_history(
        tx,
        &task.flow_id,
        now,
        SYSTEM,
        event,
        &json!({"task": task.name}),
    )?;
    Ok(())
}

/// Ends a flow early: its open and pending tasks are skipped, it takes
/// `state`, and `event` goes in its history.
fn close_flow(
    tx: &Tx<'_>,
    flow_id: &str,
    state: &str,
    event: &str,
    actor: &str,
    now: i64,
) -> Result<(), FlowError> {
    for mut task in q::tasks_of(tx, flow_id)?
        .into_iter()
        .filter(|t| t.state == "pending" || t.state == "open")
    {
        task.state = "skipped".into();
        task.completed_at = Some(now);
        q::update_task(tx, &task)?;
    }
    q::set_flow_state(tx, flow_id, state, now)?;
    q::add_history(tx, flow_id, now, actor, event, &json!({}))?;
    Ok(())
}

fn new_task(spec: &TaskSpec, seq: i64, by_demand: bool) -> NewTask {
    NewTask {
        id: store::new_id("tsk", 8),
        seq,
        name: spec.name.clone(),
        kind: spec.kind.as_str().into(),
        role: spec.role.clone(),
        action: (spec.kind == TaskKind::Auto)
            .then(|| spec.action.clone())
            .flatten(),
        params: spec.stored_params(),
        inserted_by_demand: by_demand,
    }
}

fn flow_summary(flow: &FlowRecord) -> Value {
    json!({"id": flow.id, "definition": flow.definition, "subject": flow.subject, "context": flow.context})
}

fn merge(context: &mut Value, fields: &Map<String, Value>) {
    if !context.is_object() {
        *context = Value::Object(Map::new());
    }
    if let Value::Object(map) = context {
        for (k, v) in fields {
            map.insert(k.clone(), v.clone());
        }
    }
}

fn view(conn: &Conn<'_>, id: &str) -> Result<Option<FlowView>, FlowError> {
    let Some(flow) = q::get_flow(conn, id)? else {
        return Ok(None);
    };
    Ok(Some(FlowView {
        tasks: q::tasks_of(conn, id)?,
        history: q::history_of(conn, id)?,
        flow,
    }))
}
