//! Hostile test plugin `hostile-escape`: `verify` tries to reach outside its
//! sandbox and reports what it got.
//!
//! It exists for the host's tests (it is not registered in `rules/`). The host
//! links a deny-all WASI context, so every attempt must fail. `verify` passes
//! with a summary as its level, one word per attempt:
//!
//! ```text
//! fs=denied env=denied dir=denied net=denied
//! ```
//!
//! - `fs`: read `/etc/hostname`;
//! - `env`: read the environment variable `PATH`;
//! - `dir`: list `/`;
//! - `net`: open a TCP connection to 127.0.0.1:1.
//!
//! Each is `denied` when the attempt failed or came back empty, otherwise
//! `allowed:<detail>` (what it saw, at most 40 characters, without spaces).
//! It also writes "hello from stdout" to stdout, "hello from stderr" to stderr
//! and "hello from log" through the host's log, so the host's tests can check
//! that all three land in the host's log under the plugin's name.
//!
//! Natively (`cargo test`) nothing is denied except, usually, the connection
//! (nothing listens on port 1): the summary's shape is what the tests check.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, Verifier};

pub struct HostileEscape;

fn denied() -> String {
    "denied".to_owned()
}

/// `allowed:<detail>`, the detail cut to 40 characters with no whitespace, so
/// the summary stays one word per attempt.
fn allowed(detail: &str) -> String {
    let detail: String = detail
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .take(40)
        .collect();
    if detail.is_empty() {
        denied()
    } else {
        format!("allowed:{detail}")
    }
}

fn read_file() -> String {
    std::fs::read_to_string("/etc/hostname").map_or_else(|_| denied(), |text| allowed(&text))
}

fn read_env() -> String {
    std::env::var("PATH").map_or_else(|_| denied(), |path| allowed(&path))
}

fn list_root() -> String {
    match std::fs::read_dir("/") {
        Ok(entries) => match entries.filter_map(Result::ok).count() {
            0 => denied(),
            n => allowed(&format!("{n}-entries")),
        },
        Err(_) => denied(),
    }
}

fn connect() -> String {
    std::net::TcpStream::connect("127.0.0.1:1")
        .map_or_else(|_| denied(), |_| allowed("connected-to-127.0.0.1:1"))
}

/// Every attempt, as the summary the level carries.
pub fn summary() -> String {
    format!(
        "fs={} env={} dir={} net={}",
        read_file(),
        read_env(),
        list_root(),
        connect()
    )
}

impl Verifier for HostileEscape {
    fn verify(
        _ctx: &Context,
        _request: &ServiceRequest,
        _account: Option<&Account>,
    ) -> Result<Verdict, Error> {
        println!("hello from stdout");
        eprintln!("hello from stderr");
        rulehost_sdk::info!("hello from log");
        Ok(Verdict::pass(summary()))
    }
}

rulehost_sdk::export!(HostileEscape: verifier);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_one_word_per_attempt() {
        let summary = summary();
        let words: Vec<&str> = summary.split(' ').collect();
        assert_eq!(words.len(), 4, "{summary}");
        for (word, name) in words.iter().zip(["fs=", "env=", "dir=", "net="]) {
            let outcome = word.strip_prefix(name);
            assert!(
                outcome.is_some_and(|o| o == "denied" || o.starts_with("allowed:")),
                "{summary}"
            );
        }
    }

    #[test]
    fn details_are_one_short_word() {
        assert_eq!(allowed("  my host\n"), "allowed:my_host");
        assert_eq!(allowed(" \n"), "denied");
        assert_eq!(allowed(&"a".repeat(100)).len(), "allowed:".len() + 40);
    }

    #[test]
    fn verify_passes_with_the_summary() {
        let request = ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: vec![],
        };
        let got = HostileEscape::verify(&Context::new("hostile", 0), &request, None);
        assert!(matches!(got, Ok(Verdict::Pass(level)) if level.starts_with("fs=")));
    }
}
