//! Flow definitions: `rules/flows/<name>.toml`, or built from code.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::registry::Diagnostic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// An action of the core, run when due.
    Auto,
    /// Done by whoever holds `role`; the flow waits for their completion.
    Manual,
    /// Waits for a duration.
    Timer,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Auto => "auto",
            TaskKind::Manual => "manual",
            TaskKind::Timer => "timer",
        }
    }
}

/// The core's automatic actions. The `reconciliation-*` actions belong to the
/// reconciliation flows that entitlement builds.
pub const ACTIONS: &[&str] = &[
    "allocate-credentials",
    "notify",
    "set",
    "reconciliation-notice",
    "reconciliation-lapse",
    "plan-reset-sweep",
    "offer-expire",
];

/// One task of a definition (or of a demand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// For timers: `500ms`, `2s`, `10m`, `1h`, `10d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// For timers: the flow-context key holding the time to wait until
    /// (milliseconds since the epoch); a missing or null value fires at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl TaskSpec {
    /// A timer of a built-in flow: it waits until the time (ms) the flow's
    /// context holds under `key`.
    pub fn timer_until(name: &str, key: &str) -> TaskSpec {
        TaskSpec {
            until: Some(key.into()),
            ..TaskSpec::bare(name, TaskKind::Timer)
        }
    }

    /// An automatic task of a built-in flow, running `action`.
    pub fn auto(name: &str, action: &str) -> TaskSpec {
        TaskSpec {
            action: Some(action.into()),
            ..TaskSpec::bare(name, TaskKind::Auto)
        }
    }

    /// The same task with `params` (a JSON object) for its action.
    pub fn with_params(self, params: Value) -> TaskSpec {
        TaskSpec {
            params: params.as_object().cloned().unwrap_or_default(),
            ..self
        }
    }

    fn bare(name: &str, kind: TaskKind) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            kind,
            role: None,
            action: None,
            params: Map::new(),
            after: None,
            until: None,
        }
    }

    /// Checks the spec makes sense for its kind; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("a task needs a `name`".into());
        }
        let name = &self.name;
        match self.kind {
            TaskKind::Manual if self.role.as_deref().is_none_or(str::is_empty) => {
                return Err(format!("manual task `{name}` needs a `role` (who does it)"));
            }
            TaskKind::Auto => match self.action.as_deref() {
                None => {
                    return Err(format!(
                        "automatic task `{name}` needs an `action`: one of {}",
                        ACTIONS.join(", ")
                    ));
                }
                Some(a) if !ACTIONS.contains(&a) => {
                    return Err(format!(
                        "task `{name}`: unknown action `{a}`; actions are {}",
                        ACTIONS.join(", ")
                    ));
                }
                Some("notify") if self.role.is_none() => {
                    return Err(format!(
                        "task `{name}`: the `notify` action needs a `role` to notify"
                    ));
                }
                _ => {}
            },
            TaskKind::Timer => match (self.after.as_deref().map(parse_duration), &self.until) {
                (None, None) => {
                    return Err(format!(
                        "timer task `{name}` needs `after`, e.g. \"10s\" or \"2d\""
                    ));
                }
                (Some(Err(e)), _) => return Err(format!("timer task `{name}`: {e}")),
                (Some(Ok(_)), Some(_)) => {
                    return Err(format!(
                        "timer task `{name}`: give `after` or `until`, not both"
                    ));
                }
                _ => {}
            },
            TaskKind::Manual => {}
        }
        Ok(())
    }

    /// The stored parameters: what the engine needs to run the task later,
    /// whatever becomes of the definition.
    pub fn stored_params(&self) -> Value {
        let mut params = self.params.clone();
        if let Some(Ok(after)) = self.after.as_deref().map(parse_duration) {
            params.insert("after_ms".into(), Value::from(after.as_millis() as u64));
        }
        if let Some(key) = &self.until {
            params.insert("until".into(), Value::from(key.clone()));
        }
        Value::Object(params)
    }
}

/// A known problem that may arise while a flow runs, and what it inserts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandSpec {
    pub task: TaskSpec,
    /// Insert before the first pending task with this name; by default right
    /// after the current task.
    #[serde(default)]
    pub before: Option<String>,
}

/// A named, ordered list of tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    pub name: String,
    pub description: Option<String>,
    pub tasks: Vec<TaskSpec>,
    pub demands: BTreeMap<String, DemandSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefinitionFile {
    description: Option<String>,
    tasks: Vec<TaskSpec>,
    #[serde(default)]
    demands: BTreeMap<String, DemandSpec>,
}

impl Definition {
    /// Builds a definition from code (reconciliation and provisioning do).
    pub fn new(name: &str, tasks: Vec<TaskSpec>) -> Result<Definition, String> {
        let definition = Definition {
            name: name.into(),
            description: None,
            tasks,
            demands: BTreeMap::new(),
        };
        definition.validate()?;
        Ok(definition)
    }

    fn validate(&self) -> Result<(), String> {
        if self.tasks.is_empty() {
            return Err("a flow needs at least one task".into());
        }
        for task in &self.tasks {
            task.validate()?;
        }
        for (problem, demand) in &self.demands {
            demand
                .task
                .validate()
                .map_err(|e| format!("demand `{problem}`: {e}"))?;
            if let Some(before) = &demand.before
                && !self.tasks.iter().any(|t| &t.name == before)
            {
                return Err(format!(
                    "demand `{problem}`: `before` names `{before}`, which is not a task of this flow"
                ));
            }
        }
        Ok(())
    }

    pub fn parse(path: &Path, source: &str) -> Result<Definition, Diagnostic> {
        let file: DefinitionFile =
            toml::from_str(source).map_err(|e| Diagnostic::from_toml(path, source, &e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let definition = Definition {
            name,
            description: file.description,
            tasks: file.tasks,
            demands: file.demands,
        };
        definition
            .validate()
            .map_err(|e| Diagnostic::error(path, None, e))?;
        Ok(definition)
    }
}

/// Reads every `<rules>/flows/*.toml`; a missing folder means no flows.
pub fn load_definitions(rules_dir: &Path) -> (BTreeMap<String, Definition>, Vec<Diagnostic>) {
    let dir = rules_dir.join("flows");
    let mut definitions = BTreeMap::new();
    let mut diagnostics = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (definitions, diagnostics);
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| Diagnostic::error(&file, None, format!("cannot read: {e}")))
            .and_then(|source| Definition::parse(&file, &source));
        match parsed {
            Ok(definition) => {
                definitions.insert(definition.name.clone(), definition);
            }
            Err(d) => diagnostics.push(d),
        }
    }
    (definitions, diagnostics)
}

/// `500ms`, `2s`, `10m`, `1h`, `10d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"10s\" or \"2d\""))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}`; use ms, s, m, h or d"
            ));
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10d"), Ok(Duration::from_secs(864_000)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_sample_definition_reads() {
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/flows/connect-client.toml"),
        )
        .unwrap_or_default();
        let d = Definition::parse(Path::new("flows/connect-client.toml"), &source)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.name, "connect-client");
        assert_eq!(d.tasks.len(), 3);
        assert!(d.demands.contains_key("line fault"));
    }

    #[test]
    fn bad_tasks_are_explained() {
        let bad = |toml: &str| {
            Definition::parse(Path::new("flows/x.toml"), toml)
                .err()
                .map(|d| d.message)
                .unwrap_or_default()
        };
        assert!(bad("[[tasks]]\nname = \"a\"\nkind = \"manual\"\n").contains("needs a `role`"));
        assert!(
            bad("[[tasks]]\nname = \"a\"\nkind = \"auto\"\naction = \"teleport\"\n")
                .contains("unknown action `teleport`")
        );
        assert!(
            bad("[[tasks]]\nname = \"a\"\nkind = \"timer\"\nafter = \"soon\"\n")
                .contains("not a duration")
        );
        assert!(bad("[[tasks]]\nname = \"a\"\nkind = \"sometimes\"\n").contains("unknown variant"));
        assert!(bad("tasks = []\n").contains("at least one task"));
    }
}
