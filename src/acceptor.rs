//! The acceptor thread: owns the listeners, accepts connections, associates each with the
//! completion port and posts its first receive — from then on it belongs to the worker pool.

use crate::limits::{Limit, PerIpCap};
use crate::shutdown::{Phase, Shutdown};
use crate::stats::Stats;
use crate::worker::{Handler, PortOf};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Type};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

const STOP: Token = Token(usize::MAX);
/// First and longest pause after running out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Opens a listening socket: IPv6 sockets IPv6-only (so `[::]:p` and `0.0.0.0:p` can both be
/// listed), the given backlog. On Unix, SO_REUSEADDR lets a restarted server bind at once instead
/// of waiting out TIME_WAIT; on Windows that option would let another process bind the same port
/// while we use it (there, rebinding after TIME_WAIT needs no option).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A listening socket, and the TLS configuration its connections start with, if it is a TLS one.
pub struct Listener {
    pub socket: std::net::TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What the acceptor needs besides the listeners.
pub struct AcceptorConfig {
    /// 0: no limit besides the open-file limit.
    pub max_conns: usize,
    /// `--max-conns-per-ip`; `None`: no cap.
    pub per_ip: Option<Arc<PerIpCap>>,
}

/// A running acceptor thread. It stops accepting, and closes the listeners (new connections are
/// then refused by the kernel), as soon as shutdown is requested.
pub struct Acceptor {
    thread: JoinHandle<()>,
}

impl Acceptor {
    pub fn spawn<H: Handler>(
        listeners: Vec<Listener>,
        port: PortOf<H>,
        config: AcceptorConfig,
        handler: Arc<H>,
        stats: Arc<Stats>,
        shutdown: Shutdown,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        // Shared with the thread, which keeps it open: a waker closed right after waking would
        // take its pending event out of the epoll set before the poll saw it.
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let mut listeners: Vec<(TcpListener, _)> =
            listeners.into_iter().map(|l| (TcpListener::from_std(l.socket), l.tls)).collect();
        for (i, (l, _)) in listeners.iter_mut().enumerate() {
            poll.registry().register(l, Token(i), Interest::READABLE)?;
        }
        let wake = waker.clone();
        shutdown.on(Phase::Draining, move || {
            let _ = wake.wake();
        });
        let mut state = State { poll, _waker: waker, listeners, port, config, handler, stats, shutdown, backoff: None };
        let thread = std::thread::Builder::new().name("echoport-acceptor".into()).spawn(move || state.run())?;
        Ok(Acceptor { thread })
    }

    /// Waits for the thread to end (after shutdown was requested).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the acceptor thread panicked");
        }
    }
}

struct State<H: Handler> {
    poll: Poll,
    _waker: Arc<Waker>,
    listeners: Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    port: PortOf<H>,
    config: AcceptorConfig,
    handler: Arc<H>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    /// Set while out of file descriptors: how long to wait before trying again.
    backoff: Option<Duration>,
}

impl<H: Handler> State<H> {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.shutdown.is_requested() {
            // Edge-triggered: a connection left in the backlog by EMFILE raises no new event,
            // so while backing off we retry on a timer rather than wait for one.
            if let Err(e) = self.poll.poll(&mut events, self.backoff) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "acceptor poll failed");
                    return;
                }
            }
            if self.shutdown.is_requested() {
                return;
            }
            let mut exhausted = false;
            for i in 0..self.listeners.len() {
                exhausted |= self.accept_all(i);
            }
            self.backoff = exhausted.then(|| match self.backoff {
                None => BACKOFF_MIN,
                Some(d) => (d * 2).min(BACKOFF_MAX),
            });
        }
    }

    /// Accepts until the backlog is empty. True when it stopped for lack of file descriptors.
    fn accept_all(&mut self, i: usize) -> bool {
        loop {
            match self.listeners[i].0.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, i),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if retry_at_once(&e) => {}
                Err(e) if out_of_descriptors(&e) => {
                    tracing::debug!(error = %e, open = self.port.open_sockets(), "accept failed");
                    self.stats.limits.hit(Limit::OutOfFds, None);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return false;
                }
            }
        }
    }

    fn admit(&mut self, stream: mio::net::TcpStream, peer: SocketAddr, listener: usize) {
        let tls = self.listeners[listener].1.clone();
        let max = self.config.max_conns;
        if max > 0 && self.port.open_sockets() >= max {
            return self.refuse(stream, peer, Limit::MaxConns, "Server full", tls.is_some());
        }
        let mut slot = None;
        if let Some(cap) = &self.config.per_ip {
            slot = cap.admit(peer.ip());
            if slot.is_none() {
                let reason = "Too many connections from your address";
                return self.refuse(stream, peer, Limit::MaxConnsPerIp, reason, tls.is_some());
            }
        }
        // Echo replies are small and latency-bound: never hold them back for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY failed");
        }
        let associated = match &tls {
            Some(config) => self.port.associate_tls(stream, self.handler.conn(peer), config),
            None => self.port.associate(stream, self.handler.conn(peer)),
        };
        match associated {
            Ok(socket) => {
                // Before the first receive is posted: nothing can close the socket earlier.
                if let Some(slot) = slot {
                    slot.keep_until_closed(socket.key());
                }
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, key = socket.key(), "accepted");
                self.handler.on_accept(&self.port, &socket);
                self.port.post_recv(&socket);
            }
            Err(e) => tracing::warn!(%peer, error = %e, "cannot register connection"),
        }
    }

    /// Tells the client why, if the protocol has a way to (one short write into an empty send
    /// buffer, so it never blocks), and closes it. A TLS client gets no words: it expects a
    /// handshake, and plaintext would only be a protocol error to it.
    fn refuse(&self, stream: mio::net::TcpStream, peer: SocketAddr, limit: Limit, reason: &str, tls: bool) {
        self.stats.limits.hit(limit, Some(peer.ip()));
        if tls {
            return;
        }
        if let Some(line) = self.handler.refusal(peer, reason) {
            let _ = (&stream).write(&line);
        }
    }
}

/// Errors that belong to the one connection being accepted (it died in the backlog, or the
/// network under it failed; accept(2) says to retry as for EAGAIN), or a signal interrupted us:
/// accept the next one at once rather than leave the backlog waiting for a new edge.
pub(crate) fn retry_at_once(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | PermissionDenied) {
        return true;
    }
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return [
            libc::EPROTO,
            libc::ENOPROTOOPT,
            libc::ENETDOWN,
            libc::ENETUNREACH,
            libc::EHOSTDOWN,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
        ]
        .contains(&code);
    }
    false
}

#[cfg(unix)]
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

#[cfg(not(unix))]
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    // WSAEMFILE, WSAENOBUFS
    matches!(e.raw_os_error(), Some(10024 | 10055))
}
