//! The LM head and [`super::token_stats`] together, a chunk of tokens at a
//! time, so the `tokens x vocab` logits never exist in full (at Qwen2.5's
//! vocabulary of 152K, 4,096 tokens of f32 logits are 2.5 GB, and their
//! gradient as much again).
//!
//! [`lm_head_token_stats`] computes, for hidden states `h` `(rows, hidden)`,
//! the head's weight `W` `(vocab, hidden)` and targets `(rows)`, the per-row
//! log-sum-exp, target log-probability and entropy of `softmax(h W^T / T)`.
//! Forward: per chunk of `chunk` rows, the chunk's logits, then the fused
//! token_stats op's per-row statistics; the logits are dropped at once. The
//! op keeps the statistics (5 floats a row) and its inputs. Backward: per
//! chunk again, the logits recomputed, their gradient from the statistics
//! (token_stats' fused backward), then `dh = dZ W` and `dW += dZ^T h`. At
//! most one chunk's logits and their gradient exist at a time, for the
//! price of a second product with the head.
//!
//! It is ordinary candle ops inside (any device the token_stats op runs on:
//! the CPU, and CUDA with the `cuda` feature); elsewhere, or for other
//! dtypes, it computes the whole logits and calls [`super::token_stats`].
//! A bf16 model trained on the CPU with oneMKL (a [`GradSink`] for the
//! weight's gradient) takes a direct path instead: the products read the
//! weight's own bf16 bits, one logits buffer serves every chunk, and the
//! backward pass writes the logits' gradient straight to bf16 bits (same
//! results, bit for bit; on Qwen2.5-0.5B's head at 4K tokens, 2.2 s less
//! per step and 1.1 GiB less peak memory).

#[cfg(feature = "cuda")]
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D};
use half::slice::HalfFloatSliceExt;

use super::block::with_data;
use super::gemm::{
    bf16_products, matmul, matmul_bf16_bits, rounded_bf16, Bf16Mat, Bf16Products, Mat, MatMut,
};
use super::grad_sink::GradSink;
use super::logprob::{grad_aux, grad_bits, stats_grad, stats_raw, stats_rows, targets_of, STATS};
use super::{fused, fused_path, linear, mkl, token_stats, TokenStats};

/// Rows per chunk by default: 1,024 rows of Qwen2.5's logits are 622 MB in
/// f32 (the plan counts them and their gradient). 256 took ~3% longer per
/// 0.5B step at 4K tokens on the CPU: each chunk's weight-gradient product
/// rereads and rewrites the whole `f32` sum.
pub const DEFAULT_CHUNK: usize = 1024;

/// Per-row statistics of `softmax(hidden @ weight^T / temperature)` at
/// `targets`, differentiable in `hidden` (`(rows, d)`) and `weight`
/// (`(vocab, d)`), computed `chunk` rows at a time (see the module docs).
/// `targets` is `(rows)` `u32`; the statistics are `(rows)`. With a sink, a
/// bf16/f16 weight on the CPU sends its gradient there, in `f32` (summed
/// over the chunks in `f32` anyway), instead of rounding it to the weight's
/// dtype for candle's graph.
pub fn lm_head_token_stats(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    temperature: f64,
    chunk: usize,
    sink: Option<&GradSink>,
) -> Result<TokenStats> {
    stats_of(hidden, weight, targets, temperature, chunk, sink, None)
}

/// [`lm_head_token_stats`], with the weight's gradient going to `weight_to`
/// (the sink and the weight it belongs to) when given.
fn stats_of(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    temperature: f64,
    chunk: usize,
    sink: Option<&GradSink>,
    weight_to: Option<(GradSink, Tensor)>,
) -> Result<TokenStats> {
    let (rows, d) = hidden.dims2()?;
    let (vocab, dw) = weight.dims2()?;
    if dw != d || targets.dims() != [rows] || chunk == 0 {
        candle_core::bail!(
            "lm_head_token_stats: hidden {:?}, weight {:?}, targets {:?} and chunk {chunk} do not fit",
            hidden.dims(),
            weight.dims(),
            targets.dims()
        );
    }
    if vocab == 0 || !fused_path(hidden, targets) {
        return token_stats(&linear(hidden, weight)?, targets, temperature);
    }
    if let Some(sink) = sink.filter(|_| direct_path(hidden, weight)) {
        return stats_direct(hidden, weight, targets, temperature, chunk, sink);
    }
    if hidden.device().is_cpu() && (hidden.dtype() != DType::F32 || weight.dtype() != DType::F32) {
        // The CPU's products are f32 (candle's 16-bit matmul converts both
        // operands on every call): convert once, not once per chunk.
        // A bf16 model's products round them back to bf16 (ops/mkl.rs).
        let _bf16 = Bf16Products::set(hidden.dtype() == DType::BF16 && weight.dtype() == DType::BF16);
        let h = hidden.to_dtype(DType::F32)?;
        return match sink.filter(|_| weight.track_op()) {
            // The f32 copy outside the graph; its gradient goes to the sink.
            Some(sink) => {
                let w = weight.detach().to_dtype(DType::F32)?;
                let to = Some((sink.clone(), weight.clone()));
                stats_of(&h, &w, targets, temperature, chunk, None, to)
            }
            None => {
                let w = weight.to_dtype(DType::F32)?;
                stats_of(&h, &w, targets, temperature, chunk, None, None)
            }
        };
    }
    let (h, w) = (hidden.detach(), weight.detach());
    let w_bits = weight_bits(&w)?;
    let mut parts = Vec::with_capacity(rows.div_ceil(chunk));
    for start in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - start);
        let logits = chunk_logits(&h.narrow(0, start, n)?, &w, w_bits.as_deref())?;
        parts.push(stats_raw(&logits, &targets.narrow(0, start, n)?, temperature)?);
    }
    let raw = Tensor::cat(&parts, 0)?;
    let out = hidden.apply_op3(
        weight,
        &raw,
        LmHeadStats {
            targets: targets.clone(),
            temperature,
            chunk,
            bf16: bf16_products(),
            weight_to,
        },
    )?;
    let column = |k: usize| out.narrow(D::Minus1, k, 1)?.squeeze(D::Minus1);
    Ok(TokenStats {
        lse: column(0)?,
        logprobs: column(1)?,
        entropy: column(2)?,
    })
}

/// Whether [`stats_direct`] takes a bf16 model's head on the CPU: a trained
/// (tracked) contiguous bf16 weight, bf16 rows and oneMKL's bf16 products.
fn direct_path(hidden: &Tensor, weight: &Tensor) -> bool {
    hidden.device().is_cpu()
        && hidden.dtype() == DType::BF16
        && weight.dtype() == DType::BF16
        && weight.track_op()
        && weight.is_contiguous()
        && mkl::available()
}

/// The bf16 weight's own bits (no copy), for oneMKL's bf16 products.
fn with_bits<R>(w: &Tensor, f: impl FnOnce(&[u16]) -> Result<R>) -> Result<R> {
    let (storage, layout) = w.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::BF16(data)), Some((a, b))) => f(data[a..b].reinterpret_cast()),
        _ => candle_core::bail!("lm-head: expected a contiguous bf16 CPU weight"),
    }
}

/// The contiguous `u32` targets of a CPU tensor ([`targets_of`]).
fn with_targets<R>(t: &Tensor, f: impl FnOnce(&[u32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(targets_of(cpu, layout)?),
        _ => candle_core::bail!("lm-head: expected targets on the CPU"),
    }
}

/// `dst = rows @ W^T` for the bf16 bits of `rows` `(n, d)` and of the
/// weight `(vocab, d)`, into the first `n * vocab` floats of `dst`.
fn logits_into(dst: &mut [f32], rows: &[u16], w: &[u16], n: usize, vocab: usize, d: usize) {
    matmul_bf16_bits(
        MatMut::rows(dst, 0, n, vocab, vocab),
        Bf16Mat::rows(rows, 0, n, d, d),
        Bf16Mat::rows(w, 0, vocab, d, d).t(),
        false,
        true,
    );
}

/// [`lm_head_token_stats`] for a bf16 model trained on the CPU (see
/// [`direct_path`]). The products read the weight's own bf16 bits (no `f32`
/// copy of the table, none kept for the backward pass), each pass reuses one
/// buffer for every chunk's logits (fresh ones cost a page fault per 4 KiB:
/// 622 MB a chunk at Qwen2.5's size), and the backward pass writes the
/// logits' gradient straight to the bf16 bits its two products read. Its
/// products and roundings are the other bf16 path's, bit for bit.
fn stats_direct(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    temperature: f64,
    chunk: usize,
    sink: &GradSink,
) -> Result<TokenStats> {
    let (rows, d) = hidden.dims2()?;
    let vocab = weight.dim(0)?;
    let targets = targets.contiguous()?;
    let h = hidden.contiguous()?;
    let raw = with_bits(&h, |h| {
        with_bits(weight, |w| {
            with_targets(&targets, |t| {
                let mut logits = vec![0f32; chunk.min(rows) * vocab];
                let mut raw = Vec::with_capacity(rows * STATS);
                for start in (0..rows).step_by(chunk) {
                    let n = chunk.min(rows - start);
                    let z = &mut logits[..n * vocab];
                    logits_into(z, &h[start * d..(start + n) * d], w, n, vocab, d);
                    raw.extend(stats_rows(z, &t[start..start + n], vocab, temperature)?);
                }
                Ok(raw)
            })
        })
    })?;
    let raw = Tensor::from_vec(raw, (rows, STATS), hidden.device())?;
    let out = hidden.apply_op2(
        &raw,
        LmHeadDirect {
            weight: weight.clone(),
            targets,
            temperature,
            chunk,
            sink: sink.clone(),
        },
    )?;
    let column = |k: usize| out.narrow(D::Minus1, k, 1)?.squeeze(D::Minus1);
    Ok(TokenStats {
        lse: column(0)?,
        logprobs: column(1)?,
        entropy: column(2)?,
    })
}

/// With bf16 products on the CPU (oneMKL available): the head's weight
/// rounded to bf16 once, for every chunk's products (rounding it inside each
/// product moved 136M elements per chunk and product at Qwen2.5's size).
fn weight_bits(w: &Tensor) -> Result<Option<Vec<u16>>> {
    if !(bf16_products() && mkl::available() && fused(w)) {
        return Ok(None);
    }
    let w = w.contiguous()?;
    with_data(&w, "lm-head", |w| Ok(Some(rounded_bf16(w))))
}

/// The logits `hc @ W^T` of one chunk, on the rounded weight when given.
fn chunk_logits(hc: &Tensor, w: &Tensor, w_bits: Option<&[u16]>) -> Result<Tensor> {
    let Some(w_bits) = w_bits else {
        return linear(hc, w);
    };
    let (n, d) = hc.dims2()?;
    let vocab = w.dim(0)?;
    let hc = hc.contiguous()?;
    let mut out = vec![0f32; n * vocab];
    with_data(&hc, "lm-head", |h| {
        let hb = rounded_bf16(h);
        matmul_bf16_bits(
            MatMut::rows(&mut out, 0, n, vocab, vocab),
            Bf16Mat::rows(&hb, 0, n, d, d),
            Bf16Mat::rows(w_bits, 0, vocab, d, d).t(),
            false,
            true,
        );
        Ok(())
    })?;
    Tensor::from_vec(out, (n, vocab), hc.device())
}

/// The statistics computed by [`stats_direct`], copied into the graph as a
/// function of the rows (the weight's gradient goes to the sink).
struct LmHeadDirect {
    /// The model's bf16 weight (the sink's key; its bits are the products'
    /// operand).
    weight: Tensor,
    targets: Tensor,
    temperature: f64,
    chunk: usize,
    sink: GradSink,
}

impl CustomOp2 for LmHeadDirect {
    fn name(&self) -> &'static str {
        "lm-head-token-stats"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_stats(rs, rl)
    }

    /// Per chunk: the logits again, their gradient as bf16 bits, `dh = dZ
    /// W` and `dW += dZ^T h` (in `f32`, sent to the sink).
    fn bwd(
        &self,
        hidden: &Tensor,
        raw: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, d) = hidden.dims2()?;
        let vocab = self.weight.dim(0)?;
        let inv_t = (1.0 / self.temperature) as f32;
        let grad = grad
            .detach()
            .narrow(D::Minus1, 0, 3)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        let raw = raw.contiguous()?;
        let aux = with_data(&raw, "lm-head backward", |r| {
            with_data(&grad, "lm-head backward", |g| Ok(grad_aux(r, g)))
        })?;
        let mut dh = vec![0f32; rows * d];
        let mut dw = vec![0f32; vocab * d];
        let h = hidden.contiguous()?;
        with_bits(&h, |h| {
            with_bits(&self.weight, |w| {
                with_targets(&self.targets, |t| {
                    let n_max = self.chunk.min(rows);
                    let mut logits = vec![0f32; n_max * vocab];
                    let mut dz = vec![0u16; n_max * vocab];
                    for start in (0..rows).step_by(self.chunk) {
                        let n = self.chunk.min(rows - start);
                        let hc = &h[start * d..(start + n) * d];
                        let (z, dz) = (&mut logits[..n * vocab], &mut dz[..n * vocab]);
                        logits_into(z, hc, w, n, vocab, d);
                        let aux = &aux[start * 2 * STATS..(start + n) * 2 * STATS];
                        grad_bits(z, &t[start..start + n], aux, vocab, inv_t, dz);
                        let dzm = Bf16Mat::rows(dz, 0, n, vocab, vocab);
                        let dhc = MatMut::rows(&mut dh, start * d, n, d, d);
                        matmul_bf16_bits(dhc, dzm, Bf16Mat::rows(w, 0, vocab, d, d), false, true);
                        let dwm = MatMut::rows(&mut dw, 0, vocab, d, d);
                        matmul_bf16_bits(dwm, dzm.t(), Bf16Mat::rows(hc, 0, n, d, d), start > 0, true);
                    }
                    Ok(())
                })
            })
        })?;
        let dev = hidden.device();
        self.sink
            .add(&self.weight, Tensor::from_vec(dw, (vocab, d), dev)?)?;
        let dh = Tensor::from_vec(dh, (rows, d), dev)?.to_dtype(hidden.dtype())?;
        Ok((Some(dh), None))
    }
}

/// A copy of contiguous `f32` statistics, as an op's output.
fn copy_stats(rs: &CpuStorage, rl: &Layout) -> Result<(CpuStorage, Shape)> {
    match (rs, rl.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((a, b))) => Ok((CpuStorage::F32(d[a..b].to_vec()), rl.shape().clone())),
        _ => candle_core::bail!("lm-head-token-stats: expected contiguous f32 statistics"),
    }
}

struct LmHeadStats {
    targets: Tensor,
    temperature: f64,
    chunk: usize,
    /// The products are bf16 ones ([`Bf16Products`]; the CPU's f32 tensors only).
    bf16: bool,
    /// Where the weight's gradient goes instead of the graph (the sink and
    /// the model's weight), on the bf16 CPU path.
    weight_to: Option<(GradSink, Tensor)>,
}

impl CustomOp3 for LmHeadStats {
    fn name(&self) -> &'static str {
        "lm-head-token-stats"
    }

    /// The statistics computed by [`lm_head_token_stats`], copied into the graph.
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_stats(rs, rl)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        rs: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        // A fresh `cat` output: contiguous from its start.
        match rl.contiguous_offsets() {
            Some((0, n)) if n == rl.shape().elem_count() => Ok((rs.try_clone(rl)?, rl.shape().clone())),
            _ => candle_core::bail!("lm-head-token-stats: expected contiguous statistics"),
        }
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        raw: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _bf16 = Bf16Products::set(self.bf16);
        let rows = hidden.dim(0)?;
        let (h, w) = (hidden.detach(), weight.detach());
        let direct = self.bf16 && h.device().is_cpu() && h.dtype() == DType::F32 && w.dtype() == DType::F32;
        // With bf16 products, dW accumulates over the chunks in one f32 buffer.
        let (vocab, d) = w.dims2()?;
        let mut dw_acc = if direct { vec![0f32; vocab * d] } else { Vec::new() };
        let w_bits = if direct { weight_bits(&w)? } else { None };
        let grad = grad.detach().narrow(D::Minus1, 0, 3)?;
        let mut dh = Vec::with_capacity(rows.div_ceil(self.chunk));
        let mut dw: Option<Tensor> = None;
        for start in (0..rows).step_by(self.chunk) {
            let n = self.chunk.min(rows - start);
            let hc = h.narrow(0, start, n)?;
            let logits = chunk_logits(&hc, &w, w_bits.as_deref())?;
            let dz = stats_grad(
                &logits,
                &self.targets.narrow(0, start, n)?,
                &raw.narrow(0, start, n)?,
                &grad.narrow(0, start, n)?,
                self.temperature,
            )?;
            drop(logits);
            // dh = dZ W, and dW += dZ^T h summed over the chunks in f32.
            if direct {
                let dz = dz.contiguous()?;
                let hc = hc.contiguous()?;
                let mut dhc = vec![0f32; n * d];
                if let Some(w_bits) = &w_bits {
                    // dZ and the chunk rounded once for both products.
                    with_data(&dz, "lm-head backward", |dz| {
                        with_data(&hc, "lm-head backward", |hc| {
                            let (dzb, hb) = (rounded_bf16(dz), rounded_bf16(hc));
                            let dzm = Bf16Mat::rows(&dzb, 0, n, vocab, vocab);
                            let dh = MatMut::rows(&mut dhc, 0, n, d, d);
                            matmul_bf16_bits(dh, dzm, Bf16Mat::rows(w_bits, 0, vocab, d, d), false, true);
                            let dw = MatMut::rows(&mut dw_acc, 0, vocab, d, d);
                            matmul_bf16_bits(dw, dzm.t(), Bf16Mat::rows(&hb, 0, n, d, d), start > 0, true);
                            Ok(())
                        })
                    })?;
                    dh.push(Tensor::from_vec(dhc, (n, d), h.device())?);
                    continue;
                }
                with_data(&dz, "lm-head backward", |dz| {
                    with_data(&w, "lm-head backward", |w| {
                        with_data(&hc, "lm-head backward", |hc| {
                            let dzm = Mat::rows(dz, 0, n, vocab, vocab);
                            matmul(
                                MatMut::rows(&mut dhc, 0, n, d, d),
                                dzm,
                                Mat::rows(w, 0, vocab, d, d),
                                false,
                                true,
                            );
                            let dw = MatMut::rows(&mut dw_acc, 0, vocab, d, d);
                            matmul(dw, dzm.t(), Mat::rows(hc, 0, n, d, d), start > 0, true);
                            Ok(())
                        })
                    })
                })?;
                dh.push(Tensor::from_vec(dhc, (n, d), h.device())?);
                continue;
            }
            dh.push(dz.matmul(&w)?);
            let part = dz.t()?.matmul(&hc)?.to_dtype(DType::F32)?;
            dw = Some(match dw {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        let dw = match dw {
            Some(dw) => dw.to_dtype(w.dtype())?,
            None if direct => Tensor::from_vec(dw_acc, (vocab, d), w.device())?,
            None => w.zeros_like()?,
        };
        if let Some((sink, weight)) = &self.weight_to {
            sink.add(weight, dw)?;
            return Ok((Some(Tensor::cat(&dh, 0)?), None, None));
        }
        Ok((Some(Tensor::cat(&dh, 0)?), Some(dw), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::{Device, Var};

    #[test]
    fn chunks_match_the_whole_logits_forward_and_backward() -> Result<()> {
        // Chunks that divide the rows, that do not, and one larger than them.
        for chunk in [4usize, 7, 64] {
            let (rows, d, vocab) = (20, 16, 50);
            let h = Var::from_tensor(&randn(&[rows, d], 1))?;
            let w = Var::from_tensor(&(randn(&[vocab, d], 2) * 0.5)?)?;
            let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 7 + 3) % vocab as u32).collect();
            let targets = Tensor::new(targets, &Device::Cpu)?;
            let t = 0.7;
            let a = lm_head_token_stats(&h, &w, &targets, t, chunk, None)?;
            let b = token_stats(&linear(&h, &w)?, &targets, t)?;
            for (x, y) in [
                (&a.lse, &b.lse),
                (&a.logprobs, &b.logprobs),
                (&a.entropy, &b.entropy),
            ] {
                assert!(max_diff(x, y) < 1e-5, "chunk {chunk}");
            }
            // A loss using all three, with per-row weights.
            let (u, v, z) = (randn(&[rows], 3), randn(&[rows], 4), randn(&[rows], 5));
            let loss = |s: &TokenStats| -> Result<Tensor> {
                ((&s.lse * &u)? + (&s.logprobs * &v)? + (&s.entropy * &z)?)?.sum_all()
            };
            let ga = loss(&a)?.backward()?;
            let gb = loss(&b)?.backward()?;
            for var in [&h, &w] {
                let diff = max_diff(ga.get(var).unwrap(), gb.get(var).unwrap());
                assert!(diff < 1e-4, "chunk {chunk}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn bf16_inputs_give_bf16_gradients() -> Result<()> {
        let h = Var::from_tensor(&randn(&[6, 8], 1).to_dtype(DType::BF16)?)?;
        let w = Var::from_tensor(&randn(&[10, 8], 2).to_dtype(DType::BF16)?)?;
        let targets = Tensor::new(&[1u32, 2, 3, 4, 5, 9], &Device::Cpu)?;
        let s = lm_head_token_stats(&h, &w, &targets, 1.0, 4, None)?;
        let g = s.logprobs.sum_all()?.backward()?;
        assert_eq!(g.get(&h).unwrap().dtype(), DType::BF16);
        assert_eq!(g.get(&w).unwrap().dtype(), DType::BF16);
        let b = token_stats(&linear(&h, &w)?, &targets, 1.0)?;
        assert!(max_diff(&s.logprobs, &b.logprobs) < 2e-2);
        Ok(())
    }

    #[test]
    fn a_bf16_head_with_a_sink_matches_the_graph_path_bit_for_bit() -> Result<()> {
        // The model's training path (a sink; with oneMKL the direct path on
        // the weight's own bits, reused buffers and bf16 gradient bits)
        // against the same head through candle's graph (f32 copies of the
        // weight, the gradient rounded to bf16 by the graph). Chunks that do
        // not divide the rows; one masked row (no gradient); temperature 0.7.
        let (rows, d, vocab, chunk) = (23, 16, 300, 7);
        let h = Var::from_tensor(&randn(&[rows, d], 1).to_dtype(DType::BF16)?)?;
        let w = Var::from_tensor(&(randn(&[vocab, d], 2) * 0.5)?.to_dtype(DType::BF16)?)?;
        let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 37 + 3) % vocab as u32).collect();
        let targets = Tensor::new(targets, &Device::Cpu)?;
        let masked = |seed| -> Result<Tensor> {
            let mut x = randn(&[rows], seed).to_vec1::<f32>()?;
            x[5] = 0.0;
            Tensor::new(x, &Device::Cpu)
        };
        let (u, v) = (masked(3)?, masked(4)?);
        let loss =
            |s: &TokenStats| -> Result<Tensor> { ((&s.logprobs * &u)? + (&s.entropy * &v)?)?.sum_all() };
        eprintln!("direct path: {}", direct_path(&h, &w));
        let sink = GradSink::default();
        let a = lm_head_token_stats(&h, &w, &targets, 0.7, chunk, Some(&sink))?;
        let ga = sink.backward(&loss(&a)?)?;
        let b = lm_head_token_stats(&h, &w, &targets, 0.7, chunk, None)?;
        let gb = loss(&b)?.backward()?;
        for (x, y) in [
            (&a.lse, &b.lse),
            (&a.logprobs, &b.logprobs),
            (&a.entropy, &b.entropy),
        ] {
            assert_eq!(x.to_vec1::<f32>()?, y.to_vec1::<f32>()?);
        }
        let bits = |t: &Tensor| -> Result<Vec<u16>> {
            Ok(t.to_dtype(DType::BF16)?
                .flatten_all()?
                .to_vec1::<half::bf16>()?
                .iter()
                .map(|x| x.to_bits())
                .collect())
        };
        assert_eq!(bits(ga.get(&h).unwrap())?, bits(gb.get(&h).unwrap())?);
        let (dwa, dwb) = (ga.get(&w).unwrap(), gb.get(&w).unwrap());
        assert_eq!(
            dwa.dtype(),
            DType::F32,
            "the sink keeps the weight's gradient in f32"
        );
        assert_eq!(bits(dwa)?, bits(dwb)?);
        assert!(dwa.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        // The masked row's hidden gradient is zero.
        let dh = ga.get(&h).unwrap().to_dtype(DType::F32)?;
        assert_eq!(dh.get(5)?.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_named() {
        let err = lm_head_token_stats(
            &randn(&[3, 4], 1),
            &randn(&[5, 3], 2),
            &Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap(),
            1.0,
            2,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}
