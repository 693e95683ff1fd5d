#!/usr/bin/env bash
# Real-size training steps on the CPU against PyTorch + transformers, and the
# memory plan against measured peak RSS (see bench/step_bench.py).
#
#   bash bench/step_bench.sh [step_bench.py options...]
#   bash bench/step_bench.sh --seqs 4096 --workloads sft,grpo
#   bash bench/step_bench.sh --plan-check
#
# Makes (or reuses) the pinned torch venv with bench/torch_env.sh
# (TORCH_VENV to share one), builds the release binary (SKIP_BUILD=1 skips;
# honours CARGO_TARGET_DIR), then runs the driver. Each run needs up to
# ~16 GiB: on a shared machine run it under `flock -x /tmp/cpu.lock`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
TORCH_PY="$(bash "$HERE/torch_env.sh" | tail -n 1)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --locked -p trainer)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
exec python3 "$HERE/step_bench.py" --python "$TORCH_PY" --bin "$TARGET/release/trainer" "$@"
