//! The decision log on the real binary: paging through `GET /v1/decisions`
//! with its cursor, `rulehost export decisions` as JSON Lines beside a
//! running host, and the pruner's counters in `GET /metrics`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::serve::metric;
use crate::server::{Host, Setup};
use crate::support::{rulehost_bare, stderr, stdout};

/// `checks` passing checks of support-contract for `account`; their request ids.
fn passing_checks(host: &Host, account: &str, checks: usize) -> Vec<String> {
    let body = json!({"status": "active", "paid_up": true, "tier": "standard", "contract_end": null,
        "contact": {"name": "Ada", "email": "ada@acme.test"}, "attributes": {}});
    let reply = host.put(&format!("/v1/accounts/{account}"), &body);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
    (0..checks)
        .map(|i| {
            let request_id = format!("{account}-r{i}");
            let reply = host.post(
                "/v1/checks",
                &json!({"service": "support-contract", "account_id": account, "request_id": request_id}),
            );
            assert_eq!(reply.status, 200, "{reply}");
            assert_eq!(reply.json["decision"], "pass", "{reply}");
            request_id
        })
        .collect()
}

/// Every page of `GET /v1/decisions?{query}`, following `next`: the ids
/// of each page.
fn pages(host: &Host, query: &str) -> Vec<Vec<i64>> {
    pages_after(host, query, None)
}

/// [`pages`] from the cursor `after`.
fn pages_after(host: &Host, query: &str, after: Option<&Value>) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    let mut path = match after {
        Some(after) => format!("/v1/decisions?{query}&after={after}"),
        None => format!("/v1/decisions?{query}"),
    };
    loop {
        let reply = host.get(&path);
        assert_eq!(reply.status, 200, "{reply}");
        let ids: Vec<i64> = reply.json["decisions"]
            .as_array()
            .unwrap_or_else(|| panic!("no decisions: {reply}"))
            .iter()
            .map(|d| d["id"].as_i64().unwrap_or_else(|| panic!("an id: {d}")))
            .collect();
        let next = &reply.json["next"];
        if next.is_null() {
            out.push(ids);
            return out;
        }
        assert_eq!(
            next.as_i64(),
            ids.last().copied(),
            "next is the last id: {reply}"
        );
        out.push(ids);
        path = format!("/v1/decisions?{query}&after={next}");
        assert!(out.len() < 100, "paging does not end: {out:?}");
    }
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

#[test]
fn paging_with_after_reads_every_decision_exactly_once() {
    let setup = Setup::new("");
    let host = setup.start();
    passing_checks(&host, "acme-p1", 17);
    passing_checks(&host, "acme-p2", 6);

    // Newest first (the default), 5 at a time: 23 in 5 pages.
    let desc = pages(&host, "limit=5");
    assert_eq!(
        desc.iter().map(Vec::len).collect::<Vec<_>>(),
        [5, 5, 5, 5, 3],
        "{desc:?}"
    );
    let all: Vec<i64> = desc.concat();
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(unique.len(), 23, "each decision once: {all:?}");
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");

    // Oldest first: the same decisions the other way round.
    let asc = pages(&host, "order=asc&limit=4").concat();
    assert!(asc.windows(2).all(|w| w[0] < w[1]), "oldest first: {asc:?}");
    assert_eq!(asc, sorted(all.clone()));

    // With a filter, the cursor pages through that account alone.
    let p1 = pages(&host, "account=acme-p1&limit=5&order=asc").concat();
    assert_eq!(p1.len(), 17, "{p1:?}");
    let p2 = pages(&host, "account=acme-p2&service=support-contract&limit=4").concat();
    assert_eq!(p2.len(), 6, "{p2:?}");
    assert_eq!(sorted([p1, p2].concat()), sorted(all.clone()));

    // A page that is exactly the rest says there is no next one.
    let last = host.get(&format!(
        "/v1/decisions?order=asc&limit=3&after={}",
        asc[19]
    ));
    assert_eq!(
        last.json["decisions"].as_array().map(Vec::len),
        Some(3),
        "{last}"
    );
    assert_eq!(last.json["next"], Value::Null, "{last}");

    // Decisions made while paging come after the cursor, newest first: not
    // on the pages still to read, so none is read twice or skipped.
    let first = host.get("/v1/decisions?limit=10");
    let cursor = first.json["next"].clone();
    passing_checks(&host, "acme-p3", 2);
    let rest = pages_after(&host, "limit=10", Some(&cursor)).concat();
    let read: Vec<i64> = first.json["decisions"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(sorted([read, rest].concat()), sorted(all));

    // Bad values: the API's JSON error, nothing else.
    for query in [
        "order=sideways",
        "after=abc",
        "after=-1",
        "after=99999999999999999999",
        "after=1&after=2",
    ] {
        let reply = host.get(&format!("/v1/decisions?{query}"));
        assert_eq!(reply.status, 422, "{query}: {reply}");
        assert_eq!(reply.json["error"]["code"], "invalid", "{query}: {reply}");
        assert!(
            reply.json["error"]["message"].is_string(),
            "{query}: {reply}"
        );
    }
    let too_big = host.get(&format!("/v1/decisions?after={}", u64::MAX));
    assert_eq!(too_big.status, 422, "{too_big}");
}

#[test]
fn export_decisions_prints_the_log_as_json_lines_beside_a_running_host() {
    let setup = Setup::new("");
    // The retention settings are accepted; nothing here is old enough to go.
    setup.write_config(
        "[retention]\nnotifications_days = 1\nbatch_rows = 100\ninterval_seconds = 1\n",
    );
    let host = setup.start();
    let requests = passing_checks(&host, "acme-x1", 12);
    let listed = host.get("/v1/decisions?order=asc&limit=1000");
    let listed = listed.json["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 12);

    let db = setup.db_path().to_string_lossy().into_owned();
    let export = |extra: &[&str]| {
        let mut args = vec!["export", "decisions", "--db", db.as_str()];
        args.extend_from_slice(extra);
        rulehost_bare(&args)
    };
    let out = export(&["--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exported 12 decisions"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(lines.len(), 12, "{text}");
    for (line, listed) in lines.iter().zip(&listed) {
        // Oldest first, the same decisions the API lists, every column.
        for column in [
            "id",
            "at",
            "service",
            "account_id",
            "request_id",
            "inputs_digest",
            "verdict",
            "level",
            "plugin",
            "plugin_digest",
            "duration_us",
        ] {
            assert_eq!(line[column], listed[column], "{column}: {line}");
        }
        for column in ["failure_code", "reason"] {
            assert!(
                line.get(column).is_some_and(Value::is_null),
                "{column}: {line}"
            );
        }
        assert!(line["inputs"].is_object(), "inputs as JSON: {line}");
        let at = line["at"].as_str().unwrap_or_default();
        assert!(
            at.parse::<jiff::Timestamp>().is_ok(),
            "at in RFC 3339: {line}"
        );
    }
    let exported: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    assert_eq!(exported, requests);

    // A window before anything was decided, and another service: nothing.
    let out = export(&[
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2001-01-01T00:00:00Z",
    ]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), ""),
        "{}",
        stderr(&out)
    );
    let out = export(&[
        "--since",
        "2000-01-01T00:00:00Z",
        "--service",
        "premium-support",
    ]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), ""),
        "{}",
        stderr(&out)
    );
    // From the 7th decision's time on: at least the last 6.
    let seventh = lines[6]["at"].as_str().unwrap_or_default();
    let out = export(&["--since", seventh]);
    let later = stdout(&out).lines().count();
    assert!((6..=12).contains(&later), "{later} from {seventh}");

    // Could not run: exit 2, saying why.
    let out = export(&["--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
    let out = rulehost_bare(&[
        "export",
        "decisions",
        "--since",
        "2000-01-01T00:00:00Z",
        "--db",
        "/nonexistent/rulehost.db",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no database at"), "{}", stderr(&out));

    // The pruner runs, and has found nothing old enough.
    let metrics = host.get("/metrics").text;
    for kind in ["decisions", "notifications", "requests", "flows"] {
        let label = format!("kind=\"{kind}\"");
        assert_eq!(
            metric(&metrics, "rulehost_pruned_total", &[&label]),
            Some(0.0),
            "{kind}: {metrics}"
        );
    }
}
