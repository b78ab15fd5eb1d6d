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
    /// epoll: the reactor reported the socket readable / writable since the last `EAGAIN`.
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// epoll: the peer's FIN (or an error) has been seen: reads end in EOF, never in a new edge.
    pub(super) read_closed: bool,
    /// epoll: a ready-task for this socket sits in some queue; do not queue another.
    pub(super) queued: bool,
    /// Set by a quiet sweep while a receive waits, cleared when data arrives: a socket still
    /// marked at the next sweep has been quiet for a whole sweep interval.
    pub(super) quiet: bool,
    pub(super) recv_posted: bool,
    /// epoll: the posted send, tried whenever the socket is writable.
    pub(super) send: Option<Cursor>,
    /// io_uring: the ring the socket belongs to.
    pub(super) ring: u16,
    /// io_uring: a send is posted (its bytes are with the ring's owner or the kernel).
    pub(super) send_posted: bool,
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
    pub(super) fn new(key: usize, stream: TcpStream, ring: u16, now: u32, context: C) -> Self {
        Socket {
            key,
            state: Mutex::new(IoState {
                stream: Some(stream),
                readable: false,
                read_closed: false,
                // A fresh connection can take bytes: the first send is tried at once.
                writable: true,
                queued: false,
                quiet: false,
                recv_posted: false,
                send: None,
                ring,
                send_posted: false,
                sent: 0,
                recv_op: None,
                send_op: None,
                cancel: None,
                cancel_op: None,
            }),
            last_active: AtomicU32::new(now),
            context,
        }
    }

    /// The completion key: a table index plus a generation, so keys are not reused soon.
    pub fn key(&self) -> usize {
        self.key
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.lock().stream {
            Some(s) => s.peer_addr(),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Bytes of the posted send that the kernel has already taken: they count in the send's
    /// completion, but the process no longer holds them. 0 when no send is posted.
    pub fn posted_send_progress(&self) -> usize {
        let st = self.lock();
        st.send.as_ref().map_or(st.sent as usize, Cursor::done)
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

impl<C> std::fmt::Debug for Socket<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("key", &self.key).finish()
    }
}

impl IoState {
    pub(super) fn is_closed(&self) -> bool {
        self.stream.is_none()
    }

    pub(super) fn post_recv(&mut self) {
        debug_assert!(!self.recv_posted, "at most one receive outstanding per socket");
        self.recv_posted = true;
    }

    /// Marks the socket closed (posted operations are dropped, or left to complete unseen) and
    /// hands back the stream so the caller can close it outside this lock.
    pub(super) fn close(&mut self) -> Option<TcpStream> {
        self.recv_posted = false;
        self.send = None;
        self.send_posted = false;
        self.sent = 0;
        self.stream.take()
    }
}

#[cfg(test)]
mod tests {
    /// An idle connection costs its `Socket` (inside an `Arc`, 16 bytes more) and a table slot;
    /// this keeps an echo connection's allocation within glibc's 160-byte size class. Growing it
    /// is a decision.
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<super::Socket<()>>();
        assert!(size <= 136, "Socket grew to {size} bytes");
    }
}
