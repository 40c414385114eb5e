//! One communication in process: `Plans::authorize` (the account, its PIN,
//! balance and counters read; the plan chosen; the plan-policy plugin's
//! reset and restriction calls; the communication recorded) and
//! `Plans::complete` (rated, debited, its detail record written), on the
//! sample rules (`standard` plan, the `prepaid-calling` plugin) and a
//! SQLite file, a hundred callers in turn; and one busy caller whose week
//! of uses (up to 1000) goes to the plugin on every call. Compare with
//! `check/plugin` in the same run: a communication is two fsynced commits.

use criterion::Criterion;
use rulehost::contract::{AccountStatus, Billing, Properties};
use rulehost::entitlement::AccountInput;
use rulehost::ledger::{self, OsRandom};
use rulehost::plans::{AuthorizeRequest, Authorized, CompleteRequest};
use rulehost::store;

/// Callers taken in turn, so that each has a realistic handful of uses
/// in the plan's week (the busy caller has them all).
const CALLERS: usize = 100;

pub fn communications(c: &mut Criterion) {
    let host = crate::check::host();
    let ids: Vec<String> = (0..CALLERS).map(|n| format!("bench-caller-{n}")).collect();
    for id in &ids {
        let row = AccountInput {
            status: AccountStatus::Active,
            paid_up: true,
            tier: "standard".into(),
            contract_end: None,
            contact: None,
            attributes: Properties::default(),
            group: String::new(),
            pin: None,
            billing: Billing::Prepaid,
        }
        .into_row(id, store::now_ms());
        host.store
            .write(|tx| {
                store::entitlement::put_account(tx, &row)?;
                ledger::set_pin(tx, id, "1234", &mut OsRandom)?;
                ledger::topup(tx, id, 1_000_000_000_000, "bench", store::now_ms())?;
                Ok::<_, ledger::LedgerError>(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let request = |caller: &str| AuthorizeRequest {
        account_id: caller.into(),
        pin: "1234".into(),
        access_method: "8005550100".into(),
        destination: "12125550199".into(),
        at: None,
        carrier: String::new(),
        attributes: Properties::default(),
    };
    let plans = &host.plans;
    let call = |caller: &str| {
        let Authorized::Plan { id, .. } = plans
            .authorize(request(caller))
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("the standard plan is not restricted")
        };
        plans
            .complete(
                &id,
                CompleteRequest {
                    duration_secs: 60,
                    answered: true,
                },
            )
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut turn = 0;
    c.bench_function("communication/authorize+complete", |b| {
        b.iter(|| {
            turn = (turn + 1) % CALLERS;
            call(&ids[turn])
        })
    });
    // One caller with every use of the week (up to the 1000 given to the plugin).
    c.bench_function("communication/busy-caller", |b| b.iter(|| call(&ids[0])));
}
