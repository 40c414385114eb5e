//! Text helpers for the property tests of the parsers.

/// A TOML basic string (also a quoted key) holding exactly `s`.
pub fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if c.is_control() => out += &format!("\\u{:04X}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

/// `source` with `len` bytes at `at` replaced by `insert` (on char boundaries).
pub fn mutate(source: &str, at: usize, len: usize, insert: &str) -> String {
    let floor = |mut i: usize| {
        i = i.min(source.len());
        while !source.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(at);
    let end = floor(start + len);
    format!("{}{insert}{}", &source[..start], &source[end..])
}
