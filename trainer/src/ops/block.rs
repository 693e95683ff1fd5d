//! The two halves of a decoder layer, each as one op with a hand-written
//! backward pass, for training on the CPU.
//!
//! Composed of smaller ops, a layer leaves a dozen activations in candle's
//! graph, and candle's backward pass gives each of them a gradient it first
//! fills with zeros and then adds into: two extra passes over every
//! activation, ~100 MB per layer for the benchmark's batch. Here the
//! intermediate activations live inside the op: the backward pass reads them
//! from the forward pass and hands candle only the gradients of the inputs.
//!
//! - [`attention_block`]: `h → o_proj(attention(qkv_heads(h @ w_qkv^T + b)))`,
//!   i.e. [`super::linear`], [`super::qkv_heads`], the blockwise
//!   [`super::flash_attention`] (no `seq x seq` tensor) and [`super::linear`]
//!   again;
//! - [`mlp_block`]: `h → swiglu(h @ w_gate_up^T) @ w_down^T`.
//!
//! The `*_reference` functions are those compositions.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::attention::QkvHeads;
use super::flash::{packed_attention_reference, Flash, RowMask};
use super::gemm::{
    bf16_products, matmul, matmul_bf16_bits, rounded_bf16, Bf16Mat, Bf16Products, Mat, MatMut,
};
use super::swiglu;
use super::{
    causal_attention_reference, cpu_slice, fused, linear_reference, mkl, qkv_heads_reference,
    swiglu_reference, Heads,
};

/// Runs `f` on the contiguous `f32` data of a CPU tensor.
pub(super) fn with_data<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(cpu_slice(cpu, layout, what)?),
        _ => candle_core::bail!("{what}: expected a CPU tensor"),
    }
}

// ---------------------------------------------------------------- attention

/// The attention half of a layer for rows `h` (`(batch * seq, hidden)`), no
/// cache. `w` stacks the q, k, v and output projections (`(width + hidden,
/// hidden)` with `width = (heads + 2 kv_heads) * head_dim`; the output
/// projection's input width `heads * head_dim` must equal `hidden`), `bias`
/// the q/k/v biases (`(width)`); `cos`, `sin`, `q_scale` and `left_pad` as for
/// [`super::qkv_heads`] and [`super::flash_attention`]. Returns `(batch *
/// seq, hidden)`; differentiable in `h`, `w` and `bias`.
#[allow(clippy::too_many_arguments)]
pub fn attention_block(
    h: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: Heads,
    q_scale: f64,
    left_pad: Option<&[usize]>,
) -> Result<Tensor> {
    attention_block_masked(
        h,
        w,
        bias,
        cos,
        sin,
        heads,
        q_scale,
        RowMask::LeftPad(left_pad),
        None,
    )
}

/// The attention core's output and log-sum-exp from one call of
/// [`attention_block_masked`], handed to the next call given the same memo:
/// selective recomputation for a checkpointed layer, whose backward pass
/// runs the layer again on the same inputs. The fused path fills an empty
/// memo and takes (empties) a full one instead of running the attention
/// core, the quadratic part of the layer, a second time, for `4 (d + heads)`
/// bytes per row kept between the passes. The caller promises the same
/// inputs on both calls ([`super::Recompute`]'s contract); a memo of the
/// wrong size is ignored.
#[derive(Clone, Default)]
pub struct AttentionMemo(Arc<Mutex<Option<CoreOut>>>);

/// The attention core's output `y` and log-sum-exp `lse`, shared between
/// an op's saved state and a memo without copies.
#[derive(Clone)]
struct CoreOut {
    y: Arc<Vec<f32>>,
    lse: Arc<Vec<f32>>,
}

impl AttentionMemo {
    fn take(&self, y_len: usize, lse_len: usize) -> Option<CoreOut> {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.take()
            .filter(|c| c.y.len() == y_len && c.lse.len() == lse_len)
    }

    fn put(&self, out: &CoreOut) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(out.clone());
    }

    /// Whether the memo holds a core output now.
    pub fn is_full(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

/// [`attention_block`] with left padding or packed rows ([`RowMask`]), and
/// optionally an [`AttentionMemo`] shared with the recomputation of the
/// same call.
#[allow(clippy::too_many_arguments)]
pub fn attention_block_masked(
    h: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: Heads,
    q_scale: f64,
    mask: RowMask<'_>,
    memo: Option<&AttentionMemo>,
) -> Result<Tensor> {
    let (rows, d) = h.dims2()?;
    let width = heads.width();
    if rows != heads.batch * heads.seq
        || heads.heads * heads.head_dim != d
        || w.dims() != [width + d, d]
        || bias.dims() != [width]
    {
        candle_core::bail!(
            "attention_block: h {:?}, w {:?}, bias {:?} do not fit {heads:?}",
            h.dims(),
            w.dims(),
            bias.dims()
        );
    }
    let half = heads.head_dim / 2;
    if !(cos.dims() == [heads.seq, half] || cos.dims() == [heads.batch, heads.seq, half])
        || cos.dims() != sin.dims()
    {
        candle_core::bail!(
            "attention_block: cos {:?}, sin {:?} do not fit {heads:?}",
            cos.dims(),
            sin.dims()
        );
    }
    if fused(h) && fused(w) && fused(bias) {
        let core = match mask {
            RowMask::LeftPad(left_pad) => Flash::new(heads, left_pad)?,
            RowMask::Packed(starts) => Flash::packed(heads, starts)?,
        };
        let op = AttentionBlock {
            qkv: QkvHeads::new(heads, q_scale, cos, sin)?,
            core,
            saved: Mutex::new(None),
            bf16: bf16_products(),
            memo: memo.cloned(),
        };
        h.contiguous()?
            .apply_op3(&w.contiguous()?, &bias.contiguous()?, op)
    } else {
        attention_block_masked_reference(h, w, bias, cos, sin, heads, q_scale, mask)
    }
}

/// [`attention_block_masked`] as the composition of the smaller ops' references.
#[allow(clippy::too_many_arguments)]
pub fn attention_block_masked_reference(
    h: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: Heads,
    q_scale: f64,
    mask: RowMask<'_>,
) -> Result<Tensor> {
    match mask {
        RowMask::LeftPad(left_pad) => {
            attention_block_reference(h, w, bias, cos, sin, heads, q_scale, left_pad)
        }
        RowMask::Packed(starts) => {
            let (width, d) = (heads.width(), h.dim(1)?);
            let raw = linear_reference(h, &w.narrow(0, 0, width)?)?;
            let qkv = qkv_heads_reference(&raw, bias, cos, sin, heads, q_scale)?;
            let y = packed_attention_reference(&qkv, heads, starts)?;
            linear_reference(&y, &w.narrow(0, width, d)?)
        }
    }
}

/// [`attention_block`] as the composition of the smaller ops' references.
#[allow(clippy::too_many_arguments)]
pub fn attention_block_reference(
    h: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: Heads,
    q_scale: f64,
    left_pad: Option<&[usize]>,
) -> Result<Tensor> {
    let (width, d) = (heads.width(), h.dim(1)?);
    let raw = linear_reference(h, &w.narrow(0, 0, width)?)?;
    let qkv = qkv_heads_reference(&raw, bias, cos, sin, heads, q_scale)?;
    let y = causal_attention_reference(&qkv, heads, left_pad)?;
    linear_reference(&y, &w.narrow(0, width, d)?)
}

struct AttentionBlock {
    qkv: QkvHeads,
    core: Flash,
    saved: Mutex<Option<AttentionSaved>>,
    /// The projections' products are bf16 ones ([`Bf16Products`]).
    bf16: bool,
    /// Where the core's output goes to, or comes from ([`AttentionMemo`]).
    memo: Option<AttentionMemo>,
}

/// What the backward pass needs from the forward pass.
struct AttentionSaved {
    /// The flat q/k/v.
    qkv: Vec<f32>,
    /// The attention output before the output projection, and the
    /// log-sum-exp of each query's attention scores.
    core: CoreOut,
}

impl CustomOp3 for AttentionBlock {
    fn name(&self) -> &'static str {
        "attention-block"
    }

    fn cpu_fwd(
        &self,
        hs: &CpuStorage,
        hl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _bf16 = Bf16Products::set(self.bf16);
        let h = cpu_slice(hs, hl, "attention-block")?;
        let w = cpu_slice(ws, wl, "attention-block weights")?;
        let bias = cpu_slice(bs, bl, "attention-block bias")?;
        let (rows, d) = hl.shape().dims2()?;
        let width = bl.shape().elem_count();
        let mut raw = vec![0f32; rows * width];
        let hm = Mat::rows(h, 0, rows, d, d);
        matmul(
            MatMut::rows(&mut raw, 0, rows, width, width),
            hm,
            Mat::rows(w, 0, width, d, d).t(),
            false,
            true,
        );
        let qkv = self.qkv.forward(&raw, bias);
        drop(raw);
        let lse_len = self.qkv.heads().heads * rows;
        let core = match self.memo.as_ref().and_then(|m| m.take(rows * d, lse_len)) {
            Some(core) => core,
            None => {
                let (y, lse) = self.core.forward(&qkv);
                let core = CoreOut {
                    y: Arc::new(y),
                    lse: Arc::new(lse),
                };
                if let Some(memo) = &self.memo {
                    memo.put(&core);
                }
                core
            }
        };
        let y: &[f32] = &core.y;
        let mut out = vec![0f32; rows * d];
        let wo = Mat::rows(w, width * d, d, d, d);
        matmul(
            MatMut::rows(&mut out, 0, rows, d, d),
            Mat::rows(y, 0, rows, d, d),
            wo.t(),
            false,
            true,
        );
        *self.saved.lock().expect("attention block state poisoned") = Some(AttentionSaved { qkv, core });
        Ok((CpuStorage::F32(out), Shape::from((rows, d))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _bf16 = Bf16Products::set(self.bf16);
        let saved = self.saved.lock().expect("attention block state poisoned");
        let Some(saved) = saved.as_ref() else {
            candle_core::bail!("attention-block: backward before forward");
        };
        let grad = grad.contiguous()?;
        let (dh, dw, db) = with_data(h, "attention-block backward", |hd| {
            with_data(w, "attention-block backward", |wd| {
                with_data(&grad, "attention-block backward", |gd| {
                    Ok(self.backward(saved, hd, wd, gd))
                })
            })
        })?;
        let dev = h.device();
        Ok((
            Some(Tensor::from_vec(dh, h.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, bias.shape(), dev)?),
        ))
    }
}

impl AttentionBlock {
    /// Gradients of `h`, `w` and the bias from that of the output, `da`.
    fn backward(
        &self,
        saved: &AttentionSaved,
        h: &[f32],
        w: &[f32],
        da: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let width = self.qkv_width();
        let rows = self.rows();
        let d = h.len() / rows;
        let dam = Mat::rows(da, 0, rows, d, d);
        let mut dw = vec![0f32; (width + d) * d];
        // Output projection: dy = da @ wo, dwo = da^T @ y.
        let mut dy = vec![0f32; rows * d];
        matmul(
            MatMut::rows(&mut dy, 0, rows, d, d),
            dam,
            Mat::rows(w, width * d, d, d, d),
            false,
            true,
        );
        let ym = Mat::rows(&saved.core.y, 0, rows, d, d);
        matmul(
            MatMut::rows(&mut dw, width * d, d, d, d),
            dam.t(),
            ym,
            false,
            true,
        );
        // Attention, then the head layout, rotation and bias.
        let d_qkv = self
            .core
            .backward(&saved.qkv, &saved.core.y, &saved.core.lse, &dy);
        drop(dy);
        let mut both = self.qkv.backward(&d_qkv);
        drop(d_qkv);
        let db = both.split_off(rows * width);
        let d_raw = Mat::rows(&both, 0, rows, width, width);
        // The stacked q/k/v projection: dw_qkv = d_raw^T @ h, dh = d_raw @ w_qkv.
        matmul(
            MatMut::rows(&mut dw, 0, width, d, d),
            d_raw.t(),
            Mat::rows(h, 0, rows, d, d),
            false,
            true,
        );
        let mut dh = vec![0f32; rows * d];
        matmul(
            MatMut::rows(&mut dh, 0, rows, d, d),
            d_raw,
            Mat::rows(w, 0, width, d, d),
            false,
            true,
        );
        (dh, dw, db)
    }

    fn qkv_width(&self) -> usize {
        self.qkv.heads().width()
    }

    fn rows(&self) -> usize {
        let heads = self.qkv.heads();
        heads.batch * heads.seq
    }
}

// ---------------------------------------------------------------- MLP

/// The SwiGLU MLP for rows `h` (`(rows, hidden)`): `swiglu(h @ w_gate_up^T)
/// @ w_down^T` with `w_gate_up` the gate and up projections stacked (`(2i,
/// hidden)`) and `w_down` of shape `(hidden, i)`. Differentiable in all three.
pub fn mlp_block(h: &Tensor, w_gate_up: &Tensor, w_down: &Tensor) -> Result<Tensor> {
    let (_, d) = h.dims2()?;
    let (two_i, d_in) = w_gate_up.dims2()?;
    if d_in != d || two_i % 2 != 0 || w_down.dims() != [d, two_i / 2] {
        candle_core::bail!(
            "mlp_block: h {:?}, w_gate_up {:?}, w_down {:?} do not fit",
            h.dims(),
            w_gate_up.dims(),
            w_down.dims()
        );
    }
    if fused(h) && fused(w_gate_up) && fused(w_down) {
        let bf16 = bf16_products();
        mlp_op(h, w_gate_up, w_down, bf16, bf16 && mkl::available())
    } else {
        mlp_block_reference(h, w_gate_up, w_down)
    }
}

/// The fused MLP op; `bits` keeps the SwiGLU output and its gradient as
/// the bf16 bits their products read (needs oneMKL and `bf16`).
fn mlp_op(h: &Tensor, w_gate_up: &Tensor, w_down: &Tensor, bf16: bool, bits: bool) -> Result<Tensor> {
    h.contiguous()?.apply_op3(
        &w_gate_up.contiguous()?,
        &w_down.contiguous()?,
        MlpBlock {
            saved: Mutex::new(None),
            bf16,
            bits,
        },
    )
}

/// [`mlp_block`] as the composition of the smaller ops' references.
pub fn mlp_block_reference(h: &Tensor, w_gate_up: &Tensor, w_down: &Tensor) -> Result<Tensor> {
    linear_reference(&swiglu_reference(&linear_reference(h, w_gate_up)?)?, w_down)
}

struct MlpBlock {
    /// The gate/up projection and the SwiGLU output of the forward pass.
    saved: Mutex<Option<(Vec<f32>, Swiglu)>>,
    /// The products are bf16 ones ([`Bf16Products`]).
    bf16: bool,
    /// The SwiGLU output and its gradient exist only as bf16 bits (the
    /// same roundings the bf16 products make of them, bit for bit, without
    /// the `f32` buffers and the rounding passes: the gradient, `rows x 2i`,
    /// was rounded once for each of its two products).
    bits: bool,
}

/// The SwiGLU output, in `f32` or as bf16 bits ([`MlpBlock::bits`]).
enum Swiglu {
    F32(Vec<f32>),
    Bits(Vec<u16>),
}

impl CustomOp3 for MlpBlock {
    fn name(&self) -> &'static str {
        "mlp-block"
    }

    fn cpu_fwd(
        &self,
        hs: &CpuStorage,
        hl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _bf16 = Bf16Products::set(self.bf16);
        let h = cpu_slice(hs, hl, "mlp-block")?;
        let wgu = cpu_slice(gs, gl, "mlp-block gate/up")?;
        let wd = cpu_slice(ds, dl, "mlp-block down")?;
        let (rows, d) = hl.shape().dims2()?;
        let two_i = gl.shape().dims2()?.0;
        let i = two_i / 2;
        let mut gu = vec![0f32; rows * two_i];
        let hm = Mat::rows(h, 0, rows, d, d);
        matmul(
            MatMut::rows(&mut gu, 0, rows, two_i, two_i),
            hm,
            Mat::rows(wgu, 0, two_i, d, d).t(),
            false,
            true,
        );
        let mut out = vec![0f32; rows * d];
        let out_m = MatMut::rows(&mut out, 0, rows, d, d);
        let s = if self.bits {
            let s = swiglu::forward_bits(&gu, i);
            let wdb = rounded_bf16(wd);
            let (sm, wdm) = (Bf16Mat::rows(&s, 0, rows, i, i), Bf16Mat::rows(&wdb, 0, d, i, i));
            matmul_bf16_bits(out_m, sm, wdm.t(), false, true);
            Swiglu::Bits(s)
        } else {
            let s = swiglu::forward(&gu, i);
            matmul(
                out_m,
                Mat::rows(&s, 0, rows, i, i),
                Mat::rows(wd, 0, d, i, i).t(),
                false,
                true,
            );
            Swiglu::F32(s)
        };
        *self.saved.lock().expect("mlp block state poisoned") = Some((gu, s));
        Ok((CpuStorage::F32(out), Shape::from((rows, d))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w_gate_up: &Tensor,
        w_down: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _bf16 = Bf16Products::set(self.bf16);
        let saved = self.saved.lock().expect("mlp block state poisoned");
        let Some((gu, s)) = saved.as_ref() else {
            candle_core::bail!("mlp-block: backward before forward");
        };
        let grad = grad.contiguous()?;
        let what = "mlp-block backward";
        let (rows, d) = h.dims2()?;
        let two_i = w_gate_up.dim(0)?;
        let dims = (rows, d, two_i / 2);
        let (dh, dgu_w, dd_w) = with_data(h, what, |h| {
            with_data(w_gate_up, what, |wgu| {
                with_data(w_down, what, |wd| {
                    with_data(&grad, what, |g| {
                        Ok(match s {
                            Swiglu::F32(s) => mlp_backward(dims, h, wgu, wd, g, gu, s),
                            Swiglu::Bits(s) => mlp_backward_bits(dims, h, wgu, wd, g, gu, s),
                        })
                    })
                })
            })
        })?;
        let dev = h.device();
        Ok((
            Some(Tensor::from_vec(dh, h.shape(), dev)?),
            Some(Tensor::from_vec(dgu_w, w_gate_up.shape(), dev)?),
            Some(Tensor::from_vec(dd_w, w_down.shape(), dev)?),
        ))
    }
}

/// Gradients of `h`, `w_gate_up` and `w_down` from that of the output, `dm`,
/// for `(rows, hidden, i)`, with the forward pass's gate/up projection `gu`
/// and SwiGLU output `s`.
#[allow(clippy::too_many_arguments)]
fn mlp_backward(
    (rows, d, i): (usize, usize, usize),
    h: &[f32],
    wgu: &[f32],
    wd: &[f32],
    dm: &[f32],
    gu: &[f32],
    s: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let two_i = 2 * i;
    let dmm = Mat::rows(dm, 0, rows, d, d);
    // Down projection: ds = dm @ wd, dwd = dm^T @ s.
    let mut ds = vec![0f32; rows * i];
    matmul(
        MatMut::rows(&mut ds, 0, rows, i, i),
        dmm,
        Mat::rows(wd, 0, d, i, i),
        false,
        true,
    );
    let mut dwd = vec![0f32; d * i];
    matmul(
        MatMut::rows(&mut dwd, 0, d, i, i),
        dmm.t(),
        Mat::rows(s, 0, rows, i, i),
        false,
        true,
    );
    // SwiGLU, then the gate/up projection: dwgu = dgu^T @ h, dh = dgu @ wgu.
    let dgu = swiglu::backward(gu, &ds, i);
    drop(ds);
    let dgum = Mat::rows(&dgu, 0, rows, two_i, two_i);
    let mut dwgu = vec![0f32; two_i * d];
    matmul(
        MatMut::rows(&mut dwgu, 0, two_i, d, d),
        dgum.t(),
        Mat::rows(h, 0, rows, d, d),
        false,
        true,
    );
    let mut dh = vec![0f32; rows * d];
    matmul(
        MatMut::rows(&mut dh, 0, rows, d, d),
        dgum,
        Mat::rows(wgu, 0, two_i, d, d),
        false,
        true,
    );
    (dh, dwgu, dwd)
}

/// [`mlp_backward`] on bf16 bits: each operand rounded once for the
/// products that read it, the SwiGLU gradient produced as bits.
#[allow(clippy::too_many_arguments)]
fn mlp_backward_bits(
    (rows, d, i): (usize, usize, usize),
    h: &[f32],
    wgu: &[f32],
    wd: &[f32],
    dm: &[f32],
    gu: &[f32],
    s: &[u16],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let two_i = 2 * i;
    let (dmb, wdb) = (rounded_bf16(dm), rounded_bf16(wd));
    let dmm = Bf16Mat::rows(&dmb, 0, rows, d, d);
    // Down projection: ds = dm @ wd, dwd = dm^T @ s.
    let mut ds = vec![0f32; rows * i];
    let wdm = Bf16Mat::rows(&wdb, 0, d, i, i);
    matmul_bf16_bits(MatMut::rows(&mut ds, 0, rows, i, i), dmm, wdm, false, true);
    let mut dwd = vec![0f32; d * i];
    let sm = Bf16Mat::rows(s, 0, rows, i, i);
    matmul_bf16_bits(MatMut::rows(&mut dwd, 0, d, i, i), dmm.t(), sm, false, true);
    drop((dmb, wdb));
    // SwiGLU, then the gate/up projection: dwgu = dgu^T @ h, dh = dgu @ wgu.
    let dgu = swiglu::backward_bits(gu, &ds, i);
    drop(ds);
    let dgum = Bf16Mat::rows(&dgu, 0, rows, two_i, two_i);
    let (hb, wgub) = (rounded_bf16(h), rounded_bf16(wgu));
    let mut dwgu = vec![0f32; two_i * d];
    let hm = Bf16Mat::rows(&hb, 0, rows, d, d);
    matmul_bf16_bits(MatMut::rows(&mut dwgu, 0, two_i, d, d), dgum.t(), hm, false, true);
    let mut dh = vec![0f32; rows * d];
    let wgum = Bf16Mat::rows(&wgub, 0, two_i, d, d);
    matmul_bf16_bits(MatMut::rows(&mut dh, 0, rows, d, d), dgum, wgum, false, true);
    (dh, dwgu, dwd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{f32_bits as bits, max_diff, randn};
    use candle_core::Var;

    #[test]
    fn the_mlp_on_bf16_bits_matches_its_f32_buffers_bit_for_bit() -> Result<()> {
        // With bf16 products, keeping the SwiGLU output and gradient as bits
        // must change nothing: the products round the same f32 values.
        if !mkl::available() {
            eprintln!("oneMKL is not available here: the bits path cannot run (nor be taken)");
            return Ok(());
        }
        let (rows, d, i) = (300usize, 32usize, 48usize);
        let h = Var::from_tensor(&randn(&[rows, d], 1))?;
        let wgu = Var::from_tensor(&(randn(&[2 * i, d], 2) * 0.5)?)?;
        let wd = Var::from_tensor(&(randn(&[d, i], 3) * 0.5)?)?;
        let g = randn(&[rows, d], 4);
        let _bf16 = Bf16Products::set(true);
        let a = mlp_op(&h, &wgu, &wd, true, true)?;
        let b = mlp_op(&h, &wgu, &wd, true, false)?;
        assert_eq!(bits(&a)?, bits(&b)?);
        let ga = (&a * &g)?.sum_all()?.backward()?;
        let gb = (&b * &g)?.sum_all()?.backward()?;
        for v in [&h, &wgu, &wd] {
            assert_eq!(bits(ga.get(v).unwrap())?, bits(gb.get(v).unwrap())?);
        }
        // And both are bf16 products: within bf16 rounding of the f32 reference.
        let r = mlp_block_reference(&h, &wgu, &wd)?;
        let scale = r.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max_diff(&a, &r) < 2e-2 * scale, "{}", max_diff(&a, &r));
        Ok(())
    }

    #[test]
    fn attention_block_matches_the_reference_forward_and_backward() -> Result<()> {
        let cases: [(Heads, Option<Vec<usize>>, bool); 3] = [
            (
                Heads {
                    batch: 2,
                    seq: 7,
                    heads: 4,
                    kv_heads: 2,
                    head_dim: 8,
                },
                Some(vec![0, 3]),
                true,
            ),
            (
                Heads {
                    batch: 3,
                    seq: 70,
                    heads: 2,
                    kv_heads: 2,
                    head_dim: 16,
                },
                None,
                false,
            ),
            (
                Heads {
                    batch: 1,
                    seq: 5,
                    heads: 4,
                    kv_heads: 1,
                    head_dim: 4,
                },
                Some(vec![5]),
                false,
            ),
        ];
        for (hs, pads, per_row) in cases {
            let d = hs.heads * hs.head_dim;
            let rows = hs.batch * hs.seq;
            let h = Var::from_tensor(&randn(&[rows, d], 1))?;
            let w = Var::from_tensor(&(randn(&[hs.width() + d, d], 2) * 0.3)?)?;
            let bias = Var::from_tensor(&randn(&[hs.width()], 3))?;
            let table = if per_row {
                vec![hs.batch, hs.seq, hs.head_dim / 2]
            } else {
                vec![hs.seq, hs.head_dim / 2]
            };
            let (cos, sin) = (randn(&table, 4), randn(&table, 5));
            let g = randn(&[rows, d], 6);
            let a = attention_block(&h, &w, &bias, &cos, &sin, hs, 0.35, pads.as_deref())?;
            let b = attention_block_reference(&h, &w, &bias, &cos, &sin, hs, 0.35, pads.as_deref())?;
            assert!(max_diff(&a, &b) < 1e-4, "forward {hs:?}");
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            for (name, v) in [("h", &h), ("w", &w), ("bias", &bias)] {
                // Relative to the gradient's size: summed over 210 rows, the
                // weight's gradient reaches ~50.
                let gb = gb.get(v).unwrap();
                let scale = gb.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
                let diff = max_diff(ga.get(v).unwrap(), gb) / scale;
                assert!(diff < 1e-4, "{name} {hs:?}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn packed_attention_block_matches_the_reference_forward_and_backward() -> Result<()> {
        let hs = Heads {
            batch: 2,
            seq: 9,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let starts = vec![vec![0, 4, 5], vec![0, 2]];
        let (d, rows) = (hs.heads * hs.head_dim, hs.batch * hs.seq);
        let h = Var::from_tensor(&randn(&[rows, d], 1))?;
        let w = Var::from_tensor(&(randn(&[hs.width() + d, d], 2) * 0.3)?)?;
        let bias = Var::from_tensor(&randn(&[hs.width()], 3))?;
        // Positions restart with each sequence: per-row rotary tables.
        let (cos, sin) = (randn(&[2, 9, 4], 4), randn(&[2, 9, 4], 5));
        let mask = RowMask::Packed(&starts);
        let a = attention_block_masked(&h, &w, &bias, &cos, &sin, hs, 0.35, mask, None)?;
        let b = attention_block_masked_reference(&h, &w, &bias, &cos, &sin, hs, 0.35, mask)?;
        assert!(max_diff(&a, &b) < 1e-4);
        let g = randn(&[rows, d], 6);
        let ga = (&a * &g)?.sum_all()?.backward()?;
        let gb = (&b * &g)?.sum_all()?.backward()?;
        for (name, v) in [("h", &h), ("w", &w), ("bias", &bias)] {
            let diff = max_diff(ga.get(v).unwrap(), gb.get(v).unwrap());
            assert!(diff < 1e-3, "{name}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn a_memo_carries_the_core_output_to_the_recomputation() -> Result<()> {
        let hs = Heads {
            batch: 1,
            seq: 37,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let (d, rows) = (hs.heads * hs.head_dim, hs.batch * hs.seq);
        let w = (randn(&[hs.width() + d, d], 2) * 0.3)?;
        let (bias, cos, sin) = (randn(&[hs.width()], 3), randn(&[37, 4], 4), randn(&[37, 4], 5));
        let mask = RowMask::LeftPad(None);
        let run = |h: &Tensor, memo: Option<&AttentionMemo>| {
            attention_block_masked(h, &w, &bias, &cos, &sin, hs, 0.35, mask, memo)
        };
        let g = randn(&[rows, d], 6);
        // Forward pass (no gradient), then the recomputation with gradients:
        // the same bits as without a memo, forward and backward.
        let h = randn(&[rows, d], 1);
        let memo = AttentionMemo::default();
        let first = run(&h, Some(&memo))?;
        assert!(memo.is_full());
        let hv = Var::from_tensor(&h)?;
        let again = run(hv.as_tensor(), Some(&memo))?;
        assert!(!memo.is_full(), "the recomputation takes the memo");
        let plain_v = Var::from_tensor(&h)?;
        let plain = run(plain_v.as_tensor(), None)?;
        assert_eq!(bits(&first)?, bits(&plain)?);
        assert_eq!(bits(&again)?, bits(&plain)?);
        let ga = (&again * &g)?.sum_all()?.backward()?;
        let gb = (&plain * &g)?.sum_all()?.backward()?;
        assert_eq!(bits(ga.get(&hv).unwrap())?, bits(gb.get(&plain_v).unwrap())?);
        // The memo is really read: filled from other rows of the same shape
        // (which breaks the contract), it changes the output.
        run(&randn(&[rows, d], 7), Some(&memo))?;
        assert_ne!(bits(&run(&h, Some(&memo))?)?, bits(&plain)?);
        // One of another size is ignored.
        let short = Heads { seq: 20, ..hs };
        let (c2, s2) = (randn(&[20, 4], 8), randn(&[20, 4], 9));
        let h2 = randn(&[20, d], 10);
        attention_block_masked(&h2, &w, &bias, &c2, &s2, short, 0.35, mask, Some(&memo))?;
        assert_eq!(bits(&run(&h, Some(&memo))?)?, bits(&plain)?);
        Ok(())
    }

    #[test]
    fn mlp_block_matches_the_reference_forward_and_backward() -> Result<()> {
        for (rows, d, i) in [(5usize, 8usize, 12usize), (300, 32, 48)] {
            let h = Var::from_tensor(&randn(&[rows, d], 1))?;
            let wgu = Var::from_tensor(&(randn(&[2 * i, d], 2) * 0.5)?)?;
            let wd = Var::from_tensor(&(randn(&[d, i], 3) * 0.5)?)?;
            let g = randn(&[rows, d], 4);
            let a = mlp_block(&h, &wgu, &wd)?;
            let b = mlp_block_reference(&h, &wgu, &wd)?;
            assert!(max_diff(&a, &b) < 1e-4);
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            for (name, v) in [("h", &h), ("w_gate_up", &wgu), ("w_down", &wd)] {
                let diff = max_diff(ga.get(v).unwrap(), gb.get(v).unwrap());
                assert!(diff < 1e-3, "{name}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_named() {
        let err = mlp_block(&randn(&[2, 4], 1), &randn(&[6, 4], 2), &randn(&[4, 2], 3)).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}
