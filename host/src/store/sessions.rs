//! Sessions, their participants, their events and the charges each event
//! produced (`sessions`). Times are milliseconds since the epoch, as
//! everywhere in the store.
//!
//! What deciding an event reads is the session's current state: its row
//! (with the version every event bumps), the participants present, and the
//! event's own id (a replay). Recording it is [`advance`], conditional on
//! that version, then the event, the participants' change and its charges,
//! all in the caller's transaction.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::{Conn, StoreError, Tx, json_column};

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub service: String,
    /// A JSON object of text values.
    pub attributes: Value,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The previous event's time (the start before the first).
    pub last_event_at: i64,
    /// How many events were recorded: the last one's `seq`.
    pub events: i64,
    /// Bumped by every event.
    pub version: i64,
    pub created_at: i64,
}

const SESSION_COLUMNS: &str =
    "id, service, attributes, started_at, ended_at, last_event_at, events, version, created_at";

fn session_row(r: &Row<'_>) -> Result<SessionRow, rusqlite::Error> {
    Ok(SessionRow {
        id: r.get(0)?,
        service: r.get(1)?,
        attributes: json_column(r.get(2)?)?,
        started_at: r.get(3)?,
        ended_at: r.get(4)?,
        last_event_at: r.get(5)?,
        events: r.get(6)?,
        version: r.get(7)?,
        created_at: r.get(8)?,
    })
}

pub fn insert_session(tx: &Tx<'_>, s: &SessionRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(&format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?
        .execute(params![
            s.id,
            s.service,
            s.attributes.to_string(),
            s.started_at,
            s.ended_at,
            s.last_event_at,
            s.events,
            s.version,
            s.created_at,
        ])?;
    Ok(())
}

pub fn get_session(conn: &Conn<'_>, id: &str) -> Result<Option<SessionRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
        ))?
        .query_row([id], session_row)
        .optional()?)
}

/// The service a session belongs to, `None` when there is no such session.
pub fn service_of(conn: &Conn<'_>, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached("SELECT service FROM sessions WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Moves the session on by one event, if it is still at `version`: the
/// version and the event count go up by one, the last event's time becomes
/// `at`, and `ended_at` is set when given. The new event's `seq`, or
/// `None` when the session changed since it was read (nothing written).
pub fn advance(
    tx: &Tx<'_>,
    id: &str,
    version: i64,
    at: i64,
    ended_at: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .raw()
        .prepare_cached(
            "UPDATE sessions SET version = version + 1, events = events + 1, last_event_at = ?3,
                 ended_at = coalesce(?4, ended_at)
             WHERE id = ?1 AND version = ?2 AND ended_at IS NULL
             RETURNING events",
        )?
        .query_row(params![id, version, at, ended_at], |r| r.get(0))
        .optional()?)
}

/// A participant of a session, present (`left_at` None) or gone.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRow {
    pub participant: String,
    pub account_id: String,
    /// A JSON object of text values.
    pub attributes: Value,
    /// The latest join.
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

const PARTICIPANT_COLUMNS: &str = "participant, account_id, attributes, joined_at, left_at";

fn participant_row(r: &Row<'_>) -> Result<ParticipantRow, rusqlite::Error> {
    Ok(ParticipantRow {
        participant: r.get(0)?,
        account_id: r.get(1)?,
        attributes: json_column(r.get(2)?)?,
        joined_at: r.get(3)?,
        left_at: r.get(4)?,
    })
}

/// Those present in the session, earliest joined first (then by id).
pub fn present(conn: &Conn<'_>, session_id: &str) -> Result<Vec<ParticipantRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {PARTICIPANT_COLUMNS} FROM session_participants
         WHERE session_id = ?1 AND left_at IS NULL ORDER BY joined_at, participant"
    ))?;
    let rows = stmt.query_map([session_id], participant_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Everyone who ever joined the session, earliest joined first.
pub fn participants(conn: &Conn<'_>, session_id: &str) -> Result<Vec<ParticipantRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {PARTICIPANT_COLUMNS} FROM session_participants
         WHERE session_id = ?1 ORDER BY joined_at, participant"
    ))?;
    let rows = stmt.query_map([session_id], participant_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A participant joins (again, after leaving: the latest join counts).
pub fn join(tx: &Tx<'_>, session_id: &str, p: &ParticipantRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "INSERT INTO session_participants (session_id, participant, account_id, attributes, joined_at, left_at)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)
             ON CONFLICT (session_id, participant) DO UPDATE SET account_id = excluded.account_id,
                 attributes = excluded.attributes, joined_at = excluded.joined_at, left_at = NULL",
        )?
        .execute(params![
            session_id,
            p.participant,
            p.account_id,
            p.attributes.to_string(),
            p.joined_at,
        ])?;
    Ok(())
}

/// A participant present leaves; `false` when it was not present.
pub fn leave(
    tx: &Tx<'_>,
    session_id: &str,
    participant: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let changed = tx
        .raw()
        .prepare_cached(
            "UPDATE session_participants SET left_at = ?3
             WHERE session_id = ?1 AND participant = ?2 AND left_at IS NULL",
        )?
        .execute(params![session_id, participant, at])?;
    Ok(changed == 1)
}

/// Everyone still present leaves (the session ended).
pub fn leave_all(tx: &Tx<'_>, session_id: &str, at: i64) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(
            "UPDATE session_participants SET left_at = ?2 WHERE session_id = ?1 AND left_at IS NULL",
        )?
        .execute(params![session_id, at])?;
    Ok(())
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    /// The caller's id, unique in the session.
    pub id: String,
    /// `join`, `leave` or `end`.
    pub kind: String,
    pub participant: Option<String>,
    pub at: i64,
    /// The canonical JSON of what was asked.
    pub request: String,
    pub plugin: String,
    pub plugin_digest: String,
    pub recorded_at: i64,
}

const EVENT_COLUMNS: &str =
    "seq, id, kind, participant, at, request, plugin, plugin_digest, recorded_at";

fn event_row(r: &Row<'_>) -> Result<EventRow, rusqlite::Error> {
    Ok(EventRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        participant: r.get(3)?,
        at: r.get(4)?,
        request: r.get(5)?,
        plugin: r.get(6)?,
        plugin_digest: r.get(7)?,
        recorded_at: r.get(8)?,
    })
}

pub fn insert_event(tx: &Tx<'_>, session_id: &str, e: &EventRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(&format!(
            "INSERT INTO session_events (session_id, {EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            session_id,
            e.seq,
            e.id,
            e.kind,
            e.participant,
            e.at,
            e.request,
            e.plugin,
            e.plugin_digest,
            e.recorded_at,
        ])?;
    Ok(())
}

/// The event the caller named `id` in the session, if any.
pub fn event_by_id(
    conn: &Conn<'_>,
    session_id: &str,
    id: &str,
) -> Result<Option<EventRow>, StoreError> {
    Ok(conn
        .raw()
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM session_events WHERE session_id = ?1 AND id = ?2"
        ))?
        .query_row([session_id, id], event_row)
        .optional()?)
}

/// The session's events after `after` (a `seq`), in order, at most `limit`.
pub fn events(
    conn: &Conn<'_>,
    session_id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<EventRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM session_events WHERE session_id = ?1 AND seq > ?2
         ORDER BY seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![session_id, after, limit], event_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One charge an event produced, with what the ledger took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRow {
    /// The event's.
    pub seq: i64,
    /// The charge's place among the event's, from 0.
    pub n: i64,
    pub participant: String,
    pub account_id: String,
    /// What the plugin charged.
    pub amount: i64,
    /// What the ledger took.
    pub charged: i64,
    /// What a prepaid balance could not pay.
    pub uncovered: i64,
    pub balance_after: i64,
    /// The ledger movement's reference.
    pub reference: String,
    /// The ledger row; `None` for a charge of zero.
    pub movement_id: Option<i64>,
    pub description: String,
    pub period_start: i64,
    pub period_end: i64,
}

const CHARGE_COLUMNS: &str = "seq, n, participant, account_id, amount, charged, uncovered, balance_after, reference, movement_id, description, period_start, period_end";

fn charge_row(r: &Row<'_>) -> Result<ChargeRow, rusqlite::Error> {
    Ok(ChargeRow {
        seq: r.get(0)?,
        n: r.get(1)?,
        participant: r.get(2)?,
        account_id: r.get(3)?,
        amount: r.get(4)?,
        charged: r.get(5)?,
        uncovered: r.get(6)?,
        balance_after: r.get(7)?,
        reference: r.get(8)?,
        movement_id: r.get(9)?,
        description: r.get(10)?,
        period_start: r.get(11)?,
        period_end: r.get(12)?,
    })
}

pub fn insert_charge(tx: &Tx<'_>, session_id: &str, c: &ChargeRow) -> Result<(), StoreError> {
    tx.raw()
        .prepare_cached(&format!(
            "INSERT INTO session_charges (session_id, {CHARGE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?
        .execute(params![
            session_id,
            c.seq,
            c.n,
            c.participant,
            c.account_id,
            c.amount,
            c.charged,
            c.uncovered,
            c.balance_after,
            c.reference,
            c.movement_id,
            c.description,
            c.period_start,
            c.period_end,
        ])?;
    Ok(())
}

/// The charges of the session's events `from..=to` (by `seq`), in order.
pub fn charges(
    conn: &Conn<'_>,
    session_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<ChargeRow>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(&format!(
        "SELECT {CHARGE_COLUMNS} FROM session_charges WHERE session_id = ?1 AND seq BETWEEN ?2 AND ?3
         ORDER BY seq, n"
    ))?;
    let rows = stmt.query_map(params![session_id, from, to], charge_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a participant (or a whole session) was charged so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sums {
    pub amount: i64,
    pub charged: i64,
    pub uncovered: i64,
}

/// The sums of the session's charges per participant, by participant id.
pub fn sums(conn: &Conn<'_>, session_id: &str) -> Result<Vec<(String, Sums)>, StoreError> {
    let mut stmt = conn.raw().prepare_cached(
        "SELECT participant, sum(amount), sum(charged), sum(uncovered) FROM session_charges
         WHERE session_id = ?1 GROUP BY participant ORDER BY participant",
    )?;
    let rows = stmt.query_map([session_id], |r| {
        Ok((
            r.get(0)?,
            Sums {
                amount: r.get(1)?,
                charged: r.get(2)?,
                uncovered: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Store;

    fn session(id: &str) -> SessionRow {
        SessionRow {
            id: id.into(),
            service: "conference-split".into(),
            attributes: json!({"topic": "review"}),
            started_at: 1_000,
            ended_at: None,
            last_event_at: 1_000,
            events: 0,
            version: 0,
            created_at: 5,
        }
    }

    fn person(id: &str, joined_at: i64) -> ParticipantRow {
        ParticipantRow {
            participant: id.into(),
            account_id: format!("acct-{id}"),
            attributes: json!({}),
            joined_at,
            left_at: None,
        }
    }

    fn event(seq: i64, id: &str, kind: &str) -> EventRow {
        EventRow {
            seq,
            id: id.into(),
            kind: kind.into(),
            participant: None,
            at: 2_000,
            request: "{}".into(),
            plugin: "p".into(),
            plugin_digest: "sha256:x".into(),
            recorded_at: 3,
        }
    }

    #[test]
    fn a_session_advances_only_from_the_version_it_was_read_at() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| insert_session(tx, &session("ses_1")))
            .unwrap();
        let first = store
            .write(|tx| advance(tx, "ses_1", 0, 2_000, None))
            .unwrap();
        assert_eq!(first, Some(1));
        // Read at version 0, the session is at 1 now: nothing written.
        let stale = store
            .write(|tx| advance(tx, "ses_1", 0, 3_000, None))
            .unwrap();
        assert_eq!(stale, None);
        let ended = store
            .write(|tx| advance(tx, "ses_1", 1, 3_000, Some(3_000)))
            .unwrap();
        assert_eq!(ended, Some(2));
        // An ended session takes no further event.
        let after = store
            .write(|tx| advance(tx, "ses_1", 2, 4_000, None))
            .unwrap();
        assert_eq!(after, None);
        let row = store.read(|c| get_session(c, "ses_1")).unwrap().unwrap();
        assert_eq!(
            (row.version, row.events, row.last_event_at, row.ended_at),
            (2, 2, 3_000, Some(3_000))
        );
        assert_eq!(row.attributes, json!({"topic": "review"}));
    }

    #[test]
    fn participants_join_leave_and_join_again() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| {
                insert_session(tx, &session("ses_1"))?;
                join(tx, "ses_1", &person("b", 1_000))?;
                join(tx, "ses_1", &person("a", 1_000))?;
                join(tx, "ses_1", &person("c", 900))
            })
            .unwrap();
        let ids = |rows: Vec<ParticipantRow>| -> Vec<String> {
            rows.into_iter().map(|p| p.participant).collect()
        };
        let now = store.read(|c| present(c, "ses_1")).unwrap();
        assert_eq!(ids(now), ["c", "a", "b"]);
        assert!(store.write(|tx| leave(tx, "ses_1", "a", 1_500)).unwrap());
        assert!(!store.write(|tx| leave(tx, "ses_1", "a", 1_600)).unwrap());
        assert_eq!(
            ids(store.read(|c| present(c, "ses_1")).unwrap()),
            ["c", "b"]
        );
        store
            .write(|tx| join(tx, "ses_1", &person("a", 1_700)))
            .unwrap();
        store.write(|tx| leave_all(tx, "ses_1", 1_800)).unwrap();
        assert!(store.read(|c| present(c, "ses_1")).unwrap().is_empty());
        let all = store.read(|c| participants(c, "ses_1")).unwrap();
        let a = all.iter().find(|p| p.participant == "a").unwrap();
        assert_eq!((a.joined_at, a.left_at), (1_700, Some(1_800)));
    }

    #[test]
    fn event_ids_are_unique_per_session_and_charges_add_up() {
        let store = Store::in_memory().unwrap();
        store
            .write(|tx| {
                insert_session(tx, &session("ses_1"))?;
                insert_session(tx, &session("ses_2"))?;
                insert_event(tx, "ses_1", &event(1, "e1", "join"))?;
                // The same id in another session is another event.
                insert_event(tx, "ses_2", &event(1, "e1", "join"))
            })
            .unwrap();
        let again = store.write(|tx| insert_event(tx, "ses_1", &event(2, "e1", "leave")));
        assert!(again.is_err(), "an event id twice in one session");
        let charge = |n: i64, participant: &str, amount: i64, charged: i64| ChargeRow {
            seq: 1,
            n,
            participant: participant.into(),
            account_id: format!("acct-{participant}"),
            amount,
            charged,
            uncovered: amount - charged,
            balance_after: 0,
            reference: format!("session:ses_1:e1:{participant}"),
            movement_id: None,
            description: String::new(),
            period_start: 1_000,
            period_end: 2_000,
        };
        store
            .write(|tx| {
                insert_charge(tx, "ses_1", &charge(0, "a", 10, 10))?;
                insert_charge(tx, "ses_1", &charge(1, "b", 7, 4))?;
                insert_charge(tx, "ses_1", &charge(2, "a", 5, 5))
            })
            .unwrap();
        let bad = ChargeRow {
            uncovered: 9,
            ..charge(3, "a", 5, 5)
        };
        assert!(store.write(|tx| insert_charge(tx, "ses_1", &bad)).is_err());
        let orphan = ChargeRow {
            seq: 9,
            ..charge(0, "a", 1, 1)
        };
        assert!(
            store
                .write(|tx| insert_charge(tx, "ses_1", &orphan))
                .is_err(),
            "a charge of no event"
        );
        let sums = store.read(|c| sums(c, "ses_1")).unwrap();
        assert_eq!(
            sums,
            [
                (
                    "a".to_owned(),
                    Sums {
                        amount: 15,
                        charged: 15,
                        uncovered: 0
                    }
                ),
                (
                    "b".to_owned(),
                    Sums {
                        amount: 7,
                        charged: 4,
                        uncovered: 3
                    }
                ),
            ]
        );
        let listed = store.read(|c| charges(c, "ses_1", 1, 1)).unwrap();
        assert_eq!(listed.len(), 3);
        let found = store.read(|c| event_by_id(c, "ses_1", "e1")).unwrap();
        assert_eq!(found.map(|e| e.kind), Some("join".to_owned()));
        assert_eq!(store.read(|c| events(c, "ses_1", 0, 10)).unwrap().len(), 1);
        assert_eq!(
            store.read(|c| service_of(c, "ses_2")).unwrap().as_deref(),
            Some("conference-split")
        );
    }
}
