//! What the public reconciliation site asks of entitlement: the page for a
//! link, and what happens when the person on it acts. The site renders;
//! everything here decides.

use serde::Serialize;

/// What a reconciliation page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconcilePage {
    pub id: String,
    /// The service's display name.
    pub service: String,
    /// What was asked, in the requester's words.
    pub description: String,
    /// Why the check failed, for people.
    pub reason: String,
    /// The failure code (`expired`, `unpaid`, ...).
    pub failure_code: String,
    /// The account the request was made for.
    pub account_id: String,
    /// What the person may do, fitting the failure.
    pub options: Vec<ReconcileOption>,
    /// When the chance lapses (RFC 3339), if it does.
    pub deadline: Option<String>,
    /// Whether the page offers "not now" (sync mode, before the contact is asked).
    pub can_leave: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconcileOption {
    /// Use another account id for the request.
    OtherAccount,
    /// Renew the expired contract.
    Renew,
    /// Pay for this request alone.
    PayForRequest,
}

/// What the person chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    OtherAccount(String),
    Renew,
    PayForRequest,
}

/// After a choice.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitOutcome {
    /// The request is entitled now and has been fulfilled; the link is dead.
    Reconciled { account_id: String, level: String },
    /// Still not entitled: the page again, with the reason.
    StillFailing { page: ReconcilePage, reason: String },
    /// "Use another account": the page again, with [`TRANSFER_ASKED`]. The
    /// same whether or not that account exists or could take the request.
    TransferAsked { page: ReconcilePage },
}

/// What the person who named another account is told, whatever the account.
pub const TRANSFER_ASKED: &str = "If that account exists and can take this request, its contact has been sent a link to confirm. The request moves to it only once they do.";

/// The page of a link sent to another account's contact: confirm that the
/// request goes on their account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferPage {
    pub id: String,
    /// The service's display name.
    pub service: String,
    pub description: String,
    /// The account the request was made for.
    pub from_account: String,
    /// The account it would move to (the contact's).
    pub to_account: String,
    pub deadline: Option<String>,
}

/// After the other account's contact confirmed.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfirmOutcome {
    /// Entitled on their account and fulfilled; every link is dead.
    Reconciled { account_id: String, level: String },
    /// Their account cannot take it (now); their link is used up.
    NotEntitled { reason: String },
}

/// Why a link cannot be used. Each maps to one status and one page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("there is no such reconciliation")]
    NotFound,
    #[error("the key in this link is wrong")]
    WrongKey,
    #[error("this link was already used: the request has been reconciled")]
    Used,
    #[error("the chance to reconcile this request has lapsed")]
    Lapsed,
    #[error("this reconciliation failed and is closed")]
    Closed,
    /// Too many wrong keys: the link refuses every key until `until`.
    #[error("too many wrong attempts: this link is locked until {until}")]
    Locked {
        /// RFC 3339.
        until: String,
        /// Seconds until then, for `Retry-After`.
        retry_after: u64,
    },
    #[error("the request was decided another way: this link is no longer needed")]
    DecidedOtherwise,
    #[error("the form is incomplete: {0}")]
    BadForm(String),
    #[error("something went wrong on our side; try again later")]
    Internal,
}

impl LinkError {
    /// The HTTP status for the page.
    pub fn status(&self) -> u16 {
        match self {
            LinkError::NotFound => 404,
            LinkError::WrongKey => 403,
            LinkError::Used
            | LinkError::Lapsed
            | LinkError::Closed
            | LinkError::DecidedOtherwise => 410,
            LinkError::Locked { .. } => 429,
            LinkError::BadForm(_) => 422,
            LinkError::Internal => 500,
        }
    }
}
