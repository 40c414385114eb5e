//! Generated bindings, one module per supported contract version, and the
//! dispatch between them. A new contract version adds a module beside these
//! (its WIT frozen in its own folder) and an arm in each match below.

mod convert;
pub mod v0_1;
pub mod v0_2;
pub mod v0_3;

use crate::contract::{Call, Capability, ContractVersion, Outcome};

/// Why a call could not be made or its answer not understood.
#[derive(Debug)]
pub enum InvokeError {
    /// The plugin does not export the capability the call needs.
    Unsupported(Capability),
    /// A trap, a limit, or any other failure inside wasmtime.
    Wasm(wasmtime::Error),
    /// The plugin answered with a value the contract does not allow.
    Malformed(String),
}

impl From<wasmtime::Error> for InvokeError {
    fn from(e: wasmtime::Error) -> Self {
        InvokeError::Wasm(e)
    }
}

/// Export indices of one plugin version, for the contract it was built for.
pub enum Indices {
    V0_1(v0_1::Indices),
    V0_2(v0_2::Indices),
    V0_3(v0_3::Indices),
}

/// Typed exports of one live instance.
pub enum Guests {
    V0_1(v0_1::Guests),
    V0_2(v0_2::Guests),
    V0_3(v0_3::Guests),
}

impl Indices {
    /// Looks up the exports of a plugin built for `contract` (one the
    /// host serves: `contract::serving` said so).
    pub fn new<T>(
        contract: ContractVersion,
        pre: &wasmtime::component::InstancePre<T>,
        capabilities: &[Capability],
    ) -> wasmtime::Result<Self> {
        match (contract.major, contract.minor) {
            (0, 1) => Ok(Indices::V0_1(v0_1::Indices::new(pre, capabilities)?)),
            (0, 2) => Ok(Indices::V0_2(v0_2::Indices::new(pre, capabilities)?)),
            (0, 3) => Ok(Indices::V0_3(v0_3::Indices::new(pre, capabilities)?)),
            _ => Err(wasmtime::format_err!("no bindings for contract {contract}")),
        }
    }

    /// Type-checks and loads the exports of a fresh instance.
    pub fn load(
        &self,
        store: impl wasmtime::AsContextMut,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Guests> {
        Ok(match self {
            Indices::V0_1(i) => Guests::V0_1(i.load(store, instance)?),
            Indices::V0_2(i) => Guests::V0_2(i.load(store, instance)?),
            Indices::V0_3(i) => Guests::V0_3(i.load(store, instance)?),
        })
    }
}

/// Makes one call on a live instance.
pub fn invoke<S: wasmtime::AsContextMut>(
    guests: &mut Guests,
    store: S,
    ctx: &crate::contract::Context,
    call: &Call,
) -> Result<Outcome, InvokeError> {
    match guests {
        Guests::V0_1(g) => v0_1::invoke(g, store, ctx, call),
        Guests::V0_2(g) => v0_2::invoke(g, store, ctx, call),
        Guests::V0_3(g) => v0_3::invoke(g, store, ctx, call),
    }
}
