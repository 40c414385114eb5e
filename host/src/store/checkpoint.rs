//! The checkpointer: copies the WAL back into the database file on a
//! thread and a connection of its own, so that no commit waits for it.
//!
//! SQLite's default runs a checkpoint inside whichever commit crosses 1,000
//! WAL pages: that commit, and every write queued behind it, waits. Here
//! the writer never checkpoints inside a commit (`wal_autocheckpoint = 0`);
//! this thread runs a PASSIVE checkpoint, which never takes a lock that a
//! reader or the writer waits for, every [`INTERVAL`] when groups were
//! committed. Under continuous writes a passive checkpoint never catches
//! the writer, so the WAL would only grow; once it runs past
//! [`RESTART_BYTES`] this thread syncs the database file and asks the
//! writer to start the WAL over between two groups (`writer::restart_wal`),
//! whose own sync of the database file then has little left to do. If readers keep the WAL busy so that
//! the file grows past [`TRUNCATE_BYTES`], a TRUNCATE checkpoint is tried
//! without a busy handler: it succeeds only when no reader holds the log,
//! and otherwise gives up at once rather than hold the writer while it
//! waits.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::writer::StoreStats;

/// How often the thread checkpoints when anything was committed. Often, so
/// that each checkpoint has little to sync: while a checkpoint fsyncs the
/// WAL, the writer's next write to a page under writeback waits for it
/// (once a second, with tens of MiB behind each, a check's p99 was 70 ms).
const INTERVAL: Duration = Duration::from_millis(20);

/// WAL size past which the writer restarts the WAL between two groups.
const RESTART_BYTES: u64 = 4 << 20;

/// WAL size past which a TRUNCATE checkpoint is tried.
pub(super) const TRUNCATE_BYTES: u64 = 64 << 20;

pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(
        path: &Path,
        synchronous: &str,
        stats: Arc<StoreStats>,
    ) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        // A checkpoint syncs as the writer's commits do.
        conn.pragma_update(None, "synchronous", synchronous)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let wal = wal_path(path);
        let thread = std::thread::Builder::new()
            .name("rulehost-checkpoint".into())
            .spawn({
                let stop = stop.clone();
                move || run(&conn, &wal, page_size, &stats, &stop)
            })
            .map_err(|e| {
                StoreError::Commit(format!("cannot start the checkpoint thread: {e}").into())
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *super::lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn run(
    conn: &Connection,
    wal: &Path,
    page_size: i64,
    stats: &StoreStats,
    stop: &(Mutex<bool>, Condvar),
) {
    let mut seen = 0;
    // How far SQLite had copied at the last early sync of the database.
    let mut synced = -1;
    loop {
        let guard = super::lock(&stop.0);
        let (guard, _) = stop
            .1
            .wait_timeout_while(guard, INTERVAL, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        if *guard {
            // Closing the last connection checkpoints what is left.
            return;
        }
        drop(guard);
        let commits = stats.commits.load(Ordering::Relaxed);
        // Also while the WAL is over its bound and was not truncated yet.
        let oversize = stats.wal_bytes.load(Ordering::Relaxed) > TRUNCATE_BYTES;
        if commits == seen && !oversize {
            continue;
        }
        // A failed checkpoint leaves SQLite's backfill mark where it was: the
        // next one copies the same frames again, fsync included.
        match checkpoint(conn, wal, page_size, stats, &mut synced) {
            Ok(()) => seen = commits,
            Err(e) => tracing::warn!("WAL checkpoint failed (retried in {INTERVAL:?}): {e}"),
        }
    }
}

/// One passive checkpoint; a truncating one, tried once, when the WAL is
/// past [`TRUNCATE_BYTES`] and the passive one copied every frame.
fn checkpoint(
    conn: &Connection,
    wal: &Path,
    page_size: i64,
    stats: &StoreStats,
    synced: &mut i64,
) -> Result<(), StoreError> {
    let (_, frames, copied) = wal_checkpoint(conn, "PASSIVE")?;
    let bytes = std::fs::metadata(wal).map_or(0, |m| m.len());
    stats.wal_bytes.store(bytes, Ordering::Relaxed);
    if frames < 0 {
        // Another checkpoint (the writer's restart) held the log; SQLite
        // then counts nothing (-1). Next time.
        return Ok(());
    }
    stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    // The file keeps its size when the WAL starts over: what matters is
    // how far past the start the log runs, SQLite's frame count.
    if frames.saturating_mul(page_size) as u64 > RESTART_BYTES {
        // The restart syncs the database file, inside the writer: sync what
        // the passive checkpoints copied here first, so that it finds a few
        // pages to sync instead of megabytes (3-7 ms of every group behind
        // it). Even when this one copied every frame it counted: SQLite
        // syncs only if no commit landed meanwhile. Once per copy: while a
        // reader keeps the restart from happening, later checkpoints that
        // copied nothing new have nothing to sync.
        if copied != *synced {
            *synced = copied;
            if let Err(e) = sync_database(conn) {
                // Only a head start: the restart syncs, and reports, by itself.
                tracing::warn!("syncing the database file before a WAL restart failed: {e}");
            }
        }
        stats.wal_restart_wanted.store(true, Ordering::Relaxed);
    }
    if bytes > TRUNCATE_BYTES && frames == copied {
        // This connection has no busy handler: a busy log ends the try.
        match wal_checkpoint(conn, "TRUNCATE") {
            Ok((false, _, _)) => {
                stats.wal_truncations.fetch_add(1, Ordering::Relaxed);
                stats.wal_bytes.store(0, Ordering::Relaxed);
            }
            // A reader or the writer holds the log: next time.
            Ok((true, _, _)) | Err(_) => {
                tracing::debug!(
                    wal_bytes = bytes,
                    "WAL truncation deferred: the log is in use"
                );
            }
        }
    }
    Ok(())
}

/// Syncs the database file with this connection's own handle on it.
///
/// A passive checkpoint that has not caught up with the writer copies
/// pages into the database file without syncing it: SQLite syncs when a
/// checkpoint copies the last frame, which under continuous writes is the
/// writer's RESTART. Syncing early changes nothing SQLite relies on (it
/// still syncs then); it only leaves that sync less to do.
///
/// Through SQLite's own file (`SQLITE_FCNTL_FILE_POINTER` and its `xSync`)
/// rather than a descriptor of ours: closing any descriptor of the file
/// would drop the POSIX locks that every connection of this process holds
/// on it.
fn sync_database(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::ffi;
    let failed = |code: i32, what: &str| {
        StoreError::from(rusqlite::Error::SqliteFailure(
            ffi::Error::new(code),
            Some(format!("cannot sync the database file: {what}")),
        ))
    };
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `conn` is open and used by this thread only; the file control
    // writes one pointer into `file`, which lives as long as the connection.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(failed(rc, "the connection has no database file"));
    }
    // SAFETY: `file` is the connection's open `sqlite3_file`; its methods
    // are null only while the file is closed, which the checkpoint just
    // made on it rules out (checked all the same).
    let rc = unsafe {
        match (*file).pMethods.as_ref().and_then(|methods| methods.xSync) {
            Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
            None => return Err(failed(ffi::SQLITE_CANTOPEN, "the file is not open")),
        }
    };
    if rc != ffi::SQLITE_OK {
        return Err(failed(rc, "the file system refused it"));
    }
    Ok(())
}

/// `(busy, WAL frames, frames checkpointed)` after a checkpoint in `mode`.
fn wal_checkpoint(conn: &Connection, mode: &str) -> Result<(bool, i64, i64), rusqlite::Error> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreError};

    #[test]
    fn the_database_file_is_synced_without_dropping_the_processs_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        let locks = || posix_locks_on(&path);
        let held = locks();
        assert!(held > 0, "the open database should hold locks");
        sync_database(&conn).unwrap();
        // Closing a descriptor of the file would have dropped them all.
        assert_eq!(locks(), held);
        store
            .write(|tx| {
                tx.raw()
                    .execute_batch("CREATE TABLE after_sync (x INTEGER)")
                    .map_err(StoreError::from)
            })
            .unwrap();
        // A database without a file says so instead of pretending to sync.
        let memory = Connection::open_in_memory().unwrap();
        let refused = sync_database(&memory).unwrap_err().to_string();
        assert!(
            refused.contains("cannot sync the database file"),
            "{refused}"
        );
    }

    /// POSIX locks this process holds on `path` (`/proc/locks`).
    fn posix_locks_on(path: &Path) -> usize {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(path).unwrap().ino().to_string();
        let pid = std::process::id().to_string();
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1) == Some(&"POSIX")
                    && fields.get(4) == Some(&pid.as_str())
                    && fields.get(5).and_then(|f| f.rsplit(':').next()) == Some(inode.as_str())
            })
            .count()
    }

    #[test]
    fn the_thread_checkpoints_commits_that_the_writer_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = Store::open(&path).unwrap();
        let writer_setting: i64 = store
            .write(|tx| {
                let c = tx.raw();
                c.execute_batch("CREATE TABLE bulk (x BLOB)")?;
                c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!(writer_setting, 0, "commits must not checkpoint");
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..64 {
            store
                .write(|tx| {
                    tx.raw()
                        .execute("INSERT INTO bulk VALUES (zeroblob(16384))", [])
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
        assert!(store.stats().checkpoints.load(Ordering::Relaxed) > 0);
        drop(store);
    }
}
