//! The acceptor thread: owns the listeners, accepts connections, associates each with the
//! completion port and posts its first receive — from then on it belongs to the worker pool.

use crate::limits::{Limit, PerIpCap};
use crate::port::CompletionPort;
use crate::stats::Stats;
use crate::worker::Handler;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Type};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const STOP: Token = Token(usize::MAX);
/// First and longest pause after running out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Opens a listening socket: SO_REUSEADDR (restart without waiting out TIME_WAIT), IPv6
/// sockets IPv6-only (so `[::]:p` and `0.0.0.0:p` can both be listed), the given backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What the acceptor needs besides the listeners.
pub struct AcceptorConfig {
    /// 0: no limit besides the open-file limit.
    pub max_conns: usize,
    /// `--max-conns-per-ip`; `None`: no cap.
    pub per_ip: Option<Arc<PerIpCap>>,
}

/// A running acceptor thread.
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

impl Acceptor {
    pub fn spawn(
        listeners: Vec<std::net::TcpListener>,
        port: CompletionPort,
        config: AcceptorConfig,
        handler: Arc<dyn Handler>,
        stats: Arc<Stats>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let mut listeners: Vec<TcpListener> = listeners.into_iter().map(TcpListener::from_std).collect();
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(l, Token(i), Interest::READABLE)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State { poll, listeners, port, config, handler, stats, stop: stop.clone(), backoff: None };
        let thread = std::thread::Builder::new().name("echoport-acceptor".into()).spawn(move || state.run())?;
        Ok(Acceptor { stop, waker, thread })
    }

    /// Stops accepting and closes the listeners; new connections are refused by the kernel.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if self.thread.join().is_err() {
            tracing::error!("the acceptor thread panicked");
        }
    }
}

struct State {
    poll: Poll,
    listeners: Vec<TcpListener>,
    port: CompletionPort,
    config: AcceptorConfig,
    handler: Arc<dyn Handler>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// Set while out of file descriptors: how long to wait before trying again.
    backoff: Option<Duration>,
}

impl State {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::SeqCst) {
            // Edge-triggered: a connection left in the backlog by EMFILE raises no new event,
            // so while backing off we retry on a timer rather than wait for one.
            if let Err(e) = self.poll.poll(&mut events, self.backoff) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "acceptor poll failed");
                    return;
                }
            }
            if self.stop.load(Ordering::SeqCst) {
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
            match self.listeners[i].accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
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

    fn admit(&mut self, stream: mio::net::TcpStream, peer: SocketAddr) {
        let max = self.config.max_conns;
        if max > 0 && self.port.open_sockets() >= max {
            return self.refuse(stream, peer, Limit::MaxConns, "Server full");
        }
        let mut slot = None;
        if let Some(cap) = &self.config.per_ip {
            slot = cap.admit(peer.ip());
            if slot.is_none() {
                return self.refuse(stream, peer, Limit::MaxConnsPerIp, "Too many connections from your address");
            }
        }
        // Echo replies are small and latency-bound: never hold them back for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY failed");
        }
        match self.port.associate(stream) {
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
    /// buffer, so it never blocks), and closes it.
    fn refuse(&self, stream: mio::net::TcpStream, peer: SocketAddr, limit: Limit, reason: &str) {
        self.stats.limits.hit(limit, Some(peer.ip()));
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
