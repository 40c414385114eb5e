//! Conversions between the version-independent `contract` types and the
//! generated ones of contracts 0.1 and 0.2. Those two share the types of 0.1
//! (0.2 maps its own onto 0.1's with `bindgen!`'s `with`), so one set of
//! conversions, and one body of `invoke`, serves both. 0.3 changed the plan
//! and session types and has its own (`v0_3/convert.rs`); it shares only
//! `capability_exports!` from here.

use jiff::Timestamp;

use crate::contract::{self as c, Properties};

pub(super) use super::v0_1::rulehost::plugin::types as w;

/// The body of `invoke` for every contract version: `$guests` holds the
/// instance's typed exports, `$first` is what comes before a call's own
/// arguments (the context in 0.1, the time in 0.2). The arguments borrow
/// from `$call`; only property lists are gathered into vectors of borrowed
/// pairs first.
macro_rules! invoke_call {
    ($guests:expr, $store:ident, $first:expr, $call:expr) => {{
        use c::{self as c, Call, Outcome};
        use $crate::runtime::bindings::{InvokeError, convert};
        let unsupported = || InvokeError::Unsupported($call.capability());
        let answer = match $call {
            Call::Verify(c::VerifyInput { request, account }) => {
                let g = $guests.verifier.as_ref().ok_or_else(unsupported)?;
                let request_props = convert::props(&request.attributes);
                let account_props = account.as_ref().map(|a| convert::props(&a.attributes));
                g.call_verify(
                    &mut $store,
                    $first,
                    convert::service_request(request, &request_props),
                    convert::account(account.as_ref(), account_props.as_deref()),
                )?
                .map(|v| convert::verdict(v).map(Outcome::Verdict))
            }
            Call::Procedure(c::ProcedureInput {
                request,
                failure,
                account,
            }) => {
                let g = $guests.reconciler.as_ref().ok_or_else(unsupported)?;
                let request_props = convert::props(&request.attributes);
                let account_props = account.as_ref().map(|a| convert::props(&a.attributes));
                g.call_procedure_for(
                    &mut $store,
                    $first,
                    convert::service_request(request, &request_props),
                    convert::w::FailureParam {
                        code: convert::failure_code(failure.code),
                        reason: &failure.reason,
                    },
                    convert::account(account.as_ref(), account_props.as_deref()),
                )?
                .map(|p| Ok(Outcome::Procedure(convert::procedure(p))))
            }
            Call::Restriction(c::RestrictionInput {
                plan,
                account,
                usage,
                communication,
            }) => {
                let g = $guests.plan_policy.as_ref().ok_or_else(unsupported)?;
                let plan_props = convert::props(&plan.config);
                let recent = convert::recent_uses(usage);
                g.call_restriction(
                    &mut $store,
                    $first,
                    convert::plan(plan, &plan_props),
                    convert::usage(usage, &recent),
                    convert::communication(communication, &account.id),
                )?
                .map(|reason| {
                    Ok(Outcome::Restriction {
                        restricted: reason.is_some(),
                        reason,
                        alternate: None,
                    })
                })
            }
            // Before 0.3 a plugin was asked per association whether to drop
            // it; the answers together are 0.3's one reset.
            Call::Reset(c::ResetInput { plan, usage }) => {
                let g = $guests.plan_policy.as_ref().ok_or_else(unsupported)?;
                let plan_props = convert::props(&plan.config);
                let recent = convert::recent_uses(usage);
                let mut dissociate = Vec::new();
                let mut declined = None;
                for association in &usage.associations {
                    match g.call_reset_due(
                        &mut $store,
                        $first.clone(),
                        convert::plan(plan, &plan_props),
                        convert::association(association),
                        convert::usage(usage, &recent),
                    )? {
                        Ok(true) => dissociate.push(association.destination.clone()),
                        Ok(false) => {}
                        Err(error) => {
                            declined = Some(error);
                            break;
                        }
                    }
                }
                match declined {
                    Some(error) => Err(error),
                    None => Ok(Ok(Outcome::Reset {
                        reset: !dissociate.is_empty(),
                        dissociate,
                        reset_counters: false,
                        reason: String::new(),
                    })),
                }
            }
            // Before 0.3 a session had no end event: its end is everyone
            // still present leaving, one after another.
            Call::OnEvent(c::OnEventInput { session, event }) => {
                let g = $guests.session_charging.as_ref().ok_or_else(unsupported)?;
                let events: Vec<c::SessionEventAt> = match &event.event {
                    c::SessionEvent::End {} => session
                        .participants
                        .iter()
                        .map(|p| c::SessionEventAt {
                            at: event.at,
                            event: c::SessionEvent::Leave(p.id.clone()),
                        })
                        .collect(),
                    _ => vec![event.clone()],
                };
                let mut state = session.clone();
                let mut charges = Vec::new();
                let mut declined = None;
                for event in &events {
                    let participants: Vec<_> = state
                        .participants
                        .iter()
                        .map(convert::participant)
                        .collect();
                    let answer = g.call_on_event(
                        &mut $store,
                        $first.clone(),
                        convert::w::Session {
                            id: &state.id,
                            started_at: convert::seconds(state.started_at),
                            last_event_at: convert::seconds(state.last_event_at),
                            participants: &participants,
                        },
                        convert::session_event(event),
                    )?;
                    match answer {
                        Ok(more) => charges.extend(
                            more.into_iter()
                                .map(|x| convert::charge(x, state.last_event_at, event.at)),
                        ),
                        Err(error) => {
                            declined = Some(error);
                            break;
                        }
                    }
                    if let c::SessionEvent::Leave(id) = &event.event {
                        state.participants.retain(|p| p.id != *id);
                    }
                    state.last_event_at = event.at;
                }
                match declined {
                    Some(error) => Err(error),
                    None => Ok(Ok(Outcome::Charges { charges })),
                }
            }
        };
        match answer {
            Ok(outcome) => outcome.map_err(InvokeError::Malformed),
            // An `err` from the plugin is its answer, not a fault.
            Err(error) => Ok(Outcome::Error { error }),
        }
    }};
}
pub(super) use invoke_call;

/// The export indices and typed exports of the four capabilities, for a
/// version module whose bindings name them `verifier`, `reconciler`,
/// `plan_policy` and `session_charging`.
macro_rules! capability_exports {
    () => {
        /// Export indices of the capabilities, looked up once per plugin version.
        pub struct CapabilityIndices {
            pub verifier: Option<verifier::GuestIndices>,
            pub reconciler: Option<reconciler::GuestIndices>,
            pub plan_policy: Option<plan_policy::GuestIndices>,
            pub session_charging: Option<session_charging::GuestIndices>,
        }

        /// Typed capability exports of one live instance.
        pub struct CapabilityGuests {
            pub verifier: Option<verifier::Guest>,
            pub reconciler: Option<reconciler::Guest>,
            pub plan_policy: Option<plan_policy::Guest>,
            pub session_charging: Option<session_charging::Guest>,
        }

        impl CapabilityIndices {
            /// Looks up the exports for each capability the plugin declares.
            pub fn new<T>(
                pre: &wasmtime::component::InstancePre<T>,
                capabilities: &[$crate::contract::Capability],
            ) -> wasmtime::Result<Self> {
                let has = |c| capabilities.contains(&c);
                Ok(CapabilityIndices {
                    verifier: has($crate::contract::Capability::Verifier)
                        .then(|| verifier::GuestIndices::new(pre))
                        .transpose()?,
                    reconciler: has($crate::contract::Capability::Reconciler)
                        .then(|| reconciler::GuestIndices::new(pre))
                        .transpose()?,
                    plan_policy: has($crate::contract::Capability::PlanPolicy)
                        .then(|| plan_policy::GuestIndices::new(pre))
                        .transpose()?,
                    session_charging: has($crate::contract::Capability::SessionCharging)
                        .then(|| session_charging::GuestIndices::new(pre))
                        .transpose()?,
                })
            }

            /// Type-checks and loads the exports of a fresh instance.
            pub fn load(
                &self,
                mut store: impl wasmtime::AsContextMut,
                instance: &wasmtime::component::Instance,
            ) -> wasmtime::Result<CapabilityGuests> {
                Ok(CapabilityGuests {
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
    };
}
pub(super) use capability_exports;

/// For a version with `setup` (0.2 on): the export indices and typed
/// exports of `setup` and the capabilities, and the step that configures
/// an instance for the service and config of a call. Expanded in the
/// version's module, so `setup`, `convert` and the types are that
/// version's.
macro_rules! configured_exports {
    ($version:literal) => {
        $crate::runtime::bindings::convert::capability_exports!();

        /// Export indices looked up once per plugin version.
        pub struct Indices {
            setup: setup::GuestIndices,
            capabilities: CapabilityIndices,
        }

        /// Typed exports of one live instance, and the service and config
        /// it was last configured with.
        pub struct Guests {
            setup: setup::Guest,
            capabilities: CapabilityGuests,
            configured: Option<(String, Properties)>,
        }

        impl Indices {
            /// Looks up `setup` and the exports of each capability the
            /// plugin declares.
            pub fn new<T>(
                pre: &wasmtime::component::InstancePre<T>,
                capabilities: &[c::Capability],
            ) -> wasmtime::Result<Self> {
                Ok(Indices {
                    setup: setup::GuestIndices::new(pre).map_err(|e| {
                        e.context(concat!(
                            "a contract ",
                            $version,
                            " plugin must export `rulehost:plugin/setup@",
                            $version,
                            ".0` (`rulehost_sdk::export!` does; without the SDK, \
                             export the `setup-plugin` world too)"
                        ))
                    })?,
                    capabilities: CapabilityIndices::new(pre, capabilities)?,
                })
            }

            /// Type-checks and loads the exports of a fresh instance.
            pub fn load(
                &self,
                mut store: impl wasmtime::AsContextMut,
                instance: &wasmtime::component::Instance,
            ) -> wasmtime::Result<Guests> {
                Ok(Guests {
                    setup: self.setup.load(&mut store, instance)?,
                    capabilities: self.capabilities.load(&mut store, instance)?,
                    configured: None,
                })
            }
        }

        impl Guests {
            /// Configures the instance for `ctx`'s service and config
            /// unless it serves them already (or none yet). A configuration
            /// the plugin refuses is the call's answer (`Some`), like any
            /// `err` it returns.
            fn configure(
                &mut self,
                mut store: impl wasmtime::AsContextMut,
                ctx: &c::Context,
            ) -> Result<Option<Outcome>, InvokeError> {
                let current = self.configured.as_ref().is_some_and(|(service, config)| {
                    *service == ctx.service && *config == ctx.config
                });
                if current {
                    return Ok(None);
                }
                self.configured = None;
                let config = convert::props(&ctx.config);
                let wctx = convert::context(ctx, &config);
                if let Err(error) = self.setup.call_configure(&mut store, wctx)? {
                    return Ok(Some(Outcome::Error { error }));
                }
                self.configured = Some((ctx.service.clone(), ctx.config.clone()));
                Ok(None)
            }
        }
    };
}
pub(super) use configured_exports;

pub(super) fn seconds(t: Timestamp) -> i64 {
    t.as_second()
}

pub(super) fn props(p: &Properties) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub(super) fn context<'a>(ctx: &'a c::Context, config: &'a [(&'a str, &'a str)]) -> w::Context<'a> {
    w::Context {
        service: &ctx.service,
        config,
        now: seconds(ctx.now),
    }
}

pub(super) fn account<'a>(
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

pub(super) fn service_request<'a>(
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

pub(super) fn failure_code(code: c::FailureCode) -> w::FailureCode {
    match code {
        c::FailureCode::NoAccount => w::FailureCode::NoAccount,
        c::FailureCode::Expired => w::FailureCode::Expired,
        c::FailureCode::Unpaid => w::FailureCode::Unpaid,
        c::FailureCode::PaymentPerIncident => w::FailureCode::PaymentPerIncident,
        c::FailureCode::NeedsAuthorization => w::FailureCode::NeedsAuthorization,
        c::FailureCode::Other => w::FailureCode::Other,
    }
}

pub(super) fn plan<'a>(p: &'a c::Plan, config: &'a [(&'a str, &'a str)]) -> w::Plan<'a> {
    w::Plan {
        id: &p.id,
        config,
        max_destinations: p.max_destinations,
    }
}

pub(super) fn recent_uses(u: &c::Usage) -> Vec<i64> {
    u.recent_uses.iter().copied().map(seconds).collect()
}

pub(super) fn usage<'a>(u: &c::Usage, recent_uses: &'a [i64]) -> w::Usage<'a> {
    w::Usage {
        total_uses: u.total_uses,
        recent_uses,
        associated_destinations: u32::try_from(u.associations.len()).unwrap_or(u32::MAX),
    }
}

/// Before 0.3 a communication named one access group: the first.
pub(super) fn communication<'a>(
    x: &'a c::Communication,
    account_id: &'a str,
) -> w::Communication<'a> {
    w::Communication {
        id: &x.id,
        account_id,
        access_group: x.access_groups.first().map_or("", String::as_str),
        carrier: &x.carrier,
        destination: &x.destination,
        start: seconds(x.start),
    }
}

/// Before 0.3 an association always had a last use: never used is its start.
pub(super) fn association(a: &c::Association) -> w::Association<'_> {
    w::Association {
        destination: &a.destination,
        associated_at: seconds(a.associated_at),
        uses: a.uses,
        last_used: seconds(a.last_used.unwrap_or(a.associated_at)),
    }
}

pub(super) fn participant(p: &c::Participant) -> w::Participant<'_> {
    w::Participant {
        id: &p.id,
        account_id: &p.account_id,
        joined_at: seconds(p.joined_at),
    }
}

pub(super) fn session_event(e: &c::SessionEventAt) -> w::SessionEventAt<'_> {
    w::SessionEventAt {
        event: match &e.event {
            c::SessionEvent::Join(p) => w::SessionEvent::Join(participant(p)),
            c::SessionEvent::Leave(id) => w::SessionEvent::Leave(id),
            // `invoke_call!` turns an end into leaves before it gets here.
            c::SessionEvent::End {} => w::SessionEvent::Leave(""),
        },
        at: seconds(e.at),
    }
}

pub(super) fn verdict(v: w::Verdict) -> Result<c::Verdict, String> {
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

pub(super) fn notice(n: w::AsyncNotice) -> c::AsyncNotice {
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

pub(super) fn procedure(p: w::Procedure) -> c::Procedure {
    match p {
        w::Procedure::None => c::Procedure::None,
        w::Procedure::Sync => c::Procedure::Sync,
        w::Procedure::Async(n) => c::Procedure::Async(notice(n)),
        w::Procedure::SyncThenAsync(n) => c::Procedure::SyncThenAsync(notice(n)),
    }
}

/// Before 0.3 a charge covered the time since the previous event.
pub(super) fn charge(x: w::Charge, period_start: Timestamp, period_end: Timestamp) -> c::Charge {
    c::Charge {
        participant: x.participant,
        account_id: x.account_id,
        amount: x.amount,
        description: x.description,
        period_start,
        period_end,
    }
}
