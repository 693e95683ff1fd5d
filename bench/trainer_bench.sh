#!/usr/bin/env bash
# Benchmark the trainer's CPU throughput (`trainer bench`) against the PyTorch
# anchor bench/anchors/torch_tiny_gpt.py, side by side, 2 threads each (see
# bench/trainer_bench.py).
#
#   bash bench/trainer_bench.sh [trainer_bench.py options...]
#   ROUNDS=5 bash bench/trainer_bench.sh --only train,grpo
#
# Makes (or reuses) the pinned torch venv with bench/torch_env.sh (its last
# stdout line is the venv's python), builds the release binary (skip with
# SKIP_BUILD=1; honours CARGO_TARGET_DIR), then runs the driver (stdlib only)
# with python3. ROUNDS (default 3) rounds, the two programs alternating.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
TORCH_PY="$(bash "$HERE/torch_env.sh" | tail -n 1)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --locked -p trainer)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
exec python3 "$HERE/trainer_bench.py" --python "$TORCH_PY" --bin "$TARGET/release/trainer" \
    --rounds "${ROUNDS:-3}" "$@"
