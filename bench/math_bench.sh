#!/usr/bin/env bash
# Benchmark reward-server against math-verify (see bench/math_bench.py).
#
#   bash bench/math_bench.sh [--quick] [math_bench.py options...]
#
# Sets up bench/.venv (pinned math-verify), builds the release binary
# (skip with SKIP_BUILD=1; honours CARGO_TARGET_DIR), generates the corpus and runs the benchmark.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p reward-server)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
exec python3 "$HERE/math_bench.py" --python "$PY" --bin "$TARGET/release/reward-server" "$@"
