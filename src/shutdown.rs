//! One token for the server's whole lifecycle, shared by everything that must stop.
//!
//! Whoever owns the server (main's signal handler, a test, an embedding program) calls
//! [`Shutdown::request`]. The acceptor stops accepting at once and the drain begins; when the
//! drain is over, [`Server::run`](crate::server::Server::run) moves the token to
//! [`Phase::Stopped`], which ends housekeeping and the metrics endpoint (so a scrape still sees the
//! drain). A part that blocks somewhere else (a poller, a blocking accept) registers a hook that
//! wakes it when its phase comes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where the server is in its life; phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running = 0,
    /// Shutdown was requested: no new connections; open ones finish their exchange.
    Draining = 1,
    /// The drain is over; the last threads end.
    Stopped = 2,
}

type Hook = Box<dyn FnOnce() + Send>;

/// A cloneable handle; all clones share one phase.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The phase, readable without the lock (the acceptor checks it on every turn).
    phase: AtomicU8,
    hooks: Mutex<Vec<(Phase, Hook)>>,
    changed: Condvar,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a graceful shutdown. True the first time; false if one was already requested
    /// (main exits at once on a second signal).
    pub fn request(&self) -> bool {
        self.advance(Phase::Draining)
    }

    /// True once shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        self.wait_for(Phase::Draining, None);
    }

    pub fn phase(&self) -> Phase {
        match self.inner.phase.load(Ordering::SeqCst) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    /// Ends the drain: housekeeping and metrics stop.
    pub(crate) fn stopped(&self) {
        self.advance(Phase::Stopped);
    }

    /// Blocks until `phase` is reached or `timeout` passes; true when reached.
    pub(crate) fn wait_for(&self, phase: Phase, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut hooks = self.lock();
        loop {
            if self.phase() >= phase {
                return true;
            }
            hooks = match deadline {
                None => self.inner.changed.wait(hooks).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.inner.changed.wait_timeout(hooks, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Runs `hook` once when `phase` is reached: at once (on this thread) if it already is, else
    /// on the thread that moves the token there.
    pub(crate) fn on(&self, phase: Phase, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = self.lock();
        if self.phase() >= phase {
            drop(hooks);
            hook();
            return;
        }
        hooks.push((phase, Box::new(hook)));
    }

    fn advance(&self, to: Phase) -> bool {
        let mut hooks = self.lock();
        let from = self.inner.phase.fetch_max(to as u8, Ordering::SeqCst);
        if from >= to as u8 {
            return false;
        }
        self.inner.changed.notify_all();
        let (due, waiting): (Vec<_>, Vec<_>) = hooks.drain(..).partition(|(phase, _)| *phase <= to);
        *hooks = waiting;
        // Outside the lock: a hook may take time (a connect) or look at the token itself.
        drop(hooks);
        for (_, hook) in due {
            hook();
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Phase, Hook)>> {
        self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("phase", &self.phase()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn phases_move_forward_and_run_each_hook_once() {
        let s = Shutdown::new();
        let ran = Arc::new(AtomicUsize::new(0));
        for phase in [Phase::Draining, Phase::Stopped] {
            let ran = ran.clone();
            s.on(phase, move || {
                ran.fetch_add(if phase == Phase::Draining { 1 } else { 10 }, Ordering::SeqCst);
            });
        }
        assert!(!s.is_requested());
        assert!(!s.wait_for(Phase::Draining, Some(Duration::from_millis(1))));
        assert!(s.request(), "the first request");
        assert!(!s.request(), "a second request is reported as such");
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the draining hook so far");
        s.stopped();
        s.stopped();
        assert_eq!(ran.load(Ordering::SeqCst), 11, "each hook ran once");
        let late = ran.clone();
        s.on(Phase::Draining, move || {
            late.fetch_add(100, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 111, "a hook for a phase already reached runs at once");
        assert!(!s.request() && s.phase() == Phase::Stopped);
    }

    #[test]
    fn a_waiter_on_another_thread_is_woken() {
        let s = Shutdown::new();
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.wait())
        };
        s.request();
        waiter.join().unwrap();
        assert!(s.wait_for(Phase::Draining, Some(Duration::ZERO)));
    }

    #[test]
    fn stopping_first_skips_past_draining() {
        let s = Shutdown::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        s.on(Phase::Draining, move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        s.stopped();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "reaching Stopped passes through Draining's hooks");
        assert!(s.is_requested());
    }
}
