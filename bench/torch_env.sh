#!/usr/bin/env bash
# Create the Python venv with pinned torch + transformers used to make the
# reference fixtures in tests/fixtures/ (make_tiny_qwen2.py) and by the
# PyTorch CPU benchmark.
#
#   bench/torch_env.sh                      # -> bench/.venv-torch
#   TORCH_VENV=/some/dir bench/torch_env.sh
#   PYTHON=python3.12 bench/torch_env.sh
#
# Versions are pinned in bench/requirements-torch.txt. PyPI's torch wheel is
# the CUDA build: it runs on CPU, but pulls its nvidia-* libraries (~5.4 GB).
#
# Idempotent: if the venv exists and its stamp file holds the sha256 of the
# requirements file, it does nothing. The last line of stdout is the path to
# the venv's python; everything else goes to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${TORCH_VENV:-$REPO/bench/.venv-torch}"
PYTHON="${PYTHON:-python3}"
REQS="$REPO/bench/requirements-torch.txt"
STAMP="$VENV/.requirements-torch.sha256"

want="$(sha256sum "$REQS" | cut -d' ' -f1)"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "torch_env: $VENV is up to date" >&2
    echo "$VENV/bin/python"
    exit 0
fi

echo "torch_env: installing $REQS into $VENV (torch is ~5.4 GB with its CUDA libraries)" >&2
rm -f "$STAMP"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" >&2

"$VENV/bin/python" - <<'PY' >&2
import torch, transformers, tokenizers, safetensors, numpy
print("torch_env: torch", torch.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "safetensors", safetensors.__version__,
      "numpy", numpy.__version__)
assert float(torch.ones(2).sum()) == 2.0
PY

echo "$want" > "$STAMP"
echo "torch_env: ok" >&2
echo "$VENV/bin/python"
