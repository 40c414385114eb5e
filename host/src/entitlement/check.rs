//! `POST /v1/checks`: one entitlement decision, recorded.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::accounts::to_account;
use super::reconcile::{self, Started};
use super::{Entitlement, EntitlementError, valid_id};
use crate::contract::{
    Account, Call, Capability, Context, Failure, Outcome, ProcedureInput, Properties,
    ServiceRequest, Verdict, VerifyInput,
};
use crate::registry::{OnPluginError, Service};
use crate::runtime::CallReport;
use crate::store::entitlement::{self as q, DecisionRow, RequestRow};
use crate::store::{self, new_id, outbox};

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

impl Entitlement {
    pub fn check(&self, req: CheckRequest) -> Result<CheckResponse, EntitlementError> {
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
        let registry = self.registry();
        let service =
            registry
                .service(&req.service)
                .ok_or_else(|| EntitlementError::UnknownService {
                    name: req.service.clone(),
                    known: registry.services.keys().cloned().collect(),
                })?;
        let store = &self.shared.store;
        let request_id = req.request_id.clone().unwrap_or_else(|| new_id("req", 8));
        let (existing, account_row) = store.read(|c| {
            Ok::<_, EntitlementError>((
                q::get_request(c, &request_id)?,
                q::get_account(c, &req.account_id)?,
            ))
        })?;
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
        let account = account_row.as_ref().map(to_account).transpose()?;
        let request = ServiceRequest {
            id: request_id.clone(),
            account_id: req.account_id.clone(),
            description: req.description.clone(),
            attributes: req.attributes.clone(),
        };
        let (verdict, report) = self.verify(service, &request, account.clone())?;
        let now = store::now_ms();
        let created_at = existing.as_ref().map_or(now, |r| r.created_at);
        let plugin = PluginRef {
            name: report.0.clone(),
            digest: report.1.clone(),
        };

        match verdict {
            Verdict::Pass { level } => {
                store.write(|tx| {
                    insert_decision(tx, &report, &request, Decided::Pass(&level), now)?;
                    q::put_request(
                        tx,
                        &RequestRow {
                            id: request_id.clone(),
                            service: req.service.clone(),
                            account_id: req.account_id.clone(),
                            description: req.description.clone(),
                            attributes: serde_json::to_value(&req.attributes)
                                .unwrap_or(Value::Null),
                            state: "passed".into(),
                            level: Some(level.clone()),
                            failure: None,
                            reconciliation_id: existing
                                .as_ref()
                                .and_then(|r| r.reconciliation_id.clone()),
                            created_at,
                            updated_at: now,
                        },
                    )?;
                    Ok::<_, EntitlementError>(())
                })?;
                Ok(CheckResponse {
                    request_id,
                    decision: "pass",
                    level: Some(level),
                    failure: None,
                    reconciliation: None,
                    plugin,
                })
            }
            Verdict::Fail(failure) => {
                // A reconciliation already under way for this request answers again.
                let live = existing
                    .as_ref()
                    .filter(|r| r.state == "awaiting-reconciliation")
                    .and_then(|r| r.reconciliation_id.clone());
                let procedure = match live {
                    Some(_) => crate::contract::Procedure::None,
                    None => self.procedure(service, &request, &failure, account.clone()),
                };
                let started = store.write(|tx| {
                    insert_decision(tx, &report, &request, Decided::Fail(&failure), now)?;
                    let started = match &live {
                        Some(id) => Some(Started { id: id.clone(), mode: "existing".into(), url: None, flow_id: None }),
                        None => reconcile::start(&self.shared, &self.engine, tx, service, &request, &failure, &procedure, now)?,
                    };
                    let state = if started.is_some() { "awaiting-reconciliation" } else { "denied" };
                    q::put_request(tx, &RequestRow {
                        id: request_id.clone(),
                        service: req.service.clone(),
                        account_id: req.account_id.clone(),
                        description: req.description.clone(),
                        attributes: serde_json::to_value(&req.attributes).unwrap_or(Value::Null),
                        state: state.into(),
                        level: None,
                        failure: serde_json::to_value(&failure).ok(),
                        reconciliation_id: started.as_ref().map(|s| s.id.clone()),
                        created_at,
                        updated_at: now,
                    })?;
                    if live.is_none() {
                        let data = json!({
                            "request": request_json(&request, &req.service),
                            "failure": failure,
                            "reconciliation": started.as_ref().map(|s| json!({"id": s.id, "mode": s.mode})),
                        });
                        outbox::enqueue(tx, "check.failed", service.manifest.webhook.as_deref(), &data, now)?;
                    }
                    Ok::<_, EntitlementError>(started)
                })?;
                self.outbox_signal.raise();
                // The decision is committed: a failure to move the flow now is
                // the driver's to retry, not the caller's problem.
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
        }
    }

    fn existing_ref(&self, id: &str) -> Result<Option<ReconciliationRef>, EntitlementError> {
        let row = self.shared.store.read(|c| q::get_reconciliation(c, id))?;
        Ok(row.map(|r| ReconciliationRef {
            id: r.id,
            mode: r.mode,
            url: None,
        }))
    }

    /// Runs the verifier; a fault or a plugin error is recorded and returned as an error.
    pub(crate) fn verify(
        &self,
        service: &Service,
        request: &ServiceRequest,
        account: Option<Account>,
    ) -> Result<(Verdict, Recorded), EntitlementError> {
        let binding = service.binding(Capability::Verifier).ok_or_else(|| {
            EntitlementError::Invalid(format!("service `{}` has no verifier plugin", service.id()))
        })?;
        let ctx = Context {
            service: service.id().into(),
            config: service.manifest.config.clone(),
            now: Timestamp::now(),
        };
        let call = Call::Verify(VerifyInput {
            request: request.clone(),
            account,
        });
        let inputs = json!({"context": ctx, "call": call});
        let plugin = binding.plugin();
        let recorded = |report: Option<&CallReport>| {
            Recorded(
                plugin.name().into(),
                plugin.digest().to_string(),
                inputs.clone(),
                report.map_or(0, |r| r.elapsed.as_micros() as i64),
            )
        };
        let failure = |message: String| {
            let now = store::now_ms();
            let recorded = recorded(None);
            let written = self
                .shared
                .store
                .write(|tx| insert_decision(tx, &recorded, request, Decided::Error(&message), now));
            if let Err(e) = written {
                tracing::error!("cannot record a faulted decision: {e}");
            }
            EntitlementError::Plugin(message)
        };
        match binding.call(&ctx, &call) {
            Err(e) => {
                // A fault of the live version: the previous good one answers
                // when the service asks for that, and the decision says so.
                let fallback = (service.manifest.on_plugin_error == OnPluginError::LastGood)
                    .then(|| service.fallbacks.get(&Capability::Verifier))
                    .flatten();
                if let Some(fallback) = fallback
                    && let Ok(report) = fallback.call(&ctx, &call)
                    && let Outcome::Verdict(v) = &report.outcome
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
                    return Ok((
                        v.clone(),
                        Recorded(
                            old.name().into(),
                            old.digest().to_string(),
                            inputs.clone(),
                            micros,
                        ),
                    ));
                }
                Err(failure(e.to_string()))
            }
            Ok(report) => match &report.outcome {
                Outcome::Verdict(v) => Ok((v.clone(), recorded(Some(&report)))),
                Outcome::Error { error } => Err(failure(format!(
                    "plugin `{}` declined to decide: {error}",
                    plugin.name()
                ))),
                other => Err(failure(format!(
                    "plugin `{}` answered a verify call with {other:?}",
                    plugin.name()
                ))),
            },
        }
    }

    /// Asks the reconciler what to do; without one, or when it faults, the answer is `none`.
    fn procedure(
        &self,
        service: &Service,
        request: &ServiceRequest,
        failure: &Failure,
        account: Option<Account>,
    ) -> crate::contract::Procedure {
        let Some(binding) = service.binding(Capability::Reconciler) else {
            return crate::contract::Procedure::None;
        };
        let ctx = Context {
            service: service.id().into(),
            config: service.manifest.config.clone(),
            now: Timestamp::now(),
        };
        let call = Call::Procedure(ProcedureInput {
            request: request.clone(),
            failure: failure.clone(),
            account,
        });
        match binding.call(&ctx, &call) {
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
                crate::contract::Procedure::None
            }
            Err(e) => {
                tracing::warn!(
                    service = service.id(),
                    "reconciler failed, denying without reconciliation: {e}"
                );
                crate::contract::Procedure::None
            }
        }
    }
}

/// A decision's provenance: plugin name, digest, inputs, and time in µs.
#[derive(Debug, Clone)]
pub(crate) struct Recorded(pub String, pub String, pub Value, pub i64);

/// What a decision came to.
pub(crate) enum Decided<'a> {
    Pass(&'a str),
    Fail(&'a Failure),
    /// The plugin faulted or declined: the message says how.
    Error(&'a str),
}

pub(crate) fn insert_decision(
    tx: &rusqlite::Connection,
    recorded: &Recorded,
    request: &ServiceRequest,
    decided: Decided<'_>,
    now: i64,
) -> Result<i64, EntitlementError> {
    let Recorded(plugin, digest, inputs, micros) = recorded;
    let text = inputs.to_string();
    let (verdict, level, failure_code, reason) = match decided {
        Decided::Pass(level) => ("pass", Some(level.to_owned()), None, None),
        Decided::Fail(f) => (
            "fail",
            None,
            serde_json::to_value(f.code)
                .ok()
                .and_then(|v| v.as_str().map(String::from)),
            Some(f.reason.clone()),
        ),
        Decided::Error(message) => ("error", None, None, Some(message.to_owned())),
    };
    let row = DecisionRow {
        id: 0,
        at: now,
        service: inputs["context"]["service"]
            .as_str()
            .unwrap_or_default()
            .into(),
        account_id: request.account_id.clone(),
        request_id: request.id.clone(),
        inputs_digest: hex::encode(Sha256::digest(text.as_bytes())),
        inputs: inputs.clone(),
        verdict: verdict.into(),
        level,
        failure_code,
        reason,
        plugin: plugin.clone(),
        plugin_digest: digest.clone(),
        duration_us: *micros,
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
