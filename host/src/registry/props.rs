//! Property tests of the manifest parser: any text gives a manifest or
//! diagnostics (never a panic), and a manifest that is accepted holds exactly
//! what its file says.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::manifest::{MAX_MEMORY_MIB, MAX_OUTPUT_KIB, MAX_TIMEOUT_MS, Manifest, OnPluginError};
use crate::contract::Capability;
use crate::prop_text::{mutate, quoted};
use crate::runtime::InstanceMode;

const SAMPLE: &str = include_str!("../../../rules/support-contract.toml");

fn parse(source: &str) -> Result<Manifest, Vec<super::Diagnostic>> {
    Manifest::parse(Path::new("rules/svc.toml"), source)
}

/// What a generated manifest file says.
#[derive(Debug, Clone)]
struct Spec {
    display_name: Option<String>,
    webhook: Option<String>,
    plugins: BTreeMap<Capability, String>,
    config: BTreeMap<String, String>,
    memory_mib: Option<u64>,
    timeout_ms: Option<u64>,
    output_kib: Option<u64>,
    instances: Option<InstanceMode>,
    max_calls: Option<u32>,
    on_plugin_error: Option<OnPluginError>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let capability = prop::sample::select(Capability::ALL.to_vec());
    let plugins = prop::collection::btree_map(capability, "[A-Za-z0-9_-]{1,64}", 1..4);
    let config = prop::collection::btree_map("\\PC{0,12}", "\\PC{0,40}", 0..6);
    let limits = (
        prop::option::of(1..=MAX_MEMORY_MIB),
        prop::option::of(1..=MAX_TIMEOUT_MS),
        prop::option::of(1..=MAX_OUTPUT_KIB),
        prop::option::of(prop_oneof![
            Just(InstanceMode::Warm),
            Just(InstanceMode::Fresh)
        ]),
        prop::option::of(1..=u32::MAX),
        prop::option::of(prop_oneof![
            Just(OnPluginError::Deny),
            Just(OnPluginError::LastGood)
        ]),
    );
    (
        prop::option::of("\\PC{0,30}"),
        prop::option::of("https?://[a-z0-9.:/]{1,30}"),
        plugins,
        config,
        limits,
    )
        .prop_map(|(display_name, webhook, plugins, config, limits)| Spec {
            display_name,
            webhook,
            plugins,
            config,
            memory_mib: limits.0,
            timeout_ms: limits.1,
            output_kib: limits.2,
            instances: limits.3,
            max_calls: limits.4,
            on_plugin_error: limits.5,
        })
}

fn render(spec: &Spec) -> String {
    let mut out = String::from("id = \"svc\"\n");
    if let Some(name) = &spec.display_name {
        out += &format!("display_name = {}\n", quoted(name));
    }
    if let Some(url) = &spec.webhook {
        out += &format!("webhook = {}\n", quoted(url));
    }
    out += "[plugins]\n";
    for (capability, name) in &spec.plugins {
        out += &format!("{} = {}\n", capability.manifest_key(), quoted(name));
    }
    out += "[config]\n";
    for (key, value) in &spec.config {
        out += &format!("{} = {}\n", quoted(key), quoted(value));
    }
    out += "[limits]\n";
    let mut limit = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            out += &format!("{key} = {value}\n");
        }
    };
    limit("memory_mib", spec.memory_mib.map(|v| v.to_string()));
    limit("timeout_ms", spec.timeout_ms.map(|v| v.to_string()));
    limit("output_kib", spec.output_kib.map(|v| v.to_string()));
    limit(
        "instances",
        spec.instances.map(|m| match m {
            InstanceMode::Warm => "\"warm\"".into(),
            InstanceMode::Fresh => "\"fresh\"".into(),
        }),
    );
    limit(
        "max_calls_per_instance",
        spec.max_calls.map(|v| v.to_string()),
    );
    limit(
        "on_plugin_error",
        spec.on_plugin_error.map(|o| match o {
            OnPluginError::Deny => "\"deny\"".into(),
            OnPluginError::LastGood => "\"last-good\"".into(),
        }),
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_gives_a_manifest_or_diagnostics_with_lines_in_the_file(source in "\\PC{0,300}") {
        if let Err(problems) = parse(&source) {
            prop_assert!(!problems.is_empty());
            let lines = source.lines().count().max(1) + 1;
            for p in problems {
                prop_assert!(p.line.is_none_or(|l| l >= 1 && l <= lines), "{p:?} in {lines} lines");
            }
        }
    }

    #[test]
    fn an_edited_sample_never_panics(at in 0usize..1000, len in 0usize..40, insert in "[\\[\\]=\"'#\\n a-z0-9_.-]{0,12}") {
        let _ = parse(&mutate(SAMPLE, at, len, insert.as_str()));
    }

    #[test]
    fn an_accepted_manifest_holds_exactly_what_its_file_says(spec in spec()) {
        let source = render(&spec);
        let m = parse(&source).map_err(|d| TestCaseError::fail(format!("{d:?}\n{source}")))?;
        prop_assert_eq!(m.id, "svc");
        prop_assert_eq!(m.display_name, spec.display_name.clone().unwrap_or_else(|| "svc".into()));
        prop_assert_eq!(m.webhook, spec.webhook.clone());
        prop_assert_eq!(&m.plugins, &spec.plugins);
        prop_assert_eq!(&m.config.0, &spec.config);
        let defaults = crate::runtime::Limits::default();
        prop_assert_eq!(m.limits.memory_bytes, spec.memory_mib.map_or(defaults.memory_bytes, |v| v << 20));
        prop_assert_eq!(m.limits.timeout, spec.timeout_ms.map_or(defaults.timeout, Duration::from_millis));
        prop_assert_eq!(m.limits.output_bytes, spec.output_kib.map_or(defaults.output_bytes, |v| v << 10));
        prop_assert_eq!(m.limits.instances, spec.instances.unwrap_or(defaults.instances));
        prop_assert_eq!(m.limits.max_calls_per_instance, spec.max_calls.unwrap_or(defaults.max_calls_per_instance));
        prop_assert_eq!(m.on_plugin_error, spec.on_plugin_error.unwrap_or_default());
    }

    #[test]
    fn a_limit_out_of_range_is_refused_not_wrapped(kib in (MAX_OUTPUT_KIB + 1)..=u64::MAX, mib in (MAX_MEMORY_MIB + 1)..=u64::MAX) {
        let base = "id = \"svc\"\n[plugins]\nverifier = \"v\"\n[limits]\n";
        let output = format!("{base}output_kib = {}\n", kib.min(i64::MAX as u64));
        let memory = format!("{base}memory_mib = {}\n", mib.min(i64::MAX as u64));
        prop_assert!(parse(&output).is_err(), "accepted: {}", output);
        prop_assert!(parse(&memory).is_err(), "accepted: {}", memory);
    }
}
