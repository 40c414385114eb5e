//! Property tests of the host's settings file: any text is read or refused
//! with a diagnostic (never a panic), and what is accepted is what was written.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::config::HostConfig;
use crate::registry::Diagnostic;
use crate::store::SyncMode;
use crate::store::retention::DAY;

fn load(text: &str) -> Result<HostConfig, Diagnostic> {
    let dir =
        tempfile::tempdir().map_err(|e| Diagnostic::error(Path::new("-"), None, e.to_string()))?;
    let path = dir.path().join("rulehost.toml");
    std::fs::write(&path, text).map_err(|e| Diagnostic::error(&path, None, e.to_string()))?;
    HostConfig::load(&path)
}

const SECTIONS: &str = "[store]\nsync = \"full\"\nqueue = 64\n[retention]\ndecisions_days = 3\n[public]\nurl = \"http://example.test\"\n[reconciliation]\nsync_window_seconds = 60\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_text_is_read_or_refused_with_a_diagnostic(text in "\\PC{0,200}") {
        let _ = load(&text);
    }

    #[test]
    fn an_edited_file_is_read_or_refused(at in 0usize..200, len in 0usize..20, insert in "[\\[\\]=\"#\\n a-z0-9_.-]{0,10}") {
        let _ = load(&crate::prop_text::mutate(SECTIONS, at, len, insert.as_str()));
    }

    #[test]
    fn accepted_store_and_retention_settings_are_what_was_written(
        normal in any::<bool>(),
        delay in 0u64..=100_000,
        siblings in 1usize..1000,
        queue in 1usize..=1_000_000,
        days in prop::array::uniform4(0u32..=36_500),
        interval in 1u64..=86_400,
        batch in 1u32..=10_000,
    ) {
        let text = format!(
            "[store]\nsync = \"{}\"\ncommit_delay_us = {delay}\ncommit_siblings = {siblings}\nqueue = {queue}\n\
             [retention]\ndecisions_days = {}\nnotifications_days = {}\nrequests_days = {}\nflows_days = {}\ninterval_seconds = {interval}\nbatch_rows = {batch}\n",
            if normal { "normal" } else { "full" }, days[0], days[1], days[2], days[3],
        );
        let config = load(&text).map_err(|d| TestCaseError::fail(d.to_string()))?;
        let store = config.store.options();
        prop_assert_eq!(store.sync, if normal { SyncMode::Normal } else { SyncMode::Full });
        prop_assert_eq!(store.commit_delay, Duration::from_micros(delay));
        prop_assert_eq!((store.commit_siblings, store.queue), (siblings, queue));
        let policy = config.retention.policy();
        let kept = |d: u32| (d > 0).then(|| DAY * d);
        prop_assert_eq!(policy.decisions, kept(days[0]));
        prop_assert_eq!(policy.notifications, kept(days[1]));
        prop_assert_eq!(policy.requests, kept(days[2]));
        prop_assert_eq!(policy.flows, kept(days[3]));
        prop_assert_eq!(config.retention.interval(), Duration::from_secs(interval));
        prop_assert_eq!(policy.batch_rows, batch);
    }

    #[test]
    fn out_of_range_settings_are_refused(
        key in prop::sample::select(vec![
            "[store]\ncommit_delay_us", "[store]\nqueue", "[retention]\ndecisions_days",
            "[retention]\ninterval_seconds", "[retention]\nbatch_rows",
        ]),
        value in 1_000_001i64..=i64::MAX,
    ) {
        let too_big = format!("{key} = {value}\n");
        let negative = format!("{key} = -{value}\n");
        prop_assert!(load(&too_big).is_err(), "accepted: {}", too_big);
        prop_assert!(load(&negative).is_err(), "accepted: {}", negative);
    }
}
