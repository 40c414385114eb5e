//! Communication plans end to end on the real binary with the sample rules
//! (`rules/plans/prepaid-calling.toml`) and the `prepaid-calling` plugin:
//! from a top-up to a detail record, every refusal, the alternate plan
//! both ways, unlimited plans' associations and each reset kind,
//! subscriptions, postpaid, a prepaid balance charged down to zero, the
//! low-balance notice, concurrency on one balance, kill -9 during
//! completions, and a plan-policy plugin that spins. Times are given
//! explicitly (`at`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::ledger::{balance, ledger_sum};
use crate::server::{Host, Reply, Setup};

const TOLL_FREE: &str = "8005550100";
const LOCAL: &str = "2125550100";
/// A Wednesday morning.
const WEDNESDAY: &str = "2026-11-18T10:00:00Z";
/// A year before, far from the host's clock.
const WEDNESDAY_LAST_YEAR: &str = "2025-11-19T10:00:00Z";
/// A Friday afternoon, inside the friday-special window.
const FRIDAY: &str = "2026-11-20T14:30:00Z";

/// The sample rules, with `at` taken as given (the tests name their
/// times), more `[plans]` settings and other sections.
fn setup(plans: &str, other: &str) -> Setup {
    let setup = Setup::new("");
    setup.write_config(&format!("[plans]\nallow_any_time = true\n{plans}{other}"));
    setup
}

/// `time` (`HH:MM`) on the day `days_ago` days before today, UTC: recent
/// enough that associations (30 days) have not lapsed by the host's clock.
fn recent(days_ago: i64, time: &str) -> String {
    let day = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * days_ago))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    format!("{day}T{time}:00Z")
}

/// An active account with `pin`, `billing`, `group` and a topped-up `balance`.
fn account(host: &Host, id: &str, group: &str, billing: &str, balance: i64) {
    let body = json!({"status": "active", "paid_up": true, "tier": "standard",
        "group": group, "pin": "1234", "billing": billing});
    let reply = host.put(&format!("/v1/accounts/{id}"), &body);
    assert!(reply.status == 200 || reply.status == 201, "{reply}");
    if balance > 0 {
        let reply = host.post(
            &format!("/v1/accounts/{id}/topup"),
            &json!({"amount": balance, "reference": format!("opening-{id}")}),
        );
        assert_eq!(reply.status, 201, "{reply}");
    }
}

fn authorize(host: &Host, account: &str, method: &str, destination: &str, at: &str) -> Reply {
    host.post(
        "/v1/communications",
        &json!({"account_id": account, "pin": "1234", "access_method": method,
                "destination": destination, "at": at, "attributes": {}}),
    )
}

fn complete(host: &Host, id: &str, secs: u64) -> Reply {
    host.post(
        &format!("/v1/communications/{id}/complete"),
        &json!({"duration_secs": secs, "answered": true}),
    )
}

/// Authorizes under a plan (201) and completes after `secs`: the record.
fn call(host: &Host, account: &str, destination: &str, at: &str, secs: u64) -> Value {
    let authorized = authorize(host, account, TOLL_FREE, destination, at);
    assert_eq!(authorized.status, 201, "{authorized}");
    let id = authorized.json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let record = complete(host, &id, secs);
    assert_eq!(record.status, 201, "{record}");
    record.json
}

fn associations(host: &Host, account: &str) -> Vec<String> {
    let reply = host.get(&format!("/v1/accounts/{account}/associations"));
    assert_eq!(reply.status, 200, "{reply}");
    reply.json["associations"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| a["destination"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_prepaid_call_from_a_top_up_to_its_detail_record() {
    let setup = setup("", "");
    let host = setup.start();
    account(&host, "ada", "retail", "prepaid", 500);

    let authorized = authorize(&host, "ada", TOLL_FREE, "12125550199", WEDNESDAY);
    assert_eq!(authorized.status, 201, "{authorized}");
    assert_eq!(authorized.json["plan"], "standard");
    assert_eq!(authorized.json["balance"], 500);
    assert_eq!(authorized.json["rates"]["per_minute"], 5);
    // 500 buys 99 started minutes and the surcharge past ten minutes.
    assert_eq!(authorized.json["max_duration_secs"], 99 * 60);

    // 10:01 is 11 started minutes at 5, and the surcharge of 5.
    let id = authorized.json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let record = complete(&host, &id, 601);
    assert_eq!(record.status, 201, "{record}");
    assert_eq!(record.json["plan"], "standard");
    assert_eq!(record.json["total"], 60);
    assert_eq!(record.json["charged"], 60);
    assert_eq!(record.json["balance_after"], 440);
    let kinds: Vec<&str> = record.json["lines"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["usage", "surcharge"]);
    assert_eq!(balance(&host, "ada"), 440);

    // Completing twice is refused and charges once.
    let again = complete(&host, &id, 601);
    assert_eq!(again.status, 409, "{again}");
    assert_eq!(again.json["error"]["code"], "already-completed");
    assert_eq!(balance(&host, "ada"), 440);
    assert_eq!(ledger_sum(&host, "ada"), (440, 2));

    // International from the local number: a connection fee of 10, a first
    // step of 30 s and then 6 s steps at 12 a minute: 31 s bill 36 s = 7.2 → 8.
    let intl = authorize(&host, "ada", LOCAL, "442079460000", WEDNESDAY);
    assert_eq!(intl.status, 201, "{intl}");
    assert_eq!(intl.json["plan"], "international");
    let id = intl.json["id"].as_str().unwrap_or_default().to_owned();
    let record = complete(&host, &id, 31);
    assert_eq!(record.json["total"], 18, "{record}");
    assert_eq!(record.json["region"], "london");

    // The records, as a page and as exports.
    let page = host.get("/v1/records?account=ada");
    assert_eq!(
        page.json["records"].as_array().map(Vec::len),
        Some(2),
        "{page}"
    );
    let jsonl = host.get("/v1/records?account=ada&format=jsonl");
    assert_eq!(jsonl.text.lines().count(), 2, "{}", jsonl.text);
    let csv = host.get("/v1/records?account=ada&format=csv");
    assert!(csv.content_type.starts_with("text/csv"), "{csv}");
    assert_eq!(csv.text.lines().count(), 3, "{}", csv.text);
    assert!(csv.text.contains("usage:55;surcharge:5"), "{}", csv.text);
}

#[test]
fn a_time_far_from_the_clock_is_refused_unless_allowed() {
    let setup = Setup::new("");
    let host = setup.start();
    account(&host, "ada", "retail", "prepaid", 500);
    let far = authorize(&host, "ada", TOLL_FREE, "12125550199", WEDNESDAY_LAST_YEAR);
    assert_eq!(far.status, 422, "{far}");
    assert!(far.text.contains("max_clock_skew_seconds"), "{far}");
    let now = host.post(
        "/v1/communications",
        &json!({"account_id": "ada", "pin": "1234",
        "access_method": TOLL_FREE, "destination": "12125550199"}),
    );
    assert_eq!(now.status, 201, "{now}");
    // Unanswered: the access fee only (none here), no use counted.
    let id = now.json["id"].as_str().unwrap_or_default().to_owned();
    let record = host.post(
        &format!("/v1/communications/{id}/complete"),
        &json!({"duration_secs": 0, "answered": false}),
    );
    assert_eq!(record.status, 201, "{record}");
    assert_eq!(record.json["answered"], false);
    assert_eq!(record.json["total"], 0);
    assert_eq!(balance(&host, "ada"), 500);
    let lying = host.post(
        &format!("/v1/communications/{id}/complete"),
        &json!({"duration_secs": 30, "answered": false}),
    );
    assert_eq!(lying.status, 422, "{lying}");
}

/// A service token acts on its own services' communications only, and
/// what spends an account's money (PIN, postpaid, top-ups) is the operator's.
#[test]
fn a_service_token_is_held_to_its_own_service_and_not_to_money() {
    let setup = setup("", "");
    let host = setup.start();
    account(&host, "ada", "retail", "prepaid", 500);
    let calling = crate::tokens::create(&setup, "service", &["prepaid-calling"], "switch");
    let other = crate::tokens::create(&setup, "service", &["support-contract"], "crm");
    let body = json!({"account_id": "ada", "pin": "1234", "access_method": TOLL_FREE,
        "destination": "12125550199", "at": WEDNESDAY});
    let refused = host.call_as(Some(&other), "POST", "/v1/communications", Some(&body));
    assert_eq!(refused.status, 403, "{refused}");
    let authorized = host.call_as(Some(&calling), "POST", "/v1/communications", Some(&body));
    assert_eq!(authorized.status, 201, "{authorized}");
    let id = authorized.json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let done = json!({"duration_secs": 60, "answered": true});
    let hidden = host.call_as(
        Some(&other),
        "POST",
        &format!("/v1/communications/{id}/complete"),
        Some(&done),
    );
    assert_eq!(hidden.status, 404, "{hidden}");
    let completed = host.call_as(
        Some(&calling),
        "POST",
        &format!("/v1/communications/{id}/complete"),
        Some(&done),
    );
    assert_eq!(completed.status, 201, "{completed}");

    let topup = host.call_as(
        Some(&calling),
        "POST",
        "/v1/accounts/ada/topup",
        Some(&json!({"amount": 100, "reference": "x"})),
    );
    assert_eq!(topup.status, 403, "{topup}");
    let pin = host.call_as(
        Some(&calling),
        "PUT",
        "/v1/accounts/ada",
        Some(&json!({"status": "active", "paid_up": true, "pin": "9999"})),
    );
    assert_eq!(pin.status, 403, "{pin}");
    let admin = host.call_as(
        Some(&calling),
        "PUT",
        "/v1/accounts/ada/preferred-plan",
        Some(&json!({"plan": "friday-special", "set_by": "administrator"})),
    );
    assert_eq!(admin.status, 403, "{admin}");
    let forgot = host.put(
        "/v1/accounts/ada/preferred-plan",
        &json!({"set_by": "subscriber"}),
    );
    assert_eq!(forgot.status, 422, "{forgot}");
    assert_eq!(balance(&host, "ada"), 495);
}

#[test]
fn each_refusal_has_its_code_and_records_nothing() {
    let setup = setup("", "");
    // Without its alternate, the preferred plan's restriction refuses.
    let plans = std::fs::read_to_string(setup.rules_path().join("plans/prepaid-calling.toml"))
        .unwrap_or_default();
    setup.write_rules(
        "plans/prepaid-calling.toml",
        &plans.replace("alternate_plan = \"standard\"\n", "").replace(
            "[[rule]]\nplan = \"standard\"\naccess_groups = [\"toll-free\", \"local-nyc\"]\ndestination_prefixes = [\"1\"]\n",
            "",
        ),
    );
    let host = setup.start();
    account(&host, "ada", "retail", "prepaid", 500);
    account(&host, "broke", "retail", "prepaid", 0);
    account(&host, "picky", "retail", "prepaid", 500);
    let preferred = host.put(
        "/v1/accounts/picky/preferred-plan",
        &json!({"plan": "friday-special", "set_by": "subscriber"}),
    );
    assert_eq!(preferred.status, 200, "{preferred}");

    let refused = |reply: Reply, status: u16, code: &str| {
        assert_eq!(reply.status, status, "{reply}");
        assert_eq!(reply.json["error"]["code"], code, "{reply}");
    };
    let with_pin = |pin: &str| {
        host.post(
            "/v1/communications",
            &json!({"account_id": "ada", "pin": pin,
            "access_method": TOLL_FREE, "destination": "442079460000", "at": WEDNESDAY}),
        )
    };
    refused(with_pin("9999"), 403, "wrong-pin");
    // A wrong PIN learns nothing of the balance or the destination.
    let probe = host.post(
        "/v1/communications",
        &json!({"account_id": "broke", "pin": "0000",
        "access_method": TOLL_FREE, "destination": "442079460000", "at": WEDNESDAY}),
    );
    refused(probe, 403, "wrong-pin");
    refused(
        authorize(&host, "nobody", TOLL_FREE, "442079460000", WEDNESDAY),
        404,
        "no-account",
    );
    refused(
        authorize(&host, "ada", TOLL_FREE, "4420-7946", WEDNESDAY),
        422,
        "invalid-destination",
    );
    refused(
        authorize(&host, "ada", TOLL_FREE, "81312345678", WEDNESDAY),
        422,
        "invalid-destination",
    );
    refused(
        authorize(&host, "ada", TOLL_FREE, "44207", WEDNESDAY),
        422,
        "invalid-destination",
    );
    refused(
        authorize(&host, "ada", TOLL_FREE, "33123456789", WEDNESDAY),
        422,
        "no-plan",
    );
    refused(
        authorize(&host, "ada", "5550000", "442079460000", WEDNESDAY),
        404,
        "unknown-access-method",
    );
    refused(
        authorize(&host, "broke", TOLL_FREE, "442079460000", WEDNESDAY),
        402,
        "insufficient-balance",
    );
    refused(
        authorize(&host, "picky", TOLL_FREE, "12125550199", WEDNESDAY),
        403,
        "restricted",
    );
    // Nothing of these is a communication or a movement.
    assert!(
        host.get("/v1/records").json["records"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    assert_eq!(ledger_sum(&host, "ada"), (500, 1));

    // Bad bodies: each a 4xx naming the problem.
    for body in [
        json!({"account_id": "ada", "pin": "1234", "access_method": TOLL_FREE}),
        json!({"account_id": "ada", "pin": "1234", "access_method": TOLL_FREE, "destination": "12125550199", "at": "friday"}),
        json!({"account_id": "ada", "pin": "1234", "access_method": TOLL_FREE, "destination": "12125550199", "colour": "red"}),
        json!({"account_id": "ada", "pin": 1234, "access_method": TOLL_FREE, "destination": "12125550199"}),
    ] {
        let reply = host.post("/v1/communications", &body);
        assert_eq!(reply.status, 422, "{body}: {reply}");
    }
    let unknown = complete(&host, "com_nothing", 10);
    assert_eq!(unknown.status, 404, "{unknown}");

    // The right PINs above ended the count of the first wrong one. Five
    // wrong PINs in a row lock it (the fifth is told so); then even the
    // right one waits.
    for _ in 0..4 {
        refused(with_pin("0000"), 403, "wrong-pin");
    }
    refused(with_pin("0000"), 429, "pin-locked");
    refused(with_pin("1234"), 429, "pin-locked");
}

#[test]
fn a_restricted_preferred_plan_offers_its_alternate_and_the_caller_chooses() {
    let setup = setup("", "");
    let host = setup.start();
    account(&host, "fan", "retail", "prepaid", 500);
    let set = host.put(
        "/v1/accounts/fan/preferred-plan",
        &json!({"plan": "friday-special", "set_by": "issuer"}),
    );
    assert_eq!(set.json["set_by"], "issuer", "{set}");

    // Inside the window: the preferred plan.
    let record = call(&host, "fan", "12125550199", FRIDAY, 60);
    assert_eq!(record["plan"], "friday-special");
    assert_eq!(record["total"], 2);

    // Outside: restricted, with standard offered.
    let offered = authorize(&host, "fan", TOLL_FREE, "12125550199", WEDNESDAY);
    assert_eq!(offered.status, 200, "{offered}");
    assert_eq!(offered.json["restricted"]["plan"], "friday-special");
    assert!(
        offered.json["restricted"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Friday")),
        "{offered}"
    );
    assert_eq!(offered.json["alternate"]["plan"], "standard");
    let id = offered.json["id"].as_str().unwrap_or_default().to_owned();
    // Not before a choice.
    assert_eq!(complete(&host, &id, 60).status, 409);
    let chosen = host.post(
        &format!("/v1/communications/{id}/choice"),
        &json!({"continue": true}),
    );
    assert_eq!(chosen.json["plan"], "standard", "{chosen}");
    let record = complete(&host, &id, 60);
    assert_eq!(record.json["plan"], "standard", "{record}");
    assert_eq!(record.json["total"], 5);

    // Declined: nothing charged, and it cannot be completed.
    let offered = authorize(&host, "fan", TOLL_FREE, "12125550199", WEDNESDAY);
    let id = offered.json["id"].as_str().unwrap_or_default().to_owned();
    let declined = host.post(
        &format!("/v1/communications/{id}/choice"),
        &json!({"continue": false}),
    );
    assert_eq!(declined.json["state"], "declined", "{declined}");
    assert_eq!(complete(&host, &id, 60).status, 409);
    let again = host.post(
        &format!("/v1/communications/{id}/choice"),
        &json!({"continue": true}),
    );
    assert_eq!(again.status, 409, "{again}");
    assert_eq!(balance(&host, "fan"), 500 - 2 - 5);

    // Three uses a week: the fourth on the same Friday is restricted.
    call(&host, "fan", "12125550199", "2026-11-20T14:40:00Z", 60);
    call(&host, "fan", "12125550199", "2026-11-20T14:50:00Z", 60);
    let fourth = authorize(
        &host,
        "fan",
        TOLL_FREE,
        "12125550199",
        "2026-11-20T15:00:00Z",
    );
    assert_eq!(fourth.status, 200, "{fourth}");
    assert!(
        fourth.json["restricted"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 uses")),
        "{fourth}"
    );
}

#[test]
fn an_unlimited_plan_associates_destinations_up_to_its_maximum_and_resets_daily() {
    let setup = setup("", "");
    let host = setup.start();
    account(&host, "uma", "unlimited", "prepaid", 100);
    let day = |time: &str| recent(3, time);

    for (i, destination) in ["441619460001", "441619460002", "441619460003"]
        .iter()
        .enumerate()
    {
        let record = call(&host, "uma", destination, &day(&format!("1{i}:00")), 600);
        assert_eq!(record["plan"], "unlimited-uk", "{record}");
        assert_eq!(record["associated"], true, "{record}");
        // Calls are free; the connection fee is 1.
        assert_eq!(record["total"], 1, "{record}");
    }
    assert_eq!(associations(&host, "uma").len(), 3);

    // A fourth destination: the plan is full, international is offered.
    let full = authorize(&host, "uma", TOLL_FREE, "441619460004", &day("13:30"));
    assert_eq!(full.status, 200, "{full}");
    assert_eq!(full.json["restricted"]["plan"], "unlimited-uk");
    assert_eq!(full.json["alternate"]["plan"], "international");
    // An associated destination skips the maximum.
    let record = call(&host, "uma", "441619460002", &day("14:00"), 60);
    assert_eq!(record["plan"], "unlimited-uk");

    // Communications in progress hold their destination's place: three
    // under way to new destinations fill another account's plan.
    account(&host, "ula", "unlimited", "prepaid", 100);
    for n in 1..=3 {
        let pending = authorize(
            &host,
            "ula",
            TOLL_FREE,
            &format!("44161946010{n}"),
            &day("15:00"),
        );
        assert_eq!(pending.json["plan"], "unlimited-uk", "{pending}");
    }
    let fourth = authorize(&host, "ula", TOLL_FREE, "441619460104", &day("15:01"));
    assert_eq!(
        fourth.json["restricted"]["plan"], "unlimited-uk",
        "{fourth}"
    );

    // The next day after 04:00 every association is gone.
    let record = call(&host, "uma", "441619460004", &recent(2, "05:00"), 60);
    assert_eq!(record["plan"], "unlimited-uk", "{record}");
    assert_eq!(associations(&host, "uma"), ["441619460004"]);
}

#[test]
fn an_unlimited_plan_resets_a_destination_after_its_uses_and_all_after_the_plans_uses() {
    let setup = setup("", "");
    let plans = std::fs::read_to_string(setup.rules_path().join("plans/prepaid-calling.toml"))
        .unwrap_or_default();
    // Smaller figures, the same rules.
    setup.write_rules(
        "plans/prepaid-calling.toml",
        &plans
            .replace(
                "reset_after_destination_uses = 20",
                "reset_after_destination_uses = 3",
            )
            .replace("reset_after_total_uses = 100", "reset_after_total_uses = 7"),
    );
    let host = setup.start();
    account(&host, "uma", "unlimited", "prepaid", 100);
    let at = |minute: u32| recent(3, &format!("10:{minute:02}"));

    for minute in 0..3 {
        call(&host, "uma", "441619460001", &at(minute), 60);
    }
    assert_eq!(associations(&host, "uma"), ["441619460001"]);
    // The next use of the plan sees three uses of 441619460001: it goes.
    call(&host, "uma", "441619460002", &at(3), 60);
    assert_eq!(associations(&host, "uma"), ["441619460002"]);
    call(&host, "uma", "441619460002", &at(4), 60);
    call(&host, "uma", "441619460003", &at(5), 60);
    call(&host, "uma", "441619460003", &at(6), 60);
    assert_eq!(associations(&host, "uma"), ["441619460002", "441619460003"]);
    // Seven uses of the plan in all: the next use drops everything and
    // starts the counters again.
    call(&host, "uma", "441619460001", &at(7), 60);
    assert_eq!(associations(&host, "uma"), ["441619460001"]);
}

/// The reset timer (a flow on the flow engine) applies a reset that is due
/// without any communication: here the daily 04:00 reset of associations
/// made on 18 November.
#[test]
fn the_reset_timer_drops_associations_without_a_use() {
    let setup = setup("reset_sweep_seconds = 1\n", "");
    let host = setup.start();
    account(&host, "uma", "unlimited", "prepaid", 100);
    let record = call(&host, "uma", "441619460001", &recent(3, "10:00"), 60);
    assert_eq!(record["associated"], true, "{record}");
    // The timer flow starts once something has counters.
    assert!(
        crate::server::wait_until(std::time::Duration::from_secs(20), || {
            host.get("/v1/flows?definition=plan-resets")
                .text
                .contains("plan-resets")
        }),
        "no plan-resets flow"
    );
    assert!(
        crate::server::wait_until(std::time::Duration::from_secs(20), || associations(
            &host, "uma"
        )
        .is_empty()),
        "the timer did not reset: {:?}",
        associations(&host, "uma")
    );
}

#[test]
fn a_subscription_charges_once_per_period_and_a_postpaid_account_runs_up_a_bill() {
    let setup = setup("", "");
    let host = setup.start();
    account(&host, "sam", "monthly", "prepaid", 2500);
    let first = call(&host, "sam", "12125550199", WEDNESDAY, 300);
    assert_eq!(first["plan"], "monthly-north-america");
    assert_eq!(first["total"], 1000, "{first}");
    let second = call(&host, "sam", "12125550199", "2026-12-01T10:00:00Z", 300);
    assert_eq!(second["total"], 0, "{second}");
    // 30 days later a new period is paid for.
    let third = call(&host, "sam", "12125550199", "2026-12-18T10:00:01Z", 300);
    assert_eq!(third["total"], 1000, "{third}");
    assert_eq!(balance(&host, "sam"), 500);

    account(&host, "pat", "retail", "postpaid", 0);
    let authorized = authorize(&host, "pat", TOLL_FREE, "12125550199", WEDNESDAY);
    assert_eq!(authorized.status, 201, "{authorized}");
    assert_eq!(authorized.json["max_duration_secs"], 14400);
    let id = authorized.json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let record = complete(&host, &id, 120);
    assert_eq!(record.json["total"], 10, "{record}");
    assert_eq!(record.json["uncovered"], 0);
    assert_eq!(balance(&host, "pat"), -10);
}

#[test]
fn a_prepaid_balance_is_charged_down_to_zero_and_a_low_balance_is_told_once() {
    let setup = setup("", "");
    let host = setup.start();
    account(&host, "low", "retail", "prepaid", 7);
    let authorized = authorize(&host, "low", TOLL_FREE, "12125550199", WEDNESDAY);
    assert_eq!(authorized.json["max_duration_secs"], 60, "{authorized}");
    let id = authorized.json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The caller went on past what the balance covers.
    let record = complete(&host, &id, 180);
    assert_eq!(record.json["total"], 15, "{record}");
    assert_eq!(record.json["charged"], 7);
    assert_eq!(record.json["uncovered"], 8);
    assert_eq!(record.json["balance_after"], 0);
    assert_eq!(balance(&host, "low"), 0);

    // standard's threshold is 100: crossing it is told once.
    account(&host, "kim", "retail", "prepaid", 120);
    call(&host, "kim", "12125550199", WEDNESDAY, 300);
    call(&host, "kim", "12125550199", "2026-11-18T11:00:00Z", 300);
    let held = host.get("/v1/outbox?state=held");
    let notices = held.json["notifications"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter(|x| {
                    x["kind"] == "balance.low" && x["payload"]["data"]["account_id"] == "kim"
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(notices, 1, "{held}");
}

#[test]
fn concurrent_completions_never_overdraw_a_balance() {
    let setup = setup("", "");
    let host = Arc::new(setup.start());
    account(&host, "shared", "retail", "prepaid", 100);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                for i in 0..4 {
                    let at = format!("2026-11-18T1{t}:{i:02}:00Z");
                    let authorized = authorize(&host, "shared", TOLL_FREE, "12125550199", &at);
                    if authorized.status == 201 {
                        let id = authorized.json["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        // 10 each: 32 of them would be 320.
                        let record = complete(&host, &id, 120);
                        assert_eq!(record.status, 201, "{record}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap_or_else(|_| panic!("a client failed"));
    }
    let (sum, _) = ledger_sum(&host, "shared");
    assert_eq!(balance(&host, "shared"), sum);
    assert!(sum >= 0, "overdrawn: {sum}");
    let charged: i64 = host.get("/v1/records?account=shared&limit=1000").json["records"]
        .as_array()
        .map(|r| r.iter().map(|x| x["charged"].as_i64().unwrap_or(0)).sum())
        .unwrap_or(0);
    assert_eq!(charged, 100 - sum);
}

/// Completions from four clients, the host killed with SIGKILL while they
/// run (`sync = "normal"`, the weaker promise): every completion answered
/// before the kill has its record and its one debit; after a restart the
/// rest complete once each, and the balance is the sum of its ledger.
#[test]
fn completions_answered_before_a_kill_9_are_all_there_once() {
    use std::sync::Mutex;
    let setup = setup("", "[store]\nsync = \"normal\"\n");
    let host = setup.start();
    account(&host, "kit", "retail", "prepaid", 100_000);
    let mut ids = Vec::new();
    for i in 0..200 {
        let at = format!(
            "2026-11-18T1{}:{:02}:{:02}Z",
            i / 3600,
            (i / 60) % 60,
            i % 60
        );
        let authorized = authorize(&host, "kit", TOLL_FREE, "12125550199", &at);
        assert_eq!(authorized.status, 201, "{authorized}");
        ids.push(
            authorized.json["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = ids
        .chunks(50)
        .map(|chunk| {
            let base = host.base().to_owned();
            let bearer = format!("Bearer {}", host.token().unwrap_or_default());
            let (answered, chunk) = (answered.clone(), chunk.to_vec());
            std::thread::spawn(move || {
                let agent = ureq::agent();
                for id in chunk {
                    let Ok(mut reply) = agent
                        .post(&format!("{base}/v1/communications/{id}/complete"))
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .send(json!({"duration_secs": 60, "answered": true}).to_string())
                    else {
                        return; // the host is gone
                    };
                    let text = reply.body_mut().read_to_string().unwrap_or_default();
                    assert!(text.contains("\"balance_after\""), "{id}: {text}");
                    answered.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                }
            })
        })
        .collect();
    // Killed once some are answered, while the others are in flight.
    crate::server::wait_until(std::time::Duration::from_secs(30), || {
        answered.lock().unwrap_or_else(|e| e.into_inner()).len() >= 40
    });
    host.kill9();
    for client in clients {
        client.join().unwrap_or_else(|_| panic!("a client failed"));
    }
    let answered = answered.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        !answered.is_empty() && answered.len() < ids.len(),
        "the kill came at the wrong moment: {}",
        answered.len()
    );

    let host = setup.start();
    for id in &ids {
        let reply = complete(&host, id, 60);
        if answered.contains(id) {
            assert_eq!(
                reply.status, 409,
                "{id} was answered before the kill: {reply}"
            );
        } else {
            assert!(reply.status == 201 || reply.status == 409, "{reply}");
        }
    }
    let records = host.get("/v1/records?account=kit&limit=1000");
    assert_eq!(
        records.json["records"].as_array().map(Vec::len),
        Some(ids.len()),
        "{records}"
    );
    let (sum, movements) = ledger_sum(&host, "kit");
    assert_eq!(movements, ids.len() + 1);
    assert_eq!(sum, 100_000 - 5 * ids.len() as i64);
    assert_eq!(balance(&host, "kit"), sum);
}

/// A service whose plan-policy plugin spins: the call is stopped at the
/// service's time limit and the authorization refused with a 503 naming the
/// plugin, nothing is recorded or charged, and the same plugin, the sample
/// service and checks keep answering.
#[test]
fn a_spinning_plan_policy_is_stopped_and_records_nothing() {
    let setup = setup("", "");
    setup.write_rules(
        "spin-calling.toml",
        "id = \"spin-calling\"\n[plugins]\nplan_policy = \"hostile-loop\"\n[limits]\ntimeout_ms = 50\n",
    );
    setup.write_rules(
        "plans/spin-calling.toml",
        r#"service = "spin-calling"
[destinations]
min_length = 8
max_length = 15
[destinations.regions]
"1" = "north-america"
"44" = "uk"
[access_methods]
"8005550999" = ["spin"]

# The plugin spins for this plan...
[[plan]]
id = "spinning"
kind = "pay-as-you-go"
priority = 10
[plan.rates]
per_minute = 5
increment_secs = 60

# ... and restricts nothing for this one.
[[plan]]
id = "answering"
kind = "pay-as-you-go"
priority = 10
[plan.rates]
per_minute = 5
increment_secs = 60
[plan.config]
answer = "true"

[[rule]]
plan = "spinning"
destination_prefixes = ["1"]

[[rule]]
plan = "answering"
destination_prefixes = ["44"]
"#,
    );
    let host = setup.start();
    account(&host, "spinner", "retail", "prepaid", 500);

    let started = std::time::Instant::now();
    let spun = authorize(&host, "spinner", "8005550999", "12125550199", WEDNESDAY);
    assert_eq!(spun.status, 503, "{spun}");
    assert_eq!(spun.json["error"]["code"], "plugin-error", "{spun}");
    let message = spun.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("hostile-loop"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the call was not stopped at its time limit: {:?}",
        started.elapsed()
    );
    // Nothing of it is a communication, a record or a movement.
    let records = host.get("/v1/records?account=spinner");
    assert_eq!(records.status, 200, "{records}");
    assert!(
        records.json["records"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{records}"
    );
    assert_eq!(ledger_sum(&host, "spinner"), (500, 1));

    // The same plugin answers for the other plan, the sample service
    // places calls, and checks are answered.
    let answered = authorize(&host, "spinner", "8005550999", "442079460000", WEDNESDAY);
    assert_eq!(answered.status, 201, "{answered}");
    assert_eq!(answered.json["plan"], "answering", "{answered}");
    account(&host, "caller", "retail", "prepaid", 500);
    let record = call(&host, "caller", "12125550199", WEDNESDAY, 60);
    assert_eq!(record["total"], 5, "{record}");
    let check = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "caller"}),
    );
    assert_eq!(check.status, 200, "{check}");
}
