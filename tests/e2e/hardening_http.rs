//! The HTTP edge and input validation under a hostile client (issue 13,
//! findings 1, 2, 6, 7, 8, 9): one JSON depth limit at the door so stored
//! JSON reads back, slow and idle clients timed out and bounded per
//! listener and per address, every internal error in the JSON shape,
//! control characters and unkeepable numbers refused, wrong types as 422
//! naming the field, and `serve` exiting 2 when it cannot start.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Reply, Setup, wait_for, wait_until};
use crate::support::plugins_dir;

// ---------------------------------------------------------------------------
// Raw connections, for what an HTTP client library will not send.

/// `127.0.0.1:<port>` of a base URL.
fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

#[allow(clippy::panic)]
fn connect(address: &str) -> TcpStream {
    TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"))
}

/// A connection that sent half a request head, and nothing since.
#[allow(clippy::panic)]
fn half_sent(address: &str) -> TcpStream {
    let mut stream = connect(address);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap_or_else(|e| panic!("write to {address}: {e}"));
    stream
}

/// Whether the server closes `stream` (after any answer it sends) within
/// `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                );
            }
        }
    }
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn content_type(&self) -> String {
        self.head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    }
}

/// Sends `request` whole and reads the answer until the server closes.
#[allow(clippy::panic)]
fn raw(address: &str, request: &[u8]) -> Raw {
    let mut stream = connect(address);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = stream.write_all(request);
    read_answer(&mut stream)
}

#[allow(clippy::panic)]
fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Raw {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// The documented error shape with `code`, on `status`.
fn json_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply}");
    assert!(
        reply.content_type.starts_with("application/json"),
        "{reply}"
    );
    assert_eq!(reply.json["error"]["code"], code, "{reply}");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
}

fn message(reply: &Reply) -> String {
    reply.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `[1, ..]` nested `depth` arrays deep.
fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!([value]);
    }
    value
}

// ---------------------------------------------------------------------------
// Finding 1: one depth limit at the door, so what is stored reads back.

#[test]
fn a_flow_context_nested_near_the_readers_limit_is_refused_and_one_within_the_door_reads_back() {
    let setup = Setup::new("");
    let host = setup.start();

    // The body 120 levels deep: under serde_json's 128, over the door's 64.
    let deep =
        json!({"definition": "connect-client", "subject": "acme", "context": {"a": nested(118)}});
    let refused = host.post("/v1/flows", &deep);
    json_error(&refused, 422, "too-deep");
    assert!(message(&refused).contains("64 levels"), "{refused}");
    let flows = host.get("/v1/flows?definition=connect-client");
    assert_eq!(flows.json["flows"], json!([]), "nothing started: {flows}");

    // At the door's limit exactly: accepted, and its notification reads back.
    let within = nested(62);
    let body = json!({"definition": "connect-client", "subject": "acme", "context": {"a": within}});
    let started = host.post("/v1/flows", &body);
    assert_eq!(started.status, 201, "{started}");
    let outbox = host.get("/v1/outbox");
    assert_eq!(outbox.status, 200, "{outbox}");
    let opened = outbox.json["notifications"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["kind"] == "task.opened"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        opened["payload"]["data"]["flow"]["context"]["a"], within,
        "the task.opened notification carries the context: {outbox}"
    );
    assert_eq!(host.get("/metrics").status, 200);
}

// ---------------------------------------------------------------------------
// Finding 2: slow and idle clients.

#[test]
fn a_half_sent_request_an_idle_connection_and_a_missing_body_are_timed_out() {
    let setup = Setup::new("");
    setup.write_config(
        "[internal]\nheader_timeout_seconds = 1\nbody_timeout_seconds = 1\n\n[public]\nheader_timeout_seconds = 1\n",
    );
    let host = setup.start();
    let (internal, public) = (address(host.base()), address(host.public_base()));

    for address in [&internal, &public] {
        let mut slow = half_sent(address);
        assert!(
            closed_within(&mut slow, Duration::from_secs(20)),
            "a half-sent request to {address} is still open"
        );
    }
    let metrics = host.get("/metrics").text;
    assert!(
        metrics.contains("rulehost_http_header_timeouts_total{listener=\"public\"} 1"),
        "{metrics}"
    );

    // Answered, then kept open idle: closed by the same timer.
    let mut idle = connect(&internal);
    let _ = idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(
        closed_within(&mut idle, Duration::from_secs(20)),
        "an idle keep-alive connection is still open"
    );

    // A body announced and never sent: 408 in the error shape.
    let mut stream = connect(&internal);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let token = host.token().unwrap_or_default();
    let _ = stream.write_all(
        format!("POST /v1/checks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"service\"").as_bytes(),
    );
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.json()["error"]["code"], "timeout", "{answer:?}");
}

#[test]
#[allow(clippy::panic)]
fn a_flood_of_half_sent_connections_to_the_public_site_leaves_the_internal_api_answering() {
    let setup = Setup::new("");
    setup.write_config(
        "[internal]\nmax_connections = 16\n\n[public]\nmax_connections = 40\nmax_connections_per_address = 1000\nheader_timeout_seconds = 120\n",
    );
    // Today's 20,000 connections, scaled to a limit a test can reach.
    setup.limit_open_files(256);
    let host = setup.start();
    let public = address(host.public_base());
    // Past the bound, connections wait in the kernel's accept queue (128
    // deep); past that, connecting itself waits: stop at the first that does.
    let target: std::net::SocketAddr = public.parse().unwrap_or_else(|e| panic!("{public}: {e}"));
    let mut flood = Vec::new();
    while flood.len() < 300 {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            break;
        };
        if stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .is_err()
        {
            break;
        }
        flood.push(stream);
    }
    assert!(flood.len() > 40 + 16, "{} connections opened", flood.len());

    let health = host.get("/healthz");
    assert_eq!(health.status, 200, "{health}");
    let account = host.put(
        "/v1/accounts/acme-flood",
        &json!({"status": "active", "paid_up": true}),
    );
    assert_eq!(account.status, 201, "{account}");

    // Once the flood goes, the public site answers again.
    drop(flood);
    let page = wait_for(
        Duration::from_secs(30),
        "the public site after the flood",
        || {
            let answer = raw(
                &public,
                b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            if answer.status == 404 {
                Ok(answer)
            } else {
                Err(format!("{answer:?}"))
            }
        },
    );
    assert!(page.content_type().starts_with("text/html"), "{page:?}");
}

#[test]
fn connections_past_the_per_address_bound_are_closed_at_once() {
    let setup = Setup::new("");
    setup.write_config("[public]\nmax_connections_per_address = 3\nheader_timeout_seconds = 120\n");
    let host = setup.start();
    let public = address(host.public_base());
    let mut held: Vec<TcpStream> = (0..3).map(|_| half_sent(&public)).collect();
    let mut fourth = half_sent(&public);
    assert!(
        closed_within(&mut fourth, Duration::from_secs(20)),
        "a fourth connection from one address is still open"
    );
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(300)),
        "the first three are held until their header timeout"
    );
    let metrics = host.get("/metrics").text;
    assert!(
        metrics.contains("rulehost_http_connections_refused_total{listener=\"public\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rulehost_http_connections{listener=\"public\"} 3"),
        "{metrics}"
    );
    assert_eq!(
        host.get("/healthz").status,
        200,
        "the internal API has no such bound"
    );
    drop(held);
    // Until the host has seen the three close, a new connection is still
    // past the bound and closed unanswered: try again.
    let answered = wait_until(Duration::from_secs(20), || {
        let mut stream = connect(&public);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = stream
            .write_all(b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 404")
    });
    assert!(answered, "the address gets its connections back");
}

// ---------------------------------------------------------------------------
// Finding 6: every internal error is the documented JSON shape.

#[test]
fn every_error_of_the_internal_api_is_the_json_shape() {
    let setup = Setup::new("");
    let host = setup.start();
    let internal = address(host.base());

    let long = format!(
        "GET /v1/accounts/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    let too_long = raw(&internal, long.as_bytes());
    assert_eq!(too_long.status, 414, "{too_long:?}");
    assert!(
        too_long.content_type().starts_with("application/json"),
        "{too_long:?}"
    );
    assert_eq!(
        too_long.json()["error"]["code"],
        "uri-too-long",
        "{too_long:?}"
    );

    let garbage = raw(&internal, b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(garbage.status, 400, "{garbage:?}");
    assert_eq!(garbage.json()["error"]["code"], "malformed", "{garbage:?}");

    json_error(&host.get("/v1/accounts/%FF%FE"), 400, "malformed");
    json_error(&host.get("/v1/requests/%C3%28"), 400, "malformed");

    let oversize = vec![0u8; (16 << 20) + 1];
    let upload = host.post_large("/v1/plugins/support-contract", oversize);
    json_error(&upload, 413, "too-large");
    assert!(message(&upload).contains("16384 KiB"), "{upload}");
    let big_json = host.post_large("/v1/checks", vec![b' '; (1 << 20) + 1]);
    json_error(&big_json, 413, "too-large");

    json_error(&host.get("/v1/nowhere"), 404, "not-found");
    json_error(
        &host.put("/v1/checks", &json!({})),
        405,
        "method-not-allowed",
    );
    json_error(&host.get("/v1/decisions?limit=many"), 422, "invalid");
    json_error(&host.get("/v1/outbox?state=lost"), 422, "invalid");

    // No content type is needed; the body is still read and judged.
    let untyped = host.post_bytes(
        "/v1/checks",
        "",
        br#"{"service": "nope", "account_id": "a"}"#,
    );
    json_error(&untyped, 422, "unknown-service");

    // The public site answers hyper's automatic errors as a page.
    let public = raw(&address(host.public_base()), b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(public.status, 400, "{public:?}");
    assert!(public.content_type().starts_with("text/html"), "{public:?}");
    assert!(
        public
            .head
            .to_ascii_lowercase()
            .contains("x-frame-options: deny"),
        "{public:?}"
    );
}

// ---------------------------------------------------------------------------
// Finding 7: garbage refused.

#[test]
fn control_characters_are_refused_in_ids_emails_and_text_and_free_text_keeps_line_breaks() {
    let setup = Setup::new("");
    let host = setup.start();

    let nul_email = host.put(
        "/v1/accounts/acme-1",
        &json!({"status": "active", "paid_up": true, "contact": {"name": "Ann", "email": "ann\u{0}@example.com"}}),
    );
    json_error(&nul_email, 422, "invalid");
    assert!(
        message(&nul_email).contains("`contact.email`"),
        "{nul_email}"
    );
    let escape_name = host.put(
        "/v1/accounts/acme-1",
        &json!({"status": "active", "paid_up": true, "contact": {"name": "Ann\u{1b}[31m", "email": "ann@example.com"}}),
    );
    json_error(&escape_name, 422, "invalid");
    let newline_tier = host.put(
        "/v1/accounts/acme-1",
        &json!({"status": "active", "paid_up": true, "tier": "gold\nplus"}),
    );
    json_error(&newline_tier, 422, "invalid");
    assert!(message(&newline_tier).contains("`tier`"), "{newline_tier}");
    json_error(
        &host.put(
            "/v1/accounts/acme%001",
            &json!({"status": "active", "paid_up": true}),
        ),
        422,
        "invalid",
    );
    assert_eq!(
        host.get("/v1/accounts/acme-1").status,
        404,
        "nothing stored"
    );

    let created = host.put(
        "/v1/accounts/acme-1",
        &json!({"status": "active", "paid_up": true, "tier": "standard", "contract_end": "2099-01-01T00:00:00Z"}),
    );
    assert_eq!(created.status, 201, "{created}");
    let nul_description = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": "r-nul", "description": "a\u{0}b"}),
    );
    json_error(&nul_description, 422, "invalid");
    assert!(
        message(&nul_description).contains("`description`"),
        "{nul_description}"
    );
    assert_eq!(
        host.get("/v1/requests/r-nul").status,
        404,
        "nothing recorded"
    );
    let multiline = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": "r-lines", "description": "two\nlines\twith a tab"}),
    );
    assert_eq!(
        multiline.status, 200,
        "free text keeps tabs and line breaks: {multiline}"
    );

    let subject = host.post(
        "/v1/flows",
        &json!({"definition": "connect-client", "subject": "acme\nother"}),
    );
    json_error(&subject, 422, "invalid");
    let context = host.post(
        "/v1/flows",
        &json!({"definition": "connect-client", "subject": "acme", "context": {"note": "\u{7f}"}}),
    );
    json_error(&context, 422, "invalid");
    assert!(message(&context).contains("`context.note`"), "{context}");
    assert_eq!(
        host.get("/v1/flows?definition=connect-client").json["flows"],
        json!([])
    );
}

#[test]
fn attribute_numbers_are_kept_as_sent_or_refused_naming_the_field() {
    let setup = Setup::new("");
    let host = setup.start();

    let huge = host.put_text(
        "/v1/accounts/acme-2",
        r#"{"status": "active", "paid_up": true, "attributes": {"big": 123456789012345678901234567890}}"#,
    );
    json_error(&huge, 422, "invalid");
    assert!(message(&huge).contains("`attributes.big`"), "{huge}");
    assert!(message(&huge).contains("send it as a string"), "{huge}");
    let digits = host.put_text(
        "/v1/accounts/acme-2",
        r#"{"status": "active", "paid_up": true, "attributes": {"pi": 3.14159265358979323846}}"#,
    );
    json_error(&digits, 422, "invalid");
    assert_eq!(
        host.get("/v1/accounts/acme-2").status,
        404,
        "nothing stored"
    );

    let kept = host.put_text(
        "/v1/accounts/acme-2",
        r#"{"status": "active", "paid_up": true, "attributes": {"max": 18446744073709551615, "min": -9223372036854775808, "float": 1e308, "rate": 0.1, "as_text": "123456789012345678901234567890"}}"#,
    );
    assert_eq!(kept.status, 201, "{kept}");
    let account = host.get("/v1/accounts/acme-2");
    assert_eq!(
        account.json["attributes"],
        json!({"max": "18446744073709551615", "min": "-9223372036854775808", "float": "1e308", "rate": "0.1", "as_text": "123456789012345678901234567890"}),
        "{account}"
    );
}

// ---------------------------------------------------------------------------
// Finding 8: a wrong type is a 422 naming the field.

#[test]
fn a_wrong_type_is_a_422_naming_the_field_and_malformed_json_a_400() {
    let setup = Setup::new("");
    let host = setup.start();
    let status = host.put(
        "/v1/accounts/acme-3",
        &json!({"status": 5, "paid_up": true}),
    );
    json_error(&status, 422, "invalid");
    assert!(
        message(&status).starts_with("`status`: invalid type: integer `5`"),
        "{status}"
    );
    let paid = host.put(
        "/v1/accounts/acme-3",
        &json!({"status": "active", "paid_up": "yes"}),
    );
    json_error(&paid, 422, "invalid");
    assert!(
        message(&paid).starts_with("`paid_up`: invalid type"),
        "{paid}"
    );
    let contact = host.put(
        "/v1/accounts/acme-3",
        &json!({"status": "active", "paid_up": true, "contact": {"name": 1, "email": "a@b.c"}}),
    );
    assert!(message(&contact).starts_with("`contact.name`"), "{contact}");
    let flow = host.post(
        "/v1/flows",
        &json!({"definition": ["connect-client"], "subject": "s"}),
    );
    json_error(&flow, 422, "invalid");
    assert!(message(&flow).starts_with("`definition`"), "{flow}");
    let malformed = host.put_text("/v1/accounts/acme-3", r#"{"status": "active", "#);
    json_error(&malformed, 400, "malformed");
    assert_eq!(
        host.get("/v1/accounts/acme-3").status,
        404,
        "nothing stored"
    );
}

// ---------------------------------------------------------------------------
// Finding 9: `serve` exits 2 whenever it cannot start.

/// Runs `rulehost serve` with `args` (and free ports): its exit code and
/// stderr; a server that starts instead is killed and fails the test.
#[allow(clippy::panic)]
fn serve_exit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rulehost"))
        .arg("serve")
        .args(args)
        .env(
            "RULEHOST_CACHE_DIR",
            std::env::temp_dir().join("rulehost-e2e-cache"),
        )
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run rulehost serve: {e}"));
    let mut status = None;
    wait_until(Duration::from_secs(90), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "rulehost serve {args:?} started instead of exiting:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
    (
        status.and_then(|s| s.code()),
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    )
}

#[allow(clippy::panic)]
fn plugin_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "wasm").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect()
}

#[test]
#[allow(clippy::panic)]
fn serve_exits_2_when_it_cannot_start() {
    use std::ffi::OsStr;

    // A corrupt plugin on a fresh database.
    let setup = Setup::new("");
    let names = plugin_names(&plugins_dir());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    setup.use_own_plugins(&names);
    let plugins = setup.plugins_path();
    std::fs::write(plugins.join("support-contract.wasm"), b"\0asm garbage")
        .unwrap_or_else(|e| panic!("{e}"));
    let free = OsStr::new("127.0.0.1:0");
    let base = |db: &Path| {
        vec![
            OsStr::new("--public-listen").to_owned(),
            free.to_owned(),
            OsStr::new("--rules").to_owned(),
            setup.rules_path().as_os_str().to_owned(),
            OsStr::new("--db").to_owned(),
            db.as_os_str().to_owned(),
        ]
    };
    let mut corrupt = base(setup.db_path());
    corrupt.extend([OsStr::new("--listen").to_owned(), free.to_owned()]);
    corrupt.extend([OsStr::new("--plugins").to_owned(), plugins.into_os_string()]);
    let corrupt: Vec<&OsStr> = corrupt.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = serve_exit(&corrupt);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("refusing to serve"), "{stderr}");

    // The internal port taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let taken = taken
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let fresh = setup.db_path().with_extension("other.db");
    let mut in_use = base(&fresh);
    in_use.extend([
        OsStr::new("--listen").to_owned(),
        OsStr::new(&taken).to_owned(),
    ]);
    in_use.extend([
        OsStr::new("--plugins").to_owned(),
        plugins_dir().into_os_string(),
    ]);
    let in_use: Vec<&OsStr> = in_use.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = serve_exit(&in_use);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")),
        "{stderr}"
    );

    // A database that cannot be opened: a folder.
    let folder = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut unreadable = base(folder.path());
    unreadable.extend([OsStr::new("--listen").to_owned(), free.to_owned()]);
    unreadable.extend([
        OsStr::new("--plugins").to_owned(),
        plugins_dir().into_os_string(),
    ]);
    let unreadable: Vec<&OsStr> = unreadable.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = serve_exit(&unreadable);
    assert_eq!(code, Some(2), "{stderr}");

    // A bad setting.
    setup.write_config("[public]\nmax_connections_per_address = 0\n");
    let mut bad_config = base(&fresh);
    bad_config.extend([OsStr::new("--listen").to_owned(), free.to_owned()]);
    bad_config.extend([
        OsStr::new("--plugins").to_owned(),
        plugins_dir().into_os_string(),
    ]);
    bad_config.extend([
        OsStr::new("--config").to_owned(),
        setup.config_path().into_os_string(),
    ]);
    let bad_config: Vec<&OsStr> = bad_config.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = serve_exit(&bad_config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("max_connections_per_address = 0"),
        "{stderr}"
    );
}
