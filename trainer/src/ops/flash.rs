//! Causal self-attention computed blockwise with an online softmax
//! (FlashAttention-2's algorithm, Dao 2023), for training and prefill on the
//! CPU: no `seq x seq` tensor exists, forward or backward.
//!
//! [`flash_attention`] takes the flat q/k/v of [`super::qkv_heads`] (q
//! `(batch, heads, seq, hd)`, already scaled, then k and v `(batch, kv_heads,
//! seq, hd)`; the query heads sharing a key/value head are adjacent, so
//! grouped-query attention reads each key/value head once per query head of
//! its group) and returns `(batch * seq, heads * hd)`, like
//! the composition [`super::causal_attention_reference`], which the tests
//! hold it to.
//!
//! Forward, per (row, query head) and block of `BLOCK_Q` queries: the key
//! blocks of `BLOCK_K` keys the block can see (causal masking by block
//! index: blocks wholly after the last query are never touched, and only
//! blocks crossing the diagonal are masked element by element), each giving
//! `S = Q K^T`, then the running row max `m`, the running sum `l` of
//! `exp(S - m)` and the output accumulator, rescaled when the max grows. The
//! op keeps `lse = m + ln l` per query (`batch * heads * seq` floats) and the
//! output for the backward pass.
//!
//! Backward, per (row, query head): `D = rowsum(dO * O)`, then for each query
//! block and each key block it sees, `P = exp(Q K^T - lse)` recomputed, `dP =
//! dO V^T`, `dS = P (dP - D)`, `dQ += dS K`, `dK += dS^T Q`, `dV += P^T dO`.
//! The query heads of a group write their `dK`, `dV` to their own buffers,
//! summed afterwards, so the heads run in parallel without sharing a write.
//!
//! Left padding: the first `left_pad[row]` keys of a row are hidden. A query
//! that sees no key at all (a padding position) attends uniformly to every
//! key of its row, as the composition does with its finite mask value (all
//! of its scores become the same number), and its gradient follows the
//! composition's too: `P = 1/seq`, `dS = P (dP - D)` flowing back to q and k.
//!
//! Packed rows ([`flash_attention_packed`], for sequence packing): a row
//! holds several sequences one after the other, and a query sees only the
//! keys of its own sequence (from the sequence's start to itself). A query
//! block reads the key blocks from the start of its first query's sequence
//! on; the per-element mask hides the keys of earlier sequences.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::attention::{check_flat, heads_to_rows, pads_of};
use super::gemm::{bf16_products, matmul, matmul_bf16_bits, round_bf16, rounded_bf16, Bf16Mat, Mat, MatMut};
use super::math::{exp, exp_shifted, max_of, sum_of};
use super::{causal_attention_reference, cpu_slice, fused, mkl, Heads};

/// Query rows per block. With keys per block, the fastest of 64x128,
/// 128x256, 128x512 and 256x512 for the 0.5B shape at 4K tokens on oneMKL's
/// bf16 products (fewer, larger products; 64x128 took 13% longer per
/// step). A key block never reaches past a query block's last query.
const BLOCK_Q: usize = 128;

/// Keys per block.
const BLOCK_K: usize = 512;

/// Causal self-attention over the flat q/k/v of [`super::qkv_heads`] (no
/// cache: positions `0..seq`), hiding the first `left_pad[row]` keys of each
/// row, computed blockwise (see the module docs). Returns `(batch * seq,
/// heads * head_dim)`; differentiable. Other devices and dtypes take
/// [`causal_attention_reference`].
pub fn flash_attention(qkv: &Tensor, heads: Heads, left_pad: Option<&[usize]>) -> Result<Tensor> {
    check_flat(qkv, heads, "flash_attention")?;
    if fused(qkv) {
        apply(qkv, Flash::new(heads, left_pad)?)
    } else {
        causal_attention_reference(qkv, heads, left_pad)
    }
}

/// [`flash_attention`] over packed rows: `starts[row]` lists where each of
/// the row's sequences starts (the first at 0, increasing), and a query sees
/// the keys of its own sequence up to itself. Other devices and dtypes take
/// [`packed_attention_reference`].
pub fn flash_attention_packed(qkv: &Tensor, heads: Heads, starts: &[Vec<usize>]) -> Result<Tensor> {
    check_flat(qkv, heads, "flash_attention_packed")?;
    if fused(qkv) {
        apply(qkv, Flash::packed(heads, starts)?)
    } else {
        packed_attention_reference(qkv, heads, starts)
    }
}

fn apply(qkv: &Tensor, core: Flash) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(FlashAttention {
        core,
        lse: Mutex::new(None),
    })
}

/// [`flash_attention_packed`] as a composition of candle ops: the scores,
/// an additive mask hiding other sequences' keys and later keys, softmax.
pub fn packed_attention_reference(qkv: &Tensor, heads: Heads, starts: &[Vec<usize>]) -> Result<Tensor> {
    let Heads {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: kv,
        head_dim: hd,
    } = heads;
    check_flat(qkv, heads, "packed_attention_reference")?;
    check_starts(heads, starts)?;
    let q = qkv
        .narrow(0, 0, heads.q_len())?
        .reshape((b, kv, heads.rep() * t, hd))?;
    let k = qkv
        .narrow(0, heads.q_len(), heads.kv_len())?
        .reshape((b, kv, t, hd))?;
    let v = qkv
        .narrow(0, heads.q_len() + heads.kv_len(), heads.kv_len())?
        .reshape((b, kv, t, hd))?;
    let mut bias = vec![0f32; b * t * t];
    for (r, st) in starts.iter().enumerate() {
        for i in 0..t {
            let lo = segment_start(st, i);
            for j in 0..t {
                if j < lo || j > i {
                    bias[(r * t + i) * t + j] = -1e30;
                }
            }
        }
    }
    let bias = Tensor::from_vec(bias, (b, 1, t, t), qkv.device())?;
    let scores = q.matmul(&k.t()?)?.reshape((b, h, t, t))?.broadcast_add(&bias)?;
    let probs = super::softmax_reference(&scores)?;
    probs
        .reshape((b, kv, heads.rep() * t, t))?
        .matmul(&v)?
        .reshape((b, h, t, hd))?
        .transpose(1, 2)?
        .reshape((b * t, h * hd))
}

/// Checks packed rows' sequence starts: one list per row, each starting at
/// 0, increasing, inside the row.
fn check_starts(heads: Heads, starts: &[Vec<usize>]) -> Result<()> {
    let row_ok = |s: &Vec<usize>| {
        s.first() == Some(&0) && s.windows(2).all(|w| w[0] < w[1]) && s.iter().all(|&x| x < heads.seq.max(1))
    };
    if starts.len() != heads.batch || !starts.iter().all(row_ok) {
        candle_core::bail!(
            "flash_attention_packed: sequence starts {starts:?} do not fit {} rows of {} positions",
            heads.batch,
            heads.seq
        );
    }
    Ok(())
}

/// The start of the sequence holding position `i`, of sorted `starts`
/// (whose first is at most `i`).
fn segment_start(starts: &[usize], i: usize) -> usize {
    starts[starts.partition_point(|&s| s <= i).max(1) - 1]
}

/// Which keys each row's queries may see, besides the causal mask.
#[derive(Debug, Clone, Copy)]
pub enum RowMask<'a> {
    /// The first `left_pad[row]` keys of each row are padding (or none are).
    LeftPad(Option<&'a [usize]>),
    /// Each row packs sequences starting at these positions (see
    /// [`flash_attention_packed`]).
    Packed(&'a [Vec<usize>]),
}

/// Blockwise causal attention of one batch, on slices.
pub(super) struct Flash {
    heads: Heads,
    pads: Vec<usize>,
    /// Per row, where its sequences start (`[pad]` for an unpacked row).
    starts: Vec<Vec<usize>>,
}

/// Where one (row, query head) task reads its q, k and v in the flat tensor.
#[derive(Clone, Copy)]
struct Task<'a> {
    /// Offset of the head's q, `seq x hd`.
    q: usize,
    /// Offset of its group's k, `seq x hd`; v is `kv_len` further on.
    k: usize,
    /// Row of the batch.
    row: usize,
    /// The query head.
    head: usize,
    /// Hidden leading keys of the row.
    pad: usize,
    /// Where the row's sequences start (the first at `pad`).
    starts: &'a [usize],
}

impl Task<'_> {
    /// The first key query `i` (at least `pad`) sees.
    fn lo(&self, i: usize) -> usize {
        segment_start(self.starts, i)
    }
}

impl Flash {
    /// The attention of `heads` with each row's left padding (or none).
    pub(super) fn new(heads: Heads, left_pad: Option<&[usize]>) -> Result<Flash> {
        let pads = pads_of(left_pad, heads)?;
        Ok(Flash {
            heads,
            starts: pads.iter().map(|&p| vec![p.min(heads.seq)]).collect(),
            pads,
        })
    }

    /// The attention of packed rows (see [`flash_attention_packed`]).
    pub(super) fn packed(heads: Heads, starts: &[Vec<usize>]) -> Result<Flash> {
        check_starts(heads, starts)?;
        Ok(Flash {
            heads,
            pads: vec![0; heads.batch],
            starts: starts.to_vec(),
        })
    }

    fn task(&self, index: usize) -> Task<'_> {
        let Heads {
            seq: t,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
            ..
        } = self.heads;
        let (row, head) = (index / h, index % h);
        Task {
            q: index * t * hd,
            k: self.heads.q_len() + (row * kv + head / self.heads.rep()) * t * hd,
            row,
            head,
            pad: self.pads[row],
            starts: &self.starts[row],
        }
    }

    /// The output `(batch * seq, heads * hd)` of the flat q/k/v, and the
    /// log-sum-exp of each query's scores, `(batch, heads, seq)`.
    pub(super) fn forward(&self, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let Heads {
            seq: t, head_dim: hd, ..
        } = self.heads;
        let mut o = vec![0f32; self.heads.q_len()];
        let mut lse = vec![0f32; o.len() / hd];
        // The block products are bf16 ones when the caller's are (the
        // setting is per thread).
        let bf16 = bf16_products() && mkl::available();
        o.par_chunks_mut(t * hd)
            .zip(lse.par_chunks_mut(t))
            .enumerate()
            .for_each(|(i, (o, lse))| {
                let task = self.task(i);
                let bits = bf16.then(|| HeadBits::new(qkv, &self.heads, task, None));
                self.forward_head(qkv, task, bits.as_ref(), o, lse)
            });
        (heads_to_rows(&o, self.heads), lse)
    }

    fn forward_head(&self, qkv: &[f32], task: Task, bits: Option<&HeadBits>, o: &mut [f32], lse: &mut [f32]) {
        let (t, hd) = (self.heads.seq, self.heads.head_dim);
        let v_off = task.k + self.heads.kv_len();
        let pad = task.pad.min(t);
        // Queries before the padding ends see nothing: the mean of every value.
        if pad > 0 {
            let mut mean = vec![0f32; hd];
            for j in 0..t {
                let vj = &qkv[v_off + j * hd..][..hd];
                mean.iter_mut().zip(vj).for_each(|(m, v)| *m += v);
            }
            mean.iter_mut().for_each(|m| *m /= t as f32);
            for (oi, lse) in o.chunks_mut(hd).zip(lse.iter_mut()).take(pad) {
                oi.copy_from_slice(&mean);
                *lse = (t as f32).ln();
            }
        }
        let mut s = vec![0f32; BLOCK_Q * BLOCK_K];
        let mut s_bits = vec![0u16; if bits.is_some() { BLOCK_Q * BLOCK_K } else { 0 }];
        let (mut m, mut l) = (vec![0f32; BLOCK_Q], vec![0f32; BLOCK_Q]);
        for i0 in (pad..t).step_by(BLOCK_Q) {
            let i1 = (i0 + BLOCK_Q).min(t);
            let rows = i1 - i0;
            m[..rows].fill(f32::NEG_INFINITY);
            l[..rows].fill(0.0);
            let q = Mat::rows(qkv, task.q + i0 * hd, rows, hd, hd);
            let k_lo = task.lo(i0);
            for j0 in (k_lo..i1).step_by(BLOCK_K) {
                let j1 = (j0 + BLOCK_K).min(i1);
                let cols = j1 - j0;
                let k = Mat::rows(qkv, task.k + j0 * hd, cols, hd, hd);
                let dst = MatMut::rows(&mut s, 0, rows, cols, cols);
                match bits {
                    Some(b) => matmul_bf16_bits(dst, b.q(i0, rows), b.k(j0, cols).t(), false, false),
                    None => matmul(dst, q, k.t(), false, false),
                }
                for (r, sr) in s.chunks_mut(cols).take(rows).enumerate() {
                    // Keys after query i, or before its sequence, are hidden
                    // (only in blocks on the diagonal or a sequence boundary).
                    let i = i0 + r;
                    let lo = task.lo(i).saturating_sub(j0).min(cols);
                    let hi = (i + 1).saturating_sub(j0).min(cols).max(lo);
                    sr[..lo].fill(f32::NEG_INFINITY);
                    sr[hi..].fill(f32::NEG_INFINITY);
                    let block_max = max_of(&sr[lo..hi]);
                    let new_max = m[r].max(block_max);
                    if new_max == f32::NEG_INFINITY {
                        // Nothing visible yet: all zeros, nothing to rescale.
                        sr.fill(0.0);
                        continue;
                    }
                    let keep = exp(m[r] - new_max);
                    exp_shifted(sr, new_max);
                    l[r] = l[r] * keep + sum_of(sr);
                    m[r] = new_max;
                    if j0 > k_lo {
                        o[i * hd..(i + 1) * hd].iter_mut().for_each(|x| *x *= keep);
                    }
                }
                let v = Mat::rows(qkv, v_off + j0 * hd, cols, hd, hd);
                let dst = MatMut::rows(o, i0 * hd, rows, hd, hd);
                match bits {
                    Some(b) => {
                        round_bf16(&s[..rows * cols], &mut s_bits[..rows * cols]);
                        let p = Bf16Mat::rows(&s_bits, 0, rows, cols, cols);
                        matmul_bf16_bits(dst, p, b.v(j0, cols), j0 > k_lo, false);
                    }
                    None => matmul(dst, Mat::rows(&s, 0, rows, cols, cols), v, j0 > k_lo, false),
                }
            }
            let outs = o[i0 * hd..i1 * hd].chunks_mut(hd).zip(&mut lse[i0..i1]);
            for ((or, lse), (m, l)) in outs.zip(m.iter().zip(&l)) {
                or.iter_mut().for_each(|x| *x /= l);
                *lse = m + l.ln();
            }
        }
    }

    /// The gradient of the flat q/k/v from the output `y` and its gradient
    /// `dy` (both `(batch * seq, heads * hd)`) and the forward's `lse`.
    pub(super) fn backward(&self, qkv: &[f32], y: &[f32], lse: &[f32], dy: &[f32]) -> Vec<f32> {
        let Heads {
            batch: b,
            seq: t,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
        } = self.heads;
        let rep = self.heads.rep();
        let mut out = vec![0f32; self.heads.total()];
        // Per query head: dK and dV of its group, summed over the group below.
        let mut dkv = vec![0f32; 2 * b * h * t * hd];
        {
            let (dq, _) = out.split_at_mut(self.heads.q_len());
            let bf16 = bf16_products() && mkl::available();
            dq.par_chunks_mut(t * hd)
                .zip(dkv.par_chunks_mut(2 * t * hd))
                .enumerate()
                .for_each(|(i, (dq, dkv))| {
                    let (dk, dv) = dkv.split_at_mut(t * hd);
                    let task = self.task(i);
                    let bits = bf16.then(|| HeadBits::new(qkv, &self.heads, task, Some(dy)));
                    let lse = &lse[i * t..(i + 1) * t];
                    self.backward_head(qkv, y, lse, dy, task, bits.as_ref(), dq, dk, dv);
                });
        }
        let (_, dkv_out) = out.split_at_mut(self.heads.q_len());
        let (dk_out, dv_out) = dkv_out.split_at_mut(self.heads.kv_len());
        for (which, dst) in [dk_out, dv_out].into_iter().enumerate() {
            dst.par_chunks_mut(t * hd).enumerate().for_each(|(g, dst)| {
                let (row, kvh) = (g / kv, g % kv);
                for r in 0..rep {
                    let head = row * h + kvh * rep + r;
                    let src = &dkv[(2 * head + which) * t * hd..][..t * hd];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            });
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_head(
        &self,
        qkv: &[f32],
        y: &[f32],
        lse: &[f32],
        dy: &[f32],
        task: Task,
        bits: Option<&HeadBits>,
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        let Heads {
            seq: t,
            heads: h,
            head_dim: hd,
            ..
        } = self.heads;
        let width = h * hd;
        let v_off = task.k + self.heads.kv_len();
        let pad = task.pad.min(t);
        let row_of = |i: usize| (task.row * t + i) * width + task.head * hd;
        // D_i = dO_i . O_i
        let d: Vec<f32> = (0..t)
            .map(|i| {
                let (a, b) = (&dy[row_of(i)..][..hd], &y[row_of(i)..][..hd]);
                a.iter().zip(b).map(|(x, y)| x * y).sum()
            })
            .collect();
        let mut p = vec![0f32; BLOCK_Q * BLOCK_K];
        let mut ds = vec![0f32; BLOCK_Q * BLOCK_K];
        let n_bits = if bits.is_some() { BLOCK_Q * BLOCK_K } else { 0 };
        let (mut p_bits, mut ds_bits) = (vec![0u16; n_bits], vec![0u16; n_bits]);
        // Padding queries (0..pad) see every key uniformly; the others see
        // keys pad..=i.
        let blocks = (0..pad)
            .step_by(BLOCK_Q)
            .map(|i0| (i0, (i0 + BLOCK_Q).min(pad), true))
            .chain(
                (pad..t)
                    .step_by(BLOCK_Q)
                    .map(|i0| (i0, (i0 + BLOCK_Q).min(t), false)),
            );
        for (i0, i1, uniform) in blocks {
            let rows = i1 - i0;
            let q = Mat::rows(qkv, task.q + i0 * hd, rows, hd, hd);
            let d_o = Mat::rows(dy, row_of(i0), rows, hd, width);
            let (k_lo, k_hi) = if uniform { (0, t) } else { (task.lo(i0), i1) };
            for j0 in (k_lo..k_hi).step_by(BLOCK_K) {
                let j1 = (j0 + BLOCK_K).min(k_hi);
                let cols = j1 - j0;
                let k = Mat::rows(qkv, task.k + j0 * hd, cols, hd, hd);
                let v = Mat::rows(qkv, v_off + j0 * hd, cols, hd, hd);
                if uniform {
                    p[..rows * cols].fill(1.0 / t as f32);
                } else {
                    let dst = MatMut::rows(&mut p, 0, rows, cols, cols);
                    match bits {
                        Some(b) => matmul_bf16_bits(dst, b.q(i0, rows), b.k(j0, cols).t(), false, false),
                        None => matmul(dst, q, k.t(), false, false),
                    }
                    for (r, pr) in p.chunks_mut(cols).take(rows).enumerate() {
                        let i = i0 + r;
                        let lo = task.lo(i).saturating_sub(j0).min(cols);
                        let hi = (i + 1).saturating_sub(j0).min(cols).max(lo);
                        let l = lse[i];
                        pr[..lo].fill(0.0);
                        exp_shifted(&mut pr[lo..hi], l);
                        pr[hi..].fill(0.0);
                    }
                }
                // dP = dO V^T, then dS = P (dP - D).
                let dst = MatMut::rows(&mut ds, 0, rows, cols, cols);
                match bits {
                    Some(b) => matmul_bf16_bits(dst, b.d_o(i0, rows), b.v(j0, cols).t(), false, false),
                    None => matmul(dst, d_o, v.t(), false, false),
                }
                for (r, (dsr, pr)) in ds.chunks_mut(cols).zip(p.chunks(cols)).take(rows).enumerate() {
                    let di = d[i0 + r];
                    dsr.iter_mut().zip(pr).for_each(|(x, p)| *x = p * (*x - di));
                }
                let dq = MatMut::rows(dq, i0 * hd, rows, hd, hd);
                let dk_block = MatMut::rows(dk, j0 * hd, cols, hd, hd);
                let dv_block = MatMut::rows(dv, j0 * hd, cols, hd, hd);
                match bits {
                    Some(b) => {
                        let n = rows * cols;
                        round_bf16(&p[..n], &mut p_bits[..n]);
                        round_bf16(&ds[..n], &mut ds_bits[..n]);
                        let (pm, dsm) = (
                            Bf16Mat::rows(&p_bits, 0, rows, cols, cols),
                            Bf16Mat::rows(&ds_bits, 0, rows, cols, cols),
                        );
                        matmul_bf16_bits(dq, dsm, b.k(j0, cols), true, false);
                        matmul_bf16_bits(dk_block, dsm.t(), b.q(i0, rows), true, false);
                        matmul_bf16_bits(dv_block, pm.t(), b.d_o(i0, rows), true, false);
                    }
                    None => {
                        let (pm, dsm) = (
                            Mat::rows(&p, 0, rows, cols, cols),
                            Mat::rows(&ds, 0, rows, cols, cols),
                        );
                        matmul(dq, dsm, k, true, false);
                        matmul(dk_block, dsm.t(), q, true, false);
                        matmul(dv_block, pm.t(), d_o, true, false);
                    }
                }
            }
        }
    }
}

/// One (row, query head) task's q, k and v, and in the backward pass the
/// output's gradient, rounded to bf16 once (`seq x hd` each, row-major),
/// for a bf16 model's block products; the probabilities and their
/// gradients are rounded per block.
struct HeadBits {
    q: Vec<u16>,
    k: Vec<u16>,
    v: Vec<u16>,
    d_o: Vec<u16>,
    hd: usize,
}

impl HeadBits {
    fn new(qkv: &[f32], heads: &Heads, task: Task, dy: Option<&[f32]>) -> HeadBits {
        let (t, hd) = (heads.seq, heads.head_dim);
        let v_off = task.k + heads.kv_len();
        let d_o = match dy {
            Some(dy) => {
                // dO of this head: `hd` columns of each of the row's `seq` rows.
                let width = heads.heads * hd;
                let mut out = vec![0u16; t * hd];
                for (i, dst) in out.chunks_mut(hd).enumerate() {
                    let at = (task.row * t + i) * width + task.head * hd;
                    round_bf16(&dy[at..at + hd], dst);
                }
                out
            }
            None => Vec::new(),
        };
        HeadBits {
            q: rounded_bf16(&qkv[task.q..task.q + t * hd]),
            k: rounded_bf16(&qkv[task.k..task.k + t * hd]),
            v: rounded_bf16(&qkv[v_off..v_off + t * hd]),
            d_o,
            hd,
        }
    }

    fn q(&self, i0: usize, rows: usize) -> Bf16Mat<'_> {
        Bf16Mat::rows(&self.q, i0 * self.hd, rows, self.hd, self.hd)
    }

    fn k(&self, j0: usize, cols: usize) -> Bf16Mat<'_> {
        Bf16Mat::rows(&self.k, j0 * self.hd, cols, self.hd, self.hd)
    }

    fn v(&self, j0: usize, cols: usize) -> Bf16Mat<'_> {
        Bf16Mat::rows(&self.v, j0 * self.hd, cols, self.hd, self.hd)
    }

    fn d_o(&self, i0: usize, rows: usize) -> Bf16Mat<'_> {
        Bf16Mat::rows(&self.d_o, i0 * self.hd, rows, self.hd, self.hd)
    }
}

struct FlashAttention {
    core: Flash,
    /// The forward pass's log-sum-exp per query, for the backward pass.
    lse: Mutex<Option<Vec<f32>>>,
}

impl CustomOp1 for FlashAttention {
    fn name(&self) -> &'static str {
        "flash-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = cpu_slice(storage, layout, "flash-attention")?;
        let (y, lse) = self.core.forward(qkv);
        *self.lse.lock().expect("attention statistics poisoned") = Some(lse);
        let Heads {
            batch: b,
            seq: t,
            heads: h,
            head_dim: hd,
            ..
        } = self.core.heads;
        Ok((CpuStorage::F32(y), Shape::from((b * t, h * hd))))
    }

    fn bwd(&self, qkv: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let lse = self.lse.lock().expect("attention statistics poisoned");
        let Some(lse) = lse.as_ref() else {
            candle_core::bail!("flash-attention: backward before forward");
        };
        let back = FlashBackward { op: &self.core, lse };
        let yg = Tensor::cat(&[&res.detach().flatten_all()?, &grad.flatten_all()?], 0)?;
        Ok(Some(qkv.apply_op2_no_bwd(&yg, &back)?))
    }
}

/// `(qkv, [output | its gradient])` → gradient of the flat q/k/v.
struct FlashBackward<'a> {
    op: &'a Flash,
    lse: &'a [f32],
}

impl CustomOp2 for FlashBackward<'_> {
    fn name(&self) -> &'static str {
        "flash-attention-backward"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let qkv = cpu_slice(qs, ql, "flash-attention-backward")?;
        let yg = cpu_slice(gs, gl, "flash-attention-backward")?;
        let (y, dy) = yg.split_at(yg.len() / 2);
        let out = self.op.backward(qkv, y, self.lse, dy);
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::Bf16Products;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::Var;

    fn heads(batch: usize, seq: usize, h: usize, kv: usize, hd: usize) -> Heads {
        Heads {
            batch,
            seq,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
        }
    }

    #[test]
    fn bf16_block_products_stay_within_bf16s_rounding_of_the_composition() -> Result<()> {
        // A bf16 model's attention (products on oneMKL's bf16 kernels where
        // it is available): q, k, v, dO rounded once per head, P and dS per
        // block. Padding, grouped heads, ragged blocks.
        let cases = [
            (heads(2, 300, 4, 1, 16), Some(vec![70, 0])),
            (heads(1, 257, 2, 2, 64), None),
        ];
        for (hs, pads) in cases {
            // Scores of a few units, as a trained model's scaled q . k are.
            let qkv = Var::from_tensor(&(randn(&[hs.total()], 7) * 0.5)?)?;
            let g = randn(&[hs.batch * hs.seq, hs.heads * hs.head_dim], 8);
            let f32_run = flash_attention(&qkv, hs, pads.as_deref())?;
            let (a, ga) = {
                let _bf16 = Bf16Products::set(true);
                let a = flash_attention(&qkv, hs, pads.as_deref())?;
                let ga = (&a * &g)?.sum_all()?.backward()?;
                (a, ga)
            };
            if mkl::available() {
                assert!(max_diff(&a, &f32_run) > 0.0, "the bf16 products were not used");
            }
            let b = causal_attention_reference(&qkv, hs, pads.as_deref())?;
            let d = max_diff(&a, &b);
            assert!(d < 1e-2, "forward {hs:?}: {d}");
            let gb = (&b * &g)?.sum_all()?.backward()?;
            let (ga, gb) = (ga.get(&qkv).unwrap(), gb.get(&qkv).unwrap());
            let scale = gb.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
            let d = max_diff(ga, gb) / scale;
            assert!(d < 1e-2, "backward {hs:?}: {d}");
        }
        Ok(())
    }

    #[test]
    fn flash_attention_matches_the_composition_forward_and_backward() -> Result<()> {
        // Grouped and plain heads; left padding, with padding rows that fill
        // whole blocks, end inside one, or cover a whole row; lengths that
        // are and are not multiples of the blocks; scores large enough that
        // an online max that never rescaled would overflow.
        let cases: [(Heads, Option<Vec<usize>>, f64); 7] = [
            (heads(2, 6, 4, 2, 8), None, 1.0),
            (heads(3, 7, 4, 4, 8), Some(vec![0, 2, 7]), 1.0),
            (heads(2, 300, 4, 1, 16), Some(vec![70, 0]), 1.0),
            (heads(1, 257, 2, 2, 8), None, 30.0),
            (heads(2, 200, 6, 2, 8), Some(vec![128, 199]), 3.0),
            (heads(1, 129, 2, 1, 64), Some(vec![64]), 1.0),
            // Several key blocks per query block, padding ending inside one.
            (heads(1, 2 * BLOCK_K + 77, 2, 1, 8), Some(vec![BLOCK_Q + 5]), 10.0),
        ];
        for (hs, pads, scale) in cases {
            let qkv = Var::from_tensor(&(randn(&[hs.total()], 7) * scale)?)?;
            let g = randn(&[hs.batch * hs.seq, hs.heads * hs.head_dim], 8);
            let a = flash_attention(&qkv, hs, pads.as_deref())?;
            let b = causal_attention_reference(&qkv, hs, pads.as_deref())?;
            let d = max_diff(&a, &b);
            assert!(d < 2e-5, "forward {hs:?} {pads:?}: {d}");
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            let (ga, gb) = (ga.get(&qkv).unwrap(), gb.get(&qkv).unwrap());
            let scale = gb.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
            let d = max_diff(ga, gb) / scale;
            assert!(d < 1e-4, "backward {hs:?} {pads:?}: {d}");
        }
        Ok(())
    }

    #[test]
    fn packed_rows_match_the_composition_forward_and_backward() -> Result<()> {
        // Sequences shorter than a block, crossing block boundaries, one
        // per row, and a row of one-token sequences.
        let cases: [(Heads, Vec<Vec<usize>>); 3] = [
            (heads(2, 9, 4, 2, 8), vec![vec![0, 3, 4], vec![0]]),
            (
                heads(2, 300, 2, 1, 16),
                vec![vec![0, 50, 64, 190, 299], vec![0, 128, 129]],
            ),
            (heads(1, 6, 2, 2, 8), vec![vec![0, 1, 2, 3, 4, 5]]),
        ];
        for (hs, starts) in cases {
            let qkv = Var::from_tensor(&(randn(&[hs.total()], 11) * 2.0)?)?;
            let g = randn(&[hs.batch * hs.seq, hs.heads * hs.head_dim], 12);
            let a = flash_attention_packed(&qkv, hs, &starts)?;
            let b = packed_attention_reference(&qkv, hs, &starts)?;
            let d = max_diff(&a, &b);
            assert!(d < 2e-5, "forward {hs:?}: {d}");
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            let d = max_diff(ga.get(&qkv).unwrap(), gb.get(&qkv).unwrap());
            assert!(d < 1e-4, "backward {hs:?}: {d}");
        }
        // A packed row of one sequence is an unpadded row.
        let hs = heads(1, 70, 2, 1, 8);
        let qkv = randn(&[hs.total()], 13);
        let d = max_diff(
            &flash_attention_packed(&qkv, hs, &[vec![0]])?,
            &flash_attention(&qkv, hs, None)?,
        );
        assert_eq!(d, 0.0);
        assert!(flash_attention_packed(&qkv, hs, &[vec![1]]).is_err());
        Ok(())
    }

    #[test]
    fn no_tensor_grows_with_the_square_of_the_sequence() -> Result<()> {
        // What the op keeps for the backward pass: one float per query head
        // and position, not seq x seq probabilities.
        let hs = heads(1, 512, 2, 1, 8);
        let core = Flash::new(hs, None)?;
        let qkv = randn(&[hs.total()], 3).to_vec1::<f32>()?;
        let (y, lse) = core.forward(&qkv);
        assert_eq!(y.len(), 512 * 2 * 8);
        assert_eq!(lse.len(), 2 * 512);
        Ok(())
    }
}
