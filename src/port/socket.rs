//! One associated socket: its posted operations and the readiness the reactor has seen for it.
//!
//! This is the OVERLAPPED side of the port. A posted operation waits here until the socket is ready,
//! then whichever thread holds the socket's lock performs the syscall. Readiness is remembered
//! (edge-triggered epoll reports each edge once), and an operation is tried at once when the last
//! attempt did not exhaust the socket (Asio's `try_speculative`): an echo send almost always goes
//! straight into the kernel's send buffer, and after a short read a re-armed receive waits for the
//! next edge without a wasted `EAGAIN` read.

use super::payload::{Cursor, Payload};
use super::{Completion, OpError};
use crate::buffer::{Buf, BufferPool};
use mio::net::TcpStream;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

pub(super) struct IoState {
    /// `None` once closed; the descriptor is closed when the stream is dropped.
    stream: Option<TcpStream>,
    readable: bool,
    writable: bool,
    /// The peer's FIN (or an error) has been seen: reads end in EOF, never in a new edge.
    read_closed: bool,
    /// A ready-task for this socket sits in some queue; do not queue another.
    pub(super) queued: bool,
    /// Set by a quiet sweep while a receive waits, cleared when data arrives: a socket still
    /// marked at the next sweep has been quiet for a whole sweep interval.
    quiet: bool,
    recv_posted: bool,
    send: Option<Cursor>,
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

    /// Records an edge from the reactor. True when a posted operation can now make progress
    /// and the caller must queue a ready-task for it.
    pub(super) fn on_event(&mut self, readable: bool, writable: bool, read_closed: bool) -> bool {
        self.readable |= readable;
        self.read_closed |= read_closed;
        self.writable |= writable;
        let runnable = (self.recv_posted && self.readable) || (self.send.is_some() && self.writable);
        if runnable && !self.queued && !self.is_closed() {
            self.queued = true;
            return true;
        }
        false
    }

    pub(super) fn post_recv(&mut self) {
        debug_assert!(!self.recv_posted, "at most one receive outstanding per socket");
        self.recv_posted = true;
    }

    pub(super) fn post_send(&mut self, payload: Payload) {
        debug_assert!(self.send.is_none(), "at most one send outstanding per socket");
        self.send = Some(Cursor::new(payload));
    }

    /// Closes the descriptor (dropping posted operations) and hands back the stream so the
    /// caller can deregister it outside this lock.
    pub(super) fn close(&mut self) -> Option<TcpStream> {
        self.recv_posted = false;
        self.send = None;
        self.stream.take()
    }

    /// Performs whatever posted operations can progress, pushing their completions to `out`.
    pub(super) fn perform<C>(
        &mut self,
        sock: &Arc<Socket<C>>,
        pool: &BufferPool,
        now: u32,
        out: &mut impl FnMut(Completion<C>),
    ) {
        if self.send.is_some() && self.writable {
            if let Some(result) = self.try_send(sock, now) {
                out(Completion::Send { socket: sock.clone(), result: result.map_err(OpError::Io) });
            }
        }
        if self.recv_posted && self.readable {
            if let Some(result) = self.try_recv(pool, sock, now) {
                self.recv_posted = false;
                out(Completion::Recv { socket: sock.clone(), result: result.map_err(OpError::Io) });
            }
        }
    }

    /// Finishes the posted send if the kernel takes all of it; `None` means "wait for writable".
    /// Any progress counts as activity for the idle timeout, so a slow but steady reader of a
    /// large payload is not cut off.
    fn try_send<C>(&mut self, sock: &Socket<C>, now: u32) -> Option<io::Result<usize>> {
        let stream = self.stream.as_ref()?;
        let op = self.send.as_mut()?;
        let result = loop {
            if op.finished() {
                break Ok(op.total());
            }
            match op.write_to(stream) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => sock.touch(now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.send = None;
        Some(result)
    }

    /// Reads into a freshly borrowed buffer; `None` means "nothing there yet", and the buffer goes
    /// straight back to the pool so a waiting connection holds none.
    fn try_recv<C>(&mut self, pool: &BufferPool, sock: &Socket<C>, now: u32) -> Option<io::Result<Buf>> {
        let stream = self.stream.as_ref()?;
        let mut buf = pool.take();
        loop {
            match (&*stream).read(buf.spare()) {
                Ok(n) => {
                    // On Linux a TCP read that comes back short has emptied the receive queue,
                    // and the next arrival raises a new edge: no need to read again until then.
                    // Not so for a FIN already seen: its edge is spent, and the EOF is still to be
                    // read. Elsewhere (mio's IOCP emulation) only WouldBlock re-arms readiness.
                    if cfg!(target_os = "linux") && n < buf.capacity() && !self.read_closed {
                        self.readable = false;
                    }
                    buf.set_len(n);
                    self.quiet = false;
                    sock.touch(now);
                    return Some(Ok(buf));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Fails whichever operation is posted with `error` (idle timeout): at most one completion.
    pub(super) fn abort<C>(&mut self, sock: &Arc<Socket<C>>, error: OpError) -> Option<Completion<C>> {
        if self.is_closed() {
            return None;
        }
        if self.send.take().is_some() {
            return Some(Completion::Send { socket: sock.clone(), result: Err(error) });
        }
        if std::mem::take(&mut self.recv_posted) {
            return Some(Completion::Recv { socket: sock.clone(), result: Err(error) });
        }
        None
    }

    /// One quiet sweep: a socket that has had a receive waiting, with nothing to read, since the
    /// previous sweep gets that receive failed with [`OpError::Shutdown`]. Everything it sent has
    /// been echoed by then. A socket with a send outstanding or data arriving is left alone.
    pub(super) fn abort_if_quiet<C>(&mut self, sock: &Arc<Socket<C>>) -> Option<Completion<C>> {
        let waiting = self.recv_posted && !self.readable && !self.queued && !self.is_closed();
        if !waiting {
            self.quiet = false;
            return None;
        }
        if !std::mem::replace(&mut self.quiet, true) {
            return None;
        }
        // Our flags only know what the reactor has seen; a busy reactor may not have reported
        // bytes that already arrived. Closing on them would reset the connection.
        if self.stream.as_ref().is_some_and(|s| s.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0)) {
            self.quiet = false;
            return None;
        }
        self.recv_posted = false;
        Some(Completion::Recv { socket: sock.clone(), result: Err(OpError::Shutdown) })
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
