//! Bindings for `rulehost:plugin@0.2.0` (`plugin-sdk/wit-0.2`, frozen): the service and
//! its config reach an instance once, through `setup.configure`, and each
//! call carries only the time. Fewer arguments per call is what makes a
//! call cheaper: each string or list argument is one allocation call into
//! the guest.

use super::InvokeError;
use super::convert::{self, configured_exports, invoke_call};
use crate::contract::{self as c, Call, Outcome, Properties};

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit-0.2",
    world: "plugin",
    ownership: Borrowing { duplicate_if_necessary: true },
    // The types are 0.1's, unchanged: one set of conversions serves both.
    with: {
        "rulehost:plugin/types@0.2.0": crate::runtime::bindings::v0_1::rulehost::plugin::types,
    },
});

pub use self::rulehost::plugin::host::{Host, LogLevel};
pub use exports::rulehost::plugin::{plan_policy, reconciler, session_charging, setup, verifier};

configured_exports!("0.2");

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
    let capabilities = &guests.capabilities;
    invoke_call!(capabilities, store, convert::seconds(ctx.now), call)
}
