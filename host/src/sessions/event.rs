//! One event of a session (a join, a leave, the end): read the session's
//! current state, decide the charges with the plugin, record everything in
//! one write if the session is as it was read; a replay of a recorded event
//! is answered from what was recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::charging::{self, Charges};
use super::view::{self, EventAnswer};
use super::{
    MAX_PRESENT, MAX_TRIES, Sessions, SessionsError, properties, to_second, ts, valid_name,
};
use crate::contract::{self as c, Billing, OnEventInput, Properties, SessionEventAt};
use crate::entitlement::{valid_attributes, valid_id};
use crate::ledger;
use crate::registry::Registry;
use crate::store::sessions::{self as q, ChargeRow, EventRow, ParticipantRow, SessionRow};
use crate::store::{self, Conn, StoreError, Tx, outbox};

/// What a participant does: `"join"` or `"leave"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Join,
    Leave,
}

/// The body of `POST /v1/sessions/{id}/events`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The caller's id for the event, unique in the session.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub participant: String,
    /// The account a joining participant is charged on.
    #[serde(default)]
    pub account_id: Option<String>,
    /// A joining participant's attributes (`role`, for example).
    #[serde(default)]
    pub attributes: Option<Properties>,
    /// When it happened; now when absent.
    #[serde(default)]
    pub at: Option<Timestamp>,
}

/// The body of `POST /v1/sessions/{id}/end`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndRequest {
    pub id: String,
    /// When it ended; now when absent.
    #[serde(default)]
    pub at: Option<Timestamp>,
}

/// An event as asked, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Asked {
    pub id: String,
    pub change: Change,
    pub at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    Join {
        participant: String,
        account_id: String,
        attributes: Properties,
    },
    Leave {
        participant: String,
    },
    End,
}

fn check_event_id(id: &str) -> Result<(), SessionsError> {
    if valid_name(id) {
        Ok(())
    } else {
        Err(SessionsError::Invalid(format!(
            "`id` must be 1 to {} printable characters without spaces, `/`, `?`, `#` or `:`",
            super::MAX_NAME
        )))
    }
}

impl TryFrom<EventRequest> for Asked {
    type Error = SessionsError;

    fn try_from(req: EventRequest) -> Result<Asked, SessionsError> {
        check_event_id(&req.id)?;
        if !valid_name(&req.participant) {
            return Err(SessionsError::Invalid(format!(
                "`participant` must be 1 to {} printable characters without spaces, `/`, `?`, `#` or `:`",
                super::MAX_NAME
            )));
        }
        let change = match req.kind {
            EventType::Join => {
                let Some(account_id) = req.account_id else {
                    return Err(SessionsError::Invalid(
                        "`account_id`: a join names the account its participant is charged on"
                            .into(),
                    ));
                };
                if !valid_id(&account_id) {
                    return Err(SessionsError::Invalid(
                        "`account_id` must be 1 to 200 printable characters without spaces, `/`, `?` or `#`".into(),
                    ));
                }
                let attributes = req.attributes.unwrap_or_default();
                valid_attributes(&attributes).map_err(|e| SessionsError::Invalid(e.to_string()))?;
                Change::Join {
                    participant: req.participant,
                    account_id,
                    attributes,
                }
            }
            EventType::Leave => {
                if req.account_id.is_some() || req.attributes.is_some() {
                    return Err(SessionsError::Invalid(
                        "`account_id` and `attributes` are a join's; a leave names only its participant"
                            .into(),
                    ));
                }
                Change::Leave {
                    participant: req.participant,
                }
            }
        };
        Ok(Asked {
            id: req.id,
            change,
            at: req.at,
        })
    }
}

impl TryFrom<EndRequest> for Asked {
    type Error = SessionsError;

    fn try_from(req: EndRequest) -> Result<Asked, SessionsError> {
        check_event_id(&req.id)?;
        Ok(Asked {
            id: req.id,
            change: Change::End,
            at: req.at,
        })
    }
}

impl Asked {
    pub fn kind(&self) -> &'static str {
        match self.change {
            Change::Join { .. } => "join",
            Change::Leave { .. } => "leave",
            Change::End => "end",
        }
    }

    pub fn participant(&self) -> Option<&str> {
        match &self.change {
            Change::Join { participant, .. } | Change::Leave { participant } => Some(participant),
            Change::End => None,
        }
    }

    /// What was asked as canonical JSON (keys in a fixed order, attributes
    /// sorted, the time as RFC 3339 in UTC): a replay must ask the same.
    /// The time is as given (absent when it was), not as resolved, so a
    /// retry of an event sent without one is the same event.
    pub fn content(&self) -> String {
        let mut content = json!({"type": self.kind()});
        if let Some(participant) = self.participant() {
            content["participant"] = json!(participant);
        }
        if let Change::Join {
            account_id,
            attributes,
            ..
        } = &self.change
        {
            content["account_id"] = json!(account_id);
            content["attributes"] = serde_json::to_value(attributes).unwrap_or(Value::Null);
        }
        if let Some(at) = self.at {
            content["at"] = json!(at.to_string());
        }
        content.to_string()
    }
}

/// What deciding an event read: the session's current state, and the
/// event itself if its id was recorded already.
pub(super) struct Read {
    session: SessionRow,
    present: Vec<ParticipantRow>,
    recorded: Option<(EventRow, Vec<ChargeRow>)>,
    /// For a join, whether the account exists.
    account_known: bool,
}

/// An event decided and not yet recorded.
pub(super) struct Decision {
    session_id: String,
    version: i64,
    service: String,
    webhook: Option<String>,
    at: i64,
    asked: Asked,
    content: String,
    charges: Charges,
}

/// What recording a decision came to.
pub(super) enum Recording {
    /// Recorded; whether a notice went to the outbox.
    Recorded(EventAnswer, bool),
    /// The session changed since it was read: nothing was written.
    Stale(Decision),
}

/// What one try of an async event came to.
enum Step {
    /// The event was recorded before: its first answer.
    Replayed(Answered),
    Recorded(Recording),
}

/// An event's answer, and whether it was recorded before (a replay).
#[derive(Debug, Clone)]
pub struct Answered {
    pub answer: EventAnswer,
    pub replayed: bool,
}

/// Where an event's charges come from: the service's plugin in the host
/// ([`Plugins`]), a rule written in Rust in the tests.
pub(super) trait Charger {
    /// The charges for an event of a session of `service`, and where the
    /// service's notices go.
    fn charges(
        &self,
        service: &str,
        input: OnEventInput,
    ) -> Result<(Charges, Option<String>), SessionsError>;
}

/// The services' session-charging plugins, as one registry snapshot has them.
pub(super) struct Plugins(pub Arc<Registry>);

impl Charger for Plugins {
    fn charges(
        &self,
        service: &str,
        input: OnEventInput,
    ) -> Result<(Charges, Option<String>), SessionsError> {
        let service = self
            .0
            .service(service)
            .ok_or_else(|| SessionsError::NoSessionCharging(service.to_owned()))?;
        let charges = charging::on_event(service, input)?;
        Ok((charges, service.manifest.webhook.clone()))
    }
}

impl Sessions {
    /// A participant joins or leaves (see the module doc).
    pub fn event(&self, session_id: &str, req: EventRequest) -> Result<Answered, SessionsError> {
        let asked = Asked::try_from(req)?;
        self.apply(session_id, asked, &Plugins(self.registry()))
    }

    /// [`Sessions::event`] for async callers: the session's turn awaited
    /// without a thread, the read and the plugin on a worker thread, which
    /// queues the record in the store's group commit; answered once that
    /// group committed, with no thread held for the fsync.
    pub async fn event_async(
        self: Arc<Self>,
        session_id: String,
        req: EventRequest,
    ) -> Result<Answered, SessionsError> {
        let mut asked = Asked::try_from(req)?;
        if !valid_id(&session_id) {
            return Err(SessionsError::NoSession(session_id));
        }
        let content = asked.content();
        let _turn = self.turns.take_async(&session_id).await;
        for _ in 0..MAX_TRIES {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let this = self.clone();
            let (sid, content) = (session_id.clone(), content.clone());
            tokio::task::spawn_blocking(move || {
                let decided = this
                    .store
                    .read(|conn| read(conn, &sid, &asked))
                    .and_then(|read| match replay(&sid, &read, &asked.id, &content)? {
                        Some(answer) => Ok(Err(answer)),
                        None => Ok(Ok(decide(read, asked, content, &Plugins(this.registry()))?)),
                    });
                let decision = match decided {
                    Ok(Ok(decision)) => decision,
                    Ok(Err(replayed)) => return drop(reply.send(Ok(Step::Replayed(replayed)))),
                    Err(e) => return drop(reply.send(Err(e))),
                };
                // Not queued (the writer stopped): `reply` goes with the
                // write, and the caller hears it below.
                let _ = this.store.queue_write(
                    move |tx| record_if_current(tx, decision),
                    move |recorded| drop(reply.send(recorded.map(Step::Recorded))),
                );
            });
            let step = answer.await.map_err(|_| {
                SessionsError::Store(StoreError::Commit(
                    "recording the event failed: the database writer has stopped".into(),
                ))
            })??;
            match step {
                Step::Replayed(answer) => return Ok(answer),
                Step::Recorded(recording) => match self.settle(recording) {
                    Ok(answered) => return Ok(answered),
                    Err(again) => asked = again,
                },
            }
        }
        Err(self.too_contended(&session_id))
    }

    /// The session ends: whoever is present is charged and leaves.
    pub fn end(&self, session_id: &str, req: EndRequest) -> Result<Answered, SessionsError> {
        let asked = Asked::try_from(req)?;
        self.apply(session_id, asked, &Plugins(self.registry()))
    }

    /// Read, decide, record; decided again while the session changed
    /// between the read and the record, at most [`MAX_TRIES`] times.
    pub(super) fn apply(
        &self,
        session_id: &str,
        mut asked: Asked,
        charger: &dyn Charger,
    ) -> Result<Answered, SessionsError> {
        if !valid_id(session_id) {
            return Err(SessionsError::NoSession(session_id.to_owned()));
        }
        let content = asked.content();
        // Events of one session in turn: within this host none decides on
        // a state another is about to change.
        let _turn = self.turns.take(session_id);
        for _ in 0..MAX_TRIES {
            let read = self.store.read(|conn| read(conn, session_id, &asked))?;
            if let Some(answer) = replay(session_id, &read, &asked.id, &content)? {
                return Ok(answer);
            }
            let decision = decide(read, asked, content.clone(), charger)?;
            let recording = self
                .store
                .write(move |tx| record_if_current(tx, decision))?;
            match self.settle(recording) {
                Ok(answered) => return Ok(answered),
                Err(again) => asked = again,
            }
        }
        Err(self.too_contended(session_id))
    }

    /// What a recording tells the caller: the answer (counted, and the
    /// outbox woken when it was told something), or, when the session
    /// changed since it was read, the event to decide again.
    fn settle(&self, recording: Recording) -> Result<Answered, Asked> {
        match recording {
            Recording::Recorded(answer, told) => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                if told {
                    self.outbox_signal.raise();
                }
                Ok(Answered {
                    answer,
                    replayed: false,
                })
            }
            Recording::Stale(decision) => {
                self.stats.redecided.fetch_add(1, Ordering::Relaxed);
                Err(decision.asked)
            }
        }
    }

    fn too_contended(&self, session_id: &str) -> SessionsError {
        self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
        SessionsError::Conflict(session_id.to_owned())
    }
}

/// Checks the event against the state read and asks for its charges:
/// everything but the write.
pub(super) fn decide(
    read: Read,
    asked: Asked,
    content: String,
    charger: &dyn Charger,
) -> Result<Decision, SessionsError> {
    let Read {
        session,
        present,
        account_known,
        ..
    } = read;
    if let Some(ended) = session.ended_at {
        return Err(SessionsError::Ended {
            id: session.id,
            at: store::rfc3339(ended),
        });
    }
    let at = to_second(asked.at.unwrap_or_else(Timestamp::now));
    if at < session.last_event_at {
        return Err(SessionsError::OutOfOrder {
            at: store::rfc3339(at),
            last: store::rfc3339(session.last_event_at),
        });
    }
    let is_present = |id: &str| present.iter().any(|p| p.participant == id);
    let event = match &asked.change {
        Change::Join {
            participant,
            account_id,
            attributes,
        } => {
            if is_present(participant) {
                return Err(SessionsError::AlreadyPresent(participant.clone()));
            }
            if !account_known {
                return Err(SessionsError::NoAccount(account_id.clone()));
            }
            if present.len() >= MAX_PRESENT {
                return Err(SessionsError::Full(session.id));
            }
            c::SessionEvent::Join(c::Participant {
                id: participant.clone(),
                account_id: account_id.clone(),
                joined_at: ts(at),
                attributes: attributes.clone(),
            })
        }
        Change::Leave { participant } => {
            if !is_present(participant) {
                return Err(SessionsError::NotPresent(participant.clone()));
            }
            c::SessionEvent::Leave(participant.clone())
        }
        Change::End => c::SessionEvent::End {},
    };
    let input = OnEventInput {
        session: c::Session {
            id: session.id.clone(),
            started_at: ts(session.started_at),
            last_event_at: ts(session.last_event_at),
            attributes: properties(&session.attributes),
            participants: present
                .iter()
                .map(|p| c::Participant {
                    id: p.participant.clone(),
                    account_id: p.account_id.clone(),
                    joined_at: ts(p.joined_at),
                    attributes: properties(&p.attributes),
                })
                .collect(),
        },
        event: SessionEventAt { at: ts(at), event },
    };
    let (charges, webhook) = charger.charges(&session.service, input)?;
    Ok(Decision {
        session_id: session.id,
        version: session.version,
        service: session.service,
        webhook,
        at,
        asked,
        content,
        charges,
    })
}

/// The session's current state and the event's id, read for deciding.
pub(super) fn read(
    conn: &Conn<'_>,
    session_id: &str,
    asked: &Asked,
) -> Result<Read, SessionsError> {
    let session = q::get_session(conn, session_id)?
        .ok_or_else(|| SessionsError::NoSession(session_id.to_owned()))?;
    let recorded = match q::event_by_id(conn, session_id, &asked.id)? {
        Some(event) => {
            let charges = q::charges(conn, session_id, event.seq, event.seq)?;
            Some((event, charges))
        }
        None => None,
    };
    let account_known = match &asked.change {
        Change::Join { account_id, .. } if recorded.is_none() => {
            store::entitlement::account_version(conn, account_id)?.is_some()
        }
        _ => true,
    };
    let present = if recorded.is_none() {
        q::present(conn, session_id)?
    } else {
        Vec::new()
    };
    Ok(Read {
        session,
        present,
        recorded,
        account_known,
    })
}

/// The first answer, when the event's id was recorded with the same
/// content; a refusal when with other content; `None` when it is new.
fn replay(
    session_id: &str,
    read: &Read,
    id: &str,
    content: &str,
) -> Result<Option<Answered>, SessionsError> {
    let Some((event, charges)) = &read.recorded else {
        return Ok(None);
    };
    if event.request != content {
        return Err(SessionsError::EventIdReused {
            id: id.to_owned(),
            recorded: event.request.clone(),
        });
    }
    Ok(Some(Answered {
        answer: view::event_answer(session_id, event.clone(), charges.clone()),
        replayed: true,
    }))
}

/// Records the decision if the session is still at the version it was
/// decided on: the event, who is present, and each charge with its ledger
/// movement and, for what a prepaid balance could not pay, a notice.
pub(super) fn record_if_current(tx: &Tx<'_>, d: Decision) -> Result<Recording, SessionsError> {
    let ended = matches!(d.asked.change, Change::End).then_some(d.at);
    let Some(seq) = q::advance(tx, &d.session_id, d.version, d.at, ended)? else {
        return Ok(Recording::Stale(d));
    };
    let sid = d.session_id.as_str();
    let recorded_at = store::now_ms();
    let event = EventRow {
        seq,
        id: d.asked.id.clone(),
        kind: d.asked.kind().to_owned(),
        participant: d.asked.participant().map(str::to_owned),
        at: d.at,
        request: d.content.clone(),
        plugin: d.charges.plugin.clone(),
        plugin_digest: d.charges.digest.clone(),
        recorded_at,
    };
    q::insert_event(tx, sid, &event)?;
    match &d.asked.change {
        Change::Join {
            participant,
            account_id,
            attributes,
        } => q::join(
            tx,
            sid,
            &ParticipantRow {
                participant: participant.clone(),
                account_id: account_id.clone(),
                attributes: serde_json::to_value(attributes).unwrap_or(Value::Null),
                joined_at: d.at,
                left_at: None,
            },
        )?,
        Change::Leave { participant } => {
            if !q::leave(tx, sid, participant, d.at)? {
                return Err(SessionsError::NotPresent(participant.clone()));
            }
        }
        Change::End => q::leave_all(tx, sid, d.at)?,
    }

    let mut billing: HashMap<&str, Billing> = HashMap::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(d.charges.charges.len());
    let mut told = false;
    for (n, charge) in d.charges.charges.iter().enumerate() {
        let k = seen.entry(charge.participant.as_str()).or_default();
        *k += 1;
        // One movement per charge: a participant's second charge in the
        // same event gets `:2`, and so on.
        let reference = match *k {
            1 => format!("session:{sid}:{}:{}", event.id, charge.participant),
            k => format!("session:{sid}:{}:{}:{k}", event.id, charge.participant),
        };
        let bill = match billing.get(charge.account_id.as_str()) {
            Some(b) => *b,
            None => {
                let account = store::entitlement::get_account(tx, &charge.account_id)?
                    .ok_or_else(|| SessionsError::NoAccount(charge.account_id.clone()))?;
                let b = Billing::parse(&account.billing).unwrap_or_default();
                billing.insert(charge.account_id.as_str(), b);
                b
            }
        };
        let period_start = charge.period_start.as_millisecond();
        let period_end = charge.period_end.as_millisecond();
        let detail = json!({
            "session": sid,
            "event": event.id,
            "participant": charge.participant,
            "description": charge.description,
            "period_start": store::rfc3339(period_start),
            "period_end": store::rfc3339(period_end),
        });
        let charged = ledger::charge(
            tx,
            &charge.account_id,
            bill,
            charge.amount,
            &reference,
            d.at,
            Some(&detail),
        )?;
        let row = ChargeRow {
            seq,
            n: i64::try_from(n).unwrap_or(i64::MAX),
            participant: charge.participant.clone(),
            account_id: charge.account_id.clone(),
            amount: charge.amount,
            charged: charged.charged,
            uncovered: charged.uncovered,
            balance_after: charged.balance_after,
            reference,
            movement_id: charged.movement_id,
            description: charge.description.clone(),
            period_start,
            period_end,
        };
        q::insert_charge(tx, sid, &row)?;
        if row.uncovered > 0 {
            let data = json!({
                "service": d.service,
                "session_id": sid,
                "event_id": event.id,
                "participant": row.participant,
                "account_id": row.account_id,
                "amount": row.amount,
                "charged": row.charged,
                "uncovered": row.uncovered,
                "balance_after": row.balance_after,
                "reference": row.reference,
                "period_start": store::rfc3339(period_start),
                "period_end": store::rfc3339(period_end),
            });
            outbox::enqueue(
                tx,
                "session.uncovered",
                d.webhook.as_deref(),
                &data,
                recorded_at,
            )?;
            told = true;
        }
        rows.push(row);
    }
    Ok(Recording::Recorded(
        view::event_answer(sid, event, rows),
        told,
    ))
}
