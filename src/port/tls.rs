//! TLS inside the port: a TLS socket's handler posts and gets plaintext exactly as on a plain
//! socket, and this layer turns that into ciphertext operations on the backend (SChannel's place
//! under IOCP). Both backends and both protocols get TLS from this one file.
//!
//! A handler's receive becomes as many raw receives as it takes to yield plaintext (or EOF, or
//! an error): a handshake, a record split across reads, are invisible to it. A handler's send is
//! encrypted at once and becomes one raw send; its completion reports the plaintext length.
//! The layer's own ciphertext (handshake flights, session tickets) waits its turn for the
//! socket's one send slot. Raw receives are posted only while the handler has one posted, so a
//! client that does not read its echo is not read from, as on a plain socket.
//!
//! rustls's unbuffered API keeps no buffers of ours: ciphertext is read into pooled buffers and
//! processed there, and only the start of a record whose end has not arrived is copied aside
//! (freed once the record completes). An idle TLS connection holds its rustls state and nothing
//! else.

use super::{Completion, CompletionPort, OpError, Payload, Socket};
use crate::buffer::Buf;
use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// The largest TLS record on the wire (TLS 1.2's ciphertext limit, 2^14 + 2048, plus the 5-byte
/// header): the most a partial record can hold.
const MAX_RECORD: usize = (1 << 14) + 2048 + 5;

/// The sessions of a port's TLS sockets, by socket index. Plain sockets never look here (their
/// [`Socket::is_tls`] is false), and a TLS socket looks once per operation.
#[derive(Default)]
pub(super) struct Sessions {
    slots: RwLock<Vec<Option<Arc<Mutex<Session>>>>>,
}

impl Sessions {
    pub(super) fn insert(&self, index: usize, session: Session) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        slots[index] = Some(Arc::new(Mutex::new(session)));
    }

    fn get(&self, index: usize) -> Option<Arc<Mutex<Session>>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).get(index)?.clone()
    }

    pub(super) fn remove(&self, index: usize) -> Option<Arc<Mutex<Session>>> {
        self.slots.write().unwrap_or_else(|e| e.into_inner()).get_mut(index)?.take()
    }
}

/// One TLS connection.
pub(super) struct Session {
    conn: UnbufferedServerConnection,
    /// The start of a record whose end has not arrived; empty (unallocated) otherwise.
    partial: Vec<u8>,
    /// Ciphertext waiting for the socket's send slot, and what its completion means.
    queue: VecDeque<(Vec<u8>, Sent)>,
    /// The send in flight, if one is.
    in_flight: Option<Sent>,
    /// The handler's send, posted before the handshake finished: sent once it has.
    early: Option<Payload>,
    /// The handler has a receive posted; `raw_recv`: the backend has one.
    recv_wanted: bool,
    raw_recv: bool,
    established: bool,
    /// close_notify arrived: what follows is EOF.
    peer_closed: bool,
    /// When it was accepted, for the handshake timeout (not the port's whole-second clock: a
    /// short timeout must not end a handshake begun just before a tick early); `expired`: it ran out.
    started: Instant,
    expired: bool,
    /// rustls failed the connection: nothing more is read or written.
    failed: bool,
}

/// What a raw send carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The layer's own bytes: nobody is told when they are sent.
    Tls,
    /// The handler's send, of this many plaintext bytes.
    App(usize),
}

impl Session {
    pub(super) fn new(config: &Arc<ServerConfig>, now: Instant) -> io::Result<Session> {
        let conn = UnbufferedServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(Session {
            conn,
            partial: Vec::new(),
            queue: VecDeque::new(),
            in_flight: None,
            early: None,
            recv_wanted: false,
            raw_recv: false,
            established: false,
            peer_closed: false,
            started: now,
            expired: false,
            failed: false,
        })
    }
}

fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

fn tls_error(e: impl std::fmt::Display) -> OpError {
    OpError::Io(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))
}

impl<C: Send + Sync + 'static> CompletionPort<C> {
    fn session(&self, socket: &Socket<C>) -> Option<Arc<Mutex<Session>>> {
        self.shared.tls.get(socket.key() & super::KEY_MASK)
    }

    /// The handler posts a receive on a TLS socket.
    pub(super) fn tls_post_recv(&self, socket: &Arc<Socket<C>>) {
        let Some(session) = self.session(socket) else { return };
        let mut s = lock(&session);
        debug_assert!(!s.recv_wanted, "at most one receive outstanding per socket");
        s.recv_wanted = true;
        if s.failed || s.peer_closed {
            // Everything before close_notify was delivered with it; this receive is the EOF.
            s.recv_wanted = false;
            let result = if s.failed { Err(tls_error("connection failed")) } else { Ok(Buf::empty()) };
            self.post_completion(Completion::Recv { socket: socket.clone(), result });
            return;
        }
        if !s.raw_recv {
            s.raw_recv = true;
            self.raw_post_recv(socket);
        }
    }

    /// The handler posts a send on a TLS socket: encrypted now, sent when the slot is free.
    pub(super) fn tls_post_send(&self, socket: &Arc<Socket<C>>, payload: Payload) {
        let Some(session) = self.session(socket) else { return };
        let mut s = lock(&session);
        if s.failed {
            drop(s);
            self.post_completion(Completion::Send {
                socket: socket.clone(),
                result: Err(tls_error("connection failed")),
            });
            return;
        }
        if !s.established {
            debug_assert!(s.early.is_none(), "at most one send outstanding per socket");
            s.early = Some(payload);
            return;
        }
        if let Err(e) = s.encrypt(payload) {
            s.failed = true;
            drop(s);
            self.post_completion(Completion::Send { socket: socket.clone(), result: Err(e) });
            return;
        }
        self.flush(socket, &mut s);
    }

    /// A completion the backend reported for a TLS socket: what the handler sees of it, if
    /// anything yet.
    pub(super) fn tls_completion(&self, c: Completion<C>) -> Option<Completion<C>> {
        let Some(session) = c.socket().and_then(|socket| self.session(socket)) else {
            // Closed meanwhile (or not a socket's): nothing of the session is left to apply.
            return Some(c);
        };
        let mut s = lock(&session);
        match c {
            Completion::Recv { socket, result } => {
                s.raw_recv = false;
                let result = match result {
                    _ if s.expired => Err(OpError::TlsHandshakeTimeout),
                    Ok(buf) if buf.is_empty() => Ok(buf),
                    Ok(buf) => match self.read(&socket, &mut s, buf) {
                        Some(result) => result,
                        None => {
                            s.raw_recv = true;
                            self.raw_post_recv(&socket);
                            return None;
                        }
                    },
                    Err(e) => Err(e),
                };
                // The port's own reasons (drain, idle timeout) leave the session whole: the
                // handler may still send its last words (chat's ERROR line) through it.
                if matches!(result, Err(OpError::Io(_) | OpError::TlsHandshakeTimeout)) {
                    s.failed = true;
                }
                s.recv_wanted = false;
                Some(Completion::Recv { socket, result })
            }
            Completion::Send { socket, result } => {
                let sent = s.in_flight.take();
                match result {
                    Ok(_) => {
                        self.flush(&socket, &mut s);
                        match sent {
                            Some(Sent::App(n)) => Some(Completion::Send { socket, result: Ok(n) }),
                            _ => None,
                        }
                    }
                    Err(e) => {
                        s.failed = true;
                        // Ours failed: the handler's send queued behind it has failed too.
                        let app = matches!(sent, Some(Sent::App(_)));
                        let queued_app = s.queue.iter().any(|(_, k)| matches!(k, Sent::App(_)));
                        s.queue.clear();
                        (app || queued_app || s.early.take().is_some())
                            .then(|| Completion::Send { socket, result: Err(e) })
                    }
                }
            }
            Completion::User(_) => Some(c),
        }
    }

    /// Feeds received ciphertext to rustls: `Some` is what the handler's receive completes with,
    /// `None` means more ciphertext is needed first.
    fn read(&self, socket: &Arc<Socket<C>>, s: &mut Session, mut buf: Buf) -> Option<Result<Buf, OpError>> {
        let mut plain = Plain::default();
        let mut out = Vec::new();
        // A record begun in an earlier read: the new bytes join it, aside.
        let aside = !s.partial.is_empty();
        if aside {
            s.partial.extend_from_slice(&buf);
        }
        let progress = {
            let Session { conn, partial, .. } = &mut *s;
            let input: &mut [u8] = if aside { partial } else { &mut buf };
            process(conn, input, |data| plain.push(self, data), &mut out)
        };
        // What is left is the start of a record still arriving: keep that aside, and no more.
        if aside {
            s.partial.drain(..progress.offset);
            if s.partial.is_empty() {
                s.partial = Vec::new();
            }
        } else if progress.offset < buf.len() {
            s.partial = buf[progress.offset..].to_vec();
        }
        drop(buf);
        if !out.is_empty() {
            s.queue.push_back((out, Sent::Tls));
        }
        let mut error = progress.error;
        if s.partial.len() > MAX_RECORD + self.pool().buffer_size() {
            // rustls rejects an oversized record by its header; this is only a backstop.
            error.get_or_insert(rustls::Error::General("record too large".into()));
        }
        let mut failed = error.map(|e| {
            tracing::debug!(key = socket.key(), error = %e, "TLS error");
            tls_error(e)
        });
        if failed.is_none() && progress.established && !s.established {
            s.established = true;
            if let Some(early) = s.early.take() {
                failed = s.encrypt(early).err();
            }
        }
        if let Some(e) = failed {
            s.fail_with_alert();
            self.flush(socket, s);
            return Some(Err(e));
        }
        s.peer_closed |= progress.peer_closed;
        self.flush(socket, s);
        match plain.into_buf() {
            Some(data) => Some(Ok(data)),
            None if s.peer_closed => Some(Ok(Buf::empty())),
            None => None,
        }
    }

    /// Starts the next queued send if none is in flight.
    fn flush(&self, socket: &Arc<Socket<C>>, s: &mut Session) {
        if s.in_flight.is_some() {
            return;
        }
        let Some((mut bytes, mut sent)) = s.queue.pop_front() else { return };
        // Our own bytes ride ahead of whatever follows them in one send.
        while sent == Sent::Tls
            && let Some((next, kind)) = s.queue.pop_front()
        {
            bytes.extend_from_slice(&next);
            sent = kind;
        }
        s.in_flight = Some(sent);
        self.raw_post_send(socket, Payload::Buf(Buf::from_vec(bytes)));
    }

    /// Says goodbye properly if it can be done without waiting: a close_notify written straight
    /// to the socket (so a client can tell our close from a truncation). Called as the socket
    /// closes; nothing is written if a send is in flight (it would interleave).
    pub(super) fn tls_farewell(&self, socket: &Socket<C>, stream: &mio::net::TcpStream) {
        let Some(session) = self.shared.tls.remove(socket.key() & super::KEY_MASK) else { return };
        let mut s = lock(&session);
        if s.failed || !s.established || s.in_flight.is_some() {
            return;
        }
        let mut alert = [0u8; 64];
        let n = match s.conn.process_tls_records(&mut []).state {
            Ok(ConnectionState::WriteTraffic(mut w)) => w.queue_close_notify(&mut alert).unwrap_or(0),
            _ => 0,
        };
        if n > 0 {
            let _ = super::socket::send_now(stream, &alert[..n]);
        }
    }

    /// Fails the handshakes that began at least `timeout` ago: their socket is shut down, which
    /// ends its pending receive, and that receive completes as [`OpError::TlsHandshakeTimeout`].
    /// Returns how many.
    pub(super) fn tls_expire_handshakes(&self, timeout: Duration) -> usize {
        let now = Instant::now();
        let expired = self.each_socket(|socket| {
            if !socket.is_tls() {
                return None;
            }
            let session = self.session(socket)?;
            let mut s = lock(&session);
            if s.established || s.expired || now.saturating_duration_since(s.started) < timeout {
                return None;
            }
            s.expired = true;
            Some(socket.clone())
        });
        for socket in &expired {
            socket.shutdown();
        }
        expired.len()
    }
}

impl Session {
    /// Encrypts the handler's plaintext into the send queue.
    fn encrypt(&mut self, payload: Payload) -> Result<(), OpError> {
        let len = payload.len();
        let run;
        let data: &[u8] = match &payload {
            Payload::Buf(buf) => buf,
            Payload::Shared(lines) => {
                // One plaintext run, so lines share records instead of one record per line.
                let mut joined = Vec::with_capacity(len);
                lines.iter().for_each(|l| joined.extend_from_slice(l));
                run = joined;
                &run
            }
        };
        let mut out = Vec::new();
        loop {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    // AEAD overhead is a few dozen bytes per 16 KiB record.
                    let room = data.len() + 64 * (data.len() / (1 << 14) + 1);
                    let at = out.len();
                    let n = grow_until(&mut out, at, room, |spare| match w.encrypt(data, spare) {
                        Ok(n) => Ok(n),
                        Err(EncryptError::InsufficientSize(need)) => Err(Some(need)),
                        Err(EncryptError::EncryptExhausted) => Err(None),
                    })
                    .ok_or_else(|| tls_error("encryption keys exhausted"))?;
                    out.truncate(at + n);
                    break;
                }
                // A key update or ticket rustls wants out first: it goes ahead, in the same send.
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode_into(&mut out, |spare| e.encode(spare));
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(other) => return Err(tls_error(format_args!("cannot send now ({other:?})"))),
                Err(e) => return Err(tls_error(e)),
            }
        }
        self.queue.push_back((out, Sent::App(len)));
        Ok(())
    }

    /// After a rustls error: the alert it has for the peer goes out with the next send, if the
    /// socket still takes one, and nothing else will.
    fn fail_with_alert(&mut self) {
        let mut alert = Vec::new();
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = self.conn.process_tls_records(&mut []).state {
            encode_into(&mut alert, |spare| e.encode(spare));
        }
        self.failed = true;
        self.partial = Vec::new();
        self.queue.clear();
        if !alert.is_empty() {
            self.queue.push_back((alert, Sent::Tls));
        }
    }
}

/// How far one [`process`] got.
struct Progress {
    /// Bytes of the input consumed (whole records).
    offset: usize,
    error: Option<rustls::Error>,
    /// The handshake is complete: application data may be sent.
    established: bool,
    /// close_notify arrived.
    peer_closed: bool,
}

/// Runs rustls over `input` until it needs more: decrypted data goes to `plain`, the bytes it
/// wants sent (handshake flights, tickets) to `out`.
fn process(
    conn: &mut UnbufferedServerConnection,
    input: &mut [u8],
    mut plain: impl FnMut(&[u8]),
    out: &mut Vec<u8>,
) -> Progress {
    let mut p = Progress { offset: 0, error: None, established: false, peer_closed: false };
    loop {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut input[p.offset..]);
        let more = match state {
            Err(e) => {
                p.error = Some(e);
                false
            }
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => plain(record.payload),
                        Err(e) => {
                            p.error = Some(e);
                            break;
                        }
                    }
                }
                p.error.is_none()
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => encode_into(out, |spare| encode.encode(spare)),
            // The bytes are ours already (in `out`, queued by the caller): as good as sent.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                true
            }
            Ok(ConnectionState::WriteTraffic(_)) => {
                p.established = true;
                false
            }
            Ok(ConnectionState::PeerClosed) => {
                p.peer_closed = true;
                true
            }
            Ok(ConnectionState::Closed) => {
                p.peer_closed = true;
                false
            }
            // BlockedHandshake: more bytes needed; early data is off (max_early_data_size 0).
            Ok(_) => false,
        };
        p.offset += discard;
        if !more {
            return p;
        }
    }
}

/// Appends what rustls encodes (a handshake message, an alert) to `out`; false if it failed.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) -> bool {
    let at = out.len();
    let n = grow_until(out, at, 1024, |spare| match encode(spare) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(need)) => Err(Some(need)),
        Err(EncodeError::AlreadyEncoded) => Err(None),
    });
    out.truncate(at + n.unwrap_or(0));
    n.is_some()
}

/// Runs `write` on the spare room of `out` after `at` (at least `room` bytes), growing it to
/// what rustls says it needs until it fits; `None` if it cannot. Returns the bytes written.
fn grow_until(
    out: &mut Vec<u8>,
    at: usize,
    room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<InsufficientSizeError>>,
) -> Option<usize> {
    let mut room = room;
    loop {
        out.resize(at + room, 0);
        match write(&mut out[at..]) {
            Ok(n) => return Some(n),
            Err(Some(need)) if need.required_size > room => room = need.required_size,
            Err(_) => {
                out.truncate(at);
                return None;
            }
        }
    }
}

/// Decrypted bytes for the handler: a pooled buffer, moved to the heap if one read decrypts to
/// more than a buffer holds.
#[derive(Default)]
struct Plain {
    buf: Option<Buf>,
}

impl Plain {
    fn push<C: Send + Sync + 'static>(&mut self, port: &CompletionPort<C>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let buf = self.buf.get_or_insert_with(|| port.pool().take());
        let len = buf.len();
        if len + data.len() > buf.capacity() {
            let mut v = Vec::with_capacity(len + data.len());
            v.extend_from_slice(buf);
            v.extend_from_slice(data);
            *buf = Buf::from_vec(v);
            return;
        }
        buf.set_len(len + data.len());
        buf[len..].copy_from_slice(data);
    }

    fn into_buf(self) -> Option<Buf> {
        self.buf
    }
}
