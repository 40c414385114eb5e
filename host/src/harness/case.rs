//! Case files: `rules/<service>/cases/<name>.toml`, one call with its inputs
//! and the expected outcome.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;

use crate::contract::{
    Call, OnEventInput, ProcedureInput, Properties, ResetInput, RestrictionInput, VerifyInput,
};
use crate::registry::Diagnostic;

/// The time a case runs at when it gives none: fixed, so cases are repeatable.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

/// One sandbox case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub path: PathBuf,
    pub description: Option<String>,
    pub now: Timestamp,
    /// Put over the manifest's `[config]` for this case.
    pub config: Properties,
    pub call: Call,
    /// A partial match against the observed JSON; `None` only for `eval`.
    pub expect: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    description: Option<String>,
    now: Option<Timestamp>,
    #[serde(default)]
    config: Properties,
    verify: Option<VerifyInput>,
    procedure: Option<ProcedureInput>,
    restriction: Option<RestrictionInput>,
    reset: Option<ResetInput>,
    on_event: Option<OnEventInput>,
    expect: Option<serde_json::Value>,
}

const CALL_TABLES: &str = "`verify`, `procedure`, `restriction`, `reset` or `on_event`";

impl Case {
    /// Parses a case from TOML (case files) or JSON (`eval` on stdin).
    pub fn parse(path: &Path, source: &str, format: Format) -> Result<Case, Diagnostic> {
        let file: CaseFile = match format {
            Format::Toml => {
                toml::from_str(source).map_err(|e| Diagnostic::from_toml(path, source, &e))?
            }
            Format::Json => serde_json::from_str(source)
                .map_err(|e| Diagnostic::error(path, Some(e.line()), e.to_string()))?,
        };
        let mut calls: Vec<Call> = [
            file.verify.map(Call::Verify),
            file.procedure.map(Call::Procedure),
            file.restriction.map(Call::Restriction),
            file.reset.map(Call::Reset),
            file.on_event.map(Call::OnEvent),
        ]
        .into_iter()
        .flatten()
        .collect();
        let call = match calls.len() {
            1 => calls.remove(0),
            0 => {
                return Err(Diagnostic::error(
                    path,
                    None,
                    format!("the case has no call: add one table, {CALL_TABLES}"),
                ));
            }
            _ => {
                let names: Vec<_> = calls.iter().map(|c| format!("`{}`", c.name())).collect();
                return Err(Diagnostic::error(
                    path,
                    None,
                    format!(
                        "the case has {} calls ({}); a case makes exactly one",
                        calls.len(),
                        names.join(", ")
                    ),
                ));
            }
        };
        if let Some(expect) = &file.expect
            && !expect.is_object()
        {
            return Err(Diagnostic::error(path, None, "`expect` must be a table"));
        }
        let default_now = DEFAULT_NOW
            .parse::<Timestamp>()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        Ok(Case {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_owned(),
            description: file.description,
            now: file.now.unwrap_or(default_now),
            config: file.config,
            call,
            expect: file.expect,
        })
    }

    /// Reads a case file, by extension (`.json` or TOML).
    pub fn read(path: &Path) -> Result<Case, Diagnostic> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::error(path, None, format!("cannot read the case: {e}")))?;
        let format = if path.extension().is_some_and(|x| x == "json") {
            Format::Json
        } else {
            Format::Toml
        };
        Case::parse(path, &source, format)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// The case files of one service (`<rules>/<service>/cases/*.toml`), sorted.
pub fn case_files(rules_dir: &Path, service: &str) -> Vec<PathBuf> {
    let dir = rules_dir.join(service).join("cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Case, Diagnostic> {
        Case::parse(Path::new("cases/x.toml"), source, Format::Toml)
    }

    #[test]
    fn a_verify_case_reads() {
        let case = parse(
            "now = \"2026-11-20T10:00:00Z\"\nconfig = { lapse_days = 3 }\n[verify]\nrequest = { id = \"r1\", account_id = \"a\" }\n[expect]\nverdict = \"fail\"\n",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(case.name, "x");
        assert_eq!(case.call.name(), "verify");
        assert_eq!(case.config.get("lapse_days"), Some("3"));
        assert_eq!(case.expect, Some(serde_json::json!({"verdict": "fail"})));
    }

    #[test]
    fn exactly_one_call_is_required() {
        let none = parse("[expect]\nverdict = \"pass\"\n")
            .err()
            .map(|d| d.message);
        assert!(none.is_some_and(|m| m.contains("has no call")));
        let two = parse("[verify]\nrequest = { id = \"r\", account_id = \"a\" }\n[procedure]\nrequest = { id = \"r\", account_id = \"a\" }\nfailure = { code = \"expired\" }\n")
            .err()
            .map(|d| d.message);
        assert!(two.is_some_and(|m| m.contains("has 2 calls")));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let err = parse("[verify]\nrequest = { id = \"r\", account_id = \"a\" }\n[expcet]\nverdict = \"pass\"\n").err();
        let err = err.unwrap_or_else(|| panic!("typo accepted"));
        assert_eq!(err.line, Some(3));
        assert!(
            err.message.contains("unknown field `expcet`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bad_enum_values_are_reported() {
        let err = parse("[verify]\nrequest = { id = \"r\", account_id = \"a\" }\naccount = { id = \"a\", status = \"zombie\", paid_up = true }\n").err();
        assert!(err.is_some_and(|d| d.message.contains("zombie") && d.line == Some(3)));
    }
}
