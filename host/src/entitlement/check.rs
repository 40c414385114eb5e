//! `POST /v1/checks`: one entitlement decision, recorded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::accounts::to_account;
use super::reconcile::{self, Started};
use super::{Entitlement, EntitlementError, valid_id};
use crate::contract::{
    Account, Call, Capability, Context, Failure, Outcome, Procedure, ProcedureInput, Properties,
    ServiceRequest, Verdict, VerifyInput,
};
use crate::registry::Service;
use crate::runtime::CallReport;
use crate::store::entitlement::{self as q, AccountRow, RequestRow};
use crate::store::{self, Conn, Tx, new_id, outbox};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub service: String,
    pub account_id: String,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub attributes: Properties,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginRef {
    pub name: String,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconciliationRef {
    pub id: String,
    pub mode: String,
    /// The page for the requesting user (sync modes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResponse {
    pub request_id: String,
    /// `pass` or `fail`.
    pub decision: &'static str,
    pub level: Option<String>,
    pub failure: Option<Failure>,
    pub reconciliation: Option<ReconciliationRef>,
    pub plugin: PluginRef,
}

/// Request states that end a request: a new check needs a new id.
const FINAL: [&str; 3] = ["fulfilled", "lapsed", "reconciliation-failed"];

/// How often a check is decided again because the account or the held
/// request changed between its read and its record, before it is refused
/// with a conflict.
pub const MAX_TRIES: usize = 8;

/// A check decided and not yet recorded: everything its write stores, and
/// the inputs it was decided on.
struct Decision {
    inputs: Inputs,
    recorded: Recorded,
    ruling: Ruling,
    now: i64,
}

enum Ruling {
    Pass(String),
    /// The verifier faulted or declined: recorded, answered as an error.
    Error(String),
    Fail {
        failure: Failure,
        /// A reconciliation already under way for this request.
        live: Option<String>,
        procedure: Procedure,
    },
}

impl Decision {
    /// Whether answering needs the database (a failure moves flows and
    /// reads reconciliations); a pass is answered from memory.
    fn answer_blocks(&self) -> bool {
        matches!(self.ruling, Ruling::Fail { .. })
    }

    /// Whether the rows the decision read are still as it read them, in
    /// the transaction `tx` about to record it: their versions are
    /// unchanged (or they are still absent).
    fn still_current(&self, tx: &Tx<'_>) -> Result<bool, EntitlementError> {
        let read = &self.inputs;
        Ok(
            q::request_version(tx, &read.request.id)? == read.existing.as_ref().map(|r| r.version)
                && q::account_version(tx, &read.request.account_id)?
                    == read.account_row.as_ref().map(|a| a.version),
        )
    }
}

/// What a check read before deciding: the service, the request, and the
/// rows a decision depends on (the held request and the account).
struct Inputs {
    service: Arc<Service>,
    request: ServiceRequest,
    existing: Option<RequestRow>,
    account_row: Option<AccountRow>,
}

impl Inputs {
    /// The check these inputs were read for, under the request id it got:
    /// to make again when they changed before it was recorded.
    fn into_request(self) -> CheckRequest {
        let Inputs {
            service, request, ..
        } = self;
        CheckRequest {
            service: service.id().to_owned(),
            account_id: request.account_id,
            request_id: Some(request.id),
            attributes: request.attributes,
            description: request.description,
        }
    }
}

/// What recording a decision came to.
// Moved once, through the commit's answer: boxing would cost an allocation
// per check for nothing.
#[allow(clippy::large_enum_variant)]
enum Recording {
    Recorded(Decision, Option<Started>),
    /// The account or the held request changed since the decision read
    /// them: nothing was written.
    Stale(Decision),
}

impl Entitlement {
    /// One check, blocking: read, decide, record (in a transaction of its
    /// own), answer. For the CLI and embedders; `POST /v1/checks` runs
    /// [`Entitlement::check_async`].
    pub fn check(&self, req: CheckRequest) -> Result<CheckResponse, EntitlementError> {
        self.check_with(req, None)
    }

    /// [`Entitlement::check`] with the verdict from a rule compiled into
    /// the host instead of the service's verifier plugin. Everything else is
    /// the same: the reads, the decision log (the rule's name as plugin,
    /// digest `native`), the held request, the reconciler plugin on a
    /// failure. For embedders of the library, and the baseline that prices
    /// the sandbox in `benches/core`.
    pub fn check_native(
        &self,
        req: CheckRequest,
        rule: &dyn NativeVerifier,
    ) -> Result<CheckResponse, EntitlementError> {
        self.check_with(req, Some(rule))
    }

    fn check_with(
        &self,
        mut req: CheckRequest,
        native: Option<&dyn NativeVerifier>,
    ) -> Result<CheckResponse, EntitlementError> {
        let store = &self.shared.store;
        for _ in 0..MAX_TRIES {
            let inputs = store.read(|c| self.read_inputs(c, req))?;
            let decision = self.decide(inputs, native)?;
            match store.write(|tx| self.record_if_current(tx, decision))? {
                Recording::Recorded(decision, started) => return self.answer(decision, started),
                Recording::Stale(stale) => {
                    self.stats.redecided.fetch_add(1, Ordering::Relaxed);
                    req = stale.inputs.into_request();
                }
            }
        }
        Err(self.too_contended(&req))
    }

    /// A check from async code, what `POST /v1/checks` runs: the account
    /// and the held request are read and the plugins run on the blocking
    /// pool (at most [`crate::registry::plugin_concurrency`] calls at once per
    /// service), then the decision is recorded through the store's group
    /// commit, sharing its COMMIT with the checks queued beside it, and
    /// answered once that commit returned. When what the decision read
    /// changed before it was recorded, it is decided again.
    pub async fn check_async(
        self: Arc<Self>,
        mut req: CheckRequest,
    ) -> Result<CheckResponse, EntitlementError> {
        for _ in 0..MAX_TRIES {
            // Read and decide on a worker, which queues the record itself:
            // the executor hears back once, when the commit answers.
            let (answer, answered) = tokio::sync::oneshot::channel();
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                let decided = this
                    .shared
                    .store
                    .read(|c| this.read_inputs(c, req))
                    .and_then(|inputs| this.decide(inputs, None));
                let decision = match decided {
                    Ok(decision) => decision,
                    Err(e) => {
                        let _ = answer.send(Err(e));
                        return;
                    }
                };
                let store = this.shared.store.clone();
                // If it cannot be queued, `answer` is dropped with the write
                // and the check hears that below.
                let _ = store.queue_write(
                    move |tx| this.record_if_current(tx, decision),
                    move |recorded| {
                        let _ = answer.send(recorded);
                    },
                );
            });
            let recording = answered.await.map_err(|_| {
                EntitlementError::Internal(
                    "deciding the check failed: the database writer has stopped".into(),
                )
            })??;
            match recording {
                Recording::Recorded(decision, started) => {
                    return self.answer_async(decision, started).await;
                }
                Recording::Stale(stale) => {
                    self.stats.redecided.fetch_add(1, Ordering::Relaxed);
                    req = stale.inputs.into_request();
                }
            }
        }
        Err(self.too_contended(&req))
    }

    fn too_contended(&self, req: &CheckRequest) -> EntitlementError {
        self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
        EntitlementError::Conflict(format!(
            "account `{}` or request `{}` changed {MAX_TRIES} times while this check was decided; try again",
            req.account_id,
            req.request_id.as_deref().unwrap_or("(new)")
        ))
    }

    /// Records `decision` in `tx` if the rows it read are unchanged;
    /// otherwise hands it back, writing nothing.
    fn record_if_current(
        &self,
        tx: &Tx<'_>,
        decision: Decision,
    ) -> Result<Recording, EntitlementError> {
        if !decision.still_current(tx)? {
            return Ok(Recording::Stale(decision));
        }
        let started = self.record(tx, &decision)?;
        Ok(Recording::Recorded(decision, started))
    }

    /// [`Entitlement::answer`] from async code: on the blocking pool when
    /// it needs the database.
    async fn answer_async(
        self: Arc<Self>,
        decision: Decision,
        started: Option<Started>,
    ) -> Result<CheckResponse, EntitlementError> {
        if !decision.answer_blocks() {
            return self.answer(decision, started);
        }
        tokio::task::spawn_blocking(move || self.answer(decision, started))
            .await
            .map_err(|e| EntitlementError::Internal(format!("answering the check failed: {e}")))?
    }

    /// Validates the request and reads the held request and the account:
    /// the first half of deciding, the only one that touches the database.
    fn read_inputs(&self, conn: &Conn<'_>, req: CheckRequest) -> Result<Inputs, EntitlementError> {
        if !valid_id(&req.account_id) {
            return Err(EntitlementError::Invalid(
                "`account_id` must be 1-200 printable characters without spaces, `/`, `?` or `#`"
                    .into(),
            ));
        }
        if let Some(id) = &req.request_id
            && !valid_id(id)
        {
            return Err(EntitlementError::Invalid(
                "`request_id` must be 1-200 printable characters without spaces, `/`, `?` or `#`"
                    .into(),
            ));
        }
        crate::text::free_text("description", &req.description)
            .map_err(EntitlementError::Invalid)?;
        super::valid_attributes(&req.attributes)?;
        let registry = self.registry();
        let service =
            registry
                .service(&req.service)
                .ok_or_else(|| EntitlementError::UnknownService {
                    name: req.service.clone(),
                    known: registry.services.keys().cloned().collect(),
                })?;
        let request_id = req.request_id.unwrap_or_else(|| new_id("req", 8));
        let existing = q::get_request(conn, &request_id)?;
        let account_row = q::get_account(conn, &req.account_id)?;
        if let Some(r) = &existing {
            if r.service != req.service || r.account_id != req.account_id {
                return Err(EntitlementError::Conflict(format!(
                    "request `{request_id}` is for service `{}` and account `{}`; use a new request id",
                    r.service, r.account_id
                )));
            }
            if FINAL.contains(&r.state.as_str()) {
                return Err(EntitlementError::Conflict(format!(
                    "request `{request_id}` is {}; use a new request id",
                    r.state
                )));
            }
        }
        Ok(Inputs {
            service: service.clone(),
            request: ServiceRequest {
                id: request_id,
                account_id: req.account_id,
                description: req.description,
                attributes: req.attributes,
            },
            existing,
            account_row,
        })
    }

    /// Runs the verifier (the service's plugin, or `native`) and on a
    /// failure the reconciler on what [`Entitlement::read_inputs`] read:
    /// the second half of deciding, without the database.
    fn decide(
        &self,
        inputs: Inputs,
        native: Option<&dyn NativeVerifier>,
    ) -> Result<Decision, EntitlementError> {
        let Inputs {
            service,
            request,
            existing,
            account_row,
        } = &inputs;
        let account = account_row.as_ref().map(to_account).transpose()?;
        let verified = match native {
            None => self.verify(service, request, account.clone())?,
            Some(rule) => verify_native(rule, service, request, account.clone()),
        };
        let (ruling, recorded) = match verified {
            Verified::Fault(message, recorded) => (Ruling::Error(message), recorded),
            Verified::Verdict(Verdict::Pass { level }, recorded) => (Ruling::Pass(level), recorded),
            Verified::Verdict(Verdict::Fail(failure), recorded) => {
                let live = existing
                    .as_ref()
                    .filter(|r| r.state == "awaiting-reconciliation")
                    .and_then(|r| r.reconciliation_id.clone());
                let procedure = match live {
                    Some(_) => Procedure::None,
                    None => self.procedure(service, request, &failure, account),
                };
                let ruling = Ruling::Fail {
                    failure,
                    live,
                    procedure,
                };
                (ruling, recorded)
            }
        };
        Ok(Decision {
            inputs,
            recorded,
            ruling,
            now: store::now_ms(),
        })
    }

    /// A decision's writes: the decision log, the held request, and on a
    /// failure the reconciliation and the `check.failed` event.
    fn record(&self, tx: &Tx<'_>, d: &Decision) -> Result<Option<Started>, EntitlementError> {
        let Decision {
            inputs:
                Inputs {
                    service,
                    request,
                    existing,
                    ..
                },
            recorded,
            ruling,
            now,
        } = d;
        let row = |state: &str,
                   level: Option<String>,
                   failure: Option<Value>,
                   reconciliation_id: Option<String>| RequestRow {
            id: request.id.clone(),
            service: service.id().into(),
            account_id: request.account_id.clone(),
            description: request.description.clone(),
            attributes: serde_json::to_value(&request.attributes).unwrap_or(Value::Null),
            state: state.into(),
            level,
            failure,
            reconciliation_id,
            created_at: existing.as_ref().map_or(*now, |r| r.created_at),
            updated_at: *now,
            // The store bumps it.
            version: existing.as_ref().map_or(0, |r| r.version),
        };
        match ruling {
            Ruling::Error(message) => {
                insert_decision(tx, recorded, request, Decided::Error(message), *now)?;
                Ok(None)
            }
            Ruling::Pass(level) => {
                insert_decision(tx, recorded, request, Decided::Pass(level), *now)?;
                let held = existing.as_ref().and_then(|r| r.reconciliation_id.clone());
                // Decided: a reconciliation still under way for it ends, its links die.
                if let Some(id) = &held
                    && existing
                        .as_ref()
                        .is_some_and(|r| r.state == "awaiting-reconciliation")
                {
                    reconcile::end_decided_otherwise(
                        &self.shared,
                        &self.engine,
                        tx,
                        id,
                        "the request passed a later check",
                        *now,
                    )?;
                }
                q::put_request(tx, &row("passed", Some(level.clone()), None, held))?;
                Ok(None)
            }
            Ruling::Fail {
                failure,
                live,
                procedure,
            } => {
                insert_decision(tx, recorded, request, Decided::Fail(failure), *now)?;
                let started = match live {
                    Some(id) => Some(Started {
                        id: id.clone(),
                        mode: "existing".into(),
                        url: None,
                        flow_id: None,
                    }),
                    None => reconcile::start(
                        &self.shared,
                        &self.engine,
                        tx,
                        service,
                        request,
                        failure,
                        procedure,
                        *now,
                    )?,
                };
                let state = if started.is_some() {
                    "awaiting-reconciliation"
                } else {
                    "denied"
                };
                let reconciliation_id = started.as_ref().map(|s| s.id.clone());
                let failure_json = serde_json::to_value(failure).ok();
                q::put_request(tx, &row(state, None, failure_json, reconciliation_id))?;
                if live.is_none() {
                    let data = json!({
                        "request": request_json(request, service.id()),
                        "failure": failure,
                        "reconciliation": started.as_ref().map(|s| json!({"id": s.id, "mode": s.mode})),
                    });
                    outbox::enqueue(
                        tx,
                        "check.failed",
                        service.manifest.webhook.as_deref(),
                        &data,
                        *now,
                    )?;
                }
                Ok(started)
            }
        }
    }

    /// The answer to a recorded decision; moves a reconciliation's flow
    /// along (blocking, see [`Decision::answer_blocks`]).
    fn answer(
        &self,
        d: Decision,
        started: Option<Started>,
    ) -> Result<CheckResponse, EntitlementError> {
        let plugin = PluginRef {
            name: d.recorded.plugin,
            digest: d.recorded.digest,
        };
        let request_id = d.inputs.request.id;
        let (failure, live) = match d.ruling {
            Ruling::Pass(level) => {
                // A reconciliation it ended has told the service.
                if d.inputs
                    .existing
                    .as_ref()
                    .is_some_and(|r| r.state == "awaiting-reconciliation")
                {
                    self.outbox_signal.raise();
                }
                return Ok(CheckResponse {
                    request_id,
                    decision: "pass",
                    level: Some(level),
                    failure: None,
                    reconciliation: None,
                    plugin,
                });
            }
            Ruling::Fail { failure, live, .. } => (failure, live),
            Ruling::Error(message) => return Err(EntitlementError::Plugin(message)),
        };
        if live.is_none() {
            self.outbox_signal.raise();
        }
        // The decision is committed: a failure to move the flow now is the
        // driver's to retry, not the caller's problem.
        if let Some(flow) = started.as_ref().and_then(|s| s.flow_id.as_deref())
            && let Err(e) = self.engine.advance(flow)
        {
            tracing::error!(flow, "reconciliation flow did not start moving: {e}");
        }
        let reconciliation = match (&live, started) {
            (Some(id), _) => self.existing_ref(id)?,
            (None, Some(s)) => Some(ReconciliationRef {
                id: s.id,
                mode: s.mode,
                url: s.url,
            }),
            (None, None) => None,
        };
        Ok(CheckResponse {
            request_id,
            decision: "fail",
            level: None,
            failure: Some(failure),
            reconciliation,
            plugin,
        })
    }

    fn existing_ref(&self, id: &str) -> Result<Option<ReconciliationRef>, EntitlementError> {
        let row = self.shared.store.read(|c| q::get_reconciliation(c, id))?;
        Ok(row.map(|r| ReconciliationRef {
            id: r.id,
            mode: r.mode,
            url: None,
        }))
    }

    /// Runs the verifier. A fault or a plugin's own error comes back as
    /// [`Verified::Fault`], for the caller to record as an `error` decision.
    pub(crate) fn verify(
        &self,
        service: &Service,
        request: &ServiceRequest,
        account: Option<Account>,
    ) -> Result<Verified, EntitlementError> {
        let binding = service.binding(Capability::Verifier).ok_or_else(|| {
            EntitlementError::Invalid(format!("service `{}` has no verifier plugin", service.id()))
        })?;
        let ctx = service.context(Timestamp::now());
        let call = Call::Verify(VerifyInput {
            request: request.clone(),
            account,
        });
        let plugin = binding.plugin();
        let fault = |message: String| {
            Verified::Fault(
                message,
                Recorded::new(plugin.name(), plugin.digest().to_string(), &ctx, &call, 0),
            )
        };
        let report = service.calls.run(|| binding.call(&ctx, &call));
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                // A fault of the live version: the previous good one answers
                // when the service asks for that, and the decision says so.
                let fallback = service.fallback(Capability::Verifier);
                if let Some(fallback) = fallback
                    && let Ok(report) = service.calls.run(|| fallback.call(&ctx, &call))
                    && let Outcome::Verdict(v) = report.outcome
                {
                    binding
                        .stats
                        .fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        service = service.id(),
                        "answered by the last good version after: {e}"
                    );
                    let old = fallback.plugin();
                    let micros = report.elapsed.as_micros() as i64;
                    let recorded =
                        Recorded::new(old.name(), old.digest().to_string(), &ctx, &call, micros);
                    return Ok(Verified::Verdict(v, recorded));
                }
                return Ok(fault(e.to_string()));
            }
        };
        let micros = report.elapsed.as_micros() as i64;
        Ok(match report.outcome {
            Outcome::Verdict(v) => Verified::Verdict(
                v,
                Recorded::new(
                    plugin.name(),
                    plugin.digest().to_string(),
                    &ctx,
                    &call,
                    micros,
                ),
            ),
            Outcome::Error { error } => fault(format!(
                "plugin `{}` declined to decide: {error}",
                plugin.name()
            )),
            other => fault(format!(
                "plugin `{}` answered a verify call with {other:?}",
                plugin.name()
            )),
        })
    }

    /// Asks the reconciler what to do; without one, or when it faults, the
    /// answer is `none`.
    fn procedure(
        &self,
        service: &Service,
        request: &ServiceRequest,
        failure: &Failure,
        account: Option<Account>,
    ) -> Procedure {
        let Some(binding) = service.binding(Capability::Reconciler) else {
            return Procedure::None;
        };
        let ctx = service.context(Timestamp::now());
        let call = Call::Procedure(ProcedureInput {
            request: request.clone(),
            failure: failure.clone(),
            account,
        });
        let report = service.calls.run(|| binding.call(&ctx, &call));
        match report {
            Ok(CallReport {
                outcome: Outcome::Procedure(p),
                ..
            }) => p,
            Ok(other) => {
                tracing::warn!(
                    service = service.id(),
                    "reconciler answered {:?}; denying without reconciliation",
                    other.outcome
                );
                Procedure::None
            }
            Err(e) => {
                tracing::warn!(
                    service = service.id(),
                    "reconciler failed, denying without reconciliation: {e}"
                );
                Procedure::None
            }
        }
    }
}

/// A verifier written in Rust and compiled into the host: no sandbox, no
/// limits, no hot swap. See [`Entitlement::check_native`].
pub trait NativeVerifier: Send + Sync {
    /// Recorded as the decision's plugin.
    fn name(&self) -> &str;
    /// The verdict, or why the rule cannot decide (recorded as an `error`).
    fn verify(&self, ctx: &Context, input: &VerifyInput) -> Result<Verdict, String>;
}

fn verify_native(
    rule: &dyn NativeVerifier,
    service: &Service,
    request: &ServiceRequest,
    account: Option<Account>,
) -> Verified {
    let ctx = service.context(Timestamp::now());
    let input = VerifyInput {
        request: request.clone(),
        account,
    };
    let started = std::time::Instant::now();
    let verdict = rule.verify(&ctx, &input);
    let micros = started.elapsed().as_micros() as i64;
    let recorded = Recorded::new(
        rule.name(),
        "native".into(),
        &ctx,
        &Call::Verify(input),
        micros,
    );
    match verdict {
        Ok(verdict) => Verified::Verdict(verdict, recorded),
        Err(message) => Verified::Fault(
            format!("rule `{}` declined to decide: {message}", rule.name()),
            recorded,
        ),
    }
}

/// What a verifier call came to.
pub(crate) enum Verified {
    Verdict(Verdict, Recorded),
    /// The plugin faulted or declined to decide: the message says how.
    Fault(String, Recorded),
}

/// A decision's provenance: the plugin, the inputs it got (JSON, ready to
/// store, with their digest), and its time in µs. Serialized where the
/// plugin ran, so the writer thread only writes.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub plugin: String,
    pub digest: String,
    pub service: String,
    inputs: String,
    inputs_digest: String,
    micros: i64,
}

impl Recorded {
    pub fn new(plugin: &str, digest: String, ctx: &Context, call: &Call, micros: i64) -> Self {
        #[derive(Serialize)]
        struct Inputs<'a> {
            context: &'a Context,
            call: &'a Call,
        }
        let inputs = serde_json::to_string(&Inputs { context: ctx, call })
            .unwrap_or_else(|e| json!({"unserializable": e.to_string()}).to_string());
        Recorded {
            plugin: plugin.into(),
            digest,
            service: ctx.service.clone(),
            inputs_digest: hex::encode(Sha256::digest(inputs.as_bytes())),
            inputs,
            micros,
        }
    }
}

/// What a decision came to.
pub(crate) enum Decided<'a> {
    Pass(&'a str),
    Fail(&'a Failure),
    /// The plugin faulted or declined: the message says how.
    Error(&'a str),
}

pub(crate) fn insert_decision(
    tx: &Tx<'_>,
    recorded: &Recorded,
    request: &ServiceRequest,
    decided: Decided<'_>,
    now: i64,
) -> Result<i64, EntitlementError> {
    let (verdict, level, failure_code, reason) = match decided {
        Decided::Pass(level) => ("pass", Some(level), None, None),
        Decided::Fail(f) => ("fail", None, Some(f.code.as_str()), Some(f.reason.as_str())),
        Decided::Error(message) => ("error", None, None, Some(message)),
    };
    let row = q::NewDecision {
        at: now,
        service: &recorded.service,
        account_id: &request.account_id,
        request_id: &request.id,
        inputs_digest: &recorded.inputs_digest,
        inputs: &recorded.inputs,
        verdict,
        level,
        failure_code,
        reason,
        plugin: &recorded.plugin,
        plugin_digest: &recorded.digest,
        duration_us: recorded.micros,
    };
    Ok(q::insert_decision(tx, &row)?)
}

/// The request as services get it back in events.
pub(crate) fn request_json(request: &ServiceRequest, service: &str) -> Value {
    json!({
        "id": request.id,
        "service": service,
        "account_id": request.account_id,
        "description": request.description,
        "attributes": request.attributes,
    })
}
