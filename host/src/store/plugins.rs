//! Plugin versions: every version's bytes, every offer's outcome, and the
//! live version of each plugin name.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Conn, StoreError, Tx};

/// One offer of a version and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginEvent {
    pub id: i64,
    pub plugin: String,
    pub digest: Option<String>,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub at: i64,
    /// Who offered it: startup, watcher, api, cli, rollback.
    pub source: String,
    pub path: Option<String>,
    /// `activated` or `rejected`.
    pub result: String,
    /// For a rejection, the step that failed.
    pub step: Option<String>,
    pub message: Option<String>,
}

pub fn put_version(conn: &Tx<'_>, digest: &str, bytes: &[u8], now: i64) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "INSERT OR IGNORE INTO plugin_versions (digest, bytes, first_seen) VALUES (?1, ?2, ?3)",
        params![digest, bytes, now],
    )?;
    Ok(())
}

pub fn version_bytes(conn: &Conn<'_>, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let conn = conn.raw();
    Ok(conn
        .query_row(
            "SELECT bytes FROM plugin_versions WHERE digest = ?1",
            [digest],
            |row| row.get(0),
        )
        .optional()?)
}

pub fn add_event(conn: &Tx<'_>, e: &PluginEvent) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "INSERT INTO plugin_events (plugin, digest, at, source, path, result, step, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![e.plugin, e.digest, e.at, e.source, e.path, e.result, e.step, e.message],
    )?;
    Ok(())
}

/// The plugin's events, newest first.
pub fn events(conn: &Conn<'_>, plugin: &str, limit: u32) -> Result<Vec<PluginEvent>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT id, plugin, digest, at, source, path, result, step, message FROM plugin_events WHERE plugin = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![plugin, limit], |row| {
        Ok(PluginEvent {
            id: row.get(0)?,
            plugin: row.get(1)?,
            digest: row.get(2)?,
            at: row.get(3)?,
            source: row.get(4)?,
            path: row.get(5)?,
            result: row.get(6)?,
            step: row.get(7)?,
            message: row.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_active(conn: &Tx<'_>, plugin: &str, digest: &str, now: i64) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "INSERT INTO plugin_active (plugin, digest, activated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (plugin) DO UPDATE SET digest = ?2, activated_at = ?3",
        params![plugin, digest, now],
    )?;
    Ok(())
}

/// The live version of each plugin name: (plugin, digest, activated_at).
pub fn active(conn: &Conn<'_>) -> Result<Vec<(String, String, i64)>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn
        .prepare_cached("SELECT plugin, digest, activated_at FROM plugin_active ORDER BY plugin")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Digests that were activated for `plugin`, newest first, without repeats.
pub fn activated_digests(conn: &Conn<'_>, plugin: &str) -> Result<Vec<String>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT digest FROM plugin_events WHERE plugin = ?1 AND result = 'activated' AND digest IS NOT NULL ORDER BY id DESC",
    )?;
    let mut seen = Vec::new();
    for digest in stmt.query_map([plugin], |row| row.get::<_, String>(0))? {
        let digest = digest?;
        if !seen.contains(&digest) {
            seen.push(digest);
        }
    }
    Ok(seen)
}
