//! Balances and money movements: every movement a ledger row with an
//! idempotency reference; used by plans and sessions.
//!
//! Money is a whole number of minor units (`i64`), never floating point.
//! A movement is a row of the account's ledger (`store::ledger`), named by
//! a reference unique per account; the balance is the sum of the ledger,
//! kept as a running sum changed in the same transaction. The same
//! movement asked again (a retry, a replayed request) finds its reference
//! and gets the first answer, marked replayed; the same reference with
//! other content is refused ([`LedgerError::ReferenceReused`]). Every
//! function here takes the caller's [`Tx`] and opens none of its own, so a
//! charge commits with whatever it pays for (a communication's detail
//! record) or not at all. Money moving never touches the account's row:
//! its version, which checks compare, stays as it is.
//!
//! Billing: a *prepaid* account is charged at most its balance, which never
//! goes below zero; what it could not pay is the charge's `uncovered`. A
//! *postpaid* account is charged in full, and a negative balance is what it
//! owes.
//!
//! PINs: 4 to 12 digits, kept as SHA-256 of a 16-byte random salt and the
//! PIN, compared in constant time. Not Argon2id, which the host uses for
//! passwords: a PIN of 4 to 8 digits has at most 10^8 values, and whoever
//! holds its hash and salt tries them all in seconds whatever the hash
//! costs, while a slow hash would cost every call's authorization
//! milliseconds. What protects a PIN is that its hash never leaves the
//! store (no API shows it, its `Debug` hides it) and the limit on tries:
//! [`PinPolicy::lock_after`] wrong PINs in a row (5) lock it for
//! [`PinPolicy::lock_for`] (15 minutes), after which the count starts
//! again; a right PIN ends the count. The salt makes equal PINs of two
//! accounts unequal hashes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::secret;
use crate::store::entitlement::{AccountRow, account_version, put_account};
use crate::store::ledger::{self as q, Kind, MovementRow, NewMovement, Posted};
use crate::store::{StoreError, Tx};
use crate::text;

#[cfg(test)]
mod tests;

/// How an account pays: the contract's type, so plans and plugins see
/// the same one.
pub use crate::contract::Billing;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("no account `{0}`")]
    NoAccount(String),
    /// The reference names another movement of the account.
    #[error(
        "the reference `{reference}` names another movement of this account already ({existing}); give each movement its own reference"
    )]
    ReferenceReused { reference: String, existing: String },
    #[error("`amount` is {amount}: {rule}")]
    InvalidAmount { amount: i64, rule: &'static str },
    /// Anything else out of the rules, the message led by the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidPin(String),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where random bytes come from: [`OsRandom`] for the host, a fixed
/// sequence in tests.
pub trait Random {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), LedgerError>;
}

/// The operating system's random generator (PINs and salts are secrets).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), LedgerError> {
        getrandom::fill(buf).map_err(|e| LedgerError::Random(e.to_string()))
    }
}

/// The longest reference, in bytes.
pub const MAX_REFERENCE: usize = 200;

/// A reference is one line of text, 1 to [`MAX_REFERENCE`] bytes.
pub fn valid_reference(reference: &str) -> Result<(), LedgerError> {
    if reference.is_empty() || reference.len() > MAX_REFERENCE {
        return Err(LedgerError::Invalid(format!(
            "`reference` is {} bytes; a reference is 1 to {MAX_REFERENCE} bytes, one per movement (a payment's id, a communication's id)",
            reference.len()
        )));
    }
    text::line("reference", reference).map_err(LedgerError::Invalid)
}

/// The longest group name, in bytes.
pub const MAX_GROUP: usize = 100;

/// An account's group is one line of text of at most [`MAX_GROUP`] bytes
/// (`""`: none).
pub fn valid_group(group: &str) -> Result<(), LedgerError> {
    if group.len() > MAX_GROUP {
        return Err(LedgerError::Invalid(format!(
            "`group` is {} bytes; a group's name is at most {MAX_GROUP}",
            group.len()
        )));
    }
    text::line("group", group).map_err(LedgerError::Invalid)
}

/// What a movement asked for: a debit's charge and what it left uncovered.
fn asked(m: &MovementRow) -> i128 {
    match m.kind {
        Kind::Debit => -i128::from(m.amount) + i128::from(m.uncovered),
        _ => i128::from(m.amount),
    }
}

/// The movement `reference` already names, if any: the same movement (a
/// replay) or [`LedgerError::ReferenceReused`].
fn replayed(
    tx: &Tx<'_>,
    account_id: &str,
    reference: &str,
    kind: Kind,
    amount: i64,
) -> Result<Option<MovementRow>, LedgerError> {
    let Some(existing) = q::movement_by_reference(tx, account_id, reference)? else {
        return Ok(None);
    };
    if existing.kind == kind && asked(&existing) == i128::from(amount) {
        return Ok(Some(existing));
    }
    Err(LedgerError::ReferenceReused {
        reference: reference.to_owned(),
        existing: format!("a {} of {}", existing.kind.as_str(), asked(&existing)),
    })
}

fn too_large() -> LedgerError {
    LedgerError::Invalid(format!(
        "`amount`: the balance would pass what is kept ({} to {} minor units)",
        i64::MIN,
        i64::MAX
    ))
}

/// Credits `amount` (> 0) to the account as a top-up. The same reference
/// and amount again: the first movement, `replayed`.
pub fn topup(
    tx: &Tx<'_>,
    account_id: &str,
    amount: i64,
    reference: &str,
    at: i64,
) -> Result<Posted, LedgerError> {
    credit(tx, account_id, Kind::Topup, amount, reference, at, None)
}

/// Gives `amount` (> 0) back to the account, as [`topup`] does.
pub fn refund(
    tx: &Tx<'_>,
    account_id: &str,
    amount: i64,
    reference: &str,
    at: i64,
    detail: Option<&Value>,
) -> Result<Posted, LedgerError> {
    credit(tx, account_id, Kind::Refund, amount, reference, at, detail)
}

fn credit(
    tx: &Tx<'_>,
    account_id: &str,
    kind: Kind,
    amount: i64,
    reference: &str,
    at: i64,
    detail: Option<&Value>,
) -> Result<Posted, LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::InvalidAmount {
            amount,
            rule: "money paid in is a whole number of minor units above zero",
        });
    }
    valid_reference(reference)?;
    let balance = q::locked_balance(tx, account_id)?
        .ok_or_else(|| LedgerError::NoAccount(account_id.to_owned()))?;
    if let Some(movement) = replayed(tx, account_id, reference, kind, amount)? {
        return Ok(Posted {
            movement,
            replayed: true,
        });
    }
    balance.checked_add(amount).ok_or_else(too_large)?;
    let movement = q::post(
        tx,
        &NewMovement {
            account_id,
            kind,
            amount,
            uncovered: 0,
            reference,
            at,
            detail,
        },
    )?;
    Ok(Posted {
        movement,
        replayed: false,
    })
}

/// What [`charge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    /// Taken from the balance (minor units, ≥ 0).
    pub charged: i64,
    /// Asked and not taken: a prepaid balance ran out. Zero when postpaid.
    pub uncovered: i64,
    pub balance_after: i64,
    /// The reference had this charge already: nothing was taken now, and
    /// this is the first answer.
    pub replayed: bool,
    /// The ledger row; `None` for a charge of zero, which records nothing.
    pub movement_id: Option<i64>,
}

/// Charges `amount` (≥ 0) to the account, billed as `billing`: prepaid,
/// at most the balance (never below zero; the rest is `uncovered`);
/// postpaid, all of it (the balance may go negative). A debit row is
/// recorded even when a prepaid balance covers none of it (amount 0,
/// all uncovered), so that the reference keeps its answer; a charge of
/// zero records nothing. The same reference and amount again: the first
/// answer, `replayed`. Runs in the caller's transaction, beside what the
/// charge is for.
pub fn charge(
    tx: &Tx<'_>,
    account_id: &str,
    billing: Billing,
    amount: i64,
    reference: &str,
    at: i64,
    detail: Option<&Value>,
) -> Result<Charged, LedgerError> {
    if amount < 0 {
        return Err(LedgerError::InvalidAmount {
            amount,
            rule: "a charge is a whole number of minor units, zero or more",
        });
    }
    valid_reference(reference)?;
    let balance = q::locked_balance(tx, account_id)?
        .ok_or_else(|| LedgerError::NoAccount(account_id.to_owned()))?;
    if let Some(first) = replayed(tx, account_id, reference, Kind::Debit, amount)? {
        return Ok(Charged {
            charged: -first.amount,
            uncovered: first.uncovered,
            balance_after: first.balance_after,
            replayed: true,
            movement_id: Some(first.id),
        });
    }
    if amount == 0 {
        return Ok(Charged {
            charged: 0,
            uncovered: 0,
            balance_after: balance,
            replayed: false,
            movement_id: None,
        });
    }
    let charged = match billing {
        Billing::Prepaid => amount.min(balance.max(0)),
        Billing::Postpaid => amount,
    };
    balance.checked_sub(charged).ok_or_else(too_large)?;
    let movement = q::post(
        tx,
        &NewMovement {
            account_id,
            kind: Kind::Debit,
            amount: -charged,
            uncovered: amount - charged,
            reference,
            at,
            detail,
        },
    )?;
    Ok(Charged {
        charged,
        uncovered: amount - charged,
        balance_after: movement.balance_after,
        replayed: false,
        movement_id: Some(movement.id),
    })
}

/// A PIN as a client sent it: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Pin(String);

impl Pin {
    pub fn new(pin: impl Into<String>) -> Pin {
        Pin(pin.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(..)")
    }
}

/// A PIN is 4 to 12 ASCII digits. The message never repeats it.
pub fn valid_pin(pin: &str) -> Result<(), LedgerError> {
    if (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(LedgerError::InvalidPin(
            "`pin` is 4 to 12 digits (0-9), nothing else".into(),
        ))
    }
}

/// Bytes of a PIN's salt.
pub const SALT_BYTES: usize = 16;

/// What the store keeps of `pin`: SHA-256 of `salt` then the PIN.
pub fn hash_pin(pin: &str, salt: &[u8]) -> [u8; 32] {
    secret::salted_digest(salt, pin.as_bytes())
}

/// Sets the account's PIN (a fresh salt, its hash); its wrong tries and
/// lock are forgotten. Does not change the account's version.
pub fn set_pin(
    tx: &Tx<'_>,
    account_id: &str,
    pin: &str,
    rng: &mut dyn Random,
) -> Result<(), LedgerError> {
    valid_pin(pin)?;
    let mut salt = [0u8; SALT_BYTES];
    rng.fill(&mut salt)?;
    if q::set_pin(tx, account_id, &salt, &hash_pin(pin, &salt))? {
        Ok(())
    } else {
        Err(LedgerError::NoAccount(account_id.to_owned()))
    }
}

/// When a PIN locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinPolicy {
    /// Wrong PINs in a row that lock it.
    pub lock_after: u32,
    /// How long a lock lasts.
    pub lock_for: Duration,
}

impl Default for PinPolicy {
    fn default() -> Self {
        PinPolicy {
            lock_after: 5,
            lock_for: Duration::from_secs(15 * 60),
        }
    }
}

/// The answer of [`verify_pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    Right,
    /// Wrong; `remaining` more wrong ones lock it.
    Wrong {
        remaining: u32,
    },
    /// Locked until then (ms): no PIN is tried, right or wrong. The try
    /// that locked it answers this too.
    Locked {
        until: i64,
    },
    /// The account has no PIN.
    NoPin,
}

/// Tries `pin` on the account at `now`. A wrong PIN (or one not 4 to 12
/// digits) is counted in `tx`: the caller must commit it (return `Ok` from
/// its write) whatever it then refuses, or the limit counts nothing. A
/// right PIN writes only when there were wrong ones to forget; a locked
/// PIN writes nothing.
pub fn verify_pin(
    tx: &Tx<'_>,
    account_id: &str,
    pin: &str,
    now: i64,
    policy: &PinPolicy,
) -> Result<PinCheck, LedgerError> {
    let no_account = || LedgerError::NoAccount(account_id.to_owned());
    let state = q::pin_state(tx, account_id)?.ok_or_else(no_account)?;
    let (Some(salt), Some(hash)) = (&state.salt, &state.hash) else {
        return Ok(PinCheck::NoPin);
    };
    if let Some(until) = state.locked_until
        && until > now
    {
        return Ok(PinCheck::Locked { until });
    }
    // Hashed whatever its shape, so the time says nothing of it.
    let right = secret::same_bytes(&hash_pin(pin, salt), hash) && valid_pin(pin).is_ok();
    if right {
        if state.failures != 0 {
            q::clear_pin_failures(tx, account_id)?;
        }
        return Ok(PinCheck::Right);
    }
    let lock_after = policy.lock_after.max(1);
    let lock_ms = i64::try_from(policy.lock_for.as_millis()).unwrap_or(i64::MAX);
    let after = q::record_pin_failure(tx, account_id, now, i64::from(lock_after), lock_ms)?
        .ok_or_else(no_account)?;
    Ok(match after.locked_until {
        Some(until) if until > now => PinCheck::Locked { until },
        _ => PinCheck::Wrong {
            remaining: lock_after.saturating_sub(u32::try_from(after.failures).unwrap_or(0)),
        },
    })
}

/// A uniform number below `bound` (> 0), by rejection: no value is likelier.
fn uniform_below(rng: &mut dyn Random, bound: u64) -> Result<u64, LedgerError> {
    // 2^64 mod bound: the values past the last whole multiple of `bound`.
    let excess = (u64::MAX % bound + 1) % bound;
    loop {
        let mut bytes = [0u8; 8];
        rng.fill(&mut bytes)?;
        let x = u64::from_le_bytes(bytes);
        if x <= u64::MAX - excess {
            return Ok(x % bound);
        }
    }
}

/// `n` (≤ 19) uniform random decimal digits, leading zeros kept.
fn random_digits(rng: &mut dyn Random, n: u32) -> Result<String, LedgerError> {
    let value = uniform_below(rng, 10u64.pow(n))?;
    Ok(format!("{value:0width$}", width = n as usize))
}

/// Most accounts one [`create_accounts`] makes.
pub const MAX_BATCH: u32 = 10_000;

/// Digits after the prefix of a made account's id.
pub const ID_DIGITS: u32 = 10;

/// Digits of a made account's PIN.
pub const NEW_PIN_DIGITS: u32 = 6;

/// What [`create_accounts`] makes.
#[derive(Debug, Clone, Copy)]
pub struct NewAccounts<'a> {
    /// Their group (not empty).
    pub group: &'a str,
    /// How many, 1 to [`MAX_BATCH`].
    pub count: u32,
    /// Each one's opening balance (≥ 0), a top-up with reference `opening`.
    pub opening_balance: i64,
    /// What each id starts with, before [`ID_DIGITS`] random digits.
    pub prefix: &'a str,
    pub billing: Billing,
}

/// A made account and its PIN, which is shown this once and kept only
/// hashed.
#[derive(Clone, Serialize)]
pub struct CreatedAccount {
    pub id: String,
    pub pin: String,
}

impl std::fmt::Debug for CreatedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAccount")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Tries for a free id before giving up (the prefix's ids are taken).
const ID_TRIES: u32 = 100;

/// Makes `batch.count` active, paid-up accounts in `batch.group`: ids
/// `{prefix}` and [`ID_DIGITS`] random digits (another draw when one is
/// taken), each with a fresh random 6-digit PIN (uniform, leading zeros
/// kept) and, when the opening balance is above zero, a top-up with
/// reference `opening`.
pub fn create_accounts(
    tx: &Tx<'_>,
    batch: &NewAccounts<'_>,
    now: i64,
    rng: &mut dyn Random,
) -> Result<Vec<CreatedAccount>, LedgerError> {
    if !(1..=MAX_BATCH).contains(&batch.count) {
        return Err(LedgerError::Invalid(format!(
            "`count` is {}; a batch makes 1 to {MAX_BATCH} accounts",
            batch.count
        )));
    }
    if batch.opening_balance < 0 {
        return Err(LedgerError::Invalid(format!(
            "`balance` is {}: an opening balance is a whole number of minor units, zero or more",
            batch.opening_balance
        )));
    }
    if batch.group.is_empty() {
        return Err(LedgerError::Invalid(
            "`group`: the accounts' group has a name".into(),
        ));
    }
    valid_group(batch.group)?;
    let sample = format!("{}{}", batch.prefix, "0".repeat(ID_DIGITS as usize));
    if !crate::entitlement::valid_id(&sample) {
        return Err(LedgerError::Invalid(format!(
            "`prefix`: an account id is 1-200 printable characters without spaces, `/`, `?` or `#`, and `{}` and {ID_DIGITS} digits is not",
            batch.prefix.escape_debug()
        )));
    }
    let mut made = Vec::with_capacity(batch.count as usize);
    for _ in 0..batch.count {
        let id = free_id(tx, batch.prefix, rng)?;
        let pin = random_digits(rng, NEW_PIN_DIGITS)?;
        put_account(
            tx,
            &AccountRow {
                id: id.clone(),
                status: "active".into(),
                paid_up: true,
                tier: String::new(),
                contract_end: None,
                contact: None,
                attributes: json!({}),
                updated_at: now,
                version: 0,
                group: batch.group.to_owned(),
                billing: batch.billing.as_str().to_owned(),
                has_pin: false,
            },
        )?;
        set_pin(tx, &id, &pin, rng)?;
        if batch.opening_balance > 0 {
            topup(tx, &id, batch.opening_balance, "opening", now)?;
        }
        made.push(CreatedAccount { id, pin });
    }
    Ok(made)
}

fn free_id(tx: &Tx<'_>, prefix: &str, rng: &mut dyn Random) -> Result<String, LedgerError> {
    for _ in 0..ID_TRIES {
        let id = format!("{prefix}{}", random_digits(rng, ID_DIGITS)?);
        if account_version(tx, &id)?.is_none() {
            return Ok(id);
        }
    }
    Err(LedgerError::Invalid(format!(
        "`prefix`: no free id found after {ID_TRIES} tries; the ids of `{}` are nearly all taken, choose another prefix",
        prefix.escape_debug()
    )))
}
