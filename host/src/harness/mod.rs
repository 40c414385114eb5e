//! The sandbox harness: runs a service's cases against its plugins without a
//! server, for `rulehost test`, `rulehost eval`, and the hot-reload gate that
//! must pass before a candidate plugin goes live.

mod case;
mod expect;
#[cfg(test)]
mod props;
pub mod replay;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use case::{Case, DEFAULT_NOW, Format, case_files};
pub use expect::{mismatch, project, summarize};

use crate::contract::Context;
use crate::registry::Service;
use crate::runtime::{CallError, CallReport, Digest, LogLine};

/// What running a case observed.
#[derive(Debug)]
pub struct Observation {
    pub plugin: String,
    pub digest: Digest,
    /// The outcome's JSON, or `{"fault": code, "message": ...}` when the
    /// plugin faulted.
    pub observed: Value,
    /// Median time inside the plugin over the timing runs.
    pub time_per_call: Duration,
    pub fuel: Option<u64>,
    pub logs: Vec<LogLine>,
    /// Whether the call faulted.
    pub fault: bool,
}

/// A case's verdict.
#[derive(Debug)]
pub struct CaseResult {
    pub observation: Result<Observation, String>,
    /// `None` when it passed.
    pub mismatch: Option<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.observation.is_ok() && self.mismatch.is_none()
    }
}

/// How long a case is timed for after its first run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub max_runs: u32,
    pub budget: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            max_runs: 200,
            budget: Duration::from_millis(20),
        }
    }
}

/// The context a case runs in: the service's config with the case's put over it.
pub fn context(service: &Service, case: &Case) -> Context {
    Context {
        service: service.id().to_owned(),
        config: service.manifest.config.overlaid(&case.config),
        now: case.now,
    }
}

/// Runs one case once for its outcome, then times it on the warm path.
pub fn observe(service: &Service, case: &Case, timing: Timing) -> Result<Observation, String> {
    let capability = case.call.capability();
    let binding = service.binding(capability).ok_or_else(|| {
        format!(
            "service `{}` has no `{}` plugin, which a case calling `{}` needs",
            service.id(),
            capability.manifest_key(),
            case.call.name()
        )
    })?;
    let ctx = context(service, case);
    let plugin = binding.plugin();
    let first = binding.call(&ctx, &case.call);
    let (observed, fuel, logs, fault) = match &first {
        Ok(report) => (
            outcome_json(report),
            report.fuel,
            report.logs.clone(),
            false,
        ),
        Err(e) => (fault_json(e), None, e.logs.clone(), true),
    };
    let mut times = Vec::new();
    if let Ok(report) = first {
        times.push(report.elapsed);
        let started = Instant::now();
        while times.len() < timing.max_runs as usize && started.elapsed() < timing.budget {
            match binding.call(&ctx, &case.call) {
                Ok(report) => times.push(report.elapsed),
                Err(_) => break,
            }
        }
    }
    times.sort();
    Ok(Observation {
        plugin: plugin.name().to_owned(),
        digest: plugin.digest(),
        observed,
        time_per_call: times.get(times.len() / 2).copied().unwrap_or_default(),
        fuel,
        logs,
        fault,
    })
}

/// Runs a case and judges it against its expectation.
pub fn run(service: &Service, case: &Case, timing: Timing) -> CaseResult {
    let observation = observe(service, case, timing);
    let mismatch = match (&observation, &case.expect) {
        (Err(_), _) => None,
        (Ok(_), None) => Some("the case has no `[expect]` table".to_owned()),
        (Ok(o), Some(expect)) => {
            expect::mismatch(expect, &o.observed).map(|m| match &o.observed["message"] {
                // When the plugin faulted unexpectedly, its error is the news.
                Value::String(message) if o.fault && expect.get("fault").is_none() => {
                    format!("{m}\n{message}")
                }
                _ => m,
            })
        }
    };
    CaseResult {
        observation,
        mismatch,
    }
}

fn outcome_json(report: &CallReport) -> Value {
    serde_json::to_value(&report.outcome).unwrap_or(Value::Null)
}

fn fault_json(e: &CallError) -> Value {
    json!({"fault": e.kind.code(), "message": e.to_string()})
}
