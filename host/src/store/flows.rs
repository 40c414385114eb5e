//! Flows, their tasks and their history.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::{Conn, StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    pub id: String,
    pub definition: String,
    pub subject: String,
    pub state: String,
    pub context: Value,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub created_at: i64,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    pub id: String,
    pub flow_id: String,
    #[serde(skip)]
    pub seq: i64,
    pub name: String,
    pub kind: String,
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip)]
    pub params: Value,
    pub state: String,
    pub inserted_by_demand: bool,
    #[serde(serialize_with = "super::serde_ms::opt_time")]
    pub due_at: Option<i64>,
    #[serde(serialize_with = "super::serde_ms::opt_time")]
    pub opened_at: Option<i64>,
    #[serde(serialize_with = "super::serde_ms::opt_time")]
    pub completed_at: Option<i64>,
    pub outcome: Option<String>,
    pub data: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRecord {
    #[serde(serialize_with = "super::serde_ms::time")]
    pub at: i64,
    pub actor: String,
    pub event: String,
    pub detail: Value,
}

/// A task to be stored (ids and positions are given by the caller).
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub seq: i64,
    pub name: String,
    pub kind: String,
    pub role: Option<String>,
    pub action: Option<String>,
    pub params: Value,
    pub inserted_by_demand: bool,
}

fn flow_row(row: &Row<'_>) -> Result<FlowRecord, rusqlite::Error> {
    Ok(FlowRecord {
        id: row.get(0)?,
        definition: row.get(1)?,
        subject: row.get(2)?,
        state: row.get(3)?,
        context: super::json_column(row.get(4)?)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

const FLOW_COLUMNS: &str = "id, definition, subject, state, context, created_at, updated_at";
const TASK_COLUMNS: &str = "id, flow_id, seq, name, kind, role, action, params, state, inserted_by_demand, due_at, opened_at, completed_at, outcome, data";

fn task_row(row: &Row<'_>) -> Result<TaskRecord, rusqlite::Error> {
    Ok(TaskRecord {
        id: row.get(0)?,
        flow_id: row.get(1)?,
        seq: row.get(2)?,
        name: row.get(3)?,
        kind: row.get(4)?,
        role: row.get(5)?,
        action: row.get(6)?,
        params: super::json_column(row.get(7)?)?,
        state: row.get(8)?,
        inserted_by_demand: row.get(9)?,
        due_at: row.get(10)?,
        opened_at: row.get(11)?,
        completed_at: row.get(12)?,
        outcome: row.get(13)?,
        data: row
            .get::<_, Option<String>>(14)?
            .map(super::json_column)
            .transpose()?,
    })
}

pub fn insert_flow(conn: &Tx<'_>, flow: &FlowRecord) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        &format!("INSERT INTO flows ({FLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            flow.id,
            flow.definition,
            flow.subject,
            flow.state,
            flow.context.to_string(),
            flow.created_at,
            flow.updated_at
        ],
    )?;
    Ok(())
}

pub fn insert_task(conn: &Tx<'_>, flow_id: &str, task: &NewTask) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "INSERT INTO tasks (id, flow_id, seq, name, kind, role, action, params, state, inserted_by_demand)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9)",
        params![task.id, flow_id, task.seq, task.name, task.kind, task.role, task.action, task.params.to_string(), task.inserted_by_demand],
    )?;
    Ok(())
}

/// Makes room at `seq` by moving that task and every later one down by one.
pub fn shift_tasks(conn: &Tx<'_>, flow_id: &str, from_seq: i64) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "UPDATE tasks SET seq = seq + 1 WHERE flow_id = ?1 AND seq >= ?2",
        params![flow_id, from_seq],
    )?;
    Ok(())
}

pub fn get_flow(conn: &Conn<'_>, id: &str) -> Result<Option<FlowRecord>, StoreError> {
    let conn = conn.raw();
    Ok(conn
        .query_row(
            &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE id = ?1"),
            [id],
            flow_row,
        )
        .optional()?)
}

pub fn list_flows(
    conn: &Conn<'_>,
    state: Option<&str>,
    definition: Option<&str>,
    limit: u32,
) -> Result<Vec<FlowRecord>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {FLOW_COLUMNS} FROM flows
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR definition = ?2)
         ORDER BY created_at DESC, id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![state, definition, limit], flow_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_flow_state(conn: &Tx<'_>, id: &str, state: &str, now: i64) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "UPDATE flows SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, state, now],
    )?;
    Ok(())
}

pub fn set_flow_context(
    conn: &Tx<'_>,
    id: &str,
    context: &Value,
    now: i64,
) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "UPDATE flows SET context = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, context.to_string(), now],
    )?;
    Ok(())
}

pub fn tasks_of(conn: &Conn<'_>, flow_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE flow_id = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map([flow_id], task_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get_task(conn: &Conn<'_>, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let conn = conn.raw();
    Ok(conn
        .query_row(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
            [id],
            task_row,
        )
        .optional()?)
}

/// The task the flow is at: the first, in order, that is not finished.
pub fn current_task(conn: &Conn<'_>, flow_id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let conn = conn.raw();
    Ok(conn
        .query_row(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE flow_id = ?1 AND state IN ('pending', 'open') ORDER BY seq LIMIT 1"
            ),
            [flow_id],
            task_row,
        )
        .optional()?)
}

/// Writes a task's mutable fields back.
pub fn update_task(conn: &Tx<'_>, task: &TaskRecord) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "UPDATE tasks SET state = ?2, due_at = ?3, opened_at = ?4, completed_at = ?5, outcome = ?6, data = ?7 WHERE id = ?1",
        params![
            task.id,
            task.state,
            task.due_at,
            task.opened_at,
            task.completed_at,
            task.outcome,
            task.data.as_ref().map(Value::to_string)
        ],
    )?;
    Ok(())
}

pub fn add_history(
    conn: &Tx<'_>,
    flow_id: &str,
    at: i64,
    actor: &str,
    event: &str,
    detail: &Value,
) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "INSERT INTO flow_history (flow_id, at, actor, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![flow_id, at, actor, event, detail.to_string()],
    )?;
    Ok(())
}

pub fn history_of(conn: &Conn<'_>, flow_id: &str) -> Result<Vec<HistoryRecord>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT at, actor, event, detail FROM flow_history WHERE flow_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([flow_id], |row| {
        Ok(HistoryRecord {
            at: row.get(0)?,
            actor: row.get(1)?,
            event: row.get(2)?,
            detail: super::json_column(row.get(3)?)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open manual tasks, oldest first.
pub fn open_tasks(
    conn: &Conn<'_>,
    role: Option<&str>,
    limit: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'open' AND kind = 'manual' AND (?1 IS NULL OR role = ?1)
         ORDER BY opened_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![role, limit], task_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Running flows that can move now: their current task is pending, or is a
/// timer that has come due.
pub fn flows_ready(conn: &Conn<'_>, now: i64) -> Result<Vec<String>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT f.id FROM flows f
         JOIN tasks t ON t.id = (SELECT id FROM tasks WHERE flow_id = f.id AND state IN ('pending', 'open') ORDER BY seq LIMIT 1)
         WHERE f.state = 'running'
           AND (t.state = 'pending' OR (t.kind = 'timer' AND t.state = 'open' AND t.due_at <= ?1))
         ORDER BY f.updated_at",
    )?;
    let rows = stmt.query_map([now], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Running flows whose current task is done or missing (all tasks finished)
/// are completed by the engine; this finds flows stuck with no current task.
pub fn running_without_current(conn: &Conn<'_>) -> Result<Vec<String>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM flows f WHERE state = 'running'
         AND NOT EXISTS (SELECT 1 FROM tasks WHERE flow_id = f.id AND state IN ('pending', 'open'))",
    )?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next open timer falls due.
pub fn next_timer(conn: &Conn<'_>) -> Result<Option<i64>, StoreError> {
    let conn = conn.raw();
    Ok(conn.query_row(
        "SELECT MIN(due_at) FROM tasks WHERE kind = 'timer' AND state = 'open'",
        [],
        |row| row.get(0),
    )?)
}

/// Flow counts by state, and open manual tasks, for metrics.
pub fn counts(conn: &Conn<'_>) -> Result<(Vec<(String, i64)>, i64), StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM flows GROUP BY state")?;
    let by_state = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let open: i64 = conn.query_row(
        "SELECT COUNT(*) FROM tasks WHERE state = 'open' AND kind = 'manual'",
        [],
        |row| row.get(0),
    )?;
    Ok((by_state, open))
}

/// Moves every timer `ms` earlier, as if that long had passed: for tests
/// of what a host finds due when it starts again.
#[cfg(test)]
pub fn move_timers_back(tx: &Tx<'_>, ms: i64) -> Result<(), StoreError> {
    tx.raw()
        .execute("UPDATE tasks SET due_at = due_at - ?1", [ms])?;
    Ok(())
}
