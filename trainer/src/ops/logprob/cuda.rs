//! The CUDA side of the fused token statistics: the launches of
//! `kernels/logprob.cu`, which `build.rs` compiles to PTX (embedded here) and
//! candle's device loads once per device and module name. Layouts and math
//! as on the CPU (the parent module); inputs are contiguous (the op makes
//! them so) and non-empty ([`super::fused_path`]).
// Kernel launches are FFI: each `unsafe` block below says why it holds.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result};

use super::STATS;

/// `kernels/logprob.cu` as PTX, from `build.rs`.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/logprob.ptx"));
/// The name candle caches the loaded module under.
const MODULE: &str = "acereason_logprob";
/// The forward kernel's largest block (its `__launch_bounds__`).
const FWD_MAX_THREADS: usize = 1024;
/// Logits a forward thread loads per step (`UNROLL` in the kernel).
const UNROLL: usize = 8;
/// The backward kernel's block (its `__launch_bounds__`).
const BWD_THREADS: usize = 256;
/// Logits each backward thread writes, about.
const BWD_PER_THREAD: usize = 8;
/// The largest grid y dimension; more rows loop in the kernel.
const MAX_GRID_Y: usize = 65_535;

fn view<'a, T>(s: &'a CudaSlice<T>, l: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.slice(a..b)),
        None => candle_core::bail!("token_stats: the {what} must be contiguous"),
    }
}

/// `(rows, vocab)` of the logits.
fn rows_and_vocab(l: &Layout) -> (usize, usize) {
    let v = l.dims()[l.dims().len() - 1];
    (l.shape().elem_count() / v, v)
}

/// The forward: `rows * STATS` floats (see the parent module).
pub(super) fn forward(
    ls: &CudaStorage,
    ll: &Layout,
    ts: &CudaStorage,
    tl: &Layout,
    inv_t: f32,
) -> Result<CudaStorage> {
    let dev = &ls.device;
    let (rows, vocab) = rows_and_vocab(ll);
    let targets = view(ts.as_cuda_slice::<u32>()?, tl, "targets")?;
    let out = dev.alloc_zeros::<f32>(rows * STATS)?;
    let launch = Launch {
        dev,
        rows,
        vocab,
        inv_t,
    };
    match &ls.slice {
        CudaStorageSlice::F32(s) => {
            launch.forward("logprob_fwd_f32", &view(s, ll, "logits")?, &targets, &out)?
        }
        CudaStorageSlice::BF16(s) => {
            launch.forward("logprob_fwd_bf16", &view(s, ll, "logits")?, &targets, &out)?
        }
        CudaStorageSlice::F16(s) => {
            launch.forward("logprob_fwd_f16", &view(s, ll, "logits")?, &targets, &out)?
        }
        _ => candle_core::bail!(
            "token_stats: logits must be f32, bf16 or f16, not {:?}",
            ls.dtype()
        ),
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// The backward: the gradient of the logits, of their type, from `aux`
/// (`2 * STATS` floats a row: the forward's output, then its gradient).
pub(super) fn backward(
    ls: &CudaStorage,
    ll: &Layout,
    ts: &CudaStorage,
    tl: &Layout,
    aux: &CudaStorage,
    al: &Layout,
    inv_t: f32,
) -> Result<CudaStorage> {
    let dev = &ls.device;
    let (rows, vocab) = rows_and_vocab(ll);
    let targets = view(ts.as_cuda_slice::<u32>()?, tl, "targets")?;
    let aux = view(aux.as_cuda_slice::<f32>()?, al, "gradient")?;
    let launch = Launch {
        dev,
        rows,
        vocab,
        inv_t,
    };
    let storage = match &ls.slice {
        CudaStorageSlice::F32(s) => {
            let g = launch.backward("logprob_bwd_f32", &view(s, ll, "logits")?, &targets, &aux)?;
            CudaStorage::wrap_cuda_slice(g, dev.clone())
        }
        CudaStorageSlice::BF16(s) => {
            let g = launch.backward("logprob_bwd_bf16", &view(s, ll, "logits")?, &targets, &aux)?;
            CudaStorage::wrap_cuda_slice(g, dev.clone())
        }
        CudaStorageSlice::F16(s) => {
            let g = launch.backward("logprob_bwd_f16", &view(s, ll, "logits")?, &targets, &aux)?;
            CudaStorage::wrap_cuda_slice(g, dev.clone())
        }
        _ => candle_core::bail!(
            "token_stats: logits must be f32, bf16 or f16, not {:?}",
            ls.dtype()
        ),
    };
    Ok(storage)
}

/// What every launch shares.
struct Launch<'a> {
    dev: &'a CudaDevice,
    rows: usize,
    vocab: usize,
    inv_t: f32,
}

impl Launch<'_> {
    fn forward<T>(
        &self,
        name: &str,
        logits: &CudaView<'_, T>,
        targets: &CudaView<'_, u32>,
        out: &CudaSlice<f32>,
    ) -> Result<()> {
        let func = self.dev.get_or_load_custom_func(name, MODULE, PTX)?;
        // A block per row, with enough whole warps for UNROLL logits a thread.
        let threads = self
            .vocab
            .div_ceil(UNROLL)
            .next_multiple_of(32)
            .clamp(32, FWD_MAX_THREADS);
        let cfg = LaunchConfig {
            grid_dim: (self.rows.min(i32::MAX as usize) as u32, 1, 1),
            block_dim: (threads as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let (rows, vocab) = (self.rows as i64, self.vocab as i64);
        let mut b = func.builder();
        b.arg(logits)
            .arg(targets)
            .arg(out)
            .arg(&rows)
            .arg(&vocab)
            .arg(&self.inv_t);
        // SAFETY: the arguments are those of logprob_fwd_* in
        // kernels/logprob.cu, in order and of its types: `logits` holds
        // rows * vocab elements, `targets` rows and `out` rows * STATS, and
        // the kernel touches nothing outside them. The block size is a
        // multiple of 32 within its __launch_bounds__.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }

    fn backward<T: DeviceRepr>(
        &self,
        name: &str,
        logits: &CudaView<'_, T>,
        targets: &CudaView<'_, u32>,
        aux: &CudaView<'_, f32>,
    ) -> Result<CudaSlice<T>> {
        // SAFETY: the kernel below writes every element before anything reads it.
        let grad = unsafe { self.dev.alloc::<T>(self.rows * self.vocab) }?;
        let func = self.dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let cfg = LaunchConfig {
            grid_dim: (
                self.vocab.div_ceil(BWD_THREADS * BWD_PER_THREAD) as u32,
                self.rows.min(MAX_GRID_Y) as u32,
                1,
            ),
            block_dim: (BWD_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let (rows, vocab) = (self.rows as i64, self.vocab as i64);
        let mut b = func.builder();
        b.arg(logits)
            .arg(targets)
            .arg(aux)
            .arg(&grad)
            .arg(&rows)
            .arg(&vocab)
            .arg(&self.inv_t);
        // SAFETY: the arguments are those of logprob_bwd_* in
        // kernels/logprob.cu, in order and of its types: `logits` and `grad`
        // hold rows * vocab elements, `targets` rows and `aux` rows * 2 *
        // STATS; the kernel touches nothing outside them.
        unsafe { b.launch(cfg) }.w()?;
        Ok(grad)
    }
}
