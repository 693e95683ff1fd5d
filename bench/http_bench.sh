#!/usr/bin/env bash
# HTTP load benchmark of `reward-server serve` (see bench/http_bench.py).
#
#   bash bench/http_bench.sh [--quick] [http_bench.py options...]
#
# Fetches the sandbox guest if missing (sandboxes/fetch.sh, a no-op once it is
# there), builds the release binary (skip with SKIP_BUILD=1; honours
# CARGO_TARGET_DIR), installs the load generator oha (pinned, below) into
# bench/.tools (git-ignored; skipped when that version is already there), then
# runs the script (stdlib only) with python3. The script starts the server
# itself on 127.0.0.1:0 and stops it with SIGTERM.
#
# The first install builds oha and its dependencies (aws-lc among them: C, and
# it does not build without a TLS feature): ~10 minutes on 2 cores.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OHA_VERSION=1.16.0
TOOLS="$HERE/.tools"
OHA="$TOOLS/bin/oha"

bash "$ROOT/sandboxes/fetch.sh"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p reward-server --locked)
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac

if ! { [ -x "$OHA" ] && "$OHA" --version 2>/dev/null | grep -qx "oha $OHA_VERSION"; }; then
    echo "installing oha $OHA_VERSION into $TOOLS (one-time, ~10 minutes on 2 cores) ..." >&2
    # Its own target dir, so that a CARGO_TARGET_DIR shared with the workspace
    # is not filled with oha's dependencies.
    CARGO_TARGET_DIR="$TOOLS/build" cargo install --locked --root "$TOOLS" \
        --version "$OHA_VERSION" oha
    rm -rf "$TOOLS/build"
fi
exec python3 "$HERE/http_bench.py" --bin "$TARGET/release/reward-server" --oha "$OHA" "$@"
