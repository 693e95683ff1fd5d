#!/usr/bin/env bash
# Benchmark `trainer data decontaminate`: 1M synthetic training prompts
# against 10k benchmark prompts (issue 8's target: under a minute), plus one
# timed `trainer data dedup` of the same file (see bench/curate_bench.py).
#
#   bash bench/curate_bench.sh [curate_bench.py options: --rounds N --anchor --no-dedup ...]
#
# Builds the release trainer (skip with SKIP_BUILD=1; honours
# CARGO_TARGET_DIR), then runs the script (stdlib only) with python3. The
# data (~440 MB) is generated once into bench/out/curate/ (git-ignored).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p trainer --locked)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
exec python3 "$HERE/curate_bench.py" --bin "$TARGET/release/trainer" "$@"
