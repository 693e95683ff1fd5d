//! Attention over a paged key/value cache, for the rollout engine's steps.
//!
//! A step feeds rows that belong to many sequences, each at its own
//! position. The cache keeps every sequence's keys and values in fixed-size
//! blocks of token slots inside one pool per layer (`(slots, kv_heads *
//! head_dim)`, slot `b * block_size + i` is the `i`-th position of block
//! `b`), and each sequence has a block table: position `j` lives in block
//! `table[j / block_size]` at offset `j % block_size`. A row at position
//! `pos` attends to its sequence's positions `0..=pos` (its own key and
//! value already written), with grouped-query heads.
//!
//! [`paged_attention`] runs a fused CPU op for `f32` (per row and key/value
//! head: dot products key by key in position order, a softmax, a weighted
//! sum of values in position order), so a row's output depends only on its
//! query and its sequence's keys and values: not on the other rows of the
//! step, on the block size or on where the blocks sit in the pool. Other
//! devices and dtypes take [`paged_attention_reference`]: the keys and
//! values gathered per row into padded batches, masked, and multiplied.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::math::{dot, exp};
use super::{cpu_slice, fused, Heads, PARALLEL_MIN};

/// Where the rows of a step sit: which sequence (its block table) and position.
#[derive(Debug, Clone, Copy)]
pub struct PagedRows<'a> {
    /// Token slots per block.
    pub block_size: usize,
    /// The block table of each sequence in the step.
    pub tables: &'a [Vec<u32>],
    /// Per row: its sequence (an index into `tables`).
    pub seq: &'a [u32],
    /// Per row: its position in its sequence.
    pub pos: &'a [u32],
}

impl PagedRows<'_> {
    /// The pool slot of position `j` of sequence `s`.
    pub fn slot(&self, s: usize, j: usize) -> usize {
        self.tables[s][j / self.block_size] as usize * self.block_size + j % self.block_size
    }

    fn check(&self, heads: Heads, slots: usize) -> Result<()> {
        let n = self.seq.len();
        if self.pos.len() != n || heads.batch != n || heads.seq != 1 {
            candle_core::bail!(
                "paged_attention: {n} rows, {} positions, {heads:?} (one position per row)",
                self.pos.len()
            );
        }
        for (&s, &p) in self.seq.iter().zip(self.pos) {
            let table = self.tables.get(s as usize);
            let covered = table.map_or(0, |t| t.len() * self.block_size);
            if p as usize >= covered {
                candle_core::bail!("paged_attention: position {p} of sequence {s} has no block");
            }
            if table.is_some_and(|t| t.iter().any(|&b| (b as usize + 1) * self.block_size > slots)) {
                candle_core::bail!("paged_attention: sequence {s} names a block outside the pool");
            }
        }
        Ok(())
    }
}

/// Attention of the step's queries `q` (`(rows, heads * head_dim)`, already
/// rotated and scaled) over the pools `k`, `v` (`(slots, kv_heads *
/// head_dim)`), each row over its sequence's positions `0..=pos`. Returns
/// `(rows, heads * head_dim)`. No backward pass.
pub fn paged_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Heads,
    rows: PagedRows<'_>,
) -> Result<Tensor> {
    let (n, width) = q.dims2()?;
    let (slots, kv_width) = k.dims2()?;
    if width != heads.heads * heads.head_dim
        || kv_width != heads.kv_heads * heads.head_dim
        || v.dims() != k.dims()
        || n != heads.batch
    {
        candle_core::bail!(
            "paged_attention: q {:?}, k {:?}, v {:?} do not fit {heads:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    rows.check(heads, slots)?;
    if n == 0 {
        return Tensor::zeros((0, width), q.dtype(), q.device());
    }
    if fused(q) && fused(k) && fused(v) && k.is_contiguous() && v.is_contiguous() {
        q.contiguous()?.apply_op3_no_bwd(k, v, &Paged { heads, rows })
    } else {
        paged_attention_reference(q, k, v, heads, rows)
    }
}

struct Paged<'a> {
    heads: Heads,
    rows: PagedRows<'a>,
}

impl CustomOp3 for Paged<'_> {
    fn name(&self) -> &'static str {
        "paged-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = cpu_slice(qs, ql, "paged-attention")?;
        let k = cpu_slice(ks, kl, "paged-attention keys")?;
        let v = cpu_slice(vs, vl, "paged-attention values")?;
        let Heads {
            batch: n,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
            ..
        } = self.heads;
        let rep = self.heads.rep();
        let mut o = vec![0f32; n * h * hd];
        // One task per (row, key/value head): its `rep` query heads are adjacent.
        let body = |(g, out): (usize, &mut [f32])| {
            let (r, kvh) = (g / kv, g % kv);
            let (s, pos) = (self.rows.seq[r] as usize, self.rows.pos[r] as usize);
            let at = |j: usize| (self.rows.slot(s, j) * kv + kvh) * hd;
            let mut p = vec![0f32; pos + 1];
            for (qh, oh) in q[g * rep * hd..][..rep * hd].chunks(hd).zip(out.chunks_mut(hd)) {
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj = dot(qh, &k[at(j)..][..hd]);
                }
                softmax_in_place(&mut p);
                oh.iter_mut().for_each(|x| *x = 0.0);
                for (j, &pj) in p.iter().enumerate() {
                    for (x, vj) in oh.iter_mut().zip(&v[at(j)..][..hd]) {
                        *x += pj * vj;
                    }
                }
            }
        };
        let work: usize = self.rows.pos.iter().map(|&p| p as usize + 1).sum::<usize>() * h * hd;
        if work >= PARALLEL_MIN {
            o.par_chunks_mut(rep * hd).enumerate().for_each(body);
        } else {
            o.chunks_mut(rep * hd).enumerate().for_each(body);
        }
        Ok((CpuStorage::F32(o), Shape::from((n, h * hd))))
    }
}

/// Softmax of a row of scores, in place.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Gathered key slots per batch of the reference, at most (keeps the
/// padded `(rows, keys, kv_heads * head_dim)` gathers bounded).
const GATHER_BUDGET: usize = 1 << 24;

/// [`paged_attention`] as candle ops on any device and dtype: rows in
/// batches, each row's keys and values gathered from the pools (padded to
/// the batch's longest), masked, softmaxed in `f32`, multiplied.
pub fn paged_attention_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Heads,
    rows: PagedRows<'_>,
) -> Result<Tensor> {
    let Heads {
        batch: n,
        heads: h,
        kv_heads: kv,
        head_dim: hd,
        ..
    } = heads;
    let rep = heads.rep();
    let dev = q.device();
    let mut outs = Vec::new();
    let mut start = 0;
    while start < n {
        // Grow the batch while its padded gather stays within the budget.
        let mut end = start + 1;
        let mut longest = rows.pos[start] as usize + 1;
        while end < n {
            let l = longest.max(rows.pos[end] as usize + 1);
            if (end + 1 - start) * l * kv * hd > GATHER_BUDGET {
                break;
            }
            longest = l;
            end += 1;
        }
        let b = end - start;
        let mut slots = vec![0u32; b * longest];
        let mut mask = vec![0f32; b * longest];
        for i in 0..b {
            let (s, pos) = (rows.seq[start + i] as usize, rows.pos[start + i] as usize);
            for j in 0..longest {
                if j <= pos {
                    slots[i * longest + j] = rows.slot(s, j) as u32;
                } else {
                    mask[i * longest + j] = f32::NEG_INFINITY;
                }
            }
        }
        let slots = Tensor::from_vec(slots, b * longest, dev)?;
        let mask = Tensor::from_vec(mask, (b, 1, 1, longest), dev)?;
        let gather = |pool: &Tensor| -> Result<Tensor> {
            pool.index_select(&slots, 0)?
                .reshape((b, longest, kv, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (keys, values) = (gather(k)?, gather(v)?);
        let qb = q.narrow(0, start, b)?.reshape((b, kv, rep, hd))?.contiguous()?;
        let scores = qb
            .matmul(&keys.t()?)?
            .to_dtype(DType::F32)?
            .broadcast_add(&mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(values.dtype())?;
        outs.push(probs.matmul(&values)?.reshape((b, h * hd))?);
        start = end;
    }
    Tensor::cat(&outs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};

    fn heads(batch: usize, h: usize, kv: usize) -> Heads {
        Heads {
            batch,
            seq: 1,
            heads: h,
            kv_heads: kv,
            head_dim: 8,
        }
    }

    /// Attention of one query head over explicit keys and values, in f64.
    fn naive(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>]) -> Vec<f64> {
        let s: Vec<f64> = keys
            .iter()
            .map(|k| q.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum())
            .collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..q.len())
            .map(|d| e.iter().zip(values).map(|(p, v)| p / z * v[d] as f64).sum())
            .collect()
    }

    /// Two sequences over scattered blocks of 4 slots; rows at several
    /// positions, a prefill-like run of consecutive ones included.
    fn setup() -> (Vec<Vec<u32>>, Vec<u32>, Vec<u32>) {
        let tables = vec![vec![5, 2, 7], vec![0, 6]];
        let seq = vec![0, 0, 0, 1, 1, 0];
        let pos = vec![9, 10, 11, 0, 6, 3];
        (tables, seq, pos)
    }

    #[test]
    fn each_row_attends_to_its_sequence_positions() -> Result<()> {
        let (tables, seq, pos) = setup();
        let hs = heads(seq.len(), 4, 2);
        let rows = PagedRows {
            block_size: 4,
            tables: &tables,
            seq: &seq,
            pos: &pos,
        };
        let q = randn(&[seq.len(), 4 * 8], 1);
        let (k, v) = (randn(&[32, 2 * 8], 2), randn(&[32, 2 * 8], 3));
        let got = paged_attention(&q, &k, &v, hs, rows)?;
        let reference = paged_attention_reference(&q, &k, &v, hs, rows)?;
        assert!(max_diff(&got, &reference) < 1e-5);
        let (qd, kd, vd) = (q.to_vec2::<f32>()?, k.to_vec2::<f32>()?, v.to_vec2::<f32>()?);
        let out = got.to_vec2::<f32>()?;
        for r in 0..seq.len() {
            for head in 0..4 {
                let kvh = head / 2;
                let slots: Vec<usize> = (0..=pos[r] as usize)
                    .map(|j| rows.slot(seq[r] as usize, j))
                    .collect();
                let keys: Vec<Vec<f32>> = slots.iter().map(|&s| kd[s][kvh * 8..][..8].to_vec()).collect();
                let values: Vec<Vec<f32>> = slots.iter().map(|&s| vd[s][kvh * 8..][..8].to_vec()).collect();
                let want = naive(&qd[r][head * 8..][..8], &keys, &values);
                for (d, w) in want.iter().enumerate() {
                    assert!(
                        (out[r][head * 8 + d] as f64 - w).abs() < 1e-5,
                        "row {r} head {head}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_row_does_not_depend_on_the_step_or_the_block_layout() -> Result<()> {
        // The same keys and values laid out with blocks of 4 and of 1 in
        // other pool slots, and the row alone or among others: equal bits.
        let (tables, seq, pos) = setup();
        let q = randn(&[seq.len(), 4 * 8], 4);
        let (k, v) = (randn(&[32, 16], 5), randn(&[32, 16], 6));
        let all = paged_attention(
            &q,
            &k,
            &v,
            heads(seq.len(), 4, 2),
            PagedRows {
                block_size: 4,
                tables: &tables,
                seq: &seq,
                pos: &pos,
            },
        )?;
        // Blocks of one slot: position j of sequence 0 at slot 31 - j.
        let old = PagedRows {
            block_size: 4,
            tables: &tables,
            seq: &seq,
            pos: &pos,
        };
        let moved: Vec<u32> = (0..12).map(|j| old.slot(0, j) as u32).collect();
        let mut perm: Vec<u32> = (0..32).collect();
        let single: Vec<Vec<u32>> = vec![(0..12).map(|j| 31 - j).collect()];
        for (j, &s) in moved.iter().enumerate() {
            perm[31 - j] = s;
        }
        let idx = Tensor::new(perm.as_slice(), k.device())?;
        let (k2, v2) = (k.index_select(&idx, 0)?, v.index_select(&idx, 0)?);
        for r in [1usize, 2, 5] {
            let alone = paged_attention(
                &q.narrow(0, r, 1)?,
                &k2,
                &v2,
                heads(1, 4, 2),
                PagedRows {
                    block_size: 1,
                    tables: &single,
                    seq: &[0],
                    pos: &pos[r..r + 1],
                },
            )?;
            assert_eq!(
                alone.flatten_all()?.to_vec1::<f32>()?,
                all.get(r)?.to_vec1::<f32>()?,
                "row {r}"
            );
        }
        Ok(())
    }

    #[test]
    fn positions_without_blocks_are_refused() {
        let tables = vec![vec![0]];
        let err = paged_attention(
            &randn(&[1, 32], 1),
            &randn(&[8, 16], 2),
            &randn(&[8, 16], 3),
            heads(1, 4, 2),
            PagedRows {
                block_size: 4,
                tables: &tables,
                seq: &[0],
                pos: &[4],
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("has no block"), "{err}");
    }
}
