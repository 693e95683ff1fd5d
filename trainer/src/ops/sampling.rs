//! Drawing the next token from rows of logits on the logits' device, with
//! only the chosen ids, their log-probabilities and the entropies coming
//! back to the host.
//!
//! For a row of logits `l` and a temperature `T` (1 for greedy decoding),
//! with `z = (l - max l) / T` and `p = softmax(z)`:
//!
//! ```text
//! logprob = z_id - log sum_j exp(z_j)     (of the drawn id, untruncated)
//! entropy = log sum_j exp(z_j) - sum_j p_j z_j
//! ```
//!
//! Greedy decoding (`T = 0`) takes the first largest logit. Otherwise top-k
//! keeps the `k` most likely tokens and top-p the smallest set of most
//! likely tokens whose probability reaches `p` (within the top-k when both
//! are set), in the order probability descending then id ascending; the draw
//! walks the kept tokens in that order, adding their probabilities until the
//! sum passes `u * (their total)` for the row's uniform `u` in `[0, 1)`.
//! Without top-k and top-p the walk is over all ids in id order. Top-k and
//! top-p only restrict what can be drawn: the log-probability and entropy are
//! those of the untruncated distribution, as the policy gradient uses.
//!
//! [`sample_tokens`] runs a fused single-pass op on the CPU (rows in
//! parallel; no sort of the vocabulary: top-k selects, top-p finds a
//! threshold with a histogram of the probabilities and sorts only the tokens
//! above it) and [`sample_tokens_reference`] elsewhere: candle ops on any
//! device, where top-k and top-p thresholds come from bisection and the draw
//! walks the kept tokens in id order (the same distribution, another map
//! from `u` to a token). The fused op is the specification the rollout
//! engine is held to (`tests/fixtures/sampler/`).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::math::{exp, max_of};
use super::PARALLEL_MIN;

/// How the next token is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Draw only from the `top_k` most likely tokens (0 disables it).
    pub top_k: usize,
    /// Draw from the smallest set of most likely tokens whose probability
    /// reaches `top_p` (1 disables it).
    pub top_p: f64,
}

impl Draw {
    fn greedy(&self) -> bool {
        self.temperature == 0.0
    }

    fn filtered(&self, vocab: usize) -> bool {
        (self.top_k > 0 && self.top_k < vocab) || self.top_p < 1.0
    }

    /// The temperature the statistics are computed at.
    fn t(&self) -> f32 {
        if self.greedy() {
            1.0
        } else {
            self.temperature as f32
        }
    }
}

/// A drawn token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// The token id.
    pub id: u32,
    /// Its log-probability under `softmax(logits / T)`.
    pub logprob: f32,
    /// The entropy (nats) of that distribution.
    pub entropy: f32,
}

/// Largest vocabulary the op handles (ids travel as exact `f32` values).
const MAX_VOCAB: usize = 1 << 24;

fn check(logits: &Tensor, rows: &[u32], uniforms: &[f32], draw: Draw) -> Result<usize> {
    let (n, v) = logits.dims2()?;
    if v == 0 || v > MAX_VOCAB {
        candle_core::bail!("sample_tokens: vocabulary of {v} outside 1..={MAX_VOCAB}");
    }
    if rows.len() != uniforms.len() {
        candle_core::bail!(
            "sample_tokens: {} rows but {} uniforms",
            rows.len(),
            uniforms.len()
        );
    }
    if let Some(r) = rows.iter().find(|&&r| r as usize >= n) {
        candle_core::bail!("sample_tokens: row {r} of {n} rows of logits");
    }
    if !(draw.temperature >= 0.0 && draw.temperature.is_finite() && draw.top_p > 0.0 && draw.top_p <= 1.0) {
        candle_core::bail!("sample_tokens: bad {draw:?}");
    }
    Ok(v)
}

/// Draws one token for each entry of `rows` (the index of its row in
/// `logits`, `(n, vocab)`; several draws may share a row) with the matching
/// uniform in `[0, 1)` (unused when greedy). The fused op on the CPU (for
/// any float dtype), [`sample_tokens_reference`] on other devices.
pub fn sample_tokens(logits: &Tensor, rows: &[u32], uniforms: &[f32], draw: Draw) -> Result<Vec<Pick>> {
    check(logits, rows, uniforms, draw)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if !logits.device().is_cpu() {
        return sample_tokens_reference(logits, rows, uniforms, draw);
    }
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let out = logits.apply_op1_no_bwd(&Sample { rows, uniforms, draw })?;
    picks(&out)
}

/// `(n, 3)` rows of `[id, logprob, entropy]` to picks (the one copy to the host).
fn picks(out: &Tensor) -> Result<Vec<Pick>> {
    Ok(out
        .to_vec2::<f32>()?
        .into_iter()
        .map(|r| Pick {
            id: r[0] as u32,
            logprob: r[1],
            entropy: r[2],
        })
        .collect())
}

struct Sample<'a> {
    rows: &'a [u32],
    uniforms: &'a [f32],
    draw: Draw,
}

impl CustomOp1 for Sample<'_> {
    fn name(&self) -> &'static str {
        "sample-tokens"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = super::cpu_slice(storage, layout, "sample-tokens")?;
        let v = layout.dims()[1];
        let one = |s: &mut Scratch, i: usize| {
            let r = self.rows[i] as usize;
            let p = pick(&data[r * v..][..v], self.uniforms[i], self.draw, s);
            [p.id as f32, p.logprob, p.entropy]
        };
        let n = self.rows.len();
        let out: Vec<[f32; 3]> = if n * v >= PARALLEL_MIN {
            (0..n).into_par_iter().map_init(Scratch::default, one).collect()
        } else {
            let mut s = Scratch::default();
            (0..n).map(|i| one(&mut s, i)).collect()
        };
        Ok((CpuStorage::F32(out.concat()), Shape::from((n, 3))))
    }
}

/// Reused buffers of one worker.
#[derive(Default)]
struct Scratch {
    probs: Vec<f32>,
    order: Vec<u32>,
    mass: Vec<f64>,
}

const LANES: usize = 16;

/// Writes `exp((l - max) / t)` into `out` and returns their sum.
fn exp_into(l: &[f32], max: f32, t: f32, out: &mut [f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut o = out.chunks_exact_mut(LANES);
    let mut x = l.chunks_exact(LANES);
    for (oc, xc) in (&mut o).zip(&mut x) {
        for i in 0..LANES {
            let e = exp((xc[i] - max) / t);
            oc[i] = e;
            acc[i] += e;
        }
    }
    for (i, (oc, &xv)) in o.into_remainder().iter_mut().zip(x.remainder()).enumerate() {
        let e = exp((xv - max) / t);
        *oc = e;
        acc[i] += e;
    }
    acc.iter().sum()
}

/// Divides `p` by `sum` in place and returns `sum_j p_j z_j` with
/// `z = (l - max) / t` (a token of probability 0 adds nothing).
fn normalise(p: &mut [f32], l: &[f32], max: f32, t: f32, sum: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut pc = p.chunks_exact_mut(LANES);
    let mut lc = l.chunks_exact(LANES);
    for (pp, ll) in (&mut pc).zip(&mut lc) {
        for i in 0..LANES {
            let q = pp[i] / sum;
            pp[i] = q;
            acc[i] += if q > 0.0 { q * ((ll[i] - max) / t) } else { 0.0 };
        }
    }
    for (i, (q, &lv)) in pc.into_remainder().iter_mut().zip(lc.remainder()).enumerate() {
        *q /= sum;
        acc[i] += if *q > 0.0 { *q * ((lv - max) / t) } else { 0.0 };
    }
    acc.iter().sum()
}

/// The first index of the largest value.
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Walks `(id, weight)` pairs adding weights until the sum passes `target`;
/// the last id when it never does.
fn walk(weights: impl Iterator<Item = (u32, f32)>, target: f32) -> u32 {
    let mut acc = 0f32;
    let mut last = 0;
    for (id, w) in weights {
        acc += w;
        last = id;
        if acc > target {
            return id;
        }
    }
    last
}

/// Draws from one row of logits.
fn pick(l: &[f32], u: f32, draw: Draw, s: &mut Scratch) -> Pick {
    let t = draw.t();
    let max = max_of(l);
    s.probs.resize(l.len(), 0.0);
    let sum = exp_into(l, max, t, &mut s.probs);
    let log_sum = sum.ln();
    let entropy = log_sum - normalise(&mut s.probs, l, max, t, sum);
    let id = if draw.greedy() {
        argmax(l)
    } else if !draw.filtered(l.len()) {
        walk(s.probs.iter().copied().enumerate().map(|(i, p)| (i as u32, p)), u)
    } else {
        filtered(u, draw, s)
    };
    Pick {
        id,
        logprob: (l[id as usize] - max) / t - log_sum,
        entropy: if entropy < 0.0 { 0.0 } else { entropy },
    }
}

/// Probability descending, then id ascending.
fn by_probability(p: &[f32]) -> impl Fn(&u32, &u32) -> std::cmp::Ordering + '_ {
    move |&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b))
}

/// Buckets of the top-p histogram: the top bits of a probability's `f32`
/// representation (monotonic in the value for values >= 0), 16 per octave.
const SHIFT: u32 = 19;
const BUCKETS: usize = (0x3F80_0000 >> SHIFT) + 1;

/// The top-k/top-p draw from `s.probs` (normalised).
fn filtered(u: f32, draw: Draw, s: &mut Scratch) -> u32 {
    let p = &s.probs;
    let v = p.len();
    let order = &mut s.order;
    order.clear();
    // `order` holds a prefix of all ids sorted by probability that is long
    // enough; `complete` says whether it holds every id.
    let mut complete;
    if draw.top_k > 0 && draw.top_k < v {
        order.extend(0..v as u32);
        order.select_nth_unstable_by(draw.top_k - 1, by_probability(p));
        order.truncate(draw.top_k);
        complete = true;
    } else {
        // Top-p alone: the ids above the histogram bucket where the mass
        // (in f64, with a margin for the f32 running sum below) reaches top_p.
        let mass = &mut s.mass;
        mass.clear();
        mass.resize(BUCKETS, 0.0);
        for &q in p {
            mass[(q.to_bits() >> SHIFT) as usize] += q as f64;
        }
        let want = draw.top_p + 1e-4;
        let mut cum = 0.0;
        let mut cut = 0;
        for b in (0..BUCKETS).rev() {
            cum += mass[b];
            if cum >= want {
                cut = b;
                break;
            }
        }
        let cut = (cut as u32) << SHIFT;
        order.extend((0..v as u32).filter(|&i| p[i as usize].to_bits() >= cut));
        complete = order.len() == v;
    }
    order.sort_unstable_by(by_probability(p));
    let mut keep = order.len();
    if draw.top_p < 1.0 {
        loop {
            let mut acc = 0f32;
            let reached = order.iter().position(|&i| {
                acc += p[i as usize];
                acc as f64 >= draw.top_p
            });
            match reached {
                Some(n) => {
                    keep = n + 1;
                    break;
                }
                None if complete => {
                    keep = order.len();
                    break;
                }
                None => {
                    // The margin was not enough: sort everything.
                    order.clear();
                    order.extend(0..v as u32);
                    order.sort_unstable_by(by_probability(p));
                    complete = true;
                }
            }
        }
    }
    let kept = &order[..keep];
    let total: f32 = kept.iter().map(|&i| p[i as usize]).sum();
    walk(kept.iter().map(|&i| (i, p[i as usize])), u * total)
}

// ------------------------------------------------------------ reference

/// Columns per block of the reference draw's two-level running sum.
const BLOCK: usize = 1024;

/// [`sample_tokens`] as candle ops on the logits' device (any float dtype,
/// computed in `f32`); only the `(draws, 3)` result is copied to the host.
pub fn sample_tokens_reference(
    logits: &Tensor,
    rows: &[u32],
    uniforms: &[f32],
    draw: Draw,
) -> Result<Vec<Pick>> {
    let v = check(logits, rows, uniforms, draw)?;
    let n = rows.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let dev = logits.device();
    let idx = Tensor::from_slice(rows, n, dev)?;
    let x = logits.index_select(&idx, 0)?.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?;
    let z = (x.broadcast_sub(&max)? / draw.t() as f64)?;
    let e = z.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    let lse = sum.log()?;
    let p = e.broadcast_div(&sum)?;
    let entropy = (lse.squeeze(1)? - (&p * &z)?.sum(D::Minus1)?)?.relu()?;
    let ids = if draw.greedy() {
        x.argmax(D::Minus1)?
    } else {
        draw_reference(&p, uniforms, draw, v)?
    };
    let logprob = (z.gather(&ids.unsqueeze(1)?, 1)?.squeeze(1)? - lse.squeeze(1)?)?;
    let out = Tensor::stack(&[&ids.to_dtype(DType::F32)?, &logprob, &entropy], 1)?;
    picks(&out)
}

/// The largest `tau` (per row, `(n, 1)`) with `f(tau) >= goal`, for `f`
/// non-increasing, starting from `[0, hi]`, by bisection.
fn bisect(hi: &Tensor, goal: f64, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let mut lo = hi.zeros_like()?;
    let mut hi = hi.clone();
    let goal_t = hi.ones_like()?.affine(goal, 0.0)?;
    // f(hi) >= goal already: hi is the answer.
    let at_hi = f(&hi)?.ge(&goal_t)?;
    for _ in 0..40 {
        let mid = ((&lo + &hi)? * 0.5)?;
        let ok = f(&mid)?.ge(&goal_t)?;
        lo = ok.where_cond(&mid, &lo)?;
        hi = ok.where_cond(&hi, &mid)?;
    }
    at_hi.where_cond(&hi, &lo)
}

/// Token ids `(n)` drawn from probabilities `p` (`(n, v)`).
fn draw_reference(p: &Tensor, uniforms: &[f32], draw: Draw, v: usize) -> Result<Tensor> {
    let n = p.dim(0)?;
    let mut w = p.clone();
    if draw.top_k > 0 && draw.top_k < v {
        let hi = w.max_keepdim(D::Minus1)?;
        let tau = bisect(&hi, draw.top_k as f64, |t| {
            w.broadcast_ge(t)?.to_dtype(DType::F32)?.sum_keepdim(D::Minus1)
        })?;
        w = (&w * w.broadcast_ge(&tau)?.to_dtype(DType::F32)?)?;
    }
    if draw.top_p < 1.0 {
        let hi = w.max_keepdim(D::Minus1)?;
        let tau = bisect(&hi, draw.top_p, |t| {
            (&w * w.broadcast_ge(t)?.to_dtype(DType::F32)?)?.sum_keepdim(D::Minus1)
        })?;
        w = (&w * w.broadcast_ge(&tau)?.to_dtype(DType::F32)?)?;
    }
    let dev = p.device();
    let u = Tensor::from_slice(uniforms, (n, 1), dev)?;
    let target = (w.sum_keepdim(D::Minus1)? * u)?;
    // Two-level running sum: whole blocks, then within the block reached.
    let blocks = v.div_ceil(BLOCK);
    let padded = if blocks * BLOCK > v {
        Tensor::cat(
            &[&w, &Tensor::zeros((n, blocks * BLOCK - v), DType::F32, dev)?],
            1,
        )?
    } else {
        w.clone()
    };
    let w3 = padded.reshape((n, blocks, BLOCK))?;
    let block_sums = w3.sum(D::Minus1)?;
    let ends = block_sums.matmul(&Tensor::triu2(blocks, DType::F32, dev)?)?;
    let passed = ends
        .broadcast_le(&target)?
        .to_dtype(DType::F32)?
        .sum_keepdim(D::Minus1)?;
    let b = passed.minimum((blocks - 1) as f64)?;
    let b_idx = b.to_dtype(DType::U32)?;
    let starts = (&ends - &block_sums)?;
    let rest = (&target - starts.gather(&b_idx, 1)?)?;
    let inside = w3
        .gather(&b_idx.unsqueeze(2)?.broadcast_as((n, 1, BLOCK))?.contiguous()?, 1)?
        .squeeze(1)?;
    let running = inside.matmul(&Tensor::triu2(BLOCK, DType::F32, dev)?)?;
    let j = running
        .broadcast_le(&rest)?
        .to_dtype(DType::F32)?
        .sum_keepdim(D::Minus1)?;
    let id = ((b * BLOCK as f64)? + j)?;
    // Rounding may run past the last kept token: take the last one then.
    let positions = Tensor::arange(0f32, v as f32, dev)?.unsqueeze(0)?;
    let last = w
        .gt(0.0)?
        .to_dtype(DType::F32)?
        .broadcast_mul(&positions)?
        .max_keepdim(D::Minus1)?;
    id.minimum(&last)?.squeeze(1)?.to_dtype(DType::U32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::randn;
    use candle_core::Device;
    use rand::{RngExt, SeedableRng};

    fn softmax(l: &[f32], t: f32) -> Vec<f64> {
        let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&x| ((x as f64 - m) / t as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect()
    }

    fn draws(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random::<f32>()).collect()
    }

    /// The kept set by the definition: sort everything, cut by k then by p.
    fn kept_by_sorting(p: &[f64], draw: Draw) -> Vec<u32> {
        let mut order: Vec<u32> = (0..p.len() as u32).collect();
        order.sort_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
        if draw.top_k > 0 {
            order.truncate(draw.top_k);
        }
        let mut acc = 0.0;
        if let Some(n) = order.iter().position(|&i| {
            acc += p[i as usize];
            acc >= draw.top_p
        }) {
            order.truncate(n + 1);
        }
        order
    }

    #[test]
    fn statistics_are_those_of_the_untruncated_distribution() -> Result<()> {
        let logits = randn(&[5, 300], 1);
        let rows: Vec<u32> = vec![0, 1, 2, 3, 4, 4];
        for draw in [
            Draw {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
            },
            Draw {
                temperature: 0.7,
                top_k: 10,
                top_p: 0.9,
            },
            Draw {
                temperature: 1.6,
                top_k: 0,
                top_p: 0.5,
            },
        ] {
            let got = sample_tokens(&logits, &rows, &draws(6, 2), draw)?;
            let all = logits.to_vec2::<f32>()?;
            for (pick, &r) in got.iter().zip(&rows) {
                let p = softmax(&all[r as usize], draw.t());
                let lp = p[pick.id as usize].ln();
                let h: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
                assert!((pick.logprob as f64 - lp).abs() < 1e-5, "{draw:?}");
                assert!((pick.entropy as f64 - h).abs() < 1e-5, "{draw:?}");
                if draw.greedy() {
                    assert_eq!(pick.id, argmax(&all[r as usize]));
                } else {
                    assert!(kept_by_sorting(&p, draw).contains(&pick.id), "{draw:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn top_p_threshold_search_keeps_what_a_full_sort_keeps() {
        // Flat, peaked and tied distributions; the histogram path against
        // sorting every id, draw for draw.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (case, v) in [(0, 5000usize), (1, 5000), (2, 64), (3, 2000)] {
            let l: Vec<f32> = (0..v)
                .map(|i| match case {
                    0 => rng.random::<f32>() * 0.1,
                    1 => -(i as f32).sqrt() + rng.random::<f32>(),
                    2 => (i % 3) as f32,
                    _ => {
                        if i < 7 {
                            9.0
                        } else {
                            rng.random::<f32>()
                        }
                    }
                })
                .collect();
            for top_p in [0.05, 0.5, 0.9, 0.95, 0.999] {
                let draw = Draw {
                    temperature: 1.0,
                    top_k: 0,
                    top_p,
                };
                let mut s = Scratch::default();
                for u in draws(20, case as u64) {
                    let fast = pick(&l, u, draw, &mut s);
                    // The definition: every id sorted, then cut.
                    let p = s.probs.clone();
                    let mut order: Vec<u32> = (0..v as u32).collect();
                    order.sort_unstable_by(by_probability(&p));
                    let mut acc = 0f32;
                    let keep = order
                        .iter()
                        .position(|&i| {
                            acc += p[i as usize];
                            acc as f64 >= top_p
                        })
                        .map_or(v, |n| n + 1);
                    let total: f32 = order[..keep].iter().map(|&i| p[i as usize]).sum();
                    let want = walk(order[..keep].iter().map(|&i| (i, p[i as usize])), u * total);
                    assert_eq!(fast.id, want, "case {case} top_p {top_p} u {u}");
                }
            }
        }
    }

    #[test]
    fn the_reference_draws_the_same_distribution() -> Result<()> {
        // A small vocabulary, many draws of one row: empirical frequencies of
        // both paths against the truncated distribution.
        let logits = Tensor::new(&[[2.0f32, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]], &Device::Cpu)?;
        let n = 6000;
        let rows = vec![0u32; n];
        let us = draws(n, 9);
        for draw in [
            Draw {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            Draw {
                temperature: 0.8,
                top_k: 4,
                top_p: 1.0,
            },
            Draw {
                temperature: 1.3,
                top_k: 0,
                top_p: 0.8,
            },
            Draw {
                temperature: 1.0,
                top_k: 5,
                top_p: 0.7,
            },
        ] {
            let p = softmax(&logits.to_vec2::<f32>()?[0], draw.t());
            let kept = kept_by_sorting(&p, draw);
            let mass: f64 = kept.iter().map(|&i| p[i as usize]).sum();
            let fused = sample_tokens(&logits, &rows, &us, draw)?;
            let reference = sample_tokens_reference(&logits, &rows, &us, draw)?;
            for picks in [&fused, &reference] {
                let mut freq = [0f64; 8];
                for pk in picks.iter() {
                    assert!(kept.contains(&pk.id), "{draw:?}: drew {}", pk.id);
                    freq[pk.id as usize] += 1.0 / n as f64;
                }
                for &i in &kept {
                    let want = p[i as usize] / mass;
                    assert!(
                        (freq[i as usize] - want).abs() < 0.025,
                        "{draw:?} id {i}: {} vs {want}",
                        freq[i as usize]
                    );
                }
            }
            for (a, b) in fused.iter().zip(&reference) {
                assert!((a.entropy - b.entropy).abs() < 1e-5);
            }
        }
        Ok(())
    }

    #[test]
    fn the_reference_matches_the_fused_op_without_truncation() -> Result<()> {
        // Unfiltered draws walk ids in order on both paths, and greedy takes
        // the argmax: the same ids (over 2500 columns, several blocks), the
        // same statistics.
        let logits = randn(&[6, 2500], 4);
        let rows: Vec<u32> = vec![0, 1, 2, 3, 4, 5, 5, 0];
        let us = draws(rows.len(), 5);
        for temperature in [0.0, 1.0, 0.6] {
            let draw = Draw {
                temperature,
                top_k: 0,
                top_p: 1.0,
            };
            let a = sample_tokens(&logits, &rows, &us, draw)?;
            let b = sample_tokens_reference(&logits, &rows, &us, draw)?;
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.id, y.id, "T {temperature}");
                assert!((x.logprob - y.logprob).abs() < 1e-5 && (x.entropy - y.entropy).abs() < 1e-4);
            }
        }
        Ok(())
    }

    #[test]
    fn bad_arguments_are_named() {
        let logits = randn(&[2, 10], 1);
        let draw = Draw {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        };
        let err = sample_tokens(&logits, &[2], &[0.5], draw).unwrap_err();
        assert!(err.to_string().contains("row 2 of 2"), "{err}");
        let err = sample_tokens(&logits, &[0, 1], &[0.5], draw).unwrap_err();
        assert!(err.to_string().contains("uniforms"), "{err}");
    }
}
