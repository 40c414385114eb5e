//! Communications, detail records, plan counters, associations of
//! unlimited plans, preferred plans and each account's communication count.
//! Times are milliseconds since the epoch, as everywhere in the store.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::{Conn, StoreError, Tx, json_column};

/// A communication as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CommunicationRow {
    pub id: String,
    pub service: String,
    pub account_id: String,
    /// `authorized`, `awaiting-choice`, `completed` or `declined`.
    pub state: String,
    /// The plan in force (the restricted one while awaiting a choice).
    pub plan: String,
    pub rates: Value,
    pub max_duration_secs: Option<i64>,
    pub restriction: Option<String>,
    pub alternate_plan: Option<String>,
    pub alternate_rates: Option<Value>,
    pub alternate_max_secs: Option<i64>,
    pub access_method: String,
    pub access_groups: Value,
    pub destination: String,
    pub region: String,
    pub carrier: String,
    pub attributes: Value,
    pub sequence: i64,
    pub started_at: i64,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

const COMMUNICATION_COLUMNS: &str = "id, service, account_id, state, plan, rates, max_duration_secs, restriction, alternate_plan, alternate_rates, alternate_max_secs, access_method, access_groups, destination, region, carrier, attributes, sequence, started_at, created_at, completed_at";

fn communication_row(r: &Row<'_>) -> Result<CommunicationRow, rusqlite::Error> {
    Ok(CommunicationRow {
        id: r.get(0)?,
        service: r.get(1)?,
        account_id: r.get(2)?,
        state: r.get(3)?,
        plan: r.get(4)?,
        rates: json_column(r.get(5)?)?,
        max_duration_secs: r.get(6)?,
        restriction: r.get(7)?,
        alternate_plan: r.get(8)?,
        alternate_rates: r
            .get::<_, Option<String>>(9)?
            .map(json_column)
            .transpose()?,
        alternate_max_secs: r.get(10)?,
        access_method: r.get(11)?,
        access_groups: json_column(r.get(12)?)?,
        destination: r.get(13)?,
        region: r.get(14)?,
        carrier: r.get(15)?,
        attributes: json_column(r.get(16)?)?,
        sequence: r.get(17)?,
        started_at: r.get(18)?,
        created_at: r.get(19)?,
        completed_at: r.get(20)?,
    })
}

pub fn insert_communication(tx: &Tx<'_>, c: &CommunicationRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(&format!(
            "INSERT INTO communications ({COMMUNICATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ))?
        .execute(params![
            c.id,
            c.service,
            c.account_id,
            c.state,
            c.plan,
            c.rates.to_string(),
            c.max_duration_secs,
            c.restriction,
            c.alternate_plan,
            c.alternate_rates.as_ref().map(Value::to_string),
            c.alternate_max_secs,
            c.access_method,
            c.access_groups.to_string(),
            c.destination,
            c.region,
            c.carrier,
            c.attributes.to_string(),
            c.sequence,
            c.started_at,
            c.created_at,
            c.completed_at,
        ])?;
    Ok(())
}

pub fn get_communication(
    conn: &Conn<'_>,
    id: &str,
) -> Result<Option<CommunicationRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {COMMUNICATION_COLUMNS} FROM communications WHERE id = ?1"
        ))?
        .query_row([id], communication_row)
        .optional()?)
}

/// What authorizing reads of the account that calls, in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerRow {
    pub status: String,
    pub group: String,
    pub billing: String,
    pub pin: super::ledger::PinState,
    pub balance: i64,
    pub last_sequence: i64,
    pub preferred: Option<String>,
}

/// The calling account's status, group, billing, PIN, balance, last
/// sequence number and preferred plan; `None` when there is no such
/// account.
pub fn caller(conn: &Conn<'_>, account_id: &str) -> Result<Option<CallerRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT a.status, a.account_group, a.billing, a.pin_salt, a.pin_hash, a.pin_failures,
                 a.pin_locked_until, coalesce(b.balance, 0), coalesce(s.last_sequence, 0), p.plan
             FROM accounts a
             LEFT JOIN balances b ON b.account_id = a.id
             LEFT JOIN communication_counts s ON s.account_id = a.id
             LEFT JOIN preferred_plans p ON p.account_id = a.id
             WHERE a.id = ?1",
        )?
        .query_row([account_id], |r| {
            Ok(CallerRow {
                status: r.get(0)?,
                group: r.get(1)?,
                billing: r.get(2)?,
                pin: super::ledger::pin_columns(r, 3)?,
                balance: r.get(7)?,
                last_sequence: r.get(8)?,
                preferred: r.get(9)?,
            })
        })
        .optional()?)
}

/// The service and the account of a communication: what deciding who may
/// act on it needs, without the rest of its row.
pub fn owner_of(conn: &Conn<'_>, id: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT service, account_id FROM communications WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Goes on under the alternate plan; `false` when the communication was not
/// awaiting a choice (another caller chose first).
pub fn continue_with_alternate(tx: &Tx<'_>, id: &str) -> Result<bool, StoreError> {
    let changed = tx.raw().prepare_cached(
        "UPDATE communications SET state = 'authorized', plan = alternate_plan, rates = alternate_rates,
             max_duration_secs = alternate_max_secs
         WHERE id = ?1 AND state = 'awaiting-choice' AND alternate_plan IS NOT NULL",
    )?
    .execute([id])?;
    Ok(changed == 1)
}

/// Moves a communication from `from` to `to` (`declined`, `completed`);
/// `false` when it was not in `from`.
pub fn finish_communication(
    tx: &Tx<'_>,
    id: &str,
    from: &str,
    to: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let changed = tx
        .raw()
        .prepare_cached(
            "UPDATE communications SET state = ?3, completed_at = ?4 WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![id, from, to, at])?;
    Ok(changed == 1)
}

/// The number the account's next communication gets, taken.
pub fn take_sequence(tx: &Tx<'_>, account_id: &str) -> Result<i64, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached(
            "INSERT INTO communication_counts (account_id, last_sequence) VALUES (?1, 1)
             ON CONFLICT (account_id) DO UPDATE SET last_sequence = last_sequence + 1
             RETURNING last_sequence",
        )?
        .query_row([account_id], |r| r.get(0))?)
}

/// One account's counters for one plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageRow {
    pub total_uses: i64,
    pub counters_since: Option<i64>,
    pub activated_at: Option<i64>,
    pub paid_until: Option<i64>,
    /// Raised by every use counted and every reset, never lowered: a
    /// decision that read the counters records only if this is unchanged
    /// (a reset back to the same counters still raises it).
    pub changes: i64,
}

pub fn usage(conn: &Conn<'_>, account_id: &str, plan: &str) -> Result<UsageRow, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT total_uses, counters_since, activated_at, paid_until, changes FROM plan_usage WHERE account_id = ?1 AND plan = ?2",
        )?
        .query_row([account_id, plan], |r| {
            Ok(UsageRow {
                total_uses: r.get(0)?,
                counters_since: Some(r.get(1)?),
                activated_at: r.get(2)?,
                paid_until: r.get(3)?,
                changes: r.get(4)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Counts one completed communication; sets the activation and the paid
/// period when given.
pub fn count_use(
    tx: &Tx<'_>,
    account_id: &str,
    plan: &str,
    at: i64,
    activated: bool,
    paid_until: Option<i64>,
) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO plan_usage (account_id, plan, total_uses, counters_since, activated_at, paid_until, changes)
             VALUES (?1, ?2, 1, ?3, CASE WHEN ?4 THEN ?3 END, ?5, 1)
             ON CONFLICT (account_id, plan) DO UPDATE SET total_uses = total_uses + 1, changes = changes + 1,
                 activated_at = coalesce(activated_at, CASE WHEN ?4 THEN ?3 END),
                 paid_until = coalesce(?5, paid_until)",
        )?
        .execute(params![account_id, plan, at, activated, paid_until])?;
    Ok(())
}

/// Read from the index `records_account` alone (migration 14).
const RECENT_USES: &str = "SELECT started_at FROM records
    WHERE account_id = ?1 AND plan = ?2 AND started_at >= ?3 AND answered
    ORDER BY started_at DESC LIMIT ?4";

/// Start times of the account's answered communications under the plan
/// in `[since, ∞)`, newest first, at most `limit`: its uses.
pub fn recent_uses(
    conn: &Conn<'_>,
    account_id: &str,
    plan: &str,
    since: i64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(RECENT_USES)?;
    let rows = stmt.query_map(params![account_id, plan, since, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Communications authorized under the plan and not yet completed, that
/// may still be going on at `at` (started less than their longest
/// duration ago, `cap_ms` for those without one): destination and start,
/// newest first. They hold their place against a plan's limits.
pub fn pending(
    conn: &Conn<'_>,
    account_id: &str,
    plan: &str,
    at: i64,
    cap_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(
        "SELECT destination, started_at FROM communications
         WHERE account_id = ?1 AND plan = ?2 AND state = 'authorized'
           AND started_at + coalesce(max_duration_secs * 1000, ?4) > ?3
         ORDER BY started_at DESC, id",
    )?;
    let rows = stmt.query_map(params![account_id, plan, at, cap_ms], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A plan's counters for an account exist from the first time it is used
/// or associates a destination (so time resets have a start).
pub fn start_usage(tx: &Tx<'_>, account_id: &str, plan: &str, at: i64) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO plan_usage (account_id, plan, total_uses, counters_since) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (account_id, plan) DO NOTHING",
        )?
        .execute(params![account_id, plan, at])?;
    Ok(())
}

/// A destination associated with an unlimited plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationRow {
    pub plan: String,
    pub destination: String,
    pub associated_at: i64,
    pub uses: i64,
    pub last_used: Option<i64>,
    pub expires_at: Option<i64>,
}

fn association_row(r: &Row<'_>) -> Result<AssociationRow, rusqlite::Error> {
    Ok(AssociationRow {
        plan: r.get(0)?,
        destination: r.get(1)?,
        associated_at: r.get(2)?,
        uses: r.get(3)?,
        last_used: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

/// The account's associations with one plan (all plans when `None`) that
/// have not lapsed at `now`, oldest first.
pub fn associations(
    conn: &Conn<'_>,
    account_id: &str,
    plan: Option<&str>,
    now: i64,
) -> Result<Vec<AssociationRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(
        "SELECT plan, destination, associated_at, uses, last_used, expires_at FROM associations
         WHERE account_id = ?1 AND (?2 IS NULL OR plan = ?2) AND (expires_at IS NULL OR expires_at > ?3)
         ORDER BY plan, associated_at, destination",
    )?;
    let rows = stmt.query_map(params![account_id, plan, now], association_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Associates a destination (a no-op when it already is).
pub fn associate(
    tx: &Tx<'_>,
    account_id: &str,
    plan: &str,
    destination: &str,
    at: i64,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO associations (account_id, plan, destination, associated_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (account_id, plan, destination) DO UPDATE SET
                 associated_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?4 THEN ?4 ELSE associated_at END,
                 uses = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?4 THEN 0 ELSE uses END,
                 last_used = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?4 THEN NULL ELSE last_used END,
                 expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?4 THEN ?5 ELSE expires_at END",
        )?
        .execute(params![account_id, plan, destination, at, expires_at])?;
    Ok(())
}

/// Counts a completed communication to an associated destination.
pub fn use_association(
    tx: &Tx<'_>,
    account_id: &str,
    plan: &str,
    destination: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "UPDATE associations SET uses = uses + 1, last_used = ?4
             WHERE account_id = ?1 AND plan = ?2 AND destination = ?3",
        )?
        .execute(params![account_id, plan, destination, at])?;
    Ok(())
}

/// Applies a reset: drops the destinations given (and the lapsed ones), and
/// when asked sets the counters back to zero from `at`.
pub fn reset(
    tx: &Tx<'_>,
    account_id: &str,
    plan: &str,
    dissociate: &[String],
    reset_counters: bool,
    at: i64,
) -> Result<(), StoreError> {
    let conn = tx.raw();
    let mut drop = conn.prepare_cached(
        "DELETE FROM associations WHERE account_id = ?1 AND plan = ?2 AND destination = ?3",
    )?;
    for destination in dissociate {
        drop.execute(params![account_id, plan, destination])?;
    }
    conn.prepare_cached(
        "DELETE FROM associations WHERE account_id = ?1 AND plan = ?2 AND expires_at IS NOT NULL AND expires_at <= ?3",
    )?
    .execute(params![account_id, plan, at])?;
    if reset_counters {
        conn.prepare_cached(
            "INSERT INTO plan_usage (account_id, plan, total_uses, counters_since, changes) VALUES (?1, ?2, 0, ?3, 1)
             ON CONFLICT (account_id, plan) DO UPDATE SET total_uses = 0, counters_since = ?3, changes = changes + 1",
        )?
        .execute(params![account_id, plan, at])?;
    }
    Ok(())
}

/// Whether any account has counters or associations on any plan.
pub fn any_usage(conn: &Conn<'_>) -> Result<bool, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM plan_usage) OR EXISTS (SELECT 1 FROM associations)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// Accounts with associations or counters on a plan: what the reset timer visits.
pub fn accounts_on_plan(
    conn: &Conn<'_>,
    plan: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(
        "SELECT account_id FROM plan_usage WHERE plan = ?1 AND account_id > ?2
         UNION SELECT account_id FROM associations WHERE plan = ?1 AND account_id > ?2
         ORDER BY 1 LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![plan, after, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A preferred plan and who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferredRow {
    pub plan: String,
    pub set_by: String,
    pub set_at: i64,
}

pub fn preferred(conn: &Conn<'_>, account_id: &str) -> Result<Option<PreferredRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT plan, set_by, set_at FROM preferred_plans WHERE account_id = ?1")?
        .query_row([account_id], |r| {
            Ok(PreferredRow {
                plan: r.get(0)?,
                set_by: r.get(1)?,
                set_at: r.get(2)?,
            })
        })
        .optional()?)
}

/// Sets the preferred plan, or clears it with `None`.
pub fn set_preferred(
    tx: &Tx<'_>,
    account_id: &str,
    preferred: Option<&PreferredRow>,
) -> Result<(), StoreError> {
    match preferred {
        None => {
            tx.raw()
                .prepare_cached("DELETE FROM preferred_plans WHERE account_id = ?1")?
                .execute([account_id])?;
        }
        Some(p) => {
            tx.raw()
                .prepare_cached(
                    "INSERT INTO preferred_plans (account_id, plan, set_by, set_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (account_id) DO UPDATE SET plan = ?2, set_by = ?3, set_at = ?4",
                )?
                .execute(params![account_id, p.plan, p.set_by, p.set_at])?;
        }
    }
    Ok(())
}

/// A detail record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub id: i64,
    pub communication_id: String,
    pub service: String,
    pub account_id: String,
    pub plan: String,
    pub access_method: String,
    pub destination: String,
    pub region: String,
    pub started_at: i64,
    pub duration_secs: i64,
    pub answered: bool,
    pub lines: Value,
    pub total: i64,
    pub charged: i64,
    pub uncovered: i64,
    pub balance_after: i64,
    pub associated: bool,
    pub created_at: i64,
}

const RECORD_COLUMNS: &str = "id, communication_id, service, account_id, plan, access_method, destination, region, started_at, duration_secs, answered, lines, total, charged, uncovered, balance_after, associated, created_at";

fn record_row(r: &Row<'_>) -> Result<RecordRow, rusqlite::Error> {
    Ok(RecordRow {
        id: r.get(0)?,
        communication_id: r.get(1)?,
        service: r.get(2)?,
        account_id: r.get(3)?,
        plan: r.get(4)?,
        access_method: r.get(5)?,
        destination: r.get(6)?,
        region: r.get(7)?,
        started_at: r.get(8)?,
        duration_secs: r.get(9)?,
        answered: r.get(10)?,
        lines: json_column(r.get(11)?)?,
        total: r.get(12)?,
        charged: r.get(13)?,
        uncovered: r.get(14)?,
        balance_after: r.get(15)?,
        associated: r.get(16)?,
        created_at: r.get(17)?,
    })
}

/// Writes a record (its `id` is ignored) and returns its id.
pub fn insert_record(tx: &Tx<'_>, r: &RecordRow) -> Result<i64, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached(
            "INSERT INTO records (communication_id, service, account_id, plan, access_method, destination, region, started_at,
                 duration_secs, answered, lines, total, charged, uncovered, balance_after, associated, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) RETURNING id",
        )?
        .query_row(
            params![
                r.communication_id,
                r.service,
                r.account_id,
                r.plan,
                r.access_method,
                r.destination,
                r.region,
                r.started_at,
                r.duration_secs,
                r.answered,
                r.lines.to_string(),
                r.total,
                r.charged,
                r.uncovered,
                r.balance_after,
                r.associated,
                r.created_at,
            ],
            |row| row.get(0),
        )?)
}

pub fn record_of(conn: &Conn<'_>, communication_id: &str) -> Result<Option<RecordRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE communication_id = ?1"
        ))?
        .query_row([communication_id], record_row)
        .optional()?)
}

/// Which records a listing wants.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter<'a> {
    pub account: Option<&'a str>,
    /// Start times in `[from, to)`, ms.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Records with a larger id only (the cursor).
    pub after: Option<i64>,
    pub limit: u32,
}

/// The SQL of a page of records under `f`, with only the conditions it
/// sets (`?1 IS NULL OR account_id = ?1` would defeat the index): one
/// account's records, and its time range, come through the account's index
/// and are sorted by id, so a page costs that account's records in the
/// range, not the whole table.
fn records_page_sql(f: &RecordFilter<'_>) -> String {
    let given = |set: bool, condition: &'static str, unset: &'static str| {
        if set { condition } else { unset }
    };
    let account = given(f.account.is_some(), "account_id = ?1", "?1 IS NULL");
    let from = given(f.from.is_some(), "started_at >= ?2", "?2 IS NULL");
    let to = given(f.to.is_some(), "started_at < ?3", "?3 IS NULL");
    format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE {account} AND {from} AND {to} AND id > ?4
         ORDER BY id LIMIT ?5"
    )
}

/// Records in id order (the order they were written).
pub fn page_records(conn: &Conn<'_>, f: &RecordFilter<'_>) -> Result<Vec<RecordRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&records_page_sql(f))?;
    let rows = stmt.query_map(
        params![f.account, f.from, f.to, f.after.unwrap_or(0), f.limit],
        record_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreError};

    /// The caller's one query reads what the separate reads did, for an
    /// account nothing happened to yet and for one with a balance, a PIN,
    /// communications and a preferred plan.
    #[test]
    fn the_caller_is_read_whole_in_one_query() {
        use crate::store::entitlement::{AccountRow, put_account};
        use crate::store::ledger::{self, Kind, NewMovement};
        let store = Store::in_memory().unwrap();
        let row = |id: &str| AccountRow {
            group: "g".into(),
            ..AccountRow::for_test(id, "postpaid")
        };
        store
            .write(|tx| {
                put_account(tx, &row("new"))?;
                put_account(tx, &row("used"))?;
                ledger::set_pin(tx, "used", b"salt", b"hash")?;
                ledger::post(
                    tx,
                    &NewMovement {
                        account_id: "used",
                        kind: Kind::Topup,
                        amount: 500,
                        uncovered: 0,
                        reference: "t",
                        at: 1,
                        detail: None,
                    },
                )?;
                super::take_sequence(tx, "used")?;
                super::take_sequence(tx, "used")?;
                let preferred = super::PreferredRow {
                    plan: "friday".into(),
                    set_by: "subscriber".into(),
                    set_at: 1,
                };
                super::set_preferred(tx, "used", Some(&preferred))
            })
            .unwrap();
        let read = |id: &str| store.read(|c| super::caller(c, id)).unwrap();
        assert_eq!(read("nobody"), None);
        let new = read("new").unwrap();
        assert_eq!(
            (new.balance, new.last_sequence, new.preferred, new.pin.hash),
            (0, 0, None, None)
        );
        assert_eq!(
            (
                new.status.as_str(),
                new.group.as_str(),
                new.billing.as_str()
            ),
            ("active", "g", "postpaid")
        );
        let used = read("used").unwrap();
        assert_eq!(
            (used.balance, used.last_sequence, used.preferred.as_deref()),
            (500, 2, Some("friday"))
        );
        assert_eq!(
            used.pin,
            store
                .read(|c| ledger::pin_state(c, "used"))
                .unwrap()
                .unwrap()
        );
        assert_eq!(used.pin.hash.as_deref(), Some(&b"hash"[..]));
    }

    /// An authorization records only if the counters it read are
    /// unchanged: a use counted and then a reset back to the very same
    /// counters (a reset at the time the counters started) must still
    /// show as a change.
    #[test]
    fn a_use_then_a_reset_to_the_same_counters_is_still_a_change() {
        let store = Store::in_memory().unwrap();
        let write = |f: &dyn Fn(&crate::store::Tx<'_>) -> Result<(), StoreError>| {
            store.write(|tx| f(tx)).unwrap();
        };
        let read = || store.read(|c| super::usage(c, "a", "p")).unwrap();
        write(&|tx| super::reset(tx, "a", "p", &[], true, 1_000));
        let decided_on = read();
        write(&|tx| super::count_use(tx, "a", "p", 2_000, false, None));
        write(&|tx| super::reset(tx, "a", "p", &[], true, 1_000));
        let now = read();
        assert_eq!(
            (now.total_uses, now.counters_since),
            (decided_on.total_uses, decided_on.counters_since)
        );
        assert_ne!(now, decided_on);
    }

    /// The steps of SQLite's plan for `sql` on a migrated database.
    fn query_plan(sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("plan.db")).unwrap();
        store
            .read(|c| {
                let mut stmt = c.raw().prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = stmt.query_map(params, |r| r.get::<_, String>(3))?;
                Ok::<_, crate::store::StoreError>(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap()
    }

    /// One account's records are listed through the account's index, not
    /// by reading every record.
    #[test]
    fn an_accounts_records_are_found_through_its_index() {
        let filter = super::RecordFilter {
            account: Some("a"),
            from: Some(0),
            to: None,
            after: None,
            limit: 100,
        };
        let plan = query_plan(
            &super::records_page_sql(&filter),
            rusqlite::params!["a", 0, None::<i64>, 0, 100],
        );
        assert!(
            plan.iter()
                .any(|step| step
                    .contains("USING INDEX records_account (account_id=? AND started_at>?)")),
            "{plan:?}"
        );
    }

    /// An authorization reads up to 1,000 uses of each plan it judges:
    /// from the index alone, never one table row per use.
    #[test]
    fn recent_uses_are_read_from_the_index_alone() {
        let plan = query_plan(super::RECENT_USES, rusqlite::params!["a", "p", "0", "1000"]);
        assert!(
            plan.iter()
                .any(|step| step.contains("USING COVERING INDEX records_account")),
            "{plan:?}"
        );
    }
}
