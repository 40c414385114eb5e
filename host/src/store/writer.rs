//! The writer connection and its batch: the one place that begins and
//! commits write transactions.
//!
//! A write is either plain ([`Writer::write`]: committed before it
//! returns) or journaled ([`Writer::write_logged`], and every grouped
//! write): its statements go through a [`Logged`] handle, which runs them
//! and records them, and it is durable once its record is appended to the
//! journal (`journal.rs`). The SQLite transaction then stays open as the
//! batch, and the writes that follow join it, until one of them is not
//! journaled, a reader needs it, or it is due (its age, or its size).
//!
//! A journaled write that changed anything outside its `Logged` handle
//! (counted by SQLite's change counter) is committed at once, like a plain
//! one: what the journal does not hold, a commit must.

use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::types::ToSql;

use super::StoreError;
use super::checkpoint::Nudge;
use super::journal::{self, Journal, MAX_BATCH, Record};

/// A connection inside a journaled write. Reads (and, at the price of a
/// commit, other writes) go through it as through the connection it
/// dereferences to; [`Execute::run`] runs a statement and journals it.
pub struct Logged<'c> {
    conn: &'c Connection,
    record: RefCell<Record>,
    changes: Cell<u64>,
}

impl Deref for Logged<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl<'c> Logged<'c> {
    fn new(conn: &'c Connection) -> Logged<'c> {
        Logged {
            conn,
            record: RefCell::default(),
            changes: Cell::new(0),
        }
    }

    /// What the write left for the batch, given the rows SQLite counted as
    /// changed while it ran.
    fn outcome(self, changed: u64) -> Outcome {
        let record = self.record.into_inner();
        if changed != self.changes.get() {
            Outcome::Unlogged
        } else if record.is_empty() {
            Outcome::Nothing
        } else {
            Outcome::Record(record)
        }
    }
}

/// Where a write's statements run: a plain connection, or a journaled
/// write's [`Logged`] handle, which journals them too. Queries that write
/// on the hot path take this, so one query serves both kinds of write.
pub trait Execute {
    /// Runs `sql` (prepared once per connection) with `params`: the rows
    /// it changed.
    fn run(&self, sql: &str, params: &[&dyn ToSql]) -> Result<usize, StoreError>;

    /// The connection, for reads and `last_insert_rowid`.
    fn connection(&self) -> &Connection;
}

impl Execute for Connection {
    fn run(&self, sql: &str, params: &[&dyn ToSql]) -> Result<usize, StoreError> {
        Ok(self.prepare_cached(sql)?.execute(params)?)
    }

    fn connection(&self) -> &Connection {
        self
    }
}

impl Execute for Logged<'_> {
    /// Runs the statement and adds it and its parameters to the write's
    /// journal record. Recovery runs them again on the same state, so the
    /// statement must give the same rows again: the time, an id or anything
    /// random comes in as a parameter, never from SQL.
    fn run(&self, sql: &str, params: &[&dyn ToSql]) -> Result<usize, StoreError> {
        let changed = self.conn.prepare_cached(sql)?.execute(params)?;
        self.record.borrow_mut().push(sql, params)?;
        self.changes.set(self.changes.get() + changed as u64);
        Ok(changed)
    }

    fn connection(&self) -> &Connection {
        self.conn
    }
}

/// What a journaled write needs to become durable.
pub(super) enum Outcome {
    /// It changed nothing.
    Nothing,
    /// Its record appended to the journal.
    Record(Record),
    /// A commit: it changed rows the journal does not know of.
    Unlogged,
}

/// Runs `f` with a [`Logged`] handle, in a savepoint when `savepoint`
/// (released on `Ok`, rolled back on `Err` or panic; without one, the
/// caller rolls the whole transaction back).
pub(super) fn run_logged<T, E: From<StoreError>>(
    conn: &Connection,
    savepoint: bool,
    f: impl FnOnce(&Logged<'_>) -> Result<T, E>,
) -> (Result<T, E>, Outcome) {
    let before = conn.total_changes();
    let logged = Logged::new(conn);
    let result = guarded(conn, savepoint, |_| f(&logged));
    let outcome = match &result {
        Ok(_) => logged.outcome(conn.total_changes() - before),
        Err(_) => Outcome::Nothing,
    };
    (result, outcome)
}

/// Runs `f`, a panic turned into an error; in a savepoint when
/// `savepoint` (released on `Ok`, rolled back on `Err`). A write alone in
/// its transaction needs none, and pays for one: inside a savepoint SQLite
/// copies each page before its first change (reconcile/start: 400 → 590 µs).
fn guarded<T, E: From<StoreError>>(
    conn: &Connection,
    savepoint: bool,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    if savepoint {
        run(conn, "SAVEPOINT write")?;
    }
    let result = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
        Err(StoreError::Commit("the write panicked; it was rolled back".into()).into())
    });
    if savepoint {
        if result.is_err() {
            run(conn, "ROLLBACK TO write")?;
        }
        run(conn, "RELEASE write")?;
    }
    result
}

/// A statement without parameters, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Journaled writes since the last commit.
struct Batch {
    opened: Instant,
    writes: u32,
}

/// The writer connection, its journal, and the open batch.
pub(super) struct Writer {
    conn: Connection,
    /// `None` for an in-memory database, a window of zero, or when another
    /// process owns the journal: every write is then committed.
    journal: Option<Journal>,
    /// The journal id of the database (see [`Record::finish`]).
    db: u64,
    /// The sequence number of the last record appended.
    seq: u64,
    window: Duration,
    batch: Option<Batch>,
    nudge: Option<Arc<Nudge>>,
    /// Set when a commit failed and the journal could not be redone:
    /// writes are refused until a restart recovers from the journal.
    broken: Option<Arc<str>>,
}

impl Writer {
    /// A writer for `conn`, whose `journal` has been recovered
    /// ([`journal::recover`]): it numbers on from the last record a commit
    /// covered.
    pub fn new(
        conn: Connection,
        mut journal: Option<Journal>,
        window: Duration,
        nudge: Option<Arc<Nudge>>,
    ) -> Result<Writer, StoreError> {
        let (db, seq) = match &journal {
            Some(_) => journal::position(&conn)?,
            None => (0, 0),
        };
        if window.is_zero() {
            journal = None;
        }
        Ok(Writer {
            conn,
            journal,
            db,
            seq,
            window,
            batch: None,
            nudge,
            broken: None,
        })
    }

    /// The connection, between writes (no savepoint is open). Inside the
    /// open batch, if there is one: call [`Writer::commit`] first to act
    /// outside any transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in a transaction (the open batch's, if any) and commits it.
    /// When `f` fails, its changes are rolled back and the batch stays.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin()?;
        match guarded(&self.conn, self.batch.is_some(), f) {
            Ok(value) => {
                self.commit()?;
                Ok(value)
            }
            Err(e) => {
                self.end_unless_batch();
                Err(e)
            }
        }
    }

    /// Runs `f` as a journaled write: durable when this returns `Ok`,
    /// committed to SQLite with its batch.
    pub fn write_logged<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Logged<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin()?;
        let (result, outcome) = run_logged(&self.conn, self.batch.is_some(), f);
        match result {
            Ok(value) => {
                self.settle([outcome])?;
                Ok(value)
            }
            Err(e) => {
                self.end_unless_batch();
                Err(e)
            }
        }
    }

    /// Opens a transaction unless the batch's is open.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        if let Some(broken) = &self.broken {
            return Err(StoreError::Commit(broken.clone()));
        }
        if self.conn.is_autocommit() {
            run(&self.conn, "BEGIN IMMEDIATE")?;
        }
        Ok(())
    }

    /// Makes the writes that ran since [`Writer::begin`] durable: their
    /// records appended in one `write`, or a commit when one of them needs
    /// it (or there is no journal).
    pub fn settle(
        &mut self,
        outcomes: impl IntoIterator<Item = Outcome>,
    ) -> Result<(), StoreError> {
        let mut records = Vec::new();
        let mut must_commit = false;
        for outcome in outcomes {
            match outcome {
                Outcome::Nothing => {}
                Outcome::Record(record) => records.push(record),
                Outcome::Unlogged => must_commit = true,
            }
        }
        if must_commit {
            return self.commit();
        }
        if records.is_empty() {
            self.end_unless_batch();
            return Ok(());
        }
        let Some(journal) = &mut self.journal else {
            return self.commit();
        };
        let appended = records.len() as u32;
        let mut frames = Vec::new();
        let mut seq = self.seq;
        for record in records {
            seq += 1;
            let frame = record.finish(self.db, seq);
            // A lone write's frame is appended as it is, not copied.
            if frames.is_empty() {
                frames = frame;
            } else {
                frames.extend_from_slice(&frame);
            }
        }
        if let Err(e) = journal.append(&frames) {
            // What did reach the file may be a torn record, which would
            // hide any record after it: commit instead, which empties it.
            tracing::warn!("{e}; committing instead");
            return self.commit();
        }
        self.seq = seq;
        let batch = self.batch.get_or_insert_with(|| {
            if let Some(nudge) = &self.nudge {
                nudge.batch_opened();
            }
            Batch {
                opened: Instant::now(),
                writes: 0,
            }
        });
        batch.writes += appended;
        if batch.writes >= MAX_BATCH || batch.opened.elapsed() >= self.window {
            // These writes are durable in the journal already: a failed
            // commit is for the next write to hear of (see `commit`).
            if let Err(e) = self.commit() {
                tracing::error!("committing a batch failed: {e}");
            }
        }
        Ok(())
    }

    /// Commits the open transaction, the batch with it, and empties the
    /// journal it covered.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        let batch = self.batch.take();
        let committed = match batch {
            Some(_) => {
                journal::set_applied(&self.conn, self.seq).and_then(|()| run(&self.conn, "COMMIT"))
            }
            None => run(&self.conn, "COMMIT"),
        };
        if let Some(nudge) = &self.nudge {
            nudge.batch_closed();
        }
        if let Err(e) = committed {
            if !self.conn.is_autocommit() {
                let _ = run(&self.conn, "ROLLBACK");
            }
            if batch.is_some() {
                self.redo(&e);
            }
            return Err(e);
        }
        if let Some(nudge) = &self.nudge {
            nudge.committed();
        }
        if batch.is_some()
            && let Some(journal) = &mut self.journal
            && let Err(e) = journal.reset()
        {
            // Records already committed are skipped by recovery, but a
            // torn one left in the file would hide those appended after it.
            tracing::error!("{e}; writes are committed one by one from now on");
            self.journal = None;
        }
        Ok(())
    }

    /// Commits the batch if it has been open for the window: how long until
    /// it is due otherwise, `None` when no batch is open.
    pub fn commit_if_due(&mut self) -> Option<Duration> {
        let age = self.batch.as_ref()?.opened.elapsed();
        if age < self.window {
            return Some(self.window - age);
        }
        if let Err(e) = self.commit() {
            tracing::error!("committing a batch failed: {e}");
        }
        None
    }

    /// The batch's commit failed and SQLite rolled back writes that were
    /// answered: they are redone from the journal, in a transaction of
    /// their own. If that fails too, writes are refused until a restart.
    fn redo(&mut self, cause: &StoreError) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if let Err(e) = journal::recover(&mut self.conn, journal) {
            let message = format!(
                "the database could not commit ({cause}) nor redo its journal ({e}); answered writes are kept in `{}`: restart rulehost once the cause is fixed",
                journal.path().display()
            );
            tracing::error!("{message}");
            self.broken = Some(message.into());
        }
    }

    /// Ends a transaction that holds nothing a batch needs.
    fn end_unless_batch(&mut self) {
        if self.batch.is_none() && !self.conn.is_autocommit() {
            let _ = run(&self.conn, "ROLLBACK");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Left uncommitted, the batch would be redone at the next start;
        // committed now, the journal is left empty.
        if self.batch.is_some()
            && let Err(e) = self.commit()
        {
            tracing::warn!("the last batch was not committed ({e}); the next start redoes it");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rusqlite::Connection;

    use crate::store::{Execute, Store, StoreError, StoreOptions, journal_path};

    /// A store whose batches wait `window` for their commit, with a table.
    fn store(dir: &Path, window: Duration) -> Store {
        let store = Store::open_with(
            &dir.join("w.db"),
            StoreOptions {
                batch_window: window,
            },
        )
        .unwrap();
        store
            .write(|c| {
                c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, text TEXT NOT NULL)")
                    .map_err(StoreError::from)
            })
            .unwrap();
        store
    }

    fn insert(store: &Store, n: i64) {
        store
            .write_logged(|c| {
                c.run(
                    "INSERT INTO t (n, text) VALUES (?1, ?2)",
                    &[&n, &format!("row {n}")],
                )
            })
            .unwrap();
    }

    /// Rows of `t` seen by a connection of its own: what is committed.
    fn committed_rows(db: &Path) -> i64 {
        let conn = Connection::open(db).unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn rows(store: &Store) -> i64 {
        store
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .unwrap()
    }

    /// The files as a crash would leave them, copied to `to`: the
    /// database, its WAL and the journal, with the batch not committed.
    fn crash_copy(from: &Path, to: &Path) -> PathBuf {
        for suffix in ["", "-wal", "-redo"] {
            let name = format!("w.db{suffix}");
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
        to.join("w.db")
    }

    #[test]
    fn journaled_writes_wait_for_their_batch_and_a_read_sees_them_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        for n in 0..10 {
            insert(&store, n);
        }
        let db = dir.path().join("w.db");
        assert_eq!(committed_rows(&db), 0, "the batch was committed per write");
        assert!(std::fs::metadata(journal_path(&db)).unwrap().len() > 0);
        // A read through the store commits the batch first.
        assert_eq!(rows(&store), 10);
        assert_eq!(committed_rows(&db), 10);
        assert_eq!(std::fs::metadata(journal_path(&db)).unwrap().len(), 0);
    }

    #[test]
    fn a_crash_loses_no_answered_write_and_a_torn_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        // Let the checkpointer settle the table's commit before copying.
        std::thread::sleep(Duration::from_millis(100));
        for n in 0..25 {
            insert(&store, n);
        }

        let crashed = tempfile::tempdir().unwrap();
        let db = crash_copy(dir.path(), crashed.path());
        assert_eq!(committed_rows(&db), 0, "SQLite alone has none of them");
        let recovered = Store::open(&db).unwrap();
        assert_eq!(rows(&recovered), 25);
        let (n, text): (i64, String) = recovered
            .read(|c| {
                c.query_row("SELECT n, text FROM t ORDER BY n DESC", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!((n, text.as_str()), (24, "row 24"));
        // It goes on numbering after what it redid, and a second start
        // redoes nothing twice.
        insert(&recovered, 25);
        drop(recovered);
        assert_eq!(rows(&Store::open(&db).unwrap()), 26);

        // The last record cut short, as by a crash during its `write`: it
        // was never answered, and the rest are redone.
        let torn = tempfile::tempdir().unwrap();
        let db = crash_copy(dir.path(), torn.path());
        let redo = journal_path(&db);
        let len = std::fs::metadata(&redo).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&redo)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        assert_eq!(rows(&Store::open(&db).unwrap()), 24);
        drop(store);
    }

    #[test]
    fn another_databases_journal_is_not_redone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
        insert(&store, 1);
        let crashed = tempfile::tempdir().unwrap();
        let db = crash_copy(dir.path(), crashed.path());
        // Another database with the same table, given this one's journal.
        let other = tempfile::tempdir().unwrap();
        let other_store = super::tests::store(other.path(), Duration::ZERO);
        drop(other_store);
        std::fs::copy(journal_path(&db), journal_path(&other.path().join("w.db"))).unwrap();
        assert_eq!(rows(&Store::open(&other.path().join("w.db")).unwrap()), 0);
        drop(store);
    }

    #[test]
    fn a_write_that_changes_rows_outside_the_journal_is_committed_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        insert(&store, 1);
        store
            .write_logged(|c| {
                c.execute("INSERT INTO t (n, text) VALUES (2, 'not journaled')", [])
                    .map_err(StoreError::from)
            })
            .unwrap();
        // Committed with the batch it joined.
        assert_eq!(committed_rows(&dir.path().join("w.db")), 2);
    }

    #[test]
    fn a_failed_journaled_write_leaves_nothing_and_the_batch_stands() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        insert(&store, 1);
        let failed = store.write_logged(|c| {
            c.run("INSERT INTO t (n, text) VALUES (2, 'half')", &[])?;
            Err::<(), _>(StoreError::Corrupt("refused halfway".into()))
        });
        assert!(failed.is_err());
        assert_eq!(rows(&store), 1);
    }

    #[test]
    fn the_background_thread_commits_a_batch_when_it_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_millis(20));
        insert(&store, 1);
        let db = dir.path().join("w.db");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while committed_rows(&db) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch was never committed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(store);
    }

    #[test]
    fn a_window_of_zero_commits_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::ZERO);
        insert(&store, 1);
        assert_eq!(committed_rows(&dir.path().join("w.db")), 1);
    }
}
