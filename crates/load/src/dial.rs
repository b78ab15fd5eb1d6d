//! Opening connections without blocking: a non-blocking connect (optionally from a chosen source
//! address) followed by one verified round trip. A completed handshake only means the kernel
//! queued the connection; the echo proves the server accepted it and is serving it, and waiting
//! for it before opening more keeps the server's accept queue from overflowing. With `--tls` the
//! round trip goes through the session, so it also proves the handshake (whose time is recorded).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use super::link::Link;
use super::record::{self, Recorder};
use super::tls::Tls;

/// Where and how to connect; shared by every scenario.
#[derive(Clone, Debug)]
pub struct Dialer {
    pub target: SocketAddr,
    /// Source addresses used round-robin; empty means "let the kernel choose".
    pub sources: Vec<IpAddr>,
    /// Bound on the whole opening phase (and on any single attempt).
    pub timeout: Duration,
    /// Attempts in flight at once while opening many connections.
    pub window: usize,
    /// `--tls`: the session every connection runs under.
    pub tls: Option<Tls>,
    /// A new connection is proven by a 1-byte echo; without it (`connect --handshake-only`, for
    /// servers that do not echo) by its TLS handshake alone.
    pub echo_probe: bool,
}

impl Dialer {
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    /// The one-line reason a connection could not be made.
    pub fn describe(&self, e: &io::Error) -> String {
        // One source address has ~28,000 ephemeral ports (Linux's default range) per target.
        let hint = if e.kind() == ErrorKind::AddrNotAvailable || e.kind() == ErrorKind::AddrInUse {
            " (out of source ports? add addresses with --source-ips 127.0.0.2,127.0.0.3,...)"
        } else {
            ""
        };
        format!("cannot connect to {}: {}{hint}", self.target, plain(e))
    }
}

/// An `io::Error` without std's " (os error N)" suffix: "Connection refused".
pub fn plain(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    e.kind() == ErrorKind::WouldBlock
}

/// One connection being opened: connect, send `payload`, read it back, compare. An empty payload
/// means: connect and finish the TLS handshake.
pub struct Dial {
    pub stream: Link,
    pub started: Instant,
    payload: Vec<u8>,
    written: usize,
    got: usize,
    connected: bool,
}

pub enum Step {
    Pending,
    Done,
    Failed(io::Error),
    /// The echo differed from the payload at this byte.
    Mismatch(usize),
}

impl Dial {
    pub fn start(target: SocketAddr, source: Option<IpAddr>, tls: Option<&Tls>, payload: Vec<u8>) -> io::Result<Dial> {
        let started = Instant::now();
        let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        // Small messages must not wait for Nagle's timer: that would be measured as latency.
        socket.set_tcp_nodelay(true)?;
        if let Some(ip) = source {
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if in_progress(&e) => {}
            Err(e) => return Err(e),
        }
        let stream = Link::new(TcpStream::from_std(socket.into()), tls)?;
        Ok(Dial { stream, started, payload, written: 0, got: 0, connected: false })
    }

    /// Make whatever progress the socket allows now; call on every event for this socket.
    pub fn advance(&mut self, scratch: &mut [u8]) -> Step {
        if !self.connected {
            // mio's recipe for a non-blocking connect: a pending error means it failed, a
            // peer address means it completed, NotConnected means "not yet".
            match self.stream.tcp().take_error() {
                Ok(Some(e)) | Err(e) => return Step::Failed(e),
                Ok(None) => {}
            }
            match self.stream.tcp().peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == ErrorKind::NotConnected || in_progress(&e) => {
                    return Step::Pending;
                }
                Err(e) => return Step::Failed(e),
            }
        }
        if self.payload.is_empty() {
            return match self.stream.handshake() {
                Ok(true) => Step::Done,
                Ok(false) => Step::Pending,
                Err(e) => Step::Failed(e),
            };
        }
        // Again while the reads move and payload is left: a read frees room (and under TLS it
        // can finish the handshake) without a writable event to say so.
        loop {
            let got = self.got;
            if let Some(step) = self.pump(scratch) {
                return step;
            }
            if self.got == self.payload.len() {
                return Step::Done;
            }
            if self.got == got || self.written == self.payload.len() {
                return Step::Pending;
            }
        }
    }

    /// One round of writing and reading; Some when the attempt is over.
    fn pump(&mut self, scratch: &mut [u8]) -> Option<Step> {
        while self.written < self.payload.len() {
            match self.stream.write(&self.payload[self.written..]) {
                Ok(0) => return Some(Step::Failed(ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Some(Step::Failed(e)),
            }
        }
        while self.got < self.written {
            // Read no further than the payload: anything extra stays in the socket, where the
            // scenario that takes the connection over will see it as a mismatch.
            let want = (self.written - self.got).min(scratch.len());
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    return Some(Step::Failed(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    )));
                }
                Ok(n) => {
                    let sent = &self.payload[self.got..self.got + n];
                    if let Some(i) = sent.iter().zip(&scratch[..n]).position(|(a, b)| a != b) {
                        return Some(Step::Mismatch(self.got + i));
                    }
                    self.got += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Some(Step::Failed(e)),
            }
        }
        None
    }
}

/// The result of opening many connections.
pub struct Opened {
    pub streams: Vec<Link>,
    pub failed: u64,
    pub mismatches: u64,
    /// The first failure, as one line.
    pub first_error: Option<String>,
    /// Connect + probe round trip of each opened connection, per second since opening began.
    pub recorder: Recorder,
    /// TLS handshake times (microseconds) of the opened connections; empty without `--tls`.
    pub handshakes: Histogram<u64>,
    pub elapsed: Duration,
}

/// The byte each opening probe sends (any value works; the echo must match it).
const PROBE: u8 = 0xA5;

/// Open `n` connections, at most `dialer.window` in flight, each proven by a 1-byte round trip.
/// With `fail_fast`, stop at the first failure. `progress` is told how many are open so far.
pub fn open_many(dialer: &Dialer, n: usize, fail_fast: bool, progress: &mut dyn FnMut(usize)) -> Opened {
    let start = Instant::now();
    let mut out = Opened {
        streams: Vec::with_capacity(n),
        failed: 0,
        mismatches: 0,
        first_error: None,
        recorder: Recorder::new(start, usize::MAX),
        handshakes: record::histogram(record::SIGFIG_TOTAL),
        elapsed: Duration::ZERO,
    };
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            out.failed = n as u64;
            out.first_error = Some(format!("cannot create a poller: {}", plain(&e)));
            return out;
        }
    };
    let mut events = Events::with_capacity(1024);
    let mut pending: Slab<Dial> = Slab::new();
    let mut scratch = [0u8; 16];
    let deadline = start + dialer.timeout;
    let mut next = 0;
    let mut stop = false;
    fn fail(out: &mut Opened, msg: String) {
        out.failed += 1;
        out.first_error.get_or_insert(msg);
    }
    loop {
        while !stop && next < n && pending.len() < dialer.window.max(1) {
            let entry = pending.vacant_entry();
            let token = Token(entry.key());
            let probe = if dialer.echo_probe { vec![PROBE] } else { Vec::new() };
            match Dial::start(dialer.target, dialer.source(next), dialer.tls.as_ref(), probe) {
                Ok(mut d) => {
                    match poll.registry().register(&mut d.stream, token, Interest::READABLE | Interest::WRITABLE) {
                        Ok(()) => {
                            entry.insert(d);
                        }
                        Err(e) => fail(&mut out, format!("cannot register a socket: {}", plain(&e))),
                    }
                }
                Err(e) => fail(&mut out, dialer.describe(&e)),
            }
            next += 1;
            stop = fail_fast && (out.failed > 0 || out.mismatches > 0);
        }
        // After a failure with `fail_fast` the attempts still in flight are abandoned.
        if stop || (pending.is_empty() && next >= n) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            let left = (pending.len() + n - next) as u64;
            out.failed += left;
            out.first_error.get_or_insert_with(|| {
                format!("cannot connect to {}: {left} connections not open after {:?}", dialer.target, dialer.timeout)
            });
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(deadline - now)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            out.failed += (pending.len() + n - next) as u64;
            out.first_error = Some(format!("poll failed: {}", plain(&e)));
            break;
        }
        for ev in events.iter() {
            let key = ev.token().0;
            let Some(d) = pending.get_mut(key) else {
                continue;
            };
            let step = d.advance(&mut scratch);
            if matches!(step, Step::Pending) {
                continue;
            }
            let mut d = pending.remove(key);
            let _ = poll.registry().deregister(&mut d.stream);
            match step {
                Step::Pending => {}
                Step::Done => {
                    let now = Instant::now();
                    out.recorder.record(now, now - d.started);
                    if let Some(h) = d.stream.handshake_done() {
                        record::put_duration(&mut out.handshakes, h);
                    }
                    out.streams.push(d.stream);
                }
                Step::Failed(e) => fail(&mut out, dialer.describe(&e)),
                Step::Mismatch(_) => {
                    out.mismatches += 1;
                    out.first_error
                        .get_or_insert_with(|| format!("the opening probe to {} came back corrupted", dialer.target));
                }
            }
            stop = stop || (fail_fast && (out.failed > 0 || out.mismatches > 0));
        }
        progress(out.streams.len());
    }
    out.elapsed = start.elapsed();
    out
}
