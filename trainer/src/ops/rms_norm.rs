//! RMSNorm: `y = x / sqrt(mean(x^2) + eps) * w` over the last dimension.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_slice, fused, PARALLEL_MIN};

/// RMSNorm of `x` (`(..., d)`) with weight `w` (`(d)`), differentiable in both.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) && x.is_contiguous() {
        x.apply_op1(Normalize { eps: eps as f32 })?.broadcast_mul(w)
    } else {
        rms_norm_reference(x, w, eps)
    }
}

/// RMSNorm as a composition of candle ops, computed in `f32` for 16-bit inputs.
pub fn rms_norm_reference(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let mean_sq = x32.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x32.broadcast_div(&(mean_sq + eps)?.sqrt()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(w)
}

/// `x / sqrt(mean(x^2) + eps)` per row, fused.
struct Normalize {
    eps: f32,
}

/// The gradient of [`Normalize`]: `r * (g - y * mean(g * y))` per row.
struct NormalizeBackward {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let sum_sq: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (sum_sq / row.len() as f32 + eps).sqrt()
}

fn rows_mut(dst: &mut [f32], d: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if dst.len() >= PARALLEL_MIN {
        dst.par_chunks_mut(d).enumerate().for_each(|(i, row)| f(i, row));
    } else {
        dst.chunks_mut(d).enumerate().for_each(|(i, row)| f(i, row));
    }
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "rms-normalize"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(storage, layout, "rms-normalize")?;
        let d = layout.dims()[layout.dims().len() - 1];
        let mut y = vec![0f32; x.len()];
        rows_mut(&mut y, d, |i, out| {
            let row = &x[i * d..(i + 1) * d];
            let r = inv_rms(row, self.eps);
            for (o, v) in out.iter_mut().zip(row) {
                *o = v * r;
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let _ = res;
        let grad = grad.contiguous()?;
        Ok(Some(
            arg.apply_op2_no_bwd(&grad, &NormalizeBackward { eps: self.eps })?,
        ))
    }
}

impl CustomOp2 for NormalizeBackward {
    fn name(&self) -> &'static str {
        "rms-normalize-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(xs, xl, "rms-normalize-backward")?;
        let g = cpu_slice(gs, gl, "rms-normalize-backward")?;
        let d = xl.dims()[xl.dims().len() - 1];
        let mut dx = vec![0f32; x.len()];
        rows_mut(&mut dx, d, |i, out| {
            let xr = &x[i * d..(i + 1) * d];
            let gr = &g[i * d..(i + 1) * d];
            let r = inv_rms(xr, self.eps);
            let dot: f32 = xr.iter().zip(gr).map(|(x, g)| x * g).sum::<f32>() * r;
            let c = r * dot / d as f32;
            for ((o, x), g) in out.iter_mut().zip(xr).zip(gr) {
                *o = r * (g - x * c);
            }
        });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::Var;

    #[test]
    fn fused_matches_the_reference_forward_and_backward() -> Result<()> {
        let x = Var::from_tensor(&randn(&[3, 5, 64], 1))?;
        let w = Var::from_tensor(&randn(&[64], 2))?;
        let g = randn(&[3, 5, 64], 3);
        let fused = rms_norm(&x, &w, 1e-6)?;
        let reference = rms_norm_reference(&x, &w, 1e-6)?;
        assert!(max_diff(&fused, &reference) < 1e-5);
        let gf = (&fused * &g)?.sum_all()?.backward()?;
        let gr = (&reference * &g)?.sum_all()?.backward()?;
        let d = max_diff(gf.get(&x).unwrap(), gr.get(&x).unwrap());
        assert!(d < 1e-4, "{d}");
        assert!(max_diff(gf.get(&w).unwrap(), gr.get(&w).unwrap()) < 1e-4);
        Ok(())
    }

    #[test]
    fn large_inputs_take_the_parallel_path_and_agree() -> Result<()> {
        let x = randn(&[300, 128], 4);
        let w = randn(&[128], 5);
        assert!(max_diff(&rms_norm(&x, &w, 1e-5)?, &rms_norm_reference(&x, &w, 1e-5)?) < 1e-5);
        Ok(())
    }
}
