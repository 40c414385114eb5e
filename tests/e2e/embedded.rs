//! Entitlement embedded as a library, in-process on the sample rules: a
//! rule compiled into the host (`check_native`) is recorded like a plugin;
//! checks from async code (`check_async`, what `POST /v1/checks` runs) each
//! land whole while sharing commits; a slow plugin holds up no other check;
//! a check whose inputs changed before its record is decided again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rulehost::contract::{AccountStatus, Capability, Context, Properties, Verdict, VerifyInput};
use rulehost::entitlement::{
    self, AccountInput, CheckRequest, Entitlement, EntitlementError, NativeVerifier, Settings,
};
use rulehost::flow::{FlowEngine, Roles};
use rulehost::notify::Signal;
use rulehost::registry::{Live, Sources};
use rulehost::store::{self, Store};

use crate::support::{copy_dir, plugins_dir, rules_dir, runtime};

struct Embedded {
    _dir: tempfile::TempDir,
    live: Live,
    store: Store,
    entitlement: Arc<Entitlement>,
}

/// The sample rules on a SQLite file, with one active account `acme`.
fn embedded() -> Embedded {
    embedded_with(&[])
}

/// [`embedded`] with more manifests: (file name, text).
fn embedded_with(manifests: &[(&str, &str)]) -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let rules = dir.path().join("rules");
    copy_dir(&rules_dir(), &rules);
    for (name, text) in manifests {
        std::fs::write(rules.join(name), text).unwrap();
    }
    let sources = Sources {
        rules_dir: rules,
        plugins_dir: plugins_dir(),
    };
    let (live, problems) = Live::start(runtime(), sources, store.clone()).unwrap();
    assert!(problems.iter().all(|d| !d.is_error()), "{problems:?}");
    let signal = Arc::new(Signal::default());
    let mut engine = FlowEngine::new(
        store.clone(),
        BTreeMap::new(),
        Roles::default(),
        signal.clone(),
    );
    let installed = entitlement::install(
        &mut engine,
        store.clone(),
        live.registry(),
        Settings::default(),
    );
    let entitlement = Arc::new(Entitlement::new(installed, Arc::new(engine), signal));
    put_account(&store, "standard");
    Embedded {
        _dir: dir,
        live,
        store,
        entitlement,
    }
}

/// Stores the active account `acme` at `tier`.
fn put_account(store: &Store, tier: &str) {
    let row = AccountInput {
        status: AccountStatus::Active,
        paid_up: true,
        tier: tier.into(),
        contract_end: None,
        contact: None,
        attributes: Properties::default(),
        group: String::new(),
        billing: rulehost::ledger::Billing::Prepaid,
        pin: None,
    }
    .into_row("acme", store::now_ms());
    store
        .write(|tx| store::entitlement::put_account(tx, &row))
        .unwrap();
}

fn request(id: Option<&str>) -> CheckRequest {
    CheckRequest {
        service: "support-contract".into(),
        account_id: "acme".into(),
        request_id: id.map(String::from),
        attributes: Properties::default(),
        description: "printer on fire".into(),
    }
}

/// A connection of the test's own to the store's file: what is committed.
fn sql(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

/// The newest decision of `request`: (plugin, digest, verdict, level).
fn decision(store: &Store, request: &str) -> (String, String, String, Option<String>) {
    sql(store)
        .query_row(
            "SELECT plugin, plugin_digest, verdict, level FROM decisions
             WHERE request_id = ?1 ORDER BY id DESC LIMIT 1",
            [request],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

/// Passes at a level named after the account's tier, or declines.
struct TierRule {
    decline: bool,
}

impl NativeVerifier for TierRule {
    fn name(&self) -> &str {
        "tier-rule"
    }

    fn verify(&self, ctx: &Context, input: &VerifyInput) -> Result<Verdict, String> {
        if self.decline {
            return Err(format!("no tiers known for `{}`", ctx.service));
        }
        let tier = input.account.as_ref().map_or("none", |a| a.tier.as_str());
        Ok(Verdict::Pass {
            level: format!("native-{tier}"),
        })
    }
}

#[test]
fn a_native_rule_decides_through_the_same_records_as_a_plugin() {
    let host = embedded();
    let answer = host
        .entitlement
        .check_native(request(Some("req-native")), &TierRule { decline: false })
        .unwrap();
    assert_eq!(answer.decision, "pass");
    assert_eq!(answer.level.as_deref(), Some("native-standard"));
    assert_eq!(
        (answer.plugin.name.as_str(), answer.plugin.digest.as_str()),
        ("tier-rule", "native")
    );
    assert_eq!(
        decision(&host.store, "req-native"),
        (
            "tier-rule".into(),
            "native".into(),
            "pass".into(),
            Some("native-standard".into())
        )
    );

    // A rule that declines is an error, recorded as one, like a plugin's.
    let declined = host
        .entitlement
        .check_native(request(Some("req-declined")), &TierRule { decline: true });
    let Err(EntitlementError::Plugin(message)) = declined else {
        panic!("expected a plugin error, got {declined:?}");
    };
    assert!(
        message.contains("tier-rule") && message.contains("no tiers known"),
        "{message}"
    );
    let (_, _, verdict, level) = decision(&host.store, "req-declined");
    assert_eq!((verdict.as_str(), level), ("error", None));
}

#[test]
fn async_checks_share_commits_and_each_is_recorded() {
    let host = embedded();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stats = host.store.stats();
    let (commits_before, writes_before) = (
        stats.commits.load(Ordering::Relaxed),
        stats.writes.load(Ordering::Relaxed),
    );
    let answers = runtime.block_on(async {
        let checks: Vec<_> = (0..64)
            .map(|i| {
                let entitlement = host.entitlement.clone();
                let id = format!("req-grouped-{i}");
                tokio::spawn(async move { entitlement.check_async(request(Some(&id))).await })
            })
            .collect();
        let mut answers = Vec::new();
        for check in checks {
            answers.push(check.await.unwrap().unwrap());
        }
        answers
    });
    assert!(answers.iter().all(|a| a.decision == "pass"));
    for i in [0, 31, 63] {
        let (plugin, _, verdict, _) = decision(&host.store, &format!("req-grouped-{i}"));
        assert_eq!(
            (plugin.as_str(), verdict.as_str()),
            ("support-contract", "pass")
        );
    }
    let (commits, writes) = (
        stats.commits.load(Ordering::Relaxed) - commits_before,
        stats.writes.load(Ordering::Relaxed) - writes_before,
    );
    // One write each, nothing decided again: no other write touched acme.
    assert_eq!(writes, 64);
    assert_eq!(host.entitlement.stats.redecided.load(Ordering::Relaxed), 0);
    assert!(commits < 64, "no check shared a commit ({commits} commits)");

    // A bad check is refused with a clear error and stores nothing.
    let count = |table: &str| -> i64 {
        sql(&host.store)
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let before = (count("decisions"), count("requests"));
    let refused = runtime.block_on(host.entitlement.clone().check_async(CheckRequest {
        account_id: "no spaces allowed".into(),
        ..request(None)
    }));
    let Err(EntitlementError::Invalid(message)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert!(message.contains("account_id"), "{message}");
    assert_eq!((count("decisions"), count("requests")), before);
}

#[test]
fn checks_racing_on_one_request_and_account_record_consistent_decisions() {
    let host = embedded();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tiers = ["standard", "gold"];
    let answers = runtime.block_on(async {
        let mut checks = Vec::new();
        for i in 0..40 {
            let entitlement = host.entitlement.clone();
            checks.push(tokio::spawn(async move {
                entitlement.check_async(request(Some("req-raced"))).await
            }));
            // The account changes while the checks are in flight.
            if i % 4 == 0 {
                let store = host.store.clone();
                let tier = tiers[(i / 4) % 2];
                tokio::task::spawn_blocking(move || put_account(&store, tier))
                    .await
                    .unwrap();
            }
        }
        let mut answers = Vec::new();
        for check in checks {
            answers.push(check.await.unwrap());
        }
        answers
    });
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    for answer in &answers {
        // Decided again when the account moved; refused only past the tries.
        assert!(
            matches!(answer, Ok(_) | Err(EntitlementError::Conflict(_))),
            "{answer:?}"
        );
    }
    let conn = sql(&host.store);
    // Every answered check is in the log once; nothing else is.
    let recorded: i64 = conn
        .query_row(
            "SELECT count(*) FROM decisions WHERE request_id = 'req-raced'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded as usize, answered);
    // Each decision was made on the account as it was when it was recorded:
    // replayed in log order against the account's history, the inputs'
    // tier is always the tier set last before it. The request holds the
    // newest decision's level.
    let mut stmt = conn
        .prepare("SELECT inputs, level FROM decisions WHERE request_id = 'req-raced' ORDER BY id")
        .unwrap();
    let rows: Vec<(String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let level: Option<String> = conn
        .query_row(
            "SELECT level FROM requests WHERE id = 'req-raced'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(level, rows.last().unwrap().1);
    let final_tier: String = conn
        .query_row("SELECT tier FROM accounts WHERE id = 'acme'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let last_inputs = &rows.last().unwrap().0;
    assert!(
        last_inputs.contains(&format!("\"tier\":\"{final_tier}\"")),
        "the newest decision read a tier the account no longer had: {last_inputs}"
    );
}

/// A service whose verifier spins until its time limit.
const SLOW: (&str, &str) = (
    "slow.toml",
    "id = \"slow\"\n[plugins]\nverifier = \"hostile-loop\"\n[limits]\ntimeout_ms = 500\n",
);

impl Embedded {
    fn slow_calls_begun(&self) -> u64 {
        let registry = self.live.registry().load_full();
        let service = registry.service("slow").unwrap();
        let binding = service.binding(Capability::Verifier).unwrap();
        binding.stats.calls.load(Ordering::Relaxed)
    }

    fn spawn_slow_check(
        &self,
        runtime: &tokio::runtime::Runtime,
        id: &str,
    ) -> tokio::task::JoinHandle<Result<entitlement::CheckResponse, EntitlementError>> {
        runtime.spawn(self.entitlement.clone().check_async(CheckRequest {
            service: "slow".into(),
            ..request(Some(id))
        }))
    }

    /// Starts a check of `slow` and returns once `calls` calls of its
    /// plugin have begun.
    fn start_slow_check(
        &self,
        runtime: &tokio::runtime::Runtime,
        id: &str,
        calls: u64,
    ) -> tokio::task::JoinHandle<Result<entitlement::CheckResponse, EntitlementError>> {
        let begun = self.slow_calls_begun();
        let check = self.spawn_slow_check(runtime, id);
        while self.slow_calls_begun() < begun + calls {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        check
    }
}

#[test]
fn a_slow_plugin_holds_up_no_other_check() {
    let host = embedded_with(&[SLOW]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slow = host.start_slow_check(&runtime, "req-slow-first", 1);
    // Were the slow call holding the writer, even the first of these would
    // wait for it. Few, so that fsynced commits on a loaded machine stay well
    // inside the slow call's 500 ms.
    for i in 0..5 {
        let answer = runtime
            .block_on(
                host.entitlement
                    .clone()
                    .check_async(request(Some(&format!("req-beside-{i}")))),
            )
            .unwrap();
        assert_eq!(answer.decision, "pass");
    }
    assert!(
        !slow.is_finished(),
        "the checks beside the slow one waited for it"
    );
    let answer = runtime.block_on(slow).unwrap();
    let Err(EntitlementError::Plugin(message)) = answer else {
        panic!("expected the time-out, got {answer:?}");
    };
    assert!(message.contains("timed out after 500 ms"), "{message}");
    let (plugin, _, verdict, _) = decision(&host.store, "req-slow-first");
    assert_eq!(
        (plugin.as_str(), verdict.as_str()),
        ("hostile-loop", "error")
    );
}

#[test]
fn a_check_is_decided_again_when_its_account_changes_before_its_record() {
    let host = embedded_with(&[SLOW]);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let slow = host.start_slow_check(&runtime, "req-moved", 1);
    // The check has read the account; it changes before it is recorded.
    put_account(&host.store, "gold");
    let answer = runtime.block_on(slow).unwrap();
    assert!(
        matches!(answer, Err(EntitlementError::Plugin(_))),
        "{answer:?}"
    );
    assert_eq!(host.entitlement.stats.redecided.load(Ordering::Relaxed), 1);
    let conn = sql(&host.store);
    let mut stmt = conn
        .prepare("SELECT inputs FROM decisions WHERE request_id = 'req-moved'")
        .unwrap();
    let inputs: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(inputs.len(), 1, "only the second decision is recorded");
    assert!(inputs[0].contains("\"tier\":\"gold\""), "{}", inputs[0]);
}

#[test]
fn a_spinning_plugin_holds_at_most_its_share_of_the_cores() {
    let host = embedded_with(&[SLOW]);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let limit = rulehost::registry::plugin_concurrency();
    let begun = host.slow_calls_begun();
    let crowd: Vec<_> = (0..limit + 2)
        .map(|i| host.spawn_slow_check(&runtime, &format!("req-crowd-{i}")))
        .collect();
    while host.slow_calls_begun() < begun + limit as u64 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The first ones spin for 500 ms; the others wait for them.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(host.slow_calls_begun(), begun + limit as u64);
    for check in crowd {
        let answer = runtime.block_on(check).unwrap();
        assert!(
            matches!(answer, Err(EntitlementError::Plugin(_))),
            "{answer:?}"
        );
    }
    assert_eq!(host.slow_calls_begun(), begun + limit as u64 + 2);
}

#[test]
fn the_blocking_check_runs_a_slow_plugin_outside_any_transaction() {
    let host = embedded_with(&[SLOW]);
    let begun = host.slow_calls_begun();
    let entitlement = host.entitlement.clone();
    let slow = std::thread::spawn(move || {
        entitlement.check(CheckRequest {
            service: "slow".into(),
            ..request(Some("req-blocking-slow"))
        })
    });
    while host.slow_calls_begun() < begun + 1 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for i in 0..20 {
        let answer = host
            .entitlement
            .check(request(Some(&format!("req-blocking-{i}"))))
            .unwrap();
        assert_eq!(answer.decision, "pass");
    }
    assert!(
        !slow.is_finished(),
        "the checks beside the slow one waited for it"
    );
    let answer = slow.join().unwrap();
    assert!(
        matches!(&answer, Err(EntitlementError::Plugin(m)) if m.contains("timed out after 500 ms")),
        "{answer:?}"
    );
    assert_eq!(host.slow_calls_begun(), begun + 1);
    let (plugin, _, verdict, _) = decision(&host.store, "req-blocking-slow");
    assert_eq!(
        (plugin.as_str(), verdict.as_str()),
        ("hostile-loop", "error")
    );
}
