//! Storage: the SQLite schema, its migrations, and the queries of every part
//! that keeps state (flows and their tasks, the outbox).
//!
//! SQLite is the embedded default: one file, WAL, one transaction around
//! every state change. It is blocking: callers on the async executor use
//! `spawn_blocking`, or [`Store::write_grouped`], which waits without a
//! thread. Queries live here, in one module per table group, so a server
//! database can later replace this module without touching the domain code.
//!
//! Connections: one writer (every write serializes on it, as SQLite's do
//! anyway), a pool of readers that WAL lets run beside the writer, and a
//! checkpointer thread that moves the WAL into the database off the commit
//! path (see `checkpoint.rs`). Group commit (`group.rs`) shares one commit
//! among the writes that queue while the previous one runs.
//!
//! Durability: WAL with `synchronous = NORMAL`. A committed transaction
//! survives the process being killed (`kill -9`) at any moment; a power
//! loss or kernel crash may lose the last transactions before a checkpoint.
//! A journaled write (a check's decision record, [`Store::write_logged`],
//! [`Store::write_grouped`]) is answered once its record is appended to
//! the redo journal (`journal.rs`), which gives it exactly the same
//! guarantee; SQLite commits it with the others of its batch a few
//! milliseconds later, and before any read that could miss it.

mod checkpoint;
pub mod entitlement;
pub mod flows;
mod group;
mod journal;
mod migrations;
pub mod outbox;
pub mod plugins;
pub mod retention;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use group::GroupStats;
pub use journal::journal_path;
pub use migrations::SCHEMA_VERSION;
pub use writer::{Execute, Logged};

use checkpoint::Nudge;
use writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database `{}`: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the database `{}` has schema version {found}, newer than this rulehost understands ({supported}); run a newer rulehost",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A group commit failed: nothing of the group was stored.
    #[error("database error, nothing was stored: {0}")]
    Commit(Arc<str>),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the redo journal: {0}")]
    Journal(String),
}

/// How the store makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long journaled writes may wait, durable in the journal, for the
    /// SQLite commit they share. Zero: each write is its own commit.
    pub batch_window: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            batch_window: Duration::from_millis(5),
        }
    }
}

/// The database, shared by every part of the host.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Arc<Mutex<Writer>>,
    /// Shared with the checkpointer: is a batch open? `None` in memory.
    nudge: Option<Arc<Nudge>>,
    /// Idle read connections; `None` for an in-memory database, which only
    /// its one connection can see.
    readers: Option<Mutex<Vec<Connection>>>,
    path: PathBuf,
    group: OnceLock<group::GroupCommit>,
    group_stats: Arc<GroupStats>,
    /// Held for its `Drop`, which stops and joins the thread.
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// How long a connection waits for a lock held elsewhere (another process,
/// or the checkpointer restarting the WAL) before it reports busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens (creating if needed) and migrates the database, with the
    /// default [`StoreOptions`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the database, redoes what a crash left
    /// in its journal, and migrates it.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // The checkpointer thread does this, so no commit waits for it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        // Waits in short steps: SQLite's own handler sleeps 1, 2, 5, 10 ms
        // between tries, which turns a 1 ms wait into 3 ms or 8.
        conn.busy_handler(Some(busy_wait)).map_err(open_err)?;
        let mut journal = journal::Journal::open(path)?;
        // Redone before migrating: the journal's statements were written
        // against the schema the database has now. A database that gets
        // the journal's table only now has nothing to redo, but a file
        // left by another database is emptied.
        let recovered = match &mut journal {
            Some(journal) if migrations::has_journal(&conn)? => {
                journal::recover(&mut conn, journal)?;
                true
            }
            _ => false,
        };
        migrations::apply(&mut conn, path)?;
        if let Some(journal) = &mut journal
            && !recovered
        {
            journal::recover(&mut conn, journal)?;
        }
        let nudge = Arc::new(Nudge::default());
        let writer = Writer::new(conn, journal, options.batch_window, Some(nudge.clone()))?;
        let writer = Arc::new(Mutex::new(writer));
        let checkpointer = checkpoint::Checkpointer::start(path, writer.clone(), nudge.clone())
            .map_err(open_err)?;
        Ok(Store::with(writer, Some((checkpointer, nudge)), path))
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn, Path::new(":memory:"))?;
        let writer = Writer::new(conn, None, Duration::ZERO, None)?;
        Ok(Store::with(
            Arc::new(Mutex::new(writer)),
            None,
            Path::new(":memory:"),
        ))
    }

    fn with(
        writer: Arc<Mutex<Writer>>,
        background: Option<(checkpoint::Checkpointer, Arc<Nudge>)>,
        path: &Path,
    ) -> Store {
        let (checkpointer, nudge) = background.unzip();
        Store {
            inner: Arc::new(Inner {
                writer,
                readers: checkpointer.is_some().then(|| Mutex::new(Vec::new())),
                nudge,
                path: path.to_owned(),
                group: OnceLock::new(),
                group_stats: Arc::default(),
                _checkpointer: checkpointer,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one transaction: committed when it returns `Ok` (with
    /// the open batch of journaled writes, if any), rolled back (nothing of
    /// it changes) when it returns `Err`.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        lock(&self.inner.writer).write(f)
    }

    /// Runs `f` as a journaled write: what it runs through
    /// [`Execute::run`] is durable when this returns `Ok`, and SQLite
    /// commits it with its batch. A write that changes rows any other way
    /// is committed before this returns, like [`Store::write`]. Rolled back
    /// (nothing of it changes) when `f` returns `Err`.
    pub fn write_logged<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Logged<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        lock(&self.inner.writer).write_logged(f)
    }

    /// [`Store::write_logged`] in the next group and waits, without holding
    /// a thread, until that group is durable. `f` runs on the store's
    /// writer thread inside a savepoint: when it returns `Err`, its own
    /// changes are rolled back and the rest of the group still stands.
    ///
    /// For short writes on the hot path (a check): `f` delays its whole
    /// group, so it must be short and bounded.
    pub async fn write_grouped<T, E>(
        &self,
        f: impl FnOnce(&Logged<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let group = self.inner.group.get_or_init(|| {
            group::GroupCommit::start(self.inner.writer.clone(), self.inner.group_stats.clone())
        });
        group.submit(f).await
    }

    /// Counters of group commit, for metrics.
    pub fn group_stats(&self) -> &GroupStats {
        &self.inner.group_stats
    }

    /// Runs read-only queries, on a reader connection when the database is
    /// a file: it sees every write answered before the call (an open batch
    /// of journaled writes is committed first), and otherwise never waits
    /// for the writer.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(readers) = &self.inner.readers else {
            return f(lock(&self.inner.writer).conn());
        };
        if self.inner.nudge.as_ref().is_some_and(|n| n.batch_open()) {
            lock(&self.inner.writer).commit()?;
        }
        let idle = lock(readers).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        lock(readers).push(conn);
        result
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a transaction open
    // (rusqlite rolls back on drop), so the connection is still sound.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Retries a busy database every 100 µs, for up to [`BUSY_TIMEOUT`].
fn busy_wait(tries: i32) -> bool {
    const STEP: Duration = Duration::from_micros(100);
    if STEP * tries.unsigned_abs() >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_handler(Some(busy_wait))?;
    Ok(conn)
}

/// Serde helpers for stored milliseconds, shown as RFC 3339 text.
pub(crate) mod serde_ms {
    pub fn time<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*ms))
    }

    pub fn opt_time<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }
}

/// A JSON column read back; bad JSON is a conversion error of that column.
pub(crate) fn json_column(text: String) -> Result<serde_json::Value, rusqlite::Error> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Milliseconds since the Unix epoch, as stored.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// A stored time as RFC 3339 text.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A unique id with a prefix: `flw_0193c5a1f2e43f9a…`, the creation time
/// (milliseconds, 12 hex digits) then `bytes` random bytes (64 random bits,
/// 128 for event ids).
///
/// Time first, as in UUIDv7, so that ids sort by creation and inserts land
/// at the end of their index: random keys scatter every insert to another
/// page, and each such page is one more WAL write per commit.
pub fn new_id(prefix: &str, bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    random_bytes(&mut random);
    let ms = now_ms().clamp(0, (1 << 48) - 1);
    format!("{prefix}_{ms:012x}{}", hex::encode(random))
}

/// Fills `buf` from the OS RNG, fetched 256 bytes at a time per thread: one
/// `getrandom` call per id was a microsecond of a check. These bytes make
/// ids unique, not secret (link keys read the OS RNG directly).
fn random_bytes(buf: &mut [u8]) {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU64, Ordering};
    const BATCH: usize = 256;
    thread_local! {
        static POOL: RefCell<([u8; BATCH], usize)> = const { RefCell::new(([0; BATCH], BATCH)) };
    }
    POOL.with_borrow_mut(|(pool, used)| {
        for b in buf {
            if *used == BATCH {
                if getrandom::fill(pool).is_err() {
                    // The OS RNG is unavailable: a counter keeps ids unique.
                    static COUNTER: AtomicU64 = AtomicU64::new(0);
                    let start = COUNTER.fetch_add(BATCH as u64, Ordering::Relaxed);
                    for (i, b) in pool.iter_mut().enumerate() {
                        *b = ((start + i as u64 / 8) >> ((i % 8) * 8)) as u8;
                    }
                }
                *used = 0;
            }
            *b = pool[*used];
            *used += 1;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sort_by_creation() {
        let first = new_id("req", 8);
        std::thread::sleep(Duration::from_millis(2));
        let ids: Vec<String> = (0..1000).map(|_| new_id("req", 8)).collect();
        assert!(ids.iter().all(|id| id.len() == 4 + 12 + 16 && *id > first));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }
}
