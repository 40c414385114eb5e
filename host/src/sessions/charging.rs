//! Calls into a service's session-charging plugin. Its charges are checked
//! before anything is stored: each is zero or more, goes to a participant
//! present before the event or joining with it, on that participant's
//! account, for a period that does not end before it starts. A fault of
//! the live version (a trap, a limit, an answer that fails those checks) is
//! answered by the last good version when the service's `on_plugin_error`
//! asks for that; otherwise, and when the plugin declines (its own `Err`),
//! it is an error of the event (503), and nothing is stored.

use std::sync::atomic::Ordering;

use jiff::Timestamp;

use super::SessionsError;
use crate::contract::{Call, Capability, Charge, OnEventInput, Outcome, SessionEvent};
use crate::registry::Service;
use crate::runtime::Binding;

/// What the plugin charged, and which version answered.
pub(super) struct Charges {
    pub charges: Vec<Charge>,
    pub plugin: String,
    pub digest: String,
}

/// The charges for one event, from the live version or the last good one.
pub(super) fn on_event(service: &Service, input: OnEventInput) -> Result<Charges, SessionsError> {
    let binding = service
        .binding(Capability::SessionCharging)
        .ok_or_else(|| SessionsError::NoSessionCharging(service.id().to_owned()))?;
    let ctx = service.context(Timestamp::now());
    let call = Call::OnEvent(input);
    let fault = match answer(service, binding, &ctx, &call)? {
        Ok(charges) => return Ok(charges),
        Err(fault) => fault,
    };
    let fallback = service.fallback(Capability::SessionCharging);
    if let Some(fallback) = fallback
        && let Ok(Ok(charges)) = answer(service, fallback, &ctx, &call)
    {
        binding.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            service = service.id(),
            "session charges answered by the last good version after: {fault}"
        );
        return Ok(charges);
    }
    Err(SessionsError::Plugin(fault))
}

/// One version's answer: its charges, checked; `Ok(Err(fault))` when it
/// faulted or answered what cannot be charged; `Err` when it declined.
fn answer(
    service: &Service,
    binding: &Binding,
    ctx: &crate::contract::Context,
    call: &Call,
) -> Result<Result<Charges, String>, SessionsError> {
    let plugin = binding.plugin();
    // Each call holds a place among the service's (`Service::calls`).
    let report = match service.calls.run(|| binding.call(ctx, call)) {
        Ok(report) => report,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let Call::OnEvent(input) = call else {
        return Ok(Err("internal: not a session event".into()));
    };
    match report.outcome {
        Outcome::Charges { charges } => Ok(match check(&charges, input) {
            Ok(()) => Ok(Charges {
                charges,
                plugin: plugin.name().to_owned(),
                digest: plugin.digest().to_string(),
            }),
            Err(why) => Err(format!("plugin `{}` {why}", plugin.name())),
        }),
        Outcome::Error { error } => Err(SessionsError::Plugin(format!(
            "plugin `{}` declined to charge: {error}",
            plugin.name()
        ))),
        other => Ok(Err(format!(
            "plugin `{}` answered a session event with {other:?}",
            plugin.name()
        ))),
    }
}

/// What the host refuses to charge (the 0.3 bindings check the same of
/// their plugins; older contracts' are checked here).
pub(super) fn check(charges: &[Charge], input: &OnEventInput) -> Result<(), String> {
    let joiner = match &input.event.event {
        SessionEvent::Join(p) => Some(p),
        _ => None,
    };
    for c in charges {
        if c.amount < 0 {
            return Err(format!(
                "charged participant `{}` {}: a charge is zero or more minor units",
                c.participant, c.amount
            ));
        }
        let Some(p) = input
            .session
            .participants
            .iter()
            .chain(joiner)
            .find(|p| p.id == c.participant)
        else {
            return Err(format!(
                "charged participant `{}`, who is neither present nor joining",
                c.participant
            ));
        };
        if p.account_id != c.account_id {
            return Err(format!(
                "charged participant `{}` on account `{}`, not theirs (`{}`)",
                c.participant, c.account_id, p.account_id
            ));
        }
        if c.period_end < c.period_start {
            return Err(format!(
                "charged participant `{}` for a period that ends before it starts",
                c.participant
            ));
        }
    }
    Ok(())
}
