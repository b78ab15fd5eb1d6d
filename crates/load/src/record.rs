//! Latency recording: one histogram for the whole measured window plus a small one per second
//! for the timeline. Each worker thread owns a `Recorder` (no sharing on the hot path) and the
//! main thread merges them at the end.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Three significant figures for the totals (±0.1%), two for the per-second p99 (±1%): the
/// per-second histograms are many, and two figures keep each at a few KiB.
pub const SIGFIG_TOTAL: u8 = 3;
const SIGFIG_SECOND: u8 = 2;

/// An auto-resizing histogram of microseconds.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    // Only an out-of-range precision (not 0..=5) can fail, and the callers pass constants.
    Histogram::new(sigfig).expect("sigfig within 0..=5")
}

/// Record `us`, growing the histogram as needed. (`saturating_record` would not grow an
/// auto-resizing histogram: it clamps to the current top, which starts at about 2 ms.)
fn put(h: &mut Histogram<u64>, us: u64) {
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Record a duration in microseconds (TLS handshakes: no timeline, just the histogram).
pub fn put_duration(h: &mut Histogram<u64>, d: Duration) {
    put(h, u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
}

/// Messages completed in one second of the timeline, and their latencies.
pub struct Second {
    pub count: u64,
    pub hist: Histogram<u64>,
}

pub struct Recorder {
    pub hist: Histogram<u64>,
    pub seconds: Vec<Second>,
    /// Second 0 of the timeline (the end of warm-up).
    origin: Instant,
    /// Bins beyond this are folded into the last one (the drain after the run's end).
    max_bins: usize,
}

impl Recorder {
    pub fn new(origin: Instant, max_bins: usize) -> Recorder {
        Recorder { hist: histogram(SIGFIG_TOTAL), seconds: Vec::new(), origin, max_bins: max_bins.max(1) }
    }

    /// Record one completed message: `at` is when it completed, `latency` how long it took.
    pub fn record(&mut self, at: Instant, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        put(&mut self.hist, us);
        let bin = at.saturating_duration_since(self.origin).as_secs() as usize;
        let bin = bin.min(self.max_bins - 1);
        self.ensure_bins(bin + 1);
        let s = &mut self.seconds[bin];
        s.count += 1;
        put(&mut s.hist, us);
    }

    /// Make the timeline at least `n` seconds long (a silent second still gets a point).
    pub fn ensure_bins(&mut self, n: usize) {
        let n = n.min(self.max_bins);
        while self.seconds.len() < n {
            self.seconds.push(Second { count: 0, hist: histogram(SIGFIG_SECOND) });
        }
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Fold another thread's recorder into this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Auto-resizing histograms grow to fit, so addition cannot fail here.
        let _ = self.hist.add(&other.hist);
        self.ensure_bins(other.seconds.len());
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.count += theirs.count;
            let _ = mine.hist.add(&theirs.hist);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_and_merge() {
        let t0 = Instant::now();
        let mut a = Recorder::new(t0, 3);
        let mut b = Recorder::new(t0, 3);
        a.record(t0 + Duration::from_millis(10), Duration::from_micros(50));
        a.record(t0 + Duration::from_millis(1500), Duration::from_micros(70));
        b.record(t0 + Duration::from_secs(10), Duration::from_micros(90));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        let counts: Vec<u64> = a.seconds.iter().map(|s| s.count).collect();
        assert_eq!(counts, [1, 1, 1], "late completions fold into the last second");
        a.record(t0, Duration::from_secs(5));
        assert!(a.hist.max() >= 4_990_000, "large latencies must not be clamped");
        assert!(a.seconds[0].hist.max() >= 4_900_000, "nor in the per-second histograms");
    }
}
