//! A plugin's stdout or stderr, captured for the log. Written by the guest
//! through WASI, drained by the host after each call; the `written` flag
//! makes the common case (nothing printed) one atomic load.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Clone)]
pub(crate) struct CapturedOutput {
    inner: Arc<Captured>,
}

struct Captured {
    buffer: Mutex<Vec<u8>>,
    written: AtomicBool,
    dropped: AtomicUsize,
    /// Bytes kept per call; more is counted and dropped, never a trap.
    capacity: usize,
}

impl CapturedOutput {
    pub(crate) fn new(capacity: usize) -> Self {
        CapturedOutput {
            inner: Arc::new(Captured {
                buffer: Mutex::new(Vec::new()),
                written: AtomicBool::new(false),
                dropped: AtomicUsize::new(0),
                capacity,
            }),
        }
    }

    fn buffer(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding this lock leaves only bytes behind: keep going.
        self.inner.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was written since the last take, and how many bytes were dropped.
    pub(crate) fn take(&self) -> Option<(Vec<u8>, usize)> {
        if !self.inner.written.swap(false, Ordering::Acquire) {
            return None;
        }
        let bytes = std::mem::take(&mut *self.buffer());
        Some((bytes, self.inner.dropped.swap(0, Ordering::Relaxed)))
    }

    fn append(&self, bytes: &[u8]) -> usize {
        let mut buffer = self.buffer();
        let room = self.inner.capacity.saturating_sub(buffer.len());
        let kept = bytes.len().min(room);
        buffer.extend_from_slice(&bytes[..kept]);
        if kept < bytes.len() {
            self.inner
                .dropped
                .fetch_add(bytes.len() - kept, Ordering::Relaxed);
        }
        self.inner.written.store(true, Ordering::Release);
        bytes.len()
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: what does not fit is dropped, not blocked on.
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(self.append(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_written_takes_nothing_and_overflow_is_counted() {
        let out = CapturedOutput::new(4);
        assert!(out.take().is_none());
        out.append(b"hello");
        assert_eq!(out.take(), Some((b"hell".to_vec(), 1)));
        assert!(out.take().is_none(), "taking drains");
    }
}
