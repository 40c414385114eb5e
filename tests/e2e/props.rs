//! Property tests of the internal API's request bodies, against the real
//! `rulehost serve`: any body (arbitrary JSON, or a valid one with fields
//! replaced, dropped or added) gets a 2xx or a 4xx in the documented error
//! shape, never a 5xx; a refused body changes nothing stored; an accepted
//! account reads back equal; numbers are kept, control characters refused.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::server::{Host, Reply, Setup};

/// Arbitrary JSON, a few levels deep, with text that includes control
/// characters and numbers beyond what a double holds exactly.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
        "[\\x00-\\x1f a-z]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `valid` with some fields replaced by arbitrary values, some dropped, and
/// sometimes one unknown field added.
fn edited(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let n = keys.len();
    (
        prop::collection::vec((0..n.max(1), any_json()), 0..3),
        prop::collection::vec(0..n.max(1), 0..2),
        prop::option::of(("[a-z]{1,8}", any_json())),
    )
        .prop_map(move |(replace, drop, extra)| {
            let mut body: Map<String, Value> = valid.as_object().cloned().unwrap_or_default();
            for (i, value) in replace {
                if let Some(key) = keys.get(i) {
                    body.insert(key.clone(), value);
                }
            }
            for i in drop {
                if let Some(key) = keys.get(i) {
                    body.remove(key);
                }
            }
            if let Some((key, value)) = extra {
                body.insert(key, value);
            }
            Value::Object(body)
        })
}

fn body(valid: Value) -> impl Strategy<Value = Value> {
    prop_oneof![1 => any_json(), 3 => edited(valid)]
}

/// What a refused request must leave as it was: the newest decision's,
/// flows' and notifications' ids (the driver and the outbox worker change
/// their states meanwhile), and the account and request the tests write to.
fn snapshot(host: &Host) -> Vec<Value> {
    let ids = |path: &str, list: &str| -> Value {
        let reply = host.get(path);
        reply.json[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| row["id"].clone())
            .collect()
    };
    let whole = |path: &str| -> Value {
        let reply = host.get(path);
        json!({"status": reply.status, "body": reply.json})
    };
    vec![
        ids("/v1/decisions?limit=5", "decisions"),
        ids("/v1/flows?limit=5", "flows"),
        ids("/v1/outbox?limit=5", "notifications"),
        whole("/v1/accounts/prop-1"),
        whole("/v1/requests/prop-r"),
    ]
}

/// A 2xx, or a 4xx with `{"error": {"code", "message"}}`; never a 5xx.
fn answered_properly(reply: &Reply) -> Result<bool, TestCaseError> {
    prop_assert!(reply.status < 500, "{reply}");
    if reply.status >= 400 {
        prop_assert!(
            reply.json["error"]["code"].is_string() && reply.json["error"]["message"].is_string(),
            "{reply}"
        );
        return Ok(false);
    }
    Ok(true)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `send` on bodies from `strategy` against one host: refused bodies
/// change nothing; `accepted` checks what an accepted one stored.
fn check_route(
    host: &Host,
    strategy: impl Strategy<Value = Value>,
    send: impl Fn(&Host, &Value) -> Reply,
    accepted: impl Fn(&Host, &Value, &Reply) -> Result<(), TestCaseError>,
) {
    let result = runner().run(&strategy, |body| {
        let before = snapshot(host);
        let reply = send(host, &body);
        if answered_properly(&reply)? {
            accepted(host, &body, &reply)?;
        } else {
            prop_assert_eq!(snapshot(host), before, "{} changed something", reply);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn host() -> (Setup, Host) {
    let setup = Setup::new("");
    let host = setup.start();
    let reply = host.put(
        "/v1/accounts/prop-1",
        &json!({"status": "active", "paid_up": true, "tier": "standard"}),
    );
    assert!(reply.status < 300, "{reply}");
    (setup, host)
}

#[test]
fn any_account_body_is_refused_cleanly_or_stored_as_sent() {
    let (_setup, host) = host();
    let valid = json!({
        "status": "active", "paid_up": true, "tier": "standard",
        "contract_end": "2027-01-01T00:00:00Z",
        "contact": {"name": "Ada", "email": "ada@example.test"},
        "attributes": {"region": "eu"},
    });
    check_route(
        &host,
        body(valid),
        |host, body| host.put("/v1/accounts/prop-1", body),
        |host, body, _| {
            let stored = host.get("/v1/accounts/prop-1");
            prop_assert_eq!(stored.status, 200);
            for key in ["status", "paid_up", "tier", "contact"] {
                if let Some(sent) = body.get(key).filter(|v| !v.is_null()) {
                    prop_assert_eq!(&stored.json[key], sent, "{}", stored);
                }
            }
            // Attribute values are text to plugins: a boolean is kept as its
            // JSON text, a number as text that reads back as the same number.
            if let Some(sent) = body.get("attributes").and_then(Value::as_object) {
                let read = &stored.json["attributes"];
                prop_assert_eq!(
                    read.as_object().map(Map::len),
                    Some(sent.len()),
                    "{}",
                    stored
                );
                for (key, value) in sent {
                    let text = read[key].as_str().unwrap_or_default();
                    let same = match value {
                        Value::String(s) => text == s,
                        Value::Number(n) => text.parse::<f64>().ok() == n.as_f64(),
                        Value::Bool(b) => text.parse::<bool>().ok() == Some(*b),
                        // Nulls, lists and tables are refused in attributes.
                        _ => false,
                    };
                    prop_assert!(same, "`{}`: sent {}, read back {}", key, value, stored);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn any_check_body_is_refused_cleanly_or_decided() {
    let (_setup, host) = host();
    let valid = json!({
        "service": "support-contract", "account_id": "prop-1", "request_id": "prop-r",
        "description": "printer", "attributes": {"severity": "low"},
    });
    check_route(
        &host,
        body(valid),
        |host, body| host.post("/v1/checks", body),
        |_, _, reply| {
            prop_assert!(reply.json["decision"].is_string(), "{}", reply);
            Ok(())
        },
    );
}

#[test]
fn any_flow_body_is_refused_cleanly_or_started() {
    let (_setup, host) = host();
    let valid =
        json!({"definition": "connect-client", "subject": "acme", "context": {"line": "L-1"}});
    check_route(
        &host,
        body(valid),
        |host, body| host.post("/v1/flows", body),
        |host, body, reply| {
            let id = reply.json["id"].as_str().unwrap_or_default();
            let flow = host.get(&format!("/v1/flows/{id}"));
            prop_assert_eq!(flow.status, 200, "{}", flow);
            prop_assert_eq!(&flow.json["subject"], &body["subject"]);
            Ok(())
        },
    );
}

#[test]
fn any_demand_or_completion_body_is_refused_cleanly() {
    let (_setup, host) = host();
    let flow = host.post(
        "/v1/flows",
        &json!({"definition": "connect-client", "subject": "acme"}),
    );
    assert_eq!(flow.status, 201, "{flow}");
    let flow_id = flow.json["id"].as_str().unwrap_or_default().to_owned();
    check_route(
        &host,
        body(json!({"problem": "line fault", "before": "send connection information"})),
        |host, body| host.post(&format!("/v1/flows/{flow_id}/demands"), body),
        |_, _, _| Ok(()),
    );
    let tasks = host.get("/v1/tasks?state=open");
    let task = tasks.json["tasks"][0]["id"].as_str().map(str::to_owned);
    if let Some(task) = task {
        check_route(
            &host,
            body(json!({"outcome": "done", "data": {"line": "L-1"}})),
            |host, body| host.post(&format!("/v1/tasks/{task}/complete"), body),
            |_, _, _| Ok(()),
        );
    }
}

#[test]
fn numbers_in_attributes_are_kept_as_the_same_number_or_refused() {
    let (_setup, host) = host();
    let number = prop_oneof![
        "-?[1-9][0-9]{0,40}",
        "-?[0-9]{1,3}\\.[0-9]{1,25}",
        "[1-9]\\.[0-9]{0,5}[eE][+-]?[0-9]{1,3}",
    ];
    let result = runner().run(&(number, 0u32..1_000_000), |(number, n)| {
        let id = format!("num-{n}");
        let before = snapshot(&host);
        let text = format!(
            r#"{{"service": "support-contract", "account_id": "prop-1", "request_id": "{id}", "attributes": {{"n": {number}}}}}"#
        );
        let reply = host.post_text("/v1/checks", &text);
        if answered_properly(&reply)? {
            let stored = host.get(&format!("/v1/requests/{id}"));
            prop_assert_eq!(stored.status, 200, "{}", stored);
            // Attribute values are text to plugins: an integer is kept digit
            // for digit, any other number as the same number (README, Limits).
            let read = match &stored.json["attributes"]["n"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let kept = if number.contains(['.', 'e', 'E']) {
                read.parse::<f64>().ok() == number.parse::<f64>().ok()
            } else {
                read == number
            };
            prop_assert!(kept, "sent {} and read back {}", number, stored.text);
        } else {
            prop_assert_eq!(snapshot(&host), before, "{} changed something", reply);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn control_characters_in_text_fields_are_refused() {
    let (_setup, host) = host();
    let text = (
        "[a-z]{0,4}",
        "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]",
        "[a-z]{0,4}",
    )
        .prop_map(|(a, c, b)| format!("{a}{c}{b}"));
    let field = prop::sample::select(vec!["request_id", "description", "account_id"]);
    let result = runner().run(&(field, text), |(field, text)| {
        let mut body = json!({"service": "support-contract", "account_id": "prop-1", "request_id": "ctl", "description": "d"});
        body[field] = Value::from(text.clone());
        let before = snapshot(&host);
        let reply = host.post("/v1/checks", &body);
        prop_assert!(!answered_properly(&reply)?, "{:?} in `{}` was accepted: {}", text, field, reply);
        prop_assert_eq!(snapshot(&host), before, "{} changed something", reply);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn any_form_on_the_public_site_is_answered_without_a_server_error_and_never_ends_the_request() {
    let (_setup, host) = host();
    let reply = host.put(
        "/v1/accounts/prop-unpaid",
        &json!({"status": "active", "paid_up": false, "tier": "premium",
                "contract_end": "2099-01-01T00:00:00Z",
                "contact": {"name": "Ada", "email": "ada@example.test"}}),
    );
    assert!(reply.status < 300, "{reply}");
    let checked = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "prop-unpaid", "request_id": "prop-held"}),
    );
    let link = checked.json["reconciliation"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no page for an unpaid account: {checked}"))
        .to_owned();
    let (page, _key) = link.split_once("?key=").unwrap_or((&link, ""));
    let field = prop_oneof![
        Just("key".to_owned()),
        Just("choice".to_owned()),
        Just("account_id".to_owned()),
        "[a-z_]{1,8}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec!["renew", "pay", "other-account", "leave"])
            .prop_map(str::to_owned),
        "\\PC{0,30}",
        "[\\x00-\\x1f]{1,4}",
    ];
    let form = prop::collection::vec((field, value), 0..5);
    let target = prop::sample::select(vec![
        String::new(),
        "/leave".to_owned(),
        "/confirm".to_owned(),
    ]);
    let result = runner().run(&(target, form), |(target, form)| {
        let fields: Vec<(&str, &str)> =
            form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = host.post_form(&format!("{page}{target}"), &fields);
        prop_assert!(
            reply.status < 500,
            "{:?} to {}{}: {}",
            fields,
            page,
            target,
            reply
        );
        let held = host.get("/v1/requests/prop-held");
        prop_assert_eq!(
            &held.json["state"],
            "awaiting-reconciliation",
            "{:?}: {}",
            fields,
            held
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
