//! The `rulehost` command: parses arguments, sets up logging, and maps
//! outcomes to exit codes (0 ok, 1 failures found, 2 could not run).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use rulehost::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RULEHOST_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli::run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
