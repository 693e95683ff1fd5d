#!/usr/bin/env bash
# Benchmark reward-server against math-verify (see bench/math_bench.py).
#
#   bash bench/math_bench.sh [--quick] [math_bench.py options...]
exec bash "$(dirname "${BASH_SOURCE[0]}")/with_anchor.sh" math_bench.py "$@"
