#!/usr/bin/env bash
# Builds the sampler the rollout engine replaced, for the exactness fixture
# and the rollout benchmark: extracts BEFORE_COMMIT (the last commit with
# `trainer::sample::generate`, the static-batch sampler) into
# target/before-src/, adds bench/before/rollout_before.rs as an example and
# builds it in release, sharing this tree's target directory (so only the
# workspace crates compile). The last line of stdout is the binary's path.
#
#   bench/before.sh            # build (once) and print the path
#   bench/before.sh fixture    # ... then rewrite tests/fixtures/sampler/before.json
#
# Honours CARGO_TARGET_DIR and CARGO.
set -euo pipefail

BEFORE_COMMIT=beda2998e7ac0e37905ac2b46b506ab44a1dda87
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET" in /*) ;; *) TARGET="$REPO/$TARGET" ;; esac
SRC="$TARGET/before-src"
CARGO="${CARGO:-cargo}"

if [ "$(cat "$SRC/.commit" 2>/dev/null)" != "$BEFORE_COMMIT" ]; then
    echo "before.sh: extracting $BEFORE_COMMIT into $SRC" >&2
    rm -rf "$SRC"
    mkdir -p "$SRC"
    git -C "$REPO" archive "$BEFORE_COMMIT" | tar -x -C "$SRC"
    echo "$BEFORE_COMMIT" > "$SRC/.commit"
fi
cp "$REPO/bench/before/rollout_before.rs" "$SRC/trainer/examples/rollout_before.rs"
echo "before.sh: building the pre-engine sampler driver" >&2
(cd "$SRC" && CARGO_TARGET_DIR="$TARGET" "$CARGO" build --release --locked -p trainer --example rollout_before >&2)
bin="$TARGET/release/examples/rollout_before"

if [ "${1:-}" = fixture ]; then
    mkdir -p "$REPO/tests/fixtures/sampler"
    "$bin" fixture "$REPO/tests/fixtures/tiny-qwen2" "$REPO/tests/fixtures/sampler/before.json"
    echo "before.sh: wrote tests/fixtures/sampler/before.json" >&2
fi
echo "$bin"
