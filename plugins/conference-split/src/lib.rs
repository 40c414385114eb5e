//! Sample plugin `conference-split`: a conference call whose cost is shared
//! equally by whoever is on the call. It exports `session-charging` only.
//!
//! The session manager calls the plugin once per join or leave, and once
//! when the session ends. Each call charges the interval since the previous
//! event (`session.last_event_at`) up to this one (`event.at`), to the
//! participants present during it, i.e. `session.participants` (present
//! before this event applies). Who joins or leaves only marks where the
//! interval ends: a joiner pays from the next event on, a leaver pays for
//! the interval up to their leaving, and the session's `end` charges
//! everyone still present for the last interval.
//!
//! - The interval costs `rate_per_minute` (the service's config, minor
//!   units, default 10, at least 0) × seconds / 60, rounded down: a fraction
//!   of a minor unit is never charged.
//! - The cost is split equally. The remainder rule: the cost divided by the
//!   number present leaves a remainder r (fewer than the number present);
//!   the r earliest-joined participants (by `joined_at`, then `id`) pay one
//!   unit more each. So the charges always add up to the cost, no one pays
//!   more than one unit above another, and the same inputs always give the
//!   same charges (90 s at 10/min among 4: 15 = 4 + 4 + 4 + 3).
//! - One charge per present participant, in that same order (earliest joined
//!   first), even when the share is 0, described as e.g. "90 s at 10/min
//!   among 4 participants: 4 of 15", and naming its period: `period_start`
//!   is the last event, `period_end` this one.
//! - No participants, or no time since the last event: no charges.
//! - An event before the last one, or a cost too large for `money`, is an
//!   error.
//!
//! Session and participant attributes are not read.

use rulehost_sdk::types::*;
use rulehost_sdk::{Error, SessionCharging};

pub struct ConferenceSplit;

impl SessionCharging for ConferenceSplit {
    fn on_event(
        ctx: &Context,
        session: &Session,
        event: &SessionEventAt,
    ) -> Result<Vec<Charge>, Error> {
        let rate: Money = ctx.config_or("rate_per_minute", 10)?;
        if rate < 0 {
            return Err(Error::new(format!(
                "config `rate_per_minute` is `{rate}`, expected minor units per minute, at least 0"
            )));
        }
        let seconds = i128::from(event.at) - i128::from(session.last_event_at);
        if seconds < 0 {
            return Err(Error::new(format!(
                "session `{}`: the event is {} s earlier than the last event",
                session.id, -seconds
            )));
        }
        if seconds == 0 || session.participants.is_empty() {
            return Ok(Vec::new());
        }

        let cost = i128::from(rate) * seconds / 60;
        let count = session.participants.len();
        let n = i128::try_from(count).unwrap_or(i128::MAX);
        let (share, remainder) = (cost / n, cost % n);

        let mut present: Vec<&Participant> = session.participants.iter().collect();
        present.sort_by(|a, b| (a.joined_at, &a.id).cmp(&(b.joined_at, &b.id)));
        let among = match count {
            1 => "alone".to_owned(),
            _ => format!("among {count} participants"),
        };
        let too_large = || {
            Error::new(format!(
                "session `{}`: a cost of {cost} for {seconds} s does not fit in money",
                session.id
            ))
        };
        let cost_money = Money::try_from(cost).map_err(|_| too_large())?;

        present
            .into_iter()
            .zip(0..)
            .map(|(participant, rank)| {
                let amount = Money::try_from(share + i128::from(rank < remainder))
                    .map_err(|_| too_large())?;
                Ok(Charge {
                    participant: participant.id.clone(),
                    account_id: participant.account_id.clone(),
                    amount,
                    description: format!(
                        "{seconds} s at {rate}/min {among}: {amount} of {cost_money}"
                    ),
                    period_start: session.last_event_at,
                    period_end: event.at,
                })
            })
            .collect()
    }
}

rulehost_sdk::export!(ConferenceSplit: session_charging);

#[cfg(test)]
mod tests {
    use super::*;

    const START: Timestamp = 1_795_185_000; // 2026-11-20T14:30:00Z

    fn participant(id: &str, account_id: &str, joined_at: Timestamp) -> Participant {
        Participant {
            id: id.into(),
            account_id: account_id.into(),
            joined_at,
            attributes: vec![],
        }
    }

    fn session(last_event_at: Timestamp, participants: Vec<Participant>) -> Session {
        Session {
            id: "conf-1".into(),
            started_at: START,
            last_event_at,
            attributes: vec![],
            participants,
        }
    }

    fn leave(id: &str, at: Timestamp) -> SessionEventAt {
        SessionEventAt {
            event: SessionEvent::Leave(id.into()),
            at,
        }
    }

    fn end(at: Timestamp) -> SessionEventAt {
        SessionEventAt {
            event: SessionEvent::End,
            at,
        }
    }

    fn join(p: Participant) -> SessionEventAt {
        let at = p.joined_at;
        SessionEventAt {
            event: SessionEvent::Join(p),
            at,
        }
    }

    fn ctx() -> Context {
        Context::new("conference-split", START)
    }

    /// (participant, amount) of each charge, in order.
    fn amounts(
        ctx: &Context,
        session: &Session,
        event: &SessionEventAt,
    ) -> Result<Vec<(String, Money)>, Error> {
        ConferenceSplit::on_event(ctx, session, event).map(|charges| {
            charges
                .into_iter()
                .map(|c| (c.participant, c.amount))
                .collect()
        })
    }

    fn four() -> Vec<Participant> {
        // Deliberately out of order; p3 and p2 joined at the same time.
        vec![
            participant("p4", "acme-2", START + 30),
            participant("p3", "acme-1", START + 10),
            participant("p1", "acme-1", START),
            participant("p2", "acme-2", START + 10),
        ]
    }

    fn expect(pairs: &[(&str, Money)]) -> Result<Vec<(String, Money)>, Error> {
        Ok(pairs.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect())
    }

    #[test]
    fn cost_is_split_equally_with_the_remainder_to_the_earliest_joined() {
        // 90 s at 10/min = 15, among 4: 3 each and 3 left over.
        let session = session(START + 60, four());
        let got = amounts(&ctx(), &session, &leave("p2", START + 150));
        assert_eq!(got, expect(&[("p1", 4), ("p2", 4), ("p3", 4), ("p4", 3)]));
    }

    #[test]
    fn the_end_charges_everyone_still_present_for_the_last_interval() {
        let session = session(START + 60, four());
        let charges = ConferenceSplit::on_event(&ctx(), &session, &end(START + 180));
        let got = charges.map(|c| {
            c.into_iter()
                .map(|c| (c.participant, c.amount, c.period_start, c.period_end))
                .collect::<Vec<_>>()
        });
        // 120 s at 10/min = 20, among 4: 5 each.
        let period = |p: &str| (p.to_owned(), 5, START + 60, START + 180);
        assert_eq!(
            got,
            Ok(vec![period("p1"), period("p2"), period("p3"), period("p4")])
        );
        // An end at the last event's time, or of an empty session, charges nothing.
        assert_eq!(
            ConferenceSplit::on_event(&ctx(), &session, &end(START + 60)),
            Ok(vec![])
        );
        let empty = self::session(START + 60, vec![]);
        assert_eq!(
            ConferenceSplit::on_event(&ctx(), &empty, &end(START + 600)),
            Ok(vec![])
        );
    }

    #[test]
    fn every_charge_names_the_interval_since_the_last_event() {
        let session = session(START + 60, four());
        let joiner = participant("p5", "acme-4", START + 90);
        let charges = ConferenceSplit::on_event(&ctx(), &session, &join(joiner));
        assert!(charges.is_ok_and(|c| {
            c.len() == 4
                && c.iter()
                    .all(|c| c.period_start == START + 60 && c.period_end == START + 90)
        }));
    }

    #[test]
    fn an_even_split_has_no_remainder() {
        let session = session(
            START,
            vec![
                participant("p1", "acme-1", START),
                participant("p2", "acme-2", START),
            ],
        );
        let got = amounts(&ctx(), &session, &leave("p1", START + 60));
        assert_eq!(got, expect(&[("p1", 5), ("p2", 5)]));
    }

    #[test]
    fn charges_carry_account_and_description() {
        let session = session(START + 60, four());
        let charges = ConferenceSplit::on_event(&ctx(), &session, &leave("p2", START + 150));
        let first = charges.map(|c| c.into_iter().next());
        assert_eq!(
            first,
            Ok(Some(Charge {
                participant: "p1".into(),
                account_id: "acme-1".into(),
                amount: 4,
                description: "90 s at 10/min among 4 participants: 4 of 15".into(),
                period_start: START + 60,
                period_end: START + 150,
            }))
        );
    }

    #[test]
    fn a_lone_participant_pays_the_whole_cost() {
        let session = session(START, vec![participant("p1", "acme-1", START)]);
        let joiner = participant("p2", "acme-2", START + 120);
        let charges = ConferenceSplit::on_event(&ctx(), &session, &join(joiner));
        let got = charges.map(|c| {
            c.into_iter()
                .map(|c| (c.participant, c.amount, c.description))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            got,
            Ok(vec![(
                "p1".to_owned(),
                20,
                "120 s at 10/min alone: 20 of 20".to_owned()
            )])
        );
    }

    #[test]
    fn the_rate_is_configurable_and_fractions_round_down() {
        let session = session(START, four());
        let seven = ctx().with_config("rate_per_minute", "7");
        // 100 s at 7/min = 11.67, charged 11: 3, 3, 3, 2.
        let got = amounts(&seven, &session, &leave("p1", START + 100));
        assert_eq!(got, expect(&[("p1", 3), ("p2", 3), ("p3", 3), ("p4", 2)]));
        // 5 s at 10/min = 0.83: every participant gets a charge of 0.
        let got = amounts(&ctx(), &session, &leave("p1", START + 5));
        assert_eq!(got, expect(&[("p1", 0), ("p2", 0), ("p3", 0), ("p4", 0)]));
    }

    #[test]
    fn no_participants_or_no_time_means_no_charges() {
        let empty = session(START, vec![]);
        let first = participant("p1", "acme-1", START + 30);
        assert_eq!(
            ConferenceSplit::on_event(&ctx(), &empty, &join(first)),
            Ok(vec![])
        );
        let busy = session(START + 60, four());
        assert_eq!(
            ConferenceSplit::on_event(&ctx(), &busy, &leave("p1", START + 60)),
            Ok(vec![])
        );
    }

    #[test]
    fn an_event_before_the_last_one_is_an_error() {
        let session = session(START + 60, four());
        assert_eq!(
            ConferenceSplit::on_event(&ctx(), &session, &leave("p1", START + 30)),
            Err(Error::new(
                "session `conf-1`: the event is 30 s earlier than the last event"
            ))
        );
    }

    #[test]
    fn bad_rates_are_errors_naming_the_key() {
        let session = session(START, four());
        for bad in ["ten", "-1", "1.5"] {
            let ctx = ctx().with_config("rate_per_minute", bad);
            let err = ConferenceSplit::on_event(&ctx, &session, &leave("p1", START + 60)).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.message().contains("`rate_per_minute`")),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn a_cost_too_large_for_money_is_an_error_not_an_overflow() {
        let session = session(START, vec![participant("p1", "acme-1", START)]);
        let ctx = ctx().with_config("rate_per_minute", i64::MAX.to_string());
        let got = ConferenceSplit::on_event(&ctx, &session, &leave("p1", START + 120));
        assert!(got.is_err_and(|e| e.message().contains("does not fit")));
    }
}
