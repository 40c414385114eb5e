//! Entitlement end to end on the real binary: the two seed scenarios
//! (reconciled by the contact; lapsed after the user left the page), dead
//! links, bad input, and concurrent checks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Host, Setup, wait_for};
use crate::support::rules_dir;
use crate::webhook::Receiver;

/// The sample manifest of `service` with its webhook pointed at `receiver`
/// and `config` lines added to its `[config]`.
#[allow(clippy::panic)] // a test's setup failing must stop the test
pub(crate) fn manifest(service: &str, receiver: &Receiver, config: &str) -> String {
    let original = std::fs::read_to_string(rules_dir().join(format!("{service}.toml")))
        .unwrap_or_else(|e| panic!("read manifest: {e}"));
    let with_hook = original.replace(
        "# webhook = \"http://127.0.0.1:9000/events\"",
        &format!("webhook = \"{}\"", receiver.url("/events")),
    );
    assert_ne!(
        with_hook, original,
        "the sample manifest has no webhook line to replace"
    );
    with_hook.replace("[config]\n", &format!("[config]\n{config}\n"))
}

pub(crate) fn account(host: &Host, id: &str, status: &str, tier: &str) {
    let body = json!({"status": status, "paid_up": true, "tier": tier, "contract_end": null,
        "contact": {"name": "Ada", "email": "ada@acme.test"}, "attributes": {}});
    let reply = host.put(&format!("/v1/accounts/{id}"), &body);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
}

/// The link in the newest held mail to `to`.
pub(crate) fn mailed_link(host: &Host, to: &str) -> String {
    wait_for(Duration::from_secs(10), "a mail with a link", || {
        let outbox = host.get("/v1/outbox?state=held");
        let mails = outbox.json["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        mails
            .iter()
            .filter(|n| n["kind"] == "mail" && n["payload"]["data"]["to"] == to)
            .find_map(|n| {
                let text = n["payload"]["data"]["text"].as_str()?;
                text.split_whitespace()
                    .find(|w| w.contains("/reconcile/"))
                    .map(str::to_owned)
            })
            .ok_or_else(|| format!("no mail yet: {}", outbox.text))
    })
}

pub(crate) fn key_of(link: &str) -> String {
    link.split("key=").nth(1).unwrap_or_default().to_owned()
}

pub(crate) fn form_url(link: &str) -> String {
    link.split('?').next().unwrap_or_default().to_owned()
}

pub(crate) fn event(receiver: &Receiver, kind: &str) -> Value {
    wait_for(Duration::from_secs(15), kind, || {
        receiver
            .events("/events", kind)
            .first()
            .map(|h| h.body.clone())
            .ok_or_else(|| format!("no `{kind}` yet"))
    })
}

/// premium-support with its webhook on `receiver`, an expired account, and
/// one failed check: the host and the sync page's link.
pub(crate) fn expired_premium(
    receiver: &Receiver,
    account_id: &str,
    request_id: &str,
) -> (Setup, Host, String) {
    let setup = Setup::new("");
    setup.write_rules(
        "premium-support.toml",
        &manifest("premium-support", receiver, ""),
    );
    let host = setup.start();
    account(&host, account_id, "expired", "basic");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": account_id, "request_id": request_id, "description": "x"}),
    );
    let url = check.json["reconciliation"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(url.contains("/reconcile/"), "{check}");
    (setup, host, url)
}

#[test]
fn support_contract_is_reconciled_by_the_contact_and_the_request_fulfilled() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    setup.write_rules(
        "support-contract.toml",
        &manifest("support-contract", &receiver, "lapse_seconds = 600"),
    );
    let host = setup.start();
    account(&host, "acme-1", "expired", "standard");

    // The client's request fails as expired.
    let check = host.post("/v1/checks", &json!({"service": "support-contract", "account_id": "acme-1",
        "request_id": "r-1", "description": "printer on fire", "attributes": {"queue": "hardware"}}));
    assert_eq!(check.status, 200, "{check}");
    assert_eq!(check.json["decision"], "fail");
    assert_eq!(check.json["failure"]["code"], "expired");
    assert_eq!(check.json["reconciliation"]["mode"], "async");
    assert!(
        check.json["reconciliation"]["url"].is_null(),
        "async mode gives the requester no page"
    );
    assert!(
        check.json["plugin"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );

    // The service is told at once; the request is held.
    let failed = event(&receiver, "check.failed");
    assert_eq!(failed["data"]["request"]["id"], "r-1");
    assert_eq!(
        host.get("/v1/requests/r-1").json["state"],
        "awaiting-reconciliation"
    );

    // The contact is mailed a link; they renew on the site.
    let link = mailed_link(&host, "ada@acme.test");
    assert!(link.starts_with(host.public_base()), "{link}");
    let page = host.get_url(&link);
    assert_eq!(page.status, 200, "{page}");
    assert!(page.text.contains("printer on fire"), "{}", page.text);
    let done = host.post_form(
        &form_url(&link),
        &[("key", &key_of(&link)), ("choice", "renew")],
    );
    assert_eq!(done.status, 200, "{done}");

    // The service is told, and the held request is fulfilled without resubmission.
    let succeeded = event(&receiver, "reconciliation.succeeded");
    assert_eq!(succeeded["data"]["account_id"], "acme-1");
    let fulfilled = event(&receiver, "request.fulfilled");
    assert_eq!(fulfilled["data"]["request"]["id"], "r-1");
    assert_eq!(
        fulfilled["data"]["request"]["description"],
        "printer on fire"
    );
    assert_eq!(
        fulfilled["data"]["request"]["attributes"]["queue"],
        "hardware"
    );
    let request = host.get("/v1/requests/r-1");
    assert_eq!(request.json["state"], "fulfilled", "{request}");
    assert_eq!(request.json["level"], "standard");
    assert_eq!(host.get("/v1/accounts/acme-1").json["status"], "active");

    // The link worked once.
    assert_eq!(host.get_url(&link).status, 410);
    let again = host.post_form(
        &form_url(&link),
        &[("key", &key_of(&link)), ("choice", "renew")],
    );
    assert_eq!(again.status, 410, "{again}");
    assert_eq!(
        receiver.events("/events", "request.fulfilled").len(),
        1,
        "fulfilled once"
    );
}

#[test]
fn premium_support_lapses_after_the_user_leaves_and_everything_is_removed() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    let config = "lapse_seconds = 2\nsecond_notice_seconds = 0\nsync_window_seconds = 600";
    setup.write_rules(
        "premium-support.toml",
        &manifest("premium-support", &receiver, config),
    );
    let host = setup.start();
    account(&host, "acme-2", "active", "basic");

    // Basic passes.
    let basic = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-2",
        "request_id": "p-1", "description": "server down", "attributes": {"severity": "normal"}}),
    );
    assert_eq!(basic.json["decision"], "pass", "{basic}");
    assert_eq!(basic.json["level"], "basic");

    // Mid-request the contract has lapsed; the further check fails and offers a page now.
    account(&host, "acme-2", "expired", "basic");
    let premium = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-2",
        "request_id": "p-1", "description": "server down", "attributes": {"severity": "normal"}}),
    );
    assert_eq!(premium.json["decision"], "fail", "{premium}");
    assert_eq!(premium.json["reconciliation"]["mode"], "sync-then-async");
    let url = premium.json["reconciliation"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let page = host.get_url(&url);
    assert_eq!(page.status, 200, "{page}");

    // The user leaves: the contact is mailed.
    let left = host.post_form(
        &format!("{}/leave", form_url(&url)),
        &[("key", &key_of(&url))],
    );
    assert_eq!(left.status, 200, "{left}");
    let _mailed = mailed_link(&host, "ada@acme.test");

    // Nobody acts: it lapses, the service is told, and the request, the
    // record and the verification records are gone.
    let lapsed = event(&receiver, "reconciliation.lapsed");
    assert_eq!(lapsed["data"]["request_id"], "p-1");
    let request = host.get("/v1/requests/p-1");
    assert_eq!(request.json["state"], "lapsed", "{request}");
    assert_eq!(
        request.json["description"], "",
        "the held request's content is removed"
    );
    let decisions = host.get("/v1/decisions?account=acme-2");
    let left_over = decisions.json["decisions"]
        .as_array()
        .map_or(0, |d| d.iter().filter(|d| d["request_id"] == "p-1").count());
    assert_eq!(left_over, 0, "{decisions}");
    assert_eq!(host.get_url(&url).status, 410);
    // A lapsed request takes no new check under its id.
    let again = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-2", "request_id": "p-1"}),
    );
    assert_eq!(again.status, 409, "{again}");
}

#[test]
fn wrong_keys_unknown_services_and_bad_bodies_get_clear_errors() {
    let receiver = Receiver::start();
    let (_setup, host, url) = expired_premium(&receiver, "acme-3", "w-1");
    let wrong = url.replace(&key_of(&url), &"0".repeat(64));
    assert_eq!(host.get_url(&wrong).status, 403);
    assert_eq!(
        host.get_url(&url).status,
        200,
        "a wrong key does not spoil the right one"
    );

    let unknown = host.post("/v1/checks", &json!({"service": "nope", "account_id": "a"}));
    assert_eq!(
        (unknown.status, unknown.json["error"]["code"].as_str()),
        (422, Some("unknown-service")),
        "{unknown}"
    );
    assert_eq!(host.post_text("/v1/checks", "{\"service\":").status, 400);
    assert_eq!(
        host.post("/v1/checks", &json!({"service": "premium-support"}))
            .status,
        422
    );
    let bad_status = host.put(
        "/v1/accounts/x",
        &json!({"status": "zombie", "paid_up": true}),
    );
    assert_eq!(bad_status.status, 422, "{bad_status}");
    let bad_mail = host.put(
        "/v1/accounts/x",
        &json!({"status": "active", "paid_up": true, "contact": {"name": "A", "email": "nope"}}),
    );
    assert_eq!(bad_mail.status, 422, "{bad_mail}");
    assert_eq!(host.get("/v1/accounts/x").status, 404, "nothing was stored");
    let services = host.get("/v1/services");
    assert!(
        services.json["services"]
            .as_array()
            .is_some_and(|s| s.len() == 5),
        "the five sample services: {services}"
    );
}

#[test]
fn concurrent_checks_are_all_answered_and_recorded() {
    let setup = Setup::new("");
    let host = std::sync::Arc::new(setup.start());
    account(&host, "acme-4", "active", "standard");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                (0..25)
                    .filter(|i| {
                        let reply = host.post("/v1/checks", &json!({"service": "support-contract", "account_id": "acme-4", "request_id": format!("c-{t}-{i}")}));
                        reply.status == 200 && reply.json["decision"] == "pass"
                    })
                    .count()
            })
        })
        .collect();
    let passed: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert_eq!(passed, 200);
    let decisions = host.get("/v1/decisions?account=acme-4&limit=1000");
    assert_eq!(
        decisions.json["decisions"].as_array().map(Vec::len),
        Some(200)
    );
}

/// Checks (passes, and failures that start reconciliations with their
/// flows) from four clients; the host is killed with SIGKILL at a moment
/// that moves each round, and restarted. `sync = "normal"`, the weaker
/// promise, still survives the process dying: every check answered before
/// a kill is in the decision log once, with its request and, for a
/// failure, its reconciliation and flow; no check is recorded twice.
#[test]
fn checks_answered_before_a_kill_9_under_load_are_all_there_once() {
    use std::sync::{Arc, Mutex};
    let setup = Setup::new("");
    setup.write_config("[store]\nsync = \"normal\"\n");
    let mut host = setup.start();
    account(&host, "acme-9", "active", "standard");
    account(&host, "acme-x", "expired", "standard");
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..3u64 {
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let base = host.base().to_owned();
                let bearer = format!("Bearer {}", host.token().unwrap_or_default());
                let answered = answered.clone();
                std::thread::spawn(move || {
                    let agent = ureq::agent();
                    for n in 0.. {
                        let account = if n % 3 == 0 { "acme-x" } else { "acme-9" };
                        let id = format!("k-{round}-{client}-{n}");
                        let body = json!({"service": "support-contract", "account_id": account, "request_id": id});
                        let Ok(mut reply) = agent
                            .post(&format!("{base}/v1/checks"))
                            .header("authorization", &bearer)
                            .header("content-type", "application/json")
                            .send(body.to_string())
                        else {
                            return; // the host is gone
                        };
                        let text = reply.body_mut().read_to_string().unwrap_or_default();
                        let json: Value = serde_json::from_str(&text).unwrap_or_default();
                        let decision = json["decision"].as_str().unwrap_or_default().to_owned();
                        assert!(
                            decision == "pass" || decision == "fail",
                            "{id}: {text}"
                        );
                        answered.lock().unwrap().push((id, decision));
                    }
                })
            })
            .collect();
        // A different moment in each round.
        std::thread::sleep(Duration::from_millis(300 + 170 * round));
        host.kill9();
        for client in clients {
            client.join().unwrap();
        }
        host = setup.start();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 20,
        "too few checks were answered: {}",
        answered.len()
    );
    let db = rusqlite::Connection::open(setup.db_path()).unwrap();
    let mut counts = db
        .prepare("SELECT request_id, count(*) FROM decisions WHERE request_id LIKE 'k-%' GROUP BY request_id")
        .unwrap();
    let recorded: std::collections::HashMap<String, i64> = counts
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        recorded.values().all(|n| *n == 1),
        "a check was recorded twice"
    );
    for (id, decision) in &answered {
        assert_eq!(recorded.get(id), Some(&1), "answered check `{id}` was lost");
        let (state, flow_state): (String, Option<String>) = db
            .query_row(
                "SELECT r.state, f.state FROM requests r
                 LEFT JOIN reconciliations c ON c.id = r.reconciliation_id
                 LEFT JOIN flows f ON f.id = c.flow_id WHERE r.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        match decision.as_str() {
            "pass" => assert_eq!(state, "passed", "{id}"),
            _ => {
                assert_eq!(state, "awaiting-reconciliation", "{id}");
                assert_eq!(flow_state.as_deref(), Some("running"), "{id}");
            }
        }
    }
    // The restarted host goes on recording.
    let reply = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-9", "request_id": "after"}),
    );
    assert_eq!(reply.status, 200, "{reply}");
}

#[test]
fn links_use_the_configured_public_url_and_a_bad_config_refuses_to_serve() {
    let setup = Setup::new("");
    setup.write_config("[public]\nurl = \"https://reconcile.example\"\n");
    let host = setup.start();
    account(&host, "acme-5", "expired", "basic");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-5"}),
    );
    let url = check.json["reconciliation"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        url.starts_with("https://reconcile.example/reconcile/rec_"),
        "{url}"
    );
    drop(host);

    let broken = Setup::new("");
    broken.write_config("[public]\nurl = \"ftp://nope\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rulehost"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(broken.config_path())
        .arg("--rules")
        .arg(rules_dir())
        .arg("--plugins")
        .arg(crate::support::plugins_dir())
        .output()
        .unwrap_or_else(|e| panic!("run: {e}"));
    // Could not run: 2 (1 is for failures found).
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an http:// or https:// URL"));
}

#[test]
fn a_spinning_plugin_is_counted_and_holds_up_no_other_service() {
    let setup = Setup::new("");
    setup.write_rules(
        "slow.toml",
        "id = \"slow\"\n[plugins]\nverifier = \"hostile-loop\"\n[limits]\ntimeout_ms = 20\n",
    );
    let host = setup.start();
    account(&host, "acme-1", "active", "standard");
    for id in ["s-1", "s-2"] {
        let reply = host.post(
            "/v1/checks",
            &json!({"service": "slow", "account_id": "acme-1", "request_id": id}),
        );
        assert_eq!(reply.status, 503, "{reply}");
        assert_eq!(reply.json["error"]["code"], "plugin-error", "{reply}");
    }
    let plugins = host.get("/v1/plugins").json["plugins"].clone();
    let looping = plugins
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "hostile-loop"))
        .cloned()
        .unwrap_or_default();
    assert!(
        looping["stats"]["slow_calls"].as_u64() >= Some(2),
        "{looping}"
    );
    // Both faults are in the log, as errors of the plugin.
    let decisions = host.get("/v1/decisions?service=slow");
    let verdicts: Vec<&str> = decisions.json["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["verdict"].as_str())
        .collect();
    assert_eq!(verdicts, ["error", "error"], "{decisions}");
    let fine = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1"}),
    );
    assert_eq!(fine.json["decision"], "pass", "{fine}");
}
