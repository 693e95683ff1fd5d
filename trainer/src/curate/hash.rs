//! Fast 64-bit hashing of words and word n-grams, and a pass-through hasher
//! for maps keyed by such hashes.
//!
//! The byte hash reads 8 bytes at a time with the MurmurHash3 x64 mixing
//! steps and finishes with its `fmix64` avalanche; std's SipHash
//! (`DefaultHasher`) is several times slower and its DoS resistance is not
//! needed here. These hashes are not stable promises: they may change
//! between versions, so nothing persists them.

use std::hash::{BuildHasherDefault, Hasher};

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// MurmurHash3's final avalanche of a 64-bit value.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[inline]
fn mix_lane(h: u64, k: u64) -> u64 {
    let k = k.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    (h ^ k).rotate_left(27).wrapping_mul(5).wrapping_add(0x52dc_e729)
}

/// The hash of `bytes` under `seed`.
pub fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(C2);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix_lane(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = mix_lane(h, u64::from_le_bytes(last));
    }
    fmix64(h)
}

/// The hash of a sequence of word hashes (an n-gram); the length takes part,
/// so a 3-gram and a 4-gram never share a hash by construction.
#[inline]
pub fn hash_seq(words: &[u64]) -> u64 {
    let mut h = (words.len() as u64).wrapping_mul(C1);
    for &w in words {
        h = mix_lane(h, w);
    }
    fmix64(h)
}

/// A [`Hasher`] that passes a `u64` key through: for maps whose keys are
/// already good hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only integer keys are expected; anything else still hashes well.
        self.0 = hash_bytes(bytes, self.0);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

/// The `BuildHasher` of [`IdHasher`].
pub type IdBuild = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn equal_bytes_hash_equal_and_seeds_and_lengths_differ() {
        assert_eq!(hash_bytes(b"triangle", 1), hash_bytes(b"triangle", 1));
        assert_ne!(hash_bytes(b"triangle", 1), hash_bytes(b"triangle", 2));
        // Zero padding of the tail does not make "a" and "a\0" collide.
        assert_ne!(hash_bytes(b"a", 0), hash_bytes(b"a\0", 0));
        assert_ne!(hash_bytes(b"", 0), hash_bytes(b"\0", 0));
        assert_ne!(hash_seq(&[1, 2]), hash_seq(&[2, 1]));
        assert_ne!(hash_seq(&[1]), hash_seq(&[1, 0]));
    }

    #[test]
    fn no_collisions_among_many_short_words() {
        let mut seen = HashSet::new();
        for i in 0..200_000u32 {
            assert!(seen.insert(hash_bytes(format!("w{i}").as_bytes(), 7)));
        }
        // Every output bit flips about half the time over consecutive keys.
        let ones: u32 = (0..1000u64).map(|i| fmix64(i).count_ones()).sum();
        assert!((30_000..34_000).contains(&ones), "{ones}");
    }

    #[test]
    fn id_hasher_passes_u64_through() {
        let mut h = IdHasher::default();
        h.write_u64(42);
        assert_eq!(h.finish(), 42);
    }
}
