//! Running a scenario's worker threads: connections are dealt round-robin to `threads` workers
//! (each with its own poller, so no locks on the hot path) while the main thread keeps the
//! progress line fresh until the last worker is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;

use super::dial::{Opened, open_many};
use super::progress::{Progress, TICK};
use super::{DialArgs, TimeArgs, parse, sys};

/// The connect phase every timed scenario starts with: `n` connections opened (each proven by a
/// round trip) under a progress bar that then counts `unit`s, and how many worker threads to use.
pub fn open(
    dial: &DialArgs,
    time: &TimeArgs,
    quiet: bool,
    n: usize,
    threads: Option<u32>,
    unit: &'static str,
) -> Result<(Progress, Opened, usize), String> {
    sys::check_nofile(n)?;
    let progress = Progress::new(quiet, parse::dur(time.warmup), parse::dur(time.warmup + time.duration), unit);
    let mut opened = open_many(&dial.dialer()?, n, true, &mut |k| progress.phase("connect", k as u64, n as u64));
    if let Some(e) = opened.first_error.take() {
        return Err(e);
    }
    let threads = threads.map_or(n.min(sys::cores()), |t| t as usize);
    Ok((progress, opened, threads))
}

/// Run `work(thread_index, items)` on `threads` threads; the results in thread order.
/// `counter` is what the workers count (messages, bytes...) for the progress line.
pub fn run<C, R, W>(
    items: Vec<C>,
    threads: usize,
    counter: &AtomicU64,
    progress: &mut Progress,
    work: W,
) -> Result<Vec<R>, String>
where
    C: Send,
    R: Send,
    W: Fn(usize, Vec<C>) -> R + Sync,
{
    let threads = threads.clamp(1, items.len().max(1));
    let mut groups: Vec<Vec<C>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        groups[i % threads].push(item);
    }
    // Each worker holds a sender; the channel disconnects when the last one finishes (or
    // unwinds), which wakes the main thread without polling the join handles.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let mut handles = Vec::with_capacity(threads);
        for (t, group) in groups.into_iter().enumerate() {
            let done = done_tx.clone();
            let work = &work;
            let h = thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn_scoped(s, move || {
                    let _done = done;
                    work(t, group)
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            handles.push(h);
        }
        drop(done_tx);
        loop {
            match done_rx.recv_timeout(TICK) {
                Err(RecvTimeoutError::Disconnected) => break,
                _ => progress.update(counter.load(Ordering::Relaxed)),
            }
        }
        handles.into_iter().map(|h| h.join().map_err(|_| "a worker thread panicked".to_string())).collect()
    })
}
