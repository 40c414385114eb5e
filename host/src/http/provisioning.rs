//! Provisioning on the internal API: organizations and users (operators),
//! and what a signed-in user does: get a token, make offers, add invitees,
//! read their status, directories and permissions.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::access::{Caller, UserCaller};
use super::json::{Json, Path, Query};
use super::{ApiError, AppState, blocking, hashing};
use crate::provisioning::{
    NewInvitees, NewOffer, NewOrganization, NewUser, ProvisioningError, Reader, User,
};

impl From<ProvisioningError> for ApiError {
    fn from(e: ProvisioningError) -> Self {
        let status = match &e {
            ProvisioningError::Invalid(_)
            | ProvisioningError::UnknownService(_)
            | ProvisioningError::Form(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ProvisioningError::Exists { .. } | ProvisioningError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            ProvisioningError::NotFound { .. } | ProvisioningError::WrongLink => {
                StatusCode::NOT_FOUND
            }
            ProvisioningError::Forbidden(_) | ProvisioningError::AccessDenied => {
                StatusCode::FORBIDDEN
            }
            ProvisioningError::BadCredentials => StatusCode::UNAUTHORIZED,
            ProvisioningError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProvisioningError::Expired { .. } => StatusCode::GONE,
            ProvisioningError::Random(_)
            | ProvisioningError::Hash(_)
            | ProvisioningError::Flow(_)
            | ProvisioningError::Store(_) => return ApiError::internal(e),
        };
        let retry_after = match &e {
            ProvisioningError::Locked { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let error = ApiError::new(status, e.code(), e.to_string());
        match retry_after {
            Some(seconds) => error.retry_after(seconds),
            None => error,
        }
    }
}

/// Who calls a route for users: a user, or an API token (operator or
/// viewer, reading).
pub enum Acting {
    /// A user, and the user token they signed in with (none: the password).
    User(Arc<User>, Option<String>),
    Token,
}

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<UserCaller>() {
            return Ok(Acting::User(caller.user.clone(), caller.token.clone()));
        }
        if parts.extensions.get::<Caller>().is_some() {
            return Ok(Acting::Token);
        }
        Err(ApiError::internal(
            "a handler that needs its caller is on an open route",
        ))
    }
}

impl Acting {
    fn reader(&self) -> Reader<'_> {
        match self {
            Acting::User(user, _) => Reader::User(user),
            Acting::Token => Reader::Operator,
        }
    }

    /// The user, for what only a user may do.
    fn user(self, what: &str) -> Result<Arc<User>, ApiError> {
        match self {
            Acting::User(user, _) => Ok(user),
            Acting::Token => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{what} takes a user's credentials (HTTP Basic or a user token), not an API token"
                ),
            )),
        }
    }
}

/// `POST /v1/organizations` (operator): 201 the organization.
pub async fn create_organization(
    State(s): State<AppState>,
    Json(body): Json<NewOrganization>,
) -> Result<impl IntoResponse, ApiError> {
    let made = blocking(move || Ok(s.provisioning.create_organization(body)?)).await?;
    Ok((StatusCode::CREATED, axum::Json(made)))
}

/// `POST /v1/users` (operator): 201 the user (never the password).
pub async fn create_user(
    State(s): State<AppState>,
    Json(body): Json<NewUser>,
) -> Result<impl IntoResponse, ApiError> {
    let made = hashing(move || Ok(s.provisioning.create_user(body)?)).await?;
    Ok((StatusCode::CREATED, axum::Json(made)))
}

/// `GET /v1/users/{id}`.
pub async fn user(
    State(s): State<AppState>,
    acting: Acting,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let view = blocking(move || Ok(s.provisioning.user(acting.reader(), &id)?)).await?;
    Ok(axum::Json(view))
}

/// `GET /v1/users/{id}/directory`.
pub async fn directory(
    State(s): State<AppState>,
    acting: Acting,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let view = blocking(move || Ok(s.provisioning.directory(acting.reader(), &id)?)).await?;
    Ok(axum::Json(view))
}

/// `POST /v1/user-tokens`: 201 a token for the signed-in user.
pub async fn create_token(
    State(s): State<AppState>,
    acting: Acting,
) -> Result<impl IntoResponse, ApiError> {
    // Only the password makes a token: a token that could make its own
    // successor would never expire.
    if let Acting::User(_, Some(_)) = acting {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a user token is made with the user's password (HTTP Basic), not with another token",
        ));
    }
    let user = acting.user("a user token")?;
    let issued = blocking(move || Ok(s.provisioning.issue_token(&user)?)).await?;
    let mut response = (StatusCode::CREATED, axum::Json(issued)).into_response();
    no_store(&mut response);
    Ok(response)
}

/// `POST /v1/user-tokens/revoke`: with a user token, that token ends;
/// with the password, every token of the user does (a lost one among them).
pub async fn revoke_tokens(
    State(s): State<AppState>,
    acting: Acting,
) -> Result<impl IntoResponse, ApiError> {
    let Acting::User(user, token) = acting else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "revoking user tokens takes the user's credentials, not an API token",
        ));
    };
    let revoked = blocking(move || match token {
        Some(token) => {
            s.provisioning.sign_out(&token)?;
            Ok(1)
        }
        None => Ok(s.provisioning.revoke_tokens(&user)?),
    })
    .await?;
    Ok(axum::Json(serde_json::json!({ "revoked": revoked })))
}

/// `POST /v1/offers`: 201 `{"id", "expires_at", "expiry_chosen", …}`.
pub async fn make_offer(
    State(s): State<AppState>,
    acting: Acting,
    Json(body): Json<NewOffer>,
) -> Result<impl IntoResponse, ApiError> {
    let user = acting.user("making an offer")?;
    let made = blocking(move || Ok(s.provisioning.make_offer(&user, body)?)).await?;
    Ok((StatusCode::CREATED, axum::Json(made)))
}

/// `GET /v1/offers`: the signed-in user's offers, newest first.
pub async fn offers(
    State(s): State<AppState>,
    acting: Acting,
) -> Result<impl IntoResponse, ApiError> {
    let user = acting.user("listing one's offers")?;
    let list = blocking(move || Ok(s.provisioning.offers_of(&user)?)).await?;
    Ok(axum::Json(serde_json::json!({ "offers": list })))
}

/// `POST /v1/offers/{id}/invitees`: 201 each invitee's id (and link, when
/// the provider sends it).
pub async fn add_invitees(
    State(s): State<AppState>,
    acting: Acting,
    Path(id): Path<String>,
    Json(body): Json<NewInvitees>,
) -> Result<impl IntoResponse, ApiError> {
    let user = acting.user("adding invitees")?;
    let made = blocking(move || Ok(s.provisioning.add_invitees(&user, &id, body)?)).await?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "invitees": made })),
    )
        .into_response();
    // The links are secrets.
    no_store(&mut response);
    Ok(response)
}

/// `GET /v1/offers/{id}`.
pub async fn offer(
    State(s): State<AppState>,
    acting: Acting,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let view = blocking(move || Ok(s.provisioning.offer(acting.reader(), &id)?)).await?;
    Ok(axum::Json(view))
}

/// `GET /v1/offers/{id}/invitees/{iid}`.
pub async fn invitee(
    State(s): State<AppState>,
    acting: Acting,
    Path((id, iid)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let view = blocking(move || Ok(s.provisioning.invitee(acting.reader(), &id, &iid)?)).await?;
    Ok(axum::Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionQuery {
    service: Option<String>,
    grantee: Option<String>,
}

/// `GET /v1/permissions?service=&grantee=`.
pub async fn permissions(
    State(s): State<AppState>,
    acting: Acting,
    Query(q): Query<PermissionQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let list = blocking(move || {
        Ok(s.provisioning.permissions(
            acting.reader(),
            q.service.as_deref(),
            q.grantee.as_deref(),
        )?)
    })
    .await?;
    Ok(axum::Json(serde_json::json!({ "permissions": list })))
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
