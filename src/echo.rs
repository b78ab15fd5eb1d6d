//! The echo protocol (RFC 862): every byte received is sent back, in order.
//!
//! The whole hot path is here: receive completion -> post a send of exactly those bytes -> send
//! completion -> re-arm the receive. The receive is re-armed only after the send has completed,
//! so a client that never reads is no longer read from: the kernel's buffers fill, TCP flow
//! control pushes back on the client, and the server holds a buffer or two for it (io_uring may have
//! read one more before its multishot receive stopped).

use crate::port::{Completion, OpError};
use crate::stats::{WorkerStats, bump};
use crate::worker::{CompletionOf, Handler, PortOf, SocketOf};
use std::io;
use std::net::SocketAddr;

/// The echo handler; stateless, one for all connections.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    /// An echo connection needs nothing beyond its socket.
    type Conn = ();

    fn conn(&self, _peer: SocketAddr) {}

    fn on_completion(&self, port: &PortOf<Self>, completion: CompletionOf<Self>, stats: &WorkerStats) {
        match completion {
            Completion::Recv { socket, result: Ok(buf) } if buf.is_empty() => {
                // The peer shut down its sending side. A receive is only ever outstanding once
                // every byte received before it has been sent back, so nothing is owed: close.
                tracing::debug!(key = socket.key(), "peer finished sending");
                port.close(&socket);
            }
            Completion::Recv { socket, result: Ok(buf) } => {
                bump(&stats.bytes_in, buf.len() as u64);
                bump(&stats.messages, 1);
                port.post_send(&socket, buf);
            }
            Completion::Send { socket, result: Ok(sent) } => {
                // The buffer went back to the pool: a waiting receive holds none.
                bump(&stats.bytes_out, sent as u64);
                port.post_recv(&socket);
            }
            Completion::Recv { socket, result: Err(e) } | Completion::Send { socket, result: Err(e) } => {
                close_on_error(port, &socket, &e, stats);
            }
            Completion::User(_) => {}
        }
    }
}

/// Ends a connection whose operation failed. Resets and broken pipes are the peer's business,
/// not the operator's: they are logged at debug level only. The port's own reasons (idle
/// timeout, shutdown) are counted where they are decided.
fn close_on_error(port: &PortOf<Echo>, socket: &SocketOf<Echo>, e: &OpError, stats: &WorkerStats) {
    let key = socket.key();
    match e {
        OpError::IdleTimeout => tracing::debug!(key, "idle timeout"),
        OpError::Shutdown => tracing::debug!(key, "closed for shutdown"),
        OpError::TlsHandshakeTimeout => tracing::debug!(key, "TLS handshake timeout"),
        OpError::Io(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
            tracing::debug!(key, error = %e, "peer reset");
        }
        OpError::Io(e) => {
            bump(&stats.errors, 1);
            tracing::debug!(key, error = %e, "connection error");
        }
    }
    port.close(socket);
}
