#!/usr/bin/env bash
# Provide the pinned Intel oneMKL (PyPI wheel `mkl`, kernels/requirements-mkl.txt)
# for the trainer's bf16 matrix products on the CPU, and print the path of its
# libmkl_rt.so.2 on the last line of stdout.
#
#   kernels/mkl.sh                         # -> ~/.cache/acereason/mkl-2024.2.2/libmkl_rt.so.2
#   MKL_DIR=/some/dir kernels/mkl.sh
#   export ACEREASON_MKL="$(kernels/mkl.sh | tail -n 1)"
#
# The trainer loads that library at run time (trainer/src/ops/mkl.rs): from
# $ACEREASON_MKL, else from the default path above. Without it, or on a CPU
# without AVX512-BF16, the trainer computes bf16 models' products in f32 as
# before; nothing is needed to build. Keeps only the libraries a sequential
# cblas_gemm_bf16bf16f32 needs (~310 MB of the ~740 MB the wheel unpacks to), plus the
# licence. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
reqs="$here/requirements-mkl.txt"
dir="${MKL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acereason/mkl-2024.2.2}"
python="${PYTHON:-python3}"
keep=(libmkl_rt.so.2 libmkl_core.so.2 libmkl_sequential.so.2 libmkl_intel_lp64.so.2
      libmkl_avx512.so.2 libmkl_avx2.so.2 libmkl_def.so.2 libmkl_mc3.so.2)

die() {
    echo "kernels/mkl.sh: error: $*" >&2
    exit 1
}

if [ -f "$dir/libmkl_rt.so.2" ] && [ -f "$dir/.complete" ]; then
    echo "kernels/mkl.sh: $dir already has oneMKL 2024.2.2" >&2
else
    echo "kernels/mkl.sh: fetching the pinned mkl wheel into $dir" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        --only-binary=:all: --platform manylinux1_x86_64 --python-version 3.11 \
        --require-hashes -r "$reqs" -d "$tmp" >&2 || die "pip download -r $reqs failed"
    whl=("$tmp"/mkl-2024.2.2-*.whl)
    [ -f "${whl[0]}" ] || die "no mkl wheel in $tmp"
    rm -rf "$dir"
    mkdir -p "$dir"
    members=()
    for lib in "${keep[@]}"; do members+=("mkl-2024.2.2.data/data/lib/$lib"); done
    "$python" - "${whl[0]}" "$dir" "${members[@]}" mkl-2024.2.2.dist-info/LICENSE.txt <<'PY' || die "unpacking the wheel failed"
import os, sys, zipfile
whl, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for name in names:
        with z.open(name) as src, open(os.path.join(out, os.path.basename(name)), "wb") as dst:
            dst.write(src.read())
PY
    touch "$dir/.complete"
fi
echo "$dir/libmkl_rt.so.2"
