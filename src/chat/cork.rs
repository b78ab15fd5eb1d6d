//! Holding a connection's next send until the end of its worker's batch, when the lines queued
//! behind the last send are few: the send then carries the lines the rest of the batch queues for
//! it too.
//!
//! Under a broadcast a connection always has lines waiting when its send completes, and each send
//! is one TCP segment whose kernel cost (the send path, and the receiving socket's wake-up on the
//! peer's side) barely depends on its size: two thirds of the server's time in the fan-out bench.
//! Sending at the send's completion, mid-batch, leaves the lines the rest of the batch produces
//! for another segment. Held to the batch's end (scripts/bench-chat.sh's load, 1,000 clients,
//! paired runs on 2 cores): io_uring sent 40 segments per 1,000 deliveries instead of 43-46, for
//! 1.09x the deliveries/s at 0.89x the server CPU per delivery; epoll (which already sent 34) 32,
//! at 0.95-0.99x the CPU per delivery and 0.95-0.98x the deliveries/s, within that box's noise.
//! Latency at 100 and 1,000 messages/s did not move.
//!
//! A connection whose queue was empty when a line arrived is never held: the hold applies only to
//! lines that already waited behind a send, so an idle conversation sees no delay; and the end of
//! the batch comes before the worker waits for more work, so a held send never waits for traffic.

use super::{ChatSocket, Port};
use std::sync::Mutex;

/// Queued lines at least this long are sent at once: a segment's worth is worth its cost.
pub(super) const CORK_BYTES: usize = 4096;

/// The user completion that ends a batch's hold (see [`Port::defer_user`]).
pub(super) const FLUSH: u64 = 2;

/// Connections held until the end of a batch.
#[derive(Default)]
pub(super) struct Cork {
    /// While it is not empty a [`FLUSH`] is on its way: one for all workers, so whichever batch
    /// ends first sends every held socket. (On io_uring a worker in a password check holds its
    /// batch's end back, and with it the others' held sends, for as long as the check takes.)
    held: Mutex<Vec<ChatSocket>>,
}

impl Cork {
    /// Holds `socket`'s next send until the end of the calling worker's batch.
    pub(super) fn hold(&self, port: &Port, socket: ChatSocket) {
        let mut held = self.lock();
        let first = held.is_empty();
        held.push(socket);
        drop(held);
        if first {
            port.defer_user(FLUSH);
        }
    }

    /// The batch ended ([`FLUSH`] came back): the connections to send to now.
    pub(super) fn release(&self) -> Vec<ChatSocket> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ChatSocket>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}
