//! Sessions, events and charges as the API shows them, and the reads
//! behind `GET /v1/sessions/{id}` and `GET /v1/sessions/{id}/events`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Sessions, SessionsError, properties};
use crate::contract::Properties;
use crate::entitlement::valid_id;
use crate::store::sessions::{self as q, ChargeRow, EventRow, Sums};
use crate::store::{self, StoreError};

/// Minor units asked, taken and not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// What the plugin charged.
    pub amount: i64,
    /// What the ledgers took.
    pub charged: i64,
    /// What prepaid balances could not pay.
    pub uncovered: i64,
}

impl Totals {
    fn add(&mut self, amount: i64, charged: i64, uncovered: i64) {
        self.amount = self.amount.saturating_add(amount);
        self.charged = self.charged.saturating_add(charged);
        self.uncovered = self.uncovered.saturating_add(uncovered);
    }
}

impl From<Sums> for Totals {
    fn from(s: Sums) -> Totals {
        Totals {
            amount: s.amount,
            charged: s.charged,
            uncovered: s.uncovered,
        }
    }
}

/// One charge an event produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionCharge {
    pub participant: String,
    pub account_id: String,
    pub amount: i64,
    pub charged: i64,
    pub uncovered: i64,
    /// The account's balance after this charge.
    pub balance_after: i64,
    pub description: String,
    pub period_start: String,
    pub period_end: String,
    /// The ledger movement's reference (none is written for a charge of 0).
    pub reference: String,
}

/// The plugin version that charged an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginRef {
    pub name: String,
    pub digest: String,
}

/// One recorded event with its charges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    /// Its place in the session, from 1.
    pub seq: i64,
    /// `join`, `leave` or `end`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Properties>,
    pub at: String,
    pub recorded_at: String,
    pub plugin: PluginRef,
    pub charges: Vec<SessionCharge>,
    pub totals: Totals,
}

/// The answer to an event: the event and the charges it produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventAnswer {
    pub session_id: String,
    #[serde(flatten)]
    pub event: Event,
}

/// A participant, present or gone, with what it was charged so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    pub id: String,
    pub account_id: String,
    pub attributes: Properties,
    pub present: bool,
    /// The latest join.
    pub joined_at: String,
    pub left_at: Option<String>,
    pub totals: Totals,
}

/// A session as `GET /v1/sessions/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    pub id: String,
    pub service: String,
    pub attributes: Properties,
    /// `open` or `ended`.
    pub status: &'static str,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub last_event_at: String,
    pub events: i64,
    /// Earliest joined first.
    pub participants: Vec<ParticipantView>,
    /// Every charge of the session.
    pub totals: Totals,
}

/// A page of a session's events, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventsPage {
    pub session_id: String,
    pub events: Vec<Event>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<i64>,
}

fn charge(row: ChargeRow) -> SessionCharge {
    SessionCharge {
        participant: row.participant,
        account_id: row.account_id,
        amount: row.amount,
        charged: row.charged,
        uncovered: row.uncovered,
        balance_after: row.balance_after,
        description: row.description,
        period_start: store::rfc3339(row.period_start),
        period_end: store::rfc3339(row.period_end),
        reference: row.reference,
    }
}

/// An event with its charges (rows of that event), as recorded.
fn event(row: EventRow, charges: Vec<ChargeRow>) -> Event {
    let asked: Value = serde_json::from_str(&row.request).unwrap_or(Value::Null);
    let mut totals = Totals::default();
    for c in &charges {
        totals.add(c.amount, c.charged, c.uncovered);
    }
    Event {
        account_id: asked["account_id"].as_str().map(str::to_owned),
        attributes: asked.get("attributes").map(properties),
        id: row.id,
        seq: row.seq,
        kind: row.kind,
        participant: row.participant,
        at: store::rfc3339(row.at),
        recorded_at: store::rfc3339(row.recorded_at),
        plugin: PluginRef {
            name: row.plugin,
            digest: row.plugin_digest,
        },
        charges: charges.into_iter().map(charge).collect(),
        totals,
    }
}

/// The answer to an event, built from what was recorded: the same the
/// first time and on every replay.
pub(super) fn event_answer(
    session_id: &str,
    row: EventRow,
    charges: Vec<ChargeRow>,
) -> EventAnswer {
    EventAnswer {
        session_id: session_id.to_owned(),
        event: event(row, charges),
    }
}

/// The most events a page holds.
pub const MAX_PAGE: u32 = 1000;

impl Sessions {
    /// The session with its participants and what each was charged so far;
    /// `None` when there is no such session.
    pub fn session(&self, id: &str) -> Result<Option<SessionView>, SessionsError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let read = self.store.read(|conn| {
            let Some(session) = q::get_session(conn, id)? else {
                return Ok::<_, StoreError>(None);
            };
            let participants = q::participants(conn, id)?;
            let sums = q::sums(conn, id)?;
            Ok(Some((session, participants, sums)))
        })?;
        let Some((s, participants, sums)) = read else {
            return Ok(None);
        };
        let sums: BTreeMap<String, Sums> = sums.into_iter().collect();
        let mut totals = Totals::default();
        for sum in sums.values() {
            totals.add(sum.amount, sum.charged, sum.uncovered);
        }
        Ok(Some(SessionView {
            participants: participants
                .into_iter()
                .map(|p| ParticipantView {
                    totals: sums
                        .get(&p.participant)
                        .copied()
                        .map(Totals::from)
                        .unwrap_or_default(),
                    attributes: properties(&p.attributes),
                    present: p.left_at.is_none(),
                    joined_at: store::rfc3339(p.joined_at),
                    left_at: p.left_at.map(store::rfc3339),
                    id: p.participant,
                    account_id: p.account_id,
                })
                .collect(),
            attributes: properties(&s.attributes),
            status: if s.ended_at.is_some() {
                "ended"
            } else {
                "open"
            },
            started_at: store::rfc3339(s.started_at),
            ended_at: s.ended_at.map(store::rfc3339),
            last_event_at: store::rfc3339(s.last_event_at),
            events: s.events,
            id: s.id,
            service: s.service,
            totals,
        }))
    }

    /// The session's events after `after` (a `seq`; 0 for the first), in
    /// order, at most `limit`, each with its charges; `None` when there is
    /// no such session.
    pub fn events(
        &self,
        id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Option<EventsPage>, SessionsError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let read = self.store.read(|conn| {
            if q::service_of(conn, id)?.is_none() {
                return Ok::<_, StoreError>(None);
            }
            // One more than asked: whether a page follows.
            let events = q::events(conn, id, after, limit + 1)?;
            let charges = match (events.first(), events.last()) {
                (Some(first), Some(last)) => q::charges(conn, id, first.seq, last.seq)?,
                _ => Vec::new(),
            };
            Ok(Some((events, charges)))
        })?;
        let Some((mut rows, charges)) = read else {
            return Ok(None);
        };
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|e| e.seq)
        } else {
            None
        };
        let mut charges = charges.into_iter().peekable();
        let events = rows
            .into_iter()
            .map(|row| {
                let mut own = Vec::new();
                while let Some(c) = charges.next_if(|c| c.seq == row.seq) {
                    own.push(c);
                }
                event(row, own)
            })
            .collect();
        Ok(Some(EventsPage {
            session_id: id.to_owned(),
            events,
            next,
        }))
    }
}
