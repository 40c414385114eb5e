//! Accounts as the host keeps them (embedded account management).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EntitlementError;
use crate::contract::{Account, AccountStatus, Contact, Properties};
use crate::ledger::{self, Billing, Pin};
use crate::store::entitlement::AccountRow;
use crate::store::rfc3339;
use crate::text;

/// The body of `PUT /v1/accounts/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub status: AccountStatus,
    pub paid_up: bool,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub contract_end: Option<Timestamp>,
    #[serde(default)]
    pub contact: Option<Contact>,
    #[serde(default)]
    pub attributes: Properties,
    /// The account's group (plans may depend on it); `""`: none.
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub billing: Billing,
    /// A new PIN; absent, the stored one stays. Never shown.
    #[serde(default)]
    pub pin: Option<Pin>,
}

/// An account as the API shows it: never its PIN or the PIN's hash.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    #[serde(flatten)]
    pub account: Account,
    pub group: String,
    pub billing: String,
    pub has_pin: bool,
    pub updated_at: String,
}

/// Ids of accounts and requests: printable, no spaces, at most 200 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?' && b != b'#')
}

/// Attribute keys are one line of text, values free text ([`text`]).
pub fn valid_attributes(attributes: &Properties) -> Result<(), EntitlementError> {
    for (key, value) in attributes.iter() {
        text::line("attributes", key)
            .and_then(|()| text::free_text(&format!("attributes.{key}"), value))
            .map_err(EntitlementError::Invalid)?;
    }
    Ok(())
}

impl AccountInput {
    pub fn validate(&self) -> Result<(), EntitlementError> {
        if let Some(contact) = &self.contact {
            if !contact.email.contains('@')
                || contact.email.len() > 254
                || contact
                    .email
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(EntitlementError::Invalid(format!(
                    "contact email `{}` is not an email address",
                    contact.email.escape_debug()
                )));
            }
            text::line("contact.name", &contact.name).map_err(EntitlementError::Invalid)?;
        }
        text::line("tier", &self.tier).map_err(EntitlementError::Invalid)?;
        ledger::valid_group(&self.group).map_err(|e| EntitlementError::Invalid(e.to_string()))?;
        valid_attributes(&self.attributes)
    }

    /// The row to store; the PIN is not in it (`ledger::set_pin` sets it).
    pub fn into_row(self, id: &str, now: i64) -> AccountRow {
        AccountRow {
            group: self.group,
            billing: self.billing.as_str().into(),
            ..account_row(
                &Account {
                    id: id.into(),
                    status: self.status,
                    paid_up: self.paid_up,
                    tier: self.tier,
                    contract_end: self.contract_end,
                    contact: self.contact,
                    attributes: self.attributes,
                },
                now,
            )
        }
    }
}

/// The row of a contract account: no group, prepaid, as a new account
/// starts (whoever replaces a stored account keeps its group and billing).
pub fn account_row(a: &Account, now: i64) -> AccountRow {
    AccountRow {
        id: a.id.clone(),
        status: status_str(a.status).into(),
        paid_up: a.paid_up,
        tier: a.tier.clone(),
        contract_end: a.contract_end.map(|t| t.as_millisecond()),
        contact: a
            .contact
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok()),
        attributes: serde_json::to_value(&a.attributes).unwrap_or(Value::Null),
        updated_at: now,
        // The store bumps it on every change.
        version: 0,
        group: String::new(),
        billing: Billing::Prepaid.as_str().into(),
        has_pin: false,
    }
}

fn status_str(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "active",
        AccountStatus::Expired => "expired",
        AccountStatus::Suspended => "suspended",
    }
}

/// The contract's view of a stored account.
pub fn to_account(row: &AccountRow) -> Result<Account, EntitlementError> {
    let corrupt = |what: &str| {
        EntitlementError::Store(crate::store::StoreError::Corrupt(format!(
            "account `{}`: {what}",
            row.id
        )))
    };
    Ok(Account {
        id: row.id.clone(),
        status: serde_json::from_value(Value::from(row.status.clone()))
            .map_err(|_| corrupt("status"))?,
        paid_up: row.paid_up,
        tier: row.tier.clone(),
        contract_end: row
            .contract_end
            .map(Timestamp::from_millisecond)
            .transpose()
            .map_err(|_| corrupt("contract_end"))?,
        contact: row
            .contact
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| corrupt("contact"))?,
        attributes: serde_json::from_value(row.attributes.clone())
            .map_err(|_| corrupt("attributes"))?,
    })
}

pub fn view(row: &AccountRow) -> Result<AccountView, EntitlementError> {
    Ok(AccountView {
        account: to_account(row)?,
        group: row.group.clone(),
        billing: row.billing.clone(),
        has_pin: row.has_pin,
        updated_at: rfc3339(row.updated_at),
    })
}
