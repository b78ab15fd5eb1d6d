//! A fast hasher for keys the server chooses itself: client ids (the engine's completion keys)
//! and the addresses of lines it built. The standard hasher (SipHash) resists keys chosen to
//! collide, which only matters for keys a client chooses (nicks, channel names keep it); for
//! these it was most of the cost of a lookup, and a fan-out looks up every recipient.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use indexmap::IndexMap;

/// Multiplies each word in (Fibonacci hashing), then mixes the result with MurmurHash3's
/// 64-bit finalizer so that keys differing only in high bits (or with low bits all zero, as
/// aligned addresses) still spread over the low bits the table indexes with.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

pub type IdBuild = BuildHasherDefault<IdHasher>;
pub type IdMap<K, V> = HashMap<K, V, IdBuild>;
pub type IdSet<K> = HashSet<K, IdBuild>;
pub type IdIndexMap<K, V> = IndexMap<K, V, IdBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn nearby_and_aligned_keys_spread_over_the_low_bits() {
        let b = IdBuild::default();
        for (keys, what) in
            [((0..1024usize).collect::<Vec<_>>(), "sequential"), ((0..1024).map(|i| i * 64).collect(), "aligned")]
        {
            let buckets: IdSet<u64> = keys.iter().map(|k| b.hash_one(k) & 1023).collect();
            assert!(buckets.len() > 600, "{what} keys use only {} of 1024 buckets", buckets.len());
        }
    }
}
