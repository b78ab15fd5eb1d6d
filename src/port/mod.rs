//! The completion port: an IOCP-style completion queue over mio.
//!
//! The API is the article's: [`associate`](CompletionPort::associate) a socket with its
//! per-connection state, [`post_recv`](CompletionPort::post_recv) /
//! [`post_send`](CompletionPort::post_send) operations, and [`get`](CompletionPort::get) the next
//! [`Completion`] from any number of worker threads. How `get` shares one OS poller among many
//! threads is the backend's business ([`Io`]): `epoll` (readiness, over mio) turns readiness
//! into completions, `uring` (Linux) uses the kernel's own completion queue. What the port
//! keeps of a socket is in `socket`.
//!
//! The port is generic over `C`, the protocol's per-connection state (IOCP's completion key
//! data): each [`Socket`] carries one `C`, typed, allocated with the socket.

mod epoll;
mod payload;
mod socket;
mod table;
mod tls;
#[cfg(target_os = "linux")]
mod uring;

pub use epoll::CHAIN_LIMIT;
pub use payload::Payload;
pub use socket::Socket;
#[cfg(target_os = "linux")]
pub use uring::probe as probe_uring;

use crate::buffer::{Buf, BufferPool};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};
use table::Table;

/// How often a draining server calls [`CompletionPort::abort_quiet`]: a connection quiet for this
/// long has finished its exchange.
pub const QUIET_SWEEP: Duration = Duration::from_millis(100);
/// Low bits of a token: the slab key; high bits (on 64-bit targets): a generation, so an event
/// read for a socket that has since closed is not applied to the next socket given its key.
const KEY_BITS: u32 = 32;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;
/// 31 bits of generation: a key's top bit stays clear, for io_uring to tag receives with.
const GENERATION_MASK: usize = 0x7fff_ffff;
/// A [`Completion::User`] value with this bit is the port's own: it names a completion the TLS
/// layer decided, parked in `Shared::decided`, which `get` hands out as it is. (Through the TLS
/// filter again it would be taken for a raw one.) [`CompletionPort::post_user`] values stay below.
const DECIDED: u64 = 1 << 63;

/// A finished operation, as `GetQueuedCompletionStatus` would report it.
#[derive(Debug)]
pub enum Completion<C> {
    /// A posted receive finished: `Ok(buf)` holds the bytes read; an empty buffer means the peer
    /// shut down its sending side.
    Recv { socket: Arc<Socket<C>>, result: Result<Buf, OpError> },
    /// A posted send finished: every byte was written (`Ok` says how many), or it failed.
    Send { socket: Arc<Socket<C>>, result: Result<usize, OpError> },
    /// A completion posted with [`CompletionPort::post_user`].
    User(u64),
}

impl<C> Completion<C> {
    /// The socket the operation was posted on, if any.
    pub fn socket(&self) -> Option<&Arc<Socket<C>>> {
        match self {
            Completion::Recv { socket, .. } | Completion::Send { socket, .. } => Some(socket),
            Completion::User(_) => None,
        }
    }
}

/// Why a posted operation failed. The port's own reasons are variants of their own, so a real
/// kernel error (ECONNABORTED, ETIMEDOUT) is never mistaken for one of them.
#[derive(Debug)]
pub enum OpError {
    /// The kernel failed the operation.
    Io(io::Error),
    /// [`CompletionPort::expire_idle`]: the connection had no traffic for the idle timeout.
    IdleTimeout,
    /// [`CompletionPort::abort_quiet`]: the server is draining and the peer had nothing more to say.
    Shutdown,
    /// [`CompletionPort::expire_tls_handshakes`]: the TLS handshake took too long.
    TlsHandshakeTimeout,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Io(e) => e.fmt(f),
            OpError::IdleTimeout => f.write_str("idle timeout"),
            OpError::Shutdown => f.write_str("server shutting down"),
            OpError::TlsHandshakeTimeout => f.write_str("TLS handshake timeout"),
        }
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`CompletionPort::get`] returned without a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    TimedOut,
    /// The port was shut down: the worker should exit.
    Closed,
}

/// See [`CompletionPort::on_close`].
pub type CloseHook = Box<dyn Fn(usize) + Send + Sync>;

/// A handle to the port; clones share it. `C` is the per-connection state.
pub struct CompletionPort<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for CompletionPort<C> {
    fn clone(&self) -> Self {
        CompletionPort { shared: self.shared.clone() }
    }
}

struct Shared<C> {
    backend: Backend<C>,
    sockets: RwLock<Table<Socket<C>>>,
    /// Signalled when the last open socket closes (for a draining shutdown).
    emptied: (Mutex<()>, Condvar),
    pool: BufferPool,
    /// Bumped for every associated socket, for the high bits of its token.
    generation: AtomicUsize,
    /// Seconds since the port started, advanced by [`CompletionPort::tick`].
    clock: AtomicU32,
    started: Instant,
    close_hook: OnceLock<CloseHook>,
    /// The TLS sockets' sessions ([`tls`]).
    tls: tls::Sessions,
    /// Completions the TLS layer decided, until a worker takes them (see [`DECIDED`]).
    decided: Mutex<slab::Slab<Completion<C>>>,
}

/// What turns the OS's notifications into completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Readiness (epoll; IOCP polling on Windows), through mio, one poller shared by the workers.
    Epoll,
    /// io_uring (Linux): one ring per core, each owned by the worker that waits on it.
    Uring,
}

impl Io {
    pub fn name(self) -> &'static str {
        match self {
            Io::Epoll => "epoll",
            Io::Uring => "uring",
        }
    }
}

enum Backend<C> {
    Epoll(epoll::Epoll<C>),
    #[cfg(target_os = "linux")]
    Uring(uring::Uring<C>),
}

/// Runs `$body` with `$b` bound to the port's backend, whichever it is.
macro_rules! backend {
    ($port:expr, $b:ident => $body:expr) => {
        match &$port.shared.backend {
            Backend::Epoll($b) => $body,
            #[cfg(target_os = "linux")]
            Backend::Uring($b) => $body,
        }
    };
}

impl<C: Send + Sync + 'static> CompletionPort<C> {
    /// A new epoll port. `pool` supplies receive buffers; `max_awake` caps how many workers run at
    /// once (the core count is right: more only adds context switches).
    pub fn new(pool: BufferPool, max_awake: usize) -> io::Result<Self> {
        Self::with_io(Io::Epoll, pool, max_awake)
    }

    /// A new port on `io`. `cores`: epoll keeps at most this many workers awake; io_uring makes
    /// this many rings. [`Io::Uring`] is for Linux only (elsewhere: `Unsupported`); ask
    /// [`probe_uring`] first whether it works here.
    pub fn with_io(io: Io, pool: BufferPool, cores: usize) -> io::Result<Self> {
        let backend = match io {
            Io::Epoll => Backend::Epoll(epoll::Epoll::new(cores)?),
            #[cfg(target_os = "linux")]
            Io::Uring => Backend::Uring(uring::Uring::new(cores, pool.clone())?),
            #[cfg(not(target_os = "linux"))]
            Io::Uring => return Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring is Linux-only")),
        };
        Ok(CompletionPort {
            shared: Arc::new(Shared {
                backend,
                sockets: RwLock::new(Table::new()),
                emptied: (Mutex::new(()), Condvar::new()),
                pool,
                generation: AtomicUsize::new(0),
                clock: AtomicU32::new(0),
                started: Instant::now(),
                close_hook: OnceLock::new(),
                tls: tls::Sessions::default(),
                decided: Mutex::new(slab::Slab::new()),
            }),
        })
    }

    pub fn pool(&self) -> &BufferPool {
        &self.shared.pool
    }

    /// Associates a connected, non-blocking socket and its per-connection state with the port.
    pub fn associate(&self, stream: mio::net::TcpStream, context: C) -> io::Result<Arc<Socket<C>>> {
        self.associate_with(stream, context, None)
    }

    /// [`associate`](Self::associate) for a socket that speaks TLS: the handler posts and gets
    /// plaintext; the handshake starts with its first receive.
    pub fn associate_tls(
        &self,
        stream: mio::net::TcpStream,
        context: C,
        config: &Arc<rustls::ServerConfig>,
    ) -> io::Result<Arc<Socket<C>>> {
        self.associate_with(stream, context, Some(config))
    }

    fn associate_with(
        &self,
        mut stream: mio::net::TcpStream,
        context: C,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<Arc<Socket<C>>> {
        let s = &self.shared;
        let session = tls.map(|config| tls::Session::new(config, Instant::now())).transpose()?;
        let mut sockets = s.sockets.write().unwrap_or_else(|e| e.into_inner());
        let index = sockets.next_index();
        let generation = s.generation.fetch_add(1, Ordering::Relaxed);
        let token = index | (generation & GENERATION_MASK).checked_shl(KEY_BITS).unwrap_or(0);
        let ring = match &s.backend {
            Backend::Epoll(e) => {
                e.register(&mut stream, token)?;
                0
            }
            #[cfg(target_os = "linux")]
            Backend::Uring(u) => {
                // io_uring honours O_NONBLOCK by failing with EAGAIN instead of waiting for the
                // socket: its operations wait for readiness themselves, so the socket blocks.
                socket2::SockRef::from(&stream).set_nonblocking(false)?;
                u.assign()
            }
        };
        let is_tls = session.is_some();
        if let Some(session) = session {
            s.tls.insert(index, session);
        }
        let socket = Arc::new(Socket::new(token, stream, ring, self.now(), is_tls, context));
        sockets.insert(socket.clone());
        Ok(socket)
    }

    /// Waits for the next completion (`GetQueuedCompletionStatus`), from any number of threads.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Completion<C>, Wait> {
        loop {
            let c = backend!(self, b => b.get(self, timeout))?;
            if let Completion::User(v) = c
                && v & DECIDED != 0
            {
                let mut decided = self.shared.decided.lock().unwrap_or_else(|e| e.into_inner());
                match decided.try_remove((v & !DECIDED) as usize) {
                    Some(c) => return Ok(c),
                    None => continue,
                }
            }
            // A TLS socket's raw operations are the TLS layer's to answer; most end in one.
            match c.socket() {
                Some(socket) if socket.is_tls() => {
                    if let Some(c) = self.tls_completion(c) {
                        return Ok(c);
                    }
                }
                _ => return Ok(c),
            }
        }
    }

    /// The backend this port runs on.
    pub fn io(&self) -> Io {
        match &self.shared.backend {
            Backend::Epoll(_) => Io::Epoll,
            #[cfg(target_os = "linux")]
            Backend::Uring(_) => Io::Uring,
        }
    }

    /// Posts a receive. No buffer is held while waiting: one is borrowed from the pool when data
    /// arrives. At most one receive may be outstanding per socket.
    pub fn post_recv(&self, socket: &Arc<Socket<C>>) {
        if socket.is_tls() {
            self.tls_post_recv(socket);
        } else {
            self.raw_post_recv(socket);
        }
    }

    /// Posts a send of all of the payload's bytes; it completes when the kernel has taken every
    /// one. At most one send may be outstanding per socket.
    pub fn post_send(&self, socket: &Arc<Socket<C>>, payload: impl Into<Payload>) {
        if socket.is_tls() {
            self.tls_post_send(socket, payload.into());
        } else {
            self.raw_post_send(socket, payload.into());
        }
    }

    /// Posts a completion that [`get`](Self::get) returns as [`Completion::User`]. `value` must
    /// be below 2^63 (the top bit is the port's own).
    pub fn post_user(&self, value: u64) {
        debug_assert!(value & DECIDED == 0, "post_user values are below 2^63");
        backend!(self, b => b.post_user(value))
    }

    /// Like [`post_user`](Self::post_user), but called from a worker's handler the completion
    /// goes to that same worker, after the completions it has already taken (Asio's `defer`):
    /// a handler can leave work for the end of its worker's batch. From any other thread it is
    /// `post_user`.
    pub fn defer_user(&self, value: u64) {
        debug_assert!(value & DECIDED == 0, "defer_user values are below 2^63");
        match &self.shared.backend {
            Backend::Epoll(b) => b.complete(self, Completion::User(value)),
            #[cfg(target_os = "linux")]
            Backend::Uring(b) => b.defer_user(self, value),
        }
    }

    /// A receive of the socket's bytes as they are on the wire.
    fn raw_post_recv(&self, socket: &Arc<Socket<C>>) {
        backend!(self, b => b.post_recv(self, socket))
    }

    fn raw_post_send(&self, socket: &Arc<Socket<C>>, payload: Payload) {
        backend!(self, b => b.post_send(self, socket, payload))
    }

    /// Delivers a completion the port decided itself (the TLS layer's), through the queue, so
    /// it is handled after the handler call that caused it returns, and as it is.
    fn post_completion(&self, c: Completion<C>) {
        let key = self.shared.decided.lock().unwrap_or_else(|e| e.into_inner()).insert(c);
        let token = DECIDED | key as u64;
        match &self.shared.backend {
            // A worker's own queue first: no lock, no wake-up.
            Backend::Epoll(b) => b.complete(self, Completion::User(token)),
            #[cfg(target_os = "linux")]
            Backend::Uring(b) => b.post_user(token),
        }
    }

    /// Says that the calling worker is about to spend long in one handler (a password hash),
    /// so that other threads take over the work that would wait behind it where the backend
    /// can: epoll hands the reactor and the worker's queued sockets to others; io_uring cannot
    /// (a ring is its owner's), so the sockets on the caller's ring wait.
    pub fn blocking(&self) {
        match &self.shared.backend {
            Backend::Epoll(b) => b.blocking(self),
            #[cfg(target_os = "linux")]
            Backend::Uring(b) => b.blocking(),
        }
    }

    /// Tasks waiting in the backend's shared queue: a backlog metric.
    pub fn queue_depth(&self) -> usize {
        backend!(self, b => b.queue_depth())
    }

    /// Makes every waiting and future `get` return [`Wait::Closed`].
    pub fn shutdown(&self) {
        backend!(self, b => b.shutdown())
    }

    /// Closes the socket: posted operations are dropped without completing.
    pub fn close(&self, socket: &Socket<C>) {
        let Some(mut stream) = socket.lock().close() else {
            return;
        };
        if socket.is_tls() {
            self.tls_farewell(socket, &stream);
        }
        match &self.shared.backend {
            Backend::Epoll(e) => {
                e.deregister(&mut stream);
                drop(stream);
            }
            #[cfg(target_os = "linux")]
            Backend::Uring(u) => u.close(stream, socket),
        }
        // While the socket still holds its table slot, so its key cannot have been given to a new
        // socket yet (keys carry no generation on 32-bit targets).
        if let Some(hook) = self.shared.close_hook.get() {
            hook(socket.key());
        }
        let mut sockets = self.shared.sockets.write().unwrap_or_else(|e| e.into_inner());
        sockets.remove(socket.key() & KEY_MASK);
        let emptied = sockets.is_empty();
        drop(sockets);
        if emptied {
            let _guard = self.shared.emptied.0.lock();
            self.shared.emptied.1.notify_all();
        }
    }

    /// Has `hook` called with the key of every socket that closes, once, after its descriptor is
    /// closed (however it closed) and before its key can be reused. One hook per port: false if
    /// one is set already. A table kept beside the port (per-IP counts) learns this way that a
    /// connection ended, at no cost to the sockets themselves.
    pub fn on_close(&self, hook: CloseHook) -> bool {
        self.shared.close_hook.set(hook).is_ok()
    }

    /// Closes every open socket.
    pub fn close_all(&self) {
        for socket in self.each_socket(|s| Some(s.clone())) {
            self.close(&socket);
        }
    }

    /// Waits until no socket is open, or `deadline`. True when none is open.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let (lock, cond) = &self.shared.emptied;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.open_sockets() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = cond.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Open (associated, not yet closed) sockets.
    pub fn open_sockets(&self) -> usize {
        self.sockets().len()
    }

    /// For a graceful shutdown, call every [`QUIET_SWEEP`]: fails with [`OpError::Shutdown`] the
    /// receive of every socket that has waited with nothing to read since the previous call (so
    /// it owes its peer nothing). A stream still arriving is never cut off on a momentarily empty
    /// queue. Returns how many were ended.
    pub fn abort_quiet(&self) -> usize {
        backend!(self, b => b.abort_quiet(self))
    }

    /// Closes, with [`OpError::TlsHandshakeTimeout`], every TLS connection whose handshake began
    /// at least `timeout` ago and has not finished. Returns how many.
    pub fn expire_tls_handshakes(&self, timeout: Duration) -> usize {
        self.tls_expire_handshakes(timeout)
    }

    /// Advances the port clock; call about once a second.
    pub fn tick(&self) {
        let secs = self.shared.started.elapsed().as_secs().min(u32::MAX as u64) as u32;
        self.shared.clock.store(secs, Ordering::Relaxed);
    }

    /// Fails the posted operation of every socket idle for at least `idle` with
    /// [`OpError::IdleTimeout`]. Returns how many were expired.
    pub fn expire_idle(&self, idle: Duration) -> usize {
        backend!(self, b => b.expire_idle(self, idle))
    }

    /// The open socket with this key, if it is still open.
    pub fn socket_by_key(&self, key: usize) -> Option<Arc<Socket<C>>> {
        Self::socket_for(&self.sockets(), key).cloned()
    }

    fn sockets(&self) -> RwLockReadGuard<'_, Table<Socket<C>>> {
        self.shared.sockets.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket a key (a token, a completion's user data) names, unless it has closed since.
    fn socket_for(sockets: &Table<Socket<C>>, key: usize) -> Option<&Arc<Socket<C>>> {
        sockets.get(key & KEY_MASK).filter(|s| s.key() == key)
    }

    fn each_socket<T>(&self, f: impl FnMut(&Arc<Socket<C>>) -> Option<T>) -> Vec<T> {
        let sockets: Vec<Arc<Socket<C>>> = self.sockets().iter().cloned().collect();
        sockets.iter().filter_map(f).collect()
    }

    /// [`each_socket`](Self::each_socket) over the sockets without traffic for at least `idle`.
    fn each_idle_socket<T>(&self, idle: Duration, mut f: impl FnMut(&Arc<Socket<C>>) -> Option<T>) -> Vec<T> {
        let now = self.now();
        let limit = idle.as_secs().clamp(1, u32::MAX as u64) as u32;
        self.each_socket(|socket| (now.saturating_sub(socket.idle_since()) >= limit).then(|| f(socket)).flatten())
    }

    fn now(&self) -> u32 {
        self.shared.now()
    }
}

impl<C> Shared<C> {
    /// See [`CompletionPort::tick`].
    fn now(&self) -> u32 {
        self.clock.load(Ordering::Relaxed)
    }
}
