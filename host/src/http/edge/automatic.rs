//! hyper answers a request it cannot parse by itself, before any router
//! sees it: 400 (a bad request line or header), 414 (a URI over 64 KiB),
//! 431 (headers over its buffer), each with an empty body. The connection
//! here gives those answers the listener's error body instead (the JSON
//! error shape on the internal API, a short page on the public site).
//!
//! hyper writes such an answer as the first bytes of a write, with
//! `content-length: 0`, and closes the connection after it; the router
//! never answers these statuses with an empty body, so the match is exact.
//! (An automatic answer written behind a pipelined response in the same
//! write keeps hyper's empty body.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The body a listener gives hyper's automatic answers.
#[derive(Debug, Clone, Copy)]
pub enum ErrorBody {
    /// `{"error": {"code", "message"}}`, as the internal API answers.
    Json,
    /// A short HTML page with the public site's security headers.
    Html,
}

impl ErrorBody {
    /// The whole replacement response for hyper's automatic `status`.
    fn response(self, status: StatusCode) -> Vec<u8> {
        let (code, message) = match status {
            StatusCode::URI_TOO_LONG => (
                "uri-too-long",
                "the request's path and query are over 65534 bytes; send data in a JSON body",
            ),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                "headers-too-large",
                "the request's headers are over the limit of 400 KiB",
            ),
            _ => (
                "malformed",
                "the request is not valid HTTP/1.1 (its request line, method, version or a header)",
            ),
        };
        let reason = status.canonical_reason().unwrap_or("Error");
        let (content_type, extra, body) = match self {
            ErrorBody::Json => (
                "application/json",
                String::new(),
                serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
            ),
            ErrorBody::Html => (
                "text/html; charset=utf-8",
                super::super::public::SECURITY_HEADERS
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}\r\n"))
                    .collect(),
                format!(
                    "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{reason}</title><h1>{reason}</h1><p>The request could not be read: {message}. Nothing was changed.</p></html>"
                ),
            ),
        };
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            status.as_u16(),
            body.len()
        )
        .into_bytes()
    }
}

/// Whether `bytes` begin hyper's automatic answer: its status if so.
fn automatic(bytes: &[u8]) -> Option<StatusCode> {
    let status = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))?
        .get(..3)?;
    let status = match status {
        b"400" => StatusCode::BAD_REQUEST,
        b"414" => StatusCode::URI_TOO_LONG,
        b"431" => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = bytes.get(..head_end + 2)?.to_ascii_lowercase();
    head.windows(21)
        .any(|w| w == b"\r\ncontent-length: 0\r\n")
        .then_some(status)
}

/// A connection whose automatic answers carry [`ErrorBody`].
pub struct Connection<S> {
    inner: S,
    errors: ErrorBody,
    /// A replacement being written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Connection<S> {
    pub fn new(inner: S, errors: ErrorBody) -> Self {
        Connection {
            inner,
            errors,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> Connection<S> {
    /// Writes out the replacement, if one is queued.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let Some(rest) = bytes.get(*written..).filter(|rest| !rest.is_empty()) else {
                self.pending = None;
                break;
            };
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues the replacement when `first` is an automatic answer.
    fn replaced(&mut self, first: &[u8]) -> bool {
        match automatic(first) {
            Some(status) => {
                self.pending = Some((self.errors.response(status), 0));
                true
            }
            None => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Connection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if self.replaced(buf) {
            // Taken whole; written out by the flush that follows.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let first = bufs.iter().find(|b| !b.is_empty());
        if first.is_some_and(|first| self.replaced(first)) {
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_automatic_answers_are_recognised() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Sun, 30 Nov 2026 10:00:00 GMT\r\n\r\n";
        assert_eq!(automatic(hyper), Some(StatusCode::URI_TOO_LONG));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n{}";
        assert_eq!(automatic(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic(ok), None);
        let longer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 05\r\n\r\n";
        assert_eq!(automatic(longer), None);
    }

    #[test]
    fn the_replacement_is_a_whole_response_in_the_listeners_shape() {
        let json = String::from_utf8(ErrorBody::Json.response(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = json.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["error"]["code"], "uri-too-long");
        let html = String::from_utf8(ErrorBody::Html.response(StatusCode::BAD_REQUEST)).unwrap();
        assert!(html.contains("x-frame-options: DENY"), "{html}");
        assert!(html.contains("<h1>Bad Request</h1>"), "{html}");
    }
}
