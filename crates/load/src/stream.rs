//! The stream scenario: bulk throughput. Every connection writes SIZE-byte chunks of its pattern
//! stream as fast as the socket takes them while reading the echo back on the same thread (both
//! directions at once, flow-controlled by TCP alone), verifying every byte. Reported: MB/s each
//! way, and per chunk the time from its first byte written to its last byte echoed, which shows
//! how much data sits queued in the buffers under full load.

use std::collections::VecDeque;
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
use super::{DialArgs, OutArgs, TimeArgs, parse, workers};

#[derive(Args, Debug, Clone)]
pub struct StreamArgs {
    #[command(flatten)]
    pub dial: DialArgs,
    /// Connections.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conns: u32,
    /// Write (chunk) size in bytes.
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse::size)]
    pub size: usize,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Worker threads, each with its own poller (default: min(conns, cores)).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// Most bytes per read or write call.
const CHUNK: usize = 256 * 1024;

struct Plan {
    size: u64,
    measure: Instant,
    end: Instant,
    drain_until: Instant,
    bins: usize,
}

struct Conn {
    id: usize,
    stream: Link,
    pattern: Pattern,
    alive: bool,
    written: u64,
    received: u64,
    /// Chunks started and not fully echoed: (stream offset of their end, first write, measured).
    chunks: VecDeque<(u64, Instant, bool)>,
}

#[derive(Default)]
struct Totals {
    out_measured: u64,
    in_measured: u64,
    errors: u64,
    mismatches: u64,
    unanswered: u64,
    first_error: Option<String>,
    first_mismatch: Option<String>,
}

struct Outcome {
    rec: Recorder,
    t: Totals,
    per_conn: Vec<(usize, u64, u64)>,
}

pub fn run(a: &StreamArgs) -> Result<Report, String> {
    let n = a.conns as usize;
    let (mut progress, opened, threads) = workers::open(&a.dial, &a.time, a.out.quiet, n, a.threads, "B")?;
    let conns: Vec<Conn> = opened
        .streams
        .into_iter()
        .enumerate()
        .map(|(id, stream)| Conn {
            id,
            stream,
            pattern: Pattern::new(id as u64),
            alive: true,
            written: 0,
            received: 0,
            chunks: VecDeque::new(),
        })
        .collect();
    let start = Instant::now();
    let measure = start + parse::dur(a.time.warmup);
    let end = measure + parse::dur(a.time.duration);
    let plan = Plan {
        size: a.size as u64,
        measure,
        end,
        drain_until: end + parse::dur(a.time.drain_timeout),
        bins: a.time.duration.ceil().max(1.0) as usize,
    };
    progress.begin();
    let counter = AtomicU64::new(0);
    let results = workers::run(conns, threads, &counter, &mut progress, |_, c| worker(&plan, c, &counter))?;
    progress.finish();

    let mut rec = Recorder::new(measure, plan.bins);
    rec.ensure_bins(plan.bins);
    let mut t = Totals::default();
    let mut per_conn = Vec::with_capacity(n);
    for o in results {
        rec.merge(&o.rec);
        t.out_measured += o.t.out_measured;
        t.in_measured += o.t.in_measured;
        t.errors += o.t.errors;
        t.mismatches += o.t.mismatches;
        t.unanswered += o.t.unanswered;
        t.first_error = t.first_error.or(o.t.first_error);
        t.first_mismatch = t.first_mismatch.or(o.t.first_mismatch);
        per_conn.extend(o.per_conn);
    }
    per_conn.sort_unstable();

    let mut r = Report::new("stream", a.dial.target.to_string(), &rec, a.time.duration);
    r.unit = "chunks";
    r.conns = n as u64;
    r.size = Some(plan.size);
    r.warmup_secs = a.time.warmup;
    r.mbps_out = Some(report::mbps(t.out_measured, a.time.duration));
    r.mbps_in = Some(report::mbps(t.in_measured, a.time.duration));
    r.handshake = a.dial.tls.tls.then(|| report::Handshake::of(&opened.handshakes));
    r.errors = t.errors + u64::from(t.unanswered > 0);
    r.mismatches = t.mismatches;
    r.set("threads", threads.min(n));
    r.set("bytes_out", t.out_measured);
    r.set("bytes_in", t.in_measured);
    r.set("unanswered_bytes", t.unanswered);
    r.set(
        "per_conn",
        per_conn.iter().map(|&(id, o, i)| json!({"conn": id, "bytes_out": o, "bytes_in": i})).collect::<Vec<_>>(),
    );
    r.problems.extend(t.first_mismatch);
    r.problems.extend(t.first_error);
    if t.unanswered > 0 {
        r.problems.push(format!("{} bytes not echoed within --drain-timeout after the run", t.unanswered));
    }
    Ok(r)
}

fn worker(plan: &Plan, mut conns: Vec<Conn>, counter: &AtomicU64) -> Outcome {
    let mut o = Outcome { rec: Recorder::new(plan.measure, plan.bins), t: Totals::default(), per_conn: Vec::new() };
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            o.t.errors += conns.len() as u64;
            o.t.first_error = Some(format!("cannot create a poller: {}", dial::plain(&e)));
            return o;
        }
    };
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = poll.registry().register(&mut c.stream, Token(i), Interest::READABLE | Interest::WRITABLE) {
            c.alive = false;
            o.t.errors += 1;
            o.t.first_error.get_or_insert_with(|| format!("cannot register a socket: {}", dial::plain(&e)));
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; CHUNK];
    let mut scratch = Vec::with_capacity(CHUNK);
    loop {
        let now = Instant::now();
        let owed = conns.iter().any(|c| c.alive && c.received < c.written);
        if (now >= plan.end && !owed) || now >= plan.drain_until {
            break;
        }
        let wake = if now < plan.end { plan.end } else { plan.drain_until };
        if let Err(e) = poll.poll(&mut events, Some(wake - now)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            o.t.errors += 1;
            o.t.first_error.get_or_insert_with(|| format!("poll failed: {}", dial::plain(&e)));
            break;
        }
        let mut got = 0;
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0).filter(|c| c.alive) else { continue };
            let before = c.received;
            let res = pump(c, plan, &mut buf, &mut scratch, &mut o);
            got += c.received - before;
            if let Err((mismatch, msg)) = res {
                c.alive = false;
                let _ = poll.registry().deregister(&mut c.stream);
                if mismatch {
                    o.t.mismatches += 1;
                    o.t.first_mismatch.get_or_insert(msg);
                } else {
                    o.t.errors += 1;
                    o.t.first_error.get_or_insert(msg);
                }
            }
        }
        counter.fetch_add(got, Ordering::Relaxed);
    }
    o.t.unanswered = conns.iter().filter(|c| c.alive).map(|c| c.written - c.received).sum();
    o.per_conn = conns.iter().map(|c| (c.id, c.written, c.received)).collect();
    o
}

/// Read what is there, then write until the socket is full or the run is over. The error is
/// (is it a mismatch, one line).
fn pump(
    c: &mut Conn,
    plan: &Plan,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
    o: &mut Outcome,
) -> Result<(), (bool, String)> {
    loop {
        let n = match c.stream.read(buf) {
            Ok(0) => return Err((false, format!("conn {}: the server closed the connection", c.id))),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err((false, format!("conn {}: read failed: {}", c.id, dial::plain(&e)))),
        };
        let owed = (c.written - c.received) as usize;
        if let Some(at) = c.pattern.check(c.received, &buf[..n.min(owed)], scratch) {
            let pos = c.received + at as u64;
            return Err((true, format!("conn {}: echo mismatch at stream offset {pos}", c.id)));
        }
        if n > owed {
            return Err((true, format!("conn {}: the server sent {} bytes more than it was sent", c.id, n - owed)));
        }
        c.received += n as u64;
        let now = Instant::now();
        if now >= plan.measure && now < plan.end {
            o.t.in_measured += n as u64;
        }
        while let Some(&(end, started, measured)) = c.chunks.front() {
            if end > c.received {
                break;
            }
            c.chunks.pop_front();
            if measured {
                o.rec.record(now, now - started);
            }
        }
    }
    loop {
        let now = Instant::now();
        if now >= plan.end {
            // A chunk cut short by the end of the run never completes; it is not counted.
            c.chunks.retain(|&(end, _, _)| end <= c.written);
            // TLS: what the last write left in rustls goes out now (a no-op on a plain socket).
            return c.stream.flush().map_err(|e| (false, format!("conn {}: write failed: {}", c.id, dial::plain(&e))));
        }
        let in_chunk = c.written % plan.size;
        if in_chunk == 0 {
            c.chunks.push_back((c.written + plan.size, now, now >= plan.measure));
        }
        let n = ((plan.size - in_chunk) as usize).min(buf.len());
        c.pattern.fill(c.written, &mut buf[..n]);
        match c.stream.write(&buf[..n]) {
            Ok(0) => return Err((false, format!("conn {}: the server stopped accepting data", c.id))),
            Ok(k) => {
                c.written += k as u64;
                if now >= plan.measure {
                    o.t.out_measured += k as u64;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Nothing of a fresh chunk went out: it has not started yet.
                if in_chunk == 0 {
                    c.chunks.pop_back();
                }
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                if in_chunk == 0 {
                    c.chunks.pop_back();
                }
            }
            Err(e) => return Err((false, format!("conn {}: write failed: {}", c.id, dial::plain(&e)))),
        }
    }
}
