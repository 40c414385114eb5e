//! Loading a plugin: digest, compile (or fetch from the cache), check the
//! contract version and exports, and pre-link it once for fast instantiation.

use std::sync::Arc;

use wasmtime::component::{Component, InstancePre};

use super::bindings::Indices;
use super::state::StoreState;
use super::{Digest, LoadError, Runtime};
use crate::contract::{CURRENT_CONTRACT, Capability, ContractVersion, parse_export, serving};

/// One compiled, checked plugin version, ready to instantiate.
pub struct Plugin {
    pub(crate) runtime: Runtime,
    name: Arc<str>,
    digest: Digest,
    contract: ContractVersion,
    capabilities: Vec<Capability>,
    size: usize,
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) indices: Indices,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn contract(&self) -> ContractVersion {
        self.contract
    }

    /// The capabilities the component exports, in contract order.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    pub fn exports(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Runtime {
    /// Compiles and checks a plugin. The name is how operators and errors
    /// refer to it (usually the file stem).
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let digest = Digest::of(bytes);
        let engine = &self.inner.engine;
        let err = |kind| LoadError {
            plugin: name.to_owned(),
            digest: Some(digest),
            kind,
        };
        let component = match self
            .inner
            .cache
            .as_ref()
            .and_then(|c| c.get(engine, &digest))
        {
            Some(component) => component,
            None => {
                let component = Component::new(engine, bytes)
                    .map_err(|e| err(super::LoadErrorKind::Compile(format!("{e:#}"))))?;
                if let Some(cache) = &self.inner.cache {
                    cache.put(&digest, &component);
                }
                component
            }
        };
        let (contract, capabilities) = contract_exports(engine, &component).map_err(err)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| err(super::LoadErrorKind::Link(format!("{e:#}"))))?;
        let indices = Indices::new(contract, &pre, &capabilities)
            .map_err(|e| err(super::LoadErrorKind::Exports(format!("{e:#}"))))?;
        Ok(Arc::new(Plugin {
            runtime: self.clone(),
            name: name.into(),
            digest,
            contract,
            capabilities,
            size: bytes.len(),
            pre,
            indices,
        }))
    }

    /// Reads and loads a plugin file; the name is the file stem.
    pub fn load_file(&self, path: &std::path::Path) -> Result<Arc<Plugin>, LoadError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path).map_err(|e| LoadError {
            plugin: name.clone(),
            digest: None,
            kind: super::LoadErrorKind::Read {
                path: path.to_owned(),
                message: e.to_string(),
            },
        })?;
        self.load(&name, &bytes)
    }
}

/// Finds the contract version and capabilities from the export names.
fn contract_exports(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(ContractVersion, Vec<Capability>), super::LoadErrorKind> {
    let mut versions = Vec::new();
    let mut capabilities = Vec::new();
    for (name, _) in component.component_type().exports(engine) {
        let Some(export) = parse_export(name) else {
            continue;
        };
        match (export.capability, export.version) {
            (Some(capability), Some(v)) => {
                versions.push(v);
                capabilities.push(capability);
            }
            (None, Some(v)) => {
                // An interface of a contract version we may not know; the
                // version check below decides whether that matters.
                versions.push(v);
            }
            (_, None) => {
                return Err(super::LoadErrorKind::Exports(format!(
                    "export `{name}` carries no contract version; build the plugin with rulehost-sdk"
                )));
            }
        }
    }
    let Some(&version) = versions.first() else {
        return Err(super::LoadErrorKind::NoCapabilities);
    };
    if let Some(other) = versions.iter().find(|v| **v != version) {
        return Err(super::LoadErrorKind::Exports(format!(
            "it mixes contract versions {version} and {other}"
        )));
    }
    if serving(version).is_none() {
        return Err(super::LoadErrorKind::ContractVersion {
            plugin: version,
            host: CURRENT_CONTRACT,
        });
    }
    if capabilities.is_empty() {
        return Err(super::LoadErrorKind::NoCapabilities);
    }
    capabilities.sort();
    capabilities.dedup();
    Ok((version, capabilities))
}
