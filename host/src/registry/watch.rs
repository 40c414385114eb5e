//! The file watcher: the plugins and rules folders, watched with `notify`,
//! debounced, and applied by one reload thread, so two reloads never race
//! (and the live registry serializes them again anyway).
//!
//! - `<plugins_dir>/<name>.wasm` created, written or renamed into place →
//!   its bytes are offered as plugin `<name>` ([`Live::offer`]). Names that
//!   start with `.`, temp and backup files (anything not ending in exactly
//!   `.wasm`, or not a valid plugin name) and files in subfolders are ignored.
//!   A plugin no live service uses is offered only if a manifest on disk names
//!   it, and then through a rules reload (which reads it from its file).
//! - any `*.toml` under `rules_dir` (manifests, cases, roles, flows) → the
//!   whole rules folder is reloaded as one snapshot ([`Live::reload_rules`]).
//!
//! Debounce: a batch is applied once its paths have been quiet for
//! [`QUIET`], or for only [`SETTLE`] when the last event of every path in it
//! says the write is finished (closed after writing, renamed into place,
//! removed). A batch never waits more than [`MAX_DELAY`]. Whatever slips
//! through (a half-copied file) is rejected by validation, and the write
//! that completes it is offered again: nothing unvalidated goes live.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::{Live, Manifest, Offered, Source, Step, manifest_files, valid_plugin_name};

/// How long a batch's paths must be quiet before it is applied.
pub const QUIET: Duration = Duration::from_millis(200);
/// The quiet needed when every path's last event says its write is finished.
pub const SETTLE: Duration = Duration::from_millis(25);
/// The longest a batch waits while events keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// What a changed path asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// Offer the file as this plugin.
    Plugin(String),
    /// Reload the rules folder.
    Rules,
}

/// The watched folders, canonical (as the events name them).
#[derive(Debug, Clone)]
pub(crate) struct Dirs {
    pub plugins: PathBuf,
    pub rules: PathBuf,
}

/// What `path` asks for, if anything.
pub(crate) fn classify(dirs: &Dirs, path: &Path) -> Option<Target> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    if path.parent() == Some(dirs.plugins.as_path())
        && let Some(stem) = name.strip_suffix(".wasm")
    {
        return valid_plugin_name(stem).then(|| Target::Plugin(stem.to_owned()));
    }
    let inside = path.strip_prefix(&dirs.rules).ok()?;
    let hidden = inside
        .components()
        .any(|c| c.as_os_str().to_str().is_none_or(|s| s.starts_with('.')));
    (!hidden && path.extension().is_some_and(|x| x == "toml")).then_some(Target::Rules)
}

/// Whether an event kind is a change worth acting on, and if so whether it
/// says the write is finished.
pub(crate) fn relevance(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(true),
        // Opens and reads (ours included) change nothing.
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(ModifyKind::Name(
            RenameMode::To | RenameMode::From | RenameMode::Both,
        )) => Some(true),
        EventKind::Remove(_) => Some(true),
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any | EventKind::Other => {
            Some(false)
        }
    }
}

/// Changes gathered while debouncing: each path with whether its last
/// event said the write is finished.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    paths: BTreeMap<PathBuf, (Target, bool)>,
    /// The event queue overflowed: look at everything again.
    rescan: bool,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.rescan
    }

    /// Adds an event's relevant paths; whether it had any.
    pub(crate) fn add(&mut self, dirs: &Dirs, event: &Event) -> bool {
        if event.need_rescan() {
            self.rescan = true;
            return true;
        }
        let Some(finished) = relevance(&event.kind) else {
            return false;
        };
        let mut any = false;
        for path in &event.paths {
            if let Some(target) = classify(dirs, path) {
                self.paths.insert(path.clone(), (target, finished));
                any = true;
            }
        }
        any
    }

    /// How long the batch must be quiet before it is applied.
    pub(crate) fn quiet(&self) -> Duration {
        if !self.rescan && self.paths.values().all(|(_, finished)| *finished) {
            SETTLE
        } else {
            QUIET
        }
    }

    /// The plugins to offer, and whether the rules need a reload.
    pub(crate) fn targets(&self) -> (BTreeSet<String>, bool) {
        let mut plugins = BTreeSet::new();
        let mut rules = self.rescan;
        for (target, _) in self.paths.values() {
            match target {
                Target::Plugin(name) => {
                    plugins.insert(name.clone());
                }
                Target::Rules => rules = true,
            }
        }
        (plugins, rules)
    }
}

enum Msg {
    Event(notify::Result<Event>),
    Stop,
}

/// A running watcher; dropping it stops the watching and joins the reload
/// thread (after the batch it is applying, if any).
pub struct Watcher {
    stop: Sender<Msg>,
    watcher: Option<RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watches `live`'s plugins and rules folders (recursively) and applies
    /// their changes on one reload thread.
    pub fn start(live: Arc<Live>) -> Result<Watcher, String> {
        let canonical = |dir: &Path| {
            dir.canonicalize()
                .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))
        };
        let dirs = Dirs {
            plugins: canonical(&live.sources().plugins_dir)?,
            rules: canonical(&live.sources().rules_dir)?,
        };
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The reload thread is gone only when the watcher is stopping.
            let _ = events.send(Msg::Event(event));
        })
        .map_err(|e| format!("cannot start the file watcher: {e}"))?;
        // One recursive watch covers a folder inside the other.
        let mut roots = vec![dirs.rules.clone()];
        if !dirs.plugins.starts_with(&dirs.rules) {
            if dirs.rules.starts_with(&dirs.plugins) {
                roots = vec![dirs.plugins.clone()];
            } else {
                roots.push(dirs.plugins.clone());
            }
        }
        for root in &roots {
            watcher
                .watch(root, RecursiveMode::Recursive)
                .map_err(|e| format!("cannot watch `{}`: {e}", root.display()))?;
        }
        let thread = std::thread::Builder::new()
            .name("rulehost-watch".into())
            .spawn(move || run(&live, &dirs, &rx))
            .map_err(|e| format!("cannot start the reload thread: {e}"))?;
        tracing::info!(folders = ?roots, "watching for plugin and rules changes");
        Ok(Watcher {
            stop: tx,
            watcher: Some(watcher),
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.watcher.take());
        let _ = self.stop.send(Msg::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the reload thread panicked");
        }
    }
}

/// The reload thread: gather a batch, wait for quiet, apply; until stopped.
fn run(live: &Live, dirs: &Dirs, rx: &Receiver<Msg>) {
    let mut batch = Batch::default();
    loop {
        match rx.recv() {
            Ok(Msg::Event(event)) => note(&mut batch, dirs, event),
            Ok(Msg::Stop) | Err(_) => return,
        };
        if batch.is_empty() {
            continue;
        }
        let first = Instant::now();
        let mut last = first;
        loop {
            let deadline = (last + batch.quiet()).min(first + MAX_DELAY);
            let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Event(event)) => {
                    if note(&mut batch, dirs, event) {
                        last = Instant::now();
                    }
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        apply(live, dirs, &std::mem::take(&mut batch));
    }
}

fn note(batch: &mut Batch, dirs: &Dirs, event: notify::Result<Event>) -> bool {
    match event {
        Ok(event) => batch.add(dirs, &event),
        Err(e) => {
            tracing::warn!("file watcher: {e}");
            false
        }
    }
}

/// What became of one plugin file.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Done,
    /// Rejected at a step that a rules change could make pass.
    RejectedByRules,
    /// No live service uses it, but a manifest names it: a rules reload loads it.
    NeedsRules,
}

fn apply(live: &Live, dirs: &Dirs, batch: &Batch) {
    let (mut plugins, mut rules) = batch.targets();
    if batch.rescan {
        tracing::warn!("file watcher lost events; looking at every plugin and the rules again");
        plugins.extend(live.registry().load().plugins.keys().cloned());
    }
    let mut retry = Vec::new();
    for name in &plugins {
        match offer_file(live, dirs, name) {
            Applied::Done => {}
            Applied::RejectedByRules => retry.push(name),
            Applied::NeedsRules => rules = true,
        }
    }
    if !rules {
        return;
    }
    match live.reload_rules(Source::Watcher) {
        Ok(services) => {
            tracing::info!(services, "watcher: rules reloaded");
            // A plugin and the manifest it needs may change together.
            for name in retry {
                offer_file(live, dirs, name);
            }
        }
        Err(diagnostics) => {
            for d in diagnostics.iter().filter(|d| d.is_error()) {
                tracing::warn!(
                    "watcher: rules change rejected, the previous rules keep serving: {d}"
                );
            }
        }
    }
}

fn offer_file(live: &Live, dirs: &Dirs, name: &str) -> Applied {
    let path = live.sources().plugin_path(name);
    if !live.registry().load().plugins.contains_key(name) {
        if named_by_rules(&dirs.rules, name) {
            return Applied::NeedsRules;
        }
        tracing::debug!(
            plugin = name,
            "watcher: no service names this plugin; ignored"
        );
        return Applied::Done;
    }
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            tracing::debug!(plugin = name, path = %path.display(), "watcher: file gone; the live version stays");
            return Applied::Done;
        }
        Err(e) => {
            tracing::warn!(plugin = name, path = %path.display(), "watcher: cannot read the plugin: {e}");
            return Applied::Done;
        }
    };
    if bytes.is_empty() {
        // Truncated for a rewrite: the write that fills it comes next.
        tracing::debug!(
            plugin = name,
            "watcher: empty file; waiting for its content"
        );
        return Applied::Done;
    }
    match live.offer(name, &bytes, Source::Watcher, Some(&path)) {
        Ok(Offered::Activated { digest, services }) => {
            tracing::info!(plugin = name, %digest, ?services, path = %path.display(), "watcher: activated");
            Applied::Done
        }
        Ok(Offered::Unchanged { digest }) => {
            tracing::info!(plugin = name, %digest, "watcher: unchanged, already live");
            Applied::Done
        }
        Err(rejection) => {
            tracing::warn!(
                plugin = name,
                digest = ?rejection.digest.map(|d| d.to_string()),
                step = rejection.step.as_str(),
                path = %path.display(),
                "watcher: candidate rejected, the live version keeps serving: {}",
                rejection.message
            );
            match rejection.step {
                Step::Exports | Step::Cases | Step::Rules => Applied::RejectedByRules,
                _ => Applied::Done,
            }
        }
    }
}

/// Whether a manifest in `rules` names plugin `name` (unreadable or invalid
/// manifests are the rules reload's to report).
fn named_by_rules(rules: &Path, name: &str) -> bool {
    let Ok(files) = manifest_files(rules) else {
        return false;
    };
    files.iter().any(|file| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|source| Manifest::parse(file, &source).ok())
            .is_some_and(|m| m.plugins.values().any(|n| n == name))
    })
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};

    use super::*;

    fn dirs() -> Dirs {
        Dirs {
            plugins: PathBuf::from("/srv/plugins"),
            rules: PathBuf::from("/srv/rules"),
        }
    }

    fn target(path: &str) -> Option<Target> {
        classify(&dirs(), Path::new(path))
    }

    #[test]
    fn plugin_files_are_offered_by_their_stem() {
        assert_eq!(
            target("/srv/plugins/support-contract.wasm"),
            Some(Target::Plugin("support-contract".into()))
        );
        assert_eq!(
            target("/srv/plugins/my_rule2.wasm"),
            Some(Target::Plugin("my_rule2".into()))
        );
    }

    #[test]
    fn temp_hidden_nested_and_foreign_files_are_ignored() {
        for path in [
            "/srv/plugins/.support-contract.wasm.tmp",
            "/srv/plugins/.support-contract.wasm",
            "/srv/plugins/support-contract.wasm.tmp",
            "/srv/plugins/support-contract.wasm~",
            "/srv/plugins/support-contract.wasm.part",
            "/srv/plugins/#support-contract.wasm#",
            "/srv/plugins/.#support-contract.wasm",
            "/srv/plugins/support contract.wasm",
            "/srv/plugins/.wasm",
            "/srv/plugins/old/support-contract.wasm",
            "/srv/plugins/support-contract.toml",
            "/srv/plugins/readme.md",
            "/srv/plugins",
            "/elsewhere/support-contract.wasm",
            "/elsewhere/support-contract.toml",
            "/srv/rules/support-contract.toml.swp",
            "/srv/rules/.support-contract.toml",
            "/srv/rules/.git/config.toml",
            "/srv/rules/support-contract/cases/.draft.toml",
            "/srv/rules/notes.md",
            "/srv/rules/support-contract.wasm",
        ] {
            assert_eq!(target(path), None, "{path}");
        }
    }

    #[test]
    fn any_toml_under_the_rules_folder_reloads_the_rules() {
        for path in [
            "/srv/rules/support-contract.toml",
            "/srv/rules/roles.toml",
            "/srv/rules/support-contract/cases/contract-ended.toml",
            "/srv/rules/flows/connect-client.toml",
        ] {
            assert_eq!(target(path), Some(Target::Rules), "{path}");
        }
    }

    #[test]
    fn a_plugins_folder_inside_the_rules_folder_still_holds_plugins() {
        let dirs = Dirs {
            plugins: PathBuf::from("/srv/rules/plugins"),
            rules: PathBuf::from("/srv/rules"),
        };
        assert_eq!(
            classify(&dirs, Path::new("/srv/rules/plugins/a.wasm")),
            Some(Target::Plugin("a".into()))
        );
        assert_eq!(
            classify(&dirs, Path::new("/srv/rules/a.toml")),
            Some(Target::Rules)
        );
    }

    #[test]
    fn reads_and_metadata_are_not_changes() {
        assert_eq!(relevance(&EventKind::Access(AccessKind::Any)), None);
        assert_eq!(
            relevance(&EventKind::Access(AccessKind::Close(AccessMode::Read))),
            None
        );
        assert_eq!(
            relevance(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
            None
        );
        assert_eq!(
            relevance(&EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(true)
        );
        assert_eq!(
            relevance(&EventKind::Modify(ModifyKind::Name(RenameMode::To))),
            Some(true)
        );
        assert_eq!(relevance(&EventKind::Remove(RemoveKind::File)), Some(true));
        assert_eq!(
            relevance(&EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            Some(false),
            "more may come"
        );
        assert_eq!(relevance(&EventKind::Create(CreateKind::File)), Some(false));
    }

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn a_write_then_rename_settles_fast_and_offers_the_final_name() {
        let d = dirs();
        let mut batch = Batch::default();
        let tmp = "/srv/plugins/.support-contract.wasm.tmp";
        assert!(!batch.add(&d, &event(EventKind::Create(CreateKind::File), &[tmp])));
        assert!(!batch.add(
            &d,
            &event(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &[tmp])
        ));
        assert!(batch.is_empty());
        assert!(batch.add(
            &d,
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &[tmp, "/srv/plugins/support-contract.wasm"]
            )
        ));
        assert_eq!(batch.quiet(), SETTLE);
        assert_eq!(
            batch.targets(),
            (BTreeSet::from(["support-contract".to_owned()]), false)
        );
    }

    #[test]
    fn a_file_being_written_in_place_waits_for_quiet_until_closed() {
        let d = dirs();
        let path = "/srv/plugins/premium-support.wasm";
        let mut batch = Batch::default();
        assert!(batch.add(&d, &event(EventKind::Create(CreateKind::File), &[path])));
        assert!(batch.add(
            &d,
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &[path]
            )
        ));
        assert_eq!(
            batch.quiet(),
            QUIET,
            "a half-copied file is still being written"
        );
        assert!(batch.add(
            &d,
            &event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &[path]
            )
        ));
        assert_eq!(batch.quiet(), SETTLE);
        assert!(batch.add(
            &d,
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &["/srv/rules/premium-support.toml"]
            )
        ));
        assert_eq!(batch.quiet(), QUIET);
        assert_eq!(
            batch.targets(),
            (BTreeSet::from(["premium-support".to_owned()]), true)
        );
    }

    #[test]
    fn an_overflow_looks_at_everything_again() {
        let mut batch = Batch::default();
        let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(batch.add(&dirs(), &overflow));
        assert!(!batch.is_empty());
        assert_eq!(batch.quiet(), QUIET);
        assert_eq!(batch.targets(), (BTreeSet::new(), true));
    }
}
