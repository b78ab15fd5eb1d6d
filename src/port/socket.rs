//! One associated socket: the protocol's per-connection state, and what the backend keeps of its
//! posted operations (the OVERLAPPED side of the port). How a backend moves the bytes is in
//! [`epoll`](super::epoll) and [`uring`](super::uring).

use super::payload::Cursor;
use mio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A socket associated with a [`CompletionPort`](super::CompletionPort), with the protocol's
/// per-connection state `C`.
pub struct Socket<C> {
    key: usize,
    state: Mutex<IoState>,
    /// The port clock (seconds) at the last completed operation, for idle timeouts.
    last_active: AtomicU32,
    /// The connection speaks TLS: its operations go through the port's TLS layer. (It fills
    /// padding: a plain socket is no bigger for it.)
    tls: bool,
    /// The protocol handler's state for this connection (IOCP's per-handle completion key data),
    /// stored inline: echo's `()` costs nothing.
    context: C,
}

/// A socket's posted operations. Most fields mean the same to both backends; the readiness flags
/// are epoll's (the kernel keeps a pending io_uring operation's state itself), and the io_uring
/// ones exist, unused, where there is no io_uring.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) struct IoState {
    /// `None` once closed; the descriptor is closed when the stream is dropped.
    pub(super) stream: Option<TcpStream>,
    /// Yes/no facts about the socket, one bit each (see the accessors below): an idle
    /// connection's whole allocation stays in a small size class.
    flags: u8,
    /// epoll: a send the kernel could not take at once, tried whenever the socket is writable.
    /// Boxed, and only then: nearly every send completes inside `post_send`, and an idle
    /// connection should not carry a payload's worth of empty space.
    pub(super) send: Option<Box<Cursor>>,
    /// io_uring: the ring the socket belongs to.
    pub(super) ring: u16,
    /// io_uring: how much of the posted send the kernel has taken so far (saturating: it only
    /// feeds the chat send queue's limit, far below 4 GiB).
    pub(super) sent: u32,
    /// io_uring: the operations in flight, by their key in the owner's table plus one (so that
    /// `None` costs no space: an idle connection stays small).
    pub(super) recv_op: Option<std::num::NonZeroU32>,
    pub(super) send_op: Option<std::num::NonZeroU32>,
    /// io_uring: the port wants the pending operation ended, and why; and, once the owner has
    /// asked the kernel, which operation that was (an operation that completes anyway, with data,
    /// wins over the cancel).
    pub(super) cancel: Option<Abort>,
    pub(super) cancel_op: Option<std::num::NonZeroU32>,
}

/// Why the port itself ends an operation (with io_uring the kernel reports only "cancelled").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) enum Abort {
    IdleTimeout,
    Shutdown,
}

impl From<Abort> for super::OpError {
    fn from(a: Abort) -> Self {
        match a {
            Abort::IdleTimeout => super::OpError::IdleTimeout,
            Abort::Shutdown => super::OpError::Shutdown,
        }
    }
}

impl<C> Socket<C> {
    pub(super) fn new(key: usize, stream: TcpStream, ring: u16, now: u32, tls: bool, context: C) -> Self {
        Socket {
            key,
            state: Mutex::new(IoState {
                stream: Some(stream),
                // A fresh connection can take bytes: the first send is tried at once.
                flags: WRITABLE,
                send: None,
                ring,
                sent: 0,
                recv_op: None,
                send_op: None,
                cancel: None,
                cancel_op: None,
            }),
            last_active: AtomicU32::new(now),
            tls,
            context,
        }
    }

    /// The completion key: a table index plus a generation, so keys are not reused soon.
    pub fn key(&self) -> usize {
        self.key
    }

    /// The socket's index in the port's table: unique among open sockets.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) fn index(&self) -> usize {
        self.key & super::KEY_MASK
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.lock().stream {
            Some(s) => s.peer_addr(),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Accepted on a TLS listener (see [`CompletionPort::associate_tls`](super::CompletionPort::associate_tls)).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Shuts both directions down, so that pending operations end (the descriptor stays open
    /// until [`close`](super::CompletionPort::close)).
    pub(super) fn shutdown(&self) {
        if let Some(stream) = &self.lock().stream {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Bytes of the posted send that the kernel has already taken: they count in the send's
    /// completion, but the process no longer holds them. 0 when no send is posted.
    pub fn posted_send_progress(&self) -> usize {
        let st = self.lock();
        st.send.as_deref().map_or(st.sent as usize, Cursor::done)
    }

    /// The handler's per-connection state.
    pub fn context(&self) -> &C {
        &self.context
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, IoState> {
        // A panic while holding this lock leaves only flags behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn touch(&self, now: u32) {
        self.last_active.store(now, Ordering::Relaxed);
    }

    pub(super) fn idle_since(&self) -> u32 {
        self.last_active.load(Ordering::Relaxed)
    }
}

/// Writes what the kernel takes of `bytes` at once, never waiting (an io_uring socket is in
/// blocking mode): for a last word before closing.
pub(super) fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    #[cfg(unix)]
    {
        socket2::SockRef::from(stream).send_with_flags(bytes, libc::MSG_DONTWAIT)
    }
    #[cfg(not(unix))]
    {
        // Windows sockets stay non-blocking (there is no io_uring there).
        use std::io::Write;
        (&*stream).write(bytes)
    }
}

impl<C> std::fmt::Debug for Socket<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("key", &self.key).finish()
    }
}

/// Declares the flag bits of [`IoState`] and, for each, `name()` and `set_name(on)`.
macro_rules! flags {
    ($($(#[$doc:meta])* $bit:ident = $value:literal: $get:ident, $set:ident;)*) => {
        $(const $bit: u8 = $value;)*
        // Some are one backend's only (io_uring's exist, unused, where there is no io_uring).
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
        impl IoState {
            $(
                $(#[$doc])*
                pub(super) fn $get(&self) -> bool {
                    self.flags & $bit != 0
                }
                pub(super) fn $set(&mut self, on: bool) {
                    if on { self.flags |= $bit } else { self.flags &= !$bit }
                }
            )*
        }
    };
}

flags! {
    /// epoll: the reactor reported the socket readable since the last `EAGAIN`.
    READABLE = 1: readable, set_readable;
    /// epoll: the reactor reported the socket writable since the last `EAGAIN`.
    WRITABLE = 2: writable, set_writable;
    /// epoll: the peer's FIN (or an error) has been seen: reads end in EOF, never in a new edge.
    READ_CLOSED = 4: read_closed, set_read_closed;
    /// epoll: a ready-task for this socket sits in some queue; do not queue another.
    QUEUED = 8: queued, set_queued;
    /// Set by a quiet sweep while a receive waits, cleared when data arrives: a socket still
    /// marked at the next sweep has been quiet for a whole sweep interval.
    QUIET = 16: quiet, set_quiet;
    /// A receive is posted.
    RECV_POSTED = 32: recv_posted, set_recv_posted;
    /// io_uring: a send is posted (its bytes are with the ring's owner or the kernel).
    SEND_POSTED = 64: send_posted, set_send_posted;
    /// io_uring: the descriptor is in the ring's file table, at the socket's index.
    REGISTERED = 128: registered, set_registered;
}

impl IoState {
    /// Clears the posted receive; true if one was posted.
    pub(super) fn take_recv_posted(&mut self) -> bool {
        let was = self.recv_posted();
        self.set_recv_posted(false);
        was
    }

    /// Marks the socket quiet; true if it already was.
    pub(super) fn replace_quiet(&mut self) -> bool {
        let was = self.quiet();
        self.set_quiet(true);
        was
    }

    pub(super) fn is_closed(&self) -> bool {
        self.stream.is_none()
    }

    pub(super) fn post_recv(&mut self) {
        debug_assert!(!self.recv_posted(), "at most one receive outstanding per socket");
        self.set_recv_posted(true);
    }

    /// Marks the socket closed (posted operations are dropped, or left to complete unseen) and
    /// hands back the stream so the caller can close it outside this lock.
    pub(super) fn close(&mut self) -> Option<TcpStream> {
        self.set_recv_posted(false);
        self.send = None;
        self.set_send_posted(false);
        self.sent = 0;
        self.stream.take()
    }
}

#[cfg(test)]
mod tests {
    /// An idle connection costs its `Socket` (inside an `Arc`, 16 bytes more) and a table slot;
    /// 56 bytes make an `Arc<Socket<()>>` of 72, which glibc serves from its 80-byte chunks: with
    /// the table's slot, an idle echo connection costs under 0.1 KiB. Growing it is a decision.
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<super::Socket<()>>();
        // With debug assertions mio's stream also carries the id of its poller (12 bytes more).
        let limit = if cfg!(debug_assertions) { 72 } else { 56 };
        assert!(size <= limit, "Socket grew to {size} bytes");
    }
}
