//! Write rulehost rule plugins as plain Rust.
//!
//! A plugin is a type that implements one trait per capability it offers
//! ([`Verifier`], [`Reconciler`], [`PlanPolicy`], [`SessionCharging`]) and one
//! call to [`export!`]. Build it with `cargo build --target wasm32-wasip2
//! --release` and the `.wasm` file is a component the host loads. The same
//! crate builds natively, so the rule's logic is tested with `cargo test`.
//!
//! Plugins are pure functions of their inputs: the host passes in every piece
//! of state a rule reads and stores whatever it returns. A warm instance may
//! serve many calls, but nothing a plugin keeps in memory between calls is
//! guaranteed to be there on the next one. The host may also stop a call
//! and make it again from the start (one that runs long where other work
//! waits on it), so a rule must not count on seeing each request once.
//!
//! The SDK builds for contract 0.3: the host gives each instance its
//! service and config once (`setup.configure`, which `export!` exports for
//! you), and every call only its time. The SDK keeps the configured context
//! and passes each trait method a [`types::Context`] with the call's `now`.
//! 0.3 gave plans and sessions what their rules need: a plan policy sees
//! the account's balance, the communication's attributes and the plan's
//! associations, may name an alternate plan ([`types::Restriction`]) and
//! says what a reset drops ([`types::Reset`]); sessions and participants
//! carry attributes, a session's end is an event, and a charge names its
//! period.
//!
//! # Example
//!
//! ```
//! use rulehost_sdk::types::*;
//! use rulehost_sdk::{Error, Reconciler, Verifier};
//!
//! pub struct SupportContract;
//!
//! impl Verifier for SupportContract {
//!     fn verify(
//!         ctx: &Context,
//!         _request: &ServiceRequest,
//!         account: Option<&Account>,
//!     ) -> Result<Verdict, Error> {
//!         let Some(account) = account else {
//!             return Ok(Verdict::fail(FailureCode::NoAccount, "no such account"));
//!         };
//!         let expired = account.contract_end.is_some_and(|end| end <= ctx.now);
//!         Ok(match (account.status, account.paid_up) {
//!             (AccountStatus::Active, true) if !expired => Verdict::pass("standard"),
//!             (_, false) => Verdict::fail(FailureCode::Unpaid, "the contract is not paid up"),
//!             _ => Verdict::fail(FailureCode::Expired, "the support contract has expired"),
//!         })
//!     }
//! }
//!
//! impl Reconciler for SupportContract {
//!     fn procedure(
//!         ctx: &Context,
//!         _request: &ServiceRequest,
//!         _failure: &Failure,
//!         account: Option<&Account>,
//!     ) -> Result<Procedure, Error> {
//!         let days: u64 = ctx.config_or("lapse_days", 10)?;
//!         Ok(match account.and_then(|a| a.contact.clone()) {
//!             Some(contact) => Procedure::Async(AsyncNotice {
//!                 contact,
//!                 channel: Channel::Email,
//!                 lapse_after: days * DAY,
//!                 second_notice_before: Some(DAY),
//!             }),
//!             None => Procedure::None,
//!         })
//!     }
//! }
//!
//! rulehost_sdk::export!(SupportContract: verifier, reconciler);
//!
//! // The logic is ordinary Rust, testable natively:
//! let ctx = Context::new("support-contract", 1_700_000_000);
//! let verdict = SupportContract::verify(&ctx, &request(), None).unwrap();
//! assert_eq!(verdict, Verdict::fail(FailureCode::NoAccount, "no such account"));
//! # fn request() -> ServiceRequest {
//! #     ServiceRequest { id: "r1".into(), account_id: "acme".into(),
//! #         description: String::new(), attributes: vec![] }
//! # }
//! ```

#[doc(hidden)]
#[path = "bindings.rs"]
pub mod __private_bindings;
mod adapter;
mod export;
pub mod log;
pub mod types;

/// Plugins keep the system allocator (wasi-libc's `malloc`). The host hands
/// every string and list argument to a plugin through the component's
/// `cabi_realloc`, which on `wasm32-wasip2` is wasi-libc's and allocates
/// with `malloc`; the generated bindings then free those arguments through
/// Rust's global allocator. Any other allocator frees memory it never
/// handed out (seen: `talc` trapped in `free` on the first call; the
/// `dlmalloc` crate answered, taking wasi-libc's blocks into its own heap).
/// Declared here, a second `#[global_allocator]` in a plugin is a compile
/// error instead.
#[cfg(all(target_family = "wasm", target_os = "wasi"))]
#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

/// Names the macros reach for; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__private_bindings::*;
    pub use crate::adapter::{Adapter, Setup};
}

use types::*;

/// The version of the plugin contract this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// An error a plugin returns when it cannot decide (bad config, missing
/// data). The host records it apart from a failed check and applies the
/// service's `on_plugin_error` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error(message.to_owned())
    }
}

impl From<Error> for String {
    fn from(error: Error) -> Self {
        error.0
    }
}

/// Entitlement: may this account have this service, and at what level?
pub trait Verifier {
    /// `account` is `None` when the host knows no account with the request's id.
    fn verify(
        ctx: &Context,
        request: &ServiceRequest,
        account: Option<&Account>,
    ) -> Result<Verdict, Error>;
}

/// Reconciliation: what happens when a check fails.
pub trait Reconciler {
    /// The procedure for this failure. The default denies without a second chance.
    fn procedure(
        ctx: &Context,
        request: &ServiceRequest,
        failure: &Failure,
        account: Option<&Account>,
    ) -> Result<Procedure, Error> {
        let _ = (ctx, request, failure, account);
        Ok(Procedure::None)
    }
}

/// Plan restrictions and reset conditions.
///
/// ```
/// use rulehost_sdk::types::*;
/// use rulehost_sdk::{Error, PlanPolicy};
///
/// /// At most `max_uses` uses of the plan between resets; the plan's
/// /// counters reset every `reset_every_seconds`.
/// pub struct FewCalls;
///
/// impl PlanPolicy for FewCalls {
///     fn restriction(
///         _ctx: &Context,
///         plan: &Plan,
///         _account: &PlanAccount,
///         usage: &Usage,
///         _communication: &Communication,
///     ) -> Result<Option<Restriction>, Error> {
///         let max: u64 = plan.config_or("max_uses", u64::MAX)?;
///         Ok((usage.total_uses >= max).then(|| {
///             Restriction::new(format!("at most {max} uses")).with_alternate("standard")
///         }))
///     }
///
///     fn reset(ctx: &Context, plan: &Plan, usage: &Usage) -> Result<Option<Reset>, Error> {
///         let every: i64 = plan.config_or("reset_every_seconds", i64::MAX)?;
///         let due = ctx.now.saturating_sub(usage.counters_since) >= every;
///         Ok(due.then(|| Reset::everything(usage, format!("reset every {every} s"))))
///     }
/// }
///
/// rulehost_sdk::export!(FewCalls: plan_policy);
///
/// let plan = Plan::new("few", PlanKind::Unlimited).with_config("reset_every_seconds", "60");
/// let usage = Usage::since(1_000).with_association(Association::new("4420794601", 1_000));
/// let reset = FewCalls::reset(&Context::new("calls", 1_060), &plan, &usage).unwrap();
/// assert_eq!(reset.map(|r| r.dissociate), Some(vec!["4420794601".to_owned()]));
/// ```
pub trait PlanPolicy {
    /// `Some` when the plan may not be used for this communication now, with
    /// a reason for the caller and, if the plan names one, the alternate
    /// plan to offer (`None` leaves the choice to the host's plan
    /// selection). The default restricts nothing.
    fn restriction(
        ctx: &Context,
        plan: &Plan,
        account: &PlanAccount,
        usage: &Usage,
        communication: &Communication,
    ) -> Result<Option<Restriction>, Error> {
        let _ = (ctx, plan, account, usage, communication);
        Ok(None)
    }

    /// `Some` when a reset condition is due now: which of `usage.associations`
    /// to dissociate, whether to reset the plan's counters, and why. The host
    /// calls it before each use of the plan and on its timer; associations
    /// whose `expires_at` has passed are the host's to drop, not the
    /// plugin's. The default never resets.
    fn reset(ctx: &Context, plan: &Plan, usage: &Usage) -> Result<Option<Reset>, Error> {
        let _ = (ctx, plan, usage);
        Ok(None)
    }
}

/// Session charging: one call per participant join or leave, and one when
/// the session ends.
pub trait SessionCharging {
    /// Charges for the interval since `session.last_event_at` up to
    /// `event.at`, for any participants; each charge names the period it
    /// covers (`period_start`, `period_end`). On [`types::SessionEvent::End`]
    /// the interval is the session's last, and whoever is still present
    /// (`session.participants`) is charged for it.
    fn on_event(
        ctx: &Context,
        session: &Session,
        event: &SessionEventAt,
    ) -> Result<Vec<Charge>, Error>;
}
