//! The echo protocol (RFC 862): every byte received is sent back, in order.
//!
//! The whole hot path is here: receive completion -> post a send of exactly those bytes -> send
//! completion -> re-arm the receive. The receive is re-armed only after the send has completed,
//! so a client that never reads is no longer read from: the kernel's buffers fill, TCP flow
//! control pushes back on the client, and the server holds at most one buffer for it.

use crate::port::{Completion, CompletionPort, Socket};
use crate::stats::{WorkerStats, bump};
use crate::worker::Handler;
use std::io;
use std::sync::Arc;

/// The echo handler; stateless, one for all connections.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_completion(&self, port: &CompletionPort, completion: Completion, stats: &WorkerStats) {
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
/// not the operator's: they are logged at debug level only.
fn close_on_error(port: &CompletionPort, socket: &Arc<Socket>, e: &io::Error, stats: &WorkerStats) {
    match e.kind() {
        // The idle sweep's own error (no OS code): counted and logged by the sweep. The kernel's
        // ETIMEDOUT (retransmissions or keepalive gave up) is an error like any other.
        io::ErrorKind::TimedOut if e.raw_os_error().is_none() => tracing::debug!(key = socket.key(), "idle timeout"),
        io::ErrorKind::ConnectionAborted => {
            tracing::debug!(key = socket.key(), "closed for shutdown")
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            tracing::debug!(key = socket.key(), error = %e, "peer reset");
        }
        _ => {
            bump(&stats.errors, 1);
            tracing::debug!(key = socket.key(), error = %e, "connection error");
        }
    }
    port.close(socket);
}
