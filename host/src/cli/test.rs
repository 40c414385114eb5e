//! `rulehost test`: the sandbox harness over every case.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::format::{duration, fit, table};
use super::{PluginArgs, Target, load};
use crate::harness::{self, Case, Timing};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Rules folders, service manifests (`rules/<service>.toml`) or case files
    /// (`rules/<service>/cases/<case>.toml`).
    #[arg(value_name = "PATH", default_value = "rules")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    plugins: PluginArgs,
    /// Count fuel per call too: a deterministic cost figure (calls run slower).
    #[arg(long)]
    fuel: bool,
}

const WIDTH: usize = 44;

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.plugins.runtime(args.fuel)?;
    let mut header = vec!["SERVICE", "CASE", "EXPECTED", "GOT", "TIME"];
    if args.fuel {
        header.push("FUEL");
    }
    header.push("RESULT");
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    let mut details = Vec::new();
    let (mut passed, mut failed) = (0usize, 0usize);

    for path in &args.paths {
        let target = Target::of(path)?;
        let loaded = load(&runtime, target.rules(), &args.plugins);
        if let Some(d) = target.missing(path, &loaded) {
            eprintln!("{d}");
            failed += 1;
        }
        for d in &loaded.diagnostics {
            let stem = d
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if target.includes(&stem) || d.file == target.rules() {
                eprintln!("{d}");
                failed += usize::from(d.is_error());
            }
        }
        for service in loaded
            .registry
            .services
            .values()
            .filter(|s| target.includes(s.id()))
        {
            let files = match &target {
                Target::Case { case, .. } => vec![case.clone()],
                _ => harness::case_files(target.rules(), service.id()),
            };
            if files.is_empty() {
                eprintln!(
                    "warning: service `{}` has no cases in {}",
                    service.id(),
                    target.rules().join(service.id()).join("cases").display()
                );
            }
            for file in files {
                let case = match Case::read(&file) {
                    Ok(case) => case,
                    Err(d) => {
                        failed += 1;
                        let name = file
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let mut row = vec![service.id().into(), name];
                        // EXPECTED, GOT, TIME and FUEL when counted.
                        row.resize(if args.fuel { 6 } else { 5 }, "-".into());
                        row.push("INVALID".into());
                        rows.push(row);
                        details.push(d.to_string());
                        continue;
                    }
                };
                let result = harness::run(service, &case, Timing::default());
                let expected = case
                    .expect
                    .as_ref()
                    .map(harness::summarize)
                    .unwrap_or_else(|| "-".into());
                let (got, time, fuel) = match &result.observation {
                    // A fault has no time, and shows as itself unless the
                    // case expects one (`verdict=null` would mislead).
                    Ok(o) if o.fault => (
                        match &case.expect {
                            Some(e) if e.get("fault").is_some() => harness::project(e, &o.observed),
                            _ => format!("fault={}", o.observed["fault"].as_str().unwrap_or("?")),
                        },
                        "-".into(),
                        "-".into(),
                    ),
                    Ok(o) => (
                        case.expect.as_ref().map_or_else(
                            || o.observed.to_string(),
                            |e| harness::project(e, &o.observed),
                        ),
                        duration(o.time_per_call),
                        o.fuel.map_or_else(|| "-".into(), |f| f.to_string()),
                    ),
                    Err(_) => ("-".into(), "-".into(), "-".into()),
                };
                let mut row = vec![
                    service.id().into(),
                    case.name.clone(),
                    fit(&expected, WIDTH),
                    fit(&got, WIDTH),
                    time,
                ];
                if args.fuel {
                    row.push(fuel);
                }
                if result.passed() {
                    passed += 1;
                    row.push("ok".into());
                } else {
                    failed += 1;
                    row.push("FAIL".into());
                    let why = match (&result.observation, &result.mismatch) {
                        (Err(e), _) => e.clone(),
                        (Ok(_), Some(m)) => m.clone(),
                        (Ok(_), None) => String::new(),
                    };
                    let mut detail = format!(
                        "FAIL {}/{} ({})\n  {}",
                        service.id(),
                        case.name,
                        file.display(),
                        why.replace('\n', "\n  ")
                    );
                    if let Ok(o) = &result.observation {
                        for line in &o.logs {
                            detail.push_str(&format!("\n  log [{}] {}", line.level, line.message));
                        }
                    }
                    details.push(detail);
                }
                rows.push(row);
            }
        }
    }

    print!("{}", table(&rows));
    for detail in &details {
        println!("\n{detail}");
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
