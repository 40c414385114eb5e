//! The provisioning pages on a real [`Provisioning`] (an in-memory store,
//! the sample `support-contract` service without its plugin): each step,
//! the session cookie and its rotation, form tokens refused from another
//! session, for another invitation and sent twice, and that a refusal
//! records nothing.

use std::collections::BTreeMap;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request, header};
use tower::ServiceExt as _;

use super::tests::Answer;
use super::*;
use crate::flow::{FlowEngine, Roles};
use crate::notify::Signal;
use crate::provisioning::{
    NewInvitee, NewInvitees, NewOffer, NewOrganization, NewUser, Reader, Settings, User,
};
use crate::registry::{Manifest, Registry, Service};
use crate::store::Store;

const PASSWORD: &str = "correct horse battery";

struct Site {
    provisioning: Arc<Provisioning>,
    router: Router,
    provider: User,
}

fn site_with_offer() -> (Site, String) {
    let store = Store::in_memory().unwrap();
    let manifest = Manifest::parse(
        std::path::Path::new("support-contract.toml"),
        include_str!("../../../../rules/support-contract.toml"),
    )
    .unwrap();
    let mut registry = Registry::default();
    registry.services.insert(
        manifest.id.clone(),
        Arc::new(Service {
            manifest,
            bindings: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            calls: Arc::default(),
        }),
    );
    let signal = Arc::new(Signal::default());
    let settings = Settings::default();
    let mut engine = FlowEngine::new(
        store.clone(),
        BTreeMap::new(),
        Roles::default(),
        signal.clone(),
    );
    crate::provisioning::install(&mut engine, settings.clone());
    let provisioning = Arc::new(Provisioning::new(
        store,
        Arc::new(ArcSwap::from_pointee(registry)),
        Arc::new(engine),
        signal,
        settings,
    ));
    provisioning
        .create_organization(NewOrganization {
            id: "acme".into(),
            name: "Acme".into(),
            owns: vec!["support-contract".into()],
        })
        .unwrap();
    for (id, admin) in [("ada", true), ("carl", false)] {
        provisioning
            .create_user(NewUser {
                id: id.into(),
                organization: "acme".into(),
                email: format!("{id}@acme.test"),
                name: id.to_uppercase(),
                phone: None,
                password: PASSWORD.into(),
                admin,
            })
            .unwrap();
    }
    let provider = provisioning.authenticate("ada", PASSWORD).unwrap();
    let offer = provisioning
        .make_offer(
            &provider,
            NewOffer {
                service: "support-contract".into(),
                description: "a year of support".into(),
                expires_at: None,
                onwards: false,
            },
        )
        .unwrap();
    let router = finish(provisioning::routes(provisioning.clone()));
    (
        Site {
            provisioning,
            router,
            provider,
        },
        offer.id,
    )
}

impl Site {
    /// A new invitee of `offer`: its id and key.
    fn invite(&self, offer: &str, email: &str) -> (String, String) {
        let made = self
            .provisioning
            .add_invitees(
                &self.provider,
                offer,
                NewInvitees {
                    invitees: vec![NewInvitee {
                        email: email.into(),
                        name: Some("Bob".into()),
                        organization: Some("Bobco".into()),
                        phone: None,
                    }],
                    send: false,
                },
            )
            .unwrap();
        let url = made[0].url.clone().unwrap();
        let (_, key) = url.split_once("?key=").unwrap();
        (made[0].id.clone(), key.to_owned())
    }

    fn invitee(&self, offer: &str, iid: &str) -> crate::provisioning::InviteeView {
        self.provisioning
            .invitee(Reader::Operator, offer, iid)
            .unwrap()
    }

    fn permissions(&self) -> usize {
        self.provisioning
            .permissions(Reader::Operator, None, None)
            .unwrap()
            .len()
    }
}

impl Answer {
    /// The value of the first hidden field `token`.
    fn token(&self) -> String {
        let marker = "name=\"token\" value=\"";
        let at = self.text.find(marker).expect("a form token") + marker.len();
        self.text[at..].split('"').next().unwrap().to_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A browser: it keeps the `rh_site` cookie it is given.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, site: &Site, request: Request<Body>) -> Answer {
        let answer = Answer::of(site.router.clone().oneshot(request).await.unwrap()).await;
        let status = answer.status;
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(answer.headers[name], value, "{name}: {answer:?}");
        }
        if status != 303 {
            assert!(answer.text.starts_with("<!doctype html>"), "{answer:?}");
        }
        for set in answer.headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let value = set
                .strip_prefix("rh_site=")
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        answer
    }

    fn request(&self, builder: axum::http::request::Builder) -> axum::http::request::Builder {
        match &self.cookie {
            Some(c) => builder.header(header::COOKIE, format!("theme=dark; rh_site={c}")),
            None => builder,
        }
    }

    async fn get(&mut self, site: &Site, uri: &str) -> Answer {
        let request = self.request(Request::get(uri)).body(Body::empty()).unwrap();
        self.send(site, request).await
    }

    async fn post(&mut self, site: &Site, uri: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .request(Request::post(uri))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(site, request).await
    }
}

fn encode(value: &str) -> String {
    super::pages::encode_segment(value)
}

/// Confirms the email of `iid` in `browser`: the offer page.
async fn confirmed(site: &Site, browser: &mut Browser, iid: &str, key: &str) -> Answer {
    let page = browser.get(site, &format!("/invite/{iid}?key={key}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let token = page.token();
    let offer = browser
        .post(
            site,
            &format!("/invite/{iid}/confirm"),
            &[("key", key), ("token", &token), ("email", "BOB@x.test ")],
        )
        .await;
    assert_eq!(offer.status, 200, "{}", offer.text);
    offer
}

#[tokio::test]
async fn an_invitee_registers_and_accepts() {
    let (site, offer) = site_with_offer();
    let (iid, key) = site.invite(&offer, "bob@x.test");
    let mut browser = Browser::default();

    // The link: a form, and a new anonymous session with its attributes.
    let page = browser
        .get(&site, &format!("/invite/{iid}?key={key}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let set = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.ends_with("; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=28800"),
        "{set}"
    );
    let anonymous = browser.cookie.clone().unwrap();

    // A wrong email: denied, and the status unchanged.
    let token = page.token();
    let denied = browser
        .post(
            &site,
            &format!("/invite/{iid}/confirm"),
            &[("key", &key), ("token", &token), ("email", "eve@x.test")],
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert!(denied.text.contains("Access denied"), "{}", denied.text);
    // The same form again: refused, nothing more done.
    let again = browser
        .post(
            &site,
            &format!("/invite/{iid}/confirm"),
            &[("key", &key), ("token", &token), ("email", "bob@x.test")],
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(again.text.contains("sent already"), "{}", again.text);

    let offer_page = confirmed(&site, &mut browser, &iid, &key).await;
    assert!(
        offer_page.text.contains("a year of support"),
        "{}",
        offer_page.text
    );
    assert_eq!(
        browser.cookie.as_deref(),
        Some(anonymous.as_str()),
        "no new session yet"
    );

    // Registration, prefilled.
    let form = browser
        .get(&site, &format!("/invite/{iid}/register?key={key}"))
        .await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(form.text.contains("value=\"Bobco\""), "{}", form.text);
    let token = form.token();
    let mut fields = vec![
        ("key", key.as_str()),
        ("token", token.as_str()),
        ("user_id", "bob"),
        ("password", "short"),
        ("email", "bob@x.test"),
        ("name", "Bob"),
        ("organization", "Bobco"),
        ("phone", ""),
    ];
    // A bad field: the form again, filled, with why; nothing registered.
    let bad = browser
        .post(&site, &format!("/invite/{iid}/register"), &fields)
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("at least 8"), "{}", bad.text);
    assert!(bad.text.contains("value=\"bob\""), "{}", bad.text);
    assert!(!site.invitee(&offer, &iid).registered);
    let token = bad.token();
    fields[1].1 = &token;
    fields[3].1 = PASSWORD;
    let registered = browser
        .post(&site, &format!("/invite/{iid}/register"), &fields)
        .await;
    assert_eq!(registered.status, 303, "{}", registered.text);
    assert_eq!(
        registered.location(),
        format!("/invite/{iid}/terms?key={key}")
    );
    // A new session on sign-in; the old one is worth nothing.
    let signed_in = browser.cookie.clone().unwrap();
    assert_ne!(signed_in, anonymous);
    assert!(site.provisioning.site_state(&anonymous).unwrap().is_none());
    assert!(site.invitee(&offer, &iid).registered);

    // The terms, twice (two tokens), accepted once.
    let terms = browser
        .get(&site, &format!("/invite/{iid}/terms?key={key}"))
        .await;
    assert_eq!(terms.status, 200, "{}", terms.text);
    let first = terms.token();
    let second = browser
        .get(&site, &format!("/invite/{iid}/terms?key={key}"))
        .await
        .token();
    let path = format!("/invite/{iid}/terms");
    let accepted = browser
        .post(
            &site,
            &path,
            &[("key", &key), ("token", &first), ("decision", "accept")],
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert!(accepted.text.contains("You can now use Support contract"));
    let again = browser
        .post(
            &site,
            &path,
            &[("key", &key), ("token", &second), ("decision", "accept")],
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(
        again.text.contains("nothing more was recorded"),
        "{}",
        again.text
    );
    // The first token again: refused.
    let replayed = browser
        .post(
            &site,
            &path,
            &[("key", &key), ("token", &first), ("decision", "accept")],
        )
        .await;
    assert_eq!(replayed.status, 409, "{}", replayed.text);
    assert_eq!(site.permissions(), 1);
    assert!(site.invitee(&offer, &iid).accepted);
}

#[tokio::test]
async fn wrong_links_and_steps_out_of_turn_change_nothing() {
    let (site, offer) = site_with_offer();
    let (iid, key) = site.invite(&offer, "bob@x.test");
    let mut browser = Browser::default();
    // The last digit changed (never to itself).
    let last = if key.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &key[..key.len() - 1]);
    for uri in [
        format!("/invite/{iid}?key={wrong}"),
        format!("/invite/{iid}"),
        format!("/invite/inv-nobody?key={key}"),
        format!("/invite/{iid}/register?key={wrong}"),
        format!("/invite/{iid}/terms?key={wrong}"),
    ] {
        let page = browser.get(&site, &uri).await;
        assert_eq!(page.status, 404, "{uri}: {}", page.text);
        assert!(
            page.text.contains("This link is not valid"),
            "{}",
            page.text
        );
        assert!(browser.cookie.is_none(), "a wrong link opens no session");
    }
    // Registration before the email is confirmed: back to the link.
    let back = browser
        .get(&site, &format!("/invite/{iid}/register?key={key}"))
        .await;
    assert_eq!(back.status, 303);
    assert_eq!(back.location(), format!("/invite/{iid}?key={key}"));
    // The terms without signing in: a page saying so.
    let terms = browser
        .get(&site, &format!("/invite/{iid}/terms?key={key}"))
        .await;
    assert_eq!(terms.status, 403, "{}", terms.text);
    assert!(terms.text.contains("Sign in to answer these terms"));
    // A form without a session, or not urlencoded.
    let mut stranger = Browser::default();
    let refused = stranger
        .post(
            &site,
            &format!("/invite/{iid}/confirm"),
            &[("key", &key), ("token", "rhu_00"), ("email", "bob@x.test")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let request = Request::post(format!("/invite/{iid}/confirm"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(stranger.send(&site, request).await.status, 415);
    let view = site.invitee(&offer, &iid);
    assert!(!view.registered && !view.accepted && !view.declined);
}

#[tokio::test]
async fn forms_of_another_session_or_invitation_are_refused() {
    let (site, offer) = site_with_offer();
    let (one, key_one) = site.invite(&offer, "bob@x.test");
    let (two, key_two) = site.invite(&offer, "bob@x.test");
    let mut alice = Browser::default();
    let mut mallory = Browser::default();
    let token = alice
        .get(&site, &format!("/invite/{one}?key={key_one}"))
        .await
        .token();
    mallory
        .get(&site, &format!("/invite/{one}?key={key_one}"))
        .await;
    // Alice's token in Mallory's session.
    let stolen = mallory
        .post(
            &site,
            &format!("/invite/{one}/confirm"),
            &[
                ("key", &key_one),
                ("token", &token),
                ("email", "bob@x.test"),
            ],
        )
        .await;
    assert_eq!(stolen.status, 403, "{}", stolen.text);
    assert!(
        stolen.text.contains("not from this browser"),
        "{}",
        stolen.text
    );
    // Alice's token of invitation one, posted to invitation two.
    let other = alice
        .post(
            &site,
            &format!("/invite/{two}/confirm"),
            &[
                ("key", &key_two),
                ("token", &token),
                ("email", "bob@x.test"),
            ],
        )
        .await;
    assert_eq!(other.status, 403, "{}", other.text);
    assert!(other.text.contains("for another page"), "{}", other.text);
    for session in [&alice, &mallory] {
        let state = site
            .provisioning
            .site_state(session.cookie.as_deref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(state.invitee, None, "no email confirmed");
    }
}

#[tokio::test]
async fn an_invitee_with_an_account_signs_in_instead() {
    let (site, offer) = site_with_offer();
    let (iid, key) = site.invite(&offer, "carl@acme.test");
    let mut browser = Browser::default();
    let page = browser
        .get(&site, &format!("/invite/{iid}?key={key}"))
        .await;
    let offer_page = browser
        .post(
            &site,
            &format!("/invite/{iid}/confirm"),
            &[
                ("key", &key),
                ("token", &page.token()),
                ("email", "carl@acme.test"),
            ],
        )
        .await;
    assert!(
        offer_page.text.contains("id=\"signin\""),
        "{}",
        offer_page.text
    );
    let form = browser
        .get(&site, &format!("/invite/{iid}/signin?key={key}"))
        .await;
    assert_eq!(form.status, 200, "{}", form.text);
    let wrong = browser
        .post(
            &site,
            &format!("/invite/{iid}/signin"),
            &[
                ("key", &key),
                ("token", &form.token()),
                ("user_id", "carl"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(
        wrong.text.contains("wrong user id or password"),
        "{}",
        wrong.text
    );
    assert!(!site.invitee(&offer, &iid).registered);
    let signed = browser
        .post(
            &site,
            &format!("/invite/{iid}/signin"),
            &[
                ("key", &key),
                ("token", &wrong.token()),
                ("user_id", "carl"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed.status, 303, "{}", signed.text);
    assert_eq!(signed.location(), format!("/invite/{iid}/terms?key={key}"));
    let terms = browser
        .get(&site, &format!("/invite/{iid}/terms?key={key}"))
        .await;
    let declined = browser
        .post(
            &site,
            &format!("/invite/{iid}/terms"),
            &[
                ("key", &key),
                ("token", &terms.token()),
                ("decision", "decline"),
            ],
        )
        .await;
    assert_eq!(declined.status, 200, "{}", declined.text);
    assert!(declined.text.contains("You declined"), "{}", declined.text);
    let view = site.invitee(&offer, &iid);
    assert_eq!(view.user.as_deref(), Some("carl"));
    assert!(view.declined && !view.accepted);
    assert_eq!(site.permissions(), 0);
}

#[tokio::test]
async fn a_provider_makes_an_offer_and_adds_invitees() {
    let (site, _) = site_with_offer();
    let mut browser = Browser::default();
    let form = browser.get(&site, "/provider").await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(
        form.text.contains("Sign in to your offers"),
        "{}",
        form.text
    );
    let wrong = browser
        .post(
            &site,
            "/provider/signin",
            &[
                ("token", &form.token()),
                ("user_id", "ada"),
                ("password", "nope nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let anonymous = browser.cookie.clone();
    let signed = browser
        .post(
            &site,
            "/provider/signin",
            &[
                ("token", &wrong.token()),
                ("user_id", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed.status, 303, "{}", signed.text);
    assert_ne!(browser.cookie, anonymous, "a new session on sign-in");

    let page = browser.get(&site, "/provider").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("<option value=\"support-contract\""),
        "{}",
        page.text
    );
    // The first token on the page is sign-out's; the offer form's is named by its form.
    let offer_token = token_of(&page.text, "make-offer");
    let bad = browser
        .post(
            &site,
            "/provider/offers",
            &[
                ("token", &offer_token),
                ("service", "support-contract"),
                ("description", "x"),
                ("expires", "someday"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("is not a date"), "{}", bad.text);
    let made = browser
        .post(
            &site,
            "/provider/offers",
            &[
                ("token", &token_of(&bad.text, "make-offer")),
                ("service", "support-contract"),
                ("description", "support for <partners>"),
                ("expires", ""),
                ("onwards", "yes"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.text);
    let location = made.location().to_owned();
    assert!(location.starts_with("/provider/offers/ofr"), "{location}");

    let offer_page = browser.get(&site, &location).await;
    assert_eq!(offer_page.status, 200, "{}", offer_page.text);
    assert!(offer_page.text.contains("support for &lt;partners&gt;"));
    let lines = "b@x.test, Bea, Beaco, 1\n\nnot-an-email, C";
    let bad = browser
        .post(
            &site,
            &format!("{location}/invitees"),
            &[("token", &offer_page.token()), ("invitees", lines)],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("line 3: `email`"), "{}", bad.text);
    let lines = "b@x.test, Bea, Beaco, 1\n\nc@x.test, Cy";
    let added = browser
        .post(
            &site,
            &format!("{location}/invitees"),
            &[("token", &bad.token()), ("invitees", lines)],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.text);
    assert_eq!(added.text.matches("<code class=\"link\">").count(), 2);
    assert_eq!(
        added
            .text
            .matches("<td class=\"status\">invited</td>")
            .count(),
        2
    );
    // The links are not shown again.
    let again = browser.get(&site, &location).await;
    assert!(
        !again.text.contains("<code class=\"link\">"),
        "{}",
        again.text
    );

    // Another's offer is as good as none; sign out ends the session.
    let none = browser.get(&site, "/provider/offers/ofr-nobody").await;
    assert_eq!(none.status, 404, "{}", none.text);
    let page = browser.get(&site, "/provider").await;
    let cookie = browser.cookie.clone().unwrap();
    let out = browser
        .post(&site, "/provider/signout", &[("token", &page.token())])
        .await;
    assert_eq!(out.status, 303);
    assert!(browser.cookie.is_none());
    assert!(site.provisioning.site_state(&cookie).unwrap().is_none());
    let after = browser.get(&site, &location).await;
    assert_eq!(after.status, 303, "signed out: to the sign-in form");
}

/// The token of the form with this id.
fn token_of(html: &str, form: &str) -> String {
    let at = html.find(&format!("id=\"{form}\"")).expect("the form");
    Answer {
        status: 200,
        headers: Default::default(),
        text: html[at..].to_owned(),
    }
    .token()
}
