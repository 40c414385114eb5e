//! Partial matching of an observed JSON value against an expectation: every
//! key the expectation gives must be there with an equal value; objects match
//! recursively, arrays element by element and in full length.

use serde_json::Value;

/// `None` when `observed` satisfies `expected`; otherwise where and how it differs.
pub fn mismatch(expected: &Value, observed: &Value) -> Option<String> {
    differ("", expected, observed)
}

fn differ(at: &str, expected: &Value, observed: &Value) -> Option<String> {
    let here = if at.is_empty() {
        "the outcome".to_owned()
    } else {
        format!("`{at}`")
    };
    match (expected, observed) {
        (Value::Object(want), Value::Object(got)) => want.iter().find_map(|(key, want)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match got.get(key) {
                None => Some(format!(
                    "`{path}`: expected {}, but the outcome has no `{key}`",
                    show(want)
                )),
                Some(got) => differ(&path, want, got),
            }
        }),
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                return Some(format!(
                    "{here}: expected {} items, got {}",
                    want.len(),
                    got.len()
                ));
            }
            want.iter()
                .zip(got)
                .enumerate()
                .find_map(|(i, (w, g))| differ(&format!("{at}[{i}]"), w, g))
        }
        (want, got) if numbers_equal(want, got) || want == got => None,
        (want, got) => Some(format!(
            "{here}: expected {}, got {}",
            show(want),
            show(got)
        )),
    }
}

/// `10` and `10.0` are the same number (TOML writes floats, plugins return integers).
fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => a.is_number() && b.is_number() && x == y,
        _ => false,
    }
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 120 {
        let mut end = 117;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    } else {
        text
    }
}

/// The keys of `expected`, looked up in `observed`, as `key=value` pairs: what
/// a results table shows so the two columns line up.
pub fn project(expected: &Value, observed: &Value) -> String {
    let mut out = Vec::new();
    flatten("", expected, Some(observed), &mut out);
    out.join(" ")
}

/// `expected` itself as `key=value` pairs.
pub fn summarize(expected: &Value) -> String {
    let mut out = Vec::new();
    flatten("", expected, None, &mut out);
    out.join(" ")
}

fn flatten(at: &str, expected: &Value, observed: Option<&Value>, out: &mut Vec<String>) {
    match expected {
        Value::Object(map) if !map.is_empty() => {
            for (key, want) in map {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                let got = observed.map(|o| o.get(key).unwrap_or(&Value::Null));
                flatten(&path, want, got, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, want) in items.iter().enumerate() {
                let got = observed.map(|o| o.get(i).unwrap_or(&Value::Null));
                flatten(&format!("{at}[{i}]"), want, got, out);
            }
        }
        leaf => {
            let value = observed.unwrap_or(leaf);
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Array(items) => format!("[{} items]", items.len()),
                Value::Null if observed.is_some() => "(none)".to_owned(),
                other => other.to_string(),
            };
            out.push(format!("{at}={text}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_observed_keys_are_fine() {
        let got = json!({"verdict": "fail", "code": "expired", "reason": "gone"});
        assert_eq!(
            mismatch(&json!({"verdict": "fail", "code": "expired"}), &got),
            None
        );
    }

    #[test]
    fn a_difference_names_its_path() {
        let got = json!({"charges": [{"amount": 5}, {"amount": 6}]});
        let m = mismatch(&json!({"charges": [{"amount": 5}, {"amount": 7}]}), &got);
        assert_eq!(m.as_deref(), Some("`charges[1].amount`: expected 7, got 6"));
        let short = mismatch(&json!({"charges": [{"amount": 5}]}), &got);
        assert_eq!(short.as_deref(), Some("`charges`: expected 1 items, got 2"));
        let missing = mismatch(&json!({"level": "basic"}), &json!({"verdict": "fail"}));
        assert!(missing.is_some_and(|m| m.contains("has no `level`")));
    }

    #[test]
    fn integers_and_floats_compare_by_value() {
        assert_eq!(mismatch(&json!({"n": 10.0}), &json!({"n": 10})), None);
        assert!(mismatch(&json!({"n": "10"}), &json!({"n": 10})).is_some());
    }

    #[test]
    fn projection_lines_up_with_the_expectation() {
        let want = json!({"verdict": "fail", "code": "expired"});
        let got = json!({"verdict": "fail", "code": "unpaid", "reason": "x"});
        assert_eq!(summarize(&want), "verdict=fail code=expired");
        assert_eq!(project(&want, &got), "verdict=fail code=unpaid");
        let charges = json!({"charges": [{"amount": 5}]});
        assert_eq!(
            project(&charges, &json!({"charges": []})),
            "charges[0].amount=(none)"
        );
        assert_eq!(summarize(&charges), "charges[0].amount=5");
    }
}
