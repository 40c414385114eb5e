//! The host's own settings file (`rulehost serve --config rulehost.toml`):
//! what is about this host rather than about services' rules.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::notify::MailConfig;
use crate::registry::Diagnostic;
use crate::store::{StoreOptions, SyncMode};

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
    /// `full` (default): each group commit is fsynced, an answer survives a
    /// power loss; `normal`: it survives the process being killed only.
    pub sync: Option<SyncMode>,
    /// PostgreSQL's `commit_delay`, in microseconds (default 0, off): with
    /// at least `commit_siblings` writes in a group, the writer waits this
    /// long for more before it commits.
    pub commit_delay_us: Option<u64>,
    /// Writes a group must hold before `commit_delay_us` applies (default 5).
    pub commit_siblings: Option<usize>,
    /// Writes queued at most before writers wait (default 4096).
    pub queue: Option<usize>,
}

/// The longest `[store] commit_delay_us` accepted: PostgreSQL's bound.
const MAX_COMMIT_DELAY_US: u64 = 100_000;

impl StoreConfig {
    pub fn options(&self) -> StoreOptions {
        let mut options = StoreOptions::default();
        if let Some(sync) = self.sync {
            options.sync = sync;
        }
        if let Some(us) = self.commit_delay_us {
            options.commit_delay = Duration::from_micros(us);
        }
        if let Some(n) = self.commit_siblings {
            options.commit_siblings = n;
        }
        if let Some(n) = self.queue {
            options.queue = n;
        }
        options
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(us) = self.commit_delay_us
            && us > MAX_COMMIT_DELAY_US
        {
            problems.push(format!(
                "[store] commit_delay_us = {us} is more than {MAX_COMMIT_DELAY_US}; a few hundred microseconds is enough to share commits"
            ));
        }
        if self.commit_siblings == Some(0) {
            problems.push("[store] commit_siblings must be at least 1".into());
        }
        if let Some(n) = self.queue
            && !(1..=1_000_000).contains(&n)
        {
            problems.push(format!(
                "[store] queue = {n} is out of range; use 1 to 1000000"
            ));
        }
        problems
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
        if let Some(problem) = config.store.problems().into_iter().next() {
            return Err(Diagnostic::error(path, None, problem));
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
    fn the_store_section_sets_sync_and_commit_delay() {
        let default = load("").unwrap().store.options();
        assert_eq!(default, StoreOptions::default());
        assert_eq!(default.sync, SyncMode::Full);
        let set = load(
            "[store]\nsync = \"normal\"\ncommit_delay_us = 200\ncommit_siblings = 3\nqueue = 64\n",
        )
        .unwrap()
        .store
        .options();
        assert_eq!(set.sync, SyncMode::Normal);
        assert_eq!(set.commit_delay, Duration::from_micros(200));
        assert_eq!((set.commit_siblings, set.queue), (3, 64));
    }

    #[test]
    fn a_bad_store_setting_or_a_misspelt_key_is_refused() {
        let too_long = load("[store]\ncommit_delay_us = 100001\n").unwrap_err();
        assert!(
            too_long.to_string().contains("commit_delay_us = 100001"),
            "{too_long}"
        );
        let unknown = load("[store]\nsync = \"sometimes\"\n").unwrap_err();
        assert!(
            unknown.to_string().contains("sometimes") || unknown.to_string().contains("full"),
            "{unknown}"
        );
        let old = load("[store]\nbatch_window_ms = 5\n").unwrap_err();
        assert!(old.to_string().contains("batch_window_ms"), "{old}");
        let negative = load("[store]\ncommit_delay_us = -1\n").unwrap_err();
        // Pointed at by its line: the second.
        assert!(
            negative.to_string().contains(":2: invalid value"),
            "{negative}"
        );
    }
}
