//! Services, accounts, checks, decisions and requests.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{Caller, forbidden};
use super::json::{Json, Path, Query};
use super::{ApiError, AppState, blocking};
use crate::auth::Role;
use crate::contract::Billing;
use crate::entitlement::{AccountInput, CheckRequest, EntitlementError, valid_id};
use crate::ledger;
use crate::store::{self, entitlement as q};

impl From<EntitlementError> for ApiError {
    fn from(e: EntitlementError) -> Self {
        match e {
            e @ EntitlementError::UnknownService { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-service",
                e.to_string(),
            ),
            EntitlementError::NotFound(m) => ApiError::not_found(m),
            EntitlementError::Invalid(m) => ApiError::invalid(m),
            EntitlementError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            // The plugin failed, not the client: no decision was made.
            EntitlementError::Plugin(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "plugin-error", m)
            }
            EntitlementError::Store(e) => ApiError::internal(e),
            // Entitlement drives flows it built itself: a flow error here is ours.
            EntitlementError::Flow(e) => ApiError::internal(e),
            EntitlementError::Internal(m) => ApiError::internal(m),
        }
    }
}

pub async fn services(State(s): State<AppState>) -> impl IntoResponse {
    let registry = s.entitlement.registry();
    let services: Vec<Value> = registry
        .services
        .values()
        .map(|service| {
            let plugins: serde_json::Map<String, Value> = service
                .bindings
                .iter()
                .map(|(capability, binding)| {
                    let plugin = binding.plugin();
                    (capability.manifest_key().to_owned(), json!({"name": plugin.name(), "digest": plugin.digest(), "contract": plugin.contract().to_string()}))
                })
                .collect();
            let m = &service.manifest;
            json!({
                "id": m.id, "display_name": m.display_name, "webhook": m.webhook, "plugins": plugins, "config": m.config,
                "limits": {"memory_mib": m.limits.memory_bytes >> 20, "timeout_ms": m.limits.timeout.as_millis() as u64,
                           "output_kib": m.limits.output_bytes >> 10, "instances": m.limits.instances},
                "on_plugin_error": m.on_plugin_error,
            })
        })
        .collect();
    axum::Json(json!({"services": services}))
}

pub(super) fn account_id(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "an account id is 1-200 printable characters without spaces, `/`, `?` or `#`",
        ))
    }
}

pub async fn put_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<AccountInput>,
) -> Result<impl IntoResponse, ApiError> {
    account_id(&id)?;
    body.validate()?;
    // Accounts are shared by every service: what lets one spend an
    // account's money (its PIN, postpaid billing) is the operator's.
    if caller.0.role != Role::Operator && (body.pin.is_some() || body.billing == Billing::Postpaid)
    {
        return Err(forbidden(
            "only an operator token sets a PIN or postpaid billing: accounts are shared by every service",
        ));
    }
    if let Some(pin) = &body.pin {
        ledger::valid_pin(pin.as_str())?;
    }
    let (created, view) = blocking(move || {
        let pin = body.pin.clone();
        let row = body.into_row(&id, store::now_ms());
        // The account, its PIN when one is given (else the stored one
        // stays), and the row as stored, in one transaction.
        let (created, stored) = s.entitlement.store().write(|tx| {
            let created = q::put_account(tx, &row)?;
            if let Some(pin) = &pin {
                ledger::set_pin(tx, &id, pin.as_str(), &mut ledger::OsRandom)?;
            }
            let stored = q::get_account(tx, &id)?.ok_or_else(|| {
                store::StoreError::Corrupt(format!("account `{id}` is gone after its write"))
            })?;
            Ok::<_, ledger::LedgerError>((created, stored))
        })?;
        Ok((created, crate::entitlement::account_view(&stored)?))
    })
    .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(view),
    ))
}

pub async fn get_account(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    account_id(&id)?;
    let view = blocking(move || {
        let row = s.entitlement.store().read(|c| q::get_account(c, &id))?;
        let row = row.ok_or_else(|| ApiError::not_found(format!("no account `{id}`")))?;
        Ok(crate::entitlement::account_view(&row)?)
    })
    .await?;
    Ok(axum::Json(view))
}

pub async fn check(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CheckRequest>,
) -> Result<impl IntoResponse, ApiError> {
    // Before anything is decided or stored.
    caller.acting_for(&body.service)?;
    // Decided on the blocking pool, recorded through group commit: no
    // executor thread runs a plugin, no handler holds a thread while the
    // commit runs.
    let response = s.entitlement.clone().check_async(body).await?;
    Ok(axum::Json(response))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    service: Option<String>,
    account: Option<String>,
    limit: Option<u32>,
    /// Continue after this decision id, in the listing's order.
    after: Option<u64>,
    order: Option<ListOrder>,
}

/// `order=asc|desc`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ListOrder {
    Asc,
    Desc,
}

/// The services of a `service` token; `None` for roles that read every service.
fn own_services(caller: &Caller) -> Option<&[String]> {
    (caller.0.role == crate::auth::Role::Service).then_some(caller.0.services.as_slice())
}

/// The decision log, a page at a time: `{"decisions": [...], "next": id}`,
/// `next` being the `after` of the following page, `null` on the last.
pub async fn decisions(
    State(s): State<AppState>,
    caller: Caller,
    Query(query): Query<DecisionsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    // A service token reads its own services' decisions, named.
    if let Some(services) = own_services(&caller) {
        match &query.service {
            Some(service) if services.contains(service) => {}
            _ => {
                return Err(forbidden(format!(
                    "token `{}` reads the decisions of its own services only: add `service=` with one of {}",
                    caller.0.name,
                    services.join(", ")
                )));
            }
        }
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let after = query
        .after
        .map(|after| {
            i64::try_from(after).map_err(|_| {
                ApiError::invalid(format!(
                    "`after` is `{after}`, larger than any decision id; give the `next` of the previous page"
                ))
            })
        })
        .transpose()?;
    let order = match query.order {
        Some(ListOrder::Asc) => q::Order::Asc,
        Some(ListOrder::Desc) | None => q::Order::Desc,
    };
    let mut rows = blocking(move || {
        let filter = q::DecisionFilter {
            service: query.service.as_deref(),
            account: query.account.as_deref(),
            ..q::DecisionFilter::default()
        };
        // One more than asked: whether a page follows.
        Ok(s.entitlement
            .store()
            .read(|c| q::page_decisions(c, &filter, order, after, limit + 1))?)
    })
    .await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|d| d.id)
    } else {
        None
    };
    Ok(axum::Json(json!({"decisions": rows, "next": next})))
}

pub async fn request(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let row = blocking(move || {
        let row = s.entitlement.store().read(|c| q::get_request(c, &id))?;
        // Another service's request is answered as no request: a service
        // learns nothing of the others' request ids.
        row.filter(|r| caller.0.reads_for(&r.service))
            .ok_or_else(|| ApiError::not_found(format!("no request `{id}`")))
    })
    .await?;
    Ok(axum::Json(row))
}

/// `POST /v1/reconciliations/{id}/link`: a fresh single-use link; the old
/// one dies, a lock is lifted, and the contact is sent the new one.
pub async fn reissue_link(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let entitlement = s.entitlement.clone();
    let services = own_services(&caller).map(<[String]>::to_vec);
    let reissued =
        blocking(move || Ok(entitlement.reissue_link(&id, services.as_deref())?)).await?;
    Ok(axum::Json(reissued))
}
