//! Service registrations: manifests read from the rules folder, each bound
//! to its compiled plugins, gathered into one registry snapshot.
//!
//! Architecture invariant: a snapshot is built whole, off to the side, and
//! only then used; a rules folder with any error yields its diagnostics, and
//! the services that had none.

mod diagnostic;
mod live;
mod manifest;
pub mod plan_file;
#[cfg(test)]
mod props;
mod slots;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostic::{Diagnostic, Severity, line_of};
pub use live::{
    Live, Offered, PluginStatus, Rejection, RollbackError, ServiceUse, Source, Stats, Step,
};
pub use manifest::{
    MAX_MEMORY_MIB, MAX_OUTPUT_KIB, MAX_TIMEOUT_MS, Manifest, OnPluginError, valid_id,
    valid_plugin_name,
};
pub use slots::{Slots, plugin_concurrency};
pub use watch::Watcher;

use crate::contract::{Capability, Context};
use crate::runtime::{Binding, LoadErrorKind, Plugin, Runtime};

/// A registered service with a binding per capability its manifest names.
#[derive(Debug)]
pub struct Service {
    pub manifest: Manifest,
    pub bindings: BTreeMap<Capability, Arc<Binding>>,
    /// The previous good version, per capability, for `on_plugin_error =
    /// "last-good"`.
    pub fallbacks: BTreeMap<Capability, Arc<Binding>>,
    /// The bound on this service's plugin calls running at once. Every
    /// call made while serving (verify, reconcile, plan policy, session
    /// charging, and their fallbacks) holds a place (`Slots::run`); the
    /// harness's case runs and replays, which validate a version before it
    /// serves, do not.
    pub calls: Arc<Slots>,
}

impl Service {
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    pub fn binding(&self, capability: Capability) -> Option<&Arc<Binding>> {
        self.bindings.get(&capability)
    }

    /// The version that answers when the live one faulted: the previous
    /// good one, when the service's `on_plugin_error` asks for it.
    pub fn fallback(&self, capability: Capability) -> Option<&Arc<Binding>> {
        (self.manifest.on_plugin_error == OnPluginError::LastGood)
            .then(|| self.fallbacks.get(&capability))
            .flatten()
    }

    /// What a plugin of this service is called with: its id and config.
    pub fn context(&self, now: jiff::Timestamp) -> Context {
        Context {
            service: self.manifest.id.clone(),
            config: self.manifest.config.clone(),
            now,
        }
    }
}

/// One consistent set of services.
#[derive(Debug, Default)]
pub struct Registry {
    pub services: BTreeMap<String, Arc<Service>>,
    /// The live version of every plugin the services name.
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// Every service's plans (`rules/plans/`), read with the manifests.
    pub plans: Arc<plan_file::PlanBook>,
}

impl Registry {
    pub fn service(&self, id: &str) -> Option<&Arc<Service>> {
        self.services.get(id)
    }
}

/// Where rules and plugins are.
#[derive(Debug, Clone)]
pub struct Sources {
    pub rules_dir: PathBuf,
    /// Plugin `<name>` is the file `<plugins_dir>/<name>.wasm`.
    pub plugins_dir: PathBuf,
}

impl Sources {
    pub fn plugin_path(&self, name: &str) -> PathBuf {
        self.plugins_dir.join(format!("{name}.wasm"))
    }
}

/// A registry and everything found wrong while building it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub registry: Registry,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Files of the rules folder that are not service manifests.
pub const RESERVED_FILES: &[&str] = &["roles.toml"];

/// The manifest files of a rules folder, sorted by name.
pub fn manifest_files(rules_dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(rules_dir).map_err(|e| {
        Diagnostic::error(
            rules_dir,
            None,
            format!("cannot read the rules folder: {e}"),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| RESERVED_FILES.iter().any(|r| n == *r))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every manifest and loads every plugin they name.
pub fn load(runtime: &Runtime, sources: &Sources) -> Loaded {
    load_with(sources, runtime.options().max_memory_bytes, &mut |name| {
        load_plugin(runtime, sources, name)
    })
}

/// Reads every manifest and gets every plugin they name from `plugin`
/// (the files at first start; the live versions on a rules reload).
pub fn load_with(
    sources: &Sources,
    max_memory_bytes: u64,
    plugin: &mut dyn FnMut(&str) -> Result<Arc<Plugin>, String>,
) -> Loaded {
    let mut loaded = Loaded::default();
    let files = match manifest_files(&sources.rules_dir) {
        Ok(files) => files,
        Err(d) => {
            loaded.diagnostics.push(d);
            return loaded;
        }
    };
    if files.is_empty() {
        loaded.diagnostics.push(Diagnostic::warning(
            &sources.rules_dir,
            None,
            "no service manifests (*.toml) here",
        ));
    }
    let mut plugins: BTreeMap<String, Result<Arc<Plugin>, String>> = BTreeMap::new();
    for file in files {
        let manifest = match std::fs::read_to_string(&file) {
            Err(e) => Err(vec![Diagnostic::error(
                &file,
                None,
                format!("cannot read: {e}"),
            )]),
            Ok(source) => Manifest::parse(&file, &source),
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(problems) => {
                loaded.diagnostics.extend(problems);
                continue;
            }
        };
        if manifest.limits.memory_bytes > max_memory_bytes {
            loaded.diagnostics.push(Diagnostic::error(
                &file,
                None,
                format!(
                    "`memory_mib` is above what this host allows ({} MiB)",
                    max_memory_bytes >> 20
                ),
            ));
            continue;
        }
        let mut bindings = BTreeMap::new();
        let mut ok = true;
        for (&capability, name) in &manifest.plugins {
            let line = manifest.plugin_lines.get(&capability).copied();
            let plugin = plugins
                .entry(name.clone())
                .or_insert_with(|| plugin(name))
                .clone();
            match plugin {
                Err(message) => {
                    loaded
                        .diagnostics
                        .push(Diagnostic::error(&file, line, message));
                    ok = false;
                }
                Ok(plugin) if !plugin.exports(capability) => {
                    loaded.diagnostics.push(Diagnostic::error(&file, line, format!(
                        "plugin `{name}` does not export `{}` (it exports {}); name a plugin that does, or remove the line",
                        capability.manifest_key(),
                        exports_list(&plugin)
                    )));
                    ok = false;
                }
                Ok(plugin) => {
                    loaded.registry.plugins.insert(name.clone(), plugin.clone());
                    bindings.insert(capability, Arc::new(Binding::new(plugin, manifest.limits)));
                }
            }
        }
        if ok {
            loaded.registry.services.insert(
                manifest.id.clone(),
                Arc::new(Service {
                    manifest,
                    bindings,
                    fallbacks: BTreeMap::new(),
                    calls: Arc::default(),
                }),
            );
        }
    }
    let with_policy = loaded
        .registry
        .services
        .iter()
        .map(|(id, s)| (id.clone(), s.bindings.contains_key(&Capability::PlanPolicy)))
        .collect();
    let (plans, problems) = plan_file::load_plan_book(&sources.rules_dir, &with_policy);
    loaded.diagnostics.extend(problems);
    loaded.registry.plans = Arc::new(plans);
    loaded
}

fn load_plugin(runtime: &Runtime, sources: &Sources, name: &str) -> Result<Arc<Plugin>, String> {
    let path = sources.plugin_path(name);
    if !path.is_file() {
        return Err(format!(
            "plugin file `{}` not found; build the plugins (`cargo xtask plugins`) or pass --plugins",
            path.display()
        ));
    }
    runtime.load_file(&path).map_err(|e| match e.kind {
        LoadErrorKind::Read { .. } => e.to_string(),
        _ => format!("{e} (file `{}`)", path.display()),
    })
}

fn exports_list(plugin: &Plugin) -> String {
    let names: Vec<_> = plugin
        .capabilities()
        .iter()
        .map(|c| format!("`{}`", c.manifest_key()))
        .collect();
    names.join(", ")
}
