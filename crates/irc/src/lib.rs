//! IRC message syntax (RFC 1459 section 2.3, RFC 2812 section 2.3) as the echoport server, its
//! load tool and its test client all speak it: cutting a byte stream into lines ([`Framer`]),
//! parsing one line into its tags, source, command and parameters ([`Message`]), building
//! outgoing lines ([`LineBuilder`]), and the rfc1459 case mapping ([`fold`], [`eq_fold`]).
//!
//! Everything here works on bytes, never on `str`: IRC is a byte protocol, a line may carry any
//! encoding (or none), and invalid UTF-8 must be relayed as it came, not rejected or replaced.
//!
//! **Control characters.** [`Framer`] splits the stream on LF, so a line never contains LF. A line
//! may still contain CR (from "a\rb\r\n") or NUL. [`sanitize`] cuts a line at its first CR, LF or
//! NUL and the server parses only what comes before: nothing after such a byte is ever processed
//! or relayed, so a relayed message can never smuggle a second IRC line to its recipients. As a
//! second line of defence, [`LineBuilder`] cuts every parameter it is given at its first CR, LF or
//! NUL as well, so no outgoing line can contain those bytes whatever its source.
//!
//! **Length.** An outgoing line is at most [`MAX_LINE`] bytes including CR LF; a longer one has its
//! trailing parameter shortened, on a UTF-8 character boundary where the text is UTF-8.

mod framing;
pub mod tags;

pub use framing::{Framer, Line};
pub use tags::{MAX_CLIENT_TAGS, MAX_TAGS};

use std::sync::Arc;

/// The most bytes of one IRC line, CR LF included (RFC 2812 section 2.3).
pub const MAX_LINE: usize = 512;
/// The most bytes of one IRC line without its CR LF.
pub const MAX_BODY: usize = MAX_LINE - 2;
/// The most parameters a message carries (RFC 2812: 14 middle parameters and a trailing one).
pub const MAX_PARAMS: usize = 15;

/// The part of `line` before its first CR, LF or NUL (see the module docs).
pub fn sanitize(line: &[u8]) -> &[u8] {
    match memchr::memchr3(b'\r', b'\n', 0, line) {
        Some(end) => &line[..end],
        None => line,
    }
}

/// One parsed message, borrowing from the line: `[@tags] [:prefix] COMMAND params...`.
///
/// The server ignores the tags and the prefix a client sends: a client cannot choose its own
/// source. Clients read the prefix of what a server sends: it says who the message is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// IRCv3 message tags without the `@`, unparsed; `None` without any.
    pub tags: Option<&'a [u8]>,
    /// The source (`nick!user@host` or a server name) without the `:`; `None` without one.
    pub prefix: Option<&'a [u8]>,
    /// The command as sent (any case); never empty.
    pub command: &'a [u8],
    params: [&'a [u8]; MAX_PARAMS],
    len: usize,
    /// The last parameter was written with a `:`.
    trailing: bool,
}

impl<'a> Message<'a> {
    /// Parses one line (without CR LF; the server calls [`sanitize`] first). Runs of spaces
    /// separate parameters; a parameter starting with `:` (or the 15th) takes the rest of the
    /// line, spaces included. Returns `None` for a line with no command (empty, only spaces, or
    /// only tags and a prefix).
    pub fn parse(line: &'a [u8]) -> Option<Message<'a>> {
        let mut rest = skip_spaces(line);
        let mut tags = None;
        if let Some(t) = rest.strip_prefix(b"@") {
            let (word, tail) = split_word(t);
            tags = Some(word);
            rest = skip_spaces(tail);
        }
        let mut prefix = None;
        if let Some(p) = rest.strip_prefix(b":") {
            let (word, tail) = split_word(p);
            prefix = Some(word);
            rest = skip_spaces(tail);
        }
        let (command, tail) = split_word(rest);
        if command.is_empty() {
            return None;
        }
        let mut msg = Message { tags, prefix, command, params: [&[]; MAX_PARAMS], len: 0, trailing: false };
        rest = tail;
        loop {
            rest = skip_spaces(rest);
            if rest.is_empty() {
                break;
            }
            if rest[0] == b':' {
                msg.push(&rest[1..]);
                msg.trailing = true;
                break;
            }
            if msg.len == MAX_PARAMS - 1 {
                msg.push(rest);
                break;
            }
            let (word, tail) = split_word(rest);
            msg.push(word);
            rest = tail;
        }
        Some(msg)
    }

    fn push(&mut self, param: &'a [u8]) {
        self.params[self.len] = param;
        self.len += 1;
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[&'a [u8]] {
        &self.params[..self.len]
    }

    /// Parameter `i`, if present.
    pub fn param(&self, i: usize) -> Option<&'a [u8]> {
        self.params().get(i).copied()
    }

    /// Parameter `i` if present and not empty.
    pub fn nonempty(&self, i: usize) -> Option<&'a [u8]> {
        self.param(i).filter(|p| !p.is_empty())
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the message has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if the last parameter was written with a `:` (so it may be empty or hold spaces).
    /// A 15th parameter without one that holds a space means the line had more than 15.
    pub fn has_trailing(&self) -> bool {
        self.trailing
    }

    /// The reply code of a three-digit numeric command (`001` is 1).
    pub fn numeric(&self) -> Option<u16> {
        match *self.command {
            [a, b, c] if [a, b, c].iter().all(u8::is_ascii_digit) => {
                Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
            }
            _ => None,
        }
    }

    /// The command in upper case, written into `buf`; `None` if it is longer than `buf`.
    pub fn command_upper<'b>(&self, buf: &'b mut [u8; 16]) -> Option<&'b [u8]> {
        let n = self.command.len();
        if n > buf.len() {
            return None;
        }
        for (dst, src) in buf.iter_mut().zip(self.command) {
            *dst = src.to_ascii_uppercase();
        }
        Some(&buf[..n])
    }
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    s.split_at(n)
}

/// The longest prefix of `s` that is at most `max` bytes, shortened by up to 3 more bytes so that
/// it does not end inside a UTF-8 character (text that is not UTF-8 is cut at `max`).
pub fn truncate_utf8(s: &[u8], max: usize) -> &[u8] {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && max - end < 3 && is_continuation(s[end]) {
        end -= 1;
    }
    if is_continuation(s[end]) {
        // Not UTF-8 after all (four continuation bytes in a row): cut where the limit says.
        end = max;
    }
    &s[..end]
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Builds one outgoing line: `[:prefix] COMMAND middle... [:trailing]\r\n`, at most [`MAX_LINE`]
/// bytes, as a shared buffer so a broadcast allocates it once.
#[derive(Clone, Debug)]
pub struct LineBuilder {
    buf: Vec<u8>,
}

impl LineBuilder {
    /// Starts a line with source `prefix` (no `:`; empty for none) and `command`.
    pub fn new(prefix: &[u8], command: &[u8]) -> LineBuilder {
        let mut buf = Vec::with_capacity(96);
        let prefix = sanitize(prefix);
        if !prefix.is_empty() {
            buf.push(b':');
            buf.extend_from_slice(prefix);
            buf.push(b' ');
        }
        buf.extend_from_slice(sanitize(command));
        LineBuilder { buf }
    }

    /// Appends a middle parameter. It is cut at its first space, CR, LF or NUL; if that leaves it
    /// empty or starting with `:` (which would change the line's structure), `*` is sent instead.
    pub fn middle(mut self, param: &[u8]) -> LineBuilder {
        let param = sanitize(param);
        let param = split_word(param).0;
        self.buf.push(b' ');
        if param.is_empty() || param[0] == b':' {
            self.buf.push(b'*');
        } else {
            self.buf.extend_from_slice(param);
        }
        self
    }

    /// The length so far, without CR LF.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing has been written (never, once built with [`LineBuilder::new`]).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many bytes a trailing parameter may have and still fit the line.
    pub fn trailing_room(&self) -> usize {
        MAX_BODY.saturating_sub(self.buf.len() + 2)
    }

    /// Appends the trailing parameter (always written with `:`; cut at its first CR, LF or NUL,
    /// then shortened to fit the line) and finishes the line.
    pub fn trailing(mut self, param: &[u8]) -> Arc<[u8]> {
        let param = truncate_utf8(sanitize(param), self.trailing_room());
        self.buf.extend_from_slice(b" :");
        self.buf.extend_from_slice(param);
        self.finish()
    }

    /// Finishes the line (cutting it at [`MAX_BODY`] bytes if middle parameters alone overflow).
    pub fn finish(mut self) -> Arc<[u8]> {
        if self.buf.len() > MAX_BODY {
            let keep = truncate_utf8(&self.buf, MAX_BODY).len();
            self.buf.truncate(keep);
        }
        self.buf.extend_from_slice(b"\r\n");
        Arc::from(self.buf)
    }
}

/// rfc1459 case mapping of one byte: `A-Z` to `a-z`, and `[]\~` to `{}|^`.
pub fn fold_byte(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b + 32,
        b'[' => b'{',
        b']' => b'}',
        b'\\' => b'|',
        b'~' => b'^',
        _ => b,
    }
}

/// The rfc1459 case-folded form of a nick or channel name: the key for lookups and duplicates.
pub fn fold(s: &[u8]) -> Box<[u8]> {
    s.iter().map(|&b| fold_byte(b)).collect()
}

/// True if `a` and `b` are the same name under rfc1459 case mapping.
pub fn eq_fold(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold_byte(x) == fold_byte(y))
}

/// Wildcard match under rfc1459 case mapping: `*` matches any run of bytes, `?` any one byte.
pub fn wildcard_match(mask: &[u8], text: &[u8]) -> bool {
    let (mut m, mut t) = (0, 0);
    // Where to resume after the last `*`: (mask position after it, text position it covers to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if m < mask.len() && mask[m] == b'*' {
            m += 1;
            star = Some((m, t));
        } else if m < mask.len() && (mask[m] == b'?' || fold_byte(mask[m]) == fold_byte(text[t])) {
            m += 1;
            t += 1;
        } else if let Some((sm, st)) = star {
            m = sm;
            t = st + 1;
            star = Some((sm, st + 1));
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> (String, Vec<String>) {
        let m = Message::parse(line.as_bytes()).expect("a command");
        (
            String::from_utf8_lossy(m.command).into_owned(),
            m.params().iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect(),
        )
    }

    fn text(line: &Arc<[u8]>) -> &str {
        std::str::from_utf8(line).unwrap()
    }

    #[test]
    fn parses_commands_and_params() {
        assert_eq!(parse("NICK foo"), ("NICK".into(), vec!["foo".into()]));
        assert_eq!(
            parse("PRIVMSG #chan :hello  there :)"),
            ("PRIVMSG".into(), vec!["#chan".into(), "hello  there :)".into()])
        );
        assert_eq!(
            parse("USER u 0 * :Real Name"),
            ("USER".into(), vec!["u".into(), "0".into(), "*".into(), "Real Name".into()])
        );
        assert_eq!(parse("quit"), ("quit".into(), vec![]));
        assert_eq!(parse("PING :"), ("PING".into(), vec!["".into()]));
        assert_eq!(parse("TOPIC #c :"), ("TOPIC".into(), vec!["#c".into(), "".into()]));
    }

    #[test]
    fn collapses_spaces_and_skips_prefix_and_tags() {
        assert_eq!(parse("  JOIN   #a,#b    key  "), ("JOIN".into(), vec!["#a,#b".into(), "key".into()]));
        assert_eq!(parse(":evil!x@y PRIVMSG bob :hi"), ("PRIVMSG".into(), vec!["bob".into(), "hi".into()]));
        assert_eq!(parse("@time=1;x=y :src NOTICE bob :hi"), ("NOTICE".into(), vec!["bob".into(), "hi".into()]));
    }

    #[test]
    fn clients_read_the_tags_prefix_and_numeric() {
        let m = Message::parse(b"@time=x :nick!u@h PRIVMSG #bench :1 2 3 xx").unwrap();
        assert_eq!(m.tags, Some(&b"time=x"[..]));
        assert_eq!(m.prefix, Some(&b"nick!u@h"[..]));
        assert_eq!(m.command, b"PRIVMSG");
        let params: Vec<&[u8]> = m.params().to_vec();
        assert_eq!(params, [&b"#bench"[..], b"1 2 3 xx"]);

        let m = Message::parse(b":srv 366 l1 #Bench :End of NAMES list").unwrap();
        assert_eq!(m.numeric(), Some(366));
        assert!(eq_fold(m.param(1).unwrap(), b"#bench"));
        assert_eq!(Message::parse(b"PRIVMSG").unwrap().param(0), None);
        assert_eq!(Message::parse(b"001").unwrap().numeric(), Some(1));
        assert_eq!(Message::parse(b"NOTICE x").unwrap().numeric(), None);
        assert_eq!(Message::parse(b"01a x").unwrap().numeric(), None);
        let m = Message::parse(b"PING x").unwrap();
        assert_eq!((m.tags, m.prefix), (None, None));
        assert_eq!(Message::parse(b": PING x").unwrap().prefix, Some(&b""[..]));
    }

    #[test]
    fn has_trailing_tells_how_the_last_param_was_written() {
        assert!(Message::parse(b"PRIVMSG #c :hi").unwrap().has_trailing());
        assert!(Message::parse(b"PING :").unwrap().has_trailing());
        assert!(!Message::parse(b"PING x").unwrap().has_trailing());
        assert!(!Message::parse(b"QUIT").unwrap().has_trailing());
        // More than 15 parameters: the 15th takes the rest, without a `:`.
        let m = Message::parse(b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 :16").unwrap();
        assert!(!m.has_trailing() && m.param(14) == Some(b"15 :16"));
        assert!(Message::parse(b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 :15").unwrap().has_trailing());
    }

    #[test]
    fn no_command_is_none() {
        for line in ["", "   ", ":prefix", ":prefix   ", "@tags", "@tags :prefix "] {
            assert!(Message::parse(line.as_bytes()).is_none(), "{line:?}");
        }
    }

    #[test]
    fn fifteenth_param_takes_the_rest() {
        let line = "CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 :17";
        let (_, params) = parse(line);
        assert_eq!(params.len(), 15);
        assert_eq!(params[13], "14");
        assert_eq!(params[14], "15 16 :17");
        let (_, params) = parse("CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 :a b");
        assert_eq!(params.len(), 15);
        assert_eq!(params[14], "a b");
    }

    #[test]
    fn command_upper() {
        let m = Message::parse(b"privMsg x").unwrap();
        let mut buf = [0; 16];
        assert_eq!(m.command_upper(&mut buf), Some(&b"PRIVMSG"[..]));
        let m = Message::parse(b"AVERYLONGCOMMANDNAME x").unwrap();
        assert_eq!(m.command_upper(&mut buf), None);
    }

    #[test]
    fn sanitize_cuts_at_cr_lf_nul() {
        assert_eq!(sanitize(b"PRIVMSG #a :x\rPRIVMSG #b :y"), b"PRIVMSG #a :x");
        assert_eq!(sanitize(b"abc\0def"), b"abc");
        assert_eq!(sanitize(b"abc\ndef"), b"abc");
        assert_eq!(sanitize(b"abc"), b"abc");
    }

    #[test]
    fn builds_lines() {
        let l = LineBuilder::new(b"srv", b"001").middle(b"nick").trailing(b"Welcome");
        assert_eq!(text(&l), ":srv 001 nick :Welcome\r\n");
        let l = LineBuilder::new(b"", b"PING").trailing(b"srv");
        assert_eq!(text(&l), "PING :srv\r\n");
        let l = LineBuilder::new(b"n!u@h", b"JOIN").middle(b"#c").finish();
        assert_eq!(text(&l), ":n!u@h JOIN #c\r\n");
        let l = LineBuilder::new(b"srv", b"X").middle(b"").middle(b":x").middle(b"a b").finish();
        assert_eq!(text(&l), ":srv X * * a\r\n");
        let l = LineBuilder::new(b"srv", b"X").middle(b"a\r\nQUIT").trailing(b"t\0ext\r\nKILL");
        assert_eq!(text(&l), ":srv X a :t\r\n");
    }

    #[test]
    fn caps_length_on_utf8_boundary() {
        let long = "é".repeat(400); // 800 bytes
        let l = LineBuilder::new(b"n!u@h", b"PRIVMSG").middle(b"#c").trailing(long.as_bytes());
        assert!(l.len() <= MAX_LINE);
        assert!(l.ends_with(b"\r\n"));
        let s = std::str::from_utf8(&l).expect("cut on a character boundary");
        assert!(s.len() >= MAX_LINE - 3, "{}", s.len());
        // Bytes that are not UTF-8 are cut at the limit exactly.
        let l = LineBuilder::new(b"n!u@h", b"PRIVMSG").middle(b"#c").trailing(&[0x80; 600]);
        assert_eq!(l.len(), MAX_LINE);
        // Middles alone too long: the line is still capped.
        let mut b = LineBuilder::new(b"srv", b"X");
        for _ in 0..14 {
            b = b.middle(&[b'm'; 60]);
        }
        let l = b.trailing(b"t");
        assert_eq!(l.len(), MAX_LINE);
        assert!(l.ends_with(b"\r\n"));
    }

    #[test]
    fn truncate_utf8_boundaries() {
        assert_eq!(truncate_utf8("aé".as_bytes(), 2), b"a");
        assert_eq!(truncate_utf8("aé".as_bytes(), 3), "aé".as_bytes());
        assert_eq!(truncate_utf8("a😀".as_bytes(), 4), b"a");
        assert_eq!(truncate_utf8(b"abc", 0), b"");
        assert_eq!(truncate_utf8(&[0x80, 0x80, 0x80, 0x80, 0x80], 4), &[0x80; 4]);
    }

    #[test]
    fn casemapping() {
        assert!(eq_fold(b"Nick[A]\\~", b"nick{a}|^"));
        assert!(!eq_fold(b"nick", b"nick_"));
        assert_eq!(&*fold(b"FOO[]"), b"foo{}");
        assert!(wildcard_match(b"cool*", b"COOLNick"));
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"c?o*k", b"cOOlnicK"));
        assert!(wildcard_match(b"*an1", b"#chan1"));
        assert!(!wildcard_match(b"*an2", b"#chan1"));
        assert!(wildcard_match(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard_match(b"a*b*c", b"axxbyy"));
        assert!(wildcard_match(b"[x]", b"{X}"));
        assert!(!wildcard_match(b"", b"x"));
    }

    #[test]
    fn channel_names_fold_rfc1459() {
        assert!(eq_fold(b"#Bench[1]", b"#bench{1}"));
        assert!(eq_fold(b"#a\\b~", b"#A|B^"));
        assert!(!eq_fold(b"#bench", b"#bench2"));
    }

    /// xorshift64*: a dependency-free PRNG for the property tests.
    struct Rng(pub u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_parse_sanely() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let alphabet = b" :@!#,abcAB\r\n\0\x01\xff\xc3\xa9";
        for _ in 0..50_000 {
            let len = rng.below(600);
            let line: Vec<u8> = (0..len)
                .map(|_| if rng.below(4) == 0 { rng.next() as u8 } else { alphabet[rng.below(alphabet.len())] })
                .collect();
            let clean = sanitize(&line);
            assert!(!clean.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            let Some(m) = Message::parse(clean) else {
                continue;
            };
            assert!(!m.command.is_empty());
            assert!(!m.command.contains(&b' '));
            assert!(m.len() <= MAX_PARAMS);
            let n = m.len();
            for (i, p) in m.params().iter().enumerate() {
                if i + 1 < n {
                    assert!(!p.is_empty() && !p.contains(&b' ') && p[0] != b':');
                }
            }
            // Whatever was parsed, a line built from it is one well-formed line.
            let mut b = LineBuilder::new(b"n!u@h", m.command);
            for p in &m.params()[..n.saturating_sub(1)] {
                b = b.middle(p);
            }
            let out = match m.params().last() {
                Some(last) => b.trailing(last),
                None => b.finish(),
            };
            assert!(out.len() <= MAX_LINE);
            assert!(out.ends_with(b"\r\n"));
            let body = &out[..out.len() - 2];
            assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        }
    }

    #[test]
    fn round_trip_of_random_messages() {
        let mut rng = Rng(42);
        let word_bytes = b"abcXYZ019#&!@[]{}|^-_.\x01\xc3\xa9";
        for _ in 0..20_000 {
            let word = |rng: &mut Rng, min: usize| -> Vec<u8> {
                let n = min + rng.below(8);
                (0..n).map(|_| word_bytes[rng.below(word_bytes.len())]).collect()
            };
            let command: Vec<u8> = (0..1 + rng.below(8)).map(|_| b'A' + rng.below(26) as u8).collect();
            let nparams = rng.below(MAX_PARAMS + 1);
            let mut params: Vec<Vec<u8>> = (0..nparams).map(|_| word(&mut rng, 1)).collect();
            let with_trailing = nparams > 0 && rng.below(2) == 0;
            if with_trailing {
                let last = params.last_mut().unwrap();
                last.extend_from_slice(b" :with spaces ");
            }
            let mut b = LineBuilder::new(b"", &command);
            let out = if with_trailing {
                for p in &params[..nparams - 1] {
                    b = b.middle(p);
                }
                b.trailing(&params[nparams - 1])
            } else {
                for p in &params {
                    b = b.middle(p);
                }
                b.finish()
            };
            let body = &out[..out.len() - 2];
            let m = Message::parse(body).unwrap();
            assert_eq!(m.command, &command[..]);
            let got: Vec<&[u8]> = m.params().to_vec();
            let want: Vec<&[u8]> = params.iter().map(|p| &p[..]).collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
        }
    }
}
