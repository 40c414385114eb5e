//! `rulehost serve` and the process-flow engine as their users rely on them:
//! the sample flow `connect-client` run through the internal API, demands,
//! conflicts and bad input, `kill -9` and timers that fall due while the host
//! is down, webhooks to a receiver that is down for a while, graceful
//! shutdown, health and metrics.
//!
//! Each test has its own folder, database, server and webhook receiver, and
//! bounds every wait.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Host, Reply, Setup, wait_for, wait_until};
use crate::webhook::{Hook, Receiver};

// ---------------------------------------------------------------------------
// The sample flow and the roles' webhooks.

const CONNECT: &str = "connect-client";
const ALLOCATE: &str = "allocate credentials";
const LINE: &str = "line installed by network provider";
const SEND: &str = "send connection information";
const REPAIR: &str = "repair line";
const NETWORK_ROLE: &str = "network-provider";
const CLIENT_ROLE: &str = "client";

/// Where the receiver gets each role's events.
const NETWORK_HOOK: &str = "/hooks/network";
const CLIENT_HOOK: &str = "/hooks/client";

const TASK_OPENED: &str = "task.opened";
const FLOW_NOTIFICATION: &str = "flow.notification";

/// An automatic step of a running flow, or a state change after a request.
const STEP: Duration = Duration::from_secs(10);
/// A webhook delivery (retries start at ~250 ms and double).
const DELIVERY: Duration = Duration::from_secs(15);

/// `roles.toml` pointing both roles of `connect-client` at `receiver`.
fn roles_for(receiver: &Receiver) -> String {
    format!(
        "[{NETWORK_ROLE}]\nwebhook = \"{}\"\n\n[{CLIENT_ROLE}]\nwebhook = \"{}\"\n",
        receiver.url(NETWORK_HOOK),
        receiver.url(CLIENT_HOOK)
    )
}

// ---------------------------------------------------------------------------
// Reading flows, tasks and the outbox through the API.

/// An id as it goes into a URL (ids may be strings or numbers).
fn id(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn start_flow(host: &Host, definition: &str, subject: &str) -> Value {
    let created = host.post(
        "/v1/flows",
        &json!({"definition": definition, "subject": subject}),
    );
    assert_eq!(created.status, 201, "start {definition}: {created}");
    assert!(created.content_type.contains("json"), "{created}");
    created.json
}

fn get_flow(host: &Host, flow_id: &str) -> Value {
    let reply = host.get(&format!("/v1/flows/{flow_id}"));
    assert_eq!(reply.status, 200, "GET flow {flow_id}: {reply}");
    reply.json
}

/// Polls the flow until `cond` holds; the flow as it then was.
fn wait_flow(host: &Host, flow_id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    wait_for(STEP, &format!("flow {flow_id}: {what}"), || {
        let flow = get_flow(host, flow_id);
        if cond(&flow) {
            Ok(flow)
        } else {
            Err(pretty(&flow))
        }
    })
}

fn wait_open(host: &Host, flow_id: &str, name: &str) -> Value {
    wait_flow(host, flow_id, &format!("task `{name}` open"), |f| {
        find_task(f, name).is_some_and(|t| t["state"] == "open")
    })
}

fn wait_state(host: &Host, flow_id: &str, state: &str) -> Value {
    wait_flow(host, flow_id, &format!("state {state}"), |f| {
        f["state"] == state
    })
}

fn find_task<'a>(flow: &'a Value, name: &str) -> Option<&'a Value> {
    flow["tasks"].as_array()?.iter().find(|t| t["name"] == name)
}

#[allow(clippy::panic)] // a missing task must fail the test, showing the flow
fn task<'a>(flow: &'a Value, name: &str) -> &'a Value {
    find_task(flow, name).unwrap_or_else(|| panic!("no task `{name}` in\n{}", pretty(flow)))
}

/// The tasks' names, in execution order.
fn names(flow: &Value) -> Vec<String> {
    flow["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The history entries whose `event` is `event`.
fn history(flow: &Value, event: &str) -> Vec<Value> {
    flow["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["event"] == event)
        .cloned()
        .collect()
}

fn complete(host: &Host, task_id: &str, body: &Value) -> Reply {
    host.post(&format!("/v1/tasks/{task_id}/complete"), body)
}

/// Waits for the task `name` to open, completes it ("done") and checks the 200.
fn complete_open(host: &Host, flow_id: &str, name: &str) -> Value {
    let flow = wait_open(host, flow_id, name);
    let task_id = id(&task(&flow, name)["id"]);
    let done = complete(host, &task_id, &json!({"outcome": "done"}));
    assert_eq!(done.status, 200, "complete `{name}`: {done}");
    assert_eq!(id(&done.json["id"]), task_id, "{done}");
    assert_eq!(done.json["state"], "done", "{done}");
    done.json
}

fn demand(host: &Host, flow_id: &str, body: &Value) -> Reply {
    host.post(&format!("/v1/flows/{flow_id}/demands"), body)
}

/// `GET /v1/outbox<query>`'s notifications.
fn outbox(host: &Host, query: &str) -> Vec<Value> {
    let reply = host.get(&format!("/v1/outbox{query}"));
    assert_eq!(reply.status, 200, "GET /v1/outbox{query}: {reply}");
    reply.json["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_else(Vec::new)
}

fn of_kind(notifications: &[Value], kind: &str) -> Vec<Value> {
    notifications
        .iter()
        .filter(|n| n["kind"] == kind)
        .cloned()
        .collect()
}

/// Waits until the outbox holds exactly `count` notifications, all delivered.
fn wait_all_delivered(host: &Host, count: usize) -> Vec<Value> {
    wait_for(
        DELIVERY,
        &format!("{count} notifications delivered"),
        || {
            let all = outbox(host, "");
            if all.len() == count && all.iter().all(|n| n["state"] == "delivered") {
                Ok(all)
            } else {
                Err(pretty(&Value::Array(all)))
            }
        },
    )
}

/// Waits until the receiver got an event of `kind` at `path` matching `pick`.
fn wait_hook(receiver: &Receiver, path: &str, kind: &str, pick: impl Fn(&Hook) -> bool) -> Hook {
    wait_for(DELIVERY, &format!("{kind} at {path}"), || {
        receiver
            .events(path, kind)
            .into_iter()
            .find(|h| pick(h))
            .ok_or_else(|| format!("{:#?}", receiver.hooks()))
    })
}

/// What every webhook call must look like.
fn check_event(hook: &Hook, kind: &str) {
    assert_eq!(hook.method, "POST", "{hook:#?}");
    assert!(hook.body.is_object(), "not a JSON object: {}", hook.raw);
    assert!(
        hook.header("content-type")
            .is_some_and(|v| v.contains("application/json")),
        "{hook:#?}"
    );
    assert_eq!(hook.kind(), kind, "{hook:#?}");
    assert!(hook.event_id().starts_with("evt_"), "{hook:#?}");
    assert_eq!(
        hook.header("idempotency-key"),
        Some(hook.event_id()),
        "the Idempotency-Key is the event id\n{hook:#?}"
    );
    assert_eq!(
        hook.header("x-rulehost-event"),
        Some(hook.event_id()),
        "{hook:#?}"
    );
    assert_eq!(hook.header("x-rulehost-kind"), Some(kind), "{hook:#?}");
    assert!(
        hook.body["at"].as_str().is_some_and(is_timestamp),
        "{hook:#?}"
    );
    assert!(hook.body["data"].is_object(), "{hook:#?}");
}

/// Loosely RFC 3339: `YYYY-MM-DDTHH:MM:SS` then a fraction and an offset.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && (text.ends_with('Z')
            || text.ends_with('z')
            || b[b.len() - 6] == b'+'
            || b[b.len() - 6] == b'-')
}

fn is_timestamp_value(value: &Value) -> bool {
    value.as_str().is_some_and(is_timestamp)
}

/// A JSON error answer: `{"error": {"code", "message"}}` with both set.
fn check_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{reply}");
    assert!(reply.content_type.contains("json"), "{reply}");
    assert!(
        reply.json["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{reply}"
    );
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The ids of the flows `GET /v1/flows<query>` lists.
fn listed_flows(host: &Host, query: &str) -> Vec<String> {
    let reply = host.get(&format!("/v1/flows{query}"));
    assert_eq!(reply.status, 200, "GET /v1/flows{query}: {reply}");
    reply.json["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| id(&f["id"]))
        .collect()
}

/// The open tasks `GET /v1/tasks<query>` lists.
fn listed_tasks(host: &Host, query: &str) -> Vec<Value> {
    let reply = host.get(&format!("/v1/tasks{query}"));
    assert_eq!(reply.status, 200, "GET /v1/tasks{query}: {reply}");
    reply.json["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_else(Vec::new)
}

/// The sum of the samples of metric `name` (any labels) whose labels
/// contain every one of `labels` (e.g. `state="running"`); `None` when
/// there is no such sample.
pub(crate) fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_set, value) = if let Some(inner) = rest.strip_prefix('{') {
            let Some((set, value)) = inner.split_once('}') else {
                continue;
            };
            (set, value)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // a longer name with this one as prefix
        };
        if !labels.iter().all(|l| label_set.contains(l)) {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    sum
}

// ---------------------------------------------------------------------------
// 1. The sample flow, start to end.

#[test]
fn connect_client_runs_to_completion_through_the_api() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    let host = setup.start();

    let created = start_flow(&host, CONNECT, "acme");
    let flow_id = id(&created["id"]);
    assert!(!flow_id.is_empty(), "{}", pretty(&created));
    assert_eq!(created["definition"], CONNECT);
    assert_eq!(created["subject"], "acme");
    assert_eq!(created["state"], "running");
    assert_eq!(names(&created), [ALLOCATE, LINE, SEND]);
    assert!(
        is_timestamp_value(&created["created_at"]),
        "{}",
        pretty(&created)
    );
    assert!(
        is_timestamp_value(&created["updated_at"]),
        "{}",
        pretty(&created)
    );

    // The automatic task runs by itself; the manual one opens.
    let flow = wait_open(&host, &flow_id, LINE);
    assert_eq!(flow["state"], "running");
    let allocate = task(&flow, ALLOCATE);
    assert_eq!(allocate["kind"], "auto");
    assert_eq!(allocate["state"], "done", "{}", pretty(&flow));
    assert!(
        is_timestamp_value(&allocate["completed_at"]),
        "{}",
        pretty(&flow)
    );
    let login = flow["context"]["credentials"]["login"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        login.starts_with("acme-") && login.len() > "acme-".len(),
        "credentials.login should be `acme-<hex>`\n{}",
        pretty(&flow)
    );
    let line = task(&flow, LINE);
    assert_eq!(line["kind"], "manual");
    assert_eq!(line["role"], NETWORK_ROLE);
    assert_eq!(line["inserted_by_demand"], false);
    assert!(is_timestamp_value(&line["opened_at"]), "{}", pretty(&flow));
    let line_id = id(&line["id"]);
    let send = task(&flow, SEND);
    assert_eq!(send["kind"], "auto");
    assert_eq!(send["role"], CLIENT_ROLE);
    assert_eq!(send["state"], "pending", "{}", pretty(&flow));

    // The network provider's work list shows the task; the client's does not.
    let open = listed_tasks(&host, "?state=open&role=network-provider");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(id(&open[0]["id"]), line_id);
    assert_eq!(id(&open[0]["flow_id"]), flow_id);
    assert_eq!(open[0]["name"], LINE);
    assert_eq!(open[0]["role"], NETWORK_ROLE);
    assert_eq!(open[0]["opened_at"], line["opened_at"]);
    assert!(listed_tasks(&host, "?state=open&role=client").is_empty());

    // The network provider is told, with the task and its flow.
    let opened = wait_hook(&receiver, NETWORK_HOOK, TASK_OPENED, |_| true);
    check_event(&opened, TASK_OPENED);
    let data = &opened.body["data"];
    assert_eq!(id(&data["task"]["id"]), line_id, "{opened:#?}");
    assert_eq!(id(&data["task"]["flow_id"]), flow_id, "{opened:#?}");
    assert_eq!(data["task"]["name"], LINE, "{opened:#?}");
    assert_eq!(data["task"]["role"], NETWORK_ROLE, "{opened:#?}");
    assert_eq!(id(&data["flow"]["id"]), flow_id, "{opened:#?}");
    assert_eq!(data["flow"]["definition"], CONNECT, "{opened:#?}");
    assert_eq!(data["flow"]["subject"], "acme", "{opened:#?}");
    assert_eq!(
        data["flow"]["context"]["credentials"]["login"], login,
        "{opened:#?}"
    );

    // The provider reports the line installed.
    let done = complete(
        &host,
        &line_id,
        &json!({"outcome": "done", "data": {"line_id": "L-1"}}),
    );
    assert_eq!(done.status, 200, "{done}");
    assert_eq!(id(&done.json["id"]), line_id, "{done}");
    assert_eq!(done.json["state"], "done", "{done}");

    let flow = wait_state(&host, &flow_id, "completed");
    for t in flow["tasks"].as_array().into_iter().flatten() {
        assert_eq!(t["state"], "done", "{}", pretty(&flow));
    }
    let line = task(&flow, LINE);
    assert_eq!(line["outcome"], "done", "{}", pretty(&flow));
    assert_eq!(line["data"]["line_id"], "L-1", "{}", pretty(&flow));
    assert!(
        is_timestamp_value(&line["completed_at"]),
        "{}",
        pretty(&flow)
    );
    assert_eq!(flow["context"]["credentials"]["login"], login);
    assert!(listed_tasks(&host, "?state=open&role=network-provider").is_empty());

    // The client gets its connection information.
    let note = wait_hook(&receiver, CLIENT_HOOK, FLOW_NOTIFICATION, |_| true);
    check_event(&note, FLOW_NOTIFICATION);
    assert_eq!(note.body["data"]["task"], SEND, "{note:#?}");
    assert_eq!(id(&note.body["data"]["flow"]["id"]), flow_id, "{note:#?}");
    assert_eq!(
        note.body["data"]["flow"]["context"]["credentials"]["login"], login,
        "{note:#?}"
    );
    // Each role got only its own events.
    assert!(receiver.events(NETWORK_HOOK, FLOW_NOTIFICATION).is_empty());
    assert!(receiver.events(CLIENT_HOOK, TASK_OPENED).is_empty());

    // The outbox shows both, delivered, with the ids the receiver got.
    let all = wait_all_delivered(&host, 2);
    let opened_out = of_kind(&all, TASK_OPENED);
    let note_out = of_kind(&all, FLOW_NOTIFICATION);
    assert_eq!(opened_out.len(), 1, "{all:#?}");
    assert_eq!(note_out.len(), 1, "{all:#?}");
    assert_eq!(opened_out[0]["event_id"], opened.event_id());
    assert_eq!(note_out[0]["event_id"], note.event_id());
    for n in &all {
        assert!(n["attempts"].as_u64().is_some_and(|a| a >= 1), "{n:#}");
        assert!(is_timestamp_value(&n["created_at"]), "{n:#}");
        assert!(is_timestamp_value(&n["delivered_at"]), "{n:#}");
        assert!(n["payload"].is_object(), "{n:#}");
    }
    // Duplicates are allowed (at least once), but only of these events.
    for hook in receiver.hooks() {
        assert!(
            all.iter().any(|n| n["event_id"] == hook.event_id()),
            "received an event the outbox does not have: {hook:#?}"
        );
    }
    assert_eq!(outbox(&host, "?state=delivered").len(), 2);
    assert!(outbox(&host, "?state=pending").is_empty());
    assert!(outbox(&host, "?state=held").is_empty());

    // The history tells what happened.
    let entries = flow["history"].as_array().cloned().unwrap_or_default();
    assert!(entries.len() >= 2, "{}", pretty(&flow));
    for entry in &entries {
        assert!(is_timestamp_value(&entry["at"]), "{entry:#}");
        assert!(
            entry["event"].as_str().is_some_and(|e| !e.is_empty()),
            "{entry:#}"
        );
        assert!(entry.get("actor").is_some(), "{entry:#}");
    }

    // The flow lists filter by state and definition.
    assert_eq!(listed_flows(&host, "?state=completed"), [flow_id.as_str()]);
    assert!(listed_flows(&host, "?state=running").is_empty());
    assert_eq!(
        listed_flows(&host, "?definition=connect-client"),
        [flow_id.as_str()]
    );
    assert!(listed_flows(&host, "?state=completed&definition=no-such-flow").is_empty());
}

// ---------------------------------------------------------------------------
// 2. Demands.

#[test]
fn a_demand_inserts_a_task_that_runs_in_order() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    let host = setup.start();

    // Explicit task and position.
    let flow_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    wait_open(&host, &flow_id, LINE);
    let inserted = demand(
        &host,
        &flow_id,
        &json!({
            "problem": "line fault",
            "task": {"name": REPAIR, "kind": "manual", "role": NETWORK_ROLE},
            "before": SEND,
        }),
    );
    assert_eq!(inserted.status, 201, "{inserted}");
    let flow = &inserted.json;
    assert_eq!(id(&flow["id"]), flow_id);
    assert_eq!(
        names(flow),
        [ALLOCATE, LINE, REPAIR, SEND],
        "{}",
        pretty(flow)
    );
    let repair = task(flow, REPAIR);
    assert_eq!(repair["inserted_by_demand"], true);
    assert_eq!(repair["kind"], "manual");
    assert_eq!(repair["role"], NETWORK_ROLE);
    assert_eq!(repair["state"], "pending");
    for name in [ALLOCATE, LINE, SEND] {
        assert_eq!(task(flow, name)["inserted_by_demand"], false, "{name}");
    }
    assert_eq!(
        task(flow, LINE)["state"],
        "open",
        "a demand leaves the current task open"
    );
    let demands = history(flow, "demand");
    assert_eq!(demands.len(), 1, "{}", pretty(flow));
    let detail = demands[0]["detail"].to_string();
    assert!(
        detail.contains("line fault") && detail.contains(REPAIR),
        "{detail}"
    );
    assert_eq!(
        get_flow(&host, &flow_id),
        *flow,
        "GET shows what the 201 showed"
    );

    // The inserted task runs in its place: after the line, before sending.
    complete_open(&host, &flow_id, LINE);
    let flow = wait_open(&host, &flow_id, REPAIR);
    assert_eq!(flow["state"], "running");
    assert_eq!(task(&flow, SEND)["state"], "pending", "{}", pretty(&flow));
    let repair_id = id(&task(&flow, REPAIR)["id"]);
    let hook = wait_hook(&receiver, NETWORK_HOOK, TASK_OPENED, |h| {
        id(&h.body["data"]["task"]["id"]) == repair_id
    });
    check_event(&hook, TASK_OPENED);
    assert_eq!(hook.body["data"]["task"]["name"], REPAIR);
    let open = listed_tasks(&host, "?state=open&role=network-provider");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(id(&open[0]["id"]), repair_id);
    assert!(
        receiver.events(CLIENT_HOOK, FLOW_NOTIFICATION).is_empty(),
        "the client was told before the line was repaired"
    );

    complete_open(&host, &flow_id, REPAIR);
    let flow = wait_state(&host, &flow_id, "completed");
    assert_eq!(names(&flow), [ALLOCATE, LINE, REPAIR, SEND]);
    for t in flow["tasks"].as_array().into_iter().flatten() {
        assert_eq!(t["state"], "done", "{}", pretty(&flow));
    }
    wait_hook(&receiver, CLIENT_HOOK, FLOW_NOTIFICATION, |h| {
        id(&h.body["data"]["flow"]["id"]) == flow_id
    });

    // The definition's defaults: `{"problem": "line fault"}` alone.
    let flow_id = id(&start_flow(&host, CONNECT, "globex")["id"]);
    wait_open(&host, &flow_id, LINE);
    let inserted = demand(&host, &flow_id, &json!({"problem": "line fault"}));
    assert_eq!(inserted.status, 201, "{inserted}");
    assert_eq!(
        names(&inserted.json),
        [ALLOCATE, LINE, REPAIR, SEND],
        "{}",
        pretty(&inserted.json)
    );
    let repair = task(&inserted.json, REPAIR);
    assert_eq!(repair["inserted_by_demand"], true);
    assert_eq!(repair["kind"], "manual");
    assert_eq!(repair["role"], NETWORK_ROLE);

    // Without `before`, the task goes right after the current task.
    let paperwork = "check paperwork";
    let inserted = demand(
        &host,
        &flow_id,
        &json!({
            "problem": "missing paperwork",
            "task": {"name": paperwork, "kind": "manual", "role": NETWORK_ROLE},
        }),
    );
    assert_eq!(inserted.status, 201, "{inserted}");
    assert_eq!(
        names(&inserted.json),
        [ALLOCATE, LINE, paperwork, REPAIR, SEND],
        "{}",
        pretty(&inserted.json)
    );
    assert_eq!(task(&inserted.json, paperwork)["inserted_by_demand"], true);
    assert_eq!(history(&inserted.json, "demand").len(), 2);

    // And they run in that order.
    complete_open(&host, &flow_id, LINE);
    let flow = wait_open(&host, &flow_id, paperwork);
    assert_eq!(task(&flow, REPAIR)["state"], "pending", "{}", pretty(&flow));
    complete_open(&host, &flow_id, paperwork);
    let flow = wait_open(&host, &flow_id, REPAIR);
    assert_eq!(task(&flow, SEND)["state"], "pending", "{}", pretty(&flow));
    complete_open(&host, &flow_id, REPAIR);
    wait_state(&host, &flow_id, "completed");
}

// ---------------------------------------------------------------------------
// 3. Conflicts and bad input: a clear error, and nothing changes.

#[test]
fn conflicts_and_bad_input_get_clear_errors_and_change_nothing() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    let host = setup.start();

    // A completed flow.
    let done_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    let flow = wait_open(&host, &done_id, LINE);
    let line_id = id(&task(&flow, LINE)["id"]);
    let allocate_id = id(&task(&flow, ALLOCATE)["id"]);
    complete_open(&host, &done_id, LINE);
    wait_state(&host, &done_id, "completed");
    wait_all_delivered(&host, 2);
    let before = get_flow(&host, &done_id);
    let outbox_before = outbox(&host, "");

    let again = complete(&host, &line_id, &json!({"outcome": "done"}));
    check_error(&again, 409);
    assert_eq!(again.json["error"]["code"], "conflict", "{again}");
    let auto = complete(&host, &allocate_id, &json!({}));
    check_error(&auto, 409);
    assert_eq!(auto.json["error"]["code"], "conflict", "{auto}");
    let late = demand(&host, &done_id, &json!({"problem": "line fault"}));
    check_error(&late, 409);
    assert_eq!(
        get_flow(&host, &done_id),
        before,
        "a refused request changed the flow"
    );
    assert_eq!(
        outbox(&host, ""),
        outbox_before,
        "a refused request changed the outbox"
    );

    // A running flow, its manual task open.
    let running_id = id(&start_flow(&host, CONNECT, "globex")["id"]);
    let flow = wait_open(&host, &running_id, LINE);
    let open_id = id(&task(&flow, LINE)["id"]);
    let send_id = id(&task(&flow, SEND)["id"]);
    wait_for(DELIVERY, "the second task.opened delivered", || {
        let all = outbox(&host, "");
        if all.len() == 3 && all.iter().all(|n| n["state"] == "delivered") {
            Ok(())
        } else {
            Err(pretty(&Value::Array(all)))
        }
    });
    let before = get_flow(&host, &running_id);

    let unknown_before = demand(
        &host,
        &running_id,
        &json!({
            "problem": "line fault",
            "task": {"name": REPAIR, "kind": "manual", "role": NETWORK_ROLE},
            "before": "no such task",
        }),
    );
    check_error(&unknown_before, 422);
    let malformed = host.post_text(&format!("/v1/tasks/{open_id}/complete"), "{\"outcome\": ");
    check_error(&malformed, 400);
    let bad_outcome = complete(&host, &open_id, &json!({"outcome": "maybe"}));
    check_error(&bad_outcome, 422);
    let pending_auto = complete(&host, &send_id, &json!({"outcome": "done"}));
    check_error(&pending_auto, 409);
    assert_eq!(pending_auto.json["error"]["code"], "conflict");
    let done_auto = complete(&host, &id(&task(&flow, ALLOCATE)["id"]), &json!({}));
    check_error(&done_auto, 409);
    assert_eq!(
        get_flow(&host, &running_id),
        before,
        "a refused request changed the flow"
    );

    // Starting flows with bad requests creates nothing.
    check_error(
        &host.post_text("/v1/flows", "{\"definition\": \"connect-client\","),
        400,
    );
    check_error(&host.post_text("/v1/flows", "not json at all"), 400);
    let unknown = host.post(
        "/v1/flows",
        &json!({"definition": "no-such-flow", "subject": "acme"}),
    );
    check_error(&unknown, 422);
    assert_eq!(
        unknown.json["error"]["code"], "unknown-definition",
        "{unknown}"
    );
    check_error(
        &host.post("/v1/flows", &json!({"definition": CONNECT})),
        422,
    );
    check_error(
        &host.post("/v1/flows", &json!({"definition": CONNECT, "subject": 42})),
        422,
    );
    // 2 MiB, valid JSON: refused for its size alone.
    let mut big = br#"{"definition":"connect-client","subject":"acme","context":{"pad":""#.to_vec();
    big.resize(big.len() + 2 * 1024 * 1024, b'x');
    big.extend_from_slice(br#""}}"#);
    check_error(&host.post_large("/v1/flows", big), 413);

    // Unknown things.
    check_error(&host.get("/v1/flows/no-such-flow"), 404);
    check_error(
        &demand(&host, "no-such-flow", &json!({"problem": "line fault"})),
        404,
    );
    check_error(
        &complete(&host, "no-such-task", &json!({"outcome": "done"})),
        404,
    );
    check_error(&host.get("/v1/no-such-route"), 404);

    let mut listed = listed_flows(&host, "");
    listed.sort();
    let mut expected = vec![done_id.clone(), running_id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "a refused request created a flow");
    assert_eq!(get_flow(&host, &running_id), before);
    assert_eq!(outbox(&host, "").len(), 3);

    // "failed" fails the flow: the rest does not run, the client is not told.
    let failed_id = id(&start_flow(&host, CONNECT, "initech")["id"]);
    let flow = wait_open(&host, &failed_id, LINE);
    let failed_task = id(&task(&flow, LINE)["id"]);
    let failed = complete(
        &host,
        &failed_task,
        &json!({"outcome": "failed", "data": {"reason": "no access to the building"}}),
    );
    assert_eq!(failed.status, 200, "{failed}");
    assert_eq!(failed.json["state"], "failed", "{failed}");
    let flow = wait_state(&host, &failed_id, "failed");
    assert_ne!(task(&flow, SEND)["state"], "done", "{}", pretty(&flow));
    let before = get_flow(&host, &failed_id);
    check_error(
        &complete(&host, &failed_task, &json!({"outcome": "done"})),
        409,
    );
    check_error(
        &demand(&host, &failed_id, &json!({"problem": "line fault"})),
        409,
    );
    assert_eq!(get_flow(&host, &failed_id), before);
    assert_eq!(
        of_kind(&outbox(&host, ""), FLOW_NOTIFICATION).len(),
        1,
        "only the completed flow notifies its client"
    );

    let health = host.get("/healthz");
    assert_eq!(health.status, 200, "{health}");
}

// ---------------------------------------------------------------------------
// 4. kill -9 and restart.

#[test]
fn kill_9_mid_flow_then_restart_resumes_with_nothing_lost_or_done_twice() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    let host = setup.start();

    let flow_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    let flow = wait_open(&host, &flow_id, LINE);
    let line_id = id(&task(&flow, LINE)["id"]);
    let opened = wait_hook(&receiver, NETWORK_HOOK, TASK_OPENED, |_| true);
    wait_all_delivered(&host, 1);
    let before = get_flow(&host, &flow_id);

    host.kill9();
    let host = setup.start();
    let after = get_flow(&host, &flow_id);
    for field in [
        "id",
        "definition",
        "subject",
        "state",
        "context",
        "tasks",
        "history",
    ] {
        assert_eq!(
            after[field],
            before[field],
            "`{field}` changed across kill -9\nbefore:\n{}\nafter:\n{}",
            pretty(&before),
            pretty(&after)
        );
    }
    let open = listed_tasks(&host, "?state=open&role=network-provider");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(id(&open[0]["id"]), line_id);
    let all = outbox(&host, "");
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["event_id"], opened.event_id());
    assert_eq!(all[0]["state"], "delivered");

    // Complete it, and kill -9 again right after the answer.
    let done = complete(&host, &line_id, &json!({"outcome": "done"}));
    assert_eq!(done.status, 200, "{done}");
    host.kill9();
    let host = setup.start();

    let flow = wait_state(&host, &flow_id, "completed");
    for t in flow["tasks"].as_array().into_iter().flatten() {
        assert_eq!(t["state"], "done", "{}", pretty(&flow));
    }
    assert_eq!(
        flow["context"]["credentials"], before["context"]["credentials"],
        "credentials were allocated again"
    );
    let history_before = before["history"].as_array().cloned().unwrap_or_default();
    let history_after = flow["history"].as_array().cloned().unwrap_or_default();
    assert!(
        history_after.starts_with(&history_before),
        "the history was rewritten\nbefore:\n{}\nafter:\n{}",
        pretty(&before),
        pretty(&flow)
    );

    let all = wait_all_delivered(&host, 2);
    let notes = of_kind(&all, FLOW_NOTIFICATION);
    assert_eq!(
        notes.len(),
        1,
        "the client notification is in the outbox once\n{all:#?}"
    );
    assert_eq!(of_kind(&all, TASK_OPENED).len(), 1, "{all:#?}");
    let note = wait_hook(&receiver, CLIENT_HOOK, FLOW_NOTIFICATION, |_| true);
    check_event(&note, FLOW_NOTIFICATION);
    // Delivered at least once: a repeat is the same event, never a new one.
    for hook in receiver.events(CLIENT_HOOK, FLOW_NOTIFICATION) {
        assert_eq!(notes[0]["event_id"], hook.event_id(), "{hook:#?}");
    }
    for hook in receiver.events(NETWORK_HOOK, TASK_OPENED) {
        assert_eq!(hook.event_id(), opened.event_id(), "{hook:#?}");
    }
}

// ---------------------------------------------------------------------------
// 5. A timer that falls due while the host is down.

const TIMER_FLOW: &str = r#"description = "wait a little, then set a flag"

[[tasks]]
name = "wait a little"
kind = "timer"
after = "2s"

[[tasks]]
name = "set the flag"
kind = "auto"
action = "set"
params = { fired = "yes" }
"#;

#[test]
fn a_timer_due_while_the_host_was_down_fires_once_on_restart() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    setup.write_flow("wait-then-set", TIMER_FLOW);
    let host = setup.start();

    let created = start_flow(&host, "wait-then-set", "timer");
    let flow_id = id(&created["id"]);
    assert_eq!(created["state"], "running", "{}", pretty(&created));
    assert_eq!(names(&created), ["wait a little", "set the flag"]);
    let timer = task(&created, "wait a little");
    assert_eq!(timer["kind"], "timer");
    assert_ne!(timer["state"], "done", "{}", pretty(&created));
    assert!(is_timestamp_value(&timer["due_at"]), "{}", pretty(&created));
    host.kill9();

    std::thread::sleep(Duration::from_secs(3));
    let host = setup.start();
    let flow = wait_flow(&host, &flow_id, "completed soon after the restart", |f| {
        f["state"] == "completed"
    });
    assert_eq!(flow["context"]["fired"], "yes", "{}", pretty(&flow));
    assert_eq!(task(&flow, "wait a little")["state"], "done");
    assert_eq!(task(&flow, "set the flag")["state"], "done");
    assert_eq!(history(&flow, "timer-fired").len(), 1, "{}", pretty(&flow));

    // And it stays fired once.
    std::thread::sleep(Duration::from_millis(500));
    let later = get_flow(&host, &flow_id);
    assert_eq!(later["state"], "completed");
    assert_eq!(
        history(&later, "timer-fired").len(),
        1,
        "{}",
        pretty(&later)
    );
}

// ---------------------------------------------------------------------------
// 6. Webhooks when the receiver is down, or when there is none.

#[test]
fn a_receiver_that_was_down_gets_the_event_once_it_is_back() {
    let mut receiver = Receiver::start();
    receiver.stop();
    assert!(!receiver.is_reachable(), "the receiver should be down");
    let setup = Setup::new(&roles_for(&receiver));
    let host = setup.start();

    // The flow goes on; the notification waits in the outbox, retried.
    let flow_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    let flow = wait_open(&host, &flow_id, LINE);
    let line_id = id(&task(&flow, LINE)["id"]);
    let pending = wait_for(
        DELIVERY,
        "task.opened pending after a failed attempt",
        || {
            let all = outbox(&host, "");
            of_kind(&all, TASK_OPENED)
                .into_iter()
                .find(|n| {
                    n["state"] == "pending"
                        && n["attempts"].as_u64().is_some_and(|a| a >= 1)
                        && n["last_error"].as_str().is_some_and(|e| !e.is_empty())
                })
                .ok_or_else(|| pretty(&Value::Array(all)))
        },
    );
    let event_id = pending["event_id"].clone();
    assert!(
        outbox(&host, "?state=pending")
            .iter()
            .any(|n| n["event_id"] == event_id),
        "?state=pending lists it"
    );
    assert!(outbox(&host, "?state=delivered").is_empty());
    // It keeps trying.
    wait_for(DELIVERY, "a second attempt", || {
        let all = outbox(&host, "");
        all.iter()
            .find(|n| n["event_id"] == event_id && n["attempts"].as_u64().is_some_and(|a| a >= 2))
            .map(|_| ())
            .ok_or_else(|| pretty(&Value::Array(all)))
    });
    assert!(receiver.hooks().is_empty());

    // Back up on the same port: the event arrives, with the outbox's id.
    receiver.restart();
    let started = Instant::now();
    let hook = wait_hook(&receiver, NETWORK_HOOK, TASK_OPENED, |_| true);
    check_event(&hook, TASK_OPENED);
    assert_eq!(hook.event_id(), event_id, "{hook:#?}");
    assert_eq!(id(&hook.body["data"]["task"]["id"]), line_id);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "delivered {:?} after the receiver came back",
        started.elapsed()
    );
    let delivered = wait_for(STEP, "the outbox entry delivered", || {
        let all = outbox(&host, "");
        all.iter()
            .find(|n| n["event_id"] == event_id && n["state"] == "delivered")
            .cloned()
            .ok_or_else(|| pretty(&Value::Array(all)))
    });
    assert!(
        delivered["attempts"].as_u64().is_some_and(|a| a >= 2),
        "{delivered:#}"
    );
    assert!(
        is_timestamp_value(&delivered["delivered_at"]),
        "{delivered:#}"
    );
    for hook in receiver.hooks() {
        assert_eq!(hook.event_id(), event_id, "{hook:#?}");
    }
}

#[test]
fn a_notification_for_a_role_without_webhook_is_held() {
    let receiver = Receiver::start();
    // The network provider is a role without a webhook.
    let roles = format!(
        "[{NETWORK_ROLE}]\ndescription = \"no webhook\"\n\n[{CLIENT_ROLE}]\nwebhook = \"{}\"\n",
        receiver.url(CLIENT_HOOK)
    );
    let setup = Setup::new(&roles);
    let host = setup.start();

    let flow_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    let flow = wait_open(&host, &flow_id, LINE);
    let held = wait_for(STEP, "task.opened held", || {
        let all = outbox(&host, "");
        of_kind(&all, TASK_OPENED)
            .into_iter()
            .find(|n| n["state"] == "held")
            .ok_or_else(|| pretty(&Value::Array(all)))
    });
    let listed = outbox(&host, "?state=held");
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["event_id"], held["event_id"]);
    // The task is open all the same: the operator can see it and complete it.
    let open = listed_tasks(&host, "?state=open&role=network-provider");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["id"], task(&flow, LINE)["id"]);
    assert!(receiver.hooks().is_empty(), "{:#?}", receiver.hooks());
}

// ---------------------------------------------------------------------------
// 7. Graceful shutdown.

#[test]
fn sigterm_and_sigint_shut_down_cleanly_and_keep_the_data() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    let mut host = setup.start();
    let flow_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    wait_open(&host, &flow_id, LINE);
    let before = get_flow(&host, &flow_id);
    let port = host.port();

    let status = host.signal("TERM", Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM: {status:?}\n{}",
        host.log_tail(40)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after exit"
    );
    drop(host);

    let mut host = setup.start();
    let after = get_flow(&host, &flow_id);
    assert_eq!(after["state"], "running");
    assert_eq!(after["tasks"], before["tasks"]);
    assert_eq!(after["history"], before["history"]);

    let status = host.signal("INT", Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGINT: {status:?}\n{}",
        host.log_tail(40)
    );
}

// ---------------------------------------------------------------------------
// 8. Health and metrics.

#[test]
fn healthz_and_metrics_report_the_documented_figures() {
    let receiver = Receiver::start();
    let setup = Setup::new(&roles_for(&receiver));
    let host = setup.start();
    assert!(
        host.base().starts_with("http://127.0.0.1:") && host.port() != 0,
        "announced {}",
        host.base()
    );

    let health = host.get("/healthz");
    assert_eq!(health.status, 200, "{health}");
    assert_eq!(health.json, json!({"status": "ok"}), "{health}");

    let flow_id = id(&start_flow(&host, CONNECT, "acme")["id"]);
    wait_open(&host, &flow_id, LINE);
    wait_all_delivered(&host, 1);

    let metrics = host.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics}");
    assert!(metrics.content_type.starts_with("text/plain"), "{metrics}");
    let text = &metrics.text;
    assert_eq!(
        metric(text, "rulehost_flows", &["state=\"running\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(text, "rulehost_open_tasks", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(text, "rulehost_outbox_backlog", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric(text, "rulehost_http_requests_total", &[]).is_some_and(|n| n >= 3.0),
        "{text}"
    );
    for name in [
        "rulehost_store_group_commits_total",
        "rulehost_store_group_writes_total",
        "rulehost_store_commit_microseconds_total",
        "rulehost_store_checkpoints_total",
        "rulehost_store_wal_bytes",
    ] {
        assert!(metric(text, name, &[]).is_some(), "{name}: {text}");
    }
    // Nothing raced: no check was decided again, no group failed.
    for name in [
        "rulehost_checks_redecided_total",
        "rulehost_checks_conflicts_total",
        "rulehost_store_failed_groups_total",
    ] {
        assert_eq!(metric(text, name, &[]), Some(0.0), "{name}: {text}");
    }

    complete_open(&host, &flow_id, LINE);
    wait_state(&host, &flow_id, "completed");
    let reached = wait_until(STEP, || {
        let text = host.get("/metrics").text;
        metric(&text, "rulehost_flows", &["state=\"running\""]).unwrap_or(0.0) == 0.0
            && metric(&text, "rulehost_flows", &["state=\"completed\""]) == Some(1.0)
            && metric(&text, "rulehost_open_tasks", &[]).unwrap_or(0.0) == 0.0
    });
    assert!(reached, "{}", host.get("/metrics").text);
}
