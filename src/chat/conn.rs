//! One chat connection's byte-level state: incoming bytes cut into IRC lines, the flood-control
//! token bucket, and the bounded queue of outgoing lines.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The longest line content accepted (RFC 1459: 512 bytes including CR LF).
pub const MAX_LINE: usize = 510;

/// Set as the socket's context when a chat connection is accepted.
pub struct Conn {
    input: Mutex<Input>,
    output: Mutex<Output>,
}

pub struct Input {
    /// The start of a line whose end has not arrived yet (at most [`MAX_LINE`] bytes).
    partial: Vec<u8>,
    /// The current line was longer than [`MAX_LINE`]: its rest is skipped up to the LF.
    overlong: bool,
    bucket: TokenBucket,
}

#[derive(Default)]
pub struct Output {
    /// Lines not handed to the port yet.
    pub queue: VecDeque<Arc<[u8]>>,
    /// Bytes queued or in flight: what `--sendq-bytes` bounds.
    pub bytes: usize,
    /// A send is posted; its completion posts the next batch.
    pub sending: bool,
    /// Close once everything queued has been sent (after QUIT or an ERROR line).
    pub closing: bool,
    /// Gone: queue nothing more.
    pub dead: bool,
}

impl Conn {
    pub fn new(flood_rate: f64, flood_burst: u32, now: Instant) -> Self {
        Conn {
            input: Mutex::new(Input {
                partial: Vec::new(),
                overlong: false,
                bucket: TokenBucket::new(flood_rate, flood_burst, now),
            }),
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
    /// Cuts `data` into lines (LF-terminated, an optional CR before it dropped) and hands each to
    /// `on_line` with whether it was cut to [`MAX_LINE`]. Stops at the first line beyond the flood
    /// allowance.
    pub fn feed(&mut self, data: &[u8], now: Instant, mut on_line: impl FnMut(&[u8], bool)) -> Feed {
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (piece, tail) = (&rest[..end], &rest[end + 1..]);
            rest = tail;
            if !self.bucket.take(now) {
                return Feed::Flood;
            }
            let mut truncated = std::mem::take(&mut self.overlong);
            let line: &[u8] = if self.partial.is_empty() {
                piece
            } else {
                truncated |= self.push_partial(piece);
                &self.partial
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            truncated |= line.len() > MAX_LINE;
            on_line(&line[..line.len().min(MAX_LINE)], truncated);
            self.partial.clear();
        }
        self.overlong |= self.push_partial(rest);
        Feed::Ok
    }

    /// Keeps at most a line and its CR; true when bytes had to be dropped.
    fn push_partial(&mut self, piece: &[u8]) -> bool {
        let room = (MAX_LINE + 1).saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&piece[..piece.len().min(room)]);
        piece.len() > room
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

    fn input(rate: f64, burst: u32) -> Input {
        Input { partial: Vec::new(), overlong: false, bucket: TokenBucket::new(rate, burst, Instant::now()) }
    }

    #[test]
    fn lines_split_on_lf_with_optional_cr_across_reads() {
        let mut i = input(0.0, 1);
        assert_eq!(
            lines(&mut i, b"NICK a\r\nUSER a 0 * :A\nPI").0,
            [("NICK a".into(), false), ("USER a 0 * :A".into(), false)]
        );
        assert_eq!(lines(&mut i, b"NG :x\r").0, []);
        assert_eq!(lines(&mut i, b"\n").0, [("PING :x".into(), false)]);
    }

    #[test]
    fn overlong_lines_are_cut_and_flagged_and_memory_stays_bounded() {
        let mut i = input(0.0, 1);
        let long = vec![b'a'; 5000];
        for chunk in long.chunks(700) {
            assert!(lines(&mut i, chunk).0.is_empty());
            assert!(i.partial.len() <= MAX_LINE + 1);
        }
        let (got, _) = lines(&mut i, b"\nPING :ok\n");
        assert_eq!(got[0].0.len(), MAX_LINE);
        assert!(got[0].1, "flagged as truncated");
        assert_eq!(got[1], ("PING :ok".into(), false));
    }

    #[test]
    fn flood_control_stops_at_the_burst() {
        let mut i = input(1.0, 3);
        let (got, feed) = lines(&mut i, b"A\nB\nC\nD\nE\n");
        assert_eq!(got.len(), 3);
        assert_eq!(feed, Feed::Flood);
    }
}
