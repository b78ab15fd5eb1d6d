//! The worker pool: N threads, each looping on the one shared completion port, the way IOCP
//! workers loop on `GetQueuedCompletionStatus`.

use crate::port::{Completion, CompletionPort, Socket, Wait};
use crate::stats::{Stats, WorkerStats, bump};
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The port, socket and completion types of a handler, named once.
pub type PortOf<H> = CompletionPort<<H as Handler>::Conn>;
pub type SocketOf<H> = Arc<Socket<<H as Handler>::Conn>>;
pub type CompletionOf<H> = Completion<<H as Handler>::Conn>;

/// What a protocol does with each completion. Runs on worker threads, many at once.
pub trait Handler: Send + Sync + 'static {
    /// The protocol's state for one connection, carried by its socket (IOCP's completion key).
    type Conn: Send + Sync + 'static;

    /// The state of a connection just accepted from `peer`, before it is associated.
    fn conn(&self, peer: SocketAddr) -> Self::Conn;

    /// The port exists and nothing runs on it yet: start what the protocol needs beside the
    /// workers (chat's link to Redis). An error stops the server's start.
    fn started(&self, _port: &PortOf<Self>) -> Result<(), String> {
        Ok(())
    }

    /// A connection was accepted and associated; its first receive is posted right after.
    fn on_accept(&self, _port: &PortOf<Self>, _socket: &SocketOf<Self>) {}

    fn on_completion(&self, port: &PortOf<Self>, completion: CompletionOf<Self>, stats: &WorkerStats);

    /// What to tell a connection refused by a limit before it is closed (`reason` is a short
    /// phrase such as "Server full"); `None` closes it without a word.
    fn refusal(&self, _peer: SocketAddr, _reason: &str) -> Option<Vec<u8>> {
        None
    }

    /// Called about once a second from the housekeeping thread (protocol timers).
    fn tick(&self, _port: &PortOf<Self>) {}

    /// Protocol-specific counters for /metrics: (name, help, value).
    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }
}

/// Running worker threads.
pub struct WorkerPool {
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `count` workers (one per entry of `stats.workers`).
    pub fn spawn<H: Handler>(port: &PortOf<H>, handler: &Arc<H>, stats: &Arc<Stats>) -> io::Result<Self> {
        let mut threads = Vec::with_capacity(stats.workers.len());
        for index in 0..stats.workers.len() {
            let (port, handler, stats) = (port.clone(), handler.clone(), stats.clone());
            let thread = std::thread::Builder::new()
                .name(format!("echoport-worker-{index}"))
                .spawn(move || run(&port, &*handler, &stats, index))?;
            threads.push(thread);
        }
        Ok(WorkerPool { threads })
    }

    /// Waits for every worker to return (after [`CompletionPort::shutdown`]).
    pub fn join(self) {
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

fn run<H: Handler>(port: &PortOf<H>, handler: &H, stats: &Stats, index: usize) {
    let mine = &stats.workers[index];
    loop {
        match port.get(None) {
            Ok(completion) => {
                bump(&mine.completions, 1);
                // The key, not a reference: an atomic count per completion is a cost on the hot
                // path, and the socket is only needed again after a panic.
                let key = completion.socket().map(|s| s.key());
                // A bug in one connection's handling must not take a worker (and with it the
                // port's awake count) down: drop that connection and keep serving.
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler.on_completion(port, completion, mine)));
                if outcome.is_err() {
                    bump(&mine.errors, 1);
                    tracing::error!(key, "handler panicked; connection closed");
                    if let Some(socket) = key.and_then(|k| port.socket_by_key(k)) {
                        port.close(&socket);
                    }
                }
            }
            Err(Wait::TimedOut) => {}
            Err(Wait::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferPool;
    use std::time::Duration;

    /// Panics on `User(0)`, reports every other value.
    struct Fragile(crossbeam_channel::Sender<u64>);

    impl Handler for Fragile {
        type Conn = ();
        fn conn(&self, _: SocketAddr) {}
        fn on_completion(&self, _: &PortOf<Self>, completion: CompletionOf<Self>, _: &WorkerStats) {
            if let Completion::User(v) = completion {
                assert_ne!(v, 0, "deliberate test panic");
                self.0.send(v).unwrap();
            }
        }
    }

    #[test]
    fn a_panicking_handler_does_not_stop_the_pool() {
        let port = CompletionPort::new(BufferPool::new(512, 1), 1).unwrap();
        let stats = Arc::new(Stats::new(1));
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = WorkerPool::spawn(&port, &Arc::new(Fragile(tx)), &stats).unwrap();
        port.post_user(0);
        port.post_user(7);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
        port.shutdown();
        pool.join();
        assert_eq!(stats.snapshot(0).errors, 1);
    }
}
