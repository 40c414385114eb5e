//! Sample plugin `prepaid-calling`: restrictions and reset conditions for
//! prepaid calling plans. It exports `plan-policy` only, and reads everything
//! from the plan's own parameters (`plan.config`), so one plugin serves plans
//! with different limits.
//!
//! Restriction (`Some(reason)` sends the caller to an alternate plan); a
//! communication is restricted when either rule applies, the window first:
//! - Weekly or daily window: `window_day` (`friday` or `fri`, any case),
//!   `window_start` and `window_end` (`HH:MM`, local time). The plan is usable
//!   from `window_start` (inclusive) to `window_end` (exclusive) on
//!   `window_day`, or every day when no day is set; `window_start` defaults to
//!   `00:00` and `window_end` to `24:00`, and a window whose end is before its
//!   start runs past midnight. Setting none of the three means no window.
//!   Reason: "usable only on Friday 14:00-16:00" (plus " (UTC+02:00)" when the
//!   offset is not zero).
//! - Use limit: at most `max_uses` (no default: no limit) uses per
//!   `period_seconds` (default 86 400). The uses counted are the
//!   `usage.recent_uses` in (start - period, start], start being the
//!   communication's. Reason: "at most 3 uses per day; 3 already used". The
//!   host passes the uses of the last `usage_window_seconds` (a plan
//!   parameter, default one week), so a longer `period_seconds` is an error.
//!
//! Reset (the destination is dissociated from the plan) when any of these is
//! set and due:
//! - `reset_after_destination_uses` = N: the destination has been used N times
//!   since it was associated (`association.uses >= N`);
//! - `reset_after_total_uses` = N: the plan has been used N times in all since
//!   its counters were reset (`usage.total_uses >= N`);
//! - `reset_at_hour` = `HH:MM`: every day at that local time, i.e. when such a
//!   time lies in (`association.associated_at`, `ctx.now`].
//!
//! Local time is UTC plus `utc_offset_minutes` (default 0, from -1439 to
//! 1439). A parameter that does not parse, or is out of range, is an error
//! naming it, on every call (so a broken plan shows at once).
//!
//! `plan.max_destinations` is the host's business (it associates
//! destinations); this plugin does not read it.

mod clock;

use clock::{MINUTES_PER_DAY, MINUTES_PER_WEEK, SECONDS_PER_DAY};
use rulehost_sdk::types::*;
use rulehost_sdk::{Error, PlanPolicy};

pub struct PrepaidCalling;

/// A plan's parameters, parsed and checked.
#[derive(Debug, PartialEq)]
struct Policy {
    window: Option<Window>,
    use_limit: Option<UseLimit>,
    reset_after_destination_uses: Option<u64>,
    reset_after_total_uses: Option<u64>,
    /// Minutes after local midnight.
    reset_at: Option<i64>,
    utc_offset_minutes: i64,
}

/// When the plan is usable: `[start, end)` in local minutes, on one weekday
/// or every day.
#[derive(Debug, PartialEq)]
struct Window {
    /// 0 = Monday.
    day: Option<i64>,
    /// Minutes after midnight.
    start: i64,
    /// Minutes after midnight, up to 1440; before `start` when the window
    /// runs past midnight.
    end: i64,
}

#[derive(Debug, PartialEq)]
struct UseLimit {
    max_uses: u64,
    period_seconds: i64,
}

/// The error for a plan parameter with a bad value.
fn bad(key: &str, raw: &str, expected: &str) -> Error {
    Error::new(format!(
        "plan parameter `{key}` is `{raw}`, expected {expected}"
    ))
}

/// The parameter `key` as a whole number at least `min`, if set.
fn whole(plan: &Plan, key: &str, min: u64) -> Result<Option<u64>, Error> {
    plan.config(key)
        .map(|raw| match raw.trim().parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ if min == 0 => Err(bad(key, raw, "a whole number")),
            _ => Err(bad(key, raw, &format!("a whole number, at least {min}"))),
        })
        .transpose()
}

/// The parameter `key` as a clock time, if set.
fn clock_time(plan: &Plan, key: &str, allow_end_of_day: bool) -> Result<Option<i64>, Error> {
    plan.config(key)
        .map(|raw| clock::parse_clock(raw, allow_end_of_day).ok_or_else(|| bad(key, raw, "HH:MM")))
        .transpose()
}

impl Policy {
    fn from_plan(plan: &Plan) -> Result<Self, Error> {
        let utc_offset_minutes = match plan.config("utc_offset_minutes") {
            None => 0,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|m| m.abs() < MINUTES_PER_DAY)
                .ok_or_else(|| {
                    bad(
                        "utc_offset_minutes",
                        raw,
                        "a number of minutes from -1439 to 1439",
                    )
                })?,
        };

        let day = plan
            .config("window_day")
            .map(|raw| {
                clock::parse_weekday(raw)
                    .ok_or_else(|| bad("window_day", raw, "a day of the week, e.g. `friday`"))
            })
            .transpose()?;
        let start = clock_time(plan, "window_start", false)?;
        let end = clock_time(plan, "window_end", true)?;
        let window = match (day, start, end) {
            (None, None, None) => None,
            _ => {
                let (start, end) = (start.unwrap_or(0), end.unwrap_or(MINUTES_PER_DAY));
                if start == end {
                    return Err(Error::new(format!(
                        "plan parameters `window_start` and `window_end` are both `{}`: the window would be empty",
                        clock::format_clock(start)
                    )));
                }
                Some(Window { day, start, end })
            }
        };

        let use_limit = match whole(plan, "max_uses", 0)? {
            None => None,
            Some(max_uses) => {
                let period = whole(plan, "period_seconds", 1)?.unwrap_or(DAY);
                // The host passes the uses of the last `usage_window_seconds`
                // only: a longer period would count too few.
                let passed = whole(plan, "usage_window_seconds", 1)?.unwrap_or(7 * DAY);
                if period > passed {
                    return Err(Error::new(format!(
                        "plan parameter `period_seconds` is `{period}`, longer than `usage_window_seconds` ({passed}), the span of uses the host passes in"
                    )));
                }
                Some(UseLimit {
                    max_uses,
                    period_seconds: i64::try_from(period).unwrap_or(i64::MAX),
                })
            }
        };

        Ok(Policy {
            window,
            use_limit,
            reset_after_destination_uses: whole(plan, "reset_after_destination_uses", 1)?,
            reset_after_total_uses: whole(plan, "reset_after_total_uses", 1)?,
            reset_at: clock_time(plan, "reset_at_hour", false)?,
            utc_offset_minutes,
        })
    }

    /// Why the plan may not be used for a communication starting at `start`.
    fn restriction(&self, usage: &Usage, start: Timestamp) -> Option<String> {
        if let Some(window) = &self.window
            && !window.contains(clock::local_minutes(start, self.utc_offset_minutes))
        {
            let zone = match self.utc_offset_minutes {
                0 => String::new(),
                offset => format!(" ({})", clock::format_offset(offset)),
            };
            return Some(format!("usable only {}{zone}", window.describe()));
        }
        if let Some(limit) = &self.use_limit {
            let since = start.saturating_sub(limit.period_seconds);
            let used = usage
                .recent_uses
                .iter()
                .filter(|&&at| since < at && at <= start)
                .count() as u64;
            if used >= limit.max_uses {
                return Some(format!(
                    "at most {} per {}; {used} already used",
                    plural(limit.max_uses, "use"),
                    describe_period(limit.period_seconds),
                ));
            }
        }
        None
    }

    /// Whether the association is due for a reset at `now`.
    fn reset_due(&self, association: &Association, usage: &Usage, now: Timestamp) -> bool {
        let destination_uses = self
            .reset_after_destination_uses
            .is_some_and(|n| association.uses >= n);
        let total_uses = self
            .reset_after_total_uses
            .is_some_and(|n| usage.total_uses >= n);
        let daily = self.reset_at.is_some_and(|minute| {
            let now = clock::local_seconds(now, self.utc_offset_minutes);
            let since = clock::local_seconds(association.associated_at, self.utc_offset_minutes);
            // The latest daily reset time at or before now.
            let last_reset = now - (now - minute * 60).rem_euclid(SECONDS_PER_DAY);
            since < last_reset
        });
        destination_uses || total_uses || daily
    }
}

impl Window {
    /// Minutes the window is open; `start != end` (checked at parse).
    fn length(&self) -> i64 {
        if self.end > self.start {
            self.end - self.start
        } else {
            self.end + MINUTES_PER_DAY - self.start
        }
    }

    fn contains(&self, local_minutes: i64) -> bool {
        match self.day {
            Some(day) => {
                let opens = day * MINUTES_PER_DAY + self.start;
                let minute = clock::minute_of_week(local_minutes);
                (minute - opens).rem_euclid(MINUTES_PER_WEEK) < self.length()
            }
            None => {
                let minute = local_minutes.rem_euclid(MINUTES_PER_DAY);
                (minute - self.start).rem_euclid(MINUTES_PER_DAY) < self.length()
            }
        }
    }

    /// "on Friday 14:00-16:00", "on Friday", "14:00-16:00".
    fn describe(&self) -> String {
        let hours = format!(
            "{}-{}",
            clock::format_clock(self.start),
            clock::format_clock(self.end)
        );
        let whole_day = self.start == 0 && self.end == MINUTES_PER_DAY;
        match (self.day, whole_day) {
            (Some(day), true) => format!("on {}", clock::weekday_name(day)),
            (Some(day), false) => format!("on {} {hours}", clock::weekday_name(day)),
            (None, _) => hours,
        }
    }
}

/// "1 use", "3 uses".
fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// "day", "2 hours", "90 seconds".
fn describe_period(seconds: i64) -> String {
    let (count, unit) = match seconds {
        s if s % SECONDS_PER_DAY == 0 => (s / SECONDS_PER_DAY, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    match count {
        1 => unit.to_owned(),
        _ => plural(count.unsigned_abs(), unit),
    }
}

impl PlanPolicy for PrepaidCalling {
    fn restriction(
        _ctx: &Context,
        plan: &Plan,
        usage: &Usage,
        communication: &Communication,
    ) -> Result<Option<String>, Error> {
        Ok(Policy::from_plan(plan)?.restriction(usage, communication.start))
    }

    fn reset_due(
        ctx: &Context,
        plan: &Plan,
        association: &Association,
        usage: &Usage,
    ) -> Result<bool, Error> {
        Ok(Policy::from_plan(plan)?.reset_due(association, usage, ctx.now))
    }
}

rulehost_sdk::export!(PrepaidCalling: plan_policy);

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-20T14:30:00Z, a Friday.
    const FRI_1430: Timestamp = 1_795_185_000;
    const HOUR: Timestamp = 3_600;
    const DAY: Timestamp = 86_400;

    fn plan(config: &[(&str, &str)]) -> Plan {
        Plan {
            id: "prepaid-basic".into(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            max_destinations: None,
        }
    }

    fn usage(total_uses: u64, recent_uses: &[Timestamp]) -> Usage {
        Usage {
            total_uses,
            recent_uses: recent_uses.to_vec(),
            associated_destinations: 1,
        }
    }

    fn call(start: Timestamp) -> Communication {
        Communication {
            id: "c1".into(),
            account_id: "acme-1".into(),
            access_group: "mobile".into(),
            carrier: "telco".into(),
            destination: "+4930123456".into(),
            start,
        }
    }

    fn restriction(
        config: &[(&str, &str)],
        recent_uses: &[Timestamp],
        start: Timestamp,
    ) -> Result<Option<String>, Error> {
        let ctx = Context::new("prepaid-calling", start);
        PrepaidCalling::restriction(&ctx, &plan(config), &usage(0, recent_uses), &call(start))
    }

    fn association(associated_at: Timestamp, uses: u64) -> Association {
        Association {
            destination: "+4930123456".into(),
            associated_at,
            uses,
            last_used: associated_at,
        }
    }

    fn reset_due(
        config: &[(&str, &str)],
        association: &Association,
        total_uses: u64,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let ctx = Context::new("prepaid-calling", now);
        PrepaidCalling::reset_due(&ctx, &plan(config), association, &usage(total_uses, &[]))
    }

    fn some(reason: &str) -> Result<Option<String>, Error> {
        Ok(Some(reason.to_owned()))
    }

    #[test]
    fn a_plan_without_parameters_restricts_and_resets_nothing() {
        assert_eq!(restriction(&[], &[FRI_1430; 100], FRI_1430), Ok(None));
        assert_eq!(
            reset_due(&[], &association(0, 1_000), 1_000, FRI_1430),
            Ok(false)
        );
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
    fn window_is_checked_before_the_use_limit() {
        let config = [("max_uses", "1"), ("window_day", "monday")];
        assert_eq!(
            restriction(&config, &[FRI_1430], FRI_1430),
            some("usable only on Monday")
        );
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
        // A broken reset parameter shows on restriction calls too.
        assert!(err(&[("reset_at_hour", "noon")]).is_some());
    }

    #[test]
    fn reset_after_destination_uses() {
        let config = [("reset_after_destination_uses", "5")];
        assert_eq!(
            reset_due(&config, &association(0, 4), 100, FRI_1430),
            Ok(false)
        );
        assert_eq!(
            reset_due(&config, &association(0, 5), 5, FRI_1430),
            Ok(true)
        );
    }

    #[test]
    fn reset_after_total_uses() {
        let config = [("reset_after_total_uses", "20")];
        assert_eq!(
            reset_due(&config, &association(0, 19), 19, FRI_1430),
            Ok(false)
        );
        assert_eq!(
            reset_due(&config, &association(0, 1), 20, FRI_1430),
            Ok(true)
        );
    }

    #[test]
    fn reset_at_a_daily_time() {
        let config = [("reset_at_hour", "04:00")];
        let fri_0400 = FRI_1430 - 10 * HOUR - 30 * 60;
        // Associated after today's 04:00: not due until tomorrow's.
        let after = association(fri_0400 + 1, 0);
        assert_eq!(reset_due(&config, &after, 0, FRI_1430), Ok(false));
        assert_eq!(reset_due(&config, &after, 0, fri_0400 + DAY - 1), Ok(false));
        assert_eq!(reset_due(&config, &after, 0, fri_0400 + DAY), Ok(true));
        // Associated before today's 04:00 (or exactly at yesterday's): due.
        let before = association(fri_0400 - 1, 0);
        assert_eq!(reset_due(&config, &before, 0, FRI_1430), Ok(true));
        let at_boundary = association(fri_0400, 0);
        assert_eq!(reset_due(&config, &at_boundary, 0, FRI_1430), Ok(false));
        // A clock behind the association is never due.
        assert_eq!(reset_due(&config, &after, 0, fri_0400 - DAY), Ok(false));
    }

    #[test]
    fn daily_reset_uses_the_utc_offset() {
        // 04:00 at UTC-05:00 is 09:00 UTC.
        let config = [("reset_at_hour", "04:00"), ("utc_offset_minutes", "-300")];
        let fri_0500 = FRI_1430 - 9 * HOUR - 30 * 60;
        let association = association(fri_0500, 0);
        assert_eq!(
            reset_due(&config, &association, 0, fri_0500 + 4 * HOUR - 1),
            Ok(false)
        );
        assert_eq!(
            reset_due(&config, &association, 0, fri_0500 + 4 * HOUR),
            Ok(true)
        );
    }

    #[test]
    fn any_reset_condition_suffices() {
        let config = [
            ("reset_after_destination_uses", "5"),
            ("reset_after_total_uses", "20"),
            ("reset_at_hour", "04:00"),
        ];
        let fresh = association(FRI_1430 - HOUR, 1);
        assert_eq!(reset_due(&config, &fresh, 1, FRI_1430), Ok(false));
        assert_eq!(reset_due(&config, &fresh, 20, FRI_1430), Ok(true));
        assert_eq!(
            reset_due(&config, &association(FRI_1430 - HOUR, 5), 1, FRI_1430),
            Ok(true)
        );
        assert_eq!(reset_due(&config, &fresh, 1, FRI_1430 + DAY), Ok(true));
    }

    #[test]
    fn bad_reset_parameters_are_errors_naming_the_key() {
        let err =
            |config: &[(&str, &str)]| reset_due(config, &association(0, 0), 0, FRI_1430).err();
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
        // A broken restriction parameter shows on reset calls too.
        assert!(err(&[("window_day", "someday")]).is_some());
    }

    #[test]
    fn periods_read_naturally() {
        assert_eq!(describe_period(86_400), "day");
        assert_eq!(describe_period(7 * 86_400), "7 days");
        assert_eq!(describe_period(3_600), "hour");
        assert_eq!(describe_period(1_800), "30 minutes");
        assert_eq!(describe_period(1), "second");
    }
}
