#!/usr/bin/env bash
# Compile every kernels/*.cu to PTX for sm_80 and sm_90 with warnings as
# errors, then assemble each PTX with ptxas for its GPU (also warnings as
# errors), so a kernel that would not load on an A100 or H100 fails here.
# No GPU is needed. CI runs it (`make kernels`).
#
#   kernels/build.sh                 # nvcc from kernels/nvcc.sh (pinned, from PyPI)
#   NVCC=/usr/local/cuda/bin/nvcc kernels/build.sh
#   KERNELS_OUT=dir kernels/build.sh # default target/kernels
#
# Output: $KERNELS_OUT/sm_XX/NAME.ptx and NAME.cubin, and the register and
# shared-memory use of every kernel on stdout. The trainer's build.rs
# compiles the same sources with the same flags when its `cuda` feature is on.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${KERNELS_OUT:-$root/target/kernels}"
archs=(80 90)

if [ -n "${NVCC:-}" ]; then
    nvcc="$NVCC"
    ptxas="$(dirname "$nvcc")/ptxas"
else
    bin="$("$here/nvcc.sh" | tail -n 1)"
    nvcc="$bin/nvcc"
    ptxas="$bin/ptxas"
fi
[ -x "$nvcc" ] || { echo "kernels/build.sh: error: no nvcc at $nvcc" >&2; exit 1; }

shopt -s nullglob
sources=("$here"/*.cu)
[ ${#sources[@]} -gt 0 ] || { echo "kernels/build.sh: error: no kernels/*.cu" >&2; exit 1; }

started=$(date +%s)
for arch in "${archs[@]}"; do
    mkdir -p "$out/sm_$arch"
    for src in "${sources[@]}"; do
        name="$(basename "$src" .cu)"
        ptx="$out/sm_$arch/$name.ptx"
        echo "== $name.cu -> sm_$arch"
        "$nvcc" --ptx -arch="compute_$arch" -O3 -std=c++17 --Werror all-warnings -o "$ptx" "$src"
        if ! log="$("$ptxas" -arch="sm_$arch" --warning-as-error -v -o "$out/sm_$arch/$name.cubin" "$ptx" 2>&1)"; then
            echo "$log" >&2
            echo "kernels/build.sh: error: ptxas rejected $ptx" >&2
            exit 1
        fi
        # One line per kernel: its registers, barriers and shared memory.
        echo "$log" | awk -F"'" '/Compiling entry function/ { k = $2 } /Used/ { sub(/.*: /, ""); print "   " k ": " $0 }'
    done
done
echo "kernels/build.sh: ${#sources[@]} kernel file(s) for sm_${archs[*]} in $(($(date +%s) - started)) s -> $out"
