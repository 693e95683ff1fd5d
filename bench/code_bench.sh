#!/usr/bin/env bash
# Benchmark code grading: `reward-server grade` (CPython for WASI in wasmtime)
# against a native CPython process pool (see bench/code_bench.py).
#
#   bash bench/code_bench.sh [--quick] [code_bench.py options...]
#
# Fetches the sandbox guest if missing (sandboxes/fetch.sh, a no-op once it is
# there), builds the release binary (skip with SKIP_BUILD=1; honours
# CARGO_TARGET_DIR), makes the native baseline's interpreter, then runs the
# script (stdlib only) with python3.
#
# The native baseline runs programs with a venv (no pip, no packages) of
# NATIVE_PYTHON, default /usr/bin/python3 when it exists (a distribution
# build, usually PGO/LTO-optimised), else python3. A bare venv starts like a
# grader's interpreter without whatever the host's site-packages run at
# start-up (.pth hooks): on the dev machine every installed Python has one
# that imports certifi, which triples `python3 -c pass`. The venv lives in
# bench/out/native-venv (git-ignored) and is rebuilt when NATIVE_PYTHON changes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
bash "$ROOT/sandboxes/fetch.sh"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p reward-server --locked)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac

if [ -z "${NATIVE_PYTHON:-}" ]; then
    if [ -x /usr/bin/python3 ]; then NATIVE_PYTHON=/usr/bin/python3; else NATIVE_PYTHON="$(command -v python3)"; fi
fi
VENV="$HERE/out/native-venv"
BASE="$("$NATIVE_PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.base" 2>/dev/null)" != "$BASE" ]; then
    rm -rf "$VENV"
    "$NATIVE_PYTHON" -m venv --without-pip "$VENV"
    echo "$BASE" > "$VENV/.base"
fi
exec python3 "$HERE/code_bench.py" --bin "$TARGET/release/reward-server" --native-python "$VENV/bin/python" "$@"
