//! Versioned schema migrations, applied in order at start. The version is
//! SQLite's `user_version`; a database newer than this binary is refused.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each entry migrates from version `i` to `i + 1`. Append only: never edit a
/// released migration.
const MIGRATIONS: &[&str] = &[
    // 1: flows, tasks, history, outbox
    r#"
    CREATE TABLE flows (
        id          TEXT PRIMARY KEY,
        definition  TEXT NOT NULL,
        subject     TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('running', 'completed', 'failed', 'cancelled')),
        context     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX flows_state ON flows (state, definition);

    CREATE TABLE tasks (
        id                  TEXT PRIMARY KEY,
        flow_id             TEXT NOT NULL REFERENCES flows (id),
        seq                 INTEGER NOT NULL,
        name                TEXT NOT NULL,
        kind                TEXT NOT NULL CHECK (kind IN ('auto', 'manual', 'timer')),
        role                TEXT,
        action              TEXT,
        params              TEXT NOT NULL DEFAULT '{}',
        state               TEXT NOT NULL CHECK (state IN ('pending', 'open', 'done', 'failed', 'skipped')),
        inserted_by_demand  INTEGER NOT NULL DEFAULT 0,
        due_at              INTEGER,
        opened_at           INTEGER,
        completed_at        INTEGER,
        outcome             TEXT,
        data                TEXT
    );
    CREATE INDEX tasks_flow ON tasks (flow_id, seq);
    CREATE INDEX tasks_open ON tasks (state, role);

    CREATE TABLE flow_history (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_id  TEXT NOT NULL REFERENCES flows (id),
        at       INTEGER NOT NULL,
        actor    TEXT NOT NULL,
        event    TEXT NOT NULL,
        detail   TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX flow_history_flow ON flow_history (flow_id, id);

    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         TEXT NOT NULL UNIQUE,
        kind             TEXT NOT NULL,
        target           TEXT,
        payload          TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'held')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        delivered_at     INTEGER
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        apply(&mut conn, &path).unwrap();
        apply(&mut conn, &path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = apply(&mut conn, &path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("newer than this rulehost understands"),
            "{err}"
        );
    }
}
