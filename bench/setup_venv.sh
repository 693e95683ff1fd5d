#!/usr/bin/env bash
# Create the Python venv holding the pinned math-verify anchor used by the
# benchmark and differential scripts.
#
#   bash bench/setup_venv.sh            # -> bench/.venv
#   VENV=/some/dir bash bench/setup_venv.sh
#   PYTHON=python3.12 bash bench/setup_venv.sh
#
# Idempotent: if the venv exists and imports the pinned math-verify, it does
# nothing. Prints the venv's python path on the last line of stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
REQS="$HERE/requirements-mathverify.txt"
PIN="$(sed -n 's/^math-verify==//p' "$REQS")"

check() {
    "$VENV/bin/python" - "$PIN" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
from math_verify import parse, verify  # noqa: F401
assert version("math-verify") == sys.argv[1], version("math-verify")
PY
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "setup_venv: $VENV already has math-verify==$PIN" >&2
    echo "$VENV/bin/python"
    exit 0
fi

echo "setup_venv: creating $VENV with math-verify==$PIN" >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" >&2

if ! check; then
    echo "setup_venv: math-verify==$PIN failed to import from $VENV" >&2
    exit 1
fi
echo "setup_venv: ok" >&2
echo "$VENV/bin/python"
