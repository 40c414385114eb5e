//! API tokens: who may call the internal API. Only each token's SHA-256 is
//! stored; `auth` makes, checks and revokes tokens through these queries.

use rusqlite::{OptionalExtension, Row, params};

use super::{Conn, StoreError, Tx};

/// A stored token, without the token itself (only its hash is kept).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The services a `service` token acts for.
    pub services: Vec<String>,
    /// SHA-256 of the token, hex.
    pub hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, name, role, services, hash, created_at, last_used_at, revoked_at";

fn row(r: &Row<'_>) -> Result<TokenRow, rusqlite::Error> {
    let services: String = r.get(3)?;
    let services = serde_json::from_str(&services).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        services,
        hash: r.get(4)?,
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

/// Whether a token that is not revoked is named `name`.
pub fn live_name_taken(conn: &Conn<'_>, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .raw()
        .query_row(
            "SELECT 1 FROM api_tokens WHERE name = ?1 AND revoked_at IS NULL",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn insert(tx: &Tx<'_>, t: &TokenRow) -> Result<(), StoreError> {
    let services = serde_json::to_string(&t.services)
        .map_err(|e| StoreError::Corrupt(format!("token services: {e}")))?;
    tx.raw().execute(
        &format!("INSERT INTO api_tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            t.id,
            t.name,
            t.role,
            services,
            t.hash,
            t.created_at,
            t.last_used_at,
            t.revoked_at
        ],
    )?;
    Ok(())
}

/// The token, not revoked, whose hash is `hash`.
pub fn live_by_hash(conn: &Conn<'_>, hash: &str) -> Result<Option<TokenRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL"
    ))?;
    Ok(stmt.query_row([hash], row).optional()?)
}

/// Every token, revoked ones too, oldest first.
pub fn list(conn: &Conn<'_>) -> Result<Vec<TokenRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether an operator token was ever made (revoked or not).
pub fn any_operator(conn: &Conn<'_>) -> Result<bool, StoreError> {
    Ok(conn
        .raw()
        .query_row(
            "SELECT 1 FROM api_tokens WHERE role = 'operator' LIMIT 1",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Revokes the live token with id `key`, or else the live one named `key`:
/// the token revoked, `None` when no live token has that id or name.
pub fn revoke(tx: &Tx<'_>, key: &str, now: i64) -> Result<Option<TokenRow>, StoreError> {
    let found = tx
        .raw()
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM api_tokens WHERE revoked_at IS NULL AND (id = ?1 OR name = ?1)
                 ORDER BY id = ?1 DESC LIMIT 1"
            ),
            [key],
            row,
        )
        .optional()?;
    let Some(mut token) = found else {
        return Ok(None);
    };
    tx.raw().execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1",
        params![token.id, now],
    )?;
    token.revoked_at = Some(now);
    Ok(Some(token))
}

/// Records that the token `id` was used at `now`.
pub fn touch(tx: &Tx<'_>, id: &str, now: i64) -> Result<(), StoreError> {
    tx.raw().execute(
        "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}
