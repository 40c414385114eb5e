//! What text the host stores in its fields. No field holds a control
//! character (NUL, escape, DEL, the C1 controls...); free text may hold tab,
//! line feed and carriage return, one-line text may not. Identifiers (ids,
//! emails) are stricter still, in their own checks.
//!
//! Free text: a check's `description`, attribute values, a demand's
//! `problem`, strings inside a flow's `context` and a task's `data`.
//! One-line text: a flow's `subject`, an account's `tier`, `group` and
//! contact `name`, a ledger movement's `reference`, attribute keys.

/// The first character free text may not hold.
pub fn control_in_free_text(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// The first character one-line text may not hold.
pub fn control_in_line(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

/// `Err` naming `field` when free text holds a control character.
pub fn free_text(field: &str, text: &str) -> Result<(), String> {
    match control_in_free_text(text) {
        Some(c) => Err(refused(
            field,
            c,
            "tab, line feed and carriage return are the only ones allowed",
        )),
        None => Ok(()),
    }
}

/// `Err` naming `field` when one-line text holds a control character
/// (tab and line breaks included).
pub fn line(field: &str, text: &str) -> Result<(), String> {
    match control_in_line(text) {
        Some(c) => Err(refused(field, c, "it is one line of text")),
        None => Ok(()),
    }
}

fn refused(field: &str, c: char, rule: &str) -> String {
    format!(
        "`{field}` holds the control character U+{:04X}; {rule}",
        u32::from(c)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_takes_tabs_and_line_breaks_but_no_other_control() {
        assert_eq!(free_text("description", "two\nlines\tand\r\n"), Ok(()));
        for bad in ["a\0b", "\u{1b}[31m", "\u{7f}", "\u{85}", "\u{9f}"] {
            let e = free_text("description", bad).unwrap_err();
            assert!(
                e.starts_with("`description` holds the control character U+"),
                "{e}"
            );
        }
    }

    #[test]
    fn one_line_text_takes_no_control_at_all() {
        assert_eq!(line("subject", "acme corp — ü"), Ok(()));
        let e = line("subject", "acme\ncorp").unwrap_err();
        assert_eq!(
            e,
            "`subject` holds the control character U+000A; it is one line of text"
        );
        assert!(line("subject", "a\tb").is_err());
    }
}
