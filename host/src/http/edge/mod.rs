//! The listeners' edge: how connections are taken, bounded and timed out
//! before a request reaches a router. Both listeners (the internal API and
//! the public site) are served here, each with its own [`Limits`], all
//! composed in [`serve`]:
//!
//! - at most `max_connections` open at once: a permit is taken before
//!   `accept`, so past the bound new connections wait in the kernel's accept
//!   queue and hold no descriptor of the process ([`descriptors`] sizes the
//!   bounds to the open-files limit);
//! - at most `max_per_address` from one client address (the public site):
//!   more are closed at once;
//! - HTTP/1.1 through hyper, with its `header_read_timeout`: a request's head
//!   must arrive within `header_timeout` of the connection's opening or of
//!   the previous answer, so it is also the keep-alive idle timeout; a
//!   connection past it is closed;
//! - the body within `body_timeout` of the head (tower-http's
//!   `RequestBodyDeadlineLayer`); the extractors answer 408;
//! - hyper's own answers to requests it cannot parse carry the listener's
//!   error body ([`automatic`]).

pub mod automatic;
pub mod descriptors;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyDeadlineLayer;

pub use automatic::ErrorBody;

/// One listener's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address (`None`: no bound
    /// but `max_connections`).
    pub max_per_address: Option<usize>,
    /// For a request's head, from the connection's opening or the previous
    /// answer (so also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// For a request's whole body, from its head.
    pub body_timeout: Duration,
}

/// Which of the two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Internal,
    Public,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Internal, Listener::Public];

    pub fn name(self) -> &'static str {
        match self {
            Listener::Internal => "internal",
            Listener::Public => "public",
        }
    }

    /// Its counters since start, for `/metrics`.
    pub fn stats(self) -> &'static ListenerStats {
        static INTERNAL: ListenerStats = ListenerStats::new();
        static PUBLIC: ListenerStats = ListenerStats::new();
        match self {
            Listener::Internal => &INTERNAL,
            Listener::Public => &PUBLIC,
        }
    }
}

/// What a listener's edge did, for `/metrics` (one process serves one pair
/// of listeners, so these live as long as it).
#[derive(Debug)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicI64,
    /// Connections taken since start.
    pub accepted: AtomicU64,
    /// Connections closed at once: their address had its bound open.
    pub refused: AtomicU64,
    /// Connections closed because a request's head did not come in time.
    pub header_timeouts: AtomicU64,
}

impl ListenerStats {
    const fn new() -> Self {
        ListenerStats {
            open: AtomicI64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
        }
    }
}

/// Counts a connection open while it lives.
struct Open(&'static ListenerStats);

impl Open {
    fn new(stats: &'static ListenerStats) -> Self {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open(stats)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` within `limits` until `stop` turns true;
/// then stops accepting and waits for the open connections to finish
/// their requests (idle ones are closed at once).
pub async fn serve(
    which: Listener,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    errors: ErrorBody,
    mut stop: watch::Receiver<bool>,
) {
    let (name, stats) = (which.name(), which.stats());
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let addresses = Arc::new(PerAddress::new(limits.max_per_address));
    let service = ServiceBuilder::new()
        .layer(RequestBodyDeadlineLayer::new(limits.body_timeout))
        .service(router);
    let (close, closing) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was
                    // taken: pause, so an error that repeats does not spin.
                    tracing::warn!(listener = name, "cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Some(slot) = addresses.admit(peer.ip()) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(listener = name, %peer, "closed: too many connections from this address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(automatic::Connection::new(stream, errors));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, TowerToHyperService::new(service.clone()));
        let mut closing = closing.clone();
        connections.spawn(async move {
            let _held = (permit, slot, Open::new(stats));
            let mut connection = std::pin::pin!(connection);
            let finished = tokio::select! {
                result = connection.as_mut() => Some(result),
                () = stopped(&mut closing) => None,
            };
            let result = match finished {
                Some(result) => result,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(listener = name, %peer, "connection ended: {e}");
            }
        });
        // Forget the connections that are over.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = close.send(true);
    while connections.join_next().await.is_some() {}
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Open connections per client address, within a bound.
struct PerAddress {
    max: Option<usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of an address; counted until dropped.
struct Slot {
    owner: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    fn new(max: Option<usize>) -> Self {
        PerAddress {
            max,
            open: Mutex::default(),
        }
    }

    /// A slot for one more connection of `address`; `None` past the bound.
    fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Option<Slot>> {
        let Some(max) = self.max else {
            return Some(None);
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Some(Slot {
            owner: self.clone(),
            address,
        }))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_bound_and_its_slots_back() {
        let bound = Arc::new(PerAddress::new(Some(2)));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = bound.admit(a).unwrap();
        let second = bound.admit(a).unwrap();
        assert!(bound.admit(a).is_none(), "a third from one address");
        assert!(bound.admit(b).is_some(), "another address has its own");
        drop(first);
        assert!(bound.admit(a).is_some());
        drop(second);
        assert!(
            bound.open.lock().unwrap().is_empty(),
            "nothing left counted"
        );
        let unbounded = Arc::new(PerAddress::new(None));
        assert!((0..1000).all(|_| unbounded.admit(a).is_some()));
    }
}
