//! The echo scenario: N connections each sending SIZE-byte messages and waiting for them to
//! come back, every byte verified.
//!
//! Closed loop (default): a connection sends its next message as soon as the previous echo is
//! complete; latency is the round trip. Open loop (`--rate R`): message k of connection c is due
//! at start + (k·N + c)/R, so sends are spread evenly over all connections. Latency is measured
//! from that *intended* time, not from when the send actually happened: if the server stalls,
//! the messages that should have gone out meanwhile carry the stall in their latency instead of
//! silently not being sent (coordinated omission, as in wrk2). A message due while an earlier one
//! is still out is queued behind it (pipelined), never skipped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use super::dial;
use super::link::Link;
use super::pattern::Pattern;
use super::record::Recorder;
use super::report::{self, Report};
use super::timer::Timer;
use super::{DialArgs, OutArgs, TimeArgs, parse, workers};

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub dial: DialArgs,
    /// Connections.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conns: u32,
    /// Message size in bytes (64, 1k, 1MiB).
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse::size)]
    pub size: usize,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Open loop: total messages per second across all connections (default: closed loop).
    #[arg(long, value_name = "PER_SEC", value_parser = parse::rate)]
    pub rate: Option<f64>,
    /// Worker threads, each with its own poller (default: min(conns, cores)).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// The open-loop timer's token; connections use their index.
const TIMER: Token = Token(usize::MAX);

/// Most due sends queued per loop turn before the sockets are served again.
const BATCH: usize = 4096;

/// Queued, unechoed messages allowed per connection in the open loop: a server that stops
/// answering must not make the tool grow without bound. Shared out of a 256 MiB budget.
fn inflight_cap(conns: usize, size: usize) -> usize {
    ((256usize << 20) / conns.max(1) / size.max(16)).clamp(16, 65536)
}

/// Read and write chunk: large enough for few syscalls, small enough to stay in cache.
const CHUNK: usize = 64 * 1024;

/// Timing shared by all workers.
struct Plan {
    size: u64,
    conns: u64,
    rate: Option<f64>,
    start: Instant,
    measure: Instant,
    end: Instant,
    drain_until: Instant,
    bins: usize,
    /// Most messages queued and not yet echoed on one connection (open loop).
    cap: usize,
}

impl Plan {
    /// When message `k` of connection `id` is due in the open loop.
    fn due(&self, rate: f64, id: usize, k: u64) -> Instant {
        let global = k as f64 * self.conns as f64 + id as f64;
        self.start + parse::dur(global / rate)
    }
}

struct Conn {
    id: usize,
    stream: Link,
    pattern: Pattern,
    alive: bool,
    /// Open loop: at `Plan::cap` and off the schedule until echoes come back.
    blocked: bool,
    /// Messages queued so far; their bytes are stream bytes `0..queued * size`.
    queued: u64,
    /// Stream bytes written and received.
    written: u64,
    received: u64,
    /// Messages whose echo is complete.
    done: u64,
    /// Intended send time of each queued message not yet complete, oldest first.
    inflight: VecDeque<Instant>,
    /// Measured (post-warm-up) messages sent and completed.
    sent_measured: u64,
    done_measured: u64,
}

/// What one worker thread saw.
struct Outcome {
    rec: Recorder,
    per_conn: Vec<(usize, u64, u64)>,
    sent: u64,
    errors: u64,
    mismatches: u64,
    unanswered: u64,
    first_error: Option<String>,
    first_mismatch: Option<String>,
}

enum Fail {
    Io(String),
    Mismatch(String),
}

pub fn run(a: &EchoArgs) -> Result<Report, String> {
    let n = a.conns as usize;
    let (mut progress, opened, threads) = workers::open(&a.dial, &a.time, a.out.quiet, n, a.threads, "msg")?;
    let conns: Vec<Conn> = opened
        .streams
        .into_iter()
        .enumerate()
        .map(|(id, stream)| Conn {
            id,
            stream,
            pattern: Pattern::new(id as u64),
            alive: true,
            blocked: false,
            queued: 0,
            written: 0,
            received: 0,
            done: 0,
            inflight: VecDeque::new(),
            sent_measured: 0,
            done_measured: 0,
        })
        .collect();

    let start = Instant::now();
    let measure = start + parse::dur(a.time.warmup);
    let end = measure + parse::dur(a.time.duration);
    let plan = Plan {
        size: a.size as u64,
        conns: n as u64,
        rate: a.rate,
        start,
        measure,
        end,
        drain_until: end + parse::dur(a.time.drain_timeout),
        bins: a.time.duration.ceil().max(1.0) as usize,
        cap: inflight_cap(n, a.size),
    };
    progress.begin();
    let counter = AtomicU64::new(0);
    let results = workers::run(conns, threads, &counter, &mut progress, |_, conns| worker(&plan, conns, &counter))?;
    progress.finish();

    let mut rec = Recorder::new(measure, plan.bins);
    rec.ensure_bins(plan.bins);
    let (mut sent, mut errors, mut mismatches, mut unanswered) = (0, 0, 0, 0);
    let mut per_conn = Vec::with_capacity(n);
    let (mut first_error, mut first_mismatch) = (None, None);
    for o in results {
        rec.merge(&o.rec);
        sent += o.sent;
        errors += o.errors;
        mismatches += o.mismatches;
        unanswered += o.unanswered;
        per_conn.extend(o.per_conn);
        first_error = first_error.or(o.first_error);
        first_mismatch = first_mismatch.or(o.first_mismatch);
    }
    per_conn.sort_unstable();

    let mut r = Report::new("echo", a.dial.target.to_string(), &rec, a.time.duration);
    r.conns = n as u64;
    r.size = Some(a.size as u64);
    r.warmup_secs = a.time.warmup;
    r.rate_target = a.rate;
    r.mbps_out = Some(report::mbps(sent * plan.size, a.time.duration));
    r.mbps_in = Some(report::mbps(r.messages * plan.size, a.time.duration));
    r.handshake = a.dial.tls.tls.then(|| report::Handshake::of(&opened.handshakes));
    r.errors = errors + unanswered;
    r.mismatches = mismatches;
    r.set("threads", threads.min(n));
    r.set("sent", sent);
    r.set("unanswered", unanswered);
    r.set("open_secs", report::round2(opened.elapsed.as_secs_f64()));
    r.set(
        "per_conn",
        per_conn.iter().map(|&(id, s, d)| json!({"conn": id, "sent": s, "received": d})).collect::<Vec<_>>(),
    );
    r.problems.extend(first_mismatch);
    r.problems.extend(first_error);
    if unanswered > 0 {
        r.problems.push(format!(
            "{unanswered} messages not echoed within --drain-timeout {} s after the run",
            a.time.drain_timeout
        ));
    }
    Ok(r)
}

fn worker(plan: &Plan, mut conns: Vec<Conn>, counter: &AtomicU64) -> Outcome {
    let mut o = Outcome {
        rec: Recorder::new(plan.measure, plan.bins),
        per_conn: Vec::new(),
        sent: 0,
        errors: 0,
        mismatches: 0,
        unanswered: 0,
        first_error: None,
        first_mismatch: None,
    };
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            o.errors += conns.len() as u64;
            o.first_error = Some(format!("cannot create a poller: {}", dial::plain(&e)));
            return o;
        }
    };
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = poll.registry().register(&mut c.stream, Token(i), Interest::READABLE | Interest::WRITABLE) {
            c.alive = false;
            o.errors += 1;
            o.first_error.get_or_insert_with(|| format!("cannot register a socket: {}", dial::plain(&e)));
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; CHUNK];
    let mut scratch = Vec::with_capacity(CHUNK);
    // Open loop: each live connection's next due send, earliest first.
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut outstanding: u64 = 0;
    for (i, c) in conns.iter_mut().enumerate().filter(|(_, c)| c.alive) {
        match plan.rate {
            Some(rate) => due.push(Reverse((plan.due(rate, c.id, 0), i))),
            None => {
                queue(c, plan, plan.start, &mut outstanding, &mut o);
            }
        }
    }
    // Open-loop sends are paced by a precise timer where there is one (see timer.rs).
    let mut timer = plan.rate.and_then(|_| Timer::new(poll.registry(), TIMER).ok());
    let mut touched: Vec<usize> = (0..conns.len()).collect();
    loop {
        let now = Instant::now();
        if let Some(rate) = plan.rate {
            // A bounded batch, so a far-behind schedule cannot starve the sockets.
            let mut batch = BATCH;
            while let Some(&Reverse((at, i))) = due.peek() {
                if at > now || batch == 0 {
                    break;
                }
                batch -= 1;
                due.pop();
                let c = &mut conns[i];
                if !c.alive || at >= plan.end {
                    continue;
                }
                if c.inflight.len() >= plan.cap {
                    c.blocked = true;
                    continue;
                }
                queue(c, plan, at, &mut outstanding, &mut o);
                due.push(Reverse((plan.due(rate, c.id, c.queued), i)));
                touched.push(i);
            }
        }
        for i in touched.drain(..) {
            if let Err(f) = flush(&mut conns[i], plan.size, &mut buf) {
                drop_conn(&mut conns[i], &poll, f, &mut outstanding, &mut o);
            }
        }
        let now = Instant::now();
        if (now >= plan.end && outstanding == 0) || now >= plan.drain_until {
            break;
        }
        let mut wake = if now < plan.end { plan.end } else { plan.drain_until };
        if let Some(&Reverse((at, _))) = due.peek() {
            if timer.as_mut().is_none_or(|t| t.arm(at).is_err()) {
                wake = wake.min(at);
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            o.errors += 1;
            o.first_error.get_or_insert_with(|| format!("poll failed: {}", dial::plain(&e)));
            break;
        }
        let mut completed = 0;
        for ev in events.iter() {
            if ev.token() == TIMER {
                if let Some(t) = &mut timer {
                    t.fired();
                }
                continue;
            }
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).filter(|c| c.alive) else { continue };
            let res = receive(c, plan, &mut buf, &mut scratch, &mut o, &mut outstanding, &mut completed)
                .and_then(|()| flush(c, plan.size, &mut buf));
            if let Err(f) = res {
                drop_conn(c, &poll, f, &mut outstanding, &mut o);
            } else if let (true, Some(rate)) = (c.blocked && c.inflight.len() < plan.cap, plan.rate) {
                // Back on the schedule where it left it: the postponed messages are overdue,
                // go out at once and their latency still counts from when they were due.
                c.blocked = false;
                due.push(Reverse((plan.due(rate, c.id, c.queued), i)));
            }
        }
        counter.fetch_add(completed, Ordering::Relaxed);
    }
    o.unanswered = outstanding;
    o.per_conn = conns.iter().map(|c| (c.id, c.sent_measured, c.done_measured)).collect();
    o
}

/// Queue the connection's next message, intended to go out at `at`.
fn queue(c: &mut Conn, plan: &Plan, at: Instant, outstanding: &mut u64, o: &mut Outcome) {
    c.queued += 1;
    c.inflight.push_back(at);
    *outstanding += 1;
    if at >= plan.measure {
        c.sent_measured += 1;
        o.sent += 1;
    }
}

/// Write queued bytes until done or the socket is full (then a WRITABLE event resumes it).
/// The bytes are regenerated from the pattern, so a connection holds no send buffer.
fn flush(c: &mut Conn, size: u64, buf: &mut [u8]) -> Result<(), Fail> {
    let total = c.queued * size;
    while c.written < total {
        let n = ((total - c.written) as usize).min(buf.len());
        c.pattern.fill(c.written, &mut buf[..n]);
        match c.stream.write(&buf[..n]) {
            Ok(0) => return Err(Fail::Io(format!("conn {}: the server stopped accepting data", c.id))),
            Ok(k) => c.written += k as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Fail::Io(format!("conn {}: write failed: {}", c.id, dial::plain(&e)))),
        }
    }
    // TLS: what the last write left in rustls goes out now (a no-op on a plain socket).
    c.stream.flush().map_err(|e| Fail::Io(format!("conn {}: write failed: {}", c.id, dial::plain(&e))))
}

/// Read everything available, verify it, complete messages.
fn receive(
    c: &mut Conn,
    plan: &Plan,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
    o: &mut Outcome,
    outstanding: &mut u64,
    completed: &mut u64,
) -> Result<(), Fail> {
    loop {
        let n = match c.stream.read(buf) {
            Ok(0) => {
                return Err(Fail::Io(format!("conn {}: the server closed the connection", c.id)));
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Io(format!("conn {}: read failed: {}", c.id, dial::plain(&e)))),
        };
        let got = &buf[..n];
        let owed = (c.queued * plan.size - c.received) as usize;
        if let Some(at) = c.pattern.check(c.received, &got[..n.min(owed)], scratch) {
            let pos = c.received + at as u64;
            return Err(Fail::Mismatch(format!(
                "conn {}: echo mismatch at byte {} of message {} (stream offset {pos})",
                c.id,
                pos % plan.size,
                pos / plan.size
            )));
        }
        if n > owed {
            return Err(Fail::Mismatch(format!(
                "conn {}: the server sent {} bytes more than it was sent",
                c.id,
                n - owed
            )));
        }
        c.received += n as u64;
        let now = Instant::now();
        while c.done < c.queued && (c.done + 1) * plan.size <= c.received {
            c.done += 1;
            *outstanding -= 1;
            *completed += 1;
            let Some(intended) = c.inflight.pop_front() else { break };
            if intended >= plan.measure {
                c.done_measured += 1;
                o.rec.record(now, now.saturating_duration_since(intended));
            }
            if plan.rate.is_none() && now < plan.end {
                queue(c, plan, now, outstanding, o);
            }
        }
    }
}

/// Drop a connection after a failure: count it once, forget the messages it still owed (they
/// are part of this failure, not additionally unanswered).
fn drop_conn(c: &mut Conn, poll: &Poll, f: Fail, outstanding: &mut u64, o: &mut Outcome) {
    c.alive = false;
    let _ = poll.registry().deregister(&mut c.stream);
    let _ = c.stream.tcp().shutdown(std::net::Shutdown::Both);
    *outstanding -= c.inflight.len() as u64;
    c.inflight.clear();
    match f {
        Fail::Io(m) => {
            o.errors += 1;
            o.first_error.get_or_insert(m);
        }
        Fail::Mismatch(m) => {
            o.mismatches += 1;
            o.first_mismatch.get_or_insert(m);
        }
    }
}
