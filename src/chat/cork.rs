//! Holding a connection's next send until the end of its worker's batch, so that the send
//! carries every line the rest of the batch queues for it too: the lines that waited behind a
//! send that has just completed (when they are few), and the first lines for a connection that
//! had nothing in flight.
//!
//! Under a broadcast each send is one TCP segment whose kernel cost (the send path, and the
//! receiving socket's wake-up on the peer's side) barely depends on its size: two thirds of the
//! server's time in the fan-out bench. Sending mid-batch leaves the lines the rest of the batch
//! produces for another segment. Measured with scripts/bench-chat.sh's load (1,000 clients, 10
//! senders, paired runs on 2 cores):
//! - holding sends whose completion found few lines queued: io_uring sent 40 segments per 1,000
//!   deliveries instead of 43-46, for 1.09x the deliveries/s at 0.89x the server CPU per
//!   delivery; epoll (which already sent 34) 32, within that box's noise otherwise;
//! - holding a connection's first send as well (a connection that was idle when a line came,
//!   which under a broadcast is most of them between two segments): a further 1.05-1.07x the
//!   deliveries/s at 0.92-0.94x the server CPU per delivery, on both backends (three runs of 4-6
//!   pairs; an A/A run's pairs spread 0.92-1.07).
//!
//! Latency at 100 and 1,000 messages/s did not move: the end of the batch comes before the worker
//! waits for more work, so a held send never waits for traffic, only for the completions already
//! reaped with the one that queued it.

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
    /// Holds the next send of each of `sockets` until the end of the calling worker's batch.
    pub(super) fn hold(&self, port: &Port, sockets: impl IntoIterator<Item = ChatSocket>) {
        let mut held = self.lock();
        let first = held.is_empty();
        held.extend(sockets);
        let flush = first && !held.is_empty();
        drop(held);
        if flush {
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
