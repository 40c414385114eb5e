//! `rulehost eval`: one evaluation, explained.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use super::format::duration;
use super::{PluginArgs, load};
use crate::harness::{self, Case, Format, Timing};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The service whose plugin answers.
    #[arg(long)]
    service: String,
    /// A case file (TOML, or JSON by extension); without it, the case is read
    /// as JSON from standard input.
    #[arg(long, value_name = "FILE")]
    case: Option<PathBuf>,
    /// The rules folder.
    #[arg(long, value_name = "DIR", default_value = "rules")]
    rules: PathBuf,
    #[command(flatten)]
    plugins: PluginArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let case = match &args.case {
        Some(path) => Case::read(path),
        None => {
            let mut source = String::new();
            std::io::stdin()
                .read_to_string(&mut source)
                .context("cannot read the case from standard input")?;
            Case::parse(Path::new("<stdin>"), &source, Format::Json)
        }
    };
    let case = match case {
        Ok(case) => case,
        // The diagnostic says `error: file:line: ...` itself.
        Err(d) => {
            eprintln!("{d}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = args.plugins.runtime(true)?;
    let loaded = load(&runtime, &args.rules, &args.plugins);
    let Some(service) = loaded.registry.service(&args.service) else {
        for d in loaded.diagnostics.iter().filter(|d| {
            d.file == args.rules
                || d.file
                    .file_stem()
                    .is_some_and(|s| s == args.service.as_str())
        }) {
            eprintln!("{d}");
        }
        let known: Vec<_> = loaded
            .registry
            .services
            .keys()
            .map(String::as_str)
            .collect();
        bail!(
            "no usable service `{}` in {} (services: {})",
            args.service,
            args.rules.display(),
            known.join(", ")
        );
    };
    let ctx = harness::context(service, &case);
    let observation =
        harness::observe(service, &case, Timing::default()).map_err(anyhow::Error::msg)?;
    let mismatch = case
        .expect
        .as_ref()
        .and_then(|e| harness::mismatch(e, &observation.observed));
    let plugin = service
        .binding(case.call.capability())
        .map(|b| b.plugin().clone());

    if args.json {
        let out = json!({
            "service": service.id(),
            "call": case.call.name(),
            "capability": case.call.capability(),
            "plugin": {"name": observation.plugin, "digest": observation.digest, "contract": plugin.as_ref().map(|p| p.contract().to_string())},
            "context": ctx,
            "time_per_call_ns": (!observation.fault).then_some(observation.time_per_call.as_nanos() as u64),
            "fuel": observation.fuel,
            "logs": observation.logs,
            "outcome": observation.observed,
            "expect": case.expect.as_ref().map(|_| json!({"matched": mismatch.is_none(), "mismatch": mismatch})),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("service   {}", service.id());
        println!(
            "call      {} ({})",
            case.call.name(),
            case.call.capability()
        );
        if let Some(p) = &plugin {
            println!(
                "plugin    {} {} ({:.1} KiB, contract {})",
                p.name(),
                p.digest(),
                p.size() as f64 / 1024.0,
                p.contract()
            );
        }
        let config: Vec<_> = ctx.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "context   now={} config: {}",
            ctx.now,
            if config.is_empty() {
                "(none)".into()
            } else {
                config.join(" ")
            }
        );
        let fuel = observation
            .fuel
            .map(|f| format!(", {f} fuel"))
            .unwrap_or_default();
        if observation.fault {
            println!("time      - (the call faulted)");
        } else {
            println!(
                "time      {} per call (median of warm calls){fuel}",
                duration(observation.time_per_call)
            );
        }
        for line in &observation.logs {
            println!("log       [{}] {}", line.level, line.message);
        }
        println!(
            "outcome   {}",
            serde_json::to_string_pretty(&observation.observed)?.replace('\n', "\n          ")
        );
        match (&case.expect, &mismatch) {
            (None, _) => {}
            (Some(_), None) => println!("expect    matched"),
            (Some(_), Some(m)) => println!("expect    MISMATCH: {m}"),
        }
    }
    // The expectation decides when there is one (`fault = "timeout"` can be
    // the expected outcome); without one, a fault is a failure.
    let failed = match &case.expect {
        Some(_) => mismatch.is_some(),
        None => observation.fault,
    };
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
