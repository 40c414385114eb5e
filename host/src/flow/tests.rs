//! The engine on an in-memory store: the sample flow, demands, conflicts,
//! timers, and resuming what a crash left behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::notify::Signal;
use crate::store::{Store, flows as q, outbox};

fn definitions() -> BTreeMap<String, Definition> {
    let mut defs = BTreeMap::new();
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/flows/connect-client.toml"),
    )
    .unwrap();
    defs.insert(
        "connect-client".into(),
        Definition::parse(Path::new("connect-client.toml"), &source).unwrap(),
    );
    let timed = "[[tasks]]\nname = \"wait\"\nkind = \"timer\"\nafter = \"1h\"\n[[tasks]]\nname = \"mark\"\nkind = \"auto\"\naction = \"set\"\nparams = { fired = \"yes\" }\n";
    defs.insert(
        "timed".into(),
        Definition::parse(Path::new("timed.toml"), timed).unwrap(),
    );
    defs
}

fn engine(store: &Store) -> FlowEngine {
    let roles = Roles(BTreeMap::from([(
        "client".to_owned(),
        Role {
            description: None,
            webhook: Some("http://127.0.0.1:9/c".into()),
        },
    )]));
    FlowEngine::new(
        store.clone(),
        definitions(),
        roles,
        Arc::new(Signal::default()),
    )
}

fn states(flow: &FlowView) -> Vec<(String, String)> {
    flow.tasks
        .iter()
        .map(|t| (t.name.clone(), t.state.clone()))
        .collect()
}

fn events(flow: &FlowView) -> Vec<String> {
    flow.history.iter().map(|h| h.event.clone()).collect()
}

fn open_task(flow: &FlowView) -> String {
    flow.tasks
        .iter()
        .find(|t| t.state == "open")
        .map(|t| t.id.clone())
        .unwrap()
}

#[test]
fn connect_client_runs_to_completion() {
    let store = Store::in_memory().unwrap();
    let engine = engine(&store);
    let flow = engine
        .start("connect-client", "acme", Value::Null, "test")
        .unwrap();
    assert_eq!(flow.flow.state, "running");
    assert_eq!(
        states(&flow),
        [
            ("allocate credentials", "done"),
            ("line installed by network provider", "open"),
            ("send connection information", "pending")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let login = flow.flow.context["credentials"]["login"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(login.starts_with("acme-"), "{login}");

    engine
        .complete(
            &open_task(&flow),
            "done",
            json!({"line": "L-17"}),
            "provider",
        )
        .unwrap();
    let flow = engine.flow(&flow.flow.id).unwrap();
    assert_eq!(flow.flow.state, "completed");
    assert_eq!(
        flow.flow.context["line"], "L-17",
        "completion data lands in the context"
    );
    assert_eq!(
        events(&flow),
        [
            "started",
            "task-done",
            "task-opened",
            "task-completed",
            "task-done",
            "completed"
        ]
    );

    let sent = store.read(|c| outbox::list(c, None, 10)).unwrap();
    let kinds: Vec<_> = sent
        .iter()
        .map(|n| (n.kind.as_str(), n.state.as_str()))
        .collect();
    // No webhook for the network provider: held; the client has one: pending.
    assert_eq!(
        kinds,
        [("flow.notification", "pending"), ("task.opened", "held")]
    );
}

#[test]
fn demands_insert_tasks_where_asked() {
    let store = Store::in_memory().unwrap();
    let engine = engine(&store);
    let flow = engine
        .start("connect-client", "acme", Value::Null, "test")
        .unwrap();
    let id = flow.flow.id.clone();
    // The definition's own demand: before the last task.
    let flow = engine.demand(&id, "line fault", None, None, "ops").unwrap();
    let names: Vec<_> = flow
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), t.inserted_by_demand))
        .collect();
    assert_eq!(
        names,
        [
            ("allocate credentials", false),
            ("line installed by network provider", false),
            ("repair line", true),
            ("send connection information", false)
        ]
    );
    let demand = flow.history.iter().find(|h| h.event == "demand").unwrap();
    assert_eq!(demand.detail["problem"], "line fault");
    assert_eq!(demand.actor, "ops");
    // An explicit task with no position goes right after the current task.
    let spec = TaskSpec {
        name: "inspect".into(),
        kind: TaskKind::Manual,
        role: Some("network-provider".into()),
        action: None,
        params: Default::default(),
        after: None,
        until: None,
    };
    let flow = engine
        .demand(&id, "noise", Some(spec), None, "ops")
        .unwrap();
    assert_eq!(flow.tasks[2].name, "inspect");
    // The inserted tasks open in order as work completes.
    engine
        .complete(&open_task(&flow), "done", Value::Null, "p")
        .unwrap();
    let flow = engine.flow(&id).unwrap();
    assert_eq!(flow.tasks[2].state, "open");
}

#[test]
fn bad_demands_and_double_completions_change_nothing() {
    let store = Store::in_memory().unwrap();
    let engine = engine(&store);
    let flow = engine
        .start("connect-client", "acme", Value::Null, "test")
        .unwrap();
    let id = flow.flow.id.clone();
    let before = engine.flow(&id).unwrap();
    assert!(matches!(
        engine.demand(&id, "line fault", None, Some("nope".into()), "x"),
        Err(FlowError::Invalid(_))
    ));
    assert!(matches!(
        engine.demand(&id, "unheard of", None, None, "x"),
        Err(FlowError::Invalid(_))
    ));
    assert!(matches!(
        engine.complete(&flow.tasks[0].id, "done", Value::Null, "x"),
        Err(FlowError::Conflict(_))
    ));
    assert!(matches!(
        engine.complete(&open_task(&flow), "maybe", Value::Null, "x"),
        Err(FlowError::Invalid(_))
    ));
    assert_eq!(engine.flow(&id).unwrap(), before);

    let task = open_task(&flow);
    engine.complete(&task, "done", Value::Null, "x").unwrap();
    let after = engine.flow(&id).unwrap();
    assert!(matches!(
        engine.complete(&task, "done", Value::Null, "x"),
        Err(FlowError::Conflict(_))
    ));
    assert!(matches!(
        engine.demand(&id, "line fault", None, None, "x"),
        Err(FlowError::Conflict(_))
    ));
    assert_eq!(engine.flow(&id).unwrap(), after);
    assert!(matches!(
        engine.complete("tsk_none", "done", Value::Null, "x"),
        Err(FlowError::NotFound(_))
    ));
    assert!(matches!(
        engine.start("nope", "acme", Value::Null, "x"),
        Err(FlowError::UnknownDefinition { .. })
    ));
}

#[test]
fn a_failed_manual_task_fails_the_flow() {
    let store = Store::in_memory().unwrap();
    let engine = engine(&store);
    let flow = engine
        .start("connect-client", "acme", Value::Null, "test")
        .unwrap();
    engine
        .complete(&open_task(&flow), "failed", Value::Null, "p")
        .unwrap();
    let flow = engine.flow(&flow.flow.id).unwrap();
    assert_eq!(flow.flow.state, "failed");
    assert_eq!(
        flow.tasks[2].state, "pending",
        "nothing after a failure runs"
    );
}

#[test]
fn a_timer_that_fell_due_while_down_fires_once_on_start() {
    let store = Store::in_memory().unwrap();
    let flow = engine(&store)
        .start("timed", "acme", Value::Null, "test")
        .unwrap();
    assert_eq!(flow.tasks[0].state, "open");
    // The host goes down; an hour passes.
    store
        .write(|tx| crate::store::flows::move_timers_back(tx, 3_600_001))
        .unwrap();
    let restarted = engine(&store);
    assert_eq!(restarted.advance_ready().unwrap(), 1);
    assert_eq!(restarted.advance_ready().unwrap(), 0);
    let flow = restarted.flow(&flow.flow.id).unwrap();
    assert_eq!(flow.flow.state, "completed");
    assert_eq!(flow.flow.context["fired"], "yes");
    assert_eq!(
        events(&flow).iter().filter(|e| *e == "timer-fired").count(),
        1
    );
}

#[test]
fn pending_automatic_work_left_by_a_crash_runs_on_start() {
    let store = Store::in_memory().unwrap();
    // A flow committed at start, killed before its first step.
    store
        .write(|tx| {
            q::insert_flow(
                tx,
                &q::FlowRecord {
                    id: "flw_1".into(),
                    definition: "connect-client".into(),
                    subject: "acme".into(),
                    state: "running".into(),
                    context: json!({}),
                    created_at: 1,
                    updated_at: 1,
                },
            )?;
            for (seq, spec) in definitions()["connect-client"].tasks.iter().enumerate() {
                q::insert_task(
                    tx,
                    "flw_1",
                    &q::NewTask {
                        id: format!("tsk_{seq}"),
                        seq: seq as i64,
                        name: spec.name.clone(),
                        kind: spec.kind.as_str().into(),
                        role: spec.role.clone(),
                        action: spec.action.clone(),
                        params: spec.stored_params(),
                        inserted_by_demand: false,
                    },
                )?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .unwrap();
    let engine = engine(&store);
    engine.advance_ready().unwrap();
    let flow = engine.flow("flw_1").unwrap();
    assert_eq!(flow.tasks[0].state, "done");
    assert_eq!(flow.tasks[1].state, "open");
    assert_eq!(
        engine.advance_ready().unwrap(),
        0,
        "a waiting flow is not moved again"
    );
}

#[test]
fn an_until_timer_waits_for_the_time_in_the_context() {
    let store = Store::in_memory().unwrap();
    let mut engine = engine(&store);
    let spec = |name: &str, until: &str| TaskSpec {
        name: name.into(),
        kind: TaskKind::Timer,
        role: None,
        action: None,
        params: Default::default(),
        after: None,
        until: Some(until.into()),
    };
    engine.add_definition(
        Definition::new("until", vec![spec("later", "at"), spec("unset", "missing")]).unwrap(),
    );
    let later = crate::store::now_ms() + 3_600_000;
    let flow = engine
        .start("until", "acme", json!({"at": later}), "test")
        .unwrap();
    assert_eq!(flow.tasks[0].state, "open");
    assert_eq!(flow.tasks[0].due_at, Some(later));
    // A missing time fires at once.
    engine.expedite(&flow.flow.id, "test").unwrap();
    let flow = engine.flow(&flow.flow.id).unwrap();
    assert_eq!(flow.flow.state, "completed", "{:?}", states(&flow));
}
