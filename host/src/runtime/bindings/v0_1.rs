//! Bindings for `rulehost:plugin@0.1.0`, whose WIT is frozen in
//! `plugin-sdk/wit-0.1`: every call carries the whole context.

use super::InvokeError;
use super::convert::{self, capability_exports, invoke_call};
use crate::contract::{self as c, Call, Outcome};

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit-0.1",
    world: "plugin",
    // Arguments borrow the host's values: no string is copied on the host
    // side before wasmtime copies it into the guest.
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::rulehost::plugin::host::{Host, LogLevel};
pub use exports::rulehost::plugin::{plan_policy, reconciler, session_charging, verifier};

capability_exports!();

/// Export indices looked up once per plugin version.
pub type Indices = CapabilityIndices;
/// Typed exports of one live instance.
pub type Guests = CapabilityGuests;

/// Makes one call on a live instance.
pub fn invoke<S: wasmtime::AsContextMut>(
    guests: &Guests,
    mut store: S,
    ctx: &c::Context,
    call: &Call,
) -> Result<Outcome, InvokeError> {
    let config = convert::props(&ctx.config);
    let wctx = convert::context(ctx, &config);
    invoke_call!(guests, store, wctx, call)
}
