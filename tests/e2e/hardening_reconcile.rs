//! Issue 13's findings on the outbox and on reconciliation links, end to
//! end on the real binary: a notification that cannot be read or delivered
//! goes `dead` and blocks nothing; a dead one is retried by an operator; a
//! link dies once its request is decided otherwise, and a request is
//! fulfilled once at most; wrong keys lock a link (they never end the
//! request) and a fresh link can be issued.

use std::time::Duration;

use serde_json::{Value, json};

use crate::entitlement::{
    account, event, expired_premium, form_url, key_of, mailed_link, manifest,
};
use crate::server::{Host, Setup, wait_for};
use crate::webhook::Receiver;

/// The notifications `GET /v1/outbox?state=<state>` lists.
fn outbox(host: &Host, state: &str) -> Vec<Value> {
    let reply = host.get(&format!("/v1/outbox?state={state}"));
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The value of an unlabelled metric in `GET /metrics`.
fn metric(host: &Host, name: &str) -> i64 {
    let text = host.get("/metrics").text;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric `{name}` in\n{text}"))
}

#[test]
fn a_refused_webhook_ends_dead_blocks_nothing_and_is_retried_by_an_operator() {
    let receiver = Receiver::start();
    receiver.answer("/refuse", 400);
    let setup = Setup::new("");
    setup.write_config("[outbox]\nrefused_attempts = 2\nfirst_backoff_ms = 10\n");
    // support-contract's events go to a receiver that refuses them for good,
    // premium-support's to one that takes them.
    let refusing = manifest("support-contract", &receiver, "")
        .replace(&receiver.url("/events"), &receiver.url("/refuse"));
    setup.write_rules("support-contract.toml", &refusing);
    setup.write_rules(
        "premium-support.toml",
        &manifest("premium-support", &receiver, ""),
    );
    let host = setup.start();
    account(&host, "acme-1", "expired", "basic");
    let refused = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": "o-1"}),
    );
    assert_eq!(refused.json["decision"], "fail", "{refused}");

    // Refused twice, then dead, with the reason and the attempts.
    let dead = wait_for(Duration::from_secs(15), "a dead notification", || {
        outbox(&host, "dead")
            .into_iter()
            .find(|n| n["kind"] == "check.failed")
            .ok_or_else(|| format!("{:#?}", outbox(&host, "pending")))
    });
    assert_eq!(dead["attempts"], 2, "{dead:#}");
    assert_eq!(
        dead["last_error"], "the receiver answered HTTP 400",
        "{dead:#}"
    );
    assert!(dead["dead_at"].is_string(), "{dead:#}");
    assert_eq!(receiver.events("/refuse", "check.failed").len(), 2);
    assert_eq!(metric(&host, "rulehost_outbox_dead"), 1);

    // Later notifications are still delivered.
    let later = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-1", "request_id": "o-2"}),
    );
    assert_eq!(later.json["decision"], "fail", "{later}");
    wait_for(Duration::from_secs(15), "the later event", || {
        receiver
            .events("/events", "check.failed")
            .first()
            .map(|_| ())
            .ok_or_else(|| "not yet".to_owned())
    });

    // The receiver is fixed; the operator retries: delivered, same event id.
    receiver.answer("/refuse", 200);
    let id = dead["id"].as_i64().unwrap();
    let retried = host.post(&format!("/v1/outbox/{id}/retry"), &json!({}));
    assert_eq!(retried.status, 200, "{retried}");
    assert_eq!(
        retried.json["notification"]["state"], "pending",
        "{retried}"
    );
    assert_eq!(retried.json["notification"]["attempts"], 0, "{retried}");
    let delivered = wait_for(Duration::from_secs(15), "the retried delivery", || {
        outbox(&host, "delivered")
            .into_iter()
            .find(|n| n["id"] == id)
            .ok_or_else(|| "not yet".to_owned())
    });
    let hooks = receiver.events("/refuse", "check.failed");
    assert_eq!(hooks.len(), 3, "{hooks:#?}");
    assert_eq!(hooks[2].event_id(), delivered["event_id"].as_str().unwrap());
    assert_eq!(
        hooks[2].header("idempotency-key"),
        Some(hooks[0].event_id()),
        "the same idempotency key on every attempt"
    );
    assert_eq!(metric(&host, "rulehost_outbox_dead"), 0);

    // Only a dead notification is retried; others get clear errors.
    let again = host.post(&format!("/v1/outbox/{id}/retry"), &json!({}));
    assert_eq!(
        (again.status, again.json["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{again}"
    );
    for unknown in ["999999", "abc"] {
        let reply = host.post(&format!("/v1/outbox/{unknown}/retry"), &json!({}));
        assert_eq!(reply.status, 404, "{reply}");
        assert_eq!(reply.json["error"]["code"], "not-found", "{reply}");
    }
}

#[test]
fn an_unreadable_notification_does_not_stop_the_outbox_or_its_listing() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    setup.write_rules(
        "support-contract.toml",
        &manifest("support-contract", &receiver, ""),
    );
    // An earlier host stored a payload nested deeper than JSON readers take.
    let host = setup.start();
    drop(host);
    let deep = format!("{{\"id\": {}{}}}", "[".repeat(300), "]".repeat(300));
    let db = rusqlite::Connection::open(setup.db_path()).unwrap();
    db.execute(
        "INSERT INTO outbox (event_id, kind, target, payload, state, next_attempt_at, created_at)
         VALUES ('evt_deep', 'task.opened', ?1, ?2, 'pending', 0, 0)",
        rusqlite::params![receiver.url("/events"), deep],
    )
    .unwrap();
    drop(db);

    let host = setup.start();
    // The listing answers, showing the row as unreadable.
    let all = host.get("/v1/outbox");
    assert_eq!(all.status, 200, "{all}");
    // It goes dead at once, with the reason; nothing of it was sent.
    let dead = wait_for(Duration::from_secs(15), "the unreadable row dead", || {
        outbox(&host, "dead")
            .into_iter()
            .find(|n| n["event_id"] == "evt_deep")
            .ok_or_else(|| host.get("/v1/outbox").text)
    });
    assert!(dead["unreadable"].is_string(), "{dead:#}");
    assert!(dead["payload"].is_null(), "{dead:#}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be read")),
        "{dead:#}"
    );
    // The next notification is delivered.
    account(&host, "acme-1", "expired", "standard");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": "u-1"}),
    );
    assert_eq!(check.json["decision"], "fail", "{check}");
    wait_for(Duration::from_secs(15), "check.failed delivered", || {
        receiver
            .events("/events", "check.failed")
            .first()
            .map(|_| ())
            .ok_or_else(|| "not yet".to_owned())
    });
    assert!(
        receiver.hooks().iter().all(|h| h.event_id() != "evt_deep"),
        "the unreadable one was never sent"
    );
}

/// Waits until the event `kind` about request `request_id` arrived: the
/// outbox sends in order, so what was queued before it has arrived too.
fn delivered_after(receiver: &Receiver, kind: &str, request_id: &str) {
    wait_for(Duration::from_secs(15), kind, || {
        receiver
            .events("/events", kind)
            .iter()
            .any(|h| h.body["data"]["request"]["id"] == request_id)
            .then_some(())
            .ok_or_else(|| format!("no `{kind}` for {request_id} yet"))
    });
}

#[test]
fn a_link_dies_once_its_request_passes_a_later_check_and_nothing_is_fulfilled_twice() {
    let receiver = Receiver::start();
    let (_setup, host, url) = expired_premium(&receiver, "acme-4", "d-1");
    // The account is renewed elsewhere; the held request passes a later check.
    account(&host, "acme-4", "active", "basic");
    let pass = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-4", "request_id": "d-1", "description": "x"}),
    );
    assert_eq!(pass.json["decision"], "pass", "{pass}");

    // The service is told that the reconciliation ended.
    let ended = event(&receiver, "reconciliation.ended");
    assert_eq!(ended["data"]["request_id"], "d-1", "{ended:#}");
    assert_eq!(ended["data"]["outcome"], "decided-otherwise", "{ended:#}");

    // The link is dead, with a page that says so; "renew" fulfils nothing.
    let page = host.get_url(&url);
    assert_eq!(page.status, 410, "{page}");
    assert!(
        page.text.contains("This link is no longer needed"),
        "{page}"
    );
    let renew = host.post_form(
        &form_url(&url),
        &[("key", &key_of(&url)), ("choice", "renew")],
    );
    assert_eq!(renew.status, 410, "{renew}");
    let request = host.get("/v1/requests/d-1");
    assert_eq!(request.json["state"], "passed", "{request}");

    // Once a later event arrived, nothing else about d-1 was sent.
    account(&host, "acme-4", "expired", "basic");
    let later = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-4", "request_id": "d-2"}),
    );
    assert_eq!(later.json["decision"], "fail", "{later}");
    delivered_after(&receiver, "check.failed", "d-2");
    assert_eq!(receiver.events("/events", "request.fulfilled").len(), 0);
    assert_eq!(
        receiver.events("/events", "reconciliation.succeeded").len(),
        0
    );
    assert_eq!(
        receiver.events("/events", "reconciliation.ended").len(),
        1,
        "told once"
    );
}

/// Held mails to `to` whose subject contains `subject`.
fn mails(host: &Host, to: &str, subject: &str) -> Vec<Value> {
    outbox(host, "held")
        .into_iter()
        .filter(|n| {
            n["kind"] == "mail"
                && n["payload"]["data"]["to"] == to
                && n["payload"]["data"]["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains(subject))
        })
        .collect()
}

#[test]
fn wrong_keys_lock_the_link_never_end_the_request_and_a_fresh_link_can_be_issued() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    setup.write_config("[reconciliation]\nmax_attempts = 3\nlock_seconds = 600\n");
    setup.write_rules(
        "support-contract.toml",
        &manifest("support-contract", &receiver, "lapse_seconds = 6000"),
    );
    let host = setup.start();
    account(&host, "acme-5", "expired", "standard");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-5", "request_id": "l-1", "description": "printer on fire"}),
    );
    let id = check.json["reconciliation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = mailed_link(&host, "ada@acme.test");
    let wrong = link.replace(&key_of(&link), &"f".repeat(64));

    // Two wrong keys are refused; the third locks the link, for every key.
    assert_eq!(host.get_url(&wrong).status, 403);
    assert_eq!(host.get_url(&wrong).status, 403);
    let locked = host.get_url(&wrong);
    assert_eq!(locked.status, 429, "{locked}");
    assert!(
        locked.text.contains("This link is locked for now"),
        "{locked}"
    );
    let right = host.get_url(&link);
    assert_eq!(right.status, 429, "the right key waits too: {right}");
    // An attacker goes on: nothing changes, the request is untouched.
    for _ in 0..20 {
        assert_eq!(host.get_url(&wrong).status, 429);
    }
    let request = host.get("/v1/requests/l-1");
    assert_eq!(
        request.json["state"], "awaiting-reconciliation",
        "{request}"
    );
    assert_eq!(request.json["description"], "printer on fire", "{request}");

    // The contact is told once per lock, and so is the service.
    let told = mails(&host, "ada@acme.test", "was locked");
    assert_eq!(told.len(), 1, "{told:#?}");
    let locked_event = event(&receiver, "reconciliation.locked");
    assert_eq!(
        locked_event["data"]["request_id"], "l-1",
        "{locked_event:#}"
    );

    // The service asks for a fresh link: it goes to the contact, the old one dies.
    let reissued = host.post(&format!("/v1/reconciliations/{id}/link"), &json!({}));
    assert_eq!(reissued.status, 200, "{reissued}");
    assert_eq!(reissued.json["sent_to"], "ada@acme.test", "{reissued}");
    assert!(reissued.json.get("url").is_none(), "{reissued}");
    let fresh = mailed_link(&host, "ada@acme.test");
    assert_ne!(fresh, link);
    assert_eq!(host.get_url(&link).status, 403, "the old key is dead");
    assert_eq!(host.get_url(&fresh).status, 200);
    let done = host.post_form(
        &form_url(&fresh),
        &[("key", &key_of(&fresh)), ("choice", "renew")],
    );
    assert_eq!(done.status, 200, "{done}");
    assert_eq!(host.get("/v1/requests/l-1").json["state"], "fulfilled");

    // Nothing to issue once it ended, or for an unknown id.
    let ended = host.post(&format!("/v1/reconciliations/{id}/link"), &json!({}));
    assert_eq!(
        (ended.status, ended.json["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{ended}"
    );
    let unknown = host.post("/v1/reconciliations/rec_nope/link", &json!({}));
    assert_eq!(unknown.status, 404, "{unknown}");
    assert!(
        receiver
            .events("/events", "reconciliation.failed")
            .is_empty()
    );
}

#[test]
fn a_fresh_sync_link_comes_back_to_the_caller_and_the_old_one_dies() {
    let receiver = Receiver::start();
    let (_setup, host, url) = expired_premium(&receiver, "acme-6", "l-2");
    let id = url
        .split("/reconcile/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .unwrap()
        .to_owned();
    let reissued = host.post(&format!("/v1/reconciliations/{id}/link"), &json!({}));
    assert_eq!(reissued.status, 200, "{reissued}");
    let fresh = reissued.json["url"].as_str().unwrap().to_owned();
    assert_ne!(fresh, url);
    assert_eq!(host.get_url(&url).status, 403);
    assert_eq!(host.get_url(&fresh).status, 200);
}

#[test]
fn a_lock_lifts_after_its_cool_down_and_each_lock_is_told() {
    let setup = Setup::new("");
    setup.write_config("[reconciliation]\nmax_attempts = 1\nlock_seconds = 1\n");
    let host = setup.start();
    account(&host, "acme-7", "expired", "standard");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-7", "request_id": "l-3"}),
    );
    assert_eq!(check.json["decision"], "fail", "{check}");
    let link = mailed_link(&host, "ada@acme.test");
    let wrong = link.replace(&key_of(&link), &"e".repeat(64));
    let first = host.get_url(&wrong);
    assert_eq!(first.status, 429, "{first}");
    assert!(first.text.contains("contact has been told"), "{first}");
    // The right key opens the page again once the cool-down is over.
    wait_for(Duration::from_secs(20), "the lock to lift", || {
        let page = host.get_url(&link);
        (page.status == 200).then_some(()).ok_or(page.to_string())
    });
    assert_eq!(host.get_url(&wrong).status, 429, "locked again");
    assert_eq!(mails(&host, "ada@acme.test", "was locked").len(), 2);
    assert_eq!(
        host.get("/v1/requests/l-3").json["state"],
        "awaiting-reconciliation"
    );
}

/// An account with its own contact.
fn account_with_contact(host: &Host, id: &str, status: &str, name: &str, email: &str) {
    let body = json!({"status": status, "paid_up": true, "tier": "standard",
        "contact": {"name": name, "email": email}});
    let reply = host.put(&format!("/v1/accounts/{id}"), &body);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
}

/// support-contract (config lines `config`), acme-1 expired, and one failed
/// check of request `request_id`: the host and the contact's link.
fn failed_support_check(
    setup: &Setup,
    receiver: &Receiver,
    config: &str,
    request_id: &str,
) -> (Host, String) {
    setup.write_rules(
        "support-contract.toml",
        &manifest("support-contract", receiver, config),
    );
    let host = setup.start();
    account(&host, "acme-1", "expired", "standard");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": request_id, "description": "printer on fire"}),
    );
    assert_eq!(check.json["decision"], "fail", "{check}");
    let link = mailed_link(&host, "ada@acme.test");
    (host, link)
}

fn use_account(host: &Host, link: &str, other: &str) -> crate::server::Reply {
    host.post_form(
        &form_url(link),
        &[
            ("key", &key_of(link)),
            ("choice", "other-account"),
            ("account_id", other),
        ],
    )
}

#[test]
fn another_account_takes_the_request_only_when_its_contact_confirms_and_no_answer_tells_accounts_apart()
 {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    let (host, link) =
        failed_support_check(&setup, &receiver, "other_account = \"confirm\"", "t-1");
    account_with_contact(&host, "acme-ok", "active", "Bob", "bob@acme.test");
    account_with_contact(&host, "acme-bad", "expired", "Carol", "carol@acme.test");
    let page = host.get_url(&link);
    assert!(page.text.contains("id=\"other-account\""), "{page}");

    // Unknown, not entitled, entitled: one and the same answer.
    let answers: Vec<_> = ["nobody-9", "acme-bad", "acme-ok"]
        .into_iter()
        .map(|other| use_account(&host, &link, other))
        .collect();
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer}");
        assert!(
            answer
                .text
                .contains("If that account exists and can take this request"),
            "{answer}"
        );
        assert_eq!(answer.text, answers[0].text, "the answers differ");
    }
    // Nothing moved yet; only the entitled account's contact was asked.
    assert_eq!(
        host.get("/v1/requests/t-1").json["state"],
        "awaiting-reconciliation"
    );
    let confirm = mailed_link(&host, "bob@acme.test");
    assert!(confirm.contains("/confirm?key="), "{confirm}");
    assert!(mails(&host, "carol@acme.test", "").is_empty());

    // Bob confirms: the request is fulfilled on his account, once.
    let shown = host.get_url(&confirm);
    assert_eq!(shown.status, 200, "{shown}");
    assert!(
        shown.text.contains("printer on fire") && shown.text.contains("acme-1"),
        "{shown}"
    );
    let done = host.post_form(&form_url(&confirm), &[("key", &key_of(&confirm))]);
    assert_eq!(done.status, 200, "{done}");
    assert!(done.text.contains("Done"), "{done}");
    let fulfilled = event(&receiver, "request.fulfilled");
    assert_eq!(fulfilled["data"]["account_id"], "acme-ok", "{fulfilled:#}");
    assert_eq!(fulfilled["data"]["request"]["id"], "t-1", "{fulfilled:#}");
    assert_eq!(host.get("/v1/requests/t-1").json["state"], "fulfilled");
    // Every link of it is dead.
    assert_eq!(host.get_url(&confirm).status, 410);
    assert_eq!(host.get_url(&link).status, 410);
}

#[test]
fn asking_another_account_counts_against_the_link_like_a_wrong_key() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    setup.write_config(
        "[reconciliation]\nmax_attempts = 2\nlock_seconds = 600\nother_account = \"confirm\"\n",
    );
    let (host, link) = failed_support_check(&setup, &receiver, "", "t-2");
    assert_eq!(use_account(&host, &link, "nobody-1").status, 200);
    let locked = use_account(&host, &link, "nobody-2");
    assert_eq!(locked.status, 429, "{locked}");
    assert_eq!(host.get_url(&link).status, 429);
    assert_eq!(
        host.get("/v1/requests/t-2").json["state"],
        "awaiting-reconciliation"
    );
}

#[test]
fn another_account_is_off_unless_the_service_or_the_host_turns_it_on() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    let (host, link) = failed_support_check(&setup, &receiver, "", "t-3");
    account_with_contact(&host, "acme-ok", "active", "Bob", "bob@acme.test");
    let page = host.get_url(&link);
    assert_eq!(page.status, 200, "{page}");
    assert!(!page.text.contains("id=\"other-account\""), "{page}");
    let refused = use_account(&host, &link, "acme-ok");
    assert_eq!(refused.status, 422, "{refused}");
    assert_eq!(
        host.get("/v1/requests/t-3").json["state"],
        "awaiting-reconciliation"
    );
    assert!(mails(&host, "bob@acme.test", "").is_empty());
}
