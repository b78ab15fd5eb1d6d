//! Line framing: cutting a byte stream into IRC lines, the same way for the server and for
//! clients.
//!
//! A line ends at LF; a CR right before the LF is dropped (RFC 1459 asks for CR LF, but clients
//! typed by hand or piped through `nc` send a bare LF). A line longer than the maximum is cut to
//! it and flagged, and its rest is skipped up to the LF, so whoever reads it can tell it was cut
//! and the stream stays in step.
//!
//! **Memory.** Between reads at most the maximum plus one byte (the line's CR) of an unfinished
//! line is kept, whatever the peer sends. Nothing is copied or allocated for a line that arrives
//! whole within one read (the common case): it is handed out as a slice of the read buffer. Only
//! a line split across reads is assembled, in a buffer that stays empty, unallocated, until one
//! is.

/// Cuts a byte stream into lines of at most `max` bytes (see the module docs).
#[derive(Debug)]
pub struct Framer {
    /// The longest line handed out, without its CR LF.
    max: usize,
    /// The start of a line whose LF has not arrived yet (at most `max` + 1 bytes: the line and
    /// its CR).
    partial: Vec<u8>,
    /// The current line was longer than `max`: its rest is skipped up to the LF.
    overlong: bool,
    /// `partial` holds the line last handed out; it is cleared on the next call.
    taken: bool,
}

/// One line of the stream, borrowed from the read buffer or from the [`Framer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line without its LF and the CR before it; at most the framer's maximum.
    pub bytes: &'a [u8],
    /// The line was longer than the maximum: `bytes` is its start.
    pub truncated: bool,
    /// A CR came right before the LF (and is not in `bytes`). Always false for a truncated
    /// line, whose end is not kept.
    pub cr: bool,
}

impl Framer {
    /// A framer for lines of at most `max` bytes without CR LF.
    pub fn new(max: usize) -> Framer {
        Framer { max, partial: Vec::new(), overlong: false, taken: false }
    }

    /// The next line: the bytes kept from earlier calls followed by `data` up to its first LF,
    /// and what follows that LF, to be passed to the next call. `None` when `data` has no LF:
    /// then its bytes are kept (up to the maximum) as the start of the next line.
    ///
    /// The line borrows from `data` or from the framer, so it must be dropped before the next
    /// call. A caller that stops calling early (say, to close a flooding connection) has simply
    /// not fed the rest.
    pub fn next_line<'s, 'd: 's>(&'s mut self, data: &'d [u8]) -> Option<(Line<'s>, &'d [u8])> {
        if std::mem::take(&mut self.taken) {
            self.partial.clear();
        }
        // memchr: SIMD where the CPU has it. Every byte of every line passes through here, and a
        // byte-at-a-time search was the load tool's hottest loop.
        let Some(end) = memchr::memchr(b'\n', data) else {
            self.overlong |= self.keep(data);
            return None;
        };
        let (piece, rest) = (&data[..end], &data[end + 1..]);
        let mut truncated = std::mem::take(&mut self.overlong);
        let whole: &[u8] = if self.partial.is_empty() {
            // The common case: a whole line within one read, no copy.
            piece
        } else {
            truncated |= self.keep(piece);
            self.taken = true;
            &self.partial
        };
        let (cr, line) = match whole.strip_suffix(b"\r") {
            Some(line) => (true, line),
            None => (false, whole),
        };
        truncated |= line.len() > self.max;
        let bytes = &line[..line.len().min(self.max)];
        Some((Line { bytes, truncated, cr: cr && !truncated }, rest))
    }

    /// Hands every line that `data` completes to `on_line`, and keeps the start of the next.
    pub fn feed(&mut self, mut data: &[u8], mut on_line: impl FnMut(Line<'_>)) {
        while let Some((line, rest)) = self.next_line(data) {
            on_line(line);
            data = rest;
        }
    }

    /// The bytes kept of the unfinished line (at most the maximum plus one).
    pub fn unfinished(&self) -> &[u8] {
        if self.taken { &[] } else { &self.partial }
    }

    /// Keeps at most a line and its CR; true when bytes had to be dropped.
    fn keep(&mut self, piece: &[u8]) -> bool {
        let room = (self.max + 1).saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&piece[..piece.len().min(room)]);
        piece.len() > room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut Framer, data: &[u8]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        framer.feed(data, |l| out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.truncated)));
        out
    }

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut framer = Framer::new(MAX_LINE);
        let mut lines = Vec::new();
        for c in chunks {
            framer.feed(c, |l| lines.push(l.bytes.to_vec()));
        }
        lines
    }

    const MAX_LINE: usize = 510;

    #[test]
    fn lines_split_on_lf_with_optional_cr_across_reads() {
        let mut f = Framer::new(MAX_LINE);
        assert_eq!(
            lines(&mut f, b"NICK a\r\nUSER a 0 * :A\nPI"),
            [("NICK a".into(), false), ("USER a 0 * :A".into(), false)]
        );
        assert_eq!(lines(&mut f, b"NG :x\r"), []);
        assert_eq!(lines(&mut f, b"\n"), [("PING :x".into(), false)]);
    }

    #[test]
    fn lines_crlf_lf_and_partial() {
        let got = split_all(&[b"PING :a\r\nPI", b"NG :b\n:srv 001", b" me :hi\r", b"\n"]);
        let want: Vec<&[u8]> = vec![b"PING :a", b"PING :b", b":srv 001 me :hi"];
        assert_eq!(got, want);
    }

    #[test]
    fn lines_byte_at_a_time() {
        let text = b"a\r\nbb\n\nccc\r\n";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        let want: Vec<&[u8]> = vec![b"a", b"bb", b"", b"ccc"];
        assert_eq!(split_all(&chunks), want);
    }

    #[test]
    fn overlong_lines_are_cut_and_flagged_and_memory_stays_bounded() {
        let mut f = Framer::new(MAX_LINE);
        let long = vec![b'a'; 5000];
        for chunk in long.chunks(700) {
            assert!(lines(&mut f, chunk).is_empty());
            assert!(f.unfinished().len() <= MAX_LINE + 1);
        }
        let got = lines(&mut f, b"\nPING :ok\n");
        assert_eq!(got[0].0.len(), MAX_LINE);
        assert!(got[0].1, "flagged as truncated");
        assert_eq!(got[1], ("PING :ok".into(), false));
    }

    #[test]
    fn a_shorter_max_line_cuts_sooner() {
        let mut f = Framer::new(62);
        let got = lines(&mut f, &[b'x'; 100]);
        assert!(got.is_empty());
        let got = lines(&mut f, b"\r\nPING :short\r\n");
        assert_eq!((got[0].0.len(), got[0].1), (62, true));
        assert_eq!(got[1], ("PING :short".into(), false));
    }

    #[test]
    fn a_line_of_exactly_the_maximum_is_whole_with_or_without_cr() {
        for (chunks, cr) in [(&[&b"xxxx\r\n"[..]][..], true), (&[b"xx", b"xx\r", b"\n"], true), (&[b"xxxx\n"], false)] {
            let mut f = Framer::new(4);
            let mut got = Vec::new();
            for c in chunks {
                f.feed(c, |l| got.push((l.bytes.to_vec(), l.truncated, l.cr)));
            }
            assert_eq!(got, [(b"xxxx".to_vec(), false, cr)], "{chunks:?}");
        }
    }

    #[test]
    fn reports_the_cr_and_keeps_a_bare_one() {
        let mut f = Framer::new(MAX_LINE);
        let mut got = Vec::new();
        f.feed(b"a\r\nb\nc\rd\r\ne\r", |l| got.push((l.bytes.to_vec(), l.cr)));
        f.feed(b"\n", |l| got.push((l.bytes.to_vec(), l.cr)));
        let want = [(&b"a"[..], true), (b"b", false), (b"c\rd", true), (b"e", true)];
        assert_eq!(got, want.map(|(b, cr)| (b.to_vec(), cr)));
    }

    #[test]
    fn how_the_stream_is_cut_into_reads_changes_nothing() {
        // xorshift64: dependency-free randomness, fixed seed.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        for _ in 0..300 {
            let stream: Vec<u8> = (0..next(3000)).map(|_| b"ab \r\n\n\0"[next(7)]).collect();
            let max = next(40);
            let collect = |chunks: &mut dyn Iterator<Item = &[u8]>| {
                let mut f = Framer::new(max);
                let mut got = Vec::new();
                for c in chunks {
                    f.feed(c, |l| got.push((l.bytes.to_vec(), l.truncated, l.cr)));
                    assert!(f.unfinished().len() <= max + 1);
                }
                (got, f.unfinished().to_vec())
            };
            let whole = collect(&mut std::iter::once(&stream[..]));
            let mut rest = &stream[..];
            let mut pieces = Vec::new();
            while !rest.is_empty() {
                let (a, b) = rest.split_at(next(rest.len() as u64 + 1).max(1));
                pieces.push(a);
                rest = b;
            }
            assert_eq!(collect(&mut pieces.into_iter()), whole);
            for (bytes, truncated, _) in &whole.0 {
                assert!(bytes.len() <= max && !bytes.contains(&b'\n'));
                assert!(!truncated || bytes.len() == max, "a truncated line is cut at the maximum");
            }
        }
    }

    #[test]
    fn the_unfinished_line_is_kept_until_its_lf() {
        let mut f = Framer::new(MAX_LINE);
        assert!(f.unfinished().is_empty());
        assert!(f.next_line(b"PRIV").is_none());
        assert_eq!(f.unfinished(), b"PRIV");
        let (line, rest) = f.next_line(b"MSG #c :x\nNI").unwrap();
        assert_eq!((line.bytes, rest), (&b"PRIVMSG #c :x"[..], &b"NI"[..]));
        assert!(f.unfinished().is_empty(), "the line handed out is not unfinished");
        assert!(f.next_line(rest).is_none());
        assert_eq!(f.unfinished(), b"NI");
    }
}
