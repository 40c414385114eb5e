//! The live registry: the snapshot every request reads, and the one
//! serialized path by which it changes (a plugin offered by the watcher, the
//! API or the CLI; a rules reload; a rollback).
//!
//! A candidate plugin goes through: digest → compile (off the request path)
//! → contract version → the exports every service that names it needs → those
//! services' sandbox cases → activation (version bytes, event and live digest
//! in one transaction) → one atomic swap of the snapshot. A candidate that
//! fails a step is not activated; the old version keeps serving and the
//! failure is recorded. In-flight calls hold the snapshot they started with,
//! so they finish on the version they started on.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{Diagnostic, Loaded, Registry, Service, Sources, load_with};
use crate::contract::Capability;
use crate::harness::{self, Case, Timing};
use crate::runtime::{Binding, Digest, LoadErrorKind, Plugin, Runtime};
use crate::store::plugins::{self as q, PluginEvent};
use crate::store::{self, Store, StoreError};

/// Who offered a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Startup,
    Watcher,
    Api,
    Cli,
    Rollback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Startup => "startup",
            Source::Watcher => "watcher",
            Source::Api => "api",
            Source::Cli => "cli",
            Source::Rollback => "rollback",
        }
    }
}

/// The validation step a candidate failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Read,
    Compile,
    Contract,
    Exports,
    Cases,
    Rules,
    Store,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Read => "read",
            Step::Compile => "compile",
            Step::Contract => "contract",
            Step::Exports => "exports",
            Step::Cases => "cases",
            Step::Rules => "rules",
            Step::Store => "store",
        }
    }
}

/// A candidate that was not activated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: String,
    pub digest: Option<Digest>,
    pub step: Step,
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step.as_str(), self.message)
    }
}

/// A candidate that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    Activated {
        digest: Digest,
        services: Vec<String>,
    },
    /// It is the live version already.
    Unchanged { digest: Digest },
}

pub struct Live {
    runtime: Runtime,
    sources: Sources,
    store: Store,
    current: Arc<ArcSwap<Registry>>,
    /// Serializes every change: two reloads never race.
    lock: Mutex<()>,
}

impl Live {
    /// The manifests, with each plugin's live version from the store when it
    /// has one (what was live before a restart, whatever the files say now);
    /// a plugin the store has never seen is read from its file and recorded.
    pub fn start(
        runtime: Runtime,
        sources: Sources,
        store: Store,
    ) -> Result<(Live, Vec<Diagnostic>), StoreError> {
        let active: BTreeMap<String, String> = store
            .read(q::active)?
            .into_iter()
            .map(|(plugin, digest, _)| (plugin, digest))
            .collect();
        let max_memory = runtime.options().max_memory_bytes;
        let mut provider = |name: &str| -> Result<Arc<Plugin>, String> {
            if let Some(digest) = active.get(name)
                && let Ok(Some(bytes)) = store.read(|c| q::version_bytes(c, digest))
            {
                return runtime.load(name, &bytes).map_err(|e| e.to_string());
            }
            let path = sources.plugin_path(name);
            let bytes = std::fs::read(&path).map_err(|e| {
                format!("plugin file `{}` not found ({e}); build the plugins (`cargo xtask plugins`) or pass --plugins", path.display())
            })?;
            let plugin = runtime
                .load(name, &bytes)
                .map_err(|e| format!("{e} (file `{}`)", path.display()))?;
            record_activation(
                &store,
                name,
                &plugin.digest(),
                &bytes,
                Source::Startup,
                Some(&path),
            )
            .map_err(|e| e.to_string())?;
            Ok(plugin)
        };
        let loaded = load_with(&sources, max_memory, &mut provider);
        let Loaded {
            mut registry,
            diagnostics,
        } = loaded;
        let live = Live {
            runtime,
            sources,
            store,
            current: Arc::new(ArcSwap::from_pointee(Registry::default())),
            lock: Mutex::new(()),
        };
        live.attach_fallbacks(&mut registry);
        live.current.store(Arc::new(registry));
        Ok((live, diagnostics))
    }

    pub fn registry(&self) -> Arc<ArcSwap<Registry>> {
        self.current.clone()
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Offers a new version of plugin `name`.
    pub fn offer(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        path: Option<&Path>,
    ) -> Result<Offered, Rejection> {
        let _serial = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.offer_locked(name, bytes, source, path);
        if let Err(rejection) = &result {
            tracing::warn!(plugin = name, digest = ?rejection.digest, step = rejection.step.as_str(), "candidate rejected: {}", rejection.message);
            let event = PluginEvent {
                id: 0,
                plugin: name.into(),
                digest: rejection.digest.map(|d| d.to_string()),
                at: store::now_ms(),
                source: source.as_str().into(),
                path: path.map(|p| p.display().to_string()),
                result: "rejected".into(),
                step: Some(rejection.step.as_str().into()),
                message: Some(rejection.message.clone()),
            };
            if let Err(e) = self.store.write(|tx| q::add_event(tx, &event)) {
                tracing::error!("cannot record a rejection: {e}");
            }
        }
        result
    }

    fn offer_locked(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        path: Option<&Path>,
    ) -> Result<Offered, Rejection> {
        let digest = Digest::of(bytes);
        let reject = |step, message: String| Rejection {
            plugin: name.into(),
            digest: Some(digest),
            step,
            message,
        };
        let current = self.current.load_full();
        if current.plugins.get(name).map(|p| p.digest()) == Some(digest) {
            return Ok(Offered::Unchanged { digest });
        }
        let users = users_of(&current, name);
        if users.is_empty() {
            return Err(reject(
                Step::Rules,
                format!("no service names plugin `{name}`; add it to a manifest's [plugins] first"),
            ));
        }
        let plugin = self.runtime.load(name, bytes).map_err(|e| match e.kind {
            LoadErrorKind::ContractVersion { .. } => reject(Step::Contract, e.to_string()),
            _ => reject(Step::Compile, e.to_string()),
        })?;
        for (service, capability) in &users {
            if !plugin.exports(*capability) {
                return Err(reject(
                    Step::Exports,
                    format!(
                        "service `{service}` needs `{}` from it, and it does not export that",
                        capability.manifest_key()
                    ),
                ));
            }
        }
        let next = with_plugin(&current, name, &plugin);
        self.run_cases(&next, Some(name))
            .map_err(|m| reject(Step::Cases, m))?;
        record_activation(&self.store, name, &digest, bytes, source, path)
            .map_err(|e| reject(Step::Store, e.to_string()))?;
        let mut services: Vec<String> = users.iter().map(|(s, _)| s.clone()).collect();
        services.dedup();
        self.current.store(Arc::new(next));
        tracing::info!(plugin = name, %digest, source = source.as_str(), ?services, "activated");
        Ok(Offered::Activated { digest, services })
    }

    /// Makes a previous version live again: `digest`, or the version live
    /// before the current one. It is validated like any candidate.
    pub fn rollback(
        &self,
        name: &str,
        digest: Option<Digest>,
        source: Source,
    ) -> Result<Offered, RollbackError> {
        let current = self.current.load_full();
        let live = current
            .plugins
            .get(name)
            .map(|p| p.digest())
            .ok_or_else(|| RollbackError::UnknownPlugin(name.into()))?;
        let target = match digest {
            Some(d) => d,
            None => {
                let history = self
                    .store
                    .read(|c| q::activated_digests(c, name))
                    .map_err(RollbackError::Store)?;
                history
                    .iter()
                    .filter_map(|d| Digest::parse(d))
                    .find(|d| *d != live)
                    .ok_or_else(|| RollbackError::NothingBefore(name.into()))?
            }
        };
        let bytes = self
            .store
            .read(|c| q::version_bytes(c, &target.to_string()))
            .map_err(RollbackError::Store)?
            .ok_or_else(|| RollbackError::UnknownVersion(target.to_string()))?;
        self.offer(name, &bytes, source, None)
            .map_err(RollbackError::Rejected)
    }

    /// Re-reads the rules folder as one snapshot; nothing changes unless all
    /// of it is valid and every service's cases pass. Plugins stay at their
    /// live versions; a plugin no service named before is read from its file.
    pub fn reload_rules(&self, source: Source) -> Result<usize, Vec<Diagnostic>> {
        let _serial = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let mut fresh: Vec<(String, Arc<Plugin>, Vec<u8>)> = Vec::new();
        let max_memory = self.runtime.options().max_memory_bytes;
        let mut provider = |name: &str| -> Result<Arc<Plugin>, String> {
            if let Some(plugin) = current.plugins.get(name) {
                return Ok(plugin.clone());
            }
            let path = self.sources.plugin_path(name);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("plugin file `{}` cannot be read: {e}", path.display()))?;
            let plugin = self.runtime.load(name, &bytes).map_err(|e| e.to_string())?;
            fresh.push((name.to_owned(), plugin.clone(), bytes));
            Ok(plugin)
        };
        let Loaded {
            mut registry,
            diagnostics,
        } = load_with(&self.sources, max_memory, &mut provider);
        let rules = &self.sources.rules_dir;
        if diagnostics.iter().any(Diagnostic::is_error) {
            tracing::warn!("rules change rejected; the previous rules keep serving");
            return Err(diagnostics);
        }
        if let Err(message) = self.run_cases(&registry, None) {
            return Err(vec![Diagnostic::error(rules, None, message)]);
        }
        for (name, plugin, bytes) in &fresh {
            if let Err(e) = record_activation(
                &self.store,
                name,
                &plugin.digest(),
                bytes,
                source,
                Some(&self.sources.plugin_path(name)),
            ) {
                return Err(vec![Diagnostic::error(
                    rules,
                    None,
                    format!("cannot record plugin `{name}`: {e}"),
                )]);
            }
        }
        self.attach_fallbacks(&mut registry);
        keep_call_bounds(&self.current.load(), &mut registry);
        let count = registry.services.len();
        self.current.store(Arc::new(registry));
        tracing::info!(services = count, source = source.as_str(), "rules reloaded");
        Ok(count)
    }

    /// Runs the cases of every service in `registry` (or only those using plugin `only`).
    fn run_cases(&self, registry: &Registry, only: Option<&str>) -> Result<(), String> {
        let timing = Timing {
            max_runs: 1,
            budget: std::time::Duration::ZERO,
        };
        for service in registry.services.values() {
            let uses = |c: Capability| {
                only.is_none_or(|name| service.manifest.plugins.get(&c).is_some_and(|n| n == name))
            };
            for file in harness::case_files(&self.sources.rules_dir, service.id()) {
                let case = Case::read(&file).map_err(|d| d.to_string())?;
                if !uses(case.call.capability()) {
                    continue;
                }
                let result = harness::run(service, &case, timing);
                if !result.passed() {
                    let why = match (&result.observation, &result.mismatch) {
                        (Err(e), _) => e.clone(),
                        (Ok(_), Some(m)) => m.clone(),
                        (Ok(_), None) => "failed".into(),
                    };
                    return Err(format!(
                        "case `{}/{}` fails: {why}",
                        service.id(),
                        case.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Binds each service's previous good version of each plugin, for
    /// `on_plugin_error = "last-good"`.
    fn attach_fallbacks(&self, registry: &mut Registry) {
        let mut previous: BTreeMap<String, Option<Arc<Plugin>>> = BTreeMap::new();
        let services = std::mem::take(&mut registry.services);
        for (id, service) in services {
            if service.manifest.on_plugin_error != super::OnPluginError::LastGood {
                registry.services.insert(id, service);
                continue;
            }
            let mut fallbacks = BTreeMap::new();
            for (capability, name) in &service.manifest.plugins {
                let Some(live) = registry.plugins.get(name).map(|p| p.digest()) else {
                    continue;
                };
                let plugin = previous
                    .entry(name.clone())
                    .or_insert_with(|| self.previous_version(name, live))
                    .clone();
                if let Some(plugin) = plugin {
                    fallbacks.insert(
                        *capability,
                        Arc::new(Binding::new(plugin, service.manifest.limits)),
                    );
                }
            }
            let service = Service {
                manifest: service.manifest.clone(),
                bindings: service.bindings.clone(),
                fallbacks,
                calls: service.calls.clone(),
            };
            registry.services.insert(id, Arc::new(service));
        }
    }

    fn previous_version(&self, name: &str, live: Digest) -> Option<Arc<Plugin>> {
        let history = self.store.read(|c| q::activated_digests(c, name)).ok()?;
        let digest = history
            .iter()
            .filter_map(|d| Digest::parse(d))
            .find(|d| *d != live)?;
        let bytes = self
            .store
            .read(|c| q::version_bytes(c, &digest.to_string()))
            .ok()??;
        self.runtime.load(name, &bytes).ok()
    }

    /// Every live plugin with its version, users, counters and last rejection.
    pub fn status(&self) -> Result<Vec<PluginStatus>, StoreError> {
        let registry = self.current.load_full();
        let active: BTreeMap<String, i64> = self
            .store
            .read(q::active)?
            .into_iter()
            .map(|(p, _, at)| (p, at))
            .collect();
        let mut out = Vec::new();
        for (name, plugin) in &registry.plugins {
            let events = self.store.read(|c| q::events(c, name, 50))?;
            let activation = events.iter().find(|e| {
                e.result == "activated" && e.digest.as_deref() == Some(&plugin.digest().to_string())
            });
            let last_rejection = events.iter().find(|e| e.result == "rejected").cloned();
            let mut stats = Stats::default();
            let mut services = Vec::new();
            for (service, capability) in users_of(&registry, name) {
                if let Some(binding) = registry
                    .service(&service)
                    .and_then(|s| s.binding(capability))
                {
                    stats.add(binding);
                }
                services.push(ServiceUse {
                    service,
                    capability,
                });
            }
            out.push(PluginStatus {
                name: name.clone(),
                digest: plugin.digest().to_string(),
                contract: plugin.contract().to_string(),
                capabilities: plugin.capabilities().to_vec(),
                activated_at: active.get(name).map(|at| store::rfc3339(*at)),
                source: activation.map(|e| e.source.clone()),
                services,
                stats,
                last_rejection,
            });
        }
        Ok(out)
    }

    pub fn history(&self, name: &str, limit: u32) -> Result<Vec<PluginEvent>, StoreError> {
        self.store.read(|c| q::events(c, name, limit))
    }
}

/// (service, capability) pairs whose manifest names plugin `name`.
fn users_of(registry: &Registry, name: &str) -> Vec<(String, Capability)> {
    registry
        .services
        .values()
        .flat_map(|s| {
            s.manifest
                .plugins
                .iter()
                .filter(|(_, n)| *n == name)
                .map(|(c, _)| (s.id().to_owned(), *c))
        })
        .collect()
}

/// A service that stays through a reload keeps its bound on plugin calls
/// (`Service::calls`): calls running on the old snapshot and on the new one
/// share it.
fn keep_call_bounds(current: &Registry, next: &mut Registry) {
    for (id, service) in &mut next.services {
        let Some(old) = current.services.get(id) else {
            continue;
        };
        if Arc::ptr_eq(&old.calls, &service.calls) {
            continue;
        }
        match Arc::get_mut(service) {
            Some(only) => only.calls = old.calls.clone(),
            None => {
                *service = Arc::new(Service {
                    manifest: service.manifest.clone(),
                    bindings: service.bindings.clone(),
                    fallbacks: service.fallbacks.clone(),
                    calls: old.calls.clone(),
                });
            }
        }
    }
}

/// The snapshot with `plugin` live as `name`: its users get new bindings
/// (the old ones become their fallbacks); every other service is shared as is.
fn with_plugin(current: &Registry, name: &str, plugin: &Arc<Plugin>) -> Registry {
    let mut next = Registry {
        services: BTreeMap::new(),
        plugins: current.plugins.clone(),
        plans: current.plans.clone(),
    };
    next.plugins.insert(name.to_owned(), plugin.clone());
    for (id, service) in &current.services {
        let uses: Vec<Capability> = service
            .manifest
            .plugins
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(c, _)| *c)
            .collect();
        if uses.is_empty() {
            next.services.insert(id.clone(), service.clone());
            continue;
        }
        let mut bindings = service.bindings.clone();
        let mut fallbacks = service.fallbacks.clone();
        for capability in uses {
            if let Some(old) = bindings.insert(
                capability,
                Arc::new(Binding::new(plugin.clone(), service.manifest.limits)),
            ) {
                fallbacks.insert(capability, old);
            }
        }
        next.services.insert(
            id.clone(),
            Arc::new(Service {
                manifest: service.manifest.clone(),
                bindings,
                fallbacks,
                calls: service.calls.clone(),
            }),
        );
    }
    next
}

fn record_activation(
    store: &Store,
    name: &str,
    digest: &Digest,
    bytes: &[u8],
    source: Source,
    path: Option<&Path>,
) -> Result<(), StoreError> {
    let now = store::now_ms();
    let digest = digest.to_string();
    store.write(|tx| {
        q::put_version(tx, &digest, bytes, now)?;
        q::add_event(
            tx,
            &PluginEvent {
                id: 0,
                plugin: name.into(),
                digest: Some(digest.clone()),
                at: now,
                source: source.as_str().into(),
                path: path.map(|p| p.display().to_string()),
                result: "activated".into(),
                step: None,
                message: None,
            },
        )?;
        q::set_active(tx, name, &digest, now)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no live plugin `{0}`")]
    UnknownPlugin(String),
    #[error("plugin `{0}` has no earlier version to roll back to")]
    NothingBefore(String),
    #[error("no stored version `{0}`")]
    UnknownVersion(String),
    #[error("the version was rejected: {0}")]
    Rejected(Rejection),
    #[error(transparent)]
    Store(StoreError),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service's use of a plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceUse {
    pub service: String,
    pub capability: Capability,
}

/// Counters of a plugin's live bindings, summed over services.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub calls: u64,
    pub faults: u64,
    pub fallbacks: u64,
    pub instantiations: u64,
    pub slow_calls: u64,
}

impl Stats {
    fn add(&mut self, binding: &Binding) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls += binding.stats.calls.load(Relaxed);
        self.faults += binding.stats.faults.load(Relaxed);
        self.fallbacks += binding.stats.fallbacks.load(Relaxed);
        self.instantiations += binding.stats.instantiations.load(Relaxed);
        self.slow_calls += binding.stats.slow_calls.load(Relaxed);
    }
}

/// What `GET /v1/plugins` shows of one plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub digest: String,
    pub contract: String,
    pub capabilities: Vec<Capability>,
    pub activated_at: Option<String>,
    pub source: Option<String>,
    pub services: Vec<ServiceUse>,
    pub stats: Stats,
    pub last_rejection: Option<PluginEvent>,
}
