//! The outbox: notifications written in the same transaction as the state
//! change they report, and delivered afterwards, at least once.
//!
//! States: `pending` (to deliver; `next_attempt_at` says when), `delivered`,
//! `held` (nobody is configured to receive it; kept for operators to see),
//! and `dead` (it could not be read or delivered after its retries, or was
//! refused for good; `last_error` says why, [`retry`] puts it back).
//!
//! Reading never fails because of one row: a row whose columns cannot be
//! read comes back with `unreadable` set (and a null payload) instead, so
//! the delivery worker can put it aside and the listing can show it.

use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::{Conn, StoreError, Tx, new_id, rfc3339};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub event_id: String,
    pub kind: String,
    /// Where it goes (a webhook URL); `None` when nobody is configured to
    /// receive it, in which case it is `held` for operators to see.
    pub target: Option<String>,
    pub state: String,
    pub attempts: i64,
    /// Why the last attempt failed; for a `dead` one, why it died.
    pub last_error: Option<String>,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub created_at: i64,
    #[serde(serialize_with = "super::serde_ms::opt_time")]
    pub delivered_at: Option<i64>,
    #[serde(serialize_with = "super::serde_ms::opt_time")]
    pub dead_at: Option<i64>,
    #[serde(skip)]
    pub next_attempt_at: i64,
    pub payload: Value,
    /// Why this stored row cannot be read (its payload is then `null`);
    /// such a notification is never sent, it goes `dead` at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

const COLUMNS: &str = "id, event_id, kind, target, state, attempts, last_error, created_at, delivered_at, next_attempt_at, payload, dead_at";

const NAMES: [&str; 12] = [
    "id",
    "event_id",
    "kind",
    "target",
    "state",
    "attempts",
    "last_error",
    "created_at",
    "delivered_at",
    "next_attempt_at",
    "payload",
    "dead_at",
];

/// Column `index` of `row`; `None` (and the first problem noted) when it
/// cannot be read.
fn value(row: &Row<'_>, index: usize, problem: &mut Option<String>) -> Option<SqlValue> {
    row.get::<_, SqlValue>(index)
        .map_err(|e| {
            problem.get_or_insert_with(|| format!("column `{}`: {e}", NAMES[index]));
        })
        .ok()
}

/// A text column; bytes that are not UTF-8 are a problem, NULL is `None`.
fn text(row: &Row<'_>, index: usize, problem: &mut Option<String>) -> Option<String> {
    match value(row, index, problem)? {
        SqlValue::Text(s) => Some(s),
        SqlValue::Null => None,
        SqlValue::Blob(bytes) => String::from_utf8(bytes)
            .map_err(|_| {
                problem
                    .get_or_insert_with(|| format!("column `{}` is not UTF-8 text", NAMES[index]));
            })
            .ok(),
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(f.to_string()),
    }
}

fn integer(row: &Row<'_>, index: usize, problem: &mut Option<String>) -> Option<i64> {
    match value(row, index, problem)? {
        SqlValue::Integer(i) => Some(i),
        SqlValue::Null => None,
        _ => {
            problem.get_or_insert_with(|| format!("column `{}` is not an integer", NAMES[index]));
            None
        }
    }
}

/// One row, whatever is stored in it: only the id must be readable (an
/// INTEGER PRIMARY KEY always is); any other column that cannot be read
/// gets a neutral value and the first problem goes in `unreadable`.
fn row(row: &Row<'_>) -> Result<Notification, rusqlite::Error> {
    let mut problem = None;
    let p = &mut problem;
    let id: i64 = row.get(0)?;
    let event_id = text(row, 1, p).unwrap_or_default();
    let kind = text(row, 2, p).unwrap_or_default();
    let target = text(row, 3, p);
    let state = text(row, 4, p).unwrap_or_default();
    let attempts = integer(row, 5, p).unwrap_or_default();
    let last_error = text(row, 6, p);
    let created_at = integer(row, 7, p).unwrap_or_default();
    let delivered_at = integer(row, 8, p);
    let next_attempt_at = integer(row, 9, p).unwrap_or_default();
    let payload = match text(row, 10, p)
        .as_deref()
        .map(serde_json::from_str::<Value>)
    {
        Some(Ok(payload)) => payload,
        Some(Err(e)) => {
            p.get_or_insert_with(|| format!("the stored payload is not readable JSON: {e}"));
            Value::Null
        }
        None => {
            p.get_or_insert_with(|| "the stored payload is missing".to_owned());
            Value::Null
        }
    };
    let dead_at = integer(row, 11, p);
    Ok(Notification {
        id,
        event_id,
        kind,
        target,
        state,
        attempts,
        last_error,
        created_at,
        delivered_at,
        dead_at,
        next_attempt_at,
        payload,
        unreadable: problem,
    })
}

/// Queues a notification; returns its event id (the idempotency key the
/// receiver sees). The payload gets `id`, `kind` and `at` around `data`.
pub fn enqueue(
    conn: &Tx<'_>,
    kind: &str,
    target: Option<&str>,
    data: &Value,
    now: i64,
) -> Result<String, StoreError> {
    let conn = conn.raw();
    let event_id = new_id("evt", 16);
    let payload =
        serde_json::json!({"id": event_id, "kind": kind, "at": rfc3339(now), "data": data});
    let state = if target.is_some() { "pending" } else { "held" };
    conn.execute(
        "INSERT INTO outbox (event_id, kind, target, payload, state, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![event_id, kind, target, payload.to_string(), state, now],
    )?;
    Ok(event_id)
}

/// Pending notifications whose next attempt is due, oldest first.
pub fn due(conn: &Conn<'_>, now: i64, limit: u32) -> Result<Vec<Notification>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, limit], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn mark_delivered(conn: &Tx<'_>, id: i64, now: i64) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn mark_failed(
    conn: &Tx<'_>,
    id: i64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
        params![id, next_attempt_at, error],
    )?;
    Ok(())
}

/// An attempt that failed for good (or the last one allowed): the
/// notification is `dead`, with `error` as the reason.
pub fn mark_dead(conn: &Tx<'_>, id: i64, now: i64, error: &str) -> Result<(), StoreError> {
    conn.raw().execute(
        "UPDATE outbox SET state = 'dead', attempts = attempts + 1, dead_at = ?2, last_error = ?3 WHERE id = ?1",
        params![id, now, error],
    )?;
    Ok(())
}

/// What [`retry`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Retried {
    /// Back to `pending`, due now, with its attempts counted from zero.
    Pending(Box<Notification>),
    NotFound,
    /// Only a dead notification is retried; this one is in `state`.
    NotDead {
        state: String,
    },
}

/// An operator's retry of a dead notification: it is `pending` again, due
/// at `now`, with a fresh budget of attempts; `last_error` stays until the
/// next attempt. The event id (the receivers' idempotency key) is kept.
pub fn retry(conn: &Tx<'_>, id: i64, now: i64) -> Result<Retried, StoreError> {
    let changed = conn.raw().execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2, dead_at = NULL WHERE id = ?1 AND state = 'dead'",
        params![id, now],
    )?;
    let found = get(conn, id)?;
    Ok(match (changed, found) {
        (_, None) => Retried::NotFound,
        (0, Some(n)) => Retried::NotDead { state: n.state },
        (_, Some(n)) => Retried::Pending(Box::new(n)),
    })
}

/// One notification by id.
pub fn get(conn: &Conn<'_>, id: i64) -> Result<Option<Notification>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?;
    Ok(stmt.query_row([id], row).optional()?)
}

pub fn list(
    conn: &Conn<'_>,
    state: Option<&str>,
    limit: u32,
) -> Result<Vec<Notification>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![state, limit], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Pending notifications, and when the earliest is next due.
pub fn backlog(conn: &Conn<'_>) -> Result<(i64, Option<i64>), StoreError> {
    let conn = conn.raw();
    Ok(conn.query_row(
        "SELECT COUNT(*), MIN(next_attempt_at) FROM outbox WHERE state = 'pending'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

/// How many notifications are dead (waiting for an operator).
pub fn dead_count(conn: &Conn<'_>) -> Result<i64, StoreError> {
    Ok(conn.raw().query_row(
        "SELECT COUNT(*) FROM outbox WHERE state = 'dead'",
        [],
        |row| row.get(0),
    )?)
}

/// Stores `payload` as the notification's payload text, as it is: for
/// tests of rows an earlier host stored unreadable.
#[cfg(test)]
pub(crate) fn overwrite_payload(conn: &Tx<'_>, id: i64, payload: &str) -> Result<(), StoreError> {
    conn.raw().execute(
        "UPDATE outbox SET payload = ?2 WHERE id = ?1",
        params![id, payload],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn enqueue_one(store: &Store, kind: &str) -> i64 {
        store
            .write(|tx| {
                enqueue(
                    tx,
                    kind,
                    Some("http://127.0.0.1:9/x"),
                    &serde_json::json!({"n": 1}),
                    5,
                )?;
                Ok::<_, StoreError>(tx.raw().last_insert_rowid())
            })
            .unwrap()
    }

    /// A payload nested deeper than serde_json reads (its recursion limit
    /// is 128), as an earlier host let through.
    fn too_deep() -> String {
        format!("{}{}", "[".repeat(200), "]".repeat(200))
    }

    #[test]
    fn an_unreadable_row_is_listed_as_unreadable_and_never_fails_a_read() {
        let store = Store::in_memory().unwrap();
        let first = enqueue_one(&store, "a");
        let bad = enqueue_one(&store, "b");
        let bytes = enqueue_one(&store, "c");
        let last = enqueue_one(&store, "d");
        store
            .write(|tx| {
                tx.raw().execute(
                    "UPDATE outbox SET payload = ?2 WHERE id = ?1",
                    params![bad, too_deep()],
                )?;
                // Not even text: bytes that are not UTF-8.
                tx.raw().execute(
                    "UPDATE outbox SET payload = ?2 WHERE id = ?1",
                    params![bytes, vec![0xffu8, 0xfe, b'{']],
                )?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let all = store.read(|c| list(c, None, 10)).unwrap();
        assert_eq!(all.len(), 4, "{all:#?}");
        let by_id = |id: i64| all.iter().find(|n| n.id == id).unwrap();
        for good in [first, last] {
            assert_eq!(by_id(good).unreadable, None);
            assert_eq!(by_id(good).payload["data"]["n"], 1);
        }
        let deep = by_id(bad);
        assert_eq!(deep.payload, Value::Null);
        assert!(
            deep.unreadable
                .as_deref()
                .is_some_and(|u| u.contains("recursion limit")),
            "{deep:#?}"
        );
        assert_eq!(deep.kind, "b", "the readable columns are still there");
        assert!(by_id(bytes).unreadable.is_some(), "{:#?}", by_id(bytes));
        let due = store.read(|c| due(c, 10, 10)).unwrap();
        assert_eq!(due.len(), 4, "{due:#?}");
        let json = serde_json::to_value(deep).unwrap();
        assert!(json["unreadable"].is_string(), "{json}");
        assert!(
            serde_json::to_value(by_id(first))
                .unwrap()
                .get("unreadable")
                .is_none(),
            "only an unreadable row says so"
        );
    }

    #[test]
    fn a_dead_notification_is_counted_and_retried_only_when_dead() {
        let store = Store::in_memory().unwrap();
        let id = enqueue_one(&store, "a");
        let retried = store.write(|tx| retry(tx, id, 7)).unwrap();
        assert_eq!(
            retried,
            Retried::NotDead {
                state: "pending".into()
            }
        );
        assert_eq!(
            store.write(|tx| retry(tx, 999, 7)).unwrap(),
            Retried::NotFound
        );
        store
            .write(|tx| mark_dead(tx, id, 6, "the receiver answered HTTP 400"))
            .unwrap();
        assert_eq!(store.read(dead_count).unwrap(), 1);
        let dead = store.read(|c| list(c, Some("dead"), 10)).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 1);
        assert_eq!(dead[0].dead_at, Some(6));
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("the receiver answered HTTP 400")
        );
        let Retried::Pending(back) = store.write(|tx| retry(tx, id, 7)).unwrap() else {
            panic!("not retried");
        };
        assert_eq!((back.state.as_str(), back.attempts), ("pending", 0));
        assert_eq!((back.next_attempt_at, back.dead_at), (7, None));
        assert_eq!(store.read(dead_count).unwrap(), 0);
        assert_eq!(store.read(|c| due(c, 7, 10)).unwrap().len(), 1);
    }
}
