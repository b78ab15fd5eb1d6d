//! Time as the protocol shows it: the server's `Instant`s as Unix time, the human form of a
//! Unix time (003, TIME), and the IRCv3 `server-time` form.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::ChatServer;

impl ChatServer {
    /// The `Instant` of a Unix time in milliseconds, on this server's clock: the inverse of
    /// [`unix_ms`](Self::unix_ms), exact to the millisecond (a cluster passes event times
    /// between instances as Unix milliseconds).
    pub fn instant_of(&self, unix_ms: u64) -> Instant {
        instant_at(self.clock, unix_ms)
    }

    /// Unix time in seconds.
    pub(super) fn unix(&self, now: Instant) -> u64 {
        self.unix_ms(now) / 1000
    }

    /// Unix time in milliseconds.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        unix_ms_at(self.clock, now)
    }
}

fn unix_ms_at((base, unix_ms): (Instant, u64), now: Instant) -> u64 {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match now.checked_duration_since(base) {
        Some(d) => unix_ms.saturating_add(ms(d)),
        None => unix_ms.saturating_sub(ms(base.duration_since(now))),
    }
}

fn instant_at((base, base_ms): (Instant, u64), unix_ms: u64) -> Instant {
    if unix_ms >= base_ms {
        base + Duration::from_millis(unix_ms - base_ms)
    } else {
        // Before the monotonic clock's start (a time from long before this process): the
        // earliest instant there is will do.
        base.checked_sub(Duration::from_millis(base_ms - unix_ms)).unwrap_or(base)
    }
}

thread_local! {
    /// The clock [`as_unix_ms`] converts with while a snapshot is written or read
    /// ([`with_clock`]): `Instant`s mean nothing to another process, Unix times do.
    static CLOCK: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// Runs `f` with `clock` as the one [`as_unix_ms`] uses on this thread.
pub(super) fn with_clock<T>(clock: (Instant, u64), f: impl FnOnce() -> T) -> T {
    let old = CLOCK.replace(Some(clock));
    let out = f();
    CLOCK.set(old);
    out
}

/// serde for `Instant` fields: Unix milliseconds on the wire, on the clock set by [`with_clock`].
pub(super) mod as_unix_ms {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Instant;

    fn clock() -> (Instant, u64) {
        // Outside `with_clock` (no snapshot code path does that): now is as good as any.
        super::CLOCK.get().unwrap_or_else(|| (Instant::now(), 0))
    }

    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        super::unix_ms_at(clock(), *t).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        Ok(super::instant_at(clock(), u64::deserialize(d)?))
    }

    /// The same for `Option<Instant>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
            t.map(|t| super::super::unix_ms_at(clock(), t)).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
            Ok(Option::<u64>::deserialize(d)?.map(|ms| super::super::instant_at(clock(), ms)))
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

/// The Unix time in milliseconds of a `server-time` timestamp (`2026-12-01T14:20:05.123Z`; the
/// fraction may have 0 to 9 digits), or None if it is not one.
pub(super) fn parse_server_time(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten()
    };
    let mut d = date.split('-');
    let (year, month, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, m, sec) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if d.next().is_some() || t.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970
    {
        return None;
    }
    if h > 23 || m > 59 || sec > 60 || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + h * 3600 + m * 60 + sec) * 1000) + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of [`civil_date`]).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y % 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_round_trips() {
        for ms in [0, 1_000_000_000_123, 1_764_598_805_123, 951_782_400_000, 4_102_444_799_999] {
            let text = server_time(ms);
            assert_eq!(parse_server_time(text.as_bytes()), Some(ms), "{text}");
        }
        assert_eq!(parse_server_time(b"2026-12-01T14:20:05Z"), parse_server_time(b"2026-12-01T14:20:05.000Z"));
        assert_eq!(parse_server_time(b"2026-12-01T14:20:05.1234Z"), parse_server_time(b"2026-12-01T14:20:05.123Z"));
        for bad in [&b""[..], b"2026-12-01", b"2026-13-01T00:00:00Z", b"2026-12-01T24:00:00Z", b"x026-12-01T00:00:00Z"]
        {
            assert_eq!(parse_server_time(bad), None, "{bad:?}");
        }
    }
}
