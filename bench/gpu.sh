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
#      GRPO_BATCH x GRPO_LEN tokens) with either loss path;
#   5. the real-size step benchmark (`trainer bench-step`) at the Qwen2.5-1.5B
#      shape: one SFT and one GRPO step of STEP_BATCH x STEP_SEQ tokens (default
#      1 x 4096) in bf16 with f32 master weights, layers checkpointed, each
#      after one warm-up step: tokens/s, MFU against PEAK_FLOPS (default
#      989e12, an H100 SXM's dense bf16) and the most GPU memory in use while
#      it ran (nvidia-smi, sampled every 200 ms). STEP_MODEL=qwen2.5-0.5b for the CPU benchmark's shape;
#      SKIP_STEP=1 leaves it out.
#
# Last, the rollout benchmark (bench/rollout_bench.py, the engine alone) at
# the Qwen2.5-1.5B shape: a random checkpoint (`trainer init --vocab-size`,
# kept in bench/out/rollout-1.5b/), 64 prompts x 8 samples with long-tailed
# lengths (mean ROLLOUT_MEAN_LEN, cut at ROLLOUT_MAX_NEW), bf16 on the GPU,
# a KV pool of ROLLOUT_KV_MIB: new tokens/s, the engine's steps, pool and
# preemptions. It needs python3 (no torch) and the trainer built with
# `--features cuda` (TRAINER_BIN, else built here). SKIP_ROLLOUT=1 leaves it
# out; ROLLOUT_ONLY=1 runs only it (~2-3 minutes, most of it making and
# loading the checkpoint).
#
# It prints Markdown tables and keeps them in bench/out/gpu.md, for
# docs/BENCHMARKS.md.
#
#   bench/gpu.sh
#   ROWS=2048,16384 GRPO_BATCH=4 GRPO_LEN=2048 bench/gpu.sh
#   LOGPROB_BENCH=path/to/logprob_bench SKIP_TESTS=1 bench/gpu.sh   # a binary built elsewhere
#   LOGPROB_BENCH=... TRAINER_BIN=path/to/trainer SKIP_TESTS=1 bench/gpu.sh
#   ROLLOUT_ONLY=1 TRAINER_BIN=path/to/trainer bench/gpu.sh             # only the rollout
#
# Both binaries built here with `--features cuda` (CUDA_COMPUTE_CAP=90 for an
# H100) run on a machine with no cargo; the whole run takes ~3-5 minutes.
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

STEP_MODEL="${STEP_MODEL:-qwen2.5-1.5b}"
STEP_BATCH="${STEP_BATCH:-1}"
STEP_SEQ="${STEP_SEQ:-4096}"
PEAK_FLOPS="${PEAK_FLOPS:-989e12}"

# The rollout benchmark at the 1.5B shape (appends to $out).
rollout() {
    local trainer="${trainer:-${TRAINER_BIN:-}}" model=bench/out/rollout-1.5b
    if [ -z "$trainer" ]; then
        echo "== building the trainer with --features cuda" >&2
        cargo build --release --locked -p trainer --features cuda --bin trainer
        trainer="${CARGO_TARGET_DIR:-target}/release/trainer"
    fi
    [ -x "$trainer" ] || die "no trainer binary at $trainer"
    if [ ! -f "$model/config.json" ]; then
        echo "== a random Qwen2.5-1.5B-shaped checkpoint in $model" >&2
        "$trainer" init --vocab-size 151936 --hidden-size 1536 --layers 28 --heads 12 --kv-heads 2 \
            --intermediate-size 8960 --context 4096 --rope-theta 1000000 --seed 0 --out "$model"
    fi
    echo "== rollout: 64 prompts x 8 samples at the 1.5B shape, bf16 (trainer generate)" >&2
    {
        echo
        echo "### Rollout, Qwen2.5-1.5B shape (random weights), bf16, 64 prompts x 8 samples"
        echo
        python3 bench/rollout_bench.py --only engine --trainer "$trainer" --model "$model" \
            --device cuda --dtype bf16 --out bench/out/rollout-gpu \
            --mean-len "${ROLLOUT_MEAN_LEN:-100}" --max-new-tokens "${ROLLOUT_MAX_NEW:-512}" \
            --kv-cache-mib "${ROLLOUT_KV_MIB:-16384}" 2>&1
    } | tee -a "$out"
}

if [ "${ROLLOUT_ONLY:-0}" = 1 ]; then
    echo "## GPU: $gpu" | tee "$out"
    rollout
    echo "bench/gpu.sh: tables in $out" >&2
    exit 0
fi

bin="${LOGPROB_BENCH:-}"
trainer="${TRAINER_BIN:-}"
if [ -z "$bin" ]; then
    if [ -z "${NVCC:-}" ] && ! command -v nvcc >/dev/null; then
        [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || die "no nvcc: set NVCC or CUDA_HOME, or put it on PATH"
        export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
    fi
    echo "== building with --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)" >&2
    cargo build --release --locked -p trainer --features cuda --example logprob_bench --bin trainer
    bin="${CARGO_TARGET_DIR:-target}/release/examples/logprob_bench"
    trainer="${trainer:-${CARGO_TARGET_DIR:-target}/release/trainer}"
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

if [ "${SKIP_STEP:-0}" != 1 ]; then
    [ -n "$trainer" ] && [ -x "$trainer" ] || die "no trainer binary: set TRAINER_BIN (built with --features cuda)"
    echo "== training steps at the $STEP_MODEL shape (trainer bench-step)" >&2
    {
        echo
        echo "### Training steps, $STEP_MODEL shape, bf16 with f32 master weights, $STEP_BATCH x $STEP_SEQ tokens"
        echo
        echo "| workload | tokens/s | MFU | peak GPU memory in use (MiB) |"
        echo "|---|---:|---:|---:|"
    } | tee -a "$out"
    for workload in sft grpo; do
        samples="$(mktemp)"
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$samples" &
        sampler=$!
        line="$("$trainer" bench-step --device cuda --model "$STEP_MODEL" --workload "$workload" \
            --batch "$STEP_BATCH" --seq "$STEP_SEQ" --dtype bf16 --checkpoint-layers true \
            --warmup 1 --steps 1 --peak-flops "$PEAK_FLOPS" | tail -n 1)"
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        used="$(sort -n "$samples" | tail -n 1)"
        rm -f "$samples"
        echo "$line" >&2
        tok="$(echo "$line" | sed -n 's/.*: \([0-9.]*\) tok\/s.*/\1/p')"
        mfu="$(echo "$line" | sed -n 's/.*MFU \([0-9.]*%\).*/\1/p')"
        echo "| $workload | $tok | $mfu | $used |" | tee -a "$out"
    done
fi

[ "${SKIP_ROLLOUT:-0}" = 1 ] || rollout

echo "bench/gpu.sh: tables in $out" >&2
