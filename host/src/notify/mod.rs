//! Notifications: the outbox (written in the same transaction as the state
//! change it reports) and its delivery worker, which POSTs each notification
//! to its webhook at least once, retrying with backoff. Every notification
//! carries an event id, sent as `Idempotency-Key`, so receivers can drop
//! repeats.

mod delivery;
mod signal;

pub use delivery::{DeliveryWorker, backoff};
pub use signal::Signal;
