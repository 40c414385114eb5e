//! Bridges the author's traits to the generated `Guest` traits.
//!
//! `Adapter<T>` implements each generated trait when `T` implements the
//! matching SDK trait; the `export!` macro names it once per capability.

use core::marker::PhantomData;

use crate::__private::{
    plan_policy_world::exports::rulehost::plugin::plan_policy,
    reconciler_world::exports::rulehost::plugin::reconciler,
    session_charging_world::exports::rulehost::plugin::session_charging,
    verifier_world::exports::rulehost::plugin::verifier,
};
use crate::types::*;
use crate::{PlanPolicy, Reconciler, SessionCharging, Verifier};

#[doc(hidden)]
pub struct Adapter<T>(PhantomData<T>);

impl<T: Verifier> verifier::Guest for Adapter<T> {
    fn verify(
        ctx: Context,
        request: ServiceRequest,
        account: Option<Account>,
    ) -> Result<Verdict, String> {
        T::verify(&ctx, &request, account.as_ref()).map_err(String::from)
    }
}

impl<T: Reconciler> reconciler::Guest for Adapter<T> {
    fn procedure_for(
        ctx: Context,
        request: ServiceRequest,
        failure: Failure,
        account: Option<Account>,
    ) -> Result<Procedure, String> {
        T::procedure(&ctx, &request, &failure, account.as_ref()).map_err(String::from)
    }
}

impl<T: PlanPolicy> plan_policy::Guest for Adapter<T> {
    fn restriction(
        ctx: Context,
        plan: Plan,
        usage: Usage,
        communication: Communication,
    ) -> Result<Option<String>, String> {
        T::restriction(&ctx, &plan, &usage, &communication).map_err(String::from)
    }

    fn reset_due(
        ctx: Context,
        plan: Plan,
        association: Association,
        usage: Usage,
    ) -> Result<bool, String> {
        T::reset_due(&ctx, &plan, &association, &usage).map_err(String::from)
    }
}

impl<T: SessionCharging> session_charging::Guest for Adapter<T> {
    fn on_event(
        ctx: Context,
        session: Session,
        event: SessionEventAt,
    ) -> Result<Vec<Charge>, String> {
        T::on_event(&ctx, &session, &event).map_err(String::from)
    }
}
