//! The internal API's extractors, whose every rejection is an `ApiError`:
//! JSON bodies (through the door of [`super::inspect`]), raw bodies, path
//! parameters and query strings.
//!
//! A JSON body: 413 over [`MAX_BODY`], 408 when it does not arrive within
//! the listener's body timeout, 400 when it is not JSON, 422 (naming the
//! field) when it is JSON of the wrong shape or breaks the door's rules.
//! No content type is required.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::inspect::{MAX_BODY, Refusal, inspect};

pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read(req, state, MAX_BODY).await?;
        parse(&bytes).map(Json)
    }
}

/// A body taken as bytes (a plugin's `.wasm`), within the route's own
/// `DefaultBodyLimit`, which `limit` must repeat for the message.
pub struct RawBody<const LIMIT: usize>(pub Bytes);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for RawBody<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read(req, state, LIMIT).await.map(RawBody)
    }
}

/// Reads a whole body; `limit` is the route's, for the message.
async fn read<S: Send + Sync>(req: Request, state: &S, limit: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the body is over the limit of {} KiB", limit >> 10),
            )
        } else if timed_out(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive within the listener's body timeout (`body_timeout_seconds`); send it whole, at once",
            )
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
        }
    })
}

/// Whether reading the body failed on the edge's body deadline.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Parses a body; empty means `{}` so that all-optional bodies may be omitted.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    inspect(bytes).map_err(refused)?;
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut reader)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|value| reader.end().map(|()| value).map_err(|e| (".".into(), e)));
    match parsed {
        Ok(value) => Ok(value),
        Err((path, e)) if e.classify() == serde_json::error::Category::Data => {
            Err(ApiError::invalid(at(&path, &e)))
        }
        Err(_) => Err(reparse::<T>(bytes)),
    }
}

/// serde_json reports some wrong types as syntax: a number where an enum's
/// name belongs is "expected value". A body that reads as a JSON value is
/// well formed, so the fault is its data's: found again on the value, with
/// the field.
fn reparse<T: DeserializeOwned>(bytes: &[u8]) -> ApiError {
    match serde_json::from_slice::<Value>(bytes) {
        Err(e) => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
        Ok(value) => match serde_path_to_error::deserialize::<_, T>(value) {
            Err(e) => ApiError::invalid(at(&e.path().to_string(), e.inner())),
            // Not reached: the value is the body.
            Ok(_) => ApiError::invalid("the body does not have the shape this route takes"),
        },
    }
}

/// The message of a data error, led by the field it is about.
fn at(path: &str, e: &serde_json::Error) -> String {
    if path == "." || path.is_empty() {
        e.to_string()
    } else {
        format!("`{path}`: {e}")
    }
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        too_deep @ Refusal::TooDeep { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-deep",
            too_deep.to_string(),
        ),
        other => ApiError::invalid(other.to_string()),
    }
}

/// A query-string extractor whose rejection is a JSON 422.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
    }
}

/// A path-parameter extractor whose rejection is a JSON 400 (a segment
/// that is not percent-encoded UTF-8, say).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the path cannot be read: {}; ids are UTF-8 text, percent-encoded",
                    e.body_text()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::contract::AccountStatus;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        status: AccountStatus,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn error(text: &str) -> ApiError {
        parse::<Body>(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_wrong_type_is_a_422_naming_the_field_even_for_an_enum() {
        let e = error(r#"{"status": 5}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{e:?}");
        assert!(
            e.message.starts_with("`status`: invalid type: integer `5`"),
            "{e:?}"
        );
        let e = error(r#"{"status": "active", "inner": {"count": "x"}}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{e:?}");
        assert!(
            e.message.starts_with("`inner.count`: invalid type: string"),
            "{e:?}"
        );
        let e = error(r#"{"status": "gone"}"#);
        assert!(
            e.message.contains("`status`: unknown variant `gone`"),
            "{e:?}"
        );
        let e = error(r#"{}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{e:?}");
        assert!(e.message.contains("missing field `status`"), "{e:?}");
    }

    #[test]
    fn malformed_json_is_a_400_and_the_door_a_422() {
        for text in [
            r#"{"status": "#,
            r#"{"status": "active"} x"#,
            "nope",
            r#"{"status": 5"#,
        ] {
            let e = error(text);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{text}: {e:?}");
            assert!(e.message.starts_with("the body is not valid JSON"), "{e:?}");
        }
        let deep = format!(
            "{{\"status\": \"active\", \"x\": {}1{}}}",
            "[".repeat(64),
            "]".repeat(64)
        );
        let e = error(&deep);
        assert_eq!((e.status.as_u16(), e.code), (422, "too-deep"), "{e:?}");
        let e = error(r#"{"status": "active\u0000"}"#);
        assert_eq!((e.status.as_u16(), e.code), (422, "invalid"), "{e:?}");
    }
}
