//! Hot reload end to end on the real binary: a service `swappable` whose
//! verifier is the plugin file `<plugins>/swappable.wasm`, swapped between
//! the test plugins `swap-a` (passes at level `a`) and `swap-b` (level `b`)
//! by the watcher, over HTTP, by rollback; broken candidates that must never
//! go live; a restart that brings back the stored version; a rules change;
//! and replay of recorded decisions on a candidate (HTTP and CLI).
//!
//! Every file the tests put in a watched folder is written atomically: a
//! temporary file named `.<name>.tmp` in the same folder, then a rename.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::server::{Host, Reply, Setup, wait_for};
use crate::support::{plugin_bytes, stderr, stdout};

/// The plugins the sample rules (copied by [`Setup::new`]) use.
const SAMPLE_PLUGINS: [&str; 5] = [
    "support-contract",
    "premium-support",
    "prepaid-calling",
    "conference-split",
    "webinar-charging",
];

/// How long a change may take to go live (or be rejected).
const SWAP_TIMEOUT: Duration = Duration::from_secs(10);

const MANIFEST: &str = r#"# A test service whose verifier the tests swap.
id = "swappable"
display_name = "Swappable"

[plugins]
verifier = "swappable"
"#;

/// A case both `swap-a` and `swap-b` pass and a trapping plugin fails.
const CASE: &str = r#"description = "an unknown account fails with `no-account`, whichever version runs"
now = "2026-11-20T10:00:00Z"

[verify]
request = { id = "r1", account_id = "nobody-1", description = "", attributes = {} }

[expect]
verdict = "fail"
code = "no-account"
"#;

const ACCOUNT: &str = "acme-1";

// ---------------------------------------------------------------------------
// Fixtures.

/// `sha256:<hex>` of `bytes`, as the host reports digests.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Writes `bytes` to `path` atomically: `.<file name>.tmp` beside it, then a rename.
#[allow(clippy::panic)] // a test's setup failing must stop the test
fn write_atomic(path: &Path, bytes: &[u8]) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("{} has no file name", path.display()));
    let temp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", temp.display()));
    std::fs::rename(&temp, path)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", temp.display(), path.display()));
}

/// The sample rules plus `swappable` (manifest and one case), with a writable
/// plugins folder holding the sample plugins and `swappable.wasm` = `swap-a`.
fn swap_setup() -> Setup {
    let setup = Setup::new("");
    setup.use_own_plugins(&SAMPLE_PLUGINS);
    setup.write_rules("swappable.toml", MANIFEST);
    setup.write_rules("swappable/cases/no-account.toml", CASE);
    write_atomic(&swappable(&setup), &plugin_bytes("swap-a"));
    setup
}

/// `<plugins>/swappable.wasm`.
fn swappable(setup: &Setup) -> std::path::PathBuf {
    setup.plugins_path().join("swappable.wasm")
}

/// Starts the server and stores the account the checks ask about.
fn start(setup: &Setup) -> Host {
    let host = setup.start();
    let reply = host.put(
        &format!("/v1/accounts/{ACCOUNT}"),
        &json!({"status": "active", "paid_up": true, "tier": "t"}),
    );
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
    host
}

fn check(host: &Host, account: &str) -> Reply {
    host.post(
        "/v1/checks",
        &json!({"service": "swappable", "account_id": account}),
    )
}

/// One passing check: its level and the digest it reports.
fn check_pass(host: &Host) -> (String, String) {
    let reply = check(host, ACCOUNT);
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json["decision"], "pass", "{reply}");
    assert_eq!(reply.json["plugin"]["name"], "swappable", "{reply}");
    (
        reply.json["level"].as_str().unwrap_or_default().to_owned(),
        reply.json["plugin"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The entry of `swappable` in `GET /v1/plugins`.
fn plugin_entry(host: &Host) -> Result<Value, String> {
    let reply = host.get("/v1/plugins");
    if reply.status != 200 {
        return Err(reply.to_string());
    }
    reply.json["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "swappable"))
        .cloned()
        .ok_or_else(|| format!("no `swappable` in {reply}"))
}

fn live_digest(host: &Host) -> Result<String, String> {
    let entry = plugin_entry(host)?;
    entry["digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no digest in {entry}"))
}

/// Waits until `GET /v1/plugins` shows `expected` live for `swappable`.
fn wait_live(host: &Host, expected: &str, what: &str) {
    wait_for(SWAP_TIMEOUT, what, || match live_digest(host) {
        Ok(d) if d == expected => Ok(()),
        Ok(d) => Err(format!("live digest {d}, history: {}", history_text(host))),
        Err(e) => Err(e),
    });
}

/// The history of `swappable`, newest first.
#[allow(clippy::panic)] // a history the host cannot show must fail the test
fn history(host: &Host) -> Vec<Value> {
    let reply = host.get("/v1/plugins/swappable/history");
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no `events` in {reply}"))
}

fn history_text(host: &Host) -> String {
    host.get("/v1/plugins/swappable/history").text
}

/// Waits for a `rejected` event of `digest` in the history; returns it.
fn wait_rejected(host: &Host, digest: &str, what: &str) -> Value {
    wait_for(SWAP_TIMEOUT, what, || {
        let events = history(host);
        events
            .iter()
            .find(|e| e["result"] == "rejected" && e["digest"] == digest)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "live {:?}, history: {}",
                    live_digest(host),
                    Value::Array(events)
                )
            })
    })
}

fn is_digest(value: &Value) -> bool {
    value.as_str().is_some_and(|d| {
        d.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// `hostile-panic` with a custom section appended: a unique digest, same trap.
fn hostile(tag: u8) -> Vec<u8> {
    let mut bytes = plugin_bytes("hostile-panic");
    bytes.extend_from_slice(&[0x00, 0x03, 0x01, b'x', tag]);
    bytes
}

/// The first half of `swap-a` (less `tag` bytes): does not compile.
fn truncated(tag: usize) -> Vec<u8> {
    let mut bytes = plugin_bytes("swap-a");
    bytes.truncate(bytes.len() / 2 - tag);
    bytes
}

/// `rulehost <args>` (nothing added) with the tests' compile cache.
#[allow(clippy::panic)] // a command that cannot run must stop the test
fn cli(setup: &Setup, args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulehost"))
        .args(args)
        .current_dir(setup.rules_path().parent().unwrap_or(Path::new(".")))
        .env(
            "RULEHOST_CACHE_DIR",
            std::env::temp_dir().join("rulehost-e2e-cache"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run rulehost: {e}"))
}

fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    )
}

// ---------------------------------------------------------------------------
// The client loop.

/// What the client loop saw.
#[derive(Default)]
struct Tally {
    total: u64,
    /// Answers per reported digest.
    by_digest: BTreeMap<String, u64>,
    failed: u64,
    /// The first few failures, described.
    examples: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.total += other.total;
        for (digest, n) in other.by_digest {
            *self.by_digest.entry(digest).or_default() += n;
        }
        self.failed += other.failed;
        for e in other.examples {
            if self.examples.len() < 10 {
                self.examples.push(e);
            }
        }
    }
}

/// Sets the flag when dropped: the client loop stops even when the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sends checks as fast as it can until `stop` (or 60 s), judging each
/// answer: 200, a pass, and the level of the version whose digest it reports
/// (`levels`: digest to level).
fn hammer(host: &Host, stop: &AtomicBool, levels: &BTreeMap<String, String>) -> Tally {
    let base = host.base();
    let bearer = format!("Bearer {}", host.token().unwrap_or_default());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into();
    let url = format!("{base}/v1/checks");
    let body = json!({"service": "swappable", "account_id": ACCOUNT}).to_string();
    let cap = Instant::now() + Duration::from_secs(60);
    let mut tally = Tally::default();
    while !stop.load(Ordering::SeqCst) && Instant::now() < cap {
        tally.total += 1;
        let response = agent
            .post(&url)
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .send(&body);
        let (status, text) = match response {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.into_body().read_to_string() {
                    Ok(text) => (status, text),
                    Err(e) => {
                        tally.fail(format!("HTTP {status}, unreadable body: {e}"));
                        continue;
                    }
                }
            }
            Err(e) => {
                tally.fail(format!("no answer: {e}"));
                continue;
            }
        };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let digest = answer["plugin"]["digest"].as_str().unwrap_or_default();
        *tally.by_digest.entry(digest.to_owned()).or_default() += 1;
        let level = answer["level"].as_str().unwrap_or_default();
        if status != 200 || answer["decision"] != "pass" || answer["plugin"]["name"] != "swappable"
        {
            tally.fail(format!("HTTP {status}: {text}"));
        } else if levels.get(digest).is_none_or(|expected| expected != level) {
            tally.fail(format!(
                "level `{level}` does not match digest {digest}: {text}"
            ));
        }
    }
    tally
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn twenty_swaps_under_load_fail_no_check_and_never_activate_a_broken_version() {
    let setup = swap_setup();
    let host = start(&setup);
    let a = plugin_bytes("swap-a");
    let b = plugin_bytes("swap-b");
    let (da, db) = (digest(&a), digest(&b));
    assert_eq!(live_digest(&host).as_deref(), Ok(da.as_str()));
    let levels: BTreeMap<String, String> =
        BTreeMap::from([(da.clone(), "a".to_owned()), (db.clone(), "b".to_owned())]);

    let stop = AtomicBool::new(false);
    let mut broken: Vec<(String, &str)> = Vec::new(); // digest, expected step
    let tally = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let clients: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| hammer(&host, &stop, &levels)))
            .collect();
        // Let the clients get going on version a.
        std::thread::sleep(Duration::from_millis(300));

        for i in 0..20usize {
            match i % 3 {
                0 | 1 => {
                    let (bytes, d, level) = if i % 3 == 0 {
                        (&b, &db, "b")
                    } else {
                        (&a, &da, "a")
                    };
                    write_atomic(&swappable(&setup), bytes);
                    wait_live(&host, d, &format!("swap {i}: version {level} live"));
                    // Once live, it answers every new check.
                    let (got, reported) = check_pass(&host);
                    assert_eq!(
                        (got.as_str(), reported.as_str()),
                        (level, d.as_str()),
                        "swap {i}"
                    );
                }
                _ => {
                    let k = i / 3;
                    let (bytes, step) = if k % 2 == 0 {
                        (hostile(k as u8), "cases")
                    } else {
                        (truncated(k), "compile")
                    };
                    let d = digest(&bytes);
                    write_atomic(&swappable(&setup), &bytes);
                    let event = wait_rejected(&host, &d, &format!("swap {i}: {step} rejection"));
                    assert_eq!(event["step"], step, "swap {i}: {event}");
                    assert_eq!(event["source"], "watcher", "swap {i}: {event}");
                    assert!(
                        event["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "swap {i}: {event}"
                    );
                    // The old version (a) keeps serving, and shows the rejection.
                    let entry = plugin_entry(&host).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(entry["digest"], da.as_str(), "swap {i}: {entry}");
                    let last = &entry["last_rejection"];
                    assert_eq!(last["digest"], d.as_str(), "swap {i}: {entry}");
                    assert_eq!(last["step"], step, "swap {i}: {entry}");
                    assert!(
                        last["message"].is_string() && last["at"].is_string(),
                        "swap {i}: {entry}"
                    );
                    broken.push((d, step));
                }
            }
            // A few answers on each version.
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
        let mut tally = Tally::default();
        for client in clients {
            tally.merge(
                client
                    .join()
                    .unwrap_or_else(|_| panic!("client loop panicked")),
            );
        }
        tally
    });

    eprintln!(
        "swap under load: {} checks, {:?}",
        tally.total, tally.by_digest
    );
    assert_eq!(
        tally.failed,
        0,
        "{} of {} checks failed; first ones:\n{}",
        tally.failed,
        tally.total,
        tally.examples.join("\n")
    );
    for (d, _) in &broken {
        assert!(
            !tally.by_digest.contains_key(d),
            "broken version {d} answered checks"
        );
    }
    assert!(
        tally.by_digest.get(&da).is_some_and(|&n| n > 0)
            && tally.by_digest.get(&db).is_some_and(|&n| n > 0),
        "both versions answered: {:?}",
        tally.by_digest
    );
    assert_eq!(broken.len(), 6);

    // History: every broken candidate rejected with its step, never activated;
    // 14 activations by the watcher.
    let events = history(&host);
    for (d, step) in &broken {
        let mine: Vec<&Value> = events.iter().filter(|e| e["digest"] == *d).collect();
        assert!(!mine.is_empty(), "no event of {d} in {events:?}");
        for e in mine {
            assert_eq!(e["result"], "rejected", "{e}");
            assert_eq!(e["step"], *step, "{e}");
        }
    }
    let activated = events
        .iter()
        .filter(|e| e["result"] == "activated" && e["source"] == "watcher")
        .count();
    assert!(
        activated >= 14,
        "{activated} watcher activations: {events:?}"
    );
    let ids: Vec<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "history is newest first: {ids:?}"
    );

    // GET /v1/plugins: a live, with the checks counted.
    let entry = plugin_entry(&host).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(entry["digest"], da.as_str(), "{entry}");
    assert_eq!(entry["source"], "watcher", "{entry}");
    assert!(
        entry["stats"]["calls"].as_u64().is_some_and(|n| n > 0),
        "{entry}"
    );
}

#[test]
fn a_restart_brings_back_the_stored_version_not_the_file() {
    let setup = swap_setup();
    let mut host = start(&setup);
    let b = plugin_bytes("swap-b");
    let db = digest(&b);
    write_atomic(&swappable(&setup), &b);
    wait_live(&host, &db, "swap-b live");
    let activated = history(&host)
        .into_iter()
        .find(|e| e["result"] == "activated" && e["digest"] == db.as_str())
        .unwrap_or_else(|| panic!("no activation of b: {}", history_text(&host)));
    assert_eq!(activated["source"], "watcher", "{activated}");
    assert!(
        activated["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("swappable.wasm")),
        "{activated}"
    );
    assert_eq!(check_pass(&host), ("b".to_owned(), db.clone()));

    let status = host.signal("TERM", Duration::from_secs(15));
    assert!(status.is_some(), "rulehost serve did not stop on SIGTERM");
    drop(host);

    // While it is down, the file goes back to a.
    write_atomic(&swappable(&setup), &plugin_bytes("swap-a"));
    let host = setup.start();
    assert_eq!(live_digest(&host), Ok(db.clone()), "after the restart");
    assert_eq!(check_pass(&host), ("b".to_owned(), db.clone()));
    // Not picked up later either.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        live_digest(&host),
        Ok(db.clone()),
        "1.5 s after the restart"
    );
    assert_eq!(check_pass(&host), ("b".to_owned(), db));
}

#[test]
fn rollback_brings_back_the_previous_good_version() {
    let setup = swap_setup();
    let host = start(&setup);
    let (da, db) = (
        digest(&plugin_bytes("swap-a")),
        digest(&plugin_bytes("swap-b")),
    );

    // Only one version so far: nothing to roll back to.
    let nothing = host.post("/v1/plugins/swappable/rollback", &json!({}));
    assert_eq!(nothing.status, 409, "{nothing}");
    assert!(nothing.json["error"]["code"].is_string(), "{nothing}");

    write_atomic(&swappable(&setup), &plugin_bytes("swap-b"));
    wait_live(&host, &db, "swap-b live");

    let back = host.post("/v1/plugins/swappable/rollback", &json!({}));
    assert_eq!(back.status, 200, "{back}");
    assert_eq!(back.json["plugin"], "swappable", "{back}");
    assert_eq!(back.json["digest"], da.as_str(), "{back}");
    assert!(
        back.json["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "swappable")),
        "{back}"
    );
    assert_eq!(live_digest(&host), Ok(da.clone()));
    assert_eq!(check_pass(&host), ("a".to_owned(), da.clone()));
    let newest = history(&host).into_iter().next().unwrap_or_default();
    assert_eq!(newest["source"], "rollback", "{newest}");
    assert_eq!(newest["result"], "activated", "{newest}");
    assert_eq!(newest["digest"], da.as_str(), "{newest}");

    // A digest the host never saw.
    let unknown = format!("sha256:{}", "0".repeat(64));
    let missing = host.post(
        "/v1/plugins/swappable/rollback",
        &json!({"digest": unknown}),
    );
    assert!(missing.status == 404 || missing.status == 422, "{missing}");
    assert!(missing.json["error"]["code"].is_string(), "{missing}");
    let malformed = host.post(
        "/v1/plugins/swappable/rollback",
        &json!({"digest": "sha256:nothex"}),
    );
    assert!((400..500).contains(&malformed.status), "{malformed}");
    assert!(malformed.json["error"]["code"].is_string(), "{malformed}");
    assert_eq!(live_digest(&host), Ok(da.clone()), "after failed rollbacks");

    // To a named version.
    let to_b = host.post("/v1/plugins/swappable/rollback", &json!({"digest": db}));
    assert_eq!(to_b.status, 200, "{to_b}");
    assert_eq!(to_b.json["digest"], db.as_str(), "{to_b}");
    assert_eq!(check_pass(&host), ("b".to_owned(), db));
}

#[test]
fn upload_over_http_validates_like_the_watcher() {
    let setup = swap_setup();
    let host = start(&setup);
    let b = plugin_bytes("swap-b");
    let db = digest(&b);

    let up = host.post_bytes("/v1/plugins/swappable", "application/wasm", &b);
    assert_eq!(up.status, 200, "{up}");
    assert_eq!(up.json["plugin"], "swappable", "{up}");
    assert_eq!(up.json["digest"], db.as_str(), "{up}");
    assert_eq!(up.json["result"], "activated", "{up}");
    assert!(
        up.json["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "swappable")),
        "{up}"
    );
    assert_eq!(live_digest(&host), Ok(db.clone()));
    assert_eq!(check_pass(&host), ("b".to_owned(), db.clone()));

    let again = host.post_bytes("/v1/plugins/swappable", "application/wasm", &b);
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.json["result"], "unchanged", "{again}");

    let garbage = b"this is not a wasm component".as_slice();
    let bad = host.post_bytes("/v1/plugins/swappable", "application/wasm", garbage);
    assert_eq!(bad.status, 422, "{bad}");
    assert_eq!(bad.json["error"]["code"], "rejected", "{bad}");
    let message = bad.json["error"]["message"].as_str().unwrap_or_default();
    let step = message.split(": ").next().unwrap_or_default();
    assert!(
        ["read", "compile", "contract", "exports", "cases"].contains(&step),
        "the message starts with the step: {bad}"
    );
    assert_eq!(
        live_digest(&host),
        Ok(db.clone()),
        "after the rejected upload"
    );
    assert_eq!(check_pass(&host), ("b".to_owned(), db.clone()));

    let events = history(&host);
    let newest = &events[0];
    assert_eq!(newest["result"], "rejected", "{newest}");
    assert_eq!(newest["source"], "api", "{newest}");
    assert_eq!(newest["digest"], digest(garbage).as_str(), "{newest}");
    assert!(
        events.iter().any(|e| e["result"] == "activated"
            && e["source"] == "api"
            && e["digest"] == db.as_str()),
        "{events:?}"
    );

    let nobody = host.post_bytes("/v1/plugins/no-such-plugin", "application/wasm", &b);
    assert_eq!(nobody.status, 404, "{nobody}");

    // GET /v1/plugins, entry by entry.
    let entry = plugin_entry(&host).unwrap_or_else(|e| panic!("{e}"));
    assert!(is_digest(&entry["digest"]), "{entry}");
    assert!(entry["activated_at"].is_string(), "{entry}");
    assert_eq!(entry["source"], "api", "{entry}");
    assert_eq!(
        entry["services"],
        json!([{"service": "swappable", "capability": "verifier"}]),
        "{entry}"
    );
    for counter in ["calls", "faults", "fallbacks", "instantiations"] {
        assert!(entry["stats"][counter].is_u64(), "{counter}: {entry}");
    }
    assert!(entry["stats"]["calls"].as_u64() >= Some(2), "{entry}");
    assert_eq!(entry["last_rejection"]["step"], step, "{entry}");

    // The CLI against the running host.
    let list = cli(
        &setup,
        &[
            OsStr::new("plugins"),
            OsStr::new("list"),
            OsStr::new("--host"),
            OsStr::new(host.base()),
        ],
    );
    assert_eq!(list.status.code(), Some(0), "{}", shown(&list));
    // The table shows digests short (12 hex digits); `--json` in full.
    let short = &db["sha256:".len().."sha256:".len() + 12];
    let out = stdout(&list);
    assert!(
        out.lines()
            .any(|l| l.starts_with("swappable ") && l.contains(short)),
        "a line with swappable and {short}:\n{}",
        shown(&list)
    );
    let list = cli(
        &setup,
        &[
            OsStr::new("plugins"),
            OsStr::new("list"),
            OsStr::new("--json"),
            OsStr::new("--host"),
            OsStr::new(host.base()),
        ],
    );
    assert_eq!(list.status.code(), Some(0), "{}", shown(&list));
    let listed: Value = serde_json::from_str(&stdout(&list)).unwrap_or(Value::Null);
    assert!(
        listed["plugins"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["name"] == "swappable" && p["digest"] == db.as_str())),
        "{}",
        shown(&list)
    );
}

/// The `display_name` of service `id` in `GET /v1/services`.
fn display_name(host: &Host, id: &str) -> Result<String, String> {
    let reply = host.get("/v1/services");
    reply.json["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .and_then(|s| s["display_name"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no display_name of {id} in {reply}"))
}

/// How many log lines report the broken `swappable.toml` as rejected.
fn manifest_rejections(host: &Host) -> usize {
    host.log_tail(1000)
        .lines()
        .filter(|l| l.contains("rejected") && l.contains("swappable.toml:2"))
        .count()
}

#[test]
fn a_broken_rules_change_keeps_the_old_registry_and_a_fix_goes_live() {
    let setup = swap_setup();
    let host = start(&setup);
    let da = digest(&plugin_bytes("swap-a"));
    let manifest = setup.rules_path().join("swappable.toml");
    assert_eq!(display_name(&host, "swappable"), Ok("Swappable".to_owned()));

    write_atomic(
        &manifest,
        b"id = \"swappable\"\n[plugins\nverifier = \"swappable\"\n",
    );
    // Serving goes on all the while the watcher looks at it and rejects it,
    // naming the file (`error: <file>:<line>: <message>`) in the log.
    wait_for(SWAP_TIMEOUT, "the manifest's rejection in the log", || {
        assert_eq!(check_pass(&host), ("a".to_owned(), da.clone()));
        match manifest_rejections(&host) {
            0 => Err(host.log_tail(30)),
            _ => Ok(()),
        }
    });
    assert_eq!(check_pass(&host), ("a".to_owned(), da.clone()));
    assert_eq!(display_name(&host, "swappable"), Ok("Swappable".to_owned()));
    let services = host.get("/v1/services");
    assert_eq!(
        services.json["services"].as_array().map(Vec::len),
        Some(SAMPLE_PLUGINS.len() + 1),
        "every service still served (the samples and swappable): {services}"
    );

    // A valid change to another manifest while the broken one is there: the
    // set is validated as one snapshot, so it does not go live either.
    let seen = manifest_rejections(&host);
    let support = setup.rules_path().join("support-contract.toml");
    let original = std::fs::read_to_string(&support).unwrap();
    let renamed = original.replace(
        "display_name = \"Support contract\"",
        "display_name = \"Support contract, renamed\"",
    );
    assert_ne!(renamed, original, "no display_name line to change");
    write_atomic(&support, renamed.as_bytes());
    wait_for(
        SWAP_TIMEOUT,
        "the set rejected again",
        || match manifest_rejections(&host) {
            n if n > seen => Ok(()),
            _ => Err(host.log_tail(30)),
        },
    );
    assert_eq!(
        display_name(&host, "support-contract"),
        Ok("Support contract".to_owned()),
        "half a rules change went live"
    );
    assert_eq!(check_pass(&host), ("a".to_owned(), da.clone()));

    // The fix: both changes go live together.
    write_atomic(
        &manifest,
        MANIFEST
            .replace("\"Swappable\"", "\"Swappable, renamed\"")
            .as_bytes(),
    );
    wait_for(
        SWAP_TIMEOUT,
        "the new display_name",
        || match display_name(&host, "swappable") {
            Ok(n) if n == "Swappable, renamed" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        display_name(&host, "support-contract"),
        Ok("Support contract, renamed".to_owned())
    );
    assert_eq!(check_pass(&host), ("a".to_owned(), da));
}

/// A candidate that spins is replayed only until it has run out of time
/// five times: the report says where it stopped, and the service answers
/// checks while it runs.
#[test]
fn replay_stops_a_candidate_that_keeps_running_out_of_time() {
    let setup = swap_setup();
    let host = start(&setup);
    for _ in 0..8 {
        check_pass(&host);
    }
    let started = Instant::now();
    let replay = std::thread::scope(|s| {
        let replay = s.spawn(|| {
            host.post_bytes(
                "/v1/plugins/swappable/replay?service=swappable&last=8",
                "application/wasm",
                &plugin_bytes("hostile-loop"),
            )
        });
        while !replay.is_finished() {
            check_pass(&host);
        }
        replay.join().unwrap()
    });
    assert_eq!(replay.status, 200, "{replay}");
    assert_eq!(replay.json["total"], 5, "{replay}");
    assert_eq!(replay.json["agree"], 0, "{replay}");
    let stopped = replay.json["stopped"].as_str().unwrap_or_default();
    assert!(
        stopped.contains("stopped after 5 of 8 decisions")
            && stopped.contains("ran out of time 5 times"),
        "{replay}"
    );
    for d in replay.json["differ"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert_eq!(d["new"]["verdict"], "error", "{d}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "five timeouts took {:?}",
        started.elapsed()
    );
    check_pass(&host);
}

#[test]
fn replay_compares_recorded_decisions_with_a_candidate() {
    let setup = swap_setup();
    let mut host = start(&setup);
    let a = plugin_bytes("swap-a");
    let b = plugin_bytes("swap-b");
    let da = digest(&a);
    for _ in 0..5 {
        assert_eq!(check_pass(&host), ("a".to_owned(), da.clone()));
    }
    let unknown = check(&host, "nobody-1");
    assert_eq!(unknown.status, 200, "{unknown}");
    assert_eq!(unknown.json["decision"], "fail", "{unknown}");

    let replay = "/v1/plugins/swappable/replay?service=swappable&last=50";
    let differs = host.post_bytes(replay, "application/wasm", &b);
    assert_eq!(differs.status, 200, "{differs}");
    assert_eq!(differs.json["total"], 6, "{differs}");
    assert_eq!(differs.json["agree"], 1, "{differs}");
    let list = differs.json["differ"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 5, "the 5 passes differ: {differs}");
    let mut ids = BTreeSet::new();
    for d in &list {
        assert_eq!(d["account_id"], ACCOUNT, "{d}");
        assert!(d["decision_id"].is_u64(), "{d}");
        assert!(!d["request_id"].is_null(), "{d}");
        ids.insert(d["decision_id"].to_string());
        assert_ne!(d["old"], d["new"], "{d}");
        assert!(d["old"].to_string().contains("\"a\""), "old level a: {d}");
        assert!(d["new"].to_string().contains("\"b\""), "new level b: {d}");
    }
    assert_eq!(ids.len(), 5, "distinct decisions: {differs}");

    let last3 = host.post_bytes(
        "/v1/plugins/swappable/replay?service=swappable&last=3",
        "application/wasm",
        &b,
    );
    assert_eq!(last3.status, 200, "{last3}");
    assert_eq!(last3.json["total"], 3, "{last3}");

    let agrees = host.post_bytes(replay, "application/wasm", &a);
    assert_eq!(agrees.status, 200, "{agrees}");
    assert_eq!(agrees.json["total"], 6, "{agrees}");
    assert_eq!(agrees.json["agree"], 6, "{agrees}");
    assert_eq!(agrees.json["differ"], json!([]), "{agrees}");

    // Replay does not activate anything.
    assert_eq!(live_digest(&host), Ok(da));

    // The CLI, on the stopped host's database.
    let status = host.signal("TERM", Duration::from_secs(15));
    assert!(status.is_some(), "rulehost serve did not stop on SIGTERM");
    drop(host);
    let dist = crate::support::plugins_dir();
    let replay_cli = |candidate: &str| {
        let candidate = dist.join(format!("{candidate}.wasm"));
        cli(
            &setup,
            &[
                OsStr::new("replay"),
                OsStr::new("--service"),
                OsStr::new("swappable"),
                OsStr::new("--candidate"),
                candidate.as_os_str(),
                OsStr::new("--db"),
                setup.db_path().as_os_str(),
                OsStr::new("--rules"),
                setup.rules_path().as_os_str(),
                OsStr::new("--plugins"),
                setup.plugins_path().as_os_str(),
            ],
        )
    };
    let out = replay_cli("swap-b");
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(stdout(&out).contains(ACCOUNT), "{}", shown(&out));
    let out = replay_cli("swap-a");
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
}

/// A service without cases takes a trapping build; what answers then depends
/// on `on_plugin_error`.
fn fallback_setup(policy: &str) -> Setup {
    let setup = Setup::new("");
    setup.use_own_plugins(&SAMPLE_PLUGINS);
    let manifest = format!("{MANIFEST}\n[limits]\non_plugin_error = \"{policy}\"\n");
    setup.write_rules("swappable.toml", &manifest);
    write_atomic(&swappable(&setup), &plugin_bytes("swap-a"));
    setup
}

#[test]
fn last_good_answers_from_the_previous_version_when_the_live_one_faults() {
    let setup = fallback_setup("last-good");
    let host = start(&setup);
    let a = digest(&plugin_bytes("swap-a"));
    let broken = hostile(9);
    let upload = host.post_bytes("/v1/plugins/swappable", "application/wasm", &broken);
    assert_eq!(
        upload.status, 200,
        "no cases, so the trapping build goes live: {upload}"
    );
    assert_eq!(live_digest(&host), Ok(digest(&broken)));

    // The live version traps; the previous good one answers, and says so.
    let (level, answered_by) = check_pass(&host);
    assert_eq!((level.as_str(), answered_by.as_str()), ("a", a.as_str()));
    let stats = plugin_entry(&host)
        .map(|p| p["stats"].clone())
        .unwrap_or_default();
    assert_eq!(stats["fallbacks"], 1, "{stats}");
    assert_eq!(stats["faults"], 1, "{stats}");
    let decisions = host.get("/v1/decisions?service=swappable&limit=1");
    assert_eq!(
        decisions.json["decisions"][0]["plugin_digest"],
        a.as_str(),
        "{decisions}"
    );
}

#[test]
fn deny_answers_a_fault_with_an_error_and_no_decision() {
    let setup = fallback_setup("deny");
    let host = start(&setup);
    let broken = hostile(10);
    assert_eq!(
        host.post_bytes("/v1/plugins/swappable", "application/wasm", &broken)
            .status,
        200
    );
    let reply = check(&host, ACCOUNT);
    assert_eq!(reply.status, 503, "{reply}");
    assert_eq!(reply.json["error"]["code"], "plugin-error", "{reply}");
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("swappable") && message.contains("panicked"),
        "{message}"
    );
    let decisions = host.get("/v1/decisions?service=swappable&limit=1");
    assert_eq!(
        decisions.json["decisions"][0]["verdict"], "error",
        "the fault is recorded: {decisions}"
    );
}
