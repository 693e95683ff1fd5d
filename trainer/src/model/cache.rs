//! The paged key/value cache of the rollout engine: per layer, one pool of
//! keys and one of values, cut into fixed-size blocks of token slots.
//!
//! A pool is a `(blocks * block_size, kv_heads * head_dim)` tensor on the
//! model's device; slot `b * block_size + i` holds the `i`-th position of
//! block `b`. Which blocks a sequence uses (its block table), which are free
//! and which are shared is the engine's business (`crate::engine`); the
//! cache only stores, copies and hands out the pools. Its size is fixed when
//! it is made, from a memory budget, not from the longest sequence that
//! might come.

use candle_core::{DType, Device, Result, Tensor};

use super::Config;

/// Keys and values of every layer, in blocks of `block_size` token slots.
pub struct PagedKvCache {
    layers: Vec<(Tensor, Tensor)>,
    block_size: usize,
    blocks: usize,
}

impl PagedKvCache {
    /// Bytes one block takes over all layers (keys and values).
    pub fn block_bytes(config: &Config, block_size: usize, dtype: DType) -> usize {
        2 * config.num_hidden_layers
            * block_size
            * config.kv_heads()
            * config.head_dim()
            * dtype.size_in_bytes()
    }

    /// A cache of `blocks` blocks of `block_size` slots, zeroed.
    pub fn new(
        config: &Config,
        blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if blocks == 0 || block_size == 0 {
            candle_core::bail!("a paged KV cache needs at least one block of at least one slot");
        }
        let shape = (blocks * block_size, config.kv_heads() * config.head_dim());
        let layers = (0..config.num_hidden_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, dtype, device)?,
                    Tensor::zeros(shape, dtype, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(PagedKvCache {
            layers,
            block_size,
            blocks,
        })
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in each pool.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Layer `layer`'s key and value pools.
    pub(crate) fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }

    /// Writes new keys and values (`(rows, kv_heads * head_dim)`) of layer
    /// `layer` into the pool slots `slots` names (`(rows, kv_heads *
    /// head_dim)` `u32`, each row repeating its slot).
    pub(crate) fn write(&self, layer: usize, k: &Tensor, v: &Tensor, slots: &Tensor) -> Result<()> {
        let (kp, vp) = &self.layers[layer];
        kp.scatter_set(slots, &k.to_dtype(kp.dtype())?.contiguous()?, 0)?;
        vp.scatter_set(slots, &v.to_dtype(vp.dtype())?.contiguous()?, 0)
    }

    /// Copies block `src` into block `dst` in every layer (copy-on-write of a
    /// shared block).
    pub fn copy_block(&self, src: usize, dst: usize) -> Result<()> {
        if src >= self.blocks || dst >= self.blocks {
            candle_core::bail!("copy_block {src} -> {dst}: the cache has {} blocks", self.blocks);
        }
        let bs = self.block_size;
        for (k, v) in &self.layers {
            for pool in [k, v] {
                // `force_contiguous` copies the block's slots only; `copy`
                // would clone the whole pool's storage for each block.
                let block = pool.narrow(0, src * bs, bs)?.force_contiguous()?;
                pool.slice_set(&block, 0, dst * bs)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_in_their_slots_and_blocks_copy() -> Result<()> {
        let config = Config {
            num_hidden_layers: 2,
            hidden_size: 16,
            num_attention_heads: 2,
            num_key_value_heads: Some(1),
            ..Config::tiny()
        };
        let cache = PagedKvCache::new(&config, 3, 2, DType::F32, &Device::Cpu)?;
        assert_eq!(
            PagedKvCache::block_bytes(&config, 2, DType::F32),
            2 * 2 * 2 * 8 * 4
        );
        let k = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((2, 8))?;
        let v = (&k + 100.0)?;
        let slots = Tensor::new(&[[3u32; 8], [0; 8]], &Device::Cpu)?;
        cache.write(1, &k, &v, &slots)?;
        let (kp, vp) = cache.layer(1);
        assert_eq!(kp.get(3)?.to_vec1::<f32>()?, k.get(0)?.to_vec1::<f32>()?);
        assert_eq!(vp.get(0)?.to_vec1::<f32>()?, v.get(1)?.to_vec1::<f32>()?);
        // Block 1 (slots 2, 3) into block 2 (slots 4, 5).
        cache.copy_block(1, 2)?;
        assert_eq!(kp.get(5)?.to_vec1::<f32>()?, k.get(0)?.to_vec1::<f32>()?);
        assert!(cache.copy_block(0, 3).is_err());
        Ok(())
    }
}
