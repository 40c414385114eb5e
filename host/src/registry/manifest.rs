//! Service manifests: `rules/<service>.toml`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, line_of};
use crate::contract::{Capability, Properties};
use crate::runtime::{InstanceMode, Limits};

/// What a service does when its live plugin faults (trap, time or memory limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPluginError {
    /// Answer with an error; the request is neither passed nor failed.
    #[default]
    Deny,
    /// Re-evaluate on the last version that served without fault.
    LastGood,
}

/// A validated service manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub id: String,
    pub display_name: String,
    pub webhook: Option<String>,
    /// The plugin name (file stem under the plugins folder) per capability.
    pub plugins: BTreeMap<Capability, String>,
    pub config: Properties,
    pub limits: Limits,
    pub on_plugin_error: OnPluginError,
    pub path: PathBuf,
    /// Where each capability's plugin is named, for diagnostics.
    pub(crate) plugin_lines: BTreeMap<Capability, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    id: Spanned<String>,
    display_name: Option<String>,
    webhook: Option<Spanned<String>>,
    plugins: Spanned<PluginsFile>,
    #[serde(default)]
    config: Properties,
    #[serde(default)]
    limits: LimitsFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginsFile {
    verifier: Option<Spanned<String>>,
    reconciler: Option<Spanned<String>>,
    plan_policy: Option<Spanned<String>>,
    session_charging: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory_mib: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    output_kib: Option<Spanned<u64>>,
    instances: Option<InstanceMode>,
    max_calls_per_instance: Option<Spanned<u32>>,
    on_plugin_error: Option<OnPluginError>,
}

/// Largest memory limit a manifest may ask for, in MiB (the runtime's pool
/// slot size must be at least this).
pub const MAX_MEMORY_MIB: u64 = 256;
/// Longest time limit a manifest may ask for, in ms.
pub const MAX_TIMEOUT_MS: u64 = 10_000;
/// Largest answer a manifest may allow a call, in KiB (64 MiB).
pub const MAX_OUTPUT_KIB: u64 = 64 << 10;

/// Whether `id` is a usable service id: lowercase letters, digits and dashes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

impl Manifest {
    /// Parses and validates one manifest, reporting every problem found.
    pub fn parse(path: &Path, source: &str) -> Result<Manifest, Vec<Diagnostic>> {
        let file: ManifestFile =
            toml::from_str(source).map_err(|e| vec![Diagnostic::from_toml(path, source, &e)])?;
        let mut problems = Vec::new();
        let at = |span: Range<usize>| Some(line_of(source, span.start));

        let id = file.id.get_ref().clone();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !valid_id(&id) {
            problems.push(Diagnostic::error(
                path,
                at(file.id.span()),
                format!("service id `{id}` is not valid: use lowercase letters, digits and dashes"),
            ));
        } else if id != stem {
            problems.push(Diagnostic::error(path, at(file.id.span()), format!(
                "service id `{id}` does not match the file name `{stem}.toml`; rename one of them"
            )));
        }

        if let Some(webhook) = &file.webhook {
            let url = webhook.get_ref();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(Diagnostic::error(
                    path,
                    at(webhook.span()),
                    format!("webhook `{url}` is not an http:// or https:// URL"),
                ));
            }
        }

        let plugins_span = file.plugins.span();
        let p = file.plugins.into_inner();
        let mut plugins = BTreeMap::new();
        let mut plugin_lines = BTreeMap::new();
        for (capability, name) in [
            (Capability::Verifier, p.verifier),
            (Capability::Reconciler, p.reconciler),
            (Capability::PlanPolicy, p.plan_policy),
            (Capability::SessionCharging, p.session_charging),
        ] {
            let Some(name) = name else { continue };
            let line = line_of(source, name.span().start);
            let name = name.into_inner();
            if !valid_plugin_name(&name) {
                problems.push(Diagnostic::error(path, Some(line), format!(
                    "plugin name `{name}` is not valid: use letters, digits, `-` and `_` (the file is <plugins>/<name>.wasm)"
                )));
            }
            plugin_lines.insert(capability, line);
            plugins.insert(capability, name);
        }
        if plugins.is_empty() {
            problems.push(Diagnostic::error(
                path,
                at(plugins_span),
                format!(
                    "`[plugins]` names no plugin; set at least one of {}",
                    Capability::ALL
                        .map(|c| format!("`{}`", c.manifest_key()))
                        .join(", ")
                ),
            ));
        }

        let defaults = Limits::default();
        let l = file.limits;
        let mut limits = defaults;
        if let Some(mib) = l.memory_mib {
            if *mib.get_ref() == 0 || *mib.get_ref() > MAX_MEMORY_MIB {
                problems.push(Diagnostic::error(
                    path,
                    at(mib.span()),
                    format!("`memory_mib` must be between 1 and {MAX_MEMORY_MIB}"),
                ));
            }
            limits.memory_bytes = mib.get_ref() << 20;
        }
        if let Some(ms) = l.timeout_ms {
            if *ms.get_ref() == 0 || *ms.get_ref() > MAX_TIMEOUT_MS {
                problems.push(Diagnostic::error(
                    path,
                    at(ms.span()),
                    format!("`timeout_ms` must be between 1 and {MAX_TIMEOUT_MS}"),
                ));
            }
            limits.timeout = Duration::from_millis(*ms.get_ref());
        }
        if let Some(kib) = l.output_kib {
            if *kib.get_ref() == 0 || *kib.get_ref() > MAX_OUTPUT_KIB {
                problems.push(Diagnostic::error(
                    path,
                    at(kib.span()),
                    format!("`output_kib` must be between 1 and {MAX_OUTPUT_KIB}"),
                ));
            }
            limits.output_bytes = kib.get_ref() << 10;
        }
        if let Some(calls) = l.max_calls_per_instance {
            if *calls.get_ref() == 0 {
                problems.push(Diagnostic::error(
                    path,
                    at(calls.span()),
                    "`max_calls_per_instance` must be at least 1",
                ));
            }
            limits.max_calls_per_instance = *calls.get_ref();
        }
        limits.instances = l.instances.unwrap_or(defaults.instances);

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Manifest {
            display_name: file.display_name.unwrap_or_else(|| id.clone()),
            id,
            webhook: file.webhook.map(Spanned::into_inner),
            plugins,
            config: file.config,
            limits,
            on_plugin_error: l.on_plugin_error.unwrap_or_default(),
            path: path.to_owned(),
            plugin_lines,
        })
    }
}

/// Plugin names become file names: keep them to a safe alphabet.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Manifest, Vec<Diagnostic>> {
        Manifest::parse(Path::new("rules/support-contract.toml"), source)
    }

    #[test]
    fn a_full_manifest_reads_with_defaults_filled_in() {
        let m = parse(
            "id = \"support-contract\"\n[plugins]\nverifier = \"support-contract\"\n[config]\nlapse_days = 10\n[limits]\ntimeout_ms = 20\n",
        );
        let m = m.unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(
            m.plugins.get(&Capability::Verifier).map(String::as_str),
            Some("support-contract")
        );
        assert_eq!(m.config.get("lapse_days"), Some("10"));
        assert_eq!(m.limits.timeout, Duration::from_millis(20));
        assert_eq!(m.limits.memory_bytes, 16 << 20);
        assert_eq!(m.display_name, "support-contract");
    }

    #[test]
    fn unknown_capability_is_reported_with_its_line() {
        let errs = parse("id = \"support-contract\"\n[plugins]\nteleporter = \"x\"\n")
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(3));
        assert!(
            errs[0].message.contains("unknown field `teleporter`"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn all_semantic_problems_are_reported_at_once() {
        let errs =
            parse("id = \"other\"\n[plugins]\n[limits]\nmemory_mib = 0\ntimeout_ms = 99999\n")
                .err()
                .unwrap_or_default();
        let lines: Vec<_> = errs.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![Some(1), Some(2), Some(4), Some(5)], "{errs:?}");
        assert!(errs[0].message.contains("does not match the file name"));
    }

    #[test]
    fn bad_toml_names_the_line() {
        let errs = parse("id = \"support-contract\"\n[plugins\n")
            .err()
            .unwrap_or_default();
        assert_eq!(errs[0].line, Some(2));
    }
}
