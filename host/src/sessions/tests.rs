//! The session manager on an in-memory store, with the charging rule
//! written in Rust (the real plugins are tested end to end in
//! `tests/e2e/sessions.rs`): what one event records, replays, every
//! refusal, a prepaid balance running out, and an event decided again when
//! its session changed under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use serde_json::json;

use super::charging::Charges;
use super::event::{Answered, Asked, Change, Charger};
use super::*;
use crate::contract::{Billing, Charge, OnEventInput};
use crate::ledger;
use crate::store::entitlement::{AccountRow, put_account};
use crate::store::outbox;

/// 2026-11-20T14:00:00Z, in seconds.
const T: i64 = 1_795_183_200;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T + secs).unwrap()
}

/// conference-split's rule at 10 a minute: the interval since the last
/// event split among those present, one unit more each to the earliest
/// joined for the remainder.
struct Split;

impl Charger for Split {
    fn charges(
        &self,
        _service: &str,
        input: OnEventInput,
    ) -> Result<(Charges, Option<String>), SessionsError> {
        let secs = input.event.at.as_second() - input.session.last_event_at.as_second();
        let present = &input.session.participants;
        let n = present.len() as i64;
        let mut charges = Vec::new();
        if secs > 0 && n > 0 {
            let cost = 10 * secs / 60;
            for (i, p) in present.iter().enumerate() {
                charges.push(Charge {
                    participant: p.id.clone(),
                    account_id: p.account_id.clone(),
                    amount: cost / n + i64::from((i as i64) < cost % n),
                    description: format!("{secs} s"),
                    period_start: input.session.last_event_at,
                    period_end: input.event.at,
                });
            }
        }
        Ok((
            Charges {
                charges,
                plugin: "split".into(),
                digest: "native".into(),
            },
            Some("http://127.0.0.1:9/hook".into()),
        ))
    }
}

/// A charger from a closure.
struct With<F>(F);

type Answer = Result<(Charges, Option<String>), SessionsError>;

fn with<F: Fn(&str, OnEventInput) -> Answer>(f: F) -> With<F> {
    With(f)
}

impl<F> Charger for With<F>
where
    F: Fn(&str, OnEventInput) -> Result<(Charges, Option<String>), SessionsError>,
{
    fn charges(
        &self,
        service: &str,
        input: OnEventInput,
    ) -> Result<(Charges, Option<String>), SessionsError> {
        (self.0)(service, input)
    }
}

fn account(id: &str, billing: Billing) -> AccountRow {
    AccountRow::for_test(id, billing.as_str())
}

/// Sessions on an in-memory store with accounts `pre` (prepaid, 1000),
/// `post` (postpaid) and `poor` (prepaid, 12), and session `ses_1` of
/// `conference-split` started at `T`.
fn sessions() -> Sessions {
    let store = Store::in_memory().unwrap();
    store
        .write(|tx| {
            put_account(tx, &account("pre", Billing::Prepaid))?;
            put_account(tx, &account("post", Billing::Postpaid))?;
            put_account(tx, &account("poor", Billing::Prepaid))?;
            ledger::topup(tx, "pre", 1000, "opening", 1)?;
            ledger::topup(tx, "poor", 12, "opening", 1)?;
            q::insert_session(tx, &session_row("ses_1"))?;
            Ok::<_, LedgerError>(())
        })
        .unwrap();
    let registry = Arc::new(ArcSwap::from_pointee(Registry::default()));
    Sessions::new(store, registry, Arc::new(Signal::default()))
}

fn session_row(id: &str) -> SessionRow {
    SessionRow {
        id: id.into(),
        service: "conference-split".into(),
        attributes: json!({"topic": "review"}),
        started_at: T * 1000,
        ended_at: None,
        last_event_at: T * 1000,
        events: 0,
        version: 0,
        created_at: 1,
    }
}

fn join(id: &str, participant: &str, account: &str, secs: i64) -> Asked {
    Asked {
        id: id.into(),
        change: Change::Join {
            participant: participant.into(),
            account_id: account.into(),
            attributes: Properties::default(),
        },
        at: Some(at(secs)),
    }
}

fn leave(id: &str, participant: &str, secs: i64) -> Asked {
    Asked {
        id: id.into(),
        change: Change::Leave {
            participant: participant.into(),
        },
        at: Some(at(secs)),
    }
}

fn end(id: &str, secs: i64) -> Asked {
    Asked {
        id: id.into(),
        change: Change::End,
        at: Some(at(secs)),
    }
}

fn send(s: &Sessions, asked: Asked) -> Result<Answered, SessionsError> {
    s.apply("ses_1", asked, &Split)
}

/// (participant, amount, charged, uncovered) of each charge.
fn charged(a: &Answered) -> Vec<(String, i64, i64, i64)> {
    a.answer
        .event
        .charges
        .iter()
        .map(|c| (c.participant.clone(), c.amount, c.charged, c.uncovered))
        .collect()
}

fn balance(s: &Sessions, account: &str) -> i64 {
    s.store()
        .read(|c| crate::store::ledger::balance(c, account))
        .unwrap()
        .unwrap()
}

fn ledger_sum(s: &Sessions, account: &str) -> i64 {
    s.store()
        .read(|c| crate::store::ledger::sum_of_ledger(c, account))
        .unwrap()
}

fn version(s: &Sessions) -> i64 {
    s.store()
        .read(|c| q::get_session(c, "ses_1"))
        .unwrap()
        .unwrap()
        .version
}

fn c4(p: &str, amount: i64, charged: i64, uncovered: i64) -> (String, i64, i64, i64) {
    (p.to_owned(), amount, charged, uncovered)
}

#[test]
fn each_event_charges_those_present_on_their_ledgers_and_the_session_adds_up() {
    let s = sessions();
    // Alone at first: nobody was present before, nothing to charge.
    let first = send(&s, join("e1", "p1", "pre", 0)).unwrap();
    assert!(first.answer.event.charges.is_empty());
    assert_eq!(first.answer.event.seq, 1);
    // 60 s at 10/min = 10, all p1's.
    let second = send(&s, join("e2", "p2", "post", 60)).unwrap();
    assert_eq!(charged(&second), [c4("p1", 10, 10, 0)]);
    assert_eq!(
        second.answer.event.charges[0].reference,
        "session:ses_1:e2:p1"
    );
    assert_eq!(second.answer.event.charges[0].balance_after, 990);
    // 90 s = 15 between two: 8 to p1 (joined first), 7 to p2.
    let third = send(&s, leave("e3", "p1", 150)).unwrap();
    assert_eq!(charged(&third), [c4("p1", 8, 8, 0), c4("p2", 7, 7, 0)]);
    assert_eq!(third.answer.event.totals.amount, 15);
    // 60 s = 10, p2 alone; the end leaves everyone.
    let last = send(&s, end("e4", 210)).unwrap();
    assert_eq!(charged(&last), [c4("p2", 10, 10, 0)]);
    assert_eq!(last.answer.event.kind, "end");

    let view = s.session("ses_1").unwrap().unwrap();
    assert_eq!(view.status, "ended");
    assert_eq!(view.events, 4);
    assert_eq!(view.ended_at.as_deref(), Some("2026-11-20T14:03:30Z"));
    let per: Vec<(&str, i64, bool)> = view
        .participants
        .iter()
        .map(|p| (p.id.as_str(), p.totals.amount, p.present))
        .collect();
    assert_eq!(per, [("p1", 18, false), ("p2", 17, false)]);
    assert_eq!(view.totals.amount, 35);
    assert_eq!(view.totals.charged, 35);
    // Balances are the sums of their ledgers: p1 on prepaid, p2 owes.
    assert_eq!(balance(&s, "pre"), 1000 - 18);
    assert_eq!(ledger_sum(&s, "pre"), 1000 - 18);
    assert_eq!(balance(&s, "post"), -17);
    assert_eq!(ledger_sum(&s, "post"), -17);

    let page = s.events("ses_1", 0, 2).unwrap().unwrap();
    let ids: Vec<&str> = page.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!((ids, page.next), (vec!["e1", "e2"], Some(2)));
    let rest = s.events("ses_1", 2, 10).unwrap().unwrap();
    assert_eq!(rest.events.len(), 2);
    assert_eq!(rest.next, None);
    assert_eq!(rest.events[0].charges.len(), 2);
    assert_eq!(rest.events[0], third.answer.event);
    assert_eq!(s.stats.events.load(Ordering::Relaxed), 4);
}

#[test]
fn a_replay_is_answered_as_before_and_charges_once() {
    let s = sessions();
    send(&s, join("e1", "p1", "pre", 0)).unwrap();
    let first = send(&s, join("e2", "p2", "pre", 60)).unwrap();
    assert!(!first.replayed);
    let again = send(&s, join("e2", "p2", "pre", 60)).unwrap();
    assert!(again.replayed);
    assert_eq!(again.answer, first.answer);
    assert_eq!(balance(&s, "pre"), 990);
    // Other content under the same id: refused, nothing changes.
    let other = send(&s, join("e2", "p2", "pre", 90)).unwrap_err();
    assert_eq!(other.code(), "event-id-reused");
    let other = send(&s, leave("e2", "p2", 60)).unwrap_err();
    assert_eq!(other.code(), "event-id-reused");
    assert_eq!(balance(&s, "pre"), 990);
    assert_eq!(version(&s), 2);
    // An event sent without a time is the same event when retried.
    let untimed = || Asked {
        at: None,
        ..leave("e3", "p1", 0)
    };
    let first = send(&s, untimed()).unwrap();
    let again = send(&s, untimed()).unwrap();
    assert!(again.replayed);
    assert_eq!(again.answer, first.answer);
    assert_eq!(version(&s), 3);
}

#[test]
fn refusals_store_nothing() {
    let s = sessions();
    send(&s, join("e1", "p1", "pre", 0)).unwrap();
    send(&s, join("e2", "p2", "post", 60)).unwrap();
    let before = (version(&s), balance(&s, "pre"), balance(&s, "post"));
    let refused = [
        (join("x1", "p1", "pre", 90), "already-present"),
        (leave("x2", "p9", 90), "not-present"),
        (join("x3", "p3", "nobody", 90), "no-account"),
        (leave("x4", "p1", 30), "out-of-order"),
    ];
    for (asked, code) in refused {
        let got = send(&s, asked).unwrap_err();
        assert_eq!(got.code(), code, "{got}");
    }
    let unknown = s.apply("ses_none", leave("x5", "p1", 90), &Split);
    assert_eq!(unknown.unwrap_err().code(), "no-session");
    // The plugin's own refusal or fault: nothing changes either.
    let faulty = with(|_, _| Err(SessionsError::Plugin("trapped".into())));
    let got = s.apply("ses_1", leave("x6", "p1", 90), &faulty);
    assert_eq!(got.unwrap_err().code(), "plugin-error");
    assert_eq!(
        before,
        (version(&s), balance(&s, "pre"), balance(&s, "post"))
    );
    // The ids refused were never recorded: each is free for a real event.
    send(&s, leave("x2", "p1", 90)).unwrap();
    send(&s, end("end", 120)).unwrap();
    let ended = send(&s, join("x7", "p1", "pre", 180)).unwrap_err();
    assert_eq!(ended.code(), "session-ended");
    let ended = send(&s, end("end-2", 180)).unwrap_err();
    assert_eq!(ended.code(), "session-ended");
}

#[test]
fn requests_are_checked_before_anything_is_read() {
    let bad_id = EventRequest {
        id: "e:1".into(),
        kind: EventType::Leave,
        participant: "p1".into(),
        account_id: None,
        attributes: None,
        at: None,
    };
    assert_eq!(
        Asked::try_from(bad_id.clone()).unwrap_err().code(),
        "invalid"
    );
    let long = EventRequest {
        participant: "p".repeat(MAX_NAME + 1),
        id: "e1".into(),
        ..bad_id.clone()
    };
    assert_eq!(Asked::try_from(long).unwrap_err().code(), "invalid");
    let leave_with_account = EventRequest {
        id: "e1".into(),
        account_id: Some("pre".into()),
        ..bad_id.clone()
    };
    assert_eq!(
        Asked::try_from(leave_with_account).unwrap_err().code(),
        "invalid"
    );
    let join_without = EventRequest {
        id: "e1".into(),
        kind: EventType::Join,
        ..bad_id
    };
    assert_eq!(Asked::try_from(join_without).unwrap_err().code(), "invalid");
    let end = EndRequest {
        id: "".into(),
        at: None,
    };
    assert_eq!(Asked::try_from(end).unwrap_err().code(), "invalid");
}

#[test]
fn content_is_canonical() {
    let a: EventRequest = serde_json::from_value(json!({"id": "e1", "type": "join",
        "participant": "p1", "account_id": "pre", "attributes": {"b": "2", "a": 1},
        "at": "2026-11-20T15:00:00+01:00"}))
    .unwrap();
    let b: EventRequest = serde_json::from_value(json!({"at": "2026-11-20T14:00:00Z",
        "attributes": {"a": "1", "b": 2}, "account_id": "pre", "participant": "p1",
        "type": "join", "id": "e1"}))
    .unwrap();
    let (a, b) = (Asked::try_from(a).unwrap(), Asked::try_from(b).unwrap());
    assert_eq!(a.content(), b.content());
    assert_eq!(
        a.content(),
        r#"{"type":"join","participant":"p1","account_id":"pre","attributes":{"a":"1","b":"2"},"at":"2026-11-20T14:00:00Z"}"#
    );
}

#[test]
fn a_prepaid_balance_pays_what_it_has_and_the_service_is_told_the_rest() {
    let s = sessions();
    send(&s, join("e1", "p1", "poor", 0)).unwrap();
    // 120 s = 20 from a balance of 12: 12 taken, 8 uncovered.
    let out = send(&s, leave("e2", "p1", 120)).unwrap();
    assert_eq!(charged(&out), [c4("p1", 20, 12, 8)]);
    assert_eq!(out.answer.event.charges[0].balance_after, 0);
    assert_eq!(balance(&s, "poor"), 0);
    assert_eq!(ledger_sum(&s, "poor"), 0);
    let notices = s
        .store()
        .read(|c| outbox::list(c, Some("pending"), 10))
        .unwrap();
    let uncovered: Vec<_> = notices
        .iter()
        .filter(|n| n.kind == "session.uncovered")
        .collect();
    assert_eq!(uncovered.len(), 1);
    let data = &uncovered[0].payload["data"];
    assert_eq!(
        (&data["account_id"], &data["uncovered"], &data["charged"]),
        (&json!("poor"), &json!(8), &json!(12))
    );
    assert_eq!(
        uncovered[0].target.as_deref(),
        Some("http://127.0.0.1:9/hook")
    );
    // Joining again with nothing on the balance: charged 0, all uncovered.
    send(&s, join("e3", "p1", "poor", 120)).unwrap();
    let out = send(&s, end("e4", 180)).unwrap();
    assert_eq!(charged(&out), [c4("p1", 10, 0, 10)]);
    let view = s.session("ses_1").unwrap().unwrap();
    assert_eq!(
        (
            view.totals.amount,
            view.totals.charged,
            view.totals.uncovered
        ),
        (30, 12, 18)
    );
}

#[test]
fn two_charges_to_one_participant_in_one_event_are_two_movements() {
    let s = sessions();
    send(&s, join("e1", "p1", "pre", 0)).unwrap();
    let twice = with(|_, input| {
        let p = &input.session.participants[0];
        let charge = |amount| Charge {
            participant: p.id.clone(),
            account_id: p.account_id.clone(),
            amount,
            description: String::new(),
            period_start: input.session.last_event_at,
            period_end: input.event.at,
        };
        Ok((
            Charges {
                charges: vec![charge(3), charge(4), charge(0)],
                plugin: "twice".into(),
                digest: "native".into(),
            },
            None,
        ))
    });
    let out = s.apply("ses_1", leave("e2", "p1", 60), &twice).unwrap();
    let references: Vec<&str> = out
        .answer
        .event
        .charges
        .iter()
        .map(|c| c.reference.as_str())
        .collect();
    assert_eq!(
        references,
        [
            "session:ses_1:e2:p1",
            "session:ses_1:e2:p1:2",
            "session:ses_1:e2:p1:3"
        ]
    );
    assert_eq!(balance(&s, "pre"), 993);
    // Two movements: the charge of 0 records none.
    let movements = s
        .store()
        .read(|c| crate::store::ledger::movements(c, "pre", None, 100))
        .unwrap();
    assert_eq!(movements.len(), 3);
}

#[test]
fn an_event_whose_session_changed_meanwhile_is_decided_again() {
    let s = sessions();
    send(&s, join("e1", "p1", "pre", 0)).unwrap();
    // Another host records an event while this one decides (once).
    let calls = AtomicUsize::new(0);
    let racing = with(|service, input| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            s.store()
                .write(|tx| q::advance(tx, "ses_1", 1, (T + 30) * 1000, None))
                .unwrap();
        }
        Split.charges(service, input)
    });
    let out = s.apply("ses_1", leave("e2", "p1", 60), &racing).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.stats.redecided.load(Ordering::Relaxed), 1);
    // Decided again on the state as it is now: the last event at +30 s.
    assert_eq!(
        out.answer.event.charges[0].period_start,
        "2026-11-20T14:00:30Z"
    );
    assert_eq!(out.answer.event.seq, 3);

    // A session that changes every time: a conflict, and nothing of it stored.
    send(&s, join("e3", "p1", "pre", 60)).unwrap();
    let always = with(|service, input| {
        let now = s
            .store()
            .read(|c| q::get_session(c, "ses_1"))
            .unwrap()
            .unwrap();
        s.store()
            .write(|tx| q::advance(tx, "ses_1", now.version, now.last_event_at, None))
            .unwrap();
        Split.charges(service, input)
    });
    let got = s.apply("ses_1", leave("e4", "p1", 120), &always);
    assert_eq!(got.unwrap_err().code(), "conflict");
    assert_eq!(s.stats.conflicts.load(Ordering::Relaxed), 1);
    let recorded = s
        .store()
        .read(|c| q::event_by_id(c, "ses_1", "e4"))
        .unwrap();
    assert!(recorded.is_none());
}

#[test]
fn participants_join_again_after_leaving() {
    let s = sessions();
    send(&s, join("e1", "p1", "pre", 0)).unwrap();
    send(&s, leave("e2", "p1", 60)).unwrap();
    send(&s, join("e3", "p1", "post", 120)).unwrap();
    let out = send(&s, leave("e4", "p1", 180)).unwrap();
    // The second stay is charged to the account it joined with.
    assert_eq!(out.answer.event.charges[0].account_id, "post");
    let view = s.session("ses_1").unwrap().unwrap();
    assert_eq!(view.participants.len(), 1);
    assert_eq!(view.participants[0].totals.amount, 20);
    assert_eq!(view.participants[0].joined_at, "2026-11-20T14:02:00Z");
    assert_eq!(balance(&s, "pre"), 990);
    assert_eq!(balance(&s, "post"), -10);
}
