//! Storage: the SQLite schema, its migrations, and the queries of every part
//! that keeps state (accounts and checks, balances and the ledger,
//! communications and their records, sessions and their charges, flows and
//! their tasks, the outbox, plugin versions, API tokens).
//!
//! The store is an interface of domain operations: the query functions of
//! `entitlement`, `flows`, `ledger`, `outbox`, `plans`, `plugins`, `retention`, `sessions` and `tokens`, each taking
//! a [`Conn`] (a read) or a [`Tx`] (a write transaction). Those handles are
//! opaque outside `store/`, so no rusqlite type reaches the domain code and
//! a second backend (PostgreSQL, for several hosts on one database) can
//! give the same operations over its own connection. Nothing here relies
//! on one process being the only writer for correctness: SQLite serializes
//! writers across processes itself, ids come from the database or from the
//! caller, and the time and anything random are parameters, never SQL.
//!
//! Connections: one writer, owned by the writer thread (`writer.rs`), which
//! runs every write through group commit; a pool of readers that WAL lets
//! run beside it; and a checkpointer thread (`checkpoint.rs`) that moves the
//! WAL into the database off the commit path.
//!
//! Durability is SQLite's own log and nothing else. A write is answered
//! after the COMMIT of its group returned. With `sync = "full"`
//! (`synchronous = FULL`, the default) that commit was fsynced: the write
//! survives a crash of the process, of the kernel and a power loss. With
//! `sync = "normal"` (`synchronous = NORMAL`) the commit reached the
//! operating system but not the disk: it survives the process being
//! killed at any moment, and a power loss may undo the last commits (never
//! corrupt the database).

mod checkpoint;
mod conn;
pub mod entitlement;
pub mod flows;
pub mod ledger;
mod legacy_journal;
mod migrations;
pub mod outbox;
pub mod plans;
pub mod plugins;
pub mod provisioning;
pub mod retention;
pub mod sessions;
pub mod tokens;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use conn::{Conn, Tx};
pub use legacy_journal::journal_path;
pub use migrations::SCHEMA_VERSION;
pub use writer::StoreStats;

/// An error of the database itself (SQLite's today), opaque so that no
/// backend's type is part of the store's interface.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(rusqlite::Error);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database `{}`: {source}", path.display())]
    Open { path: PathBuf, source: DbError },
    #[error(
        "the database `{}` has schema version {found}, newer than this rulehost understands ({supported}); run a newer rulehost",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the database `{}` has schema version {found} and this rulehost reads {supported}; use the rulehost that serves it",
        path.display()
    )]
    SchemaMismatch {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database error: {0}")]
    Database(DbError),
    /// A group commit failed: nothing of the group was stored.
    #[error("database error, nothing was stored: {0}")]
    Commit(Arc<str>),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("{0}")]
    LegacyJournal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(DbError(e))
    }
}

/// What an answered write survives (`[store] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Each group's commit is fsynced: an answer survives a power loss.
    #[default]
    Full,
    /// Commits reach the operating system, not the disk: an answer
    /// survives the process being killed, not the machine going down.
    Normal,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        }
    }
}

/// How the store commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    pub sync: SyncMode,
    /// Writes queued at most; past it, writers wait.
    pub queue: usize,
    /// PostgreSQL's `commit_delay`: with at least `commit_siblings` writes
    /// in a group, the writer waits this long for more before it commits.
    /// Zero (the default): no wait.
    pub commit_delay: Duration,
    pub commit_siblings: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: SyncMode::Full,
            queue: 4096,
            commit_delay: Duration::ZERO,
            commit_siblings: 5,
        }
    }
}

/// The database, shared by every part of the host.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Dropped first: its thread ends once it has answered what was queued.
    queue: Option<writer::Queue>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// The writer connection. The writer thread holds it for each group;
    /// an in-memory database's reads use it between groups too.
    writer: Arc<Mutex<Connection>>,
    /// Idle read connections; `None` for an in-memory database, which only
    /// its one connection can see.
    readers: Option<Mutex<Vec<Connection>>>,
    path: PathBuf,
    stats: Arc<StoreStats>,
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.queue = None;
        // The last handle may go inside a write (a job held it): the writer
        // thread then ends by itself once its queue is empty.
        if let Some(thread) = self.writer_thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
        self.checkpointer = None;
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// How long a connection waits for a lock held elsewhere (another process
/// writing) before it reports busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens (creating if needed) and migrates the database, with the
    /// default [`StoreOptions`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the database, redoes what an earlier
    /// rulehost left in its journal, and migrates it.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source: DbError(source),
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", options.sync.pragma())
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // The checkpointer thread does this, so no commit waits for it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        // When the WAL starts over, a file grown past this shrinks back.
        conn.pragma_update(
            None,
            "journal_size_limit",
            checkpoint::TRUNCATE_BYTES as i64,
        )
        .map_err(open_err)?;
        // Waits in short steps: SQLite's own handler sleeps 1, 2, 5, 10 ms
        // between tries, which turns a 1 ms wait into 3 ms or 8.
        conn.busy_handler(Some(busy_wait)).map_err(open_err)?;
        // A group's savepoints keep their page copies in memory: past
        // 64 KiB SQLite would spill them to a temporary file, opened and
        // closed by every large group.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        keep_statements(&conn).map_err(open_err)?;
        legacy_journal::redo_once(&mut conn, path)?;
        migrations::apply(&mut conn, path)?;
        let stats = Arc::<StoreStats>::default();
        let checkpointer =
            checkpoint::Checkpointer::start(path, options.sync.pragma(), stats.clone())?;
        Store::start(conn, Some(checkpointer), path, options, stats)
    }

    /// Opens an existing database to read only (`rulehost export`): no
    /// writer, no checkpointer, no migration. A database of another schema
    /// version is refused, so a host serving it is never disturbed.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = open_reader(path)?;
        let found = migrations::version(&conn)?;
        if found != SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            inner: Arc::new(Inner {
                queue: None,
                writer_thread: None,
                writer: Arc::new(Mutex::new(conn)),
                readers: Some(Mutex::new(Vec::new())),
                path: path.to_owned(),
                stats: Arc::default(),
                checkpointer: None,
            }),
        })
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        keep_statements(&conn)?;
        migrations::apply(&mut conn, Path::new(":memory:"))?;
        Store::start(
            conn,
            None,
            Path::new(":memory:"),
            StoreOptions::default(),
            Arc::default(),
        )
    }

    fn start(
        conn: Connection,
        checkpointer: Option<checkpoint::Checkpointer>,
        path: &Path,
        options: StoreOptions,
        stats: Arc<StoreStats>,
    ) -> Result<Store, StoreError> {
        let writer = Arc::new(Mutex::new(conn));
        let grouping = writer::Grouping {
            queue: options.queue,
            commit_delay: options.commit_delay,
            commit_siblings: options.commit_siblings,
        };
        let (queue, thread) = writer::Queue::start(writer.clone(), grouping, stats.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                queue: Some(queue),
                writer_thread: Some(thread),
                writer,
                readers: checkpointer.is_some().then(|| Mutex::new(Vec::new())),
                path: path.to_owned(),
                stats,
                checkpointer,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn queue(&self) -> Result<&writer::Queue, StoreError> {
        self.inner
            .queue
            .as_ref()
            .ok_or_else(|| StoreError::Commit("this database was opened to read only".into()))
    }

    /// Runs `f` in a write transaction of its own on the caller's thread,
    /// between the writer thread's groups, and commits it: `Ok` means
    /// stored, as [`SyncMode`] says. When `f` returns `Err`, nothing of it
    /// is stored. For writes off the hot path (flows, accounts, plugin
    /// versions); a check goes through [`Store::write_async`], which
    /// shares its commit with the writes queued beside it.
    pub fn write<T, E>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.queue()?;
        writer::write_now(&self.inner.writer, &self.inner.stats, f)
    }

    /// Runs `f` as a write in the next group commit and waits, without
    /// holding a thread, until that group committed: `Ok` means stored, as
    /// [`SyncMode`] says. When `f` returns `Err`, its own changes are
    /// rolled back and the error returned; the rest of the group still
    /// commits. Waits while the writer's queue is full.
    ///
    /// `f` runs on the writer thread and delays its whole group: reads and
    /// decisions (a plugin call) belong before it, only the writes in it.
    pub async fn write_async<T, E>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + std::fmt::Display + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = writer::job(f, move |result| {
            // The caller may have gone (a closed connection): the write
            // stands all the same.
            let _ = reply.send(result);
        });
        self.queue()?.send(job).await?;
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Commit("the database writer has stopped".into()).into())
        })
    }

    /// Queues `f` as a write in the next group commit from a worker thread
    /// and returns at once (after waiting while the queue is full); `reply`
    /// gets what [`Store::write_async`] would return, on the writer thread,
    /// once the group committed. For a caller that decided on a worker and
    /// should not hop back to the executor just to queue its record.
    pub fn queue_write<T, E>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        reply: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + std::fmt::Display + Send + 'static,
    {
        self.queue()?.send_blocking(writer::job(f, reply))
    }

    /// Counters of the writer and the WAL, for metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Runs read-only queries in one read transaction (one snapshot), on a
    /// reader connection when the database is a file: it sees every write
    /// answered before the call and never waits for the writer.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(readers) = &self.inner.readers else {
            return f(&Conn::new(&lock(&self.inner.writer)));
        };
        let idle = lock(readers).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.inner.path)?,
        };
        writer::exec(&conn, "BEGIN")?;
        let result = f(&Conn::new(&conn));
        // A read transaction has nothing to lose: this only lets the WAL go.
        let ended = writer::exec(&conn, "COMMIT");
        if ended.is_ok() {
            lock(readers).push(conn);
        }
        result
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the writer's lock may leave a transaction
    // open: whoever takes the writer next rolls it back first
    // (`writer::begin`).
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
        source: DbError(source),
    })?;
    conn.busy_handler(Some(busy_wait))?;
    keep_statements(&conn)?;
    Ok(conn)
}

/// Parses each statement once per connection.
///
/// - Room for every statement the host prepares: rusqlite keeps 16 by
///   default, and a connection that runs more than that in turn (the
///   writer runs every kind of write) parses each one again every time.
/// - The query planner's stability guarantee (QPSG): without it SQLite
///   plans some statements for the values bound to them (any `LIMIT ?`,
///   among others) and parses such a statement again whenever one of those
///   values is bound anew, which is every time it runs. The host's queries
///   are written for one plan whatever their values.
fn keep_statements(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Statements each connection keeps prepared (about 150 distinct ones).
const STATEMENTS_KEPT: usize = 256;

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
pub(crate) fn random_bytes(buf: &mut [u8]) {
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
    use rusqlite::params;

    #[test]
    fn ids_are_unique_and_sort_by_creation() {
        let first = new_id("req", 8);
        std::thread::sleep(Duration::from_millis(2));
        let ids: Vec<String> = (0..1000).map(|_| new_id("req", 8)).collect();
        assert!(ids.iter().all(|id| id.len() == 4 + 12 + 16 && *id > first));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    /// Runs a `LIMIT ?` statement three times with a new limit each time,
    /// the way pages and recent uses are read; how often it was parsed again.
    fn reparsed(conn: &Conn<'_>) -> Result<i32, StoreError> {
        let mut stmt = conn
            .raw()
            .prepare_cached("SELECT version FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        for limit in [10, 1000, 10] {
            stmt.query_map(params!["", limit], |r| r.get::<_, i64>(0))?
                .for_each(drop);
        }
        Ok(stmt.get_status(rusqlite::StatementStatus::RePrepare))
    }

    #[test]
    fn a_statement_is_parsed_once_whatever_is_bound_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        assert_eq!(store.read(reparsed).unwrap(), 0, "a reader connection");
        assert_eq!(store.write(|tx| reparsed(tx)).unwrap(), 0, "the writer");
        let memory = Store::in_memory().unwrap();
        assert_eq!(memory.read(reparsed).unwrap(), 0, "in memory");
    }
}
