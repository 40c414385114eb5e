//! One session event in process: `Sessions::event` (the session's state
//! read, the `conference-split` plugin called with it, the event, the
//! change of who is present and the charges recorded with their ledger
//! movements in one write) on the sample rules and a SQLite file. Each
//! event is a join or a leave of a second participant beside one who stays,
//! timed so that each makes exactly one debit: a join a minute after the
//! last event charges the one present 10; a leave 6 s after the join
//! charges 1 between the two, all of it to the earlier (the other's share
//! of 0 moves no money). Compare with `check/plugin` in the same run.

use criterion::Criterion;
use jiff::Timestamp;
use rulehost::contract::{AccountStatus, Billing, Properties};
use rulehost::entitlement::AccountInput;
use rulehost::ledger;
use rulehost::sessions::{EventRequest, EventType, OpenRequest};
use rulehost::store;

const PAYER: &str = "bench-session";

pub fn events(c: &mut Criterion) {
    let host = crate::check::host();
    let row = AccountInput {
        status: AccountStatus::Active,
        paid_up: true,
        tier: String::new(),
        contract_end: None,
        contact: None,
        attributes: Properties::default(),
        group: String::new(),
        pin: None,
        billing: Billing::Prepaid,
    }
    .into_row(PAYER, store::now_ms());
    host.store
        .write(|tx| {
            store::entitlement::put_account(tx, &row)?;
            ledger::topup(tx, PAYER, i64::MAX / 2, "bench", store::now_ms())?;
            Ok::<_, ledger::LedgerError>(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let start = Timestamp::from_second(1_795_183_200).unwrap_or_else(|e| panic!("{e}"));
    let sessions = &host.sessions;
    let session = sessions
        .open(OpenRequest {
            service: "conference-split".into(),
            attributes: Properties::default(),
            at: Some(start),
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let event = |n: u64, kind: EventType, participant: &str, secs: i64| EventRequest {
        id: format!("e{n}"),
        kind,
        participant: participant.into(),
        account_id: (kind == EventType::Join).then(|| PAYER.into()),
        attributes: None,
        at: Some(start + jiff::SignedDuration::from_secs(secs)),
    };
    sessions
        .event(&session, event(0, EventType::Join, "stays", 0))
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut n, mut secs) = (0u64, 0i64);
    c.bench_function("session/event", |b| {
        b.iter(|| {
            n += 1;
            let (kind, step) = if n % 2 == 1 {
                (EventType::Join, 60)
            } else {
                (EventType::Leave, 6)
            };
            secs += step;
            let answered = sessions
                .event(&session, event(n, kind, "comes-and-goes", secs))
                .unwrap_or_else(|e| panic!("{e}"));
            debug_assert_eq!(
                answered
                    .answer
                    .event
                    .charges
                    .iter()
                    .filter(|c| c.charged > 0)
                    .count(),
                1
            );
            answered
        })
    });
}
