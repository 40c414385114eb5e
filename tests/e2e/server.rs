//! `rulehost serve` as a child process of the test, and an HTTP client for
//! its API.
//!
//! [`Setup`] owns a temporary folder: a copy of the repository's `rules/`
//! (with a `roles.toml` the test writes) and the SQLite database. Each
//! [`Setup::start`] runs `rulehost serve` on a free port against them; the
//! [`Host`] guard kills the process when dropped, also when the test panics
//! (and then prints the tail of the server's log). Restarting on the same
//! database is another `start` on the same `Setup`.
//! [`Setup::use_own_plugins`] gives the server a writable plugins folder of
//! its own (for hot reload) instead of the repository's `plugins/dist`.
//! Every helper sends the operator token that the first start wrote
//! beside the database (`call_as` sends another, or none).
//!
//! The helpers panic when they cannot do their job (clippy denies `panic`
//! outside `#[test]` functions, hence the `allow`s): a broken setup must stop
//! the test loudly, with what the server logged.

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{copy_dir, plugins_dir, rules_dir};

/// How long a first start may take (plugins compiled on a cold cache).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The line `rulehost serve` prints once it listens.
const READY_PREFIX: &str = "rulehost listening on ";
/// The line that follows it, with the public site's address.
const PUBLIC_PREFIX: &str = "rulehost public site on ";

// ---------------------------------------------------------------------------
// Waiting, always with a deadline.

/// Polls `cond` every 25 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `probe` until it returns `Ok`, for at most `timeout`; panics naming
/// `what` and the last `Err` (a description of what was seen instead).
#[allow(clippy::panic)] // a wait that times out must fail the test, with what it saw
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

// ---------------------------------------------------------------------------
// The test's folder: rules, roles, database.

pub struct Setup {
    dir: tempfile::TempDir,
    rules: PathBuf,
    db: PathBuf,
    starts: Cell<u32>,
    /// Whether `start` passes `<dir>/plugins` instead of `plugins/dist`.
    own_plugins: Cell<bool>,
    /// The open-files limit (soft and hard) `start` runs the server under.
    open_files: Cell<Option<u32>>,
}

impl Setup {
    /// A copy of the repository's `rules/` with `roles` as its `roles.toml`,
    /// and a fresh database path.
    #[allow(clippy::panic)] // a test's setup failing must stop the test
    pub fn new(roles: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let rules = dir.path().join("rules");
        copy_dir(&rules_dir(), &rules);
        let setup = Setup {
            rules,
            db: dir.path().join("rulehost.db"),
            dir,
            starts: Cell::new(0),
            own_plugins: Cell::new(false),
            open_files: Cell::new(None),
        };
        setup.write_rules_file("roles.toml", roles);
        setup
    }

    /// Writes the host's settings file, passed as `--config` from now on.
    #[allow(clippy::panic)] // a test's setup failing must stop the test
    pub fn write_config(&self, text: &str) {
        let path = self.dir.path().join("rulehost.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Where `write_config` writes.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("rulehost.toml")
    }

    fn config_args(&self) -> Vec<std::ffi::OsString> {
        let path = self.dir.path().join("rulehost.toml");
        if path.exists() {
            vec!["--config".into(), path.into_os_string()]
        } else {
            Vec::new()
        }
    }

    /// From now on the server's `--plugins` is `<dir>/plugins`, a writable
    /// folder holding a copy of `plugins/dist/<name>.wasm` for each of `names`.
    #[allow(clippy::panic)] // a test's setup failing must stop the test
    pub fn use_own_plugins(&self, names: &[&str]) {
        let own = self.dir.path().join("plugins");
        std::fs::create_dir_all(&own).unwrap_or_else(|e| panic!("create {}: {e}", own.display()));
        for name in names {
            let from = plugins_dir().join(format!("{name}.wasm"));
            let to = own.join(format!("{name}.wasm"));
            std::fs::copy(&from, &to).unwrap_or_else(|e| {
                panic!(
                    "copy {} to {} ({e}): build the plugins first with `cargo xtask plugins`",
                    from.display(),
                    to.display()
                )
            });
        }
        self.own_plugins.set(true);
    }

    /// From now on `start` runs the server under an open-files limit of
    /// `n` (soft and hard, through `sh -c 'ulimit -n N'`, which then execs it).
    pub fn limit_open_files(&self, n: u32) {
        self.open_files.set(Some(n));
    }

    /// The folder `start` passes as `--plugins`.
    pub fn plugins_path(&self) -> PathBuf {
        if self.own_plugins.get() {
            self.dir.path().join("plugins")
        } else {
            plugins_dir()
        }
    }

    /// The rules folder `start` passes as `--rules`.
    pub fn rules_path(&self) -> &Path {
        &self.rules
    }

    /// The database `start` passes as `--db`.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// Where the first start writes the operator token (`<db>.operator-token`).
    pub fn operator_token_path(&self) -> PathBuf {
        self.dir.path().join("rulehost.db.operator-token")
    }

    /// The test's folder (the servers' working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file under the rules folder (e.g. a manifest).
    pub fn write_rules(&self, relative: &str, text: &str) {
        self.write_rules_file(relative, text);
    }

    /// Writes `<rules>/flows/<name>.toml`.
    pub fn write_flow(&self, name: &str, toml: &str) {
        self.write_rules_file(&format!("flows/{name}.toml"), toml);
    }

    #[allow(clippy::panic)] // a test's setup failing must stop the test
    fn write_rules_file(&self, relative: &str, text: &str) {
        let path = self.rules.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Runs `rulehost serve --listen 127.0.0.1:0 --db .. --rules .. --plugins ..`
    /// and waits for its "listening" line.
    pub fn start(&self) -> Host {
        self.start_with_env(&[])
    }

    /// [`Setup::start`] with more environment variables for the server.
    #[allow(clippy::panic)] // a server that cannot start must stop the test
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Host {
        let n = self.starts.get() + 1;
        self.starts.set(n);
        let log_path = self.dir.path().join(format!("serve-{n}.log"));
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));

        let mut command = match self.open_files.get() {
            Some(n) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_rulehost"));
                shell
            }
            None => Command::new(env!("CARGO_BIN_EXE_rulehost")),
        };
        let mut child = command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(&self.db)
            .arg("--rules")
            .arg(&self.rules)
            .arg("--plugins")
            .arg(self.plugins_path())
            .args(self.config_args())
            .env(
                "RULEHOST_CACHE_DIR",
                std::env::temp_dir().join("rulehost-e2e-cache"),
            )
            .envs(env.iter().copied())
            // Nothing the server writes by default lands in the repository.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run rulehost serve: {e}"));

        // Read stdout on a thread for the whole life of the process, so the
        // server never blocks on a full pipe.
        let (lines_tx, lines) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Once nobody listens any more, this just drains.
                    let _ = lines_tx.send(line);
                }
            });
        }

        let mut host = Host {
            child,
            base: String::new(),
            public: String::new(),
            port: 0,
            log: log_path,
            agent: agent(),
            token: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.trim().strip_prefix(READY_PREFIX) {
                        let url = url.trim_end_matches('/').to_owned();
                        let port = url
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .unwrap_or_else(|| panic!("no port in the ready line `{line}`"));
                        host.base = url;
                        host.port = port;
                        host.token = std::fs::read_to_string(self.operator_token_path())
                            .ok()
                            .map(|t| t.trim().to_owned());
                        // The public site's line follows at once.
                        if let Ok(next) = lines.recv_timeout(Duration::from_secs(5))
                            && let Some(public) = next.trim().strip_prefix(PUBLIC_PREFIX)
                        {
                            host.public = public.trim_end_matches('/').to_owned();
                        }
                        return host;
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = host.child.wait().ok();
                    panic!(
                        "rulehost serve exited ({status:?}) before it was ready\n--- stdout\n{}\n--- log\n{}",
                        seen.join("\n"),
                        host.log_tail(60)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "rulehost serve printed no `{READY_PREFIX}...` line within {READY_TIMEOUT:?}\n--- stdout\n{}\n--- log\n{}",
                        seen.join("\n"),
                        host.log_tail(60)
                    );
                }
            }
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

// ---------------------------------------------------------------------------
// A running `rulehost serve`.

pub struct Host {
    child: Child,
    base: String,
    public: String,
    port: u16,
    log: PathBuf,
    agent: ureq::Agent,
    /// The operator token every helper sends to the internal API (read from
    /// `<db>.operator-token`, which the first start writes).
    token: Option<String>,
}

/// An HTTP answer: status, content type, body text and body as JSON
/// (`Value::Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    pub json: Value,
    /// `WWW-Authenticate`, when the answer has one.
    pub www_authenticate: Option<String>,
}

impl Reply {
    fn new(status: u16, content_type: String, text: String) -> Reply {
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            text,
            json,
            www_authenticate: None,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} ({}): {}",
            self.status, self.content_type, self.text
        )
    }
}

impl Host {
    /// `http://127.0.0.1:<port>`, as the server announced it.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` of the public site.
    pub fn public_base(&self) -> &str {
        &self.public
    }

    pub fn put(&self, path: &str, body: &Value) -> Reply {
        let url = format!("{}{path}", self.base);
        let result = self
            .authorized(self.agent.put(&url), self.token.as_deref())
            .header("content-type", "application/json")
            .send(body.to_string());
        self.reply("PUT", path, result)
    }

    /// The operator token the helpers send.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `Authorization: Bearer <token>` on `request` when there is a token.
    fn authorized<B>(
        &self,
        request: ureq::RequestBuilder<B>,
        token: Option<&str>,
    ) -> ureq::RequestBuilder<B> {
        with_authorization(request, token.map(|t| format!("Bearer {t}")).as_deref())
    }

    /// `method path` on the internal API with `token` (or none) instead of
    /// the operator's, and `body` as JSON for a POST or PUT.
    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        self.call(bearer.as_deref(), method, path, body)
    }

    /// `method path` on the internal API with `authorization` as the whole
    /// `Authorization` header (`Basic …`, `Bearer …`), and `body` as JSON.
    pub fn call_with(
        &self,
        authorization: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        self.call(Some(authorization), method, path, body)
    }

    #[allow(clippy::panic)] // a method the helper does not know is the test's mistake
    fn call(
        &self,
        authorization: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let text = body.map(Value::to_string).unwrap_or_default();
        let with = |request| with_authorization(request, authorization);
        let with_body = |request| with_authorization(request, authorization);
        let result = match method {
            "GET" => with(self.agent.get(&url)).call(),
            "DELETE" => with(self.agent.delete(&url)).call(),
            "POST" => with_body(self.agent.post(&url))
                .header("content-type", "application/json")
                .send(text),
            "PUT" => with_body(self.agent.put(&url))
                .header("content-type", "application/json")
                .send(text),
            other => panic!("no request helper for {other}"),
        };
        self.reply(method, path, result)
    }

    /// PUTs `body` as is, labelled `application/json`.
    pub fn put_text(&self, path: &str, body: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let result = self
            .authorized(self.agent.put(&url), self.token.as_deref())
            .header("content-type", "application/json")
            .send(body);
        self.reply("PUT", path, result)
    }

    /// GETs a full URL (e.g. a reconciliation link on the public site).
    pub fn get_url(&self, url: &str) -> Reply {
        let token = self.token_for(url);
        let result = self.authorized(self.agent.get(url), token).call();
        self.reply("GET", url, result)
    }

    /// GETs a full URL with one header of the test's and no token.
    pub fn get_url_with_header(&self, url: &str, (name, value): (&str, &str)) -> Reply {
        let result = self.agent.get(url).header(name, value).call();
        self.reply("GET", url, result)
    }

    /// POSTs an HTML form to a full URL.
    pub fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Reply {
        let token = self.token_for(url);
        let result = self
            .authorized(self.agent.post(url), token)
            .send_form(fields.iter().copied());
        self.reply("POST", url, result)
    }

    /// The token for a full URL: the operator's on the internal API, none
    /// on the public site (which takes no tokens).
    fn token_for(&self, url: &str) -> Option<&str> {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            .then_some(self.token.as_deref())
            .flatten()
    }

    pub fn get(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let result = self
            .authorized(self.agent.get(&url), self.token.as_deref())
            .call();
        self.reply("GET", path, result)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_text(path, &body.to_string())
    }

    /// POSTs `body` as is, labelled `application/json`.
    pub fn post_text(&self, path: &str, body: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let result = self
            .authorized(self.agent.post(&url), self.token.as_deref())
            .header("content-type", "application/json")
            .send(body);
        self.reply("POST", path, result)
    }

    /// POSTs raw `body` bytes labelled `content_type` (e.g. a plugin upload).
    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let url = format!("{}{path}", self.base);
        let result = self
            .authorized(self.agent.post(&url), self.token.as_deref())
            .header("content-type", content_type)
            .send(body);
        self.reply("POST", path, result)
    }

    #[allow(clippy::panic)] // a request that cannot be made must stop the test
    fn reply(
        &self,
        method: &str,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Reply {
        let response = result.unwrap_or_else(|e| {
            panic!(
                "{method} {path}: no answer: {e}\n--- log\n{}",
                self.log_tail(40)
            )
        });
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let www_authenticate = header("www-authenticate");
        let text = response
            .into_body()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: cannot read the body: {e}"));
        Reply {
            www_authenticate,
            ..Reply::new(status, content_type, text)
        }
    }

    /// POSTs `body` (as JSON) over a raw connection, reading the answer while
    /// the body is still being written: a server that refuses an oversize
    /// body may answer before reading it all and close.
    #[allow(clippy::panic)] // a request that cannot be made must stop the test
    pub fn post_large(&self, path: &str, body: Vec<u8>) -> Reply {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .unwrap_or_else(|e| panic!("POST {path}: cannot connect: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(15)));
        let authorization = self
            .token
            .as_deref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        let mut writer = stream
            .try_clone()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let sender = std::thread::spawn(move || {
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            for chunk in body.chunks(64 * 1024) {
                if writer.write_all(chunk).is_err() {
                    return; // the server stopped reading: expected for 413
                }
            }
            let _ = writer.flush();
        });

        let mut reader = BufReader::new(&stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap_or_else(|e| {
            panic!(
                "POST {path}: no answer: {e}\n--- log\n{}",
                self.log_tail(40)
            )
        });
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("POST {path}: bad status line `{status_line}`"));
        let mut content_type = String::new();
        let mut length: Option<usize> = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-type" => value.trim().clone_into(&mut content_type),
                    "content-length" => length = value.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        let mut text = Vec::new();
        match length {
            Some(n) => {
                text.resize(n, 0);
                let _ = reader.read_exact(&mut text);
            }
            None => {
                let _ = reader.read_to_end(&mut text);
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let _ = sender.join();
        Reply::new(
            status,
            content_type,
            String::from_utf8_lossy(&text).into_owned(),
        )
    }

    /// `kill -9`: the process dies at once, whatever it was doing.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`TERM`, `INT`) with `kill(1)` and waits up to
    /// `timeout` for the process to end: its exit status, `None` if it is
    /// still running (it is then killed when the guard drops).
    #[allow(clippy::panic)] // a signal that cannot be sent must stop the test
    pub fn signal(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{signal} {pid}: {e}"));
        assert!(sent.success(), "kill -{signal} {pid} failed: {sent}");
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// The last `n` lines the server logged (its stderr).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- rulehost serve log ({}), last lines\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `request` with `authorization` as its `Authorization` header, if any.
fn with_authorization<B>(
    request: ureq::RequestBuilder<B>,
    authorization: Option<&str>,
) -> ureq::RequestBuilder<B> {
    match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    }
}
