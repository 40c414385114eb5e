//! One full in-process check (`Entitlement::check`: the account and held
//! request read, the verifier, the decision log and the request written and
//! committed) on a SQLite file, with the rule as the `support-contract`
//! plugin and as the same crate compiled natively; a check that starts a
//! reconciliation; and one flow step (a manual task completed, the next one
//! opened).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion};
use rulehost::contract::{
    AccountStatus, Contact, Context, Failure, FailureCode, Properties, Verdict, VerifyInput,
};
use rulehost::entitlement::{
    self, AccountInput, CheckRequest, Entitlement, NativeVerifier, Settings,
};
use rulehost::flow::{Definition, FlowEngine, Roles};
use rulehost::notify::Signal;
use rulehost::plans::Plans;
use rulehost::registry::{Live, Sources};
use rulehost::runtime::{Runtime, RuntimeOptions};
use rulehost::sessions::Sessions;
use rulehost::store::{self, Store, StoreError};
use rulehost_sdk::Verifier as _;

/// The `support-contract` crate itself, behind the host's native-rule seam.
/// Converting the host's types to the SDK's is part of its cost, as lifting
/// them into the guest is part of the plugin's.
struct NativeSupportContract;

impl NativeVerifier for NativeSupportContract {
    fn name(&self) -> &str {
        "support-contract-native"
    }

    fn verify(&self, ctx: &Context, input: &VerifyInput) -> Result<Verdict, String> {
        use rulehost_sdk::types as t;
        let props = |p: &Properties| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let mut sdk_ctx = t::Context::new(ctx.service.clone(), ctx.now.as_second());
        sdk_ctx.config = props(&ctx.config);
        let request = t::ServiceRequest {
            id: input.request.id.clone(),
            account_id: input.request.account_id.clone(),
            description: input.request.description.clone(),
            attributes: props(&input.request.attributes),
        };
        let account = input.account.as_ref().map(|a| t::Account {
            id: a.id.clone(),
            status: match a.status {
                AccountStatus::Active => t::AccountStatus::Active,
                AccountStatus::Expired => t::AccountStatus::Expired,
                AccountStatus::Suspended => t::AccountStatus::Suspended,
            },
            paid_up: a.paid_up,
            tier: a.tier.clone(),
            contract_end: a.contract_end.map(|end| end.as_second()),
            contact: None,
            attributes: props(&a.attributes),
        });
        let verdict =
            support_contract::SupportContract::verify(&sdk_ctx, &request, account.as_ref())
                .map_err(|e| e.to_string())?;
        Ok(match verdict {
            t::Verdict::Pass(level) => Verdict::Pass { level },
            t::Verdict::Fail(f) => Verdict::Fail(Failure {
                code: match f.code {
                    t::FailureCode::NoAccount => FailureCode::NoAccount,
                    t::FailureCode::Expired => FailureCode::Expired,
                    t::FailureCode::Unpaid => FailureCode::Unpaid,
                    t::FailureCode::PaymentPerIncident => FailureCode::PaymentPerIncident,
                    t::FailureCode::NeedsAuthorization => FailureCode::NeedsAuthorization,
                    t::FailureCode::Other => FailureCode::Other,
                },
                reason: f.reason,
            }),
        })
    }
}

/// Two manual steps: completing the first opens the second.
const REVIEW: &str = r#"
description = "a review in two steps"

[[tasks]]
name = "first look"
kind = "manual"
role = "network-provider"

[[tasks]]
name = "second look"
kind = "manual"
role = "network-provider"
"#;

pub(crate) struct Host {
    _dir: tempfile::TempDir,
    _live: Live,
    pub store: Store,
    engine: Arc<FlowEngine>,
    entitlement: Arc<Entitlement>,
    pub plans: Arc<Plans>,
    pub sessions: Arc<Sessions>,
}

pub(crate) fn host() -> Host {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&dir.path().join("bench.db")).unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let sources = Sources {
        rules_dir: repo.join("rules"),
        plugins_dir: repo.join("plugins/dist"),
    };
    let (live, problems) =
        Live::start(runtime, sources, store.clone()).unwrap_or_else(|e| panic!("{e}"));
    if let Some(problem) = problems.iter().find(|d| d.is_error()) {
        panic!("{problem} (run `cargo xtask plugins` first)");
    }
    let review =
        Definition::parse(Path::new("review.toml"), REVIEW).unwrap_or_else(|e| panic!("{e}"));
    let definitions = BTreeMap::from([(review.name.clone(), review)]);
    let signal = Arc::new(Signal::default());
    let mut engine = FlowEngine::new(
        store.clone(),
        definitions,
        Roles::load(&repo.join("rules")).unwrap_or_else(|e| panic!("{e}")),
        signal.clone(),
    );
    let installed = entitlement::install(
        &mut engine,
        store.clone(),
        live.registry(),
        Settings::default(),
    );
    let engine = Arc::new(engine);
    let entitlement = Arc::new(Entitlement::new(installed, engine.clone(), signal.clone()));
    let accounts = [
        ("bench-active", AccountStatus::Active, None),
        (
            "bench-expired",
            AccountStatus::Expired,
            Some(Contact {
                name: "Ops".into(),
                email: "ops@example.com".into(),
            }),
        ),
    ];
    for (id, status, contact) in accounts {
        let row = AccountInput {
            status,
            paid_up: true,
            tier: "standard".into(),
            contract_end: None,
            contact,
            attributes: Properties::default(),
            group: String::new(),
            billing: rulehost::ledger::Billing::Prepaid,
            pin: None,
        }
        .into_row(id, store::now_ms());
        store
            .write(|tx| store::entitlement::put_account(tx, &row))
            .unwrap_or_else(|e: StoreError| panic!("{e}"));
    }
    let plans = Arc::new(Plans::new(
        store.clone(),
        live.registry(),
        rulehost::plans::Settings::default(),
    ));
    let sessions = Arc::new(Sessions::new(store.clone(), live.registry(), signal));
    Host {
        _dir: dir,
        _live: live,
        store,
        engine,
        entitlement,
        plans,
        sessions,
    }
}

fn request(account: &str) -> CheckRequest {
    CheckRequest {
        service: "support-contract".into(),
        account_id: account.into(),
        request_id: None,
        attributes: Properties::default(),
        description: "printer on fire".into(),
    }
}

pub fn checks(c: &mut Criterion) {
    let host = host();
    let ent = &host.entitlement;
    let plugin = ent
        .check(request("bench-active"))
        .unwrap_or_else(|e| panic!("{e}"));
    let native = ent
        .check_native(request("bench-active"), &NativeSupportContract)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (plugin.decision, &plugin.level),
        (native.decision, &native.level),
        "the plugin and the native rule must agree"
    );
    c.bench_function("check/plugin", |b| {
        b.iter(|| ent.check(request("bench-active")).map(|r| r.decision))
    });
    c.bench_function("check/native-rule", |b| {
        b.iter(|| {
            ent.check_native(request("bench-active"), &NativeSupportContract)
                .map(|r| r.decision)
        })
    });

    // What the HTTP API runs: checks queued together share one commit.
    // 16 always in flight (one starts as one ends); the figure is the time
    // per check.
    let grouped = crate::check::host();
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("check/plugin-grouped-16", |b| {
        b.iter_custom(|iters| {
            let started = std::time::Instant::now();
            rt.block_on(async {
                let mut in_flight = tokio::task::JoinSet::<
                    Result<entitlement::CheckResponse, entitlement::EntitlementError>,
                >::new();
                for _ in 0..iters {
                    if in_flight.len() == 16
                        && let Some(done) = in_flight.join_next().await
                    {
                        done.unwrap_or_else(|e| panic!("{e}"))
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                    let ent = grouped.entitlement.clone();
                    in_flight.spawn(ent.check_async(request("bench-active")));
                }
                while let Some(done) = in_flight.join_next().await {
                    done.unwrap_or_else(|e| panic!("{e}"))
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            });
            started.elapsed()
        })
    });

    let started = ent
        .check(request("bench-expired"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.reconciliation.is_some(),
        "an expired account with a contact starts a reconciliation"
    );
    c.bench_function("reconcile/start", |b| {
        b.iter(|| {
            ent.check(request("bench-expired"))
                .map(|r| r.reconciliation)
        })
    });
}

/// The cheapest durable write SQLite can make here: one 1 KiB row into a
/// table without indexes, in a transaction of its own, with the pragmas the
/// store uses (no checkpoint inside a commit), under `synchronous = FULL` (fsynced: `sync = "full"`) and
/// `NORMAL` (`sync = "normal"`). A check alone in its group pays this
/// plus its five B-trees.
pub fn commit_floor(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for mode in ["full", "normal"] {
        let conn = rusqlite::Connection::open(dir.path().join(format!("floor-{mode}.db")))
            .unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {mode}; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE floor (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let body = "x".repeat(1024);
        c.bench_function(&format!("store/commit-1kib-row-{mode}"), |b| {
            b.iter(|| {
                conn.execute("INSERT INTO floor (body) VALUES (?1)", [&body])
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
}

pub fn flow_step(c: &mut Criterion) {
    let host = host();
    let engine = &host.engine;
    c.bench_function("flow/step", |b| {
        b.iter_batched(
            || {
                let view = engine
                    .start("review", "bench", serde_json::Value::Null, "bench")
                    .unwrap_or_else(|e| panic!("{e}"));
                view.tasks[0].id.clone()
            },
            |task| engine.complete(&task, "done", serde_json::Value::Null, "bench"),
            BatchSize::SmallInput,
        )
    });
}
