//! Balances, top-ups and the ledger of an account; accounts made in bulk
//! for a group, each with a PIN shown once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::entitlement::account_id;
use super::json::{Json, Path, Query};
use super::{ApiError, AppState, blocking};
use crate::ledger::{self, Billing, LedgerError, NewAccounts};
use crate::store::{self, entitlement as q, ledger as money};

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            e @ LedgerError::NoAccount(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no-account", e.to_string())
            }
            e @ LedgerError::ReferenceReused { .. } => {
                ApiError::new(StatusCode::CONFLICT, "reference-reused", e.to_string())
            }
            e @ LedgerError::InvalidAmount { .. } => ApiError::invalid(e.to_string()),
            LedgerError::Invalid(m) => ApiError::invalid(m),
            LedgerError::InvalidPin(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-pin", m)
            }
            e @ LedgerError::Random(_) => ApiError::internal(e),
            LedgerError::Store(e) => ApiError::internal(e),
        }
    }
}

/// `GET /v1/accounts/{id}/balance`: `{"account_id", "balance", "billing"}`.
pub async fn balance(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    account_id(&id)?;
    let answer = blocking(move || {
        let (balance, billing) = s.entitlement.store().read(|c| {
            let Some(account) = q::get_account(c, &id)? else {
                return Err(LedgerError::NoAccount(id.clone()));
            };
            let balance = money::balance(c, &id)?.unwrap_or(0);
            Ok((balance, account.billing))
        })?;
        Ok(json!({"account_id": id, "balance": balance, "billing": billing}))
    })
    .await?;
    Ok(axum::Json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopupBody {
    amount: i64,
    reference: String,
}

/// `POST /v1/accounts/{id}/topup`: 201 `{"movement", "balance"}`; the same
/// request again, 200 and the same body; the reference with another
/// amount, 409 `reference-reused`.
pub async fn topup(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<TopupBody>,
) -> Result<impl IntoResponse, ApiError> {
    account_id(&id)?;
    let now = store::now_ms();
    // Through group commit: concurrent top-ups share commits, and run one
    // after another on the writer, so one reference credits once.
    let posted = s
        .entitlement
        .store()
        .write_async(move |tx| ledger::topup(tx, &id, body.amount, &body.reference, now))
        .await?;
    let status = if posted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let balance = posted.movement.balance_after;
    Ok((
        status,
        axum::Json(json!({"movement": posted.movement, "balance": balance})),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// Continue after this movement id.
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/accounts/{id}/ledger?after=&limit=`: the movements oldest
/// first, `{"movements": [...], "next": id | null}`.
pub async fn movements(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LedgerQuery>,
) -> Result<impl IntoResponse, ApiError> {
    account_id(&id)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let after = query
        .after
        .map(|after| {
            i64::try_from(after).map_err(|_| {
                ApiError::invalid(format!(
                    "`after` is `{after}`, larger than any movement id; give the `next` of the previous page"
                ))
            })
        })
        .transpose()?;
    let mut rows = blocking(move || {
        Ok(s.entitlement.store().read(|c| {
            if money::balance(c, &id)?.is_none() {
                return Err(LedgerError::NoAccount(id.clone()));
            }
            // One more than asked: whether a page follows.
            Ok(money::movements(c, &id, after, limit + 1)?)
        })?)
    })
    .await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|m| m.id)
    } else {
        None
    };
    Ok(axum::Json(json!({"movements": rows, "next": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccountsBody {
    count: u32,
    /// Each account's opening balance, minor units.
    #[serde(default)]
    balance: i64,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    billing: Billing,
}

/// `POST /v1/account-groups/{group}/accounts`: 201 `{"group", "accounts":
/// [{"id", "pin"}]}`. The PINs are in this answer only; the host keeps
/// their hashes.
pub async fn create_accounts(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Json(body): Json<NewAccountsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (group, made) = blocking(move || {
        let batch = NewAccounts {
            group: &group,
            count: body.count,
            opening_balance: body.balance,
            prefix: &body.prefix,
            billing: body.billing,
        };
        let now = store::now_ms();
        // Up to ten thousand accounts: one transaction of its own, off the
        // group commit's path.
        let made = s
            .entitlement
            .store()
            .write(|tx| ledger::create_accounts(tx, &batch, now, &mut ledger::OsRandom))?;
        tracing::info!(group = %group, count = made.len(), "made accounts");
        Ok((group, made))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"group": group, "accounts": made})),
    ))
}
