// Token log-probabilities, log-sum-exp and entropy of softmax(logits / T),
// fused: the CUDA twin of the CPU op in trainer/src/ops/logprob.rs, which
// documents the math and the layouts. Rows are `vocab` contiguous logits
// (f32, bf16 or f16); everything is computed in f32.
//
// Forward, one block per row: each thread walks its strided share of the row
// UNROLL elements at a time with an online (streaming) max and sum, so the
// row is read once and the softmax never stored. The threads' states merge
// with warp shuffles, then across warps through shared memory. Row r of the
// output holds STATS floats:
//
//   [0] lse = logsumexp(z / T)        [1] logprob of the target, z_t / T - lse
//   [2] entropy H of softmax(z / T)   [3] m = max z      [4] ln s, with
//   s = sum exp((z - m) / T), so log p_j = (z_j - m) / T - ln s exactly
//
// Backward, a 2-D grid (vocabulary blocks x rows): from the row's forward
// stats and the gradients (g_lse, g_lp, g_H) of its first three outputs
// (`aux`, AUX floats a row: the STATS stats, then the STATS gradients),
// every thread writes
//
//   dL/dz_j = (1/T) [ p_j (g_lse - g_lp - g_H (log p_j + H)) + g_lp [j = t] ]
//
// into one gradient buffer of the input's type. A row whose three
// gradients are zero (a masked token) gets zeros without reading its logits.
//
// A target outside the vocabulary gives a NaN logprob (the CPU op refuses it
// up front; here that would cost a device-to-host copy).

#include "common.cuh"

namespace {

using acereason::FULL_MASK;
using acereason::from_float;
using acereason::to_float;

constexpr int STATS = 5;
constexpr int AUX = 2 * STATS;
// Elements a thread loads before it updates its running max: one rescale
// per UNROLL elements, and UNROLL independent loads in flight.
constexpr int UNROLL = 8;
constexpr int FWD_MAX_THREADS = 1024;
constexpr int BWD_THREADS = 256;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// The online softmax state of some logits z: m = max z (raw logits),
// s = sum 2^d and u = sum 2^d d, with d = (z - m) k and k = log2(e) / T.
// s == 0 means nothing finite yet; NaN in s marks a NaN logit.
struct State {
    float m;
    float s;
    float u;
};

__device__ __forceinline__ State empty_state() { return State{-INFINITY, 0.f, 0.f}; }

// Moves `st` to the larger max `m` (rescaling s and u).
__device__ __forceinline__ void rescale(State& st, float m, float k) {
    if (st.s > 0.f) {
        const float d = (st.m - m) * k;
        const float e = exp2f(d);
        st.u = e * (st.u + d * st.s);
        st.s *= e;
    }
    st.m = m;
}

// The state of the union of two disjoint sets of logits. Symmetric in a and
// b bit for bit, so every lane of a butterfly reduction ends with the same.
__device__ __forceinline__ State merge(State a, State b, float k) {
    if (b.s == 0.f) return a;
    if (a.s == 0.f) return b;
    const float m = fmaxf(a.m, b.m);
    const float da = (a.m - m) * k;
    const float db = (b.m - m) * k;
    const float ea = exp2f(da);
    const float eb = exp2f(db);
    return State{m, ea * a.s + eb * b.s, ea * (a.u + da * a.s) + eb * (b.u + db * b.s)};
}

__device__ __forceinline__ State warp_reduce(State st, float k) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        State other;
        other.m = __shfl_xor_sync(FULL_MASK, st.m, offset);
        other.s = __shfl_xor_sync(FULL_MASK, st.s, offset);
        other.u = __shfl_xor_sync(FULL_MASK, st.u, offset);
        st = merge(st, other, k);
    }
    return st;
}

// The block's merged state, valid in thread 0. blockDim.x is a multiple of 32.
__device__ State block_reduce(State st, float k, State* shared) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    st = warp_reduce(st, k);
    if (lane == 0) shared[warp] = st;
    __syncthreads();
    if (warp == 0) {
        st = lane < static_cast<int>(blockDim.x >> 5) ? shared[lane] : empty_state();
        st = warp_reduce(st, k);
    }
    // The next row reuses `shared`.
    __syncthreads();
    return st;
}

// This thread's state over elements threadIdx.x, +blockDim.x, ... of a row.
template <typename T>
__device__ State thread_state(const T* __restrict__ z, int64_t vocab, float k) {
    State st = empty_state();
    const int64_t stride = blockDim.x;
    for (int64_t base = threadIdx.x; base < vocab; base += stride * UNROLL) {
        float v[UNROLL];
        float top = -INFINITY;
        bool nan = false;
#pragma unroll
        for (int i = 0; i < UNROLL; ++i) {
            const int64_t j = base + i * stride;
            v[i] = j < vocab ? to_float(z[j]) : -INFINITY;
            top = fmaxf(top, v[i]);
            nan |= v[i] != v[i];
        }
        if (nan) st.s = NAN;
        if (top == -INFINITY) continue;  // only -inf (or NaN): nothing to add
        if (top > st.m) rescale(st, top, k);
#pragma unroll
        for (int i = 0; i < UNROLL; ++i) {
            const float d = (v[i] - st.m) * k;
            const float e = exp2f(d);
            st.s += e;
            st.u += e > 0.f ? e * d : 0.f;  // a -inf logit adds nothing (not 0 * -inf)
        }
    }
    return st;
}

template <typename T>
__device__ void logprob_fwd(const T* __restrict__ logits, const uint32_t* __restrict__ targets,
                            float* __restrict__ out, int64_t rows, int64_t vocab, float inv_t) {
    __shared__ State shared[FWD_MAX_THREADS / 32];
    const float k = inv_t * LOG2E;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* z = logits + row * vocab;
        const State st = block_reduce(thread_state(z, vocab, k), k, shared);
        if (threadIdx.x == 0) {
            const float ln_s = logf(st.s);
            const uint32_t t = targets[row];
            const float zt = t < vocab ? to_float(z[t]) : NAN;
            const float h = ln_s - LN2 * st.u / st.s;
            float* o = out + row * STATS;
            o[0] = st.m * inv_t + ln_s;
            o[1] = (zt - st.m) * inv_t - ln_s;
            o[2] = h < 0.f ? 0.f : h;  // rounding can dip below 0; NaN stays NaN
            o[3] = st.m;
            o[4] = ln_s;
        }
    }
}

template <typename T>
__device__ void logprob_bwd(const T* __restrict__ logits, const uint32_t* __restrict__ targets,
                            const float* __restrict__ aux, T* __restrict__ grad, int64_t rows,
                            int64_t vocab, float inv_t) {
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
        const float* a = aux + row * AUX;
        const float h = a[2];
        const float m = a[3];
        const float ln_s = a[4];
        const float g_lse = a[STATS + 0];
        const float g_lp = a[STATS + 1];
        const float g_h = a[STATS + 2];
        const T* z = logits + row * vocab;
        T* g = grad + row * vocab;
        if (g_lse == 0.f && g_lp == 0.f && g_h == 0.f) {
            for (int64_t j = first; j < vocab; j += stride) g[j] = from_float<T>(0.f);
            continue;
        }
        const int64_t t = targets[row];
        const float c = g_lse - g_lp - g_h * h;
        for (int64_t j = first; j < vocab; j += stride) {
            const float lp = (to_float(z[j]) - m) * inv_t - ln_s;
            const float p = exp2f(lp * LOG2E);
            float d = p > 0.f ? p * (c - g_h * lp) : 0.f;
            if (j == t) d += g_lp;
            g[j] = from_float<T>(d * inv_t);
        }
    }
}

}  // namespace

#define LOGPROB_ENTRY_POINTS(NAME, T)                                                          \
    extern "C" __global__ void __launch_bounds__(FWD_MAX_THREADS)                              \
        logprob_fwd_##NAME(const T* logits, const uint32_t* targets, float* out, int64_t rows, \
                           int64_t vocab, float inv_t) {                                       \
        logprob_fwd<T>(logits, targets, out, rows, vocab, inv_t);                              \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(BWD_THREADS)                                  \
        logprob_bwd_##NAME(const T* logits, const uint32_t* targets, const float* aux,         \
                           T* grad, int64_t rows, int64_t vocab, float inv_t) {                \
        logprob_bwd<T>(logits, targets, aux, grad, rows, vocab, inv_t);                        \
    }

LOGPROB_ENTRY_POINTS(f32, float)
LOGPROB_ENTRY_POINTS(bf16, __nv_bfloat16)
LOGPROB_ENTRY_POINTS(f16, __half)
