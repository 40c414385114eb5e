//! The public reconciliation site in a real browser: headless Chromium
//! (Debian's `chromium` and `chromium-driver`), driven over the W3C
//! WebDriver protocol by chromedriver, spoken here as plain HTTP (ureq and
//! serde_json). JavaScript is switched off in the browser: the site must work
//! without it.
//!
//! [`Browser`] is shared with `provisioning_site.rs`.
//!
//! A missing browser fails the test with how to install it (`.ci/run`
//! installs it); it never passes silently.
//!
//! The helpers panic when they cannot do their job (clippy denies `panic`
//! outside `#[test]` functions, hence the `allow`s).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Host, Setup, wait_for};
use crate::support::rules_dir;

/// Where Debian puts the browser; `CHROMIUM` overrides.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// A headless Chromium behind chromedriver.

/// One chromedriver with one browser session; both end when dropped.
pub(crate) struct Browser {
    driver: Child,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    agent: ureq::Agent,
    /// The browser's profile and chromedriver's log.
    dir: tempfile::TempDir,
}

/// An executable on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[allow(clippy::panic)] // a missing browser must fail the test, saying how to install it
fn browser_binaries() -> (PathBuf, PathBuf) {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    let driver = on_path("chromedriver");
    match (chromium.is_file(), driver) {
        (true, Some(driver)) => (chromium, driver),
        (has_chromium, driver) => panic!(
            "this test drives headless Chromium and cannot run without it: {}{}; \
             install both with `apt-get install -y chromium chromium-driver` (.ci/run does)",
            if has_chromium {
                String::new()
            } else {
                format!(
                    "no browser at {} (set CHROMIUM to another path)",
                    chromium.display()
                )
            },
            if driver.is_some() {
                ""
            } else if has_chromium {
                "no `chromedriver` on PATH"
            } else {
                ", no `chromedriver` on PATH"
            },
        ),
    }
}

#[allow(clippy::panic)] // a test's setup failing must stop the test
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl Browser {
    /// Starts chromedriver and opens a session of headless Chromium with
    /// JavaScript disabled.
    #[allow(clippy::panic)] // a browser that cannot start must stop the test
    pub(crate) fn start() -> Browser {
        let (chromium, chromedriver) = browser_binaries();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            session: String::new(),
            agent,
            dir,
        };
        wait_for(
            Duration::from_secs(20),
            "chromedriver to be ready",
            || match browser.request("GET", &format!("{base}/status"), None) {
                Ok(v) if v["ready"] == json!(true) => Ok(()),
                Ok(v) => Err(v.to_string()),
                Err(e) => Err(e),
            },
        );
        let profile = browser.dir.path().join("profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                ],
                // No JavaScript: every step below works with plain HTML forms.
                "prefs": {"profile.managed_default_content_settings.javascript": 2},
            },
        }}});
        let created = browser
            .request("POST", &format!("{base}/session"), Some(&capabilities))
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver cannot start Chromium ({}): {e}\n--- chromedriver log\n{}",
                    chromium.display(),
                    browser.log_tail(40)
                )
            });
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {created}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn request(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Value, String> {
        let result = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, body) => self
                .agent
                .post(url)
                .header("content-type", "application/json")
                .send(body.map_or_else(|| "{}".to_owned(), Value::to_string)),
        };
        let response = result.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let answer: Value =
            serde_json::from_str(&text).map_err(|e| format!("{method} {url}: {e}: {text}"))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 || value.get("error").is_some() {
            return Err(format!(
                "{method} {url}: {status} {}: {}",
                value["error"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or(&text)
            ));
        }
        Ok(value)
    }

    /// A command of this session (`path` after `/session/<id>`).
    #[allow(clippy::panic)] // a browser command failing must stop the test
    pub(crate) fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.request(method, &format!("{}{path}", self.session), body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Opens `url` and waits for it to load.
    pub(crate) fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    pub(crate) fn title(&self) -> String {
        self.command("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) fn current_url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The elements matching a CSS selector (none: empty).
    pub(crate) fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.command(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one element matching a CSS selector.
    #[allow(clippy::panic)] // a missing element must fail the test, with the page
    pub(crate) fn find(&self, css: &str) -> String {
        self.find_all(css).into_iter().next().unwrap_or_else(|| {
            panic!(
                "no element `{css}` on {} (`{}`):\n{}",
                self.current_url(),
                self.title(),
                self.text("body")
            )
        })
    }

    /// The rendered text of the element matching `css` (none: empty). An
    /// element that went stale because the page moved on reads as empty:
    /// callers that wait simply look again.
    pub(crate) fn text(&self, css: &str) -> String {
        let Some(element) = self.find_all(css).into_iter().next() else {
            return String::new();
        };
        self.request(
            "GET",
            &format!("{}/element/{element}/text", self.session),
            None,
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    pub(crate) fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(&json!({})),
        );
    }

    /// Waits until the page's title is `title` (after a click that submits).
    pub(crate) fn wait_title(&self, title: &str) {
        wait_for(PAGE_TIMEOUT, &format!("the page `{title}`"), || {
            let got = self.title();
            if got == title {
                Ok(())
            } else {
                Err(format!(
                    "`{got}` at {}:\n{}",
                    self.current_url(),
                    self.text("body")
                ))
            }
        });
    }

    /// Types `text` into the element matching `css` (WebDriver "element
    /// send keys"), after what it holds.
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(&json!({ "text": text })),
        );
    }

    /// Empties an input or textarea.
    pub(crate) fn clear(&self, css: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/clear"),
            Some(&json!({})),
        );
    }

    /// The current `value` of an input.
    pub(crate) fn value(&self, css: &str) -> String {
        let element = self.find(css);
        self.command("GET", &format!("/element/{element}/property/value"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The browser's cookie `name` as WebDriver shows it (`secure`,
    /// `httpOnly`, `sameSite`, ...).
    pub(crate) fn cookie(&self, name: &str) -> Value {
        self.command("GET", &format!("/cookie/{name}"), None)
    }

    fn log_tail(&self, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Ends the session (Chromium exits) and chromedriver.
    fn quit(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &self.session, None);
            self.session.clear();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.quit();
    }
}

// ---------------------------------------------------------------------------
// The scenario.

#[allow(clippy::panic)] // a test's setup failing must stop the test
fn roles() -> String {
    let path: &Path = &rules_dir().join("roles.toml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Puts `acme-1`: a basic tier whose contract has expired, with a contact.
fn expired_account(host: &Host) {
    let account = json!({
        "status": "expired",
        "paid_up": true,
        "tier": "basic",
        "contract_end": null,
        "contact": {"name": "Ada", "email": "ada@acme.test"},
        "attributes": {},
    });
    let reply = host.put("/v1/accounts/acme-1", &account);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
}

/// A premium-support check that fails as expired: its reconciliation link.
fn failing_check(host: &Host, request_id: &str, description: &str) -> String {
    let reply = host.post(
        "/v1/checks",
        &json!({
            "service": "premium-support",
            "account_id": "acme-1",
            "request_id": request_id,
            "attributes": {"severity": "normal"},
            "description": description,
        }),
    );
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json["decision"], "fail", "{reply}");
    assert_eq!(reply.json["failure"]["code"], "expired", "{reply}");
    let reconciliation = &reply.json["reconciliation"];
    assert_eq!(reconciliation["mode"], "sync-then-async", "{reply}");
    let url = reconciliation["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = reconciliation["id"].as_str().unwrap_or_default();
    assert!(
        url.starts_with(&format!("{}/reconcile/{id}?key=", host.public_base())),
        "the link is on the public site: {reply}"
    );
    url
}

#[test]
fn a_person_reconciles_on_the_public_site_in_a_real_browser() {
    // The browser first: without it, fail at once and say why.
    let browser = Browser::start();
    let setup = Setup::new(&roles());
    let host = setup.start();
    expired_account(&host);
    let url = failing_check(&host, "req-1", "printer <script>alert(1)</script> on fire");

    // A wrong key: a clear 403 page, nothing offered.
    let (address, key) = url.split_once("?key=").unwrap();
    let wrong = format!("{address}?key={}x", &key[..key.len() - 1]);
    browser.goto(&wrong);
    assert_eq!(browser.title(), "This link is not valid");
    assert!(browser.find_all("form").is_empty());
    assert_eq!(host.get_url(&wrong).status, 403);

    // The page states the problem, its text escaped, and offers what fits.
    browser.goto(&url);
    assert_eq!(
        browser.title(),
        "Your request to Premium support needs attention"
    );
    assert_eq!(
        browser.text("h1"),
        "Your request to Premium support could not go ahead"
    );
    assert_eq!(
        browser.text("#description"),
        "printer <script>alert(1)</script> on fire"
    );
    assert_eq!(browser.text("#reason"), "the support contract has expired");
    assert_eq!(browser.text("#account"), "acme-1");
    assert_eq!(browser.find_all("form#renew").len(), 1);
    assert!(
        browser.find_all("form#other-account").is_empty(),
        "\"use another account\" is off unless the service turns it on"
    );
    assert!(
        browser.find_all("form#pay").is_empty(),
        "not offered for `expired`"
    );
    assert_eq!(browser.find_all("form#leave").len(), 1);
    let plain = host.get_url(&url);
    assert_eq!(plain.status, 200, "{plain}");
    assert!(plain.content_type.starts_with("text/html"), "{plain}");
    assert!(!plain.text.contains("<script"), "{plain}");

    // Renew: done, and the request is fulfilled without being sent again.
    browser.click("form#renew button[type=submit]");
    browser.wait_title("Done: request entitled");
    // The key left the address bar with the first action.
    assert!(
        !browser.current_url().contains("key="),
        "{}",
        browser.current_url()
    );
    assert_eq!(browser.text("#level"), "basic");
    assert_eq!(browser.text("#account"), "acme-1");
    assert!(browser.text("body").contains("You can close this page."));
    let request = host.get("/v1/requests/req-1");
    assert_eq!(request.json["state"], "fulfilled", "{request}");

    // The link is dead now.
    browser.goto(&url);
    assert_eq!(browser.title(), "This link was already used");
    assert!(browser.find_all("form").is_empty());
    assert_eq!(host.get_url(&url).status, 410);

    // Nothing of the internal API on the public site: a 404 page.
    browser.goto(&format!("{}/v1/requests/req-1", host.public_base()));
    assert_eq!(browser.title(), "Page not found");
    let internal = host.get_url(&format!("{}/healthz", host.public_base()));
    assert_eq!(internal.status, 404, "{internal}");
    assert!(internal.content_type.starts_with("text/html"), "{internal}");
}

#[test]
fn not_now_in_a_real_browser_hands_over_to_the_contact() {
    let browser = Browser::start();
    let setup = Setup::new(&roles());
    let host = setup.start();
    expired_account(&host);
    let url = failing_check(&host, "req-2", "new laptop");

    browser.goto(&url);
    assert_eq!(browser.text("#description"), "new laptop");
    browser.click("form#leave button[type=submit]");
    browser.wait_title("We will ask the account's contact");
    assert_eq!(
        browser.text("h1"),
        "We will ask the account's contact instead"
    );
    assert!(browser.find_all("form").is_empty());
    let request = host.get("/v1/requests/req-2");
    assert_eq!(
        request.json["state"], "awaiting-reconciliation",
        "{request}"
    );
}
