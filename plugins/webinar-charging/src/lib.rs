//! Sample plugin `webinar-charging`: a webinar where presenters speak for
//! free, attendees pay by the minute, and the host pays for a large room.
//! It exports `session-charging` only: the second type of session the
//! sample rules serve through the same session manager as
//! `conference-split`, with a rule in which one participant's charge
//! depends on the others' joins.
//!
//! A participant's role is its `role` attribute: `host`, `presenter`, or
//! anything else (or none): an attendee.
//!
//! The session manager calls the plugin once per join or leave, and once
//! when the session ends, with the session's current state only. Each call
//! covers the interval since the previous event (`session.last_event_at`)
//! up to this one (`event.at`), among the participants present during it:
//! `session.participants`, present before this event applies.
//!
//! - **Time.** Each attendee present pays `rate_per_minute` (the service's
//!   config, minor units, default 6, at least 0) × seconds / 60, rounded
//!   down: a fraction of a minor unit is never charged. Hosts and presenters
//!   pay nothing for their time. One charge per attendee present, earliest
//!   joined first (by `joined_at`, then `id`), even when it rounds to 0,
//!   described as e.g. "90 s at 6/min as an attendee", its period the last
//!   event to this one. No time since the last event: no time charges.
//! - **The large-room fee.** A join of an attendee that brings the
//!   attendees present to `large_room_attendees` (config, default 3, at
//!   least 1), i.e. a join when exactly one fewer were present, charges the
//!   host `large_room_fee` (config, minor units, default 50, at least 0):
//!   the earliest-joined participant present whose role is `host` (then by
//!   `id`). The fee's period is the instant of the join (`period_start` =
//!   `period_end` = `event.at`), and it comes after the time charges. The
//!   plugin sees the current state only, not the history: when the room
//!   falls below that size and grows to it again, the fee is charged again.
//!   Without a host present there is no fee; a host joining is not present
//!   yet.
//! - The session's `end` charges the last interval like any event.
//! - An event before the last one, a bad config value, or a cost too large
//!   for `money` is an error.
//!
//! Session attributes are not read.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, SessionCharging};

pub struct WebinarCharging;

/// What a participant's `role` attribute makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Host,
    Presenter,
    Attendee,
}

fn role(p: &Participant) -> Role {
    match p.attribute("role") {
        Some("host") => Role::Host,
        Some("presenter") => Role::Presenter,
        _ => Role::Attendee,
    }
}

/// A config value that is a whole number at least `min`.
fn config_at_least(ctx: &Context, key: &str, default: Money, min: Money) -> Result<Money, Error> {
    let value: Money = ctx.config_or(key, default)?;
    if value < min {
        return Err(Error::new(format!(
            "config `{key}` is `{value}`, expected a whole number of at least {min}"
        )));
    }
    Ok(value)
}

impl SessionCharging for WebinarCharging {
    fn on_event(
        ctx: &Context,
        session: &Session,
        event: &SessionEventAt,
    ) -> Result<Vec<Charge>, Error> {
        let rate = config_at_least(ctx, "rate_per_minute", 6, 0)?;
        let room = config_at_least(ctx, "large_room_attendees", 3, 1)?;
        let fee = config_at_least(ctx, "large_room_fee", 50, 0)?;
        let seconds = i128::from(event.at) - i128::from(session.last_event_at);
        if seconds < 0 {
            return Err(Error::new(format!(
                "session `{}`: the event is {} s earlier than the last event",
                session.id, -seconds
            )));
        }

        let mut present: Vec<&Participant> = session.participants.iter().collect();
        present.sort_by(|a, b| (a.joined_at, &a.id).cmp(&(b.joined_at, &b.id)));
        let attendees: Vec<&Participant> = present
            .iter()
            .copied()
            .filter(|p| role(p) == Role::Attendee)
            .collect();

        let mut charges = Vec::new();
        if seconds > 0 {
            let cost = Money::try_from(i128::from(rate) * seconds / 60).map_err(|_| {
                Error::new(format!(
                    "session `{}`: {seconds} s at {rate}/min does not fit in money",
                    session.id
                ))
            })?;
            for attendee in &attendees {
                charges.push(Charge {
                    participant: attendee.id.clone(),
                    account_id: attendee.account_id.clone(),
                    amount: cost,
                    description: format!("{seconds} s at {rate}/min as an attendee"),
                    period_start: session.last_event_at,
                    period_end: event.at,
                });
            }
        }

        if let SessionEvent::Join(joiner) = &event.event
            && role(joiner) == Role::Attendee
            && i64::try_from(attendees.len()).is_ok_and(|n| n + 1 == room)
            && let Some(host) = present.iter().find(|p| role(p) == Role::Host)
        {
            charges.push(Charge {
                participant: host.id.clone(),
                account_id: host.account_id.clone(),
                amount: fee,
                description: format!("large-room fee: {room} attendees present"),
                period_start: event.at,
                period_end: event.at,
            });
        }
        Ok(charges)
    }
}

rulehost_sdk::export!(WebinarCharging: session_charging);

#[cfg(test)]
mod tests {
    use super::*;

    const START: Timestamp = 1_795_185_000; // 2026-11-20T14:30:00Z

    fn person(id: &str, role: Option<&str>, joined_at: Timestamp) -> Participant {
        Participant {
            id: id.into(),
            account_id: format!("acct-{id}"),
            joined_at,
            attributes: role
                .map(|r| vec![("role".to_owned(), r.to_owned())])
                .unwrap_or_default(),
        }
    }

    fn session(last_event_at: Timestamp, participants: Vec<Participant>) -> Session {
        Session {
            id: "web-1".into(),
            started_at: START,
            last_event_at,
            attributes: vec![],
            participants,
        }
    }

    fn join(p: Participant) -> SessionEventAt {
        let at = p.joined_at;
        SessionEventAt {
            event: SessionEvent::Join(p),
            at,
        }
    }

    fn leave(id: &str, at: Timestamp) -> SessionEventAt {
        SessionEventAt {
            event: SessionEvent::Leave(id.into()),
            at,
        }
    }

    fn ctx() -> Context {
        Context::new("webinar-charging", START)
    }

    /// (participant, amount) of each charge, in order.
    fn amounts(
        ctx: &Context,
        session: &Session,
        event: &SessionEventAt,
    ) -> Result<Vec<(String, Money)>, Error> {
        WebinarCharging::on_event(ctx, session, event)
            .map(|c| c.into_iter().map(|c| (c.participant, c.amount)).collect())
    }

    fn expect(pairs: &[(&str, Money)]) -> Result<Vec<(String, Money)>, Error> {
        Ok(pairs.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect())
    }

    /// A host, a presenter and two attendees (out of order).
    fn room() -> Vec<Participant> {
        vec![
            person("a2", None, START + 60),
            person("pres", Some("presenter"), START),
            person("a1", Some("attendee"), START + 30),
            person("host", Some("host"), START),
        ]
    }

    #[test]
    fn attendees_pay_by_the_minute_and_presenters_and_hosts_are_free() {
        // 90 s at 6/min = 9 for each of the two attendees; earliest joined first.
        let s = session(START + 60, room());
        let got = amounts(&ctx(), &s, &leave("a1", START + 150));
        assert_eq!(got, expect(&[("a1", 9), ("a2", 9)]));
    }

    #[test]
    fn the_third_attendee_joining_makes_the_host_pay_the_large_room_fee() {
        let s = session(START + 60, room());
        let third = person("a3", None, START + 120);
        let charges = WebinarCharging::on_event(&ctx(), &s, &join(third));
        let got = charges.map(|c| {
            c.into_iter()
                .map(|c| (c.participant, c.amount, c.period_start, c.period_end))
                .collect::<Vec<_>>()
        });
        // 60 s at 6/min = 6 each for a1 and a2; then the fee, at the join.
        assert_eq!(
            got,
            Ok(vec![
                ("a1".into(), 6, START + 60, START + 120),
                ("a2".into(), 6, START + 60, START + 120),
                ("host".into(), 50, START + 120, START + 120),
            ])
        );
    }

    #[test]
    fn no_fee_below_or_past_the_size_for_presenters_or_without_a_host() {
        let s = session(START + 60, room());
        // A presenter joining is not an attendee.
        let got = amounts(
            &ctx(),
            &s,
            &join(person("p2", Some("presenter"), START + 60)),
        );
        assert_eq!(got, expect(&[]));
        // The fourth attendee: the room was already that large.
        let mut four = room();
        four.push(person("a3", None, START + 60));
        let got = amounts(
            &ctx(),
            &session(START + 60, four),
            &join(person("a4", None, START + 60)),
        );
        assert_eq!(got, expect(&[]));
        // The second attendee: not yet.
        let two = vec![
            person("host", Some("host"), START),
            person("a1", None, START),
        ];
        let got = amounts(
            &ctx(),
            &session(START, two),
            &join(person("a2", None, START)),
        );
        assert_eq!(got, expect(&[]));
        // No host present: nobody pays it.
        let hostless: Vec<Participant> = room().into_iter().filter(|p| p.id != "host").collect();
        let got = amounts(
            &ctx(),
            &session(START + 60, hostless),
            &join(person("a3", None, START + 60)),
        );
        assert_eq!(got, expect(&[]));
    }

    #[test]
    fn the_room_size_and_fee_and_rate_are_configured() {
        let ctx = ctx()
            .with_config("large_room_attendees", "2")
            .with_config("large_room_fee", "75")
            .with_config("rate_per_minute", "7");
        let s = session(
            START,
            vec![
                person("host", Some("host"), START),
                person("a1", None, START),
            ],
        );
        // 100 s at 7/min = 11.67 → 11; the second attendee makes the room large.
        let got = amounts(&ctx, &s, &join(person("a2", None, START + 100)));
        assert_eq!(got, expect(&[("a1", 11), ("host", 75)]));
    }

    #[test]
    fn the_end_charges_the_last_interval_and_nothing_when_no_time_passed() {
        let s = session(START + 60, room());
        let end = SessionEventAt {
            event: SessionEvent::End,
            at: START + 120,
        };
        assert_eq!(amounts(&ctx(), &s, &end), expect(&[("a1", 6), ("a2", 6)]));
        assert_eq!(amounts(&ctx(), &s, &leave("a1", START + 60)), expect(&[]));
        // 5 s at 6/min rounds to 0: a charge of 0 each.
        assert_eq!(
            amounts(&ctx(), &s, &leave("a1", START + 65)),
            expect(&[("a1", 0), ("a2", 0)])
        );
    }

    #[test]
    fn charges_carry_the_account_and_say_what_they_are() {
        let s = session(START + 60, room());
        let charges = WebinarCharging::on_event(&ctx(), &s, &join(person("a3", None, START + 90)))
            .unwrap_or_default();
        let described: Vec<(&str, &str)> = charges
            .iter()
            .map(|c| (c.account_id.as_str(), c.description.as_str()))
            .collect();
        assert_eq!(
            described,
            [
                ("acct-a1", "30 s at 6/min as an attendee"),
                ("acct-a2", "30 s at 6/min as an attendee"),
                ("acct-host", "large-room fee: 3 attendees present"),
            ]
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let s = session(START + 60, room());
        assert_eq!(
            WebinarCharging::on_event(&ctx(), &s, &leave("a1", START + 30)),
            Err(Error::new(
                "session `web-1`: the event is 30 s earlier than the last event"
            ))
        );
        for (key, bad) in [
            ("rate_per_minute", "-1"),
            ("large_room_attendees", "0"),
            ("large_room_fee", "cheap"),
        ] {
            let ctx = ctx().with_config(key, bad);
            let err = WebinarCharging::on_event(&ctx, &s, &leave("a1", START + 90)).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.message().contains(&format!("`{key}`"))),
                "{key}={bad}: {err:?}"
            );
        }
        let huge = ctx().with_config("rate_per_minute", i64::MAX.to_string());
        let got = WebinarCharging::on_event(&huge, &s, &leave("a1", START + 600));
        assert!(got.is_err_and(|e| e.message().contains("does not fit")));
    }
}
