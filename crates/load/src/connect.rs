//! The connect scenario: new connections per second. Each of N connectors loops: connect, one
//! SIZE-byte round trip (verified), close. Latency is connect start to complete echo. With
//! `--handshake-only` (TLS to servers that do not echo, such as IRC servers): connect, finish the
//! handshake, close; latency is connect start to handshake complete.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use super::dial::{self, Dial, Dialer, Step, open_many};
use super::pattern::Pattern;
use super::progress::Progress;
use super::record::{self, Recorder};
use super::report::{self, Report};
use super::{DialArgs, OutArgs, TimeArgs, parse, sys, workers};

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub dial: DialArgs,
    /// Concurrent connectors (each has at most one connection open at a time).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conns: u32,
    /// Bytes of the round trip on each connection.
    #[arg(long, value_name = "BYTES", default_value = "16", value_parser = parse::size)]
    pub size: usize,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Worker threads, each with its own poller (default: min(conns, cores)).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Connect, finish the TLS handshake, close: no echo round trip (for IRC servers).
    #[arg(long, requires = "tls", conflicts_with = "size")]
    pub handshake_only: bool,
    #[command(flatten)]
    pub out: OutArgs,
}

/// A connector whose attempt failed waits this long before the next one, so a dead server does
/// not turn the tool into a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

struct Plan {
    dialer: Dialer,
    /// Bytes of the round trip; 0 with --handshake-only.
    size: usize,
    measure: Instant,
    end: Instant,
    drain_until: Instant,
    bins: usize,
}

#[derive(Default)]
struct Totals {
    attempts: u64,
    errors: u64,
    mismatches: u64,
    unfinished: u64,
    first_error: Option<String>,
    first_mismatch: Option<String>,
}

pub fn run(a: &ConnectArgs) -> Result<Report, String> {
    let n = a.conns as usize;
    sys::check_nofile(n)?;
    let mut dialer = a.dial.dialer()?;
    dialer.echo_probe = !a.handshake_only;
    // One proven connection first, so an unreachable target is one clear error, not N.
    let probe = open_many(&dialer, 1, true, &mut |_| {});
    if let Some(e) = probe.first_error {
        return Err(e);
    }
    drop(probe.streams);
    let threads = a.threads.map_or(n.min(sys::cores()), |t| t as usize);
    let start = Instant::now();
    let measure = start + parse::dur(a.time.warmup);
    let end = measure + parse::dur(a.time.duration);
    let plan = Plan {
        dialer,
        size: if a.handshake_only { 0 } else { a.size },
        measure,
        end,
        drain_until: end + parse::dur(a.time.drain_timeout).min(parse::dur(a.dial.connect_timeout)),
        bins: a.time.duration.ceil().max(1.0) as usize,
    };
    let mut progress = Progress::new(a.out.quiet, parse::dur(a.time.warmup), end - start, "conn");
    progress.begin();
    let counter = AtomicU64::new(0);
    let results =
        workers::run((0..n).collect(), threads, &counter, &mut progress, |t, slots| worker(&plan, t, slots, &counter))?;
    progress.finish();

    let mut rec = Recorder::new(measure, plan.bins);
    rec.ensure_bins(plan.bins);
    let mut t = Totals::default();
    let mut handshakes = record::histogram(record::SIGFIG_TOTAL);
    for (r, h, o) in results {
        rec.merge(&r);
        let _ = handshakes.add(&h);
        t.attempts += o.attempts;
        t.errors += o.errors;
        t.mismatches += o.mismatches;
        t.unfinished += o.unfinished;
        t.first_error = t.first_error.or(o.first_error);
        t.first_mismatch = t.first_mismatch.or(o.first_mismatch);
    }
    let mut r = Report::new("connect", a.dial.target.to_string(), &rec, a.time.duration);
    r.unit = "connections";
    r.conns = n as u64;
    r.size = Some(plan.size as u64);
    r.warmup_secs = a.time.warmup;
    r.handshake = a.dial.tls.tls.then(|| report::Handshake::of(&handshakes));
    r.errors = t.errors + t.unfinished;
    r.mismatches = t.mismatches;
    r.set("threads", threads.min(n));
    r.set("attempts", t.attempts);
    r.set("unfinished", t.unfinished);
    r.problems.extend(t.first_mismatch);
    r.problems.extend(t.first_error);
    if t.unfinished > 0 {
        r.problems.push(format!("{} connections still unfinished after the run", t.unfinished));
    }
    Ok(r)
}

/// A connector slot: the attempt in flight, or when to start the next one.
struct Slot {
    index: usize,
    dial: Option<Dial>,
    next_at: Instant,
}

/// A worker's latencies, TLS handshake times (of measured attempts) and counts.
fn worker(plan: &Plan, thread: usize, indexes: Vec<usize>, counter: &AtomicU64) -> (Recorder, Histogram<u64>, Totals) {
    let mut rec = Recorder::new(plan.measure, plan.bins);
    let mut handshakes = record::histogram(record::SIGFIG_TOTAL);
    let mut t = Totals::default();
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            t.errors += 1;
            t.first_error = Some(format!("cannot create a poller: {}", dial::plain(&e)));
            return (rec, handshakes, t);
        }
    };
    let mut poll = poll;
    let now = Instant::now();
    let mut slots: Vec<Slot> = indexes.into_iter().map(|index| Slot { index, dial: None, next_at: now }).collect();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; plan.size.clamp(1, 64 * 1024)];
    let mut serial: u64 = 0;
    let attempt_timeout = plan.dialer.timeout;
    loop {
        let now = Instant::now();
        // Start attempts that are due, and give up on those that took too long.
        let mut wake = if now < plan.end { plan.end } else { plan.drain_until };
        for (i, s) in slots.iter_mut().enumerate() {
            if let Some(d) = &mut s.dial {
                if now.duration_since(d.started) >= attempt_timeout {
                    let _ = poll.registry().deregister(&mut d.stream);
                    s.dial = None;
                    s.next_at = now;
                    t.errors += 1;
                    t.first_error.get_or_insert_with(|| {
                        format!("connection to {} not done within {attempt_timeout:?}", plan.dialer.target)
                    });
                }
            }
            if s.dial.is_none() && now < plan.end && s.next_at <= now {
                // Unique per attempt across threads, so no two attempts send the same bytes.
                let id = ((thread as u64) << 48) | serial;
                serial += 1;
                let mut payload = vec![0u8; plan.size];
                Pattern::new(id).fill(0, &mut payload);
                t.attempts += 1;
                let tls = plan.dialer.tls.as_ref();
                match Dial::start(plan.dialer.target, plan.dialer.source(s.index), tls, payload).and_then(|mut d| {
                    poll.registry().register(&mut d.stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
                    Ok(d)
                }) {
                    Ok(d) => s.dial = Some(d),
                    Err(e) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| plan.dialer.describe(&e));
                        s.next_at = now + RETRY_PAUSE;
                    }
                }
            }
            match &s.dial {
                Some(d) => wake = wake.min(d.started + attempt_timeout),
                None if now < plan.end => wake = wake.min(s.next_at.max(now)),
                None => {}
            }
        }
        let busy = slots.iter().filter(|s| s.dial.is_some()).count() as u64;
        if (now >= plan.end && busy == 0) || now >= plan.drain_until {
            t.unfinished += busy;
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            t.errors += 1;
            t.first_error.get_or_insert_with(|| format!("poll failed: {}", dial::plain(&e)));
            break;
        }
        let mut done = 0;
        for ev in events.iter() {
            let Some(s) = slots.get_mut(ev.token().0) else { continue };
            let Some(d) = &mut s.dial else { continue };
            let step = d.advance(&mut scratch);
            if matches!(step, Step::Pending) {
                continue;
            }
            let now = Instant::now();
            let _ = poll.registry().deregister(&mut d.stream);
            let started = d.started;
            let measured = started >= plan.measure && started < plan.end;
            if let (Some(h), true) = (d.stream.handshake_done(), measured) {
                record::put_duration(&mut handshakes, h);
            }
            if matches!(step, Step::Done) {
                d.stream.close_notify();
            }
            s.dial = None;
            s.next_at = now;
            match step {
                Step::Pending => {}
                Step::Done => {
                    done += 1;
                    if measured {
                        rec.record(now, now - started);
                    }
                }
                Step::Failed(e) => {
                    t.errors += 1;
                    t.first_error.get_or_insert_with(|| plan.dialer.describe(&e));
                    s.next_at = now + RETRY_PAUSE;
                }
                Step::Mismatch(at) => {
                    t.mismatches += 1;
                    t.first_mismatch.get_or_insert_with(|| format!("echo mismatch at byte {at} of a new connection"));
                }
            }
        }
        counter.fetch_add(done, Ordering::Relaxed);
    }
    (rec, handshakes, t)
}
