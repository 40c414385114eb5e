//! Reconciliation: records, the flows that drive them (notices, second
//! notices, lapses), and what the public site may do with a link.
//!
//! A link carries a random 256-bit key; only its SHA-256 is stored, and keys
//! are compared in constant time. A record ends in one of three ways, each in
//! one transaction that removes it (leaving a tombstone so a dead link can
//! say why) and tells the service: success (the held request is fulfilled),
//! lapse, or its request decided by other means. Wrong keys never end it:
//! they lock the link for a while (`links`).

use std::sync::Arc;

use crate::store::Tx;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use super::accounts::{account_row, to_account};
use super::check::{Decided, Verified, insert_decision, request_json};
use super::links::locked;
use super::site::{Choice, LinkError, ReconcileOption, ReconcilePage, SubmitOutcome};
use super::{Entitlement, EntitlementError, OtherAccount, Settings, Shared};
use crate::contract::{
    Account, AccountStatus, Failure, Procedure, Properties, ServiceRequest, Verdict,
};
use crate::flow::{ActionHandler, ActionOutcome, Definition, FlowEngine, FlowError, TaskSpec};
use crate::registry::{Registry, Service};
use crate::secret::same;
use crate::store::entitlement::{self as q, ReconciliationRow, RequestRow};
use crate::store::flows::{FlowRecord, TaskRecord};
use crate::store::{self, Store, new_id, outbox, rfc3339};

/// What re-verifying a held request came to.
pub(super) enum Settled {
    /// Entitled, fulfilled; the reconciliation has ended.
    Reconciled { account_id: String, level: String },
    /// Still not entitled, for this reason.
    Failed(String),
}

/// The held request as the plugins see it.
pub(super) fn held_request(held: &RequestRow) -> ServiceRequest {
    ServiceRequest {
        id: held.id.clone(),
        account_id: held.account_id.clone(),
        description: held.description.clone(),
        attributes: serde_json::from_value::<Properties>(held.attributes.clone())
            .unwrap_or_default(),
    }
}

/// A reconciliation just started.
pub(crate) struct Started {
    pub id: String,
    pub mode: String,
    pub url: Option<String>,
    pub flow_id: Option<String>,
}

/// The handle `install` returns, for `Entitlement::new`.
pub struct Installed(pub(crate) Arc<Shared>);

/// Adds the reconciliation flows and their actions to the engine.
pub fn install(
    engine: &mut FlowEngine,
    store: Store,
    registry: Arc<arc_swap::ArcSwap<Registry>>,
    settings: Settings,
) -> Installed {
    let shared = Arc::new(Shared {
        store,
        registry,
        settings,
    });
    for definition in definitions() {
        engine.add_definition(definition);
    }
    engine.add_action("reconciliation-notice", Arc::new(Notice(shared.clone())));
    engine.add_action("reconciliation-lapse", Arc::new(Lapse(shared.clone())));
    Installed(shared)
}

/// `reconcile-sync`, `reconcile-async`, `reconcile-sync-then-async`.
fn definitions() -> Vec<Definition> {
    let wait_for_user = || TaskSpec::timer_until("await the user", "sync_until");
    let lapse = || TaskSpec::auto("lapse", "reconciliation-lapse");
    let notices = || {
        vec![
            TaskSpec::auto("notify the contact", "reconciliation-notice"),
            TaskSpec::timer_until("until the second notice", "second_notice_at"),
            TaskSpec::auto("second notice", "reconciliation-notice")
                .with_params(json!({"second": true})),
            TaskSpec::timer_until("until the lapse", "lapse_at"),
            lapse(),
        ]
    };
    let mut sync_then_async = vec![wait_for_user()];
    sync_then_async.extend(notices());
    [
        ("reconcile-sync", vec![wait_for_user(), lapse()]),
        ("reconcile-async", notices()),
        ("reconcile-sync-then-async", sync_then_async),
    ]
    .into_iter()
    .filter_map(|(name, tasks)| match Definition::new(name, tasks) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!("built-in flow `{name}` is invalid: {e}");
            None
        }
    })
    .collect()
}

/// A fresh 256-bit key from the OS's RNG; never a weaker fallback.
pub(super) fn new_key() -> Result<String, EntitlementError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| EntitlementError::Invalid(format!("no secure randomness available: {e}")))?;
    Ok(hex::encode(key))
}

pub(super) fn hash_key(key: &str) -> String {
    crate::secret::digest(key)
}

pub(super) fn key_matches(row: &ReconciliationRow, key: &str) -> bool {
    let hashed = hash_key(key);
    // Every stored hash is compared, so the time does not say which matched.
    row.key_hashes
        .iter()
        .fold(false, |found, h| same(h, &hashed) | found)
}

pub(super) fn link(settings: &Settings, id: &str, key: &str) -> String {
    format!(
        "{}/reconcile/{id}?key={key}",
        settings.public_url.trim_end_matches('/')
    )
}

fn sync_window_ms(settings: &Settings, service: &Service) -> i64 {
    service
        .manifest
        .config
        .get("sync_window_seconds")
        .and_then(|s| s.parse::<i64>().ok())
        .map_or(settings.sync_window.as_millis() as i64, |s| {
            s.saturating_mul(1000)
        })
}

/// Starts a reconciliation inside the check's transaction; `None` for `Procedure::None`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    shared: &Shared,
    engine: &FlowEngine,
    tx: &Tx<'_>,
    service: &Service,
    request: &ServiceRequest,
    failure: &Failure,
    procedure: &Procedure,
    now: i64,
) -> Result<Option<Started>, EntitlementError> {
    let (mode, notice) = match procedure {
        Procedure::None => return Ok(None),
        Procedure::Sync => ("sync", None),
        Procedure::Async(n) => ("async", Some(n)),
        Procedure::SyncThenAsync(n) => ("sync-then-async", Some(n)),
    };
    let id = new_id("rec", 8);
    let window = sync_window_ms(&shared.settings, service);
    let sync = mode.starts_with("sync");
    let (mut key_hashes, mut url) = (Vec::new(), None);
    if sync {
        let key = new_key()?;
        key_hashes.push(hash_key(&key));
        url = Some(link(&shared.settings, &id, &key));
    }
    let context = json!({
        "reconciliation_id": id,
        "sync_until": sync.then_some(now + window),
        "lapse_at": (mode == "sync").then_some(now + window),
        "lapse_after_ms": notice.map(|n| n.lapse_after.saturating_mul(1000)),
        "second_notice_before_ms": notice.and_then(|n| n.second_notice_before).map(|s| s.saturating_mul(1000)),
    });
    let mut row = ReconciliationRow {
        id: id.clone(),
        request_id: request.id.clone(),
        service: service.id().into(),
        account_id: request.account_id.clone(),
        failure_code: failure.code.as_str().into(),
        reason: failure.reason.clone(),
        mode: mode.into(),
        procedure: serde_json::to_value(procedure).unwrap_or(Value::Null),
        description: request.description.clone(),
        key_hashes,
        attempts: 0,
        deadline: (mode == "sync").then_some(now + window),
        flow_id: None,
        created_at: now,
        locked_until: None,
        locks: 0,
    };
    let flow_id = engine.start_in(
        tx,
        &format!("reconcile-{mode}"),
        &id,
        context,
        "entitlement",
    )?;
    row.flow_id = Some(flow_id.clone());
    q::put_reconciliation(tx, &row)?;
    Ok(Some(Started {
        id,
        mode: mode.into(),
        url,
        flow_id: Some(flow_id),
    }))
}

/// What the page offers for a failure; "use another account" only where
/// the service has it on.
fn options(failure_code: &str, other_account: bool) -> Vec<ReconcileOption> {
    let mut options = match failure_code {
        "expired" => vec![ReconcileOption::Renew],
        "unpaid" | "payment-per-incident" => vec![ReconcileOption::PayForRequest],
        _ => vec![],
    };
    if other_account {
        options.push(ReconcileOption::OtherAccount);
    }
    options
}

/// Whether "use another account" is on for `service`: its config's
/// `other_account` (`off` or `confirm`), else the host's setting.
pub(super) fn other_account(settings: &Settings, service: Option<&Service>) -> OtherAccount {
    service
        .and_then(|s| s.manifest.config.get("other_account"))
        .and_then(OtherAccount::parse)
        .unwrap_or(settings.other_account)
}

/// Ends a reconciliation whose chance lapsed: the held request's content,
/// the record and the request's verification records go; the service is told.
fn lapse(
    tx: &Tx<'_>,
    shared: &Shared,
    row: &ReconciliationRow,
    now: i64,
) -> Result<(), EntitlementError> {
    let (state, kind) = ("lapsed", "reconciliation.lapsed");
    q::bury_reconciliation(tx, &row.id, "lapsed", now)?;
    if let Some(mut request) = q::get_request(tx, &row.request_id)? {
        request.state = state.into();
        request.description = String::new();
        request.attributes = json!({});
        request.failure = None;
        request.updated_at = now;
        q::put_request(tx, &request)?;
    }
    q::delete_decisions_of(tx, &row.request_id)?;
    let webhook = shared
        .registry
        .load()
        .service(&row.service)
        .and_then(|s| s.manifest.webhook.clone());
    let data = json!({"reconciliation_id": row.id, "request_id": row.request_id, "account_id": row.account_id, "service": row.service});
    outbox::enqueue(tx, kind, webhook.as_deref(), &data, now)?;
    Ok(())
}

/// Ends reconciliation `id` because its request was decided by other means
/// (it passed a later check, or is no longer held): the record goes (its
/// links die, a tombstone says why), its flow is finished, and the service
/// is told once (`reconciliation.ended`). The request is left as it is.
/// Returns whether there was a reconciliation to end.
/// Whether `row`'s request is still held by it. If it is not (a later check
/// decided it), the reconciliation ends here: its links die and the service
/// is told once.
pub(crate) fn still_held_or_ended(
    shared: &Shared,
    engine: &FlowEngine,
    tx: &Tx<'_>,
    row: &ReconciliationRow,
    now: i64,
) -> Result<bool, EntitlementError> {
    let held = q::get_request(tx, &row.request_id)?;
    if held.is_some_and(|r| {
        r.state == "awaiting-reconciliation"
            && r.reconciliation_id.as_deref() == Some(row.id.as_str())
    }) {
        return Ok(true);
    }
    end_decided_otherwise(
        shared,
        engine,
        tx,
        &row.id,
        "the request is no longer held",
        now,
    )?;
    Ok(false)
}

pub(crate) fn end_decided_otherwise(
    shared: &Shared,
    engine: &FlowEngine,
    tx: &Tx<'_>,
    id: &str,
    why: &str,
    now: i64,
) -> Result<bool, EntitlementError> {
    let Some(row) = q::get_reconciliation(tx, id)? else {
        return Ok(false);
    };
    q::bury_reconciliation(tx, &row.id, DECIDED_OTHERWISE, now)?;
    if let Some(flow) = &row.flow_id {
        engine.finish_in(tx, flow, DECIDED_OTHERWISE, "entitlement", now)?;
    }
    let webhook = shared
        .registry
        .load()
        .service(&row.service)
        .and_then(|s| s.manifest.webhook.clone());
    let data = json!({
        "reconciliation_id": row.id, "request_id": row.request_id, "account_id": row.account_id,
        "service": row.service, "outcome": DECIDED_OTHERWISE, "why": why,
    });
    outbox::enqueue(tx, "reconciliation.ended", webhook.as_deref(), &data, now)?;
    Ok(true)
}

/// How a reconciliation ends when its request was decided by other means.
const DECIDED_OTHERWISE: &str = "decided-otherwise";

/// The `reconciliation-notice` action: a notice with a fresh link to the contact.
struct Notice(Arc<Shared>);

impl ActionHandler for Notice {
    fn run(
        &self,
        tx: &Tx<'_>,
        flow: &FlowRecord,
        task: &TaskRecord,
        now: i64,
    ) -> Result<ActionOutcome, FlowError> {
        let shared = &self.0;
        let id = flow.context["reconciliation_id"]
            .as_str()
            .unwrap_or_default();
        let Some(mut row) = q::get_reconciliation(tx, id)? else {
            return Ok(ActionOutcome::default());
        };
        let notice = match serde_json::from_value::<Procedure>(row.procedure.clone()) {
            Ok(Procedure::Async(n) | Procedure::SyncThenAsync(n)) => n,
            _ => return Ok(ActionOutcome::default()),
        };
        let second = task
            .params
            .get("second")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut context = flow.context.clone();
        if second {
            if notice.second_notice_before.is_none() {
                return Ok(ActionOutcome::default());
            }
        } else {
            let lapse_at = now.saturating_add(
                i64::try_from(notice.lapse_after)
                    .unwrap_or(i64::MAX / 2000)
                    .saturating_mul(1000),
            );
            let second_at = notice
                .second_notice_before
                .map(|b| {
                    lapse_at.saturating_sub(i64::try_from(b).unwrap_or(0).saturating_mul(1000))
                })
                .filter(|at| *at > now);
            context["lapse_at"] = json!(lapse_at);
            context["second_notice_at"] = json!(second_at);
            row.deadline = Some(lapse_at);
        }
        let key = new_key().map_err(|e| FlowError::Invalid(e.to_string()))?;
        row.key_hashes.push(hash_key(&key));
        q::put_reconciliation(tx, &row).map_err(FlowError::Store)?;
        let url = link(&shared.settings, &row.id, &key);
        let registry = shared.registry.load();
        let service = registry
            .service(&row.service)
            .map_or(row.service.clone(), |s| s.manifest.display_name.clone());
        let deadline = row.deadline.map(rfc3339).unwrap_or_default();
        match &notice.channel {
            crate::contract::Channel::Email => {
                let subject = format!(
                    "{}Action needed: a {service} request for account {}",
                    if second { "Reminder: " } else { "" },
                    row.account_id
                );
                let text = format!(
                    "Hello {},\n\nA request to {service} for account {} could not be served: {}.\nRequest: {}\n\nYou can resolve it here until {deadline}:\n{url}\n\nThe link works once.\n",
                    notice.contact.name, row.account_id, row.reason, row.description
                );
                let data = json!({"to": notice.contact.email, "to_name": notice.contact.name, "subject": subject, "text": text});
                let target = shared
                    .settings
                    .mail
                    .then(|| format!("mailto:{}", notice.contact.email));
                if target.is_none() {
                    tracing::info!(to = %notice.contact.email, %subject, "mail held in the outbox (no SMTP server configured)");
                }
                outbox::enqueue(tx, "mail", target.as_deref(), &data, now)
                    .map_err(FlowError::Store)?;
            }
            crate::contract::Channel::Webhook(target) => {
                let data = json!({
                    "reconciliation_id": row.id, "service": row.service, "request_id": row.request_id,
                    "account_id": row.account_id, "contact": notice.contact, "url": url, "deadline": deadline, "second": second,
                });
                outbox::enqueue(tx, "reconciliation.notice", Some(target), &data, now)
                    .map_err(FlowError::Store)?;
            }
        }
        Ok(ActionOutcome {
            notified: true,
            context: Some(context),
        })
    }
}

/// The `reconciliation-lapse` action: the chance is over.
struct Lapse(Arc<Shared>);

impl ActionHandler for Lapse {
    fn run(
        &self,
        tx: &Tx<'_>,
        flow: &FlowRecord,
        _task: &TaskRecord,
        now: i64,
    ) -> Result<ActionOutcome, FlowError> {
        let id = flow.context["reconciliation_id"]
            .as_str()
            .unwrap_or_default();
        let Some(row) = q::get_reconciliation(tx, id)? else {
            return Ok(ActionOutcome::default());
        };
        lapse(tx, &self.0, &row, now).map_err(|e| match e {
            EntitlementError::Store(s) => FlowError::Store(s),
            other => FlowError::Invalid(other.to_string()),
        })?;
        Ok(ActionOutcome {
            notified: true,
            context: None,
        })
    }
}

impl Entitlement {
    /// Checks the link; a wrong key counts as an attempt.
    fn authorize(&self, id: &str, key: &str) -> Result<ReconciliationRow, LinkError> {
        self.authorize_with(id, |_, row| Ok(key_matches(row, key).then_some(())))
            .map(|(row, ())| row)
    }

    /// Checks a link of reconciliation `id` with `matches`, which says what
    /// the link's key opens (`None`: a wrong key, counted as an attempt).
    /// A dead, lapsed or locked link is refused before any key is compared.
    pub(super) fn authorize_with<T>(
        &self,
        id: &str,
        matches: impl Fn(&Tx<'_>, &ReconciliationRow) -> Result<Option<T>, EntitlementError>,
    ) -> Result<(ReconciliationRow, T), LinkError> {
        let shared = &self.shared;
        let now = store::now_ms();
        let result = shared.store.write(|tx| {
            let Some(mut row) = q::get_reconciliation(tx, id)? else {
                return Ok(Err(match q::tombstone(tx, id)?.as_deref() {
                    Some("succeeded") => LinkError::Used,
                    Some("lapsed") => LinkError::Lapsed,
                    Some(DECIDED_OTHERWISE) => LinkError::DecidedOtherwise,
                    Some(_) => LinkError::Closed,
                    None => LinkError::NotFound,
                }));
            };
            // A request decided by other means before links died with it.
            if !still_held_or_ended(shared, &self.engine, tx, &row, now)? {
                return Ok(Err(LinkError::DecidedOtherwise));
            }
            if row.deadline.is_some_and(|d| d <= now) {
                return Ok(Err(LinkError::Lapsed));
            }
            // Locked: no key is even compared, nothing is counted.
            if let Some(until) = row.locked_until.filter(|until| *until > now) {
                return Ok(Err(locked(until, now)));
            }
            if let Some(opened) = matches(tx, &row)? {
                return Ok(Ok((row, opened)));
            }
            let lock = self.count_attempt(tx, &mut row, now)?;
            Ok::<_, EntitlementError>(Err(lock.unwrap_or(LinkError::WrongKey)))
        });
        self.outbox_signal.raise();
        match result {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!("reconciliation `{id}`: {e}");
                Err(LinkError::Internal)
            }
        }
    }

    fn finish_flow(
        &self,
        tx: &Tx<'_>,
        row: &ReconciliationRow,
        event: &str,
        now: i64,
    ) -> Result<(), EntitlementError> {
        if let Some(flow) = &row.flow_id {
            self.engine.finish_in(tx, flow, event, "public-site", now)?;
        }
        Ok(())
    }

    pub(super) fn page(&self, row: &ReconciliationRow) -> ReconcilePage {
        let registry = self.registry();
        ReconcilePage {
            id: row.id.clone(),
            service: registry
                .service(&row.service)
                .map_or(row.service.clone(), |s| s.manifest.display_name.clone()),
            description: row.description.clone(),
            reason: row.reason.clone(),
            failure_code: row.failure_code.clone(),
            account_id: row.account_id.clone(),
            options: options(
                &row.failure_code,
                other_account(
                    &self.shared.settings,
                    registry.service(&row.service).map(|s| &**s),
                ) == OtherAccount::Confirm,
            ),
            deadline: row.deadline.map(rfc3339),
            can_leave: row.mode == "sync-then-async" && row.deadline.is_none(),
        }
    }

    /// The page for a link.
    pub fn reconcile_page(&self, id: &str, key: &str) -> Result<ReconcilePage, LinkError> {
        let row = self.authorize(id, key)?;
        Ok(self.page(&row))
    }

    /// "Not now": in sync-then-async mode, the contact is asked at once.
    pub fn reconcile_leave(&self, id: &str, key: &str) -> Result<(), LinkError> {
        let row = self.authorize(id, key)?;
        if !self.page(&row).can_leave {
            return Err(LinkError::BadForm(
                "there is nobody else to ask for this request".into(),
            ));
        }
        if let Some(flow) = &row.flow_id {
            self.engine.expedite(flow, "public-site").map_err(|e| {
                tracing::error!("reconciliation `{id}`: {e}");
                LinkError::Internal
            })?;
        }
        Ok(())
    }

    /// Applies the person's choice, re-runs verification with it, and on a
    /// pass fulfils the held request. "Use another account" only asks that
    /// account's contact to confirm (see `transfer`).
    pub fn reconcile_submit(
        &self,
        id: &str,
        key: &str,
        choice: Choice,
    ) -> Result<SubmitOutcome, LinkError> {
        let row = self.authorize(id, key)?;
        let internal = |e: EntitlementError| {
            tracing::error!("reconciliation `{id}`: {e}");
            LinkError::Internal
        };
        let page = self.page(&row);
        let wanted = match &choice {
            Choice::OtherAccount(_) => ReconcileOption::OtherAccount,
            Choice::Renew => ReconcileOption::Renew,
            Choice::PayForRequest => ReconcileOption::PayForRequest,
        };
        if !page.options.contains(&wanted) {
            return Err(LinkError::BadForm(
                "that choice is not offered for this request".into(),
            ));
        }
        let registry = self.registry();
        let service = registry.service(&row.service);
        if let Choice::OtherAccount(other) = &choice {
            return self.ask_other_account(&row, service.map(|s| &**s), other);
        }
        let Some(service) = service else {
            return self.still_failing(
                &row,
                "the service is not available at the moment; try again later",
            );
        };
        let store = &self.shared.store;
        let stored = store
            .read(|c| {
                Ok::<_, EntitlementError>((
                    q::get_request(c, &row.request_id)?,
                    q::get_account(c, &row.account_id)?,
                ))
            })
            .map_err(internal)?;
        let (Some(held), stored_account) = stored else {
            return Err(LinkError::Closed);
        };
        let mut request = held_request(&held);
        let mut account: Option<Account> = stored_account
            .as_ref()
            .map(to_account)
            .transpose()
            .map_err(internal)?;
        match &choice {
            Choice::Renew => {
                let Some(a) = account.as_mut() else {
                    return self.still_failing(&row, "there is no account to renew");
                };
                a.status = AccountStatus::Active;
                a.paid_up = true;
                a.contract_end = Timestamp::now().checked_add(8760.hours()).ok();
            }
            Choice::PayForRequest => {
                request.attributes.insert("paid", "true");
                if let Some(a) = account.as_mut()
                    && row.failure_code == "unpaid"
                {
                    a.paid_up = true;
                }
            }
            Choice::OtherAccount(_) => {}
        }
        match self.settle(&row, service, &held, request, account, true)? {
            Settled::Reconciled { account_id, level } => {
                Ok(SubmitOutcome::Reconciled { account_id, level })
            }
            Settled::Failed(reason) => {
                let now = store::now_ms();
                let lock = store.write(|tx| {
                    let Some(mut current) = q::get_reconciliation(tx, &row.id)? else {
                        return Ok(Some(LinkError::Used));
                    };
                    self.count_attempt(tx, &mut current, now)
                });
                self.outbox_signal.raise();
                if let Some(lock) = lock.map_err(internal)? {
                    return Err(lock);
                }
                self.still_failing(&row, &reason)
            }
        }
    }

    /// Re-runs verification of the held request as reconciled (`request`
    /// on `account`); on a pass fulfils it (once: the store refuses a
    /// second time) and ends the reconciliation, telling the service. With
    /// `update_account` the account is stored as changed (renew, pay).
    pub(super) fn settle(
        &self,
        row: &ReconciliationRow,
        service: &Service,
        held: &RequestRow,
        request: ServiceRequest,
        account: Option<Account>,
        update_account: bool,
    ) -> Result<Settled, LinkError> {
        let id = &row.id;
        let internal = |e: EntitlementError| {
            tracing::error!("reconciliation `{id}`: {e}");
            LinkError::Internal
        };
        let store = &self.shared.store;
        let verified = self.verify(service, &request, account.clone());
        let now = store::now_ms();
        let (verdict, recorded) = match verified {
            Ok(Verified::Verdict(verdict, recorded)) => (verdict, recorded),
            Ok(Verified::Fault(message, recorded)) => {
                tracing::warn!("reconciliation `{id}`: re-verification failed: {message}");
                let error = Decided::Error(&message);
                if let Err(e) =
                    store.write(|tx| insert_decision(tx, &recorded, &request, error, now))
                {
                    tracing::error!("cannot record a faulted decision: {e}");
                }
                return Err(LinkError::Internal);
            }
            Err(e) => return Err(internal(e)),
        };
        let level = match verdict {
            Verdict::Pass { level } => level,
            Verdict::Fail(failure) => {
                store
                    .write(|tx| {
                        insert_decision(tx, &recorded, &request, Decided::Fail(&failure), now)
                    })
                    .map_err(internal)?;
                return Ok(Settled::Failed(failure.reason));
            }
        };
        // Success: one transaction; a second, concurrent success finds the
        // record gone, and the store fulfils a request once at most.
        let done = store.write(|tx| {
            let Some(current) = q::get_reconciliation(tx, &row.id)? else { return Ok(Err(LinkError::Used)) };
            let attributes = serde_json::to_value(&request.attributes).unwrap_or(Value::Null);
            if !q::fulfil_request(tx, &held.id, &current.id, &level, &attributes, now)? {
                return Ok(Err(LinkError::DecidedOtherwise));
            }
            insert_decision(tx, &recorded, &request, Decided::Pass(&level), now)?;
            q::bury_reconciliation(tx, &current.id, "succeeded", now)?;
            if let Some(a) = &account
                && update_account
            {
                // As the page changed it; its group and billing as stored.
                let mut changed = account_row(a, now);
                if let Some(stored) = q::get_account(tx, &a.id)? {
                    changed.group = stored.group;
                    changed.billing = stored.billing;
                }
                q::put_account(tx, &changed)?;
            }
            let webhook = service.manifest.webhook.as_deref();
            outbox::enqueue(tx, "reconciliation.succeeded", webhook, &json!({
                "reconciliation_id": current.id, "request_id": request.id, "account_id": request.account_id, "level": level,
            }), now)?;
            outbox::enqueue(tx, "request.fulfilled", webhook, &json!({
                "request": request_json(&ServiceRequest { account_id: held.account_id.clone(), ..request.clone() }, service.id()),
                "account_id": request.account_id, "level": level,
            }), now)?;
            self.finish_flow(tx, &current, "reconciled", now)?;
            Ok::<_, EntitlementError>(Ok(()))
        });
        self.outbox_signal.raise();
        done.map_err(internal)??;
        Ok(Settled::Reconciled {
            account_id: request.account_id,
            level,
        })
    }

    pub(super) fn still_failing(
        &self,
        row: &ReconciliationRow,
        reason: &str,
    ) -> Result<SubmitOutcome, LinkError> {
        let current = self
            .shared
            .store
            .read(|c| q::get_reconciliation(c, &row.id))
            .ok()
            .flatten()
            .unwrap_or_else(|| row.clone());
        Ok(SubmitOutcome::StillFailing {
            page: self.page(&current),
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_flows_are_valid() {
        let names: Vec<_> = definitions().into_iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "reconcile-sync",
                "reconcile-async",
                "reconcile-sync-then-async"
            ]
        );
    }

    #[test]
    fn keys_match_only_their_own_hash() {
        let key = new_key().unwrap();
        assert_eq!(key.len(), 64);
        let row = ReconciliationRow {
            id: "rec_1".into(),
            request_id: "r".into(),
            service: "s".into(),
            account_id: "a".into(),
            failure_code: "expired".into(),
            reason: String::new(),
            mode: "sync".into(),
            procedure: Value::Null,
            description: String::new(),
            key_hashes: vec![hash_key("other"), hash_key(&key)],
            attempts: 0,
            deadline: None,
            flow_id: None,
            created_at: 0,
            locked_until: None,
            locks: 0,
        };
        assert!(key_matches(&row, &key));
        assert!(!key_matches(&row, &key[1..]));
        assert!(!key_matches(&row, ""));
        assert!(
            !row.key_hashes.iter().any(|h| h.contains(&key)),
            "keys are never stored"
        );
    }

    #[test]
    fn options_fit_the_failure() {
        assert_eq!(
            options("expired", true),
            [ReconcileOption::Renew, ReconcileOption::OtherAccount]
        );
        assert_eq!(
            options("unpaid", true),
            [
                ReconcileOption::PayForRequest,
                ReconcileOption::OtherAccount
            ]
        );
        assert_eq!(options("no-account", true), [ReconcileOption::OtherAccount]);
        assert_eq!(options("expired", false), [ReconcileOption::Renew]);
        assert_eq!(options("no-account", false), []);
    }
}
