//! RMSNorm: `y = x / sqrt(mean(x^2) + eps) * w` over the last dimension.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_slice, fused, PARALLEL_MIN};

/// RMSNorm of `x` (`(..., d)`) with weight `w` (`(d)`), differentiable in both.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) && fused(w) && x.is_contiguous() && w.is_contiguous() && w.dims() == [x.dim(D::Minus1)?] {
        x.apply_op2(w, RmsNorm { eps: eps as f32 })
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

/// `x / sqrt(mean(x^2) + eps) * w` per row, fused.
struct RmsNorm {
    eps: f32,
}

/// The gradients of [`RmsNorm`], `[dx | dw]` in one flat tensor: per row
/// `dx = r * (g * w) - x * r^3 * sum(g * w * x) / d`, and `dw = sum over rows of
/// g * x * r`.
struct RmsNormBackward {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let sum_sq: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (sum_sq / row.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(xs, xl, "rms-norm")?;
        let w = cpu_slice(ws, wl, "rms-norm weight")?;
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        let body = |(out, row): (&mut [f32], &[f32])| {
            let r = inv_rms(row, self.eps);
            for ((o, v), w) in out.iter_mut().zip(row).zip(w) {
                *o = v * r * w;
            }
        };
        if x.len() >= PARALLEL_MIN {
            y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(body);
        } else {
            y.chunks_mut(d).zip(x.chunks(d)).for_each(body);
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = x.apply_op3_no_bwd(w, &grad.contiguous()?, &RmsNormBackward { eps: self.eps })?;
        super::split_grads(&both, x, w)
    }
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(xs, xl, "rms-norm-backward")?;
        let w = cpu_slice(ws, wl, "rms-norm-backward")?;
        let g = cpu_slice(gs, gl, "rms-norm-backward")?;
        let d = w.len();
        let mut out = vec![0f32; x.len() + d];
        let (dx, dw) = out.split_at_mut(x.len());
        // Rows in chunks; each chunk writes its dx rows and returns its share of dw.
        let rows_per_chunk = (PARALLEL_MIN / d).max(1);
        let chunk = |((dx, x), g): ((&mut [f32], &[f32]), &[f32])| -> Vec<f32> {
            let mut dw = vec![0f32; d];
            for ((o, xr), gr) in dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)) {
                let r = inv_rms(xr, self.eps);
                let dot: f32 = xr.iter().zip(gr).zip(w).map(|((x, g), w)| x * g * w).sum();
                let c = r * r * r * dot / d as f32;
                for ((((o, x), g), w), acc) in o.iter_mut().zip(xr).zip(gr).zip(w).zip(dw.iter_mut()) {
                    *o = r * g * w - x * c;
                    *acc += g * x * r;
                }
            }
            dw
        };
        let n = rows_per_chunk * d;
        let partial: Vec<Vec<f32>> = if x.len() >= PARALLEL_MIN {
            dx.par_chunks_mut(n)
                .zip(x.par_chunks(n))
                .zip(g.par_chunks(n))
                .map(chunk)
                .collect()
        } else {
            dx.chunks_mut(n)
                .zip(x.chunks(n))
                .zip(g.chunks(n))
                .map(chunk)
                .collect()
        };
        for p in partial {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + d)))
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
        let x = Var::from_tensor(&randn(&[300, 128], 4))?;
        let w = Var::from_tensor(&randn(&[128], 5))?;
        let g = randn(&[300, 128], 6);
        let (a, b) = (rms_norm(&x, &w, 1e-5)?, rms_norm_reference(&x, &w, 1e-5)?);
        assert!(max_diff(&a, &b) < 1e-5);
        let ga = (&a * &g)?.sum_all()?.backward()?;
        let gb = (&b * &g)?.sum_all()?.backward()?;
        assert!(max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-4);
        // dw sums over 300 rows; compare relative to its size.
        let dw = max_diff(ga.get(&w).unwrap(), gb.get(&w).unwrap());
        assert!(dw < 1e-3, "{dw}");
        Ok(())
    }
}
