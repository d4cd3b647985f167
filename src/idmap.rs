//! Maps keyed by small integers the program assigns itself (HTTP/2 stream
//! ids, slab keys): one multiply per hash instead of SipHash, which was
//! about 6 % of the instructions per invoke. Not for keys an outsider
//! chooses: those could be made to collide. Looking up an outsider's key
//! (a stream id in a peer's frame) is fine: it only misses.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A `HashMap` with [`IdHash`].
pub type IdMap<K, V> = HashMap<K, V, IdHash>;

/// Builds [`IdHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// Multiply-rotate hashing (as rustc's FxHasher): the product's high bits,
/// which the table uses first, depend on every bit of the key.
#[derive(Clone, Copy, Debug)]
pub struct IdHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_the_high_bits() {
        // Odd stream ids in a row, as HTTP/2 clients assign them: the top 7
        // bits (the table's tag) take many values.
        let tags: std::collections::HashSet<u64> = (0..256u32).map(|i| IdHash.hash_one(2 * i + 1) >> 57).collect();
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
        let mut m: IdMap<u32, u32> = IdMap::default();
        for i in 0..1000 {
            m.insert(2 * i + 1, i);
        }
        assert!((0..1000).all(|i| m[&(2 * i + 1)] == i));
        assert_eq!(m.get(&2), None);
    }
}
