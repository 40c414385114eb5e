//! Group commit: writes that arrive while the writer is busy share the
//! next append to the journal (or the next commit).
//!
//! One writer thread takes every write queued since its last group, runs
//! each in a savepoint of the writer's transaction, makes them durable
//! together (their journal records in one `write`, or one commit when a
//! write needs it: see `writer.rs`), and only then answers each caller. A
//! write that fails rolls back to its savepoint alone; a group that cannot
//! be made durable answers every write of it with the error, and none of
//! them is stored.
//!
//! A check is decided inside its write (`http::entitlement`): its reads
//! see every write before it, those of its own group included, so checks
//! are serializable; and the executor's threads never run plugins. The
//! price: a plugin call holds the writer until it returns, at most the
//! service's timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;
use super::writer::{Logged, Outcome, Writer, run_logged};

/// Most writes in one group: bounds how long the first of them waits.
const MAX_GROUP: usize = 256;

/// Answers a write once its group is durable (or is known not to be).
type Answer = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;

/// A queued write: run inside the group's transaction (or told that the
/// transaction could not begin), it returns how to answer its caller and
/// what it needs to become durable.
type Job = Box<dyn FnOnce(Result<&Connection, Arc<str>>) -> (Answer, Outcome) + Send>;

/// Counters of group commit (`/metrics`).
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Groups made durable by the group writer: each by one journal append
    /// or one commit.
    pub commits: AtomicU64,
    /// Writes they carried.
    pub writes: AtomicU64,
}

pub(super) struct GroupCommit {
    jobs: Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer thread; it ends when the store is dropped.
    pub fn start(writer: Arc<Mutex<Writer>>, stats: Arc<GroupStats>) -> GroupCommit {
        let (jobs, queue) = channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("rulehost-group-commit".into())
            .spawn(move || run(&writer, &queue, &stats));
        if let Err(e) = spawned {
            // The queue's receiver is gone with the closure: every write
            // is answered with the error below instead of hanging.
            tracing::error!("cannot start the group commit thread: {e}");
        }
        GroupCommit { jobs }
    }

    pub async fn submit<T, E>(
        &self,
        f: impl FnOnce(&Logged<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            let (result, outcome) = match conn {
                Ok(conn) => {
                    let (result, outcome) = run_logged(conn, true, f);
                    (Ok(result), outcome)
                }
                Err(e) => (Err(e), Outcome::Nothing),
            };
            let answer: Answer = Box::new(move |durable| {
                let result = match (result, durable) {
                    (Ok(result), Ok(())) => result,
                    // The write's own error says more than the commit's.
                    (Ok(Err(e)), Err(_)) => Err(e),
                    (Ok(Ok(_)), Err(e)) | (Err(e), _) => Err(StoreError::Commit(e).into()),
                };
                // The caller may have gone (a closed connection): the write
                // stands all the same.
                let _ = answer.send(result);
            });
            (answer, outcome)
        });
        let stopped = || StoreError::Commit("the database writer has stopped".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        answered.await.unwrap_or_else(|_| Err(stopped().into()))
    }
}

fn run(writer: &Mutex<Writer>, queue: &Receiver<Job>, stats: &GroupStats) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(job) = queue.try_recv()
        {
            group.push(job);
        }
        let size = group.len() as u64;
        let mut writer = super::lock(writer);
        let (answers, durable) = settle(&mut writer, group);
        drop(writer);
        if durable.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(size, Ordering::Relaxed);
        }
        for answer in answers {
            answer(durable.clone());
        }
    }
}

/// Runs each write of `group` in a savepoint of one transaction, then
/// makes them durable together.
fn settle(writer: &mut Writer, group: Vec<Job>) -> (Vec<Answer>, Result<(), Arc<str>>) {
    if let Err(e) = writer.begin() {
        let e: Arc<str> = e.to_string().into();
        let answers = group.into_iter().map(|job| job(Err(e.clone())).0).collect();
        return (answers, Err(e));
    }
    let (answers, outcomes): (Vec<Answer>, Vec<Outcome>) =
        group.into_iter().map(|job| job(Ok(writer.conn()))).unzip();
    let durable = writer.settle(outcomes).map_err(|e| e.to_string().into());
    if let Err(e) = &durable {
        tracing::error!("a group commit failed, its writes were not stored: {e}");
    }
    (answers, durable)
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreError};

    fn count(store: &Store) -> i64 {
        store
            .read(|c| {
                c.query_row("SELECT count(*) FROM grouped", [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.db")).unwrap();
        store
            .write(|tx| {
                tx.execute_batch("CREATE TABLE grouped (n INTEGER UNIQUE)")
                    .map_err(StoreError::from)
            })
            .unwrap();
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_all_land() {
        let (_dir, store) = store();
        let writes: Vec<_> = (0..200)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .write_grouped(move |c| {
                            c.execute("INSERT INTO grouped VALUES (?1)", [n])
                                .map_err(StoreError::from)
                        })
                        .await
                })
            })
            .collect();
        for write in futures_join(writes).await {
            assert_eq!(write.unwrap(), 1);
        }
        assert_eq!(count(&store), 200);
        let stats = store.group_stats();
        let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stats.writes.load(std::sync::atomic::Ordering::Relaxed), 200);
        assert!(
            commits < 200,
            "no write shared a commit ({commits} commits)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone() {
        let (_dir, store) = store();
        let mut writes = Vec::new();
        for n in [1, 2, 2, 3] {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .write_grouped(move |c| {
                        c.execute("INSERT INTO grouped VALUES (?1)", [n])?;
                        c.execute("INSERT INTO grouped VALUES (?1)", [n * 100])?;
                        // Half a write, then a failure: none of it may stay.
                        if n == 2 {
                            return Err(StoreError::Corrupt(format!("write {n} refused")));
                        }
                        Ok(())
                    })
                    .await
            }));
        }
        let results: Vec<_> = futures_join(writes)
            .await
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
        // Both writes of 2 were refused halfway: neither left a row, and
        // the others, committed with them, are whole.
        assert!(results[1].is_err() && results[2].is_err(), "{results:?}");
        let rows: Vec<i64> = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT n FROM grouped ORDER BY n")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>().map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!(rows, vec![1, 3, 100, 300]);
    }

    #[tokio::test]
    async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
        let (_dir, store) = store();
        let panicked = store
            .write_grouped(|c| -> Result<(), StoreError> {
                c.execute("INSERT INTO grouped VALUES (7)", [])?;
                #[allow(clippy::panic)]
                {
                    panic!("a bug in a write")
                }
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Commit(_))),
            "{panicked:?}"
        );
        store
            .write_grouped(|c| {
                c.execute("INSERT INTO grouped VALUES (8)", [])
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(count(&store), 1);
    }

    async fn futures_join<T>(
        handles: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}
