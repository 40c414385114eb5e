//! `rulehost replay`: re-evaluates a service's last recorded decisions on a
//! candidate plugin and prints how many agree and each one that differs.
//!
//! Exit status: 0 all agree (or there is nothing to replay), 1 some differ
//! (so it can gate a deployment), 2 could not run (no such service, an
//! unreadable database or candidate).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use super::PluginArgs;
use super::format::{fit, table};
use crate::harness::replay::{self, ReplayReport};
use crate::registry::{Manifest, valid_plugin_name};
use crate::runtime::Binding;
use crate::store::Store;
use crate::store::entitlement::list_decisions;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The service whose decisions are replayed.
    #[arg(long)]
    service: String,
    /// The candidate plugin: a `.wasm` file, or a plugin name found in `--plugins`.
    #[arg(long, value_name = "PATH")]
    candidate: PathBuf,
    /// How many of the newest decisions to replay.
    #[arg(long, value_name = "N", default_value_t = 100)]
    last: u32,
    /// The host's database (its decision log).
    #[arg(long, value_name = "PATH", default_value = "rulehost.db")]
    db: PathBuf,
    /// The rules folder: the service's manifest gives the candidate its limits.
    #[arg(long, value_name = "DIR", default_value = "rules")]
    rules: PathBuf,
    #[command(flatten)]
    plugins: PluginArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let manifest = manifest(&args.rules, &args.service)?;
    let (name, bytes) = candidate(&args.candidate, &args.plugins.plugins)?;
    if !args.db.is_file() {
        bail!(
            "no database at `{}`: give the host's with --db",
            args.db.display()
        );
    }
    let store = Store::open(&args.db)?;
    let decisions = store
        .read(|c| list_decisions(c, Some(&args.service), None, args.last))
        .with_context(|| format!("cannot read the decision log in `{}`", args.db.display()))?;

    let runtime = args.plugins.runtime(false)?;
    if manifest.limits.memory_bytes > runtime.options().max_memory_bytes {
        bail!(
            "`{}` asks for more memory than this host allows",
            manifest.path.display()
        );
    }
    let plugin = runtime
        .load(&name, &bytes)
        .with_context(|| format!("the candidate `{}` cannot run", args.candidate.display()))?;
    let needed: BTreeSet<_> = decisions
        .iter()
        .filter_map(|d| replay::inputs(d).ok())
        .map(|(_, call)| call.capability())
        .collect();
    if let Some(missing) = needed.iter().find(|c| !plugin.exports(**c)) {
        bail!(
            "the candidate `{name}` does not export `{}`, which the recorded decisions call",
            missing.manifest_key()
        );
    }
    let binding = Binding::new(plugin.clone(), manifest.limits);
    let report = replay::replay(&binding, &decisions);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("service    {}", args.service);
        println!(
            "candidate  {name} {} ({:.1} KiB, contract {})",
            plugin.digest(),
            plugin.size() as f64 / 1024.0,
            plugin.contract()
        );
        if decisions.is_empty() {
            println!(
                "decisions  none recorded for `{}` in `{}`: nothing to compare",
                args.service,
                args.db.display()
            );
        } else {
            println!(
                "decisions  the last {} in `{}`, decided by {}",
                decisions.len(),
                args.db.display(),
                versions(&decisions)
            );
        }
        print_report(&report);
    }
    // A replay that stopped early compared too little to pass a gate.
    Ok(if report.differ.is_empty() && report.stopped.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The service's manifest, for its limits.
fn manifest(rules: &Path, service: &str) -> anyhow::Result<Manifest> {
    let path = rules.join(format!("{service}.toml"));
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no service `{service}`: there is no manifest `{}` (give the rules folder with --rules)",
            path.display()
        ),
        Err(e) => bail!("cannot read `{}`: {e}", path.display()),
    };
    Manifest::parse(&path, &source).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the manifest of `{service}` is not valid:\n{}",
            lines.join("\n")
        )
    })
}

/// The candidate's name (file stem) and bytes.
fn candidate(path: &Path, plugins: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let path = match path.to_str() {
        Some(name) if !path.exists() && valid_plugin_name(name) => {
            plugins.join(format!("{name}.wasm"))
        }
        _ => path.to_owned(),
    };
    let bytes = std::fs::read(&path)
        .with_context(|| format!("cannot read the candidate `{}`", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "candidate".into());
    Ok((name, bytes))
}

/// `sha256:520a2f463ad2 (97), sha256:0a1b2c3d4e5f (3)`: the versions that made the decisions.
fn versions(decisions: &[crate::store::entitlement::DecisionRow]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in decisions {
        *counts.entry(d.plugin_digest.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(digest, n)| format!("{} ({n})", fit(digest, 20)))
        .collect();
    parts.join(", ")
}

fn print_report(report: &ReplayReport) {
    if !report.differ.is_empty() {
        let mut rows = vec![
            ["DECISION", "REQUEST", "ACCOUNT", "INPUTS", "OLD", "NEW"]
                .map(String::from)
                .to_vec(),
        ];
        for d in &report.differ {
            rows.push(vec![
                d.decision_id.to_string(),
                fit(&d.request_id, 24),
                fit(&d.account_id, 24),
                fit(&replay::summarize_inputs(&d.inputs), 80),
                fit(&d.old.to_string(), 40),
                fit(&d.new.to_string(), 60),
            ]);
        }
        print!("{}", table(&rows));
    }
    for u in &report.unreadable {
        println!(
            "decision {} (request {}) not replayed: {}",
            u.decision_id, u.request_id, u.message
        );
    }
    println!("{}", report.summary());
}
