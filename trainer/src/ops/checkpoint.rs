//! Activation checkpointing: a function of one input and some weights whose
//! forward pass keeps nothing but its input, and whose backward pass runs it
//! again (with gradients on) to get the gradients of the input and weights.
//!
//! [`checkpoint`] runs `f(x, weights)` on detached copies (so no graph, and
//! none of the function's intermediate activations, outlives the call) and
//! attaches the result to the graph through one op. Its backward pass calls
//! `f` again on fresh variables over the same storage, multiplies the result
//! by the incoming gradient and runs candle's backward pass over that one
//! call. The weights' gradients then leave it one of two ways
//! ([`WeightGrads`]):
//!
//! - through candle's graph: the op's inputs are `x` and the weights packed
//!   into one flat tensor (a copy, which carries their gradients back through
//!   candle's `cat`);
//! - into a [`GradSink`], summed in `f32` outside the graph, and merged into
//!   the gradient store when the backward pass that the sink ran
//!   ([`GradSink::backward`]) ends. No packed copy of the weights is kept,
//!   and with `as_f32` the recomputation reads the weights as `f32`
//!   variables, so their gradients are never rounded to the weights' dtype
//!   nor summed by candle's (slow, zero-filled) 16-bit adds on the way: on
//!   the CPU those were a fifth of a bf16 step at the Qwen2.5-0.5B shape.
//!
//! The model checkpoints each decoder layer this way (`[train]
//! checkpoint_layers`): a layer's activations then live only while the
//! backward pass is inside it, for the price of a second forward pass.
//! It works on any device and dtype, since the recomputation is ordinary
//! candle ops.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, Var};

use super::grad_sink::GradSink;

/// A function checkpointed by [`checkpoint`]: the same numbers on every call.
pub type Recompute = dyn Fn(&Tensor, &[Tensor]) -> Result<Tensor> + Send + Sync;

/// Where [`checkpoint`] sends the weights' gradients (see the module docs).
#[derive(Clone)]
pub enum WeightGrads {
    /// Through candle's graph, like any op's.
    Graph,
    /// Into this sink, in `f32`; with `as_f32` the recomputation gets the
    /// weights as `f32` (the function must accept that).
    Sink {
        /// The sink; its [`GradSink::backward`] must run the backward pass.
        sink: GradSink,
        /// Recompute with `f32` copies of the weights.
        as_f32: bool,
    },
}

/// `f(x, weights)`, differentiable in `x` and every weight, keeping only `x`
/// (and, with [`WeightGrads::Graph`], a packed copy of the weights) for the
/// backward pass; see the module docs. When nothing needs a gradient it is
/// just `f`.
pub fn checkpoint(x: &Tensor, weights: &[Tensor], f: Arc<Recompute>, to: WeightGrads) -> Result<Tensor> {
    let detached: Vec<Tensor> = weights.iter().map(Tensor::detach).collect();
    let y = f(&x.detach(), &detached)?;
    let tracked = x.track_op() || weights.iter().any(Tensor::track_op);
    if !tracked {
        return Ok(y);
    }
    let inner = Inner {
        f,
        weights: weights.to_vec(),
    };
    match to {
        // The op's backward pass only runs when `x` needs a gradient.
        WeightGrads::Sink { sink, as_f32 } if x.track_op() => {
            x.apply_op2(&y.contiguous()?, Sunk { inner, sink, as_f32 })
        }
        _ => {
            let flat = weights
                .iter()
                .map(|w| w.flatten_all())
                .collect::<Result<Vec<_>>>()?;
            let packed = Tensor::cat(&flat, 0)?;
            x.apply_op3(&packed, &y.contiguous()?, Packed(inner))
        }
    }
}

/// What both kinds of checkpoint op keep: the function and its weights.
struct Inner {
    f: Arc<Recompute>,
    weights: Vec<Tensor>,
}

impl Inner {
    /// Runs `f` again on fresh variables (the weights in `f32` with
    /// `as_f32`) and returns the gradients of `x` and of each weight for the
    /// incoming gradient `grad`.
    fn recompute(&self, x: &Tensor, grad: &Tensor, as_f32: bool) -> Result<(Tensor, Vec<Tensor>)> {
        let xv = Var::from_tensor(&x.detach())?;
        let wv = self
            .weights
            .iter()
            .map(|w| {
                let w = w.detach();
                Var::from_tensor(&if as_f32 { w.to_dtype(DType::F32)? } else { w })
            })
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
        let dws = wv.iter().map(grad_of).collect::<Result<Vec<_>>>()?;
        Ok((grad_of(&xv)?, dws))
    }
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

/// The CUDA copy of the op's output: `checkpoint` passes a contiguous
/// result, and a fresh op output starts at offset 0, so cloning the buffer
/// is the copy.
#[cfg(feature = "cuda")]
fn cuda_copy_of(ys: &candle_core::CudaStorage, yl: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
    match yl.contiguous_offsets() {
        Some((0, n)) if n == yl.shape().elem_count() => Ok((ys.try_clone(yl)?, yl.shape().clone())),
        _ => candle_core::bail!("checkpoint: the output must be contiguous from its start"),
    }
}

/// The op whose weight gradients go through the graph (`x`, the packed
/// weights, the result).
struct Packed(Inner);

impl CustomOp3 for Packed {
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
        cuda_copy_of(ys, yl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _packed: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dws) = self.0.recompute(x, grad, false)?;
        let flat = dws.iter().map(Tensor::flatten_all).collect::<Result<Vec<_>>>()?;
        Ok((Some(dx), Some(Tensor::cat(&flat, 0)?), None))
    }
}

/// The op whose weight gradients go to a [`GradSink`] (`x`, the result).
struct Sunk {
    inner: Inner,
    sink: GradSink,
    as_f32: bool,
}

impl CustomOp2 for Sunk {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    /// The value computed by [`checkpoint`], copied into the graph.
    fn cpu_fwd(
        &self,
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
        ys: &candle_core::CudaStorage,
        yl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_copy_of(ys, yl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dws) = self.inner.recompute(x, grad, self.as_f32)?;
        for (w, g) in self.inner.weights.iter().zip(&dws) {
            if w.track_op() {
                self.sink.add(w, g.clone())?;
            }
        }
        Ok((Some(dx), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// y = tanh(x @ a^T + b) * c @ a, with the weight `a` used twice; the
    /// counter counts calls.
    fn function(calls: Arc<AtomicUsize>) -> Arc<Recompute> {
        Arc::new(move |x: &Tensor, w: &[Tensor]| {
            calls.fetch_add(1, Ordering::SeqCst);
            let h = x.matmul(&w[0].t()?)?.broadcast_add(&w[1])?.tanh()?;
            h.broadcast_mul(&w[2])?.matmul(&w[0])
        })
    }

    fn weights(dtype: DType) -> Result<[Var; 3]> {
        let v = |t: Tensor| Var::from_tensor(&t.to_dtype(dtype)?);
        Ok([
            v((randn(&[3, 4], 2) * 0.5)?)?,
            v(randn(&[3], 3))?,
            v(randn(&[3], 4))?,
        ])
    }

    fn tensors(ws: &[Var]) -> Vec<Tensor> {
        ws.iter().map(|v| v.as_tensor().clone()).collect()
    }

    #[test]
    fn gradients_match_the_plain_call_and_the_function_runs_again() -> Result<()> {
        let calls = Arc::new(AtomicUsize::new(0));
        let f = function(calls.clone());
        let x = Var::from_tensor(&randn(&[5, 4], 1))?;
        let ws = weights(DType::F32)?;
        let wt = tensors(&ws);
        let g = randn(&[5, 4], 5);
        let plain = f(x.as_tensor(), &wt)?;
        let gp = (&plain * &g)?.sum_all()?.backward()?;
        let sink = GradSink::default();
        let sunk = WeightGrads::Sink {
            sink: sink.clone(),
            as_f32: false,
        };
        for to in [WeightGrads::Graph, sunk] {
            calls.store(0, Ordering::SeqCst);
            let ck = checkpoint(x.as_tensor(), &wt, f.clone(), to)?;
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(max_diff(&plain, &ck), 0.0);
            let gc = sink.backward(&(&ck * &g)?.sum_all()?)?;
            assert_eq!(calls.load(Ordering::SeqCst), 2, "the backward pass recomputes");
            assert!(max_diff(gp.get(&x).unwrap(), gc.get(&x).unwrap()) < 1e-6);
            for w in &ws {
                assert!(max_diff(gp.get(w).unwrap(), gc.get(w).unwrap()) < 1e-6);
            }
        }
        Ok(())
    }

    #[test]
    fn a_sink_sums_a_weight_used_by_two_calls_and_by_the_graph() -> Result<()> {
        let f = function(Arc::new(AtomicUsize::new(0)));
        let x = Var::from_tensor(&randn(&[5, 4], 1))?;
        let ws = weights(DType::F32)?;
        let wt = tensors(&ws);
        // Two layers in a row, then the weight `c` once more outside them.
        let tail = |y: &Tensor| y.narrow(1, 0, 3)?.broadcast_mul(&wt[2]);
        let plain = tail(&f(&f(x.as_tensor(), &wt)?, &wt)?)?;
        let g = randn(&[5, 3], 5);
        let gp = (&plain * &g)?.sum_all()?.backward()?;
        let sink = GradSink::default();
        let to = || WeightGrads::Sink {
            sink: sink.clone(),
            as_f32: false,
        };
        let ck = checkpoint(
            &checkpoint(x.as_tensor(), &wt, f.clone(), to())?,
            &wt,
            f.clone(),
            to(),
        )?;
        let gc = sink.backward(&(&tail(&ck)? * &g)?.sum_all()?)?;
        for w in ws.iter().chain([&x]) {
            assert!(max_diff(gp.get(w).unwrap(), gc.get(w).unwrap()) < 1e-5);
        }
        // A second pass starts from zero, not from the first one's sums.
        let again = sink.backward(&(&tail(&ck)? * &g)?.sum_all()?)?;
        for w in &ws {
            assert_eq!(max_diff(gc.get(w).unwrap(), again.get(w).unwrap()), 0.0);
        }
        Ok(())
    }

    #[test]
    fn bf16_weights_get_f32_gradients_equal_to_the_graphs_before_rounding() -> Result<()> {
        // The function reads its weights in f32 either way (as the model's
        // fused layers do), so the sink's f32 gradient rounds to the graph's.
        let inner = function(Arc::new(AtomicUsize::new(0)));
        let f: Arc<Recompute> = Arc::new(move |x: &Tensor, w: &[Tensor]| {
            let w = w
                .iter()
                .map(|t| t.to_dtype(DType::F32))
                .collect::<Result<Vec<_>>>()?;
            inner(&x.to_dtype(DType::F32)?, &w)?.to_dtype(DType::BF16)
        });
        let x = Var::from_tensor(&randn(&[5, 4], 1).to_dtype(DType::BF16)?)?;
        let ws = weights(DType::BF16)?;
        let wt = tensors(&ws);
        let g = randn(&[5, 4], 5).to_dtype(DType::BF16)?;
        let sink = GradSink::default();
        let graph = checkpoint(x.as_tensor(), &wt, f.clone(), WeightGrads::Graph)?;
        let gg = (&graph * &g)?.sum_all()?.backward()?;
        let to = WeightGrads::Sink {
            sink: sink.clone(),
            as_f32: true,
        };
        let sunk = checkpoint(x.as_tensor(), &wt, f, to)?;
        let gs = sink.backward(&(&sunk * &g)?.sum_all()?)?;
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        assert_eq!(
            max_diff(&f32(gg.get(&x).unwrap())?, &f32(gs.get(&x).unwrap())?),
            0.0
        );
        for w in &ws {
            let (a, b) = (gg.get(w).unwrap(), gs.get(w).unwrap());
            assert_eq!((a.dtype(), b.dtype()), (DType::BF16, DType::F32));
            assert_eq!(max_diff(&f32(a)?, &f32(&b.to_dtype(DType::BF16)?)?), 0.0);
        }
        Ok(())
    }

    #[test]
    fn a_sunk_call_fails_outside_its_sinks_backward_pass() -> Result<()> {
        let f = function(Arc::new(AtomicUsize::new(0)));
        let x = Var::from_tensor(&randn(&[5, 4], 1))?;
        let wt = tensors(&weights(DType::F32)?);
        let to = WeightGrads::Sink {
            sink: GradSink::default(),
            as_f32: false,
        };
        let y = checkpoint(x.as_tensor(), &wt, f, to)?;
        let err = y.sum_all()?.backward().unwrap_err().to_string();
        assert!(err.contains("GradSink"), "{err}");
        Ok(())
    }

    #[test]
    fn without_gradients_it_is_the_function() -> Result<()> {
        let f: Arc<Recompute> = Arc::new(|x: &Tensor, w: &[Tensor]| x.broadcast_mul(&w[0]));
        let x = randn(&[2, 3], 1);
        let w = randn(&[3], 2);
        let y = checkpoint(&x, std::slice::from_ref(&w), f, WeightGrads::Graph)?;
        assert!(!y.track_op());
        assert_eq!(max_diff(&y, &x.broadcast_mul(&w)?), 0.0);
        Ok(())
    }
}
