//! Token log-probabilities, log-sum-exp and entropies straight from logits,
//! at a temperature, in one fused op.
//!
//! For logits `z` of shape `(..., vocab)`, `u32` targets `t` of shape `(...)`
//! and a temperature `T > 0`, with `x = z / T` and `p = softmax(x)`,
//! [`token_stats`] gives, per row:
//!
//! ```text
//! lse     = log sum_j exp(x_j)
//! logprob = x_t - lse                                   (log p_t)
//! entropy = -sum_j p_j log p_j = lse - sum_j p_j x_j    (nats)
//! ```
//!
//! It is differentiable in the logits for any loss `L` built from the three,
//! such as `sum_r w_r logprob_r + c_r entropy_r` (policy gradient with an
//! entropy term) or `-sum_r logprob_r` (cross-entropy):
//!
//! ```text
//! dL/dz_j = (1/T) [ g_lse p_j + g_lp (onehot(t)_j - p_j) - g_H p_j (log p_j + H) ]
//! ```
//!
//! with `g_*` the incoming gradients of the row's lse, logprob and entropy.
//!
//! The fused path (on the CPU for `f32`, `bf16` and `f16` logits, and on CUDA
//! with the `cuda` feature: `kernels/logprob.cu`) computes in `f32` and never
//! materialises the softmax. The forward reads each row once, keeping an
//! online (streaming) max, sum of exponentials and entropy sum that rescale
//! when the max grows, and stores `STATS` floats per row. The backward
//! reads the logits once more and writes the gradient into one buffer of the
//! logits' type. On the CPU a row is cut into pieces of `PIECE` logits
//! (worked through `CHUNK` at a time, converted to `f32` on the stack): the
//! pieces of all rows are reduced in parallel and merged in order, so a few
//! long rows (152,064 for Qwen2.5) keep every core busy and the result does
//! not depend on the thread count. Other devices, dtypes and target types
//! take [`token_stats_reference`], the plain candle composition (log-softmax,
//! gather, sum) the tests hold the fused op to.
//!
//! Cross-entropy (SFT, [`token_logprobs`]), the GRPO policy loss at the
//! rollout temperature (`rl::grpo::logprobs`) and the benchmarks use it.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use super::gemm::round_bf16;
use super::math::{dispatch_avx512, exp, max_of, with_avx512};
use super::{cpu_slice, PARALLEL_MIN};

#[cfg(feature = "cuda")]
mod cuda;

/// Floats per row of the fused op's output: `lse`, `logprob`, `entropy`,
/// then two for the backward pass, the row's largest logit `m` and `ln s`
/// with `s = sum_j exp((z_j - m) / T)`, so that `log p_j = (z_j - m) / T -
/// ln s` holds without the rounding of `z_j / T - lse` at large logits.
pub(super) const STATS: usize = 5;

/// Logits of a row reduced as one task (then merged with the row's others).
const PIECE: usize = 16 * 1024;

/// Logits converted to `f32` and reduced at a time, on the stack.
const CHUNK: usize = 1024;

/// Accumulator lanes of the inner loops (so they vectorise).
const LANES: usize = 8;

/// The per-row statistics of `softmax(logits / T)`, each of shape `(...)`
/// (the logits' shape without the vocabulary), `f32` (`f64` for the
/// reference on `f64` logits).
#[derive(Debug, Clone)]
pub struct TokenStats {
    /// `logsumexp(logits / T)`.
    pub lse: Tensor,
    /// `log softmax(logits / T)` at the target.
    pub logprobs: Tensor,
    /// Entropy of `softmax(logits / T)`, in nats.
    pub entropy: Tensor,
}

/// Log-sum-exp, target log-probability and entropy of `softmax(logits /
/// temperature)` for each row of `logits` `(..., vocab)` and target `(...)`,
/// differentiable in `logits`; fused where [`fused_path`] says so.
pub fn token_stats(logits: &Tensor, targets: &Tensor, temperature: f64) -> Result<TokenStats> {
    check(logits, targets, temperature)?;
    if !fused_path(logits, targets) {
        return token_stats_reference(logits, targets, temperature);
    }
    let op = TokenStatsOp {
        inv_t: (1.0 / temperature) as f32,
    };
    let out = logits.contiguous()?.apply_op2(&targets.contiguous()?, op)?;
    let column = |k: usize| out.narrow(D::Minus1, k, 1)?.squeeze(D::Minus1);
    Ok(TokenStats {
        lse: column(0)?,
        logprobs: column(1)?,
        entropy: column(2)?,
    })
}

/// [`token_stats`] as a composition of candle ops, in `f64` for `f64`
/// logits and `f32` otherwise: the reference for the fused op, and the path
/// for devices and dtypes it does not cover.
pub fn token_stats_reference(logits: &Tensor, targets: &Tensor, temperature: f64) -> Result<TokenStats> {
    check(logits, targets, temperature)?;
    let dtype = if logits.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let x = (logits.to_dtype(dtype)? / temperature)?;
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&log_sum)?;
    let lse = (max + log_sum)?.squeeze(D::Minus1)?;
    let logprobs = logp
        .gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?
        .squeeze(D::Minus1)?;
    // A -inf logit has p = 0 and log p = -inf: clamping log p keeps its
    // 0 * log p term (and its gradient) at 0 instead of NaN.
    let entropy = (logp.exp()? * logp.maximum(-1e30)?)?.sum(D::Minus1)?.neg()?;
    Ok(TokenStats {
        lse,
        logprobs,
        entropy,
    })
}

/// Whether [`token_stats`] takes the fused op: non-empty `f32`, `bf16` or
/// `f16` logits with `u32` targets, on the CPU or (with the `cuda` feature) a
/// CUDA device.
pub fn fused_path(logits: &Tensor, targets: &Tensor) -> bool {
    let device = logits.device();
    let on_device = device.is_cpu() || (cfg!(feature = "cuda") && device.is_cuda());
    on_device
        && matches!(logits.dtype(), DType::F32 | DType::BF16 | DType::F16)
        && targets.dtype() == DType::U32
        && logits.elem_count() > 0
}

/// Log-probability of each target token under `softmax(logits)`
/// ([`token_stats`] at temperature 1); differentiable in `logits`.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(token_stats(logits, targets, 1.0)?.logprobs)
}

/// [`token_logprobs`] as a composition of candle ops.
pub fn token_logprobs_reference(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(token_stats_reference(logits, targets, 1.0)?.logprobs)
}

/// Entropy (nats) of `softmax(logits)` per row, `(...)`; not differentiable.
pub fn entropy(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.detach();
    let dims = logits.dims();
    let rows = &dims[..dims.len().saturating_sub(1)];
    let targets = Tensor::zeros(rows, DType::U32, logits.device())?;
    Ok(token_stats(&logits, &targets, 1.0)?.entropy)
}

/// The fused op's raw output `(..., STATS)` (`lse`, `logprob`, `entropy`,
/// then the max and `ln s` its backward reads), not differentiable. Needs
/// [`fused_path`].
pub(super) fn stats_raw(logits: &Tensor, targets: &Tensor, temperature: f64) -> Result<Tensor> {
    check(logits, targets, temperature)?;
    let op = TokenStatsOp {
        inv_t: (1.0 / temperature) as f32,
    };
    logits.contiguous()?.apply_op2_no_bwd(&targets.contiguous()?, &op)
}

/// The gradient of the logits from [`stats_raw`]'s output `raw` and the
/// gradient `grad` of its first three columns (`(..., 3)`, `f32`).
pub(super) fn stats_grad(
    logits: &Tensor,
    targets: &Tensor,
    raw: &Tensor,
    grad: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let zeros = raw.narrow(D::Minus1, 0, STATS - 3)?.zeros_like()?;
    let aux = Tensor::cat(&[raw, &grad.to_dtype(DType::F32)?, &zeros], D::Minus1)?.contiguous()?;
    let op = TokenStatsBackward {
        inv_t: (1.0 / temperature) as f32,
    };
    logits
        .contiguous()?
        .apply_op3_no_bwd(&targets.contiguous()?, &aux, &op)
}

fn check(logits: &Tensor, targets: &Tensor, temperature: f64) -> Result<()> {
    let dims = logits.dims();
    if dims.is_empty() || &dims[..dims.len() - 1] != targets.dims() {
        candle_core::bail!(
            "token_stats: logits {:?} need targets of shape {:?}, got {:?}",
            dims,
            dims.get(..dims.len().saturating_sub(1)).unwrap_or(&[]),
            targets.dims()
        );
    }
    if dims[dims.len() - 1] == 0 {
        candle_core::bail!("token_stats: the vocabulary (last dimension of the logits) is empty");
    }
    check_temperature(temperature)
}

fn check_temperature(temperature: f64) -> Result<()> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        candle_core::bail!("token_stats: the temperature must be positive and finite, got {temperature}");
    }
    Ok(())
}

/// An error naming the first target outside a vocabulary of `v`.
fn check_targets(targets: &[u32], v: usize) -> Result<()> {
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("token_stats: target {bad} is outside the vocabulary of {v}");
    }
    Ok(())
}

/// The fused forward: `(logits (..., V), targets (...))` → `(..., STATS)` `f32`.
struct TokenStatsOp {
    inv_t: f32,
}

/// The fused backward: `(logits, targets, aux)` → the logits' gradient, where
/// `aux` `(..., 2 * STATS)` holds the forward's output and its gradient.
struct TokenStatsBackward {
    inv_t: f32,
}

impl CustomOp2 for TokenStatsOp {
    fn name(&self) -> &'static str {
        "token-stats"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let targets = targets_of(ts, tl)?;
        let v = vocab(ll);
        check_targets(targets, v)?;
        let out = match ls {
            CpuStorage::F32(d) => forward(contiguous(d, ll)?, targets, v, self.inv_t),
            CpuStorage::BF16(d) => forward(contiguous(d, ll)?, targets, v, self.inv_t),
            CpuStorage::F16(d) => forward(contiguous(d, ll)?, targets, v, self.inv_t),
            other => candle_core::bail!(
                "token_stats: logits must be f32, bf16 or f16, not {:?}",
                other.dtype()
            ),
        };
        Ok((CpuStorage::F32(out), stats_shape(tl)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        ls: &candle_core::CudaStorage,
        ll: &Layout,
        ts: &candle_core::CudaStorage,
        tl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = cuda::forward(ls, ll, ts, tl, self.inv_t)?;
        Ok((out, stats_shape(tl)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.detach().to_dtype(DType::F32)?;
        let aux = Tensor::cat(&[&res.detach(), &grad], D::Minus1)?.contiguous()?;
        let dl = logits.apply_op3_no_bwd(targets, &aux, &TokenStatsBackward { inv_t: self.inv_t })?;
        Ok((Some(dl), None))
    }
}

impl CustomOp3 for TokenStatsBackward {
    fn name(&self) -> &'static str {
        "token-stats-backward"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
        a: &CpuStorage,
        al: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let targets = targets_of(ts, tl)?;
        let aux = cpu_slice(a, al, "token-stats-backward")?;
        let v = vocab(ll);
        let inv_t = self.inv_t;
        let out = match ls {
            CpuStorage::F32(d) => CpuStorage::F32(backward(contiguous(d, ll)?, targets, aux, v, inv_t)),
            CpuStorage::BF16(d) => CpuStorage::BF16(backward(contiguous(d, ll)?, targets, aux, v, inv_t)),
            CpuStorage::F16(d) => CpuStorage::F16(backward(contiguous(d, ll)?, targets, aux, v, inv_t)),
            other => candle_core::bail!(
                "token_stats: logits must be f32, bf16 or f16, not {:?}",
                other.dtype()
            ),
        };
        Ok((out, ll.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        ls: &candle_core::CudaStorage,
        ll: &Layout,
        ts: &candle_core::CudaStorage,
        tl: &Layout,
        a: &candle_core::CudaStorage,
        al: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = cuda::backward(ls, ll, ts, tl, a, al, self.inv_t)?;
        Ok((out, ll.shape().clone()))
    }
}

fn vocab(layout: &Layout) -> usize {
    layout.dims()[layout.dims().len() - 1]
}

/// The targets' shape with a last dimension of `STATS`.
fn stats_shape(targets: &Layout) -> Shape {
    let mut dims = targets.dims().to_vec();
    dims.push(STATS);
    Shape::from(dims)
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("token_stats: the logits must be contiguous"),
    }
}

pub(super) fn targets_of<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(t), Some((a, b))) => Ok(&t[a..b]),
        _ => candle_core::bail!("token_stats: targets must be contiguous u32"),
    }
}

/// An element type the CPU kernels read logits from and write gradients to.
trait Logit: Copy + Send + Sync + 'static {
    const ZERO: Self;
    /// `src` (at most `CHUNK` long) as `f32`: itself, or converted into `buf`.
    fn load<'a>(src: &'a [Self], buf: &'a mut [f32; CHUNK]) -> &'a [f32];
    /// Writes `src` into `dst` (of the same length), rounding to nearest.
    fn store(src: &[f32], dst: &mut [Self]);
    fn to_f32(self) -> f32;
}

impl Logit for f32 {
    const ZERO: f32 = 0.0;
    fn load<'a>(src: &'a [f32], _: &'a mut [f32; CHUNK]) -> &'a [f32] {
        src
    }
    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn to_f32(self) -> f32 {
        self
    }
}

macro_rules! half_logit {
    ($t:ty) => {
        impl Logit for $t {
            const ZERO: $t = <$t>::ZERO;
            fn load<'a>(src: &'a [$t], buf: &'a mut [f32; CHUNK]) -> &'a [f32] {
                let dst = &mut buf[..src.len()];
                src.convert_to_f32_slice(dst);
                dst
            }
            fn store(src: &[f32], dst: &mut [$t]) {
                dst.convert_from_f32_slice(src);
            }
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
        }
    };
}

half_logit!(bf16);
half_logit!(f16);

/// The online softmax state of some logits `z` of a row: `m = max z`, `s =
/// sum exp(d)` and `u = sum exp(d) d` with `d = (z - m) / T`. `s == 0` means
/// no finite logit yet; a NaN in `s` marks a NaN logit, and spreads.
#[derive(Debug, Clone, Copy)]
struct State {
    m: f32,
    s: f32,
    u: f32,
}

impl State {
    const EMPTY: State = State {
        m: f32::NEG_INFINITY,
        s: 0.0,
        u: 0.0,
    };

    /// Moves the state to a larger max `m`.
    fn rescale(&mut self, m: f32, inv_t: f32) {
        if self.s > 0.0 {
            let d = (self.m - m) * inv_t;
            let e = d.exp();
            self.u = e * (self.u + d * self.s);
            self.s *= e;
        }
        self.m = m;
    }

    /// Adds the logits `x`.
    fn add(&mut self, x: &[f32], inv_t: f32) {
        let top = max_of(x);
        if top == f32::NEG_INFINITY {
            // Only -inf (nothing to add) or NaN.
            if x.iter().any(|v| v.is_nan()) {
                self.s = f32::NAN;
            }
            return;
        }
        if top > self.m {
            self.rescale(top, inv_t);
        }
        let (s, u) = sum_exp(x, self.m, inv_t);
        self.s += s;
        self.u += u;
    }

    /// The state of both states' logits.
    fn merge(mut self, mut other: State, inv_t: f32) -> State {
        if other.s == 0.0 {
            return self;
        }
        if self.s == 0.0 {
            return other;
        }
        let m = self.m.max(other.m);
        self.rescale(m, inv_t);
        other.rescale(m, inv_t);
        State {
            m,
            s: self.s + other.s,
            u: self.u + other.u,
        }
    }

    /// Writes the row's `STATS` given its target's logit `zt`.
    fn finish(self, zt: f32, inv_t: f32, out: &mut [f32]) {
        let ln_s = self.s.ln();
        let h = ln_s - self.u / self.s;
        out[0] = self.m * inv_t + ln_s;
        out[1] = (zt - self.m) * inv_t - ln_s;
        // Rounding can take a near-zero entropy below 0; NaN stays NaN.
        out[2] = if h < 0.0 { 0.0 } else { h };
        out[3] = self.m;
        out[4] = ln_s;
    }
}

/// `(sum exp(d), sum exp(d) d)` over `x`, with `d = (x - m) / T`.
fn sum_exp(x: &[f32], m: f32, inv_t: f32) -> (f32, f32) {
    dispatch_avx512!(sum_exp_avx512, sum_exp_plain, x, m, inv_t)
}

with_avx512!(sum_exp_avx512, sum_exp_plain, (x: &[f32], m: f32, inv_t: f32) -> (f32, f32));

#[inline(always)]
fn sum_exp_plain(x: &[f32], m: f32, inv_t: f32) -> (f32, f32) {
    #[inline(always)]
    fn term(z: f32, m: f32, inv_t: f32) -> (f32, f32) {
        let d = (z - m) * inv_t;
        let e = exp(d);
        // A -inf logit adds nothing (0, not 0 * -inf).
        (e, if e > 0.0 { e * d } else { 0.0 })
    }
    let mut s = [0f32; LANES];
    let mut u = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for i in 0..LANES {
            let (e, eu) = term(c[i], m, inv_t);
            s[i] += e;
            u[i] += eu;
        }
    }
    for (i, &z) in it.remainder().iter().enumerate() {
        let (e, eu) = term(z, m, inv_t);
        s[i] += e;
        u[i] += eu;
    }
    (s.iter().sum(), u.iter().sum())
}

/// The state of one piece of a row.
fn piece_state<T: Logit>(piece: &[T], inv_t: f32) -> State {
    let mut buf = [0f32; CHUNK];
    let mut st = State::EMPTY;
    for chunk in piece.chunks(CHUNK) {
        st.add(T::load(chunk, &mut buf), inv_t);
    }
    st
}

/// The fused forward over rows of `v` logits: `STATS` floats a row.
fn forward<T: Logit>(logits: &[T], targets: &[u32], v: usize, inv_t: f32) -> Vec<f32> {
    let pieces = v.div_ceil(PIECE);
    let reduce = |i: usize| {
        let (row, piece) = (i / pieces, i % pieces);
        let start = row * v + piece * PIECE;
        let end = row * v + ((piece + 1) * PIECE).min(v);
        piece_state(&logits[start..end], inv_t)
    };
    let tasks = targets.len() * pieces;
    let states: Vec<State> = if logits.len() >= PARALLEL_MIN {
        (0..tasks).into_par_iter().map(reduce).collect()
    } else {
        (0..tasks).map(reduce).collect()
    };
    let mut out = vec![0f32; targets.len() * STATS];
    for (row, (o, &t)) in out.chunks_mut(STATS).zip(targets).enumerate() {
        let st = states[row * pieces..(row + 1) * pieces]
            .iter()
            .fold(State::EMPTY, |a, &b| a.merge(b, inv_t));
        st.finish(logits[row * v + t as usize].to_f32(), inv_t, o);
    }
    out
}

/// What the backward needs of a row: its forward stats and their gradients.
#[derive(Debug, Clone, Copy)]
struct RowGrad {
    target: usize,
    entropy: f32,
    m: f32,
    ln_s: f32,
    g_lse: f32,
    g_lp: f32,
    g_h: f32,
}

impl RowGrad {
    fn new(aux: &[f32], target: u32) -> RowGrad {
        RowGrad {
            target: target as usize,
            entropy: aux[2],
            m: aux[3],
            ln_s: aux[4],
            g_lse: aux[STATS],
            g_lp: aux[STATS + 1],
            g_h: aux[STATS + 2],
        }
    }

    /// Whether no gradient reaches the row (a masked one): all zeros.
    fn masked(&self) -> bool {
        self.g_lse == 0.0 && self.g_lp == 0.0 && self.g_h == 0.0
    }

    /// The gradient of the logits `z[offset..offset + out.len()]` of the row.
    fn write<T: Logit>(&self, z: &[T], out: &mut [T], offset: usize, inv_t: f32) {
        if self.masked() {
            return; // its zeros are there already
        }
        self.each_chunk(z, offset, inv_t, |k, g| {
            T::store(g, &mut out[k * CHUNK..][..g.len()])
        });
    }

    /// [`RowGrad::write`] rounded to bf16 bits, into an `out` that may hold
    /// anything (every element is written).
    fn write_bits(&self, z: &[f32], out: &mut [u16], offset: usize, inv_t: f32) {
        if self.masked() {
            out.fill(0);
            return;
        }
        self.each_chunk(z, offset, inv_t, |k, g| {
            round_bf16(g, &mut out[k * CHUNK..][..g.len()])
        });
    }

    /// The row's gradient at `z[offset..]`, `CHUNK` logits at a time: `f(k,
    /// g)` gets chunk `k`'s gradient `g`.
    fn each_chunk<T: Logit>(&self, z: &[T], offset: usize, inv_t: f32, mut f: impl FnMut(usize, &[f32])) {
        let c = self.g_lse - self.g_lp - self.g_h * self.entropy;
        let (m, ln_s, g_h) = (self.m, self.ln_s, self.g_h);
        let mut xbuf = [0f32; CHUNK];
        let mut gbuf = [0f32; CHUNK];
        for (k, zc) in z.chunks(CHUNK).enumerate() {
            let x = T::load(zc, &mut xbuf);
            let g = &mut gbuf[..x.len()];
            let terms = GradTerms {
                m,
                ln_s,
                c,
                g_h,
                inv_t,
            };
            dispatch_avx512!(grad_terms_avx512, grad_terms_plain, g, x, terms);
            let start = offset + k * CHUNK;
            if (start..start + g.len()).contains(&self.target) {
                g[self.target - start] += self.g_lp * inv_t;
            }
            f(k, g);
        }
    }
}

/// The constants of a row's logit gradients ([`RowGrad::write`]).
#[derive(Clone, Copy)]
struct GradTerms {
    m: f32,
    ln_s: f32,
    c: f32,
    g_h: f32,
    inv_t: f32,
}

with_avx512!(grad_terms_avx512, grad_terms_plain, (g: &mut [f32], x: &[f32], k: GradTerms) -> ());

/// `g[i]`, the gradient of logit `x[i]` of a row (before the target's term).
#[inline(always)]
fn grad_terms_plain(g: &mut [f32], x: &[f32], k: GradTerms) {
    for (g, &z) in g.iter_mut().zip(x) {
        let lp = (z - k.m) * k.inv_t - k.ln_s;
        let p = exp(lp);
        // p = 0 (a -inf logit, or one far below the max) gets 0, not p * -inf.
        *g = if p > 0.0 {
            p * (k.c - k.g_h * lp) * k.inv_t
        } else {
            0.0
        };
    }
}

/// The fused backward: the gradient of rows of `v` logits, from `aux`
/// (`2 * STATS` floats a row: the forward's output, then its gradient).
fn backward<T: Logit>(logits: &[T], targets: &[u32], aux: &[f32], v: usize, inv_t: f32) -> Vec<T> {
    let mut out = vec![T::ZERO; logits.len()];
    if logits.len() >= PARALLEL_MIN {
        each_piece(&mut out, logits, targets, aux, v, |g, z, o, offset| {
            g.write(z, o, offset, inv_t)
        });
    } else {
        out.chunks_mut(v)
            .zip(logits.chunks(v))
            .zip(targets.iter().zip(aux.chunks(2 * STATS)))
            .for_each(|((o, z), (&t, a))| RowGrad::new(a, t).write(z, o, 0, inv_t));
    }
    out
}

/// [`backward`] for `f32` logits, the gradient rounded to bf16 bits into
/// `out` (as long as the logits; every element written): for a product that
/// reads it as bf16 anyway, without an `f32` gradient in between.
pub(super) fn grad_bits(logits: &[f32], targets: &[u32], aux: &[f32], v: usize, inv_t: f32, out: &mut [u16]) {
    assert!(
        logits.len() == targets.len() * v
            && out.len() == logits.len()
            && aux.len() == targets.len() * 2 * STATS,
        "grad_bits: {} logits, {} targets of {v}, {} aux, {} out",
        logits.len(),
        targets.len(),
        aux.len(),
        out.len()
    );
    each_piece(out, logits, targets, aux, v, |g, z, o, offset| {
        g.write_bits(z, o, offset, inv_t)
    });
}

/// `write(row, z, out, offset)` for every piece of `PIECE` logits `z` of
/// every row (and the matching piece `out` of the output), all in parallel:
/// a few long rows keep every core busy.
fn each_piece<T: Logit, O: Send>(
    out: &mut [O],
    logits: &[T],
    targets: &[u32],
    aux: &[f32],
    v: usize,
    write: impl Fn(&RowGrad, &[T], &mut [O], usize) + Sync,
) {
    out.par_chunks_mut(v)
        .zip(logits.par_chunks(v))
        .zip(targets.par_iter().zip(aux.par_chunks(2 * STATS)))
        .for_each(|((o, z), (&t, a))| {
            let g = RowGrad::new(a, t);
            o.par_chunks_mut(PIECE)
                .zip(z.par_chunks(PIECE))
                .enumerate()
                .for_each(|(p, (o, z))| write(&g, z, o, p * PIECE));
        });
}

/// The fused forward's `STATS` floats a row for `f32` logits `(targets.len(),
/// v)` in a slice; an error names a target outside the vocabulary.
pub(super) fn stats_rows(logits: &[f32], targets: &[u32], v: usize, temperature: f64) -> Result<Vec<f32>> {
    check_targets(targets, v)?;
    check_temperature(temperature)?;
    assert_eq!(
        logits.len(),
        targets.len() * v,
        "stats_rows: logits and targets differ"
    );
    Ok(forward(logits, targets, v, (1.0 / temperature) as f32))
}

/// The backward's `aux` input (`2 * STATS` floats a row): each row of `raw`
/// (the forward's `STATS` floats), then that row of `grad3` (the gradients
/// of its first three), then zeros.
pub(super) fn grad_aux(raw: &[f32], grad3: &[f32]) -> Vec<f32> {
    let mut aux = vec![0f32; raw.len() * 2];
    for ((a, r), g) in aux
        .chunks_mut(2 * STATS)
        .zip(raw.chunks(STATS))
        .zip(grad3.chunks(3))
    {
        a[..STATS].copy_from_slice(r);
        a[STATS..STATS + 3].copy_from_slice(g);
    }
    aux
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_diff, randn};
    use candle_core::{Device, Var};
    use rand::{RngExt, SeedableRng};

    /// Random logits `(rows, v)`: uniform in [-scale, scale], with every
    /// fifth row holding some -inf entries (never at its target) and one row
    /// at magnitudes around 1e4. Returns the logits and targets.
    fn inputs(rows: usize, v: usize, scale: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let targets: Vec<u32> = (0..rows).map(|_| rng.random_range(0..v as u32)).collect();
        let mut z: Vec<f32> = (0..rows * v)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        for (r, &t) in targets.iter().enumerate() {
            let row = &mut z[r * v..(r + 1) * v];
            if r % 5 == 1 {
                for (j, x) in row.iter_mut().enumerate() {
                    if j != t as usize && j % 3 == 0 {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            if r == 2 {
                for x in row.iter_mut() {
                    *x = 1e4 + *x * 3e3;
                }
            }
        }
        (z, targets)
    }

    /// The fused op against the f64 reference: forward values and the
    /// gradient of `sum a*lse + w*logprob + c*entropy`, relative error.
    fn compare(
        rows: usize,
        v: usize,
        scale: f32,
        temperature: f64,
        dtype: DType,
        tol: f64,
        grad_tol: f64,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let (z, t) = inputs(rows, v, scale, rows as u64 * 31 + v as u64);
        let z32 = Tensor::from_vec(z, (rows, v), &dev)?.to_dtype(dtype)?;
        let targets = Tensor::from_vec(t, rows, &dev)?;
        // Per-row weights, with zero rows (masked tokens) among them.
        let w: Vec<[f64; 3]> = (0..rows)
            .map(|r| match r % 4 {
                0 => [0.0, 0.0, 0.0],
                1 => [0.0, -1.5, 0.0],
                2 => [0.0, 0.7, -0.3],
                _ => [0.4, -0.2, 0.9],
            })
            .collect();
        let col = |k: usize| Tensor::from_vec(w.iter().map(|w| w[k]).collect::<Vec<_>>(), rows, &dev);
        let (wa, wl, wh) = (col(0)?, col(1)?, col(2)?);
        let loss = |s: &TokenStats| -> Result<Tensor> {
            let d = s.lse.dtype();
            let terms = (s.lse.mul(&wa.to_dtype(d)?)? + s.logprobs.mul(&wl.to_dtype(d)?)?)?;
            (terms + s.entropy.mul(&wh.to_dtype(d)?)?)?.sum_all()
        };

        let fused_in = Var::from_tensor(&z32)?;
        assert!(fused_path(&fused_in, &targets));
        let fused = token_stats(&fused_in, &targets, temperature)?;
        let fused_grad = loss(&fused)?.backward()?;
        let fused_grad = fused_grad
            .get(&fused_in)
            .expect("a gradient")
            .to_dtype(DType::F64)?;
        assert_eq!(fused_grad.dtype(), DType::F64);

        let ref_in = Var::from_tensor(&z32.to_dtype(DType::F64)?)?;
        let want = token_stats_reference(&ref_in, &targets, temperature)?;
        let want_grad = loss(&want)?.backward()?;
        let want_grad = want_grad.get(&ref_in).expect("a gradient").clone();

        let rel = |a: &Tensor, b: &Tensor| -> Result<f64> {
            let a = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            let b = b.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            assert!(b.iter().all(|x| x.is_finite()), "the reference is not finite");
            Ok(a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
                .fold(0.0, |m: f64, e| if e.is_nan() { f64::INFINITY } else { m.max(e) }))
        };
        let name = format!("{rows}x{v} scale {scale} T {temperature} {dtype:?}");
        for (what, a, b) in [
            ("lse", &fused.lse, &want.lse),
            ("logprob", &fused.logprobs, &want.logprobs),
            ("entropy", &fused.entropy, &want.entropy),
        ] {
            let e = rel(a, b)?;
            assert!(e < tol, "{name}: {what} off by {e:e}");
        }
        // The gradient scaled to its row's size (entries are O(1/v)).
        let e = rel(&(fused_grad * v as f64)?, &(want_grad * v as f64)?)?;
        assert!(e < grad_tol, "{name}: gradient off by {e:e}");
        Ok(())
    }

    #[test]
    fn fused_matches_the_f64_reference() -> Result<()> {
        // One piece and one chunk; several chunks; several pieces (with a
        // ragged last one), so the merges of partial states are exercised.
        compare(10, 37, 3.0, 1.0, DType::F32, 2e-6, 2e-5)?;
        compare(10, 3000, 8.0, 1.0, DType::F32, 2e-6, 2e-5)?;
        compare(6, 2 * PIECE + 777, 8.0, 1.0, DType::F32, 5e-6, 2e-5)?;
        // Enough rows for the parallel path, at a temperature.
        compare(40, 1500, 20.0, 0.6, DType::F32, 2e-6, 2e-5)?;
        compare(10, 3000, 5.0, 1.7, DType::F32, 2e-6, 2e-5)
    }

    #[test]
    fn half_precision_logits_compute_in_f32() -> Result<()> {
        // The reference sees the same rounded logits, so only f32 arithmetic
        // separates the forward values; the gradient comes back rounded to
        // bf16 (2^-9 relative) or f16 (2^-12).
        compare(10, 3000, 4.0, 0.8, DType::BF16, 2e-6, 1e-2)?;
        compare(10, 3000, 4.0, 1.3, DType::F16, 2e-6, 2e-3)?;
        // Half-precision logits give f32 statistics and a gradient of their own type.
        for dtype in [DType::BF16, DType::F16] {
            let x = Var::from_tensor(&randn(&[3, 50], 5).to_dtype(dtype)?)?;
            let targets = Tensor::new(&[0u32, 7, 49], &Device::Cpu)?;
            let s = token_stats(&x, &targets, 0.9)?;
            assert_eq!(s.logprobs.dtype(), DType::F32);
            let g = (s.logprobs.sum_all()? - s.entropy.sum_all()?)?.backward()?;
            assert_eq!(g.get(&x).expect("a gradient").dtype(), dtype);
        }
        Ok(())
    }

    #[test]
    fn the_gradient_is_the_formula() -> Result<()> {
        // One row by hand: z = [1, 2, -inf, 0], t = 1, T = 2, loss = logprob
        // + 0.5 * entropy. p = softmax(z / 2).
        let z = [1f64, 2.0, f64::NEG_INFINITY, 0.0];
        let x: Vec<f64> = z.iter().map(|v| v / 2.0).collect();
        let lse = x.iter().map(|v| v.exp()).sum::<f64>().ln();
        let p: Vec<f64> = x.iter().map(|v| (v - lse).exp()).collect();
        let h: f64 = -p.iter().filter(|&&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
        let want: Vec<f64> = (0..4)
            .map(|j| {
                if p[j] == 0.0 {
                    return 0.0;
                }
                let onehot = (j == 1) as u8 as f64;
                (onehot - p[j] - 0.5 * p[j] * (p[j].ln() + h)) / 2.0
            })
            .collect();
        let logits = Var::from_vec(
            z.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (1, 4),
            &Device::Cpu,
        )?;
        let targets = Tensor::new(&[1u32], &Device::Cpu)?;
        let s = token_stats(&logits, &targets, 2.0)?;
        assert!((s.lse.to_vec1::<f32>()?[0] as f64 - lse).abs() < 1e-6);
        assert!((s.logprobs.to_vec1::<f32>()?[0] as f64 - (x[1] - lse)).abs() < 1e-6);
        assert!((s.entropy.to_vec1::<f32>()?[0] as f64 - h).abs() < 1e-6);
        let g = (s.logprobs + (s.entropy * 0.5)?)?.sum_all()?.backward()?;
        let got = g.get(&logits).expect("a gradient").to_vec2::<f32>()?;
        for (a, b) in got[0].iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{:?} vs {want:?}", got[0]);
        }
        Ok(())
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() -> Result<()> {
        let (z, t) = inputs(3, 3 * PIECE + 5, 6.0, 11);
        let logits = Tensor::from_vec(z, (3, 3 * PIECE + 5), &Device::Cpu)?;
        let targets = Tensor::from_vec(t, 3, &Device::Cpu)?;
        let run = |threads: usize| -> Result<Vec<f32>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let s = token_stats(&logits, &targets, 0.7)?;
                Tensor::cat(&[s.lse, s.logprobs, s.entropy], 0)?.to_vec1::<f32>()
            })
        };
        let one = run(1)?;
        assert!(one.iter().all(|x| x.is_finite()));
        assert_eq!(one, run(3)?);
        Ok(())
    }

    #[test]
    fn wrappers_match_their_references() -> Result<()> {
        let logits = Var::from_tensor(&(randn(&[4, 16, 512], 3) * 4.0)?)?;
        let t: Vec<u32> = (0..64u32).map(|i| (i * 7) % 512).collect();
        let targets = Tensor::from_vec(t, (4, 16), &Device::Cpu)?;
        let a = token_logprobs(&logits, &targets)?;
        let b = token_logprobs_reference(&logits, &targets)?;
        assert_eq!(a.dims(), &[4, 16]);
        assert!(max_diff(&a, &b) < 1e-5);
        let ga = a.sum_all()?.backward()?;
        let gb = b.sum_all()?.backward()?;
        assert!(max_diff(ga.get(&logits).unwrap(), gb.get(&logits).unwrap()) < 1e-6);
        let h = entropy(&logits)?;
        let logp = super::super::log_softmax_reference(logits.as_tensor())?;
        let want = (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?;
        assert!(max_diff(&h, &want) < 1e-5);
        // Other target types take the reference.
        let t64 = targets.to_dtype(DType::I64)?;
        assert!(!fused_path(&logits, &t64));
        assert!(max_diff(&token_logprobs(&logits, &t64)?, &b) < 1e-6);
        Ok(())
    }

    #[test]
    fn nan_and_all_minus_inf_rows_give_nan() -> Result<()> {
        let mut z = vec![0.5f32; 3 * 40];
        z[5] = f32::NAN; // row 0
        z[40..80].fill(f32::NEG_INFINITY); // row 1
        let logits = Tensor::from_vec(z, (3, 40), &Device::Cpu)?;
        let targets = Tensor::new(&[1u32, 1, 1], &Device::Cpu)?;
        let s = token_stats(&logits, &targets, 1.0)?;
        let lp = s.logprobs.to_vec1::<f32>()?;
        assert!(lp[0].is_nan() && lp[1].is_nan(), "{lp:?}");
        assert!((lp[2] - -(40f32.ln())).abs() < 1e-6);
        assert!(s.entropy.to_vec1::<f32>()?[0].is_nan());
        Ok(())
    }

    /// The CUDA kernels against the CPU op (skipped, with a note, where no
    /// CUDA device opens; `bench/gpu.sh` runs the same check at full size).
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_matches_the_cpu_op() -> Result<()> {
        let gpu = match Device::new_cuda(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("no CUDA device ({e}); cuda_matches_the_cpu_op skipped");
                return Ok(());
            }
        };
        for (dtype, grad_tol) in [(DType::F32, 1e-4f32), (DType::BF16, 1e-2), (DType::F16, 2e-3)] {
            let (rows, v) = (23, 2 * PIECE + 301);
            let (z, t) = inputs(rows, v, 6.0, 17);
            let cpu = Tensor::from_vec(z, (rows, v), &Device::Cpu)?.to_dtype(dtype)?;
            let run = |dev: &Device| -> Result<(Tensor, Tensor)> {
                let x = Var::from_tensor(&cpu.to_device(dev)?)?;
                let targets = Tensor::from_slice(&t, rows, dev)?;
                let w = Tensor::from_vec((0..rows).map(|r| [0f32, 1.0, -0.6][r % 3]).collect(), rows, dev)?;
                let s = token_stats(&x, &targets, 0.7)?;
                let loss = ((s.logprobs.mul(&w)? + (s.entropy.mul(&w)? * 0.5)?)? + (&s.lse * 0.2)?)?;
                let g = loss.sum_all()?.backward()?.get(&x).expect("a gradient").clone();
                let fwd = Tensor::stack(&[&s.lse, &s.logprobs, &s.entropy], 0)?;
                Ok((
                    fwd.to_device(&Device::Cpu)?,
                    g.to_dtype(DType::F32)?.to_device(&Device::Cpu)?,
                ))
            };
            let (want_f, want_g) = run(&Device::Cpu)?;
            let (got_f, got_g) = run(&gpu)?;
            let fwd = ((&got_f - &want_f)?.abs()? / (want_f.abs()? + 1.0)?)?;
            let fwd = fwd.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(fwd < 5e-5, "{dtype:?}: forward off by {fwd:e}");
            let scale = (want_g.abs()?.max_keepdim(1)? + 1e-30)?;
            let grad = (&got_g - &want_g)?.abs()?.broadcast_div(&scale)?;
            let grad = grad.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(grad < grad_tol, "{dtype:?}: gradient off by {grad:e}");
        }
        Ok(())
    }

    #[test]
    fn bad_inputs_are_named() {
        let logits = randn(&[2, 4], 1);
        let t = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
        let err = |r: Result<Tensor>| r.unwrap_err().to_string();
        assert!(err(token_logprobs(&logits, &t)).contains("outside the vocabulary"));
        let t = Tensor::new(&[1u32], &Device::Cpu).unwrap();
        assert!(err(token_logprobs(&logits, &t)).contains("need targets"));
        let t = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = token_stats(&logits, &t, bad).unwrap_err().to_string();
            assert!(e.contains("temperature"), "{e}");
        }
    }
}
