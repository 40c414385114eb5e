//! The `rulehost` binary as a user runs it: `test`, `check` and `eval` on the
//! sample rules, on rules written wrong, and on hostile plugins. Each test
//! checks the exit code and the output a user (or a script) reads.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    rulehost, rulehost_bare, rulehost_stdin, rulehost_with, rules_dir, stderr, stdout,
};

// ---------------------------------------------------------------------------
// Helpers. Those that set a test up panic when they cannot (clippy denies
// `panic` outside `#[test]` functions, hence the `allow`s): a broken setup
// must stop the test loudly.

/// The sample services: the stems of `rules/*.toml` but `roles.toml` (who
/// does manual tasks, not a service), sorted.
fn sample_services() -> Vec<String> {
    let mut services: Vec<String> = std::fs::read_dir(rules_dir())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| p.file_name().is_none_or(|n| n != "roles.toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    services.sort();
    services
}

/// The case files of `<rules>/<service>/cases`, sorted.
fn case_files(rules: &Path, service: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules.join(service).join("cases"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn sample_case_count() -> usize {
    sample_services()
        .iter()
        .map(|s| case_files(&rules_dir(), s).len())
        .sum()
}

#[allow(clippy::panic)]
fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Copies a sample service (manifest, and its cases when `with_cases`) into `rules`.
#[allow(clippy::panic)]
fn copy_service(rules: &Path, service: &str, with_cases: bool) {
    let manifest = format!("{service}.toml");
    std::fs::copy(rules_dir().join(&manifest), rules.join(&manifest))
        .unwrap_or_else(|e| panic!("copy {manifest}: {e}"));
    if with_cases {
        for file in case_files(&rules_dir(), service) {
            let name = file.file_name().map(PathBuf::from).unwrap_or_default();
            let to = rules.join(service).join("cases").join(name);
            write(&to, &read(&file));
        }
    }
}

#[allow(clippy::panic)]
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[allow(clippy::panic)]
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[allow(clippy::panic)]
fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()))
}

/// Everything a failed assertion should show.
fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        tail(&stderr(output), 40)
    )
}

/// The last `n` lines (plugin logs can make stderr long).
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}\n{}",
        explain(output)
    );
}

/// The last non-empty line of stdout: `test`'s and `check`'s summary.
fn summary(output: &Output) -> String {
    stdout(output)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// The rows of `test`'s table for `service`, as (case, result) pairs.
fn rows(output: &Output, service: &str) -> Vec<(String, String)> {
    stdout(output)
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(service))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (
                cells.get(1).copied().unwrap_or_default().to_owned(),
                cells.last().copied().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn result_of(output: &Output, service: &str, case: &str) -> Option<String> {
    rows(output, service)
        .into_iter()
        .find(|(c, _)| c == case)
        .map(|(_, r)| r)
}

/// A minimal manifest naming one plugin for one capability.
fn manifest(id: &str, capability: &str, plugin: &str) -> String {
    format!("id = \"{id}\"\n\n[plugins]\n{capability} = \"{plugin}\"\n")
}

/// A `verify` case for an active, paid-up account, with `expect` as its
/// `[expect]` table body.
fn verify_case(expect: &str) -> String {
    format!(
        "now = \"2026-11-20T10:00:00Z\"\n\n[verify]\nrequest = {{ id = \"r1\", account_id = \"acme-1\" }}\naccount = {{ id = \"acme-1\", status = \"active\", paid_up = true, tier = \"standard\", contract_end = \"2027-06-30T00:00:00Z\" }}\n\n[expect]\n{expect}\n"
    )
}

/// The same call as JSON, for `eval` on stdin.
fn verify_json(expect: Option<Value>) -> String {
    let mut case = serde_json::json!({
        "now": "2026-11-20T10:00:00Z",
        "verify": {
            "request": {"id": "r1", "account_id": "acme-1"},
            "account": {"id": "acme-1", "status": "active", "paid_up": true,
                        "tier": "standard", "contract_end": "2027-06-30T00:00:00Z"}
        }
    });
    if let Some(expect) = expect {
        case["expect"] = expect;
    }
    case.to_string()
}

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------
// rulehost test

#[test]
fn test_runs_every_sample_case_and_passes() {
    let out = rulehost(&["test"]);
    assert_exit(&out, 0);
    let expected = sample_case_count();
    assert!(expected > 0, "no sample cases found");
    assert_eq!(
        summary(&out),
        format!("{expected} passed, 0 failed"),
        "{}",
        explain(&out)
    );
    let text = stdout(&out);
    assert!(
        text.lines().next().is_some_and(|h| {
            let cols: Vec<&str> = h.split_whitespace().collect();
            cols == ["SERVICE", "CASE", "EXPECTED", "GOT", "TIME", "RESULT"]
        }),
        "{text}"
    );
    for service in sample_services() {
        let rows = rows(&out, &service);
        assert_eq!(
            rows.len(),
            case_files(&rules_dir(), &service).len(),
            "{service}\n{text}"
        );
        assert!(rows.iter().all(|(_, r)| r == "ok"), "{service}\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(!stderr(&out).contains("error"), "{}", explain(&out));
}

#[test]
fn test_of_a_manifest_or_a_case_file_runs_only_those() {
    let premium = case_files(&rules_dir(), "premium-support").len();

    let out = rulehost(&["test", "rules/premium-support.toml"]);
    assert_exit(&out, 0);
    assert_eq!(summary(&out), format!("{premium} passed, 0 failed"));
    for service in sample_services() {
        let n = rows(&out, &service).len();
        match service.as_str() {
            "premium-support" => assert_eq!(n, premium, "{}", explain(&out)),
            _ => assert_eq!(n, 0, "{service} ran\n{}", explain(&out)),
        }
    }

    let out = rulehost(&["test", "rules/support-contract/cases/unpaid.toml"]);
    assert_exit(&out, 0);
    assert_eq!(summary(&out), "1 passed, 0 failed", "{}", explain(&out));
    assert_eq!(
        rows(&out, "support-contract"),
        [("unpaid".to_owned(), "ok".to_owned())]
    );

    // Several paths add up.
    let out = rulehost(&[
        "test",
        "rules/support-contract/cases/unpaid.toml",
        "rules/premium-support.toml",
    ]);
    assert_exit(&out, 0);
    assert_eq!(summary(&out), format!("{} passed, 0 failed", premium + 1));
}

#[test]
fn test_reports_a_wrong_expectation() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", false);
    // The contract has ended, so the verdict is `expired`, not `unpaid`.
    let case = read(&rules_dir().join("support-contract/cases/contract-ended.toml"))
        .replace("code = \"expired\"", "code = \"unpaid\"");
    let case_path = rules.join("support-contract/cases/wrong.toml");
    write(&case_path, &case);

    let out = rulehost(&["test", path_str(rules)]);
    assert_exit(&out, 1);
    assert_eq!(
        result_of(&out, "support-contract", "wrong").as_deref(),
        Some("FAIL")
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "FAIL support-contract/wrong ({})",
            case_path.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("`code`: expected \"unpaid\", got \"expired\""),
        "{text}"
    );
    assert_eq!(summary(&out), "0 passed, 1 failed");
}

#[test]
fn test_reports_an_invalid_case_file_with_its_line() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", false);
    write(
        &rules.join("support-contract/cases/active-paid-passes.toml"),
        &read(&rules_dir().join("support-contract/cases/active-paid-passes.toml")),
    );
    // Line 1 is fine; the typo `[expcet]` is on line 3.
    write(
        &rules.join("support-contract/cases/typo.toml"),
        "[verify]\nrequest = { id = \"r1\", account_id = \"acme-1\" }\n[expcet]\nverdict = \"pass\"\n",
    );

    let out = rulehost(&["test", path_str(rules)]);
    assert_exit(&out, 1);
    assert_eq!(
        result_of(&out, "support-contract", "typo").as_deref(),
        Some("INVALID")
    );
    assert_eq!(
        result_of(&out, "support-contract", "active-paid-passes").as_deref(),
        Some("ok")
    );
    let typo = rules.join("support-contract/cases/typo.toml");
    assert!(
        stdout(&out).contains(&format!("{}:3: unknown field `expcet`", typo.display())),
        "{}",
        explain(&out)
    );
    assert_eq!(summary(&out), "1 passed, 1 failed");

    // With the FUEL column, the invalid row still lines up with the header.
    let out = rulehost(&["test", "--fuel", path_str(&typo)]);
    assert_exit(&out, 1);
    let row = stdout(&out)
        .lines()
        .find(|l| l.starts_with("support-contract"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(
        row,
        ["support-contract", "typo", "-", "-", "-", "-", "INVALID"],
        "{}",
        explain(&out)
    );
}

#[test]
fn test_counts_a_broken_manifest_as_a_failure_and_runs_the_rest() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", false);
    write(
        &rules.join("support-contract/cases/active-paid-passes.toml"),
        &read(&rules_dir().join("support-contract/cases/active-paid-passes.toml")),
    );
    write(
        &rules.join("broken.toml"),
        "id = \"broken\"\n\n[plugins]\nverifier = \"support-contract\"\n[limits]\ntimeout_ms = 0\n",
    );

    let out = rulehost(&["test", path_str(rules)]);
    assert_exit(&out, 1);
    let broken = rules.join("broken.toml");
    assert!(
        stderr(&out).contains(&format!(
            "error: {}:6: `timeout_ms` must be between 1 and",
            broken.display()
        )),
        "{}",
        explain(&out)
    );
    assert_eq!(
        result_of(&out, "support-contract", "active-paid-passes").as_deref(),
        Some("ok")
    );
    assert_eq!(summary(&out), "1 passed, 1 failed");
}

#[test]
fn test_of_a_path_that_does_not_exist_cannot_run() {
    let out = rulehost(&["test", "rules/no-such-service.toml"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("`rules/no-such-service.toml` does not exist"),
        "{}",
        explain(&out)
    );
    assert!(!stdout(&out).contains("passed"), "{}", explain(&out));

    // A case whose service has no manifest is a failure, not "0 passed".
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", false);
    let orphan = rules.join("ghost/cases/unpaid.toml");
    write(
        &orphan,
        &read(&rules_dir().join("support-contract/cases/unpaid.toml")),
    );
    let out = rulehost(&["test", path_str(&orphan)]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("no service `ghost`"),
        "{}",
        explain(&out)
    );
    assert_eq!(summary(&out), "0 passed, 1 failed");
}

#[test]
fn test_with_fuel_adds_a_fuel_column() {
    let out = rulehost(&["test", "--fuel", "rules/support-contract/cases/unpaid.toml"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "SERVICE", "CASE", "EXPECTED", "GOT", "TIME", "FUEL", "RESULT"
        ]
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("support-contract"))
        .unwrap_or_else(|| panic!("no row\n{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let fuel = cells[cells.len() - 2];
    assert!(
        fuel.parse::<u64>().is_ok_and(|f| f > 0),
        "fuel `{fuel}` in {row}"
    );
}

/// Hostile plugins are confined to their own case: each faults with its
/// limit named, an expected fault passes, and the sample service in the same
/// run is unaffected.
#[test]
fn test_confines_hostile_plugins_and_names_their_faults() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", true);
    let hostile = [
        ("hostile-loop", "timeout"),
        ("hostile-memory", "memory-limit"),
        ("hostile-panic", "trap"),
        ("hostile-output", "output-too-large"),
    ];
    for (name, fault) in hostile {
        write(
            &rules.join(format!("{name}.toml")),
            &manifest(name, "verifier", name),
        );
        write(
            &rules.join(format!("{name}/cases/passes.toml")),
            &verify_case("verdict = \"pass\""),
        );
        write(
            &rules.join(format!("{name}/cases/faults.toml")),
            &verify_case(&format!("fault = \"{fault}\"")),
        );
    }

    // The rules are valid (faults show only when run); checking them also
    // compiles the plugins into the cache, so the time below is the run's.
    let check = rulehost(&["check", path_str(rules)]);
    assert_exit(&check, 0);

    let started = Instant::now();
    let out = rulehost(&["test", path_str(rules)]);
    let took = started.elapsed();
    assert_exit(&out, 1);
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}\n{}",
        explain(&out)
    );

    let sample = case_files(&rules_dir(), "support-contract").len();
    assert_eq!(
        summary(&out),
        format!(
            "{} passed, {} failed",
            sample + hostile.len(),
            hostile.len()
        ),
        "{}",
        explain(&out)
    );
    assert!(
        rows(&out, "support-contract")
            .iter()
            .all(|(_, r)| r == "ok"),
        "{}",
        explain(&out)
    );
    for (name, _) in hostile {
        assert_eq!(
            result_of(&out, name, "passes").as_deref(),
            Some("FAIL"),
            "{name}\n{}",
            explain(&out)
        );
        assert_eq!(
            result_of(&out, name, "faults").as_deref(),
            Some("ok"),
            "{name}\n{}",
            explain(&out)
        );
    }

    // A fault shows as itself in the GOT column, without a time.
    for (name, fault) in hostile {
        let row = stdout(&out)
            .lines()
            .find(|l| l.starts_with(name) && l.split_whitespace().nth(1) == Some("passes"))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(
            row,
            [
                name,
                "passes",
                "verdict=pass",
                &format!("fault={fault}"),
                "-",
                "FAIL"
            ],
            "{}",
            explain(&out)
        );
    }

    // Each failure's details carry the plugin's error.
    let text = stdout(&out);
    let detail = |name: &str| -> String {
        let start = format!("FAIL {name}/passes (");
        let from = text
            .find(&start)
            .unwrap_or_else(|| panic!("no details for {name}\n{text}"));
        let rest = &text[from..];
        let end = rest.find("\n\n").unwrap_or(rest.len());
        rest[..end].to_owned()
    };
    let loop_detail = detail("hostile-loop");
    assert!(
        loop_detail.contains("timed out after 50 ms"),
        "{loop_detail}"
    );
    let memory = detail("hostile-memory");
    assert!(memory.contains("exceeded its memory limit"), "{memory}");
    let panic = detail("hostile-panic");
    assert!(
        panic.contains("hostile plugin panicked on purpose"),
        "{panic}"
    );
    let output = detail("hostile-output");
    assert!(output.contains("over the limit"), "{output}");
}

#[test]
fn test_shows_plugin_output_in_failure_details_not_in_the_table() {
    let dir = tempdir();
    let rules = dir.path();
    write(
        &rules.join("hostile-escape.toml"),
        &manifest("hostile-escape", "verifier", "hostile-escape"),
    );
    // It passes; expecting `fail` makes it fail so its logs are shown.
    write(
        &rules.join("hostile-escape/cases/chatty.toml"),
        &verify_case("verdict = \"fail\""),
    );

    let out = rulehost(&["test", path_str(rules)]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("`verdict`: expected \"fail\", got \"pass\""),
        "{text}"
    );
    for line in [
        "log [stdout] hello from stdout",
        "log [stderr] hello from stderr",
        "log [info] hello from log",
    ] {
        assert!(text.contains(line), "missing `{line}`\n{text}");
    }
    // What the plugin writes to its stdout never reaches ours raw.
    assert!(
        text.lines().all(|l| l.trim() != "hello from stdout"),
        "{text}"
    );
    assert_eq!(summary(&out), "0 passed, 1 failed");
}

#[test]
fn test_compiles_into_the_cache_folder_unless_told_not_to() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", false);
    write(
        &rules.join("support-contract/cases/unpaid.toml"),
        &read(&rules_dir().join("support-contract/cases/unpaid.toml")),
    );
    let compiled = |cache: &Path| {
        std::fs::read_dir(cache)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count()
    };

    let cache = tempdir();
    let out = rulehost_with(&["test", path_str(rules)], |cmd| {
        cmd.env("RULEHOST_CACHE_DIR", cache.path());
    });
    assert_exit(&out, 0);
    assert_eq!(compiled(cache.path()), 1, "{}", explain(&out));

    let cache = tempdir();
    let out = rulehost_with(&["test", "--no-cache", path_str(rules)], |cmd| {
        cmd.env("RULEHOST_CACHE_DIR", cache.path());
    });
    assert_exit(&out, 0);
    assert_eq!(compiled(cache.path()), 0, "{}", explain(&out));
}

// ---------------------------------------------------------------------------
// rulehost check

/// Plans in the sample plan files (`[[plan]]` tables).
fn sample_plan_count() -> usize {
    std::fs::read_dir(rules_dir().join("plans"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|text| text.lines().filter(|l| l.trim() == "[[plan]]").count())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn check_accepts_the_sample_rules() {
    let out = rulehost(&["check"]);
    assert_exit(&out, 0);
    assert_eq!(
        summary(&out),
        format!(
            "ok: {} services, {} plans, {} cases, 0 warnings",
            sample_services().len(),
            sample_plan_count(),
            sample_case_count()
        ),
        "{}",
        explain(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", explain(&out));
}

#[test]
fn check_reports_every_problem_in_one_run() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", false);
    let files = [
        (
            "bad-toml",
            "id = \"bad-toml\"\n[plugins\nverifier = \"x\"\n",
        ),
        (
            "teleport",
            "id = \"teleport\"\n\n[plugins]\nverifier = \"support-contract\"\nteleporter = \"x\"\n",
        ),
        (
            "missing",
            "id = \"missing\"\n[plugins]\nverifier = \"no-such-plugin\"\n",
        ),
        (
            "old-contract",
            "id = \"old-contract\"\n[plugins]\nverifier = \"hostile-contract\"\n",
        ),
        (
            "lacks",
            "id = \"lacks\"\n[plugins]\nreconciler = \"conference-split\"\n",
        ),
        (
            "misnamed",
            "id = \"other-name\"\n[plugins]\nverifier = \"support-contract\"\n",
        ),
    ];
    for (name, text) in files {
        write(&rules.join(format!("{name}.toml")), text);
    }
    // Cases of a valid service: one for a capability it lacks, one without
    // `[expect]`, one with a typo.
    write(
        &rules.join("support-contract/cases/no-charging.toml"),
        &read(&rules_dir().join("conference-split/cases/configured-rate.toml")),
    );
    write(
        &rules.join("support-contract/cases/no-expect.toml"),
        "[verify]\nrequest = { id = \"r1\", account_id = \"acme-1\" }\n",
    );
    write(
        &rules.join("support-contract/cases/typo.toml"),
        "[verify]\nrequest = { id = \"r1\", account_id = \"acme-1\" }\n[expcet]\nverdict = \"pass\"\n",
    );

    let out = rulehost(&["check", path_str(rules)]);
    assert_exit(&out, 1);
    assert_eq!(summary(&out), "9 errors, 0 warnings", "{}", explain(&out));
    let err = stderr(&out);
    let at = |name: &str, line: usize| format!("error: {}:{line}: ", rules.join(name).display());
    let expect = |needle: &str| assert!(err.contains(needle), "missing `{needle}` in\n{err}");

    expect(&format!("{}unclosed table", at("bad-toml.toml", 2)));
    expect(&format!(
        "{}unknown field `teleporter`",
        at("teleport.toml", 5)
    ));
    expect(&format!(
        "{}plugin file `{}` not found; build the plugins (`cargo xtask plugins`)",
        at("missing.toml", 3),
        crate::support::plugins_dir()
            .join("no-such-plugin.wasm")
            .display()
    ));
    let contract = err
        .lines()
        .find(|l| l.contains("old-contract.toml"))
        .unwrap_or_else(|| panic!("nothing about old-contract.toml\n{err}"));
    assert!(
        contract.starts_with(&at("old-contract.toml", 3))
            && contract.contains("2.0.0")
            && contract.contains("0.3.0"),
        "{contract}"
    );
    expect(&format!(
        "{}plugin `conference-split` does not export `reconciler`",
        at("lacks.toml", 3)
    ));
    expect(&format!(
        "{}service id `other-name` does not match the file name `misnamed.toml`",
        at("misnamed.toml", 1)
    ));
    let cases = rules.join("support-contract/cases");
    expect(&format!(
        "error: {}: a case calling `on_event` needs a `session_charging` plugin",
        cases.join("no-charging.toml").display()
    ));
    expect(&format!(
        "error: {}: the case has no `[expect]` table",
        cases.join("no-expect.toml").display()
    ));
    expect(&format!(
        "error: {}:3: unknown field `expcet`",
        cases.join("typo.toml").display()
    ));
}

#[test]
fn check_of_one_manifest_ignores_the_others() {
    let dir = tempdir();
    let rules = dir.path();
    copy_service(rules, "support-contract", true);
    write(&rules.join("broken.toml"), "id = \"broken\"\n[plugins\n");

    let manifest = rules.join("support-contract.toml");
    let out = rulehost(&["check", path_str(&manifest)]);
    assert_exit(&out, 0);
    assert_eq!(
        summary(&out),
        format!(
            "ok: 1 service, {} cases, 0 warnings",
            case_files(&rules_dir(), "support-contract").len()
        ),
        "{}",
        explain(&out)
    );

    let out = rulehost(&["check", path_str(rules)]);
    assert_exit(&out, 1);
    assert_eq!(summary(&out), "1 error, 0 warnings", "{}", explain(&out));
}

// ---------------------------------------------------------------------------
// rulehost eval

#[test]
fn eval_explains_a_case_file() {
    let out = rulehost(&[
        "eval",
        "--service",
        "support-contract",
        "--case",
        "rules/support-contract/cases/unpaid.toml",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let line = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line\n{text}"))
            .to_owned()
    };
    assert_eq!(line("service "), "service   support-contract");
    assert_eq!(line("call "), "call      verify (verifier)");
    let plugin = line("plugin ");
    let words: Vec<&str> = plugin.split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"support-contract"), "{plugin}");
    assert!(
        words.get(2).is_some_and(|d| is_digest(d)),
        "no digest in {plugin}"
    );
    assert!(plugin.contains("KiB, contract 0.3.0)"), "{plugin}");
    let context = line("context ");
    assert!(
        context.contains("now=2026-11-20T10:00:00Z") && context.contains("lapse_days=10"),
        "{context}"
    );
    assert!(line("time ").contains("per call"), "{text}");
    assert!(line("outcome ").starts_with("outcome   {"), "{text}");
    assert!(text.contains("\"code\": \"unpaid\""), "{text}");
    assert_eq!(line("expect "), "expect    matched");
}

#[test]
fn eval_reads_a_json_case_from_stdin_and_answers_in_json() {
    let case = verify_json(Some(
        serde_json::json!({"verdict": "pass", "level": "standard"}),
    ));
    let out = rulehost_stdin(&["eval", "--service", "support-contract", "--json"], &case);
    assert_exit(&out, 0);
    let json: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", explain(&out)));
    assert_eq!(json["service"], "support-contract");
    assert_eq!(json["call"], "verify");
    assert_eq!(json["capability"], "verifier");
    assert_eq!(json["plugin"]["name"], "support-contract");
    assert_eq!(json["plugin"]["contract"], "0.3.0");
    assert!(
        json["plugin"]["digest"].as_str().is_some_and(is_digest),
        "{json}"
    );
    assert_eq!(json["context"]["now"], "2026-11-20T10:00:00Z");
    assert_eq!(json["context"]["config"]["lapse_days"], "10");
    assert!(
        json["time_per_call_ns"].as_u64().is_some_and(|t| t > 0),
        "{json}"
    );
    assert!(json["fuel"].as_u64().is_some_and(|f| f > 0), "{json}");
    assert_eq!(json["logs"], serde_json::json!([]));
    assert_eq!(json["outcome"]["verdict"], "pass");
    assert_eq!(json["outcome"]["level"], "standard");
    assert_eq!(json["expect"]["matched"], true);
}

#[test]
fn eval_without_expectation_just_answers() {
    let out = rulehost_stdin(
        &["eval", "--service", "support-contract"],
        &verify_json(None),
    );
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("\"verdict\": \"pass\""), "{text}");
    assert!(!text.contains("expect "), "{text}");
}

#[test]
fn eval_exits_1_on_a_mismatch() {
    let case = verify_json(Some(serde_json::json!({"verdict": "fail"})));
    let out = rulehost_stdin(&["eval", "--service", "support-contract"], &case);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("expect    MISMATCH: `verdict`: expected \"fail\", got \"pass\""),
        "{}",
        explain(&out)
    );

    let out = rulehost_stdin(&["eval", "--service", "support-contract", "--json"], &case);
    assert_exit(&out, 1);
    let json: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", explain(&out)));
    assert_eq!(json["expect"]["matched"], false);
    assert!(
        json["expect"]["mismatch"]
            .as_str()
            .is_some_and(|m| m.contains("`verdict`")),
        "{json}"
    );
}

#[test]
fn eval_shows_what_a_plugin_prints_as_log_lines() {
    let dir = tempdir();
    let rules = dir.path();
    write(
        &rules.join("hostile-escape.toml"),
        &manifest("hostile-escape", "verifier", "hostile-escape"),
    );
    let case = rules.join("hostile-escape/cases/escape.toml");
    write(&case, &verify_case("verdict = \"pass\""));

    let args = [
        "eval",
        "--service",
        "hostile-escape",
        "--rules",
        path_str(rules),
        "--case",
        path_str(&case),
    ];
    let out = rulehost(&args);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for line in [
        "log       [stdout] hello from stdout",
        "log       [stderr] hello from stderr",
        "log       [info] hello from log",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`\n{text}");
    }
    // Every escape attempt was denied.
    assert!(
        text.contains("\"level\": \"fs=denied env=denied dir=denied net=denied\""),
        "{text}"
    );
    assert!(text.lines().all(|l| l != "hello from stdout"), "{text}");

    // The plugin's stdout does not corrupt the JSON answer.
    let out = rulehost(&[&args[..], &["--json"]].concat());
    assert_exit(&out, 0);
    let json: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", explain(&out)));
    let logs = json["logs"].as_array().cloned().unwrap_or_default();
    assert_eq!(logs.len(), 3, "{json}");
    for (level, message) in [
        ("stdout", "hello from stdout"),
        ("stderr", "hello from stderr"),
        ("info", "hello from log"),
    ] {
        assert!(
            logs.iter()
                .any(|l| l["level"] == level && l["message"] == message),
            "no {level} line in {json}"
        );
    }
}

#[test]
fn eval_of_a_faulting_plugin_shows_the_fault() {
    let dir = tempdir();
    let rules = dir.path();
    write(
        &rules.join("hostile-loop.toml"),
        &manifest("hostile-loop", "verifier", "hostile-loop"),
    );
    let args = [
        "eval",
        "--service",
        "hostile-loop",
        "--rules",
        path_str(rules),
    ];

    // No expectation: the fault is the answer, and a failure.
    let out = rulehost_stdin(&args, &verify_json(None));
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("\"fault\": \"timeout\""), "{text}");
    assert!(text.contains("timed out after 50 ms"), "{text}");
    assert!(text.contains("time      - (the call faulted)"), "{text}");

    // Expecting the fault: matched, as `rulehost test` would pass it.
    let expected = verify_json(Some(serde_json::json!({"fault": "timeout"})));
    let out = rulehost_stdin(&args, &expected);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("expect    matched"),
        "{}",
        explain(&out)
    );
}

#[test]
fn eval_of_an_unknown_service_lists_the_known_ones() {
    let out = rulehost(&[
        "eval",
        "--service",
        "no-such-service",
        "--case",
        "rules/support-contract/cases/unpaid.toml",
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("no usable service `no-such-service`"), "{err}");
    for service in sample_services() {
        assert!(err.contains(&service), "{service} not listed in\n{err}");
    }
    assert!(stdout(&out).is_empty(), "{}", explain(&out));
}

#[test]
fn eval_of_an_unreadable_case_cannot_run() {
    let out = rulehost_stdin(
        &["eval", "--service", "support-contract"],
        "{\"verify\": {\"request\": ",
    );
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.starts_with("error: <stdin>:1: "), "{err}");
    assert!(err.contains("EOF while parsing"), "{err}");
    assert!(!err.contains("error: error:"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", explain(&out));

    // Valid JSON, but no call in it.
    let out = rulehost_stdin(
        &["eval", "--service", "support-contract"],
        "{\"now\": \"2026-11-20T10:00:00Z\"}",
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("the case has no call"),
        "{}",
        explain(&out)
    );

    let out = rulehost(&[
        "eval",
        "--service",
        "support-contract",
        "--case",
        "rules/support-contract/cases/no-such-case.toml",
    ]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot read the case"),
        "{}",
        explain(&out)
    );
}

// ---------------------------------------------------------------------------
// --help

#[test]
fn every_subcommand_has_help() {
    let out = rulehost_bare(&["--help"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for command in ["test", "eval", "check", "export"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "`{command}` not listed\n{text}"
        );
    }
    let out = rulehost_bare(&["export", "decisions", "--help"]);
    assert_exit(&out, 0);
    for flag in ["--since", "--until", "--service", "--db"] {
        assert!(
            stdout(&out).contains(flag),
            "`rulehost export decisions --help` lacks {flag}\n{}",
            stdout(&out)
        );
    }
    for (command, flags) in [
        (
            "test",
            &["--plugins", "--cache-dir", "--no-cache", "--fuel", "[PATH]"][..],
        ),
        (
            "eval",
            &["--service", "--case", "--rules", "--json", "--plugins"][..],
        ),
        ("check", &["--plugins", "--cache-dir", "[PATH]"][..]),
    ] {
        let out = rulehost_bare(&[command, "--help"]);
        assert_exit(&out, 0);
        let text = stdout(&out);
        for flag in flags {
            assert!(
                text.contains(flag),
                "`rulehost {command} --help` lacks {flag}\n{text}"
            );
        }
    }
}
