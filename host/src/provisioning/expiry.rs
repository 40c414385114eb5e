//! An offer's expiry, as a flow on the flow engine (`offer-expiry`): a
//! timer until the offer's `expires_at`, then an automatic step that marks
//! the offer expired, takes its service out of the directories of those
//! who registered but never answered, and tells the provider who never
//! accepted, all in the step's transaction. The flow is started in the
//! transaction that makes the offer, so a restart loses neither.
//!
//! Links stop working at `expires_at` whether or not the step has run
//! (every step of an invitation checks the time itself); the step is what
//! tells people.

use std::sync::Arc;

use serde_json::{Value, json};

use super::offers::InviteeView;
use super::{Settings, directory, mail, when};
use crate::flow::{ActionHandler, ActionOutcome, Definition, FlowEngine, FlowError, TaskSpec};
use crate::store::Tx;
use crate::store::flows::{FlowRecord, TaskRecord};
use crate::store::provisioning::{self as q, OfferRow};

/// The flow definition of an offer's expiry.
pub const DEFINITION: &str = "offer-expiry";
const ACTION: &str = "offer-expire";

/// The definition and its action, for the engine (before it is shared).
pub fn install(engine: &mut FlowEngine, settings: Settings) {
    let tasks = vec![
        TaskSpec::timer_until("until the offer expires", "expires_at"),
        TaskSpec::auto("expire the offer", ACTION),
    ];
    match Definition::new(DEFINITION, tasks) {
        Ok(definition) => engine.add_definition(definition),
        Err(e) => tracing::error!("the offer expiry flow cannot be defined: {e}"),
    }
    engine.add_action(ACTION, Arc::new(Expire(settings)));
}

/// Starts `offer`'s expiry flow in the caller's transaction; its id, for
/// [`FlowEngine::advance`] after the commit.
pub(super) fn start(
    engine: &FlowEngine,
    tx: &Tx<'_>,
    offer: &OfferRow,
) -> Result<String, FlowError> {
    engine.start_in(
        tx,
        DEFINITION,
        &format!("offer {}", offer.id),
        json!({"offer": offer.id, "expires_at": offer.expires_at}),
        &offer.provider_id,
    )
}

struct Expire(Settings);

impl ActionHandler for Expire {
    fn run(
        &self,
        tx: &Tx<'_>,
        flow: &FlowRecord,
        _: &TaskRecord,
        now: i64,
    ) -> Result<ActionOutcome, FlowError> {
        let Some(offer_id) = flow.context.get("offer").and_then(Value::as_str) else {
            return Err(FlowError::Invalid(
                "the flow's context names no offer".into(),
            ));
        };
        let Some(offer) = q::get_offer(tx, offer_id)? else {
            return Ok(ActionOutcome::default());
        };
        if !q::mark_expired(tx, &offer.id, now)? {
            return Ok(ActionOutcome::default());
        }
        let invitees = q::invitees_of(tx, &offer.id)?;
        for user in invitees.iter().filter_map(|i| i.user_id.as_deref()) {
            directory::refresh(tx, user, now)?;
        }
        let waiting: Vec<InviteeView> = invitees
            .into_iter()
            .filter(|i| i.accepted_at.is_none())
            .map(|i| InviteeView::new(i, true))
            .collect();
        let Some(provider) = q::get_user(tx, &offer.provider_id)? else {
            return Ok(ActionOutcome::default());
        };
        let mut text = format!(
            "Your offer {} of {} expired at {}.\n",
            offer.id,
            offer.service,
            when(offer.expires_at)
        );
        if waiting.is_empty() {
            text.push_str("Every invitee accepted it.\n");
        } else {
            text.push_str("These invitees never accepted it:\n");
            for i in &waiting {
                let state = if i.declined {
                    "declined"
                } else if i.registered {
                    "registered, did not answer"
                } else {
                    "did not register"
                };
                text.push_str(&format!("- {} ({state})\n", i.email));
            }
        }
        mail(
            &self.0,
            tx,
            &provider.email,
            &provider.name,
            &format!("Your offer {} expired", offer.id),
            &text,
            now,
        )?;
        tracing::info!(offer = %offer.id, never_accepted = waiting.len(), "offer expired");
        Ok(ActionOutcome {
            notified: true,
            context: None,
        })
    }
}
