//! The writer thread: group commit over a bounded queue.
//!
//! Every write of the store is a job on one queue. One thread owns the
//! writer connection; it takes everything queued, runs each job in a
//! savepoint of one transaction (`BEGIN IMMEDIATE`), commits once, and only
//! then answers each caller: an answer means the database's own COMMIT
//! returned, with whatever `synchronous` promises (`StoreOptions::sync`).
//! This is PostgreSQL's group commit: callers that queue while a commit
//! runs share the next one.
//!
//! A job that fails rolls back to its savepoint alone, and the rest of its
//! group commits. A group that cannot commit (the COMMIT fails, the disk
//! is full, SQLite rolls the transaction back on an I/O error) answers
//! every caller in it with the error, and none of it is stored.
//!
//! The queue is bounded: when it is full a caller waits (an async one
//! without a thread, a worker thread in `send`) until the writer takes the
//! next group. Nothing is dropped; the callers
//! slow down. `Store::write` (off the hot path) does not queue: it runs a
//! transaction of its own on the caller's thread, between two groups.
//!
//! When a COMMIT fails on an I/O error (a failed fsync), SQLite has not
//! made the group visible and the next commit writes over its WAL frames;
//! as in every database, a crash before that next commit leaves the failed
//! group's outcome to recovery.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::Notify;

use super::{StoreError, Tx};

/// Most writes in one group: bounds how long the first of them waits.
const MAX_GROUP: usize = 1024;

/// Answers a write once its group's fate is known: `Ok` when the group
/// committed (or the write failed alone), `Err` with why it did not.
type Answer = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;

/// What running a job left: how to answer it, and the state of the
/// group's transaction.
pub(super) struct Ran {
    answer: Answer,
    /// The write returned `Ok`.
    ok: bool,
    /// Rolling its savepoint back failed: the transaction holds part of a
    /// failed write, so the group must roll back.
    broken: Option<String>,
}

/// A queued write. Given the writer connection and whether to run in a
/// savepoint (or why the group could not begin), it runs and says how to
/// answer.
pub(super) type Job = Box<dyn FnOnce(Result<(&Connection, bool), Arc<str>>) -> Ran + Send>;

/// Counters of the writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Groups committed: each one `COMMIT`.
    pub commits: AtomicU64,
    /// Writes they carried; divided by the commits, the mean group size.
    pub writes: AtomicU64,
    /// Groups that did not commit; every write in them was answered with
    /// the error.
    pub failed_groups: AtomicU64,
    /// Times a caller found the queue full and waited.
    pub queue_full_waits: AtomicU64,
    /// Microseconds spent in `COMMIT` (with its fsync), summed.
    pub commit_micros: AtomicU64,
    /// The WAL file's size at the last checkpoint.
    pub wal_bytes: AtomicU64,
    /// Checkpoints that copied the WAL into the database.
    pub checkpoints: AtomicU64,
    /// Times the WAL file was truncated to zero.
    pub wal_truncations: AtomicU64,
    /// Times the writer started the WAL over from its beginning.
    pub wal_restarts: AtomicU64,
    /// Set by the checkpointer when the WAL has grown past
    /// `checkpoint::RESTART_BYTES`: the writer restarts it between groups.
    pub(super) wal_restart_wanted: std::sync::atomic::AtomicBool,
}

/// How the writer groups commits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grouping {
    pub queue: usize,
    pub commit_delay: Duration,
    pub commit_siblings: usize,
}

/// The sending side of the writer's queue.
pub(super) struct Queue {
    jobs: SyncSender<Job>,
    /// Raised each time the writer takes a group off the queue.
    space: Arc<Notify>,
    stats: Arc<StoreStats>,
}

thread_local! {
    /// Set on the writer thread: a write submitted from inside a write
    /// would wait for itself.
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

fn stopped() -> StoreError {
    StoreError::Commit("the database writer has stopped".into())
}

impl Queue {
    /// Starts the writer thread on `conn`; it ends when the queue is
    /// dropped, after answering what was queued.
    pub fn start(
        conn: Arc<Mutex<Connection>>,
        grouping: Grouping,
        stats: Arc<StoreStats>,
    ) -> Result<(Queue, std::thread::JoinHandle<()>), StoreError> {
        let (jobs, queue) = sync_channel::<Job>(grouping.queue.max(1));
        let space = Arc::new(Notify::new());
        let thread = std::thread::Builder::new()
            .name("rulehost-writer".into())
            .spawn({
                let space = space.clone();
                let stats = stats.clone();
                move || {
                    ON_WRITER.set(true);
                    run(&conn, &queue, &space, &stats, grouping);
                }
            })
            .map_err(|e| {
                StoreError::Commit(format!("cannot start the writer thread: {e}").into())
            })?;
        Ok((Queue { jobs, space, stats }, thread))
    }

    /// Queues `job`, waiting in this (worker) thread while the queue is full.
    pub fn send_blocking(&self, job: Job) -> Result<(), StoreError> {
        if ON_WRITER.get() {
            return Err(StoreError::Commit(
                "a write was queued from inside another write; this is a bug of rulehost".into(),
            ));
        }
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => {
                self.stats.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                self.jobs.send(job).map_err(|_| stopped())
            }
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    /// Queues `job`, waiting without a thread while the queue is full.
    pub async fn send(&self, mut job: Job) -> Result<(), StoreError> {
        let mut counted = false;
        loop {
            // Registered before trying, so a group taken in between still
            // wakes this caller.
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    job = back;
                    if !counted {
                        counted = true;
                        self.stats.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                    }
                    notified.await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(stopped()),
            }
        }
    }
}

/// Wraps a write `f` and the delivery of its result into a [`Job`].
pub(super) fn job<T, E>(
    f: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    reply: impl FnOnce(Result<T, E>) + Send + 'static,
) -> Job
where
    T: Send + 'static,
    E: From<StoreError> + std::fmt::Display + Send + 'static,
{
    Box::new(move |conn| {
        let (result, broken) = match conn {
            Ok((conn, savepoint)) => match guarded(conn, savepoint, f) {
                Ok(result) => (Ok(result), None),
                Err(e) => (Err(Arc::<str>::from(e.to_string())), Some(e.to_string())),
            },
            Err(e) => (Err(e), None),
        };
        let ok = matches!(result, Ok(Ok(_)));
        let answer: Answer = Box::new(move |committed| {
            let result = match (result, committed) {
                (Ok(Ok(value)), Ok(())) => Ok(value),
                // The write's own error says more than the group's.
                (Ok(Err(e)), _) => Err(e),
                (Ok(Ok(_)), Err(e)) | (Err(e), _) => Err(StoreError::Commit(e).into()),
            };
            reply(result);
        });
        Ran { answer, ok, broken }
    })
}

/// Runs `f` with a panic turned into an error; in a savepoint when
/// `savepoint` (released on `Ok`, rolled back on `Err`). The outer `Err`:
/// the savepoint could not be rolled back or released. A write alone in its
/// transaction needs no savepoint, and would pay for one: inside a
/// savepoint SQLite copies each page before its first change.
fn guarded<T, E: From<StoreError>>(
    conn: &Connection,
    savepoint: bool,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> Result<Result<T, E>, StoreError> {
    if savepoint {
        exec(conn, "SAVEPOINT write")?;
    }
    let tx = Tx::new(conn);
    let result = catch_unwind(AssertUnwindSafe(|| f(&tx))).unwrap_or_else(|_| {
        tracing::error!("a write panicked; it was rolled back");
        Err(StoreError::Commit("the write panicked; it was rolled back".into()).into())
    });
    if savepoint {
        if result.is_err() {
            exec(conn, "ROLLBACK TO write")?;
        }
        exec(conn, "RELEASE write")?;
    }
    Ok(result)
}

/// Runs `f` in a transaction of its own on the writer connection, taken
/// between groups, and commits it.
pub(super) fn write_now<T, E: From<StoreError>>(
    conn: &Mutex<Connection>,
    stats: &StoreStats,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> Result<T, E> {
    if ON_WRITER.get() {
        return Err(StoreError::Commit(
            "a write was started from inside another write; this is a bug of rulehost".into(),
        )
        .into());
    }
    let conn = super::lock(conn);
    begin(&conn)?;
    let result = guarded(&conn, false, f)?;
    if result.is_err() || conn.is_autocommit() {
        if !conn.is_autocommit() {
            exec(&conn, "ROLLBACK")?;
        }
        return match result {
            Ok(_) => Err(StoreError::Commit(
                "the database rolled the transaction back after an error".into(),
            )
            .into()),
            Err(e) => Err(e),
        };
    }
    if let Err(e) = exec(&conn, "COMMIT") {
        if !conn.is_autocommit() {
            let _ = exec(&conn, "ROLLBACK");
        }
        return Err(StoreError::Commit(format!("the commit failed: {e}").into()).into());
    }
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.writes.fetch_add(1, Ordering::Relaxed);
    result
}

/// Begins a write transaction, first rolling back one that a failure
/// (a ROLLBACK that failed, a panic) left open.
fn begin(conn: &Connection) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        tracing::warn!("the writer found a transaction left open by a failure; rolling it back");
        exec(conn, "ROLLBACK")?;
    }
    exec(conn, "BEGIN IMMEDIATE")
}

/// A statement without parameters or rows, prepared once per connection.
pub(super) fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn drain(queue: &Receiver<Job>, group: &mut Vec<Job>) {
    while group.len() < MAX_GROUP
        && let Ok(job) = queue.try_recv()
    {
        group.push(job);
    }
}

fn run(
    conn: &Mutex<Connection>,
    queue: &Receiver<Job>,
    space: &Notify,
    stats: &StoreStats,
    grouping: Grouping,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        drain(queue, &mut group);
        // PostgreSQL's commit_delay: with enough writes arriving together,
        // a short wait lets the next ones share this commit.
        if !grouping.commit_delay.is_zero()
            && group.len() >= grouping.commit_siblings
            && group.len() < MAX_GROUP
        {
            std::thread::sleep(grouping.commit_delay);
            drain(queue, &mut group);
        }
        space.notify_waiters();
        let size = group.len() as u64;
        let guard = super::lock(conn);
        // A panic outside the writes themselves (they are guarded) is a
        // bug: the group's callers hear that the writer dropped them, and
        // the next group rolls back what it left open.
        let Ok((answers, outcome)) =
            catch_unwind(AssertUnwindSafe(|| commit_group(&guard, group, stats)))
        else {
            tracing::error!("the writer panicked; the group's writes were not stored");
            continue;
        };
        drop(guard);
        match &outcome {
            Outcome::Committed => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.writes.fetch_add(size, Ordering::Relaxed);
            }
            Outcome::RolledBack => {}
            Outcome::Failed(e) => {
                stats.failed_groups.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    writes = size,
                    "a group commit failed, none of its writes was stored: {e}"
                );
            }
        }
        let committed = match outcome {
            Outcome::Failed(e) => Err(e),
            Outcome::Committed | Outcome::RolledBack => Ok(()),
        };
        for answer in answers {
            answer(committed.clone());
        }
        if stats.wal_restart_wanted.swap(false, Ordering::Relaxed) {
            restart_wal(&super::lock(conn), stats);
        }
    }
}

/// Starts the WAL over from its beginning, between two groups: a PASSIVE
/// checkpoint cannot, while groups keep coming, and a WAL that only grows
/// makes every commit's fsync journal the file's new size, which on ext4
/// waits for the checkpoint's own writeback (a tail of 100 ms). Copies the
/// few frames the last passive checkpoint left; gives up at once, without
/// waiting, when a reader still holds the log.
fn restart_wal(conn: &Connection, stats: &StoreStats) {
    let _ = conn.busy_handler(None);
    let restarted: Result<bool, rusqlite::Error> =
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get(0));
    let _ = conn.busy_handler(Some(super::busy_wait));
    match restarted {
        Ok(false) => {
            stats.wal_restarts.fetch_add(1, Ordering::Relaxed);
        }
        // A reader holds the log: the checkpointer asks again.
        Ok(true) => {}
        Err(e) => tracing::warn!("restarting the WAL failed: {e}"),
    }
}

/// How a group ended.
enum Outcome {
    Committed,
    /// Its one write failed and was rolled back: it gets its own error.
    RolledBack,
    /// Nothing of it was stored.
    Failed(Arc<str>),
}

/// Runs `group` in one transaction and commits it.
fn commit_group(conn: &Connection, group: Vec<Job>, stats: &StoreStats) -> (Vec<Answer>, Outcome) {
    if let Err(e) = begin(conn) {
        let e: Arc<str> = format!("cannot begin a transaction: {e}").into();
        let answers = group
            .into_iter()
            .map(|job| job(Err(e.clone())).answer)
            .collect();
        return (answers, Outcome::Failed(e));
    }
    let savepoints = group.len() > 1;
    let mut answers = Vec::with_capacity(group.len());
    let mut failed: Option<Arc<str>> = None;
    let mut lone_failure = false;
    for job in group {
        if let Some(e) = &failed {
            // The group is lost already: the rest do not run.
            answers.push(job(Err(e.clone())).answer);
            continue;
        }
        let ran = job(Ok((conn, savepoints)));
        if let Some(e) = ran.broken {
            failed = Some(format!("a write could not be rolled back alone: {e}").into());
        } else if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a
            // full disk): the writes before this one are gone too.
            failed = Some("the database rolled the transaction back after an error".into());
        } else if !ran.ok && !savepoints {
            lone_failure = true;
        }
        answers.push(ran.answer);
    }
    if failed.is_some() || lone_failure {
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        return match failed {
            Some(e) => (answers, Outcome::Failed(e)),
            None => (answers, Outcome::RolledBack),
        };
    }
    let started = Instant::now();
    let committed = exec(conn, "COMMIT");
    stats
        .commit_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match committed {
        Ok(()) => (answers, Outcome::Committed),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
            (
                answers,
                Outcome::Failed(format!("the commit failed: {e}").into()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::store::{Store, StoreError, StoreOptions};

    fn store_at(path: &Path, options: StoreOptions) -> Store {
        let store = Store::open_with(path, options).unwrap();
        store
            .write(|tx| {
                tx.raw()
                    .execute_batch(
                        "CREATE TABLE grouped (n INTEGER UNIQUE);
                         CREATE TABLE parent (id INTEGER PRIMARY KEY);
                         CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
                    )
                    .map_err(StoreError::from)
            })
            .unwrap();
        store
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_at(&dir.path().join("g.db"), StoreOptions::default());
        (dir, store)
    }

    fn rows(store: &Store) -> Vec<i64> {
        store
            .read(|c| {
                let mut stmt = c.raw().prepare("SELECT n FROM grouped ORDER BY n")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>().map_err(StoreError::from)
            })
            .unwrap()
    }

    async fn insert(store: &Store, n: i64) -> Result<usize, StoreError> {
        store
            .write_async(move |tx| {
                tx.raw()
                    .execute("INSERT INTO grouped VALUES (?1)", [n])
                    .map_err(StoreError::from)
            })
            .await
    }

    async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_all_land() {
        let (_dir, store) = store();
        let before = store.stats().commits.load(Ordering::Relaxed);
        let writes = (0..200)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { insert(&store, n).await })
            })
            .collect();
        for write in join_all(writes).await {
            assert_eq!(write.unwrap(), 1);
        }
        assert_eq!(rows(&store).len(), 200);
        let commits = store.stats().commits.load(Ordering::Relaxed) - before;
        assert!(
            commits < 200,
            "no write shared a commit ({commits} commits)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone_and_its_group_commits() {
        let (_dir, store) = store();
        let mut writes = Vec::new();
        for n in [1, 2, 2, 3] {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .write_async(move |tx| {
                        tx.raw().execute("INSERT INTO grouped VALUES (?1)", [n])?;
                        tx.raw()
                            .execute("INSERT INTO grouped VALUES (?1)", [n * 100])?;
                        // Half a write, then a failure: none of it may stay.
                        if n == 2 {
                            return Err(StoreError::Corrupt(format!("write {n} refused")));
                        }
                        Ok(())
                    })
                    .await
            }));
        }
        let results: Vec<_> = join_all(writes).await;
        assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
        assert!(results[1].is_err() && results[2].is_err(), "{results:?}");
        assert_eq!(rows(&store), vec![1, 3, 100, 300]);
    }

    #[tokio::test]
    async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
        let (_dir, store) = store();
        let panicked = store
            .write_async(|tx| -> Result<(), StoreError> {
                tx.raw().execute("INSERT INTO grouped VALUES (7)", [])?;
                panic!("a bug in a write")
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Commit(_))),
            "{panicked:?}"
        );
        insert(&store, 8).await.unwrap();
        assert_eq!(rows(&store), vec![8]);
    }

    /// A deferred foreign key is checked at COMMIT: one write that breaks
    /// it makes its whole group's COMMIT fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_fails_answers_its_whole_group_with_the_error_and_stores_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        // A wait before each commit gathers the writes into one group.
        let options = StoreOptions {
            commit_delay: Duration::from_millis(50),
            commit_siblings: 1,
            ..StoreOptions::default()
        };
        let store = store_at(&dir.path().join("f.db"), options);
        let mut writes = Vec::new();
        for n in 0..6 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .write_async(move |tx| {
                        tx.raw().execute("INSERT INTO grouped VALUES (?1)", [n])?;
                        if n == 3 {
                            // An orphan: refused only when the group commits.
                            tx.raw().execute("INSERT INTO child VALUES (99)", [])?;
                        }
                        Ok::<_, StoreError>(())
                    })
                    .await
            }));
            if n == 0 {
                // The first one in a group of its own, committed.
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        }
        let results = join_all(writes).await;
        assert!(results[0].is_ok(), "{:?}", results[0]);
        for result in &results[1..] {
            let Err(StoreError::Commit(message)) = result else {
                panic!("expected the commit's error, got {result:?}");
            };
            assert!(message.contains("commit failed"), "{message}");
        }
        assert_eq!(rows(&store), vec![0]);
        assert!(store.stats().failed_groups.load(Ordering::Relaxed) >= 1);
        // Later writes work.
        insert(&store, 10).await.unwrap();
        assert_eq!(rows(&store), vec![0, 10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_writers_wait_and_drops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            queue: 2,
            ..StoreOptions::default()
        };
        let store = store_at(&dir.path().join("q.db"), options);
        let writes = (0..100)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { insert(&store, n).await })
            })
            .collect();
        for write in join_all(writes).await {
            write.unwrap();
        }
        assert_eq!(rows(&store).len(), 100);
        assert!(
            store.stats().queue_full_waits.load(Ordering::Relaxed) > 0,
            "no writer ever found the queue full"
        );
    }

    #[test]
    fn a_blocking_write_that_fails_leaves_nothing() {
        let (_dir, store) = store();
        let failed = store.write(|tx| {
            tx.raw().execute("INSERT INTO grouped VALUES (1)", [])?;
            Err::<(), _>(StoreError::Corrupt("refused halfway".into()))
        });
        assert!(failed.is_err());
        assert!(rows(&store).is_empty());
        // Nor does one whose COMMIT fails.
        let failed = store.write(|tx| {
            tx.raw().execute("INSERT INTO grouped VALUES (2)", [])?;
            tx.raw().execute("INSERT INTO child VALUES (99)", [])?;
            Ok::<_, StoreError>(())
        });
        assert!(matches!(failed, Err(StoreError::Commit(_))), "{failed:?}");
        assert!(rows(&store).is_empty());
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
    }

    /// A 4 MiB tmpfs fills up under the store: the writes of the group that
    /// hit it get the error and none of them stays; every write answered
    /// before is there; once space is freed, writes work again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_fails_the_group_that_hits_it_and_nothing_else() {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "cannot mount a tmpfs");
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _unmount = Unmount(dir.path());
        let ballast = dir.path().join("ballast");
        std::fs::write(&ballast, vec![0u8; 1 << 20]).unwrap();
        let store = store_at(&dir.path().join("full.db"), StoreOptions::default());
        store
            .write(|tx| {
                tx.raw()
                    .execute_batch("CREATE TABLE ballast (n INTEGER, body BLOB)")
                    .map_err(StoreError::from)
            })
            .unwrap();
        let mut answered = Vec::new();
        let mut failure = None;
        for n in 0..400 {
            let result = store
                .write_async(move |tx| {
                    tx.raw().execute("INSERT INTO grouped VALUES (?1)", [n])?;
                    tx.raw()
                        .execute("INSERT INTO ballast VALUES (?1, randomblob(65536))", [n])?;
                    Ok::<_, StoreError>(())
                })
                .await;
            match result {
                Ok(()) => answered.push(n),
                Err(e) => {
                    failure = Some((n, e.to_string()));
                    break;
                }
            }
        }
        let (failed, message) = failure.expect("the disk never filled");
        assert!(message.to_lowercase().contains("full"), "{message}");
        std::fs::remove_file(&ballast).unwrap();
        // Room again: a write that frees space, then one that adds a row.
        store
            .write(|tx| {
                tx.raw()
                    .execute("DELETE FROM ballast", [])
                    .map_err(StoreError::from)
            })
            .unwrap();
        insert(&store, 1000).await.unwrap();
        let mut expected = answered.clone();
        expected.push(1000);
        assert_eq!(
            rows(&store),
            expected,
            "write {failed} failed but left rows"
        );
    }
}
