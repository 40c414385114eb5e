//! Provisioning's tables (migration 13): organizations and the services
//! they own, users, offers and their invitees, permissions, the directory,
//! sign-ins and form tokens. Times are milliseconds since the epoch.
//!
//! Secrets (passwords, link keys, sign-in and form tokens) arrive here
//! already hashed; nothing in this file sees one.

use rusqlite::{OptionalExtension, Row, params};

use super::{Conn, StoreError, Tx};

// ---------------------------------------------------------------------------
// Organizations and users.

#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

pub fn insert_organization(tx: &Tx<'_>, o: &OrganizationRow) -> Result<bool, StoreError> {
    let n = tx
        .raw()
        .prepare_cached(
            "INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![o.id, o.name, o.created_at])?;
    Ok(n == 1)
}

pub fn get_organization(conn: &Conn<'_>, id: &str) -> Result<Option<OrganizationRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT id, name, created_at FROM organizations WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(OrganizationRow {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
            })
        })
        .optional()?)
}

pub fn add_owned_service(tx: &Tx<'_>, organization: &str, service: &str) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO organization_services (organization_id, service) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![organization, service])?;
    Ok(())
}

/// The services `organization` owns, by name.
pub fn owned_services(conn: &Conn<'_>, organization: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(
        "SELECT service FROM organization_services WHERE organization_id = ?1 ORDER BY service",
    )?;
    let rows = stmt.query_map([organization], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether `organization` owns `service`.
pub fn owns(conn: &Conn<'_>, organization: &str, service: &str) -> Result<bool, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT 1 FROM organization_services WHERE organization_id = ?1 AND service = ?2",
        )?
        .query_row([organization, service], |_| Ok(()))
        .optional()?
        .is_some())
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: String,
    pub organization_id: String,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub admin: bool,
    /// Argon2id, as a PHC string.
    pub password_hash: String,
    /// Wrong passwords since the last right one (or the last lock).
    pub failed_attempts: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

const USER_COLUMNS: &str = "id, organization_id, email, name, phone, admin, password_hash, failed_attempts, locked_until, created_at";

fn user_row(r: &Row<'_>) -> Result<UserRow, rusqlite::Error> {
    Ok(UserRow {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        phone: r.get(4)?,
        admin: r.get(5)?,
        password_hash: r.get(6)?,
        failed_attempts: r.get(7)?,
        locked_until: r.get(8)?,
        created_at: r.get(9)?,
    })
}

/// Inserts `u`; false (nothing written) when its id is taken.
pub fn insert_user(tx: &Tx<'_>, u: &UserRow) -> Result<bool, StoreError> {
    let n = tx
        .raw()
        .prepare_cached(&format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO NOTHING"
        ))?
        .execute(params![
            u.id,
            u.organization_id,
            u.email,
            u.name,
            u.phone,
            u.admin,
            u.password_hash,
            u.failed_attempts,
            u.locked_until,
            u.created_at,
        ])?;
    Ok(n == 1)
}

pub fn get_user(conn: &Conn<'_>, id: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_row)
        .optional()?)
}

/// Counts one more wrong password; the count since the last right one.
pub fn count_failure(tx: &Tx<'_>, id: &str) -> Result<i64, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached(
            "UPDATE users SET failed_attempts = failed_attempts + 1 WHERE id = ?1
             RETURNING failed_attempts",
        )?
        .query_row([id], |r| r.get(0))?)
}

/// Locks the user until `until` and starts the count again.
pub fn lock_user(tx: &Tx<'_>, id: &str, until: i64) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached("UPDATE users SET failed_attempts = 0, locked_until = ?2 WHERE id = ?1")?
        .execute(params![id, until])?;
    Ok(())
}

/// A right password: no count, no lock.
pub fn clear_failures(tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached("UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Permissions.

#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRow {
    pub id: i64,
    pub service: String,
    pub grantor_id: String,
    pub grantee_id: String,
    pub may_offer: bool,
    pub granted_at: i64,
    pub offer_id: String,
    pub invitee_id: String,
    /// The grantor's own permission, when they offered onwards.
    pub via_permission: Option<i64>,
}

const PERMISSION_COLUMNS: &str = "id, service, grantor_id, grantee_id, may_offer, granted_at, offer_id, invitee_id, via_permission";

fn permission_row(r: &Row<'_>) -> Result<PermissionRow, rusqlite::Error> {
    Ok(PermissionRow {
        id: r.get(0)?,
        service: r.get(1)?,
        grantor_id: r.get(2)?,
        grantee_id: r.get(3)?,
        may_offer: r.get(4)?,
        granted_at: r.get(5)?,
        offer_id: r.get(6)?,
        invitee_id: r.get(7)?,
        via_permission: r.get(8)?,
    })
}

/// Records a permission; `None` when the invitation has one already (the
/// first accept wins, a second records nothing).
pub fn insert_permission(tx: &Tx<'_>, p: &PermissionRow) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached(
            "INSERT INTO permissions (service, grantor_id, grantee_id, may_offer, granted_at,
                 offer_id, invitee_id, via_permission)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (invitee_id) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            params![
                p.service,
                p.grantor_id,
                p.grantee_id,
                p.may_offer,
                p.granted_at,
                p.offer_id,
                p.invitee_id,
                p.via_permission,
            ],
            |r| r.get(0),
        )
        .optional()?)
}

/// The permission recorded by the acceptance of `invitee_id`.
pub fn permission_of_invitee(
    conn: &Conn<'_>,
    invitee_id: &str,
) -> Result<Option<PermissionRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {PERMISSION_COLUMNS} FROM permissions WHERE invitee_id = ?1"
        ))?
        .query_row([invitee_id], permission_row)
        .optional()?)
}

/// `grantee`'s permissions for `service`, oldest first.
pub fn permissions_held(
    conn: &Conn<'_>,
    grantee: &str,
    service: Option<&str>,
) -> Result<Vec<PermissionRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {PERMISSION_COLUMNS} FROM permissions
         WHERE grantee_id = ?1 AND (?2 IS NULL OR service = ?2) ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![grantee, service], permission_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Permissions by service and/or grantee, and (when given) only those
/// `party` granted or holds; oldest first, at most `limit`.
pub fn list_permissions(
    conn: &Conn<'_>,
    service: Option<&str>,
    grantee: Option<&str>,
    party: Option<&str>,
    limit: u32,
) -> Result<Vec<PermissionRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {PERMISSION_COLUMNS} FROM permissions
         WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR grantee_id = ?2)
           AND (?3 IS NULL OR grantor_id = ?3 OR grantee_id = ?3)
         ORDER BY id LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![service, grantee, party, limit], permission_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ---------------------------------------------------------------------------
// Offers and invitees.

#[derive(Debug, Clone, PartialEq)]
pub struct OfferRow {
    pub id: String,
    pub service: String,
    pub organization_id: String,
    pub provider_id: String,
    pub description: String,
    /// Whether those who accept may offer it onwards.
    pub onwards: bool,
    /// The provider's permission it is offered under (none for an
    /// administrator of the owning organization).
    pub via_permission: Option<i64>,
    pub expires_at: i64,
    pub expiry_chosen: bool,
    /// When the expiry flow ran.
    pub expired_at: Option<i64>,
    pub created_at: i64,
}

const OFFER_COLUMNS: &str = "id, service, organization_id, provider_id, description, onwards, via_permission, expires_at, expiry_chosen, expired_at, created_at";

fn offer_row(r: &Row<'_>) -> Result<OfferRow, rusqlite::Error> {
    Ok(OfferRow {
        id: r.get(0)?,
        service: r.get(1)?,
        organization_id: r.get(2)?,
        provider_id: r.get(3)?,
        description: r.get(4)?,
        onwards: r.get(5)?,
        via_permission: r.get(6)?,
        expires_at: r.get(7)?,
        expiry_chosen: r.get(8)?,
        expired_at: r.get(9)?,
        created_at: r.get(10)?,
    })
}

pub fn insert_offer(tx: &Tx<'_>, o: &OfferRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(&format!(
            "INSERT INTO offers ({OFFER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))?
        .execute(params![
            o.id,
            o.service,
            o.organization_id,
            o.provider_id,
            o.description,
            o.onwards,
            o.via_permission,
            o.expires_at,
            o.expiry_chosen,
            o.expired_at,
            o.created_at,
        ])?;
    Ok(())
}

pub fn get_offer(conn: &Conn<'_>, id: &str) -> Result<Option<OfferRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!("SELECT {OFFER_COLUMNS} FROM offers WHERE id = ?1"))?
        .query_row([id], offer_row)
        .optional()?)
}

/// The offers `provider` made, newest first, at most `limit`.
pub fn offers_by(conn: &Conn<'_>, provider: &str, limit: u32) -> Result<Vec<OfferRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE provider_id = ?1
         ORDER BY created_at DESC, id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![provider, limit], offer_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks the offer expired (once); false when it was already.
pub fn mark_expired(tx: &Tx<'_>, id: &str, now: i64) -> Result<bool, StoreError> {
    let n = tx
        .raw()
        .prepare_cached("UPDATE offers SET expired_at = ?2 WHERE id = ?1 AND expired_at IS NULL")?
        .execute(params![id, now])?;
    Ok(n == 1)
}

#[derive(Debug, Clone, PartialEq)]
pub struct InviteeRow {
    pub id: String,
    pub offer_id: String,
    pub email: String,
    pub name: Option<String>,
    pub organization: Option<String>,
    pub phone: Option<String>,
    /// SHA-256 of the link's key.
    pub key_hash: String,
    pub created_at: i64,
    /// The user who registered (or signed in) through this invitation.
    pub user_id: Option<String>,
    pub registered_at: Option<i64>,
    pub accepted_at: Option<i64>,
    pub declined_at: Option<i64>,
}

const INVITEE_COLUMNS: &str = "id, offer_id, email, name, organization, phone, key_hash, created_at, user_id, registered_at, accepted_at, declined_at";

fn invitee_row(r: &Row<'_>) -> Result<InviteeRow, rusqlite::Error> {
    Ok(InviteeRow {
        id: r.get(0)?,
        offer_id: r.get(1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        organization: r.get(4)?,
        phone: r.get(5)?,
        key_hash: r.get(6)?,
        created_at: r.get(7)?,
        user_id: r.get(8)?,
        registered_at: r.get(9)?,
        accepted_at: r.get(10)?,
        declined_at: r.get(11)?,
    })
}

pub fn insert_invitee(tx: &Tx<'_>, i: &InviteeRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(&format!(
            "INSERT INTO invitees ({INVITEE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))?
        .execute(params![
            i.id,
            i.offer_id,
            i.email,
            i.name,
            i.organization,
            i.phone,
            i.key_hash,
            i.created_at,
            i.user_id,
            i.registered_at,
            i.accepted_at,
            i.declined_at,
        ])?;
    Ok(())
}

pub fn get_invitee(conn: &Conn<'_>, id: &str) -> Result<Option<InviteeRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {INVITEE_COLUMNS} FROM invitees WHERE id = ?1"
        ))?
        .query_row([id], invitee_row)
        .optional()?)
}

/// An offer's invitees in the order they were added.
pub fn invitees_of(conn: &Conn<'_>, offer_id: &str) -> Result<Vec<InviteeRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {INVITEE_COLUMNS} FROM invitees WHERE offer_id = ?1 ORDER BY created_at, rowid"
    ))?;
    let rows = stmt.query_map([offer_id], invitee_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The invitations `user` registered or signed in through.
pub fn invitations_of_user(conn: &Conn<'_>, user: &str) -> Result<Vec<InviteeRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {INVITEE_COLUMNS} FROM invitees WHERE user_id = ?1 ORDER BY created_at, rowid"
    ))?;
    let rows = stmt.query_map([user], invitee_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Links the invitee to the user who registered or signed in through it,
/// once: false when it is linked already (to anyone).
pub fn set_registered(tx: &Tx<'_>, id: &str, user: &str, now: i64) -> Result<bool, StoreError> {
    let n = tx
        .raw()
        .prepare_cached(
            "UPDATE invitees SET user_id = ?2, registered_at = ?3
             WHERE id = ?1 AND user_id IS NULL",
        )?
        .execute(params![id, user, now])?;
    Ok(n == 1)
}

/// Records the answer to the terms, once: false when there is one already.
pub fn set_answer(tx: &Tx<'_>, id: &str, accepted: bool, now: i64) -> Result<bool, StoreError> {
    let sql = if accepted {
        "UPDATE invitees SET accepted_at = ?2
         WHERE id = ?1 AND accepted_at IS NULL AND declined_at IS NULL"
    } else {
        "UPDATE invitees SET declined_at = ?2
         WHERE id = ?1 AND accepted_at IS NULL AND declined_at IS NULL"
    };
    let n = tx.raw().prepare_cached(sql)?.execute(params![id, now])?;
    Ok(n == 1)
}

// ---------------------------------------------------------------------------
// The directory.

#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryRow {
    pub service: String,
    pub usable: bool,
    /// Why the user sees it: `owner`, `permission` or `invited`.
    pub why: String,
    pub updated_at: i64,
}

pub fn directory(conn: &Conn<'_>, user: &str) -> Result<Vec<DirectoryRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(
        "SELECT service, usable, why, updated_at FROM directory WHERE user_id = ?1 ORDER BY service",
    )?;
    let rows = stmt.query_map([user], |r| {
        Ok(DirectoryRow {
            service: r.get(0)?,
            usable: r.get(1)?,
            why: r.get(2)?,
            updated_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces `user`'s directory with `rows`, keeping the time of entries
/// that did not change.
pub fn put_directory(tx: &Tx<'_>, user: &str, rows: &[DirectoryRow]) -> Result<(), StoreError> {
    let old = directory(tx, user)?;
    tx.raw()
        .prepare_cached("DELETE FROM directory WHERE user_id = ?1")?
        .execute([user])?;
    let mut insert = tx.raw().prepare_cached(
        "INSERT INTO directory (user_id, service, usable, why, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for row in rows {
        let updated_at = old
            .iter()
            .find(|o| o.service == row.service && o.usable == row.usable && o.why == row.why)
            .map_or(row.updated_at, |o| o.updated_at);
        insert.execute(params![user, row.service, row.usable, row.why, updated_at])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Sign-ins and form tokens.

#[derive(Debug, Clone, PartialEq)]
pub struct UserSessionRow {
    /// SHA-256 of the cookie or token.
    pub hash: String,
    /// `site` (a browser's cookie) or `api` (a bearer token).
    pub kind: String,
    pub user_id: Option<String>,
    /// The invitation whose email this browser confirmed.
    pub invitee_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert_session(tx: &Tx<'_>, s: &UserSessionRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO user_sessions (hash, kind, user_id, invitee_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            s.hash,
            s.kind,
            s.user_id,
            s.invitee_id,
            s.created_at,
            s.expires_at
        ])?;
    Ok(())
}

/// The sign-in whose secret hashes to `hash`, unless it expired by `now`.
pub fn get_session(
    conn: &Conn<'_>,
    hash: &str,
    now: i64,
) -> Result<Option<UserSessionRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT hash, kind, user_id, invitee_id, created_at, expires_at FROM user_sessions
             WHERE hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![hash, now], |r| {
            Ok(UserSessionRow {
                hash: r.get(0)?,
                kind: r.get(1)?,
                user_id: r.get(2)?,
                invitee_id: r.get(3)?,
                created_at: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })
        .optional()?)
}

/// Sets who a browser's session is signed in as and which invitation it
/// confirmed.
pub fn update_session(
    tx: &Tx<'_>,
    hash: &str,
    user_id: Option<&str>,
    invitee_id: Option<&str>,
) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached("UPDATE user_sessions SET user_id = ?2, invitee_id = ?3 WHERE hash = ?1")?
        .execute(params![hash, user_id, invitee_id])?;
    Ok(())
}

pub fn delete_session(tx: &Tx<'_>, hash: &str) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached("DELETE FROM user_sessions WHERE hash = ?1")?
        .execute([hash])?;
    tx.raw()
        .prepare_cached("DELETE FROM form_tokens WHERE session_hash = ?1")?
        .execute([hash])?;
    Ok(())
}

/// Deletes every API token of `user`; how many.
pub fn delete_api_tokens(tx: &Tx<'_>, user: &str) -> Result<usize, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached("DELETE FROM user_sessions WHERE kind = 'api' AND user_id = ?1")?
        .execute([user])?)
}

pub fn insert_form_token(
    tx: &Tx<'_>,
    hash: &str,
    session_hash: &str,
    form: &str,
    subject: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO form_tokens (hash, session_hash, form, subject, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![hash, session_hash, form, subject, expires_at])?;
    Ok(())
}

/// What a form token was issued for.
#[derive(Debug, Clone, PartialEq)]
pub struct FormTokenRow {
    pub session_hash: String,
    pub form: String,
    pub subject: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub fn get_form_token(conn: &Conn<'_>, hash: &str) -> Result<Option<FormTokenRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT session_hash, form, subject, expires_at, used_at FROM form_tokens WHERE hash = ?1",
        )?
        .query_row([hash], |r| {
            Ok(FormTokenRow {
                session_hash: r.get(0)?,
                form: r.get(1)?,
                subject: r.get(2)?,
                expires_at: r.get(3)?,
                used_at: r.get(4)?,
            })
        })
        .optional()?)
}

/// Uses the token, once: false when it was used already.
pub fn use_form_token(tx: &Tx<'_>, hash: &str, now: i64) -> Result<bool, StoreError> {
    let n = tx
        .raw()
        .prepare_cached("UPDATE form_tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL")?
        .execute(params![hash, now])?;
    Ok(n == 1)
}

/// Rows in one of provisioning's tables (and the flows), for tests.
#[cfg(test)]
pub(crate) fn count(conn: &Conn<'_>, table: &str) -> Result<i64, StoreError> {
    const TABLES: [&str; 6] = [
        "offers",
        "flows",
        "users",
        "permissions",
        "invitees",
        "organizations",
    ];
    let table = TABLES
        .into_iter()
        .find(|t| *t == table)
        .ok_or_else(|| StoreError::Corrupt(format!("not a table to count: {table}")))?;
    Ok(conn
        .raw()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
}
