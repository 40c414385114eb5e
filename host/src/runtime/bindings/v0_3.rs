//! Bindings for `rulehost:plugin@0.3.0` (`plugin-sdk/wit`, the newest): as in
//! 0.2, the service and its config reach an instance once, through
//! `setup.configure`, and each call carries only the time. Entitlement is
//! 0.2's; plans and sessions have their own types (a plan policy sees the
//! account, the communication's attributes and every association, names an
//! alternate plan, and says what a reset drops; sessions carry attributes,
//! an end event and charge periods), so 0.3 has its own conversions
//! (`v0_3/convert.rs`) and its own body of `invoke`, which checks what the
//! plugin answers against what it was asked.

mod convert;

use super::InvokeError;
use super::convert::configured_exports;
use crate::contract::{self as c, Call, Outcome, Properties};

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    // Arguments borrow the host's values, as in 0.1 and 0.2.
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::rulehost::plugin::host::{Host, LogLevel};
pub use exports::rulehost::plugin::{plan_policy, reconciler, session_charging, setup, verifier};

configured_exports!("0.3");

/// Makes one call on a live instance, configuring it first when it serves
/// another service or config (or none yet). A configuration the plugin
/// refuses is the call's answer, like any `err` it returns.
pub fn invoke<S: wasmtime::AsContextMut>(
    guests: &mut Guests,
    mut store: S,
    ctx: &c::Context,
    call: &Call,
) -> Result<Outcome, InvokeError> {
    if let Some(refused) = guests.configure(&mut store, ctx)? {
        return Ok(refused);
    }
    let g = &guests.capabilities;
    let now = convert::seconds(ctx.now);
    let unsupported = || InvokeError::Unsupported(call.capability());
    let answer = match call {
        Call::Verify(c::VerifyInput { request, account }) => {
            let v = g.verifier.as_ref().ok_or_else(unsupported)?;
            let request_props = convert::props(&request.attributes);
            let account_props = account.as_ref().map(|a| convert::props(&a.attributes));
            v.call_verify(
                &mut store,
                now,
                convert::service_request(request, &request_props),
                convert::account(account.as_ref(), account_props.as_deref()),
            )?
            .map(|v| convert::verdict(v).map(Outcome::Verdict))
        }
        Call::Procedure(c::ProcedureInput {
            request,
            failure,
            account,
        }) => {
            let r = g.reconciler.as_ref().ok_or_else(unsupported)?;
            let request_props = convert::props(&request.attributes);
            let account_props = account.as_ref().map(|a| convert::props(&a.attributes));
            r.call_procedure_for(
                &mut store,
                now,
                convert::service_request(request, &request_props),
                convert::failure(failure),
                convert::account(account.as_ref(), account_props.as_deref()),
            )?
            .map(|p| Ok(Outcome::Procedure(convert::procedure(p))))
        }
        Call::Restriction(c::RestrictionInput {
            plan,
            account,
            usage,
            communication,
        }) => {
            let p = g.plan_policy.as_ref().ok_or_else(unsupported)?;
            let plan_props = convert::props(&plan.config);
            let recent = convert::recent_uses(usage);
            let associations = convert::associations(usage);
            let access_groups = convert::strs(&communication.access_groups);
            let comm_props = convert::props(&communication.attributes);
            p.call_restriction(
                &mut store,
                now,
                convert::plan(plan, &plan_props),
                convert::plan_account(account),
                convert::usage(usage, &recent, &associations),
                convert::communication(communication, &access_groups, &comm_props),
            )?
            .map(convert::restriction)
        }
        Call::Reset(c::ResetInput { plan, usage }) => {
            let p = g.plan_policy.as_ref().ok_or_else(unsupported)?;
            let plan_props = convert::props(&plan.config);
            let recent = convert::recent_uses(usage);
            let associations = convert::associations(usage);
            p.call_reset(
                &mut store,
                now,
                convert::plan(plan, &plan_props),
                convert::usage(usage, &recent, &associations),
            )?
            .map(|reset| convert::reset(reset, usage))
        }
        Call::OnEvent(c::OnEventInput { session, event }) => {
            let s = g.session_charging.as_ref().ok_or_else(unsupported)?;
            let session_props = convert::props(&session.attributes);
            let participant_props: Vec<_> = session
                .participants
                .iter()
                .map(|p| convert::props(&p.attributes))
                .collect();
            let participants: Vec<_> = session
                .participants
                .iter()
                .zip(&participant_props)
                .map(|(p, props)| convert::participant(p, props))
                .collect();
            let joiner_props = match &event.event {
                c::SessionEvent::Join(p) => convert::props(&p.attributes),
                _ => Vec::new(),
            };
            s.call_on_event(
                &mut store,
                now,
                convert::session(session, &session_props, &participants),
                convert::session_event(event, &joiner_props),
            )?
            .map(|charges| convert::charges(charges, session, event))
        }
    };
    match answer {
        Ok(outcome) => outcome.map_err(InvokeError::Malformed),
        // An `err` from the plugin is its answer, not a fault.
        Err(error) => Ok(Outcome::Error { error }),
    }
}
