//! The outbox: notifications written in the same transaction as the state
//! change they report, and delivered afterwards, at least once.

use rusqlite::{Row, params};
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
    pub last_error: Option<String>,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub created_at: i64,
    #[serde(serialize_with = "super::serde_ms::opt_time")]
    pub delivered_at: Option<i64>,
    #[serde(skip)]
    pub next_attempt_at: i64,
    pub payload: Value,
}

const COLUMNS: &str = "id, event_id, kind, target, state, attempts, last_error, created_at, delivered_at, next_attempt_at, payload";

fn row(row: &Row<'_>) -> Result<Notification, rusqlite::Error> {
    let payload: String = row.get(10)?;
    Ok(Notification {
        id: row.get(0)?,
        event_id: row.get(1)?,
        kind: row.get(2)?,
        target: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        created_at: row.get(7)?,
        delivered_at: row.get(8)?,
        next_attempt_at: row.get(9)?,
        payload: serde_json::from_str(&payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, Box::new(e))
        })?,
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
