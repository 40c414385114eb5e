//! One communication in process: `Plans::authorize` (the account, its PIN,
//! balance and counters read; the plan chosen; the plan-policy plugin's
//! reset and restriction calls; the communication recorded) and
//! `Plans::complete` (rated, debited, its detail record written), on the
//! sample rules (`standard` plan, the `prepaid-calling` plugin) and a
//! SQLite file. Compare with `check/plugin` in the same run.

use criterion::Criterion;
use rulehost::contract::{AccountStatus, Billing, Properties};
use rulehost::entitlement::AccountInput;
use rulehost::ledger::{self, OsRandom};
use rulehost::plans::{AuthorizeRequest, Authorized, CompleteRequest};
use rulehost::store;

const CALLER: &str = "bench-caller";

pub fn communications(c: &mut Criterion) {
    let host = crate::check::host();
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
    .into_row(CALLER, store::now_ms());
    host.store
        .write(|tx| {
            store::entitlement::put_account(tx, &row)?;
            ledger::set_pin(tx, CALLER, "1234", &mut OsRandom)?;
            ledger::topup(tx, CALLER, 1_000_000_000_000, "bench", store::now_ms())?;
            Ok::<_, ledger::LedgerError>(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let request = || AuthorizeRequest {
        account_id: CALLER.into(),
        pin: "1234".into(),
        access_method: "8005550100".into(),
        destination: "12125550199".into(),
        at: None,
        carrier: String::new(),
        attributes: Properties::default(),
    };
    let plans = &host.plans;
    c.bench_function("communication/authorize+complete", |b| {
        b.iter(|| {
            let Authorized::Plan { id, .. } =
                plans.authorize(request()).unwrap_or_else(|e| panic!("{e}"))
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
        })
    });
}
