//! The provisioning pages of the public site on the real binary: an
//! invitee in headless Chromium (JavaScript off) from the link through the
//! email confirmation and registration (or a sign-in) to the terms, the
//! provider's page in Chromium, and over plain HTTP with a cookie jar what
//! a browser would not do: a wrong email or key, a form token replayed or
//! posted to another invitation, ten accepts of one invitation at once,
//! and an offer that expires under open forms. What the pages did is
//! checked over the internal API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::provisioning::{PASSWORD, basic};
use crate::server::{Host, Setup};

/// The provider: an administrator of `acme`, which owns the service.
const PROVIDER: &str = "ada";

fn user(host: &Host, id: &str, organization: &str) {
    let reply = host.post(
        "/v1/users",
        &json!({"id": id, "organization": organization, "email": format!("{id}@example.com"),
                "name": id.to_uppercase(), "password": PASSWORD, "admin": true}),
    );
    assert_eq!(reply.status, 201, "{reply}");
}

/// `acme` owns support-contract and `ada` administers it; `globex` owns
/// nothing.
fn people(host: &Host) {
    for (id, owns) in [("acme", json!(["support-contract"])), ("globex", json!([]))] {
        let reply = host.post(
            "/v1/organizations",
            &json!({"id": id, "name": id.to_uppercase(), "owns": owns}),
        );
        assert_eq!(reply.status, 201, "{reply}");
    }
    user(host, PROVIDER, "acme");
}

/// An offer of support-contract by the provider: its id.
fn offer(host: &Host, extra: Value) -> String {
    let mut body =
        json!({"service": "support-contract", "description": "A year of priority support"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = host.call_with(&basic(PROVIDER), "POST", "/v1/offers", Some(&body));
    assert_eq!(reply.status, 201, "{reply}");
    reply.json["id"].as_str().unwrap().to_owned()
}

/// An invitee of `offer`, its link returned: `(iid, url)`.
fn invite(host: &Host, offer: &str, email: &str) -> (String, String) {
    let body = json!({"invitees": [{"email": email, "name": "Bea Invitee",
        "organization": "Beaco", "phone": "+44 20 7946 0000"}], "send": false});
    let path = format!("/v1/offers/{offer}/invitees");
    let reply = host.call_with(&basic(PROVIDER), "POST", &path, Some(&body));
    assert_eq!(reply.status, 201, "{reply}");
    let made = &reply.json["invitees"][0];
    let url = made["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/invite/", host.public_base())),
        "{reply}"
    );
    (made["id"].as_str().unwrap().to_owned(), url)
}

fn invitee(host: &Host, offer: &str, iid: &str) -> Value {
    let reply = host.get(&format!("/v1/offers/{offer}/invitees/{iid}"));
    assert_eq!(reply.status, 200, "{reply}");
    reply.json
}

fn permissions_of(host: &Host, grantee: &str) -> Vec<Value> {
    let reply = host.get(&format!("/v1/permissions?grantee={grantee}"));
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["permissions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The invitee accepted, as the API shows it: registered and accepted
/// with dates, one permission granted by the provider, the service usable.
fn assert_accepted(host: &Host, offer: &str, iid: &str, grantee: &str) {
    let status = invitee(host, offer, iid);
    assert_eq!(status["registered"], true, "{status}");
    assert_eq!(status["accepted"], true, "{status}");
    assert_eq!(status["declined"], false, "{status}");
    assert!(status["registered_at"].is_string(), "{status}");
    assert!(status["accepted_at"].is_string(), "{status}");
    assert_eq!(status["user"], grantee, "{status}");
    let granted = permissions_of(host, grantee);
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0]["grantor"], PROVIDER, "{granted:?}");
    assert_eq!(granted[0]["service"], "support-contract", "{granted:?}");
    let directory = host.get(&format!("/v1/users/{grantee}/directory"));
    assert_eq!(directory.status, 200, "{directory}");
    let services = directory.json["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        services
            .iter()
            .any(|s| s["service"] == "support-contract" && s["usable"] == true),
        "{directory}"
    );
}

// ---------------------------------------------------------------------------
// In Chromium.

/// Confirms the email on the link's page: the offer page.
fn confirm_in(browser: &Browser, url: &str, email: &str) {
    browser.goto(url);
    browser.wait_title("An offer of Support contract: confirm your email");
    browser.type_into("#email", email);
    browser.click("form#confirm button[type=submit]");
    browser.wait_title("The offer of Support contract");
    assert_eq!(browser.text("#description"), "A year of priority support");
    assert_eq!(browser.text("#provider"), "ADA (ACME)");
}

/// Accepts the terms shown: the result page.
fn accept_in(browser: &Browser) {
    browser.wait_title("The terms of Support contract");
    assert!(
        browser
            .text("#terms")
            .starts_with("By accepting, you are granted use of Support contract"),
        "{}",
        browser.text("body")
    );
    assert!(
        !browser.current_url().contains("/register"),
        "a 303 after the form"
    );
    browser.click("button#accept");
    browser.wait_title("You can now use Support contract");
}

#[test]
fn an_invitee_registers_and_accepts_in_a_real_browser() {
    let browser = Browser::start();
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let offer = offer(&host, json!({}));
    let (iid, url) = invite(&host, &offer, "bea@example.org");

    confirm_in(&browser, &url, "Bea@Example.org");
    // The browser's session: the cookie's attributes as Chromium keeps them.
    let cookie = browser.cookie("rh_site");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Lax", "{cookie}");
    let anonymous = cookie["value"].clone();

    browser.click("a#register");
    browser.wait_title("Register for Support contract");
    // Prefilled from what the provider gave, and editable.
    assert_eq!(browser.value("#email"), "bea@example.org");
    assert_eq!(browser.value("#name"), "Bea Invitee");
    assert_eq!(browser.value("#organization"), "Beaco");
    assert_eq!(browser.value("#phone"), "+44 20 7946 0000");
    browser.clear("#name");
    browser.type_into("#name", "Bea Q. Invitee");
    browser.type_into("#user_id", "bea");
    browser.type_into("#password", PASSWORD);
    browser.click("form#register button[type=submit]");
    accept_in(&browser);
    assert!(browser.find_all("form").is_empty());
    // Signing in rotated the session.
    assert_ne!(browser.cookie("rh_site")["value"], anonymous);

    assert_accepted(&host, &offer, &iid, "bea");
    let bea = host.get("/v1/users/bea");
    assert_eq!(bea.json["name"], "Bea Q. Invitee", "{bea}");
    assert_eq!(bea.json["admin"], true, "{bea}");
}

#[test]
fn an_invitee_with_an_account_signs_in_and_accepts_in_a_real_browser() {
    let browser = Browser::start();
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    user(&host, "gus", "globex");
    let offer = offer(&host, json!({}));
    let (iid, url) = invite(&host, &offer, "gus@example.com");

    confirm_in(&browser, &url, "gus@example.com");
    browser.click("a#signin");
    browser.wait_title("Sign in to take up the offer");
    // A wrong password: the form again, saying so.
    browser.type_into("#user_id", "gus");
    browser.type_into("#password", "not the password");
    browser.click("form#signin button[type=submit]");
    wait_text(&browser, "#notice", "wrong user id or password");
    assert_eq!(invitee(&host, &offer, &iid)["registered"], false);
    browser.clear("#user_id");
    browser.type_into("#user_id", "gus");
    browser.type_into("#password", PASSWORD);
    browser.click("form#signin button[type=submit]");
    accept_in(&browser);
    assert_accepted(&host, &offer, &iid, "gus");
}

fn wait_text(browser: &Browser, css: &str, text: &str) {
    crate::server::wait_for(Duration::from_secs(20), text, || {
        let got = browser.text(css);
        if got.contains(text) {
            Ok(())
        } else {
            Err(format!("`{got}` at {}", browser.current_url()))
        }
    });
}

#[test]
fn a_provider_makes_an_offer_and_follows_its_invitees_in_a_real_browser() {
    let browser = Browser::start();
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);

    browser.goto(&format!("{}/provider", host.public_base()));
    browser.wait_title("Sign in to your offers");
    browser.type_into("#user_id", PROVIDER);
    browser.type_into("#password", PASSWORD);
    browser.click("form#signin button[type=submit]");
    browser.wait_title("Your offers");
    assert!(browser.text("#no-offers").contains("no offers yet"));

    browser.type_into("#description", "Support for our partners");
    browser.click("#onwards");
    browser.click("form#make-offer button[type=submit]");
    wait_text(&browser, "h1", "Offer ofr");
    let offer_url = browser.current_url();
    let offer = offer_url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(browser.text("#description"), "Support for our partners");
    assert_eq!(browser.text("#state"), "open");

    browser.type_into(
        "#invitees",
        "cy@example.org, Cy, Cyco, 1\nde@example.org, De\n",
    );
    browser.click("form#add-invitees button[type=submit]");
    wait_text(&browser, "#created", "Invitees added");
    let links: Vec<String> = browser
        .find_all("code.link")
        .iter()
        .map(|e| {
            browser
                .command("GET", &format!("/element/{e}/text"), None)
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(links.len(), 2, "{}", browser.text("body"));
    for link in &links {
        assert!(
            link.starts_with(&format!("{}/invite/inv", host.public_base())),
            "{link}"
        );
    }
    assert_eq!(browser.find_all("td.status").len(), 2);
    assert!(browser.text("#invitees").contains("cy@example.org"));

    // One of them takes it up (over HTTP); the page shows it, the links no more.
    let mut jar = Jar::new();
    register(&mut jar, &links[0], "cy@example.org", "cy");
    let terms = jar.get(&terms_url(&links[0]));
    answer(&mut jar, &links[0], &terms.token(), "accept");
    browser.goto(&offer_url);
    wait_text(&browser, "#invitees", "accepted");
    assert!(browser.text("#invitees").contains("invited"));
    assert!(browser.find_all("code.link").is_empty());
    let status = host.get(&format!("/v1/offers/{offer}"));
    assert_eq!(status.json["onwards"], true, "{status}");
    assert_eq!(status.json["invitees"].as_array().map(Vec::len), Some(2));

    browser.click("a#back");
    browser.wait_title("Your offers");
    browser.click("form#signout button[type=submit]");
    browser.wait_title("Sign in to your offers");
}

// ---------------------------------------------------------------------------
// Over plain HTTP, with a cookie jar.

/// A page as the jar got it.
struct Page {
    status: u16,
    location: String,
    text: String,
}

impl Page {
    /// The first form token on the page.
    fn token(&self) -> String {
        let marker = "name=\"token\" value=\"";
        let Some(at) = self.text.find(marker) else {
            panic!(
                "no form token on the page ({}):\n{}",
                self.status, self.text
            );
        };
        self.text[at + marker.len()..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A browser without a browser: it keeps `rh_site` and follows nothing.
struct Jar {
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl Jar {
    fn new() -> Jar {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Jar {
            agent,
            cookie: None,
        }
    }

    fn get(&mut self, url: &str) -> Page {
        let mut request = self.agent.get(url);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", &format!("rh_site={cookie}"));
        }
        let response = request.call().unwrap();
        self.read(response)
    }

    fn post(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let response = post_with(&self.agent, self.cookie.as_deref(), url, fields);
        self.read(response)
    }

    fn read(&mut self, response: ureq::http::Response<ureq::Body>) -> Page {
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            if let Some(rest) = set.strip_prefix("rh_site=") {
                let value = rest.split(';').next().unwrap_or_default();
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        page(response)
    }
}

fn post_with(
    agent: &ureq::Agent,
    cookie: Option<&str>,
    url: &str,
    fields: &[(&str, &str)],
) -> ureq::http::Response<ureq::Body> {
    let mut request = agent.post(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", &format!("rh_site={cookie}"));
    }
    request.send_form(fields.iter().copied()).unwrap()
}

fn page(response: ureq::http::Response<ureq::Body>) -> Page {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.into_body().read_to_string().unwrap_or_default();
    Page {
        status,
        location,
        text,
    }
}

/// `http://host/invite/<iid>?key=K` → (`http://host/invite/<iid>`, `K`).
fn split(url: &str) -> (&str, &str) {
    url.split_once("?key=").unwrap()
}

fn terms_url(url: &str) -> String {
    let (base, key) = split(url);
    format!("{base}/terms?key={key}")
}

/// Opens the link and confirms `email`: the answer to the confirm.
fn confirm(jar: &mut Jar, url: &str, email: &str) -> Page {
    let shown = jar.get(url);
    assert_eq!(shown.status, 200, "{}", shown.text);
    let (base, key) = split(url);
    jar.post(
        &format!("{base}/confirm"),
        &[("key", key), ("token", &shown.token()), ("email", email)],
    )
}

/// Confirms and registers as `user_id`: signed in, on the way to the terms.
fn register(jar: &mut Jar, url: &str, email: &str, user_id: &str) {
    let confirmed = confirm(jar, url, email);
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    let (base, key) = split(url);
    let form = jar.get(&format!("{base}/register?key={key}"));
    assert_eq!(form.status, 200, "{}", form.text);
    let done = jar.post(
        &format!("{base}/register"),
        &[
            ("key", key),
            ("token", &form.token()),
            ("user_id", user_id),
            ("password", PASSWORD),
            ("email", email),
            ("name", "Someone"),
            ("organization", "Someco"),
            ("phone", ""),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.text);
    assert!(done.location.contains("/terms?key="), "{}", done.location);
}

fn answer(jar: &mut Jar, url: &str, token: &str, decision: &str) -> Page {
    let (base, key) = split(url);
    jar.post(
        &format!("{base}/terms"),
        &[("key", key), ("token", token), ("decision", decision)],
    )
}

#[test]
fn wrong_emails_wrong_keys_and_stray_forms_change_nothing() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let offer = offer(&host, json!({}));
    let (one, url_one) = invite(&host, &offer, "one@example.org");
    let (two, url_two) = invite(&host, &offer, "two@example.org");
    let mut jar = Jar::new();

    // A wrong key, on the page and in a form: 404, nothing opened.
    let (base, key) = split(&url_one);
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('0') { "1" } else { "0" }
    );
    let page = jar.get(&format!("{base}?key={wrong}"));
    assert_eq!(page.status, 404, "{}", page.text);
    assert!(
        page.text.contains("This link is not valid"),
        "{}",
        page.text
    );
    assert!(jar.cookie.is_none(), "a wrong link opens no session");

    // A wrong email: 403 "access denied", the status as it was, and the
    // session has confirmed nothing.
    let denied = confirm(&mut jar, &url_one, "eve@example.org");
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert!(denied.text.contains("Access denied"), "{}", denied.text);
    let status = invitee(&host, &offer, &one);
    assert_eq!(status["registered"], false, "{status}");
    let register = jar.get(&format!("{base}/register?key={key}"));
    assert_eq!(register.status, 303, "not confirmed: back to the link");
    assert_eq!(register.location, format!("/invite/{one}?key={key}"));

    // The right email with a wrong key in the form.
    let shown = jar.get(&url_one);
    let refused = jar.post(
        &format!("{base}/confirm"),
        &[
            ("key", &wrong),
            ("token", &shown.token()),
            ("email", "one@example.org"),
        ],
    );
    assert_eq!(refused.status, 404, "{}", refused.text);

    // A form of invitation one posted to invitation two: refused.
    let shown = jar.get(&url_one);
    let (base_two, key_two) = split(&url_two);
    let stray = jar.post(
        &format!("{base_two}/confirm"),
        &[
            ("key", key_two),
            ("token", &shown.token()),
            ("email", "two@example.org"),
        ],
    );
    assert_eq!(stray.status, 403, "{}", stray.text);
    assert!(
        stray.text.contains("This form cannot be used"),
        "{}",
        stray.text
    );
    let register = jar.get(&format!("{base_two}/register?key={key_two}"));
    assert_eq!(register.status, 303, "invitation two not confirmed");

    // Through to the terms; an accept replayed records nothing more.
    register_and_accept_once(&mut jar, &host, &offer, &one, &url_one);
    let status = invitee(&host, &offer, &two);
    assert_eq!(status["registered"], false, "{status}");
    assert_eq!(status["accepted"], false, "{status}");
}

fn register_and_accept_once(jar: &mut Jar, host: &Host, offer: &str, iid: &str, url: &str) {
    register(jar, url, "one@example.org", "one");
    let token = jar.get(&terms_url(url)).token();
    let accepted = answer(jar, url, &token, "accept");
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert!(accepted.text.contains("You can now use Support contract"));
    let accepted_at = invitee(host, offer, iid)["accepted_at"].clone();
    let replayed = answer(jar, url, &token, "accept");
    assert_eq!(replayed.status, 409, "{}", replayed.text);
    assert!(replayed.text.contains("sent already"), "{}", replayed.text);
    // The terms page now says it was answered, with no form.
    let terms = jar.get(&terms_url(url));
    assert!(
        terms.text.contains("You had already accepted"),
        "{}",
        terms.text
    );
    assert!(!terms.text.contains("<form"), "{}", terms.text);
    assert_eq!(permissions_of(host, "one").len(), 1);
    assert_eq!(invitee(host, offer, iid)["accepted_at"], accepted_at);
    assert_accepted(host, offer, iid, "one");
}

#[test]
fn ten_accepts_at_once_record_one_permission() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let offer = offer(&host, json!({}));
    let (iid, url) = invite(&host, &offer, "one@example.org");
    let mut jar = Jar::new();
    register(&mut jar, &url, "one@example.org", "one");
    // Ten forms of the terms in one signed-in session.
    let tokens: Vec<String> = (0..10).map(|_| jar.get(&terms_url(&url)).token()).collect();
    let cookie = jar.cookie.clone().unwrap();
    let (base, key) = split(&url);
    let action = format!("{base}/terms");
    let start = std::sync::Barrier::new(10);
    let pages: Vec<Page> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|token| {
                let (cookie, action, start) = (&cookie, &action, &start);
                scope.spawn(move || {
                    let agent = Jar::new().agent;
                    start.wait();
                    page(post_with(
                        &agent,
                        Some(cookie),
                        action,
                        &[("key", key), ("token", token), ("decision", "accept")],
                    ))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let firsts = pages
        .iter()
        .filter(|p| p.text.contains("You can now use Support contract"))
        .count();
    let agains = pages
        .iter()
        .filter(|p| {
            p.text
                .contains("You had already accepted: nothing more was recorded.")
        })
        .count();
    for page in &pages {
        assert_eq!(page.status, 200, "{}", page.text);
    }
    assert_eq!((firsts, agains), (1, 9));
    assert_accepted(&host, &offer, &iid, "one");
}

/// Forms opened on an offer while it runs, to be sent after it expired.
struct Opened {
    offer: String,
    first: String,
    url_first: String,
    second: String,
    url_second: String,
    /// The second invitee's user, registered while the offer ran.
    user: String,
    /// Has the first link's confirm form.
    opened: Jar,
    confirm_token: String,
    /// Confirmed the first invitee; has its registration form.
    confirmed: Jar,
    register_token: String,
    /// Signed in as `user`; has the second invitee's terms.
    signed_in: Jar,
    terms_token: String,
}

/// An offer expiring `ahead` from now, and forms opened on it; `None` when
/// the machine was too slow to open them all before it expired.
fn open_forms(host: &Host, ahead: Duration, attempt: u32) -> Option<(Opened, Instant)> {
    let started = Instant::now();
    let expires_at = jiff::Timestamp::now() + ahead;
    let offer = offer(host, json!({"expires_at": expires_at.to_string()}));
    let too_slow = || {
        eprintln!(
            "opening the forms took {:?}, past the offer's expiry: again",
            started.elapsed()
        );
    };
    // A page of the running offer; `None` when it expired meanwhile.
    let running = |page: Page| match page.status {
        410 => None,
        200 | 303 => Some(page),
        other => panic!("{other} while the offer runs:\n{}", page.text),
    };
    let invited = |email: &str| {
        let body = json!({"invitees": [{"email": email, "name": "Bea Invitee"}], "send": false});
        let path = format!("/v1/offers/{offer}/invitees");
        let reply = host.call_with(&basic(PROVIDER), "POST", &path, Some(&body));
        (reply.status == 201).then(|| {
            let made = &reply.json["invitees"][0];
            let url = made["url"].as_str().unwrap_or_default().to_owned();
            (made["id"].as_str().unwrap_or_default().to_owned(), url)
        })
    };
    let user = format!("two-{attempt}");
    let opened = (|| {
        let (first, url_first) = invited("one@example.org")?;
        let (second, url_second) = invited("two@example.org")?;
        let mut opened = Jar::new();
        let confirm_token = running(opened.get(&url_first))?.token();
        let mut confirmed = Jar::new();
        running(confirm(&mut confirmed, &url_first, "one@example.org"))?;
        let (base, key) = split(&url_first);
        let register_token = running(confirmed.get(&format!("{base}/register?key={key}")))?.token();
        let mut signed_in = Jar::new();
        running(confirm(&mut signed_in, &url_second, "two@example.org"))?;
        let (base_two, key_two) = split(&url_second);
        let form = running(signed_in.get(&format!("{base_two}/register?key={key_two}")))?;
        let done = running(signed_in.post(
            &format!("{base_two}/register"),
            &[
                ("key", key_two),
                ("token", &form.token()),
                ("user_id", &user),
                ("password", PASSWORD),
                ("email", "two@example.org"),
                ("name", "Two"),
                ("organization", "Twoco"),
                ("phone", ""),
            ],
        ))?;
        assert_eq!(done.status, 303, "{}", done.text);
        let terms_token = running(signed_in.get(&terms_url(&url_second)))?.token();
        Some(Opened {
            offer: offer.clone(),
            first,
            url_first,
            second,
            url_second,
            user: user.clone(),
            opened,
            confirm_token,
            confirmed,
            register_token,
            signed_in,
            terms_token,
        })
    })();
    match opened {
        Some(opened) if started.elapsed() < ahead => Some((opened, started + ahead)),
        _ => {
            too_slow();
            None
        }
    }
}

#[test]
fn an_expired_offer_refuses_every_step_and_records_nothing() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    let ahead = Duration::from_secs(3);
    // A loaded machine may not open every form within 3 s: a new offer then.
    let (mut o, expires) = (1..=5)
        .find_map(|attempt| open_forms(&host, ahead, attempt))
        .expect("the forms opened before the offer expired, in one of five tries");
    std::thread::sleep(
        expires.saturating_duration_since(Instant::now()) + Duration::from_millis(500),
    );

    let expired = |page: &Page, what: &str| {
        assert_eq!(page.status, 410, "{what}: {}", page.text);
        assert!(
            page.text.contains("offer has expired"),
            "{what}: {}",
            page.text
        );
    };
    let (base, key) = split(&o.url_first);
    expired(&Jar::new().get(&o.url_first), "the link");
    let posted = o.opened.post(
        &format!("{base}/confirm"),
        &[
            ("key", key),
            ("token", &o.confirm_token),
            ("email", "one@example.org"),
        ],
    );
    expired(&posted, "the confirm");
    expired(
        &o.confirmed.get(&format!("{base}/register?key={key}")),
        "the registration page",
    );
    let posted = o.confirmed.post(
        &format!("{base}/register"),
        &[
            ("key", key),
            ("token", &o.register_token),
            ("user_id", "one"),
            ("password", PASSWORD),
            ("email", "one@example.org"),
            ("name", "One"),
            ("organization", "Oneco"),
            ("phone", ""),
        ],
    );
    expired(&posted, "the registration");
    expired(
        &o.signed_in.get(&terms_url(&o.url_second)),
        "the terms page",
    );
    let url_second = o.url_second.clone();
    expired(
        &answer(&mut o.signed_in, &url_second, &o.terms_token, "accept"),
        "the accept",
    );

    // Nothing recorded: no user `one`, no answer, no permission.
    assert_eq!(host.get("/v1/users/one").status, 404);
    let status = invitee(&host, &o.offer, &o.first);
    assert_eq!(status["registered"], false, "{status}");
    assert_eq!(status["offer_expired"], true, "{status}");
    let status = invitee(&host, &o.offer, &o.second);
    assert_eq!(
        status["registered"], true,
        "registered while it ran: {status}"
    );
    assert_eq!(status["accepted"], false, "{status}");
    assert_eq!(status["declined"], false, "{status}");
    assert!(permissions_of(&host, &o.user).is_empty());
}

/// Registers (as `user_id`) and accepts through `url`, checking the
/// invitee's status over the API after each step: nothing, then
/// registered, then accepted.
fn take_up_step_by_step(
    host: &Host,
    provider: &str,
    offer: &str,
    iid: &str,
    url: &str,
    email: &str,
    user_id: &str,
) {
    let status = |host: &Host| {
        let reply = host.call_with(
            &basic(provider),
            "GET",
            &format!("/v1/offers/{offer}/invitees/{iid}"),
            None,
        );
        assert_eq!(reply.status, 200, "{reply}");
        reply.json
    };
    let before = status(host);
    assert_eq!(
        (before["registered"].clone(), before["accepted"].clone()),
        (json!(false), json!(false)),
        "{before}"
    );
    let mut jar = Jar::new();
    let confirmed = confirm(&mut jar, url, email);
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    assert_eq!(
        status(host)["registered"],
        false,
        "confirming records nothing"
    );
    register(&mut jar, url, email, user_id);
    let registered = status(host);
    assert_eq!(registered["registered"], true, "{registered}");
    assert!(registered["registered_at"].is_string(), "{registered}");
    assert_eq!(registered["accepted"], false, "{registered}");
    let directory = host.get(&format!("/v1/users/{user_id}/directory"));
    assert_eq!(
        directory.json["services"][0]["usable"], false,
        "visible before the terms: {directory}"
    );
    let token = jar.get(&terms_url(url)).token();
    let accepted = answer(&mut jar, url, &token, "accept");
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let after = status(host);
    assert_eq!(after["accepted"], true, "{after}");
    assert!(after["accepted_at"].is_string(), "{after}");
}

#[test]
fn a_grantee_allowed_to_offer_onwards_re_provisions_and_one_who_is_not_is_refused() {
    let setup = Setup::new("");
    let host = setup.start();
    people(&host);
    // One grantee may offer onwards, the other may not.
    let onwards = offer(&host, json!({"onwards": true}));
    let (i1, url1) = invite(&host, &onwards, "reseller@example.org");
    take_up_step_by_step(
        &host,
        PROVIDER,
        &onwards,
        &i1,
        &url1,
        "reseller@example.org",
        "reseller",
    );
    let closed = offer(&host, json!({}));
    let (i2, url2) = invite(&host, &closed, "enduser@example.org");
    take_up_step_by_step(
        &host,
        PROVIDER,
        &closed,
        &i2,
        &url2,
        "enduser@example.org",
        "enduser",
    );
    let reseller_permission = permissions_of(&host, "reseller")[0].clone();
    assert_eq!(
        reseller_permission["may_offer"], true,
        "{reseller_permission}"
    );
    assert_eq!(permissions_of(&host, "enduser")[0]["may_offer"], false);

    // The one who may not: 403, nothing stored.
    let body = json!({"service": "support-contract", "description": "Resold support"});
    let refused = host.call_with(&basic("enduser"), "POST", "/v1/offers", Some(&body));
    assert_eq!(refused.status, 403, "{refused}");
    assert!(
        refused.text.contains("does not let you offer it onwards"),
        "{refused}"
    );
    let mine = host.call_with(&basic("enduser"), "GET", "/v1/offers", None);
    assert_eq!(mine.json["offers"], json!([]), "{mine}");

    // The one who may: an offer under their permission, taken up by a third.
    let made = host.call_with(&basic("reseller"), "POST", "/v1/offers", Some(&body));
    assert_eq!(made.status, 201, "{made}");
    assert_eq!(
        made.json["via_permission"], reseller_permission["id"],
        "{made}"
    );
    let resold = made.json["id"].as_str().unwrap().to_owned();
    let added = host.call_with(
        &basic("reseller"),
        "POST",
        &format!("/v1/offers/{resold}/invitees"),
        Some(&json!({"invitees": [{"email": "third@example.org"}], "send": false})),
    );
    assert_eq!(added.status, 201, "{added}");
    let i3 = added.json["invitees"][0]["id"].as_str().unwrap().to_owned();
    let url3 = added.json["invitees"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    take_up_step_by_step(
        &host,
        "reseller",
        &resold,
        &i3,
        &url3,
        "third@example.org",
        "third",
    );
    let granted = permissions_of(&host, "third");
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0]["grantor"], "reseller", "{granted:?}");
    assert_eq!(
        granted[0]["via_permission"], reseller_permission["id"],
        "the chain: {granted:?}"
    );
    // The first provider does not see the reseller's offer.
    let theirs = host.call_with(
        &basic(PROVIDER),
        "GET",
        &format!("/v1/offers/{resold}"),
        None,
    );
    assert_eq!(theirs.status, 404, "{theirs}");
}
