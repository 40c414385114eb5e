//! The `rulehost` command line: parsing, and one module per subcommand.
//! Subcommands return an exit code; errors that stop a command reach
//! `main` as `anyhow` errors and exit with status 2.

mod check;
mod client;
mod config;
#[cfg(test)]
mod config_props;
mod eval;
mod export;
mod format;
mod plugins;
mod provisioning;
mod replay;
mod serve;
mod test;
mod tokens;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::registry::{self, Diagnostic, Loaded, Sources};
use crate::runtime::{Runtime, RuntimeOptions};

#[derive(Debug, Parser)]
#[command(
    name = "rulehost",
    version,
    about = "Host for business rules written as WebAssembly plugins"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service's sandbox cases and print a table of results.
    Test(test::TestArgs),
    /// Run one evaluation and explain it: plugin, digest, time, logs, outcome.
    Eval(eval::EvalArgs),
    /// Validate manifests, plugins and cases without running anything.
    Check(check::CheckArgs),
    /// Serve the internal API: flows, tasks, the outbox, metrics.
    Serve(serve::ServeArgs),
    /// The plugins of a running host: list, history, rollback.
    Plugins(plugins::PluginsArgs),
    /// Re-run a service's recorded decisions on a candidate plugin; exit 1 if any differ.
    Replay(replay::ReplayArgs),
    /// Write stored records out for shipping elsewhere: `export decisions` as JSON Lines.
    Export(export::ExportArgs),
    /// The internal API's tokens: `tokens create --role R`, `list`, `revoke`.
    Tokens(tokens::TokensArgs),
    /// Provisioning on a running host: `provisioning demo` makes the walk-through's people.
    Provisioning(provisioning::ProvisioningArgs),
}

/// Where plugins come from and how they are compiled.
#[derive(Debug, Args, Clone)]
pub struct PluginArgs {
    /// Folder holding the plugin components: plugin `<name>` is `<DIR>/<name>.wasm`.
    #[arg(long, value_name = "DIR", default_value = "plugins/dist")]
    pub plugins: PathBuf,
    /// Folder for compiled plugins, so a restart does not recompile
    /// [default: $XDG_CACHE_HOME/rulehost or ~/.cache/rulehost].
    #[arg(long, value_name = "DIR", env = "RULEHOST_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every plugin afresh and cache nothing.
    #[arg(long)]
    pub no_cache: bool,
}

impl PluginArgs {
    fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("rulehost"))
        })
    }

    fn runtime(&self, fuel: bool) -> anyhow::Result<Runtime> {
        Ok(Runtime::new(RuntimeOptions {
            cache_dir: self.cache_dir(),
            fuel,
            ..RuntimeOptions::default()
        })?)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Test(args) => test::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Plugins(args) => plugins::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Export(args) => export::run(args),
        Command::Tokens(args) => tokens::run(args),
        Command::Provisioning(args) => provisioning::run(args),
    }
}

/// What a path argument names: a rules folder, one manifest, or one case.
enum Target {
    Rules(PathBuf),
    Service {
        rules: PathBuf,
        service: String,
    },
    Case {
        rules: PathBuf,
        service: String,
        case: PathBuf,
    },
}

impl Target {
    /// What `path` names; a path that does not exist stops the command (a
    /// typo must not read as "0 passed").
    fn of(path: &Path) -> anyhow::Result<Target> {
        if !path.exists() {
            bail!(
                "`{}` does not exist: give a rules folder, a manifest `<rules>/<service>.toml` or a case file `<rules>/<service>/cases/<case>.toml`",
                path.display()
            );
        }
        Ok(Target::of_existing(path))
    }

    fn of_existing(path: &Path) -> Target {
        if path.is_file() {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = path.parent().unwrap_or(Path::new("."));
            // rules/<service>/cases/<case>.toml
            if parent.file_name().is_some_and(|n| n == "cases")
                && let Some(service_dir) = parent.parent()
            {
                let service = service_dir
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let rules = service_dir.parent().unwrap_or(Path::new(".")).to_owned();
                return Target::Case {
                    rules,
                    service,
                    case: path.to_owned(),
                };
            }
            let rules = if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_owned()
            };
            return Target::Service {
                rules,
                service: stem,
            };
        }
        Target::Rules(path.to_owned())
    }

    fn rules(&self) -> &Path {
        match self {
            Target::Rules(r) | Target::Service { rules: r, .. } | Target::Case { rules: r, .. } => {
                r
            }
        }
    }

    fn includes(&self, service: &str) -> bool {
        match self {
            Target::Rules(_) => true,
            Target::Service { service: s, .. } | Target::Case { service: s, .. } => s == service,
        }
    }

    /// An error when `path`, taken as this target, names one service that
    /// `loaded` neither registered nor reported a problem with: otherwise
    /// nothing would run, silently.
    fn missing(&self, path: &Path, loaded: &Loaded) -> Option<Diagnostic> {
        let service = match self {
            Target::Rules(_) => return None,
            Target::Service { service, .. } | Target::Case { service, .. } => service,
        };
        let known = loaded.registry.service(service).is_some()
            || loaded
                .diagnostics
                .iter()
                .any(|d| d.file.file_stem().is_some_and(|s| s == service.as_str()));
        if known {
            return None;
        }
        let message = match self {
            Target::Case { .. } => format!(
                "no service `{service}` for this case: there is no manifest `{}`",
                self.rules().join(format!("{service}.toml")).display()
            ),
            _ => "not a service manifest (`<rules>/<service>.toml`) or a case file (`<rules>/<service>/cases/<case>.toml`)".to_owned(),
        };
        Some(Diagnostic::error(path, None, message))
    }
}

fn load(runtime: &Runtime, rules: &Path, plugins: &PluginArgs) -> Loaded {
    registry::load(
        runtime,
        &Sources {
            rules_dir: rules.to_owned(),
            plugins_dir: plugins.plugins.clone(),
        },
    )
}
