//! `cargo xtask soak`: a crash soak. The release `rulehost serve` on a copy
//! of the sample rules (webhooks to a receiver in this process) takes a
//! mixed load — checks that pass, checks that fail and start
//! reconciliations (their links opened on the public site), flows with
//! demands and manual tasks — and is killed with SIGKILL at a random moment,
//! `SOAK_ROUNDS` times (default 5). After every restart the invariants are
//! checked against what clients were answered:
//!
//! - every answered check is in the decision log exactly once;
//! - every answered flow exists, every answered task completion is `done`,
//!   no task is recorded done more often than the flow has tasks of its name;
//! - the public site answers every link it issued without a server error;
//! - at the end, every notification is delivered (or held for a role without
//!   a webhook, or dead with its reason), and the receiver got each delivered
//!   one, none of them under two event ids.
//!
//! Bounded: `SOAK_SECONDS` of load per round at most (default 8), loopback
//! only. Exits non-zero on the first broken invariant, saying which.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::load::{copy_dir, operator_token, start_release_host};

const CLIENTS: usize = 4;
const SUPPORT: &str = "support-contract";
const PREMIUM: &str = "premium-support";
const ACTIVE: &str = "soak-active";
const EXPIRED: &str = "soak-expired";
/// A premium account not paid up: its checks go to the payment page now.
const UNPAID: &str = "soak-unpaid";

/// What clients were answered, to hold the host to after each restart.
#[derive(Default)]
struct Answered {
    /// Request ids of checks answered 200.
    checks: BTreeSet<String>,
    /// Flows answered 201.
    flows: BTreeSet<String>,
    /// Tasks whose completion was answered 200.
    tasks: BTreeSet<String>,
    /// Reconciliation links handed out in check answers.
    links: Vec<String>,
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("SOAK_ROUNDS", 5);
    let seconds = env("SOAK_SECONDS", 8).max(1);
    let mut rng = Rng::new(env("SOAK_SEED", now_nanos()));
    let dir = std::env::temp_dir().join(format!("rulehost-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let receiver = Receiver::start()?;
    let rules = dir.join("rules");
    copy_dir(&root.join("rules"), &rules)?;
    std::fs::write(
        rules.join("roles.toml"),
        format!(
            "[network-provider]\nwebhook = \"{}\"\n\n[client]\nwebhook = \"{}\"\n",
            receiver.url("/network"),
            receiver.url("/client")
        ),
    )?;
    let manifest = rules.join("support-contract.toml");
    let text = std::fs::read_to_string(&manifest)?.replace(
        "# webhook = \"http://127.0.0.1:9000/events\"",
        &format!("webhook = \"{}\"", receiver.url("/service")),
    );
    std::fs::write(&manifest, text)?;
    let db = dir.join("soak.db");
    println!(
        "soak: {rounds} rounds of at most {seconds} s, {CLIENTS} clients, database {}",
        db.display()
    );

    let answered = Arc::new(Mutex::new(Answered::default()));
    let ports = (free_port()?, free_port()?);
    let mut host = Host::start(root, &rules, &db, ports)?;
    setup_accounts(&host)?;
    for round in 1..=rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let host = host.endpoints();
                let (stop, answered) = (stop.clone(), answered.clone());
                let seed = rng.next() ^ i as u64;
                std::thread::spawn(move || client(&host, seed, &stop, &answered))
            })
            .collect();
        let kill_at = Duration::from_millis(500 + rng.below(seconds * 1000 - 499));
        std::thread::sleep(kill_at);
        host.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut errors = 0;
        for c in clients {
            errors += c.join().unwrap_or(0);
        }
        let started = Instant::now();
        host = Host::start(root, &rules, &db, ports)?;
        let restart = started.elapsed();
        let summary = check_invariants(&host, &answered)
            .with_context(|| format!("round {round}: an invariant does not hold"))?;
        println!(
            "round {round}: killed after {:.1} s, back in {} ms; {summary}; {errors} requests cut off by the kill",
            kill_at.as_secs_f64(),
            restart.as_millis()
        );
    }
    let outbox = settle_outbox(&host, &receiver)?;
    println!("outbox (the newest thousand): {outbox}");
    println!("soak: every invariant held");
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn setup_accounts(host: &Host) -> anyhow::Result<()> {
    let e = host.endpoints();
    e.put(
        &format!("/v1/accounts/{ACTIVE}"),
        &json!({"status": "active", "paid_up": true, "tier": "standard"}),
    )?;
    e.put(
        &format!("/v1/accounts/{EXPIRED}"),
        &json!({"status": "expired", "paid_up": false, "tier": "standard", "contact": {"name": "Soak", "email": "soak@example.test"}}),
    )?;
    e.put(
        &format!("/v1/accounts/{UNPAID}"),
        &json!({"status": "active", "paid_up": false, "tier": "premium", "contract_end": "2099-01-01T00:00:00Z", "contact": {"name": "Soak", "email": "soak@example.test"}}),
    )?;
    Ok(())
}

/// One client's loop until `stop` (or until the host is gone): the number
/// of requests that got no answer.
fn client(host: &Endpoints, seed: u64, stop: &AtomicBool, answered: &Mutex<Answered>) -> u64 {
    let mut rng = Rng::new(seed);
    let mut cut = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("soak-{seed:x}-{n}");
        let result = match rng.below(10) {
            0..=3 => check(host, SUPPORT, ACTIVE, &id, answered).map(drop),
            4 | 5 => check(host, SUPPORT, EXPIRED, &id, answered).map(drop),
            6 => check(host, PREMIUM, UNPAID, &id, answered)
                .and_then(|link| link.map_or(Ok(()), |link| visit(host, &link, &mut rng))),
            7 => start_flow(host, &mut rng, answered),
            _ => complete_task(host, answered),
        };
        if result.is_err() {
            cut += 1;
            // The host is down or going down; the round ends with the kill.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    cut
}

/// Checks `request_id`; the reconciliation link of the answer, if any.
fn check(
    host: &Endpoints,
    service: &str,
    account: &str,
    request_id: &str,
    answered: &Mutex<Answered>,
) -> anyhow::Result<Option<String>> {
    let (status, body) = host.post(
        "/v1/checks",
        &json!({"service": service, "account_id": account, "request_id": request_id}),
    )?;
    ensure!(status == 200, "check {request_id}: HTTP {status}: {body}");
    let link = body["reconciliation"]["url"].as_str().map(str::to_owned);
    let mut a = lock(answered);
    a.checks.insert(request_id.to_owned());
    a.links.extend(link.clone());
    Ok(link)
}

/// Opens a reconciliation page as the customer would, and half the time
/// leaves it ("not now"); the site must never answer with a server error.
fn visit(host: &Endpoints, link: &str, rng: &mut Rng) -> anyhow::Result<()> {
    let status = host.get_url(link)?;
    ensure!(status == 200, "reconciliation page {link}: HTTP {status}");
    if rng.below(2) == 0
        && let Some((page, key)) = link.split_once("?key=")
    {
        let status = host.post_form(&format!("{page}/leave"), &[("key", key)])?;
        ensure!(status < 500, "leave {page}: HTTP {status}");
    }
    Ok(())
}

fn start_flow(host: &Endpoints, rng: &mut Rng, answered: &Mutex<Answered>) -> anyhow::Result<()> {
    let (status, body) = host.post(
        "/v1/flows",
        &json!({"definition": "connect-client", "subject": format!("soak-{}", rng.next())}),
    )?;
    ensure!(status == 201, "start a flow: HTTP {status}: {body}");
    let id = body["id"]
        .as_str()
        .context("a flow without an id")?
        .to_owned();
    if rng.below(3) == 0 {
        let (status, body) = host.post(
            &format!("/v1/flows/{id}/demands"),
            &json!({"problem": "line fault"}),
        )?;
        // The flow may already be past where a demand can go.
        ensure!(
            status == 201 || status == 409,
            "demand: HTTP {status}: {body}"
        );
    }
    lock(answered).flows.insert(id);
    Ok(())
}

fn complete_task(host: &Endpoints, answered: &Mutex<Answered>) -> anyhow::Result<()> {
    let (status, body) = host.get("/v1/tasks?state=open&role=network-provider")?;
    ensure!(status == 200, "open tasks: HTTP {status}: {body}");
    let Some(id) = body["tasks"][0]["id"].as_str() else {
        return Ok(());
    };
    let (status, body) = host.post(
        &format!("/v1/tasks/{id}/complete"),
        &json!({"outcome": "done", "data": {"line": "L-soak"}}),
    )?;
    match status {
        200 => {
            lock(answered).tasks.insert(id.to_owned());
            Ok(())
        }
        // Another client completed it first.
        409 => Ok(()),
        _ => bail!("complete {id}: HTTP {status}: {body}"),
    }
}

/// Checks what the restarted host holds against what was answered.
fn check_invariants(host: &Host, answered: &Mutex<Answered>) -> anyhow::Result<String> {
    let e = host.endpoints();
    let a = lock(answered);
    // Every answered check is in the log, once.
    let mut logged: HashMap<String, u32> = HashMap::new();
    let mut after: Option<Value> = None;
    loop {
        let query = match &after {
            Some(next) => format!("/v1/decisions?order=asc&limit=1000&after={next}"),
            None => "/v1/decisions?order=asc&limit=1000".into(),
        };
        let (status, body) = e.get(&query)?;
        ensure!(status == 200, "decisions: HTTP {status}: {body}");
        for d in body["decisions"].as_array().into_iter().flatten() {
            if let Some(id) = d["request_id"].as_str() {
                *logged.entry(id.to_owned()).or_default() += 1;
            }
        }
        match &body["next"] {
            Value::Null => break,
            next => after = Some(next.clone()),
        }
    }
    for id in &a.checks {
        match logged.get(id) {
            Some(1) => {}
            Some(n) => bail!("answered check {id} is in the decision log {n} times"),
            None => bail!("answered check {id} is not in the decision log"),
        }
    }
    if let Some((id, n)) = logged.iter().find(|(_, n)| **n > 1) {
        bail!("request {id} is in the decision log {n} times, but every request was checked once");
    }
    // Flows and tasks.
    let mut done_tasks = 0;
    for id in &a.flows {
        let (status, flow) = e.get(&format!("/v1/flows/{id}"))?;
        ensure!(status == 200, "answered flow {id}: HTTP {status}: {flow}");
        let tasks = flow["tasks"].as_array().cloned().unwrap_or_default();
        let mut per_name: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for t in &tasks {
            per_name
                .entry(t["name"].as_str().unwrap_or(""))
                .or_default()
                .0 += 1;
            if t["state"] == "done" {
                done_tasks += 1;
            }
            let id = t["id"].as_str().unwrap_or("");
            if a.tasks.contains(id) {
                ensure!(
                    t["state"] == "done",
                    "task {id} was answered complete but is {}",
                    t["state"]
                );
            }
        }
        for h in flow["history"].as_array().into_iter().flatten() {
            if ["task-completed", "action-done", "timer-fired", "done"]
                .iter()
                .any(|e| h["event"] == *e)
                || h["event"].as_str().is_some_and(|e| e.ends_with("-done"))
            {
                let name = h["detail"]["task"].as_str().unwrap_or("");
                per_name.entry(name).or_default().1 += 1;
            }
        }
        for (name, (count, completed)) in per_name {
            ensure!(
                completed <= count,
                "flow {id}: task `{name}` is recorded done {completed} times for {count} such tasks"
            );
        }
    }
    // Links: the public site answers each, never with a server error.
    for link in a.links.iter().rev().take(20) {
        let status = e.get_url(link)?;
        ensure!(status < 500, "reconciliation link {link}: HTTP {status}");
    }
    Ok(format!(
        "{} checks, {} flows ({done_tasks} tasks done), {} task completions, {} links: all held",
        a.checks.len(),
        a.flows.len(),
        a.tasks.len(),
        a.links.len()
    ))
}

/// Waits until nothing is pending in the outbox, then holds it to the
/// receiver's log.
fn settle_outbox(host: &Host, receiver: &Receiver) -> anyhow::Result<String> {
    let e = host.endpoints();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let (status, body) = e.get("/v1/outbox?state=pending&limit=1000")?;
        ensure!(status == 200, "outbox: HTTP {status}: {body}");
        let pending = body["notifications"].as_array().map_or(0, Vec::len);
        if pending == 0 {
            // The newest thousand, whatever their state.
            let (status, body) = e.get("/v1/outbox?limit=1000")?;
            ensure!(status == 200, "outbox: HTTP {status}: {body}");
            break body["notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        ensure!(
            Instant::now() < deadline,
            "{pending} notifications still pending after 60 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let seen = receiver.events();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for n in &rows {
        let state = n["state"].as_str().unwrap_or("?").to_owned();
        let event = n["event_id"].as_str().unwrap_or("");
        match state.as_str() {
            "delivered" if n["target"].as_str().is_some_and(|t| t.starts_with("http")) => {
                ensure!(
                    seen.contains(event),
                    "notification {event} is delivered but the receiver never got it"
                )
            }
            "delivered" | "held" => {}
            "dead" => ensure!(
                n["last_error"].as_str().is_some_and(|r| !r.is_empty()),
                "notification {event} is dead without a reason"
            ),
            other => bail!("notification {event} is `{other}`"),
        }
        *states.entry(state).or_default() += 1;
    }
    Ok(format!(
        "{} notifications ({states:?}), {} deliveries received",
        rows.len(),
        receiver.deliveries()
    ))
}

// ---------------------------------------------------------------------------
// The host under test.

struct Host {
    child: Child,
    endpoints: Endpoints,
}

#[derive(Clone)]
struct Endpoints {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Host {
    /// Starts `serve` on `ports` (the same on every restart, so the links it
    /// handed out before a kill still lead to it).
    fn start(root: &Path, rules: &Path, db: &Path, ports: (u16, u16)) -> anyhow::Result<Host> {
        let (internal, public) = (
            format!("127.0.0.1:{}", ports.0),
            format!("127.0.0.1:{}", ports.1),
        );
        let (child, base) = start_release_host(
            root,
            &[
                "--listen".as_ref(),
                internal.as_ref(),
                "--public-listen".as_ref(),
                public.as_ref(),
                "--db".as_ref(),
                db.as_os_str(),
                "--rules".as_ref(),
                rules.as_os_str(),
            ],
        )?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Host {
            child,
            endpoints: Endpoints {
                base,
                agent,
                token: operator_token(db),
            },
        })
    }

    fn endpoints(&self) -> Endpoints {
        self.endpoints.clone()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl Endpoints {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match body {
            Some(body) => {
                let mut r = match method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                }
                .header("content-type", "application/json");
                if let Some(auth) = &auth {
                    r = r.header("authorization", auth);
                }
                r.send(body.to_string())
            }
            None => {
                let mut r = self.agent.get(&url);
                if let Some(auth) = &auth {
                    r = r.header("authorization", auth);
                }
                r.call()
            }
        }
        .with_context(|| format!("{method} {path}: no answer"))?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.request("GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.request("POST", path, Some(body))
    }

    fn put(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let (status, answer) = self.request("PUT", path, Some(body))?;
        ensure!(status < 300, "PUT {path}: HTTP {status}: {answer}");
        Ok(())
    }

    /// The status of a form POSTed to a full URL (the public site).
    fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> anyhow::Result<u16> {
        let response = self
            .agent
            .post(url)
            .send_form(fields.iter().copied())
            .with_context(|| format!("POST {url}: no answer"))?;
        Ok(response.status().as_u16())
    }

    /// The status of a GET of a full URL (a link on the public site).
    fn get_url(&self, url: &str) -> anyhow::Result<u16> {
        let response = self
            .agent
            .get(url)
            .call()
            .with_context(|| format!("GET {url}: no answer"))?;
        Ok(response.status().as_u16())
    }
}

// ---------------------------------------------------------------------------
// A webhook receiver: answers 200 to every POST, keeps the event ids.

struct Receiver {
    port: u16,
    events: Arc<Mutex<(BTreeSet<String>, usize)>>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let events = Arc::new(Mutex::new((BTreeSet::new(), 0)));
        let log = events.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = receive(stream, &log);
                });
            }
        });
        Ok(Receiver { port, events })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn events(&self) -> BTreeSet<String> {
        lock(&self.events).0.clone()
    }

    fn deliveries(&self) -> usize {
        lock(&self.events).1
    }
}

/// Reads one request (the delivery closes the connection or sends one at a
/// time), records its event id, answers 200.
fn receive(stream: TcpStream, log: &Mutex<(BTreeSet<String>, usize)>) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut length = 0usize;
        let mut event = None;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-rulehost-event" => event = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if let Some(event) = event {
            let mut log = lock(log);
            log.0.insert(event);
            log.1 += 1;
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}

// ---------------------------------------------------------------------------

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// xorshift64*: enough to vary the load and the kill moments; the seed is
/// printed nowhere secret (`SOAK_SEED` repeats a run's choices).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
