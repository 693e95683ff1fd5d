#!/usr/bin/env bash
# Differential check of reward-server against math-verify (see bench/math_diff.py).
#
#   bash bench/math_diff.sh [--report bench/out/diff.md] [math_diff.py options...]
exec bash "$(dirname "${BASH_SOURCE[0]}")/with_anchor.sh" math_diff.py "$@"
