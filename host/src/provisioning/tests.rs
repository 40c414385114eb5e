//! Provisioning on an in-memory store with one service: who may offer, the
//! invitation's steps and their refusals, one permission however many
//! accepts, locks after wrong passwords, form tokens, the directory, and
//! the expiry flow. (The real binary, its API and pages are tested end to
//! end in `tests/e2e/provisioning.rs` and `provisioning_site.rs`.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::*;
use crate::flow::{FlowEngine, Roles};
use crate::registry::{Manifest, Registry, Service};
use crate::store::Store;
use crate::store::outbox;

const PASSWORD: &str = "a long enough password";

struct World {
    p: Provisioning,
    store: Store,
    engine: Arc<FlowEngine>,
}

fn world() -> World {
    let store = Store::in_memory().unwrap();
    let manifest = Manifest::parse(
        Path::new("meeting-room.toml"),
        "id = \"meeting-room\"\ndisplay_name = \"Meeting room\"\n[plugins]\nverifier = \"meeting-room\"\n",
    )
    .unwrap();
    let mut registry = Registry::default();
    registry.services.insert(
        "meeting-room".into(),
        Arc::new(Service {
            manifest,
            bindings: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            calls: Arc::default(),
        }),
    );
    let registry = Arc::new(ArcSwap::from_pointee(registry));
    let signal = Arc::new(crate::notify::Signal::default());
    let mut engine = FlowEngine::new(
        store.clone(),
        BTreeMap::new(),
        Roles::default(),
        signal.clone(),
    );
    let settings = Settings {
        max_attempts: 3,
        ..Settings::default()
    };
    install(&mut engine, settings.clone());
    let engine = Arc::new(engine);
    let p = Provisioning::new(store.clone(), registry, engine.clone(), signal, settings);
    p.create_organization(NewOrganization {
        id: "acme".into(),
        name: "Acme".into(),
        owns: vec!["meeting-room".into()],
    })
    .unwrap();
    p.create_organization(NewOrganization {
        id: "globex".into(),
        name: "Globex".into(),
        owns: vec![],
    })
    .unwrap();
    World { p, store, engine }
}

impl World {
    fn user(&self, id: &str, org: &str, admin: bool) -> User {
        self.p
            .create_user(NewUser {
                id: id.into(),
                organization: org.into(),
                email: format!("{id}@example.com"),
                name: id.to_uppercase(),
                phone: None,
                password: PASSWORD.into(),
                admin,
            })
            .unwrap();
        self.p.authenticate(id, PASSWORD).unwrap()
    }

    fn offer(&self, by: &User, onwards: bool) -> String {
        self.p
            .make_offer(
                by,
                NewOffer {
                    onwards,
                    ..new_offer("meeting-room")
                },
            )
            .unwrap()
            .id
    }

    /// One invitee for `email`; its id and key.
    fn invite(&self, by: &User, offer: &str, email: &str) -> (String, String) {
        let made = self
            .p
            .add_invitees(
                by,
                offer,
                NewInvitees {
                    invitees: vec![NewInvitee {
                        email: email.into(),
                        name: Some("Ann".into()),
                        organization: Some("Initech".into()),
                        phone: None,
                    }],
                    send: false,
                },
            )
            .unwrap();
        let url = made[0].url.clone().unwrap();
        let key = url.split("key=").nth(1).unwrap().to_owned();
        (made[0].id.clone(), key)
    }

    fn register(&self, invitee: &str, key: &str, user_id: &str) -> User {
        self.p
            .register(
                invitee,
                key,
                Registration {
                    user_id: user_id.into(),
                    password: PASSWORD.into(),
                    email: "ann@initech.example".into(),
                    name: "Ann".into(),
                    organization: "Initech".into(),
                    phone: String::new(),
                },
            )
            .unwrap()
    }

    fn count(&self, table: &str) -> i64 {
        self.store
            .read(|c| crate::store::provisioning::count(c, table))
            .unwrap()
    }
}

/// An offer of `service`, never expiring by choice, not onwards.
fn new_offer(service: &str) -> NewOffer {
    NewOffer {
        service: service.into(),
        description: "Room 4, weekdays".into(),
        expires_at: None,
        onwards: false,
    }
}

#[test]
fn only_an_owning_administrator_or_an_onward_grantee_may_offer_and_a_refusal_stores_nothing() {
    let w = world();
    let member = w.user("bob", "acme", false);
    let stranger = w.user("gina", "globex", true);
    for user in [&member, &stranger] {
        let e = w.p.make_offer(user, new_offer("meeting-room")).unwrap_err();
        assert!(matches!(e, ProvisioningError::Forbidden(_)), "{e}");
    }
    assert_eq!(w.count("offers"), 0);
    assert_eq!(w.count("flows"), 0);
    let admin = w.user("alice", "acme", true);
    let e = w.p.make_offer(&admin, new_offer("no-such")).unwrap_err();
    assert!(matches!(e, ProvisioningError::UnknownService(_)), "{e}");
    let offer = w.offer(&admin, false);
    let view = w.p.offer(Reader::User(&admin), &offer).unwrap();
    assert!(!view.expiry_chosen);
    let days = (view.expires_at - view.created_at) / 86_400_000;
    assert_eq!(days, 60, "the default expiry is 60 days");
    // Another provider's offer is as good as none.
    let e = w.p.offer(Reader::User(&member), &offer).unwrap_err();
    assert!(matches!(e, ProvisioningError::NotFound { .. }), "{e}");
}

#[test]
fn an_invitee_registers_accepts_once_and_the_directory_and_provider_follow() {
    let w = world();
    let admin = w.user("alice", "acme", true);
    let offer = w.offer(&admin, false);
    let (first, key) = w.invite(&admin, &offer, "ann@initech.example");
    let (second, _) = w.invite(&admin, &offer, "bo@initech.example");
    assert_ne!(first, second);
    assert!(matches!(
        w.p.invitation(&first, &"0".repeat(64)).unwrap_err(),
        ProvisioningError::WrongLink
    ));
    assert!(matches!(
        w.p.confirm_email(&first, &key, "someone@else.example")
            .unwrap_err(),
        ProvisioningError::AccessDenied
    ));
    let view =
        w.p.confirm_email(&first, &key, " ANN@initech.example ")
            .unwrap();
    assert_eq!(view.prefill.organization, "Initech");
    let ann = w.register(&first, &key, "ann");
    assert!(
        ann.admin,
        "the first user of a new organization administers it"
    );
    assert_ne!(ann.organization, "acme");
    let dir = w.p.directory(Reader::User(&ann), "ann").unwrap();
    assert_eq!(dir.services.len(), 1);
    assert!(
        !dir.services[0].usable,
        "visible, not usable before the terms"
    );
    // A second registration through the same link is refused.
    let again = w.p.register(
        &first,
        &key,
        Registration {
            user_id: "ann2".into(),
            password: PASSWORD.into(),
            email: "a@b.example".into(),
            name: "A".into(),
            organization: "B".into(),
            phone: String::new(),
        },
    );
    assert!(matches!(again.unwrap_err(), ProvisioningError::Conflict(_)));
    assert_eq!(w.count("users"), 2);

    // Ten accepts at once: one permission.
    let answers: Vec<Answered> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| s.spawn(|| w.p.answer(&first, &key, &ann, true).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers.iter().filter(|a| !a.again).count(), 1);
    assert!(answers.iter().all(|a| a.accepted && a.permission.is_some()));
    assert_eq!(w.count("permissions"), 1);
    let held =
        w.p.permissions(Reader::Operator, None, Some("ann"))
            .unwrap();
    assert_eq!(held[0].grantor, "alice");
    assert!(!held[0].may_offer);
    let dir = w.p.directory(Reader::User(&ann), "ann").unwrap();
    assert!(dir.services[0].usable);
    assert_eq!(dir.services[0].why, "permission");
    // Declining after accepting is refused; the provider was told once.
    assert!(matches!(
        w.p.answer(&first, &key, &ann, false).unwrap_err(),
        ProvisioningError::Conflict(_)
    ));
    let mails = w
        .store
        .read(|c| outbox::list(c, None, 100))
        .unwrap()
        .into_iter()
        .filter(|m| m.payload["data"]["to"] == "alice@example.com")
        .count();
    assert_eq!(mails, 1);
    let status = w.p.invitee(Reader::User(&admin), &offer, &first).unwrap();
    assert!(status.registered && status.accepted && !status.declined);
    let status = w.p.invitee(Reader::User(&admin), &offer, &second).unwrap();
    assert!(!status.registered && !status.accepted);
}

#[test]
fn a_grantee_allowed_onwards_re_provisions_and_one_who_is_not_may_not() {
    let w = world();
    let admin = w.user("alice", "acme", true);
    let onwards = w.offer(&admin, true);
    let (i1, k1) = w.invite(&admin, &onwards, "ann@initech.example");
    let ann = w.register(&i1, &k1, "ann");
    w.p.answer(&i1, &k1, &ann, true).unwrap();
    let closed = w.offer(&admin, false);
    let (i2, k2) = w.invite(&admin, &closed, "carl@initech.example");
    let carl = w.register(&i2, &k2, "carl");
    w.p.answer(&i2, &k2, &carl, true).unwrap();

    let resold = w.offer(&ann, false);
    let view = w.p.offer(Reader::User(&ann), &resold).unwrap();
    let ann_permission =
        w.p.permissions(Reader::User(&ann), None, Some("ann"))
            .unwrap()[0]
            .id;
    assert_eq!(view.via_permission, Some(ann_permission));
    let (i3, k3) = w.invite(&ann, &resold, "dee@hooli.example");
    let dee = w.register(&i3, &k3, "dee");
    let answered = w.p.answer(&i3, &k3, &dee, true).unwrap();
    let permission = answered.permission.unwrap();
    assert_eq!(permission.grantor, "ann");
    assert_eq!(permission.via_permission, Some(ann_permission));

    let e =
        w.p.make_offer(&carl, new_offer("meeting-room"))
            .unwrap_err();
    assert!(
        e.to_string().contains("does not let you offer it onwards"),
        "{e}"
    );
}

#[test]
fn wrong_passwords_lock_the_user_even_against_the_right_one_for_a_while() {
    let w = world();
    w.user("alice", "acme", true);
    for _ in 0..2 {
        assert!(matches!(
            w.p.authenticate("alice", "wrong password").unwrap_err(),
            ProvisioningError::BadCredentials
        ));
    }
    assert!(matches!(
        w.p.authenticate("alice", "wrong password").unwrap_err(),
        ProvisioningError::Locked { .. }
    ));
    assert!(matches!(
        w.p.authenticate("alice", PASSWORD).unwrap_err(),
        ProvisioningError::Locked { .. }
    ));
    assert!(matches!(
        w.p.authenticate("nobody", PASSWORD).unwrap_err(),
        ProvisioningError::BadCredentials
    ));
}

#[test]
fn a_form_token_passes_once_for_its_session_form_and_subject() {
    let w = world();
    let session = w.p.open_site_session(None, None, None).unwrap();
    let other = w.p.open_site_session(None, None, None).unwrap();
    let token = w.p.form_token(&session.cookie, "terms", "inv_1").unwrap();
    let refused = |cookie: &str, form: &str, subject: &str| match w
        .p
        .take_form_token(cookie, form, subject, &token)
        .unwrap_err()
    {
        ProvisioningError::Form(e) => e,
        e => panic!("{e}"),
    };
    assert_eq!(refused(&other.cookie, "terms", "inv_1"), FormError::Unknown);
    assert_eq!(
        refused(&session.cookie, "terms", "inv_2"),
        FormError::OtherSubject
    );
    w.p.take_form_token(&session.cookie, "terms", "inv_1", &token)
        .unwrap();
    assert_eq!(
        refused(&session.cookie, "terms", "inv_1"),
        FormError::Replayed
    );
    // Signing in replaces the session: the old cookie is worth nothing.
    let alice = w.user("alice", "acme", true);
    let signed =
        w.p.open_site_session(Some(&session.cookie), Some(&alice), None)
            .unwrap();
    assert!(w.p.site_state(&session.cookie).unwrap().is_none());
    let state = w.p.site_state(&signed.cookie).unwrap().unwrap();
    assert_eq!(state.user.unwrap().id, "alice");
}

#[test]
fn an_expiring_offer_stops_its_links_and_its_flow_tells_the_provider_who_never_accepted() {
    let w = world();
    let admin = w.user("alice", "acme", true);
    let soon = jiff::Timestamp::now() + Duration::from_millis(1500);
    let offer =
        w.p.make_offer(
            &admin,
            NewOffer {
                expires_at: Some(soon),
                ..new_offer("meeting-room")
            },
        )
        .unwrap();
    assert!(offer.expiry_chosen);
    let (invitee, key) = w.invite(&admin, &offer.id, "ann@initech.example");
    let ann = w.register(&invitee, &key, "ann");
    std::thread::sleep(Duration::from_millis(1600));
    // Every step refuses before the flow has even run.
    assert!(matches!(
        w.p.invitation(&invitee, &key).unwrap_err(),
        ProvisioningError::Expired { .. }
    ));
    assert!(matches!(
        w.p.answer(&invitee, &key, &ann, true).unwrap_err(),
        ProvisioningError::Expired { .. }
    ));
    assert_eq!(w.count("permissions"), 0);
    w.engine.advance_ready().unwrap();
    let view = w.p.offer(Reader::User(&admin), &offer.id).unwrap();
    assert!(view.expired);
    let told: Vec<_> = w
        .store
        .read(|c| outbox::list(c, None, 100))
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.payload["data"]["subject"]
                .as_str()
                .is_some_and(|s| s.contains("expired"))
        })
        .collect();
    assert_eq!(told.len(), 1);
    let text = told[0].payload["data"]["text"].as_str().unwrap();
    assert!(
        text.contains("ann@initech.example (registered, did not answer)"),
        "{text}"
    );
    // The service left the directory of the one who never answered.
    assert!(
        w.p.directory(Reader::User(&ann), "ann")
            .unwrap()
            .services
            .is_empty()
    );
}

#[test]
fn guesses_sent_side_by_side_get_no_more_tries_than_one_after_the_other() {
    let w = world();
    w.user("alice", "acme", true);
    let p = &w.p;
    let outcomes: Vec<ProvisioningError> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|n| s.spawn(move || p.authenticate("alice", &format!("guess number {n}"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_err())
            .collect()
    });
    let wrong = outcomes
        .iter()
        .filter(|e| matches!(e, ProvisioningError::BadCredentials))
        .count();
    // max_attempts is 3: two wrong answers, then the lock, whatever the order.
    assert_eq!(wrong, 2, "{outcomes:?}");
    assert!(matches!(
        w.p.authenticate("alice", PASSWORD).unwrap_err(),
        ProvisioningError::Locked { .. }
    ));
}
