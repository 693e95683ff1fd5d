#!/usr/bin/env bash
# Provide the pinned CUDA 13.0 `nvcc` from PyPI (no system toolkit needed) and
# print the directory that holds it (its `bin/`) on the last line of stdout.
#
#   kernels/nvcc.sh                              # -> ~/.cache/acereason/nvcc-13.0.88
#   NVCC_VENV=/some/dir kernels/nvcc.sh
#   export PATH="$(kernels/nvcc.sh):$PATH"       # then nvcc, and cargo --features cuda
#
# The venv gets exactly the wheels of kernels/requirements-nvcc.txt (pinned,
# hash-checked; about 370 MB installed). They put the toolkit under
# site-packages/nvidia/cu13/: bin/nvcc and ptxas, nvvm/ (cicc, libdevice),
# include/ (cuda_runtime.h, cuda_bf16.h, crt/, cccl) and lib/. That tree has
# the layout of a CUDA installation, so nvcc finds its own headers, and
# CUDA_HOME / CUDA_PATH can point at it.
#
# Idempotent: when the venv holds nvcc 13.0 already it only prints the path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
reqs="$here/requirements-nvcc.txt"
venv="${NVCC_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/acereason/nvcc-13.0.88}"
python="${PYTHON:-python3}"

die() {
    echo "kernels/nvcc.sh: error: $*" >&2
    exit 1
}

# The toolkit root inside the venv (empty when the venv has none).
toolkit() {
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)" || return 0
    [ -x "$site/nvidia/cu13/bin/nvcc" ] && echo "$site/nvidia/cu13"
    return 0
}

ok() {
    local root
    root="$(toolkit)"
    [ -n "$root" ] && "$root/bin/nvcc" --version 2>/dev/null | grep -q 'release 13\.0'
}

if [ -x "$venv/bin/python" ] && ok; then
    echo "kernels/nvcc.sh: $venv already has nvcc 13.0" >&2
else
    echo "kernels/nvcc.sh: installing the pinned nvcc wheels into $venv" >&2
    started=$(date +%s)
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        --require-hashes -r "$reqs" >&2 || die "pip install -r $reqs failed"
    ok || die "no working nvcc 13.0 under $venv after the install"
    echo "kernels/nvcc.sh: installed in $(($(date +%s) - started)) s" >&2
fi
root="$(toolkit)"
"$root/bin/nvcc" --version | tail -n 2 >&2
echo "$root/bin"
