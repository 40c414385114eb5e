//! The checkpointer: copies the WAL back into the database file on a thread
//! of its own, so that no commit waits for it. The same thread commits a
//! batch of journaled writes (`writer.rs`) that nothing else committed
//! within its window.
//!
//! SQLite's default runs a checkpoint inside whichever commit crosses 1,000
//! WAL pages, with two `fsync`s: that commit, and every write queued behind
//! it, waits milliseconds (profiled: the tail of `POST /v1/checks`). Here the
//! writer never checkpoints (`wal_autocheckpoint = 0`); this thread runs a
//! passive checkpoint, which never blocks readers or the writer, when there
//! were commits since the last one. A passive checkpoint cannot rewind the
//! WAL while writes keep arriving, so once the WAL passes
//! [`RESTART_FRAMES`] a restarting checkpoint waits for a gap between
//! writes and starts the WAL over, which bounds the file's size.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::writer::Writer;

/// How often the thread looks for new commits.
const INTERVAL: Duration = Duration::from_millis(20);

/// WAL pages (4 KiB each) past which the WAL is restarted: 64 MiB.
const RESTART_FRAMES: i64 = 16_384;

/// What the writer tells the checkpointer, and readers.
#[derive(Default)]
pub(super) struct Nudge {
    commits: AtomicU64,
    /// A batch of journaled writes is open: a reader commits it first.
    batch: AtomicBool,
    /// `(stop, batch opened)`, and the thread's wake-up.
    signal: Mutex<(bool, bool)>,
    wake: Condvar,
}

impl Nudge {
    /// Called after every commit: one relaxed add, no wake-up.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch opened: the thread commits it when due, unless someone
    /// else does first. Once per batch, not per write.
    pub fn batch_opened(&self) {
        self.batch.store(true, Ordering::Release);
        super::lock(&self.signal).1 = true;
        self.wake.notify_one();
    }

    pub fn batch_closed(&self) {
        self.batch.store(false, Ordering::Release);
    }

    /// Whether journaled writes are waiting for their commit.
    pub fn batch_open(&self) -> bool {
        self.batch.load(Ordering::Acquire)
    }
}

pub(super) struct Checkpointer {
    nudge: Arc<Nudge>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// `writer` is held while the WAL restarts, so the store's own writes
    /// wait on its lock (woken at once) rather than in SQLite's busy loop.
    pub fn start(
        path: &Path,
        writer: Arc<Mutex<Writer>>,
        nudge: Arc<Nudge>,
    ) -> Result<Checkpointer, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_handler(Some(super::busy_wait))?;
        let thread = std::thread::Builder::new()
            .name("rulehost-checkpoint".into())
            .spawn({
                let nudge = nudge.clone();
                move || run(&conn, &writer, &nudge)
            })
            .map_err(|e| {
                rusqlite::Error::ToSqlConversionFailure(
                    format!("cannot start the checkpoint thread: {e}").into(),
                )
            })?;
        Ok(Checkpointer {
            nudge,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        super::lock(&self.nudge.signal).0 = true;
        self.nudge.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, writer: &Mutex<Writer>, nudge: &Nudge) {
    let mut seen = 0;
    let mut next_checkpoint = Instant::now() + INTERVAL;
    // How long until the open batch is due, when one is open.
    let mut batch_due: Option<Duration> = None;
    loop {
        let until_checkpoint = next_checkpoint.saturating_duration_since(Instant::now());
        let timeout = batch_due.map_or(until_checkpoint, |due| due.min(until_checkpoint));
        let guard = super::lock(&nudge.signal);
        let (mut guard, _) = nudge
            .wake
            .wait_timeout_while(guard, timeout, |(stop, opened)| !*stop && !*opened)
            .unwrap_or_else(|e| e.into_inner());
        if guard.0 {
            // Closing the last connection checkpoints what is left.
            return;
        }
        let opened = std::mem::take(&mut guard.1);
        drop(guard);
        if opened || batch_due.is_some() {
            batch_due = super::lock(writer).commit_if_due();
        }
        if Instant::now() < next_checkpoint {
            continue;
        }
        next_checkpoint = Instant::now() + INTERVAL;
        let commits = nudge.commits.load(Ordering::Relaxed);
        if commits != seen {
            seen = commits;
            if let Err(e) = checkpoint(conn, writer) {
                tracing::warn!("WAL checkpoint failed (retried in {INTERVAL:?}): {e}");
            }
        }
    }
}

/// One passive checkpoint; a restarting one when the WAL has grown past
/// its bound. The restart follows the passive one at once, so it has few
/// pages left to copy: it holds writes up for about a millisecond.
fn checkpoint(conn: &Connection, writer: &Mutex<Writer>) -> Result<(), super::StoreError> {
    let (_, wal_frames) = wal_checkpoint(conn, "PASSIVE")?;
    if wal_frames >= RESTART_FRAMES {
        let started = std::time::Instant::now();
        let mut writer = super::lock(writer);
        // A checkpoint cannot run inside the writer's open batch.
        writer.commit()?;
        let (busy, _) = wal_checkpoint(writer.conn(), "RESTART")?;
        drop(writer);
        tracing::debug!(wal_frames, busy, took = ?started.elapsed(), "WAL restart");
    }
    Ok(())
}

/// `(busy, WAL frames)` after a checkpoint in `mode`.
fn wal_checkpoint(conn: &Connection, mode: &str) -> Result<(bool, i64), rusqlite::Error> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreError};

    #[test]
    fn the_thread_checkpoints_commits_that_the_writer_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = Store::open(&path).unwrap();
        let writer_setting: i64 = store
            .write(|tx| {
                tx.execute_batch("CREATE TABLE bulk (x BLOB)")?;
                tx.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!(writer_setting, 0, "commits must not checkpoint");
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..64 {
            store
                .write(|tx| {
                    tx.execute("INSERT INTO bulk VALUES (zeroblob(16384))", [])
                        .map_err(StoreError::from)
                })
                .unwrap();
        }
        // 1 MiB went to the WAL; only a checkpoint moves it into the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + (1 << 20) {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was checkpointed into the database file"
            );
            std::thread::sleep(INTERVAL);
        }
        drop(store);
    }
}
