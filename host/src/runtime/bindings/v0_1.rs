//! Bindings for `rulehost:plugin@0.1.0` and conversions between its
//! generated types and the version-independent `contract` types.

use jiff::Timestamp;

use crate::contract::{self as c, Call, Capability, Outcome, Properties};

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    // Arguments borrow the host's values: no string is copied on the host
    // side before wasmtime copies it into the guest.
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::rulehost::plugin::host::{Host, LogLevel};
use self::rulehost::plugin::types as w;
pub use exports::rulehost::plugin::{plan_policy, reconciler, session_charging, verifier};

/// Export indices looked up once per plugin version.
pub struct Indices {
    pub verifier: Option<verifier::GuestIndices>,
    pub reconciler: Option<reconciler::GuestIndices>,
    pub plan_policy: Option<plan_policy::GuestIndices>,
    pub session_charging: Option<session_charging::GuestIndices>,
}

/// Typed exports of one live instance.
pub struct Guests {
    verifier: Option<verifier::Guest>,
    reconciler: Option<reconciler::Guest>,
    plan_policy: Option<plan_policy::Guest>,
    session_charging: Option<session_charging::Guest>,
}

impl Indices {
    /// Looks up the exports for each capability the plugin declares.
    pub fn new<T>(
        pre: &wasmtime::component::InstancePre<T>,
        capabilities: &[Capability],
    ) -> wasmtime::Result<Self> {
        let has = |c| capabilities.contains(&c);
        Ok(Indices {
            verifier: has(Capability::Verifier)
                .then(|| verifier::GuestIndices::new(pre))
                .transpose()?,
            reconciler: has(Capability::Reconciler)
                .then(|| reconciler::GuestIndices::new(pre))
                .transpose()?,
            plan_policy: has(Capability::PlanPolicy)
                .then(|| plan_policy::GuestIndices::new(pre))
                .transpose()?,
            session_charging: has(Capability::SessionCharging)
                .then(|| session_charging::GuestIndices::new(pre))
                .transpose()?,
        })
    }

    /// Type-checks and loads the exports of a fresh instance.
    pub fn load(
        &self,
        mut store: impl wasmtime::AsContextMut,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Guests> {
        Ok(Guests {
            verifier: self
                .verifier
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
            reconciler: self
                .reconciler
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
            plan_policy: self
                .plan_policy
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
            session_charging: self
                .session_charging
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
        })
    }
}

/// Why a call could not be made or its answer not understood.
#[derive(Debug)]
pub enum InvokeError {
    /// The plugin does not export the capability the call needs.
    Unsupported(Capability),
    /// A trap, a limit, or any other failure inside wasmtime.
    Wasm(wasmtime::Error),
    /// The plugin answered with a value the contract does not allow.
    Malformed(String),
}

impl From<wasmtime::Error> for InvokeError {
    fn from(e: wasmtime::Error) -> Self {
        InvokeError::Wasm(e)
    }
}

/// Makes one call on a live instance.
pub fn invoke<S: wasmtime::AsContextMut>(
    guests: &Guests,
    mut store: S,
    ctx: &c::Context,
    call: &Call,
) -> Result<Outcome, InvokeError> {
    // The arguments borrow from `ctx` and `call`; only the property lists
    // are gathered into vectors of borrowed pairs first.
    let config = props(&ctx.config);
    let wctx = w::Context {
        service: &ctx.service,
        config: &config,
        now: seconds(ctx.now),
    };
    let unsupported = || InvokeError::Unsupported(call.capability());
    let answer = match call {
        Call::Verify(c::VerifyInput { request, account }) => {
            let g = guests.verifier.as_ref().ok_or_else(unsupported)?;
            let request_props = props(&request.attributes);
            let account_props = account.as_ref().map(|a| props(&a.attributes));
            g.call_verify(
                &mut store,
                wctx,
                service_request(request, &request_props),
                self::account(account.as_ref(), account_props.as_deref()),
            )?
            .map(|v| verdict(v).map(Outcome::Verdict))
        }
        Call::Procedure(c::ProcedureInput {
            request,
            failure,
            account,
        }) => {
            let g = guests.reconciler.as_ref().ok_or_else(unsupported)?;
            let request_props = props(&request.attributes);
            let account_props = account.as_ref().map(|a| props(&a.attributes));
            g.call_procedure_for(
                &mut store,
                wctx,
                service_request(request, &request_props),
                w::FailureParam {
                    code: failure_code(failure.code),
                    reason: &failure.reason,
                },
                self::account(account.as_ref(), account_props.as_deref()),
            )?
            .map(|p| Ok(Outcome::Procedure(procedure(p))))
        }
        Call::Restriction(c::RestrictionInput {
            plan,
            usage,
            communication,
        }) => {
            let g = guests.plan_policy.as_ref().ok_or_else(unsupported)?;
            let plan_props = props(&plan.config);
            let recent = recent_uses(usage);
            g.call_restriction(
                &mut store,
                wctx,
                self::plan(plan, &plan_props),
                self::usage(usage, &recent),
                self::communication(communication),
            )?
            .map(|reason| {
                Ok(Outcome::Restriction {
                    restricted: reason.is_some(),
                    reason,
                })
            })
        }
        Call::ResetDue(c::ResetDueInput {
            plan,
            association,
            usage,
        }) => {
            let g = guests.plan_policy.as_ref().ok_or_else(unsupported)?;
            let plan_props = props(&plan.config);
            let recent = recent_uses(usage);
            g.call_reset_due(
                &mut store,
                wctx,
                self::plan(plan, &plan_props),
                self::association(association),
                self::usage(usage, &recent),
            )?
            .map(|reset| Ok(Outcome::Reset { reset }))
        }
        Call::OnEvent(c::OnEventInput { session, event }) => {
            let g = guests.session_charging.as_ref().ok_or_else(unsupported)?;
            let participants: Vec<_> = session.participants.iter().map(participant).collect();
            g.call_on_event(
                &mut store,
                wctx,
                w::Session {
                    id: &session.id,
                    started_at: seconds(session.started_at),
                    last_event_at: seconds(session.last_event_at),
                    participants: &participants,
                },
                session_event(event),
            )?
            .map(|charges| {
                Ok(Outcome::Charges {
                    charges: charges.into_iter().map(charge).collect(),
                })
            })
        }
    };
    match answer {
        Ok(outcome) => outcome.map_err(InvokeError::Malformed),
        // An `err` from the plugin is its answer, not a fault.
        Err(error) => Ok(Outcome::Error { error }),
    }
}

fn seconds(t: Timestamp) -> i64 {
    t.as_second()
}

fn props(p: &Properties) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn account<'a>(
    a: Option<&'a c::Account>,
    attributes: Option<&'a [(&'a str, &'a str)]>,
) -> Option<w::Account<'a>> {
    let (a, attributes) = (a?, attributes?);
    Some(w::Account {
        id: &a.id,
        status: match a.status {
            c::AccountStatus::Active => w::AccountStatus::Active,
            c::AccountStatus::Expired => w::AccountStatus::Expired,
            c::AccountStatus::Suspended => w::AccountStatus::Suspended,
        },
        paid_up: a.paid_up,
        tier: &a.tier,
        contract_end: a.contract_end.map(seconds),
        contact: a.contact.as_ref().map(|x| w::ContactParam {
            name: &x.name,
            email: &x.email,
        }),
        attributes,
    })
}

fn service_request<'a>(
    r: &'a c::ServiceRequest,
    attributes: &'a [(&'a str, &'a str)],
) -> w::ServiceRequest<'a> {
    w::ServiceRequest {
        id: &r.id,
        account_id: &r.account_id,
        description: &r.description,
        attributes,
    }
}

fn failure_code(code: c::FailureCode) -> w::FailureCode {
    match code {
        c::FailureCode::NoAccount => w::FailureCode::NoAccount,
        c::FailureCode::Expired => w::FailureCode::Expired,
        c::FailureCode::Unpaid => w::FailureCode::Unpaid,
        c::FailureCode::PaymentPerIncident => w::FailureCode::PaymentPerIncident,
        c::FailureCode::NeedsAuthorization => w::FailureCode::NeedsAuthorization,
        c::FailureCode::Other => w::FailureCode::Other,
    }
}

fn plan<'a>(p: &'a c::Plan, config: &'a [(&'a str, &'a str)]) -> w::Plan<'a> {
    w::Plan {
        id: &p.id,
        config,
        max_destinations: p.max_destinations,
    }
}

fn recent_uses(u: &c::Usage) -> Vec<i64> {
    u.recent_uses.iter().copied().map(seconds).collect()
}

fn usage<'a>(u: &c::Usage, recent_uses: &'a [i64]) -> w::Usage<'a> {
    w::Usage {
        total_uses: u.total_uses,
        recent_uses,
        associated_destinations: u.associated_destinations,
    }
}

fn communication(x: &c::Communication) -> w::Communication<'_> {
    w::Communication {
        id: &x.id,
        account_id: &x.account_id,
        access_group: &x.access_group,
        carrier: &x.carrier,
        destination: &x.destination,
        start: seconds(x.start),
    }
}

fn association(a: &c::Association) -> w::Association<'_> {
    w::Association {
        destination: &a.destination,
        associated_at: seconds(a.associated_at),
        uses: a.uses,
        last_used: seconds(a.last_used),
    }
}

fn participant(p: &c::Participant) -> w::Participant<'_> {
    w::Participant {
        id: &p.id,
        account_id: &p.account_id,
        joined_at: seconds(p.joined_at),
    }
}

fn session_event(e: &c::SessionEventAt) -> w::SessionEventAt<'_> {
    w::SessionEventAt {
        event: match &e.event {
            c::SessionEvent::Join(p) => w::SessionEvent::Join(participant(p)),
            c::SessionEvent::Leave(id) => w::SessionEvent::Leave(id),
        },
        at: seconds(e.at),
    }
}

fn verdict(v: w::Verdict) -> Result<c::Verdict, String> {
    Ok(match v {
        w::Verdict::Pass(level) if level.trim().is_empty() => {
            return Err("a pass verdict must name a level".into());
        }
        w::Verdict::Pass(level) => c::Verdict::Pass { level },
        w::Verdict::Fail(f) => c::Verdict::Fail(c::Failure {
            code: match f.code {
                w::FailureCode::NoAccount => c::FailureCode::NoAccount,
                w::FailureCode::Expired => c::FailureCode::Expired,
                w::FailureCode::Unpaid => c::FailureCode::Unpaid,
                w::FailureCode::PaymentPerIncident => c::FailureCode::PaymentPerIncident,
                w::FailureCode::NeedsAuthorization => c::FailureCode::NeedsAuthorization,
                w::FailureCode::Other => c::FailureCode::Other,
            },
            reason: f.reason,
        }),
    })
}

fn notice(n: w::AsyncNotice) -> c::AsyncNotice {
    c::AsyncNotice {
        contact: c::Contact {
            name: n.contact.name,
            email: n.contact.email,
        },
        channel: match n.channel {
            w::Channel::Email => c::Channel::Email,
            w::Channel::Webhook(url) => c::Channel::Webhook(url),
        },
        lapse_after: n.lapse_after,
        second_notice_before: n.second_notice_before,
    }
}

fn procedure(p: w::Procedure) -> c::Procedure {
    match p {
        w::Procedure::None => c::Procedure::None,
        w::Procedure::Sync => c::Procedure::Sync,
        w::Procedure::Async(n) => c::Procedure::Async(notice(n)),
        w::Procedure::SyncThenAsync(n) => c::Procedure::SyncThenAsync(notice(n)),
    }
}

fn charge(x: w::Charge) -> c::Charge {
    c::Charge {
        participant: x.participant,
        account_id: x.account_id,
        amount: x.amount,
        description: x.description,
    }
}
