//! A JSON body extractor whose every rejection is an `ApiError`: 400 for
//! malformed JSON, 413 for an oversize body, 415 without a JSON content type
//! being required, 422 for JSON of the wrong shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body, in bytes.
pub const MAX_BODY: usize = 1 << 20;

pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("the body is over the limit of {} KiB", MAX_BODY >> 10),
                )
            } else {
                ApiError::bad_request(format!("cannot read the body: {e}"))
            }
        })?;
        parse(&bytes).map(Json)
    }
}

/// Parses a body; empty means `{}` so that all-optional bodies may be omitted.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
        _ => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
    })
}

/// A query-string extractor whose rejection is a JSON 422.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
    }
}
