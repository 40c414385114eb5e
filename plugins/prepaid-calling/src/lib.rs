//! Sample plugin `prepaid-calling`: restrictions and reset conditions for
//! prepaid calling plans. It exports `plan-policy` only, and reads everything
//! from the plan's own parameters (`plan.config`), so one plugin serves plans
//! with different limits.
//!
//! Restriction (`Some` sends the caller to an alternate plan, or stops the
//! call); a communication is restricted when any rule applies, checked in
//! this order and the first that applies gives the reason:
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
//! - Minimum balance: `min_balance` (minor units, no default): a prepaid
//!   account whose balance is below it may not use the plan. Reason: "the
//!   balance is 120, below the 500 this plan needs". Postpaid accounts are
//!   not held to it.
//!
//! Every restriction names `alternate_plan` (a plan id), when the plan sets
//! one, as the plan to offer instead; without it the host's plan selection
//! chooses.
//!
//! Reset (`Some` says which destinations to dissociate and whether to reset
//! the plan's counters). Whole-plan conditions dissociate every destination
//! and reset the counters:
//! - `reset_after_total_uses` = N: the plan has been used N times since its
//!   counters were reset (`usage.total_uses >= N`);
//! - `reset_at_hour` = `HH:MM`: every day at that local time, i.e. when such
//!   a time lies in (`usage.counters_since`, `now`];
//! - `reset_at` = an RFC 3339 instant (`2026-11-20T04:00:00Z`,
//!   `...+02:00`): once, when it lies in (`usage.counters_since`, `now`];
//! - `reset_every_seconds` = N: every N seconds counted from the last reset,
//!   i.e. when `now >= usage.counters_since + N`.
//!
//! Otherwise, `reset_after_destination_uses` = N dissociates each destination
//! used N times since it was associated (`association.uses >= N`), leaving
//! the counters. The reason names every condition that is due, e.g. "daily
//! reset at 04:00; reset after 20 uses of the plan". Nothing due: `None`.
//! Associations whose `expires_at` has passed are the host's to drop: this
//! plugin does not read it.
//!
//! Local time is UTC plus `utc_offset_minutes` (default 0, from -1439 to
//! 1439); `reset_at` carries its own offset. A parameter that does not
//! parse, or is out of range, is an error naming it, on every call (so a
//! broken plan shows at once).
//!
//! `plan.kind` and `plan.max_destinations` are the host's business (it
//! associates destinations); this plugin reads neither.

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
    min_balance: Option<Money>,
    alternate_plan: Option<String>,
    reset_after_destination_uses: Option<u64>,
    reset_after_total_uses: Option<u64>,
    /// Minutes after local midnight.
    reset_at_hour: Option<i64>,
    /// The instant, and the text it was written as (for the reason).
    reset_at: Option<(Timestamp, String)>,
    reset_every_seconds: Option<i64>,
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

/// The parameter `key` as a whole number of seconds, at least 1, if set.
fn seconds(plan: &Plan, key: &str) -> Result<Option<i64>, Error> {
    whole(plan, key, 1)?
        .map(|n| i64::try_from(n).map_err(|_| bad(key, &n.to_string(), "a number of seconds")))
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

        let min_balance = plan
            .config("min_balance")
            .map(|raw| {
                raw.trim()
                    .parse::<Money>()
                    .ok()
                    .filter(|m| *m >= 0)
                    .ok_or_else(|| bad("min_balance", raw, "a whole number of minor units"))
            })
            .transpose()?;

        let alternate_plan = plan
            .config("alternate_plan")
            .map(|raw| match raw.trim() {
                "" => Err(bad("alternate_plan", raw, "the id of another plan")),
                id if id == plan.id => Err(Error::new(format!(
                    "plan parameter `alternate_plan` is `{id}`, the plan itself: name another plan"
                ))),
                id => Ok(id.to_owned()),
            })
            .transpose()?;

        let reset_at = plan
            .config("reset_at")
            .map(|raw| {
                clock::parse_rfc3339(raw)
                    .map(|at| (at, raw.trim().to_owned()))
                    .ok_or_else(|| {
                        bad(
                            "reset_at",
                            raw,
                            "an RFC 3339 time, e.g. `2026-11-20T04:00:00Z` or `2026-11-20T06:00:00+02:00`",
                        )
                    })
            })
            .transpose()?;

        Ok(Policy {
            window,
            use_limit,
            min_balance,
            alternate_plan,
            reset_after_destination_uses: whole(plan, "reset_after_destination_uses", 1)?,
            reset_after_total_uses: whole(plan, "reset_after_total_uses", 1)?,
            reset_at_hour: clock_time(plan, "reset_at_hour", false)?,
            reset_at,
            reset_every_seconds: seconds(plan, "reset_every_seconds")?,
            utc_offset_minutes,
        })
    }

    /// Why the plan may not be used for `communication`, with the alternate
    /// plan to offer.
    fn restriction(
        &self,
        account: &PlanAccount,
        usage: &Usage,
        communication: &Communication,
    ) -> Option<Restriction> {
        let reason = self.restricted_because(account, usage, communication.start)?;
        Some(Restriction {
            reason,
            alternate: self.alternate_plan.clone(),
        })
    }

    /// The first rule that restricts a communication starting at `start`.
    fn restricted_because(
        &self,
        account: &PlanAccount,
        usage: &Usage,
        start: Timestamp,
    ) -> Option<String> {
        if let Some(window) = &self.window
            && !window.contains(clock::local_minutes(start, self.utc_offset_minutes))
        {
            return Some(format!("usable only {}{}", window.describe(), self.zone()));
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
        if let Some(min) = self.min_balance
            && account.billing == Billing::Prepaid
            && account.balance < min
        {
            return Some(format!(
                "the balance is {}, below the {min} this plan needs",
                account.balance
            ));
        }
        None
    }

    /// " (UTC+02:00)" when local time is not UTC.
    fn zone(&self) -> String {
        match self.utc_offset_minutes {
            0 => String::new(),
            offset => format!(" ({})", clock::format_offset(offset)),
        }
    }

    /// What is due for a reset at `now`, if anything.
    fn reset(&self, usage: &Usage, now: Timestamp) -> Option<Reset> {
        let since = usage.counters_since;
        // (since, now]: empty when the clock is behind the counters.
        let passed = |at: Timestamp| since < at && at <= now;
        let mut whole_plan = Vec::new();
        if let Some(n) = self.reset_after_total_uses
            && usage.total_uses >= n
        {
            whole_plan.push(format!("reset after {} of the plan", plural(n, "use")));
        }
        if let Some(minute) = self.reset_at_hour {
            let local_now = clock::local_seconds(now, self.utc_offset_minutes);
            // The latest daily reset time at or before now, in UTC.
            let last = local_now
                - (local_now - minute * 60).rem_euclid(SECONDS_PER_DAY)
                - self.utc_offset_minutes * 60;
            if passed(last) {
                whole_plan.push(format!(
                    "daily reset at {}{}",
                    clock::format_clock(minute),
                    self.zone()
                ));
            }
        }
        if let Some((at, written)) = &self.reset_at
            && passed(*at)
        {
            whole_plan.push(format!("reset at {written}"));
        }
        if let Some(every) = self.reset_every_seconds
            && now.saturating_sub(since) >= every
        {
            whole_plan.push(format!("reset every {}", describe_period(every)));
        }
        if !whole_plan.is_empty() {
            return Some(Reset::everything(usage, whole_plan.join("; ")));
        }

        let n = self.reset_after_destination_uses?;
        let due: Vec<String> = usage
            .associations
            .iter()
            .filter(|a| a.uses >= n)
            .map(|a| a.destination.clone())
            .collect();
        (!due.is_empty()).then(|| {
            Reset::dissociate(
                due,
                format!("reset after {} of a destination", plural(n, "use")),
            )
        })
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
        account: &PlanAccount,
        usage: &Usage,
        communication: &Communication,
    ) -> Result<Option<Restriction>, Error> {
        Ok(Policy::from_plan(plan)?.restriction(account, usage, communication))
    }

    fn reset(ctx: &Context, plan: &Plan, usage: &Usage) -> Result<Option<Reset>, Error> {
        Ok(Policy::from_plan(plan)?.reset(usage, ctx.now))
    }
}

rulehost_sdk::export!(PrepaidCalling: plan_policy);

#[cfg(test)]
mod tests;
