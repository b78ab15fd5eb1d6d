//! Which messages a chat receiver is still missing, per (sender, receiver): what tells a late
//! (reordered) arrival apart from a duplicate, and what is left at the end is lost.
//!
//! A receiver normally gets one sender's messages as 1, 2, 3, ...: the next expected number is
//! one past the highest seen (kept by the caller), and nothing is stored here. Only when a
//! number is skipped are the skipped ones recorded, so a healthy run costs no memory at all and
//! a faulty one costs memory for the faults, up to a cap. Past the cap a skipped message is not
//! remembered but counted in `untracked`: the report then counts it lost (the conservative
//! reading), and if it does arrive later it is taken for a duplicate; both are errors anyway.

use std::collections::HashSet;

/// Skipped messages remembered per worker thread (about 40 bytes each in the set).
pub const CAP: usize = 1 << 18;

pub struct Gaps {
    /// `(sender, receiver, seq)` skipped and not (yet) received.
    missing: HashSet<(usize, usize, u64)>,
    cap: usize,
    /// Skipped messages beyond the cap.
    pub untracked: u64,
}

impl Gaps {
    pub fn new(cap: usize) -> Gaps {
        Gaps { missing: HashSet::new(), cap, untracked: 0 }
    }

    /// Receiver `r` got a message of sender `s` past `from..to`, which it has not got.
    pub fn skipped(&mut self, s: usize, r: usize, from: u64, to: u64) {
        for seq in from..to {
            if self.missing.len() >= self.cap {
                self.untracked += to - seq;
                return;
            }
            self.missing.insert((s, r, seq));
        }
    }

    /// Receiver `r` got message `seq` of `s`, at or below the highest it has seen: true if it
    /// was missing (a late arrival, now no longer missing), false if it is a second copy.
    pub fn arrived(&mut self, s: usize, r: usize, seq: u64) -> bool {
        self.missing.remove(&(s, r, seq))
    }

    /// Missing messages for which `counts(sender, receiver, seq)` holds.
    pub fn count(&self, counts: impl Fn(usize, usize, u64) -> bool) -> u64 {
        self.missing.iter().filter(|&&(s, r, seq)| counts(s, r, seq)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_arrivals_fill_gaps_and_second_copies_do_not() {
        let mut g = Gaps::new(CAP);
        // Receiver 1 of sender 0 saw 1, then 5: 2, 3 and 4 are missing.
        g.skipped(0, 1, 2, 5);
        assert_eq!(g.count(|_, _, _| true), 3);
        assert!(g.arrived(0, 1, 3), "a late arrival");
        assert!(!g.arrived(0, 1, 3), "the same message again is a duplicate");
        assert!(!g.arrived(0, 1, 1), "1 was never missing: a duplicate");
        assert!(!g.arrived(0, 2, 2), "another receiver's gap is its own");
        assert_eq!(g.count(|_, _, seq| seq >= 4), 1, "only 4 is left from 4 on");
        assert_eq!(g.count(|_, _, _| true), 2);
    }

    #[test]
    fn past_the_cap_gaps_are_counted_not_kept() {
        let mut g = Gaps::new(4);
        g.skipped(3, 0, 10, 20);
        assert_eq!(g.count(|_, _, _| true), 4);
        assert_eq!(g.untracked, 6);
        assert!(g.arrived(3, 0, 11));
        assert!(!g.arrived(3, 0, 19), "not remembered: taken for a duplicate");
    }
}
