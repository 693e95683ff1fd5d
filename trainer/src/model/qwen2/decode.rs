//! The decoder's path for the rollout engine: one step runs a flat batch of
//! rows (tokens of many sequences, each at its own position: a prompt being
//! prefilled, a response being decoded one token at a time, or one being
//! recomputed after preemption) over a [`PagedKvCache`], and returns the
//! logits of the rows that asked for them.
//!
//! Every row is computed alone: the projections are products of the rows
//! with weights (each row's result independent of the others: see
//! [`ops::linear_t`]), the norms, rotation and MLP gate work per row, and
//! attention reads the row's own sequence in position order
//! ([`ops::paged_attention`]). So on the CPU in `f32` a row's logits are the
//! same bits whichever rows share its step, whatever the block size, and
//! whether its sequence was prefilled in one step or decoded token by token:
//! what lets the engine batch, admit, preempt and share prompts without
//! changing a single sample. Other devices and dtypes take the ops'
//! compositions of candle ops.

use candle_core::{Result, Tensor, TensorId};

use super::Qwen2;
use crate::model::PagedKvCache;
use crate::ops::{self, PagedRows};

/// A model's weights laid out for decoding: per layer the stacked q/k/v,
/// output, stacked gate/up and down projections, each transposed to `(in,
/// out)` (a product with a few rows reads that layout without repacking
/// the matrix, which is most of the cost of a decoding step otherwise), the
/// stacked q/k/v bias, and the LM head. Made once per rollout: a copy of the
/// weights as they are then.
pub struct DecodeWeights {
    /// The embedding tensor of the model they came from.
    owner: TensorId,
    layers: Vec<LayerDecode>,
    lm_head: Tensor,
}

struct LayerDecode {
    qkv: Tensor,
    qkv_bias: Tensor,
    o: Tensor,
    gate_up: Tensor,
    down: Tensor,
}

/// The rows one engine step feeds through the model.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Each row's token id.
    pub ids: &'a [u32],
    /// Each row's sequence and position, and the sequences' block tables.
    pub rows: PagedRows<'a>,
    /// The rows whose logits are wanted, in the order wanted.
    pub logits_of: &'a [u32],
}

impl Qwen2 {
    /// The weights laid out for [`Qwen2::forward_step`].
    pub fn decode_weights(&self) -> Result<DecodeWeights> {
        let t = |ws: &[&Tensor]| -> Result<Tensor> { Tensor::cat(ws, 0)?.detach().t()?.contiguous() };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerDecode {
                    qkv: t(&[&l.q.0, &l.k.0, &l.v.0])?,
                    qkv_bias: Tensor::cat(&[&l.q.1, &l.k.1, &l.v.1], 0)?.detach(),
                    o: t(&[&l.o])?,
                    gate_up: t(&[&l.gate, &l.up])?,
                    down: t(&[&l.down])?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(DecodeWeights {
            owner: self.embed.id(),
            layers,
            lm_head: t(&[&self.lm_head])?,
        })
    }

    /// Runs `step`'s rows: writes their keys and values into `cache` (at
    /// each row's position in its sequence's blocks) and returns the logits
    /// `(step.logits_of.len(), vocab)` of the rows asked for. Not
    /// differentiable.
    pub fn forward_step(
        &self,
        weights: &DecodeWeights,
        cache: &PagedKvCache,
        step: Step<'_>,
    ) -> Result<Tensor> {
        if weights.owner != self.embed.id() {
            candle_core::bail!("forward_step: the decoding weights belong to another model");
        }
        let n = step.ids.len();
        let rows = step.rows;
        if rows.seq.len() != n || rows.pos.len() != n || rows.block_size != cache.block_size() {
            candle_core::bail!(
                "forward_step: {n} ids, {} sequences, {} positions, blocks of {} (the cache's: {})",
                rows.seq.len(),
                rows.pos.len(),
                rows.block_size,
                cache.block_size()
            );
        }
        let context = self.config.max_position_embeddings;
        if let Some(p) = rows.pos.iter().find(|&&p| p as usize >= context) {
            candle_core::bail!("forward_step: position {p} is past the model's context of {context}");
        }
        if let Some(r) = step.logits_of.iter().find(|&&r| r as usize >= n) {
            candle_core::bail!("forward_step: logits of row {r} of {n}");
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = step.ids.iter().find(|&&id| id >= vocab) {
            candle_core::bail!("forward_step: token id {bad} is outside the vocabulary of {vocab}");
        }
        let dev = &self.device;
        let heads = self.heads(n, 1);
        let (hd, kv_width) = (heads.head_dim, heads.kv_heads * heads.head_dim);
        let positions = Tensor::from_slice(rows.pos, n, dev)?;
        let half = self.cos.dim(1)?;
        let table = |t: &Tensor| -> Result<Tensor> {
            t.index_select(&positions, 0)?
                .reshape((n, 1, half))?
                .to_dtype(self.dtype)
        };
        let (cos, sin) = (table(&self.cos)?, table(&self.sin)?);
        let mut slots = Vec::with_capacity(n * kv_width);
        for (&s, &p) in rows.seq.iter().zip(rows.pos) {
            if rows
                .tables
                .get(s as usize)
                .is_none_or(|t| t.len() * rows.block_size <= p as usize)
            {
                candle_core::bail!("forward_step: position {p} of sequence {s} has no block");
            }
            slots.extend(std::iter::repeat_n(
                rows.slot(s as usize, p as usize) as u32,
                kv_width,
            ));
        }
        let slots = Tensor::from_vec(slots, (n, kv_width), dev)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = self.config.rms_norm_eps;
        let (q_len, kv_len) = (heads.q_len(), heads.kv_len());
        let mut x = self
            .embed
            .index_select(&Tensor::from_slice(step.ids, n, dev)?, 0)?;
        for (l, (layer, d)) in self.layers.iter().zip(&weights.layers).enumerate() {
            let h = ops::rms_norm(&x, &layer.input_norm, eps)?;
            let raw = ops::linear_t(&h, &d.qkv)?;
            let qkv = ops::qkv_heads(&raw, &d.qkv_bias, &cos, &sin, heads, scale)?;
            let q = qkv.narrow(0, 0, q_len)?.reshape((n, heads.heads * hd))?;
            let k = qkv.narrow(0, q_len, kv_len)?.reshape((n, kv_width))?;
            let v = qkv.narrow(0, q_len + kv_len, kv_len)?.reshape((n, kv_width))?;
            cache.write(l, &k, &v, &slots)?;
            let (kp, vp) = cache.layer(l);
            let a = ops::paged_attention(&q, kp, vp, heads, rows)?;
            x = (x + ops::linear_t(&a, &d.o)?)?;
            let h = ops::rms_norm(&x, &layer.post_norm, eps)?;
            x = (x + ops::linear_t(&ops::swiglu(&ops::linear_t(&h, &d.gate_up)?)?, &d.down)?)?;
        }
        let wanted = Tensor::from_slice(step.logits_of, step.logits_of.len(), dev)?;
        let x = ops::rms_norm(&x.index_select(&wanted, 0)?, &self.norm, eps)?;
        ops::linear_t(&x, &weights.lm_head)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::small;
    use super::*;
    use crate::ops::testing::max_diff;
    use candle_core::{DType, Device};

    /// Feeds `parts` of one sequence step by step (blocks laid out in
    /// reverse in the pool) and returns the logits of every position.
    fn feed(m: &Qwen2, seq: &[u32], parts: &[usize], block_size: usize) -> Result<Vec<Vec<f32>>> {
        let w = m.decode_weights()?;
        let blocks = seq.len().div_ceil(block_size);
        let cache = PagedKvCache::new(m.config(), blocks + 2, block_size, DType::F32, &Device::Cpu)?;
        let tables = vec![(0..blocks as u32).rev().map(|b| b + 2).collect::<Vec<u32>>()];
        let mut out = Vec::new();
        let mut start = 0;
        for &len in parts {
            let pos: Vec<u32> = (start as u32..(start + len) as u32).collect();
            let seqs = vec![0u32; len];
            let wanted: Vec<u32> = (0..len as u32).collect();
            let logits = m.forward_step(
                &w,
                &cache,
                Step {
                    ids: &seq[start..start + len],
                    rows: PagedRows {
                        block_size,
                        tables: &tables,
                        seq: &seqs,
                        pos: &pos,
                    },
                    logits_of: &wanted,
                },
            )?;
            out.extend(logits.to_vec2::<f32>()?);
            start += len;
        }
        Ok(out)
    }

    #[test]
    fn steps_match_a_full_forward() -> Result<()> {
        let m = Qwen2::init(small(), 1, DType::F32, &Device::Cpu)?;
        let seq: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % 40).collect();
        let full = m
            .forward_logits(&Tensor::new(seq.as_slice(), &Device::Cpu)?.unsqueeze(0)?, None)?
            .squeeze(0)?;
        for (parts, bs) in [(vec![20], 16), (vec![7, 1, 1, 11], 3), (vec![1; 20], 1)] {
            let got = Tensor::new(feed(&m, &seq, &parts, bs)?, &Device::Cpu)?;
            assert!(max_diff(&full, &got) < 1e-5, "{parts:?} blocks of {bs}");
        }
        Ok(())
    }

    #[test]
    fn a_rows_logits_do_not_depend_on_how_its_sequence_was_fed() -> Result<()> {
        // Prefilled at once or token by token, blocks of 1, 4 or 16: the
        // same bits at every position.
        let m = Qwen2::init(small(), 2, DType::F32, &Device::Cpu)?;
        let seq: Vec<u32> = (0..24).map(|i| (i * 11 + 5) % 40).collect();
        let want = feed(&m, &seq, &[24], 16)?;
        for (parts, bs) in [(vec![1; 24], 4), (vec![5, 1, 9, 1, 8], 1), (vec![23, 1], 16)] {
            assert_eq!(feed(&m, &seq, &parts, bs)?, want, "{parts:?} blocks of {bs}");
        }
        Ok(())
    }

    #[test]
    fn a_rows_logits_do_not_depend_on_its_step() -> Result<()> {
        // Three sequences decoded together, then each alone: equal bits.
        let m = Qwen2::init(small(), 3, DType::F32, &Device::Cpu)?;
        let w = m.decode_weights()?;
        let seqs: [Vec<u32>; 3] = [vec![1, 2, 3, 4, 5], vec![9, 8], vec![7, 7, 7, 6]];
        let bs = 2;
        let cache = PagedKvCache::new(m.config(), 12, bs, DType::F32, &Device::Cpu)?;
        let tables: Vec<Vec<u32>> = vec![vec![0, 1, 2], vec![3], vec![4, 5]];
        let (mut ids, mut seq, mut pos) = (Vec::new(), Vec::new(), Vec::new());
        for (s, toks) in seqs.iter().enumerate() {
            for (p, &t) in toks.iter().enumerate() {
                ids.push(t);
                seq.push(s as u32);
                pos.push(p as u32);
            }
        }
        let last = [4u32, 6, 10];
        let together = m.forward_step(
            &w,
            &cache,
            Step {
                ids: &ids,
                rows: PagedRows {
                    block_size: bs,
                    tables: &tables,
                    seq: &seq,
                    pos: &pos,
                },
                logits_of: &last,
            },
        )?;
        for (s, toks) in seqs.iter().enumerate() {
            let alone = feed(&m, toks, &[toks.len()], bs)?;
            assert_eq!(
                &alone[toks.len() - 1],
                &together.get(s)?.to_vec1::<f32>()?,
                "sequence {s}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_composed_path_matches_the_fused_one() -> Result<()> {
        let fused = Qwen2::init(small(), 4, DType::F32, &Device::Cpu)?;
        let mut plain = Qwen2::init(small(), 4, DType::F32, &Device::Cpu)?;
        plain.fused = false;
        let seq: Vec<u32> = (0..15).map(|i| (i * 3 + 1) % 40).collect();
        let a = Tensor::new(feed(&fused, &seq, &[9, 1, 5], 4)?, &Device::Cpu)?;
        let b = Tensor::new(feed(&plain, &seq, &[9, 1, 5], 4)?, &Device::Cpu)?;
        assert!(max_diff(&a, &b) < 1e-5);
        Ok(())
    }

    #[test]
    fn bad_steps_are_refused() -> Result<()> {
        let m = Qwen2::init(small(), 1, DType::F32, &Device::Cpu)?;
        let other = Qwen2::init(small(), 1, DType::F32, &Device::Cpu)?;
        let cache = PagedKvCache::new(m.config(), 2, 4, DType::F32, &Device::Cpu)?;
        let tables = vec![vec![0u32]];
        let step = |ids: &'static [u32], pos: &'static [u32]| Step {
            ids,
            rows: PagedRows {
                block_size: 4,
                tables: &tables,
                seq: &[0],
                pos,
            },
            logits_of: &[0],
        };
        let err = |w: &DecodeWeights, s| m.forward_step(w, &cache, s).unwrap_err().to_string();
        let w = m.decode_weights()?;
        assert!(err(&other.decode_weights()?, step(&[1], &[0])).contains("another model"));
        assert!(err(&w, step(&[1], &[4])).contains("has no block"));
        assert!(err(&w, step(&[40], &[0])).contains("outside the vocabulary"));
        Ok(())
    }
}
