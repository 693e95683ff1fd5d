//! The embedding lookup, whose table's gradient goes to a [`GradSink`].
//!
//! candle's `index_select` backward fills a table-sized buffer with zeros in
//! the table's dtype, scatters the rows into it, and adds it into another
//! zero-filled one: for Qwen2.5's 152K x 896 bf16 table, several passes over
//! 272 MB per step for a few thousand rows. Here the rows are added, in
//! `f32`, straight into the table's gradient sum in the sink (where a tied
//! LM head's gradient already is).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use super::grad_sink::GradSink;

/// Rows `ids` (`u32`, any shape, read flat) of `table` (`(vocab, d)`), as
/// `(ids.len(), d)`. With a sink, on the CPU, for a table that needs a
/// gradient, that gradient goes to the sink ([`GradSink::backward`] must run
/// the backward pass); otherwise this is `index_select`.
pub fn embedding(table: &Tensor, ids: &Tensor, sink: Option<&GradSink>) -> Result<Tensor> {
    let ids = ids.flatten_all()?;
    let Some(sink) = sink.filter(|_| table.device().is_cpu() && table.track_op()) else {
        return table.index_select(&ids, 0);
    };
    let (vocab, _) = table.dims2()?;
    let ids = ids.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
        candle_core::bail!("embedding: id {id} is out of range for {vocab} rows");
    }
    table.apply_op1(Lookup {
        ids,
        table: table.clone(),
        sink: sink.clone(),
    })
}

struct Lookup {
    ids: Vec<u32>,
    table: Tensor,
    sink: GradSink,
}

fn gather<T: Copy>(data: &[T], ids: &[u32], d: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        out.extend_from_slice(&data[id as usize * d..][..d]);
    }
    out
}

impl CustomOp1 for Lookup {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l.shape().dims2()?;
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("embedding: the table must be contiguous");
        };
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(gather(&x[a..b], &self.ids, d)),
            CpuStorage::BF16(x) => CpuStorage::BF16(gather(&x[a..b], &self.ids, d)),
            CpuStorage::F16(x) => CpuStorage::F16(gather(&x[a..b], &self.ids, d)),
            _ => candle_core::bail!("embedding: the table must be f32, bf16 or f16"),
        };
        Ok((out, Shape::from((self.ids.len(), d))))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        self.sink.add_rows(&self.table, &self.ids, grad)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::{Device, Var};

    #[test]
    fn rows_and_gradient_match_index_select() -> Result<()> {
        for dtype in [DType::F32, DType::BF16] {
            let table = Var::from_tensor(&randn(&[7, 5], 1).to_dtype(dtype)?)?;
            let ids = Tensor::new(&[[3u32, 0, 3], [6, 1, 3]], &Device::Cpu)?;
            let g = randn(&[6, 5], 2).to_dtype(dtype)?;
            let sink = GradSink::default();
            let a = embedding(&table, &ids, Some(&sink))?;
            let b = table.index_select(&ids.flatten_all()?, 0)?;
            let f32 = |t: &Tensor| t.to_dtype(DType::F32);
            assert_eq!(max_diff(&f32(&a)?, &f32(&b)?), 0.0);
            let ga = sink.backward(&(&a * &g)?.sum_all()?)?;
            let gb = (&b * &g)?.sum_all()?.backward()?;
            let (ga, gb) = (ga.get(&table).unwrap(), gb.get(&table).unwrap());
            assert_eq!(ga.dtype(), DType::F32, "the sink sums in f32");
            // Row 3 sums three bf16 rows: the f32 sum keeps what bf16 rounds.
            let tol = if dtype == DType::F32 { 1e-6 } else { 2e-2 };
            assert!(max_diff(ga, &f32(gb)?) < tol, "{dtype:?}");
        }
        let table = Var::from_tensor(&randn(&[7, 5], 1))?;
        let bad = Tensor::new(&[7u32], &Device::Cpu)?;
        let err = embedding(&table, &bad, Some(&GradSink::default())).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        Ok(())
    }
}
