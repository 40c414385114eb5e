//! The plugin contract as the host sees it, independent of any one contract
//! version: the capabilities, the version rule, and the data that crosses the
//! boundary (as serde types, so cases, the API and the store share one shape).
//!
//! Architecture invariant: nothing here knows of wasmtime. Each supported
//! contract version converts these types to and from its own generated
//! bindings in `runtime::bindings`.

mod properties;
mod types;
mod version;

pub use properties::Properties;
pub use types::*;
pub use version::{
    CURRENT_CONTRACT, Capability, ContractExport, ContractVersion, PACKAGE, SUPPORTED_CONTRACTS,
    parse_export, serving, supported_list,
};
