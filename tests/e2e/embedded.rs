//! Entitlement embedded as a library, in-process on the sample rules: a
//! rule compiled into the host (`check_native`) is recorded like a plugin,
//! and group-committed checks (`check_grouped`, what `POST /v1/checks` runs)
//! each land whole while sharing commits.

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
use rulehost::store::{self, Store, StoreError};

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

/// The newest decision of `request`: (plugin, digest, verdict, level).
fn decision(store: &Store, request: &str) -> (String, String, String, Option<String>) {
    store
        .read(|c| {
            c.query_row(
                "SELECT plugin, plugin_digest, verdict, level FROM decisions
                 WHERE request_id = ?1 ORDER BY id DESC LIMIT 1",
                [request],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(StoreError::from)
        })
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
fn grouped_checks_share_commits_and_each_is_recorded() {
    let host = embedded();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answers = runtime.block_on(async {
        let checks: Vec<_> = (0..64)
            .map(|i| {
                let entitlement = host.entitlement.clone();
                let id = format!("req-grouped-{i}");
                tokio::spawn(async move { entitlement.check_grouped(request(Some(&id))).await })
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
    let stats = host.store.group_stats();
    let (commits, writes) = (
        stats.commits.load(Ordering::Relaxed),
        stats.writes.load(Ordering::Relaxed),
    );
    // One grouped write each (a check whose call ran over the writer's
    // budget, preempted say, is recorded apart, in a transaction of its own).
    assert_eq!(writes, 64);
    assert!(commits < 64, "no check shared a commit ({commits} commits)");

    // A bad check is refused with a clear error and stores nothing.
    let count = |table: &str| -> i64 {
        host.store
            .read(|c| {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .unwrap()
    };
    let before = (count("decisions"), count("requests"));
    let refused = runtime.block_on(host.entitlement.clone().check_grouped(CheckRequest {
        account_id: "no spaces allowed".into(),
        ..request(None)
    }));
    let Err(EntitlementError::Invalid(message)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert!(message.contains("account_id"), "{message}");
    assert_eq!((count("decisions"), count("requests")), before);
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

    /// Checks `slow` once: its call on the writer thread runs over the
    /// writer's budget, the check is decided apart and times out there. Two
    /// slow calls in a row: the service is marked slow.
    fn make_slow(&self, runtime: &tokio::runtime::Runtime) {
        let answer = runtime.block_on(self.entitlement.clone().check_grouped(CheckRequest {
            service: "slow".into(),
            ..request(Some("req-slow-first"))
        }));
        assert!(
            matches!(answer, Err(EntitlementError::Plugin(_))),
            "{answer:?}"
        );
        let registry = self.live.registry().load_full();
        assert!(registry.service("slow").unwrap().is_slow());
        assert_eq!(self.slow_calls_begun(), 2);
        assert_eq!(
            self.entitlement.stats.decided_apart.load(Ordering::Relaxed),
            1
        );
    }

    fn spawn_slow_check(
        &self,
        runtime: &tokio::runtime::Runtime,
        id: &str,
    ) -> tokio::task::JoinHandle<Result<entitlement::CheckResponse, EntitlementError>> {
        runtime.spawn(self.entitlement.clone().check_grouped(CheckRequest {
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

/// The sample rules and `slow`, already marked slow.
fn slow_host() -> (Embedded, tokio::runtime::Runtime) {
    let host = embedded_with(&[SLOW]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    host.make_slow(&runtime);
    (host, runtime)
}

#[test]
fn a_slow_plugin_holds_up_no_other_check_from_its_first_call() {
    // On a loaded machine a fast check can be preempted past the writer's
    // budget: it is then decided apart, correctly, and waits there for the
    // slow one's place (one apart at a time on two cores). That round
    // proves nothing either way, so it is made again on a fresh host.
    for attempt in 1..=5 {
        let host = embedded_with(&[SLOW]);
        let runtime = tokio::runtime::Runtime::new().unwrap();

        // Its first call, on the writer thread, stops at the writer's
        // budget; the second runs apart.
        let slow = host.start_slow_check(&runtime, "req-slow-first", 2);
        // Were the slow call on the writer thread, these would wait for it.
        for i in 0..20 {
            let answer = runtime
                .block_on(
                    host.entitlement
                        .clone()
                        .check_grouped(request(Some(&format!("req-beside-{i}")))),
                )
                .unwrap();
            assert_eq!(answer.decision, "pass");
        }
        let finished = slow.is_finished();
        let apart = host.entitlement.stats.decided_apart.load(Ordering::Relaxed);
        if apart > 1 && attempt < 5 {
            continue;
        }
        assert!(!finished, "the checks beside the slow one waited for it");
        check_the_slow_one(&host, &runtime, slow);
        return;
    }
}

fn check_the_slow_one(
    host: &Embedded,
    runtime: &tokio::runtime::Runtime,
    slow: tokio::task::JoinHandle<Result<entitlement::CheckResponse, EntitlementError>>,
) {
    let answer = runtime.block_on(slow).unwrap();
    let Err(EntitlementError::Plugin(message)) = answer else {
        panic!("expected the time-out, got {answer:?}");
    };
    assert!(message.contains("timed out after 500 ms"), "{message}");
    // At least the slow one: on a loaded machine a fast check preempted
    // past the writer's budget is decided apart too, correctly.
    assert!(host.entitlement.stats.decided_apart.load(Ordering::Relaxed) >= 1);
    let (plugin, _, verdict, _) = decision(&host.store, "req-slow-first");
    assert_eq!(
        (plugin.as_str(), verdict.as_str()),
        ("hostile-loop", "error")
    );
}

#[test]
fn a_check_decided_apart_is_decided_again_when_its_account_changes_meanwhile() {
    let (host, runtime) = slow_host();

    let slow = host.start_slow_check(&runtime, "req-moved", 1);
    // The check has read the account; it changes before it is recorded.
    put_account(&host.store, "gold");
    let answer = runtime.block_on(slow).unwrap();
    assert!(
        matches!(answer, Err(EntitlementError::Plugin(_))),
        "{answer:?}"
    );
    assert_eq!(host.entitlement.stats.redecided.load(Ordering::Relaxed), 1);
    let inputs: Vec<String> = host
        .store
        .read(|c| {
            let mut stmt =
                c.prepare("SELECT inputs FROM decisions WHERE request_id = 'req-moved'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()
                .map_err(StoreError::from)
        })
        .unwrap();
    assert_eq!(inputs.len(), 1, "only the second decision is recorded");
    assert!(inputs[0].contains("\"tier\":\"gold\""), "{}", inputs[0]);
}

#[test]
fn slow_checks_spin_on_at_most_half_the_cores_at_once() {
    let (host, runtime) = slow_host();

    let limit = Entitlement::apart_limit();
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
fn the_blocking_check_also_keeps_a_slow_plugin_out_of_its_transaction() {
    let host = embedded_with(&[SLOW]);
    let begun = host.slow_calls_begun();
    let entitlement = host.entitlement.clone();
    let slow = std::thread::spawn(move || {
        entitlement.check(CheckRequest {
            service: "slow".into(),
            ..request(Some("req-blocking-slow"))
        })
    });
    // Its first call stops at the writer's budget; the second runs apart.
    while host.slow_calls_begun() < begun + 2 {
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
    // One call stopped at the writer's budget, one apart.
    assert_eq!(host.slow_calls_begun(), begun + 2);
    let (plugin, _, verdict, _) = decision(&host.store, "req-blocking-slow");
    assert_eq!(
        (plugin.as_str(), verdict.as_str()),
        ("hostile-loop", "error")
    );
    // At least the slow one: on a loaded machine a fast check preempted
    // past the writer's budget is decided apart too, correctly.
    assert!(host.entitlement.stats.decided_apart.load(Ordering::Relaxed) >= 1);
}
