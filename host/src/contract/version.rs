//! Capabilities and contract versions, as they appear in component export
//! names such as `rulehost:plugin/verifier@0.1.0`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The WIT package every rulehost plugin exports from.
pub const PACKAGE: &str = "rulehost:plugin";

/// The contract versions this host serves, oldest first. The last is the
/// one `rulehost-sdk` builds against.
pub const SUPPORTED_CONTRACTS: [ContractVersion; 3] = [
    ContractVersion {
        major: 0,
        minor: 1,
        patch: 0,
    },
    ContractVersion {
        major: 0,
        minor: 2,
        patch: 0,
    },
    CURRENT_CONTRACT,
];

/// The newest contract version, the one `rulehost-sdk` builds against.
pub const CURRENT_CONTRACT: ContractVersion = ContractVersion {
    major: 0,
    minor: 3,
    patch: 0,
};

/// The supported version that serves a plugin built for `plugin`.
pub fn serving(plugin: ContractVersion) -> Option<ContractVersion> {
    SUPPORTED_CONTRACTS.into_iter().find(|v| v.serves(plugin))
}

/// `rulehost:plugin@0.1.0, @0.2.0 and @0.3.0`, for messages.
pub fn supported_list() -> String {
    let versions: Vec<String> = SUPPORTED_CONTRACTS
        .iter()
        .map(|v| format!("@{v}"))
        .collect();
    let list = match versions.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => versions.concat(),
    };
    format!("{PACKAGE}{list}")
}

/// One interface of the contract; a plugin exports any subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Verifier,
    Reconciler,
    PlanPolicy,
    SessionCharging,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Verifier,
        Capability::Reconciler,
        Capability::PlanPolicy,
        Capability::SessionCharging,
    ];

    /// The interface name in WIT (`plan-policy`).
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Verifier => "verifier",
            Capability::Reconciler => "reconciler",
            Capability::PlanPolicy => "plan-policy",
            Capability::SessionCharging => "session-charging",
        }
    }

    /// The key in a manifest's `[plugins]` table (`plan_policy`).
    pub fn manifest_key(self) -> &'static str {
        match self {
            Capability::Verifier => "verifier",
            Capability::Reconciler => "reconciler",
            Capability::PlanPolicy => "plan_policy",
            Capability::SessionCharging => "session_charging",
        }
    }

    fn from_interface(name: &str) -> Option<Self> {
        Capability::ALL.into_iter().find(|c| c.interface() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.manifest_key())
    }
}

/// A semantic version of the contract package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContractVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl ContractVersion {
    /// Parses `0.1.0` (no pre-release or build parts).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.').map(|p| p.parse::<u64>().ok());
        let version = ContractVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    /// Whether a host serving `self` can run a plugin built for `plugin`:
    /// semver compatibility, where for 0.x the minor version is the breaking one.
    /// A plugin built for a newer patch is refused too, since the host cannot
    /// know what that patch added.
    pub fn serves(self, plugin: ContractVersion) -> bool {
        let same_line = if self.major == 0 {
            plugin.major == 0 && plugin.minor == self.minor
        } else {
            plugin.major == self.major
        };
        same_line && plugin <= self
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A component export that belongs to the contract package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractExport {
    /// `None` when the interface is not one this host knows.
    pub capability: Option<Capability>,
    pub version: Option<ContractVersion>,
}

/// Reads an export name like `rulehost:plugin/verifier@0.1.0`; `None` when
/// the export is not from the contract package at all.
pub fn parse_export(name: &str) -> Option<ContractExport> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (interface, version) = match rest.split_once('@') {
        Some((interface, version)) => (interface, ContractVersion::parse(version)),
        None => (rest, None),
    };
    Some(ContractExport {
        capability: Capability::from_interface(interface),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ContractVersion {
        ContractVersion::parse(text).unwrap_or_else(|| panic!("bad version {text}"))
    }

    #[test]
    fn zero_major_versions_break_on_minor() {
        assert!(v("0.1.0").serves(v("0.1.0")));
        assert!(v("0.1.3").serves(v("0.1.1")));
        assert!(
            !v("0.1.0").serves(v("0.1.1")),
            "a newer patch may add what the host lacks"
        );
        assert!(!v("0.1.0").serves(v("0.2.0")));
        assert!(!v("0.1.0").serves(v("2.0.0")));
        assert!(v("1.2.0").serves(v("1.0.5")));
        assert!(!v("1.2.0").serves(v("2.0.0")));
    }

    #[test]
    fn the_host_serves_each_supported_line() {
        assert_eq!(serving(v("0.1.0")), Some(v("0.1.0")));
        assert_eq!(serving(v("0.2.0")), Some(v("0.2.0")));
        assert_eq!(serving(v("0.3.0")), Some(v("0.3.0")));
        assert_eq!(serving(v("0.3.1")), None);
        assert_eq!(serving(v("0.4.0")), None);
        assert_eq!(serving(v("2.0.0")), None);
        assert_eq!(CURRENT_CONTRACT, v("0.3.0"));
        assert_eq!(SUPPORTED_CONTRACTS.last(), Some(&CURRENT_CONTRACT));
        assert_eq!(supported_list(), "rulehost:plugin@0.1.0, @0.2.0 and @0.3.0");
    }

    #[test]
    fn export_names_are_parsed() {
        let e = parse_export("rulehost:plugin/plan-policy@0.1.0");
        assert_eq!(
            e,
            Some(ContractExport {
                capability: Some(Capability::PlanPolicy),
                version: Some(v("0.1.0"))
            })
        );
        assert_eq!(parse_export("wasi:cli/run@0.2.0"), None);
        let unknown = parse_export("rulehost:plugin/teleporter@9.0.0");
        assert_eq!(unknown.and_then(|e| e.capability), None);
        assert_eq!(ContractVersion::parse("1.2"), None);
        assert_eq!(ContractVersion::parse("1.2.3.4"), None);
    }
}
