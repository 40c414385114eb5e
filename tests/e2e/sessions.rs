//! Session charging end to end on the real binary with the sample rules:
//! one timeline of joins and leaves charged under `conference-split` (a
//! per-minute cost split among those present) and under `webinar-charging`
//! (attendees pay by the minute, the host a flat fee when the room gets
//! large), each event's charges and the totals checked against arithmetic
//! done by hand; every refusal; a retried event charged once; a prepaid
//! balance running out (uncovered, and the service told); a plugin fault
//! (503, or the last good version); 100 participants joining and leaving
//! concurrently across 10 sessions; and kill -9 between events. Times are
//! given explicitly (`at`); balances are always the sums of their ledgers.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::ledger::{balance, ledger_sum};
use crate::server::{Host, Reply, Setup, wait_for};
use crate::support::plugin_bytes;
use crate::webhook::Receiver;

/// The sample rules' plugins, for a setup with its own plugins folder.
const SAMPLE_PLUGINS: [&str; 5] = [
    "support-contract",
    "premium-support",
    "prepaid-calling",
    "conference-split",
    "webinar-charging",
];

/// An account with `billing` and, when above zero, a top-up of `balance`.
fn account(host: &Host, id: &str, billing: &str, balance: i64) {
    let body = json!({"status": "active", "paid_up": true, "billing": billing});
    let reply = host.put(&format!("/v1/accounts/{id}"), &body);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
    if balance > 0 {
        let reply = host.post(
            &format!("/v1/accounts/{id}/topup"),
            &json!({"amount": balance, "reference": format!("opening-{id}")}),
        );
        assert_eq!(reply.status, 201, "{reply}");
    }
}

/// A session of `service` started at `at`: its id.
fn open(host: &Host, service: &str, at: &str) -> String {
    let reply = host.post(
        "/v1/sessions",
        &json!({"service": service, "attributes": {"topic": "weekly"}, "at": at}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    assert_eq!(reply.json["status"], "open", "{reply}");
    reply.json["id"].as_str().unwrap_or_default().to_owned()
}

fn join(
    host: &Host,
    session: &str,
    id: &str,
    who: &str,
    account: &str,
    role: &str,
    at: &str,
) -> Reply {
    let attributes = if role.is_empty() {
        json!({})
    } else {
        json!({"role": role})
    };
    host.post(
        &format!("/v1/sessions/{session}/events"),
        &json!({"id": id, "type": "join", "participant": who, "account_id": account,
                "attributes": attributes, "at": at}),
    )
}

fn leave(host: &Host, session: &str, id: &str, who: &str, at: &str) -> Reply {
    host.post(
        &format!("/v1/sessions/{session}/events"),
        &json!({"id": id, "type": "leave", "participant": who, "at": at}),
    )
}

fn end(host: &Host, session: &str, id: &str, at: &str) -> Reply {
    host.post(
        &format!("/v1/sessions/{session}/end"),
        &json!({"id": id, "at": at}),
    )
}

/// (participant, amount) of each charge of an event's answer.
fn charges(reply: &Reply) -> Vec<(String, i64)> {
    reply.json["charges"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| {
                    (
                        c["participant"].as_str().unwrap_or_default().to_owned(),
                        c["amount"].as_i64().unwrap_or(i64::MIN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected
        .iter()
        .map(|(p, a)| ((*p).to_owned(), *a))
        .collect()
}

/// The balance is the sum of the ledger: that sum.
fn settled(host: &Host, account: &str) -> i64 {
    let (sum, _) = ledger_sum(host, account);
    assert_eq!(balance(host, account), sum, "{account}");
    sum
}

/// Each participant's charged amount so far, by id, from `GET /v1/sessions/{id}`.
fn per_participant(session: &Value) -> Vec<(String, i64)> {
    session["participants"]
        .as_array()
        .map(|list| {
            let mut got: Vec<(String, i64)> = list
                .iter()
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or_default().to_owned(),
                        p["totals"]["amount"].as_i64().unwrap_or(i64::MIN),
                    )
                })
                .collect();
            got.sort();
            got
        })
        .unwrap_or_default()
}

/// One timeline for both sample session types (2026-11-20, 14:00 on):
/// a host, three attendees and a presenter join and leave.
///
/// | event | at       | what                     | present before it            |
/// |-------|----------|--------------------------|------------------------------|
/// | e1    | 14:00:00 | host joins (role host)   | nobody                       |
/// | e2    | 14:01:00 | a1 joins                 | host                         |
/// | e3    | 14:02:00 | a2 joins                 | host, a1                     |
/// | e4    | 14:03:00 | a3 joins                 | host, a1, a2                 |
/// | e5    | 14:04:30 | a1 leaves                | host, a1, a2, a3             |
/// | e6    | 14:05:00 | pres joins (presenter)   | host, a2, a3                 |
/// | e7    | 14:06:00 | host leaves              | host, a2, a3, pres           |
/// | end   | 14:07:00 | the session ends         | a2, a3, pres                 |
fn run_timeline(host: &Host, session: &str, prefix: &str) -> Vec<Reply> {
    let acct = |who: &str| format!("{prefix}-{who}");
    let day = |time: &str| format!("2026-11-20T{time}Z");
    vec![
        join(
            host,
            session,
            "e1",
            "host",
            &acct("host"),
            "host",
            &day("14:00:00"),
        ),
        join(host, session, "e2", "a1", &acct("a1"), "", &day("14:01:00")),
        join(
            host,
            session,
            "e3",
            "a2",
            &acct("a2"),
            "attendee",
            &day("14:02:00"),
        ),
        join(host, session, "e4", "a3", &acct("a3"), "", &day("14:03:00")),
        leave(host, session, "e5", "a1", &day("14:04:30")),
        join(
            host,
            session,
            "e6",
            "pres",
            &acct("pres"),
            "presenter",
            &day("14:05:00"),
        ),
        leave(host, session, "e7", "host", &day("14:06:00")),
        end(host, session, "end", &day("14:07:00")),
    ]
}

/// The timeline's accounts: the host pays afterwards, the others in advance.
fn timeline_accounts(host: &Host, prefix: &str) {
    account(host, &format!("{prefix}-host"), "postpaid", 0);
    for who in ["a1", "a2", "a3", "pres"] {
        account(host, &format!("{prefix}-{who}"), "prepaid", 1000);
    }
}

#[test]
fn a_conference_and_a_webinar_charge_the_same_timeline_by_their_own_rules() {
    let setup = Setup::new("");
    let host = setup.start();
    timeline_accounts(&host, "c");
    timeline_accounts(&host, "w");
    let conference = open(&host, "conference-split", "2026-11-20T14:00:00Z");
    let webinar = open(&host, "webinar-charging", "2026-11-20T14:00:00Z");

    // conference-split, 10 a minute split among those present (rounded
    // down once per interval; the remainder one unit each to the earliest
    // joined, by time then id):
    let expected_conference = [
        // e1: nobody was present.
        pairs(&[]),
        // e2: 60 s = 10, the host alone.
        pairs(&[("host", 10)]),
        // e3: 60 s = 10 between host and a1: 5 + 5.
        pairs(&[("host", 5), ("a1", 5)]),
        // e4: 60 s = 10 among 3: 3 each, 1 left over to the host.
        pairs(&[("host", 4), ("a1", 3), ("a2", 3)]),
        // e5: 90 s = 15 among 4: 3 each, 3 left over to host, a1, a2.
        pairs(&[("host", 4), ("a1", 4), ("a2", 4), ("a3", 3)]),
        // e6: 30 s = 5 among host, a2, a3: 1 each, 2 left over to host and a2.
        pairs(&[("host", 2), ("a2", 2), ("a3", 1)]),
        // e7: 60 s = 10 among 4: 2 each, 2 left over to host and a2.
        pairs(&[("host", 3), ("a2", 3), ("a3", 2), ("pres", 2)]),
        // end: 60 s = 10 among a2, a3, pres: 3 each, 1 left over to a2.
        pairs(&[("a2", 4), ("a3", 3), ("pres", 3)]),
    ];
    let replies = run_timeline(&host, &conference, "c");
    for (i, (reply, expected)) in replies.iter().zip(&expected_conference).enumerate() {
        assert_eq!(reply.status, 201, "event {}: {reply}", i + 1);
        assert_eq!(&charges(reply), expected, "event {}: {reply}", i + 1);
        assert_eq!(reply.json["session_id"], conference.as_str());
        assert_eq!(reply.json["seq"], i + 1);
    }
    // A charge names its account, its period and its ledger reference.
    let e4 = &replies[3].json["charges"][0];
    assert_eq!(e4["account_id"], "c-host");
    assert_eq!(e4["period_start"], "2026-11-20T14:02:00Z");
    assert_eq!(e4["period_end"], "2026-11-20T14:03:00Z");
    assert_eq!(
        e4["reference"],
        format!("session:{conference}:e4:host").as_str()
    );
    assert_eq!(
        e4["description"],
        "60 s at 10/min among 3 participants: 4 of 10"
    );

    // webinar-charging: 6 a minute for each attendee present; hosts and
    // presenters free; the host pays 50 when an attendee's join makes the
    // attendees present 3.
    let expected_webinar = [
        // e1, e2: no attendee was present (the host is free).
        pairs(&[]),
        pairs(&[]),
        // e3: 60 s, a1 pays 6.
        pairs(&[("a1", 6)]),
        // e4: 60 s, a1 and a2 pay 6 each; a3 makes three attendees: the host pays 50.
        pairs(&[("a1", 6), ("a2", 6), ("host", 50)]),
        // e5: 90 s, each of the three attendees pays 9.
        pairs(&[("a1", 9), ("a2", 9), ("a3", 9)]),
        // e6: 30 s, a2 and a3 pay 3 each; a presenter's join costs nothing.
        pairs(&[("a2", 3), ("a3", 3)]),
        // e7: 60 s, a2 and a3 pay 6 each (host and presenter free).
        pairs(&[("a2", 6), ("a3", 6)]),
        // end: 60 s, a2 and a3 pay 6 each.
        pairs(&[("a2", 6), ("a3", 6)]),
    ];
    let replies = run_timeline(&host, &webinar, "w");
    for (i, (reply, expected)) in replies.iter().zip(&expected_webinar).enumerate() {
        assert_eq!(reply.status, 201, "event {}: {reply}", i + 1);
        assert_eq!(&charges(reply), expected, "event {}: {reply}", i + 1);
    }
    let fee = &replies[3].json["charges"][2];
    assert_eq!(
        (&fee["account_id"], &fee["period_start"], &fee["period_end"]),
        (
            &json!("w-host"),
            &json!("2026-11-20T14:03:00Z"),
            &json!("2026-11-20T14:03:00Z")
        )
    );
    assert_eq!(replies[3].json["totals"]["amount"], 62);

    // The totals, per participant and in all.
    // conference: host 10+5+4+4+2+3 = 28, a1 5+3+4 = 12, a2 3+4+2+3+4 = 16,
    // a3 3+1+2+3 = 9, pres 2+3 = 5; in all 70, which is 420 s of the call:
    // 10 + 10 + 10 + 15 + 5 + 10 + 10.
    let view = host.get(&format!("/v1/sessions/{conference}"));
    assert_eq!(view.status, 200, "{view}");
    assert_eq!(view.json["status"], "ended");
    assert_eq!(view.json["service"], "conference-split");
    assert_eq!(view.json["attributes"]["topic"], "weekly");
    assert_eq!(view.json["ended_at"], "2026-11-20T14:07:00Z");
    assert_eq!(view.json["events"], 8);
    assert_eq!(
        per_participant(&view.json),
        pairs(&[("a1", 12), ("a2", 16), ("a3", 9), ("host", 28), ("pres", 5)])
    );
    assert_eq!(view.json["totals"]["amount"], 70);
    assert_eq!(view.json["totals"]["charged"], 70);
    assert_eq!(view.json["totals"]["uncovered"], 0);
    assert!(
        view.json["participants"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["present"] == false))
    );
    // webinar: host 50, a1 6+6+9 = 21 (14:01 to 14:04:30, 210 s), a2
    // 6+9+3+6+6 = 30 (300 s), a3 9+3+6+6 = 24 (240 s), pres 0; in all 125.
    let view = host.get(&format!("/v1/sessions/{webinar}"));
    assert_eq!(
        per_participant(&view.json),
        pairs(&[
            ("a1", 21),
            ("a2", 30),
            ("a3", 24),
            ("host", 50),
            ("pres", 0)
        ])
    );
    assert_eq!(view.json["totals"]["amount"], 125);

    // The ledgers: prepaid accounts debited, the postpaid host owes.
    for (prefix, host_paid, others) in [
        ("c", 28, [("a1", 12), ("a2", 16), ("a3", 9), ("pres", 5)]),
        ("w", 50, [("a1", 21), ("a2", 30), ("a3", 24), ("pres", 0)]),
    ] {
        assert_eq!(settled(&host, &format!("{prefix}-host")), -host_paid);
        for (who, paid) in others {
            assert_eq!(settled(&host, &format!("{prefix}-{who}")), 1000 - paid);
        }
    }

    // The events in order, each with its charges, a page at a time.
    let first = host.get(&format!("/v1/sessions/{conference}/events?limit=5"));
    assert_eq!(first.status, 200, "{first}");
    let types: Vec<&str> = first.json["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(types, ["join", "join", "join", "join", "leave"]);
    assert_eq!(first.json["next"], 5);
    let rest = host.get(&format!("/v1/sessions/{conference}/events?after=5"));
    let events = rest.json["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 3, "{rest}");
    assert!(rest.json["next"].is_null());
    assert_eq!(events[2]["id"], "end");
    assert_eq!(events[2]["type"], "end");
    assert_eq!(events[2]["totals"]["amount"], 10);
    assert_eq!(first.json["events"][1]["account_id"], "c-a1");
    assert_eq!(first.json["events"][0]["attributes"]["role"], "host");
    assert!(
        first.json["events"][1]["plugin"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
}

#[test]
fn every_refusal_is_a_4xx_with_a_code_and_stores_nothing() {
    let setup = Setup::new("");
    // A conference whose rate is not a number: the plugin declines.
    setup.write_rules(
        "broken-rate.toml",
        "id = \"broken-rate\"\n[plugins]\nsession_charging = \"conference-split\"\n[config]\nrate_per_minute = \"ten\"\n",
    );
    let host = setup.start();
    account(&host, "ana", "prepaid", 500);
    account(&host, "ben", "postpaid", 0);
    let refused = |reply: &Reply, status: u16, code: &str| {
        assert_eq!(reply.status, status, "{reply}");
        assert_eq!(reply.json["error"]["code"], code, "{reply}");
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    };

    // Opening.
    let unknown = host.post("/v1/sessions", &json!({"service": "nope"}));
    refused(&unknown, 422, "unknown-service");
    let no_charging = host.post("/v1/sessions", &json!({"service": "support-contract"}));
    refused(&no_charging, 422, "no-session-charging");
    let bad = host.post(
        "/v1/sessions",
        &json!({"service": "conference-split", "colour": "red"}),
    );
    refused(&bad, 422, "invalid");

    let s = open(&host, "conference-split", "2026-11-20T14:00:00Z");
    let at = |t: &str| format!("2026-11-20T{t}Z");
    assert_eq!(
        join(&host, &s, "e1", "p1", "ana", "", &at("14:00:00")).status,
        201
    );
    assert_eq!(
        join(&host, &s, "e2", "p2", "ben", "", &at("14:01:00")).status,
        201
    );
    let snapshot = |host: &Host| {
        let view = host.get(&format!("/v1/sessions/{s}"));
        (
            view.json["events"].clone(),
            view.json["totals"].clone(),
            ledger_sum(host, "ana"),
            ledger_sum(host, "ben"),
        )
    };
    let before = snapshot(&host);

    let events = format!("/v1/sessions/{s}/events");
    refused(
        &host.post(
            "/v1/sessions/ses_nope/events",
            &json!({"id": "x", "type": "leave", "participant": "p1"}),
        ),
        404,
        "no-session",
    );
    refused(
        &join(&host, &s, "x1", "p3", "nobody", "", &at("14:02:00")),
        404,
        "no-account",
    );
    refused(
        &join(&host, &s, "x2", "p1", "ana", "", &at("14:02:00")),
        409,
        "already-present",
    );
    refused(
        &leave(&host, &s, "x3", "p9", &at("14:02:00")),
        409,
        "not-present",
    );
    refused(
        &leave(&host, &s, "x4", "p1", &at("14:00:30")),
        409,
        "out-of-order",
    );
    // The same id with other content; with the same content it is a replay.
    refused(
        &join(&host, &s, "e2", "p2", "ben", "", &at("14:01:30")),
        409,
        "event-id-reused",
    );
    refused(
        &leave(&host, &s, "e2", "p2", &at("14:01:00")),
        409,
        "event-id-reused",
    );
    let replay = join(&host, &s, "e2", "p2", "ben", "", &at("14:01:00"));
    assert_eq!(replay.status, 200, "{replay}");
    // Bodies out of the rules.
    for body in [
        json!({"id": "x5", "type": "wave", "participant": "p1"}),
        json!({"id": "x5", "participant": "p1"}),
        json!({"id": "x5", "type": "join", "participant": "p3"}),
        json!({"id": "x5", "type": "leave", "participant": "p1", "account_id": "ana"}),
        json!({"id": "x:5", "type": "leave", "participant": "p1"}),
        json!({"id": "x5", "type": "leave", "participant": "p 1"}),
        json!({"id": "x5", "type": "leave", "participant": "p1", "at": "yesterday"}),
        json!({"id": "x5", "type": "leave", "participant": "p1", "extra": 1}),
    ] {
        let reply = host.post(&events, &body);
        refused(&reply, 422, "invalid");
    }
    let malformed = host.post_text(&events, "{\"id\": ");
    assert_eq!(malformed.status, 400, "{malformed}");
    let page = host.get(&format!("/v1/sessions/{s}/events?limit=0"));
    refused(&page, 422, "invalid");
    refused(&host.get("/v1/sessions/ses_nope"), 404, "no-session");
    refused(&host.get("/v1/sessions/ses_nope/events"), 404, "no-session");

    // The plugin declining: 503, nothing stored.
    let broken = open(&host, "broken-rate", "2026-11-20T14:00:00Z");
    assert_eq!(
        join(&host, &broken, "b1", "p1", "ana", "", &at("14:00:00")).status,
        503
    );
    let view = host.get(&format!("/v1/sessions/{broken}"));
    assert_eq!(view.json["events"], 0, "{view}");
    assert_eq!(view.json["participants"], json!([]));

    assert_eq!(snapshot(&host), before, "a refusal changed something");

    // After the end: no more events, nor a second end.
    assert_eq!(end(&host, &s, "end", &at("14:03:00")).status, 201);
    refused(
        &join(&host, &s, "x6", "p3", "ana", "", &at("14:04:00")),
        409,
        "session-ended",
    );
    refused(
        &leave(&host, &s, "x7", "p1", &at("14:04:00")),
        409,
        "session-ended",
    );
    refused(
        &end(&host, &s, "end-2", &at("14:04:00")),
        409,
        "session-ended",
    );
    // The end again, as sent: answered as the first time.
    assert_eq!(end(&host, &s, "end", &at("14:03:00")).status, 200);
    // The end charged 120 s = 20 between p1 and p2 (10 each): nothing else.
    let view = host.get(&format!("/v1/sessions/{s}"));
    assert_eq!(view.json["events"], 3);
    // e2 charged p1 10 for the first minute; the end 10 each.
    assert_eq!(
        per_participant(&view.json),
        pairs(&[("p1", 20), ("p2", 10)])
    );
    assert_eq!(settled(&host, "ana"), 480);
    assert_eq!(settled(&host, "ben"), -10);
}

#[test]
fn service_tokens_reach_only_their_own_services_sessions() {
    let setup = Setup::new("");
    let host = setup.start();
    account(&host, "ana", "postpaid", 0);
    let token = |role: &str, services: &[&str], name: &str| {
        let mut args = vec!["tokens", "create", "--role", role, "--name", name];
        for service in services {
            args.extend(["--service", service]);
        }
        let db = setup.db_path().to_string_lossy().into_owned();
        args.extend(["--db", db.as_str()]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rulehost"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let webinar_app = token("service", &["webinar-charging"], "webinar-app");
    let viewer = token("viewer", &[], "grafana");
    let conference = open(&host, "conference-split", "2026-11-20T14:00:00Z");
    let as_app = |method: &str, path: &str, body: Option<&Value>| {
        host.call_as(Some(&webinar_app), method, path, body)
    };

    // Another service's session: 403 to open, 404 to reach.
    let other = as_app(
        "POST",
        "/v1/sessions",
        Some(&json!({"service": "conference-split"})),
    );
    assert_eq!(other.status, 403, "{other}");
    let event = json!({"id": "e1", "type": "join", "participant": "p1", "account_id": "ana"});
    let path = format!("/v1/sessions/{conference}/events");
    for reply in [
        as_app("POST", &path, Some(&event)),
        as_app(
            "POST",
            &format!("/v1/sessions/{conference}/end"),
            Some(&json!({"id": "x"})),
        ),
        as_app("GET", &format!("/v1/sessions/{conference}"), None),
        as_app("GET", &path, None),
    ] {
        assert_eq!(reply.status, 404, "{reply}");
        assert_eq!(reply.json["error"]["code"], "no-session", "{reply}");
    }
    assert_eq!(
        host.get(&format!("/v1/sessions/{conference}")).json["events"],
        0
    );

    // Its own: everything.
    let own = as_app(
        "POST",
        "/v1/sessions",
        Some(&json!({"service": "webinar-charging", "at": "2026-11-20T14:00:00Z"})),
    );
    assert_eq!(own.status, 201, "{own}");
    let id = own.json["id"].as_str().unwrap_or_default().to_owned();
    let joined = as_app(
        "POST",
        &format!("/v1/sessions/{id}/events"),
        Some(
            &json!({"id": "e1", "type": "join", "participant": "p1", "account_id": "ana",
                     "at": "2026-11-20T14:00:00Z"}),
        ),
    );
    assert_eq!(joined.status, 201, "{joined}");
    assert_eq!(
        as_app("GET", &format!("/v1/sessions/{id}"), None).status,
        200
    );

    // A viewer reads every session and changes none.
    let read = host.call_as(
        Some(&viewer),
        "GET",
        &format!("/v1/sessions/{conference}"),
        None,
    );
    assert_eq!(read.status, 200, "{read}");
    let write = host.call_as(Some(&viewer), "POST", &path, Some(&event));
    assert_eq!(write.status, 403, "{write}");
}

#[test]
fn a_retried_event_is_answered_as_before_and_charged_once() {
    let setup = Setup::new("");
    let host = Arc::new(setup.start());
    account(&host, "ana", "prepaid", 1000);
    account(&host, "ben", "prepaid", 1000);
    let s = open(&host, "conference-split", "2026-11-20T14:00:00Z");
    assert_eq!(
        join(&host, &s, "e1", "p1", "ana", "", "2026-11-20T14:00:00Z").status,
        201
    );
    // 120 s at 10/min = 20, p1 alone.
    let first = join(&host, &s, "e2", "p2", "ben", "", "2026-11-20T14:02:00Z");
    assert_eq!(first.status, 201, "{first}");
    assert_eq!(charges(&first), pairs(&[("p1", 20)]));
    let again = join(&host, &s, "e2", "p2", "ben", "", "2026-11-20T14:02:00Z");
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.json, first.json);

    // Eight clients send the same leave at once: one records it.
    let (session, barrier) = (Arc::new(s.clone()), Arc::new(Barrier::new(8)));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (host, session, barrier) = (host.clone(), session.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                leave(&host, &session, "e3", "p1", "2026-11-20T14:03:00Z")
            })
        })
        .collect();
    let replies: Vec<Reply> = clients
        .into_iter()
        .map(|c| c.join().unwrap_or_else(|_| panic!("a client failed")))
        .collect();
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "{replies:?}");
    assert!(
        replies.iter().all(|r| r.json == created[0].json),
        "{replies:?}"
    );
    // 60 s = 10 between p1 and p2: 5 each.
    assert_eq!(charges(created[0]), pairs(&[("p1", 5), ("p2", 5)]));

    // Charged once: 20 + 5 from ana (two movements), 5 from ben.
    assert_eq!(ledger_sum(&host, "ana"), (1000 - 25, 3));
    assert_eq!(ledger_sum(&host, "ben"), (1000 - 5, 2));
    assert_eq!(settled(&host, "ana"), 975);
    assert_eq!(host.get(&format!("/v1/sessions/{s}")).json["events"], 3);
}

#[test]
fn a_prepaid_balance_pays_what_it_has_and_the_service_is_told_the_rest() {
    let receiver = Receiver::start();
    let setup = Setup::new("");
    let manifest = std::fs::read_to_string(setup.rules_path().join("conference-split.toml"))
        .unwrap()
        .replace(
            "# webhook = \"http://127.0.0.1:9000/events\"",
            &format!("webhook = \"{}\"", receiver.url("/events")),
        );
    setup.write_rules("conference-split.toml", &manifest);
    let host = setup.start();
    account(&host, "low", "prepaid", 12);
    account(&host, "owes", "postpaid", 0);
    let s = open(&host, "conference-split", "2026-11-20T14:00:00Z");
    join(&host, &s, "e1", "p1", "low", "", "2026-11-20T14:00:00Z");
    join(&host, &s, "e2", "p2", "owes", "", "2026-11-20T14:00:00Z");
    // 240 s at 10/min = 40 between two: 20 each. The prepaid balance has
    // 12: charged 12, 8 uncovered; the postpaid account owes 20.
    let out = leave(&host, &s, "e3", "p1", "2026-11-20T14:04:00Z");
    assert_eq!(out.status, 201, "{out}");
    let got: Vec<(i64, i64, i64, i64)> = out.json["charges"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| {
                    let n = |k: &str| c[k].as_i64().unwrap_or(i64::MIN);
                    (
                        n("amount"),
                        n("charged"),
                        n("uncovered"),
                        n("balance_after"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(got, [(20, 12, 8, 0), (20, 20, 0, -20)]);
    assert_eq!(
        (
            &out.json["totals"]["charged"],
            &out.json["totals"]["uncovered"]
        ),
        (&json!(32), &json!(8))
    );
    assert_eq!(settled(&host, "low"), 0);
    assert_eq!(settled(&host, "owes"), -20);

    // The service hears of what was not covered, once.
    let told = wait_for(
        Duration::from_secs(10),
        "a session.uncovered notice",
        || {
            let hooks = receiver.events("/events", "session.uncovered");
            match hooks.as_slice() {
                [one] => Ok(one.body.clone()),
                other => Err(format!("{} notices", other.len())),
            }
        },
    );
    let data = &told["data"];
    assert_eq!(data["session_id"], s.as_str());
    assert_eq!(data["event_id"], "e3");
    assert_eq!(data["account_id"], "low");
    assert_eq!(
        (&data["charged"], &data["uncovered"]),
        (&json!(12), &json!(8))
    );
    assert_eq!(data["service"], "conference-split");

    // The session says so too.
    let view = host.get(&format!("/v1/sessions/{s}"));
    assert_eq!(view.json["totals"]["uncovered"], 8, "{view}");
    let p1 = view.json["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == "p1").cloned())
        .unwrap_or_default();
    assert_eq!(
        p1["totals"],
        json!({"amount": 20, "charged": 12, "uncovered": 8})
    );
}

/// A service whose session plugin (`<name>.wasm`, first a copy of
/// conference-split) has `on_plugin_error = policy`.
fn faulty_service(setup: &Setup, name: &str, policy: &str) {
    std::fs::write(
        setup.plugins_path().join(format!("{name}.wasm")),
        plugin_bytes("conference-split"),
    )
    .unwrap();
    setup.write_rules(
        &format!("{name}.toml"),
        &format!(
            "id = \"{name}\"\n[plugins]\nsession_charging = \"{name}\"\n[limits]\non_plugin_error = \"{policy}\"\n"
        ),
    );
}

#[test]
fn a_plugin_fault_is_a_503_that_stores_nothing_unless_the_last_good_version_answers() {
    let setup = Setup::new("");
    setup.use_own_plugins(&SAMPLE_PLUGINS);
    faulty_service(&setup, "meeting-deny", "deny");
    faulty_service(&setup, "meeting-last-good", "last-good");
    let host = setup.start();
    account(&host, "ana", "postpaid", 0);
    let good = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(plugin_bytes("conference-split")))
    );
    let mut sessions = Vec::new();
    for name in ["meeting-deny", "meeting-last-good"] {
        let s = open(&host, name, "2026-11-20T14:00:00Z");
        assert_eq!(
            join(&host, &s, "e1", "p1", "ana", "", "2026-11-20T14:00:00Z").status,
            201
        );
        // A build that panics on every event goes live (no cases to stop it).
        let upload = host.post_bytes(
            &format!("/v1/plugins/{name}"),
            "application/wasm",
            &plugin_bytes("hostile-panic"),
        );
        assert_eq!(upload.status, 200, "{upload}");
        sessions.push(s);
    }

    // deny: the event is refused with 503 and nothing changes.
    let denied = leave(&host, &sessions[0], "e2", "p1", "2026-11-20T14:01:00Z");
    assert_eq!(denied.status, 503, "{denied}");
    assert_eq!(denied.json["error"]["code"], "plugin-error");
    assert!(
        denied.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("meeting-deny")),
        "{denied}"
    );
    let view = host.get(&format!("/v1/sessions/{}", sessions[0]));
    assert_eq!(view.json["events"], 1, "{view}");
    assert_eq!(view.json["participants"][0]["present"], true);
    assert_eq!(ledger_sum(&host, "ana"), (0, 0));
    // Rolled back, the same event goes through, charged once.
    let back = host.post("/v1/plugins/meeting-deny/rollback", &json!({}));
    assert_eq!(back.status, 200, "{back}");
    let retried = leave(&host, &sessions[0], "e2", "p1", "2026-11-20T14:01:00Z");
    assert_eq!(retried.status, 201, "{retried}");
    assert_eq!(charges(&retried), pairs(&[("p1", 10)]));

    // last-good: the previous version answers, and the event says which.
    let answered = leave(&host, &sessions[1], "e2", "p1", "2026-11-20T14:01:00Z");
    assert_eq!(answered.status, 201, "{answered}");
    assert_eq!(charges(&answered), pairs(&[("p1", 10)]));
    assert_eq!(answered.json["plugin"]["digest"], good.as_str());
    assert_eq!(settled(&host, "ana"), -20);
}

/// 100 participants, 10 in each of 10 sessions, each sending its own join
/// and leave from its own thread: five join at 14:00 and five at 14:03,
/// the first five leave at 14:06 and the others at 14:09:30, each wave at
/// once (all of a wave's events carry the same time, so any order is in
/// order). Per session at 10 a minute: 14:00-14:03 among 5 is 30 (6
/// each), 14:03-14:06 among 10 is 30 (3 each), 14:06-14:09:30 among 5 is
/// 35 (7 each), after that nobody: 95 a session, 950 in all; the first
/// wave pays 9 each, the second 10.
#[test]
fn a_hundred_participants_in_ten_sessions_at_once_are_charged_what_the_durations_say() {
    let setup = Setup::new("");
    let host = Arc::new(setup.start());
    let sessions: Vec<String> = (0..10)
        .map(|k| {
            account(&host, &format!("acct-{k}"), "postpaid", 0);
            open(&host, "conference-split", "2026-11-20T14:00:00Z")
        })
        .collect();
    let barrier = Arc::new(Barrier::new(100));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (host, barrier, failures) = (host.clone(), barrier.clone(), failures.clone());
            let session = sessions[i / 10].clone();
            let account = format!("acct-{}", i / 10);
            std::thread::spawn(move || {
                let who = format!("p{}", i % 10);
                let first_wave = i % 10 < 5;
                let day = |t: &str| format!("2026-11-20T{t}Z");
                let (joins, leaves) = if first_wave {
                    (day("14:00:00"), day("14:06:00"))
                } else {
                    (day("14:03:00"), day("14:09:30"))
                };
                let check = |reply: Reply| {
                    if reply.status != 201 {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(reply.to_string());
                    }
                };
                // Four phases, each wave's events sent at once.
                for phase in 0..4 {
                    barrier.wait();
                    match (phase, first_wave) {
                        (0, true) | (1, false) => check(join(
                            &host,
                            &session,
                            &format!("join-{who}"),
                            &who,
                            &account,
                            "",
                            &joins,
                        )),
                        (2, true) | (3, false) => {
                            check(leave(
                                &host,
                                &session,
                                &format!("leave-{who}"),
                                &who,
                                &leaves,
                            ));
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .unwrap_or_else(|_| panic!("a participant's client failed"));
    }
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(failures.is_empty(), "{failures:?}");
    let mut all = 0;
    for (k, s) in sessions.iter().enumerate() {
        assert_eq!(end(&host, s, "end", "2026-11-20T14:10:00Z").status, 201);
        let view = host.get(&format!("/v1/sessions/{s}"));
        assert_eq!(view.json["events"], 21, "{view}");
        assert_eq!(view.json["totals"]["amount"], 95, "{view}");
        let expected: Vec<(String, i64)> = (0..10)
            .map(|p| (format!("p{p}"), if p < 5 { 9 } else { 10 }))
            .collect();
        assert_eq!(per_participant(&view.json), expected);
        assert_eq!(settled(&host, &format!("acct-{k}")), -95);
        all += view.json["totals"]["charged"].as_i64().unwrap_or(0);
    }
    assert_eq!(all, 950);
}

/// Events from eight clients, one session each, the host killed with
/// SIGKILL while they run (`sync = "normal"`, the weaker promise): every
/// event answered before the kill is there with the same answer; after a
/// restart every event is sent again, the rest are recorded once each, and
/// the charges are what the sessions' durations say.
///
/// Each session: p1..p5 join a minute apart from 14:00, leave a minute
/// apart from 14:05, the session ends at 14:10. Every minute from 14:00 to
/// 14:09 has someone present: 9 minutes at 10 = 90 a session, 720 in all,
/// in 1+2+3+4+5+4+3+2+1 = 25 charges a session, none of them 0.
#[test]
fn kill_9_between_events_loses_nothing_and_charges_nothing_twice() {
    let setup = Setup::new("");
    setup.write_config("[store]\nsync = \"normal\"\n");
    let host = setup.start();
    account(&host, "kit", "postpaid", 0);
    let sessions: Vec<String> = (0..8)
        .map(|_| open(&host, "conference-split", "2026-11-20T14:00:00Z"))
        .collect();
    // (path, body) of each session's events, in order.
    let script = |session: &str| -> Vec<(String, Value)> {
        let events = format!("/v1/sessions/{session}/events");
        let mut script = Vec::new();
        for p in 1..=5 {
            script.push((
                events.clone(),
                json!({"id": format!("j{p}"), "type": "join", "participant": format!("p{p}"),
                       "account_id": "kit", "at": format!("2026-11-20T14:0{}:00Z", p - 1)}),
            ));
        }
        for p in 1..=5 {
            script.push((
                events.clone(),
                json!({"id": format!("l{p}"), "type": "leave", "participant": format!("p{p}"),
                       "at": format!("2026-11-20T14:0{}:00Z", p + 4)}),
            ));
        }
        script.push((
            format!("/v1/sessions/{session}/end"),
            json!({"id": "end", "at": "2026-11-20T14:10:00Z"}),
        ));
        script
    };
    let answered: Arc<Mutex<Vec<(String, Value, Value)>>> = Arc::default();
    let clients: Vec<_> = sessions
        .iter()
        .map(|s| {
            let base = host.base().to_owned();
            let bearer = format!("Bearer {}", host.token().unwrap_or_default());
            let (answered, script) = (answered.clone(), script(s));
            std::thread::spawn(move || {
                let agent = ureq::agent();
                for (path, body) in script {
                    let Ok(mut reply) = agent
                        .post(&format!("{base}{path}"))
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .send(body.to_string())
                    else {
                        return; // the host is gone
                    };
                    let text = reply.body_mut().read_to_string().unwrap_or_default();
                    let Ok(json) = serde_json::from_str::<Value>(&text) else {
                        return;
                    };
                    assert!(json["charges"].is_array(), "{path}: {text}");
                    answered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((path, body, json));
                }
            })
        })
        .collect();
    // Killed once some are answered, while the others are in flight.
    crate::server::wait_until(Duration::from_secs(30), || {
        answered.lock().unwrap_or_else(|e| e.into_inner()).len() >= 12
    });
    host.kill9();
    for client in clients {
        client.join().unwrap_or_else(|_| panic!("a client failed"));
    }
    let answered = answered.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let total: usize = sessions.len() * 11;
    assert!(
        !answered.is_empty() && answered.len() < total,
        "the kill came at the wrong moment: {}",
        answered.len()
    );

    let host = setup.start();
    // Every answered event is there, answered as before.
    for (path, body, first) in &answered {
        let again = host.post(path, body);
        assert_eq!(
            again.status, 200,
            "{path} {body} was answered before the kill: {again}"
        );
        assert_eq!(&again.json, first, "{path} {body}");
    }
    // The rest, sent again in order: each recorded once.
    for s in &sessions {
        for (path, body) in script(s) {
            let reply = host.post(&path, &body);
            assert!(
                reply.status == 201 || reply.status == 200,
                "{path} {body}: {reply}"
            );
        }
        let view = host.get(&format!("/v1/sessions/{s}"));
        assert_eq!(view.json["status"], "ended", "{view}");
        assert_eq!(view.json["events"], 11, "{view}");
        assert_eq!(view.json["totals"]["amount"], 90, "{view}");
    }
    let (sum, movements) = ledger_sum(&host, "kit");
    assert_eq!((sum, movements), (-720, 8 * 25));
    assert_eq!(balance(&host, "kit"), -720);
}
