//! The host's own settings file (`rulehost serve --config rulehost.toml`):
//! what is about this host rather than about services' rules.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::notify::MailConfig;
use crate::registry::Diagnostic;
use crate::store::StoreOptions;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Mail over SMTP; without it, mail is held in the outbox and logged.
    #[serde(default)]
    pub mail: Option<MailConfig>,
    #[serde(default)]
    pub public: PublicConfig,
    #[serde(default)]
    pub reconciliation: ReconciliationConfig,
    #[serde(default)]
    pub store: StoreConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// How long journaled writes (checks' decision records), durable in
    /// the redo journal, may wait for the SQLite commit they share, in
    /// milliseconds (default 5; 0: every check is its own commit).
    pub batch_window_ms: Option<u64>,
}

/// The longest `[store] batch_window_ms` accepted: recovery after a crash
/// redoes at most this much.
const MAX_BATCH_WINDOW_MS: u64 = 60_000;

impl StoreConfig {
    pub fn options(&self) -> StoreOptions {
        let mut options = StoreOptions::default();
        if let Some(ms) = self.batch_window_ms {
            options.batch_window = Duration::from_millis(ms);
        }
        options
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    /// How people reach the public site (the base of reconciliation links);
    /// default: the public listener's own address.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationConfig {
    /// How long a sync page waits for the user (default 900).
    pub sync_window_seconds: Option<u64>,
    /// Wrong keys and failed attempts before a reconciliation closes (default 10).
    pub max_attempts: Option<i64>,
}

impl HostConfig {
    pub fn load(path: &Path) -> Result<HostConfig, Diagnostic> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::error(path, None, format!("cannot read: {e}")))?;
        let config: HostConfig =
            toml::from_str(&source).map_err(|e| Diagnostic::from_toml(path, &source, &e))?;
        if let Some(url) = &config.public.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Diagnostic::error(
                path,
                None,
                format!("[public] url `{url}` is not an http:// or https:// URL"),
            ));
        }
        if let Some(ms) = config.store.batch_window_ms
            && ms > MAX_BATCH_WINDOW_MS
        {
            return Err(Diagnostic::error(
                path,
                None,
                format!(
                    "[store] batch_window_ms = {ms} is more than {MAX_BATCH_WINDOW_MS}; a few milliseconds is enough to share commits"
                ),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<HostConfig, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rulehost.toml");
        std::fs::write(&path, text).unwrap();
        HostConfig::load(&path)
    }

    #[test]
    fn the_store_section_sets_the_batch_window() {
        let default = load("").unwrap().store.options();
        assert_eq!(default, StoreOptions::default());
        let set = load("[store]\nbatch_window_ms = 0\n").unwrap();
        assert_eq!(set.store.options().batch_window, Duration::ZERO);
        let set = load("[store]\nbatch_window_ms = 60000\n").unwrap();
        assert_eq!(set.store.options().batch_window, Duration::from_secs(60));
    }

    #[test]
    fn a_window_too_long_or_a_misspelt_key_is_refused() {
        let too_long = load("[store]\nbatch_window_ms = 60001\n").unwrap_err();
        assert!(
            too_long.to_string().contains("batch_window_ms = 60001"),
            "{too_long}"
        );
        let misspelt = load("[store]\nbatch_window = 5\n").unwrap_err();
        assert!(misspelt.to_string().contains("batch_window"), "{misspelt}");
        let negative = load("[store]\nbatch_window_ms = -1\n").unwrap_err();
        // Pointed at by its line: the second.
        assert!(
            negative.to_string().contains(":2: invalid value"),
            "{negative}"
        );
    }
}
