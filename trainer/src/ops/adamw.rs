//! One AdamW update of one parameter, fused into a single pass over the
//! parameter, its gradient and its two moments (the composition of candle
//! ops walks them a dozen times, allocating each intermediate).

use candle_core::{DType, Result, Storage, Tensor};
use rayon::prelude::*;

use super::{cpu_slice, fused, PARALLEL_MIN};

/// The scalars of one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the second moment's root.
    pub eps: f64,
    /// The parameter's decoupled weight decay (0 for none); the update
    /// multiplies the parameter by `1 - lr * weight_decay`.
    pub weight_decay: f64,
    /// Bias corrections `1 - beta1^t` and `1 - beta2^t`.
    pub bias_correction: (f64, f64),
}

/// The updated `(parameter, first moment, second moment)` from the parameter
/// `p` (any float dtype), its gradient `g` and the `f32` moments `m`, `v`:
/// `m' = b1 m + (1 - b1) g`, `v' = b2 v + (1 - b2) g^2`,
/// `p' = p (1 - lr wd) - lr (m' / bc1) / (sqrt(v' / bc2) + eps)`, in `f32`.
/// The parameter comes back in its own dtype.
pub fn adamw_update(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: AdamWStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    let shape = p.shape();
    if g.shape() != shape || m.shape() != shape || v.shape() != shape {
        candle_core::bail!(
            "adamw_update: parameter {:?}, gradient {:?}, moments {:?} and {:?} differ",
            p.dims(),
            g.dims(),
            m.dims(),
            v.dims()
        );
    }
    if !(fused(p) && fused(g) && fused(m) && fused(v)) {
        return adamw_update_reference(p, g, m, v, s);
    }
    let (p, g, m, v) = (p.contiguous()?, g.contiguous()?, m.contiguous()?, v.contiguous()?);
    let n = p.elem_count();
    let mut out = vec![0f32; 3 * n];
    {
        let guards = [&p, &g, &m, &v].map(|t| t.storage_and_layout());
        let data = guards
            .iter()
            .map(|(st, layout)| match &**st {
                Storage::Cpu(cpu) => cpu_slice(cpu, layout, "adamw_update"),
                _ => candle_core::bail!("adamw_update: expected CPU tensors"),
            })
            .collect::<Result<Vec<_>>>()?;
        let (pd, gd, md, vd) = (data[0], data[1], data[2], data[3]);
        let (np, rest) = out.split_at_mut(n);
        let (nm, nv) = rest.split_at_mut(n);
        let (b1, b2) = (s.beta1 as f32, s.beta2 as f32);
        let (bc1, bc2) = (s.bias_correction.0 as f32, s.bias_correction.1 as f32);
        let (lr, eps, keep) = (s.lr as f32, s.eps as f32, (1.0 - s.lr * s.weight_decay) as f32);
        type Out<'a> = ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]);
        type In<'a> = (((&'a [f32], &'a [f32]), &'a [f32]), &'a [f32]);
        let body = |(((np, nm), nv), (((p, g), m), v)): (Out<'_>, In<'_>)| {
            for j in 0..np.len() {
                let m1 = b1 * m[j] + (1.0 - b1) * g[j];
                let v1 = b2 * v[j] + (1.0 - b2) * (g[j] * g[j]);
                let update = (m1 / bc1) / ((v1 / bc2).sqrt() + eps);
                nm[j] = m1;
                nv[j] = v1;
                np[j] = p[j] * keep - update * lr;
            }
        };
        let c = PARALLEL_MIN;
        if n >= 4 * c {
            let outs = np
                .par_chunks_mut(c)
                .zip(nm.par_chunks_mut(c))
                .zip(nv.par_chunks_mut(c));
            let ins = pd
                .par_chunks(c)
                .zip(gd.par_chunks(c))
                .zip(md.par_chunks(c))
                .zip(vd.par_chunks(c));
            outs.zip(ins).for_each(body);
        } else {
            let outs = np.chunks_mut(c).zip(nm.chunks_mut(c)).zip(nv.chunks_mut(c));
            let ins = pd.chunks(c).zip(gd.chunks(c)).zip(md.chunks(c)).zip(vd.chunks(c));
            outs.zip(ins).for_each(body);
        }
    }
    let all = Tensor::from_vec(out, 3 * n, p.device())?;
    let part = |k: usize| all.narrow(0, k * n, n)?.reshape(shape);
    Ok((part(0)?, part(1)?, part(2)?))
}

/// [`adamw_update`] as a composition of candle ops (the optimizer's original
/// update).
pub fn adamw_update_reference(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: AdamWStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (bc1, bc2) = s.bias_correction;
    let g = g.to_dtype(DType::F32)?;
    let m = ((m * s.beta1)? + (&g * (1.0 - s.beta1))?)?;
    let v = ((v * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
    let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + s.eps)?)?;
    let p32 = p.to_dtype(DType::F32)?;
    let next = ((p32 * (1.0 - s.lr * s.weight_decay))? - (update * s.lr)?)?;
    Ok((next.to_dtype(p.dtype())?, m, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};

    #[test]
    fn fused_matches_the_reference() -> Result<()> {
        let s = AdamWStep {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
            bias_correction: (0.19, 0.0199),
        };
        for shape in [vec![3usize, 5], vec![300, 257]] {
            let (p, g) = (randn(&shape, 1), randn(&shape, 2));
            let (m, v) = ((randn(&shape, 3) * 0.1)?, randn(&shape, 4).sqr()?);
            let a = adamw_update(&p, &g, &m, &v, s)?;
            let b = adamw_update_reference(&p, &g, &m, &v, s)?;
            assert!(
                max_diff(&a.0, &b.0) < 1e-5 && max_diff(&a.1, &b.1) < 1e-6 && max_diff(&a.2, &b.2) < 1e-6
            );
            assert_eq!(a.0.dims(), shape.as_slice());
        }
        Ok(())
    }
}
