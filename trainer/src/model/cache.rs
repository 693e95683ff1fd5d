//! The key/value cache for incremental decoding.

use candle_core::{DType, Device, Result, Tensor};

use super::qwen2::DecodeWeights;
use super::Config;

/// Keys and values of every layer for a batch of sequences, preallocated to a
/// fixed capacity and filled in place as decoding goes on.
///
/// Rows may be left-padded: `left_pad[b]` leading positions of row `b` are
/// padding, never attended to, and the row's positions count from the first
/// real token.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
    left_pad: Vec<usize>,
    /// The weights as the model that fills this cache lays them out for
    /// decoding, made on first use (a cache belongs to one model, whose
    /// weights do not change while it decodes).
    decode_weights: Option<DecodeWeights>,
}

impl KvCache {
    /// An empty cache for `left_pad.len()` rows of up to `capacity` positions.
    pub fn new(
        config: &Config,
        left_pad: Vec<usize>,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<KvCache> {
        let shape = (left_pad.len(), config.kv_heads(), capacity, config.head_dim());
        let layers = (0..config.num_hidden_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, dtype, device)?,
                    Tensor::zeros(shape, dtype, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
            left_pad,
            decode_weights: None,
        })
    }

    /// Positions filled so far (padding included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Leading padding positions of each row.
    pub fn left_pad(&self) -> &[usize] {
        &self.left_pad
    }

    /// Stores layer `layer`'s new keys and values (`(batch, kv_heads, t, head_dim)`)
    /// after the cached ones and returns all of them so far. The caller
    /// advances the length with [`KvCache::advance`] once every layer is done.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        if self.len + t > self.capacity {
            candle_core::bail!(
                "KV cache full: {} cached + {t} new positions exceed its capacity {}",
                self.len,
                self.capacity
            );
        }
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((kc.narrow(2, 0, self.len + t)?, vc.narrow(2, 0, self.len + t)?))
    }

    /// The decoding weights stored with [`KvCache::set_decode_weights`], if any.
    pub(crate) fn decode_weights(&self) -> Option<&DecodeWeights> {
        self.decode_weights.as_ref()
    }

    /// Keeps the model's decoding weights with the cache.
    pub(crate) fn set_decode_weights(&mut self, weights: DecodeWeights) {
        self.decode_weights = Some(weights);
    }

    /// Marks `t` more positions as filled.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}
