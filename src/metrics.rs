//! `--metrics-listen`: Prometheus text exposition at /metrics, served by its own thread.
//!
//! A few lines of HTTP/1.0 rather than an HTTP library: a scrape is one short GET, answered in full
//! and closed, and the accept loop must survive what the service ports survive (running out of
//! file descriptors pauses it, as in the acceptor, rather than ending it). Each scrape gets a
//! short-lived thread and a deadline, and only a few run at once, so a stalled or trickling
//! client can neither hold up the next scrape nor keep shutdown waiting.
//!
//! The accept is blocking on purpose: Linux hands a blocked accept(2) its descriptor number up
//! front, so the waiting thread holds one slot the service ports cannot take, and a scrape is
//! usually still answered while the server is out of descriptors (tests/faults.rs).

use crate::acceptor::{out_of_descriptors, retry_at_once};
use crate::shutdown::{Phase, Shutdown};
use crate::stats::Stats;
use crate::worker::{Handler, PortOf};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one scraper may take to send its whole request, and again to take the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a closing scrape connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_millis(200);
/// Scrapes answered at once; the next waits for one of them to finish (each is bounded by its
/// deadlines), so a flood of connections cannot start a flood of threads.
const MAX_IN_FLIGHT: usize = 4;
/// The largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A running metrics endpoint. It serves until the server has stopped ([`Phase::Stopped`]), so
/// scrapes still see the drain.
pub struct Metrics {
    thread: JoinHandle<()>,
    /// False when the thread could not be woken (no descriptor left): then it ends with the
    /// process instead of being waited for.
    woken: Arc<AtomicBool>,
}

impl Metrics {
    /// Serves `listener` (already bound, see [`Server::bind`](crate::server::Server::bind)).
    pub fn spawn<H: Handler>(
        listener: TcpListener,
        port: PortOf<H>,
        stats: Arc<Stats>,
        handler: Arc<H>,
        shutdown: Shutdown,
    ) -> io::Result<Self> {
        let bound = listener.local_addr()?;
        let (stop, woken) = (shutdown.clone(), Arc::new(AtomicBool::new(true)));
        let thread = std::thread::Builder::new()
            .name("echoport-metrics".into())
            .spawn(move || serve(&listener, &stop, Arc::new(move || render(&port, &stats, &*handler))))?;
        let flag = woken.clone();
        shutdown.on(Phase::Stopped, move || {
            // The thread waits in a blocking accept: a connection of our own wakes it up (scrapes
            // in progress end by their deadline on their own threads).
            let wake = match bound {
                SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, a.port())),
                SocketAddr::V6(a) if a.ip().is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, a.port())),
                a => a,
            };
            flag.store(TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok(), Ordering::SeqCst);
        });
        Ok(Metrics { thread, woken })
    }

    /// Waits for the thread to end (after the server stopped).
    pub fn join(self) {
        if self.woken.load(Ordering::SeqCst) {
            let _ = self.thread.join();
        }
    }
}

type Body = Arc<dyn Fn() -> String + Send + Sync>;

/// Scrapes being answered, at most [`MAX_IN_FLIGHT`].
#[derive(Default)]
struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// Waits for a free slot and takes it; false if the server stopped meanwhile.
    fn acquire(&self, stop: &Shutdown) -> bool {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if stop.phase() == Phase::Stopped {
                return false;
            }
            if *busy < MAX_IN_FLIGHT {
                *busy += 1;
                return true;
            }
            // Woken by a finished scrape; the timeout only bounds how late `stop` is noticed.
            busy = self.freed.wait_timeout(busy, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn release(&self) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
    }
}

/// Accepts scrapes until the server has stopped, each answered on its own thread.
fn serve(listener: &TcpListener, stop: &Shutdown, body: Body) {
    let slots = Arc::new(Slots::default());
    let mut backoff = None;
    while stop.phase() != Phase::Stopped {
        match listener.accept() {
            Ok((stream, _)) => {
                backoff = None;
                if !slots.acquire(stop) {
                    return;
                }
                let (body, mine) = (body.clone(), slots.clone());
                let spawned = std::thread::Builder::new().name("echoport-scrape".into()).spawn(move || {
                    let _ = answer(stream, &*body);
                    mine.release();
                });
                if spawned.is_err() {
                    slots.release();
                }
            }
            Err(e) if retry_at_once(&e) => {}
            Err(e) => {
                // Out of descriptors, or worse: the scrape waits in the backlog; try again soon.
                let pause = backoff.map_or(Duration::from_millis(10), |d: Duration| (d * 2).min(BACKOFF_MAX));
                if !out_of_descriptors(&e) || backoff.is_none() {
                    tracing::warn!(error = %e, "metrics: accept failed; retrying");
                }
                backoff = Some(pause);
                std::thread::sleep(pause);
            }
        }
    }
}

/// Reads one request head (within [`IO_TIMEOUT`] in all, however slowly it trickles in) and
/// writes the whole reply.
fn answer(mut stream: TcpStream, body: &dyn Fn() -> String) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut timed_out = false;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                timed_out = true;
                break;
            }
            Err(e) => return Err(e),
        };
        if n == 0 || head.len() + n > MAX_REQUEST {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ' || b == b'\r').filter(|w| !w.is_empty());
    let is_method = |m: &[u8]| m.iter().all(u8::is_ascii_uppercase);
    let text = |s: &str| ("text/plain", s.to_owned());
    // Query parameters (Prometheus `params:`) are accepted and ignored.
    let path = |p: &[u8]| p.split(|&b| b == b'?').next().unwrap_or_default().to_vec();
    let (status, (content_type, text)) = match (words.next(), words.next().map(path)) {
        _ if timed_out => ("408 Request Timeout", text("request not finished in time\n")),
        (Some(b"GET"), Some(p)) if p == b"/metrics" => ("200 OK", ("text/plain; version=0.0.4; charset=utf-8", body())),
        (Some(b"GET"), Some(_)) => ("404 Not Found", text("not found; try /metrics\n")),
        (Some(m), Some(_)) if is_method(m) => ("405 Method Not Allowed", text("only GET\n")),
        _ => ("400 Bad Request", text("bad request\n")),
    };
    let length = text.len();
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all((head + &text).as_bytes())?;
    // Closing with unread request bytes would reset the connection, and a reset can destroy the
    // reply before the client reads it: end our side, then take what is still coming for a moment.
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(LINGER))?;
    let mut drained = 0;
    while drained < MAX_REQUEST {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

/// The exposition text.
pub fn render<H: Handler>(port: &PortOf<H>, stats: &Stats, handler: &H) -> String {
    let snap = stats.snapshot(port.open_sockets());
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    metric("echoport_connections_open", "gauge", "Connections open now.", &one(snap.open));
    let io = [(format!("{{backend=\"{}\"}}", port.io().name()), 1)];
    metric("echoport_io_backend", "gauge", "The I/O backend in use (--io), as a label.", &io);
    metric("echoport_connections_accepted_total", "counter", "Connections accepted.", &one(snap.total));
    metric(
        "echoport_connections_refused_total",
        "counter",
        "Connections refused by --max-conns or --max-conns-per-ip.",
        &one(snap.refused),
    );
    metric("echoport_received_bytes_total", "counter", "Bytes received from clients.", &one(snap.bytes_in));
    metric("echoport_sent_bytes_total", "counter", "Bytes sent to clients.", &one(snap.bytes_out));
    metric("echoport_messages_total", "counter", "Receive completions carrying data.", &one(snap.messages));
    let per_worker: Vec<(String, u64)> = stats
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), w.completions.load(Ordering::Relaxed)))
        .collect();
    metric("echoport_completions_total", "counter", "Completions handled, per worker thread.", &per_worker);
    metric(
        "echoport_queue_depth",
        "gauge",
        "Tasks waiting in the completion port's shared queue.",
        &one(port.queue_depth() as u64),
    );
    let errors = [("{kind=\"timeout\"}".to_owned(), snap.timeouts), ("{kind=\"io\"}".to_owned(), snap.errors)];
    metric("echoport_errors_total", "counter", "Connections ended by an error, by kind.", &errors);
    let hits: Vec<(String, u64)> =
        stats.limits.counts().map(|(limit, n)| (format!("{{limit=\"{}\"}}", limit.name()), n)).collect();
    metric("echoport_limit_hits_total", "counter", "Times each configured limit was hit.", &hits);
    for (name, help, value) in handler.counters() {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        metric(name, kind, help, &one(value));
    }
    out
}
