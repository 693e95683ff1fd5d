#!/usr/bin/env bash
# Builds the FROM-scratch image (deploy/Containerfile.scratch) with buildah:
#
#   1. the release binary, static, for x86_64-unknown-linux-musl (rustup
#      target and Debian's musl-tools, installed here when missing);
#   2. the pinned guest (sandboxes/fetch.sh) into the context, and its
#      compiled module, warmed by running the static binary once;
#   3. `buildah bud` on the context (vfs storage: no overlay mounts needed).
#
# IMAGE (default localhost/reward-server:dev) names the result; CONTEXT
# (default target/image) is where the context is assembled. Needs root or
# rootless buildah; nothing is pulled (the image is FROM scratch). Takes a
# release build of the workspace for musl: ~15 min on 2 cores the first time.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${IMAGE:-localhost/reward-server:dev}"
context="${CONTEXT:-$repo_root/target/image}"
triple="x86_64-unknown-linux-musl"
cargo="${CARGO:-cargo}"

die() {
    echo "deploy/image.sh: error: $*" >&2
    exit 1
}

need_debian() {
    command -v "$1" >/dev/null && return
    command -v apt-get >/dev/null || die "$1 not found (Debian package $2)"
    apt-get install -y -q "$2" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$2" >&2; } ||
        die "cannot install Debian's $2"
}

need_debian musl-gcc musl-tools
need_debian buildah buildah
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple" ||
    die "cannot add the rust target $triple"

cd "$repo_root"
"$cargo" build --release --locked -p reward-server --target "$triple"
binary="$repo_root/target/$triple/release/reward-server"
file "$binary" | grep -q "statically linked\|static-pie linked" || die "$binary is not static"

rm -rf "$context"
mkdir -p "$context/build"
cp "$binary" "$context/build/reward-server"
SANDBOX_GUEST_DIR="$context/build/guest" sandboxes/fetch.sh
echo 'print("warm")' | SANDBOX_GUEST_DIR="$context/build/guest" "$context/build/reward-server" run -
ls "$context"/build/guest/compiled-*.cwasm >/dev/null || die "the compiled module was not cached"
cp deploy/Containerfile.scratch "$context/Containerfile"
buildah --storage-driver vfs bud --quiet -t "$image" -f "$context/Containerfile" "$context"
echo "built $image"
