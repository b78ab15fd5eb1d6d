//! A connection of any scenario: a plain non-blocking socket, or the same socket under a rustls
//! client session. The scenarios read and write a `Link` exactly as they would a mio `TcpStream`
//! (WouldBlock, then an edge-triggered event resumes), so TLS costs the plain path one match per
//! call, not per byte.
//!
//! The TLS side keeps the socket's contract, which edge-triggered polling depends on:
//! - `read` returns less than asked only when the socket has nothing more now (or at its end),
//!   so "a short read means drained" stays true and nothing waits unseen in rustls' buffers;
//! - `write` takes bytes only when everything encrypted before has reached the socket, so
//!   WouldBlock means the socket is full and a writable event will come; `flush` pushes out
//!   what a last write left behind and is called on every event that writes.
//!
//! While handshaking, rustls holds written plaintext (up to its 64 KiB limit) until the session
//! is up; the reply that completes the handshake arrives as a readable event, after which every
//! scenario writes again.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ClientConnection;

use super::tls::Tls;

pub enum Link {
    Plain(TcpStream),
    Tls(Box<Secure>),
}

pub struct Secure {
    tcp: TcpStream,
    tls: ClientConnection,
    /// When the ClientHello reached the socket.
    hello_at: Option<Instant>,
    timing: Timing,
}

/// The handshake's duration: from the ClientHello written to the server's Finished verified.
enum Timing {
    Running,
    Took(Duration),
    /// [`Link::handshake_done`] has handed it out.
    Reported,
}

impl Link {
    pub fn new(tcp: TcpStream, tls: Option<&Tls>) -> io::Result<Link> {
        let Some(t) = tls else { return Ok(Link::Plain(tcp)) };
        let tls = ClientConnection::new(t.config.clone(), t.name.clone()).map_err(io::Error::other)?;
        Ok(Link::Tls(Box::new(Secure { tcp, tls, hello_at: None, timing: Timing::Running })))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Tls(s) => &s.tcp,
        }
    }

    /// The handshake's duration, once, as soon as it is complete (never for a plain link).
    pub fn handshake_done(&mut self) -> Option<Duration> {
        match self {
            Link::Plain(_) => None,
            Link::Tls(s) => match s.timing {
                Timing::Took(d) => {
                    s.timing = Timing::Reported;
                    Some(d)
                }
                Timing::Running | Timing::Reported => None,
            },
        }
    }

    /// Move the handshake on with what the socket allows now; true once it is complete.
    pub fn handshake(&mut self) -> io::Result<bool> {
        match self {
            Link::Plain(_) => Ok(true),
            Link::Tls(s) => s.drive_handshake(),
        }
    }

    /// Before dropping a TLS link: a close_notify (best effort), so the server sees the session
    /// end cleanly rather than truncated. Nothing on a plain one.
    pub fn close_notify(&mut self) {
        if let Link::Tls(s) = self {
            s.tls.send_close_notify();
            let _ = s.send();
        }
    }
}

impl Secure {
    /// Write encrypted bytes until rustls has none left or the socket is full.
    fn send(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {
                    self.hello_at.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Pull one read of the socket into rustls and decrypt it: None when the socket has nothing
    /// now, Some(0) at its end.
    fn receive(&mut self) -> io::Result<Option<usize>> {
        let n = loop {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the server why (rustls has queued the alert), then fail like a broken socket.
            let _ = self.send();
            return Err(io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}")));
        }
        if matches!(self.timing, Timing::Running) && !self.tls.is_handshaking() {
            let from = self.hello_at.unwrap_or_else(Instant::now);
            self.timing = Timing::Took(from.elapsed());
        }
        // Our Finished, plaintext held during the handshake, or an answer to a key update.
        self.send()?;
        Ok(Some(n))
    }

    fn drive_handshake(&mut self) -> io::Result<bool> {
        self.send()?;
        while self.tls.is_handshaking() {
            if !self.tls.wants_read() {
                // Our flight is waiting for room in the socket: the writable event resumes.
                return Ok(false);
            }
            match self.receive()? {
                None => return Ok(false),
                Some(0) => {
                    return Err(io::Error::new(ErrorKind::UnexpectedEof, "connection closed during the TLS handshake"));
                }
                Some(_) => {}
            }
        }
        Ok(true)
    }
}

impl Read for Secure {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Pending writes first: a handshake or a last write may be waiting on the socket.
        self.send()?;
        let mut n = 0;
        loop {
            match self.tls.reader().read(&mut buf[n..]) {
                // The peer's close_notify (a 0 with room left), or a full buffer.
                Ok(0) => return Ok(n),
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: to the scenarios that is an end too.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(n),
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
            if n == buf.len() {
                return Ok(n);
            }
            // At the socket's end the reader above reports it on the next turn.
            match self.receive()? {
                Some(_) => {}
                None if n > 0 => return Ok(n),
                None => return Err(ErrorKind::WouldBlock.into()),
            }
        }
    }
}

impl Write for Secure {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send()?;
        if self.tls.wants_write() {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls' buffer is full while the handshake is still going.
            return Err(ErrorKind::WouldBlock.into());
        }
        self.send()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            // A socket has no buffer of its own to flush.
            Link::Plain(_) => Ok(()),
            Link::Tls(s) => s.flush(),
        }
    }
}

impl Source for Link {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interests)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}

impl Link {
    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Tls(s) => &mut s.tcp,
        }
    }
}
