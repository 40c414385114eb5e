//! Mail: notifications whose target is `mailto:<address>`, sent by the
//! outbox worker over SMTP (the `lettre` crate, blocking).
//!
//! A mail's stored payload is the usual envelope `{"id", "kind", "at",
//! "data"}` with `data` = `{"to", "to_name"?, "subject", "text"}`. The
//! message is `text/plain; charset=utf-8` from [`MailConfig::from`] to
//! `data.to`; it carries the event id twice so receivers can drop repeats of
//! an at-least-once delivery: as its `Message-ID` (`<evt_…@from-domain>`,
//! the same on every attempt) and as the header `X-Rulehost-Event`. It is
//! marked `Auto-Submitted: auto-generated` (RFC 3834) so that auto-responders
//! do not answer it.
//!
//! Transport: plain SMTP without TLS or authentication, which is what a local
//! relay (postfix, an MTA sidecar) or a test server speaks. `smtps://` and
//! STARTTLS are refused at configuration: no TLS stack is built in.

use std::time::Duration;

use lettre::Transport as _;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, Message};
use lettre::transport::smtp::SmtpTransport;
use lettre::{Address, transport::smtp};
use serde::Deserialize;
use serde_json::Value;

/// The port of `smtp = "host"` without one.
const DEFAULT_PORT: u16 = 25;
/// How long one SMTP exchange (connect, each command) may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and as whom to send mail: the `[mail]` section of the config file.
///
/// ```toml
/// [mail]
/// smtp = "127.0.0.1:25"                    # host:port (or smtp://host:port); port defaults to 25
/// from = "rulehost <rulehost@localhost>"   # optional; this is the default
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The SMTP server, `host:port` (`[::1]:25` for IPv6), optionally
    /// prefixed `smtp://`. Plain SMTP only.
    pub smtp: String,
    /// The `From` mailbox, `Name <address>` or a bare address.
    #[serde(default = "default_from")]
    pub from: String,
    /// How long one SMTP exchange may take; not read from the file.
    #[serde(skip, default = "default_timeout")]
    pub timeout: Duration,
}

fn default_from() -> String {
    "rulehost <rulehost@localhost>".to_owned()
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl MailConfig {
    /// Sends through `smtp` (`host:port`) as the default sender.
    pub fn new(smtp: impl Into<String>) -> MailConfig {
        MailConfig {
            smtp: smtp.into(),
            from: default_from(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Checks the configuration without connecting: the server's address
    /// and the sender parse. Call it when reading the config file.
    pub fn check(&self) -> Result<(), MailError> {
        self.endpoint()?;
        self.sender()?;
        Ok(())
    }

    /// The SMTP server's host and port.
    pub fn endpoint(&self) -> Result<(String, u16), MailError> {
        let raw = self.smtp.trim();
        let bad = |why: &str| MailError::Config(format!("`smtp = \"{raw}\"`: {why}"));
        let rest = match raw.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("smtp") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "`{scheme}://` is not supported: rulehost speaks plain SMTP (no TLS) to a local relay; write `host:port`"
                )));
            }
            None => raw,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(bad("unclosed `[` around an IPv6 address"));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("expected `:port` after `]`")),
                },
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err(bad("write an IPv6 address in brackets: `[::1]:25`"));
                }
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', '?', ' ']) {
            return Err(bad("expected `host:port`"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(bad(&format!("`{port}` is not a port"))),
            },
        };
        Ok((host.to_owned(), port))
    }

    fn sender(&self) -> Result<Mailbox, MailError> {
        self.from.trim().parse::<Mailbox>().map_err(|e| {
            MailError::Config(format!(
                "`from = \"{}\"` is not a mailbox (`Name <address>` or `address`): {e}",
                self.from
            ))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The `[mail]` configuration is unusable.
    #[error("mail configuration: {0}")]
    Config(String),
    /// The stored notification does not describe a mail.
    #[error("the notification is not a valid mail: {0}")]
    Invalid(String),
    /// The SMTP exchange failed (connection, timeout, refusal).
    #[error("SMTP: {0}")]
    Smtp(#[from] smtp::Error),
}

impl MailError {
    /// Whether retrying the same notification cannot help: a bad
    /// configuration or payload, or a permanent (5xx) SMTP refusal.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::Config(_) | MailError::Invalid(_) => true,
            MailError::Smtp(e) => e.is_permanent(),
        }
    }
}

/// Sends the mail that the stored `payload` (`{"id", "kind", "at", "data"}`)
/// describes, over one SMTP connection.
pub fn send(config: &MailConfig, payload: &Value) -> Result<(), MailError> {
    let message = message(config, payload)?;
    let (host, port) = config.endpoint()?;
    let transport = SmtpTransport::builder_dangerous(host)
        .port(port)
        .timeout(Some(config.timeout))
        .build();
    transport.send(&message)?;
    Ok(())
}

/// Builds the message a payload describes.
fn message(config: &MailConfig, payload: &Value) -> Result<Message, MailError> {
    let invalid = MailError::Invalid;
    let event_id = payload["id"]
        .as_str()
        .ok_or_else(|| invalid("no event `id`".into()))?;
    if event_id.is_empty()
        || !event_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(invalid(format!("the event id `{event_id}` is malformed")));
    }
    let data = &payload["data"];
    let text_field = |name: &str| -> Result<&str, MailError> {
        data[name]
            .as_str()
            .ok_or_else(|| invalid(format!("`data.{name}` is missing or not a string")))
    };
    let to = text_field("to")?;
    let address = to
        .trim()
        .parse::<Address>()
        .map_err(|e| invalid(format!("`data.to` = `{to}` is not a mail address: {e}")))?;
    let to_name = match &data["to_name"] {
        Value::Null => None,
        Value::String(name) => Some(one_line(name)).filter(|name| !name.is_empty()),
        _ => return Err(invalid("`data.to_name` is not a string".into())),
    };
    let subject = one_line(text_field("subject")?);
    let text = text_field("text")?;
    let from = config.sender()?;
    let message_id = format!("<{event_id}@{}>", from.email.domain());

    let mut builder = Message::builder()
        .from(from)
        .to(Mailbox::new(to_name, address))
        .subject(subject)
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Rulehost-Event"),
            event_id.to_owned(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ));
    if let Some(kind) = payload["kind"].as_str() {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Rulehost-Kind"),
            one_line(kind),
        ));
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(text_body(text))
        .map_err(|e| invalid(e.to_string()))
}

/// The body for `text`, in the encoding lettre picks (7bit, quoted-printable
/// or base64). lettre ends the SMTP data with CRLF `.` CRLF even when the
/// body already ends with CRLF, and that CRLF then ends the last line: a
/// text ending in a line break would arrive with one empty line more. So in
/// 7bit and quoted-printable, whose line breaks are the text's, the text's
/// last line break is left to the SMTP framing; base64 carries it inside.
fn text_body(text: &str) -> Body {
    let body = Body::new(text.to_owned());
    let encoding = body.encoding();
    if encoding == ContentTransferEncoding::Base64 {
        return body;
    }
    match text.strip_suffix('\n') {
        Some(text) => {
            let text = text.strip_suffix('\r').unwrap_or(text);
            Body::new_with_encoding(text.to_owned(), encoding).unwrap_or(body)
        }
        None => body,
    }
}

/// A header's text on one line: control characters (CR, LF, tabs) become
/// spaces, so nothing in the data can add a header.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(data: Value) -> Value {
        json!({"id": "evt_0123abcd", "kind": "mail", "at": "2025-01-01T00:00:00Z", "data": data})
    }

    /// The formatted message: its header block (unfolded) and its body.
    fn formatted(message: &Message) -> (String, String) {
        let raw = String::from_utf8_lossy(&message.formatted()).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        (head.replace("\r\n ", " "), body.to_owned())
    }

    fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
        head.split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn builds_a_plain_text_message_with_the_event_id() {
        let config = MailConfig::new("127.0.0.1:2525");
        let message = message(
            &config,
            &payload(json!({
                "to": "ada@acme.test",
                "to_name": "Ada Lovelace",
                "subject": "Your line is ready",
                "text": "Hello Ada,\nyour line is ready.\n",
            })),
        )
        .unwrap();
        let envelope = message.envelope();
        assert_eq!(
            envelope.from().map(|a| a.to_string()).as_deref(),
            Some("rulehost@localhost")
        );
        let to: Vec<String> = envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["ada@acme.test"]);

        let (head, body) = formatted(&message);
        assert_eq!(
            header(&head, "From"),
            ["rulehost <rulehost@localhost>"],
            "{head}"
        );
        assert_eq!(
            header(&head, "To"),
            ["\"Ada Lovelace\" <ada@acme.test>"],
            "{head}"
        );
        assert_eq!(header(&head, "Subject"), ["Your line is ready"], "{head}");
        assert_eq!(
            header(&head, "Message-ID"),
            ["<evt_0123abcd@localhost>"],
            "{head}"
        );
        assert_eq!(
            header(&head, "X-Rulehost-Event"),
            ["evt_0123abcd"],
            "{head}"
        );
        assert_eq!(header(&head, "X-Rulehost-Kind"), ["mail"], "{head}");
        assert_eq!(
            header(&head, "Auto-Submitted"),
            ["auto-generated"],
            "{head}"
        );
        assert_eq!(
            header(&head, "Content-Type"),
            ["text/plain; charset=utf-8"],
            "{head}"
        );
        assert_eq!(header(&head, "Date").len(), 1, "{head}");
        // The last line break is the SMTP framing's (see `text_body`).
        assert_eq!(body, "Hello Ada,\r\nyour line is ready.");
    }

    #[test]
    fn name_is_optional_and_utf8_is_encoded() {
        let config = MailConfig {
            from: "Ops <ops@rulehost.test>".into(),
            ..MailConfig::new("relay:25")
        };
        let message = message(
            &config,
            &payload(
                json!({"to": "bob@acme.test", "subject": "Prêt ✓", "text": "Ligne prête — merci"}),
            ),
        )
        .unwrap();
        let (head, body) = formatted(&message);
        assert_eq!(header(&head, "To"), ["bob@acme.test"], "{head}");
        assert_eq!(header(&head, "From"), ["Ops <ops@rulehost.test>"], "{head}");
        assert_eq!(
            header(&head, "Message-ID"),
            ["<evt_0123abcd@rulehost.test>"],
            "{head}"
        );
        // Non-ASCII travels encoded (RFC 2047 in headers, QP/base64 in the body).
        assert!(head.is_ascii() && body.is_ascii(), "{head}\n\n{body}");
        assert!(
            header(&head, "Subject")[0].starts_with("=?utf-8?"),
            "{head}"
        );
        assert_eq!(
            header(&head, "Content-Transfer-Encoding").len(),
            1,
            "{head}"
        );
    }

    #[test]
    fn the_last_line_break_is_left_to_the_smtp_framing() {
        let body = |text: &str| {
            let body = text_body(text);
            (
                body.encoding(),
                String::from_utf8_lossy(&body.into_vec()).into_owned(),
            )
        };
        let seven = ContentTransferEncoding::SevenBit;
        assert_eq!(body("a\nb\n"), (seven, "a\r\nb".into()));
        assert_eq!(body("a\r\nb\r\n"), (seven, "a\r\nb".into()));
        assert_eq!(body("a\nb"), (seven, "a\r\nb".into()));
        assert_eq!(body("a\n\n"), (seven, "a\r\n".into()));
        let (encoding, text) = body("la connexion est prête\n");
        assert_eq!(encoding, ContentTransferEncoding::QuotedPrintable);
        assert_eq!(text, "la connexion est pr=C3=AAte");
        // base64 keeps the text's line breaks (as CRLF) inside.
        let (encoding, text) = body("✓✓✓✓✓✓\n");
        assert_eq!(encoding, ContentTransferEncoding::Base64);
        assert_eq!(text.trim_end(), "4pyT4pyT4pyT4pyT4pyT4pyTDQo=");
    }

    #[test]
    fn data_cannot_inject_headers() {
        let config = MailConfig::new("relay:25");
        let message = message(
            &config,
            &payload(json!({
                "to": "ada@acme.test",
                "to_name": "Ada\r\nBcc: eve@evil.test",
                "subject": "Hi\r\nBcc: eve@evil.test",
                "text": "body",
            })),
        )
        .unwrap();
        let to: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(to, ["ada@acme.test"]);
        let (head, _) = formatted(&message);
        assert!(header(&head, "Bcc").is_empty(), "{head}");
        assert_eq!(
            header(&head, "Subject"),
            ["Hi  Bcc: eve@evil.test"],
            "{head}"
        );
    }

    #[test]
    fn invalid_payloads_are_refused() {
        let config = MailConfig::new("relay:25");
        let ok = json!({"to": "ada@acme.test", "subject": "s", "text": "t"});
        assert!(message(&config, &payload(ok.clone())).is_ok());
        for (field, value) in [
            ("to", json!("not an address")),
            ("to", json!(null)),
            ("to", json!("ada@acme.test, eve@evil.test")),
            ("to_name", json!(7)),
            ("subject", json!(null)),
            ("text", json!(["no"])),
        ] {
            let mut data = ok.clone();
            data[field] = value.clone();
            let err = message(&config, &payload(data)).unwrap_err();
            assert!(
                matches!(err, MailError::Invalid(_)),
                "{field} = {value}: {err}"
            );
            assert!(err.is_permanent());
        }
        let mut bad_id = payload(ok.clone());
        bad_id["id"] = json!("evt>\r\nX: y");
        assert!(matches!(
            message(&config, &bad_id),
            Err(MailError::Invalid(_))
        ));
        let bad_from = MailConfig {
            from: "not a mailbox".into(),
            ..config
        };
        assert!(matches!(
            message(&bad_from, &payload(ok)),
            Err(MailError::Config(_))
        ));
    }

    #[test]
    fn smtp_endpoints() {
        let endpoint = |smtp: &str| MailConfig::new(smtp).endpoint().map_err(|e| e.to_string());
        assert_eq!(endpoint("127.0.0.1:2525"), Ok(("127.0.0.1".into(), 2525)));
        assert_eq!(
            endpoint("smtp://relay.internal:587/"),
            Ok(("relay.internal".into(), 587))
        );
        assert_eq!(endpoint("relay"), Ok(("relay".into(), 25)));
        assert_eq!(endpoint("[::1]:2525"), Ok(("::1".into(), 2525)));
        assert_eq!(endpoint("[::1]"), Ok(("::1".into(), 25)));
        for bad in [
            "smtps://relay:465",
            "starttls://relay:587",
            "::1",
            "relay:0",
            "relay:x",
            ":25",
            "",
            "[::1",
        ] {
            let err = endpoint(bad).unwrap_err();
            assert!(err.starts_with("mail configuration:"), "{bad}: {err}");
        }
        assert!(
            endpoint("smtps://relay:465")
                .unwrap_err()
                .contains("plain SMTP")
        );
    }

    #[test]
    fn config_section_parses() {
        #[derive(Deserialize)]
        struct File {
            mail: MailConfig,
        }
        let file: File = toml::from_str("[mail]\nsmtp = \"127.0.0.1:25\"\n").unwrap();
        assert_eq!(file.mail, MailConfig::new("127.0.0.1:25"));
        file.mail.check().unwrap();
        let file: File =
            toml::from_str("[mail]\nsmtp = \"relay:25\"\nfrom = \"ops@acme.test\"\n").unwrap();
        assert_eq!(file.mail.from, "ops@acme.test");
        assert_eq!(file.mail.timeout, DEFAULT_TIMEOUT);
        for unknown in ["timeout = 3", "smtp_port = 25", "user = \"x\""] {
            let text = format!("[mail]\nsmtp = \"relay:25\"\n{unknown}\n");
            assert!(toml::from_str::<File>(&text).is_err(), "{unknown}");
        }
        assert!(toml::from_str::<File>("[mail]\nfrom = \"a@b.test\"\n").is_err());
    }
}
