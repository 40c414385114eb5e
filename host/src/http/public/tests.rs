//! The site's router on a fake entitlement: routes, form handling, statuses,
//! headers, and that nothing reaches entitlement when the request is bad.

use std::sync::Mutex;

use axum::body::Body;
use axum::http::{Method, Request, header};
use tower::ServiceExt as _;

use super::*;
use crate::entitlement::ReconcileOption;

/// What the fake was asked, in order.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Page(String, String),
    Submit(String, String, Choice),
    Leave(String, String),
    TransferPage(String, String),
    TransferConfirm(String, String),
}

/// Answers from fixed results, and records every call.
struct Fake {
    calls: Mutex<Vec<Call>>,
    page: Result<ReconcilePage, LinkError>,
    submit: Result<SubmitOutcome, LinkError>,
    leave: Result<(), LinkError>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            calls: Mutex::new(Vec::new()),
            page: Ok(page()),
            submit: Ok(SubmitOutcome::Reconciled {
                account_id: "acme-1".into(),
                level: "basic".into(),
            }),
            leave: Ok(()),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Reconciler for Fake {
    fn page(&self, id: &str, key: &str) -> Result<ReconcilePage, LinkError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Page(id.into(), key.into()));
        self.page.clone()
    }

    fn submit(&self, id: &str, key: &str, choice: Choice) -> Result<SubmitOutcome, LinkError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Submit(id.into(), key.into(), choice));
        self.submit.clone()
    }

    fn leave(&self, id: &str, key: &str) -> Result<(), LinkError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Leave(id.into(), key.into()));
        self.leave.clone()
    }

    fn transfer_page(&self, id: &str, key: &str) -> Result<TransferPage, LinkError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::TransferPage(id.into(), key.into()));
        Ok(TransferPage {
            id: id.into(),
            service: "Premium support".into(),
            description: "printer on fire".into(),
            from_account: "acme-1".into(),
            to_account: "acme-2".into(),
            deadline: None,
        })
    }

    fn transfer_confirm(&self, id: &str, key: &str) -> Result<ConfirmOutcome, LinkError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::TransferConfirm(id.into(), key.into()));
        Ok(ConfirmOutcome::NotEntitled {
            reason: "account acme-2 has expired".into(),
        })
    }
}

fn page() -> ReconcilePage {
    ReconcilePage {
        id: "rec-1".into(),
        service: "Premium support".into(),
        description: "printer <script>alert(1)</script> on fire".into(),
        reason: "the support contract has expired".into(),
        failure_code: "expired".into(),
        account_id: "acme-1".into(),
        options: vec![ReconcileOption::OtherAccount, ReconcileOption::Renew],
        deadline: Some("2026-11-30T10:00:00Z".into()),
        can_leave: true,
    }
}

/// A response of the site, read whole.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: axum::http::HeaderMap,
    pub(super) text: String,
}

impl Answer {
    pub(super) async fn of(response: axum::response::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }
}

async fn send(fake: &Arc<Fake>, request: Request<Body>) -> Answer {
    let answer = Answer::of(site(fake.clone()).oneshot(request).await.unwrap()).await;
    assert_html_and_secure(&answer);
    answer
}

async fn get(fake: &Arc<Fake>, uri: &str) -> Answer {
    send(fake, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_form(fake: &Arc<Fake>, uri: &str, form: &str) -> Answer {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    send(fake, request).await
}

/// Every answer of the site: an HTML page with the security headers.
fn assert_html_and_secure(answer: &Answer) {
    let content_type = answer.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert_eq!(content_type, "text/html; charset=utf-8", "{}", answer.text);
    assert!(
        answer.text.starts_with("<!doctype html>"),
        "{}",
        answer.text
    );
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(answer.headers[name], value, "{name}");
    }
}

#[tokio::test]
async fn the_page_for_a_link() {
    let fake = Arc::new(Fake::new());
    let answer = get(&fake, "/reconcile/rec-1?key=s3cret").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.contains("printer &lt;script&gt;"),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains("<script"), "{}", answer.text);
    assert!(
        answer
            .text
            .contains("<input type=\"hidden\" name=\"key\" value=\"s3cret\">"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("id=\"leave\""), "{}", answer.text);
    assert_eq!(fake.calls(), [Call::Page("rec-1".into(), "s3cret".into())]);
}

#[tokio::test]
async fn the_key_is_url_decoded_and_head_works() {
    let fake = Arc::new(Fake::new());
    let answer = get(&fake, "/reconcile/rec-1?key=a%2Bb%3D&utm=x").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(fake.calls(), [Call::Page("rec-1".into(), "a+b=".into())]);

    let request = Request::head("/reconcile/rec-1?key=k")
        .body(Body::empty())
        .unwrap();
    let response = site(fake.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_link_without_a_key_is_refused_without_a_lookup() {
    let fake = Arc::new(Fake::new());
    for uri in [
        "/reconcile/rec-1",
        "/reconcile/rec-1?key=",
        "/reconcile/rec-1?other=1",
        "/reconcile/rec-1?key=a&key=b",
    ] {
        let answer = get(&fake, uri).await;
        assert_eq!(answer.status, 403, "{uri}: {}", answer.text);
        assert!(
            answer.text.contains("This link is not valid"),
            "{}",
            answer.text
        );
    }
    let long = format!("/reconcile/rec-1?key={}", "k".repeat(MAX_KEY + 1));
    assert_eq!(get(&fake, &long).await.status, 403);
    let long = format!("/reconcile/{}?key=k", "i".repeat(MAX_ID + 1));
    assert_eq!(get(&fake, &long).await.status, 404);
    assert_eq!(fake.calls(), []);
}

#[tokio::test]
async fn link_errors_are_pages_with_their_status() {
    for (error, status) in [
        (LinkError::NotFound, 404),
        (LinkError::WrongKey, 403),
        (LinkError::Used, 410),
        (LinkError::Lapsed, 410),
        (LinkError::Closed, 410),
        (
            LinkError::Locked {
                until: "2026-11-30T10:00:00Z".into(),
                retry_after: 60,
            },
            429,
        ),
        (LinkError::DecidedOtherwise, 410),
        (LinkError::Internal, 500),
    ] {
        let fake = Arc::new(Fake {
            page: Err(error.clone()),
            submit: Err(error.clone()),
            leave: Err(error.clone()),
            ..Fake::new()
        });
        let (_, expected) = render_error(&error);
        let answer = get(&fake, "/reconcile/rec-1?key=k").await;
        assert_eq!((answer.status, &answer.text), (status, &expected));
        let answer = post_form(&fake, "/reconcile/rec-1", "key=k&choice=renew").await;
        assert_eq!((answer.status, &answer.text), (status, &expected));
        let answer = post_form(&fake, "/reconcile/rec-1/leave", "key=k").await;
        assert_eq!((answer.status, &answer.text), (status, &expected));
    }
}

#[tokio::test]
async fn each_choice_reaches_entitlement() {
    let fake = Arc::new(Fake::new());
    for (form, choice) in [
        ("key=k&choice=renew", Choice::Renew),
        ("key=k&choice=pay", Choice::PayForRequest),
        (
            "key=k&choice=other-account&account_id=+acme-2+",
            Choice::OtherAccount("acme-2".into()),
        ),
        (
            "choice=other-account&account_id=%C3%A9-1&key=k",
            Choice::OtherAccount("é-1".into()),
        ),
    ] {
        let answer = post_form(&fake, "/reconcile/rec-1", form).await;
        assert_eq!(answer.status, 200, "{form}: {}", answer.text);
        assert!(
            answer
                .text
                .contains("<title>Done: request entitled</title>"),
            "{}",
            answer.text
        );
        assert!(
            answer
                .text
                .contains("level <strong id=\"level\">basic</strong>")
        );
        assert_eq!(
            fake.calls().last(),
            Some(&Call::Submit("rec-1".into(), "k".into(), choice)),
            "{form}"
        );
    }
}

#[tokio::test]
async fn still_failing_shows_the_page_again_with_the_reason() {
    let mut again = page();
    again.options = vec![ReconcileOption::OtherAccount];
    let fake = Arc::new(Fake {
        submit: Ok(SubmitOutcome::StillFailing {
            page: again,
            reason: "account acme-2 <is> not paid up".into(),
        }),
        ..Fake::new()
    });
    let answer = post_form(
        &fake,
        "/reconcile/rec-1",
        "key=k&choice=other-account&account_id=acme-2",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.contains("role=\"alert\""), "{}", answer.text);
    assert!(
        answer
            .text
            .contains("account acme-2 &lt;is&gt; not paid up"),
        "{}",
        answer.text
    );
    // The forms carry the key again, for the next attempt.
    assert!(
        answer
            .text
            .contains("<input type=\"hidden\" name=\"key\" value=\"k\">"),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains("id=\"renew\""), "{}", answer.text);
}

#[tokio::test]
async fn another_account_without_an_id_asks_for_it() {
    let fake = Arc::new(Fake::new());
    let answer = post_form(
        &fake,
        "/reconcile/rec-1",
        "key=k&choice=other-account&account_id=++",
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("role=\"alert\""), "{}", answer.text);
    assert!(
        answer.text.contains("Enter the id of the account to use."),
        "{}",
        answer.text
    );
    // Only the page was read; nothing was submitted.
    assert_eq!(fake.calls(), [Call::Page("rec-1".into(), "k".into())]);
}

#[tokio::test]
async fn bad_forms_change_nothing() {
    let fake = Arc::new(Fake::new());
    for (form, status) in [
        ("choice=renew", 403),
        ("key=&choice=renew", 403),
        ("key=k", 422),
        ("key=k&choice=", 422),
        ("key=k&choice=upgrade", 422),
        ("key=k&key=j&choice=renew", 422),
    ] {
        let answer = post_form(&fake, "/reconcile/rec-1", form).await;
        assert_eq!(answer.status, status, "{form}: {}", answer.text);
    }
    let answer = post_form(&fake, "/reconcile/rec-1/leave", "").await;
    assert_eq!(answer.status, 403, "{}", answer.text);

    // Not a form.
    let request = Request::post("/reconcile/rec-1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"key":"k","choice":"renew"}"#))
        .unwrap();
    assert_eq!(send(&fake, request).await.status, 415);
    // Too large.
    let big = format!("key=k&choice=renew&pad={}", "x".repeat(MAX_FORM));
    assert_eq!(post_form(&fake, "/reconcile/rec-1", &big).await.status, 413);

    assert_eq!(fake.calls(), []);
}

#[tokio::test]
async fn not_now() {
    let fake = Arc::new(Fake::new());
    let answer = post_form(&fake, "/reconcile/rec-1/leave", "key=k").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("We will ask the account's contact instead"),
        "{}",
        answer.text
    );
    assert_eq!(fake.calls(), [Call::Leave("rec-1".into(), "k".into())]);
}

#[tokio::test]
async fn nothing_else_is_served() {
    let fake = Arc::new(Fake::new());
    for uri in [
        "/",
        "/healthz",
        "/metrics",
        "/v1/checks",
        "/v1/accounts/acme-1",
        "/v1/outbox",
        "/reconcile",
        "/reconcile/",
        "/reconcile/rec-1/",
        "/reconcile/rec-1/other",
        "/favicon.ico",
    ] {
        let answer = get(&fake, uri).await;
        assert_eq!(answer.status, 404, "{uri}: {}", answer.text);
        assert!(answer.text.contains("Page not found"), "{}", answer.text);
    }
    let request = Request::post("/v1/checks")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&fake, request).await.status, 404);

    for (method, uri, allow) in [
        (Method::PUT, "/reconcile/rec-1", "GET,HEAD,POST"),
        (Method::DELETE, "/reconcile/rec-1", "GET,HEAD,POST"),
        (Method::GET, "/reconcile/rec-1/leave?key=k", "POST"),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let answer = send(&fake, request).await;
        assert_eq!(answer.status, 405, "{method} {uri}: {}", answer.text);
        assert_eq!(answer.headers[header::ALLOW], allow, "{method} {uri}");
    }
    assert_eq!(fake.calls(), []);
}

#[tokio::test]
async fn the_confirm_link_of_another_account() {
    let fake = Arc::new(Fake::new());
    let answer = get(&fake, "/reconcile/rec-1/confirm?key=s3cret").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.contains("acme-2"), "{}", answer.text);
    let answer = get(&fake, "/reconcile/rec-1/confirm").await;
    assert_eq!(answer.status, 403, "no key: {}", answer.text);
    let answer = post_form(&fake, "/reconcile/rec-1/confirm", "key=s3cret").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.contains("account acme-2 has expired"),
        "{}",
        answer.text
    );
    assert_eq!(
        fake.calls(),
        [
            Call::TransferPage("rec-1".into(), "s3cret".into()),
            Call::TransferConfirm("rec-1".into(), "s3cret".into()),
        ]
    );
}
