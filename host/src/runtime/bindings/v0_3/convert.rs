//! Conversions between the version-independent `contract` types and the
//! generated ones of contract 0.3, and the checks on what a 0.3 plugin
//! answers: an answer the contract does not allow (a restriction naming an
//! empty alternate, a reset dropping a destination it was not given, a
//! charge to someone not in the session or whose period ends before it
//! starts) is an `Err` with a message, which the caller makes
//! `InvokeError::Malformed`.

use std::collections::HashSet;

use jiff::Timestamp;

use super::rulehost::plugin::types as w;
use crate::contract::{self as c, Outcome, Properties};

pub(super) fn seconds(t: Timestamp) -> i64 {
    t.as_second()
}

pub(super) fn props(p: &Properties) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub(super) fn strs(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

pub(super) fn context<'a>(ctx: &'a c::Context, config: &'a [(&'a str, &'a str)]) -> w::Context<'a> {
    w::Context {
        service: &ctx.service,
        config,
        now: seconds(ctx.now),
    }
}

// Entitlement: the types of 0.1 and 0.2, generated again for 0.3.

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

pub(super) fn failure(f: &c::Failure) -> w::FailureParam<'_> {
    w::FailureParam {
        code: match f.code {
            c::FailureCode::NoAccount => w::FailureCode::NoAccount,
            c::FailureCode::Expired => w::FailureCode::Expired,
            c::FailureCode::Unpaid => w::FailureCode::Unpaid,
            c::FailureCode::PaymentPerIncident => w::FailureCode::PaymentPerIncident,
            c::FailureCode::NeedsAuthorization => w::FailureCode::NeedsAuthorization,
            c::FailureCode::Other => w::FailureCode::Other,
        },
        reason: &f.reason,
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

pub(super) fn procedure(p: w::Procedure) -> c::Procedure {
    match p {
        w::Procedure::None => c::Procedure::None,
        w::Procedure::Sync => c::Procedure::Sync,
        w::Procedure::Async(n) => c::Procedure::Async(notice(n)),
        w::Procedure::SyncThenAsync(n) => c::Procedure::SyncThenAsync(notice(n)),
    }
}

// Plans.

pub(super) fn plan<'a>(p: &'a c::Plan, config: &'a [(&'a str, &'a str)]) -> w::Plan<'a> {
    w::Plan {
        id: &p.id,
        kind: match p.kind {
            c::PlanKind::PayAsYouGo => w::PlanKind::PayAsYouGo,
            c::PlanKind::Subscription => w::PlanKind::Subscription,
            c::PlanKind::Unlimited => w::PlanKind::Unlimited,
        },
        config,
        max_destinations: p.max_destinations,
    }
}

pub(super) fn plan_account(a: &c::PlanAccount) -> w::PlanAccount<'_> {
    w::PlanAccount {
        id: &a.id,
        group: &a.group,
        billing: match a.billing {
            c::Billing::Prepaid => w::Billing::Prepaid,
            c::Billing::Postpaid => w::Billing::Postpaid,
        },
        balance: a.balance,
    }
}

pub(super) fn communication<'a>(
    x: &'a c::Communication,
    access_groups: &'a [&'a str],
    attributes: &'a [(&'a str, &'a str)],
) -> w::Communication<'a> {
    w::Communication {
        id: &x.id,
        access_method: &x.access_method,
        access_groups,
        carrier: &x.carrier,
        destination: &x.destination,
        region: &x.region,
        start: seconds(x.start),
        sequence: x.sequence,
        attributes,
    }
}

pub(super) fn recent_uses(u: &c::Usage) -> Vec<i64> {
    u.recent_uses.iter().copied().map(seconds).collect()
}

pub(super) fn associations(u: &c::Usage) -> Vec<w::Association<'_>> {
    u.associations
        .iter()
        .map(|a| w::Association {
            destination: &a.destination,
            associated_at: seconds(a.associated_at),
            uses: a.uses,
            last_used: a.last_used.map(seconds),
            expires_at: a.expires_at.map(seconds),
        })
        .collect()
}

pub(super) fn usage<'a>(
    u: &c::Usage,
    recent_uses: &'a [i64],
    associations: &'a [w::Association<'a>],
) -> w::Usage<'a> {
    w::Usage {
        total_uses: u.total_uses,
        recent_uses,
        counters_since: seconds(u.counters_since),
        associations,
    }
}

/// A plan policy's restriction, checked: a restriction gives a reason, and
/// an alternate it names is a plan id, not blank.
pub(super) fn restriction(r: Option<w::PlanRestriction>) -> Result<Outcome, String> {
    let Some(r) = r else {
        return Ok(Outcome::Restriction {
            restricted: false,
            reason: None,
            alternate: None,
        });
    };
    if r.reason.trim().is_empty() {
        return Err("a restriction must give a reason (a sentence for the caller)".into());
    }
    if r.alternate.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err(
            "a restriction's alternate must name a plan (none leaves the choice to the host)"
                .into(),
        );
    }
    Ok(Outcome::Restriction {
        restricted: true,
        reason: Some(r.reason),
        alternate: r.alternate,
    })
}

/// A plan policy's reset, checked against the usage it was given: it drops
/// only destinations among the associations, each once, does something,
/// and says why.
pub(super) fn reset(r: Option<w::PlanReset>, usage: &c::Usage) -> Result<Outcome, String> {
    let Some(r) = r else {
        return Ok(Outcome::Reset {
            reset: false,
            dissociate: Vec::new(),
            reset_counters: false,
            reason: String::new(),
        });
    };
    let associated: HashSet<&str> = usage
        .associations
        .iter()
        .map(|a| a.destination.as_str())
        .collect();
    let mut seen = HashSet::new();
    for destination in &r.dissociate {
        if !associated.contains(destination.as_str()) {
            return Err(format!(
                "a reset dissociates `{destination}`, which is not among the plan's {} associated destinations",
                associated.len()
            ));
        }
        if !seen.insert(destination.as_str()) {
            return Err(format!("a reset dissociates `{destination}` twice"));
        }
    }
    if r.dissociate.is_empty() && !r.reset_counters {
        return Err(
            "a reset must dissociate a destination or reset the counters (none says no reset is due)"
                .into(),
        );
    }
    if r.reason.trim().is_empty() {
        return Err("a reset must give a reason (for the log and the records)".into());
    }
    Ok(Outcome::Reset {
        reset: true,
        dissociate: r.dissociate,
        reset_counters: r.reset_counters,
        reason: r.reason,
    })
}

// Sessions.

pub(super) fn participant<'a>(
    p: &'a c::Participant,
    attributes: &'a [(&'a str, &'a str)],
) -> w::Participant<'a> {
    w::Participant {
        id: &p.id,
        account_id: &p.account_id,
        joined_at: seconds(p.joined_at),
        attributes,
    }
}

pub(super) fn session<'a>(
    s: &'a c::Session,
    attributes: &'a [(&'a str, &'a str)],
    participants: &'a [w::Participant<'a>],
) -> w::Session<'a> {
    w::Session {
        id: &s.id,
        started_at: seconds(s.started_at),
        last_event_at: seconds(s.last_event_at),
        attributes,
        participants,
    }
}

/// `joiner_attributes` are the joining participant's, for a join.
pub(super) fn session_event<'a>(
    e: &'a c::SessionEventAt,
    joiner_attributes: &'a [(&'a str, &'a str)],
) -> w::SessionEventAt<'a> {
    w::SessionEventAt {
        event: match &e.event {
            c::SessionEvent::Join(p) => w::SessionEvent::Join(participant(p, joiner_attributes)),
            c::SessionEvent::Leave(id) => w::SessionEvent::Leave(id),
            c::SessionEvent::End {} => w::SessionEvent::End,
        },
        at: seconds(e.at),
    }
}

fn time(seconds: i64, what: &str) -> Result<Timestamp, String> {
    Timestamp::from_second(seconds).map_err(|_| format!("{what} {seconds} is not a time"))
}

/// A session-charging plugin's charges, checked: each goes to a participant
/// present before the event or joining with it, on that participant's
/// account, for a period that does not end before it starts.
pub(super) fn charges(
    charges: Vec<w::Charge>,
    session: &c::Session,
    event: &c::SessionEventAt,
) -> Result<Outcome, String> {
    let joiner = match &event.event {
        c::SessionEvent::Join(p) => Some(p),
        _ => None,
    };
    let find = |id: &str| {
        session
            .participants
            .iter()
            .chain(joiner)
            .find(|p| p.id == id)
    };
    let charges = charges
        .into_iter()
        .map(|x| {
            let Some(participant) = find(&x.participant) else {
                return Err(format!(
                    "a charge names participant `{}`, who is neither in session `{}` nor joining it",
                    x.participant, session.id
                ));
            };
            if x.account_id != participant.account_id {
                return Err(format!(
                    "a charge to participant `{}` names account `{}`, not theirs (`{}`)",
                    x.participant, x.account_id, participant.account_id
                ));
            }
            if x.period_end < x.period_start {
                return Err(format!(
                    "a charge to participant `{}` has a period that ends ({}) before it starts ({})",
                    x.participant, x.period_end, x.period_start
                ));
            }
            Ok(c::Charge {
                period_start: time(x.period_start, "a charge's period start")?,
                period_end: time(x.period_end, "a charge's period end")?,
                participant: x.participant,
                account_id: x.account_id,
                amount: x.amount,
                description: x.description,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Outcome::Charges { charges })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn usage(destinations: &[&str]) -> c::Usage {
        c::Usage {
            total_uses: 3,
            recent_uses: vec![],
            counters_since: at(1_000),
            associations: destinations
                .iter()
                .map(|d| c::Association {
                    destination: (*d).into(),
                    associated_at: at(1_000),
                    uses: 1,
                    last_used: None,
                    expires_at: None,
                })
                .collect(),
        }
    }

    fn plan_reset(dissociate: &[&str], reset_counters: bool, reason: &str) -> w::PlanReset {
        w::PlanReset {
            dissociate: dissociate.iter().map(|d| (*d).to_owned()).collect(),
            reset_counters,
            reason: reason.into(),
        }
    }

    #[test]
    fn restrictions_give_a_reason_and_name_a_real_alternate() {
        let restriction_of = |reason: &str, alternate: Option<&str>| {
            restriction(Some(w::PlanRestriction {
                reason: reason.into(),
                alternate: alternate.map(Into::into),
            }))
        };
        assert_eq!(
            restriction(None),
            Ok(Outcome::Restriction {
                restricted: false,
                reason: None,
                alternate: None
            })
        );
        assert_eq!(
            restriction_of("only on Fridays", Some("standard")),
            Ok(Outcome::Restriction {
                restricted: true,
                reason: Some("only on Fridays".into()),
                alternate: Some("standard".into())
            })
        );
        assert!(restriction_of("only on Fridays", None).is_ok());
        let blank = restriction_of("only on Fridays", Some(" "));
        assert!(blank.is_err_and(|e| e.contains("alternate must name a plan")));
        let silent = restriction_of("", Some("standard"));
        assert!(silent.is_err_and(|e| e.contains("must give a reason")));
    }

    #[test]
    fn resets_drop_only_destinations_they_were_given() {
        let given = usage(&["+441", "+442"]);
        assert_eq!(
            reset(None, &given),
            Ok(Outcome::Reset {
                reset: false,
                dissociate: vec![],
                reset_counters: false,
                reason: String::new()
            })
        );
        assert_eq!(
            reset(Some(plan_reset(&["+442"], false, "5 uses")), &given),
            Ok(Outcome::Reset {
                reset: true,
                dissociate: vec!["+442".into()],
                reset_counters: false,
                reason: "5 uses".into()
            })
        );
        assert!(reset(Some(plan_reset(&[], true, "weekly")), &given).is_ok());
        let stranger = reset(Some(plan_reset(&["+443"], false, "5 uses")), &given);
        assert_eq!(
            stranger,
            Err(
                "a reset dissociates `+443`, which is not among the plan's 2 associated destinations"
                    .into()
            )
        );
        let twice = reset(Some(plan_reset(&["+441", "+441"], true, "daily")), &given);
        assert!(twice.is_err_and(|e| e.contains("`+441` twice")));
        let nothing = reset(Some(plan_reset(&[], false, "daily")), &given);
        assert!(nothing.is_err_and(|e| e.contains("must dissociate a destination or reset")));
        let silent = reset(Some(plan_reset(&["+441"], true, " ")), &given);
        assert!(silent.is_err_and(|e| e.contains("must give a reason")));
    }

    fn person(id: &str, account_id: &str) -> c::Participant {
        c::Participant {
            id: id.into(),
            account_id: account_id.into(),
            joined_at: at(1_000),
            attributes: Properties::default(),
        }
    }

    fn charge(participant: &str, account_id: &str, start: i64, end: i64) -> w::Charge {
        w::Charge {
            participant: participant.into(),
            account_id: account_id.into(),
            amount: 5,
            description: "a minute".into(),
            period_start: start,
            period_end: end,
        }
    }

    #[test]
    fn charges_go_to_participants_on_their_accounts_for_forward_periods() {
        let session = c::Session {
            id: "conf-1".into(),
            started_at: at(1_000),
            last_event_at: at(1_000),
            attributes: Properties::default(),
            participants: vec![person("p1", "acme-1")],
        };
        let join = c::SessionEventAt {
            at: at(1_060),
            event: c::SessionEvent::Join(person("p2", "acme-2")),
        };
        let end = c::SessionEventAt {
            at: at(1_060),
            event: c::SessionEvent::End {},
        };
        let got = charges(
            vec![
                charge("p1", "acme-1", 1_000, 1_060),
                charge("p2", "acme-2", 1_060, 1_060),
            ],
            &session,
            &join,
        );
        let Ok(Outcome::Charges { charges: got }) = got else {
            panic!("{got:?}");
        };
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].period_start, got[0].period_end),
            (at(1_000), at(1_060))
        );
        assert_eq!(got[1].account_id, "acme-2");

        // The joiner is chargeable only on a join.
        let stranger = charges(vec![charge("p2", "acme-2", 1_000, 1_060)], &session, &end);
        assert_eq!(
            stranger,
            Err("a charge names participant `p2`, who is neither in session `conf-1` nor joining it".into())
        );
        let elsewhere = charges(vec![charge("p1", "acme-9", 1_000, 1_060)], &session, &end);
        assert_eq!(
            elsewhere,
            Err(
                "a charge to participant `p1` names account `acme-9`, not theirs (`acme-1`)".into()
            )
        );
        let backwards = charges(vec![charge("p1", "acme-1", 1_060, 1_000)], &session, &end);
        assert_eq!(
            backwards,
            Err("a charge to participant `p1` has a period that ends (1000) before it starts (1060)".into())
        );
        let never = charges(
            vec![charge("p1", "acme-1", 1_000, i64::MAX)],
            &session,
            &end,
        );
        assert!(never.is_err_and(|e| e.contains("is not a time")));
        assert_eq!(
            charges(vec![], &session, &end),
            Ok(Outcome::Charges { charges: vec![] })
        );
    }
}
