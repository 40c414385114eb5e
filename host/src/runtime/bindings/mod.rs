//! Generated bindings, one module per supported contract version. A new
//! contract version adds a module beside `v0_1` (its WIT frozen in its own
//! folder) and a match arm where the runtime picks bindings by version.

pub mod v0_1;
