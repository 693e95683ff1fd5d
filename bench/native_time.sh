#!/usr/bin/env bash
# Fuel per native CPython second (the factor of `time_limit_native_s`):
# native CPython and the sandbox guest side by side on bench/native_time/.
# Fuel is deterministic and the same for any build of the server, so the
# dev build (what `make test` builds) is used; the native timings run under
# the exclusive CPU lock. The native interpreter is Debian's python3.11 when
# present (the fastest CPython here, as in bench/code_bench.sh), else
# python3; NATIVE_PYTHON overrides it.
set -euo pipefail
cd "$(dirname "$0")/.."
flock -s /tmp/cpu.lock cargo build -p reward-server
make -s fetch-guest
python="${NATIVE_PYTHON:-$(command -v /usr/bin/python3.11 || command -v python3)}"
exec flock -x /tmp/cpu.lock python3 bench/native_time.py --server target/debug/reward-server --python "$python" "$@"
