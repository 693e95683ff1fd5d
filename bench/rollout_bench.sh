#!/usr/bin/env bash
# The rollout benchmark (bench/rollout_bench.py): 64 prompts x 8 samples
# with long-tailed lengths, sampled by the rollout engine (`trainer
# generate`), by the sampler it replaced (bench/before.sh) and by Hugging
# Face transformers `generate`, side by side: new tokens/s and peak memory.
#
#   bench/rollout_bench.sh [rollout_bench.py options...]
#   LOCK=/tmp/cpu.lock bench/rollout_bench.sh      # each system under flock -x
#   TORCH_VENV=/work/wt/venv-torch bench/rollout_bench.sh --only engine,torch
#
# Makes (or reuses) the pinned torch venv with bench/torch_env.sh, builds the
# release trainer and the old sampler's driver (skip with SKIP_BUILD=1;
# honours CARGO_TARGET_DIR), then runs the driver with python3. Outputs in
# bench/out/rollout/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
TORCH_PY="$(bash "$HERE/torch_env.sh" | tail -n 1)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --locked -p reward-server -p trainer)
    BEFORE="$(bash "$HERE/before.sh" | tail -n 1)"
else
    BEFORE="$TARGET/release/examples/rollout_before"
fi
lock=()
if [ -n "${LOCK:-}" ]; then
    lock=(--lock "$LOCK")
fi
exec python3 "$HERE/rollout_bench.py" --trainer "$TARGET/release/trainer" --before "$BEFORE" \
    --python "$TORCH_PY" "${lock[@]}" "$@"
