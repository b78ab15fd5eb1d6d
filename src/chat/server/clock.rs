//! Time as the protocol shows it: the server's `Instant`s as Unix time, the human form of a
//! Unix time (003, TIME), and the IRCv3 `server-time` form.

use std::time::Instant;

use super::ChatServer;

impl ChatServer {
    /// Unix time in seconds.
    pub(super) fn unix(&self, now: Instant) -> u64 {
        self.unix_ms(now) / 1000
    }

    /// Unix time in milliseconds.
    pub(super) fn unix_ms(&self, now: Instant) -> u64 {
        let (base, unix_ms) = self.clock;
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match now.checked_duration_since(base) {
            Some(d) => unix_ms.saturating_add(ms(d)),
            None => unix_ms.saturating_sub(ms(base.duration_since(now))),
        }
    }
}

/// e.g. `Thursday January 1 1970 -- 00:00:00 +00:00` (UTC).
pub(super) fn format_time(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_date(days);
    format!(
        "{} {} {} {} -- {:02}:{:02}:{:02} +00:00",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// RFC 3339 in UTC with milliseconds, as the `time` tag carries it: `2026-12-01T14:20:05.123Z`.
pub(super) fn server_time(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (year, month, day) = civil_date(secs / 86_400);
    let s = secs % 86_400;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z", s / 3600, s / 60 % 60, s % 60)
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01, proleptic Gregorian.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so the leap day ends each 4/100/400-year cycle.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
