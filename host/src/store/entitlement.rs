//! Accounts, held requests, the decision log and reconciliation records.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::{Conn, StoreError, Tx};

/// An account as stored; `contact` and `attributes` are JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: String,
    pub status: String,
    pub paid_up: bool,
    pub tier: String,
    pub contract_end: Option<i64>,
    pub contact: Option<Value>,
    pub attributes: Value,
    pub updated_at: i64,
    /// Bumped by every change ([`put_account`] ignores the value given):
    /// a check records its decision only if it is what the check read.
    pub version: i64,
    /// The account's group (plans may depend on it); `""` for none.
    pub group: String,
    /// `prepaid` or `postpaid` (`crate::ledger::Billing`).
    pub billing: String,
    /// Whether a PIN is set ([`put_account`] ignores it: the PIN is set by
    /// `store::ledger::set_pin` and kept when the account is replaced).
    pub has_pin: bool,
}

#[cfg(test)]
impl AccountRow {
    /// An active, paid-up account with no group, contact or PIN, billed
    /// `billing` (`prepaid` or `postpaid`): the tests' usual account.
    pub fn for_test(id: &str, billing: &str) -> AccountRow {
        AccountRow {
            id: id.into(),
            status: "active".into(),
            paid_up: true,
            tier: String::new(),
            contract_end: None,
            contact: None,
            attributes: serde_json::json!({}),
            updated_at: 1,
            version: 0,
            group: String::new(),
            billing: billing.into(),
            has_pin: false,
        }
    }
}

/// Creates or replaces the account; `true` when it is new. Its PIN, its
/// balance and its ledger are kept.
pub fn put_account(tx: &Tx<'_>, a: &AccountRow) -> Result<bool, StoreError> {
    let existed = account_version(tx, &a.id)?.is_some();
    tx.raw().prepare_cached(
        "INSERT INTO accounts (id, status, paid_up, tier, contract_end, contact, attributes, updated_at, version, account_group, billing)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET status = ?2, paid_up = ?3, tier = ?4, contract_end = ?5, contact = ?6, attributes = ?7, updated_at = ?8,
             version = accounts.version + 1, account_group = ?10, billing = ?11",
    )?
    .execute(params![a.id, a.status, a.paid_up, a.tier, a.contract_end, a.contact.as_ref().map(Value::to_string), a.attributes.to_string(), a.updated_at, first_version(), a.group, a.billing])?;
    Ok(!existed)
}

/// The version a new row starts at: random, so that a row deleted and made
/// again (the pruner, a lapse) never repeats a version a check read before.
fn first_version() -> i64 {
    let mut bytes = [0u8; 8];
    super::random_bytes(&mut bytes);
    // Positive, with room to count up.
    (i64::from_le_bytes(bytes) & (i64::MAX >> 1)).max(1)
}

/// The account's version, `None` when there is no such account.
pub fn account_version(conn: &Conn<'_>, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT version FROM accounts WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// The request's version, `None` when there is no such request.
pub fn request_version(conn: &Conn<'_>, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT version FROM requests WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

pub fn get_account(conn: &Conn<'_>, id: &str) -> Result<Option<AccountRow>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT id, status, paid_up, tier, contract_end, contact, attributes, updated_at, version, account_group, billing,
             pin_hash IS NOT NULL
         FROM accounts WHERE id = ?1",
    )?;
    Ok(stmt
        .query_row([id], |row| {
            Ok(AccountRow {
                id: row.get(0)?,
                status: row.get(1)?,
                paid_up: row.get(2)?,
                tier: row.get(3)?,
                contract_end: row.get(4)?,
                contact: row
                    .get::<_, Option<String>>(5)?
                    .map(super::json_column)
                    .transpose()?,
                attributes: super::json_column(row.get(6)?)?,
                updated_at: row.get(7)?,
                version: row.get(8)?,
                group: row.get(9)?,
                billing: row.get(10)?,
                has_pin: row.get(11)?,
            })
        })
        .optional()?)
}

/// A request the host has checked (and may be holding).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRow {
    pub id: String,
    pub service: String,
    pub account_id: String,
    pub description: String,
    pub attributes: Value,
    pub state: String,
    pub level: Option<String>,
    pub failure: Option<Value>,
    pub reconciliation_id: Option<String>,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub created_at: i64,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub updated_at: i64,
    /// Bumped by every change ([`put_request`] ignores the value given).
    #[serde(skip)]
    pub version: i64,
}

fn request_row(row: &Row<'_>) -> Result<RequestRow, rusqlite::Error> {
    Ok(RequestRow {
        id: row.get(0)?,
        service: row.get(1)?,
        account_id: row.get(2)?,
        description: row.get(3)?,
        attributes: super::json_column(row.get(4)?)?,
        state: row.get(5)?,
        level: row.get(6)?,
        failure: row
            .get::<_, Option<String>>(7)?
            .map(super::json_column)
            .transpose()?,
        reconciliation_id: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        version: row.get(11)?,
    })
}

pub fn get_request(conn: &Conn<'_>, id: &str) -> Result<Option<RequestRow>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT id, service, account_id, description, attributes, state, level, failure, reconciliation_id, created_at, updated_at, version
         FROM requests WHERE id = ?1",
    )?;
    Ok(stmt.query_row([id], request_row).optional()?)
}

pub fn put_request(tx: &Tx<'_>, r: &RequestRow) -> Result<(), StoreError> {
    tx.raw().prepare_cached("INSERT INTO requests (id, service, account_id, description, attributes, state, level, failure, reconciliation_id, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET description = ?4, attributes = ?5, state = ?6, level = ?7, failure = ?8,
             reconciliation_id = ?9, updated_at = ?11, version = requests.version + 1",
    )?
    .execute(params![
            r.id,
            r.service,
            r.account_id,
            r.description,
            r.attributes.to_string(),
            r.state,
            r.level,
            r.failure.as_ref().map(Value::to_string),
            r.reconciliation_id,
            r.created_at,
            r.updated_at,
            first_version()
        ])?;
    Ok(())
}

/// Fulfils a held request: only one awaiting reconciliation `reconciliation_id`
/// becomes `fulfilled` (at `level`, with `attributes` as reconciled).
/// Returns whether it did; `false` when the request was decided otherwise
/// or fulfilled already, and then nothing changed. (A trigger of the
/// schema refuses any other way to `fulfilled` too.)
pub fn fulfil_request(
    tx: &Tx<'_>,
    id: &str,
    reconciliation_id: &str,
    level: &str,
    attributes: &Value,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = tx.raw().prepare_cached(
        "UPDATE requests SET state = 'fulfilled', level = ?3, attributes = ?4, failure = NULL, updated_at = ?5,
             version = version + 1
         WHERE id = ?1 AND state = 'awaiting-reconciliation' AND reconciliation_id = ?2",
    )?
    .execute(params![id, reconciliation_id, level, attributes.to_string(), now])?;
    Ok(changed == 1)
}

/// One entry of the decision log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRow {
    pub id: i64,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub at: i64,
    pub service: String,
    pub account_id: String,
    pub request_id: String,
    pub inputs_digest: String,
    /// The context and call the plugin got, so the decision can be replayed.
    #[serde(skip)]
    pub inputs: Value,
    /// `pass`, `fail`, or `error` (the plugin faulted or declined).
    pub verdict: String,
    pub level: Option<String>,
    pub failure_code: Option<String>,
    pub reason: Option<String>,
    pub plugin: String,
    pub plugin_digest: String,
    pub duration_us: i64,
}

/// A decision to record, borrowed from the check that made it.
#[derive(Debug)]
pub struct NewDecision<'a> {
    pub at: i64,
    pub service: &'a str,
    pub account_id: &'a str,
    pub request_id: &'a str,
    pub inputs_digest: &'a str,
    /// The context and call as JSON text.
    pub inputs: &'a str,
    pub verdict: &'a str,
    pub level: Option<&'a str>,
    pub failure_code: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub plugin: &'a str,
    pub plugin_digest: &'a str,
    pub duration_us: i64,
}

/// Appends a decision and returns its id, which the database gives:
/// increasing, and never reused even when the newest decision is deleted
/// with its request (`delete_decisions_of`).
pub fn insert_decision(tx: &Tx<'_>, d: &NewDecision<'_>) -> Result<i64, StoreError> {
    let conn = tx.raw();
    conn.prepare_cached("INSERT INTO decisions (at, service, account_id, request_id, inputs_digest, inputs, verdict, level, failure_code, reason, plugin, plugin_digest, duration_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
            d.at,
            d.service,
            d.account_id,
            d.request_id,
            d.inputs_digest,
            d.inputs,
            d.verdict,
            d.level,
            d.failure_code,
            d.reason,
            d.plugin,
            d.plugin_digest,
            d.duration_us
        ])?;
    Ok(conn.last_insert_rowid())
}

/// Which way a listing of the decision log runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    #[default]
    Desc,
}

/// Which decisions a listing holds; every field set narrows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionFilter<'a> {
    pub service: Option<&'a str>,
    pub account: Option<&'a str>,
    /// Made at or after this time (ms).
    pub since: Option<i64>,
    /// Made before this time (ms).
    pub until: Option<i64>,
}

/// The newest decisions first, filtered by service and account.
pub fn list_decisions(
    conn: &Conn<'_>,
    service: Option<&str>,
    account: Option<&str>,
    limit: u32,
) -> Result<Vec<DecisionRow>, StoreError> {
    let filter = DecisionFilter {
        service,
        account,
        ..DecisionFilter::default()
    };
    page_decisions(conn, &filter, Order::Desc, None, limit)
}

/// One page of the decision log, by id in `order`: at most `limit`
/// decisions that `filter` holds, after the decision `after` in that order
/// (its id; it need not exist any more). Ids only grow, so paging on with
/// the last id of each page reads every decision once.
pub fn page_decisions(
    conn: &Conn<'_>,
    filter: &DecisionFilter<'_>,
    order: Order,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<DecisionRow>, StoreError> {
    let conn = conn.raw();
    use rusqlite::types::Value as Param;
    // Only the conditions given, so that SQLite can use the index of the
    // service or the account (`?1 IS NULL OR service = ?1` defeats it).
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut condition = |sql: &str, value: Param| {
        values.push(value);
        conditions.push(format!("{sql} ?{}", values.len()));
    };
    if let Some(service) = filter.service {
        condition("service =", Param::Text(service.to_owned()));
    }
    if let Some(account) = filter.account {
        condition("account_id =", Param::Text(account.to_owned()));
    }
    if let Some(since) = filter.since {
        condition("at >=", Param::Integer(since));
    }
    if let Some(until) = filter.until {
        condition("at <", Param::Integer(until));
    }
    if let Some(after) = after {
        let op = match order {
            Order::Asc => "id >",
            Order::Desc => "id <",
        };
        condition(op, Param::Integer(after));
    }
    values.push(Param::Integer(i64::from(limit)));
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let direction = match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, at, service, account_id, request_id, inputs_digest, inputs, verdict, level, failure_code, reason, plugin, plugin_digest, duration_us
         FROM decisions {filter_sql} ORDER BY id {direction} LIMIT ?{}",
        values.len()
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values), decision_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn decision_row(row: &Row<'_>) -> Result<DecisionRow, rusqlite::Error> {
    Ok(DecisionRow {
        id: row.get(0)?,
        at: row.get(1)?,
        service: row.get(2)?,
        account_id: row.get(3)?,
        request_id: row.get(4)?,
        inputs_digest: row.get(5)?,
        inputs: super::json_column(row.get(6)?)?,
        verdict: row.get(7)?,
        level: row.get(8)?,
        failure_code: row.get(9)?,
        reason: row.get(10)?,
        plugin: row.get(11)?,
        plugin_digest: row.get(12)?,
        duration_us: row.get(13)?,
    })
}

pub fn delete_decisions_of(conn: &Tx<'_>, request_id: &str) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute("DELETE FROM decisions WHERE request_id = ?1", [request_id])?;
    Ok(())
}

/// A reconciliation in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconciliationRow {
    pub id: String,
    pub request_id: String,
    pub service: String,
    pub account_id: String,
    pub failure_code: String,
    pub reason: String,
    pub mode: String,
    pub procedure: Value,
    pub description: String,
    /// SHA-256 (hex) of every key a live link carries; never the keys.
    pub key_hashes: Vec<String>,
    /// Wrong keys (and failed tries) since the link last locked.
    pub attempts: i64,
    pub deadline: Option<i64>,
    pub flow_id: Option<String>,
    pub created_at: i64,
    /// Until when (ms) the link refuses every key after too many attempts.
    pub locked_until: Option<i64>,
    /// How many times the link has locked: each lock lasts twice the last.
    pub locks: i64,
}

pub fn put_reconciliation(conn: &Tx<'_>, r: &ReconciliationRow) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute(
        "INSERT INTO reconciliations (id, request_id, service, account_id, failure_code, reason, mode, procedure, description, key_hashes, attempts, deadline, flow_id, created_at, locked_until, locks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (id) DO UPDATE SET key_hashes = ?10, attempts = ?11, deadline = ?12, flow_id = ?13, account_id = ?4,
             locked_until = ?15, locks = ?16",
        params![
            r.id,
            r.request_id,
            r.service,
            r.account_id,
            r.failure_code,
            r.reason,
            r.mode,
            r.procedure.to_string(),
            r.description,
            serde_json::to_string(&r.key_hashes).unwrap_or_else(|_| "[]".into()),
            r.attempts,
            r.deadline,
            r.flow_id,
            r.created_at,
            r.locked_until,
            r.locks
        ],
    )?;
    Ok(())
}

pub fn get_reconciliation(
    conn: &Conn<'_>,
    id: &str,
) -> Result<Option<ReconciliationRow>, StoreError> {
    let conn = conn.raw();
    Ok(conn
        .query_row(
            "SELECT id, request_id, service, account_id, failure_code, reason, mode, procedure, description, key_hashes, attempts, deadline, flow_id, created_at,
                 locked_until, locks
             FROM reconciliations WHERE id = ?1",
            [id],
            |row| {
                let hashes: String = row.get(9)?;
                Ok(ReconciliationRow {
                    id: row.get(0)?,
                    request_id: row.get(1)?,
                    service: row.get(2)?,
                    account_id: row.get(3)?,
                    failure_code: row.get(4)?,
                    reason: row.get(5)?,
                    mode: row.get(6)?,
                    procedure: super::json_column(row.get(7)?)?,
                    description: row.get(8)?,
                    key_hashes: serde_json::from_str(&hashes).unwrap_or_default(),
                    attempts: row.get(10)?,
                    deadline: row.get(11)?,
                    flow_id: row.get(12)?,
                    created_at: row.get(13)?,
                    locked_until: row.get(14)?,
                    locks: row.get(15)?,
                })
            },
        )
        .optional()?)
}

/// Removes a reconciliation, leaving a tombstone that says how it ended.
pub fn bury_reconciliation(
    conn: &Tx<'_>,
    id: &str,
    outcome: &str,
    now: i64,
) -> Result<(), StoreError> {
    let conn = conn.raw();
    conn.execute("DELETE FROM reconciliations WHERE id = ?1", [id])?;
    conn.execute(
        "DELETE FROM reconciliation_transfers WHERE reconciliation_id = ?1",
        [id],
    )?;
    conn.execute(
        "INSERT OR REPLACE INTO reconciliation_tombstones (id, outcome, at) VALUES (?1, ?2, ?3)",
        params![id, outcome, now],
    )?;
    Ok(())
}

pub fn tombstone(conn: &Conn<'_>, id: &str) -> Result<Option<String>, StoreError> {
    let conn = conn.raw();
    Ok(conn
        .query_row(
            "SELECT outcome FROM reconciliation_tombstones WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?)
}

/// Asks `account_id`'s contact to take over reconciliation
/// `reconciliation_id`: the key of their single-use link, as a SHA-256
/// (replacing the key of an earlier ask of the same account).
pub fn put_transfer(
    tx: &Tx<'_>,
    reconciliation_id: &str,
    account_id: &str,
    key_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.raw().execute(
        "INSERT INTO reconciliation_transfers (reconciliation_id, account_id, key_hash, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (reconciliation_id, account_id) DO UPDATE SET key_hash = ?3, created_at = ?4",
        params![reconciliation_id, account_id, key_hash, now],
    )?;
    Ok(())
}

/// The accounts asked to take over a reconciliation, with their keys' hashes.
pub fn transfers(
    conn: &Conn<'_>,
    reconciliation_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let conn = conn.raw();
    let mut stmt = conn.prepare_cached(
        "SELECT account_id, key_hash FROM reconciliation_transfers WHERE reconciliation_id = ?1 ORDER BY account_id",
    )?;
    let rows = stmt.query_map([reconciliation_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A used transfer link: its key dies.
pub fn delete_transfer(
    tx: &Tx<'_>,
    reconciliation_id: &str,
    account_id: &str,
) -> Result<(), StoreError> {
    tx.raw().execute(
        "DELETE FROM reconciliation_transfers WHERE reconciliation_id = ?1 AND account_id = ?2",
        params![reconciliation_id, account_id],
    )?;
    Ok(())
}

/// A decision of `request_id` at `at`, for the store's tests.
#[cfg(test)]
pub(crate) fn sample_decision(request_id: &str, at: i64) -> NewDecision<'_> {
    NewDecision {
        at,
        service: "support",
        account_id: "acme",
        request_id,
        inputs_digest: "d",
        inputs: "{}",
        verdict: "pass",
        level: Some("standard"),
        failure_code: None,
        reason: None,
        plugin: "p",
        plugin_digest: "x",
        duration_us: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn decision(request_id: &str) -> NewDecision<'_> {
        sample_decision(request_id, 1)
    }

    /// Every page of the listing, each after the last id of the one before.
    fn pages(
        store: &Store,
        filter: &DecisionFilter<'_>,
        order: Order,
        limit: u32,
    ) -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .read(|c| page_decisions(c, filter, order, after, limit))
                .unwrap();
            let ids: Vec<i64> = page.iter().map(|d| d.id).collect();
            after = ids.last().copied();
            if ids.is_empty() {
                return out;
            }
            out.push(ids);
        }
    }

    #[test]
    fn paging_reads_every_decision_once_in_either_order_with_filters() {
        let store = Store::in_memory().unwrap();
        let ids: Vec<(i64, &str)> = store
            .write(|tx| {
                (0..23)
                    .map(|i| {
                        let service = if i % 3 == 0 { "other" } else { "support" };
                        let d = NewDecision {
                            at: 1_000 + i,
                            service,
                            ..decision("req")
                        };
                        insert_decision(tx, &d).map(|id| (id, service))
                    })
                    .collect::<Result<_, StoreError>>()
            })
            .unwrap();
        let all: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();

        let asc = pages(&store, &DecisionFilter::default(), Order::Asc, 5);
        assert_eq!(
            asc.iter().map(Vec::len).collect::<Vec<_>>(),
            [5, 5, 5, 5, 3]
        );
        assert_eq!(asc.concat(), all);
        let desc = pages(&store, &DecisionFilter::default(), Order::Desc, 7);
        let mut newest_first = all.clone();
        newest_first.reverse();
        assert_eq!(desc.concat(), newest_first);

        let support = DecisionFilter {
            service: Some("support"),
            ..DecisionFilter::default()
        };
        let expected: Vec<i64> = ids
            .iter()
            .filter(|(_, s)| *s == "support")
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(pages(&store, &support, Order::Asc, 4).concat(), expected);

        // Made in [1005, 1010): the 6th to the 10th.
        let window = DecisionFilter {
            since: Some(1_005),
            until: Some(1_010),
            ..DecisionFilter::default()
        };
        assert_eq!(pages(&store, &window, Order::Asc, 2).concat(), all[5..10]);
        // The newest first, as before.
        let newest = store.read(|c| list_decisions(c, None, None, 2)).unwrap();
        assert_eq!(
            newest.iter().map(|d| d.id).collect::<Vec<_>>(),
            newest_first[..2]
        );
    }

    #[test]
    fn decision_ids_increase_and_a_deleted_one_is_not_reused() {
        let store = Store::in_memory().unwrap();
        let ids: Vec<i64> = store
            .write(|tx| {
                (0..50)
                    .map(|i| insert_decision(tx, &decision(&format!("req_{i}"))))
                    .collect::<Result<_, StoreError>>()
            })
            .unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let newest = ids[49];
        let again = store
            .write(|tx| {
                delete_decisions_of(tx, "req_49")?;
                insert_decision(tx, &decision("req_50"))
            })
            .unwrap();
        assert!(again > newest, "{again} reuses or precedes {newest}");
    }

    fn held(id: &str, state: &str) -> RequestRow {
        RequestRow {
            id: id.into(),
            service: "support".into(),
            account_id: "acme".into(),
            description: "printer on fire".into(),
            attributes: serde_json::json!({}),
            state: state.into(),
            level: None,
            failure: None,
            reconciliation_id: Some("rec_1".into()),
            created_at: 1,
            updated_at: 1,
            version: 0,
        }
    }

    #[test]
    fn a_request_is_fulfilled_once_and_only_from_awaiting_reconciliation() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| {
                put_request(tx, &held("r-1", "awaiting-reconciliation"))?;
                put_request(tx, &held("r-2", "passed"))
            })
            .unwrap();
        let fulfil = |id: &str, rec: &str| {
            store
                .write(|tx| fulfil_request(tx, id, rec, "standard", &serde_json::json!({}), 2))
                .unwrap()
        };
        assert!(!fulfil("r-1", "rec_other"), "another reconciliation's");
        assert!(fulfil("r-1", "rec_1"));
        assert!(!fulfil("r-1", "rec_1"), "fulfilled twice");
        assert!(!fulfil("r-2", "rec_1"), "decided otherwise (passed)");
        let r1 = store.read(|c| get_request(c, "r-1")).unwrap().unwrap();
        assert_eq!(
            (r1.state.as_str(), r1.level.as_deref()),
            ("fulfilled", Some("standard"))
        );
        // The schema refuses it whatever the code above the store does.
        for (id, state) in [("r-1", "fulfilled"), ("r-2", "passed")] {
            let again = store.write(|tx| {
                put_request(
                    tx,
                    &RequestRow {
                        state: "fulfilled".into(),
                        ..held(id, state)
                    },
                )
            });
            let err = again.unwrap_err().to_string();
            assert!(err.contains("fulfilled only once"), "{id}: {err}");
        }
        let r2 = store.read(|c| get_request(c, "r-2")).unwrap().unwrap();
        assert_eq!(r2.state, "passed");
    }
}
