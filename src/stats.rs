//! Counters: one cache-line-aligned block per worker, so the hot path never shares a line with
//! another core; the reporter sums them. Limit hits, rare by nature, are shared ([`Limits`]).

use crate::limits::{Limit, Limits};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters written by a single worker thread.
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    pub completions: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages: AtomicU64,
    pub errors: AtomicU64,
}

/// Adds to a counter that only the calling thread writes: a plain load and store, no locked
/// read-modify-write on the hot path. Readers on other threads see a value at most one update old.
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// All of the server's counters.
#[derive(Debug)]
pub struct Stats {
    pub workers: Vec<WorkerStats>,
    /// Written by the acceptor thread only.
    pub accepted: AtomicU64,
    pub limits: Limits,
}

/// A point-in-time sum of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub open: u64,
    pub total: u64,
    /// Refused by `--max-conns` or `--max-conns-per-ip`.
    pub refused: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages: u64,
    /// Closed by an idle, registration, ping or line timeout.
    pub timeouts: u64,
    pub errors: u64,
    pub completions: u64,
}

impl Stats {
    pub fn new(workers: usize) -> Self {
        Stats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            accepted: AtomicU64::new(0),
            limits: Limits::default(),
        }
    }

    pub fn snapshot(&self, open: usize) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let hits = |limits: &[Limit]| limits.iter().map(|&l| self.limits.count(l)).sum();
        let mut s = Snapshot {
            open: open as u64,
            total: get(&self.accepted),
            refused: hits(&[Limit::MaxConns, Limit::MaxConnsPerIp]),
            timeouts: hits(&[Limit::IdleTimeout, Limit::RegistrationTimeout, Limit::PingTimeout, Limit::LineTimeout]),
            ..Snapshot::default()
        };
        for w in &self.workers {
            s.completions += get(&w.completions);
            s.bytes_in += get(&w.bytes_in);
            s.bytes_out += get(&w.bytes_out);
            s.messages += get(&w.messages);
            s.errors += get(&w.errors);
        }
        s
    }
}

impl Snapshot {
    /// Logs the snapshot as `key=value` fields; `per_sec` is the message rate since the last one,
    /// and `limits` is listed as `name=count` pairs of the limits hit so far.
    pub fn log(&self, message: &str, per_sec: u64, limits: &Limits) {
        let mut hit = String::new();
        for (limit, n) in limits.counts().filter(|&(_, n)| n > 0) {
            let _ = write!(hit, "{}{}={n}", if hit.is_empty() { "" } else { " " }, limit.name());
        }
        tracing::info!(
            open = self.open,
            total = self.total,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            msgs_per_sec = per_sec,
            refused = self.refused,
            timeouts = self.timeouts,
            errors = self.errors,
            limits = hit,
            "{message}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_workers() {
        let stats = Stats::new(3);
        bump(&stats.workers[0].bytes_in, 5);
        bump(&stats.workers[2].bytes_in, 7);
        bump(&stats.workers[1].messages, 1);
        stats.limits.hit(Limit::MaxConns, None);
        stats.limits.hit(Limit::MaxConnsPerIp, None);
        stats.limits.hit(Limit::PingTimeout, None);
        let s = stats.snapshot(4);
        assert_eq!((s.open, s.bytes_in, s.messages, s.refused, s.timeouts), (4, 12, 1, 2, 1));
    }
}
