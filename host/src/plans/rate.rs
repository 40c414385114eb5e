//! Rating: what a communication costs under a plan's rates, in integer
//! minor units, and how long a balance lets one last.
//!
//! Talk time is billed in steps (`increment_secs`, the first step
//! `first_increment_secs` when set), each started step in full; a step
//! costs `per_minute × seconds / 60`, rounded up to a whole minor unit over
//! the whole billed time (so rounding never adds more than one unit).
//! Fees: `access_fee` on every completed communication, `connection_fee`
//! and `end_surcharge` when it was answered, `activation_fee` on the
//! account's first completed communication under the plan, a flat
//! `surcharge` once talk time passes `surcharge_after_secs`, and for
//! subscription plans `subscription_fee` when no paid period covers it.

use serde::Serialize;

use crate::registry::plan_file::Rates;

/// One charge of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Line {
    /// `usage`, `access`, `connection`, `activation`, `surcharge`,
    /// `end-surcharge` or `subscription`.
    pub kind: String,
    pub description: String,
    /// The seconds billed, for `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    pub amount: i64,
}

/// What is being rated beyond the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occasion {
    pub duration_secs: u64,
    pub answered: bool,
    /// The account's first completed communication under this plan.
    pub first_use: bool,
    /// No paid subscription period covers the communication.
    pub subscription_due: bool,
}

/// Every line, and their total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rated {
    pub lines: Vec<Line>,
    pub total: i64,
}

/// Seconds billed for `secs` of talk time.
pub fn billed_seconds(rates: &Rates, secs: u64) -> u64 {
    if secs == 0 {
        return 0;
    }
    let step = u64::from(rates.increment_secs.max(1));
    let first = u64::from(
        rates
            .first_increment_secs
            .unwrap_or(rates.increment_secs)
            .max(1),
    );
    if secs <= first {
        return first;
    }
    first + (secs - first).div_ceil(step) * step
}

/// The cost of `secs` of talk time (steps and the surcharge, no fees).
pub fn talk_cost(rates: &Rates, secs: u64) -> i64 {
    let billed = i128::from(billed_seconds(rates, secs));
    let usage = (i128::from(rates.per_minute) * billed + 59) / 60;
    let surcharge = match rates.surcharge_after_secs {
        Some(after) if secs > u64::from(after) => rates.surcharge,
        _ => 0,
    };
    i64::try_from(usage)
        .unwrap_or(i64::MAX)
        .saturating_add(surcharge)
}

/// The fees that do not depend on the duration, for an answered communication.
pub fn fixed_cost(rates: &Rates, first_use: bool, subscription_due: bool) -> i64 {
    let mut fixed = rates.access_fee + rates.connection_fee + rates.end_surcharge;
    if first_use {
        fixed += rates.activation_fee;
    }
    if subscription_due {
        fixed += rates.subscription_fee;
    }
    fixed
}

pub fn rate(rates: &Rates, o: Occasion) -> Rated {
    let mut lines = Vec::new();
    let mut line = |kind: &str, description: String, seconds: Option<u64>, amount: i64| {
        if amount > 0 {
            lines.push(Line {
                kind: kind.to_owned(),
                description,
                seconds,
                amount,
            });
        }
    };
    if o.subscription_due {
        let period = rates.subscription_period_secs.unwrap_or(0);
        line(
            "subscription",
            format!("subscription for {period} s"),
            None,
            rates.subscription_fee,
        );
    }
    if o.first_use {
        line(
            "activation",
            "activation fee".into(),
            None,
            rates.activation_fee,
        );
    }
    line("access", "access fee".into(), None, rates.access_fee);
    if o.answered {
        line(
            "connection",
            "connection fee".into(),
            None,
            rates.connection_fee,
        );
        let billed = billed_seconds(rates, o.duration_secs);
        let usage = talk_cost(
            &Rates {
                surcharge: 0,
                ..rates.clone()
            },
            o.duration_secs,
        );
        line(
            "usage",
            format!(
                "{billed} s billed for {} s at {} per minute",
                o.duration_secs, rates.per_minute
            ),
            Some(billed),
            usage,
        );
        if let Some(after) = rates.surcharge_after_secs
            && o.duration_secs > u64::from(after)
        {
            line(
                "surcharge",
                format!("talk time over {after} s"),
                None,
                rates.surcharge,
            );
        }
        line(
            "end-surcharge",
            "end of communication".into(),
            None,
            rates.end_surcharge,
        );
    }
    let total = lines.iter().map(|l| l.amount).sum();
    Rated { lines, total }
}

/// The longest talk time (at most `cap` seconds) whose cost is within
/// `available`; `None` when not even one step is.
pub fn max_duration(rates: &Rates, available: i64, cap: u64) -> Option<u64> {
    if available < talk_cost(rates, 1) {
        return None;
    }
    if talk_cost(rates, cap) <= available {
        return Some(cap);
    }
    // The cost only grows with the duration: the last affordable second.
    let (mut low, mut high) = (1u64, cap);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if talk_cost(rates, mid) <= available {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Some(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> Rates {
        Rates {
            per_minute: 5,
            increment_secs: 60,
            surcharge_after_secs: Some(600),
            surcharge: 5,
            ..Rates::default()
        }
    }

    fn answered(secs: u64) -> Occasion {
        Occasion {
            duration_secs: secs,
            answered: true,
            ..Occasion::default()
        }
    }

    #[test]
    fn every_started_minute_is_billed_and_the_surcharge_comes_after_ten_minutes() {
        let r = standard();
        assert_eq!(rate(&r, answered(1)).total, 5);
        assert_eq!(rate(&r, answered(60)).total, 5);
        assert_eq!(rate(&r, answered(61)).total, 10);
        assert_eq!(rate(&r, answered(600)).total, 50);
        // 10:01 is 11 started minutes and the surcharge.
        let over = rate(&r, answered(601));
        assert_eq!(over.total, 60);
        assert_eq!(
            over.lines
                .iter()
                .map(|l| l.kind.as_str())
                .collect::<Vec<_>>(),
            ["usage", "surcharge"]
        );
        assert_eq!(rate(&r, answered(0)).total, 0);
    }

    #[test]
    fn fees_follow_the_occasion() {
        let r = Rates {
            per_minute: 6,
            increment_secs: 6,
            first_increment_secs: Some(30),
            access_fee: 2,
            connection_fee: 10,
            activation_fee: 100,
            end_surcharge: 1,
            ..Rates::default()
        };
        let unanswered = rate(
            &r,
            Occasion {
                duration_secs: 0,
                answered: false,
                first_use: true,
                subscription_due: false,
            },
        );
        assert_eq!(unanswered.total, 102);
        // 31 s: a 30 s first step and one 6 s step = 36 s at 6/min = 3.6, rounded up to 4.
        let call = rate(
            &r,
            Occasion {
                duration_secs: 31,
                answered: true,
                first_use: false,
                subscription_due: false,
            },
        );
        assert_eq!(call.total, 2 + 10 + 4 + 1);
        assert_eq!(billed_seconds(&r, 31), 36);
        assert_eq!(billed_seconds(&r, 5), 30);
    }

    #[test]
    fn the_longest_affordable_talk_time_is_found() {
        let r = standard();
        // 500 buys 100 minutes without the surcharge past ten minutes: 99 minutes and the surcharge.
        assert_eq!(max_duration(&r, 500, 86_400), Some(99 * 60));
        assert_eq!(max_duration(&r, 4, 86_400), None);
        assert_eq!(max_duration(&r, 5, 86_400), Some(60));
        assert_eq!(max_duration(&Rates::default(), 0, 3600), Some(3600));
        for available in [5, 49, 55, 60, 499, 500, 10_000] {
            let d = max_duration(&r, available, 86_400).unwrap_or(0);
            assert!(talk_cost(&r, d) <= available);
            assert!(
                d == 86_400 || talk_cost(&r, d + 1) > available,
                "{available}: {d}"
            );
        }
    }
}
