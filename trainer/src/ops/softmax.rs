//! Softmax and log-softmax over the last dimension.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_slice, fused, PARALLEL_MIN};

/// Softmax over the last dimension, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        softmax_reference(x)
    }
}

/// Log-softmax over the last dimension, differentiable.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(LogSoftmax)
    } else {
        log_softmax_reference(x)
    }
}

/// Softmax as a composition of candle ops.
pub fn softmax_reference(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?;
    let e = shifted.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Log-softmax as a composition of candle ops.
pub fn log_softmax_reference(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// Runs `f(row_in, row_out)` over the rows of length `d`, in parallel when large.
fn map_rows(src: &[f32], d: usize, f: impl Fn(&[f32], &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    if src.len() >= PARALLEL_MIN {
        src.par_chunks(d)
            .zip(dst.par_chunks_mut(d))
            .for_each(|(s, o)| f(s, o));
    } else {
        src.chunks(d).zip(dst.chunks_mut(d)).for_each(|(s, o)| f(s, o));
    }
    dst
}

/// Runs `f(a_row, b_row, row_out)` over matching rows of two inputs.
fn map_rows2(
    a: &[f32],
    b: &[f32],
    d: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut dst = vec![0f32; a.len()];
    if a.len() >= PARALLEL_MIN {
        a.par_chunks(d)
            .zip(b.par_chunks(d))
            .zip(dst.par_chunks_mut(d))
            .for_each(|((a, b), o)| f(a, b, o));
    } else {
        a.chunks(d)
            .zip(b.chunks(d))
            .zip(dst.chunks_mut(d))
            .for_each(|((a, b), o)| f(a, b, o));
    }
    dst
}

fn row_max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

fn last_dim(layout: &Layout) -> usize {
    layout.dims()[layout.dims().len() - 1]
}

struct Softmax;
struct SoftmaxBackward;
struct LogSoftmax;
struct LogSoftmaxBackward;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(storage, layout, "softmax")?;
        let y = map_rows(x, last_dim(layout), |row, out| {
            let max = row_max(row);
            let mut sum = 0f32;
            for (o, v) in out.iter_mut().zip(row) {
                *o = (v - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            out.iter_mut().for_each(|o| *o *= inv);
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward)?))
    }
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = cpu_slice(ys, yl, "softmax-backward")?;
        let g = cpu_slice(gs, gl, "softmax-backward")?;
        let dx = map_rows2(y, g, last_dim(yl), |y, g, out| {
            let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
            for ((o, y), g) in out.iter_mut().zip(y).zip(g) {
                *o = y * (g - dot);
            }
        });
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}

impl CustomOp1 for LogSoftmax {
    fn name(&self) -> &'static str {
        "log-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(storage, layout, "log-softmax")?;
        let y = map_rows(x, last_dim(layout), |row, out| {
            let max = row_max(row);
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let shift = max + sum.ln();
            for (o, v) in out.iter_mut().zip(row) {
                *o = v - shift;
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &LogSoftmaxBackward)?,
        ))
    }
}

impl CustomOp2 for LogSoftmaxBackward {
    fn name(&self) -> &'static str {
        "log-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = cpu_slice(ys, yl, "log-softmax-backward")?;
        let g = cpu_slice(gs, gl, "log-softmax-backward")?;
        let dx = map_rows2(y, g, last_dim(yl), |y, g, out| {
            let sum: f32 = g.iter().sum();
            for ((o, y), g) in out.iter_mut().zip(y).zip(g) {
                *o = g - y.exp() * sum;
            }
        });
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::Var;

    fn check(
        fused: fn(&Tensor) -> Result<Tensor>,
        reference: fn(&Tensor) -> Result<Tensor>,
        shape: &[usize],
    ) -> Result<()> {
        let x = Var::from_tensor(&(randn(shape, 7) * 3.0)?)?;
        let g = randn(shape, 8);
        let (a, b) = (fused(&x)?, reference(&x)?);
        assert!(max_diff(&a, &b) < 1e-5, "forward differs");
        let ga = (&a * &g)?.sum_all()?.backward()?;
        let gb = (&b * &g)?.sum_all()?.backward()?;
        assert!(
            max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-4,
            "backward differs"
        );
        Ok(())
    }

    #[test]
    fn softmax_matches_the_reference() -> Result<()> {
        check(softmax_last_dim, softmax_reference, &[2, 3, 17])?;
        check(softmax_last_dim, softmax_reference, &[64, 512])
    }

    #[test]
    fn log_softmax_matches_the_reference() -> Result<()> {
        check(log_softmax_last_dim, log_softmax_reference, &[2, 3, 17])?;
        check(log_softmax_last_dim, log_softmax_reference, &[64, 512])
    }

    #[test]
    fn masked_rows_stay_finite() -> Result<()> {
        let x = Tensor::new(
            &[[-1e30f32, -1e30, -1e30], [0.0, -1e30, 1.0]],
            &candle_core::Device::Cpu,
        )?;
        let y = softmax_last_dim(&x)?.to_vec2::<f32>()?;
        assert!(y.iter().flatten().all(|v| v.is_finite()));
        assert!((y[0][0] - 1.0 / 3.0).abs() < 1e-6);
        Ok(())
    }
}
