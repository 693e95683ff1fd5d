//! The model's building blocks, each with a backward pass (except the
//! decoding-only [`paged_attention`], [`linear_t`] and [`sample_tokens`]).
//!
//! candle's own fused CPU ops (`candle_nn::ops::rms_norm`, `softmax_last_dim`,
//! `rotary_emb::rope`) have no backward, and its differentiable compositions
//! walk the data several times. The functions here pick, per call, a fused
//! single-pass CPU implementation (a `CustomOp` whose backward is fused too)
//! for `f32` tensors on the CPU, and otherwise a composition of candle ops
//! that runs on any device and dtype. The compositions are the reference the
//! tests hold the fused versions to. Some fused ops also multiply matrices,
//! through the `gemm` crate candle itself uses (a safe wrapper in `gemm.rs`):
//! [`linear`], the attention and the two halves of a layer (`block.rs`), whose
//! backward passes keep their intermediate activations out of candle's graph.
//!
//! [`token_stats`] (log-sum-exp, target log-probability and entropy at a
//! temperature, `logprob.rs`) goes further: its fused path also takes `bf16`
//! and `f16` logits, and runs on CUDA too with the `cuda` feature
//! (`kernels/logprob.cu`, see `kernels/README.md`).
//!
//! The rollout engine's ops work on rows that each stand alone, so a row's
//! result does not depend on the rows beside it: [`paged_attention`] (each
//! row over its own sequence in a paged KV cache) and [`sample_tokens`]
//! (temperature, top-k and top-p on the logits' device, `sampling.rs`).

mod adamw;
mod attention;
mod block;
mod checkpoint;
mod embedding;
mod flash;
mod gemm;
mod grad_sink;
mod linear;
mod lm_head;
mod logprob;
mod math;
mod mkl;
mod paged_attention;
mod rms_norm;
mod rope;
mod sampling;
mod softmax;
mod swiglu;

pub use adamw::{adamw_update, adamw_update_in_place, adamw_update_reference, AdamWStep};
pub use attention::{causal_attention_reference, qkv_heads, qkv_heads_reference, Heads};
pub use block::{
    attention_block, attention_block_masked, attention_block_masked_reference, attention_block_reference,
    mlp_block, mlp_block_reference, AttentionMemo,
};
pub use checkpoint::{checkpoint, Recompute, WeightGrads};
pub use embedding::embedding;
pub use flash::{flash_attention, flash_attention_packed, packed_attention_reference, RowMask};
pub(crate) use gemm::Bf16Products;
pub use grad_sink::GradSink;
pub use linear::{linear, linear_reference, linear_t};
pub use lm_head::{lm_head_token_stats, DEFAULT_CHUNK};
pub use logprob::{
    entropy, fused_path, token_logprobs, token_logprobs_reference, token_stats, token_stats_reference,
    TokenStats,
};
pub use paged_attention::{paged_attention, paged_attention_reference, PagedRows};
pub use rms_norm::{rms_norm, rms_norm_reference};
pub use rope::{rope, rope_reference};
pub use sampling::{sample_tokens, sample_tokens_reference, Draw, Pick};
pub use softmax::{log_softmax_last_dim, log_softmax_reference, softmax_last_dim, softmax_reference};
pub use swiglu::{swiglu, swiglu_reference};

use candle_core::{DType, Tensor};

/// Whether `x` takes the fused CPU path (`f32` on the CPU).
pub fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// Rows of at least this many elements in total are processed in parallel.
const PARALLEL_MIN: usize = 1 << 14;

/// Splits a fused backward op's flat output `[grad of a..., grad of b...]`
/// into gradients shaped like `a` and `b`.
fn split_grads(
    packed: &Tensor,
    a: &Tensor,
    b: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let n = a.elem_count();
    let da = packed.narrow(0, 0, n)?.reshape(a.shape())?;
    let db = packed.narrow(0, n, b.elem_count())?.reshape(b.shape())?;
    Ok((Some(da), Some(db)))
}

/// The contiguous `f32` data behind a CPU tensor layout, or an error naming `what`.
pub(crate) fn cpu_slice<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        candle_core::CpuStorage::F32(data) => data,
        _ => candle_core::bail!("{what}: expected an f32 tensor"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// [`cpu_slice`] for writing: the contiguous `f32` data of a storage that an
/// in-place op updates.
pub(crate) fn cpu_slice_mut<'a>(
    storage: &'a mut candle_core::CpuStorage,
    layout: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{what}: expected a contiguous f32 tensor"),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor};
    use rand::{RngExt, SeedableRng};

    /// A reproducible random `f32` tensor.
    pub(crate) fn randn(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    /// The bits of an `f32` tensor's values, flattened (for exact comparisons).
    pub(crate) fn f32_bits(t: &Tensor) -> candle_core::Result<Vec<u32>> {
        Ok(t.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|x| x.to_bits())
            .collect())
    }

    /// The largest absolute difference between two tensors.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }
}
