//! The plugin's rules, tested natively: one test per rule and per kind of
//! bad parameter.

use super::*;

/// 2026-11-20T14:30:00Z, a Friday.
const FRI_1430: Timestamp = 1_795_185_000;
const HOUR: Timestamp = 3_600;
const DAY: Timestamp = 86_400;

fn plan(config: &[(&str, &str)]) -> Plan {
    config.iter().fold(
        Plan::new("prepaid-basic", PlanKind::PayAsYouGo),
        |plan, (k, v)| plan.with_config(*k, *v),
    )
}

fn prepaid(balance: Money) -> PlanAccount {
    PlanAccount::new("acme-1", Billing::Prepaid, balance)
}

fn usage(total_uses: u64, recent_uses: &[Timestamp]) -> Usage {
    Usage {
        total_uses,
        recent_uses: recent_uses.to_vec(),
        ..Usage::since(FRI_1430 - 7 * DAY)
    }
}

fn restriction_for(
    config: &[(&str, &str)],
    account: &PlanAccount,
    recent_uses: &[Timestamp],
    start: Timestamp,
) -> Result<Option<Restriction>, Error> {
    let ctx = Context::new("prepaid-calling", start);
    let call = Communication::new("c1", "+4930123456", start);
    PrepaidCalling::restriction(&ctx, &plan(config), account, &usage(0, recent_uses), &call)
}

/// The reason of a restriction for a well-funded prepaid account.
fn restriction(
    config: &[(&str, &str)],
    recent_uses: &[Timestamp],
    start: Timestamp,
) -> Result<Option<String>, Error> {
    restriction_for(config, &prepaid(1_000_000), recent_uses, start).map(|r| r.map(|r| r.reason))
}

fn some(reason: &str) -> Result<Option<String>, Error> {
    Ok(Some(reason.to_owned()))
}

fn association(destination: &str, associated_at: Timestamp, uses: u64) -> Association {
    Association {
        uses,
        ..Association::new(destination, associated_at)
    }
}

/// Usage with counters since `since`, `total_uses` in all, and these
/// (destination, uses) associations.
fn plan_usage(since: Timestamp, total_uses: u64, associations: &[(&str, u64)]) -> Usage {
    Usage {
        total_uses,
        recent_uses: Vec::new(),
        counters_since: since,
        associations: associations
            .iter()
            .map(|(d, uses)| association(d, since, *uses))
            .collect(),
    }
}

fn reset(config: &[(&str, &str)], usage: &Usage, now: Timestamp) -> Result<Option<Reset>, Error> {
    let ctx = Context::new("prepaid-calling", now);
    PrepaidCalling::reset(&ctx, &plan(config), usage)
}

/// A reset of everything in `usage`, for `reason`.
fn everything(usage: &Usage, reason: &str) -> Result<Option<Reset>, Error> {
    Ok(Some(Reset::everything(usage, reason)))
}

#[test]
fn a_plan_without_parameters_restricts_and_resets_nothing() {
    assert_eq!(restriction(&[], &[FRI_1430; 100], FRI_1430), Ok(None));
    assert_eq!(restriction_for(&[], &prepaid(-5), &[], FRI_1430), Ok(None));
    let busy = plan_usage(0, 1_000, &[("+4930123456", 1_000)]);
    assert_eq!(reset(&[], &busy, FRI_1430), Ok(None));
}

#[test]
fn use_limit_counts_uses_within_the_period_before_the_start() {
    let config = [("max_uses", "3")];
    let two_in_the_last_day = [FRI_1430 - HOUR, FRI_1430 - DAY + 1];
    assert_eq!(
        restriction(&config, &two_in_the_last_day, FRI_1430),
        Ok(None)
    );
    let three = [FRI_1430, FRI_1430 - HOUR, FRI_1430 - DAY + 1];
    assert_eq!(
        restriction(&config, &three, FRI_1430),
        some("at most 3 uses per day; 3 already used")
    );
    // A use exactly one period ago, or after the start, does not count.
    let outside = [FRI_1430 + 1, FRI_1430 - HOUR, FRI_1430 - DAY];
    assert_eq!(restriction(&config, &outside, FRI_1430), Ok(None));
}

#[test]
fn use_limit_period_is_configurable() {
    let config = [("max_uses", "1"), ("period_seconds", "7200")];
    assert_eq!(
        restriction(&config, &[FRI_1430 - HOUR], FRI_1430),
        some("at most 1 use per 2 hours; 1 already used")
    );
    assert_eq!(
        restriction(&config, &[FRI_1430 - 2 * HOUR], FRI_1430),
        Ok(None)
    );
    let config = [("max_uses", "0"), ("period_seconds", "90")];
    assert_eq!(
        restriction(&config, &[], FRI_1430),
        some("at most 0 uses per 90 seconds; 0 already used")
    );
}

#[test]
fn weekly_window_allows_only_its_day_and_hours() {
    let config = [
        ("window_day", "friday"),
        ("window_start", "14:00"),
        ("window_end", "16:00"),
    ];
    let outside = some("usable only on Friday 14:00-16:00");
    assert_eq!(restriction(&config, &[], FRI_1430), Ok(None));
    assert_eq!(restriction(&config, &[], FRI_1430 - 30 * 60), Ok(None)); // 14:00
    assert_eq!(restriction(&config, &[], FRI_1430 + 90 * 60 - 1), Ok(None)); // 15:59:59
    assert_eq!(restriction(&config, &[], FRI_1430 + 90 * 60), outside); // 16:00
    assert_eq!(restriction(&config, &[], FRI_1430 - 30 * 60 - 1), outside); // 13:59:59
    assert_eq!(restriction(&config, &[], FRI_1430 - DAY), outside); // Thursday
    assert_eq!(restriction(&config, &[], FRI_1430 + 7 * DAY), Ok(None)); // next Friday
}

#[test]
fn window_uses_the_utc_offset() {
    // Friday 14:00-16:00 at UTC+02:00 is 12:00-14:00 UTC.
    let config = [
        ("window_day", "fri"),
        ("window_start", "14:00"),
        ("window_end", "16:00"),
        ("utc_offset_minutes", "120"),
    ];
    assert_eq!(
        restriction(&config, &[], FRI_1430),
        some("usable only on Friday 14:00-16:00 (UTC+02:00)")
    );
    assert_eq!(restriction(&config, &[], FRI_1430 - 2 * HOUR), Ok(None));
}

#[test]
fn window_may_run_past_midnight_or_cover_a_whole_day() {
    // Friday 22:00 to Saturday 02:00.
    let late = [
        ("window_day", "friday"),
        ("window_start", "22:00"),
        ("window_end", "02:00"),
    ];
    let fri_2230 = FRI_1430 + 8 * HOUR;
    assert_eq!(restriction(&late, &[], fri_2230), Ok(None));
    assert_eq!(restriction(&late, &[], fri_2230 + 3 * HOUR), Ok(None)); // Sat 01:30
    assert_eq!(
        restriction(&late, &[], fri_2230 + 4 * HOUR), // Sat 02:30
        some("usable only on Friday 22:00-02:00")
    );
    // The whole of Friday.
    let friday = [("window_day", "Friday")];
    assert_eq!(restriction(&friday, &[], fri_2230), Ok(None));
    assert_eq!(
        restriction(&friday, &[], fri_2230 + 2 * HOUR),
        some("usable only on Friday")
    );
    // Every day from 08:00 (to midnight).
    let daily = [("window_start", "08:00")];
    assert_eq!(restriction(&daily, &[], FRI_1430), Ok(None));
    assert_eq!(
        restriction(&daily, &[], FRI_1430 - 7 * HOUR),
        some("usable only 08:00-24:00")
    );
}

#[test]
fn the_window_comes_first_then_the_use_limit_then_the_balance() {
    let config = [
        ("max_uses", "1"),
        ("window_day", "monday"),
        ("min_balance", "500"),
    ];
    let poor = prepaid(100);
    let reason = |config: &[(&str, &str)]| {
        restriction_for(config, &poor, &[FRI_1430], FRI_1430).map(|r| r.map(|r| r.reason))
    };
    assert_eq!(reason(&config), some("usable only on Monday"));
    assert_eq!(
        reason(&config[..1]),
        some("at most 1 use per day; 1 already used")
    );
    assert_eq!(
        reason(&config[2..]),
        some("the balance is 100, below the 500 this plan needs")
    );
}

#[test]
fn min_balance_restricts_prepaid_accounts_below_it() {
    let config = [("min_balance", "500")];
    let restricted = |account: PlanAccount| restriction_for(&config, &account, &[], FRI_1430);
    assert_eq!(
        restricted(prepaid(499)),
        Ok(Some(Restriction::new(
            "the balance is 499, below the 500 this plan needs"
        )))
    );
    assert_eq!(restricted(prepaid(500)), Ok(None));
    assert_eq!(restricted(prepaid(10_000)), Ok(None));
    // Postpaid accounts are billed later: the minimum does not apply.
    let postpaid = PlanAccount::new("acme-2", Billing::Postpaid, -2_000);
    assert_eq!(restricted(postpaid), Ok(None));
    // A minimum of 0 holds back only a prepaid balance below zero.
    let zero = [("min_balance", "0")];
    assert!(matches!(
        restriction_for(&zero, &prepaid(-1), &[], FRI_1430),
        Ok(Some(_))
    ));
    assert_eq!(restriction_for(&zero, &prepaid(0), &[], FRI_1430), Ok(None));
}

#[test]
fn every_restriction_names_the_alternate_plan() {
    let window = [
        ("window_day", "friday"),
        ("window_start", "14:00"),
        ("window_end", "16:00"),
        ("alternate_plan", " standard "),
    ];
    assert_eq!(
        restriction_for(&window, &prepaid(0), &[], FRI_1430 - DAY),
        Ok(Some(
            Restriction::new("usable only on Friday 14:00-16:00").with_alternate("standard")
        ))
    );
    // Inside the window: no restriction, so no alternate.
    assert_eq!(
        restriction_for(&window, &prepaid(0), &[], FRI_1430),
        Ok(None)
    );
    let limit = [("max_uses", "0"), ("alternate_plan", "standard")];
    let got = restriction_for(&limit, &prepaid(0), &[], FRI_1430);
    assert_eq!(
        got.map(|r| r.and_then(|r| r.alternate)),
        Ok(Some("standard".to_owned()))
    );
    let balance = [("min_balance", "1"), ("alternate_plan", "postpaid-basic")];
    let got = restriction_for(&balance, &prepaid(0), &[], FRI_1430);
    assert_eq!(
        got.map(|r| r.and_then(|r| r.alternate)),
        Ok(Some("postpaid-basic".to_owned()))
    );
    // Without `alternate_plan`, the host's selection chooses.
    let got = restriction_for(&[("max_uses", "0")], &prepaid(0), &[], FRI_1430);
    assert_eq!(got.map(|r| r.map(|r| r.alternate)), Ok(Some(None)));
}

#[test]
fn bad_restriction_parameters_are_errors_naming_the_key() {
    let err = |config: &[(&str, &str)]| restriction(config, &[], FRI_1430).err();
    assert_eq!(
        err(&[("window_start", "25:00")]),
        Some(Error::new(
            "plan parameter `window_start` is `25:00`, expected HH:MM"
        ))
    );
    assert_eq!(
        err(&[("window_day", "fryday")]),
        Some(Error::new(
            "plan parameter `window_day` is `fryday`, expected a day of the week, e.g. `friday`"
        ))
    );
    assert_eq!(
        err(&[("max_uses", "-1")]),
        Some(Error::new(
            "plan parameter `max_uses` is `-1`, expected a whole number"
        ))
    );
    assert_eq!(
        err(&[("max_uses", "3"), ("period_seconds", "0")]),
        Some(Error::new(
            "plan parameter `period_seconds` is `0`, expected a whole number, at least 1"
        ))
    );
    assert_eq!(
        err(&[("utc_offset_minutes", "1440")]),
        Some(Error::new(
            "plan parameter `utc_offset_minutes` is `1440`, expected a number of minutes from -1439 to 1439"
        ))
    );
    assert_eq!(
        err(&[("max_uses", "3"), ("period_seconds", "1209600")]),
        Some(Error::new(
            "plan parameter `period_seconds` is `1209600`, longer than `usage_window_seconds` (604800), the span of uses the host passes in"
        ))
    );
    assert_eq!(
        restriction(
            &[
                ("max_uses", "3"),
                ("period_seconds", "1209600"),
                ("usage_window_seconds", "1209600")
            ],
            &[],
            FRI_1430
        ),
        Ok(None)
    );
    assert!(err(&[("window_start", "10:00"), ("window_end", "10:00")]).is_some());
    assert!(err(&[("window_end", "24:30")]).is_some());
    assert_eq!(
        err(&[("min_balance", "-5")]),
        Some(Error::new(
            "plan parameter `min_balance` is `-5`, expected a whole number of minor units"
        ))
    );
    assert!(err(&[("min_balance", "5.00")]).is_some());
    assert_eq!(
        err(&[("alternate_plan", "  ")]),
        Some(Error::new(
            "plan parameter `alternate_plan` is `  `, expected the id of another plan"
        ))
    );
    assert_eq!(
        err(&[("alternate_plan", "prepaid-basic")]),
        Some(Error::new(
            "plan parameter `alternate_plan` is `prepaid-basic`, the plan itself: name another plan"
        ))
    );
    // A broken reset parameter shows on restriction calls too.
    assert!(err(&[("reset_at_hour", "noon")]).is_some());
    assert!(err(&[("reset_at", "tomorrow")]).is_some());
}

#[test]
fn reset_after_destination_uses_dissociates_only_those_destinations() {
    let config = [("reset_after_destination_uses", "5")];
    let usage = plan_usage(
        FRI_1430 - DAY,
        11,
        &[
            ("+4930111", 4),
            ("+4930222", 5),
            ("+4930333", 2),
            ("+4930444", 9),
        ],
    );
    assert_eq!(
        reset(&config, &usage, FRI_1430),
        Ok(Some(Reset::dissociate(
            vec!["+4930222".into(), "+4930444".into()],
            "reset after 5 uses of a destination"
        )))
    );
    let short = plan_usage(FRI_1430 - DAY, 11, &[("+4930111", 4), ("+4930333", 2)]);
    assert_eq!(reset(&config, &short, FRI_1430), Ok(None));
    let one = [("reset_after_destination_uses", "1")];
    let got = reset(&one, &usage, FRI_1430).map(|r| r.map(|r| r.reason));
    assert_eq!(got, Ok(Some("reset after 1 use of a destination".into())));
}

#[test]
fn reset_after_total_uses_dissociates_everything_and_resets_the_counters() {
    let config = [("reset_after_total_uses", "20")];
    let short = plan_usage(FRI_1430 - DAY, 19, &[("+4930111", 19)]);
    assert_eq!(reset(&config, &short, FRI_1430), Ok(None));
    let due = plan_usage(FRI_1430 - DAY, 20, &[("+4930111", 12), ("+4930222", 8)]);
    let got = reset(&config, &due, FRI_1430);
    assert_eq!(got, everything(&due, "reset after 20 uses of the plan"));
    assert_eq!(
        got.map(|r| r.map(|r| (r.dissociate.len(), r.reset_counters))),
        Ok(Some((2, true)))
    );
    // With no destinations associated, the counters still reset.
    let bare = plan_usage(FRI_1430 - DAY, 25, &[]);
    assert_eq!(
        reset(&config, &bare, FRI_1430),
        Ok(Some(Reset {
            dissociate: vec![],
            reset_counters: true,
            reason: "reset after 20 uses of the plan".into(),
        }))
    );
}

#[test]
fn reset_at_a_daily_hour_since_the_counters_were_reset() {
    let config = [("reset_at_hour", "04:00")];
    let fri_0400 = FRI_1430 - 10 * HOUR - 30 * 60;
    let at = |since: Timestamp, now: Timestamp| {
        let usage = plan_usage(since, 3, &[("+4930111", 3)]);
        reset(&config, &usage, now).map(|r| r.map(|r| r.reason))
    };
    let daily = some("daily reset at 04:00");
    // Counters since after today's 04:00: not due until tomorrow's.
    assert_eq!(at(fri_0400 + 1, FRI_1430), Ok(None));
    assert_eq!(at(fri_0400 + 1, fri_0400 + DAY - 1), Ok(None));
    assert_eq!(at(fri_0400 + 1, fri_0400 + DAY), daily);
    // Counters since before today's 04:00: due; exactly at it: not.
    assert_eq!(at(fri_0400 - 1, FRI_1430), daily);
    assert_eq!(at(fri_0400, FRI_1430), Ok(None));
    // Several days without a reset: one reset catches up.
    assert_eq!(at(fri_0400 - 5 * DAY, FRI_1430), daily);
    // A clock behind the counters is never due.
    assert_eq!(at(fri_0400 + 1, fri_0400 - DAY), Ok(None));
    let usage = plan_usage(fri_0400 - 1, 3, &[("+4930111", 3), ("+4930222", 0)]);
    assert_eq!(
        reset(&config, &usage, FRI_1430),
        everything(&usage, "daily reset at 04:00")
    );
}

#[test]
fn daily_reset_uses_the_utc_offset() {
    // 04:00 at UTC-05:00 is 09:00 UTC.
    let config = [("reset_at_hour", "04:00"), ("utc_offset_minutes", "-300")];
    let fri_0500 = FRI_1430 - 9 * HOUR - 30 * 60;
    let usage = plan_usage(fri_0500, 0, &[]);
    assert_eq!(reset(&config, &usage, fri_0500 + 4 * HOUR - 1), Ok(None));
    assert_eq!(
        reset(&config, &usage, fri_0500 + 4 * HOUR).map(|r| r.map(|r| r.reason)),
        some("daily reset at 04:00 (UTC-05:00)")
    );
}

#[test]
fn reset_at_an_instant_happens_once() {
    let config = [("reset_at", "2026-11-20T06:00:00+02:00")];
    let instant = FRI_1430 - 10 * HOUR - 30 * 60; // 04:00Z
    let at = |since: Timestamp, now: Timestamp| {
        let usage = plan_usage(since, 3, &[("+4930111", 3)]);
        reset(&config, &usage, now).map(|r| r.map(|r| r.reason))
    };
    let once = some("reset at 2026-11-20T06:00:00+02:00");
    assert_eq!(at(instant - DAY, instant - 1), Ok(None)); // not yet
    assert_eq!(at(instant - DAY, instant), once); // at the instant
    assert_eq!(at(instant - DAY, FRI_1430), once); // since then, not yet reset
    // Once the counters were reset at or after it, never again.
    assert_eq!(at(instant, FRI_1430), Ok(None));
    assert_eq!(at(instant + HOUR, FRI_1430 + 30 * DAY), Ok(None));
    let z = [("reset_at", "2026-11-20T04:00:00Z")];
    let usage = plan_usage(instant - DAY, 3, &[("+4930111", 3)]);
    assert_eq!(
        reset(&z, &usage, FRI_1430),
        everything(&usage, "reset at 2026-11-20T04:00:00Z")
    );
}

#[test]
fn reset_every_n_seconds_counts_from_the_last_reset() {
    let config = [("reset_every_seconds", "604800")];
    let since = FRI_1430 - 7 * DAY;
    let usage = plan_usage(since, 3, &[("+4930111", 3)]);
    assert_eq!(reset(&config, &usage, FRI_1430 - 1), Ok(None));
    assert_eq!(
        reset(&config, &usage, FRI_1430),
        everything(&usage, "reset every 7 days")
    );
    assert_eq!(
        reset(&config, &usage, FRI_1430 + 3 * DAY),
        everything(&usage, "reset every 7 days")
    );
    // After the reset the counters start again.
    let fresh = plan_usage(FRI_1430, 0, &[]);
    assert_eq!(reset(&config, &fresh, FRI_1430 + DAY), Ok(None));
    // A clock behind the counters is never due.
    assert_eq!(reset(&config, &fresh, FRI_1430 - 8 * DAY), Ok(None));
}

#[test]
fn whole_plan_resets_name_every_condition_due_and_win_over_destination_resets() {
    let config = [
        ("reset_after_destination_uses", "5"),
        ("reset_after_total_uses", "20"),
        ("reset_at_hour", "04:00"),
        ("reset_every_seconds", "86400"),
    ];
    let since = FRI_1430 - HOUR;
    let fresh = plan_usage(since, 1, &[("+4930111", 1)]);
    assert_eq!(reset(&config, &fresh, FRI_1430), Ok(None));
    let one_destination = plan_usage(since, 6, &[("+4930111", 5), ("+4930222", 1)]);
    assert_eq!(
        reset(&config, &one_destination, FRI_1430),
        Ok(Some(Reset::dissociate(
            vec!["+4930111".into()],
            "reset after 5 uses of a destination"
        )))
    );
    let many = plan_usage(since, 20, &[("+4930111", 15), ("+4930222", 5)]);
    assert_eq!(
        reset(&config, &many, FRI_1430),
        everything(&many, "reset after 20 uses of the plan")
    );
    assert_eq!(
        reset(&config, &many, FRI_1430 + DAY),
        everything(
            &many,
            "reset after 20 uses of the plan; daily reset at 04:00; reset every day"
        )
    );
}

#[test]
fn bad_reset_parameters_are_errors_naming_the_key() {
    let err = |config: &[(&str, &str)]| reset(config, &plan_usage(0, 0, &[]), FRI_1430).err();
    assert_eq!(
        err(&[("reset_at_hour", "24:00")]),
        Some(Error::new(
            "plan parameter `reset_at_hour` is `24:00`, expected HH:MM"
        ))
    );
    assert_eq!(
        err(&[("reset_after_destination_uses", "0")]),
        Some(Error::new(
            "plan parameter `reset_after_destination_uses` is `0`, expected a whole number, at least 1"
        ))
    );
    assert!(err(&[("reset_after_total_uses", "many")]).is_some());
    assert_eq!(
        err(&[("reset_at", "2026-11-20 04:00")]),
        Some(Error::new(
            "plan parameter `reset_at` is `2026-11-20 04:00`, expected an RFC 3339 time, e.g. `2026-11-20T04:00:00Z` or `2026-11-20T06:00:00+02:00`"
        ))
    );
    assert_eq!(
        err(&[("reset_every_seconds", "0")]),
        Some(Error::new(
            "plan parameter `reset_every_seconds` is `0`, expected a whole number, at least 1"
        ))
    );
    assert_eq!(
        err(&[("reset_every_seconds", "18446744073709551615")]),
        Some(Error::new(
            "plan parameter `reset_every_seconds` is `18446744073709551615`, expected a number of seconds"
        ))
    );
    // A broken restriction parameter shows on reset calls too.
    assert!(err(&[("window_day", "someday")]).is_some());
    assert!(err(&[("alternate_plan", "")]).is_some());
}

#[test]
fn periods_read_naturally() {
    assert_eq!(describe_period(86_400), "day");
    assert_eq!(describe_period(7 * 86_400), "7 days");
    assert_eq!(describe_period(3_600), "hour");
    assert_eq!(describe_period(1_800), "30 minutes");
    assert_eq!(describe_period(1), "second");
}
