//! Bindings for `rulehost:plugin@0.2.0` (`plugin-sdk/wit-0.2`, frozen): the service and
//! its config reach an instance once, through `setup.configure`, and each
//! call carries only the time. Fewer arguments per call is what makes a
//! call cheaper: each string or list argument is one allocation call into
//! the guest.

use super::InvokeError;
use super::convert::{self, capability_exports, invoke_call};
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

capability_exports!();

/// Export indices looked up once per plugin version.
pub struct Indices {
    setup: setup::GuestIndices,
    capabilities: CapabilityIndices,
}

/// Typed exports of one live instance, and the service and config it was
/// last configured with.
pub struct Guests {
    setup: setup::Guest,
    capabilities: CapabilityGuests,
    configured: Option<(String, Properties)>,
}

impl Indices {
    /// Looks up `setup` and the exports of each capability the plugin
    /// declares.
    pub fn new<T>(
        pre: &wasmtime::component::InstancePre<T>,
        capabilities: &[c::Capability],
    ) -> wasmtime::Result<Self> {
        Ok(Indices {
            setup: setup::GuestIndices::new(pre).map_err(|e| {
                e.context(
                    "a contract 0.2 plugin must export `rulehost:plugin/setup@0.2.0` \
                     (`rulehost_sdk::export!` does; without the SDK, export the \
                     `setup-plugin` world too)",
                )
            })?,
            capabilities: CapabilityIndices::new(pre, capabilities)?,
        })
    }

    /// Type-checks and loads the exports of a fresh instance.
    pub fn load(
        &self,
        mut store: impl wasmtime::AsContextMut,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Guests> {
        Ok(Guests {
            setup: self.setup.load(&mut store, instance)?,
            capabilities: self.capabilities.load(&mut store, instance)?,
            configured: None,
        })
    }
}

impl Guests {
    fn configured_for(&self, ctx: &c::Context) -> bool {
        self.configured
            .as_ref()
            .is_some_and(|(service, config)| *service == ctx.service && *config == ctx.config)
    }
}

/// Makes one call on a live instance, configuring it first when it serves
/// another service or config (or none yet). A configuration the plugin
/// refuses is the call's answer, like any `err` it returns.
pub fn invoke<S: wasmtime::AsContextMut>(
    guests: &mut Guests,
    mut store: S,
    ctx: &c::Context,
    call: &Call,
) -> Result<Outcome, InvokeError> {
    if !guests.configured_for(ctx) {
        guests.configured = None;
        let config = convert::props(&ctx.config);
        let wctx = convert::context(ctx, &config);
        if let Err(error) = guests.setup.call_configure(&mut store, wctx)? {
            return Ok(Outcome::Error { error });
        }
        guests.configured = Some((ctx.service.clone(), ctx.config.clone()));
    }
    let capabilities = &guests.capabilities;
    invoke_call!(capabilities, store, convert::seconds(ctx.now), call)
}
