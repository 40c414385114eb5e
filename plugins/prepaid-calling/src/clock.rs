//! Civil time from Unix seconds, without a time crate: weekdays, clock times
//! ("HH:MM") and fixed UTC offsets. Days are 86 400 s (Unix time has no leap
//! seconds) and 1970-01-01 was a Thursday.

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
}
