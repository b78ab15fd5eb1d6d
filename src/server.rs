//! The server's lifecycle, as an embeddable value: [`Server::bind`] opens the listeners (so the
//! caller learns the bound addresses before anything runs), [`Server::run`] wires the parts
//! together — port, workers, acceptor, housekeeping, metrics — and serves until its [`Shutdown`]
//! token is requested, then drains and returns the [`FinalStats`]. Signals are the binary's
//! business (src/main.rs); a test or another program just calls [`Shutdown::request`].

use crate::acceptor::{self, Acceptor, AcceptorConfig, Listener};
use crate::buffer::BufferPool;
use crate::chat::{self, Chat};
use crate::config::{Config, IoChoice, Mode};
use crate::echo::Echo;
use crate::limits::{Limit, PerIpCap};
use crate::metrics::Metrics;
use crate::port::{CompletionPort, Io, QUIET_SWEEP};
use crate::shutdown::{Phase, Shutdown};
use crate::stats::{Snapshot, Stats};
use crate::tls::Tls;
use crate::worker::{Handler, PortOf, WorkerPool};
use std::fmt::{self, Write as _};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Idle pooled buffers kept for reuse; beyond this, returned buffers are freed.
const POOL_RETAIN: usize = 1024;

/// A server with its listeners bound, not yet serving.
pub struct Server {
    config: Config,
    io: Io,
    listeners: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
    /// `--tls-listen`'s, with the certificate they present.
    tls_listeners: Vec<TcpListener>,
    tls_addrs: Vec<SocketAddr>,
    tls: Option<Tls>,
    metrics: Option<(TcpListener, SocketAddr)>,
    motd: Option<Vec<String>>,
}

/// Why the server could not start. Each keeps the OS error, so a caller can tell "address in use"
/// from "permission denied" by [`kind`](Self::kind).
#[derive(Debug)]
pub enum StartError {
    /// A `--listen` address could not be bound.
    Listen { addr: SocketAddr, source: io::Error },
    /// The `--metrics-listen` address could not be bound.
    Metrics { addr: SocketAddr, source: io::Error },
    /// The `--motd` file could not be read.
    Motd { path: PathBuf, source: io::Error },
    /// The OS poller could not be created.
    Port(io::Error),
    /// A thread could not be started.
    Thread { what: &'static str, source: io::Error },
    /// `--io uring`, and io_uring cannot be used here (why, in words).
    Uring { why: String },
    /// The TLS settings are incomplete, or the certificate or key cannot be used (why, in words).
    Tls { why: String },
    /// The protocol's own start failed (chat's link to Redis: why, in words).
    Handler { why: String },
}

impl StartError {
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            StartError::Listen { source, .. }
            | StartError::Metrics { source, .. }
            | StartError::Motd { source, .. }
            | StartError::Port(source)
            | StartError::Thread { source, .. } => source.kind(),
            StartError::Uring { .. } => io::ErrorKind::Unsupported,
            StartError::Tls { .. } | StartError::Handler { .. } => io::ErrorKind::InvalidInput,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Metrics { addr, source } => write!(f, "cannot serve metrics on {addr}: {source}"),
            StartError::Motd { path, source } => write!(f, "cannot read --motd file '{}': {source}", path.display()),
            StartError::Port(source) => write!(f, "cannot create the completion port: {source}"),
            StartError::Thread { what, source } => write!(f, "cannot start {what}: {source}"),
            StartError::Uring { why } => write!(f, "cannot use io_uring (--io uring): {why}"),
            StartError::Tls { why } => write!(f, "cannot serve TLS: {why}"),
            StartError::Handler { why } => write!(f, "cannot start: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Listen { source, .. }
            | StartError::Metrics { source, .. }
            | StartError::Motd { source, .. }
            | StartError::Port(source)
            | StartError::Thread { source, .. } => Some(source),
            StartError::Uring { .. } | StartError::Tls { .. } | StartError::Handler { .. } => None,
        }
    }
}

/// What a server did, returned by [`Server::run`] once it has stopped (and logged as `final stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStats {
    pub totals: Snapshot,
    /// How often each limit was hit, by its name (as in `echoport_limit_hits_total`).
    pub limit_hits: Vec<(&'static str, u64)>,
    /// Connections still open when `--shutdown-timeout` ran out, closed before they finished.
    pub cut_off: usize,
}

impl FinalStats {
    /// Hits of the limit named `name` (0 for an unknown name).
    pub fn hits(&self, name: &str) -> u64 {
        self.limit_hits.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v)
    }
}

impl Server {
    /// Reads what the configuration names (the MOTD file) and binds every listener; nothing is
    /// accepted until [`run`](Self::run).
    pub fn bind(config: &Config) -> Result<Server, StartError> {
        let io = choose_io(config.io)?;
        let motd = match (&config.mode, &config.chat.motd) {
            (Mode::Chat, Some(path)) => {
                Some(chat::read_motd(path).map_err(|source| StartError::Motd { path: path.clone(), source })?)
            }
            _ => None,
        };
        let tls = load_tls(config)?;
        let bind_all = |addrs: &[SocketAddr]| {
            let listeners = addrs
                .iter()
                .map(|&addr| acceptor::bind(addr, config.backlog).map_err(|source| StartError::Listen { addr, source }))
                .collect::<Result<Vec<_>, _>>()?;
            let bound = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
            Ok::<_, StartError>((listeners, bound))
        };
        let (listeners, addrs) = bind_all(&config.listen)?;
        let (tls_listeners, tls_addrs) = bind_all(&config.tls.tls_listen)?;
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let bound = TcpListener::bind(addr).and_then(|l| Ok((l.local_addr()?, l)));
                let (bound, listener) = bound.map_err(|source| StartError::Metrics { addr, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        Ok(Server { config: config.clone(), io, listeners, addrs, tls_listeners, tls_addrs, tls, metrics, motd })
    }

    /// The bound listen addresses (with the ports the OS picked for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound `--tls-listen` addresses.
    pub fn local_tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The certificate the TLS listeners present, for [`Tls::reload`] (SIGHUP); `None` without
    /// TLS listeners.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The backend the server runs on (`--io auto` has decided by now).
    pub fn io(&self) -> Io {
        self.io
    }

    /// The bound metrics address, if `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|&(_, addr)| addr)
    }

    /// Serves until `shutdown` is requested, then drains: no new connections, open ones finish
    /// their exchange for up to `--shutdown-timeout`, the rest are closed. Errors are for
    /// start-up only.
    pub fn run(mut self, shutdown: Shutdown) -> Result<FinalStats, StartError> {
        let stats = Arc::new(Stats::new(self.config.workers));
        match self.config.mode {
            Mode::Echo => self.serve(Arc::new(Echo), stats, shutdown),
            Mode::Chat => {
                let chat = Chat::new(self.config.chat.clone(), self.motd.take(), stats.clone());
                self.serve(Arc::new(chat), stats, shutdown)
            }
        }
    }

    fn serve<H: Handler>(
        self,
        handler: Arc<H>,
        stats: Arc<Stats>,
        shutdown: Shutdown,
    ) -> Result<FinalStats, StartError> {
        let config = &self.config;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = BufferPool::new(config.buffer_size, POOL_RETAIN);
        // io_uring: a ring per core, each with a worker of its own (so no more than the workers).
        let rings = cores.min(config.workers);
        let cores = if self.io == Io::Uring { rings } else { cores };
        let port: PortOf<H> = CompletionPort::with_io(self.io, pool, cores).map_err(StartError::Port)?;
        handler.started(&port).map_err(|why| StartError::Handler { why })?;
        let per_ip = PerIpCap::new(config.max_conns_per_ip);
        if let Some(cap) = &per_ip {
            cap.watch(&port);
        }
        let thread = |what| move |source| StartError::Thread { what, source };
        let mut threads = Threads {
            port: port.clone(),
            shutdown: shutdown.clone(),
            workers: Some(WorkerPool::spawn(&port, &handler, &stats).map_err(thread("the workers"))?),
            housekeeper: None,
            metrics: None,
            acceptor: None,
        };
        threads.housekeeper =
            Some(spawn_housekeeper(&port, &handler, &stats, config, &shutdown).map_err(thread("housekeeping"))?);
        if let Some((listener, addr)) = self.metrics {
            let metrics = Metrics::spawn(listener, port.clone(), stats.clone(), handler.clone(), shutdown.clone());
            threads.metrics = Some(metrics.map_err(thread("the metrics endpoint"))?);
            tracing::info!("metrics on http://{addr}/metrics");
        }
        // Last, so no connection arrives before everything that serves it runs.
        let config_acceptor = AcceptorConfig { max_conns: config.max_conns, per_ip };
        let plain = self.listeners.into_iter().map(|socket| Listener { socket, tls: None });
        let tls_config = self.tls.as_ref().map(|t| t.config().clone());
        let tls = self.tls_listeners.into_iter().map(|socket| Listener { socket, tls: tls_config.clone() });
        let listeners = plain.chain(tls).collect();
        let acceptor =
            Acceptor::spawn(listeners, port.clone(), config_acceptor, handler, stats.clone(), shutdown.clone());
        threads.acceptor = Some(acceptor.map_err(thread("the acceptor"))?);

        // `tls=` last: scripts read the plain addresses up to ` mode=`.
        let tls_addrs = (!self.tls_addrs.is_empty()).then(|| join_addrs(&self.tls_addrs).replace(' ', ""));
        let chat = &config.chat;
        let cluster = chat.cluster.as_ref().filter(|_| config.mode == Mode::Chat);
        let node = cluster.map(|_| chat.node());
        tracing::info!(
            mode = %config.mode.name(),
            io = %self.io.name(),
            workers = config.workers,
            tls = tls_addrs.as_deref().map(tracing::field::display),
            cluster = cluster.map(tracing::field::display),
            node = node.map(tracing::field::display),
            "listening on {}",
            join_addrs(&self.addrs)
        );
        tracing::info!(
            max_conns = config.max_conns,
            max_conns_per_ip = config.max_conns_per_ip,
            backlog = config.backlog,
            buffer_size = config.buffer_size,
            idle_timeout = ?config.idle_timeout,
            shutdown_timeout = ?config.shutdown_timeout,
            "configuration"
        );

        shutdown.wait();
        tracing::info!(
            open = port.open_sockets(),
            timeout = ?config.shutdown_timeout,
            "shutdown requested: no longer accepting, finishing open connections"
        );
        if let Some(acceptor) = threads.acceptor.take() {
            acceptor.join();
        }
        let mut cut_off = 0;
        if !drain(&port, Instant::now() + config.shutdown_timeout) {
            cut_off = port.open_sockets();
            tracing::warn!(open = cut_off, "shutdown timeout: closing remaining connections");
            port.close_all();
        }
        drop(threads);
        let totals = stats.snapshot(port.open_sockets());
        totals.log("final stats", 0, &stats.limits);
        tracing::info!("shutdown complete");
        let limit_hits = stats.limits.counts().map(|(limit, n)| (limit.name(), n)).collect();
        Ok(FinalStats { totals, limit_hits, cut_off })
    }
}

/// The threads of a running server, stopped in order when dropped: whether the server drained
/// or a later thread failed to start, none outlives [`Server::run`].
struct Threads<C: Send + Sync + 'static> {
    port: CompletionPort<C>,
    shutdown: Shutdown,
    workers: Option<WorkerPool>,
    housekeeper: Option<JoinHandle<()>>,
    metrics: Option<Metrics>,
    acceptor: Option<Acceptor>,
}

impl<C: Send + Sync + 'static> Drop for Threads<C> {
    fn drop(&mut self) {
        self.shutdown.request();
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join();
        }
        self.shutdown.stopped();
        if let Some(housekeeper) = self.housekeeper.take() {
            let _ = housekeeper.join();
        }
        self.port.shutdown();
        if let Some(workers) = self.workers.take() {
            workers.join();
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.join();
        }
    }
}

/// What `--io` comes to here. `auto` says, in one line, why it is not io_uring when it is not.
fn choose_io(choice: IoChoice) -> Result<Io, StartError> {
    match choice {
        IoChoice::Only(Io::Epoll) => Ok(Io::Epoll),
        IoChoice::Only(Io::Uring) => uring_usable().map(|()| Io::Uring).map_err(|why| StartError::Uring { why }),
        IoChoice::Auto => match uring_usable() {
            Ok(()) => Ok(Io::Uring),
            Err(why) => {
                tracing::info!("io_uring not used, falling back to epoll: {why}");
                Ok(Io::Epoll)
            }
        },
    }
}

#[cfg(target_os = "linux")]
fn uring_usable() -> Result<(), String> {
    crate::port::probe_uring()
}

#[cfg(not(target_os = "linux"))]
fn uring_usable() -> Result<(), String> {
    Err("io_uring is Linux-only".to_owned())
}

/// Ends connections as they go quiet, until none is open (true) or the deadline passes.
fn drain<C: Send + Sync + 'static>(port: &CompletionPort<C>, deadline: Instant) -> bool {
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

/// The certificate and key, when TLS listeners need them.
fn load_tls(config: &Config) -> Result<Option<Tls>, StartError> {
    let t = &config.tls;
    if t.tls_listen.is_empty() {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&t.tls_cert, &t.tls_key) else {
        return Err(StartError::Tls { why: "--tls-listen needs --tls-cert and --tls-key".to_owned() });
    };
    Tls::load(cert, key).map(Some).map_err(|why| StartError::Tls { why })
}

fn join_addrs(addrs: &[SocketAddr]) -> String {
    let mut s = String::new();
    for (i, a) in addrs.iter().enumerate() {
        let _ = write!(s, "{}{a}", if i > 0 { ", " } else { "" });
    }
    s
}

/// Once a second until the server has stopped: advance the port clock, expire idle connections
/// (echo; chat has its own PING timeout) and run the handler's timers; every stats interval, log
/// the counters.
fn spawn_housekeeper<H: Handler>(
    port: &PortOf<H>,
    handler: &Arc<H>,
    stats: &Arc<Stats>,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<JoinHandle<()>> {
    let (port, handler, stats, shutdown) = (port.clone(), handler.clone(), stats.clone(), shutdown.clone());
    let idle = config.idle_timeout.filter(|_| config.mode == Mode::Echo);
    let interval = config.stats_interval;
    let (tls, handshake_timeout) = (!config.tls.tls_listen.is_empty(), config.tls.tls_handshake_timeout);
    std::thread::Builder::new().name("echoport-housekeeper".into()).spawn(move || {
        let mut last_report = (Instant::now(), stats.snapshot(0).messages);
        while !shutdown.wait_for(Phase::Stopped, Some(Duration::from_secs(1))) {
            port.tick();
            if let Some(idle) = idle {
                let expired = port.expire_idle(idle);
                stats.limits.hit_n(Limit::IdleTimeout, expired as u64, None);
            }
            if tls {
                let expired = port.expire_tls_handshakes(handshake_timeout);
                stats.limits.hit_n(Limit::TlsHandshakeTimeout, expired as u64, None);
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
}
