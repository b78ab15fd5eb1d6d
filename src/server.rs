//! Wires the parts together: listeners, port, workers, acceptor, housekeeping, shutdown.

use crate::acceptor::{self, Acceptor, AcceptorConfig};
use crate::buffer::BufferPool;
use crate::chat::{self, Chat};
use crate::config::{Config, LogFormat, Mode};
use crate::echo::Echo;
use crate::limits::{Limit, PerIpCap};
use crate::metrics::Metrics;
use crate::port::{CompletionPort, QUIET_SWEEP};
use crate::shutdown::ShutdownSignals;
use crate::stats::Stats;
use crate::worker::{Handler, WorkerPool};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Idle pooled buffers kept for reuse; beyond this, returned buffers are freed.
const POOL_RETAIN: usize = 1024;

/// Sets up logging to stderr: `--log-level` if given, else RUST_LOG, else "info".
pub fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match &config.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|e| {
        eprintln!("warning: bad log filter ({e}); using \"info\"");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Runs the server until SIGINT/SIGTERM and a drain. Errors are for start-up only.
pub fn run(config: Config) -> Result<(), String> {
    let listeners = config
        .listen
        .iter()
        .map(|&addr| acceptor::bind(addr, config.backlog).map_err(|e| format!("cannot listen on {addr}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let bound: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let signals = ShutdownSignals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = BufferPool::new(config.buffer_size, POOL_RETAIN);
    let port = CompletionPort::new(pool, cores).map_err(|e| format!("cannot create the completion port: {e}"))?;
    let stats = Arc::new(Stats::new(config.workers));
    let handler: Arc<dyn Handler> = match config.mode {
        Mode::Echo => Arc::new(Echo),
        Mode::Chat => {
            let motd = config.chat.motd.as_deref().map(chat::read_motd).transpose()?;
            Arc::new(Chat::new(config.chat.clone(), motd, stats.clone()))
        }
    };
    let per_ip = PerIpCap::new(config.max_conns_per_ip);
    if let Some(cap) = &per_ip {
        cap.watch(&port);
    }
    let workers =
        WorkerPool::spawn(&port, handler.clone(), &stats).map_err(|e| format!("cannot start workers: {e}"))?;
    let acceptor = Acceptor::spawn(
        listeners,
        port.clone(),
        AcceptorConfig { max_conns: config.max_conns, per_ip },
        handler.clone(),
        stats.clone(),
    )
    .map_err(|e| format!("cannot start the acceptor: {e}"))?;
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let (metrics, bound) = Metrics::spawn(addr, port.clone(), stats.clone(), handler.clone())?;
            tracing::info!("metrics on http://{bound}/metrics");
            Some(metrics)
        }
        None => None,
    };
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let housekeeper = spawn_housekeeper(&port, &handler, &stats, &config, stop_rx)?;

    let mode = config.mode.name();
    tracing::info!(mode = %mode, workers = config.workers, "listening on {}", join_addrs(&bound));
    tracing::info!(
        max_conns = config.max_conns,
        max_conns_per_ip = config.max_conns_per_ip,
        backlog = config.backlog,
        buffer_size = config.buffer_size,
        idle_timeout = ?config.idle_timeout,
        shutdown_timeout = ?config.shutdown_timeout,
        "configuration"
    );

    let mut signals = signals;
    let signal = signals.wait();
    tracing::info!(
        signal = %signal,
        open = port.open_sockets(),
        timeout = ?config.shutdown_timeout,
        "shutdown requested: no longer accepting, finishing open connections"
    );
    signals.exit_on_next();
    acceptor.stop();
    if !drain(&port, Instant::now() + config.shutdown_timeout) {
        tracing::warn!(open = port.open_sockets(), "shutdown timeout: closing remaining connections");
        port.close_all();
    }
    drop(stop_tx);
    let _ = housekeeper.join();
    port.shutdown();
    workers.join();
    if let Some(metrics) = metrics {
        metrics.stop();
    }
    stats.snapshot(port.open_sockets()).log("final stats", 0, &stats.limits);
    tracing::info!("shutdown complete");
    Ok(())
}

/// Ends connections as they go quiet, until none is open (true) or the deadline passes.
fn drain(port: &CompletionPort, deadline: Instant) -> bool {
    loop {
        port.abort_quiet();
        let next = (Instant::now() + QUIET_SWEEP).min(deadline);
        if port.wait_closed(next) {
            return true;
        }
        if next >= deadline {
            return false;
        }
    }
}

fn join_addrs(addrs: &[SocketAddr]) -> String {
    let mut s = String::new();
    for (i, a) in addrs.iter().enumerate() {
        let _ = write!(s, "{}{a}", if i > 0 { ", " } else { "" });
    }
    s
}

/// Once a second: advance the port clock, expire idle connections (echo; chat has its own PING
/// timeout) and run the handler's timers; every stats interval, log the counters. Stops when
/// `stop` is dropped.
fn spawn_housekeeper(
    port: &CompletionPort,
    handler: &Arc<dyn Handler>,
    stats: &Arc<Stats>,
    config: &Config,
    stop: Receiver<()>,
) -> Result<JoinHandle<()>, String> {
    let (port, handler, stats) = (port.clone(), handler.clone(), stats.clone());
    let idle = config.idle_timeout.filter(|_| config.mode == Mode::Echo);
    let interval = config.stats_interval;
    std::thread::Builder::new()
        .name("echoport-housekeeper".into())
        .spawn(move || {
            let mut last_report = (Instant::now(), stats.snapshot(0).messages);
            loop {
                match stop.recv_timeout(Duration::from_secs(1)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                port.tick();
                if let Some(idle) = idle {
                    let expired = port.expire_idle(idle);
                    stats.limits.hit_n(Limit::IdleTimeout, expired as u64, None);
                }
                handler.tick(&port);
                if let Some(interval) = interval {
                    let elapsed = last_report.0.elapsed();
                    if elapsed >= interval {
                        let snap = stats.snapshot(port.open_sockets());
                        let rate = (snap.messages - last_report.1) as f64 / elapsed.as_secs_f64();
                        snap.log("stats", rate as u64, &stats.limits);
                        last_report = (Instant::now(), snap.messages);
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the housekeeping thread: {e}"))
}
