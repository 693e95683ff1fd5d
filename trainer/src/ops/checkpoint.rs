//! Activation checkpointing: a function of one input and some weights whose
//! forward pass keeps nothing but its input, and whose backward pass runs it
//! again (with gradients on) to get the gradients of the input and weights.
//!
//! [`checkpoint`] runs `f(x, weights)` on detached copies (so no graph, and
//! none of the function's intermediate activations, outlives the call) and
//! attaches the result to the graph through one op whose inputs are `x` and
//! the weights packed into one flat tensor (a copy, which carries their
//! gradients back through candle's `cat`). Its backward pass calls `f` again
//! on fresh variables over the same storage, multiplies the result by the
//! incoming gradient and runs candle's backward pass over that one call.
//!
//! The model checkpoints each decoder layer this way (`[train]
//! checkpoint_layers`): a layer's activations then live only while the
//! backward pass is inside it, for the price of a second forward pass.
//! It works on any device and dtype, since the recomputation is ordinary
//! candle ops.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, Var};

/// A function checkpointed by [`checkpoint`]: the same numbers on every call.
pub type Recompute = dyn Fn(&Tensor, &[Tensor]) -> Result<Tensor> + Send + Sync;

/// `f(x, weights)`, differentiable in `x` and every weight, keeping only `x`
/// (and a packed copy of the weights) for the backward pass; see the module
/// docs. When nothing needs a gradient it is just `f`.
pub fn checkpoint(x: &Tensor, weights: &[Tensor], f: Arc<Recompute>) -> Result<Tensor> {
    let detached: Vec<Tensor> = weights.iter().map(Tensor::detach).collect();
    let y = f(&x.detach(), &detached)?;
    let tracked = x.track_op() || weights.iter().any(Tensor::track_op);
    if !tracked {
        return Ok(y);
    }
    let flat = weights
        .iter()
        .map(|w| w.flatten_all())
        .collect::<Result<Vec<_>>>()?;
    let packed = Tensor::cat(&flat, 0)?;
    x.apply_op3(
        &packed,
        &y.contiguous()?,
        Checkpoint {
            f,
            weights: weights.to_vec(),
        },
    )
}

struct Checkpoint {
    f: Arc<Recompute>,
    weights: Vec<Tensor>,
}

/// A copy of the contiguous elements a layout selects.
fn copy_of(s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("checkpoint: the output must be contiguous");
    };
    Ok(match s {
        CpuStorage::F32(d) => CpuStorage::F32(d[a..b].to_vec()),
        CpuStorage::BF16(d) => CpuStorage::BF16(d[a..b].to_vec()),
        CpuStorage::F16(d) => CpuStorage::F16(d[a..b].to_vec()),
        CpuStorage::F64(d) => CpuStorage::F64(d[a..b].to_vec()),
        other => candle_core::bail!("checkpoint: unsupported dtype {:?}", other.dtype()),
    })
}

impl CustomOp3 for Checkpoint {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    /// The value computed by [`checkpoint`], copied into the graph.
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((copy_of(ys, yl)?, yl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        ys: &candle_core::CudaStorage,
        yl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        // `checkpoint` passes a contiguous result; a fresh op output starts
        // at offset 0, so cloning the buffer is the copy.
        match yl.contiguous_offsets() {
            Some((0, n)) if n == yl.shape().elem_count() => Ok((ys.try_clone(yl)?, yl.shape().clone())),
            _ => candle_core::bail!("checkpoint: the output must be contiguous from its start"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        _packed: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let xv = Var::from_tensor(&x.detach())?;
        let wv = self
            .weights
            .iter()
            .map(|w| Var::from_tensor(&w.detach()))
            .collect::<Result<Vec<_>>>()?;
        let ws: Vec<Tensor> = wv.iter().map(|v| v.as_tensor().clone()).collect();
        let y = (self.f)(xv.as_tensor(), &ws)?;
        let grads = (y * grad.detach())?.sum_all()?.backward()?;
        let grad_of = |v: &Var| -> Result<Tensor> {
            match grads.get(v) {
                Some(g) => Ok(g.clone()),
                None => v.as_tensor().zeros_like(),
            }
        };
        let dx = grad_of(&xv)?;
        let dws = wv
            .iter()
            .map(|v| grad_of(v)?.flatten_all())
            .collect::<Result<Vec<_>>>()?;
        Ok((Some(dx), Some(Tensor::cat(&dws, 0)?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn gradients_match_the_plain_call_and_the_function_runs_again() -> Result<()> {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        // y = tanh(x @ a^T + b) * c, with a weight used twice.
        let f: Arc<Recompute> = Arc::new(move |x: &Tensor, w: &[Tensor]| {
            counter.fetch_add(1, Ordering::SeqCst);
            let h = x.matmul(&w[0].t()?)?.broadcast_add(&w[1])?.tanh()?;
            h.broadcast_mul(&w[2])?.matmul(&w[0])
        });
        let x = Var::from_tensor(&randn(&[5, 4], 1))?;
        let ws = [
            Var::from_tensor(&(randn(&[3, 4], 2) * 0.5)?)?,
            Var::from_tensor(&randn(&[3], 3))?,
            Var::from_tensor(&randn(&[3], 4))?,
        ];
        let wt: Vec<Tensor> = ws.iter().map(|v| v.as_tensor().clone()).collect();
        let g = randn(&[5, 4], 5);
        let plain = f(x.as_tensor(), &wt)?;
        let gp = (&plain * &g)?.sum_all()?.backward()?;
        calls.store(0, Ordering::SeqCst);
        let ck = checkpoint(x.as_tensor(), &wt, f.clone())?;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(max_diff(&plain, &ck), 0.0);
        let gc = (&ck * &g)?.sum_all()?.backward()?;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the backward pass recomputes");
        assert!(max_diff(gp.get(&x).unwrap(), gc.get(&x).unwrap()) < 1e-6);
        for w in &ws {
            assert!(max_diff(gp.get(w).unwrap(), gc.get(w).unwrap()) < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn without_gradients_it_is_the_function() -> Result<()> {
        let f: Arc<Recompute> = Arc::new(|x: &Tensor, w: &[Tensor]| x.broadcast_mul(&w[0]));
        let x = randn(&[2, 3], 1);
        let w = randn(&[3], 2);
        let y = checkpoint(&x, std::slice::from_ref(&w), f)?;
        assert!(!y.track_op());
        assert_eq!(max_diff(&y, &x.broadcast_mul(&w)?), 0.0);
        Ok(())
    }
}
