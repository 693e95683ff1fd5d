//! `x @ w^T` for a matrix of rows `x` (`(rows, in)`) and a weight `w` (`(out,
//! in)`), as one op with a fused backward pass.
//!
//! candle's `x.matmul(&w.t())` records a transpose of `w` and a matmul, and
//! its backward computes the weight's gradient as `(x^T @ grad)` then adds its
//! transpose, element by element through strides, into a fresh zero tensor.
//! Here the backward writes `grad^T @ x` straight into `w`'s layout.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm::{bf16_products, matmul, Bf16Products, Mat, MatMut};
use super::{cpu_slice, fused};

/// `x @ w^T` for `x` of shape `(rows, in)` and `w` of shape `(out, in)`;
/// differentiable in both.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (_, n_in) = x.dims2()?;
    let (_, w_in) = w.dims2()?;
    if n_in != w_in {
        candle_core::bail!("linear: x {:?} does not fit weight {:?}", x.dims(), w.dims());
    }
    if fused(x) && fused(w) {
        x.contiguous()?.apply_op2(
            &w.contiguous()?,
            Linear {
                bf16: bf16_products(),
            },
        )
    } else {
        linear_reference(x, w)
    }
}

/// [`linear`] as candle's matmul.
pub fn linear_reference(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)
}

/// `x @ wt` for `x` of shape `(rows, in)` and a weight stored transposed,
/// `wt` of shape `(in, out)`: the layout a product with few rows (decoding)
/// reads without repacking the weight. Not differentiable.
///
/// On the fused path each row's result is the same bits however many rows
/// come with it (the rollout engine's batch invariance rests on this): the
/// `gemm` kernels accumulate every output over `in` in an order set by the
/// shapes of `in` and `out` alone, except for a single row, which they take
/// as a matrix-vector product in another order; so one row is computed as
/// two (the test below holds the kernels to this).
pub fn linear_t(x: &Tensor, wt: &Tensor) -> Result<Tensor> {
    let (_, n_in) = x.dims2()?;
    let (w_in, _) = wt.dims2()?;
    if n_in != w_in {
        candle_core::bail!(
            "linear_t: x {:?} does not fit transposed weight {:?}",
            x.dims(),
            wt.dims()
        );
    }
    if fused(x) && fused(wt) {
        x.contiguous()?.apply_op2_no_bwd(&wt.contiguous()?, &LinearT)
    } else {
        x.matmul(wt)
    }
}

struct LinearT;

impl CustomOp2 for LinearT {
    fn name(&self) -> &'static str {
        "linear-t"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(xs, xl, "linear-t")?;
        let wt = cpu_slice(ws, wl, "linear-t weight")?;
        let (rows, n_in) = xl.shape().dims2()?;
        let (_, out) = wl.shape().dims2()?;
        // One row goes in twice (see `linear_t`).
        let doubled;
        let (x, m) = if rows == 1 {
            doubled = [x, x].concat();
            (doubled.as_slice(), 2)
        } else {
            (x, rows)
        };
        let mut y = vec![0f32; m * out];
        matmul(
            MatMut::rows(&mut y, 0, m, out, out),
            Mat::rows(x, 0, m, n_in, n_in),
            Mat::rows(wt, 0, n_in, out, out),
            false,
            true,
        );
        y.truncate(rows * out);
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }
}

/// `bf16`: the products are bf16 ones ([`Bf16Products`]), forward and backward.
struct Linear {
    bf16: bool,
}

/// `(x, w, grad)` → `[dx | dw]`: `dx = grad @ w`, `dw = grad^T @ x`.
struct LinearBackward {
    bf16: bool,
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _bf16 = Bf16Products::set(self.bf16);
        let x = cpu_slice(xs, xl, "linear")?;
        let w = cpu_slice(ws, wl, "linear weight")?;
        let (rows, n_in) = xl.shape().dims2()?;
        let (out, _) = wl.shape().dims2()?;
        let mut y = vec![0f32; rows * out];
        matmul(
            MatMut::rows(&mut y, 0, rows, out, out),
            Mat::rows(x, 0, rows, n_in, n_in),
            Mat::rows(w, 0, out, n_in, n_in).t(),
            false,
            true,
        );
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LinearBackward { bf16: self.bf16 })?;
        super::split_grads(&both, x, w)
    }
}

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "linear-backward"
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
        let _bf16 = Bf16Products::set(self.bf16);
        let x = cpu_slice(xs, xl, "linear-backward")?;
        let w = cpu_slice(ws, wl, "linear-backward")?;
        let g = cpu_slice(gs, gl, "linear-backward")?;
        let (rows, n_in) = xl.shape().dims2()?;
        let (out, _) = wl.shape().dims2()?;
        let mut both = vec![0f32; rows * n_in + out * n_in];
        let (dx, dw) = both.split_at_mut(rows * n_in);
        let gm = Mat::rows(g, 0, rows, out, out);
        matmul(
            MatMut::rows(dx, 0, rows, n_in, n_in),
            gm,
            Mat::rows(w, 0, out, n_in, n_in),
            false,
            true,
        );
        matmul(
            MatMut::rows(dw, 0, out, n_in, n_in),
            gm.t(),
            Mat::rows(x, 0, rows, n_in, n_in),
            false,
            true,
        );
        Ok((CpuStorage::F32(both), Shape::from(rows * n_in + out * n_in)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::Var;

    #[test]
    fn fused_matches_the_reference_forward_and_backward() -> Result<()> {
        for (rows, n_in, out) in [(3usize, 5usize, 7usize), (300, 64, 96), (1, 16, 40)] {
            let x = Var::from_tensor(&randn(&[rows, n_in], 1))?;
            let w = Var::from_tensor(&randn(&[out, n_in], 2))?;
            let g = randn(&[rows, out], 3);
            let (a, b) = (linear(&x, &w)?, linear_reference(&x, &w)?);
            assert!(max_diff(&a, &b) < 1e-4);
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            assert!(max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-4);
            assert!(max_diff(ga.get(&w).unwrap(), gb.get(&w).unwrap()) < 1e-3);
        }
        Ok(())
    }

    #[test]
    fn transposed_weights_give_the_same_product() -> Result<()> {
        for rows in [1usize, 16, 100] {
            let x = randn(&[rows, 48], 4);
            let w = randn(&[80, 48], 5);
            let wt = w.t()?.contiguous()?;
            assert!(max_diff(&linear_t(&x, &wt)?, &linear_reference(&x, &w)?) < 1e-4);
        }
        Ok(())
    }

    #[test]
    fn a_rows_product_does_not_depend_on_the_other_rows() -> Result<()> {
        // Shapes of the tiny models and of real ones (`in` above the kernels'
        // 512-deep blocks, `out` not a multiple of their tiles, products big
        // enough to run on several threads): each row alone and in batches
        // of every size gives the bits of the full product.
        for (n_in, out) in [(64usize, 40usize), (896, 1160), (1100, 2000), (160, 64)] {
            let x = randn(&[70, n_in], 6);
            let wt = randn(&[n_in, out], 7);
            let full = linear_t(&x, &wt)?.to_vec2::<f32>()?;
            for m in [1usize, 2, 3, 5, 8, 16, 17, 33, 64] {
                for start in [0usize, 70 - m] {
                    let part = linear_t(&x.narrow(0, start, m)?, &wt)?.to_vec2::<f32>()?;
                    assert_eq!(
                        part,
                        full[start..start + m],
                        "in {n_in} out {out}: rows {start}..+{m}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_named() {
        let err = linear(&randn(&[2, 3], 1), &randn(&[4, 5], 2)).unwrap_err();
        assert!(err.to_string().contains("does not fit"));
    }
}
