//! A small blocking IRC client for the chat-mode integration tests.
//!
//! Included from a test file with `#[path = "common/irc.rs"] mod irc;`. It is self-contained
//! (std and the server's own wire crate, `echoport_irc`, for framing and parsing) so that it does
//! not depend on which helpers `common` exports.
//!
//! Every wait has an upper bound. How a test knows the server is done with something:
//!
//! - **A reply line is the signal.** [`Client::expect`] reads lines until one matches a predicate
//!   (lines before it are consumed and kept in the log); on timeout or EOF it panics showing
//!   every line the client sent and received.
//! - **Absence without sleeping.** [`Client::sync`] sends `PING :sync-N` and collects everything
//!   up to the matching `PONG`. The server handles one client's lines in order and queues every
//!   line it produces under one lock, so once client A's sync returns, everything A's earlier
//!   commands caused has been queued for every recipient; a sync on client B then returns
//!   everything B was sent because of them. [`Client::assert_quiet`] builds on this to say
//!   "nothing more arrived" deterministically.
//! - [`Client::assert_nothing`] is a short bounded read window: it is only for asserting that
//!   something does *not* happen where no reply can mark "done" (for instance before
//!   registration, or for events the server generates on its own). A window that is too short can
//!   only make such a test weaker, never wrongly red.
//!
//! Server `PING`s are answered automatically inside every read (unless `auto_pong` is turned
//! off) and are not handed to predicates, so a slow test is never dropped for "Ping timeout".

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default bound for one wait: generous, because CI is a loaded 2-core box.
pub const WAIT: Duration = Duration::from_secs(20);

/// How many logged lines a panic message shows at most (the most recent ones).
const LOG_SHOWN: usize = 400;

/// The longest line kept whole: far beyond the 512 bytes a server may send, so a test sees an
/// overlong line as it came (and can call it malformed), yet memory stays bounded.
const MAX_LINE: usize = 1 << 20;

/// One IRC message as received: `[@tags] [:prefix] COMMAND params... [:trailing]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// IRCv3 tags, in order, values unescaped (empty for a tag without a value).
    pub tags: Vec<(String, String)>,
    /// The source without its leading `:`.
    pub prefix: Option<String>,
    /// As received (numerics stay numerics: "001").
    pub command: String,
    /// Middle parameters and the trailing one (without its `:`), in order.
    pub params: Vec<String>,
    /// The raw bytes of the line, without its final LF (a CR before it is kept).
    pub raw: Vec<u8>,
    /// The line had more than 15 parameters: the parser, as RFC 2812 says, lets the 15th take
    /// the rest of the line.
    pub more_than_15_params: bool,
}

impl Message {
    /// Parses one line (its bytes without the final LF; a CR before it is ignored) with the
    /// server's own parser ([`echoport_irc::Message`]). Invalid UTF-8 is replaced, so any byte
    /// string gives a message; one without a command has an empty `command`.
    pub fn parse(raw: &[u8]) -> Message {
        let body = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let Some(parsed) = echoport_irc::Message::parse(body) else {
            let (prefix, command, params) = (None, String::new(), Vec::new());
            let tags = Vec::new();
            return Message { tags, prefix, command, params, raw: raw.to_vec(), more_than_15_params: false };
        };
        let last = parsed.params().last().copied().unwrap_or_default();
        Message {
            tags: parsed
                .tags
                .map(|t| echoport_irc::tags::tags(t).map(|t| (text(t.key), text(&t.value()))).collect())
                .unwrap_or_default(),
            prefix: parsed.prefix.map(text),
            command: text(parsed.command),
            params: parsed.params().iter().map(|p| text(p)).collect(),
            raw: raw.to_vec(),
            // A 15th parameter written without `:` holding a space: there were more.
            more_than_15_params: parsed.len() == 15 && !parsed.has_trailing() && last.contains(&b' '),
        }
    }

    /// The value of tag `key`, if the message has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The line as text, without CR/LF.
    pub fn line(&self) -> String {
        let body = self.raw.strip_suffix(b"\r").unwrap_or(&self.raw);
        String::from_utf8_lossy(body).into_owned()
    }

    /// The nick part of the prefix (`nick` of `nick!user@host`), or "" without a prefix.
    pub fn nick(&self) -> &str {
        self.prefix.as_deref().map_or("", |p| p.split(['!', '@']).next().unwrap_or(""))
    }

    /// Parameter `i`, or "" if there are fewer.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The last parameter, or "".
    pub fn last(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }

    pub fn is(&self, command: &str) -> bool {
        self.command.eq_ignore_ascii_case(command)
    }

    /// True for a three-digit numeric reply.
    pub fn is_numeric(&self) -> bool {
        self.command.len() == 3 && self.command.bytes().all(|b| b.is_ascii_digit())
    }

    /// True for an error numeric (400-599).
    pub fn is_error_numeric(&self) -> bool {
        self.is_numeric() && matches!(self.command.as_bytes()[0], b'4' | b'5')
    }

    /// `params` compared with `want`, where a `want` entry of `"*ANY*"` matches anything.
    pub fn params_match(&self, want: &[&str]) -> bool {
        self.params.len() == want.len() && self.params.iter().zip(want).all(|(p, w)| *w == "*ANY*" || p == w)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.line())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// Lines of a burst, for assertion messages.
pub fn show(msgs: &[Message]) -> String {
    msgs.iter().map(|m| format!("    {}\n", m.line())).collect()
}

/// Commands of a burst, in order.
pub fn commands(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.command.as_str()).collect()
}

/// Why a read stopped without a line.
enum End {
    Timeout,
    Closed(String),
}

/// A blocking IRC client over one TCP connection.
pub struct Client {
    name: String,
    reader: TcpStream,
    writer: TcpStream,
    /// Cuts what the socket gives into lines (the server's own framing).
    framer: echoport_irc::Framer,
    /// One read's bytes.
    buf: Vec<u8>,
    /// Lines cut from the socket's bytes but not read yet (not counted or logged either).
    inbox: VecDeque<Message>,
    /// Lines already read but put back, to be handed out again (see `unread`).
    pending: VecDeque<Message>,
    /// Everything sent and received, for panic messages.
    log: Vec<String>,
    /// Lines received (counted even when the log is trimmed).
    received: u64,
    /// Keep received lines in the log (turned off by bulk tests that read many thousands).
    pub log_received: bool,
    /// Answer server PINGs (and hide them from predicates). On by default.
    pub auto_pong: bool,
    /// Server PINGs answered so far.
    pub pings_answered: u64,
    /// Server PINGs received so far (answered or not).
    pub pings_seen: u64,
    closed: Option<String>,
    sync_seq: u64,
}

impl Client {
    /// Connects to `addr`; `name` labels this client in panic messages.
    pub fn connect(addr: SocketAddr, name: &str) -> Client {
        let stream =
            TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("{name}: connect to {addr}: {e}"));
        Client::from_stream(stream, name)
    }

    /// Wraps an already connected stream (for sockets set up by hand, e.g. a small SO_RCVBUF).
    pub fn from_stream(stream: TcpStream, name: &str) -> Client {
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let writer = stream.try_clone().expect("clone the stream");
        Client {
            name: name.to_owned(),
            reader: stream,
            writer,
            framer: echoport_irc::Framer::new(MAX_LINE),
            buf: vec![0; 64 * 1024],
            inbox: VecDeque::new(),
            pending: VecDeque::new(),
            log: Vec::new(),
            received: 0,
            log_received: true,
            auto_pong: true,
            pings_answered: 0,
            pings_seen: 0,
            closed: None,
            sync_seq: 0,
        }
    }

    /// Connects and registers as `nick` (see [`Client::register`]).
    pub fn registered(addr: SocketAddr, nick: &str) -> Client {
        let mut c = Client::connect(addr, nick);
        c.register(nick);
        c
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Sends one line; CR LF is appended.
    #[track_caller]
    pub fn send(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.log.push(format!("-> {line}"));
        if let Err(e) = self.writer.write_all(&bytes) {
            self.fail(&format!("writing {line:?}: {e}"));
        }
    }

    /// Sends bytes exactly as given (no terminator is added).
    #[track_caller]
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send_raw(bytes) {
            self.fail(&format!("writing {} raw bytes: {e}", bytes.len()));
        }
    }

    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.log.push(format!("-> (raw) {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)])));
        self.writer.write_all(bytes)
    }

    /// NICK + USER, then everything up to the end of the MOTD (376) or its absence (422).
    /// Panics if 001 does not come, or an ERROR or error numeric (other than 422) comes first.
    #[track_caller]
    pub fn register(&mut self, nick: &str) -> Vec<Message> {
        self.send(&format!("NICK {nick}"));
        self.send(&format!("USER {nick} 0 * :Test user {nick}"));
        self.finish_registration()
    }

    /// Connects and registers as `nick` having asked for `caps` the way irctest's connectClient
    /// does: CAP LS 302, CAP REQ (which must be ACKed), NICK, USER, CAP END, the welcome burst read.
    #[track_caller]
    pub fn with_caps(addr: SocketAddr, nick: &str, caps: &str) -> Client {
        let mut c = Client::connect(addr, nick);
        c.send("CAP LS 302");
        c.send(&format!("CAP REQ :{caps}"));
        let ack = c.expect(|m| m.is("CAP") && m.param(1) != "LS", WAIT);
        assert!(ack.params_match(&["*", "ACK", caps]), "CAP REQ :{caps} got {ack}");
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :Real {nick}"));
        c.send("CAP END");
        c.finish_registration();
        c
    }

    /// Reads the welcome burst after NICK/USER were sent (see [`Client::register`]).
    #[track_caller]
    pub fn finish_registration(&mut self) -> Vec<Message> {
        let burst = self.collect_until(|m| m.is("376") || m.is("422") || m.is("ERROR") || m.is_error_numeric(), WAIT);
        let end = burst.last().unwrap();
        if !(end.is("376") || end.is("422")) || !burst.iter().any(|m| m.is("001")) {
            self.fail(&format!("registration failed, it ended with {end}"));
        }
        burst
    }

    /// JOIN `channel` and read the join burst up to its 366 (end of NAMES).
    #[track_caller]
    pub fn join(&mut self, channel: &str) -> Vec<Message> {
        self.send(&format!("JOIN {channel}"));
        let chan = channel.to_owned();
        let burst = self.collect_until(
            |m| (m.is("366") && m.param(1).eq_ignore_ascii_case(&chan)) || m.is("ERROR") || m.is_error_numeric(),
            WAIT,
        );
        if !burst.last().unwrap().is("366") {
            self.fail(&format!("JOIN {channel} failed: {}", burst.last().unwrap()));
        }
        burst
    }

    /// Reads lines until one satisfies `pred` and returns it (the lines before it are consumed).
    /// Panics on timeout or EOF, showing every line this client sent and received.
    #[track_caller]
    pub fn expect(&mut self, pred: impl FnMut(&Message) -> bool, timeout: Duration) -> Message {
        self.collect_until(pred, timeout).pop().unwrap()
    }

    /// The next line with this command (or numeric); see [`Client::expect`].
    #[track_caller]
    pub fn expect_cmd(&mut self, command: &str) -> Message {
        self.expect(|m| m.is(command), WAIT)
    }

    /// The next line with this numeric, e.g. `expect_numeric("353")`.
    #[track_caller]
    pub fn expect_numeric(&mut self, numeric: &str) -> Message {
        self.expect_cmd(numeric)
    }

    /// Every line up to and including the first that satisfies `pred`.
    #[track_caller]
    pub fn collect_until(&mut self, mut pred: impl FnMut(&Message) -> bool, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            match self.next_before(deadline) {
                Ok(m) => {
                    let done = pred(&m);
                    got.push(m);
                    if done {
                        return got;
                    }
                }
                Err(End::Timeout) => self.fail(&format!("no matching line within {timeout:?}")),
                Err(End::Closed(why)) => self.fail(&format!("connection closed ({why}) before a matching line came")),
            }
        }
    }

    /// The next line (server PINGs excluded while `auto_pong` is on).
    #[track_caller]
    pub fn next(&mut self, timeout: Duration) -> Message {
        self.expect(|_| true, timeout)
    }

    /// The next line, or `None` if the server closed the connection first. Panics on timeout.
    #[track_caller]
    pub fn next_or_closed(&mut self, timeout: Duration) -> Option<Message> {
        match self.next_before(Instant::now() + timeout) {
            Ok(m) => Some(m),
            Err(End::Closed(_)) => None,
            Err(End::Timeout) => self.fail(&format!("no line and no EOF within {timeout:?}")),
        }
    }

    /// Waits for a server PING (answering it if `auto_pong` is on) and returns it.
    #[track_caller]
    pub fn expect_ping(&mut self, timeout: Duration) -> Message {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_line(deadline) {
                Ok(m) if m.is("PING") => {
                    if self.auto_pong {
                        self.pong(&m);
                    }
                    return m;
                }
                Ok(_) => {}
                Err(End::Timeout) => self.fail(&format!("no PING from the server within {timeout:?}")),
                Err(End::Closed(why)) => self.fail(&format!("connection closed ({why}) while waiting for a PING")),
            }
        }
    }

    /// Sends `PING :sync-N` and returns every line received before the matching PONG: once it
    /// returns, the server has handled everything this client sent before, and everything that
    /// caused for this client has arrived.
    #[track_caller]
    pub fn sync(&mut self) -> Vec<Message> {
        self.sync_seq += 1;
        let token = format!("sync-{}-{}", self.name, self.sync_seq);
        self.send(&format!("PING :{token}"));
        let mut got = self.collect_until(|m| m.is("PONG") && m.last() == token, WAIT);
        got.pop();
        got
    }

    /// Asserts (via [`Client::sync`]) that nothing is pending for this client.
    #[track_caller]
    pub fn assert_quiet(&mut self, what: &str) {
        let got = self.sync();
        if !got.is_empty() {
            self.fail(&format!("{what}: expected no lines, got:\n{}", show(&got)));
        }
    }

    /// Asserts that no line arrives for `window`. ONLY for asserting absence where no reply can
    /// mark the end (prefer [`Client::assert_quiet`]): it is a bounded read window, not a
    /// synchronisation. Server PINGs are answered and do not count.
    #[track_caller]
    pub fn assert_nothing(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        match self.next_before(deadline) {
            Err(End::Timeout) => {}
            Ok(m) => self.fail(&format!("expected nothing for {window:?}, got {m}")),
            Err(End::Closed(why)) => {
                self.fail(&format!("expected nothing for {window:?}, the connection closed ({why})"))
            }
        }
    }

    /// Every line that arrives within `window` (less if the connection closes), never failing:
    /// for keeping a client that is being sent traffic drained while a test waits for something
    /// else (a log line, a timer). Not a synchronisation: what arrives after `window` is simply
    /// read by the next call.
    pub fn read_for(&mut self, window: Duration) -> Vec<Message> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(m) = self.next_before(deadline) {
            got.push(m);
        }
        got
    }

    /// Reads until the server closes the connection (EOF or reset); returns the lines before it.
    #[track_caller]
    pub fn expect_closed(&mut self, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            match self.read_line(deadline) {
                Ok(m) => got.push(m),
                Err(End::Closed(_)) => return got,
                Err(End::Timeout) => self.fail(&format!("the server did not close the connection within {timeout:?}")),
            }
        }
    }

    /// True once EOF or a reset was seen.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Puts lines back to be read again first (in the given order).
    pub fn unread(&mut self, msgs: Vec<Message>) {
        for m in msgs.into_iter().rev() {
            self.pending.push_front(m);
        }
    }

    /// Every line sent (`->`) and received (`<-`) so far (the most recent ones if there are many).
    pub fn log(&self) -> String {
        let skip = self.log.len().saturating_sub(LOG_SHOWN);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!("    ... {skip} earlier lines not shown ...\n"));
        }
        for l in &self.log[skip..] {
            out.push_str("    ");
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n  {} lines received in all; transcript (-> sent, <- received):\n{}",
            self.name,
            self.received,
            self.log()
        );
    }

    fn pong(&mut self, ping: &Message) {
        let line = format!("PONG :{}", ping.last());
        self.pings_answered += 1;
        // A failed write shows up as EOF or a reset on the next read.
        let _ = self.writer.write_all(format!("{line}\r\n").as_bytes());
        self.log.push(format!("-> {line} (auto)"));
    }

    /// The next line for a caller: server PINGs are answered and skipped while `auto_pong` is on.
    fn next_before(&mut self, deadline: Instant) -> Result<Message, End> {
        loop {
            let m = self.read_line(deadline)?;
            if self.auto_pong && m.is("PING") {
                self.pong(&m);
                continue;
            }
            return Ok(m);
        }
    }

    /// One line from the socket (or the pending queue), bounded by `deadline`.
    fn read_line(&mut self, deadline: Instant) -> Result<Message, End> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(m);
        }
        loop {
            if let Some(m) = self.inbox.pop_front() {
                self.received += 1;
                if m.is("PING") {
                    self.pings_seen += 1;
                }
                if self.log_received {
                    self.log.push(format!("<- {}", m.line()));
                }
                return Ok(m);
            }
            if let Some(why) = &self.closed {
                return Err(End::Closed(why.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(End::Timeout);
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            self.reader.set_read_timeout(Some(left)).unwrap();
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    let unfinished = self.framer.unfinished();
                    let why = if unfinished.is_empty() {
                        "EOF".to_owned()
                    } else {
                        format!("EOF after an unterminated line {:?}", String::from_utf8_lossy(unfinished))
                    };
                    self.log.push(format!("<- ({why})"));
                    self.closed = Some(why.clone());
                    return Err(End::Closed(why));
                }
                Ok(n) => {
                    let inbox = &mut self.inbox;
                    self.framer.feed(&self.buf[..n], |line| {
                        // The raw line keeps the CR it came with, for tests of the server's CR LF.
                        let mut raw = line.bytes.to_vec();
                        if line.cr {
                            raw.push(b'\r');
                        }
                        inbox.push_back(Message::parse(&raw));
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("read error: {e}");
                    self.log.push(format!("<- ({why})"));
                    self.closed = Some(why.clone());
                    return Err(End::Closed(why));
                }
            }
        }
    }
}

/// The ISUPPORT (005) tokens of a welcome burst as key -> value ("" for a token without one).
pub fn isupport(burst: &[Message]) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for m in burst.iter().filter(|m| m.is("005")) {
        for tok in &m.params[1..m.params.len().saturating_sub(1)] {
            let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}
