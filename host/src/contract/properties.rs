//! Key/value properties (config, attributes) that accept any TOML or JSON
//! scalar and keep it as a string, so `lapse_days = 10` works as well as
//! `lapse_days = "10"`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Ordered string key/values, as plugins receive them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, String>);

impl Properties {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// `self` with every entry of `overrides` put over it.
    pub fn overlaid(&self, overrides: &Properties) -> Properties {
        let mut merged = self.clone();
        merged.0.extend(overrides.0.clone());
        merged
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Properties(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// One scalar value, kept as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(float_text(v)))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A float as text: positional for ordinary magnitudes (`1.5`, `0.001`),
/// scientific beyond them (`1e300`, `2.5e-9`), as ECMAScript's
/// `Number#toString` does, so a large float is not written in 300 digits.
/// Either form is the shortest that reads back as the same float.
pub fn float_text(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PropertiesVisitor;
        impl<'de> Visitor<'de> for PropertiesVisitor {
            type Value = Properties;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of keys to strings, numbers or booleans")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Properties, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((key, Scalar(value))) = map.next_entry::<String, Scalar>()? {
                    out.insert(key, value);
                }
                Ok(Properties(out))
            }
        }
        deserializer.deserialize_map(PropertiesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_of_any_kind_become_strings() {
        let p: Properties =
            serde_json::from_str(r#"{"days": 10, "on": true, "rate": 1.5, "name": "x"}"#)
                .unwrap_or_default();
        assert_eq!(p.get("days"), Some("10"));
        assert_eq!(p.get("on"), Some("true"));
        assert_eq!(p.get("rate"), Some("1.5"));
        assert_eq!(p.get("name"), Some("x"));
    }

    #[test]
    fn large_and_small_floats_are_written_short() {
        let p: Properties = serde_json::from_str(
            r#"{"huge": 1e308, "big": 1e20, "tiny": 2.5e-9, "whole": 123.0, "neg": -1.25e300}"#,
        )
        .unwrap_or_default();
        assert_eq!(p.get("huge"), Some("1e308"));
        assert_eq!(p.get("big"), Some("100000000000000000000"));
        assert_eq!(p.get("tiny"), Some("2.5e-9"));
        assert_eq!(p.get("whole"), Some("123"));
        assert_eq!(p.get("neg"), Some("-1.25e300"));
    }

    #[test]
    fn nested_values_are_refused() {
        let err = serde_json::from_str::<Properties>(r#"{"a": {"b": 1}}"#).err();
        assert!(err.is_some_and(|e| e.to_string().contains("a string, number or boolean")));
    }
}
