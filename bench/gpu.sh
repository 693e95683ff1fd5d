#!/usr/bin/env bash
# The CUDA kernels on a machine with an NVIDIA GPU (A100/H100/H200) and the
# CUDA toolkit (nvcc, cuBLAS: a `--features cuda` build links them):
#
#   1. builds the trainer's logprob benchmark with `--features cuda`
#      (CUDA_COMPUTE_CAP from nvidia-smi) and runs the op's unit tests,
#      including `cuda_matches_the_cpu_op`;
#   2. checks each kernel (f32, bf16, f16) against the CPU op on random
#      logits at the full vocabulary, forward and gradient (fails on a
#      mismatch);
#   3. times the fused op against the unfused candle composition on bf16
#      logits of [ROWS x 152064] (default 1024, 4096 and 16384 rows): median
#      time and peak memory above the inputs (the CUDA memory pool's
#      high-water mark); an unfused run that does not fit is reported as
#      failed;
#   4. times GRPO steps of a random Qwen2-0.5B-shaped model (bf16, 24 layers,
#      GRPO_BATCH x GRPO_LEN tokens) with either loss path.
#
# It prints Markdown tables and keeps them in bench/out/gpu.md, for
# docs/BENCHMARKS.md.
#
#   bench/gpu.sh
#   ROWS=2048,16384 GRPO_BATCH=4 GRPO_LEN=2048 bench/gpu.sh
#   LOGPROB_BENCH=path/to/logprob_bench SKIP_TESTS=1 bench/gpu.sh   # a binary built elsewhere
#
# Needs: nvidia-smi; for the build, cargo and the crates (run `cargo fetch`
# first on a machine without network) and nvcc ($NVCC, $CUDA_HOME/bin or PATH).
set -euo pipefail

cd "$(dirname "$0")/.."
ROWS="${ROWS:-1024,4096,16384}"
VOCAB="${VOCAB:-152064}"
RUNS="${RUNS:-5}"
GRPO_BATCH="${GRPO_BATCH:-4}"
GRPO_LEN="${GRPO_LEN:-1024}"
out=bench/out/gpu.md
mkdir -p bench/out

die() {
    echo "bench/gpu.sh: error: $*" >&2
    exit 1
}

command -v nvidia-smi >/dev/null || die "no nvidia-smi: this needs a machine with an NVIDIA GPU"
gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | head -n 1)"
[ -n "$gpu" ] || die "nvidia-smi lists no GPU"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')}"

bin="${LOGPROB_BENCH:-}"
if [ -z "$bin" ]; then
    if [ -z "${NVCC:-}" ] && ! command -v nvcc >/dev/null; then
        [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || die "no nvcc: set NVCC or CUDA_HOME, or put it on PATH"
        export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
    fi
    echo "== building with --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)" >&2
    cargo build --release --locked -p trainer --features cuda --example logprob_bench
    bin="${CARGO_TARGET_DIR:-target}/release/examples/logprob_bench"
    if [ "${SKIP_TESTS:-0}" != 1 ]; then
        echo "== unit tests of the op, CPU and CUDA" >&2
        cargo test --release --locked -p trainer --features cuda --lib ops::logprob -- --nocapture
    fi
fi
[ -x "$bin" ] || die "no benchmark binary at $bin"

{
    echo "## GPU: $gpu"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (modified)')"
} | tee "$out"

echo "== kernels against the CPU op" >&2
"$bin" --device cuda --check-only --vocab "$VOCAB" | tee -a "$out"

echo "== fused vs unfused, and GRPO steps" >&2
"$bin" --device cuda --rows "$ROWS" --vocab "$VOCAB" --dtype bf16 --runs "$RUNS" \
    --grpo --grpo-batch "$GRPO_BATCH" --grpo-len "$GRPO_LEN" | tee -a "$out"

echo "bench/gpu.sh: tables in $out" >&2
