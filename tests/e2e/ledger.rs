//! Balances, top-ups, the ledger, PINs and accounts made in bulk, on the
//! real binary: a reference credits once (also when a hundred clients send
//! it at once), bad input is refused naming what is wrong and changes
//! nothing, and a PIN never comes back out.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::entitlement::{form_url, key_of, mailed_link, manifest};
use crate::server::{Host, Reply, Setup};
use crate::webhook::Receiver;

/// PUTs an active, paid-up account with `extra` fields; asserts it stored.
fn account(host: &Host, id: &str, extra: Value) -> Reply {
    let mut body = json!({"status": "active", "paid_up": true});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = host.put(&format!("/v1/accounts/{id}"), &body);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
    reply
}

fn topup(host: &Host, id: &str, amount: i64, reference: &str) -> Reply {
    host.post(
        &format!("/v1/accounts/{id}/topup"),
        &json!({"amount": amount, "reference": reference}),
    )
}

/// The account's balance (the plans and sessions tests use it too).
pub(crate) fn balance(host: &Host, id: &str) -> i64 {
    let reply = host.get(&format!("/v1/accounts/{id}/balance"));
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["balance"].as_i64().unwrap()
}

/// The sum of every movement on the account's ledger, and their number,
/// read a page at a time.
pub(crate) fn ledger_sum(host: &Host, account: &str) -> (i64, usize) {
    let (mut sum, mut count, mut after) = (0, 0, String::new());
    loop {
        let reply = host.get(&format!("/v1/accounts/{account}/ledger?limit=1000{after}"));
        assert_eq!(reply.status, 200, "{reply}");
        let movements = reply.json["movements"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        sum += movements
            .iter()
            .map(|m| m["amount"].as_i64().unwrap_or(0))
            .sum::<i64>();
        count += movements.len();
        match reply.json["next"].as_i64() {
            Some(next) => after = format!("&after={next}"),
            None => return (sum, count),
        }
    }
}

fn ledger(host: &Host, id: &str) -> Vec<Value> {
    let reply = host.get(&format!("/v1/accounts/{id}/ledger?limit=1000"));
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["movements"].as_array().cloned().unwrap()
}

fn error(reply: &Reply, status: u16, code: &str) -> String {
    assert_eq!(
        (reply.status, reply.json["error"]["code"].as_str()),
        (status, Some(code)),
        "{reply}"
    );
    reply.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_top_up_moves_the_balance_once_and_shows_in_the_ledger() {
    let setup = Setup::new("");
    let host = setup.start();
    account(
        &host,
        "acme-l1",
        json!({"billing": "postpaid", "group": "north"}),
    );
    let reply = host.get("/v1/accounts/acme-l1/balance");
    assert_eq!(
        reply.json,
        json!({"account_id": "acme-l1", "balance": 0, "billing": "postpaid"}),
        "{reply}"
    );

    let first = topup(&host, "acme-l1", 500, "pay-1");
    assert_eq!(first.status, 201, "{first}");
    assert_eq!(first.json["balance"], 500);
    let movement = &first.json["movement"];
    assert_eq!(
        (
            &movement["kind"],
            &movement["amount"],
            &movement["reference"],
            &movement["balance_after"]
        ),
        (&json!("topup"), &json!(500), &json!("pay-1"), &json!(500)),
        "{first}"
    );
    assert!(
        movement["at"]
            .as_str()
            .is_some_and(|at| at.parse::<jiff::Timestamp>().is_ok()),
        "{first}"
    );
    // The same request again: the same answer, credited once.
    let again = topup(&host, "acme-l1", 500, "pay-1");
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.json, first.json);
    assert_eq!(topup(&host, "acme-l1", 250, "pay-2").status, 201);
    assert_eq!(balance(&host, "acme-l1"), 750);

    // Another amount under a used reference: refused, nothing moves.
    let reused = topup(&host, "acme-l1", 501, "pay-1");
    let message = error(&reused, 409, "reference-reused");
    assert!(message.contains("pay-1"), "{message}");
    assert_eq!(balance(&host, "acme-l1"), 750);

    let movements = ledger(&host, "acme-l1");
    let amounts: Vec<&Value> = movements.iter().map(|m| &m["amount"]).collect();
    assert_eq!(amounts, [&json!(500), &json!(250)], "oldest first");
    assert_eq!(movements[0], first.json["movement"]);
    // A page at a time.
    let page = host.get("/v1/accounts/acme-l1/ledger?limit=1");
    assert_eq!(page.json["movements"].as_array().map(Vec::len), Some(1));
    let next = page.json["next"].as_i64().unwrap();
    let last = host.get(&format!("/v1/accounts/acme-l1/ledger?limit=1&after={next}"));
    assert_eq!(last.json["movements"][0]["reference"], "pay-2", "{last}");
    assert_eq!(last.json["next"], Value::Null);

    // Money moving is not a change of the account.
    let shown = host.get("/v1/accounts/acme-l1");
    assert_eq!(
        (
            &shown.json["group"],
            &shown.json["billing"],
            &shown.json["has_pin"]
        ),
        (&json!("north"), &json!("postpaid"), &json!(false)),
        "{shown}"
    );

    for path in ["/v1/accounts/nobody/balance", "/v1/accounts/nobody/ledger"] {
        error(&host.get(path), 404, "no-account");
    }
    error(&topup(&host, "nobody", 5, "r"), 404, "no-account");
}

#[test]
fn a_hundred_concurrent_top_ups_with_one_reference_credit_once() {
    let setup = Setup::new("");
    let host = setup.start();
    account(&host, "acme-l2", json!({}));
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..100)
            .map(|_| scope.spawn(|| topup(&host, "acme-l2", 125, "order-77")))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let created = replies.iter().filter(|r| r.status == 201).count();
    let replayed = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!((created, replayed), (1, 99), "{:?}", replies.first());
    assert!(
        replies.iter().all(|r| r.json == replies[0].json),
        "the answers differ"
    );
    assert_eq!(balance(&host, "acme-l2"), 125);
    assert_eq!(ledger(&host, "acme-l2").len(), 1);
}

#[test]
fn bad_input_is_refused_naming_the_problem_and_changes_nothing() {
    let setup = Setup::new("");
    let host = setup.start();
    account(&host, "acme-l3", json!({"group": "south", "pin": "2468"}));
    assert_eq!(topup(&host, "acme-l3", 100, "t").status, 201);
    let path = "/v1/accounts/acme-l3/topup";
    let long = "r".repeat(201);
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            json!({"amount": 0, "reference": "r"}).to_string(),
            422,
            "invalid",
            "`amount`",
        ),
        (
            json!({"amount": -5, "reference": "r"}).to_string(),
            422,
            "invalid",
            "`amount`",
        ),
        (
            r#"{"amount": 1.5, "reference": "r"}"#.into(),
            422,
            "invalid",
            "`amount`",
        ),
        (
            r#"{"amount": "100", "reference": "r"}"#.into(),
            422,
            "invalid",
            "`amount`",
        ),
        (
            r#"{"amount": 9223372036854775808, "reference": "r"}"#.into(),
            422,
            "invalid",
            "`amount`",
        ),
        (
            r#"{"amount": 1e400, "reference": "r"}"#.into(),
            422,
            "invalid",
            "amount",
        ),
        (
            json!({"amount": 100}).to_string(),
            422,
            "invalid",
            "`reference`",
        ),
        (
            json!({"amount": 100, "reference": ""}).to_string(),
            422,
            "invalid",
            "`reference`",
        ),
        (
            json!({"amount": 100, "reference": long}).to_string(),
            422,
            "invalid",
            "`reference`",
        ),
        (
            json!({"amount": 100, "reference": "a\tb"}).to_string(),
            422,
            "invalid",
            "`reference`",
        ),
        (
            r#"{"amount": 100, "reference": "a\u0007b"}"#.into(),
            422,
            "invalid",
            "reference",
        ),
        (
            json!({"amount": 100, "reference": "r", "currency": "EUR"}).to_string(),
            422,
            "invalid",
            "`currency`",
        ),
        (
            "{\"amount\": 100, ".into(),
            400,
            "malformed",
            "not valid JSON",
        ),
    ];
    for (body, status, code, names) in &cases {
        let reply = host.post_text(path, body);
        let message = error(&reply, *status, code);
        assert!(message.contains(names), "{body}: {message}");
    }
    error(
        &host.get("/v1/accounts/acme-l3/ledger?after=-1"),
        422,
        "invalid",
    );
    error(
        &host.get("/v1/accounts/acme-l3/ledger?limit=many"),
        422,
        "invalid",
    );
    error(
        &host.get("/v1/accounts/acme-l3/ledger?since=1"),
        422,
        "invalid",
    );

    // The account's new fields too: nothing of the account changes.
    let before = host.get("/v1/accounts/acme-l3");
    let put = "/v1/accounts/acme-l3";
    let base = json!({"status": "suspended", "paid_up": false});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let group = "g".repeat(101);
    for (body, code, names) in [
        (with("billing", json!("credit")), "invalid", "`billing`"),
        (with("billing", json!(1)), "invalid", "`billing`"),
        (with("group", json!(group)), "invalid", "`group`"),
        (with("group", json!("a\nb")), "invalid", "`group`"),
        (with("pin", json!("123")), "invalid-pin", "`pin`"),
        (with("pin", json!("12345678901234")), "invalid-pin", "`pin`"),
        (with("pin", json!("12a4")), "invalid-pin", "`pin`"),
        (with("pin", json!(1234)), "invalid", "`pin`"),
    ] {
        let message = error(&host.put(put, &body), 422, code);
        assert!(message.contains(names), "{body}: {message}");
        assert!(!message.contains("12a4"), "the PIN repeated: {message}");
    }
    assert_eq!(host.get("/v1/accounts/acme-l3").json, before.json);
    assert_eq!(balance(&host, "acme-l3"), 100);
    assert_eq!(ledger(&host, "acme-l3").len(), 1);
}

#[test]
fn a_pin_is_kept_across_changes_and_never_shown() {
    let setup = Setup::new("");
    let host = setup.start();
    let pin = "97531";
    let put = account(&host, "acme-l4", json!({"pin": pin, "group": "east"}));
    assert_eq!(put.status, 201, "{put}");
    for reply in [put, host.get("/v1/accounts/acme-l4")] {
        assert_eq!(reply.json["has_pin"], true, "{reply}");
        assert_eq!(reply.json["group"], "east", "{reply}");
        assert_eq!(reply.json["billing"], "prepaid", "{reply}");
        assert!(!reply.text.contains(pin), "the PIN is shown: {reply}");
        for hidden in ["pin", "pin_hash", "pin_salt", "pin_failures"] {
            assert!(reply.json.get(hidden).is_none(), "{hidden}: {reply}");
        }
    }
    // Replaced without a PIN: the PIN stays; group and billing are as sent.
    let again = account(&host, "acme-l4", json!({"billing": "postpaid"}));
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(
        (
            &again.json["has_pin"],
            &again.json["group"],
            &again.json["billing"]
        ),
        (&json!(true), &json!(""), &json!("postpaid")),
        "{again}"
    );
    let log = setup.dir().join("serve-1.log");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains(pin), "the PIN is in the log");
}

#[test]
fn fifty_accounts_made_in_bulk_have_distinct_ids_pins_and_their_balance() {
    let setup = Setup::new("");
    let host = setup.start();
    let reply = host.post(
        "/v1/account-groups/class-3b/accounts",
        &json!({"count": 50, "balance": 500, "prefix": "c3b-"}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    assert_eq!(reply.json["group"], "class-3b");
    let made = reply.json["accounts"].as_array().cloned().unwrap();
    assert_eq!(made.len(), 50);
    let ids: HashSet<&str> = made.iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids.len(), 50, "ids repeat: {reply}");
    for a in &made {
        let id = a["id"].as_str().unwrap();
        let digits = id.strip_prefix("c3b-").unwrap_or_default();
        assert!(
            digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        let pin = a["pin"].as_str().unwrap_or_default();
        assert!(
            pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()),
            "{a}"
        );
        assert_eq!(balance(&host, id), 500, "{id}");
        let shown = host.get(&format!("/v1/accounts/{id}"));
        assert_eq!(
            (
                &shown.json["group"],
                &shown.json["has_pin"],
                &shown.json["status"]
            ),
            (&json!("class-3b"), &json!(true), &json!("active")),
            "{shown}"
        );
        assert!(shown.json.get("pin").is_none(), "{shown}");
        let movements = ledger(&host, id);
        assert_eq!(movements.len(), 1);
        assert_eq!(movements[0]["reference"], "opening");
    }

    for (body, names) in [
        (json!({"count": 0}), "`count`"),
        (json!({"count": 10_001}), "`count`"),
        (json!({"count": -1}), "`count`"),
        (json!({"count": 2, "balance": -1}), "`balance`"),
        (json!({"count": 2, "prefix": "a b"}), "`prefix`"),
        (json!({"count": 2, "billing": "later"}), "`billing`"),
        (json!({"count": 2, "pin": "1234"}), "`pin`"),
    ] {
        let reply = host.post("/v1/account-groups/class-3c/accounts", &body);
        let message = error(&reply, 422, "invalid");
        assert!(message.contains(names), "{body}: {message}");
    }
    let bad_group = host.post("/v1/account-groups/a%09b/accounts", &json!({"count": 1}));
    assert!(error(&bad_group, 422, "invalid").contains("`group`"));
}

/// Reconciliation stores the account it renewed: its group, billing, PIN
/// and balance stay as they were.
#[test]
fn a_renewal_on_the_reconciliation_page_keeps_group_billing_pin_and_balance() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    setup.write_rules(
        "support-contract.toml",
        &manifest("support-contract", &receiver, "lapse_seconds = 600"),
    );
    let host = setup.start();
    account(
        &host,
        "acme-l5",
        json!({"status": "expired", "tier": "standard", "contact": {"name": "Ada", "email": "ada@acme.test"},
            "group": "west", "billing": "postpaid", "pin": "8642"}),
    );
    assert_eq!(topup(&host, "acme-l5", 300, "t").status, 201);
    let check = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-l5", "request_id": "rn-1"}),
    );
    assert_eq!(check.json["decision"], "fail", "{check}");
    let link = mailed_link(&host, "ada@acme.test");
    let done = host.post_form(
        &form_url(&link),
        &[("key", &key_of(&link)), ("choice", "renew")],
    );
    assert_eq!(done.status, 200, "{done}");
    let renewed = host.get("/v1/accounts/acme-l5");
    assert_eq!(
        (
            &renewed.json["status"],
            &renewed.json["group"],
            &renewed.json["billing"],
            &renewed.json["has_pin"]
        ),
        (
            &json!("active"),
            &json!("west"),
            &json!("postpaid"),
            &json!(true)
        ),
        "{renewed}"
    );
    assert_eq!(balance(&host, "acme-l5"), 300);
}
