#!/usr/bin/env bash
# Runs a bench/ Python script against the anchor: sets up bench/.venv with the
# pinned math-verify, builds the release binary (skip with SKIP_BUILD=1;
# honours CARGO_TARGET_DIR), and passes both to the script.
#
#   bash bench/with_anchor.sh SCRIPT.py [script options...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SCRIPT="${1:?usage: with_anchor.sh SCRIPT.py [options...]}"
shift
PY="$(bash "$HERE/setup_venv.sh" | tail -n 1)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p reward-server)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
exec python3 "$HERE/$SCRIPT" --python "$PY" --bin "$TARGET/release/reward-server" "$@"
