//! Money and PINs: each account's balance, the ledger of its movements, and
//! what is kept of its PIN.
//!
//! Every movement is a `ledger` row with a reference unique per account;
//! `balances` holds their running sum, changed in the transaction that adds
//! each row, so a balance is always the sum of its ledger. Nothing here
//! writes `accounts` but the PIN's columns, and those never bump the
//! account's version: money moving, or a wrong PIN, does not make a check
//! decide again.
//!
//! The rules (which amounts, prepaid or postpaid, when a PIN locks) are the
//! domain's (`crate::ledger`); these are the operations it is made of, in
//! SQL that PostgreSQL runs too. For several writers on one database, a
//! movement's reference is unique in the schema, and the balance a
//! movement is computed from is read with [`locked_balance`] in the same
//! transaction.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::{Conn, StoreError, Tx};

/// What a movement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Money paid in (positive).
    Topup,
    /// A charge (zero or negative: zero when a prepaid balance covered none of it).
    Debit,
    /// Money given back (positive).
    Refund,
    /// An operator's correction, either sign.
    Adjustment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Topup => "topup",
            Kind::Debit => "debit",
            Kind::Refund => "refund",
            Kind::Adjustment => "adjustment",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "topup" => Some(Kind::Topup),
            "debit" => Some(Kind::Debit),
            "refund" => Some(Kind::Refund),
            "adjustment" => Some(Kind::Adjustment),
            _ => None,
        }
    }
}

/// A movement to record, borrowed from whoever decided it.
#[derive(Debug, Clone, Copy)]
pub struct NewMovement<'a> {
    pub account_id: &'a str,
    pub kind: Kind,
    /// Minor units, signed: credits above zero, debits zero or below.
    pub amount: i64,
    /// Of a debit, what was asked and not charged (a prepaid balance ran
    /// out); zero otherwise.
    pub uncovered: i64,
    /// The idempotency reference, unique per account.
    pub reference: &'a str,
    /// When (ms).
    pub at: i64,
    /// JSON for whoever reads the ledger (the communication it paid for...).
    pub detail: Option<&'a Value>,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovementRow {
    /// Increasing per database, never reused: the ledger's order.
    pub id: i64,
    #[serde(skip)]
    pub account_id: String,
    pub kind: Kind,
    pub amount: i64,
    pub uncovered: i64,
    pub reference: String,
    /// The balance right after this movement.
    pub balance_after: i64,
    #[serde(serialize_with = "super::serde_ms::time")]
    pub at: i64,
    pub detail: Option<Value>,
}

/// A movement asked for, and whether it was recorded before (the same
/// reference again), in which case `movement` is the first one.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub movement: MovementRow,
    pub replayed: bool,
}

const MOVEMENT_COLUMNS: &str =
    "id, account_id, kind, amount, uncovered, reference, balance_after, at, detail";

fn movement_row(row: &Row<'_>) -> Result<MovementRow, rusqlite::Error> {
    let kind: String = row.get(2)?;
    Ok(MovementRow {
        id: row.get(0)?,
        account_id: row.get(1)?,
        kind: Kind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown movement kind `{kind}`").into(),
            )
        })?,
        amount: row.get(3)?,
        uncovered: row.get(4)?,
        reference: row.get(5)?,
        balance_after: row.get(6)?,
        at: row.get(7)?,
        detail: row
            .get::<_, Option<String>>(8)?
            .map(super::json_column)
            .transpose()?,
    })
}

/// The account's balance: `None` when there is no such account; zero for
/// an account no money has moved on.
pub fn balance(conn: &Conn<'_>, account_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT coalesce(b.balance, 0) FROM accounts a LEFT JOIN balances b ON b.account_id = a.id
             WHERE a.id = ?1",
        )?
        .query_row([account_id], |r| r.get(0))
        .optional()?)
}

/// What a charge needs of its account: its group, billing mode (as
/// stored) and balance. `None` when there is no such account.
pub fn holder(conn: &Conn<'_>, account_id: &str) -> Result<Option<Holder>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT a.account_group, a.billing, coalesce(b.balance, 0)
             FROM accounts a LEFT JOIN balances b ON b.account_id = a.id WHERE a.id = ?1",
        )?
        .query_row([account_id], |r| {
            Ok(Holder {
                group: r.get(0)?,
                billing: r.get(1)?,
                balance: r.get(2)?,
            })
        })
        .optional()?)
}

/// See [`holder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub group: String,
    pub billing: String,
    pub balance: i64,
}

/// The account's balance, read to decide a movement in this transaction:
/// no other writer changes it before the transaction ends. (SQLite's write
/// transaction holds the database's write lock from its start; a backend
/// with several writers locks the row, as PostgreSQL's `FOR UPDATE`.)
/// `None` when there is no such account.
pub fn locked_balance(tx: &Tx<'_>, account_id: &str) -> Result<Option<i64>, StoreError> {
    balance(tx, account_id)
}

/// The movement `reference` names on the account, if any.
pub fn movement_by_reference(
    conn: &Conn<'_>,
    account_id: &str,
    reference: &str,
) -> Result<Option<MovementRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {MOVEMENT_COLUMNS} FROM ledger WHERE account_id = ?1 AND reference = ?2"
        ))?
        .query_row([account_id, reference], movement_row)
        .optional()?)
}

/// Records a movement and moves the balance by its amount. The caller
/// looked for the reference in this transaction ([`movement_by_reference`])
/// and found none; a reference used already is refused by the schema
/// (`UNIQUE (account_id, reference)`), and the write rolls back. The
/// account must exist. No rule of money is applied here (overdraft, signs
/// beyond the schema's): the caller decided the amount on a
/// [`locked_balance`] in this transaction and made sure the sum fits in 64
/// bits.
pub fn post(tx: &Tx<'_>, m: &NewMovement<'_>) -> Result<MovementRow, StoreError> {
    let conn = tx.raw();
    // An increment, not a value computed here: right whoever else writes.
    let balance_after: i64 = conn
        .prepare_cached(
            "INSERT INTO balances (account_id, balance, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (account_id) DO UPDATE
                 SET balance = balances.balance + excluded.balance, updated_at = excluded.updated_at
             RETURNING balance",
        )?
        .query_row(params![m.account_id, m.amount, m.at], |r| r.get(0))?;
    let detail = m.detail.map(Value::to_string);
    conn.prepare_cached(
        "INSERT INTO ledger (account_id, kind, amount, uncovered, reference, balance_after, at, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        m.account_id,
        m.kind.as_str(),
        m.amount,
        m.uncovered,
        m.reference,
        balance_after,
        m.at,
        detail
    ])?;
    Ok(MovementRow {
        id: conn.last_insert_rowid(),
        account_id: m.account_id.to_owned(),
        kind: m.kind,
        amount: m.amount,
        uncovered: m.uncovered,
        reference: m.reference.to_owned(),
        balance_after,
        at: m.at,
        detail: m.detail.cloned(),
    })
}

/// The account's movements oldest first: at most `limit`, after the
/// movement `after` (its id; it need not exist). Ids only grow, so paging
/// on with the last id of each page reads every movement once.
pub fn movements(
    conn: &Conn<'_>,
    account_id: &str,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<MovementRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {MOVEMENT_COLUMNS} FROM ledger WHERE account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![account_id, after.unwrap_or(i64::MIN), i64::from(limit)],
        movement_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The sum of the account's ledger, which its balance must equal (an
/// invariant check, and the tests').
pub fn sum_of_ledger(conn: &Conn<'_>, account_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT coalesce(sum(amount), 0) FROM ledger WHERE account_id = ?1")?
        .query_row([account_id], |r| r.get(0))?)
}

/// What is kept of an account's PIN: its salt and SHA-256 (never the PIN),
/// the wrong tries in a row, and until when (ms) it refuses every try.
#[derive(Clone, PartialEq)]
pub struct PinState {
    pub salt: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
    pub failures: i64,
    pub locked_until: Option<i64>,
}

impl std::fmt::Debug for PinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash of a short PIN is as good as the PIN: never in a log.
        f.debug_struct("PinState")
            .field("set", &self.hash.is_some())
            .field("failures", &self.failures)
            .field("locked_until", &self.locked_until)
            .finish()
    }
}

/// The PIN state from four columns of `row`, from its `at`-th on.
pub(super) fn pin_columns(row: &Row<'_>, at: usize) -> Result<PinState, rusqlite::Error> {
    Ok(PinState {
        salt: row.get(at)?,
        hash: row.get(at + 1)?,
        failures: row.get(at + 2)?,
        locked_until: row.get(at + 3)?,
    })
}

/// The account's PIN state; `None` when there is no such account.
pub fn pin_state(conn: &Conn<'_>, account_id: &str) -> Result<Option<PinState>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(
            "SELECT pin_salt, pin_hash, pin_failures, pin_locked_until FROM accounts WHERE id = ?1",
        )?
        .query_row([account_id], |r| pin_columns(r, 0))
        .optional()?)
}

/// Sets the account's PIN (its salt and hash) and forgets its wrong tries
/// and lock. Whether the account exists.
pub fn set_pin(
    tx: &Tx<'_>,
    account_id: &str,
    salt: &[u8],
    hash: &[u8],
) -> Result<bool, StoreError> {
    let changed = tx
        .raw()
        .prepare_cached(
            "UPDATE accounts SET pin_salt = ?2, pin_hash = ?3, pin_failures = 0, pin_locked_until = NULL
             WHERE id = ?1",
        )?
        .execute(params![account_id, salt, hash])?;
    Ok(changed == 1)
}

/// Counts a wrong try: the `lock_after`th in a row locks the PIN until
/// `now + lock_ms` and starts the count again. The state after it; `None`
/// when there is no such account.
pub fn record_pin_failure(
    tx: &Tx<'_>,
    account_id: &str,
    now: i64,
    lock_after: i64,
    lock_ms: i64,
) -> Result<Option<PinState>, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached(
            "UPDATE accounts SET
                 pin_failures = CASE WHEN pin_failures + 1 >= ?3 THEN 0 ELSE pin_failures + 1 END,
                 pin_locked_until = CASE WHEN pin_failures + 1 >= ?3 THEN ?2 + ?4 ELSE pin_locked_until END
             WHERE id = ?1
             RETURNING pin_salt, pin_hash, pin_failures, pin_locked_until",
        )?
        .query_row(params![account_id, now, lock_after, lock_ms], |r| pin_columns(r, 0))
        .optional()?)
}

/// Forgets the account's wrong tries (a right PIN was given).
pub fn clear_pin_failures(tx: &Tx<'_>, account_id: &str) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached("UPDATE accounts SET pin_failures = 0 WHERE id = ?1")?
        .execute([account_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Store;
    use crate::store::entitlement::{AccountRow, account_version, get_account, put_account};

    fn account(id: &str) -> AccountRow {
        AccountRow::for_test(id, "prepaid")
    }

    fn movement<'a>(reference: &'a str, kind: Kind, amount: i64) -> NewMovement<'a> {
        NewMovement {
            account_id: "acme",
            kind,
            amount,
            uncovered: 0,
            reference,
            at: 10,
            detail: None,
        }
    }

    #[test]
    fn a_movement_moves_the_balance_once_and_leaves_the_account_alone() {
        let store = Store::in_memory().unwrap();
        store.write(|tx| put_account(tx, &account("acme"))).unwrap();
        let version = store.read(|c| account_version(c, "acme")).unwrap();
        assert_eq!(store.read(|c| balance(c, "acme")).unwrap(), Some(0));
        assert_eq!(store.read(|c| balance(c, "nobody")).unwrap(), None);

        let detail = json!({"communication": "c-1"});
        let first = store
            .write(|tx| {
                post(tx, &movement("t-1", Kind::Topup, 500))?;
                post(
                    tx,
                    &NewMovement {
                        uncovered: 30,
                        detail: Some(&detail),
                        ..movement("c-1", Kind::Debit, -120)
                    },
                )
            })
            .unwrap();
        assert_eq!(first.balance_after, 380);
        // The same reference again: refused, nothing recorded.
        let again = store.write(|tx| post(tx, &movement("c-1", Kind::Topup, 999)));
        assert!(again.is_err(), "{again:?}");
        assert_eq!(
            store
                .read(|c| movement_by_reference(c, "acme", "c-1"))
                .unwrap(),
            Some(first.clone())
        );
        assert_eq!(store.read(|c| balance(c, "acme")).unwrap(), Some(380));
        assert_eq!(store.read(|c| sum_of_ledger(c, "acme")).unwrap(), 380);
        assert_eq!(
            store.read(|c| account_version(c, "acme")).unwrap(),
            version,
            "money moving changed the account's version"
        );
        let rows = store.read(|c| movements(c, "acme", None, 10)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], first);
        assert_eq!(
            serde_json::to_value(&rows[1]).unwrap(),
            json!({"id": rows[1].id, "kind": "debit", "amount": -120, "uncovered": 30, "reference": "c-1",
                "balance_after": 380, "at": "1970-01-01T00:00:00.01Z", "detail": {"communication": "c-1"}})
        );
    }

    #[test]
    fn the_schema_refuses_movements_of_the_wrong_sign_and_unknown_accounts() {
        let store = Store::in_memory().unwrap();
        store.write(|tx| put_account(tx, &account("acme"))).unwrap();
        for (kind, amount) in [
            (Kind::Topup, 0),
            (Kind::Topup, -1),
            (Kind::Refund, -5),
            (Kind::Debit, 1),
        ] {
            let r = store.write(|tx| post(tx, &movement("x", kind, amount)));
            assert!(r.is_err(), "{kind:?} {amount}");
        }
        let r = store.write(|tx| {
            post(
                tx,
                &NewMovement {
                    account_id: "nobody",
                    ..movement("x", Kind::Topup, 5)
                },
            )
        });
        assert!(r.is_err(), "a balance for no account");
        store
            .write(|tx| post(tx, &movement("adj", Kind::Adjustment, -7)))
            .unwrap();
        assert_eq!(store.read(|c| balance(c, "acme")).unwrap(), Some(-7));
        assert_eq!(store.read(|c| sum_of_ledger(c, "acme")).unwrap(), -7);
    }

    #[test]
    fn movements_page_oldest_first_per_account() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| {
                put_account(tx, &account("acme"))?;
                put_account(tx, &account("other"))?;
                for i in 0..7 {
                    post(tx, &movement(&format!("r-{i}"), Kind::Topup, i + 1))?;
                    post(
                        tx,
                        &NewMovement {
                            account_id: "other",
                            ..movement(&format!("r-{i}"), Kind::Topup, 100)
                        },
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = store.read(|c| movements(c, "acme", after, 3)).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            seen.extend(page.iter().map(|m| m.amount));
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn pin_failures_lock_and_a_new_pin_starts_afresh_without_bumping_the_version() {
        let store = Store::in_memory().unwrap();
        store.write(|tx| put_account(tx, &account("acme"))).unwrap();
        let version = store.read(|c| account_version(c, "acme")).unwrap();
        assert!(
            store
                .write(|tx| set_pin(tx, "acme", b"salt", b"hash"))
                .unwrap()
        );
        assert!(!store.write(|tx| set_pin(tx, "nobody", b"s", b"h")).unwrap());
        let fail = |now| {
            store
                .write(|tx| record_pin_failure(tx, "acme", now, 3, 1000))
                .unwrap()
                .unwrap()
        };
        assert_eq!((fail(1).failures, fail(2).failures), (1, 2));
        let locked = fail(3);
        assert_eq!((locked.failures, locked.locked_until), (0, Some(1003)));
        assert_eq!(fail(4).locked_until, Some(1003), "a try keeps the lock");
        store.write(|tx| clear_pin_failures(tx, "acme")).unwrap();
        let state = store.read(|c| pin_state(c, "acme")).unwrap().unwrap();
        assert_eq!(state.failures, 0);
        assert_eq!(state.hash.as_deref(), Some(b"hash".as_slice()));
        assert!(!format!("{state:?}").contains("104"), "{state:?}");
        store.write(|tx| set_pin(tx, "acme", b"s2", b"h2")).unwrap();
        let state = store.read(|c| pin_state(c, "acme")).unwrap().unwrap();
        assert_eq!((state.failures, state.locked_until), (0, None));
        assert_eq!(store.read(|c| account_version(c, "acme")).unwrap(), version);
        assert!(
            store
                .read(|c| get_account(c, "acme"))
                .unwrap()
                .unwrap()
                .has_pin
        );
        assert_eq!(
            store
                .write(|tx| record_pin_failure(tx, "nobody", 1, 3, 1000))
                .unwrap(),
            None
        );
    }
}
