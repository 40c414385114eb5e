//! Retention: deleting stored records once they are older than the host
//! keeps them (`[retention]` in the settings file), and the thread that
//! does it.
//!
//! Pruned: the decision log (by `at`), delivered outbox rows (by
//! `delivered_at`), finished requests and finished flows with their tasks
//! and history (by `updated_at`), tombstones of ended reconciliations (by
//! `at`, under the requests' retention), expired offers with their invitees,
//! and expired sign-ins. What an open reconciliation or a
//! running flow still needs is never pruned: a request awaiting
//! reconciliation, or naming (or named by) a reconciliation record that
//! still exists, and that request's decisions; a flow not in a final state
//! (so its tasks and history); a flow an open reconciliation names; an
//! outbox row not yet delivered.
//!
//! A pass walks each kind in key order: the keys due are found on a reader
//! (so a long scan never holds the writer), then deleted by key in short
//! write transactions of at most `batch_rows` rows ([`Store::write`]), each
//! delete re-checking that its row is still due and not held. The walk's
//! cursor only moves forward, so a pass ends even when a row found due is
//! no longer deletable. Time comes in as a parameter: no SQL here reads
//! the clock, so the same statements serve PostgreSQL.
//!
//! Cost of a pass: decisions are walked in id order, which follows time,
//! and the walk stops at the first decision not yet due; delivered
//! notifications are found through the outbox's `(state, next_attempt_at)`
//! index; flows through their state index. Requests have no index by time
//! (one would cost every check a page), so a pass reads the whole table on
//! a reader, in one statement per `batch_rows` due rows; so it does for
//! tombstones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::params;

use super::{Conn, Store, StoreError, Tx};

/// One day, the unit of `[retention]`.
pub const DAY: Duration = Duration::from_secs(86_400);

/// How often the pruner runs unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How long the pruner waits after each delete transaction, so that the
/// writer's queue drains between two of them.
const PAUSE: Duration = Duration::from_millis(10);

/// A kind of stored record with a retention of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The decision log.
    Decisions,
    /// Delivered outbox rows.
    Notifications,
    /// Finished requests.
    Requests,
    /// Finished flows, with their tasks and history.
    Flows,
    /// What ended reconciliations came to (kept so that an old link can say
    /// so), under the finished requests' retention.
    Tombstones,
    /// Expired offers, with their invitees (permissions stay).
    Offers,
    /// Browser sessions, user tokens and form tokens past their own expiry
    /// (not a retention: they are worth nothing once expired).
    SignIns,
}

impl Kind {
    /// Every kind, in the order a pass prunes them.
    pub const ALL: [Kind; 7] = [
        Kind::Decisions,
        Kind::Notifications,
        Kind::Requests,
        Kind::Flows,
        Kind::Tombstones,
        Kind::Offers,
        Kind::SignIns,
    ];

    /// The kind's name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Decisions => "decisions",
            Kind::Notifications => "notifications",
            Kind::Requests => "requests",
            Kind::Flows => "flows",
            Kind::Tombstones => "tombstones",
            Kind::Offers => "offers",
            Kind::SignIns => "sign_ins",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How long each kind is kept, and how much one transaction deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `None`: kept forever.
    pub decisions: Option<Duration>,
    pub notifications: Option<Duration>,
    pub requests: Option<Duration>,
    pub flows: Option<Duration>,
    /// Offers, from their expiry.
    pub offers: Option<Duration>,
    /// Rows deleted per write transaction, at most (a flow with its tasks
    /// and history is never split, so a flow larger than this is deleted
    /// alone).
    pub batch_rows: u32,
}

impl Default for Policy {
    /// 30 days for decisions, requests and flows, 7 for delivered
    /// notifications, 365 for expired offers; 500 rows a transaction.
    fn default() -> Self {
        Policy {
            decisions: Some(DAY * 30),
            notifications: Some(DAY * 7),
            requests: Some(DAY * 30),
            flows: Some(DAY * 30),
            offers: Some(DAY * 365),
            batch_rows: 500,
        }
    }
}

impl Policy {
    /// How long `kind` is kept; `None`: forever.
    pub fn keep(&self, kind: Kind) -> Option<Duration> {
        match kind {
            Kind::Decisions => self.decisions,
            Kind::Notifications => self.notifications,
            Kind::Requests | Kind::Tombstones => self.requests,
            Kind::Flows => self.flows,
            Kind::Offers => self.offers,
            Kind::SignIns => Some(Duration::ZERO),
        }
    }

    /// Whether no record is ever pruned (expired sign-ins always are).
    pub fn keeps_everything(&self) -> bool {
        Kind::ALL
            .iter()
            .filter(|kind| **kind != Kind::SignIns)
            .all(|kind| self.keep(*kind).is_none())
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    counts: [u64; Kind::ALL.len()],
    /// Delete transactions it took.
    pub batches: u64,
}

impl Pruned {
    /// Records of `kind` deleted (flows: the flows, not their tasks).
    pub fn get(&self, kind: Kind) -> u64 {
        self.counts[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Records pruned since the host started, by kind, for metrics.
#[derive(Debug, Default)]
pub struct PruneStats {
    counts: [AtomicU64; Kind::ALL.len()],
}

impl PruneStats {
    pub fn add(&self, pruned: &Pruned) {
        for kind in Kind::ALL {
            self.counts[kind.index()].fetch_add(pruned.get(kind), Ordering::Relaxed);
        }
    }

    pub fn get(&self, kind: Kind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }
}

/// A row found due, with the rows deleting it takes (a flow counts its
/// tasks and history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<K> {
    pub key: K,
    pub rows: u64,
}

/// One page of a walk through a kind's table: the rows due in it, and the
/// key the walk goes on after (`None`: the walk is over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<K> {
    pub due: Vec<Due<K>>,
    pub next: Option<K>,
}

/// SQL: whether request `$request` is held by an open reconciliation: it
/// awaits one, it names a reconciliation record that still exists, or such
/// a record names it.
macro_rules! held {
    ($request:literal) => {
        concat!(
            "(EXISTS (SELECT 1 FROM requests hq WHERE hq.id = ",
            $request,
            " AND (hq.state = 'awaiting-reconciliation'",
            " OR EXISTS (SELECT 1 FROM reconciliations hr WHERE hr.id = hq.reconciliation_id)))",
            " OR EXISTS (SELECT 1 FROM reconciliations hr WHERE hr.request_id = ",
            $request,
            "))"
        )
    };
}

/// SQL: a request (`$q`) that is finished, and not held by a
/// reconciliation record that still exists.
macro_rules! finished_request {
    ($q:literal) => {
        concat!(
            $q,
            ".state IN ('fulfilled', 'lapsed', 'reconciliation-failed', 'denied', 'passed')",
            " AND NOT EXISTS (SELECT 1 FROM reconciliations r WHERE r.id = ",
            $q,
            ".reconciliation_id)",
            " AND NOT EXISTS (SELECT 1 FROM reconciliations r WHERE r.request_id = ",
            $q,
            ".id)"
        )
    };
}

/// SQL: a flow (`$f`) in a final state that no open reconciliation names.
macro_rules! finished_flow {
    ($f:literal) => {
        concat!(
            $f,
            ".state IN ('completed', 'failed', 'cancelled')",
            " AND ",
            $f,
            ".id NOT IN (SELECT r.flow_id FROM reconciliations r WHERE r.flow_id IS NOT NULL)"
        )
    };
}

/// Decisions made before `cutoff` (ms), in id order after `after`, of
/// requests no open reconciliation holds. The walk stops at the first
/// decision made at or after `cutoff`: ids follow time, so the rest are
/// newer (one made a little earlier but logged later waits for the next
/// pass).
pub fn due_decisions(
    conn: &Conn<'_>,
    cutoff: i64,
    after: i64,
    limit: u32,
) -> Result<Page<i64>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT d.id, d.at, ",
        held!("d.request_id"),
        " FROM decisions d WHERE d.id > ?1 ORDER BY d.id LIMIT ?2"
    ))?;
    let mut rows = stmt.query(params![after, limit])?;
    let (mut due, mut read, mut last) = (Vec::new(), 0u32, after);
    while let Some(row) = rows.next()? {
        let (id, at): (i64, i64) = (row.get(0)?, row.get(1)?);
        if at >= cutoff {
            return Ok(Page { due, next: None });
        }
        if !row.get::<_, bool>(2)? {
            due.push(Due { key: id, rows: 1 });
        }
        read += 1;
        last = id;
    }
    Ok(Page {
        due,
        next: (read == limit).then_some(last),
    })
}

/// Deletes the decisions `ids` that are still due: made before `cutoff`,
/// of a request no open reconciliation holds. Returns how many went.
pub fn delete_decisions(conn: &Tx<'_>, ids: &[i64], cutoff: i64) -> Result<u64, StoreError> {
    delete_each(
        conn,
        concat!(
            "DELETE FROM decisions WHERE id = ?1 AND at < ?2 AND NOT ",
            held!("decisions.request_id")
        ),
        ids,
        cutoff,
    )
}

/// Runs `sql` (a DELETE of the row `?1` if still due before `?2`) once per
/// key: how many rows went.
fn delete_each<K: rusqlite::ToSql>(
    tx: &Tx<'_>,
    sql: &str,
    keys: impl IntoIterator<Item = K>,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let mut stmt = tx.raw().prepare_cached(sql)?;
    let mut deleted = 0;
    for key in keys {
        deleted += stmt.execute(params![key, cutoff])? as u64;
    }
    Ok(deleted)
}

/// Delivered notifications delivered before `cutoff` (ms), in the order
/// of the outbox's `(state, next_attempt_at)` index after the key `after`
/// (`next_attempt_at`, `id`). A notification is attempted only once due,
/// so one delivered before `cutoff` was due before it too: the index finds
/// them without reading the others.
pub fn due_notifications(
    conn: &Conn<'_>,
    cutoff: i64,
    after: (i64, i64),
    limit: u32,
) -> Result<Page<(i64, i64)>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT next_attempt_at, id FROM outbox
         WHERE state = 'delivered' AND next_attempt_at < ?1 AND delivered_at < ?1
           AND (next_attempt_at > ?2 OR (next_attempt_at = ?2 AND id > ?3))
         ORDER BY next_attempt_at, id LIMIT ?4",
    )?;
    let keys = stmt
        .query_map(params![cutoff, after.0, after.1, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<Vec<(i64, i64)>, _>>()?;
    Ok(page(keys, limit))
}

/// Deletes the notifications `keys` (as [`due_notifications`] gives them)
/// that are delivered, before `cutoff`. Returns how many went.
pub fn delete_notifications(
    conn: &Tx<'_>,
    keys: &[(i64, i64)],
    cutoff: i64,
) -> Result<u64, StoreError> {
    delete_each(
        conn,
        "DELETE FROM outbox WHERE id = ?1 AND state = 'delivered' AND delivered_at < ?2",
        keys.iter().map(|(_, id)| id),
        cutoff,
    )
}

/// Finished requests last changed before `cutoff` (ms) and held by no
/// reconciliation record, in id order after `after` (`""` to start).
pub fn due_requests(
    conn: &Conn<'_>,
    cutoff: i64,
    after: &str,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    key_page(
        conn,
        concat!(
            "SELECT q.id FROM requests q WHERE q.id > ?1 AND q.updated_at < ?2 AND ",
            finished_request!("q"),
            " ORDER BY q.id LIMIT ?3"
        ),
        after,
        cutoff,
        limit,
    )
}

/// Deletes the requests `ids` that are still due (finished, last changed
/// before `cutoff`, held by no reconciliation record). Returns how many went.
pub fn delete_requests(conn: &Tx<'_>, ids: &[String], cutoff: i64) -> Result<u64, StoreError> {
    delete_each(
        conn,
        concat!(
            "DELETE FROM requests WHERE id = ?1 AND updated_at < ?2 AND ",
            finished_request!("requests")
        ),
        ids,
        cutoff,
    )
}

/// Tombstones of reconciliations that ended before `cutoff` (ms), in id
/// order after `after` (`""` to start).
pub fn due_tombstones(
    conn: &Conn<'_>,
    cutoff: i64,
    after: &str,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    key_page(
        conn,
        "SELECT id FROM reconciliation_tombstones WHERE id > ?1 AND at < ?2 ORDER BY id LIMIT ?3",
        after,
        cutoff,
        limit,
    )
}

/// Deletes the tombstones `ids` still older than `cutoff` (one written again
/// since is not).
pub fn delete_tombstones(conn: &Tx<'_>, ids: &[String], cutoff: i64) -> Result<u64, StoreError> {
    delete_each(
        conn,
        "DELETE FROM reconciliation_tombstones WHERE id = ?1 AND at < ?2",
        ids,
        cutoff,
    )
}

/// Flows in a final state last changed before `cutoff` (ms) that no open
/// reconciliation names, in id order after `after` (`""` to start), each
/// with the rows deleting it takes (itself, its tasks, its history).
pub fn due_flows(
    conn: &Conn<'_>,
    cutoff: i64,
    after: &str,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT f.id, 1 + (SELECT count(*) FROM tasks t WHERE t.flow_id = f.id)
                    + (SELECT count(*) FROM flow_history h WHERE h.flow_id = f.id)
         FROM flows f WHERE f.id > ?1 AND f.updated_at < ?2 AND ",
        finished_flow!("f"),
        " ORDER BY f.id LIMIT ?3"
    ))?;
    counted_page(&mut stmt, after, cutoff, limit)
}

/// Deletes the flows `ids` that are still due (final, last changed before
/// `cutoff`, named by no open reconciliation), each with its tasks and
/// history. Returns how many flows went.
pub fn delete_flows(conn: &Tx<'_>, ids: &[String], cutoff: i64) -> Result<u64, StoreError> {
    // A flow in a final state never leaves it, and the writer's
    // transaction keeps anyone else from changing it between the check
    // and the deletes (on a server database: a row lock).
    delete_with_children(
        conn,
        concat!(
            "SELECT 1 FROM flows f WHERE f.id = ?1 AND f.updated_at < ?2 AND ",
            finished_flow!("f")
        ),
        &[
            "DELETE FROM tasks WHERE flow_id = ?1",
            "DELETE FROM flow_history WHERE flow_id = ?1",
        ],
        "DELETE FROM flows WHERE id = ?1",
        ids,
        cutoff,
    )
}

/// For each key still due (`still_due`, with the key `?1` and `cutoff`
/// `?2`, finds a row), runs the `children` deletes and then `parent`
/// (each with the key `?1`): how many parents went.
fn delete_with_children(
    tx: &Tx<'_>,
    still_due: &str,
    children: &[&str],
    parent: &str,
    keys: &[String],
    cutoff: i64,
) -> Result<u64, StoreError> {
    let conn = tx.raw();
    let mut deleted = 0;
    for key in keys {
        if !conn
            .prepare_cached(still_due)?
            .exists(params![key, cutoff])?
        {
            continue;
        }
        for child in children {
            conn.prepare_cached(child)?.execute([key])?;
        }
        deleted += conn.prepare_cached(parent)?.execute([key])? as u64;
    }
    Ok(deleted)
}

/// Offers whose expiry passed before `cutoff` and whose expiry flow ran
/// (the provider was told), after `after` by id, with the rows each takes
/// (the offer and its invitees).
pub fn due_offers(
    conn: &Conn<'_>,
    cutoff: i64,
    after: &str,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, 1 + (SELECT count(*) FROM invitees i WHERE i.offer_id = o.id)
         FROM offers o WHERE o.id > ?1 AND o.expires_at < ?2 AND o.expired_at IS NOT NULL
         ORDER BY o.id LIMIT ?3",
    )?;
    counted_page(&mut stmt, after, cutoff, limit)
}

/// Deletes the offers `ids` that are still due, each with its invitees.
/// The permissions their acceptances recorded stay: they are the grants.
pub fn delete_offers(conn: &Tx<'_>, ids: &[String], cutoff: i64) -> Result<u64, StoreError> {
    delete_with_children(
        conn,
        "SELECT 1 FROM offers WHERE id = ?1 AND expires_at < ?2 AND expired_at IS NOT NULL",
        &["DELETE FROM invitees WHERE offer_id = ?1"],
        "DELETE FROM offers WHERE id = ?1",
        ids,
        cutoff,
    )
}

/// Sign-ins and form tokens (by their hash) that expired before `cutoff`.
pub fn due_sign_ins(
    conn: &Conn<'_>,
    cutoff: i64,
    after: &str,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    key_page(
        conn,
        "SELECT hash FROM (SELECT hash, expires_at FROM user_sessions
                           UNION ALL SELECT hash, expires_at FROM form_tokens)
         WHERE hash > ?1 AND expires_at < ?2 ORDER BY hash LIMIT ?3",
        after,
        cutoff,
        limit,
    )
}

/// Deletes the expired sign-ins and form tokens among `hashes`.
pub fn delete_sign_ins(conn: &Tx<'_>, hashes: &[String], cutoff: i64) -> Result<u64, StoreError> {
    let conn = conn.raw();
    let mut deleted = 0;
    for hash in hashes {
        for sql in [
            "DELETE FROM user_sessions WHERE hash = ?1 AND expires_at < ?2",
            "DELETE FROM form_tokens WHERE hash = ?1 AND expires_at < ?2",
        ] {
            deleted += conn.prepare_cached(sql)?.execute(params![hash, cutoff])? as u64;
        }
    }
    Ok(deleted)
}

/// A page of `(key, rows)` from a statement taking (after, cutoff, limit):
/// keys whose deletion takes several rows (a flow with its tasks, an
/// offer with its invitees).
fn counted_page(
    stmt: &mut rusqlite::CachedStatement<'_>,
    after: &str,
    cutoff: i64,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    let due = stmt
        .query_map(params![after, cutoff, limit], |row| {
            Ok(Due {
                key: row.get::<_, String>(0)?,
                rows: row.get::<_, i64>(1)?.unsigned_abs(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let next = (due.len() == limit as usize)
        .then(|| due.last().map(|d| d.key.clone()))
        .flatten();
    Ok(Page { due, next })
}

/// A page of text keys from `sql`, which takes `(after, cutoff, limit)`
/// and selects one key a row, one row each.
fn key_page(
    conn: &Conn<'_>,
    sql: &str,
    after: &str,
    cutoff: i64,
    limit: u32,
) -> Result<Page<String>, StoreError> {
    let keys = conn
        .raw()
        .prepare_cached(sql)?
        .query_map(params![after, cutoff, limit], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(page(keys, limit))
}

fn page<K: Clone>(keys: Vec<K>, limit: u32) -> Page<K> {
    let next = (keys.len() == limit as usize)
        .then(|| keys.last().cloned())
        .flatten();
    Page {
        due: keys.into_iter().map(|key| Due { key, rows: 1 }).collect(),
        next,
    }
}

/// Runs one pass: deletes every record of every kind that is due at `now`
/// (ms) under `policy`, in batches. Between two steps it calls `between`
/// with how long to pause (after a delete transaction; zero after a page
/// that deleted nothing); when that returns `false` the pass stops there,
/// with what it deleted so far.
pub fn prune(
    store: &Store,
    policy: &Policy,
    now: i64,
    between: &mut dyn FnMut(Duration) -> bool,
) -> Result<Pruned, StoreError> {
    let mut pass = Pass {
        store,
        batch_rows: policy.batch_rows.max(1),
        between,
        pruned: Pruned::default(),
    };
    for kind in Kind::ALL {
        let Some(keep) = policy.keep(kind) else {
            continue;
        };
        let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(keep);
        let went_on = match kind {
            Kind::Decisions => pass.walk(
                kind,
                i64::MIN,
                |c, after, n| due_decisions(c, cutoff, *after, n),
                |c, keys| delete_decisions(c, keys, cutoff),
            )?,
            Kind::Notifications => pass.walk(
                kind,
                (i64::MIN, i64::MIN),
                |c, after, n| due_notifications(c, cutoff, *after, n),
                |c, keys| delete_notifications(c, keys, cutoff),
            )?,
            Kind::Requests => pass.walk(
                kind,
                String::new(),
                |c, after, n| due_requests(c, cutoff, after, n),
                |c, keys| delete_requests(c, keys, cutoff),
            )?,
            Kind::Flows => pass.walk(
                kind,
                String::new(),
                |c, after, n| due_flows(c, cutoff, after, n),
                |c, keys| delete_flows(c, keys, cutoff),
            )?,
            Kind::Tombstones => pass.walk(
                kind,
                String::new(),
                |c, after, n| due_tombstones(c, cutoff, after, n),
                |c, keys| delete_tombstones(c, keys, cutoff),
            )?,
            Kind::Offers => pass.walk(
                kind,
                String::new(),
                |c, after, n| due_offers(c, cutoff, after, n),
                |c, keys| delete_offers(c, keys, cutoff),
            )?,
            Kind::SignIns => pass.walk(
                kind,
                String::new(),
                |c, after, n| due_sign_ins(c, cutoff, after, n),
                |c, keys| delete_sign_ins(c, keys, cutoff),
            )?,
        };
        if !went_on {
            break;
        }
    }
    Ok(pass.pruned)
}

struct Pass<'a> {
    store: &'a Store,
    batch_rows: u32,
    between: &'a mut dyn FnMut(Duration) -> bool,
    pruned: Pruned,
}

impl Pass<'_> {
    /// Walks one kind from `start`: reads a page of due keys on a reader,
    /// deletes them in batches of at most `batch_rows` rows, and goes on
    /// after the page until the walk is over. Whether to go on.
    fn walk<K: Clone>(
        &mut self,
        kind: Kind,
        start: K,
        read: impl Fn(&Conn<'_>, &K, u32) -> Result<Page<K>, StoreError>,
        delete: impl Fn(&Tx<'_>, &[K]) -> Result<u64, StoreError>,
    ) -> Result<bool, StoreError> {
        let mut after = start;
        loop {
            let page = self.store.read(|c| read(c, &after, self.batch_rows))?;
            let mut pause = Duration::ZERO;
            for batch in batches(&page.due, self.batch_rows) {
                if !pause.is_zero() && !(self.between)(pause) {
                    return Ok(false);
                }
                let keys: Vec<K> = batch.iter().map(|d| d.key.clone()).collect();
                let deleted = self.store.write(|tx| delete(tx, &keys))?;
                self.pruned.counts[kind.index()] += deleted;
                self.pruned.batches += 1;
                pause = PAUSE;
            }
            if !(self.between)(pause) {
                return Ok(false);
            }
            match page.next {
                Some(next) => after = next,
                None => return Ok(true),
            }
        }
    }
}

/// `due` cut into runs of at most `budget` rows (a row larger than the
/// budget alone).
fn batches<K>(due: &[Due<K>], budget: u32) -> Vec<&[Due<K>]> {
    let budget = u64::from(budget);
    let (mut out, mut start, mut rows) = (Vec::new(), 0, 0u64);
    for (i, d) in due.iter().enumerate() {
        if i > start && rows + d.rows > budget {
            out.push(&due[start..i]);
            (start, rows) = (i, 0);
        }
        rows += d.rows;
    }
    if start < due.len() {
        out.push(&due[start..]);
    }
    out
}

/// The thread that runs a pass every interval, until stopped.
pub struct Pruner {
    /// Dropped to stop the thread: its waits then end at once.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pruner {
    /// Starts the thread: a pass at once, then one every `interval`. Adds
    /// what each pass deleted to `stats`, and logs a pass that deleted
    /// something. With a policy that keeps everything, starts nothing.
    pub fn start(
        store: Store,
        policy: Policy,
        interval: Duration,
        stats: Arc<PruneStats>,
    ) -> std::io::Result<Pruner> {
        if policy.keeps_everything() {
            // Expired sign-ins still go: they are worth nothing.
            tracing::info!("retention: every record is kept; only expired sign-ins are pruned");
        }
        let days = |kind| {
            policy.keep(kind).map_or_else(
                || "forever".to_owned(),
                |d| format!("{}d", d.as_secs() / 86_400),
            )
        };
        tracing::info!(
            decisions = days(Kind::Decisions),
            notifications = days(Kind::Notifications),
            requests = days(Kind::Requests),
            flows = days(Kind::Flows),
            interval_seconds = interval.as_secs(),
            batch_rows = policy.batch_rows,
            "retention: pruning records past their time"
        );
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rulehost-pruner".into())
            .spawn(move || {
                // A wait that ends early, with `false`, once `stop` is dropped.
                let mut wait = |pause: Duration| {
                    matches!(stopped.recv_timeout(pause), Err(RecvTimeoutError::Timeout))
                };
                loop {
                    match prune(&store, &policy, super::now_ms(), &mut wait) {
                        Ok(pruned) => {
                            stats.add(&pruned);
                            if pruned.total() > 0 {
                                tracing::info!(
                                    decisions = pruned.get(Kind::Decisions),
                                    notifications = pruned.get(Kind::Notifications),
                                    requests = pruned.get(Kind::Requests),
                                    flows = pruned.get(Kind::Flows),
                                    tombstones = pruned.get(Kind::Tombstones),
                                    offers = pruned.get(Kind::Offers),
                                    sign_ins = pruned.get(Kind::SignIns),
                                    batches = pruned.batches,
                                    "pruned records past their retention"
                                );
                            }
                        }
                        Err(e) => tracing::error!(
                            "pruning records past their retention failed; trying again in {}s: {e}",
                            interval.as_secs()
                        ),
                    }
                    if !wait(interval) {
                        break;
                    }
                }
            })?;
        Ok(Pruner {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops after the delete transaction in progress, if any.
    pub fn stop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::entitlement::{
        ReconciliationRow, RequestRow, bury_reconciliation, insert_decision, put_reconciliation,
        put_request, sample_decision,
    };
    use crate::store::flows::{FlowRecord, NewTask, add_history, insert_flow, insert_task};
    use crate::store::outbox::{enqueue, mark_delivered};

    const NOW: i64 = 1_800_000_000_000;
    const DAY_MS: i64 = 86_400_000;

    /// Everything kept 30 days, in batches of `batch_rows`.
    fn policy(batch_rows: u32) -> Policy {
        Policy {
            decisions: Some(DAY * 30),
            notifications: Some(DAY * 30),
            requests: Some(DAY * 30),
            flows: Some(DAY * 30),
            offers: Some(DAY * 30),
            batch_rows,
        }
    }

    fn run(store: &Store, policy: &Policy) -> Pruned {
        prune(store, policy, NOW, &mut |_| true).unwrap()
    }

    fn days_ago(days: i64) -> i64 {
        NOW - days * DAY_MS
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store
            .read(|c| {
                c.raw()
                    .query_row(sql, [], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .unwrap()
    }

    fn request(store: &Store, id: &str, state: &str, updated_at: i64, rec: Option<&str>) {
        let row = RequestRow {
            id: id.into(),
            service: "support".into(),
            account_id: "acme".into(),
            description: String::new(),
            attributes: json!({}),
            state: state.into(),
            level: None,
            failure: None,
            reconciliation_id: rec.map(Into::into),
            created_at: updated_at,
            updated_at,
            version: 0,
        };
        store.write(|tx| put_request(tx, &row)).unwrap();
    }

    fn decision(store: &Store, request_id: &str, at: i64) -> i64 {
        let d = sample_decision(request_id, at);
        store.write(|tx| insert_decision(tx, &d)).unwrap()
    }

    fn reconciliation(store: &Store, id: &str, request_id: &str, flow_id: Option<&str>) {
        let row = ReconciliationRow {
            id: id.into(),
            request_id: request_id.into(),
            service: "support".into(),
            account_id: "acme".into(),
            failure_code: "expired".into(),
            reason: "r".into(),
            mode: "async".into(),
            procedure: json!({}),
            description: String::new(),
            key_hashes: Vec::new(),
            attempts: 0,
            deadline: None,
            flow_id: flow_id.map(Into::into),
            created_at: days_ago(60),
            locked_until: None,
            locks: 0,
        };
        store.write(|tx| put_reconciliation(tx, &row)).unwrap();
    }

    fn flow(store: &Store, id: &str, state: &str, updated_at: i64, tasks: usize) {
        store
            .write(|tx| {
                insert_flow(
                    tx,
                    &FlowRecord {
                        id: id.into(),
                        definition: "d".into(),
                        subject: "s".into(),
                        state: state.into(),
                        context: json!({}),
                        created_at: updated_at,
                        updated_at,
                    },
                )?;
                for seq in 0..tasks {
                    let task = NewTask {
                        id: format!("{id}-t{seq}"),
                        seq: seq as i64,
                        name: "t".into(),
                        kind: "auto".into(),
                        role: None,
                        action: None,
                        params: json!({}),
                        inserted_by_demand: false,
                    };
                    insert_task(tx, id, &task)?;
                    add_history(tx, id, updated_at, "host", "task.done", &json!({}))?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }

    /// A notification created and (when `delivered_at`) delivered then.
    fn notification(store: &Store, created_at: i64, delivered_at: Option<i64>) -> i64 {
        store
            .write(|tx| {
                enqueue(tx, "k", Some("http://x"), &json!({}), created_at)?;
                let id = tx.raw().last_insert_rowid();
                if let Some(at) = delivered_at {
                    mark_delivered(tx, id, at)?;
                }
                Ok::<_, StoreError>(id)
            })
            .unwrap()
    }

    #[test]
    fn only_decisions_past_their_time_go_and_never_those_of_a_held_request() {
        let store = Store::in_memory().unwrap();
        request(&store, "old", "passed", days_ago(40), None);
        // Held three ways, each alone: awaiting reconciliation; naming a
        // reconciliation record (passed again while it is open); named by one.
        request(
            &store,
            "waiting",
            "awaiting-reconciliation",
            days_ago(40),
            None,
        );
        request(&store, "repassed", "passed", days_ago(40), Some("rec_2"));
        reconciliation(&store, "rec_2", "another", None);
        request(&store, "named", "denied", days_ago(40), None);
        reconciliation(&store, "rec_3", "named", None);
        let gone = decision(&store, "old", days_ago(41));
        let held = [
            decision(&store, "waiting", days_ago(40)),
            decision(&store, "repassed", days_ago(39)),
            decision(&store, "named", days_ago(39)),
        ];
        let kept_new = decision(&store, "old", days_ago(29));

        let pruned = run(&store, &policy(500));
        assert_eq!(pruned.get(Kind::Decisions), 1);
        let left: Vec<i64> = store
            .read(|c| {
                let mut s = c.raw().prepare("SELECT id FROM decisions ORDER BY id")?;
                let ids = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok::<_, StoreError>(ids)
            })
            .unwrap();
        assert_eq!(left, [held.as_slice(), &[kept_new]].concat());
        assert!(!left.contains(&gone));

        // Once a reconciliation is over, its request's decisions may go too.
        store
            .write(|tx| bury_reconciliation(tx, "rec_2", "succeeded", NOW))
            .unwrap();
        assert_eq!(run(&store, &policy(500)).get(Kind::Decisions), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM decisions"), 3);
    }

    #[test]
    fn finished_requests_past_their_time_go_and_held_ones_stay() {
        let store = Store::in_memory().unwrap();
        for (i, state) in [
            "fulfilled",
            "lapsed",
            "reconciliation-failed",
            "denied",
            "passed",
        ]
        .iter()
        .enumerate()
        {
            request(&store, &format!("old-{i}"), state, days_ago(31), None);
            request(&store, &format!("new-{i}"), state, days_ago(29), None);
        }
        request(
            &store,
            "waiting",
            "awaiting-reconciliation",
            days_ago(90),
            Some("rec_1"),
        );
        reconciliation(&store, "rec_1", "waiting", None);
        // Passed again while the reconciliation it names is open.
        request(&store, "repassed", "passed", days_ago(90), Some("rec_2"));
        reconciliation(&store, "rec_2", "another", None);
        // A reconciliation that names the request, whatever the request says.
        request(&store, "named", "denied", days_ago(90), None);
        reconciliation(&store, "rec_3", "named", None);
        // A finished reconciliation holds nothing.
        request(&store, "was-held", "fulfilled", days_ago(90), Some("rec_4"));

        let pruned = run(&store, &policy(2));
        assert_eq!(pruned.get(Kind::Requests), 6);
        assert_eq!(pruned.batches, 3, "6 rows in batches of 2");
        let left: Vec<String> = store
            .read(|c| {
                let mut s = c.raw().prepare("SELECT id FROM requests ORDER BY id")?;
                let ids = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok::<_, StoreError>(ids)
            })
            .unwrap();
        assert_eq!(
            left,
            [
                "named", "new-0", "new-1", "new-2", "new-3", "new-4", "repassed", "waiting"
            ]
        );
    }

    #[test]
    fn tombstones_go_with_the_finished_requests_retention() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| {
                for (id, at) in [("rec-old", days_ago(31)), ("rec-new", days_ago(29))] {
                    tx.raw().execute(
                        "INSERT INTO reconciliation_tombstones (id, outcome, at) VALUES (?1, 'lapsed', ?2)",
                        params![id, at],
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let pruned = run(&store, &policy(500));
        assert_eq!(pruned.get(Kind::Tombstones), 1);
        let left = |id: &str| {
            store
                .read(|c| crate::store::entitlement::tombstone(c, id))
                .unwrap()
        };
        assert_eq!(left("rec-old"), None);
        assert_eq!(left("rec-new").as_deref(), Some("lapsed"));
        // Kept forever when finished requests are.
        store
            .write(|tx| {
                tx.raw().execute(
                    "INSERT INTO reconciliation_tombstones (id, outcome, at) VALUES ('rec-ancient', 'succeeded', ?1)",
                    params![days_ago(400)],
                )?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let forever = Policy {
            requests: None,
            ..policy(500)
        };
        assert_eq!(run(&store, &forever).get(Kind::Tombstones), 0);
        assert_eq!(left("rec-ancient").as_deref(), Some("succeeded"));
    }

    #[test]
    fn only_delivered_notifications_past_their_time_go() {
        let store = Store::in_memory().unwrap();
        let gone = notification(&store, days_ago(40), Some(days_ago(31)));
        let recent = notification(&store, days_ago(40), Some(days_ago(29)));
        let pending = notification(&store, days_ago(40), None);
        let held = store
            .write(|tx| {
                enqueue(tx, "k", None, &json!({}), days_ago(40))?;
                Ok::<_, StoreError>(tx.raw().last_insert_rowid())
            })
            .unwrap();
        let pruned = run(&store, &policy(500));
        assert_eq!(pruned.get(Kind::Notifications), 1);
        let left: Vec<i64> = store
            .read(|c| {
                let mut s = c.raw().prepare("SELECT id FROM outbox ORDER BY id")?;
                let ids = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok::<_, StoreError>(ids)
            })
            .unwrap();
        assert_eq!(left, vec![recent, pending, held]);
        assert!(!left.contains(&gone));
    }

    #[test]
    fn finished_flows_go_with_their_tasks_and_history_and_running_ones_stay() {
        let store = Store::in_memory().unwrap();
        flow(&store, "flw_a", "completed", days_ago(31), 3);
        flow(&store, "flw_b", "failed", days_ago(31), 1);
        flow(&store, "flw_c", "cancelled", days_ago(31), 0);
        flow(&store, "flw_d", "completed", days_ago(29), 2);
        flow(&store, "flw_e", "running", days_ago(90), 2);
        // Final, but an open reconciliation still names it.
        flow(&store, "flw_f", "cancelled", days_ago(90), 1);
        reconciliation(&store, "rec_1", "req", Some("flw_f"));

        // Batches of 4 rows: flw_a (7 rows) alone, then flw_b (3) and flw_c (1).
        let pruned = run(&store, &policy(4));
        assert_eq!(pruned.get(Kind::Flows), 3);
        assert_eq!(pruned.batches, 2);
        assert_eq!(count(&store, "SELECT count(*) FROM flows"), 3);
        for table in ["tasks", "flow_history"] {
            let orphans = count(
                &store,
                &format!(
                    "SELECT count(*) FROM {table} WHERE flow_id NOT IN ('flw_d', 'flw_e', 'flw_f')"
                ),
            );
            assert_eq!(orphans, 0, "{table} of pruned flows are gone");
        }
        assert_eq!(
            count(&store, "SELECT count(*) FROM tasks WHERE flow_id = 'flw_e'"),
            2
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM flow_history WHERE flow_id = 'flw_e'"
            ),
            2
        );
    }

    /// An offer, expired `expired_days_ago` (its flow ran when `told`),
    /// with `invitees` invitees, the first of whom accepted.
    fn offer(store: &Store, id: &str, expired_days_ago: i64, told: bool, invitees: usize) {
        store
            .write(|tx| {
                let c = tx.raw();
                c.execute(
                    "INSERT OR IGNORE INTO organizations (id, name, created_at) VALUES ('o', 'O', 0)",
                    [],
                )?;
                c.execute(
                    "INSERT OR IGNORE INTO users (id, organization_id, email, name, admin, password_hash, created_at)
                     VALUES ('u', 'o', 'u@example.com', 'U', 1, 'x', 0)",
                    [],
                )?;
                let at = days_ago(expired_days_ago);
                c.execute(
                    "INSERT INTO offers (id, service, organization_id, provider_id, description, onwards,
                         expires_at, expiry_chosen, expired_at, created_at)
                     VALUES (?1, 's', 'o', 'u', 'd', 0, ?2, 1, ?3, 0)",
                    params![id, at, told.then_some(at)],
                )?;
                for n in 0..invitees {
                    let invitee = format!("{id}-{n}");
                    c.execute(
                        "INSERT INTO invitees (id, offer_id, email, key_hash, created_at) VALUES (?1, ?2, 'x@example.com', 'h', 0)",
                        params![invitee, id],
                    )?;
                    if n == 0 {
                        c.execute(
                            "INSERT INTO permissions (service, grantor_id, grantee_id, may_offer, granted_at, offer_id, invitee_id)
                             VALUES ('s', 'u', 'u', 0, 0, ?1, ?2)",
                            params![id, invitee],
                        )?;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }

    #[test]
    fn expired_sign_ins_and_form_tokens_go_and_live_ones_stay() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| {
                let c = tx.raw();
                for (hash, expires) in [("a", NOW - 1), ("b", NOW + DAY_MS)] {
                    c.execute(
                        "INSERT INTO user_sessions (hash, kind, created_at, expires_at) VALUES (?1, 'site', 0, ?2)",
                        params![hash, expires],
                    )?;
                    c.execute(
                        "INSERT INTO form_tokens (hash, session_hash, form, subject, expires_at) VALUES (?1, ?1, 'f', 's', ?2)",
                        params![format!("t{hash}"), expires],
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        // Kept whatever the retention says: even "keep everything".
        let forever = Policy {
            decisions: None,
            notifications: None,
            requests: None,
            flows: None,
            offers: None,
            batch_rows: 500,
        };
        assert!(forever.keeps_everything());
        let pruned = run(&store, &forever);
        assert_eq!(pruned.get(Kind::SignIns), 2);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM user_sessions WHERE hash = 'b'"
            ),
            1
        );
        assert_eq!(count(&store, "SELECT count(*) FROM form_tokens"), 1);
    }

    #[test]
    fn expired_offers_go_with_their_invitees_and_their_permissions_stay() {
        let store = Store::in_memory().unwrap();
        offer(&store, "ofr_a", 31, true, 2);
        offer(&store, "ofr_b", 29, true, 1);
        // Past its time, but its flow has not told the provider yet.
        offer(&store, "ofr_c", 31, false, 1);
        let pruned = run(&store, &policy(500));
        assert_eq!(pruned.get(Kind::Offers), 1);
        assert_eq!(count(&store, "SELECT count(*) FROM offers"), 2);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM invitees WHERE offer_id = 'ofr_a'"
            ),
            0
        );
        assert_eq!(count(&store, "SELECT count(*) FROM invitees"), 2);
        assert_eq!(
            count(&store, "SELECT count(*) FROM permissions"),
            3,
            "grants are kept"
        );
    }

    /// What was found due on a reader may be held or changed by the time
    /// its delete runs: each delete checks again, in its transaction.
    #[test]
    fn a_delete_spares_a_row_that_is_no_longer_due_or_now_held() {
        let store = Store::in_memory().unwrap();
        let cutoff = days_ago(30);
        request(
            &store,
            "held",
            "awaiting-reconciliation",
            days_ago(40),
            Some("rec_1"),
        );
        reconciliation(&store, "rec_1", "held", None);
        request(&store, "named", "passed", days_ago(40), Some("rec_2"));
        reconciliation(&store, "rec_2", "other", None);
        request(&store, "fresh", "passed", days_ago(1), None);
        let held = decision(&store, "held", days_ago(40));
        let fresh = decision(&store, "fresh", days_ago(1));
        flow(&store, "flw_run", "running", days_ago(40), 1);
        flow(&store, "flw_rec", "completed", days_ago(40), 1);
        reconciliation(&store, "rec_3", "x", Some("flw_rec"));
        let pending = notification(&store, days_ago(40), None);
        let recent = notification(&store, days_ago(40), Some(days_ago(1)));

        let deleted = store
            .write(|tx| {
                Ok::<_, StoreError>([
                    delete_decisions(tx, &[held, fresh], cutoff)?,
                    delete_requests(tx, &["held".into(), "named".into(), "fresh".into()], cutoff)?,
                    delete_flows(tx, &["flw_run".into(), "flw_rec".into()], cutoff)?,
                    delete_notifications(tx, &[(0, pending), (0, recent)], cutoff)?,
                ])
            })
            .unwrap();
        assert_eq!(deleted, [0; 4]);
        assert_eq!(count(&store, "SELECT count(*) FROM decisions"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM requests"), 3);
        assert_eq!(count(&store, "SELECT count(*) FROM flows"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM tasks"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 2);
    }

    #[test]
    fn a_pass_loops_in_batches_until_nothing_due_is_left() {
        let store = Store::in_memory().unwrap();
        for i in 0..23 {
            decision(&store, &format!("r{i}"), days_ago(40));
        }
        let newest = decision(&store, "r-new", days_ago(1));
        let mut pauses = Vec::new();
        let pruned = prune(&store, &policy(5), NOW, &mut |pause| {
            pauses.push(pause);
            true
        })
        .unwrap();
        assert_eq!(pruned.get(Kind::Decisions), 23);
        assert_eq!(pruned.batches, 5, "23 rows in batches of 5");
        assert!(
            pauses.iter().filter(|p| !p.is_zero()).count() >= 4,
            "a pause between batches: {pauses:?}"
        );
        assert_eq!(count(&store, "SELECT count(*) FROM decisions"), 1);
        assert_eq!(count(&store, "SELECT max(id) FROM decisions"), newest);
        // Nothing left that is due: the next pass deletes nothing.
        assert_eq!(run(&store, &policy(5)), Pruned::default());
    }

    #[test]
    fn a_pass_stops_when_told_and_a_kind_kept_forever_is_not_touched() {
        let store = Store::in_memory().unwrap();
        for i in 0..10 {
            decision(&store, &format!("r{i}"), days_ago(40));
            request(&store, &format!("r{i}"), "passed", days_ago(40), None);
        }
        let pruned = prune(&store, &policy(3), NOW, &mut |pause| pause.is_zero()).unwrap();
        assert_eq!(pruned.batches, 1, "stopped at the first pause");
        assert_eq!(pruned.get(Kind::Decisions), 3);

        let keep_requests = Policy {
            requests: None,
            ..policy(500)
        };
        let pruned = run(&store, &keep_requests);
        assert_eq!(pruned.get(Kind::Decisions), 7);
        assert_eq!(pruned.get(Kind::Requests), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM requests"), 10);
    }

    #[test]
    fn the_decision_walk_stops_at_the_first_decision_not_due() {
        let store = Store::in_memory().unwrap();
        let old = decision(&store, "a", days_ago(40));
        decision(&store, "b", days_ago(1));
        decision(&store, "c", days_ago(40));
        let page = store
            .read(|c| due_decisions(c, days_ago(30), i64::MIN, 10))
            .unwrap();
        assert_eq!(page.due, vec![Due { key: old, rows: 1 }]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn batches_keep_to_their_row_budget() {
        let due = |rows: &[u64]| -> Vec<Due<u32>> {
            rows.iter()
                .enumerate()
                .map(|(i, r)| Due {
                    key: i as u32,
                    rows: *r,
                })
                .collect()
        };
        let sizes = |d: &[Due<u32>], budget| -> Vec<usize> {
            batches(d, budget).iter().map(|b| b.len()).collect()
        };
        assert_eq!(sizes(&due(&[1; 7]), 3), vec![3, 3, 1]);
        assert_eq!(sizes(&due(&[2, 9, 1, 1, 2]), 4), vec![1, 1, 3]);
        assert!(sizes(&due(&[]), 4).is_empty());
    }

    #[test]
    fn the_pruner_thread_prunes_at_start_counts_and_stops() {
        let store = Store::in_memory().unwrap();
        // Decided in 1970: long past any retention.
        for i in 0..3 {
            decision(&store, &format!("r{i}"), 1_000);
        }
        let stats = Arc::new(PruneStats::default());
        let mut pruner = Pruner::start(
            store.clone(),
            policy(500),
            Duration::from_secs(3600),
            stats.clone(),
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stats.get(Kind::Decisions) < 3 {
            assert!(std::time::Instant::now() < deadline, "nothing was pruned");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Stops at once, though its next pass is an hour away.
        let started = std::time::Instant::now();
        pruner.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(count(&store, "SELECT count(*) FROM decisions"), 0);
        assert_eq!(stats.get(Kind::Requests), 0);
    }
}
