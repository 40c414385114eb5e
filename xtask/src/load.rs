//! `cargo xtask load`: checks per second and latency percentiles for
//! `POST /v1/checks`, session events per second (`POST
//! /v1/sessions/{id}/events`), and calls per second (`POST /v1/communications`
//! then `.../complete`, the sample `standard` plan with its plan-policy
//! plugin, one prepaid debit each, over 100 callers), against the real `rulehost serve` on loopback, with
//! `wrk` (Debian's package) at 1, 10 and 100 concurrent clients, each level
//! beside `GET /healthz` on the same server in the same run (the HTTP
//! floor) and the ratio between them; for `[store] sync = "full"` and
//! `"normal"` (`LOAD_SYNC=full` for one). Then a long run at 10 clients
//! (`LOAD_LONG_SECONDS`, default 60; 0 skips it). `LOAD_COMMIT_DELAY_US`
//! sets `[store] commit_delay_us` (with `commit_siblings = 2`). Bounded in time
//! (`LOAD_SECONDS`, default 10 per level) and stops by itself.
//!
//! Session events (`LOAD_SESSIONS=0` skips them): joins and leaves under
//! the sample `conference-split` service, posted to fresh sessions opened
//! for each level (two per client, at least 20), one event in flight per
//! session so each session's events arrive in order. Each session has a
//! host who joins first and stays, and two guests who join and leave in
//! turn; every event is a simulated minute after the previous one of its
//! session (the sessions start 30 days ago), so each is charged (10 minor
//! units a minute split among those present: one or two debits). Any
//! answer but 201 fails the run, with the first such answer printed.
//!
//! `LOAD_SPIN=1` adds a service whose plugin spins to its 50 ms time limit
//! (`hostile-loop`) and checks it about 10 times a second throughout: what
//! one bad plugin costs everyone else.
//!
//! Beside each `/healthz` run, a probe writes 13 pages (a group commit at
//! 10 clients) and `fdatasync`s them every 2 ms on the database's disk
//! (`fsync p50`, `p99`, `p99.9`): under `sync = "full"` every answer waits
//! for a COMMIT that makes such a sync, under that CPU load.
//!
//! Each database is fresh, so its first start writes an operator token
//! beside it (`<db>.operator-token`); curl and wrk send it. `/healthz` and
//! `/metrics` need none.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::fsync_probe::FsyncProbe;

/// Prints p50/p99/p99.9 (µs) and the non-2xx count after the run.
const REPORT: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

const CHECK: &str = r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
wrk.body = '{"service": "support-contract", "account_id": "load-1"}'
"#;

/// Callers the calls are spread over (one caller's calls are taken in
/// turn by the host).
const CALLERS: u32 = 100;

/// A communication is two requests: authorize, then complete. Each wrk
/// thread keeps the ids its authorizations returned and completes one
/// before it authorizes again, so every communication is completed but
/// those in flight when the run ends. The callers are taken in turn, each
/// thread (at most two, `wrk_threads`) from its own half of them: threads
/// in step would call as the same caller at once, and one caller's calls
/// are taken one at a time.
const COMMUNICATION: &str = r#"wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
local ids = {}
local turn = 0
local ranks = 0
setup = function(thread)
  thread:set("rank", ranks)
  ranks = ranks + 1
end
local half = math.floor(CALLERS / 2)
local complete = '{"duration_secs": 60, "answered": true}'
request = function()
  local id = table.remove(ids)
  if id then
    return wrk.format("POST", "/v1/communications/" .. id .. "/complete", nil, complete)
  end
  turn = turn + 1
  local caller = rank * half + turn % half
  local authorize = '{"account_id": "load-calls-' .. caller .. '", "pin": "1234", "access_method": "8005550100", "destination": "12125550199"}'
  return wrk.format("POST", "/v1/communications", nil, authorize)
end
response = function(status, headers, body)
  if status == 201 and not body:find('"lines"', 1, true) then
    local id = body:match('"id":"(com_[^"]+)"')
    if id then table.insert(ids, id) end
  end
end
"#;

/// Session events, one in flight per session. Each wrk thread takes the
/// sessions of its own rank (`THREADS` threads) so no two threads post to
/// one session; an event's answer names its session, which is then ready
/// for its next event. A session's first event is its host's join; then
/// two guests join and leave in turn, each event a minute after the
/// previous one of its session. Anything but 201 is counted, and the first
/// such answer printed.
const SESSION_EVENTS: &str = r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
local sessions = {SESSIONS}
local threads_total = THREADS
local start = START
local accounts = ACCOUNTS
local threads = {}
local ranks = 0
setup = function(thread)
  thread:set("rank", ranks)
  ranks = ranks + 1
  table.insert(threads, thread)
end
local ready, by_id = {}, {}
unexpected = 0
first_error = ""
init = function(args)
  for i, id in ipairs(sessions) do
    if (i - 1) % threads_total == rank then
      local s = {id = id, clock = start, events = 0, guest_events = 0, host = false,
        present = {false, false}, account = i % accounts}
      by_id[id] = s
      table.insert(ready, s)
    end
  end
end
local function join(id, who, account, at)
  return '{"id": "' .. id .. '", "type": "join", "participant": "' .. who ..
    '", "account_id": "load-sessions-' .. (account % accounts) .. '", "at": "' .. at .. '"}'
end
request = function()
  local s = table.remove(ready, 1)
  if not s then
    -- Every session of this thread is waiting: none answered 201.
    return wrk.format("POST", "/v1/sessions/none-ready/events", nil, "{}")
  end
  s.clock = s.clock + 60
  s.events = s.events + 1
  local at = os.date("!%Y-%m-%dT%H:%M:%SZ", s.clock)
  local id = "e" .. s.events
  local body
  if not s.host then
    s.host = true
    body = join(id, "host", s.account, at)
  else
    local g = s.guest_events % 2 + 1
    s.guest_events = s.guest_events + 1
    if s.present[g] then
      s.present[g] = false
      body = '{"id": "' .. id .. '", "type": "leave", "participant": "guest-' .. g .. '", "at": "' .. at .. '"}'
    else
      s.present[g] = true
      body = join(id, "guest-" .. g, s.account + g, at)
    end
  end
  return wrk.format("POST", "/v1/sessions/" .. s.id .. "/events", nil, body)
end
response = function(status, headers, body)
  local id = body:match('"session_id":"([^"]+)"')
  local s = id and by_id[id]
  if status == 201 and s then
    table.insert(ready, s)
  else
    unexpected = unexpected + 1
    if first_error == "" then
      first_error = status .. " " .. (body:sub(1, 300):gsub("%s+", " "))
    end
  end
end
done = function(summary, latency, requests)
  local bad, first = 0, ""
  for _, t in ipairs(threads) do
    bad = bad + (t:get("unexpected") or 0)
    local f = t:get("first_error")
    if first == "" and f then first = f end
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration, bad + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
  if first ~= "" then io.write("FIRST_ERROR " .. first .. "\n") end
end
"#;

/// Accounts the session events charge (prepaid, a balance no run spends).
const SESSION_ACCOUNTS: u32 = 100;

/// One wrk run's figures.
struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    /// The first unexpected answer, when the script records one.
    first_error: Option<String>,
}

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
    let env_secs = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    // The build just wrote hundreds of MiB; their writeback would compete
    // with the host's fsyncs for the disk and show as a tail of 200 ms.
    let _ = Command::new("sync").status();
    let seconds = env_secs("LOAD_SECONDS", 10);
    let long = env_secs("LOAD_LONG_SECONDS", 60);
    let modes = std::env::var("LOAD_SYNC").unwrap_or_else(|_| "full,normal".into());
    let spin = std::env::var_os("LOAD_SPIN").is_some_and(|v| v != "0");
    let sessions = std::env::var_os("LOAD_SESSIONS").is_none_or(|v| v != "0");
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
    let check = dir.join("check.lua");
    let communication = dir.join("communication.lua");
    let events = dir.join("events.lua");
    let healthz = dir.join("healthz.lua");
    std::fs::write(&healthz, REPORT)?;
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let db = dir.join(format!("load-{mode}.db"));
        let config = dir.join(format!("{mode}.toml"));
        // `LOAD_COMMIT_DELAY_US` tries PostgreSQL's commit_delay.
        let delay = std::env::var("LOAD_COMMIT_DELAY_US").unwrap_or_default();
        let delay = if delay.is_empty() {
            String::new()
        } else {
            format!("commit_delay_us = {delay}\ncommit_siblings = 2\n")
        };
        std::fs::write(&config, format!("[store]\nsync = \"{mode}\"\n{delay}"))?;
        let (server, base) = serve(root, &rules, &db, &config)?;
        // The operator token the fresh database's first start wrote.
        let token = operator_token(&db).with_context(|| {
            format!(
                "no operator token beside {}: did `serve` start it fresh?",
                db.display()
            )
        })?;
        let bearer = format!("Authorization: Bearer {token}");
        std::fs::write(
            &check,
            format!("{}{REPORT}", CHECK.replace("TOKEN", &token)),
        )?;
        std::fs::write(
            &communication,
            format!(
                "{}{REPORT}",
                COMMUNICATION
                    .replace("TOKEN", &token)
                    .replace("CALLERS", &CALLERS.to_string())
            ),
        )?;
        create_account(&base, &bearer)?;
        create_calling_account(&base, &bearer)?;
        if sessions {
            for n in 0..SESSION_ACCOUNTS {
                create_caller(&base, &bearer, &format!("load-sessions-{n}"))?;
            }
        }
        println!(
            "\n[store] sync = \"{mode}\" {}: POST {base}/v1/checks (support-contract) beside GET /healthz, calls (authorize + complete){}, {seconds} s each, wrk on the same machine",
            delay.replace('\n', " "),
            if sessions {
                " and session events (conference-split)"
            } else {
                ""
            }
        );
        let spinning = spin.then(|| spin_checks(&base, &bearer));
        if spinning.is_some() {
            println!(
                "beside checks of `spinning`, whose plugin spins to its 50 ms limit, about 10 a second"
            );
        }
        let events_header = if sessions {
            format!(
                "  {:>9}  {:>6}  {:>9}  {:>7}",
                "events/s", "ratio", "ev p99 ms", "errors"
            )
        } else {
            String::new()
        };
        println!(
            "{:>8}  {:>10}  {:>10}  {:>6}  {:>9}  {:>9}  {:>9}  {:>7}  {:>9}  {:>9}  {:>11}  {:>9}  {:>6}  {:>11}  {:>7}{events_header}",
            "clients",
            "healthz/s",
            "checks/s",
            "ratio",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "fsync p50",
            "fsync p99",
            "fsync p99.9",
            "calls/s",
            "ratio",
            "req p99 ms",
            "errors"
        );
        let mut levels: Vec<(u32, u64)> = [1u32, 10, 100].map(|c| (c, seconds)).to_vec();
        if long > 0 {
            levels.push((10, long));
        }
        for (clients, secs) in levels {
            let probe = FsyncProbe::start(&dir);
            let floor = wrk(&healthz, &format!("{base}/healthz"), clients, secs)?;
            let disk = probe.finish()?;
            std::thread::sleep(Duration::from_millis(500));
            let checks = wrk(&check, &format!("{base}/v1/checks"), clients, secs)?;
            std::thread::sleep(Duration::from_millis(500));
            // Calls: authorize + complete, so half the requests.
            let calls = wrk(&communication, &base, clients, secs)?;
            let events = if sessions {
                std::thread::sleep(Duration::from_millis(500));
                write_session_events(&events, &base, &token, clients)?;
                Some(wrk(&events, &base, clients, secs)?)
            } else {
                None
            };
            let label = if secs == seconds {
                clients.to_string()
            } else {
                format!("{clients} ({secs} s)")
            };
            let events_columns = events.as_ref().map_or_else(String::new, |e| {
                format!(
                    "  {:>9.0}  {:>6.2}  {:>9.2}  {:>7}",
                    e.rate,
                    e.rate / checks.rate.max(1.0),
                    e.p99_ms,
                    e.errors
                )
            });
            println!(
                "{label:>8}  {:>10.0}  {:>10.0}  {:>6.2}  {:>9.2}  {:>9.2}  {:>9.2}  {:>7}  {:>9.2}  {:>9.2}  {:>11.2}  {:>9.0}  {:>6.2}  {:>11.2}  {:>7}{events_columns}",
                floor.rate,
                checks.rate,
                checks.rate / floor.rate.max(1.0),
                checks.p50_ms,
                checks.p99_ms,
                checks.p999_ms,
                checks.errors,
                disk.p50_ms,
                disk.p99_ms,
                disk.p999_ms,
                calls.rate / 2.0,
                calls.rate / 2.0 / checks.rate.max(1.0),
                calls.p99_ms,
                calls.errors
            );
            if let Some(events) = events.filter(|e| e.errors > 0) {
                bail!(
                    "{} session events were not answered 201 at {clients} clients; the first: {}",
                    events.errors,
                    events
                        .first_error
                        .as_deref()
                        .unwrap_or("(a connection error)")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap_or_default();
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
        report_store(&base)?;
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts `rulehost serve` (release) on free ports: the server and its base URL.
fn serve(root: &Path, rules: &Path, db: &Path, config: &Path) -> anyhow::Result<(Server, String)> {
    let (child, base) = start_release_host(
        root,
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--public-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--db".as_ref(),
            db.as_os_str(),
            "--rules".as_ref(),
            rules.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    )?;
    Ok((Server(child), base))
}

/// The operator token `serve` writes beside a fresh database
/// (`<db>.operator-token`, the default of `[auth] operator_token_file`).
pub(crate) fn operator_token(db: &Path) -> Option<String> {
    let mut path = db.as_os_str().to_owned();
    path.push(".operator-token");
    std::fs::read_to_string(std::path::PathBuf::from(path))
        .ok()
        .map(|t| t.trim().to_owned())
}

/// Starts the release `rulehost serve` with `args` on the built plugins and
/// waits until it listens: the process and the internal API's base URL.
pub(crate) fn start_release_host(
    root: &Path,
    args: &[&std::ffi::OsStr],
) -> anyhow::Result<(Child, String)> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let mut child = Command::new(Path::new(&target).join("release").join("rulehost"))
        .arg("serve")
        .args(args)
        .arg("--plugins")
        .arg(root.join("plugins").join("dist"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start rulehost serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("rulehost serve exited before it was ready");
        };
        if let Some(url) = line?.strip_prefix("rulehost listening on ") {
            break url.to_owned();
        }
    };
    // Read on, so the server never writes to a closed pipe (and dies of it).
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, base))
}

fn create_account(base: &str, bearer: &str) -> anyhow::Result<()> {
    let status = Command::new("curl")
        .args([
            "-s",
            "-H",
            bearer,
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
    let code = String::from_utf8_lossy(&status.stdout);
    if !code.starts_with('2') {
        bail!("could not create the load account at {base}: HTTP {code}");
    }
    Ok(())
}

/// Opens fresh sessions of `conference-split` for one level (two per
/// client, at least 20, started 30 days ago so that a minute per event
/// stays in the past) and writes the wrk script that posts their events.
fn write_session_events(
    script: &Path,
    base: &str,
    token: &str,
    clients: u32,
) -> anyhow::Result<()> {
    let start = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(30 * 24))
        .context("30 days ago is out of range")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let body = serde_json::json!({
        "service": "conference-split",
        "attributes": {"topic": "load"},
        "at": start.to_string(),
    })
    .to_string();
    let mut ids = Vec::new();
    for _ in 0..(clients * 2).max(20) {
        let mut reply = agent
            .post(format!("{base}/v1/sessions"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .send(body.as_str())
            .context("POST /v1/sessions: no answer")?;
        let status = reply.status().as_u16();
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        let opened: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match opened["id"].as_str() {
            Some(id) if status == 201 => ids.push(format!("{id:?}")),
            _ => bail!("could not open a session at {base}: HTTP {status}: {text}"),
        }
    }
    std::fs::write(
        script,
        SESSION_EVENTS
            .replace("TOKEN", token)
            .replace("{SESSIONS}", &format!("{{{}}}", ids.join(", ")))
            .replace("THREADS", &wrk_threads(clients).to_string())
            .replace("START", &start.as_second().to_string())
            .replace("ACCOUNTS", &SESSION_ACCOUNTS.to_string()),
    )?;
    Ok(())
}

/// Prepaid accounts with a PIN and a balance no run spends, for calls.
fn create_calling_account(base: &str, bearer: &str) -> anyhow::Result<()> {
    for n in 0..CALLERS {
        create_caller(base, bearer, &format!("load-calls-{n}"))?;
    }
    Ok(())
}

fn create_caller(base: &str, bearer: &str, id: &str) -> anyhow::Result<()> {
    let put = |path: &str, method: &str, body: &str| -> anyhow::Result<()> {
        let out = Command::new("curl")
            .args([
                "-s",
                "-H",
                bearer,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
            ])
            .arg(format!("{base}{path}"))
            .args(["-d", body])
            .output()
            .context("cannot run curl")?;
        let code = String::from_utf8_lossy(&out.stdout);
        if !code.starts_with('2') {
            bail!("{method} {path} at {base}: HTTP {code}");
        }
        Ok(())
    };
    put(
        &format!("/v1/accounts/{id}"),
        "PUT",
        r#"{"status": "active", "paid_up": true, "pin": "1234", "billing": "prepaid"}"#,
    )?;
    put(
        &format!("/v1/accounts/{id}/topup"),
        "POST",
        r#"{"amount": 100000000000, "reference": "load"}"#,
    )
}

/// wrk's threads for `clients` connections.
fn wrk_threads(clients: u32) -> u32 {
    clients.min(2)
}

/// Runs wrk with `script` against `url`.
fn wrk(script: &Path, url: &str, clients: u32, seconds: u64) -> anyhow::Result<Figures> {
    let threads = wrk_threads(clients).to_string();
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
        .arg(script)
        .arg(url)
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
    Ok(Figures {
        rate: field("requests") / (field("duration_us") / 1e6),
        p50_ms: field("p50") / 1000.0,
        p99_ms: field("p99") / 1000.0,
        p999_ms: field("p999") / 1000.0,
        errors: field("errors") as u64,
        first_error: text
            .lines()
            .find_map(|l| l.strip_prefix("FIRST_ERROR "))
            .map(str::to_owned),
    })
}

/// How the checks went through the store: the mean group, the time in
/// COMMIT, and how many checks were decided again.
fn report_store(base: &str) -> anyhow::Result<()> {
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
        "group commits: {commits:.0}, mean {:.1} writes, {:.0} µs in COMMIT each; queue full {} times; checks decided again: {}; WAL {:.1} MiB",
        value("rulehost_store_group_writes_total") / commits,
        value("rulehost_store_commit_microseconds_total") / commits,
        value("rulehost_store_queue_full_waits_total"),
        value("rulehost_checks_redecided_total"),
        value("rulehost_store_wal_bytes") / (1024.0 * 1024.0),
    );
    Ok(())
}

/// Checks the `spinning` service about 10 times a second (each takes its
/// 50 ms limit) until told to stop.
fn spin_checks(base: &str, bearer: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{base}/v1/checks");
    let bearer = bearer.to_owned();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let _ = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-H",
                    &bearer,
                    "-X",
                    "POST",
                    &url,
                    "-d",
                ])
                .arg(r#"{"service": "spinning", "account_id": "load-1"}"#)
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (stop, thread)
}

/// Copies the folder `from` into `to`, recursively.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
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
