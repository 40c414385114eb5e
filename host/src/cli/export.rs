//! `rulehost export decisions`: the decision log as JSON Lines on standard
//! output, oldest first, so it can be shipped elsewhere before the host
//! prunes it (`[retention] decisions_days`).
//!
//! Read-only, and streamed: the log is read a page at a time by id, never
//! whole, on a reader of the database, so it can run beside `serve`.
//!
//! Exit status: 0 written; 2 could not run (a bad time, no or an
//! unreadable database, standard output closed).

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::store::entitlement::{DecisionFilter, DecisionRow, Order, page_decisions};
use crate::store::{Store, rfc3339};

/// Decisions read from the database at a time.
const PAGE: u32 = 500;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: ExportCommand,
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// The decision log as JSON Lines (one decision a line, every column),
    /// oldest first.
    Decisions(DecisionsArgs),
}

#[derive(Debug, Args)]
struct DecisionsArgs {
    /// Decisions made at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Timestamp,
    /// Decisions made before this time (RFC 3339) [default: all since --since].
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Only this service's decisions.
    #[arg(long)]
    service: Option<String>,
    /// The host's database (its decision log).
    #[arg(long, value_name = "PATH", default_value = "rulehost.db")]
    db: PathBuf,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        ExportCommand::Decisions(args) => decisions(args),
    }
}

/// A time as given on the command line.
fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse().map_err(|e| {
        format!("not an RFC 3339 time with an offset, such as 2026-01-01T00:00:00Z ({e})")
    })
}

/// `t` in stored milliseconds, rounded up: a decision at a whole
/// millisecond `m` is at or after `t` exactly when `m` is at or after this.
fn ceil_ms(t: Timestamp) -> anyhow::Result<i64> {
    let ns = t.as_nanosecond();
    let ms = ns.div_euclid(1_000_000) + i128::from(ns.rem_euclid(1_000_000) != 0);
    Ok(i64::try_from(ms)?)
}

fn decisions(args: DecisionsArgs) -> anyhow::Result<ExitCode> {
    if let Some(until) = args.until
        && until <= args.since
    {
        bail!(
            "--until {until} is not later than --since {}: give a time after it, or leave --until out",
            args.since
        );
    }
    if !args.db.is_file() {
        bail!(
            "no database at `{}`: give the host's with --db",
            args.db.display()
        );
    }
    let store = Store::open_read_only(&args.db)?;
    let filter = DecisionFilter {
        service: args.service.as_deref(),
        since: Some(ceil_ms(args.since)?),
        until: args.until.map(ceil_ms).transpose()?,
        ..DecisionFilter::default()
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let (mut written, mut after) = (0u64, None);
    loop {
        let page = store
            .read(|c| page_decisions(c, &filter, Order::Asc, after, PAGE))
            .with_context(|| format!("cannot read the decision log in `{}`", args.db.display()))?;
        for decision in &page {
            serde_json::to_writer(&mut out, &Line::from(decision))
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .with_context(|| stdout_closed(written))?;
            written += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.id),
            _ => break,
        }
    }
    out.flush().with_context(|| stdout_closed(written))?;
    eprintln!("exported {written} decisions");
    Ok(ExitCode::SUCCESS)
}

fn stdout_closed(written: u64) -> String {
    format!("cannot write to standard output after {written} decisions")
}

/// One line of the export: every column of the decision log, in its order;
/// `at` as RFC 3339, `inputs` as the JSON object it is.
#[derive(Serialize)]
struct Line<'a> {
    id: i64,
    at: String,
    service: &'a str,
    account_id: &'a str,
    request_id: &'a str,
    inputs_digest: &'a str,
    inputs: &'a Value,
    verdict: &'a str,
    level: Option<&'a str>,
    failure_code: Option<&'a str>,
    reason: Option<&'a str>,
    plugin: &'a str,
    plugin_digest: &'a str,
    duration_us: i64,
}

impl<'a> From<&'a DecisionRow> for Line<'a> {
    fn from(d: &'a DecisionRow) -> Self {
        Line {
            id: d.id,
            at: rfc3339(d.at),
            service: &d.service,
            account_id: &d.account_id,
            request_id: &d.request_id,
            inputs_digest: &d.inputs_digest,
            inputs: &d.inputs,
            verdict: &d.verdict,
            level: d.level.as_deref(),
            failure_code: d.failure_code.as_deref(),
            reason: d.reason.as_deref(),
            plugin: &d.plugin,
            plugin_digest: &d.plugin_digest,
            duration_us: d.duration_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_and_round_up_to_the_millisecond() {
        let t = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(ceil_ms(t).unwrap(), 1_767_225_600_000);
        let t = parse_time("2026-01-01T01:00:00.0005+01:00").unwrap();
        assert_eq!(ceil_ms(t).unwrap(), 1_767_225_600_001);
        let t = parse_time("1969-12-31T23:59:59.9995Z").unwrap();
        assert_eq!(ceil_ms(t).unwrap(), 0);
        for bad in ["yesterday", "2026-01-01", "2026-01-01T00:00:00"] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("not an RFC 3339 time"), "{bad}: {err}");
        }
    }
}
