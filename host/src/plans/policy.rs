//! Calls into a service's plan-policy plugin: restrictions and resets. A
//! fault of the live version is answered by the last good one when the
//! service's `on_plugin_error` asks for that; otherwise it is an error of
//! the communication (503), and nothing is stored.

use std::sync::atomic::Ordering;

use jiff::Timestamp;

use super::PlansError;
use crate::contract::{
    Call, Capability, Outcome, Plan, Reset, ResetInput, Restriction, RestrictionInput, Usage,
};
use crate::registry::Service;

fn call(service: &Service, now: Timestamp, call: &Call) -> Result<Option<Outcome>, PlansError> {
    let Some(binding) = service.binding(Capability::PlanPolicy) else {
        return Ok(None);
    };
    let ctx = service.context(now);
    // Each call holds a place among the service's (`Service::calls`).
    let fault = match service.calls.run(|| binding.call(&ctx, call)) {
        Ok(report) => match report.outcome {
            Outcome::Error { error } => {
                return Err(PlansError::Plugin(format!(
                    "plugin `{}` declined to decide: {error}",
                    binding.plugin().name()
                )));
            }
            outcome => return Ok(Some(outcome)),
        },
        Err(e) => e,
    };
    let fallback = service.fallback(Capability::PlanPolicy);
    if let Some(fallback) = fallback
        && let Ok(report) = service.calls.run(|| fallback.call(&ctx, call))
        && !matches!(report.outcome, Outcome::Error { .. })
    {
        binding.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            service = service.id(),
            "plan policy answered by the last good version after: {fault}"
        );
        return Ok(Some(report.outcome));
    }
    Err(PlansError::Plugin(fault.to_string()))
}

/// Why the plan may not be used for this communication, if it may not.
pub fn restriction(
    service: &Service,
    now: Timestamp,
    input: RestrictionInput,
) -> Result<Option<Restriction>, PlansError> {
    match call(service, now, &Call::Restriction(input))? {
        None => Ok(None),
        Some(Outcome::Restriction {
            restricted: true,
            reason,
            alternate,
        }) => Ok(Some(Restriction {
            reason: reason.unwrap_or_default(),
            alternate,
        })),
        Some(Outcome::Restriction { .. }) => Ok(None),
        Some(other) => Err(PlansError::Plugin(format!(
            "the plan policy answered a restriction call with {other:?}"
        ))),
    }
}

/// The reset that is due, if one is.
pub fn reset(
    service: &Service,
    now: Timestamp,
    plan: Plan,
    usage: Usage,
) -> Result<Option<Reset>, PlansError> {
    match call(service, now, &Call::Reset(ResetInput { plan, usage }))? {
        None => Ok(None),
        Some(Outcome::Reset {
            reset: true,
            dissociate,
            reset_counters,
            reason,
        }) => Ok(Some(Reset {
            dissociate,
            reset_counters,
            reason,
        })),
        Some(Outcome::Reset { .. }) => Ok(None),
        Some(other) => Err(PlansError::Plugin(format!(
            "the plan policy answered a reset call with {other:?}"
        ))),
    }
}
