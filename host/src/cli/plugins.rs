//! `rulehost plugins list|history|rollback`: the plugin lifecycle of a
//! running host, over its internal API (`/v1/plugins`).
//!
//! Exit status: 0 ok; 1 the host answered with an error (its message is
//! printed); 2 the host cannot be reached, or the command is malformed.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{ApiArgs, Failure, Host, finish, parse, print_json};
use super::format::{fit, table};
use crate::registry::valid_plugin_name;
use crate::runtime::Digest;

#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: PluginsCommand,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// The live version of every plugin: digest, when and by what it went
    /// live, the services using it, counters, and its last rejection.
    List {
        /// Print the host's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every version offered for a plugin, newest first, and what became of it.
    History {
        /// The plugin's name.
        name: String,
        /// How many events to show (0: all the host keeps).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the host's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier version live again (validated like any new version).
    Rollback {
        /// The plugin's name.
        name: String,
        /// The version: `sha256:<hex>`, or a unique prefix of its hex digits
        /// as `history` shows them [default: the version live before the current one].
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
    },
}

pub fn run(args: PluginsArgs) -> anyhow::Result<ExitCode> {
    let host = Host::new(&args.api.host, args.api.token()?);
    let result = match args.command {
        PluginsCommand::List { json } => list(&host, json),
        PluginsCommand::History { name, limit, json } => history(&host, &name, limit, json),
        PluginsCommand::Rollback { name, digest } => rollback(&host, &name, digest.as_deref()),
    };
    finish(result)
}

fn checked_name(name: &str) -> Result<(), Failure> {
    if valid_plugin_name(name) {
        Ok(())
    } else {
        Err(Failure::CannotRun(anyhow::anyhow!(
            "`{name}` is not a plugin name (letters, digits, `-` and `_`)"
        )))
    }
}

/// `sha256:520a2f463ad2…` → `520a2f463ad2`, as tables show digests.
fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

#[derive(Debug, Deserialize)]
struct PluginList {
    plugins: Vec<PluginRow>,
}

#[derive(Debug, Deserialize)]
struct PluginRow {
    name: String,
    digest: String,
    #[serde(default)]
    activated_at: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    services: Vec<ServiceUse>,
    #[serde(default)]
    stats: Stats,
    #[serde(default)]
    last_rejection: Option<Event>,
}

#[derive(Debug, Deserialize)]
struct ServiceUse {
    service: String,
    capability: String,
}

#[derive(Debug, Default, Deserialize)]
struct Stats {
    #[serde(default)]
    calls: u64,
    #[serde(default)]
    faults: u64,
    #[serde(default)]
    fallbacks: u64,
}

#[derive(Debug, Deserialize)]
struct History {
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn list(host: &Host, json: bool) -> Result<(), Failure> {
    let answer = host.get("/v1/plugins")?;
    if json {
        return print_json(&answer);
    }
    let list: PluginList = parse(answer, "GET /v1/plugins")?;
    if list.plugins.is_empty() {
        println!("no live plugins");
        return Ok(());
    }
    print!("{}", list_table(&list.plugins));
    for p in &list.plugins {
        if let Some(r) = &p.last_rejection {
            println!(
                "{} last rejected {} at {}: {}: {}",
                p.name,
                r.digest.as_deref().map_or_else(|| "-".into(), short),
                r.at.as_deref().unwrap_or("-"),
                r.step.as_deref().unwrap_or("-"),
                r.message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn list_table(plugins: &[PluginRow]) -> String {
    let mut rows = vec![
        [
            "PLUGIN",
            "DIGEST",
            "ACTIVATED",
            "BY",
            "SERVICES",
            "CALLS",
            "FAULTS",
            "FALLBACKS",
            "LAST REJECTION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in plugins {
        let services: Vec<String> = p
            .services
            .iter()
            .map(|s| format!("{} ({})", s.service, s.capability))
            .collect();
        let services = if services.is_empty() {
            "-".to_owned()
        } else {
            services.join(", ")
        };
        rows.push(vec![
            p.name.clone(),
            // In full: it is what `rollback --digest` takes.
            p.digest.clone(),
            p.activated_at.clone().unwrap_or_else(|| "-".into()),
            p.source.clone().unwrap_or_else(|| "-".into()),
            fit(&services, 60),
            p.stats.calls.to_string(),
            p.stats.faults.to_string(),
            p.stats.fallbacks.to_string(),
            p.last_rejection
                .as_ref()
                .map_or_else(|| "-".into(), |r| r.step.clone().unwrap_or_default()),
        ]);
    }
    table(&rows)
}

fn history(host: &Host, name: &str, limit: usize, json: bool) -> Result<(), Failure> {
    checked_name(name)?;
    let answer = host.get(&format!("/v1/plugins/{name}/history"))?;
    if json {
        return print_json(&answer);
    }
    let history: History = parse(answer, "GET /v1/plugins/{name}/history")?;
    let total = history.events.len();
    let shown = if limit == 0 { total } else { limit.min(total) };
    if total == 0 {
        println!("no versions offered for `{name}`");
        return Ok(());
    }
    print!("{}", history_table(&history.events[..shown]));
    if shown < total {
        println!(
            "{} older events not shown (--limit 0 shows all)",
            total - shown
        );
    }
    Ok(())
}

fn history_table(events: &[Event]) -> String {
    let mut rows = vec![
        ["AT", "RESULT", "DIGEST", "BY", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        let detail = match (&e.step, &e.message, &e.path) {
            (Some(step), message, _) => {
                format!("{step}: {}", message.as_deref().unwrap_or(""))
            }
            (None, Some(message), _) => message.clone(),
            (None, None, Some(path)) => path.clone(),
            (None, None, None) => String::new(),
        };
        rows.push(vec![
            e.at.clone().unwrap_or_else(|| "-".into()),
            e.result.clone().unwrap_or_else(|| "-".into()),
            e.digest.as_deref().map_or_else(|| "-".into(), short),
            e.source.clone().unwrap_or_else(|| "-".into()),
            fit(&detail, 100),
        ]);
    }
    table(&rows)
}

fn rollback(host: &Host, name: &str, digest: Option<&str>) -> Result<(), Failure> {
    checked_name(name)?;
    let target = match digest {
        None => None,
        Some(text) => Some(resolve(host, name, text)?),
    };
    let body = match &target {
        Some(d) => json!({"digest": d}),
        None => json!({}),
    };
    let answer = host.post(&format!("/v1/plugins/{name}/rollback"), &body)?;
    let digest = answer["digest"].as_str().unwrap_or("?");
    if answer["result"] == "unchanged" {
        println!("{name}: {digest} is already live");
        return Ok(());
    }
    let services: Vec<&str> = answer["services"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("{name}: rolled back to {digest}");
    if !services.is_empty() {
        println!("services: {}", services.join(", "));
    }
    Ok(())
}

/// A full digest as given, or the one version in the plugin's history whose
/// hex digits start with `text`.
fn resolve(host: &Host, name: &str, text: &str) -> Result<String, Failure> {
    if let Some(d) = Digest::parse(text) {
        return Ok(d.to_string());
    }
    let prefix = text.strip_prefix("sha256:").unwrap_or(text).to_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Failure::CannotRun(anyhow::anyhow!(
            "`--digest {text}` is neither `sha256:<64 hex digits>` nor a prefix of at least 4 hex digits"
        )));
    }
    let history: History = parse(
        host.get(&format!("/v1/plugins/{name}/history"))?,
        "GET /v1/plugins/{name}/history",
    )?;
    let mut matches: Vec<String> = history
        .events
        .iter()
        .filter(|e| e.result.as_deref() == Some("activated"))
        .filter_map(|e| e.digest.clone())
        .filter(|d| short_hex(d).starts_with(&prefix))
        .collect();
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::Answered(format!(
            "no version of `{name}` that was ever live has a digest starting with `{prefix}` (see `rulehost plugins history {name}`)"
        ))),
        many => Err(Failure::CannotRun(anyhow::anyhow!(
            "`{prefix}` matches {} versions of `{name}`; give more digits",
            many.len()
        ))),
    }
}

fn short_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_reads_the_documented_shape() {
        let answer = json!({"plugins": [{
            "name": "support-contract",
            "digest": "sha256:520a2f463ad2540cb25f769c7de6884644167245d471fc3238541aba5e737c31",
            "contract": "0.1.0",
            "activated_at": "2026-11-20T10:00:00Z",
            "source": "watcher",
            "services": [{"service": "support-contract", "capability": "verifier"}],
            "stats": {"calls": 12, "faults": 1, "fallbacks": 0, "instantiations": 2},
            "last_rejection": {"id": 4, "plugin": "support-contract", "digest": "sha256:ffee", "at": "2026-11-20T10:01:00Z",
                "source": "watcher", "path": null, "result": "rejected", "step": "cases", "message": "case fails"}
        }]});
        let list: PluginList = serde_json::from_value(answer).unwrap();
        let text = list_table(&list.plugins);
        assert!(text.starts_with("PLUGIN "), "{text}");
        let row = text.lines().nth(1).unwrap();
        for part in [
            "support-contract",
            // In full: what `rollback --digest` takes.
            "sha256:520a2f463ad2540cb25f769c7de6884644167245d471fc3238541aba5e737c31",
            "watcher",
            "support-contract (verifier)",
            "12",
            "cases",
        ] {
            assert!(row.contains(part), "{part} in {row}");
        }
    }

    #[test]
    fn history_shows_the_step_and_message_of_a_rejection() {
        let answer = json!({"events": [
            {"id": 2, "plugin": "p", "digest": null, "at": "t2", "source": "watcher", "path": "/x/p.wasm",
             "result": "rejected", "step": "read", "message": "cannot read"},
            {"id": 1, "plugin": "p", "digest": "sha256:0123456789abcdef", "at": "t1", "source": "startup",
             "path": "/x/p.wasm", "result": "activated", "step": null, "message": null}
        ]});
        let history: History = serde_json::from_value(answer).unwrap();
        let text = history_table(&history.events);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("rejected") && lines[1].contains("read: cannot read"));
        assert!(lines[2].contains("0123456789ab ") && lines[2].contains("/x/p.wasm"));
    }

    #[test]
    fn an_unreachable_host_cannot_run() {
        // Port 9 (discard) on loopback: nothing listens there in tests.
        let host = Host::new("http://127.0.0.1:9/", None);
        assert_eq!(host.base, "http://127.0.0.1:9");
        match host.get("/v1/plugins") {
            Err(Failure::CannotRun(e)) => {
                assert!(e.to_string().contains("http://127.0.0.1:9"), "{e}");
            }
            _ => panic!("expected a connection failure"),
        }
    }
}
