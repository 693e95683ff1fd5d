//! Log-probabilities of chosen tokens, and entropies, straight from logits.
//!
//! `token_logprobs(logits, targets)[r] = logits[r, t_r] - logsumexp(logits[r])`
//! for `logits` of shape `(..., vocab)` and `u32` `targets` of shape `(...)`.
//! The fused CPU path never materialises the `(..., vocab)` log-softmax: the
//! forward keeps one number per row, and the backward writes
//! `g_r * (onehot(t_r) - softmax(logits[r]))` in one pass. Cross-entropy
//! (SFT) and the policy-gradient loss (GRPO) are both built on it.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::math::exp;
use super::{cpu_slice, fused, log_softmax_reference, PARALLEL_MIN};

/// Log-probability of each target token; differentiable in `logits`.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check(logits, targets)?;
    if fused(logits) && targets.dtype() == DType::U32 {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, TokenLogprob)
    } else {
        token_logprobs_reference(logits, targets)
    }
}

/// [`token_logprobs`] as a composition of candle ops.
pub fn token_logprobs_reference(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check(logits, targets)?;
    let logp = log_softmax_reference(&logits.to_dtype(DType::F32)?)?;
    logp.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?
        .squeeze(D::Minus1)
}

/// Entropy (nats) of `softmax(logits)` per row, `(...)`; not differentiable.
pub fn entropy(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.detach();
    if fused(&logits) {
        logits.contiguous()?.apply_op1_no_bwd(&Entropy)
    } else {
        let logp = log_softmax_reference(&logits.to_dtype(DType::F32)?)?;
        (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()
    }
}

fn row_entropy(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    let mut weighted = 0f32;
    for &l in row {
        let e = exp(l - max);
        sum += e;
        weighted += e * (l - max);
    }
    (sum.ln() - weighted / sum).max(0.0)
}

/// [`entropy`] of each row of contiguous `f32` logits.
struct Entropy;

impl CustomOp1 for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = cpu_slice(storage, layout, "entropy")?;
        let dims = layout.dims();
        let v = dims[dims.len() - 1];
        let rows: Vec<f32> = if logits.len() >= PARALLEL_MIN {
            logits.par_chunks(v).map(row_entropy).collect()
        } else {
            logits.chunks(v).map(row_entropy).collect()
        };
        Ok((CpuStorage::F32(rows), Shape::from(&dims[..dims.len() - 1])))
    }
}

fn check(logits: &Tensor, targets: &Tensor) -> Result<()> {
    let dims = logits.dims();
    if dims.is_empty() || &dims[..dims.len() - 1] != targets.dims() {
        candle_core::bail!(
            "token_logprobs: logits {:?} need targets of shape {:?}, got {:?}",
            dims,
            dims.get(..dims.len().saturating_sub(1)).unwrap_or(&[]),
            targets.dims()
        );
    }
    Ok(())
}

fn targets_of<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(t), Some((a, b))) => Ok(&t[a..b]),
        _ => candle_core::bail!("token_logprobs: targets must be contiguous u32"),
    }
}

struct TokenLogprob;

/// A row of logits and of the output, with its target and incoming gradient.
type RowAndGrad<'a> = ((&'a [f32], &'a mut [f32]), (&'a u32, &'a f32));

/// The backward pass: `(logits, targets, grad)` → gradient of the logits.
struct TokenLogprobBackward<'a> {
    grad: &'a [f32],
}

impl CustomOp2 for TokenLogprob {
    fn name(&self) -> &'static str {
        "token-logprob"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = cpu_slice(ls, ll, "token-logprob")?;
        let targets = targets_of(ts, tl)?;
        let v = ll.dims()[ll.dims().len() - 1];
        if let Some(bad) = targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("token_logprobs: target {bad} is outside the vocabulary of {v}");
        }
        let one = |(row, &t): (&[f32], &u32)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|l| exp(l - max)).sum();
            row[t as usize] - max - sum.ln()
        };
        let out: Vec<f32> = if logits.len() >= PARALLEL_MIN {
            logits.par_chunks(v).zip(targets.par_iter()).map(one).collect()
        } else {
            logits.chunks(v).zip(targets.iter()).map(one).collect()
        };
        Ok((CpuStorage::F32(out), tl.shape().clone()))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let dl = logits.apply_op2_no_bwd(targets, &TokenLogprobBackward { grad: &g })?;
        Ok((Some(dl), None))
    }
}

impl CustomOp2 for TokenLogprobBackward<'_> {
    fn name(&self) -> &'static str {
        "token-logprob-backward"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = cpu_slice(ls, ll, "token-logprob-backward")?;
        let targets = targets_of(ts, tl)?;
        let v = ll.dims()[ll.dims().len() - 1];
        let mut out = vec![0f32; logits.len()];
        let one = |((row, o), (&t, &g)): RowAndGrad<'_>| {
            if g == 0.0 {
                return; // masked positions: leave zeros, skip the exps
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (o, l) in o.iter_mut().zip(row) {
                *o = exp(l - max);
                sum += *o;
            }
            let scale = -g / sum;
            o.iter_mut().for_each(|x| *x *= scale);
            o[t as usize] += g;
        };
        if logits.len() >= PARALLEL_MIN {
            logits
                .par_chunks(v)
                .zip(out.par_chunks_mut(v))
                .zip(targets.par_iter().zip(self.grad.par_iter()))
                .for_each(one);
        } else {
            logits
                .chunks(v)
                .zip(out.chunks_mut(v))
                .zip(targets.iter().zip(self.grad.iter()))
                .for_each(one);
        }
        Ok((CpuStorage::F32(out), ll.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::{Device, Var};

    #[test]
    fn fused_matches_the_reference_forward_and_backward() -> Result<()> {
        for shape in [[2usize, 3, 11], [4, 16, 512]] {
            let logits = Var::from_tensor(&(randn(&shape, 3) * 4.0)?)?;
            let n = shape[0] * shape[1];
            let t: Vec<u32> = (0..n as u32).map(|i| (i * 7) % shape[2] as u32).collect();
            let targets = Tensor::from_vec(t, (shape[0], shape[1]), &Device::Cpu)?;
            let mut g = randn(&shape[..2], 4);
            // A masked position gets a zero gradient.
            g = g.broadcast_mul(&Tensor::from_vec(
                (0..n).map(|i| (i % 5 != 0) as u8 as f32).collect(),
                (shape[0], shape[1]),
                &Device::Cpu,
            )?)?;
            let a = token_logprobs(&logits, &targets)?;
            let b = token_logprobs_reference(&logits, &targets)?;
            assert!(max_diff(&a, &b) < 1e-5);
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            assert!(max_diff(ga.get(&logits).unwrap(), gb.get(&logits).unwrap()) < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn entropy_matches_its_definition() -> Result<()> {
        let logits = randn(&[3, 7], 9);
        let logp = log_softmax_reference(&logits)?;
        let want = (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?;
        assert!(max_diff(&entropy(&logits)?, &want) < 1e-5);
        Ok(())
    }

    #[test]
    fn bad_targets_are_named() {
        let logits = randn(&[2, 4], 1);
        let t = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
        assert!(token_logprobs(&logits, &t)
            .unwrap_err()
            .to_string()
            .contains("outside the vocabulary"));
        let t = Tensor::new(&[1u32], &Device::Cpu).unwrap();
        assert!(token_logprobs(&logits, &t)
            .unwrap_err()
            .to_string()
            .contains("need targets"));
    }
}
