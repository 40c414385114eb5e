//! Communications (authorize, choose, complete), detail records with their
//! export, associations and preferred plans.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::access::Caller;
use super::json::{Json, Path, Query};
use super::{ApiError, AppState, blocking};
use crate::auth::Role;
use crate::entitlement::valid_id;
use crate::plans::{AuthorizeRequest, Authorized, CompleteRequest, PlansError, Record};
use crate::store::plans::RecordFilter;

impl From<PlansError> for ApiError {
    fn from(e: PlansError) -> Self {
        let e = match e {
            PlansError::Ledger(e) => return ApiError::from(e),
            PlansError::Store(e) => return ApiError::internal(e),
            e => e,
        };
        let status = match &e {
            PlansError::Invalid(_) | PlansError::InvalidDestination(_) | PlansError::NoPlan => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            PlansError::NoAccount(_)
            | PlansError::NoCommunication(_)
            | PlansError::UnknownAccessMethod(_)
            | PlansError::NoSuchPlan(_) => StatusCode::NOT_FOUND,
            PlansError::WrongPin { .. }
            | PlansError::NoPin(_)
            | PlansError::AccountInactive(..)
            | PlansError::Restricted { .. } => StatusCode::FORBIDDEN,
            PlansError::PinLocked { .. } => StatusCode::TOO_MANY_REQUESTS,
            PlansError::InsufficientBalance { .. } => StatusCode::PAYMENT_REQUIRED,
            PlansError::WrongState { .. } | PlansError::Conflict(_) => StatusCode::CONFLICT,
            PlansError::Plugin(_) => StatusCode::SERVICE_UNAVAILABLE,
            PlansError::Ledger(_) | PlansError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// `POST /v1/communications`.
pub async fn authorize(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<AuthorizeRequest>,
) -> Result<Response, ApiError> {
    let service = s
        .plans
        .registry()
        .plans
        .by_access_method(&body.access_method)
        .map(|p| p.service.clone());
    if let Some(service) = &service {
        caller.acting_for(service)?;
    }
    let answer = s.plans.clone().authorize_async(body).await?;
    let status = match answer {
        Authorized::Plan { .. } => StatusCode::CREATED,
        Authorized::Restricted { .. } => StatusCode::OK,
    };
    Ok((status, axum::Json(answer)).into_response())
}

/// 404 unless the communication exists and the caller may act for its service.
async fn owned(s: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if !valid_id(id) {
        return Err(ApiError::not_found(format!("no communication `{id}`")));
    }
    let plans = s.plans.clone();
    let key = id.to_owned();
    let service = blocking(move || Ok(plans.service_of(&key)?)).await?;
    match service {
        Some(service) if caller.0.acts_for(&service) => Ok(()),
        // Another service's communication is as good as none.
        _ => Err(PlansError::NoCommunication(id.to_owned()).into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceBody {
    #[serde(rename = "continue")]
    pub go_on: bool,
}

/// `POST /v1/communications/{id}/choice`.
pub async fn choice(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ChoiceBody>,
) -> Result<impl IntoResponse, ApiError> {
    owned(&s, &caller, &id).await?;
    let chosen = blocking(move || Ok(s.plans.choose(&id, body.go_on)?)).await?;
    Ok(axum::Json(chosen))
}

/// `POST /v1/communications/{id}/complete`.
pub async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<CompleteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("no communication `{id}`")));
    }
    let owner = match s.plans.known_owner(&id) {
        Some(owner) => Some(owner),
        None => {
            let plans = s.plans.clone();
            let key = id.clone();
            blocking(move || Ok(plans.owner_of(&key)?)).await?
        }
    };
    let account = match owner {
        Some(owner) if caller.0.acts_for(&owner.service) => owner.account,
        // Another service's communication is as good as none.
        _ => return Err(PlansError::NoCommunication(id).into()),
    };
    let record = s.plans.complete_async(id, &account, body).await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    from: Option<Timestamp>,
    #[serde(default)]
    to: Option<Timestamp>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
    /// `json` (the default), `jsonl` or `csv`.
    #[serde(default)]
    format: Option<String>,
}

const PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// An export holds at most this many records (default, and most); past
/// them, `X-Rulehost-Next` says where the next export starts.
const EXPORT_DEFAULT: u32 = 10_000;
const EXPORT_MAX: u32 = 100_000;
/// An export reads this many records per query.
const EXPORT_BATCH: u32 = 1000;

/// `GET /v1/records`: a page of records with `next`, or with
/// `format=jsonl|csv` a download of up to `limit` records (10,000 by
/// default, 100,000 at most) with `X-Rulehost-Next` when more match.
pub async fn records(
    State(s): State<AppState>,
    Query(q): Query<RecordsQuery>,
) -> Result<Response, ApiError> {
    if let Some(account) = &q.account
        && !valid_id(account)
    {
        return Err(ApiError::invalid("`account` is not an account id"));
    }
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !["json", "jsonl", "csv"].contains(&format.as_str()) {
        return Err(ApiError::invalid("`format` is `json`, `jsonl` or `csv`"));
    }
    let (default, most) = if format == "json" {
        (PAGE, MAX_PAGE)
    } else {
        (EXPORT_DEFAULT, EXPORT_MAX)
    };
    let limit = q.limit.unwrap_or(default);
    if !(1..=most).contains(&limit) {
        return Err(ApiError::invalid(format!("`limit` is from 1 to {most}")));
    }
    let plans = s.plans.clone();
    let (records, next) = blocking(move || {
        let mut filter = RecordFilter {
            account: q.account.as_deref(),
            from: q.from.map(|t| t.as_millisecond()),
            to: q.to.map(|t| t.as_millisecond()),
            after: q.after,
            limit: 0,
        };
        let mut all: Vec<Record> = Vec::new();
        // One more than asked tells whether more match.
        while all.len() <= limit as usize {
            filter.limit = EXPORT_BATCH.min(limit + 1 - all.len() as u32);
            let page = plans.records(filter.clone())?;
            let short = page.len() < filter.limit as usize;
            filter.after = page.last().map(|r| r.id).or(filter.after);
            all.extend(page);
            if short {
                break;
            }
        }
        let more = all.len() > limit as usize;
        all.truncate(limit as usize);
        let next = more.then(|| all.last().map(|r| r.id)).flatten();
        Ok((all, next))
    })
    .await?;
    let mut response = match format.as_str() {
        "jsonl" => download("application/x-ndjson", "records.jsonl", jsonl(&records)),
        "csv" => download("text/csv; charset=utf-8", "records.csv", csv(&records)),
        _ => return Ok(axum::Json(json!({"records": records, "next": next})).into_response()),
    };
    if let Some(next) = next
        && let Ok(value) = HeaderValue::from_str(&next.to_string())
    {
        response.headers_mut().insert("x-rulehost-next", value);
    }
    Ok(response)
}

fn download(content_type: &'static str, name: &str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

fn jsonl(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// One row per record; the charge lines as `kind:amount` joined by `;`.
fn csv(records: &[Record]) -> String {
    let mut out = String::from(
        "id,communication_id,service,account_id,plan,access_method,destination,region,started_at,duration_secs,answered,lines,total,charged,uncovered,balance_after,associated\n",
    );
    for r in records {
        let lines: Vec<String> = r
            .lines
            .iter()
            .map(|l| format!("{}:{}", l.kind, l.amount))
            .collect();
        let fields = [
            r.id.to_string(),
            r.communication_id.clone(),
            r.service.clone(),
            r.account_id.clone(),
            r.plan.clone(),
            r.access_method.clone(),
            r.destination.clone(),
            r.region.clone(),
            r.started_at.clone(),
            r.duration_secs.to_string(),
            r.answered.to_string(),
            lines.join(";"),
            r.total.to_string(),
            r.charged.to_string(),
            r.uncovered.to_string(),
            r.balance_after.to_string(),
            r.associated.to_string(),
        ];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

/// RFC 4180: quoted when it holds a comma, a quote or a line break; a
/// leading `=`, `+`, `-` or `@` is quoted too, so a spreadsheet does not
/// take the field for a formula.
fn csv_field(field: &str) -> String {
    let risky = field.starts_with(['=', '+', '-', '@']) && field.parse::<i64>().is_err();
    if risky || field.contains([',', '"', '\n', '\r']) {
        let prefix = if risky { "'" } else { "" };
        format!("\"{prefix}{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// `GET /v1/accounts/{id}/associations`.
pub async fn associations(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("no account `{id}`")));
    }
    let view = blocking(move || Ok(s.plans.associations(&id)?)).await?;
    Ok(axum::Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferredBody {
    /// A plan id, or `null` to clear: required, so a body that forgot it
    /// never clears anything.
    plan: serde_json::Value,
    set_by: String,
}

/// `PUT /v1/accounts/{id}/preferred-plan`.
pub async fn put_preferred(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PreferredBody>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("no account `{id}`")));
    }
    let plan = match body.plan {
        serde_json::Value::Null => None,
        serde_json::Value::String(plan) => Some(plan),
        _ => {
            return Err(ApiError::invalid(
                "`plan` is a plan id, or null to clear the preferred plan",
            ));
        }
    };
    if body.set_by == "administrator" && caller.0.role != Role::Operator {
        return Err(super::access::forbidden(
            "only an operator token sets a plan as `administrator`",
        ));
    }
    let view = blocking(move || Ok(s.plans.set_preferred(&id, plan, &body.set_by)?)).await?;
    Ok(axum::Json(view))
}

/// `GET /v1/accounts/{id}/preferred-plan`.
pub async fn get_preferred(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::not_found(format!("no account `{id}`")));
    }
    let view = blocking(move || Ok(s.plans.preferred(&id)?)).await?;
    Ok(axum::Json(view))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be_and_never_read_as_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "\"'=SUM(A1)\"");
    }
}
