//! MinHash signatures of word-shingle sets and locality-sensitive hashing
//! (LSH) bands, for near-duplicate search.
//!
//! A document's shingles are its word k-grams (hashed); a document shorter
//! than k words has one shingle, all its words. Its signature holds, for
//! each of `num_perm` hash functions `h_i(x) = (a_i x + b_i) >> 32` (a_i
//! odd, multiply-shift over 64 bits), the minimum over its shingles. The
//! fraction of equal positions in two signatures estimates the Jaccard
//! similarity of the shingle sets.
//!
//! LSH splits a signature into `bands` bands of `rows` values: two
//! documents become candidates when one band is equal in both, which
//! happens with probability `1 - (1 - J^rows)^bands` for Jaccard `J`.
//! [`LshParams::choose`] picks the most rows per band (fewest spurious
//! candidates) that still makes a pair at the threshold a candidate with
//! probability at least 0.98; candidates are then checked against the
//! threshold with their estimated similarity.

use super::hash::{fmix64, hash_seq};

/// The hash functions of the signatures.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    /// `num_perm` hash functions drawn from `seed`.
    pub fn new(num_perm: usize, seed: u64) -> MinHasher {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            fmix64(state)
        };
        let mut a = Vec::with_capacity(num_perm);
        let mut b = Vec::with_capacity(num_perm);
        for _ in 0..num_perm {
            a.push(next() | 1);
            b.push(next());
        }
        MinHasher { a, b }
    }

    /// Values per signature.
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The signature of a set of shingle hashes (all `u32::MAX` for none).
    pub fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for &s in shingles {
            for ((m, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(s).wrapping_add(b) >> 32) as u32;
                *m = (*m).min(v);
            }
        }
        sig
    }
}

/// The shingle hashes of a document given its word hashes: every `k`-gram
/// (one gram of all words when there are fewer than `k`).
pub fn shingles(word_hashes: &[u64], k: usize) -> Vec<u64> {
    match word_hashes.len() {
        0 => Vec::new(),
        l if l < k => vec![hash_seq(word_hashes)],
        _ => word_hashes.windows(k).map(hash_seq).collect(),
    }
}

/// The fraction of positions where two signatures agree.
pub fn similarity(a: &[u32], b: &[u32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    if a.is_empty() {
        return 0.0;
    }
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len() as f64
}

/// How signatures are cut into LSH bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LshParams {
    /// Bands (each a bucket lookup).
    pub bands: usize,
    /// Signature values per band.
    pub rows: usize,
}

impl LshParams {
    /// Probability that a pair of Jaccard similarity `j` shares a band.
    pub fn candidate_probability(&self, j: f64) -> f64 {
        1.0 - (1.0 - j.powi(self.rows as i32)).powi(self.bands as i32)
    }

    /// The most rows per band (with as many bands as fit in `num_perm`)
    /// such that a pair at `threshold` is a candidate with probability at
    /// least 0.98.
    pub fn choose(num_perm: usize, threshold: f64) -> LshParams {
        let mut best = LshParams {
            bands: num_perm.max(1),
            rows: 1,
        };
        for rows in 1..=num_perm {
            let p = LshParams {
                bands: num_perm / rows,
                rows,
            };
            if p.bands > 0 && p.candidate_probability(threshold) >= 0.98 {
                best = p;
            }
        }
        best
    }

    /// The band keys of a signature: one hash per band, with the band's
    /// index mixed in so equal values in different bands do not meet.
    pub fn band_keys<'a>(&self, sig: &'a [u32]) -> impl Iterator<Item = u64> + 'a {
        let rows = self.rows;
        (0..self.bands).map(move |b| {
            let mut h = (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for &v in &sig[b * rows..(b + 1) * rows] {
                h = fmix64(h ^ u64::from(v));
            }
            h
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curate::normalize::normalize;

    fn sig(m: &MinHasher, text: &str, k: usize) -> Vec<u32> {
        m.signature(&shingles(&normalize(text).hashes(1), k))
    }

    #[test]
    fn similarity_estimates_jaccard() {
        let m = MinHasher::new(256, 42);
        // 100 distinct words; the second text replaces the last 10, so the
        // 3-shingle sets share 88 of 98 + 10 = 108 (Jaccard 0.81).
        let a: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
        let mut b = a.clone();
        for w in b.iter_mut().skip(90) {
            w.push('x');
        }
        let (sa, sb) = (sig(&m, &a.join(" "), 3), sig(&m, &b.join(" "), 3));
        let est = similarity(&sa, &sb);
        assert!((est - 88.0 / 108.0).abs() < 0.08, "{est}");
        assert_eq!(similarity(&sa, &sa), 1.0);
        let other = sig(&m, "nothing in common with the others at all", 3);
        assert!(similarity(&sa, &other) < 0.05);
        // Case and punctuation do not matter (the words are normalised).
        assert_eq!(sig(&m, "A, b c!", 2), sig(&m, "a b C", 2));
    }

    #[test]
    fn short_and_empty_documents() {
        assert_eq!(shingles(&[1, 2], 5).len(), 1);
        assert!(shingles(&[], 5).is_empty());
        assert_eq!(shingles(&[1, 2, 3, 4, 5, 6], 5).len(), 2);
        let m = MinHasher::new(8, 1);
        assert!(m.signature(&[]).iter().all(|&v| v == u32::MAX));
    }

    #[test]
    fn lsh_parameters_catch_pairs_at_the_threshold() {
        let p = LshParams::choose(128, 0.8);
        assert_eq!(p, LshParams { bands: 18, rows: 7 });
        assert!(p.candidate_probability(0.8) >= 0.98);
        assert!(p.candidate_probability(0.3) < 0.01);
        let q = LshParams::choose(128, 0.5);
        assert!(q.rows < p.rows && q.candidate_probability(0.5) >= 0.98);
        // Equal signatures share every band key; the bands differ.
        let s: Vec<u32> = (0..128).collect();
        let keys: Vec<u64> = p.band_keys(&s).collect();
        assert_eq!(keys.len(), 18);
        assert_eq!(keys, p.band_keys(&s).collect::<Vec<_>>());
        let mut t = s.clone();
        t[0] = 999;
        let other: Vec<u64> = p.band_keys(&t).collect();
        assert_ne!(keys[0], other[0]);
        assert_eq!(keys[1..], other[1..]);
    }
}
