//! The live registry in-process, on real components: every validation step
//! rejects what it should, activation swaps atomically, rollback and a
//! restart bring back stored versions.

use rulehost::registry::{Live, Offered, RollbackError, Source, Sources, Step};
use rulehost::runtime::Digest;
use rulehost::store::Store;

use crate::support::{copy_dir, plugin_bytes, plugins_dir, rules_dir, runtime};

struct Fixture {
    _dir: tempfile::TempDir,
    sources: Sources,
    db: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("support-contract")).unwrap();
    std::fs::copy(
        rules_dir().join("support-contract.toml"),
        rules.join("support-contract.toml"),
    )
    .unwrap();
    copy_dir(
        &rules_dir().join("support-contract/cases"),
        &rules.join("support-contract/cases"),
    );
    let sources = Sources {
        rules_dir: rules,
        plugins_dir: plugins_dir(),
    };
    Fixture {
        db: dir.path().join("db"),
        _dir: dir,
        sources,
    }
}

fn start(f: &Fixture) -> Live {
    let (live, diagnostics) =
        Live::start(runtime(), f.sources.clone(), Store::open(&f.db).unwrap()).unwrap();
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    live
}

fn live_digest(live: &Live) -> Digest {
    live.registry().load().plugins["support-contract"].digest()
}

/// The sample plugin with a custom section appended: a new digest, the same behaviour.
fn variant(tag: u8) -> Vec<u8> {
    let mut bytes = plugin_bytes("support-contract");
    bytes.extend_from_slice(&[0x00, 0x03, 0x01, b'x', tag]);
    bytes
}

#[test]
fn each_step_rejects_and_the_old_version_keeps_serving() {
    let f = fixture();
    let live = start(&f);
    let before = live_digest(&live);
    let step = |bytes: &[u8]| {
        live.offer("support-contract", bytes, Source::Api, None)
            .err()
            .map(|r| r.step)
    };
    let half = plugin_bytes("support-contract");
    assert_eq!(
        step(&half[..half.len() / 2]),
        Some(Step::Compile),
        "a half-copied file"
    );
    assert_eq!(
        step(&plugin_bytes("hostile-contract")),
        Some(Step::Contract)
    );
    assert_eq!(step(&plugin_bytes("conference-split")), Some(Step::Exports));
    assert_eq!(
        step(&plugin_bytes("hostile-panic")),
        Some(Step::Exports),
        "it lacks the reconciler the service needs"
    );
    assert_eq!(
        step(&plugin_bytes("premium-support")),
        Some(Step::Cases),
        "answers the cases differently"
    );
    assert_eq!(live_digest(&live), before);
    let history = live.history("support-contract", 50).unwrap();
    assert_eq!(history.iter().filter(|e| e.result == "rejected").count(), 5);
    assert!(
        history
            .iter()
            .all(|e| e.result != "rejected" || e.step.is_some() && e.message.is_some())
    );
    assert!(
        live.offer("nobody-uses-me", &variant(1), Source::Api, None)
            .is_err()
    );
}

#[test]
fn activation_swaps_and_restart_restores_from_the_store_not_the_file() {
    let f = fixture();
    let live = start(&f);
    let first = live_digest(&live);
    let v1 = variant(1);
    let offered = live
        .offer("support-contract", &v1, Source::Watcher, None)
        .unwrap();
    assert_eq!(
        offered,
        Offered::Activated {
            digest: Digest::of(&v1),
            services: vec!["support-contract".into()]
        }
    );
    assert_eq!(
        live.offer("support-contract", &v1, Source::Watcher, None)
            .unwrap(),
        Offered::Unchanged {
            digest: Digest::of(&v1)
        }
    );
    assert_eq!(live_digest(&live), Digest::of(&v1));
    // The old binding is the new one's fallback.
    let service = live.registry().load().services["support-contract"].clone();
    assert_eq!(
        service
            .fallbacks
            .values()
            .next()
            .map(|b| b.plugin().digest()),
        Some(first)
    );
    drop(live);
    // The file still holds the first version; the store wins.
    let again = start(&f);
    assert_eq!(live_digest(&again), Digest::of(&v1));
}

#[test]
fn rollback_returns_to_the_previous_good_version() {
    let f = fixture();
    let live = start(&f);
    let first = live_digest(&live);
    assert!(matches!(
        live.rollback("support-contract", None, Source::Cli),
        Err(RollbackError::NothingBefore(_))
    ));
    live.offer("support-contract", &variant(2), Source::Api, None)
        .unwrap();
    live.rollback("support-contract", None, Source::Rollback)
        .unwrap();
    assert_eq!(live_digest(&live), first);
    let newest = &live.history("support-contract", 1).unwrap()[0];
    assert_eq!(
        (newest.source.as_str(), newest.result.as_str()),
        ("rollback", "activated")
    );
    let unknown = Digest::of(b"never seen");
    assert!(matches!(
        live.rollback("support-contract", Some(unknown), Source::Api),
        Err(RollbackError::UnknownVersion(_))
    ));
}

#[test]
fn a_broken_rules_change_changes_nothing() {
    let f = fixture();
    let live = start(&f);
    let manifest = f.sources.rules_dir.join("support-contract.toml");
    let good = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, "id = \"support-contract\"\n[plugins\n").unwrap();
    assert!(live.reload_rules(Source::Watcher).is_err());
    assert_eq!(
        live.registry().load().services["support-contract"]
            .manifest
            .display_name,
        "Support contract"
    );
    std::fs::write(
        &manifest,
        good.replace(
            "display_name = \"Support contract\"",
            "display_name = \"Support\"",
        ),
    )
    .unwrap();
    assert_eq!(live.reload_rules(Source::Watcher).unwrap(), 1);
    assert_eq!(
        live.registry().load().services["support-contract"]
            .manifest
            .display_name,
        "Support"
    );
}

/// The bound on a service's plugin calls running at once stays the same
/// through a plugin swap and a rules reload: calls still running on the old
/// snapshot and those on the new one share it, so a swap never doubles
/// what a spinning plugin may hold. A service removed and added again
/// starts afresh.
#[test]
fn a_service_keeps_its_bound_on_plugin_calls_across_swaps_and_reloads() {
    let f = fixture();
    let live = start(&f);
    let bound = |live: &Live| {
        live.registry().load().services["support-contract"]
            .calls
            .clone()
    };
    let first = bound(&live);
    live.offer("support-contract", &variant(7), Source::Watcher, None)
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &bound(&live)),
        "after a swap"
    );
    live.reload_rules(Source::Watcher).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &bound(&live)),
        "after a reload"
    );

    let manifest = f.sources.rules_dir.join("support-contract.toml");
    let kept = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    live.reload_rules(Source::Watcher).unwrap();
    assert!(live.registry().load().service("support-contract").is_none());
    std::fs::write(&manifest, kept).unwrap();
    live.reload_rules(Source::Watcher).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &bound(&live)),
        "a new service"
    );
}
