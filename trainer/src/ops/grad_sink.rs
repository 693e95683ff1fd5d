//! Gradients summed in `f32` outside candle's graph.
//!
//! candle's backward pass gives every gradient a zero-filled buffer and adds
//! into it, in the tensor's dtype; for bf16 that add converts eight elements
//! per out-of-line call. Ops whose weights are large send those weights'
//! gradients here instead, in `f32` ([`super::checkpoint`]'s recomputed
//! layers, the LM head, the embedding lookup), and [`GradSink::backward`]
//! puts the sums in the gradient store when the backward pass ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Result, Tensor, TensorId};

/// Weight gradients summed in `f32` outside candle's graph while
/// [`GradSink::backward`] runs a backward pass, then handed back in its
/// gradient store. An op that sends gradients here fails its backward pass
/// when that pass was not started by [`GradSink::backward`], so no gradient
/// is ever silently left behind.
#[derive(Clone, Default)]
pub struct GradSink(Arc<Mutex<SinkState>>);

#[derive(Default)]
struct SinkState {
    armed: bool,
    /// Per weight: the weight and its gradient sum so far.
    sums: HashMap<TensorId, (Tensor, Tensor)>,
}

impl GradSink {
    fn state(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `loss.backward()`, with the gradients sent here (in `f32`) added to
    /// the returned store; a weight that also got a gradient through the
    /// graph gets the sum of both, in `f32`. One backward pass per sink at a
    /// time.
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        {
            let mut s = self.state();
            if s.armed {
                candle_core::bail!("GradSink::backward: another backward pass is using this sink");
            }
            s.armed = true;
            s.sums.clear();
        }
        let out = loss.backward();
        let sums = {
            let mut s = self.state();
            s.armed = false;
            std::mem::take(&mut s.sums)
        };
        let mut grads = out?;
        for (w, g) in sums.into_values() {
            let g = match grads.remove(&w) {
                Some(prev) => (prev.to_dtype(DType::F32)? + g)?,
                None => g,
            };
            grads.insert(&w, g);
        }
        Ok(grads)
    }

    /// The sum for `w`, to update under the lock; an error outside a
    /// backward pass run by [`GradSink::backward`].
    fn with_sum<R>(&self, w: &Tensor, f: impl FnOnce(Option<Tensor>) -> Result<(Tensor, R)>) -> Result<R> {
        let mut s = self.state();
        if !s.armed {
            candle_core::bail!(
                "these weights send their gradients to a GradSink, so run the backward pass \
                 through it (Qwen2::backward), not Tensor::backward"
            );
        }
        let (sum, out) = f(s.sums.remove(&w.id()).map(|(_, g)| g))?;
        s.sums.insert(w.id(), (w.clone(), sum));
        Ok(out)
    }

    /// Adds `g` (shaped like `w`) to the gradient of `w`, in `f32`. The sink
    /// keeps `g` as the sum when it is the first, and may later write into
    /// it: pass a tensor nothing else reads.
    pub(crate) fn add(&self, w: &Tensor, g: Tensor) -> Result<()> {
        let g = g.to_dtype(DType::F32)?;
        self.with_sum(w, |prev| {
            let sum = match prev {
                Some(prev) => (prev + g)?,
                None => g,
            };
            Ok((sum, ()))
        })
    }

    /// Adds row `k` of `rows` (`(ids.len(), d)`) to row `ids[k]` of the
    /// gradient of `w` (`(vocab, d)`), in `f32`: an embedding lookup's
    /// gradient, scattered into the sum in place on the CPU.
    pub(crate) fn add_rows(&self, w: &Tensor, ids: &[u32], rows: &Tensor) -> Result<()> {
        let (vocab, d) = w.dims2()?;
        if rows.dims() != [ids.len(), d] {
            candle_core::bail!(
                "GradSink::add_rows: rows {:?} for {} ids of width {d}",
                rows.dims(),
                ids.len()
            );
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("GradSink::add_rows: id {id} is out of range for {vocab} rows");
        }
        let rows = rows.to_dtype(DType::F32)?.contiguous()?;
        self.with_sum(w, |prev| {
            let sum = match prev {
                Some(sum) => sum,
                None => Tensor::zeros((vocab, d), DType::F32, w.device())?,
            };
            if sum.device().is_cpu() && sum.is_contiguous() {
                sum.inplace_op2(&rows, &AddRows { ids })?;
                return Ok((sum, ()));
            }
            let ids = Tensor::new(ids, rows.device())?;
            Ok((sum.index_add(&ids, &rows, 0)?, ()))
        })
    }
}

/// `dst[ids[k]] += src[k]` over rows, in place.
struct AddRows<'a> {
    ids: &'a [u32],
}

impl InplaceOp2 for AddRows<'_> {
    fn name(&self) -> &'static str {
        "add-rows"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dl: &Layout, src: &CpuStorage, sl: &Layout) -> Result<()> {
        let (CpuStorage::F32(dst), CpuStorage::F32(src)) = (dst, src) else {
            candle_core::bail!("add-rows: expected f32 tensors");
        };
        let (Some((a, b)), Some((c, e))) = (dl.contiguous_offsets(), sl.contiguous_offsets()) else {
            candle_core::bail!("add-rows: expected contiguous tensors");
        };
        let (dst, src) = (&mut dst[a..b], &src[c..e]);
        let d = src.len() / self.ids.len().max(1);
        for (&id, row) in self.ids.iter().zip(src.chunks_exact(d.max(1))) {
            let at = id as usize * d;
            dst[at..at + d].iter_mut().zip(row).for_each(|(x, y)| *x += y);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::{CustomOp1, Device, Shape, Var};

    /// `w * 1` whose backward sends the incoming gradient densely and as
    /// rows `ids` (of the first `ids.len()` rows of the gradient) to the sink.
    struct Sends {
        sink: GradSink,
        w: Tensor,
        ids: Vec<u32>,
    }

    impl CustomOp1 for Sends {
        fn name(&self) -> &'static str {
            "sends"
        }

        fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
            let Some((a, b)) = l.contiguous_offsets() else {
                candle_core::bail!("contiguous only")
            };
            match s {
                CpuStorage::F32(d) => Ok((CpuStorage::F32(d[a..b].to_vec()), l.shape().clone())),
                _ => candle_core::bail!("f32 only"),
            }
        }

        fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
            self.sink.add(&self.w, grad.copy()?)?;
            let rows = grad.narrow(0, 0, self.ids.len())?;
            self.sink.add_rows(&self.w, &self.ids, &rows)?;
            Ok(None)
        }
    }

    #[test]
    fn sums_in_f32_and_merges_with_the_graphs_gradient() -> Result<()> {
        // loss = sum(g * (w * x + sends(w))): the graph's gradient of w is
        // g * x; the op sends g densely and rows 0..3 of g to rows 2, 0, 2.
        let sink = GradSink::default();
        let w = Var::from_tensor(&randn(&[4, 3], 1))?;
        let (x, g) = (randn(&[4, 3], 2), randn(&[4, 3], 3));
        let ids = vec![2u32, 0, 2];
        let op = || Sends {
            sink: sink.clone(),
            w: w.as_tensor().clone(),
            ids: ids.clone(),
        };
        let y = ((w.as_tensor() * &x)? + w.as_tensor().apply_op1(op())?)?;
        let loss = (&y * &g)?.sum_all()?;
        let err = loss.backward().unwrap_err().to_string();
        assert!(err.contains("GradSink"), "{err}");
        let grads = sink.backward(&loss)?;
        let mut want = ((&g * &x)? + &g)?.to_vec2::<f32>()?;
        let gv = g.to_vec2::<f32>()?;
        for (k, &id) in ids.iter().enumerate() {
            for j in 0..3 {
                want[id as usize][j] += gv[k][j];
            }
        }
        assert!(max_diff(grads.get(&w).unwrap(), &Tensor::new(want, &Device::Cpu)?) < 1e-6);
        // Out of range rows are refused.
        let bad = Sends { ids: vec![4], ..op() };
        let loss = w.as_tensor().apply_op1(bad)?.sum_all()?;
        let err = sink.backward(&loss).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        Ok(())
    }
}
