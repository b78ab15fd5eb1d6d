//! epoll's side of a posted operation: a posted operation waits until the socket is ready, then
//! whichever thread holds the socket's lock performs the syscall. Readiness is remembered
//! (edge-triggered epoll reports each edge once), and an operation is tried at once when the last
//! attempt did not exhaust the socket (Asio's `try_speculative`): an echo send almost always goes
//! straight into the kernel's send buffer, and after a short read a re-armed receive waits for the
//! next edge without a wasted `EAGAIN` read.

use crate::buffer::{Buf, BufferPool};
use crate::port::payload::{Cursor, Payload};
use crate::port::socket::IoState;
use crate::port::{Completion, OpError, Socket};
use std::io::{self, Read};
use std::sync::Arc;

impl IoState {
    /// Records an edge from the reactor. True when a posted operation can now make progress
    /// and the caller must queue a ready-task for it.
    pub(in crate::port) fn on_event(&mut self, readable: bool, writable: bool, read_closed: bool) -> bool {
        self.set_readable(self.readable() | readable);
        self.set_read_closed(self.read_closed() | read_closed);
        self.set_writable(self.writable() | writable);
        let runnable = (self.recv_posted() && self.readable()) || (self.send.is_some() && self.writable());
        if runnable && !self.queued() && !self.is_closed() {
            self.set_queued(true);
            return true;
        }
        false
    }

    /// Posts a send, trying it at once when the socket is writable (the kernel's send buffer
    /// nearly always has room); only a send that has to wait is kept, boxed, in the state.
    pub(in crate::port) fn post_send<C>(
        &mut self,
        sock: &Arc<Socket<C>>,
        payload: Payload,
        now: u32,
        out: &mut impl FnMut(Completion<C>),
    ) {
        debug_assert!(self.send.is_none(), "at most one send outstanding per socket");
        let mut op = Cursor::new(payload);
        match self.writable().then(|| self.write(&mut op, sock, now)).flatten() {
            Some(result) => out(Completion::Send { socket: sock.clone(), result: result.map_err(OpError::Io) }),
            None => self.send = Some(Box::new(op)),
        }
    }

    /// Performs whatever posted operations can progress, pushing their completions to `out`.
    pub(in crate::port) fn perform<C>(
        &mut self,
        sock: &Arc<Socket<C>>,
        pool: &BufferPool,
        now: u32,
        out: &mut impl FnMut(Completion<C>),
    ) {
        if self.send.is_some() && self.writable() {
            if let Some(result) = self.try_send(sock, now) {
                out(Completion::Send { socket: sock.clone(), result: result.map_err(OpError::Io) });
            }
        }
        if self.recv_posted() && self.readable() {
            if let Some(result) = self.try_recv(pool, sock, now) {
                self.set_recv_posted(false);
                out(Completion::Recv { socket: sock.clone(), result: result.map_err(OpError::Io) });
            }
        }
    }

    /// Finishes the posted send if the kernel takes all of it; `None` means "wait for writable".
    fn try_send<C>(&mut self, sock: &Socket<C>, now: u32) -> Option<io::Result<usize>> {
        let mut op = self.send.take()?;
        let result = self.write(&mut op, sock, now);
        if result.is_none() {
            self.send = Some(op);
        }
        result
    }

    /// Writes `op` until the kernel has all of it (`Some`) or no room (`None`). Any progress
    /// counts as activity for the idle timeout, so a slow but steady reader of a large payload
    /// is not cut off.
    fn write<C>(&mut self, op: &mut Cursor, sock: &Socket<C>, now: u32) -> Option<io::Result<usize>> {
        let stream = self.stream.as_ref()?;
        loop {
            if op.finished() {
                break Some(Ok(op.total()));
            }
            match op.write_to(stream) {
                Ok(0) => break Some(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => sock.touch(now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.set_writable(false);
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Err(e)),
            }
        }
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
                    if cfg!(target_os = "linux") && n < buf.capacity() && !self.read_closed() {
                        self.set_readable(false);
                    }
                    buf.set_len(n);
                    self.set_quiet(false);
                    sock.touch(now);
                    return Some(Ok(buf));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.set_readable(false);
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Fails whichever operation is posted with `error` (idle timeout): at most one completion.
    pub(in crate::port) fn abort<C>(&mut self, sock: &Arc<Socket<C>>, error: OpError) -> Option<Completion<C>> {
        if self.is_closed() {
            return None;
        }
        if self.send.take().is_some() {
            return Some(Completion::Send { socket: sock.clone(), result: Err(error) });
        }
        if self.take_recv_posted() {
            return Some(Completion::Recv { socket: sock.clone(), result: Err(error) });
        }
        None
    }

    /// One quiet sweep: a socket that has had a receive waiting, with nothing to read, since the
    /// previous sweep gets that receive failed with [`OpError::Shutdown`]. Everything it sent has
    /// been echoed by then. A socket with a send outstanding or data arriving is left alone.
    pub(in crate::port) fn abort_if_quiet<C>(&mut self, sock: &Arc<Socket<C>>) -> Option<Completion<C>> {
        let waiting = self.recv_posted() && !self.readable() && !self.queued() && !self.is_closed();
        if !waiting {
            self.set_quiet(false);
            return None;
        }
        if !self.replace_quiet() {
            return None;
        }
        // Our flags only know what the reactor has seen; a busy reactor may not have reported
        // bytes that already arrived. Closing on them would reset the connection.
        if self.stream.as_ref().is_some_and(|s| s.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0)) {
            self.set_quiet(false);
            return None;
        }
        self.set_recv_posted(false);
        Some(Completion::Recv { socket: sock.clone(), result: Err(OpError::Shutdown) })
    }
}
