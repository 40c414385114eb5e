//! Provisioning's internal API on the real binary: organizations and users
//! made by an operator; users acting with HTTP Basic or a user token; who
//! may offer a service (403 and nothing stored for anyone else); invitees
//! added over several calls, each with a link of its own, mailed or
//! returned; the status of an offer and of each invitee; wrong passwords
//! locking a user; and an offer expiring a few seconds ahead, across a
//! kill -9, its flow telling the provider who never accepted. (The pages
//! an invitee and a provider use are tested in `provisioning_site.rs`.)

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::server::{Host, Reply, Setup, wait_for};

pub(crate) const PASSWORD: &str = "correct horse battery";

/// `Authorization: Basic` for `user` with [`PASSWORD`] (the site's tests
/// use it too).
pub(crate) fn basic(user: &str) -> String {
    basic_with(user, PASSWORD)
}

fn basic_with(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn organization(host: &Host, id: &str, owns: &[&str]) {
    let reply = host.post(
        "/v1/organizations",
        &json!({"id": id, "name": id.to_uppercase(), "owns": owns}),
    );
    assert_eq!(reply.status, 201, "{reply}");
}

fn user(host: &Host, id: &str, org: &str, admin: bool) {
    let reply = host.post(
        "/v1/users",
        &json!({"id": id, "organization": org, "email": format!("{id}@example.com"),
                "name": id.to_uppercase(), "password": PASSWORD, "admin": admin}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    assert!(reply.json.get("password").is_none(), "{reply}");
    assert!(!reply.text.contains("argon2"), "{reply}");
}

/// acme owns support-contract (alice administers it, bob does not);
/// globex owns nothing (gina administers it).
fn people(host: &Host) {
    organization(host, "acme", &["support-contract"]);
    organization(host, "globex", &[]);
    user(host, "alice", "acme", true);
    user(host, "bob", "acme", false);
    user(host, "gina", "globex", true);
}

fn as_user(host: &Host, who: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    host.call_with(&basic(who), method, path, body)
}

fn offer(host: &Host, who: &str, body: &Value) -> Reply {
    as_user(host, who, "POST", "/v1/offers", Some(body))
}

fn flows_of_offers(host: &Host) -> usize {
    let reply = host.get("/v1/flows?definition=offer-expiry");
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["flows"].as_array().map_or(0, Vec::len)
}

#[test]
fn only_an_administrator_of_the_owning_organization_may_offer_and_a_refusal_stores_nothing() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let body = json!({"service": "support-contract", "description": "Priority support for 2027"});

    // A member who is not an administrator, and an administrator of an
    // organization that does not own the service.
    for who in ["bob", "gina"] {
        let reply = offer(&host, who, &body);
        assert_eq!(reply.status, 403, "{who}: {reply}");
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("may not offer"),
            "{reply}"
        );
        let mine = as_user(&host, who, "GET", "/v1/offers", None);
        assert_eq!(mine.json["offers"], json!([]), "{mine}");
    }
    assert_eq!(flows_of_offers(&host), 0, "a refused offer starts no flow");
    // No credentials, wrong ones, and an API token where a user must act.
    let reply = host.call_as(None, "POST", "/v1/offers", Some(&body));
    assert_eq!(reply.status, 401, "{reply}");
    let challenge = reply.www_authenticate.unwrap_or_default();
    assert!(challenge.contains("Basic"), "{challenge}");
    let reply = host.call_with(
        &basic_with("alice", "not it at all"),
        "POST",
        "/v1/offers",
        Some(&body),
    );
    assert_eq!(reply.status, 401, "{reply}");
    let reply = host.post("/v1/offers", &body);
    assert_eq!(reply.status, 403, "an operator token is no user: {reply}");
    // Unknown services and bad expiries are refused too.
    let reply = offer(
        &host,
        "alice",
        &json!({"service": "no-such", "description": "x"}),
    );
    assert_eq!(reply.status, 422, "{reply}");
    let reply = offer(
        &host,
        "alice",
        &json!({"service": "support-contract", "description": "x", "expires_at": "2020-01-01T00:00:00Z"}),
    );
    assert_eq!(reply.status, 422, "{reply}");
    assert_eq!(flows_of_offers(&host), 0);

    let reply = offer(&host, "alice", &body);
    assert_eq!(reply.status, 201, "{reply}");
    assert_eq!(reply.json["expiry_chosen"], false, "{reply}");
    let expires: jiff::Timestamp = reply.json["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - jiff::Timestamp::now())
        .total(jiff::Unit::Hour)
        .unwrap()
        / 24.0;
    assert!(
        (59.9..=60.0).contains(&days),
        "60 days by default, got {days}"
    );
    assert_eq!(
        flows_of_offers(&host),
        1,
        "the offer's expiry flow started with it"
    );
    let chosen = offer(
        &host,
        "alice",
        &json!({"service": "support-contract", "description": "x", "expires_at": "2027-01-15T12:00:00Z"}),
    );
    assert_eq!(chosen.status, 201, "{chosen}");
    assert_eq!(chosen.json["expiry_chosen"], true, "{chosen}");
    assert_eq!(
        chosen.json["expires_at"], "2027-01-15T12:00:00Z",
        "{chosen}"
    );
}

#[test]
fn invitees_added_in_two_calls_each_get_their_own_link_and_their_status_is_reported() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let made = offer(
        &host,
        "alice",
        &json!({"service": "support-contract", "description": "Priority support"}),
    );
    let id = made.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/offers/{id}/invitees");

    let first = as_user(
        &host,
        "alice",
        "POST",
        &path,
        Some(
            &json!({"invitees": [{"email": "ann@initech.example", "name": "Ann", "organization": "Initech", "phone": "+1 555 0100"}], "send": false}),
        ),
    );
    assert_eq!(first.status, 201, "{first}");
    let second = as_user(
        &host,
        "alice",
        "POST",
        &path,
        Some(
            &json!({"invitees": [{"email": "bo@initech.example"}, {"email": "cy@hooli.example", "name": "Cy"}], "send": true}),
        ),
    );
    assert_eq!(second.status, 201, "{second}");
    let mut invitees: Vec<Value> = first.json["invitees"].as_array().unwrap().clone();
    invitees.extend(second.json["invitees"].as_array().unwrap().iter().cloned());
    let ids: std::collections::BTreeSet<&str> =
        invitees.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each invitee its own id: {invitees:?}");
    // Returned once when the provider sends it, mailed otherwise.
    let url = invitees[0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/invite/", host.public_base())),
        "{url}"
    );
    assert!(url.contains("key="), "{url}");
    assert!(invitees[1].get("url").is_none() && invitees[1]["sent_to"] == "bo@initech.example");
    let outbox = host.get("/v1/outbox?limit=50");
    let mails: Vec<&Value> = outbox.json["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "mail")
        .collect();
    assert_eq!(mails.len(), 2, "{outbox}");
    let links: std::collections::BTreeSet<String> = mails
        .iter()
        .map(|m| {
            let text = m["payload"]["data"]["text"].as_str().unwrap();
            text.split_whitespace()
                .find(|w| w.contains("/invite/"))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(links.len(), 2, "each mail its own link");
    assert!(!links.contains(url));
    // A viewer reads the outbox, but not the links in its mails.
    let viewer = crate::tokens::create(&setup, "viewer", &[], "grafana");
    let seen = host.call_as(Some(&viewer), "GET", "/v1/outbox?limit=50", None);
    assert_eq!(seen.status, 200, "{seen}");
    assert!(!seen.text.contains("/invite/"), "{seen}");
    assert!(seen.text.contains("not shown"), "{seen}");

    // Bad invitees are refused whole, and nothing is stored.
    for bad in [
        json!({"invitees": []}),
        json!({"invitees": [{"email": "ok@example.com"}, {"email": "not an address"}]}),
        json!({"invitees": [{"email": "x@example.com", "shoe_size": 9}]}),
    ] {
        let reply = as_user(&host, "alice", "POST", &path, Some(&bad));
        assert_eq!(reply.status, 422, "{bad}: {reply}");
    }
    // Another user's offer is as good as none.
    let reply = as_user(
        &host,
        "gina",
        "POST",
        &path,
        Some(&json!({"invitees": [{"email": "z@example.com"}]})),
    );
    assert_eq!(reply.status, 404, "{reply}");

    let status = as_user(&host, "alice", "GET", &format!("/v1/offers/{id}"), None);
    assert_eq!(status.status, 200, "{status}");
    assert_eq!(status.json["expired"], false);
    let listed = status.json["invitees"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{status}");
    assert!(
        listed
            .iter()
            .all(|i| i["registered"] == false && i["accepted"] == false)
    );
    assert_eq!(listed[0]["email"], "ann@initech.example");
    let one = as_user(
        &host,
        "alice",
        "GET",
        &format!(
            "/v1/offers/{id}/invitees/{}",
            listed[0]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(one.status, 200, "{one}");
    assert_eq!(one.json["phone"], "+1 555 0100");
    assert_eq!(one.json["registered_at"], Value::Null);
    // An operator (or viewer) token reads any offer; another user none.
    assert_eq!(host.get(&format!("/v1/offers/{id}")).status, 200);
    assert_eq!(
        as_user(&host, "gina", "GET", &format!("/v1/offers/{id}"), None).status,
        404
    );
}

#[test]
fn a_user_token_stands_for_the_password_and_the_directory_shows_what_a_user_owns() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let issued = as_user(&host, "bob", "POST", "/v1/user-tokens", None);
    assert_eq!(issued.status, 201, "{issued}");
    let token = issued.json["token"].as_str().unwrap();
    assert!(token.starts_with("rhu_"), "{issued}");
    let bearer = format!("Bearer {token}");
    // Only the password makes a token: a token cannot make its successor.
    let again = host.call_with(&bearer, "POST", "/v1/user-tokens", None);
    assert_eq!(again.status, 403, "{again}");
    let dir = host.call_with(&bearer, "GET", "/v1/users/bob/directory", None);
    assert_eq!(dir.status, 200, "{dir}");
    assert_eq!(
        dir.json["services"][0]["service"], "support-contract",
        "{dir}"
    );
    assert_eq!(dir.json["services"][0]["usable"], true, "{dir}");
    assert_eq!(dir.json["services"][0]["why"], "owner", "{dir}");
    // Nobody else's directory, unless an administrator of their own organization.
    assert_eq!(
        host.call_with(&bearer, "GET", "/v1/users/alice/directory", None)
            .status,
        404
    );
    assert_eq!(
        as_user(&host, "alice", "GET", "/v1/users/bob/directory", None).status,
        200
    );
    assert_eq!(
        as_user(&host, "gina", "GET", "/v1/users/bob/directory", None).status,
        404
    );
    let gina = as_user(&host, "gina", "GET", "/v1/users/gina/directory", None);
    assert_eq!(gina.json["services"], json!([]), "{gina}");
    // Revoking: with the token, that token ends; with the password, all.
    let second = as_user(&host, "bob", "POST", "/v1/user-tokens", None);
    let second = format!("Bearer {}", second.json["token"].as_str().unwrap());
    let revoked = host.call_with(&bearer, "POST", "/v1/user-tokens/revoke", None);
    assert_eq!(revoked.json["revoked"], 1, "{revoked}");
    assert_eq!(
        host.call_with(&bearer, "GET", "/v1/users/bob", None).status,
        401
    );
    assert_eq!(
        host.call_with(&second, "GET", "/v1/users/bob", None).status,
        200
    );
    let all = as_user(&host, "bob", "POST", "/v1/user-tokens/revoke", None);
    assert_eq!(all.json["revoked"], 1, "{all}");
    assert_eq!(
        host.call_with(&second, "GET", "/v1/users/bob", None).status,
        401
    );
    // An unknown token is refused like a wrong password.
    let reply = host.call_with(
        &format!("Bearer rhu_{}", "0".repeat(64)),
        "GET",
        "/v1/users/bob",
        None,
    );
    assert_eq!(reply.status, 401, "{reply}");
}

#[test]
fn wrong_passwords_lock_a_user_and_nothing_else_changes() {
    let setup = Setup::new("");
    setup.write_config("[provisioning]\nmax_attempts = 3\nlock_seconds = 60\n");
    let host = setup.start();
    people(&host);
    let wrong = basic_with("bob", "guess guess guess");
    for _ in 0..2 {
        assert_eq!(
            host.call_with(&wrong, "GET", "/v1/users/bob", None).status,
            401
        );
    }
    let locked = host.call_with(&wrong, "GET", "/v1/users/bob", None);
    assert_eq!(locked.status, 429, "{locked}");
    assert!(
        locked.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("locked until"),
        "{locked}"
    );
    let right = as_user(&host, "bob", "GET", "/v1/users/bob", None);
    assert_eq!(
        right.status, 429,
        "the right password waits for the lock too: {right}"
    );
    // Others are not locked with him.
    assert_eq!(
        as_user(&host, "alice", "GET", "/v1/users/alice", None).status,
        200
    );
    // Bad users are refused whole.
    for bad in [
        json!({"id": "x", "organization": "acme", "email": "x@example.com", "name": "X", "password": "short"}),
        json!({"id": "y", "organization": "nowhere", "email": "y@example.com", "name": "Y", "password": PASSWORD}),
        json!({"id": "alice", "organization": "acme", "email": "a@example.com", "name": "A", "password": PASSWORD}),
        json!({"id": "with:colon", "organization": "acme", "email": "c@example.com", "name": "C", "password": PASSWORD}),
    ] {
        let reply = host.post("/v1/users", &bad);
        assert!(reply.status == 422 || reply.status == 409, "{bad}: {reply}");
    }
    let reply = host.post("/v1/organizations", &json!({"id": "acme", "name": "Again"}));
    assert_eq!(reply.status, 409, "{reply}");
    let reply = host.post(
        "/v1/organizations",
        &json!({"id": "new", "name": "New", "owns": ["no-such"]}),
    );
    assert_eq!(reply.status, 422, "{reply}");
}

#[test]
fn an_offer_expiring_seconds_ahead_survives_a_kill_and_its_flow_tells_the_provider_who_never_accepted()
 {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let soon = (jiff::Timestamp::now() + Duration::from_secs(4)).to_string();
    let made = offer(
        &host,
        "alice",
        &json!({"service": "support-contract", "description": "Brief", "expires_at": soon}),
    );
    assert_eq!(made.status, 201, "{made}");
    let id = made.json["id"].as_str().unwrap().to_owned();
    let added = as_user(
        &host,
        "alice",
        "POST",
        &format!("/v1/offers/{id}/invitees"),
        Some(&json!({"invitees": [{"email": "ann@initech.example"}], "send": false})),
    );
    assert_eq!(added.status, 201, "{added}");
    host.kill9();
    let host = setup.start();
    wait_for(Duration::from_secs(30), "the offer to expire", || {
        let reply = as_user(&host, "alice", "GET", &format!("/v1/offers/{id}"), None);
        if reply.json["expired"] == true {
            Ok(())
        } else {
            Err(reply.to_string())
        }
    });
    let reply = as_user(
        &host,
        "alice",
        "POST",
        &format!("/v1/offers/{id}/invitees"),
        Some(&json!({"invitees": [{"email": "late@example.com"}], "send": false})),
    );
    assert_eq!(reply.status, 410, "{reply}");
    assert_eq!(reply.json["error"]["code"], "offer-expired", "{reply}");
    let status = as_user(&host, "alice", "GET", &format!("/v1/offers/{id}"), None);
    assert_eq!(
        status.json["invitees"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    let told = wait_for(Duration::from_secs(30), "the provider to be told", || {
        let outbox = host.get("/v1/outbox?limit=50");
        outbox.json["notifications"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|n| n["payload"]["data"]["to"] == "alice@example.com")
                    .cloned()
            })
            .ok_or_else(|| outbox.to_string())
    });
    let text = told["payload"]["data"]["text"].as_str().unwrap();
    assert!(text.contains("never accepted"), "{text}");
    assert!(
        text.contains("ann@initech.example (did not register)"),
        "{text}"
    );
    let flows = host.get("/v1/flows?definition=offer-expiry");
    assert_eq!(flows.json["flows"][0]["state"], "completed", "{flows}");
}
