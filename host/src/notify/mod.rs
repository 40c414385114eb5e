//! Notifications: the outbox (written in the same transaction as the state
//! change it reports) and its delivery worker, which sends each notification
//! at least once, retrying with backoff a bounded number of times: POSTed to
//! its webhook (`http://`, `https://` target) or mailed over SMTP (`mailto:`
//! target, see [`mail`]). What cannot be read or delivered goes `dead` with
//! its reason, never blocking the others; an operator retries it.
//! Every notification carries an event id, sent as `Idempotency-Key` (mail:
//! `Message-ID` and `X-Rulehost-Event`), so receivers can drop repeats.

mod delivery;
pub mod mail;
mod signal;
mod worker;

pub use delivery::{DeliveryWorker, RetryPolicy, backoff};
pub use mail::{MailConfig, MailError};
pub use signal::Signal;
pub use worker::Worker;
