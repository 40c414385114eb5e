//! The public site's pages, rendered from the templates in `templates/`
//! (embedded in the binary). Pure functions of what entitlement answered:
//! no I/O, so every page is unit-tested here.
//!
//! Every value reaches the HTML through minijinja's autoescaping (the
//! templates are `.html`), so text from requesters, plugins and accounts can
//! never become markup.

use std::sync::LazyLock;

use axum::http::StatusCode;
use minijinja::value::{Serde, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::entitlement::{LinkError, ReconcileOption, ReconcilePage, TransferPage};

/// The templates, by name; `.html` names turn HTML autoescaping on.
const TEMPLATES: [(&str, &str); 15] = [
    ("base.html", include_str!("templates/base.html")),
    ("reconcile.html", include_str!("templates/reconcile.html")),
    ("done.html", include_str!("templates/done.html")),
    ("left.html", include_str!("templates/left.html")),
    ("message.html", include_str!("templates/message.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    // The provisioning pages (`provisioning_pages.rs`).
    ("invite.html", include_str!("templates/invite.html")),
    ("offer.html", include_str!("templates/offer.html")),
    (
        "offer_details.html",
        include_str!("templates/offer_details.html"),
    ),
    ("register.html", include_str!("templates/register.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("terms.html", include_str!("templates/terms.html")),
    ("answered.html", include_str!("templates/answered.html")),
    ("provider.html", include_str!("templates/provider.html")),
    (
        "provider_offer.html",
        include_str!("templates/provider_offer.html"),
    ),
];

/// The page when a template itself cannot render (a bug, caught by the
/// tests): plain, static, nothing interpolated.
pub(super) const FALLBACK: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Something went wrong on our side</title></head>\n<body><main><h1>Something went wrong on our side</h1><p>Nothing was changed. Try again in a few minutes.</p></main></body></html>\n";

static ENV: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A misspelt variable is an error (the tests render every template),
    // never a silently empty field.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
});

/// Renders template `name` with `context`; on failure, logs it and returns
/// the static fallback page.
pub(super) fn render(name: &str, context: &impl Serialize) -> String {
    let rendered = match ENV.as_ref() {
        Ok(env) => env
            .get_template(name)
            .and_then(|t| t.render(Value::from(Serde(context))))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    rendered.unwrap_or_else(|e| {
        tracing::error!(template = name, error = %e, "public site: a page cannot render");
        FALLBACK.to_owned()
    })
}

// ---------------------------------------------------------------------------
// The reconciliation page.

#[derive(Serialize)]
struct PageView<'a> {
    service: &'a str,
    description: &'a str,
    account_id: &'a str,
    reason: &'a str,
    deadline: Option<Deadline>,
    /// `other-account`, `renew`, `pay`: each once, in the order given.
    options: Vec<&'static str>,
    can_leave: bool,
    key: &'a str,
    notice: Option<&'a str>,
    /// Where the option forms post: `/reconcile/<id>`, the id
    /// percent-encoded, so the template may (and does) mark it `safe`.
    action: String,
    /// Where "Not now" posts: `/reconcile/<id>/leave`.
    leave_action: String,
}

#[derive(Serialize)]
pub(super) struct Deadline {
    /// As entitlement gave it (RFC 3339), for `<time datetime>`.
    iso: String,
    /// For people: `20 November 2026, 10:00 UTC`.
    text: String,
}

/// The form value of an option, as the page posts it in `choice`.
pub fn option_value(option: ReconcileOption) -> &'static str {
    match option {
        ReconcileOption::OtherAccount => "other-account",
        ReconcileOption::Renew => "renew",
        ReconcileOption::PayForRequest => "pay",
    }
}

/// The reconciliation page for `page`: the problem, one form per offered
/// option (each carrying `key` in a hidden field), "Not now" when the page
/// may be left, and `notice` (why the last attempt did not work) as an alert.
pub fn render_page(page: &ReconcilePage, key: &str, notice: Option<&str>) -> String {
    let mut options: Vec<&'static str> = Vec::new();
    for option in &page.options {
        let value = option_value(*option);
        if !options.contains(&value) {
            options.push(value);
        }
    }
    let action = format!("/reconcile/{}", encode_segment(&page.id));
    let view = PageView {
        service: &page.service,
        description: &page.description,
        account_id: &page.account_id,
        reason: &page.reason,
        deadline: page.deadline.as_deref().map(deadline),
        options,
        can_leave: page.can_leave,
        key,
        notice: notice.filter(|n| !n.trim().is_empty()),
        leave_action: format!("{action}/leave"),
        action,
    };
    render("reconcile.html", &view)
}

/// A deadline for people; one that does not parse is shown as given.
pub(super) fn deadline(rfc3339: &str) -> Deadline {
    let text = rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned());
    Deadline {
        iso: rfc3339.to_owned(),
        text,
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved).
pub(super) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The page of a link sent to another account's contact: one form, which
/// carries `key`, to confirm.
pub fn render_confirm(page: &TransferPage, key: &str) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        service: &'a str,
        description: &'a str,
        from_account: &'a str,
        to_account: &'a str,
        deadline: Option<Deadline>,
        key: &'a str,
        action: String,
    }
    render(
        "confirm.html",
        &View {
            service: &page.service,
            description: &page.description,
            from_account: &page.from_account,
            to_account: &page.to_account,
            deadline: page.deadline.as_deref().map(deadline),
            key,
            action: format!("/reconcile/{}/confirm", encode_segment(&page.id)),
        },
    )
}

// ---------------------------------------------------------------------------
// After an action.

/// The page after a successful reconciliation.
pub fn render_done(account_id: &str, level: &str) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        account_id: &'a str,
        level: &'a str,
    }
    render("done.html", &View { account_id, level })
}

/// The page after "Not now".
pub fn render_left() -> String {
    #[derive(Serialize)]
    struct View {}
    render("left.html", &View {})
}

// ---------------------------------------------------------------------------
// Why nothing happened.

/// A page that explains, in a heading, a sentence and an optional detail.
pub fn render_message(title: &str, message: &str, detail: Option<&str>) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        title: &'a str,
        message: &'a str,
        detail: Option<&'a str>,
        /// `message.html` also serves the provisioning notices, with links.
        links: [(); 0],
    }
    render(
        "message.html",
        &View {
            title,
            message,
            detail,
            links: [],
        },
    )
}

/// The page for a link that cannot be used, with its status.
pub fn render_error(error: &LinkError) -> (StatusCode, String) {
    const SEND_AGAIN: &str = "The request did not go ahead; send it again if it is still needed.";
    let locked_detail;
    let (title, message, detail) = match error {
        LinkError::NotFound => (
            "This link is not known",
            "There is no request to settle at this address. Check that you opened the whole link from the message you received.",
            None,
        ),
        LinkError::WrongKey => (
            "This link is not valid",
            "The key in this link is wrong. Open the link exactly as you received it. Nothing was changed.",
            None,
        ),
        LinkError::Used => (
            "This link was already used",
            "The request has been settled already: there is nothing left to do here. You can close this page.",
            None,
        ),
        LinkError::Lapsed => (
            "This link has lapsed",
            "The time to settle this request has run out.",
            Some(SEND_AGAIN),
        ),
        LinkError::Closed => (
            "This request is closed",
            "This request can no longer be settled here.",
            Some(SEND_AGAIN),
        ),
        LinkError::Locked { until, .. } => {
            locked_detail = format!(
                "It opens again at {} (UTC); the account's contact has been told. Nothing was lost: the request stays as it was. A fresh link can be asked from the service.",
                deadline(until).text
            );
            (
                "This link is locked for now",
                "Wrong keys were tried with this link too many times, so it does not open for a while.",
                Some(locked_detail.as_str()),
            )
        }
        LinkError::DecidedOtherwise => (
            "This link is no longer needed",
            "The request was settled another way since this link was sent: there is nothing left to do here. You can close this page.",
            None,
        ),
        LinkError::BadForm(why) => (
            "The form could not be used",
            "Nothing was changed. Go back to the page and try again.",
            Some(why.as_str()).filter(|w| !w.trim().is_empty()),
        ),
        LinkError::Internal => (
            "Something went wrong on our side",
            "Nothing was changed. Try again in a few minutes.",
            None,
        ),
    };
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, render_message(title, message, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> ReconcilePage {
        ReconcilePage {
            id: "rec-1".into(),
            service: "Premium support".into(),
            description: "printer on fire".into(),
            reason: "the support contract has expired".into(),
            failure_code: "expired".into(),
            account_id: "acme-1".into(),
            options: vec![ReconcileOption::Renew],
            deadline: None,
            can_leave: false,
        }
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn every_template_parses() {
        let env = ENV.as_ref().expect("the templates parse");
        for (name, _) in TEMPLATES {
            env.get_template(name).expect(name);
        }
    }

    #[test]
    fn page_states_the_problem_in_semantic_html() {
        let html = render_page(&page(), "k3y", None);
        assert!(html.starts_with("<!doctype html>"), "{html}");
        for part in [
            "<html lang=\"en\">",
            "<title>Your request to Premium support needs attention</title>",
            "<main>",
            "<h1>Your request to Premium support could not go ahead</h1>",
            "<dd id=\"description\">printer on fire</dd>",
            "<dd id=\"reason\">the support contract has expired</dd>",
            "<dd id=\"account\">acme-1</dd>",
        ] {
            assert!(html.contains(part), "missing `{part}` in\n{html}");
        }
        assert!(!html.contains("<script"), "{html}");
        assert!(
            !html.contains("role=\"alert\""),
            "no notice, no alert: {html}"
        );
        assert!(
            !html.contains("id=\"deadline\""),
            "no deadline given: {html}"
        );
        assert!(!html.contains(FALLBACK), "{html}");
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let mut p = page();
        p.id = "a/b\"<c>".into();
        p.service = "<b>Svc</b>".into();
        p.description = "<script>alert(1)</script>".into();
        p.reason = "x\" onmouseover=\"alert(2)".into();
        p.account_id = "<img src=x onerror=alert(3)>".into();
        p.options = vec![ReconcileOption::OtherAccount, ReconcileOption::Renew];
        p.deadline = Some("<i>soon</i>".into());
        p.can_leave = true;
        let html = render_page(&p, "\"><script>k</script>", Some("<script>n</script>"));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(!html.contains("\" onmouseover"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        // The id is a path segment in the form's action: percent-encoded.
        assert!(
            html.contains("action=\"/reconcile/a%2Fb%22%3Cc%3E\""),
            "{html}"
        );
        assert!(
            html.contains("action=\"/reconcile/a%2Fb%22%3Cc%3E/leave\""),
            "{html}"
        );
    }

    #[test]
    fn only_the_offered_options_are_shown_each_carrying_the_key() {
        let mut p = page();
        p.options = vec![];
        let html = render_page(&p, "k3y", None);
        assert_eq!(count(&html, "<form"), 0, "{html}");
        assert!(html.contains("nothing to choose"), "{html}");

        p.options = vec![ReconcileOption::Renew];
        let html = render_page(&p, "k3y", None);
        assert_eq!(count(&html, "<form"), 1, "{html}");
        assert!(html.contains("id=\"renew\""), "{html}");
        assert!(html.contains("name=\"choice\" value=\"renew\""), "{html}");
        assert!(!html.contains("id=\"pay\""), "{html}");
        assert!(!html.contains("id=\"other-account\""), "{html}");
        assert!(!html.contains("name=\"account_id\""), "{html}");

        p.options = vec![
            ReconcileOption::PayForRequest,
            ReconcileOption::OtherAccount,
            ReconcileOption::Renew,
            ReconcileOption::PayForRequest,
        ];
        let html = render_page(&p, "k3y", None);
        assert_eq!(count(&html, "<form"), 3, "each option once: {html}");
        assert_eq!(
            count(&html, "<input type=\"hidden\" name=\"key\" value=\"k3y\">"),
            3,
            "{html}"
        );
        assert_eq!(count(&html, "method=\"post\""), 3, "{html}");
        assert_eq!(count(&html, "action=\"/reconcile/rec-1\""), 3, "{html}");
        // In the order entitlement gave them.
        let pay = html.find("id=\"pay\"").unwrap();
        let other = html.find("id=\"other-account\"").unwrap();
        let renew = html.find("id=\"renew\"").unwrap();
        assert!(pay < other && other < renew, "{html}");
        // The account field has its label.
        assert!(html.contains("<label for=\"account_id\">"), "{html}");
        assert!(
            html.contains("<input type=\"text\" id=\"account_id\" name=\"account_id\""),
            "{html}"
        );
        for value in ["other-account", "renew", "pay"] {
            assert!(
                html.contains(&format!("name=\"choice\" value=\"{value}\"")),
                "{value}: {html}"
            );
        }
        assert_eq!(count(&html, "<button type=\"submit\""), 3, "{html}");
    }

    #[test]
    fn not_now_only_when_the_page_may_be_left() {
        let mut p = page();
        let html = render_page(&p, "k3y", None);
        assert!(!html.contains("/leave"), "{html}");
        assert!(!html.contains("Not now"), "{html}");

        p.can_leave = true;
        let html = render_page(&p, "k3y", None);
        assert!(
            html.contains("<form method=\"post\" action=\"/reconcile/rec-1/leave\" id=\"leave\">"),
            "{html}"
        );
        assert_eq!(
            count(&html, "<input type=\"hidden\" name=\"key\" value=\"k3y\">"),
            2,
            "{html}"
        );
        assert!(html.contains(">Not now</button>"), "{html}");
    }

    #[test]
    fn a_notice_is_an_alert() {
        let html = render_page(&page(), "k3y", Some("account acme-2 is not paid up"));
        assert!(html.contains("role=\"alert\""), "{html}");
        assert!(
            html.contains("<p>account acme-2 is not paid up</p>"),
            "{html}"
        );
        assert!(html.contains("<title>Not done yet: "), "{html}");
        // The alert comes before the details, right under the heading.
        assert!(html.find("role=\"alert\"") < html.find("<dl>"), "{html}");
        // A blank notice is no notice.
        let html = render_page(&page(), "k3y", Some("  "));
        assert!(!html.contains("role=\"alert\""), "{html}");
    }

    #[test]
    fn deadline_for_people_and_machines() {
        let mut p = page();
        p.deadline = Some("2026-11-30T10:00:00Z".into());
        let html = render_page(&p, "k3y", None);
        assert!(
            html.contains(
                "<time datetime=\"2026-11-30T10:00:00Z\">30 November 2026, 10:00 UTC</time>"
            ),
            "{html}"
        );
        p.deadline = Some("next week".into());
        let html = render_page(&p, "k3y", None);
        assert!(html.contains(">next week</time>"), "{html}");
    }

    #[test]
    fn done_and_left_pages() {
        let html = render_done("acme-<2>", "premium");
        assert!(
            html.contains("<title>Done: request entitled</title>"),
            "{html}"
        );
        assert!(
            html.contains("<strong id=\"level\">premium</strong>"),
            "{html}"
        );
        assert!(html.contains("acme-&lt;2&gt;"), "{html}");
        assert!(html.contains("You can close this page."), "{html}");
        assert!(!html.contains("<form"), "{html}");

        let html = render_left();
        assert!(
            html.contains("We will ask the account's contact instead"),
            "{html}"
        );
        assert!(!html.contains("<form"), "{html}");
    }

    #[test]
    fn errors_have_their_status_and_a_clear_page() {
        let cases = [
            (LinkError::NotFound, 404, "This link is not known"),
            (LinkError::WrongKey, 403, "This link is not valid"),
            (LinkError::Used, 410, "This link was already used"),
            (LinkError::Lapsed, 410, "This link has lapsed"),
            (LinkError::Closed, 410, "This request is closed"),
            (
                LinkError::Locked {
                    until: "2026-11-30T10:00:00Z".into(),
                    retry_after: 60,
                },
                429,
                "This link is locked for now",
            ),
            (
                LinkError::DecidedOtherwise,
                410,
                "This link is no longer needed",
            ),
            (
                LinkError::BadForm("choose <one>".into()),
                422,
                "The form could not be used",
            ),
            (LinkError::Internal, 500, "Something went wrong on our side"),
        ];
        for (error, status, title) in cases {
            let (got, html) = render_error(&error);
            assert_eq!(got.as_u16(), status, "{error:?}");
            assert!(html.contains(&format!("<title>{title}</title>")), "{html}");
            assert!(html.contains(&format!("<h1>{title}</h1>")), "{html}");
            assert!(!html.contains("<form"), "{html}");
            assert!(!html.contains(FALLBACK), "{html}");
        }
        let (_, html) = render_error(&LinkError::BadForm("choose <one>".into()));
        assert!(html.contains("choose &lt;one&gt;"), "{html}");
    }

    #[test]
    fn the_confirm_page_escapes_and_posts_its_key() {
        let page = TransferPage {
            id: "rec/1".into(),
            service: "Premium <b>support</b>".into(),
            description: "<script>x</script>".into(),
            from_account: "acme-1".into(),
            to_account: "acme-<2>".into(),
            deadline: None,
        };
        let html = render_confirm(&page, "k3y");
        assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
        assert!(
            html.contains("action=\"/reconcile/rec%2F1/confirm\""),
            "{html}"
        );
        assert_eq!(count(&html, "<form"), 1, "{html}");
        assert!(
            html.contains("<input type=\"hidden\" name=\"key\" value=\"k3y\">"),
            "{html}"
        );
        assert!(html.contains("acme-&lt;2&gt;"), "{html}");
        assert!(!html.contains(FALLBACK), "{html}");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("rec_1-a.b~c"), "rec_1-a.b~c");
        assert_eq!(encode_segment("a b/é"), "a%20b%2F%C3%A9");
    }
}
