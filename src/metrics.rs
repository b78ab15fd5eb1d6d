//! `--metrics-listen`: Prometheus text exposition at /metrics, served by its own thread.

use crate::port::CompletionPort;
use crate::stats::Stats;
use crate::worker::Handler;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running metrics endpoint.
pub struct Metrics {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Metrics {
    /// Binds `addr` and serves until [`stop`](Self::stop). Returns the bound address too.
    pub fn spawn(
        addr: SocketAddr,
        port: CompletionPort,
        stats: Arc<Stats>,
        handler: Arc<dyn Handler>,
    ) -> Result<(Self, SocketAddr), String> {
        let server = tiny_http::Server::http(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("echoport-metrics".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    // A short wait so `stop` is noticed promptly.
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else { continue };
                    let response = if request.url() == "/metrics" {
                        let body = render(&port, &stats, &*handler);
                        let content_type = "Content-Type: text/plain; version=0.0.4; charset=utf-8";
                        tiny_http::Response::from_string(body)
                            .with_header(content_type.parse::<tiny_http::Header>().expect("a valid header"))
                    } else {
                        tiny_http::Response::from_string("not found; try /metrics\n").with_status_code(404)
                    };
                    let _ = request.respond(response);
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok((Metrics { stop, thread }, bound))
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// The exposition text.
pub fn render(port: &CompletionPort, stats: &Stats, handler: &dyn Handler) -> String {
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
