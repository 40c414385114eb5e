//! Access control on the internal API: the first operator token of a fresh
//! database, 401 without a valid token and 403 for the wrong role or
//! service (and nothing stored either way), `rulehost tokens` (create,
//! list without the tokens, revoke) against a running host, and the
//! routes `[auth]` opens or closes.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Host, Reply, Setup, wait_for};
use crate::support::{stderr, stdout};

/// `rulehost tokens <args> --db <the setup's database>`.
fn tokens(setup: &Setup, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulehost"))
        .arg("tokens")
        .args(args)
        .arg("--db")
        .arg(setup.db_path())
        .current_dir(setup.dir())
        .output()
        .unwrap()
}

fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    )
}

/// A new token of `role` for `services`, made while the host runs.
pub(crate) fn create(setup: &Setup, role: &str, services: &[&str], name: &str) -> String {
    let mut args = vec!["create", "--role", role, "--name", name];
    for service in services {
        args.extend(["--service", service]);
    }
    let out = tokens(setup, &args);
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(
        token.starts_with("rh_") && token.len() == 67,
        "{}",
        shown(&out)
    );
    token
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply}");
    assert_eq!(
        reply.json["error"]["code"], "unauthorized",
        "{what}: {reply}"
    );
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {reply}"
    );
    assert!(
        reply
            .www_authenticate
            .as_deref()
            .is_some_and(|h| h.starts_with("Bearer")),
        "{what}: no WWW-Authenticate: Bearer: {reply:?}"
    );
}

fn assert_forbidden(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {reply}");
    assert_eq!(reply.json["error"]["code"], "forbidden", "{what}: {reply}");
}

fn account_body() -> Value {
    json!({"status": "active", "paid_up": true, "tier": "standard"})
}

fn flows(host: &Host) -> usize {
    let reply = host.get("/v1/flows");
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["flows"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_fresh_database_gets_an_operator_token_file_readable_by_its_owner_and_a_restart_keeps_it() {
    let setup = Setup::new("");
    let path = setup.operator_token_path();
    assert!(!path.exists());
    let host = setup.start();
    let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert!(token.starts_with("rh_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // It is the operator's: it may change things.
    let reply = host.call_as(
        Some(&token),
        "PUT",
        "/v1/accounts/acme-1",
        Some(&account_body()),
    );
    assert_eq!(reply.status, 201, "{reply}");
    // The token is in the file only, never in the log.
    let log = host.log_tail(10_000);
    assert!(
        !log.contains(&token[3..]),
        "the token is in the log:\n{log}"
    );
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    drop(host);

    let host = setup.start();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        token,
        "a restart wrote another token"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
    let reply = host.call_as(Some(&token), "GET", "/v1/accounts/acme-1", None);
    assert_eq!(reply.status, 200, "{reply}");
    // Still the one operator token.
    let list = tokens(&setup, &["list", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(
        listed["tokens"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["tokens"][0]["role"], "operator");
}

#[test]
fn without_a_valid_token_a_change_gets_401_and_nothing_is_stored() {
    let setup = Setup::new("");
    let host = setup.start();
    let unknown = format!("rh_{}", "0".repeat(64));
    let cases: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("not a token", Some("hunter2")),
        ("a token never made", Some(&unknown)),
        ("an empty token", Some("")),
    ];
    for (what, token) in cases {
        let reply = host.call_as(token, "PUT", "/v1/accounts/acme-1", Some(&account_body()));
        assert_unauthorized(&reply, what);
        let reply = host.call_as(
            token,
            "POST",
            "/v1/flows",
            Some(&json!({"definition": "connect-client", "subject": "acme"})),
        );
        assert_unauthorized(&reply, what);
        let reply = host.call_as(token, "GET", "/v1/decisions", None);
        assert_unauthorized(&reply, what);
        // An unknown route does not tell that it is unknown.
        let reply = host.call_as(token, "GET", "/v1/nothing-here", None);
        assert_unauthorized(&reply, what);
    }
    // Another scheme is not a bearer token.
    let basic = host.get_url_with_header(
        &format!("{}/v1/flows", host.base()),
        ("authorization", "Basic b3BlcmF0b3I6b3BlcmF0b3I="),
    );
    assert_unauthorized(&basic, "basic auth");
    // Nothing of it was stored.
    assert_eq!(host.get("/v1/accounts/acme-1").status, 404);
    assert_eq!(flows(&host), 0);
    // The operator's token, sent by the helpers, is let through.
    assert_eq!(host.get("/v1/nothing-here").status, 404);
}

#[test]
fn a_viewer_token_reads_but_gets_403_for_any_change() {
    let setup = Setup::new("");
    let host = setup.start();
    let viewer = create(&setup, "viewer", &[], "dashboard");
    assert_eq!(host.put("/v1/accounts/acme-1", &account_body()).status, 201);
    for path in [
        "/v1/flows",
        "/v1/accounts/acme-1",
        "/v1/decisions",
        "/v1/plugins",
        "/v1/outbox",
    ] {
        let reply = host.call_as(Some(&viewer), "GET", path, None);
        assert_eq!(reply.status, 200, "{path}: {reply}");
    }
    let reply = host.call_as(
        Some(&viewer),
        "POST",
        "/v1/flows",
        Some(&json!({"definition": "connect-client", "subject": "acme"})),
    );
    assert_forbidden(&reply, "viewer starts a flow");
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("operator"), "{message}");
    let reply = host.call_as(
        Some(&viewer),
        "PUT",
        "/v1/accounts/acme-1",
        Some(&json!({"status": "expired", "paid_up": false})),
    );
    assert_forbidden(&reply, "viewer changes an account");
    let reply = host.call_as(
        Some(&viewer),
        "POST",
        "/v1/checks",
        Some(&json!({"service": "support-contract", "account_id": "acme-1"})),
    );
    assert_forbidden(&reply, "viewer checks");
    let reply = host.call_as(
        Some(&viewer),
        "POST",
        "/v1/plugins/support-contract/rollback",
        None,
    );
    assert_forbidden(&reply, "viewer rolls back");
    // Nothing changed.
    assert_eq!(flows(&host), 0);
    assert_eq!(host.get("/v1/accounts/acme-1").json["status"], "active");
    let decisions = host.get("/v1/decisions");
    assert_eq!(decisions.json["decisions"], json!([]), "{decisions}");
}

#[test]
fn a_service_token_checks_for_its_own_services_only() {
    let setup = Setup::new("");
    let host = setup.start();
    let support = create(&setup, "service", &["support-contract"], "support-app");
    // A service keeps the accounts it checks.
    let reply = host.call_as(
        Some(&support),
        "PUT",
        "/v1/accounts/acme-1",
        Some(&account_body()),
    );
    assert_eq!(reply.status, 201, "{reply}");

    // Another service's check: 403, nothing decided or recorded.
    let reply = host.call_as(
        Some(&support),
        "POST",
        "/v1/checks",
        Some(
            &json!({"service": "premium-support", "account_id": "acme-1", "request_id": "other-1"}),
        ),
    );
    assert_forbidden(&reply, "check for another service");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("premium-support")),
        "{reply}"
    );
    assert_eq!(host.get("/v1/requests/other-1").status, 404);
    assert_eq!(host.get("/v1/decisions").json["decisions"], json!([]));

    // Its own: allowed, and it may read back its request and decisions.
    let reply = host.call_as(
        Some(&support),
        "POST",
        "/v1/checks",
        Some(
            &json!({"service": "support-contract", "account_id": "acme-1", "request_id": "own-1"}),
        ),
    );
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json["decision"], "pass", "{reply}");
    let reply = host.call_as(Some(&support), "GET", "/v1/requests/own-1", None);
    assert_eq!(reply.status, 200, "{reply}");
    let reply = host.call_as(
        Some(&support),
        "GET",
        "/v1/decisions?service=support-contract",
        None,
    );
    assert_eq!(
        reply.json["decisions"].as_array().map(Vec::len),
        Some(1),
        "{reply}"
    );
    let reply = host.call_as(Some(&support), "GET", "/v1/decisions", None);
    assert_forbidden(&reply, "every service's decisions");

    // Another service's request reads as no request at all.
    let reply = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-1", "request_id": "premium-1"}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    let reply = host.call_as(Some(&support), "GET", "/v1/requests/premium-1", None);
    assert_eq!(reply.status, 404, "{reply}");
    // Operator routes stay closed to it.
    for (method, path) in [
        ("GET", "/v1/flows"),
        ("GET", "/v1/outbox"),
        ("POST", "/v1/plugins/support-contract/rollback"),
    ] {
        let reply = host.call_as(Some(&support), method, path, None);
        assert_forbidden(&reply, path);
    }
}

#[test]
fn tokens_list_shows_names_roles_and_times_never_a_token() {
    let setup = Setup::new("");
    let host = setup.start();
    let operator = host.token().unwrap().to_owned();
    let service = create(
        &setup,
        "service",
        &["support-contract", "premium-support"],
        "apps",
    );
    let viewer = create(&setup, "viewer", &[], "grafana");
    assert_eq!(
        host.call_as(Some(&viewer), "GET", "/v1/flows", None).status,
        200
    );
    for args in [&["list"][..], &["list", "--json"][..]] {
        let out = tokens(&setup, args);
        assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
        let all = shown(&out);
        for token in [&operator, &service, &viewer] {
            assert!(!all.contains(&token[3..]), "a token is listed:\n{all}");
            assert!(
                !all.contains(&sha256_hex(token)),
                "a hash is listed:\n{all}"
            );
        }
        for shown_name in [
            "operator",
            "apps",
            "grafana",
            "viewer",
            "premium-support",
            "support-contract",
        ] {
            assert!(all.contains(shown_name), "{shown_name} missing:\n{all}");
        }
    }
    let listed: Value =
        serde_json::from_str(&stdout(&tokens(&setup, &["list", "--json"]))).unwrap();
    let grafana = listed["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "grafana"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(grafana["role"], "viewer", "{listed}");
    assert!(grafana["created_at"].is_string(), "{listed}");
    assert!(grafana["last_used_at"].is_string(), "used once: {listed}");
    assert!(grafana["revoked_at"].is_null(), "{listed}");
}

/// What the store keeps of a token (hex SHA-256), to prove it is not shown.
fn sha256_hex(token: &str) -> String {
    rulehost::auth::hash(token)
}

#[test]
fn a_revoked_token_is_refused_by_the_running_host_without_a_restart() {
    let setup = Setup::new("");
    let host = setup.start();
    let deputy = create(&setup, "operator", &[], "deputy");
    let reply = host.call_as(
        Some(&deputy),
        "PUT",
        "/v1/accounts/acme-1",
        Some(&account_body()),
    );
    assert_eq!(reply.status, 201, "{reply}");
    let out = tokens(&setup, &["revoke", "deputy"]);
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert!(
        stdout(&out).contains("revoked operator token `deputy`"),
        "{}",
        shown(&out)
    );
    // Within the cache's second (polled: the machine may be slow).
    let reply = wait_for(Duration::from_secs(10), "the revoked token refused", || {
        let reply = host.call_as(Some(&deputy), "GET", "/v1/flows", None);
        if reply.status == 401 {
            Ok(reply)
        } else {
            Err(reply.to_string())
        }
    });
    assert_unauthorized(&reply, "revoked, a read");
    // A change with it: 401, and nothing stored.
    let reply = host.call_as(
        Some(&deputy),
        "PUT",
        "/v1/accounts/acme-2",
        Some(&account_body()),
    );
    assert_unauthorized(&reply, "revoked, a change");
    assert_eq!(host.get("/v1/accounts/acme-2").status, 404);
    // Revoking again names the problem; the first operator token still works.
    let again = tokens(&setup, &["revoke", "deputy"]);
    assert_eq!(again.status.code(), Some(2), "{}", shown(&again));
    assert!(
        stderr(&again).contains("no token that is not revoked"),
        "{}",
        shown(&again)
    );
    assert_eq!(host.get("/v1/flows").status, 200);
    // The list keeps it, revoked.
    let listed: Value =
        serde_json::from_str(&stdout(&tokens(&setup, &["list", "--json"]))).unwrap();
    let deputy = listed["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "deputy"))
        .cloned()
        .unwrap_or_default();
    assert!(deputy["revoked_at"].is_string(), "{listed}");
}

#[test]
fn health_and_metrics_are_open_by_default_and_closed_by_the_auth_section() {
    let setup = Setup::new("");
    let host = setup.start();
    for path in ["/healthz", "/metrics"] {
        let reply = host.call_as(None, "GET", path, None);
        assert_eq!(reply.status, 200, "{path}: {reply}");
    }
    drop(host);
    setup.write_config("[auth]\nopen_healthz = false\nopen_metrics = false\n");
    let host = setup.start();
    let viewer = create(&setup, "viewer", &[], "scraper");
    let service = create(&setup, "service", &["support-contract"], "probe");
    for path in ["/healthz", "/metrics"] {
        assert_unauthorized(&host.call_as(None, "GET", path, None), path);
        assert_eq!(
            host.call_as(Some(&viewer), "GET", path, None).status,
            200,
            "{path}"
        );
    }
    // Health to any token; metrics to readers.
    assert_eq!(
        host.call_as(Some(&service), "GET", "/healthz", None).status,
        200
    );
    assert_forbidden(
        &host.call_as(Some(&service), "GET", "/metrics", None),
        "metrics",
    );
}

#[test]
fn the_plugins_command_sends_a_token_and_says_what_to_do_without_one() {
    let setup = Setup::new("");
    let host = setup.start();
    let run = |dir: &std::path::Path, env: &[(&str, &str)], extra: &[&OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_rulehost"))
            .args(["plugins", "list", "--json", "--host", host.base()])
            .args(extra)
            .current_dir(dir)
            .env_remove("RULEHOST_TOKEN")
            .env_remove("RULEHOST_TOKEN_FILE")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let refused = run(elsewhere.path(), &[], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", shown(&refused));
    assert!(
        stderr(&refused).contains("--token-file"),
        "{}",
        shown(&refused)
    );
    // The file given, the variable, or the default file where it is run.
    let path = setup.operator_token_path();
    let by_file = run(
        elsewhere.path(),
        &[],
        &[OsStr::new("--token-file"), path.as_os_str()],
    );
    assert_eq!(by_file.status.code(), Some(0), "{}", shown(&by_file));
    let token = host.token().unwrap().to_owned();
    let by_env = run(elsewhere.path(), &[("RULEHOST_TOKEN", &token)], &[]);
    assert_eq!(by_env.status.code(), Some(0), "{}", shown(&by_env));
    let by_default = run(setup.dir(), &[], &[]);
    assert_eq!(by_default.status.code(), Some(0), "{}", shown(&by_default));
}

/// A refused request's body is read before the answer, so a keep-alive
/// client's next request on the same connection is answered (it used to
/// fail now and then with "peer disconnected").
#[test]
fn a_refused_request_with_a_body_leaves_the_connection_usable() {
    let setup = Setup::new("");
    let host = setup.start();
    let viewer = create(&setup, "viewer", &[], "reader");
    let body = json!({"definition": "connect-client", "subject": "acme", "context": {"pad": "x".repeat(20_000)}});
    for round in 0..30 {
        assert_unauthorized(
            &host.call_as(None, "POST", "/v1/flows", Some(&body)),
            "no token",
        );
        assert_forbidden(
            &host.call_as(Some(&viewer), "POST", "/v1/flows", Some(&body)),
            "viewer",
        );
        let reply = host.call_as(Some(&viewer), "GET", "/v1/flows", None);
        assert_eq!(reply.status, 200, "round {round}: {reply}");
    }
    assert_eq!(flows(&host), 0);
}

#[test]
fn a_service_token_issues_fresh_links_for_its_own_services_reconciliations_only() {
    let setup = Setup::new("");
    let host = setup.start();
    let premium = create(&setup, "service", &["premium-support"], "premium-app");
    let support = create(&setup, "service", &["support-contract"], "support-app");
    let reply = host.put(
        "/v1/accounts/acme-1",
        &json!({"status": "active", "paid_up": false, "tier": "premium",
                "contract_end": "2099-01-01T00:00:00Z",
                "contact": {"name": "Ada", "email": "ada@acme.test"}}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "premium-support", "account_id": "acme-1", "request_id": "r-1"}),
    );
    let id = check.json["reconciliation"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no reconciliation: {check}"))
        .to_owned();
    let path = format!("/v1/reconciliations/{id}/link");

    // Another service's token: as if there were no such reconciliation.
    let reply = host.call_as(Some(&support), "POST", &path, None);
    assert_eq!(reply.status, 404, "{reply}");
    assert_eq!(reply.json["error"]["code"], "not-found", "{reply}");
    // Its own service's token: a fresh link.
    let reply = host.call_as(Some(&premium), "POST", &path, None);
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json["reconciliation_id"], id.as_str(), "{reply}");
}
