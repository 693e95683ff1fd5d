//! Fused grouped-query attention for the CPU: the differentiable q/k/v
//! layout step, the reference composition of causal attention, and the
//! inference-only attention over a KV cache:
//!
//! - [`qkv_heads`] takes the output of the stacked q/k/v projection
//!   (`(batch, seq, (heads + 2 kv_heads) * head_dim)`, before its bias) and
//!   in one pass adds the bias, rotates q and k, scales q, and writes the
//!   heads out head-major into one flat tensor: `q (batch, heads, seq, hd)`,
//!   then `k (batch, kv_heads, seq, hd)`, then `v` likewise ([`Heads`] gives
//!   the offsets). The query heads sharing a key/value head are adjacent.
//! - [`causal_attention_reference`] computes `softmax(q k^T + mask) v` from
//!   that flat tensor as a composition of candle ops and returns `(batch *
//!   seq, heads * hd)`, ready for the output projection. The mask is causal
//!   and hides each row's left padding. Training and prefill use the
//!   blockwise [`super::flash_attention`] (`flash.rs`), which the tests hold
//!   to it, forward and backward.
//! - [`cached_attention`] is attention for new tokens over a KV cache, for
//!   decoding: per (row, key/value head) with the `gemm` kernels on
//!   sub-matrices, in blocks of query rows that skip the keys the causal
//!   mask hides; it has no backward pass.
//!
//! The masking follows the composition in the model ([`causal_attention_reference`]):
//! a hidden key gets probability 0, and a query that can see no key at all (a
//! padding position) attends uniformly to every key, as softmax does with a
//! finite mask value. The `*_reference` functions are compositions of candle
//! ops that the tests hold the fused ops to; the public functions fall back to
//! them off the CPU or for other dtypes.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut};
use super::math::exp;
use super::{cpu_slice, fused, rope_reference, softmax_reference, PARALLEL_MIN};

/// Additive mask of the reference composition, as in the model.
const MASKED: f32 = -1e30;

/// Query rows per block of the causal attention: a block multiplies only the
/// keys its last row can see.
const BLOCK: usize = 64;

/// The shape of one layer's attention for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Rows of the batch.
    pub batch: usize,
    /// New positions per row.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (dividing `heads`).
    pub kv_heads: usize,
    /// Width of a head (even).
    pub head_dim: usize,
}

impl Heads {
    /// Query heads per key/value head.
    pub fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Elements of the q part of the flat tensor (it starts at 0).
    pub fn q_len(&self) -> usize {
        self.batch * self.heads * self.seq * self.head_dim
    }

    /// Elements of the k part and of the v part (k starts at `q_len`, v at
    /// `q_len + kv_len`).
    pub fn kv_len(&self) -> usize {
        self.batch * self.kv_heads * self.seq * self.head_dim
    }

    /// Elements of the flat tensor.
    pub fn total(&self) -> usize {
        self.q_len() + 2 * self.kv_len()
    }

    /// Width of the stacked projection: `(heads + 2 kv_heads) * head_dim`.
    pub fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    fn check(&self) -> Result<()> {
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) || !self.head_dim.is_multiple_of(2)
        {
            candle_core::bail!("attention: unsupported head shape {self:?}");
        }
        Ok(())
    }
}

pub(super) fn pads_of(left_pad: Option<&[usize]>, heads: Heads) -> Result<Vec<usize>> {
    match left_pad {
        Some(p) if p.len() != heads.batch => {
            candle_core::bail!(
                "attention: left padding for {} rows, the batch has {}",
                p.len(),
                heads.batch
            )
        }
        Some(p) => Ok(p.to_vec()),
        None => Ok(vec![0; heads.batch]),
    }
}

// ---------------------------------------------------------------- q/k/v heads

/// Bias, rotary embedding and head-major layout of the stacked q/k/v
/// projection `raw` (`(batch, seq, width)` or `(batch * seq, width)`), `bias` (`(width)`); `cos`/`sin`
/// as for [`super::rope`] (`(seq, hd/2)`, or `(batch, seq, hd/2)` for rows
/// with their own positions). q is multiplied by `q_scale` after rotation.
/// Returns the flat tensor described in the module docs; differentiable in
/// `raw` and `bias`.
pub fn qkv_heads(
    raw: &Tensor,
    bias: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: Heads,
    q_scale: f64,
) -> Result<Tensor> {
    heads.check()?;
    let (b, t, w) = (heads.batch, heads.seq, heads.width());
    let half = heads.head_dim / 2;
    let table_ok = |x: &Tensor| x.dims() == [t, half] || x.dims() == [b, t, half];
    let raw_ok = raw.dims() == [b, t, w] || raw.dims() == [b * t, w];
    if !raw_ok || bias.dims() != [w] || !table_ok(cos) || cos.dims() != sin.dims() {
        candle_core::bail!(
            "qkv_heads: raw {:?}, bias {:?}, cos {:?}, sin {:?} do not fit {heads:?}",
            raw.dims(),
            bias.dims(),
            cos.dims(),
            sin.dims()
        );
    }
    if fused(raw) && fused(bias) {
        raw.contiguous()?
            .apply_op2(&bias.contiguous()?, QkvHeads::new(heads, q_scale, cos, sin)?)
    } else {
        qkv_heads_reference(raw, bias, cos, sin, heads, q_scale)
    }
}

/// [`qkv_heads`] as a composition of candle ops.
pub fn qkv_heads_reference(
    raw: &Tensor,
    bias: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: Heads,
    q_scale: f64,
) -> Result<Tensor> {
    let Heads {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: kv,
        head_dim: hd,
    } = heads;
    let x = raw.reshape((b, t, heads.width()))?.broadcast_add(bias)?;
    let q = x.narrow(2, 0, h * hd)?.reshape((b, t, h, hd))?;
    let k = x.narrow(2, h * hd, kv * hd)?.reshape((b, t, kv, hd))?;
    let v = x.narrow(2, (h + kv) * hd, kv * hd)?.reshape((b, t, kv, hd))?;
    let q = (rope_reference(&q.contiguous()?, cos, sin)? * q_scale)?.transpose(1, 2)?;
    let k = rope_reference(&k.contiguous()?, cos, sin)?.transpose(1, 2)?;
    let v = v.transpose(1, 2)?;
    Tensor::cat(&[q.flatten_all()?, k.flatten_all()?, v.flatten_all()?], 0)
}

pub(super) struct QkvHeads {
    heads: Heads,
    q_scale: f32,
    cos: Vec<f32>,
    sin: Vec<f32>,
    per_row: bool,
}

/// Where chunk `c` (one head of one row: `seq * hd` elements) of the flat
/// tensor comes from: (row, column of the head in `raw`, rotated?, scale).
fn chunk_source(op: &QkvHeads, c: usize) -> (usize, usize, bool, f32) {
    let Heads {
        batch: b,
        heads: h,
        kv_heads: kv,
        head_dim: hd,
        ..
    } = op.heads;
    if c < b * h {
        (c / h, (c % h) * hd, true, op.q_scale)
    } else if c < b * (h + kv) {
        let c = c - b * h;
        (c / kv, (h + c % kv) * hd, true, 1.0)
    } else {
        let c = c - b * (h + kv);
        (c / kv, (h + kv + c % kv) * hd, false, 1.0)
    }
}

impl QkvHeads {
    /// The op for `heads`, with the rotary tables of [`qkv_heads`] (checked there).
    pub(super) fn new(heads: Heads, q_scale: f64, cos: &Tensor, sin: &Tensor) -> Result<QkvHeads> {
        Ok(QkvHeads {
            heads,
            q_scale: q_scale as f32,
            cos: cos
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            sin: sin
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            per_row: cos.rank() == 3,
        })
    }

    /// The shape it was made for.
    pub(super) fn heads(&self) -> Heads {
        self.heads
    }

    fn tables(&self, bi: usize, i: usize) -> (&[f32], &[f32]) {
        let half = self.heads.head_dim / 2;
        let row = if self.per_row { bi * self.heads.seq + i } else { i };
        (
            &self.cos[row * half..(row + 1) * half],
            &self.sin[row * half..(row + 1) * half],
        )
    }

    /// The flat q/k/v of `raw` (`(batch * seq, width)`) and `bias`.
    pub(super) fn forward(&self, raw: &[f32], bias: &[f32]) -> Vec<f32> {
        let Heads {
            seq: t, head_dim: hd, ..
        } = self.heads;
        let (w, half) = (self.heads.width(), hd / 2);
        let mut out = vec![0f32; self.heads.total()];
        let body = |(c, chunk): (usize, &mut [f32])| {
            let (bi, col, rotate, scale) = chunk_source(self, c);
            let b = &bias[col..col + hd];
            for (i, dst) in chunk.chunks_mut(hd).enumerate() {
                let src = &raw[(bi * t + i) * w + col..][..hd];
                if rotate {
                    let (cos, sin) = self.tables(bi, i);
                    let (d1, d2) = dst.split_at_mut(half);
                    for j in 0..half {
                        let (x1, x2) = (src[j] + b[j], src[j + half] + b[j + half]);
                        d1[j] = (x1 * cos[j] - x2 * sin[j]) * scale;
                        d2[j] = (x1 * sin[j] + x2 * cos[j]) * scale;
                    }
                } else {
                    for ((d, s), b) in dst.iter_mut().zip(src).zip(b) {
                        *d = s + b;
                    }
                }
            }
        };
        if out.len() >= PARALLEL_MIN {
            out.par_chunks_mut(t * hd).enumerate().for_each(body);
        } else {
            out.chunks_mut(t * hd).enumerate().for_each(body);
        }
        out
    }

    /// `[d_raw | d_bias]` of the gradient of the flat q/k/v: the inverse
    /// rotation laid back out as `(batch * seq, width)`, and its column sums.
    pub(super) fn backward(&self, grad: &[f32]) -> Vec<f32> {
        let Heads {
            batch: b,
            seq: t,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
        } = self.heads;
        let (w, half) = (self.heads.width(), hd / 2);
        let n = b * t * w;
        let mut out = vec![0f32; n + w];
        let (d_raw, d_bias) = out.split_at_mut(n);
        // The flat chunk holding head `hh` of section `s` (0 q, 1 k, 2 v) of row `bi`.
        let chunk = |s: usize, bi: usize, hh: usize| -> usize {
            match s {
                0 => bi * h + hh,
                1 => b * h + bi * kv + hh,
                _ => b * (h + kv) + bi * kv + hh,
            }
        };
        let rows_per_task = (PARALLEL_MIN / w).max(1);
        let task = |(task, rows): (usize, &mut [f32])| -> Vec<f32> {
            let mut sums = vec![0f32; w];
            for (r, dst) in rows.chunks_mut(w).enumerate() {
                let row = task * rows_per_task + r;
                let (bi, i) = (row / t, row % t);
                let (cos, sin) = self.tables(bi, i);
                for (s, count, scale) in [(0, h, self.q_scale), (1, kv, 1.0), (2, kv, 1.0)] {
                    for hh in 0..count {
                        let col = match s {
                            0 => hh * hd,
                            1 => (h + hh) * hd,
                            _ => (h + kv + hh) * hd,
                        };
                        let src = &grad[(chunk(s, bi, hh) * t + i) * hd..][..hd];
                        let d = &mut dst[col..col + hd];
                        if s < 2 {
                            for j in 0..half {
                                let (g1, g2) = (src[j], src[j + half]);
                                d[j] = (g1 * cos[j] + g2 * sin[j]) * scale;
                                d[j + half] = (g2 * cos[j] - g1 * sin[j]) * scale;
                            }
                        } else {
                            d.copy_from_slice(src);
                        }
                    }
                }
                sums.iter_mut().zip(dst.iter()).for_each(|(a, v)| *a += v);
            }
            sums
        };
        let partial: Vec<Vec<f32>> = if n >= PARALLEL_MIN {
            d_raw
                .par_chunks_mut(rows_per_task * w)
                .enumerate()
                .map(task)
                .collect()
        } else {
            d_raw
                .chunks_mut(rows_per_task * w)
                .enumerate()
                .map(task)
                .collect()
        };
        for p in partial {
            d_bias.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        out
    }
}

impl CustomOp2 for QkvHeads {
    fn name(&self) -> &'static str {
        "qkv-heads"
    }

    fn cpu_fwd(
        &self,
        rs: &CpuStorage,
        rl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let raw = cpu_slice(rs, rl, "qkv-heads")?;
        let bias = cpu_slice(bs, bl, "qkv-heads bias")?;
        Ok((
            CpuStorage::F32(self.forward(raw, bias)),
            Shape::from(self.heads.total()),
        ))
    }

    fn bwd(
        &self,
        raw: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = grad
            .contiguous()?
            .apply_op1_no_bwd(&QkvHeadsBackward { op: self })?;
        super::split_grads(&both, raw, bias)
    }
}

/// The gradient of [`QkvHeads`]: `[d_raw | d_bias]`, the inverse rotation of
/// the flat gradient laid back out as `(batch, seq, width)`, and its column sums.
struct QkvHeadsBackward<'a> {
    op: &'a QkvHeads,
}

impl CustomOp1 for QkvHeadsBackward<'_> {
    fn name(&self) -> &'static str {
        "qkv-heads-backward"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let grad = cpu_slice(gs, gl, "qkv-heads-backward")?;
        let out = self.op.backward(grad);
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

// ---------------------------------------------------------------- attention

/// Checks that `qkv` is the flat q/k/v of `heads`, naming `op` if not.
pub(super) fn check_flat(qkv: &Tensor, heads: Heads, op: &str) -> Result<()> {
    heads.check()?;
    if qkv.dims() != [heads.total()] {
        candle_core::bail!("{op}: {:?} is not the flat q/k/v of {heads:?}", qkv.dims());
    }
    Ok(())
}

/// The additive mask of the reference: `(1 or batch, 1, seq, offset + seq)`.
fn mask(heads: Heads, offset: usize, pads: &[usize], device: &candle_core::Device) -> Result<Tensor> {
    let (t, tk) = (heads.seq, offset + heads.seq);
    let mut bias = vec![0f32; pads.len() * t * tk];
    for (r, &pad) in pads.iter().enumerate() {
        for i in 0..t {
            for j in 0..tk {
                if j > offset + i || j < pad {
                    bias[(r * t + i) * tk + j] = MASKED;
                }
            }
        }
    }
    Tensor::from_vec(bias, (pads.len(), 1, t, tk), device)
}

/// Causal attention over the flat q/k/v as a composition of candle ops (the model's attention
/// before the fused version).
pub fn causal_attention_reference(qkv: &Tensor, heads: Heads, left_pad: Option<&[usize]>) -> Result<Tensor> {
    let Heads {
        batch: b,
        seq: t,
        kv_heads: kv,
        head_dim: hd,
        ..
    } = heads;
    let k = qkv
        .narrow(0, heads.q_len(), heads.kv_len())?
        .reshape((b, kv, t, hd))?;
    let v = qkv
        .narrow(0, heads.q_len() + heads.kv_len(), heads.kv_len())?
        .reshape((b, kv, t, hd))?;
    attend_reference(qkv, &k, &v, heads, 0, left_pad)
}

fn attend_reference(
    qkv: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Heads,
    offset: usize,
    left_pad: Option<&[usize]>,
) -> Result<Tensor> {
    let Heads {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: kv,
        head_dim: hd,
    } = heads;
    let tk = k.dim(2)?;
    let q = qkv
        .narrow(0, 0, heads.q_len())?
        .reshape((b, kv, heads.rep() * t, hd))?;
    let scores = q.matmul(&k.t()?)?.reshape((b, h, t, tk))?;
    let pads = pads_of(left_pad, heads)?;
    let scores = scores.broadcast_add(&mask(heads, offset, &pads, qkv.device())?)?;
    let probs = softmax_reference(&scores)?;
    let y = probs
        .reshape((b, kv, heads.rep() * t, tk))?
        .matmul(&v.contiguous()?)?;
    y.reshape((b, h, t, hd))?
        .transpose(1, 2)?
        .reshape((b * t, h * hd))
}

/// Attention of the new tokens (the q part of the flat [`qkv_heads`] output)
/// over the keys and values `k`, `v` (`(batch, kv_heads, offset + seq,
/// head_dim)`, any strides: the cache's views, the new tokens' included),
/// where the new tokens sit at positions `offset..offset + seq`. For
/// decoding; there is no backward pass.
pub fn cached_attention(
    qkv: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Heads,
    offset: usize,
    left_pad: Option<&[usize]>,
) -> Result<Tensor> {
    heads.check()?;
    let want = [heads.batch, heads.kv_heads, offset + heads.seq, heads.head_dim];
    if qkv.dims() != [heads.total()] || k.dims() != want || v.dims() != want {
        candle_core::bail!(
            "cached_attention: q/k/v {:?}, k {:?}, v {:?} do not fit {heads:?} after {offset} positions",
            qkv.dims(),
            k.dims(),
            v.dims()
        );
    }
    let pads = pads_of(left_pad, heads)?;
    if fused(qkv) && fused(k) && fused(v) {
        qkv.contiguous()?
            .apply_op3_no_bwd(k, v, &CachedAttention { heads, offset, pads })
    } else {
        attend_reference(qkv, k, v, heads, offset, left_pad)
    }
}

/// Softmax over the visible keys `lo..hi` of a row of scores, in place,
/// zeroing the rest; with nothing visible, uniform over the row (then
/// `row.len()` must be every key).
fn masked_softmax_row(row: &mut [f32], lo: usize, hi: usize) {
    if lo >= hi {
        let u = 1.0 / row.len() as f32;
        row.iter_mut().for_each(|p| *p = u);
        return;
    }
    row[..lo].iter_mut().for_each(|p| *p = 0.0);
    row[hi..].iter_mut().for_each(|p| *p = 0.0);
    let vis = &mut row[lo..hi];
    let max = vis.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for p in vis.iter_mut() {
        *p = exp(*p - max);
        sum += *p;
    }
    let inv = 1.0 / sum;
    vis.iter_mut().for_each(|p| *p *= inv);
}

/// One (row, key/value head) group's keys or values: `tk` rows of `hd`.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    offset: usize,
    rs: usize,
    cs: usize,
    hd: usize,
}

impl<'a> Rows<'a> {
    /// The first `n` rows as a matrix.
    fn top(self, n: usize) -> Mat<'a> {
        Mat::new(self.data, self.offset, n, self.hd, self.rs, self.cs)
    }
}

/// The geometry shared by forward and backward of one group.
struct Group {
    t: usize,
    tk: usize,
    hd: usize,
    rep: usize,
    offset: usize,
    pad: usize,
}

impl Group {
    /// Blocks of query rows `i0..i1` and the keys `..kend` they multiply.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.t).step_by(BLOCK).map(move |i0| {
            let i1 = (i0 + BLOCK).min(self.t);
            // A block whose first query sees nothing attends uniformly to every key.
            let kend = if self.offset + i0 < self.pad {
                self.tk
            } else {
                (self.offset + i1).min(self.tk)
            };
            (i0, i1, kend)
        })
    }

    /// Visible keys `lo..hi` of query `i`.
    fn visible(&self, i: usize) -> (usize, usize) {
        (self.pad, (self.offset + i + 1).min(self.tk))
    }

    /// Probabilities (`rep * t` rows of `tk` in `p`) and outputs (`rep * t`
    /// rows of `hd` in `o`) of the group's query heads; `q` holds them from
    /// `q_off` on (`rep * t` rows of `hd`).
    fn forward(&self, q: &[f32], q_off: usize, k: Rows<'_>, v: Rows<'_>, p: &mut [f32], o: &mut [f32]) {
        let (t, tk, hd) = (self.t, self.tk, self.hd);
        for r in 0..self.rep {
            for (i0, i1, kend) in self.blocks() {
                let (rows, first) = (i1 - i0, r * t + i0);
                let qb = Mat::rows(q, q_off + first * hd, rows, hd, hd);
                matmul(
                    MatMut::rows(p, first * tk, rows, kend, tk),
                    qb,
                    k.top(kend).t(),
                    false,
                    false,
                );
                for i in i0..i1 {
                    let (lo, hi) = self.visible(i);
                    masked_softmax_row(&mut p[(r * t + i) * tk..][..kend], lo, hi);
                }
                let pb = Mat::rows(p, first * tk, rows, kend, tk);
                matmul(
                    MatMut::rows(o, first * hd, rows, hd, hd),
                    pb,
                    v.top(kend),
                    false,
                    false,
                );
            }
        }
    }
}

/// Copies outputs laid out `(batch, heads, seq, hd)` into `(batch * seq, heads * hd)`.
pub(super) fn heads_to_rows(o: &[f32], heads: Heads) -> Vec<f32> {
    let Heads {
        seq: t,
        heads: h,
        head_dim: hd,
        ..
    } = heads;
    let mut y = vec![0f32; o.len()];
    let body = |(row, dst): (usize, &mut [f32])| {
        let (bi, i) = (row / t, row % t);
        for (head, d) in dst.chunks_mut(hd).enumerate() {
            d.copy_from_slice(&o[((bi * h + head) * t + i) * hd..][..hd]);
        }
    };
    if y.len() >= PARALLEL_MIN {
        y.par_chunks_mut(h * hd).enumerate().for_each(body);
    } else {
        y.chunks_mut(h * hd).enumerate().for_each(body);
    }
    y
}

/// `sum(a * b)` in eight lanes, so the loop vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Attention of one new token's `rep` query heads (`q`, `rep * hd`) over the
/// `tk` keys and values of its group (the last one its own), hiding the
/// first `pad`; the outputs go to `o` (`rep * hd`). Plain loops: for one
/// query row they beat a matrix product's set-up.
fn decode_group(q: &[f32], k: Rows<'_>, v: Rows<'_>, pad: usize, tk: usize, o: &mut [f32]) {
    let hd = k.hd;
    let key = |j: usize| &k.data[k.offset + j * k.rs..][..hd];
    let value = |j: usize| &v.data[v.offset + j * v.rs..][..hd];
    let mut p = vec![0f32; tk];
    for (qr, or) in q.chunks(hd).zip(o.chunks_mut(hd)) {
        // Visible keys pad..tk; none visible: uniform over all of them.
        let lo = if pad < tk { pad } else { 0 };
        if pad < tk {
            for (j, pj) in p.iter_mut().enumerate().skip(lo) {
                *pj = dot(qr, key(j));
            }
        }
        masked_softmax_row(&mut p, pad.min(tk), tk);
        or.iter_mut().for_each(|x| *x = 0.0);
        for (j, &pj) in p.iter().enumerate().skip(lo) {
            for (x, vj) in or.iter_mut().zip(value(j)) {
                *x += pj * vj;
            }
        }
    }
}

/// All of an `f32` CPU storage (for strided views).
fn f32_data(s: &CpuStorage) -> Result<&[f32]> {
    match s {
        CpuStorage::F32(d) => Ok(d.as_slice()),
        _ => candle_core::bail!("cached-attention: expected f32 keys and values"),
    }
}

struct CachedAttention {
    heads: Heads,
    offset: usize,
    pads: Vec<usize>,
}

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "cached-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let qkv = cpu_slice(qs, ql, "cached-attention")?;
        let (kd, kst, k0) = (f32_data(ks)?, kl.stride(), kl.start_offset());
        let (vd, vst, v0) = (f32_data(vs)?, vl.stride(), vl.start_offset());
        let Heads {
            batch: b,
            seq: t,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
        } = self.heads;
        let rep = self.heads.rep();
        let tk = self.offset + t;
        let mut o = vec![0f32; self.heads.q_len()];
        if t == 1 && kst[3] == 1 && vst[3] == 1 {
            // One new token per row: `o` is already `(batch, heads * hd)`.
            let body = |(g, o): (usize, &mut [f32])| {
                let (bi, kvh) = (g / kv, g % kv);
                let k = Rows {
                    data: kd,
                    offset: k0 + bi * kst[0] + kvh * kst[1],
                    rs: kst[2],
                    cs: 1,
                    hd,
                };
                let v = Rows {
                    data: vd,
                    offset: v0 + bi * vst[0] + kvh * vst[1],
                    rs: vst[2],
                    cs: 1,
                    hd,
                };
                decode_group(&qkv[g * rep * hd..][..rep * hd], k, v, self.pads[bi], tk, o);
            };
            if b * h * tk * hd >= PARALLEL_MIN {
                o.par_chunks_mut(rep * hd).enumerate().for_each(body);
            } else {
                o.chunks_mut(rep * hd).enumerate().for_each(body);
            }
            return Ok((CpuStorage::F32(o), Shape::from((b, h * hd))));
        }
        let body = |(g, o): (usize, &mut [f32])| {
            let (bi, kvh) = (g / kv, g % kv);
            let k = Rows {
                data: kd,
                offset: k0 + bi * kst[0] + kvh * kst[1],
                rs: kst[2],
                cs: kst[3],
                hd,
            };
            let v = Rows {
                data: vd,
                offset: v0 + bi * vst[0] + kvh * vst[1],
                rs: vst[2],
                cs: vst[3],
                hd,
            };
            let grp = Group {
                t,
                tk,
                hd,
                rep,
                offset: self.offset,
                pad: self.pads[bi],
            };
            let mut p = vec![0f32; rep * t * tk];
            grp.forward(qkv, g * rep * t * hd, k, v, &mut p, o);
        };
        if b * h * t * tk * hd >= PARALLEL_MIN {
            o.par_chunks_mut(rep * t * hd).enumerate().for_each(body);
        } else {
            o.chunks_mut(rep * t * hd).enumerate().for_each(body);
        }
        Ok((
            CpuStorage::F32(heads_to_rows(&o, self.heads)),
            Shape::from((b * t, h * hd)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::{Device, Var};

    fn heads(batch: usize, seq: usize, h: usize, kv: usize) -> Heads {
        Heads {
            batch,
            seq,
            heads: h,
            kv_heads: kv,
            head_dim: 8,
        }
    }

    #[test]
    fn qkv_heads_matches_the_reference_forward_and_backward() -> Result<()> {
        for (hs, per_row) in [
            (heads(2, 5, 4, 2), false),
            (heads(3, 4, 2, 2), true),
            (heads(2, 70, 4, 4), false),
        ] {
            let raw = Var::from_tensor(&randn(&[hs.batch, hs.seq, hs.width()], 1))?;
            let bias = Var::from_tensor(&randn(&[hs.width()], 2))?;
            let table = if per_row {
                vec![hs.batch, hs.seq, 4]
            } else {
                vec![hs.seq, 4]
            };
            let (cos, sin) = (randn(&table, 3), randn(&table, 4));
            let g = randn(&[hs.total()], 5);
            let a = qkv_heads(&raw, &bias, &cos, &sin, hs, 0.3)?;
            let b = qkv_heads_reference(&raw, &bias, &cos, &sin, hs, 0.3)?;
            assert!(max_diff(&a, &b) < 1e-5);
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            assert!(max_diff(ga.get(&raw).unwrap(), gb.get(&raw).unwrap()) < 1e-5);
            assert!(max_diff(ga.get(&bias).unwrap(), gb.get(&bias).unwrap()) < 1e-4);
        }
        Ok(())
    }

    #[test]
    fn cached_attention_matches_the_reference_on_strided_caches() -> Result<()> {
        // Several new tokens (the blocked path) and one (the decoding loop).
        for t in [3usize, 1] {
            let hs = heads(2, t, 4, 2);
            let offset = 5;
            let qkv = randn(&[hs.total()], 9);
            // Keys and values as narrow views of a larger cache.
            let cache_k = randn(&[2, 2, 12, 8], 10);
            let cache_v = randn(&[2, 2, 12, 8], 11);
            let (k, v) = (
                cache_k.narrow(2, 0, offset + t)?,
                cache_v.narrow(2, 0, offset + t)?,
            );
            for pads in [None, Some(vec![2usize, 0]), Some(vec![7, 1])] {
                let a = cached_attention(&qkv, &k, &v, hs, offset, pads.as_deref())?;
                let b = attend_reference(&qkv, &k, &v, hs, offset, pads.as_deref())?;
                assert!(max_diff(&a, &b) < 1e-5, "{t} {pads:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_named() {
        let hs = heads(1, 2, 2, 2);
        let err = crate::ops::flash_attention(
            &Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
            hs,
            None,
        );
        assert!(err.unwrap_err().to_string().contains("flat q/k/v"));
    }
}
