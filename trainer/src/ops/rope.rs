//! Rotary position embedding in the "rotate half" form Qwen2 uses.
//!
//! `x` is `(batch, seq, heads, head_dim)`, the layout the q/k projections come
//! out in, and `cos`/`sin` are `(seq, head_dim / 2)` or, for rows with their
//! own positions (left-padded batches), `(batch, seq, head_dim / 2)`. For
//! `i < head_dim / 2`: `y[i] = x[i] cos[i] - x[i + h] sin[i]` and
//! `y[i + h] = x[i] sin[i] + x[i + h] cos[i]`.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_slice, fused, PARALLEL_MIN};

/// Applies the rotation; differentiable in `x` (the tables are constants).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    check(x, cos, sin)?;
    if fused(x) && x.is_contiguous() && cos.is_contiguous() && sin.is_contiguous() {
        x.apply_op3(cos, sin, Rope { inverse: false })
    } else {
        rope_reference(x, cos, sin)
    }
}

/// The rotation as a composition of candle ops.
pub fn rope_reference(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    check(x, cos, sin)?;
    let half = x.dim(D::Minus1)? / 2;
    let (cos, sin) = (tables_for(x, cos)?, tables_for(x, sin)?);
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let y2 = (x1.broadcast_mul(&sin)? + x2.broadcast_mul(&cos)?)?;
    Tensor::cat(&[y1, y2], D::Minus1)
}

/// A table shaped to broadcast against `x`: `(1 or b, t, 1, half)`.
fn tables_for(x: &Tensor, table: &Tensor) -> Result<Tensor> {
    let table = table.to_dtype(x.dtype())?;
    match table.rank() {
        2 => table.unsqueeze(0)?.unsqueeze(2),
        _ => table.unsqueeze(2),
    }
}

fn check(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<()> {
    let (b, t, _h, d) = x.dims4()?;
    let want: &[usize] = match cos.rank() {
        2 => &[t, d / 2],
        _ => &[b, t, d / 2],
    };
    if d % 2 != 0 || cos.dims() != want || sin.dims() != want {
        candle_core::bail!(
            "rope: x {:?} needs cos/sin of shape {want:?}, got {:?} and {:?}",
            x.dims(),
            cos.dims(),
            sin.dims()
        );
    }
    Ok(())
}

/// The fused rotation; `inverse` rotates by `-angle` (the backward pass).
struct Rope {
    inverse: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        cs: &CpuStorage,
        cl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(xs, xl, "rope x")?;
        let cos = cpu_slice(cs, cl, "rope cos")?;
        let sin = cpu_slice(ss, sl, "rope sin")?;
        let (b, t, h, d) = xl.shape().dims4()?;
        let half = d / 2;
        let per_row = cl.dims().len() == 3;
        let sign = if self.inverse { -1f32 } else { 1f32 };
        let mut y = vec![0f32; x.len()];
        // One chunk per (batch, position): all heads share the angles.
        let body = |bt: usize, out: &mut [f32]| {
            let table = if per_row { bt } else { bt % t } * half;
            let (c, s) = (&cos[table..table + half], &sin[table..table + half]);
            let src = &x[bt * h * d..(bt + 1) * h * d];
            for (xh, oh) in src.chunks(d).zip(out.chunks_mut(d)) {
                for i in 0..half {
                    let (x1, x2) = (xh[i], xh[i + half]);
                    let (c, s) = (c[i], sign * s[i]);
                    oh[i] = x1 * c - x2 * s;
                    oh[i + half] = x1 * s + x2 * c;
                }
            }
        };
        if x.len() >= PARALLEL_MIN {
            y.par_chunks_mut(h * d).enumerate().for_each(|(i, o)| body(i, o));
        } else {
            y.chunks_mut(h * d).enumerate().for_each(|(i, o)| body(i, o));
        }
        debug_assert_eq!(y.len(), b * t * h * d);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let inverse = Rope {
            inverse: !self.inverse,
        };
        let dx = grad.contiguous()?.apply_op3_no_bwd(cos, sin, &inverse)?;
        Ok((Some(dx), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::Var;

    #[test]
    fn fused_matches_the_reference_with_shared_and_per_row_tables() -> Result<()> {
        for (seed, tables) in [(1u64, vec![9usize, 8]), (2, vec![2, 9, 8])] {
            let x = Var::from_tensor(&randn(&[2, 9, 3, 16], seed))?;
            let cos = randn(&tables, seed + 10);
            let sin = randn(&tables, seed + 20);
            let g = randn(&[2, 9, 3, 16], seed + 30);
            let a = rope(&x, &cos, &sin)?;
            let b = rope_reference(&x, &cos, &sin)?;
            assert!(max_diff(&a, &b) < 1e-5);
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            assert!(max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn wrong_table_shapes_are_named() {
        let x = randn(&[1, 4, 2, 8], 1);
        let err = rope(&x, &randn(&[3, 4], 2), &randn(&[3, 4], 3)).unwrap_err();
        assert!(err.to_string().contains("needs cos/sin of shape [4, 4]"), "{err}");
    }
}
