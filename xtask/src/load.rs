//! `cargo xtask load`: checks per second and latency percentiles for
//! `POST /v1/checks` against the real `rulehost serve` on loopback, with
//! `wrk` (Debian's package) at 1, 10 and 100 concurrent clients. Bounded in
//! time (`LOAD_SECONDS`, default 10 per level) and stops by itself.
//!
//! `LOAD_SPIN=1` adds a service whose plugin spins to its 50 ms time limit
//! (`hostile-loop`) and checks it about 10 times a second throughout: what
//! one bad plugin costs everyone else.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

/// Prints p50/p99/p99.9 (µs) and the non-2xx count after the run.
const SCRIPT: &str = r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"service": "support-contract", "account_id": "load-1"}'
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("`wrk` is not installed: `apt-get install -y wrk`");
    }
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let spin = std::env::var_os("LOAD_SPIN").is_some_and(|v| v != "0");
    let dir = std::env::temp_dir().join(format!("rulehost-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rules = if spin {
        let rules = dir.join("rules");
        copy_dir(&root.join("rules"), &rules)?;
        std::fs::write(
            rules.join("spinning.toml"),
            "id = \"spinning\"\n[plugins]\nverifier = \"hostile-loop\"\n",
        )?;
        rules
    } else {
        root.join("rules")
    };
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let mut child = Command::new(Path::new(&target).join("release").join("rulehost"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-listen",
            "127.0.0.1:0",
        ])
        .arg("--db")
        .arg(dir.join("load.db"))
        .arg("--rules")
        .arg(&rules)
        .arg("--plugins")
        .arg(root.join("plugins").join("dist"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start rulehost serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let pid = child.id();
    let _server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .context("rulehost serve exited before it was ready")??;
        if let Some(url) = line.strip_prefix("rulehost listening on ") {
            break url.to_owned();
        }
    };
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            &format!("{base}/v1/accounts/load-1"),
        ])
        .args([
            "-d",
            r#"{"status": "active", "paid_up": true, "tier": "standard"}"#,
        ])
        .output()
        .context("cannot run curl")?;
    if !String::from_utf8_lossy(&status.stdout).starts_with('2') {
        bail!("could not create the load account");
    }
    let script = dir.join("check.lua");
    std::fs::write(&script, SCRIPT)?;
    println!(
        "POST {base}/v1/checks, support-contract, {seconds} s per level, wrk on the same machine"
    );
    let spinning = spin.then(|| spin_checks(&base));
    if spinning.is_some() {
        println!(
            "beside checks of `spinning`, whose plugin spins to its 50 ms limit, about 10 a second"
        );
    }
    println!(
        "{:>8}  {:>10}  {:>9}  {:>9}  {:>9}  {:>7}",
        "clients", "checks/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for clients in [1u32, 10, 100] {
        let threads = clients.min(2).to_string();
        let out = Command::new("wrk")
            .args([
                "-t",
                &threads,
                "-c",
                &clients.to_string(),
                "-d",
                &format!("{seconds}s"),
                "-s",
            ])
            .arg(&script)
            .arg(format!("{base}/v1/checks"))
            .output()
            .context("cannot run wrk")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let result = text
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .context("wrk printed no result")?;
        let field = |name: &str| -> f64 {
            result
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let rate = field("requests") / (field("duration_us") / 1e6);
        println!(
            "{clients:>8}  {rate:>10.0}  {:>9.2}  {:>9.2}  {:>9.2}  {:>7}",
            field("p50") / 1000.0,
            field("p99") / 1000.0,
            field("p999") / 1000.0,
            field("errors")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for key in ["VmRSS", "VmHWM"] {
        if let Some(line) = status.lines().find(|l| l.starts_with(key)) {
            println!(
                "host {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    if let Some((stop, thread)) = spinning {
        stop.store(true, Ordering::Relaxed);
        let _ = thread.join();
    }
    // How the checks went through the store: the mean group, and how many
    // were decided apart (a plugin call over the writer's budget).
    let metrics = Command::new("curl")
        .args(["-s", &format!("{base}/metrics")])
        .output()
        .context("cannot run curl")?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let commits = value("rulehost_store_group_commits_total").max(1.0);
    println!(
        "group commits: mean {:.1} writes; checks decided apart: {}",
        value("rulehost_store_group_writes_total") / commits,
        value("rulehost_checks_decided_apart_total")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Checks the `spinning` service about 10 times a second (each takes its
/// 50 ms limit) until told to stop.
fn spin_checks(base: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{base}/v1/checks");
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let _ = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-X", "POST", &url, "-d"])
                .arg(r#"{"service": "spinning", "account_id": "load-1"}"#)
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (stop, thread)
}

/// Copies the folder `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
