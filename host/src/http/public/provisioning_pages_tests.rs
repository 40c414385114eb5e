//! Every provisioning page rendered: what it shows, what its forms carry,
//! and that text from providers and invitees is escaped everywhere.

use super::super::pages::FALLBACK;
use super::*;
use crate::provisioning::{OfferSummary, Prefill};

fn view() -> InvitationView {
    InvitationView {
        invitee: "inv-1".into(),
        offer: "ofr-1".into(),
        service: "support-contract".into(),
        service_name: "Support contract".into(),
        description: "a year of support".into(),
        provider_name: "Ada".into(),
        provider_organization: "Acme".into(),
        expires_at: "2026-11-30T10:00:00Z".into(),
        prefill: Prefill {
            email: "bob@x.test".into(),
            name: "Bob".into(),
            organization: "Bobco".into(),
            phone: "+1 555".into(),
        },
        user: None,
        accepted: false,
        declined: false,
    }
}

fn hostile() -> InvitationView {
    let mut v = view();
    v.invitee = "inv/\"<1>".into();
    v.service_name = "<b>Svc</b>".into();
    v.description = "<script>alert(1)</script>".into();
    v.provider_name = "x\" onmouseover=\"alert(2)".into();
    v.provider_organization = "<img src=x>".into();
    v.prefill.name = "<i>Bob</i>".into();
    v
}

fn user() -> User {
    User {
        id: "bob".into(),
        organization: "org-1".into(),
        email: "bob@x.test".into(),
        name: "Bob".into(),
        admin: true,
    }
}

fn assert_clean(html: &str) {
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>") && !html.contains("<i>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("\" onmouseover"), "{html}");
    assert!(!html.contains(FALLBACK), "{html}");
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{name}\" value=\"{value}\">")
}

#[test]
fn the_invitation_asks_for_the_email_with_key_and_token() {
    let html = render_invitation(&view(), "k3y", "t0k", None);
    assert!(
        html.contains("<title>An offer of Support contract: confirm your email</title>"),
        "{html}"
    );
    assert!(html.contains("action=\"/invite/inv-1/confirm\""), "{html}");
    assert!(html.contains(&hidden("key", "k3y")), "{html}");
    assert!(html.contains(&hidden("token", "t0k")), "{html}");
    assert!(html.contains("name=\"email\""), "{html}");
    // The email asked for is not given away.
    assert!(!html.contains("bob@x.test"), "{html}");
    assert!(!html.contains("role=\"alert\""), "{html}");
    let html = render_invitation(&hostile(), "\"><script>", "t", Some("<script>n"));
    assert_clean(&html);
    assert!(
        html.contains("action=\"/invite/inv%2F%22%3C1%3E/confirm\""),
        "{html}"
    );
    assert!(html.contains("role=\"alert\""), "{html}");
}

#[test]
fn the_offer_links_on_with_the_key() {
    let html = render_offer(&view(), "k3y");
    assert!(html.contains("<title>The offer of Support contract</title>"));
    assert!(
        html.contains("<dd id=\"description\">a year of support</dd>"),
        "{html}"
    );
    assert!(
        html.contains("<dd id=\"provider\">Ada (Acme)</dd>"),
        "{html}"
    );
    assert!(html.contains("30 November 2026, 10:00 UTC"), "{html}");
    assert!(
        html.contains("href=\"/invite/inv-1/register?key=k3y\" id=\"register\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/invite/inv-1/signin?key=k3y\" id=\"signin\""),
        "{html}"
    );
    assert!(
        html.contains("I already have an account: sign in"),
        "{html}"
    );
    // Registered already: sign in only.
    let mut v = view();
    v.user = Some("bob".into());
    let html = render_offer(&v, "k3y");
    assert!(!html.contains("id=\"register\""), "{html}");
    let html = render_offer(&hostile(), "a&b");
    assert_clean(&html);
    assert!(html.contains("register?key=a%26b"), "{html}");
}

#[test]
fn registration_is_prefilled_and_editable() {
    let v = view();
    let fields = RegisterFields::prefilled(&v);
    let html = render_register(&v, "k3y", "t0k", &fields, None);
    assert!(html.contains("action=\"/invite/inv-1/register\""), "{html}");
    assert!(html.contains(&hidden("key", "k3y")), "{html}");
    assert!(html.contains(&hidden("token", "t0k")), "{html}");
    for (id, value) in [
        ("email", "bob@x.test"),
        ("name", "Bob"),
        ("organization", "Bobco"),
        ("phone", "+1 555"),
        ("user_id", ""),
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\" name=\"{id}\" value=\"{value}\"")),
            "{id}: {html}"
        );
    }
    assert!(html.contains("type=\"password\" id=\"password\""), "{html}");
    assert!(!html.contains("role=\"alert\""), "{html}");
    let html = render_register(
        &hostile(),
        "k",
        "t",
        &RegisterFields::prefilled(&hostile()),
        Some("`user id` <b>"),
    );
    assert_clean(&html);
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("&lt;i&gt;Bob&lt;&#x2f;i&gt;"), "{html}");
}

#[test]
fn sign_in_forms() {
    let html = render_invite_signin(
        &view(),
        "k3y",
        "t0k",
        "bob",
        Some("wrong user id or password"),
    );
    assert!(
        html.contains("<title>Sign in to take up the offer</title>"),
        "{html}"
    );
    assert!(html.contains("action=\"/invite/inv-1/signin\""), "{html}");
    assert!(html.contains(&hidden("key", "k3y")), "{html}");
    assert!(html.contains(&hidden("token", "t0k")), "{html}");
    assert!(html.contains("value=\"bob\""), "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
    assert_clean(&render_invite_signin(&hostile(), "k", "t", "<b>", None));

    let html = render_provider_signin("t0k", "", None);
    assert!(
        html.contains("<title>Sign in to your offers</title>"),
        "{html}"
    );
    assert!(html.contains("action=\"/provider/signin\""), "{html}");
    assert!(!html.contains("name=\"key\""), "{html}");
    assert!(html.contains(&hidden("token", "t0k")), "{html}");
    assert!(!html.contains("role=\"alert\""), "{html}");
}

#[test]
fn the_terms_accept_or_decline_in_one_form() {
    let html = render_terms(&view(), &user(), "k3y", "t0k");
    assert!(
        html.contains("<title>The terms of Support contract</title>"),
        "{html}"
    );
    assert!(
        html.contains("By accepting, you are granted use of Support contract by Ada (Acme)"),
        "{html}"
    );
    assert!(html.contains("action=\"/invite/inv-1/terms\""), "{html}");
    assert_eq!(html.matches("<form").count(), 1, "{html}");
    assert!(html.contains(&hidden("token", "t0k")), "{html}");
    assert!(
        html.contains("name=\"decision\" value=\"accept\""),
        "{html}"
    );
    assert!(
        html.contains("name=\"decision\" value=\"decline\""),
        "{html}"
    );
    assert_clean(&render_terms(&hostile(), &user(), "k", "t"));
}

#[test]
fn every_answer_has_its_page() {
    let cases = [
        (true, false, "You can now use Svc"),
        (
            true,
            true,
            "You had already accepted: nothing more was recorded.",
        ),
        (false, false, "You declined the offer of Svc"),
        (
            false,
            true,
            "You had already declined: nothing more was recorded.",
        ),
    ];
    for (accepted, again, text) in cases {
        let html = render_answered("Svc", accepted, again);
        assert!(html.contains(text), "{text}: {html}");
        assert!(!html.contains("<form"), "{html}");
    }
    assert_clean(&render_answered("<b>Svc</b>", true, false));
}

#[test]
fn the_provider_page_lists_offers_and_offers_what_may_be_offered() {
    let offers = vec![OfferSummary {
        id: "ofr-1".into(),
        service: "support-contract".into(),
        service_name: "<b>Support</b>".into(),
        description: "<script>x</script>".into(),
        expires_at: 1_795_183_200_000,
        expired: true,
    }];
    let tokens = ProviderTokens {
        offer: "t1",
        signout: "t2",
    };
    let form = OfferFields {
        service: "support-contract".into(),
        ..OfferFields::default()
    };
    let services = vec!["premium-support".to_owned(), "support-contract".to_owned()];
    let html = render_provider(&user(), &offers, &services, &tokens, &form, None);
    assert_clean(&html);
    assert!(html.contains("href=\"/provider/offers/ofr-1\""), "{html}");
    assert!(html.contains("(expired)"), "{html}");
    assert!(html.contains("action=\"/provider/offers\""), "{html}");
    assert!(html.contains(&hidden("token", "t1")), "{html}");
    assert!(html.contains(&hidden("token", "t2")), "{html}");
    assert!(
        html.contains("<option value=\"support-contract\" selected>"),
        "{html}"
    );
    assert!(html.contains("name=\"onwards\""), "{html}");
    assert!(html.contains("type=\"date\""), "{html}");
    let html = render_provider(&user(), &[], &[], &tokens, &form, Some("no"));
    assert!(html.contains("id=\"no-offers\""), "{html}");
    assert!(html.contains("id=\"nothing-offerable\""), "{html}");
    assert!(!html.contains("id=\"make-offer\""), "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
}

fn offer_view() -> OfferView {
    let invitee = |id: &str, registered: bool, accepted: bool| InviteeView {
        id: id.into(),
        offer: "ofr-1".into(),
        email: format!("{id}@x.test"),
        name: Some("<i>N</i>".into()),
        organization: None,
        phone: None,
        invited_at: 1_795_183_200_000,
        registered,
        registered_at: registered.then_some(1_795_183_260_000),
        user: registered.then(|| "u".to_owned()),
        accepted,
        accepted_at: accepted.then_some(1_795_183_320_000),
        declined: false,
        declined_at: None,
        offer_expired: false,
    };
    OfferView {
        id: "ofr-1".into(),
        service: "support-contract".into(),
        service_name: "Support contract".into(),
        organization: "acme".into(),
        provider: "ada".into(),
        description: "<script>d</script>".into(),
        created_at: 1_795_183_200_000,
        expires_at: 1_795_183_200_000,
        expiry_chosen: false,
        expired: false,
        onwards: false,
        via_permission: None,
        invitees: vec![invitee("a", false, false), invitee("b", true, true)],
    }
}

#[test]
fn an_offer_shows_each_invitee_and_new_links_once() {
    let offer = offer_view();
    let html = render_provider_offer(&offer, "t0k", &InviteesFields::default(), None);
    assert_clean(&html);
    assert!(html.contains("<tr id=\"invitee-a\">"), "{html}");
    assert!(html.contains("<td class=\"status\">invited</td>"), "{html}");
    assert!(
        html.contains("<td class=\"status\">accepted</td>"),
        "{html}"
    );
    assert!(html.contains(" as u"), "{html}");
    assert!(
        html.contains("action=\"/provider/offers/ofr-1/invitees\""),
        "{html}"
    );
    assert!(html.contains(&hidden("token", "t0k")), "{html}");
    assert!(!html.contains("id=\"created\""), "{html}");

    let fields = InviteesFields {
        lines: String::new(),
        send: false,
        created: vec![InviteeCreated {
            id: "c".into(),
            email: "c@x.test".into(),
            url: Some("http://127.0.0.1:7701/invite/c?key=<k>".into()),
            sent_to: None,
        }],
    };
    let html = render_provider_offer(&offer, "t", &fields, None);
    assert!(html.contains("id=\"created\""), "{html}");
    assert!(
        html.contains("<code class=\"link\">http:&#x2f;&#x2f;127.0.0.1:7701&#x2f;invite&#x2f;c?key=&lt;k&gt;</code>"),
        "{html}"
    );

    let mut expired = offer_view();
    expired.expired = true;
    let html = render_provider_offer(&expired, "t", &InviteesFields::default(), None);
    assert!(html.contains("<dd id=\"state\">expired</dd>"), "{html}");
    assert!(!html.contains("id=\"add-invitees\""), "{html}");
}

#[test]
fn refusals_have_their_status_and_a_clear_page() {
    use crate::provisioning::FormError;
    let cases = [
        (ProvisioningError::WrongLink, 404, "This link is not valid"),
        (
            ProvisioningError::Expired {
                offer: "ofr-1".into(),
                at: "2026-11-30T10:00:00Z".into(),
            },
            410,
            "This offer has expired",
        ),
        (ProvisioningError::AccessDenied, 403, "Access denied"),
        (
            ProvisioningError::BadCredentials,
            401,
            "Wrong user id or password",
        ),
        (
            ProvisioningError::Locked {
                until: "2026-11-30T10:00:00Z".into(),
                retry_after: 60,
            },
            429,
            "This user is locked for now",
        ),
        (FormError::Unknown.into(), 403, "This form cannot be used"),
        (
            FormError::OtherSubject.into(),
            403,
            "This form cannot be used",
        ),
        (FormError::Stale.into(), 403, "This form cannot be used"),
        (FormError::Replayed.into(), 409, "This form cannot be used"),
        (
            ProvisioningError::Invalid("`name` <b>".into()),
            422,
            "The form could not be used",
        ),
        (
            ProvisioningError::Conflict("answered".into()),
            409,
            "That cannot be done now",
        ),
        (
            ProvisioningError::NotFound {
                what: "offer",
                id: "x".into(),
            },
            404,
            "Not found",
        ),
        (
            ProvisioningError::Forbidden("no".into()),
            403,
            "Not allowed",
        ),
        (
            ProvisioningError::Random("no entropy".into()),
            500,
            "Something went wrong on our side",
        ),
    ];
    for (error, status, title) in cases {
        let (got, html) = render_refusal(&error);
        assert_eq!(got.as_u16(), status, "{error:?}");
        assert!(html.contains(&format!("<title>{title}</title>")), "{html}");
        assert!(!html.contains("<form"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        // Internal detail is never shown.
        assert!(!html.contains("no entropy"), "{html}");
    }
    let (_, html) = render_refusal(&ProvisioningError::Expired {
        offer: "ofr-1".into(),
        at: "2026-11-30T10:00:00Z".into(),
    });
    assert!(html.contains("offer has expired"), "{html}");
    let (_, html) = render_refusal(&ProvisioningError::AccessDenied);
    assert!(html.contains("Access denied"), "{html}");
}

#[test]
fn a_notice_carries_its_links() {
    let links = [Link {
        id: "invitation",
        href: invite_link("inv 1", "", "k&y"),
        text: "<Open>".into(),
    }];
    let html = render_notice("T", "M", Some(" "), &links);
    assert!(
        html.contains("<a href=\"/invite/inv%201?key=k%26y\" id=\"invitation\">&lt;Open&gt;</a>"),
        "{html}"
    );
    assert!(!html.contains("id=\"detail\""), "{html}");
}
