//! Hot reload: the time from a plugin file written (renamed into place, as
//! `cargo xtask plugins` and careful deploy tools do) to that version live,
//! through the real watcher, debounce, compile, cases and swap, in-process.
//! Two builds of each sample plugin alternate: the repository's, and the same
//! with a custom section appended (a new digest, the same behaviour). Every
//! swap compiles afresh (no compile cache). Also prints what one `offer`
//! costs without the watcher, so the debounce's share is visible.
//!
//! `cargo bench -p rulehost --bench reload` (needs `cargo xtask plugins`
//! first). Under `cargo test` (no `--bench`) it makes two swaps per plugin as
//! a smoke test.

// A benchmark that cannot set up or whose swap never lands has nothing to
// report: failing loudly is right.
#![allow(clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rulehost::registry::{Live, Offered, Source, Sources, Watcher};
use rulehost::runtime::{Digest, Runtime, RuntimeOptions};
use rulehost::store::Store;

const PLUGINS: [&str; 2] = ["support-contract", "premium-support"];
const SWAPS: usize = 20;
const POLL: Duration = Duration::from_millis(1);
const TIMEOUT: Duration = Duration::from_secs(5);

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries.flatten() {
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

/// The same component with a custom section `bench` appended.
fn variant(bytes: &[u8]) -> Vec<u8> {
    let name = b"bench";
    let payload = b"reload";
    let size = 1 + name.len() + payload.len();
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0x00, size as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

/// Writes `bytes` to `path` through a hidden temp file and a rename.
fn replace(path: &Path, bytes: &[u8]) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn live_digest(live: &Live, name: &str) -> Option<Digest> {
    live.registry().load().plugins.get(name).map(|p| p.digest())
}

/// Median and 95th percentile, in ms.
fn figures(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.95))
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let swaps = if benching { SWAPS } else { 2 };
    let dist = repo().join("plugins/dist");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let sources = Sources {
        rules_dir: dir.path().join("rules"),
        plugins_dir: dir.path().join("plugins"),
    };
    copy_dir(&repo().join("rules"), &sources.rules_dir);
    std::fs::create_dir_all(&sources.plugins_dir).unwrap_or_else(|e| panic!("{e}"));
    let mut builds = Vec::new();
    for name in PLUGINS {
        let from = dist.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&from).unwrap_or_else(|e| {
            panic!("{} ({e}): run `cargo xtask plugins` first", from.display())
        });
        std::fs::write(sources.plugin_path(name), &bytes).unwrap_or_else(|e| panic!("{e}"));
        builds.push((name, [bytes.clone(), variant(&bytes)]));
    }
    for entry in std::fs::read_dir(&dist).into_iter().flatten().flatten() {
        let target = sources.plugins_dir.join(entry.file_name());
        if !target.exists() && entry.path().extension().is_some_and(|x| x == "wasm") {
            let _ = std::fs::copy(entry.path(), target);
        }
    }

    let store = Store::open(&dir.path().join("rulehost.db")).unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let (live, diagnostics) =
        Live::start(runtime, sources.clone(), store).unwrap_or_else(|e| panic!("{e}"));
    if let Some(d) = diagnostics.iter().find(|d| d.is_error()) {
        panic!("the sample rules do not load: {d}");
    }
    let live = Arc::new(live);
    let watcher = Watcher::start(live.clone()).unwrap_or_else(|e| panic!("{e}"));

    for (name, versions) in &builds {
        let path = sources.plugin_path(name);
        let mut times = Vec::with_capacity(swaps);
        for i in 0..swaps {
            // Start on the variant: the original is live already.
            let bytes = &versions[(i + 1) % 2];
            let digest = Digest::of(bytes);
            replace(&path, bytes);
            let written = Instant::now();
            while live_digest(&live, name) != Some(digest) {
                if written.elapsed() > TIMEOUT {
                    panic!("{name}: version {digest} not live {TIMEOUT:?} after it was written");
                }
                std::thread::sleep(POLL);
            }
            times.push(written.elapsed());
        }
        let (median, p95) = figures(times);
        println!(
            "reload {name}: median {median:.1} ms, p95 {p95:.1} ms over {swaps} swaps (file written to version active)"
        );
    }
    drop(watcher);

    // The same swaps offered directly: validation and swap without the watcher.
    for (name, versions) in &builds {
        let mut times = Vec::with_capacity(swaps);
        for i in 0..swaps {
            let bytes = &versions[(i + 1) % 2];
            let started = Instant::now();
            match live.offer(name, bytes, Source::Cli, None) {
                Ok(Offered::Activated { .. }) => times.push(started.elapsed()),
                other => panic!("{name}: offer {i}: {other:?}"),
            }
        }
        let (median, p95) = figures(times);
        println!(
            "offer  {name}: median {median:.1} ms, p95 {p95:.1} ms over {swaps} swaps (compile, cases, record, swap)"
        );
    }
}
