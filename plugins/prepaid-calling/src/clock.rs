//! Civil time from Unix seconds, without a time crate: weekdays, clock times
//! ("HH:MM"), fixed UTC offsets and RFC 3339 instants. Days are 86 400 s
//! (Unix time has no leap seconds) and 1970-01-01 was a Thursday.

use rulehost_sdk::types::Timestamp;

pub const SECONDS_PER_DAY: i64 = 86_400;
pub const MINUTES_PER_DAY: i64 = 1_440;
pub const MINUTES_PER_WEEK: i64 = 7 * MINUTES_PER_DAY;

/// Day names, Monday first: a weekday is an index into this.
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The weekday index of 1970-01-01 (a Thursday) in [`DAYS`].
const EPOCH_WEEKDAY: i64 = 3;

/// Minutes since the epoch in local time, for a UTC offset in minutes.
pub fn local_minutes(at: Timestamp, utc_offset_minutes: i64) -> i64 {
    at.div_euclid(60) + utc_offset_minutes
}

/// Local seconds since the epoch, for a UTC offset in minutes.
pub fn local_seconds(at: Timestamp, utc_offset_minutes: i64) -> i64 {
    at + utc_offset_minutes * 60
}

/// The minute of the week (0 = Monday 00:00) of a local minute count.
pub fn minute_of_week(local_minutes: i64) -> i64 {
    (local_minutes + EPOCH_WEEKDAY * MINUTES_PER_DAY).rem_euclid(MINUTES_PER_WEEK)
}

/// The weekday index (0 = Monday) of a weekday name: `friday`, `Fri`.
pub fn parse_weekday(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    DAYS.iter()
        .position(|day| {
            day.eq_ignore_ascii_case(raw) || (raw.len() == 3 && day[..3].eq_ignore_ascii_case(raw))
        })
        .and_then(|index| i64::try_from(index).ok())
}

/// The name of a weekday index (0 = Monday).
pub fn weekday_name(index: i64) -> &'static str {
    DAYS[usize::try_from(index.rem_euclid(7)).unwrap_or(0)]
}

/// Minutes after midnight of a clock time `HH:MM` (or `H:MM`), 00:00 to
/// 23:59; `24:00` (the end of the day) too when `allow_end_of_day`.
pub fn parse_clock(raw: &str, allow_end_of_day: bool) -> Option<i64> {
    let (hours, minutes) = raw.trim().split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(1..=2).contains(&hours.len()) || minutes.len() != 2 || !digits(hours) || !digits(minutes) {
        return None;
    }
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    match (hours, minutes) {
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        (24, 0) if allow_end_of_day => Some(MINUTES_PER_DAY),
        _ => None,
    }
}

/// `HH:MM` for minutes after midnight (1440 is `24:00`).
pub fn format_clock(minutes: i64) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `UTC+02:00`, `UTC-05:30`, or `UTC` for an offset in minutes.
pub fn format_offset(minutes: i64) -> String {
    match minutes {
        0 => "UTC".to_owned(),
        _ => {
            let sign = if minutes < 0 { '-' } else { '+' };
            let abs = minutes.abs();
            format!("UTC{sign}{:02}:{:02}", abs / 60, abs % 60)
        }
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (month 1-12, day
/// 1-31, already checked). Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An RFC 3339 instant (`2026-11-20T04:00:00Z`, `2026-11-20T06:00:00+02:00`)
/// as Unix seconds. The separator may be `T`, `t` or a space, the offset
/// `Z`, `z` or `±HH:MM`. A fraction of a second rounds up to the next whole
/// second, so that "at or before `now`" keeps its meaning in whole seconds.
/// Leap seconds (`:60`) are refused, as Unix time has none.
pub fn parse_rfc3339(raw: &str) -> Option<Timestamp> {
    let b = raw.trim().as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut rest = b.get(19..)?;
    let mut fraction = false;
    if let Some(digits) = rest.strip_prefix(b".") {
        let count = digits.iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        fraction = digits[..count].iter().any(|&d| d != b'0');
        rest = &digits[count..];
    }
    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (hours, minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let minutes = hours * 60 + minutes;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };

    let local =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3_600 + minute * 60 + second;
    Some(local - offset_minutes * 60 + i64::from(fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekday(at: Timestamp, offset: i64) -> &'static str {
        weekday_name(minute_of_week(local_minutes(at, offset)) / MINUTES_PER_DAY)
    }

    #[test]
    fn weekdays_from_unix_seconds() {
        assert_eq!(weekday(0, 0), "Thursday"); // 1970-01-01
        assert_eq!(weekday(-43_200, 0), "Wednesday"); // 1969-12-31T12:00Z
        assert_eq!(weekday(1_767_225_600, 0), "Thursday"); // 2026-01-01
        assert_eq!(weekday(1_795_185_000, 0), "Friday"); // 2026-11-20T14:30Z
        assert_eq!(weekday(1_795_213_800, 0), "Friday"); // 2026-11-20T22:30Z
        assert_eq!(weekday(1_795_213_800, 120), "Saturday"); // 00:30 at UTC+2
        assert_eq!(weekday(1_795_132_800, -60), "Thursday"); // 23:00 at UTC-1
    }

    #[test]
    fn minute_of_week_starts_on_monday() {
        // 2026-11-20T14:30Z is Friday 14:30.
        let got = minute_of_week(local_minutes(1_795_185_000, 0));
        assert_eq!(got, 4 * MINUTES_PER_DAY + 14 * 60 + 30);
        assert_eq!(minute_of_week(local_minutes(1_795_185_059, 0)), got);
    }

    #[test]
    fn weekday_names_parse_in_full_or_short_any_case() {
        assert_eq!(parse_weekday("friday"), Some(4));
        assert_eq!(parse_weekday(" Fri "), Some(4));
        assert_eq!(parse_weekday("MONDAY"), Some(0));
        assert_eq!(parse_weekday("sun"), Some(6));
        assert_eq!(parse_weekday("fryday"), None);
        assert_eq!(parse_weekday("fr"), None);
        assert_eq!(parse_weekday(""), None);
    }

    #[test]
    fn clock_times_parse_strictly() {
        assert_eq!(parse_clock("14:00", false), Some(840));
        assert_eq!(parse_clock("9:05", false), Some(545));
        assert_eq!(parse_clock("00:00", false), Some(0));
        assert_eq!(parse_clock("23:59", false), Some(1439));
        assert_eq!(parse_clock("24:00", true), Some(1440));
        for bad in [
            "24:00", "25:00", "12:60", "12", "12:5", "123:00", "1a:00", "+1:00", "", ":",
            "12:00:00",
        ] {
            assert_eq!(parse_clock(bad, false), None, "{bad}");
        }
        assert_eq!(parse_clock("24:01", true), None);
    }

    #[test]
    fn clock_times_and_offsets_format() {
        assert_eq!(format_clock(840), "14:00");
        assert_eq!(format_clock(1440), "24:00");
        assert_eq!(format_clock(5), "00:05");
        assert_eq!(format_offset(0), "UTC");
        assert_eq!(format_offset(120), "UTC+02:00");
        assert_eq!(format_offset(-330), "UTC-05:30");
    }

    #[test]
    fn rfc3339_instants_parse_to_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-20T14:30:00Z"), Some(1_795_185_000));
        assert_eq!(parse_rfc3339(" 2026-11-20t14:30:00z "), Some(1_795_185_000));
        assert_eq!(parse_rfc3339("2026-11-20 14:30:00Z"), Some(1_795_185_000));
        assert_eq!(
            parse_rfc3339("2026-11-20T16:30:00+02:00"),
            Some(1_795_185_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-20T09:00:00-05:30"),
            Some(1_795_185_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-20T14:30:00-00:00"),
            Some(1_795_185_000)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        // A fraction rounds up; zeros are no fraction.
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.25Z"), Some(1));
    }

    #[test]
    fn rfc3339_refuses_what_is_not_an_instant() {
        for bad in [
            "",
            "2026-11-20",
            "2026-11-20T14:30Z",
            "2026-11-20T14:30:00",
            "2026-11-20T14:30:00+02",
            "2026-11-20T14:30:00+0200",
            "2026-11-20T14:30:00+24:00",
            "2026-11-20T14:30:00Z junk",
            "2026-11-20T14:30:00.Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-11-20T24:00:00Z",
            "2026-11-20T14:60:00Z",
            "2026-12-31T23:59:60Z",
            "+026-11-20T14:30:00Z",
            "2026/11/20T14:30:00Z",
            "2026-11-20T14:30:00\u{2212}02:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
