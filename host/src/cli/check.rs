//! `rulehost check`: validate rules without serving or running cases.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{PluginArgs, Target, load};
use crate::harness::{self, Case};
use crate::registry::Diagnostic;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A rules folder or one service manifest.
    #[arg(value_name = "PATH", default_value = "rules")]
    path: PathBuf,
    #[command(flatten)]
    plugins: PluginArgs,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.plugins.runtime(false)?;
    let target = Target::of(&args.path)?;
    let loaded = load(&runtime, target.rules(), &args.plugins);
    let mut diagnostics: Vec<Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| {
            let stem = d
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            target.includes(&stem) || d.file == target.rules()
        })
        .cloned()
        .collect();
    // Flows and roles belong to the whole folder, not one service.
    if matches!(target, Target::Rules(_)) {
        let (_, flow_problems) = crate::flow::load_definitions(target.rules());
        diagnostics.extend(flow_problems);
        if let Err(d) = crate::flow::Roles::load(target.rules()) {
            diagnostics.push(d);
        }
    }
    diagnostics.extend(target.missing(&args.path, &loaded));
    let mut cases = 0;
    let services: Vec<_> = loaded
        .registry
        .services
        .values()
        .filter(|s| target.includes(s.id()))
        .collect();
    for service in &services {
        for file in harness::case_files(target.rules(), service.id()) {
            cases += 1;
            match Case::read(&file) {
                Err(d) => diagnostics.push(d),
                Ok(case) if service.binding(case.call.capability()).is_none() => {
                    diagnostics.push(Diagnostic::error(
                        &file,
                        None,
                        format!(
                            "a case calling `{}` needs a `{}` plugin, and the manifest names none",
                            case.call.name(),
                            case.call.capability().manifest_key()
                        ),
                    ));
                }
                Ok(case) if case.expect.is_none() => {
                    diagnostics.push(Diagnostic::error(
                        &file,
                        None,
                        "the case has no `[expect]` table",
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    for d in &diagnostics {
        eprintln!("{d}");
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if errors == 0 {
        let plans = match loaded.registry.plans.plans.len() {
            0 => String::new(),
            n => format!("{}, ", count(n, "plan")),
        };
        println!(
            "ok: {}, {plans}{}, {}",
            count(services.len(), "service"),
            count(cases, "case"),
            count(warnings, "warning")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}, {}", count(errors, "error"), count(warnings, "warning"));
        Ok(ExitCode::from(1))
    }
}

/// `1 error`, `2 errors`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
