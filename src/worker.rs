//! The worker pool: N threads, each looping on the one shared completion port, the way IOCP
//! workers loop on `GetQueuedCompletionStatus`.

use crate::port::{Completion, CompletionPort, Wait};
use crate::stats::{Stats, bump};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a protocol does with each completion. Runs on worker threads, many at once.
pub trait Handler: Send + Sync + 'static {
    fn on_completion(
        &self,
        port: &CompletionPort,
        completion: Completion,
        stats: &crate::stats::WorkerStats,
    );
}

/// Running worker threads.
pub struct WorkerPool {
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `count` workers (one per entry of `stats.workers`).
    pub fn spawn(
        port: &CompletionPort,
        handler: Arc<dyn Handler>,
        stats: &Arc<Stats>,
    ) -> io::Result<Self> {
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

fn run(port: &CompletionPort, handler: &dyn Handler, stats: &Stats, index: usize) {
    let mine = &stats.workers[index];
    loop {
        match port.get(None) {
            Ok(completion) => {
                bump(&mine.completions, 1);
                handler.on_completion(port, completion, mine);
            }
            Err(Wait::TimedOut) => {}
            Err(Wait::Closed) => return,
        }
    }
}
