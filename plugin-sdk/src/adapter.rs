//! Bridges the author's traits to the generated `Guest` traits.
//!
//! `Adapter<T>` implements each generated trait when `T` implements the
//! matching SDK trait; the `export!` macro names it once per capability.
//! `Setup` keeps the context `setup.configure` gives the instance, and each
//! call lends it to the rule with the call's `now`.

use core::cell::RefCell;
use core::marker::PhantomData;

use crate::__private::{
    plan_policy_world::exports::rulehost::plugin::plan_policy,
    reconciler_world::exports::rulehost::plugin::reconciler,
    session_charging_world::exports::rulehost::plugin::session_charging,
    setup_world::exports::rulehost::plugin::setup,
    verifier_world::exports::rulehost::plugin::verifier,
};
use crate::types::*;
use crate::{Error, PlanPolicy, Reconciler, SessionCharging, Verifier};

std::thread_local! {
    /// The service and config this instance serves, from `configure`.
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs a rule with the configured context at `now`.
fn with_context<R>(
    now: Timestamp,
    rule: impl FnOnce(&Context) -> Result<R, Error>,
) -> Result<R, String> {
    CONTEXT.with_borrow_mut(|ctx| match ctx {
        Some(ctx) => {
            ctx.now = now;
            rule(ctx).map_err(String::from)
        }
        None => Err(
            "called before `setup.configure`: a host serving contract 0.2 or \
                     later configures each instance before its first call"
                .into(),
        ),
    })
}

#[doc(hidden)]
pub struct Setup;

impl setup::Guest for Setup {
    fn configure(ctx: Context) -> Result<(), String> {
        CONTEXT.set(Some(ctx));
        Ok(())
    }
}

#[doc(hidden)]
pub struct Adapter<T>(PhantomData<T>);

impl<T: Verifier> verifier::Guest for Adapter<T> {
    fn verify(
        now: Timestamp,
        request: ServiceRequest,
        account: Option<Account>,
    ) -> Result<Verdict, String> {
        with_context(now, |ctx| T::verify(ctx, &request, account.as_ref()))
    }
}

impl<T: Reconciler> reconciler::Guest for Adapter<T> {
    fn procedure_for(
        now: Timestamp,
        request: ServiceRequest,
        failure: Failure,
        account: Option<Account>,
    ) -> Result<Procedure, String> {
        with_context(now, |ctx| {
            T::procedure(ctx, &request, &failure, account.as_ref())
        })
    }
}

impl<T: PlanPolicy> plan_policy::Guest for Adapter<T> {
    fn restriction(
        now: Timestamp,
        plan: Plan,
        account: PlanAccount,
        usage: Usage,
        communication: Communication,
    ) -> Result<Option<Restriction>, String> {
        with_context(now, |ctx| {
            T::restriction(ctx, &plan, &account, &usage, &communication)
        })
    }

    fn reset(now: Timestamp, plan: Plan, usage: Usage) -> Result<Option<Reset>, String> {
        with_context(now, |ctx| T::reset(ctx, &plan, &usage))
    }
}

impl<T: SessionCharging> session_charging::Guest for Adapter<T> {
    fn on_event(
        now: Timestamp,
        session: Session,
        event: SessionEventAt,
    ) -> Result<Vec<Charge>, String> {
        with_context(now, |ctx| T::on_event(ctx, &session, &event))
    }
}
