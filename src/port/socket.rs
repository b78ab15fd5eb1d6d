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
/// are epoll's (the kernel keeps a pending io_uring operation's state itself).
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
    pub(super) send: Option<Cursor>,
}

impl<C> Socket<C> {
    pub(super) fn new(key: usize, stream: TcpStream, now: u32, context: C) -> Self {
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
        self.lock().send.as_ref().map_or(0, Cursor::done)
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

    /// Closes the descriptor (dropping posted operations) and hands back the stream so the
    /// caller can deregister it outside this lock.
    pub(super) fn close(&mut self) -> Option<TcpStream> {
        self.recv_posted = false;
        self.send = None;
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
