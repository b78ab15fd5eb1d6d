//! One chat connection's byte-level state: incoming bytes cut into IRC lines (by the wire
//! crate's [`Framer`]), the flood-control token bucket, and the bounded queue of outgoing lines.

use echoport_irc::{Framer, MAX_CLIENT_TAGS};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Set as the socket's context when a chat connection is accepted.
pub struct Conn {
    /// The client's id in the chat state: unique for the server's life (and, in a cluster, in
    /// the network: its instance's tag is in the high bits).
    pub id: usize,
    input: Mutex<Input>,
    output: Mutex<Output>,
}

pub struct Input {
    /// Lines of at most `--max-line-bytes` less CR LF. The start of a line whose end has not
    /// arrived yet (at most that and its CR) is the whole receive queue the server keeps for a
    /// client, and nothing until a line arrives split across reads.
    lines: Framer,
    /// When the unfinished line (if any) began arriving, for `--line-timeout`.
    partial_since: Option<Instant>,
    bucket: TokenBucket,
}

#[derive(Default)]
pub struct Output {
    /// Lines not handed to the port yet.
    pub queue: VecDeque<Arc<[u8]>>,
    /// Bytes queued or in a posted send, until that send completes; less what the kernel has
    /// already taken of it, this is what `--sendq-bytes` bounds.
    pub bytes: usize,
    /// A send is posted; its completion posts the next batch.
    pub sending: bool,
    /// Set when the connection is to close once everything queued has been sent (after QUIT or
    /// an ERROR line): since when, for the grace period.
    pub closing_since: Option<Instant>,
    /// Gone: queue nothing more.
    pub dead: bool,
}

impl Output {
    pub fn closing(&self) -> bool {
        self.closing_since.is_some()
    }
}

impl Conn {
    /// `max_line_bytes` counts the CR LF, as `--max-line-bytes` does. Lines may be longer by
    /// an IRCv3 tag section ([`MAX_CLIENT_TAGS`]): the framer keeps room for one, and the chat
    /// server checks the tags and the rest of the line against their own limits.
    pub fn new(id: usize, flood_rate: f64, flood_burst: u32, max_line_bytes: usize, now: Instant) -> Self {
        Conn {
            id,
            input: Mutex::new(Input::new(
                max_line_bytes.saturating_sub(2) + MAX_CLIENT_TAGS,
                TokenBucket::new(flood_rate, flood_burst, now),
            )),
            output: Mutex::new(Output::default()),
        }
    }

    pub fn input(&self) -> MutexGuard<'_, Input> {
        self.input.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one received buffer amounted to.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    Ok,
    /// The client sent more lines than its flood allowance.
    Flood,
}

impl Input {
    fn new(max_line: usize, bucket: TokenBucket) -> Self {
        Input { lines: Framer::new(max_line), partial_since: None, bucket }
    }

    /// Cuts `data` into lines (see [`Framer`]: LF-terminated, an optional CR before it dropped)
    /// and hands each to `on_line` with whether it was cut to the maximum length. Stops at the
    /// first line beyond the flood allowance.
    pub fn feed(&mut self, data: &[u8], now: Instant, mut on_line: impl FnMut(&[u8], bool)) -> Feed {
        let mut rest = data;
        while let Some((line, tail)) = self.lines.next_line(rest) {
            // Whatever follows this LF is a new line, begun now.
            self.partial_since = None;
            rest = tail;
            if !self.bucket.take(now) {
                return Feed::Flood;
            }
            on_line(line.bytes, line.truncated);
        }
        if !rest.is_empty() && self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        Feed::Ok
    }

    /// Framing alone, without flood control, for the fuzz driver.
    pub fn for_fuzzing(max_line: usize) -> Self {
        Input::new(max_line, TokenBucket::new(0.0, 1, Instant::now()))
    }

    /// Bytes held of the unfinished line.
    pub fn buffered(&self) -> usize {
        self.lines.unfinished().len()
    }

    /// How long the current line has been arriving without its end; zero when none is.
    pub fn unfinished_for(&self, now: Instant) -> Duration {
        self.partial_since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// Flood control: `rate` lines a second on average, `burst` at once. A rate of 0 turns it off.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate, burst, tokens: burst, at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &mut Input, data: &[u8]) -> (Vec<(String, bool)>, Feed) {
        let mut out = Vec::new();
        let feed = input.feed(data, Instant::now(), |l, t| out.push((String::from_utf8_lossy(l).into_owned(), t)));
        (out, feed)
    }

    const MAX_LINE: usize = 510;

    fn input(rate: f64, burst: u32) -> Input {
        Input::new(MAX_LINE, TokenBucket::new(rate, burst, Instant::now()))
    }

    #[test]
    fn max_line_bytes_counts_the_cr_lf() {
        let conn = Conn::new(0, 0.0, 1, 64, Instant::now());
        let mut long = vec![b'x'; 62 + MAX_CLIENT_TAGS + 10];
        long.extend_from_slice(b"\r\nPING :short\r\n");
        let (got, _) = lines(&mut conn.input(), &long);
        assert_eq!((got[0].0.len(), got[0].1), (62 + MAX_CLIENT_TAGS, true));
        assert_eq!(got[1], ("PING :short".into(), false));
    }

    #[test]
    fn unfinished_line_age_counts_from_its_first_byte() {
        let mut i = input(0.0, 1);
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        i.feed(b"PING :a\r\n", t0, |_, _| {});
        assert_eq!(i.unfinished_for(t0 + s), Duration::ZERO, "nothing unfinished");
        i.feed(b"PRIV", t0 + s, |_, _| {});
        i.feed(b"MSG #c", t0 + 5 * s, |_, _| {});
        assert_eq!(i.unfinished_for(t0 + 10 * s), 9 * s, "more bytes of the same line do not reset it");
        i.feed(b" :x\nNI", t0 + 10 * s, |_, _| {});
        assert_eq!(i.unfinished_for(t0 + 12 * s), 2 * s, "a new line starts its own clock");
        i.feed(b"CK n\n", t0 + 12 * s, |_, _| {});
        assert_eq!(i.unfinished_for(t0 + 60 * s), Duration::ZERO);
    }

    #[test]
    fn flood_control_stops_at_the_burst() {
        let mut i = input(1.0, 3);
        let (got, feed) = lines(&mut i, b"A\nB\nC\nD\nE\n");
        assert_eq!(got.len(), 3);
        assert_eq!(feed, Feed::Flood);
    }
}
