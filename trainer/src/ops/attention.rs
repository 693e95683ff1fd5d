//! Fused grouped-query attention for the CPU: the differentiable q/k/v
//! layout step and the reference composition of causal attention (decoding
//! over the paged KV cache is [`super::paged_attention`]):
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
//!
//! The masking follows the composition in the model ([`causal_attention_reference`]):
//! a hidden key gets probability 0, and a query that can see no key at all (a
//! padding position) attends uniformly to every key, as softmax does with a
//! finite mask value. The `*_reference` functions are compositions of candle
//! ops that the tests hold the fused ops to; the public functions fall back to
//! them off the CPU or for other dtypes.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_slice, fused, rope_reference, softmax_reference, PARALLEL_MIN};

/// Additive mask of the reference composition, as in the model.
const MASKED: f32 = -1e30;

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
