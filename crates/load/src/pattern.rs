//! The bytes every scenario sends. Each connection has its own endless pseudo-random stream and
//! byte `p` of it depends on (connection, p) alone, so any received byte can be checked on its
//! own without storing what was sent: a flipped byte, a message echoed out of order and bytes
//! from another connection all show up as a mismatch. Messages of size S are just the stream's
//! consecutive S-byte pieces, so message k of a connection differs from message k+1.

/// Words in the mixing table: the stream is `TABLE[w % N] ^ key(w / N)` for word index `w`,
/// one table load and one xor per 8 bytes, with the costlier key hash once per 32 KiB.
const TABLE_WORDS: u64 = 4096;

/// splitmix64's finaliser: a cheap, well-mixed 64-bit hash.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

static TABLE: [u64; TABLE_WORDS as usize] = {
    let mut t = [0u64; TABLE_WORDS as usize];
    let mut i = 0;
    while i < t.len() {
        t[i] = mix(0xEC40_0000 + i as u64);
        i += 1;
    }
    t
};

/// One connection's byte stream.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    seed: u64,
}

impl Pattern {
    pub fn new(stream_id: u64) -> Pattern {
        Pattern { seed: mix(stream_id ^ 0x5EED_EC40_5EED_EC40) }
    }

    /// Write stream bytes `pos..pos + buf.len()` into `buf`.
    pub fn fill(&self, pos: u64, buf: &mut [u8]) {
        let mut i = 0;
        let mut key_block = u64::MAX;
        let mut key = 0;
        while i < buf.len() {
            let p = pos + i as u64;
            let w = p / 8;
            if w / TABLE_WORDS != key_block {
                key_block = w / TABLE_WORDS;
                key = mix(self.seed ^ key_block);
            }
            let word = (TABLE[(w % TABLE_WORDS) as usize] ^ key).to_le_bytes();
            let off = (p % 8) as usize;
            let n = (8 - off).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&word[off..off + n]);
            i += n;
        }
    }

    /// Compare `got` with stream bytes `pos..`; the index of the first wrong byte, if any.
    /// `scratch` is reused between calls to avoid an allocation per read.
    pub fn check(&self, pos: u64, got: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
        scratch.resize(got.len(), 0);
        self.fill(pos, scratch);
        if scratch[..] == *got {
            return None;
        }
        got.iter().zip(scratch.iter()).position(|(a, b)| a != b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_access_matches_sequential() {
        let p = Pattern::new(7);
        let mut whole = vec![0u8; 100_000];
        p.fill(0, &mut whole);
        for (start, len) in [(0, 1), (3, 5), (7, 9), (32_760, 20), (65_535, 3), (99_990, 10)] {
            let mut part = vec![0u8; len];
            p.fill(start as u64, &mut part);
            assert_eq!(part, whole[start..start + len]);
        }
        let mut scratch = Vec::new();
        assert_eq!(p.check(10, &whole[10..500], &mut scratch), None);
        let mut bad = whole[10..500].to_vec();
        bad[42] ^= 1;
        assert_eq!(p.check(10, &bad, &mut scratch), Some(42));
    }

    #[test]
    fn streams_and_positions_differ() {
        let (a, b) = (Pattern::new(1), Pattern::new(2));
        let (mut x, mut y) = (vec![0u8; 64], vec![0u8; 64]);
        a.fill(0, &mut x);
        b.fill(0, &mut y);
        assert_ne!(x, y, "two connections must not send the same bytes");
        a.fill(64, &mut y);
        assert_ne!(x, y, "message k+1 must differ from message k");
        a.fill(TABLE_WORDS * 8, &mut y);
        assert_ne!(x, y, "the stream must not repeat with the table");
    }
}
