//! The door every JSON body passes before it is parsed: one size limit
//! ([`MAX_BODY`]) and one depth limit ([`MAX_DEPTH`]) for all of them,
//! numbers the host can keep exactly, and no control characters in text.
//!
//! Why a depth limit well below the reader's: the host stores client JSON
//! inside JSON of its own (a flow's context inside a `task.opened`
//! notification, a task's data in the flow's context) and reads it back with
//! serde_json, which refuses anything nested more than [`READER_DEPTH`]
//! levels. What the door accepts is at most [`MAX_DEPTH`] levels deep, and
//! the host wraps at most a handful of levels around it, so everything
//! stored can always be read back.
//!
//! Numbers: an integer must fit in 64 bits; any other number must come back
//! as the same decimal from a 64-bit float (at most 17 significant digits,
//! within range). Anything else would be stored rounded, so it is refused
//! and the client told to send it as a string.
//!
//! Text: no control characters in any string (keys too) but tab, line feed
//! and carriage return; fields that are identifiers refuse those as well
//! (the handlers' validation).

use std::fmt;

/// Largest JSON body, in bytes.
pub const MAX_BODY: usize = 1 << 20;

/// Deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 64;

/// serde_json's own recursion limit, which every reader of stored JSON has.
pub const READER_DEPTH: usize = 128;

// The margin for what the host wraps around client JSON (a notification:
// envelope, `flow`, `context`: three levels).
const _: () = assert!(READER_DEPTH - MAX_DEPTH >= 32);

/// Why a body was refused at the door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Arrays and objects nested deeper than [`MAX_DEPTH`], at `path`.
    TooDeep { path: String },
    /// A number the host cannot keep as sent.
    Number {
        path: String,
        text: String,
        why: &'static str,
    },
    /// A control character (its code point) in a string, or in a key of
    /// the object at `path`.
    Control {
        path: String,
        code: u32,
        in_key: bool,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooDeep { path } => write!(
                f,
                "{} nests arrays and objects more than {MAX_DEPTH} levels deep, the limit; flatten it",
                at(path)
            ),
            Refusal::Number { path, text, why } => write!(
                f,
                "{}: the number `{text}` cannot be kept exactly ({why}); send it as a string",
                at(path)
            ),
            Refusal::Control { path, code, in_key } => write!(
                f,
                "{}{} holds the control character U+{code:04X}; text may hold no control characters but tab, line feed and carriage return",
                if *in_key { "a key in " } else { "" },
                at(path)
            ),
        }
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the body".to_owned()
    } else {
        format!("`{path}`")
    }
}

/// Where the scan is: inside an object (its current key) or an array.
enum Frame {
    Object { key: Option<String>, want_key: bool },
    Array { index: usize },
}

/// The longest key shown in a path.
const MAX_KEY_SHOWN: usize = 64;

/// Checks `body` against the door's rules. Malformed JSON is left to the
/// parser, which reports it; this never fails on it.
pub fn inspect(body: &[u8]) -> Result<(), Refusal> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0;
    while let Some(&byte) = body.get(i) {
        match byte {
            b'{' | b'[' => {
                if frames.len() >= MAX_DEPTH {
                    return Err(Refusal::TooDeep {
                        path: path(&frames),
                    });
                }
                frames.push(if byte == b'{' {
                    Frame::Object {
                        key: None,
                        want_key: true,
                    }
                } else {
                    Frame::Array { index: 0 }
                });
                i += 1;
            }
            b'}' | b']' => {
                frames.pop();
                i += 1;
            }
            b',' => {
                match frames.last_mut() {
                    Some(Frame::Object { want_key, .. }) => *want_key = true,
                    Some(Frame::Array { index }) => *index += 1,
                    None => {}
                }
                i += 1;
            }
            b':' => {
                if let Some(Frame::Object { want_key, .. }) = frames.last_mut() {
                    *want_key = false;
                }
                i += 1;
            }
            b'"' => {
                let is_key = matches!(frames.last(), Some(Frame::Object { want_key: true, .. }));
                let end = string(body, i + 1).map_err(|code| Refusal::Control {
                    path: path(&frames),
                    code,
                    in_key: is_key,
                })?;
                if is_key && let Some(Frame::Object { key, .. }) = frames.last_mut() {
                    let raw = body.get(i + 1..end.saturating_sub(1)).unwrap_or_default();
                    let mut text = String::from_utf8_lossy(raw).into_owned();
                    if text.len() > MAX_KEY_SHOWN {
                        let mut cut = MAX_KEY_SHOWN;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        text.push('…');
                    }
                    *key = Some(text);
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while body
                    .get(i)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    i += 1;
                }
                let text = String::from_utf8_lossy(body.get(start..i).unwrap_or_default());
                if let Err(why) = number(&text) {
                    return Err(Refusal::Number {
                        path: path(&frames),
                        text: text.into_owned(),
                        why,
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Scans a string from just after its opening quote; the index just after
/// its closing quote, or the control character found in it.
fn string(body: &[u8], mut i: usize) -> Result<usize, u32> {
    while let Some(&byte) = body.get(i) {
        match byte {
            b'"' => return Ok(i + 1),
            b'\\' => {
                if body.get(i + 1) == Some(&b'u')
                    && let Some(code) = body.get(i + 2..i + 6).and_then(hex4)
                {
                    if refused(code) {
                        return Err(code);
                    }
                    i += 6;
                } else {
                    i += 2;
                }
            }
            0x7f => return Err(0x7f),
            // U+0080..U+009F (the C1 controls) in UTF-8.
            0xc2 if matches!(body.get(i + 1), Some(0x80..=0x9f)) => {
                return Err(body.get(i + 1).map_or(0x80, |&b| u32::from(b)));
            }
            _ => i += 1,
        }
    }
    Ok(i)
}

fn hex4(digits: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A control character other than tab, line feed and carriage return.
pub fn refused(code: u32) -> bool {
    let control = code < 0x20 || (0x7f..=0x9f).contains(&code);
    control && !matches!(code, 0x09 | 0x0a | 0x0d)
}

/// Whether the number written `text` is kept exactly; why not if not.
/// Text that is not a JSON number passes: the parser reports it.
fn number(text: &str) -> Result<(), &'static str> {
    let integer = !text.contains(['.', 'e', 'E']);
    if integer {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        return if text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok() {
            Ok(())
        } else {
            Err("an integer must fit in 64 bits")
        };
    }
    let Ok(value) = text.parse::<f64>() else {
        return Ok(());
    };
    if !value.is_finite() {
        return Err("it is beyond the range of a 64-bit float");
    }
    // `{:e}` writes the shortest decimal that reads back as `value`.
    if decimal(text).is_some() && decimal(text) == decimal(&format!("{value:e}")) {
        Ok(())
    } else {
        Err("a 64-bit float keeps at most 17 significant digits")
    }
}

/// A decimal number as (negative, significant digits, power of ten), with
/// no leading or trailing zeros in the digits; zero is `(false, "", 0)`.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exponent = exponent
        .checked_sub(i64::try_from(fraction.len()).ok()?)?
        .checked_add(i64::try_from(significant.len() - trimmed.len()).ok()?)?;
    Some((negative, trimmed.to_owned(), exponent))
}

/// The path of the current position, `a.b[2].c`.
fn path(frames: &[Frame]) -> String {
    let mut out = String::new();
    for frame in frames {
        match frame {
            Frame::Object {
                key: Some(key),
                want_key: false,
            } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Frame::Object { .. } => break,
            Frame::Array { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_up_to_the_limit_passes_and_one_more_is_refused() {
        assert_eq!(inspect(nested(MAX_DEPTH).as_bytes()), Ok(()));
        let deep = format!(r#"{{"context": {{"a": [{}]}}}}"#, nested(MAX_DEPTH - 2));
        let refused = inspect(deep.as_bytes()).unwrap_err();
        assert!(matches!(&refused, Refusal::TooDeep { path } if path.starts_with("context.a[0]")));
        assert!(refused.to_string().contains("64 levels"), "{refused}");
        // Brackets inside strings are text, not nesting.
        let text = format!(r#"{{"a": "{}"}}"#, "[{".repeat(200));
        assert_eq!(inspect(text.as_bytes()), Ok(()));
    }

    #[test]
    fn numbers_that_cannot_be_kept_are_refused_with_their_field() {
        for kept in [
            "0",
            "-0",
            "-0.0",
            "12",
            "9223372036854775807",
            "18446744073709551615",
            "-9223372036854775808",
            "0.1",
            "1.50",
            "1e308",
            "1E5",
            "2.5e-3",
            "5e-324",
            "1.2345678901234568e29",
            "0.30000000000000004",
        ] {
            assert_eq!(number(kept), Ok(()), "{kept}");
        }
        for lost in [
            "123456789012345678901234567890",
            "18446744073709551616",
            "-9223372036854775809",
            "1e400",
            "1e-400",
            "0.10000000000000000001",
            "3.14159265358979323846",
        ] {
            assert!(number(lost).is_err(), "{lost}");
        }
        let body = br#"{"attributes": {"x": 1, "big": 123456789012345678901234567890}}"#;
        let refused = inspect(body).unwrap_err();
        assert_eq!(
            refused,
            Refusal::Number {
                path: "attributes.big".into(),
                text: "123456789012345678901234567890".into(),
                why: "an integer must fit in 64 bits",
            }
        );
        assert!(refused.to_string().contains("send it as a string"));
        let in_array = inspect(br#"{"a": [1, 2, 1e999]}"#).unwrap_err();
        assert!(matches!(in_array, Refusal::Number { path, .. } if path == "a[2]"));
    }

    #[test]
    fn control_characters_are_refused_but_tab_and_line_breaks_pass() {
        let nul = inspect(br#"{"description": "a\u0000b"}"#).unwrap_err();
        assert_eq!(
            nul,
            Refusal::Control {
                path: "description".into(),
                code: 0,
                in_key: false,
            }
        );
        assert!(nul.to_string().contains("U+0000"), "{nul}");
        assert!(inspect(br#"{"a": {"b": "\u001b[31m"}}"#).is_err());
        assert!(inspect("{\"a\": \"\u{7f}\"}".as_bytes()).is_err());
        assert!(inspect("{\"a\": \"\u{85}\"}".as_bytes()).is_err());
        assert!(inspect(br#"{"a": "\u009F"}"#).is_err());
        let key = inspect(br#"{"ok": {"k\u0001": 1}}"#).unwrap_err();
        assert!(key.to_string().starts_with("a key in `ok` holds"), "{key}");
        assert_eq!(
            inspect(
                r#"{"a": "line\none\ttab\r\n", "b": "\\u0000 is text", "c": "é ü 日本"}"#
                    .as_bytes()
            ),
            Ok(())
        );
    }

    #[test]
    fn malformed_json_is_left_to_the_parser() {
        for text in [
            "",
            "{",
            "}}}]]",
            "\"",
            "\"\\u12",
            "-",
            "1.2.3",
            "{\"a\":--1}",
            "[1e]",
        ] {
            let _ = inspect(text.as_bytes());
        }
        assert_eq!(inspect(b"{\"a\": tru"), Ok(()));
    }
}
