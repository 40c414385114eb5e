//! Property tests of the flow-definition parser: any text gives a definition
//! or a diagnostic (never a panic), and an accepted definition reads back
//! equal from what it writes.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use super::definition::{ACTIONS, Definition, DemandSpec, TaskKind, TaskSpec};
use crate::prop_text::mutate;

const SAMPLE: &str = include_str!("../../../rules/flows/connect-client.toml");

fn parse(source: &str) -> Result<Definition, crate::registry::Diagnostic> {
    Definition::parse(Path::new("flows/generated.toml"), source)
}

/// What a definition file holds, as the parser reads it.
#[derive(Serialize)]
struct File<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: &'a Option<String>,
    tasks: &'a [TaskSpec],
    demands: &'a BTreeMap<String, DemandSpec>,
}

fn params() -> impl Strategy<Value = Map<String, Value>> {
    let value = prop_oneof![
        "\\PC{0,12}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ];
    prop::collection::btree_map("[a-z_]{1,8}", value, 0..3).prop_map(|m| m.into_iter().collect())
}

/// A task valid for its kind.
fn task() -> impl Strategy<Value = TaskSpec> {
    let name = "[A-Za-z][A-Za-z0-9 _-]{0,15}";
    let role = "[a-z]{1,10}";
    let action = prop::sample::select(ACTIONS.to_vec());
    let after = (
        1u64..10_000,
        prop::sample::select(vec!["ms", "s", "m", "h", "d"]),
    )
        .prop_map(|(n, unit)| format!("{n}{unit}"));
    prop_oneof![
        (name, role, params()).prop_map(|(name, role, params)| TaskSpec {
            name,
            kind: TaskKind::Manual,
            role: Some(role),
            action: None,
            params,
            after: None,
            until: None,
        }),
        (name, role, action, params()).prop_map(|(name, role, action, params)| TaskSpec {
            name,
            kind: TaskKind::Auto,
            role: Some(role),
            action: Some(action.into()),
            params,
            after: None,
            until: None,
        }),
        (name, after).prop_map(|(name, after)| TaskSpec {
            name,
            kind: TaskKind::Timer,
            role: None,
            action: None,
            params: Map::new(),
            after: Some(after),
            until: None,
        }),
        (name, "[a-z_]{1,10}").prop_map(|(name, until)| TaskSpec {
            name,
            kind: TaskKind::Timer,
            role: None,
            action: None,
            params: Map::new(),
            after: None,
            until: Some(until),
        }),
    ]
}

fn definition() -> impl Strategy<Value = Definition> {
    (
        prop::option::of("\\PC{0,30}"),
        prop::collection::vec(task(), 1..5),
        prop::collection::btree_map("[a-z ]{1,12}", task(), 0..3),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(description, tasks, demands, before)| {
            let target = tasks[before.index(tasks.len())].name.clone();
            let demands = demands
                .into_iter()
                .enumerate()
                .map(|(i, (problem, task))| {
                    let before = (i % 2 == 0).then(|| target.clone());
                    (problem, DemandSpec { task, before })
                })
                .collect();
            Definition {
                name: "generated".into(),
                description,
                tasks,
                demands,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_gives_a_definition_or_a_diagnostic(source in "\\PC{0,300}") {
        let _ = parse(&source);
    }

    #[test]
    fn an_edited_sample_never_panics(at in 0usize..1500, len in 0usize..40, insert in "[\\[\\]{}=,\"#\\n a-z0-9_.-]{0,12}") {
        let _ = parse(&mutate(SAMPLE, at, len, insert.as_str()));
    }

    #[test]
    fn an_accepted_definition_reads_back_equal(d in definition()) {
        let file = File { description: &d.description, tasks: &d.tasks, demands: &d.demands };
        let source = toml::to_string(&file).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let read = parse(&source).map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
        prop_assert_eq!(read, d);
    }

    #[test]
    fn durations_read_back_or_are_refused(n in any::<u64>(), unit in prop::sample::select(vec!["ms", "s", "m", "h", "d", "w", ""])) {
        let factor: u64 = match unit { "ms" => 1, "s" => 1_000, "m" => 60_000, "h" => 3_600_000, "d" => 86_400_000, _ => 0 };
        let read = super::definition::parse_duration(&format!("{n}{unit}"));
        match n.checked_mul(factor) {
            Some(ms) if factor > 0 => prop_assert_eq!(read, Ok(std::time::Duration::from_millis(ms))),
            _ => prop_assert!(read.is_err()),
        }
    }
}
