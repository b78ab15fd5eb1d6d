//! `echoport-load chat`: IRC channel fan-out load against any RFC 1459/2812 server.
//!
//! `--clients` connections register (optional `PASS`, then `NICK` and `USER`) and join one
//! channel; the first `--senders` of them also send `PRIVMSG`s whose text is
//! `<sender-id> <seq> <send-time-micros> <padding>`. The server relays every message to every
//! member but its sender, and each receiving client records `now - send time`. All times are
//! microseconds since one `Instant` shared by every thread, so they compare directly.
//!
//! With several `--target`s, client `i` connects to target `i mod N` (the senders too), so
//! the clients of one channel are spread evenly over the servers of one network (echoport
//! instances joined with `--cluster`): every message must then cross from its sender's server to
//! every other one.
//!
//! Threads: the caller's thread coordinates (phases, time bounds, progress); `--threads` workers
//! each own every `threads`-th client on a private mio `Poll` with non-blocking sockets.
//!
//! Phases, each bounded in time so the tool always stops by itself:
//! 1. setup: connect in small batches, register, join, until every client has seen the end of
//!    its NAMES reply (366). Every client reads all the time, so the JOIN storm and PINGs are
//!    consumed and the server never queues much for us.
//! 2. run: warm-up, then measuring until the end; only messages sent after warm-up count.
//! 3. drain: senders stop; wait for the last messages to reach everyone.
//! 4. quit: `QUIT :done`, then wait briefly for the server to close.
//!
//! Flow control, or why no mode can grow the server's send queues without bound: a sender
//! cannot see its own messages, but every receiver lives in this process. Each worker tracks,
//! per sender, the highest sequence number each of its clients has received. TCP and the server
//! keep one sender's messages in order towards each receiver, so the minimum over all receivers
//! (the slowest one) is a message every receiver has got, and so are all before it. A sender
//! may run at most `window` messages ahead of that minimum, so the server never holds more than
//! `senders x window` undelivered messages for any one receiver. `window` is sized to keep that
//! under `RECEIVER_BUDGET` bytes. The window applies with `--rate` too: if the server falls
//! behind, senders fall behind schedule rather than bury the server, and `sent` shows it.
//!
//! What is checked: each receiver tracks, per sender, the highest sequence number it has got.
//! A number at or below that is a late (reordered) arrival if it was skipped earlier
//! (gaps.rs), otherwise a duplicate; both are counted and are errors. Deliveries count
//! each message once per receiver. When the run is over, every message sent after warm-up that a
//! receiver still connected never got is counted lost.
//!
//! What the latency means: messages are stamped when they are written, so it is the server's
//! relay time plus the kernel's, never our own scheduling lag. With `--rate` below what the
//! server can do, that is its per-message latency. Unlimited mode saturates the server on
//! purpose, so there the latency is mostly queueing: about (messages in flight x fan-out) /
//! deliveries per second, set by the window. Use `--rate` to measure latency, unlimited mode
//! to measure throughput.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoport_irc::{Framer, Message, eq_fold};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::gaps::{self, Gaps};
use crate::link::Link;
use crate::tls::{Tls, TlsArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// IRC server address; repeat it for the servers of one network (client i connects to
    /// target i mod N)
    #[arg(long, required = true)]
    pub target: Vec<SocketAddr>,
    /// clients joined to the channel (all receive)
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// how many of the clients send
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// total messages per second across all senders; 0 = unlimited (each sender keeps a bounded number of messages in flight)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// seconds of measurement, after the warm-up
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// seconds of sending before measuring starts (not counted)
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// channel every client joins
    #[arg(long, default_value = "#bench")]
    pub channel: String,
    /// PRIVMSG text length in bytes (excluding the timestamp/sequence header)
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// server password (PASS), if any
    #[arg(long)]
    pub password: Option<String>,
    /// IRCv3 capabilities every client requests while registering, space-separated (e.g.
    /// "server-time message-tags"); a client the server refuses them to fails its setup
    #[arg(long, default_value = "")]
    pub caps: String,
    /// worker threads (default: available cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// clients connecting or registering at once; raise it for servers that finish a
    /// registration only on a timer (InspIRCd completes them once a second)
    #[arg(long, default_value_t = DEFAULT_CONNECT_BATCH, value_parser = clap::value_parser!(u16).range(1..))]
    pub connect_batch: u16,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub struct ChatOutcome {
    /// Messages sent after warm-up.
    pub sent: u64,
    /// PRIVMSGs received by all clients after warm-up.
    pub deliveries: u64,
    /// sent (after warm-up) x (clients - 1): the sender does not get its own message back.
    pub expected_deliveries: u64,
    /// (message, receiver) pairs sent after warm-up that the receiver never got, receivers (and
    /// senders) that disconnected left out: their disconnect is an error of its own.
    pub lost: u64,
    /// Second copies of a message a receiver already had (whole run, warm-up included).
    pub duplicates: u64,
    /// Messages a receiver got after a later one of the same sender (whole run).
    pub reordered: u64,
    /// Delivery latency in microseconds.
    pub latency: Histogram<u64>,
    /// (seconds since measuring began, deliveries in that second).
    pub timeline: Vec<(f64, u64)>,
    /// Disconnects, server error replies and malformed copies of our messages.
    pub errors: u64,
    /// With `--tls`: every client's handshake time in microseconds.
    pub handshake: Option<Histogram<u64>>,
}

// ---------------------------------------------------------------------------------------------
// Limits and time bounds
// ---------------------------------------------------------------------------------------------

/// Clients between "connect" and "registered" (001) at once, over all threads. Only a reply
/// proves the server has accepted a connection; ngIRCd listens with a backlog of 10, and a
/// connect beyond a full accept queue has its SYN dropped and retried a whole second later.
/// Registration takes well under a millisecond, so small batches cost little.
const DEFAULT_CONNECT_BATCH: u16 = 8;

/// Setup may take this long plus [`SETUP_PER_CLIENT`] per client: each JOIN is broadcast to
/// everyone already in the channel, so setup work grows with the square of the client count.
const SETUP_BASE: Duration = Duration::from_secs(60);
const SETUP_PER_CLIENT: Duration = Duration::from_millis(20);

/// Undelivered bytes the server may hold for one receiver: half of ngIRCd's 32 KiB per-client
/// write buffer (servers disconnect a client whose queue overflows), leaving room for the
/// server's own traffic. Other servers' send queues are at least as large.
const RECEIVER_BUDGET: usize = 16 * 1024;

/// Upper bound of the per-sender window: beyond this a larger window only adds queueing.
const MAX_WINDOW: u64 = 64;

/// What a server adds when it relays our line (`:nick!~user@host `); counted in the window's
/// byte budget and reserved when checking `--size` against the 512-byte line limit, so relayed
/// copies are not truncated.
const RELAY_PREFIX: usize = 64;

/// Longest `<sender> <seq> <micros>` header: 20 digits each is u64::MAX, never reached in a
/// bounded run, so 10 + 10 + 14 (four months of microseconds) is what we reserve.
const HEADER_MAX: usize = 10 + 1 + 10 + 1 + 14;

/// RFC 1459 line limit, CR LF included.
const IRC_LINE_MAX: usize = 512;

/// Longest line we buffer (IRCv3 allows 8191 bytes of tags before the 512-byte message); a
/// longer one is dropped whole (see [`each_line`]) and memory stays bounded whatever the server
/// sends.
const MAX_LINE: usize = 8192 + IRC_LINE_MAX;

/// After the run: how long to wait for the last messages to reach every receiver.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// After `QUIT :done`: how long to wait for the server to close the connections.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a worker sleeps in `poll`: bounds how late it notices a phase change it was not
/// woken for.
const TICK: Duration = Duration::from_millis(50);

/// How often the coordinator checks phases and how often it reports progress.
const COORD_TICK: Duration = Duration::from_millis(10);
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Nick attempts (433 nickname in use and friends) before registration is declared failed.
const MAX_NICK_TRIES: u32 = 10;

/// Unwritten bytes beyond which a sender queues nothing more until its socket drains.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Bytes read per `read` call (one scratch buffer per worker thread).
const READ_CHUNK: usize = 64 * 1024;

/// Latencies above an hour are recorded as an hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

const WAKE: Token = Token(usize::MAX);

// ---------------------------------------------------------------------------------------------
// Entry point and coordinator
// ---------------------------------------------------------------------------------------------

/// Run the scenario: set up, measure, drain, quit. `progress` gets the deliveries counted so
/// far about every 100 ms, on the calling thread.
pub fn run(args: &ChatArgs, progress: &dyn Fn(u64)) -> Result<ChatOutcome, String> {
    let plan = Arc::new(Plan::new(args)?);
    let mut polls = Vec::with_capacity(plan.threads);
    let mut wakers = Vec::with_capacity(plan.threads);
    for _ in 0..plan.threads {
        let poll = Poll::new().map_err(|e| format!("creating a poller: {e}"))?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(|e| format!("creating a waker: {e}"))?;
        polls.push(poll);
        wakers.push(waker);
    }
    let shared = Arc::new(Shared::new(&plan, wakers));
    let mut handles = Vec::with_capacity(plan.threads);
    for (index, poll) in polls.into_iter().enumerate() {
        let worker = Worker::new(index, Arc::clone(&plan), Arc::clone(&shared), poll);
        let spawned = thread::Builder::new().name(format!("chat-{index}")).spawn(move || worker.run());
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.set_phase(Phase::Abort);
                let _ = join_all(handles);
                return Err(format!("starting worker thread: {e}"));
            }
        }
    }
    let coordinated = coordinate(&plan, &shared, &handles, progress);
    if coordinated.is_err() {
        shared.set_phase(Phase::Abort);
    }
    let reports = join_all(handles);
    coordinated?;
    let outcome = merge(&plan, reports?);
    progress(outcome.deliveries);
    Ok(outcome)
}

/// Drive the phases from the calling thread; workers follow `shared.phase`.
fn coordinate(
    plan: &Plan,
    shared: &Shared,
    handles: &[JoinHandle<Report>],
    progress: &dyn Fn(u64),
) -> Result<(), String> {
    let mut ticker = Ticker::new(progress);
    wait_for_setup(plan, shared, handles, &mut ticker)?;

    let start = shared.now_us();
    let measure = start + plan.warmup_us;
    let schedule = Schedule { start_us: start, measure_us: measure, end_us: measure + plan.duration_us };
    // Set exactly once, before the phase that makes workers read it.
    let _ = shared.schedule.set(schedule);
    shared.set_phase(Phase::Run);

    // Stop early if every client is gone (say, the server died): nothing more can happen.
    while shared.now_us() < schedule.end_us && shared.ready.load(Ordering::Acquire) > 0 {
        ticker.tick(shared, schedule.end_us);
        shared.fatal().map_or(Ok(()), Err)?;
    }
    let drain_end = schedule.end_us + DRAIN_TIMEOUT.as_micros() as u64;
    while shared.now_us() < drain_end && !shared.drained(plan) {
        ticker.tick(shared, drain_end);
        shared.fatal().map_or(Ok(()), Err)?;
    }
    shared.set_phase(Phase::Quit);
    Ok(())
}

/// Wait until every client has registered and joined, or fail with the first client's error,
/// a stopped worker, or the setup time bound.
fn wait_for_setup(
    plan: &Plan,
    shared: &Shared,
    handles: &[JoinHandle<Report>],
    ticker: &mut Ticker,
) -> Result<(), String> {
    let bound = SETUP_BASE + SETUP_PER_CLIENT * u32::try_from(plan.clients).unwrap_or(u32::MAX);
    let deadline = shared.now_us() + bound.as_micros() as u64;
    loop {
        if let Some(e) = shared.fatal() {
            return Err(e);
        }
        let ready = shared.ready.load(Ordering::Acquire);
        if ready >= plan.clients {
            return Ok(());
        }
        if handles.iter().any(|h| h.is_finished()) {
            return Err("a worker thread stopped during setup".into());
        }
        if shared.now_us() >= deadline {
            return Err(format!(
                "setup timed out after {:.0} s: {ready} of {} clients registered and joined {} \
                 (is {} an IRC server?)",
                bound.as_secs_f64(),
                plan.clients,
                plan.channel,
                plan.targets.iter().map(|t| t.addr.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        ticker.tick(shared, deadline);
    }
}

/// Sleeps in short steps and calls `progress` about every [`PROGRESS_EVERY`].
struct Ticker<'a> {
    progress: &'a dyn Fn(u64),
    last: Instant,
}

impl<'a> Ticker<'a> {
    fn new(progress: &'a dyn Fn(u64)) -> Self {
        Ticker { progress, last: Instant::now() }
    }

    /// Sleep a little (never past `until_us`), then report progress if it is time.
    fn tick(&mut self, shared: &Shared, until_us: u64) {
        let left = Duration::from_micros(until_us.saturating_sub(shared.now_us()));
        thread::sleep(left.min(COORD_TICK));
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            (self.progress)(shared.deliveries.load(Ordering::Relaxed));
        }
    }
}

fn join_all(handles: Vec<JoinHandle<Report>>) -> Result<Vec<Report>, String> {
    let mut reports = Vec::with_capacity(handles.len());
    let mut panicked = false;
    for h in handles {
        match h.join() {
            Ok(r) => reports.push(r),
            Err(_) => panicked = true,
        }
    }
    if panicked {
        return Err("a chat worker thread panicked".into());
    }
    Ok(reports)
}

fn merge(plan: &Plan, reports: Vec<Report>) -> ChatOutcome {
    let mut latency = new_histogram();
    let mut handshake = new_histogram();
    let mut buckets: Vec<u64> = Vec::new();
    let (mut sent, mut deliveries, mut errors) = (0, 0, 0);
    let (mut lost, mut duplicates, mut reordered) = (0, 0, 0);
    for r in reports {
        // Same bounds everywhere, so adding cannot fail.
        let _ = latency.add(&r.latency);
        let _ = handshake.add(&r.handshake);
        if buckets.len() < r.timeline.len() {
            buckets.resize(r.timeline.len(), 0);
        }
        for (b, n) in buckets.iter_mut().zip(&r.timeline) {
            *b += n;
        }
        sent += r.sent;
        deliveries += r.deliveries;
        errors += r.errors;
        lost += r.lost;
        duplicates += r.duplicates;
        reordered += r.reordered;
    }
    ChatOutcome {
        sent,
        deliveries,
        expected_deliveries: sent * (plan.clients as u64 - 1),
        lost,
        duplicates,
        reordered,
        latency,
        timeline: buckets.into_iter().enumerate().map(|(i, n)| (i as f64, n)).collect(),
        errors,
        handshake: plan.targets[0].tls.is_some().then_some(handshake),
    }
}

/// Latencies up to an hour at 3 significant figures. Fixed bounds, not auto-resizing: with
/// those `saturating_record` clamps to the initial (tiny) range instead of growing.
fn new_histogram() -> Histogram<u64> {
    // Only bad bounds or precision can fail, and these are constants.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

// ---------------------------------------------------------------------------------------------
// The plan: validated arguments and what follows from them
// ---------------------------------------------------------------------------------------------

/// One server to connect clients to.
struct Target {
    addr: SocketAddr,
    /// With `--tls`: the config, and the name to verify (by default this target's IP).
    tls: Option<Tls>,
}

struct Plan {
    /// Client `i` connects to `targets[i % targets.len()]`; never empty.
    targets: Vec<Target>,
    clients: usize,
    senders: usize,
    threads: usize,
    connect_batch: u16,
    channel: String,
    size: usize,
    password: Option<String>,
    /// Capabilities requested with CAP REQ; empty = no CAP negotiation.
    caps: String,
    /// Messages per second over all senders; 0 = as fast as the window allows.
    rate: f64,
    warmup_us: u64,
    duration_us: u64,
    /// Messages a sender may have in flight (see the module comment).
    window: u64,
    padding: Vec<u8>,
}

impl Plan {
    fn new(a: &ChatArgs) -> Result<Plan, String> {
        if a.target.is_empty() {
            return Err("--target is required".into());
        }
        check_counts(a)?;
        check_channel(&a.channel)?;
        check_secs("--duration", a.duration, false)?;
        check_secs("--warmup", a.warmup, true)?;
        if !a.rate.is_finite() || a.rate < 0.0 {
            return Err(format!("--rate must be 0 (unlimited) or more, not {}", a.rate));
        }
        if let Some(p) = &a.password
            && p.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
        {
            return Err("--password must not contain CR, LF or NUL".into());
        }
        if a.caps.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err("--caps must not contain CR, LF or NUL".into());
        }
        check_size(a.size, &a.channel)?;
        let threads = match a.threads {
            Some(0) => return Err("--threads must be at least 1".into()),
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Plan {
            targets: a
                .target
                .iter()
                .map(|&addr| Ok(Target { addr, tls: a.tls.client(addr)? }))
                .collect::<Result<_, String>>()?,
            clients: a.clients,
            senders: a.senders,
            threads: threads.min(a.clients),
            connect_batch: a.connect_batch,
            channel: a.channel.clone(),
            size: a.size,
            password: a.password.clone(),
            caps: a.caps.split([' ', ',']).filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" "),
            rate: a.rate,
            warmup_us: (a.warmup * 1e6) as u64,
            duration_us: (a.duration * 1e6) as u64,
            window: window(a.senders, relayed_len(&a.channel, a.size)),
            padding: vec![b'x'; a.size],
        })
    }

    fn target_of(&self, client: usize) -> &Target {
        &self.targets[client % self.targets.len()]
    }

    fn thread_of(&self, client: usize) -> usize {
        client % self.threads
    }

    fn local_of(&self, client: usize) -> usize {
        client / self.threads
    }

    fn client_of(&self, thread: usize, local: usize) -> usize {
        local * self.threads + thread
    }

    /// Clients owned by `thread`: those with `id % threads == thread`.
    fn clients_on(&self, thread: usize) -> usize {
        (self.clients + self.threads - 1 - thread) / self.threads
    }

    /// When message `seq` (from 1) of `sender` is due in rate mode. Senders take turns, so the
    /// whole stream is evenly spaced at 1/rate: message n of sender s is number n*S + s overall.
    fn due_us(&self, start_us: u64, sender: usize, seq: u64) -> u64 {
        let overall = (seq - 1) * self.senders as u64 + sender as u64;
        start_us + (overall as f64 * 1e6 / self.rate) as u64
    }
}

fn check_counts(a: &ChatArgs) -> Result<(), String> {
    if a.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if a.senders == 0 || a.senders > a.clients {
        return Err(format!("--senders must be between 1 and --clients ({}), not {}", a.clients, a.senders));
    }
    // Each worker keeps one sequence number per (sender, client) pair: bound that memory.
    if a.senders.saturating_mul(a.clients) > 1 << 26 {
        return Err("--senders x --clients must not exceed 67 million".into());
    }
    Ok(())
}

fn check_channel(c: &str) -> Result<(), String> {
    let valid_start = matches!(c.as_bytes().first(), Some(b'#' | b'&' | b'+' | b'!'));
    let valid_bytes = !c.bytes().any(|b| matches!(b, b' ' | b',' | 7 | b'\r' | b'\n' | 0));
    if !valid_start || !valid_bytes || c.len() < 2 || c.len() > 200 {
        return Err(format!(
            "--channel `{c}` is not an IRC channel name (e.g. #bench: starts with #, &, + or !, \
             no spaces or commas)"
        ));
    }
    Ok(())
}

fn check_secs(flag: &str, v: f64, zero_ok: bool) -> Result<(), String> {
    let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if !v.is_finite() || !low_ok || v > 1e7 {
        let what = if zero_ok { "0 or more" } else { "more than 0" };
        return Err(format!("{flag} must be {what} seconds (at most 1e7), not {v}"));
    }
    Ok(())
}

/// Our PRIVMSG, with the prefix a server adds when relaying it, must fit one IRC line.
fn check_size(size: usize, channel: &str) -> Result<(), String> {
    if relayed_len(channel, size) > IRC_LINE_MAX {
        let max = IRC_LINE_MAX - relayed_len(channel, 0);
        return Err(format!(
            "--size {size} would make relayed PRIVMSGs longer than IRC's 512-byte line; \
             the largest --size for channel {channel} is {max}"
        ));
    }
    Ok(())
}

/// Longest relayed copy of our PRIVMSG, CR LF included.
fn relayed_len(channel: &str, size: usize) -> usize {
    RELAY_PREFIX + "PRIVMSG  :".len() + channel.len() + HEADER_MAX + 1 + size + 2
}

/// Per-sender window: `senders x window` messages of `line` bytes stay within
/// [`RECEIVER_BUDGET`]; at least 1 so every sender can send at all.
fn window(senders: usize, line: usize) -> u64 {
    let w = RECEIVER_BUDGET / (senders * line).max(1);
    (w as u64).clamp(1, MAX_WINDOW)
}

// ---------------------------------------------------------------------------------------------
// State shared between the coordinator and the workers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Phase {
    Setup = 0,
    Run = 1,
    Quit = 2,
    Abort = 3,
}

#[derive(Clone, Copy, Debug)]
struct Schedule {
    start_us: u64,
    /// End of warm-up: messages sent from here on count.
    measure_us: u64,
    /// Senders send nothing due at or after this.
    end_us: u64,
}

struct Shared {
    /// The one clock base of every timestamp.
    base: Instant,
    phase: AtomicU8,
    schedule: OnceLock<Schedule>,
    /// Clients registered, joined and (after setup) still connected.
    ready: AtomicUsize,
    /// First setup failure, shown to the user as is.
    fatal: Mutex<Option<String>>,
    /// Deliveries counted so far (after warm-up), for progress.
    deliveries: AtomicU64,
    senders: usize,
    /// `[thread * senders + sender]`: the highest sequence number of `sender` that every
    /// client of `thread` has received (u64::MAX when the thread has no receiver for it).
    acked: Vec<AtomicU64>,
    /// `[sender]`: the last sequence number sent, which the drain waits for (stored before the
    /// message is written, so no receiver sees a higher one from a working server).
    last_sent: Vec<AtomicU64>,
    /// `[sender]`: its first sequence number sent after warm-up; 0 until then.
    first_measured: Vec<AtomicU64>,
    /// `[sender]`: disconnected, so nothing more to wait for, and its losses are not counted.
    gone: Vec<AtomicBool>,
    wakers: Vec<Waker>,
    /// Coalesces wake-ups: set by the first waker, cleared by the woken thread.
    wake_pending: Vec<AtomicBool>,
}

impl Shared {
    fn new(plan: &Plan, wakers: Vec<Waker>) -> Shared {
        let atomics = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Shared {
            base: Instant::now(),
            phase: AtomicU8::new(Phase::Setup as u8),
            schedule: OnceLock::new(),
            ready: AtomicUsize::new(0),
            fatal: Mutex::new(None),
            deliveries: AtomicU64::new(0),
            senders: plan.senders,
            acked: atomics(plan.threads * plan.senders),
            last_sent: atomics(plan.senders),
            first_measured: atomics(plan.senders),
            gone: (0..plan.senders).map(|_| AtomicBool::new(false)).collect(),
            wake_pending: (0..plan.threads).map(|_| AtomicBool::new(false)).collect(),
            wakers,
        }
    }

    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::Run,
            2 => Phase::Quit,
            _ => Phase::Abort,
        }
    }

    fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
        for t in 0..self.wakers.len() {
            self.wake(t);
        }
    }

    fn fail(&self, msg: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(msg);
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn wake(&self, thread: usize) {
        if !self.wake_pending[thread].swap(true, Ordering::SeqCst) {
            // A failed wake only delays the thread until its next TICK.
            let _ = self.wakers[thread].wake();
        }
    }

    /// Highest sequence number of `sender` that every receiver has got.
    fn acked(&self, sender: usize) -> u64 {
        self.acked.iter().skip(sender).step_by(self.senders).map(|a| a.load(Ordering::SeqCst)).min().unwrap_or(u64::MAX)
    }

    /// Every message sent has reached every receiver still connected.
    fn drained(&self, plan: &Plan) -> bool {
        (0..plan.senders)
            .all(|s| self.gone[s].load(Ordering::SeqCst) || self.acked(s) >= self.last_sent[s].load(Ordering::SeqCst))
    }

    /// The measured messages of `sender`, `first..=last`, unless it sent none or is gone.
    fn measured(&self, sender: usize) -> Option<(u64, u64)> {
        let first = self.first_measured[sender].load(Ordering::SeqCst);
        let last = self.last_sent[sender].load(Ordering::SeqCst);
        (first > 0 && !self.gone[sender].load(Ordering::SeqCst)).then_some((first, last))
    }
}

// ---------------------------------------------------------------------------------------------
// Per-thread delivery tracking (the flow-control window)
// ---------------------------------------------------------------------------------------------

/// Marks a (sender, receiver) pair that does not count: the sender's own connection, or a
/// receiver that has disconnected.
const EXCLUDED: u64 = u64::MAX;

/// For each sender, the lowest "last sequence number received" over this thread's clients.
/// Updating it is O(1) amortised per delivery: the row minimum is recomputed only when the last
/// receiver holding the old minimum moves on, which happens once per message.
struct AckTracker {
    receivers: usize,
    /// `[sender * receivers + receiver]`
    last: Vec<u64>,
    min: Vec<u64>,
    /// Receivers whose `last` equals `min`.
    at_min: Vec<usize>,
}

impl AckTracker {
    /// `own[s]` is the local index of sender `s`'s own connection, if it is on this thread.
    fn new(senders: usize, receivers: usize, own: impl Fn(usize) -> Option<usize>) -> Self {
        let mut t = AckTracker {
            receivers,
            last: vec![0; senders * receivers],
            min: vec![0; senders],
            at_min: vec![0; senders],
        };
        for s in 0..senders {
            if let Some(r) = own(s) {
                t.last[s * receivers + r] = EXCLUDED;
            }
            t.recompute(s);
        }
        t
    }

    /// The highest number of sender `s` receiver `r` has got; [`EXCLUDED`] if it does not count.
    fn last(&self, s: usize, r: usize) -> u64 {
        self.last[s * self.receivers + r]
    }

    fn row(&self, s: usize) -> &[u64] {
        &self.last[s * self.receivers..(s + 1) * self.receivers]
    }

    fn recompute(&mut self, s: usize) {
        let row = self.row(s);
        let min = row.iter().copied().min().unwrap_or(EXCLUDED);
        let count = row.iter().filter(|&&v| v == min).count();
        self.min[s] = min;
        self.at_min[s] = count;
    }

    /// Receiver `r` got message `seq` of sender `s`. Returns the new minimum if it moved.
    fn record(&mut self, s: usize, r: usize, seq: u64) -> Option<u64> {
        let i = s * self.receivers + r;
        let old = self.last[i];
        // Stale, duplicated or excluded: nothing moves (and nothing can move backwards).
        if old == EXCLUDED || seq <= old {
            return None;
        }
        self.last[i] = seq;
        self.left_min(s, old)
    }

    /// Receiver `r` is gone: it no longer holds anyone back. Returns the minimums that moved.
    fn remove(&mut self, r: usize) -> Vec<(usize, u64)> {
        let mut moved = Vec::new();
        for s in 0..self.min.len() {
            let i = s * self.receivers + r;
            let old = self.last[i];
            if old == EXCLUDED {
                continue;
            }
            self.last[i] = EXCLUDED;
            if let Some(m) = self.left_min(s, old) {
                moved.push((s, m));
            }
        }
        moved
    }

    /// A receiver of sender `s` moved up from `old`.
    fn left_min(&mut self, s: usize, old: u64) -> Option<u64> {
        if old != self.min[s] {
            return None;
        }
        self.at_min[s] -= 1;
        if self.at_min[s] > 0 {
            return None;
        }
        self.recompute(s);
        Some(self.min[s])
    }
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// TCP connect in progress.
    Connecting,
    /// Registration sent, waiting for 001.
    Registering,
    /// JOIN sent, waiting for 366 (end of NAMES).
    Joining,
    Ready,
}

struct Client {
    id: usize,
    stream: Link,
    state: State,
    nick: String,
    nick_tries: u32,
    lines: Framer,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_pos: usize,
    /// The sender id if this client sends, and its next sequence number (from 1).
    sender: Option<(usize, u64)>,
    /// The server's last ERROR line, the best explanation of a disconnect.
    server_error: Option<String>,
}

/// What a worker hands back at the end.
struct Report {
    sent: u64,
    deliveries: u64,
    errors: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    latency: Histogram<u64>,
    timeline: Vec<u64>,
    handshake: Histogram<u64>,
}

struct Worker {
    index: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    poll: Poll,
    /// Indexed by local client index (also the mio token); `None` once closed.
    clients: Vec<Option<Client>>,
    /// Local indexes of the clients that send.
    senders: Vec<usize>,
    /// How many clients this worker may have between connect and registered, and has.
    batch: usize,
    unregistered: usize,
    acks: AckTracker,
    /// Messages this thread's receivers skipped and may still get.
    gaps: Gaps,
    report: Report,
    /// Deliveries not yet added to `shared.deliveries`.
    unreported: u64,
    scratch: Vec<u8>,
    quit_deadline: Option<u64>,
}

enum ReadEnd {
    Drained,
    Eof,
    Failed(io::Error),
    Closed,
}

impl Worker {
    fn new(index: usize, plan: Arc<Plan>, shared: Arc<Shared>, poll: Poll) -> Worker {
        let receivers = plan.clients_on(index);
        let acks = AckTracker::new(plan.senders, receivers, |s| (plan.thread_of(s) == index).then(|| plan.local_of(s)));
        let senders = (0..plan.senders).filter(|&s| plan.thread_of(s) == index).map(|s| plan.local_of(s)).collect();
        Worker {
            index,
            batch: (usize::from(plan.connect_batch) / plan.threads).max(1),
            clients: Vec::with_capacity(receivers),
            senders,
            unregistered: 0,
            acks,
            gaps: Gaps::new(gaps::CAP),
            report: Report {
                sent: 0,
                deliveries: 0,
                errors: 0,
                lost: 0,
                duplicates: 0,
                reordered: 0,
                latency: new_histogram(),
                timeline: Vec::new(),
                handshake: new_histogram(),
            },
            unreported: 0,
            scratch: vec![0; READ_CHUNK],
            quit_deadline: None,
            plan,
            shared,
            poll,
        }
    }

    fn run(mut self) -> Report {
        for s in 0..self.plan.senders {
            self.publish(s, self.acks.min[s]);
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.shared.now_us();
            let mut timeout = TICK;
            match self.shared.phase() {
                Phase::Abort => break,
                Phase::Setup => self.connect_more(),
                Phase::Run => timeout = self.send_step(now).min(TICK),
                Phase::Quit => {
                    if self.quit_step(now) {
                        break;
                    }
                }
            }
            self.report_progress();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                self.shared.fail(format!("poll: {e}"));
                break;
            }
            self.shared.wake_pending[self.index].store(false, Ordering::SeqCst);
            for ev in events.iter() {
                if ev.token() != WAKE {
                    self.on_event(ev.token().0, ev);
                }
            }
        }
        self.report_progress();
        self.tally_lost();
        self.report
    }

    /// At the end: what each of this thread's receivers never got of each sender's measured
    /// messages (the ones above its highest, and the gaps below it still open).
    fn tally_lost(&mut self) {
        let measured: Vec<Option<(u64, u64)>> = (0..self.plan.senders).map(|s| self.shared.measured(s)).collect();
        let mut lost = self.gaps.untracked;
        for (s, m) in measured.iter().enumerate() {
            let Some((first, last)) = *m else { continue };
            for r in 0..self.acks.receivers {
                let got = self.acks.last(s, r);
                if got != EXCLUDED {
                    lost += last.saturating_sub(got.max(first - 1));
                }
            }
        }
        lost += self
            .gaps
            .count(|s, r, seq| measured[s].is_some_and(|(first, _)| seq >= first) && self.acks.last(s, r) != EXCLUDED);
        self.report.lost = lost;
    }

    fn report_progress(&mut self) {
        if self.unreported > 0 {
            self.shared.deliveries.fetch_add(self.unreported, Ordering::Relaxed);
            self.unreported = 0;
        }
    }

    /// Tell every thread's senders how far this thread's receivers have got.
    fn publish(&self, sender: usize, min: u64) {
        let slot = self.index * self.plan.senders + sender;
        self.shared.acked[slot].store(min, Ordering::SeqCst);
        let owner = self.plan.thread_of(sender);
        if owner != self.index {
            self.shared.wake(owner);
        }
    }

    // --- setup -------------------------------------------------------------------------------

    fn connect_more(&mut self) {
        let total = self.plan.clients_on(self.index);
        while self.unregistered < self.batch && self.clients.len() < total {
            let local = self.clients.len();
            match self.open(local) {
                Ok(c) => {
                    self.clients.push(Some(c));
                    self.unregistered += 1;
                }
                Err(e) => {
                    self.shared.fail(e);
                    return;
                }
            }
        }
    }

    fn open(&mut self, local: usize) -> Result<Client, String> {
        let id = self.plan.client_of(self.index, local);
        let target = self.plan.target_of(id);
        let tcp = TcpStream::connect(target.addr).map_err(|e| connect_error(target.addr, &e))?;
        // Without it Nagle holds a sender's next PRIVMSG until the previous one is acknowledged,
        // and delayed ACKs make that tens of milliseconds of fake latency.
        tcp.set_nodelay(true).map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
        let mut stream = Link::new(tcp, target.tls.as_ref()).map_err(|e| format!("TLS set-up: {e}"))?;
        self.poll
            .registry()
            .register(&mut stream, Token(local), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("registering a socket with the poller: {e}"))?;
        let nick = format!("l{id}");
        let mut out = Vec::with_capacity(256);
        if !self.plan.caps.is_empty() {
            out.extend_from_slice(format!("CAP LS 302\r\nCAP REQ :{}\r\n", self.plan.caps).as_bytes());
        }
        if let Some(p) = &self.plan.password {
            push_command(&mut out, "PASS", p);
        }
        out.extend_from_slice(format!("NICK {nick}\r\nUSER {nick} 0 * :load\r\n").as_bytes());
        if !self.plan.caps.is_empty() {
            out.extend_from_slice(b"CAP END\r\n");
        }
        let sender = (id < self.plan.senders).then_some((id, 1));
        Ok(Client {
            id,
            stream,
            state: State::Connecting,
            nick,
            nick_tries: 0,
            lines: Framer::new(MAX_LINE),
            out,
            out_pos: 0,
            sender,
            server_error: None,
        })
    }

    /// A client finished joining.
    fn joined(&mut self, local: usize) {
        if let Some(c) = self.clients[local].as_mut() {
            c.state = State::Ready;
        }
        self.shared.ready.fetch_add(1, Ordering::AcqRel);
    }

    /// Registration or JOIN failed: the whole run fails with the server's own words.
    fn setup_failed(&mut self, local: usize, what: &str, line: &[u8]) {
        if let Some(c) = self.clients[local].as_ref() {
            self.shared.fail(format!("client {} ({}) {what}; the server said: {}", c.id, c.nick, show(line)));
        }
        self.close(local, "");
    }

    // --- events ------------------------------------------------------------------------------

    fn on_event(&mut self, local: usize, ev: &mio::event::Event) {
        let Some(c) = self.clients.get_mut(local).and_then(Option::as_mut) else {
            return;
        };
        if c.state == State::Connecting {
            match connect_state(c.stream.tcp()) {
                Ok(false) => return,
                Ok(true) => c.state = State::Registering,
                Err(e) => {
                    let reason = connect_error(self.plan.target_of(c.id).addr, &e);
                    self.close(local, &reason);
                    return;
                }
            }
        }
        if ev.is_read_closed() || ev.is_error() {
            self.read(local, true);
        } else if ev.is_readable() {
            self.read(local, false);
        }
        self.flush(local);
        if let Some(h) = self.clients[local].as_mut().and_then(|c| c.stream.handshake_done()) {
            self.report.handshake.saturating_record(h.as_micros().try_into().unwrap_or(u64::MAX));
        }
    }

    /// Read and handle what has arrived. `to_the_end`: the peer has closed or failed, which
    /// edge-triggered readiness reports only once, so read until EOF or error is seen.
    fn read(&mut self, local: usize, to_the_end: bool) {
        let Some(c) = self.clients[local].as_mut() else {
            return;
        };
        // Allocation-free: a framer holds no buffer until a line arrives split across reads.
        let mut lines = std::mem::replace(&mut c.lines, Framer::new(MAX_LINE));
        let mut buf = std::mem::take(&mut self.scratch);
        let end = loop {
            let Some(c) = self.clients[local].as_mut() else {
                break ReadEnd::Closed;
            };
            match c.stream.read(&mut buf) {
                Ok(0) => break ReadEnd::Eof,
                Ok(n) => {
                    // The clock is read per read, not per poll: handling one poll's events
                    // takes long enough for newer messages to arrive meanwhile.
                    let now = self.shared.now_us();
                    each_line(&mut lines, &buf[..n], |line| self.on_line(local, line, now));
                    // A short read means the socket is drained: edge-triggered readiness
                    // fires again when more data arrives, so no extra read to see WouldBlock.
                    if n < buf.len() && !to_the_end {
                        break ReadEnd::Drained;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break ReadEnd::Drained,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break ReadEnd::Failed(e),
            }
        };
        self.scratch = buf;
        if let Some(c) = self.clients[local].as_mut() {
            c.lines = lines;
        }
        match end {
            ReadEnd::Eof => self.close(local, "the server closed the connection"),
            ReadEnd::Failed(e) => self.close(local, &format!("read: {e}")),
            ReadEnd::Drained | ReadEnd::Closed => {}
        }
    }

    fn flush(&mut self, local: usize) {
        let Some(c) = self.clients[local].as_mut() else {
            return;
        };
        if c.state == State::Connecting {
            return;
        }
        if let Err(e) = write_out(c) {
            self.close(local, &format!("write: {e}"));
        }
    }

    fn on_line(&mut self, local: usize, line: &[u8], now: u64) {
        let Some(msg) = Message::parse(line) else {
            return;
        };
        match msg.command {
            b"PING" => {
                if let Some(c) = self.clients[local].as_mut() {
                    push_command(&mut c.out, "PONG", msg.param(0).unwrap_or_default());
                }
            }
            b"PRIVMSG" => self.on_privmsg(local, &msg, now),
            b"CAP" if msg.param(1) == Some(b"NAK") => self.setup_failed(local, "capabilities refused", line),
            b"ERROR" => {
                if let Some(c) = self.clients[local].as_mut() {
                    c.server_error = Some(show(line));
                }
            }
            _ => {
                if let Some(code) = msg.numeric() {
                    self.on_numeric(local, code, &msg, line);
                }
            }
        }
    }

    fn on_numeric(&mut self, local: usize, code: u16, msg: &Message, line: &[u8]) {
        let Some(state) = self.clients[local].as_ref().map(|c| c.state) else {
            return;
        };
        match (state, code) {
            (State::Registering, 1) => self.registered(local, msg),
            (State::Registering, 433 | 436 | 437) => self.next_nick(local, line),
            // Erroneous nickname, password mismatch, banned, already registered.
            (State::Registering, 432 | 462 | 463 | 464 | 465) => self.setup_failed(local, "could not register", line),
            (State::Joining, 366) if msg.param(1).is_some_and(|c| self.is_channel(c)) => self.joined(local),
            // No such channel, too many channels, full, invite-only, banned, bad key, bad
            // channel name, needs a registered nick, needs TLS.
            (State::Joining, 403 | 405 | 471 | 473 | 474 | 475 | 476 | 477 | 489) => {
                self.setup_failed(local, &format!("could not join {}", self.plan.channel), line)
            }
            // During the run, an error reply (e.g. 404 cannot send to channel) means lost
            // messages.
            (State::Ready, 400..=599) if self.shared.phase() == Phase::Run => self.report.errors += 1,
            _ => {}
        }
    }

    fn is_channel(&self, name: &[u8]) -> bool {
        eq_fold(name, self.plan.channel.as_bytes())
    }

    fn registered(&mut self, local: usize, msg: &Message) {
        let channel = &self.plan.channel;
        if let Some(c) = self.clients[local].as_mut() {
            // The server may have changed our nick (e.g. truncated it); 001 says what it is.
            if let Some(nick) = msg.param(0) {
                c.nick = String::from_utf8_lossy(nick).into_owned();
            }
            c.out.extend_from_slice(format!("JOIN {channel}\r\n").as_bytes());
            c.state = State::Joining;
            self.unregistered -= 1;
        }
    }

    fn next_nick(&mut self, local: usize, line: &[u8]) {
        let Some(c) = self.clients[local].as_mut() else {
            return;
        };
        c.nick_tries += 1;
        if c.nick_tries > MAX_NICK_TRIES {
            self.setup_failed(local, "found no free nickname", line);
            return;
        }
        c.nick = format!("l{}_{}", c.id, c.nick_tries);
        c.out.extend_from_slice(format!("NICK {}\r\n", c.nick).as_bytes());
    }

    fn on_privmsg(&mut self, local: usize, msg: &Message, now: u64) {
        let Some(target) = msg.param(0) else {
            return;
        };
        // Anything not addressed to our channel (say, a server notice by PRIVMSG) is not ours.
        if !self.is_channel(target) {
            return;
        }
        let payload = msg
            .param(1)
            .and_then(Payload::parse)
            .filter(|p| p.sender < self.plan.senders as u64 && p.pad_len == self.plan.size);
        let Some(p) = payload else {
            self.report.errors += 1;
            return;
        };
        let sender = p.sender as usize;
        let own = self.clients[local].as_ref().and_then(|c| c.sender).is_some_and(|(s, _)| s == sender);
        // A server that echoes our own messages back (IRCv3 echo-message) delivers nothing.
        if own {
            return;
        }
        // A number never sent is not a copy of our message (no higher one has been written).
        if p.seq == 0 || p.seq > self.shared.last_sent[sender].load(Ordering::SeqCst) {
            self.report.errors += 1;
            return;
        }
        let highest = self.acks.last(sender, local);
        if highest == EXCLUDED {
            return;
        }
        if p.seq <= highest {
            if !self.gaps.arrived(sender, local, p.seq) {
                self.report.duplicates += 1;
                return;
            }
            self.report.reordered += 1;
        } else {
            self.gaps.skipped(sender, local, highest + 1, p.seq);
            if let Some(min) = self.acks.record(sender, local, p.seq) {
                self.publish(sender, min);
            }
        }
        self.count_delivery(p.stamp_us, now);
    }

    fn count_delivery(&mut self, stamp_us: u64, now: u64) {
        let Some(s) = self.shared.schedule.get() else {
            return;
        };
        if stamp_us < s.measure_us {
            return;
        }
        let r = &mut self.report;
        r.deliveries += 1;
        r.latency.saturating_record(now.saturating_sub(stamp_us));
        // Bucketed by receive time, which is bounded by the run's length (the stamp is not).
        let bucket = (now.saturating_sub(s.measure_us) / 1_000_000) as usize;
        if r.timeline.len() <= bucket {
            r.timeline.resize(bucket + 1, 0);
        }
        r.timeline[bucket] += 1;
        self.unreported += 1;
    }

    /// A connection is gone. During setup that fails the run; during the run it is an error
    /// and the receiver stops holding back the senders' windows; when quitting it is expected.
    fn close(&mut self, local: usize, reason: &str) {
        let Some(mut c) = self.clients[local].take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        match self.shared.phase() {
            Phase::Setup => {
                if matches!(c.state, State::Connecting | State::Registering) {
                    self.unregistered -= 1;
                }
                // An empty reason: the caller has already reported the failure.
                let who = format!("client {} ({})", c.id, c.nick);
                match c.server_error {
                    Some(e) => self.shared.fail(format!("{who} was disconnected during setup; the server said: {e}")),
                    None if !reason.is_empty() => self.shared.fail(format!("{who} failed during setup: {reason}")),
                    None => {}
                }
            }
            Phase::Run => {
                self.report.errors += 1;
                self.shared.ready.fetch_sub(1, Ordering::AcqRel);
                for (s, min) in self.acks.remove(local) {
                    self.publish(s, min);
                }
                if let Some((s, _)) = c.sender {
                    self.shared.gone[s].store(true, Ordering::SeqCst);
                }
            }
            Phase::Quit | Phase::Abort => {}
        }
    }

    // --- run ---------------------------------------------------------------------------------

    /// Queue what each local sender may send now; returns how long until the next message is
    /// due (rate mode) or [`TICK`] (unlimited: acks arrive as events or wake-ups).
    fn send_step(&mut self, now: u64) -> Duration {
        let Some(&sched) = self.shared.schedule.get() else {
            return TICK;
        };
        if now >= sched.end_us {
            return TICK;
        }
        let mut next_due = now + TICK.as_micros() as u64;
        for i in 0..self.senders.len() {
            let local = self.senders[i];
            if let Some(due) = self.send_from(local, now, &sched) {
                next_due = next_due.min(due);
            }
            self.flush(local);
        }
        Duration::from_micros(next_due.min(sched.end_us).saturating_sub(now))
    }

    /// Queue messages for one sender within its window and schedule. Returns when the next
    /// one is due, if waiting for the schedule (rather than the window) stopped it.
    fn send_from(&mut self, local: usize, now: u64, sched: &Schedule) -> Option<u64> {
        let plan = &self.plan;
        let c = self.clients[local].as_mut()?;
        let (sender, mut seq) = c.sender?;
        let acked = self.shared.acked(sender);
        let mut due_later = None;
        let first = seq;
        // The window bounds what the server holds; the high-water mark bounds what we hold when
        // the socket is full (and everything when no receiver exists to hold the window back).
        while seq - acked.min(seq) <= plan.window && c.out.len() - c.out_pos < OUT_HIGH_WATER {
            if plan.rate > 0.0 {
                let due = plan.due_us(sched.start_us, sender, seq);
                if due >= sched.end_us {
                    break;
                }
                if due > now {
                    due_later = Some(due);
                    break;
                }
            }
            // Stamped with the real send time: the latency is the server's, not our timer's.
            Payload::write(&mut c.out, &plan.channel, sender, seq, now, &plan.padding);
            if now >= sched.measure_us {
                // Only this thread writes it; stored before the message is written, like last_sent.
                if self.shared.first_measured[sender].load(Ordering::Relaxed) == 0 {
                    self.shared.first_measured[sender].store(seq, Ordering::SeqCst);
                }
                self.report.sent += 1;
            }
            seq += 1;
        }
        if seq != first {
            c.sender = Some((sender, seq));
            self.shared.last_sent[sender].store(seq - 1, Ordering::SeqCst);
        }
        due_later
    }

    // --- quit --------------------------------------------------------------------------------

    /// Send `QUIT :done` once, then wait for the server to close. True when this worker is done.
    fn quit_step(&mut self, now: u64) -> bool {
        if self.quit_deadline.is_none() {
            self.quit_deadline = Some(now + QUIT_TIMEOUT.as_micros() as u64);
            for local in 0..self.clients.len() {
                match self.clients[local].as_mut() {
                    Some(c) if c.state == State::Connecting => self.close(local, ""),
                    Some(c) => {
                        c.out.extend_from_slice(b"QUIT :done\r\n");
                        self.flush(local);
                    }
                    None => {}
                }
            }
        }
        let all_closed = self.clients.iter().all(Option::is_none);
        all_closed || self.quit_deadline.is_some_and(|d| now >= d)
    }
}

/// Finish or check a non-blocking connect: Ok(true) connected, Ok(false) still in progress.
fn connect_state(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

fn connect_error(target: SocketAddr, e: &io::Error) -> String {
    // EMFILE/ENFILE: the one failure the user fixes locally.
    if matches!(e.raw_os_error(), Some(24 | 23)) {
        return format!("connect to {target}: {e} (raise the open-file limit: ulimit -n)");
    }
    format!("connect to {target}: {e}")
}

/// Write what is queued until done or the socket is full (the writable event resumes it).
fn write_out(c: &mut Client) -> io::Result<()> {
    while c.out_pos < c.out.len() {
        match c.stream.write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if c.out_pos == c.out.len() {
        c.out.clear();
        c.out_pos = 0;
    }
    // TLS: what the last write left in rustls goes out now (a no-op on a plain socket).
    c.stream.flush()
}

/// `COMMAND arg`, or `COMMAND :arg` when the argument needs the trailing form.
fn push_command(out: &mut Vec<u8>, command: &str, arg: impl AsRef<[u8]>) {
    let arg = arg.as_ref();
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    if arg.is_empty() || arg.contains(&b' ') || arg[0] == b':' {
        out.push(b':');
    }
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// A server line for an error message: lossy UTF-8, bounded length.
fn show(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// IRC lines
// ---------------------------------------------------------------------------------------------

/// Hands `on_line` each line `chunk` completes (see [`Framer`]: LF-terminated, a CR before it
/// dropped). A line longer than [`MAX_LINE`] is dropped whole: it is not one of our messages,
/// and its truncated start could be misread as one.
fn each_line(lines: &mut Framer, chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
    lines.feed(chunk, |line| {
        if !line.truncated {
            on_line(line.bytes);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Our PRIVMSG text: `<sender-id> <seq> <send-time-micros>[ <padding>]`
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Payload {
    sender: u64,
    seq: u64,
    stamp_us: u64,
    pad_len: usize,
}

impl Payload {
    /// Queue `PRIVMSG <channel> :<sender> <seq> <stamp>[ <padding>]` CR LF.
    fn write(out: &mut Vec<u8>, channel: &str, sender: usize, seq: u64, stamp: u64, pad: &[u8]) {
        out.extend_from_slice(b"PRIVMSG ");
        out.extend_from_slice(channel.as_bytes());
        // Writing to a Vec cannot fail.
        let _ = write!(out, " :{sender} {seq} {stamp}");
        if !pad.is_empty() {
            out.push(b' ');
            out.extend_from_slice(pad);
        }
        out.extend_from_slice(b"\r\n");
    }

    fn parse(text: &[u8]) -> Option<Payload> {
        let (sender, rest) = number(text)?;
        let (seq, rest) = number(rest.strip_prefix(b" ")?)?;
        let (stamp_us, rest) = number(rest.strip_prefix(b" ")?)?;
        let pad_len = match rest {
            [] => 0,
            [b' ', pad @ ..] => pad.len(),
            _ => return None,
        };
        Some(Payload { sender, seq, stamp_us, pad_len })
    }
}

/// A decimal u64 at the start of `s` (at least one digit, no overflow), and what follows it.
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in &s[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, &s[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut framer = Framer::new(MAX_LINE);
        let mut lines = Vec::new();
        for c in chunks {
            each_line(&mut framer, c, |l| lines.push(l.to_vec()));
        }
        lines
    }

    #[test]
    fn overlong_line_dropped_whole_then_resync() {
        let long = vec![b'x'; MAX_LINE + 10];
        let got = split_all(&[&long[..100], &long[100..], b"\r\nPING :ok\r\n"]);
        let want: Vec<&[u8]> = vec![b"PING :ok"];
        assert_eq!(got, want);
    }

    #[test]
    fn ping_forms_and_pong_reply() {
        let mut out = Vec::new();
        for line in [&b"PING :irc.example"[..], b"PING irc.example", b":srv PING :a b"] {
            let m = Message::parse(line).unwrap();
            assert_eq!(m.command, b"PING");
            push_command(&mut out, "PONG", m.param(0).unwrap_or_default());
        }
        push_command(&mut out, "PONG", b"");
        assert_eq!(out, b"PONG irc.example\r\nPONG irc.example\r\nPONG :a b\r\nPONG :\r\n");
    }

    #[test]
    fn payload_round_trip() {
        let mut out = Vec::new();
        Payload::write(&mut out, "#bench", 7, 42, 1_234_567, b"xxxx");
        assert_eq!(out, b"PRIVMSG #bench :7 42 1234567 xxxx\r\n");
        // As relayed by a server, through the splitter and parser.
        let relayed = [&b":l7!~l7@127.0.0.1 "[..], &out].concat();
        let lines = split_all(&[&relayed]);
        let m = Message::parse(&lines[0]).unwrap();
        let p = Payload::parse(m.param(1).unwrap()).unwrap();
        let want = Payload { sender: 7, seq: 42, stamp_us: 1_234_567, pad_len: 4 };
        assert_eq!(p, want);

        out.clear();
        Payload::write(&mut out, "#b", 0, 1, 9, b"");
        assert_eq!(out, b"PRIVMSG #b :0 1 9\r\n");
        assert_eq!(Payload::parse(b"0 1 9").unwrap().pad_len, 0);
    }

    #[test]
    fn malformed_payloads_rejected() {
        for text in [
            &b""[..],
            b"hello world",
            b"1 2",
            b"1 2 x",
            b"1  2 3",
            b"1 2 3x",
            b"-1 2 3",
            b"1 2 99999999999999999999999",
        ] {
            assert_eq!(Payload::parse(text), None, "{:?}", show(text));
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator: every byte value, odd lengths, stray CRs and colons.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut data = Vec::new();
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = match x % 8 {
                0 => b'\n',
                1 => b' ',
                2 => b':',
                3 => b'\r',
                4 => b'0' + (x >> 8) as u8 % 10,
                _ => (x >> 16) as u8,
            };
            data.push(b);
        }
        let mut framer = Framer::new(MAX_LINE);
        let mut seen = 0;
        for chunk in data.chunks(997) {
            each_line(&mut framer, chunk, |line| {
                seen += 1;
                if let Some(m) = Message::parse(line) {
                    let _ = m.numeric();
                    for &p in m.params() {
                        let _ = Payload::parse(p);
                        let _ = eq_fold(p, b"#bench");
                    }
                }
                let _ = show(line);
            });
        }
        assert!(seen > 1000);
        assert_eq!(Message::parse(b""), None);
        assert_eq!(Message::parse(b"   "), None);
        assert_eq!(Message::parse(b":only-prefix"), None);
        assert_eq!(Message::parse(b"@tags-only"), None);
    }

    #[test]
    fn ack_tracker_moves_with_the_slowest_receiver() {
        // 2 senders, 3 receivers; receiver 0 is sender 0's own connection.
        let mut t = AckTracker::new(2, 3, |s| (s == 0).then_some(0));
        assert_eq!((t.min[0], t.min[1]), (0, 0));
        assert_eq!(t.record(0, 1, 1), None, "receiver 2 has not got it yet");
        assert_eq!(t.record(0, 2, 1), Some(1));
        assert_eq!(t.record(0, 0, 5), None, "the sender's own connection never counts");
        assert_eq!(t.record(0, 1, 1), None, "duplicates change nothing");
        assert_eq!(t.record(1, 0, 3), None);
        assert_eq!(t.record(1, 1, 2), None);
        // Receiver 2 disconnects: sender 1's minimum jumps to the slowest remaining one.
        assert_eq!(t.remove(2), vec![(1, 2)]);
        assert_eq!(t.record(0, 1, 2), Some(2));
    }

    #[test]
    fn ack_tracker_without_receivers_never_blocks() {
        let t = AckTracker::new(1, 1, |_| Some(0));
        assert_eq!(t.min[0], EXCLUDED);
    }

    fn args() -> ChatArgs {
        ChatArgs {
            target: vec!["127.0.0.1:6667".parse().unwrap()],
            clients: 1000,
            senders: 10,
            rate: 0.0,
            duration: 10.0,
            warmup: 1.0,
            channel: "#bench".into(),
            size: 64,
            password: None,
            caps: String::new(),
            threads: Some(4),
            connect_batch: DEFAULT_CONNECT_BATCH,
            tls: TlsArgs::default(),
        }
    }

    #[test]
    fn plan_checks_arguments() {
        let p = Plan::new(&args()).unwrap();
        assert!(p.window >= 1 && p.window * 10 * relayed_len("#bench", 64) as u64 <= 16384);
        let bad = |f: &dyn Fn(&mut ChatArgs)| {
            let mut a = args();
            f(&mut a);
            Plan::new(&a).err().unwrap()
        };
        assert!(bad(&|a| a.senders = 1001).contains("--senders"));
        assert!(bad(&|a| a.senders = 0).contains("--senders"));
        assert!(bad(&|a| a.channel = "bench".into()).contains("--channel"));
        assert!(bad(&|a| a.channel = "#a b".into()).contains("--channel"));
        assert!(bad(&|a| a.size = 500).contains("largest --size"));
        assert!(bad(&|a| a.rate = f64::NAN).contains("--rate"));
        assert!(bad(&|a| a.duration = 0.0).contains("--duration"));
        assert!(bad(&|a| a.password = Some("a\r\nQUIT".into())).contains("--password"));
    }

    #[test]
    fn clients_spread_over_threads() {
        let mut a = args();
        a.clients = 10;
        a.threads = Some(3);
        let p = Plan::new(&a).unwrap();
        let counts: Vec<usize> = (0..3).map(|t| p.clients_on(t)).collect();
        assert_eq!(counts, [4, 3, 3]);
        for id in 0..10 {
            assert_eq!(p.client_of(p.thread_of(id), p.local_of(id)), id);
        }
        a.threads = Some(64);
        assert_eq!(Plan::new(&a).unwrap().threads, 10);
    }

    #[test]
    fn clients_spread_over_targets_round_robin() {
        let mut a = args();
        (a.clients, a.senders) = (7, 2);
        a.target = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].iter().map(|t| t.parse().unwrap()).collect();
        let p = Plan::new(&a).unwrap();
        let ports: Vec<u16> = (0..7).map(|id| p.target_of(id).addr.port()).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3, 1]);
        a.target.clear();
        assert!(Plan::new(&a).err().unwrap().contains("--target"));
    }

    #[test]
    fn rate_schedule_interleaves_senders() {
        let mut a = args();
        a.rate = 1000.0;
        let p = Plan::new(&a).unwrap();
        // 10 senders at 1000/s overall: each sends every 10 ms, sender s offset by s ms.
        assert_eq!(p.due_us(0, 0, 1), 0);
        assert_eq!(p.due_us(0, 3, 1), 3000);
        assert_eq!(p.due_us(0, 3, 2), 13000);
    }
}
