//! The SwiGLU gate of the MLP: `silu(g) * u` for the gate and up projections
//! held side by side in one tensor, `gu = [g | u]` over the last dimension
//! (the output of one matmul against the stacked gate and up weights).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::gemm::round_bf16;
use super::math::{dispatch_avx512, sigmoid, with_avx512};
use super::{cpu_slice, fused, PARALLEL_MIN};

/// `silu(gu[..., :i]) * gu[..., i:]` for `gu` of shape `(..., 2i)`;
/// differentiable.
pub fn swiglu(gu: &Tensor) -> Result<Tensor> {
    check(gu)?;
    if fused(gu) {
        gu.contiguous()?.apply_op1(SwiGlu)
    } else {
        swiglu_reference(gu)
    }
}

/// [`swiglu`] as a composition of candle ops.
pub fn swiglu_reference(gu: &Tensor) -> Result<Tensor> {
    check(gu)?;
    let i = gu.dim(D::Minus1)? / 2;
    gu.narrow(D::Minus1, 0, i)?.silu()? * gu.narrow(D::Minus1, i, i)?
}

fn check(gu: &Tensor) -> Result<()> {
    if gu.rank() == 0 || gu.dim(D::Minus1)? % 2 != 0 {
        candle_core::bail!("swiglu: the last dimension of {:?} must be even", gu.dims());
    }
    Ok(())
}

struct SwiGlu;

/// `(gu, grad)` → gradient of `gu`: `dg = grad * u * s * (1 + g * (1 - s))`,
/// `du = grad * g * s` with `s = sigmoid(g)`.
struct SwiGluBackward;

fn out_shape(layout: &Layout) -> Shape {
    let mut dims = layout.dims().to_vec();
    *dims.last_mut().expect("rank checked") /= 2;
    Shape::from(dims)
}

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let gu = cpu_slice(storage, layout, "swiglu")?;
        let two_i = layout.dims()[layout.dims().len() - 1];
        Ok((CpuStorage::F32(forward(gu, two_i / 2)), out_shape(layout)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &SwiGluBackward)?))
    }
}

impl CustomOp2 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gu = cpu_slice(s1, l1, "swiglu-backward")?;
        let grad = cpu_slice(s2, l2, "swiglu-backward")?;
        let two_i = l1.dims()[l1.dims().len() - 1];
        Ok((CpuStorage::F32(backward(gu, grad, two_i / 2)), l1.shape().clone()))
    }
}

/// `silu(g) * u` of rows `[g | u]` of width `2i`.
pub(super) fn forward(gu: &[f32], i: usize) -> Vec<f32> {
    let mut y = vec![0f32; gu.len() / 2];
    let body = |(out, row): (&mut [f32], &[f32])| forward_row(out, row, i);
    if gu.len() >= PARALLEL_MIN {
        y.par_chunks_mut(i).zip(gu.par_chunks(2 * i)).for_each(body);
    } else {
        y.chunks_mut(i).zip(gu.chunks(2 * i)).for_each(body);
    }
    y
}

/// [`forward`]'s output for one row `[g | u]` (`2 i` wide); AVX-512 where
/// the CPU has it (the same operations, bit for bit).
fn forward_row(out: &mut [f32], row: &[f32], i: usize) {
    dispatch_avx512!(forward_row_avx512, forward_row_plain, out, row, i)
}

with_avx512!(forward_row_avx512, forward_row_plain, (out: &mut [f32], row: &[f32], i: usize) -> ());

#[inline(always)]
fn forward_row_plain(out: &mut [f32], row: &[f32], i: usize) {
    let (g, u) = row.split_at(i);
    for ((o, g), u) in out.iter_mut().zip(g).zip(u) {
        *o = g * sigmoid(*g) * u;
    }
}

/// [`backward`]'s gradient for one row `[g | u]` and its output's gradient
/// `gr`; AVX-512 where the CPU has it, as [`forward_row`].
fn backward_row(out: &mut [f32], row: &[f32], gr: &[f32], i: usize) {
    dispatch_avx512!(backward_row_avx512, backward_row_plain, out, row, gr, i)
}

with_avx512!(backward_row_avx512, backward_row_plain, (out: &mut [f32], row: &[f32], gr: &[f32], i: usize) -> ());

#[inline(always)]
fn backward_row_plain(out: &mut [f32], row: &[f32], gr: &[f32], i: usize) {
    let (g, u) = row.split_at(i);
    let (dg, du) = out.split_at_mut(i);
    for ((((dg, du), g), u), gr) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(gr) {
        let s = sigmoid(*g);
        *dg = gr * u * s * (1.0 + g * (1.0 - s));
        *du = gr * g * s;
    }
}

/// [`forward`] rounded to bf16 bits, for a bf16 product that reads it:
/// the rounding of the same `f32` values, without an `f32` copy.
pub(super) fn forward_bits(gu: &[f32], i: usize) -> Vec<u16> {
    let mut y = vec![0u16; gu.len() / 2];
    y.par_chunks_mut(i).zip(gu.par_chunks(2 * i)).for_each_init(
        || vec![0f32; i],
        |buf, (out, row)| {
            forward_row(buf, row, i);
            round_bf16(buf, out);
        },
    );
    y
}

/// [`backward`] rounded to bf16 bits (as [`forward_bits`]).
pub(super) fn backward_bits(gu: &[f32], grad: &[f32], i: usize) -> Vec<u16> {
    let mut d = vec![0u16; gu.len()];
    d.par_chunks_mut(2 * i)
        .zip(gu.par_chunks(2 * i))
        .zip(grad.par_chunks(i))
        .for_each_init(
            || vec![0f32; 2 * i],
            |buf, ((out, row), gr)| {
                backward_row(buf, row, gr, i);
                round_bf16(buf, out);
            },
        );
    d
}

/// The gradient of rows `[g | u]` from that of their [`forward`] output.
pub(super) fn backward(gu: &[f32], grad: &[f32], i: usize) -> Vec<f32> {
    let mut d = vec![0f32; gu.len()];
    let body = |((out, row), gr): ((&mut [f32], &[f32]), &[f32])| backward_row(out, row, gr, i);
    if gu.len() >= PARALLEL_MIN {
        d.par_chunks_mut(2 * i)
            .zip(gu.par_chunks(2 * i))
            .zip(grad.par_chunks(i))
            .for_each(body);
    } else {
        d.chunks_mut(2 * i)
            .zip(gu.chunks(2 * i))
            .zip(grad.chunks(i))
            .for_each(body);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::Var;

    #[test]
    fn the_avx512_rows_are_the_plain_ones_bit_for_bit() {
        // Where the CPU has AVX-512 the dispatching functions run the wide
        // build; it must not change a bit (wide values, saturating ones).
        let i = 301;
        let row: Vec<f32> = (0..2 * i).map(|k| ((k as f32) * 0.731).sin() * 40.0).collect();
        let gr: Vec<f32> = (0..i).map(|k| ((k as f32) * 0.37).cos()).collect();
        let (mut a, mut b) = (vec![0f32; i], vec![0f32; i]);
        forward_row(&mut a, &row, i);
        forward_row_plain(&mut b, &row, i);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        let (mut a, mut b) = (vec![0f32; 2 * i], vec![0f32; 2 * i]);
        backward_row(&mut a, &row, &gr, i);
        backward_row_plain(&mut b, &row, &gr, i);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn fused_matches_the_reference_forward_and_backward() -> Result<()> {
        for shape in [[2usize, 3, 10], [4, 64, 256]] {
            let gu = Var::from_tensor(&(randn(&shape, 1) * 3.0)?)?;
            let mut half = shape;
            half[2] /= 2;
            let g = randn(&half, 2);
            let (a, b) = (swiglu(&gu)?, swiglu_reference(&gu)?);
            assert_eq!(a.dims(), &half);
            assert!(max_diff(&a, &b) < 1e-5);
            let ga = (&a * &g)?.sum_all()?.backward()?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            assert!(max_diff(ga.get(&gu).unwrap(), gb.get(&gu).unwrap()) < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn odd_widths_are_refused() {
        assert!(swiglu(&randn(&[2, 3], 1))
            .unwrap_err()
            .to_string()
            .contains("even"));
    }
}
