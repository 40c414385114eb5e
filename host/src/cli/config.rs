//! The host's own settings file (`rulehost serve --config rulehost.toml`):
//! what is about this host rather than about services' rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::entitlement::OtherAccount;
use crate::http::OpenRoutes;
use crate::http::edge::Limits;
use crate::notify::{MailConfig, RetryPolicy};
use crate::registry::Diagnostic;
use crate::store::retention::{DAY, DEFAULT_INTERVAL, Policy};
use crate::store::{StoreOptions, SyncMode};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Mail over SMTP; without it, mail is held in the outbox and logged.
    #[serde(default)]
    pub mail: Option<MailConfig>,
    #[serde(default)]
    pub internal: InternalConfig,
    #[serde(default)]
    pub public: PublicConfig,
    #[serde(default)]
    pub reconciliation: ReconciliationConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub plans: PlansConfig,
    #[serde(default)]
    pub provisioning: ProvisioningConfig,
}

/// Provisioning: offers' expiry, how sign-ins are guarded and how long
/// they last.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// An offer's expiry when the provider chooses none, in days (default 60).
    pub offer_days: Option<u64>,
    /// The furthest expiry a provider may choose, in days (default 366).
    pub max_offer_days: Option<u64>,
    /// Wrong passwords in a row that lock a user (default 5).
    pub max_attempts: Option<u32>,
    /// How long the lock lasts, in seconds (default 900).
    pub lock_seconds: Option<u64>,
    /// How long a browser's sign-in lasts, in minutes (default 480).
    pub session_minutes: Option<u64>,
    /// How long a user token lasts, in minutes (default 60).
    pub token_minutes: Option<u64>,
    /// How long a page's form may be left open, in minutes (default 60).
    pub form_minutes: Option<u64>,
}

impl ProvisioningConfig {
    /// The settings, on the public URL and mail the host uses.
    pub fn settings(&self, public_url: String, mail: bool) -> crate::provisioning::Settings {
        use std::time::Duration;
        let mut s = crate::provisioning::Settings {
            public_url,
            mail,
            ..Default::default()
        };
        let days = |d: u64| Duration::from_secs(d * 86_400);
        if let Some(d) = self.offer_days {
            s.default_expiry = days(d);
        }
        if let Some(d) = self.max_offer_days {
            s.max_expiry = days(d);
        }
        if let Some(n) = self.max_attempts {
            s.max_attempts = i64::from(n);
        }
        if let Some(secs) = self.lock_seconds {
            s.lock = Duration::from_secs(secs);
        }
        if let Some(m) = self.session_minutes {
            s.site_session = Duration::from_secs(m * 60);
        }
        if let Some(m) = self.token_minutes {
            s.api_token = Duration::from_secs(m * 60);
        }
        if let Some(m) = self.form_minutes {
            s.form = Duration::from_secs(m * 60);
        }
        s
    }

    fn problem(&self) -> Option<String> {
        let outside = |v: Option<u64>, lo: u64, hi: u64| v.is_some_and(|v| !(lo..=hi).contains(&v));
        if outside(self.offer_days, 1, 3660) || outside(self.max_offer_days, 1, 3660) {
            return Some("[provisioning] offer_days and max_offer_days must be between 1 and 3660 (ten years)".into());
        }
        if self.offer_days.unwrap_or(60) > self.max_offer_days.unwrap_or(366) {
            return Some("[provisioning] offer_days is more than max_offer_days; an offer's default expiry must be one a provider could choose".into());
        }
        if self.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return Some("[provisioning] max_attempts is not between 1 and 100; it counts the wrong passwords before a user locks".into());
        }
        if outside(self.lock_seconds, 1, 7 * 86_400) {
            return Some("[provisioning] lock_seconds is not between 1 and 604800 (a week)".into());
        }
        if outside(self.session_minutes, 1, 7 * 1440)
            || outside(self.token_minutes, 1, 7 * 1440)
            || outside(self.form_minutes, 1, 7 * 1440)
        {
            return Some("[provisioning] session_minutes, token_minutes and form_minutes must be between 1 and 10080 (a week)".into());
        }
        None
    }
}

/// Communications (`plans`): how PINs are guarded and how long a
/// communication may last.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansConfig {
    /// Wrong PINs in a row that lock an account's PIN (default 5).
    pub pin_attempts: Option<u32>,
    /// How long a locked PIN stays locked, in seconds (default 900).
    pub pin_lock_seconds: Option<u64>,
    /// The longest communication authorized when neither the balance nor
    /// the plan sets less, in seconds (default 14400).
    pub max_duration_seconds: Option<u64>,
    /// How often the reset timer checks every plan's reset conditions, in
    /// seconds (default 3600).
    pub reset_sweep_seconds: Option<u64>,
    /// How far a communication's `at` may be from the host's clock, in
    /// seconds (default 300).
    pub max_clock_skew_seconds: Option<u64>,
    /// Take any `at` (tests, replays of recorded traffic); default false.
    #[serde(default)]
    pub allow_any_time: bool,
}

impl PlansConfig {
    pub fn settings(&self) -> crate::plans::Settings {
        let mut settings = crate::plans::Settings::default();
        if let Some(n) = self.pin_attempts {
            settings.pin_attempts = n;
        }
        if let Some(s) = self.pin_lock_seconds {
            settings.pin_lock_secs = s;
        }
        if let Some(s) = self.max_duration_seconds {
            settings.max_duration_secs = s;
        }
        if let Some(s) = self.reset_sweep_seconds {
            settings.reset_sweep_secs = s;
        }
        if let Some(s) = self.max_clock_skew_seconds {
            settings.max_clock_skew_secs = Some(s);
        }
        if self.allow_any_time {
            settings.max_clock_skew_secs = None;
        }
        settings
    }

    fn problem(&self) -> Option<String> {
        if self.pin_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return Some("[plans] pin_attempts is not between 1 and 100; it counts the wrong PINs before the PIN locks".into());
        }
        if self
            .pin_lock_seconds
            .is_some_and(|s| !(1..=7 * 86_400).contains(&s))
        {
            return Some("[plans] pin_lock_seconds is not between 1 and 604800 (a week)".into());
        }
        if self
            .reset_sweep_seconds
            .is_some_and(|s| !(1..=86_400).contains(&s))
        {
            return Some("[plans] reset_sweep_seconds is not between 1 and 86400 (a day)".into());
        }
        if self
            .max_duration_seconds
            .is_some_and(|s| !(1..=7 * 86_400).contains(&s))
        {
            return Some(
                "[plans] max_duration_seconds is not between 1 and 604800 (a week)".into(),
            );
        }
        None
    }
}

/// Access to the internal API (`auth`, `http::access`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `GET /healthz` without a token (default true).
    pub open_healthz: Option<bool>,
    /// `GET /metrics` without a token (default true); else an operator or viewer token.
    pub open_metrics: Option<bool>,
    /// Where a fresh database's first operator token is written (default
    /// `<db>.operator-token`).
    pub operator_token_file: Option<PathBuf>,
}

impl AuthConfig {
    pub fn open_routes(&self) -> OpenRoutes {
        let default = OpenRoutes::default();
        OpenRoutes {
            healthz: self.open_healthz.unwrap_or(default.healthz),
            metrics: self.open_metrics.unwrap_or(default.metrics),
        }
    }

    /// The operator token file for the database `db`.
    pub fn operator_token_file(&self, db: &Path) -> PathBuf {
        self.operator_token_file.clone().unwrap_or_else(|| {
            let mut path = db.as_os_str().to_owned();
            path.push(".operator-token");
            PathBuf::from(path)
        })
    }
}

/// How notifications are retried before they go `dead`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Attempts in all before a failing notification is dead (default 40).
    pub max_attempts: Option<i64>,
    /// Attempts in all for one the receiver refuses (a webhook's 4xx other
    /// than 408, 425, 429; default 3).
    pub refused_attempts: Option<i64>,
    /// The first wait, in milliseconds, doubling after each failure (default 250).
    pub first_backoff_ms: Option<u64>,
    /// The longest wait between two attempts, in seconds (default 3600).
    pub max_backoff_seconds: Option<u64>,
}

impl OutboxConfig {
    pub fn policy(&self) -> RetryPolicy {
        let default = RetryPolicy::default();
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(default.max_attempts),
            refused_attempts: self.refused_attempts.unwrap_or(default.refused_attempts),
            first_backoff: self
                .first_backoff_ms
                .map_or(default.first_backoff, Duration::from_millis),
            max_backoff: self
                .max_backoff_seconds
                .map_or(default.max_backoff, Duration::from_secs),
        }
    }

    fn problem(&self) -> Option<String> {
        for (key, value) in [
            ("max_attempts", self.max_attempts),
            ("refused_attempts", self.refused_attempts),
        ] {
            if let Some(n) = value
                && !(1..=1000).contains(&n)
            {
                return Some(format!(
                    "[outbox] {key} = {n} is not between 1 and 1000; it counts the attempts before a notification is dead"
                ));
            }
        }
        if let Some(ms) = self.first_backoff_ms
            && !(1..=3_600_000).contains(&ms)
        {
            return Some(format!(
                "[outbox] first_backoff_ms = {ms} is not between 1 and 3600000"
            ));
        }
        if let Some(s) = self.max_backoff_seconds
            && !(1..=604_800).contains(&s)
        {
            return Some(format!(
                "[outbox] max_backoff_seconds = {s} is not between 1 and 604800 (a week)"
            ));
        }
        None
    }
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

/// How long stored records are kept, in days per kind (0: forever), and
/// how the pruner deletes the rest (`store::retention`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The decision log (default 30).
    pub decisions_days: Option<u32>,
    /// Delivered outbox rows (default 7).
    pub notifications_days: Option<u32>,
    /// Finished requests, since their last change (default 30).
    pub requests_days: Option<u32>,
    /// Finished flows with their tasks and history, since their last change (default 30).
    pub flows_days: Option<u32>,
    /// Offers with their invitees, since their expiry (default 365).
    pub offers_days: Option<u32>,
    /// How often the pruner runs, in seconds (default 60).
    pub interval_seconds: Option<u64>,
    /// Rows deleted per write transaction, at most (default 500).
    pub batch_rows: Option<u32>,
}

/// The longest retention accepted, in days (a century; 0 keeps forever).
const MAX_RETENTION_DAYS: u32 = 36_500;
/// The longest pause between two passes of the pruner: a day.
const MAX_INTERVAL_SECONDS: u64 = 86_400;
/// The most rows one delete transaction may hold the writer for.
const MAX_BATCH_ROWS: u32 = 10_000;

impl RetentionConfig {
    pub fn policy(&self) -> Policy {
        let default = Policy::default();
        let keep = |days: Option<u32>, default: Option<Duration>| match days {
            None => default,
            Some(0) => None,
            Some(days) => Some(DAY * days),
        };
        Policy {
            decisions: keep(self.decisions_days, default.decisions),
            notifications: keep(self.notifications_days, default.notifications),
            requests: keep(self.requests_days, default.requests),
            flows: keep(self.flows_days, default.flows),
            offers: keep(self.offers_days, default.offers),
            batch_rows: self.batch_rows.unwrap_or(default.batch_rows),
        }
    }

    /// How long the pruner waits between two passes.
    pub fn interval(&self) -> Duration {
        self.interval_seconds
            .map_or(DEFAULT_INTERVAL, Duration::from_secs)
    }

    /// The first value out of its range, as a message naming the key.
    fn problem(&self) -> Option<String> {
        let days = [
            ("decisions_days", self.decisions_days),
            ("notifications_days", self.notifications_days),
            ("requests_days", self.requests_days),
            ("flows_days", self.flows_days),
            ("offers_days", self.offers_days),
        ];
        for (key, value) in days {
            if let Some(n) = value
                && n > MAX_RETENTION_DAYS
            {
                return Some(format!(
                    "[retention] {key} = {n} is more than {MAX_RETENTION_DAYS} days; use 0 to keep these records forever"
                ));
            }
        }
        if let Some(n) = self.interval_seconds
            && !(1..=MAX_INTERVAL_SECONDS).contains(&n)
        {
            return Some(format!(
                "[retention] interval_seconds = {n} is not between 1 and {MAX_INTERVAL_SECONDS}; it is how often the pruner runs (default {})",
                DEFAULT_INTERVAL.as_secs()
            ));
        }
        if let Some(n) = self.batch_rows
            && !(1..=MAX_BATCH_ROWS).contains(&n)
        {
            return Some(format!(
                "[retention] batch_rows = {n} is not between 1 and {MAX_BATCH_ROWS}; each batch holds the database's writer while it deletes (default {})",
                Policy::default().batch_rows
            ));
        }
        None
    }
}

/// The internal API's listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalConfig {
    /// Connections open at once (default 1024).
    pub max_connections: Option<usize>,
    /// For a request's head, and how long an idle connection is kept (default 10).
    pub header_timeout_seconds: Option<u64>,
    /// For a request's body, from its head (default 60: plugin uploads).
    pub body_timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    /// How people reach the public site (the base of reconciliation links);
    /// default: the public listener's own address.
    pub url: Option<String>,
    /// Connections open at once (default 4096).
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (default 64).
    pub max_connections_per_address: Option<usize>,
    /// For a request's head, and how long an idle connection is kept (default 10).
    pub header_timeout_seconds: Option<u64>,
    /// For a request's body, from its head (default 20).
    pub body_timeout_seconds: Option<u64>,
}

/// The most connections a listener may be given.
const MAX_CONNECTIONS: usize = 1_000_000;
/// The longest header or body timeout accepted, in seconds.
const MAX_TIMEOUT_SECONDS: u64 = 3600;

impl InternalConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.unwrap_or(1024),
            max_per_address: None,
            header_timeout: Duration::from_secs(self.header_timeout_seconds.unwrap_or(10)),
            body_timeout: Duration::from_secs(self.body_timeout_seconds.unwrap_or(60)),
        }
    }
}

impl PublicConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.unwrap_or(4096),
            max_per_address: Some(self.max_connections_per_address.unwrap_or(64)),
            header_timeout: Duration::from_secs(self.header_timeout_seconds.unwrap_or(10)),
            body_timeout: Duration::from_secs(self.body_timeout_seconds.unwrap_or(20)),
        }
    }
}

/// The first listener setting out of its range, as a message naming it.
fn listener_problem(
    section: &str,
    max_connections: Option<usize>,
    per_address: Option<usize>,
    timeouts: [(&str, Option<u64>); 2],
) -> Option<String> {
    for (key, value) in [
        ("max_connections", max_connections),
        ("max_connections_per_address", per_address),
    ] {
        if let Some(n) = value
            && !(1..=MAX_CONNECTIONS).contains(&n)
        {
            return Some(format!(
                "[{section}] {key} = {n} is not between 1 and {MAX_CONNECTIONS}"
            ));
        }
    }
    for (key, value) in timeouts {
        if let Some(n) = value
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&n)
        {
            return Some(format!(
                "[{section}] {key} = {n} is not between 1 and {MAX_TIMEOUT_SECONDS} seconds"
            ));
        }
    }
    None
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationConfig {
    /// How long a sync page waits for the user (default 900).
    pub sync_window_seconds: Option<u64>,
    /// Wrong keys and failed tries before a link locks (default 10).
    pub max_attempts: Option<i64>,
    /// How long a link's first lock lasts, in seconds; each further lock
    /// doubles it (default 60).
    pub lock_seconds: Option<u64>,
    /// The longest lock, in seconds (default 3600).
    pub max_lock_seconds: Option<u64>,
    /// "Use another account" on the page: `off` (default) or `confirm`
    /// (the other account's contact confirms by a single-use link).
    pub other_account: Option<OtherAccount>,
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
        let internal = &config.internal;
        let public = &config.public;
        let listeners = listener_problem(
            "internal",
            internal.max_connections,
            None,
            [
                ("header_timeout_seconds", internal.header_timeout_seconds),
                ("body_timeout_seconds", internal.body_timeout_seconds),
            ],
        )
        .or_else(|| {
            listener_problem(
                "public",
                public.max_connections,
                public.max_connections_per_address,
                [
                    ("header_timeout_seconds", public.header_timeout_seconds),
                    ("body_timeout_seconds", public.body_timeout_seconds),
                ],
            )
        });
        if let Some(problem) = listeners {
            return Err(Diagnostic::error(path, None, problem));
        }
        if let Some(problem) = config.store.problems().into_iter().next() {
            return Err(Diagnostic::error(path, None, problem));
        }
        if let Some(message) = config.retention.problem() {
            return Err(Diagnostic::error(path, None, message));
        }
        let r = &config.reconciliation;
        if r.max_attempts.is_some_and(|n| !(1..=1000).contains(&n)) {
            return Err(Diagnostic::error(
                path,
                None,
                "[reconciliation] max_attempts is not between 1 and 1000; it counts the wrong keys before a link locks",
            ));
        }
        // A week at most: a lock is a cool-down, never the end of a request.
        const WEEK: u64 = 7 * 86_400;
        let in_range = |v: Option<u64>| v.is_none_or(|s| (1..=WEEK).contains(&s));
        if !in_range(r.lock_seconds) || !in_range(r.max_lock_seconds) {
            return Err(Diagnostic::error(
                path,
                None,
                format!(
                    "[reconciliation] lock_seconds and max_lock_seconds must be between 1 and {WEEK} (a week)"
                ),
            ));
        }
        if let (Some(first), Some(max)) = (r.lock_seconds, r.max_lock_seconds)
            && first > max
        {
            return Err(Diagnostic::error(
                path,
                None,
                format!(
                    "[reconciliation] lock_seconds = {first} is more than max_lock_seconds = {max}; the first lock cannot be longer than the longest"
                ),
            ));
        }
        if r.sync_window_seconds
            .is_some_and(|s| !(1..=86_400).contains(&s))
        {
            return Err(Diagnostic::error(
                path,
                None,
                "[reconciliation] sync_window_seconds must be between 1 and 86400 (a day): how long a page waits for the user",
            ));
        }
        if let Some(message) = config.outbox.problem() {
            return Err(Diagnostic::error(path, None, message));
        }
        if let Some(message) = config.plans.problem() {
            return Err(Diagnostic::error(path, None, message));
        }
        if let Some(message) = config.provisioning.problem() {
            return Err(Diagnostic::error(path, None, message));
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
    fn the_auth_section_opens_or_closes_health_and_metrics_and_places_the_token_file() {
        let default = load("").unwrap().auth;
        let open = default.open_routes();
        assert!(open.healthz && open.metrics);
        assert_eq!(
            default.operator_token_file(Path::new("data/rulehost.db")),
            Path::new("data/rulehost.db.operator-token")
        );
        let set = load("[auth]\nopen_healthz = false\nopen_metrics = false\noperator_token_file = \"/run/op\"\n")
            .unwrap()
            .auth;
        let open = set.open_routes();
        assert!(!open.healthz && !open.metrics);
        assert_eq!(
            set.operator_token_file(Path::new("x.db")),
            Path::new("/run/op")
        );
        let err = load("[auth]\nopen_metric = true\n").unwrap_err();
        assert!(err.to_string().contains("open_metric"), "{err}");
    }

    #[test]
    fn the_outbox_section_sets_the_retries() {
        assert_eq!(load("").unwrap().outbox.policy(), RetryPolicy::default());
        let set = load("[outbox]\nmax_attempts = 5\nrefused_attempts = 1\nfirst_backoff_ms = 10\nmax_backoff_seconds = 60\n")
            .unwrap()
            .outbox
            .policy();
        assert_eq!(
            set,
            RetryPolicy {
                max_attempts: 5,
                refused_attempts: 1,
                first_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(60),
            }
        );
        for bad in [
            "max_attempts = 0",
            "refused_attempts = 5000",
            "first_backoff_ms = 0",
            "max_backoff_seconds = 0",
        ] {
            let err = load(&format!("[outbox]\n{bad}\n")).unwrap_err().to_string();
            assert!(err.contains("[outbox]"), "{bad}: {err}");
        }
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
    fn the_retention_section_sets_days_per_kind_with_0_for_forever() {
        let default = load("").unwrap().retention;
        assert_eq!(default.policy(), Policy::default());
        assert_eq!(default.policy().notifications, Some(DAY * 7));
        assert_eq!(default.interval(), Duration::from_secs(60));
        let set = load(
            "[retention]\ndecisions_days = 0\nnotifications_days = 1\nrequests_days = 90\nflows_days = 365\ninterval_seconds = 5\nbatch_rows = 50\n",
        )
        .unwrap()
        .retention;
        let policy = set.policy();
        assert_eq!(policy.decisions, None);
        assert_eq!(policy.notifications, Some(DAY));
        assert_eq!(policy.requests, Some(DAY * 90));
        assert_eq!(policy.flows, Some(DAY * 365));
        assert_eq!(policy.batch_rows, 50);
        assert_eq!(set.interval(), Duration::from_secs(5));
        let forever = load("[retention]\ndecisions_days = 0\nnotifications_days = 0\nrequests_days = 0\nflows_days = 0\noffers_days = 0\n")
            .unwrap()
            .retention
            .policy();
        assert!(forever.keeps_everything());
    }

    #[test]
    fn retention_values_out_of_range_or_misspelt_are_refused() {
        for (text, expected) in [
            (
                "batch_rows = 0",
                "batch_rows = 0 is not between 1 and 10000",
            ),
            ("batch_rows = 10001", "batch_rows = 10001"),
            (
                "interval_seconds = 0",
                "interval_seconds = 0 is not between 1",
            ),
            (
                "flows_days = 36501",
                "flows_days = 36501 is more than 36500 days",
            ),
            ("decisions_day = 3", "decisions_day"),
            ("requests_days = -1", ":2: invalid value"),
        ] {
            let err = load(&format!("[retention]\n{text}\n")).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn the_listener_sections_set_bounds_and_timeouts() {
        let default = load("").unwrap();
        let (internal, public) = (default.internal.limits(), default.public.limits());
        assert_eq!(
            (internal.max_connections, internal.max_per_address),
            (1024, None)
        );
        assert_eq!(
            (public.max_connections, public.max_per_address),
            (4096, Some(64))
        );
        assert_eq!(internal.header_timeout, Duration::from_secs(10));
        assert_eq!(public.body_timeout, Duration::from_secs(20));
        let set = load(
            "[internal]\nmax_connections = 8\nheader_timeout_seconds = 2\nbody_timeout_seconds = 3\n[public]\nmax_connections = 9\nmax_connections_per_address = 2\nheader_timeout_seconds = 4\nbody_timeout_seconds = 5\n",
        )
        .unwrap();
        let (internal, public) = (set.internal.limits(), set.public.limits());
        assert_eq!(internal.max_connections, 8);
        assert_eq!(internal.header_timeout, Duration::from_secs(2));
        assert_eq!(internal.body_timeout, Duration::from_secs(3));
        assert_eq!(
            (public.max_connections, public.max_per_address),
            (9, Some(2))
        );
        assert_eq!(public.header_timeout, Duration::from_secs(4));
        assert_eq!(public.body_timeout, Duration::from_secs(5));
        for (text, expected) in [
            (
                "[internal]\nmax_connections = 0\n",
                "[internal] max_connections = 0",
            ),
            (
                "[public]\nmax_connections_per_address = 0\n",
                "[public] max_connections_per_address = 0",
            ),
            (
                "[public]\nheader_timeout_seconds = 0\n",
                "[public] header_timeout_seconds = 0",
            ),
            (
                "[internal]\nbody_timeout_seconds = 3601\n",
                "body_timeout_seconds = 3601",
            ),
            ("[internal]\nidle_seconds = 3\n", "idle_seconds"),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
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
