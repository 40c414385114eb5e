//! Property tests of the case parser: any TOML or JSON text gives a case or a
//! diagnostic (never a panic), and a case reads the same in either format.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::case::{Case, Format};
use crate::prop_text::mutate;

const SAMPLE: &str =
    include_str!("../../../rules/conference-split/cases/leave-splits-with-remainder.toml");

fn parse(source: &str, format: Format) -> Result<Case, crate::registry::Diagnostic> {
    Case::parse(Path::new("cases/x.toml"), source, format)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,20}"
}

fn properties() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,8}", text(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
}

/// A verify case as a JSON value: what both formats must read alike.
fn verify_case() -> impl Strategy<Value = Value> {
    let status = prop::sample::select(vec!["active", "expired", "suspended"]);
    (
        text(),
        (text(), text(), text(), properties()),
        (text(), status, any::<bool>(), text(), properties()),
        properties(),
        0i64..4_000_000_000,
    )
        .prop_map(|(description, request, account, config, secs)| {
            let (id, account_id, req_description, attributes) = request;
            let (acc_id, status, paid_up, tier, acc_attributes) = account;
            let now = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            json!({
                "description": description,
                "now": now.to_string(),
                "config": config,
                "verify": {
                    "request": {"id": id, "account_id": account_id, "description": req_description, "attributes": attributes},
                    "account": {"id": acc_id, "status": status, "paid_up": paid_up, "tier": tier, "attributes": acc_attributes},
                },
                "expect": {"verdict": "pass"},
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_gives_a_case_or_a_diagnostic(source in "\\PC{0,300}") {
        let _ = parse(&source, Format::Toml);
        let _ = parse(&source, Format::Json);
    }

    #[test]
    fn an_edited_sample_never_panics(at in 0usize..700, len in 0usize..40, insert in "[\\[\\]{}=,\"#\\n a-z0-9_.:-]{0,12}") {
        let _ = parse(&mutate(SAMPLE, at, len, insert.as_str()), Format::Toml);
    }

    #[test]
    fn a_case_reads_the_same_from_toml_and_json(case in verify_case()) {
        let json = serde_json::to_string(&case).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let toml = toml::to_string(&case).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let from_json = parse(&json, Format::Json).map_err(|d| TestCaseError::fail(format!("{d}\n{json}")))?;
        let from_toml = parse(&toml, Format::Toml).map_err(|d| TestCaseError::fail(format!("{d}\n{toml}")))?;
        prop_assert_eq!(format!("{:?}", from_json.call), format!("{:?}", from_toml.call));
        prop_assert_eq!(from_json.now, from_toml.now);
        prop_assert_eq!(&from_json.config.0, &from_toml.config.0);
        prop_assert_eq!(&from_json.description, &from_toml.description);
        prop_assert_eq!(from_json.description.as_deref(), case["description"].as_str());
        prop_assert_eq!(from_json.now.to_string(), case["now"].as_str().unwrap_or_default());
        let request = format!("{:?}", from_json.call);
        let id = case["verify"]["request"]["id"].as_str().unwrap_or_default();
        prop_assert!(request.contains(&format!("{id:?}")), "{} lacks {:?}", request, id);
    }
}
