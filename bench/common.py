"""Shared helpers for bench/math_bench.py and bench/math_diff.py (stdlib only)."""

import json
import math
import os
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
DEFAULT_BIN = os.path.join(REPO_ROOT, "target", "release", "reward-server")
DEFAULT_PY = os.path.join(BENCH_DIR, ".venv", "bin", "python")
DEFAULT_OUT = os.path.join(BENCH_DIR, "out")
MV_WORKER = os.path.join(BENCH_DIR, "mv_worker.py")
MAKE_CASES = os.path.join(BENCH_DIR, "make_cases.py")


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def check_tools(bin_path, py_path):
    if not os.access(bin_path, os.X_OK):
        die(f"{bin_path} not found; build it with `cargo build --release -p reward-server` (or use bench/*.sh)")
    if not os.access(py_path, os.X_OK):
        die(f"{py_path} not found; run bench/setup_venv.sh first")


def ensure_corpus(path, n, seed=None):
    """Generate the corpus with make_cases.py unless it already exists."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    cmd = [sys.executable, MAKE_CASES, path, "--n", str(n)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    subprocess.run(cmd, check=True)
    return path


def timed_run(cmd, stdout_path=os.devnull, stderr_path=os.devnull):
    """Run cmd to completion; return (returncode, wall_s, cpu_s, maxrss_mib).

    Wall time is perf_counter around spawn..reap; CPU time and peak RSS come
    from wait4's rusage for that child only.
    """
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
    return out


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[min(k, len(s)) - 1]


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def reward_of(res):
    """0/1 reward of a result dict (ours or math-verify's); None if absent."""
    r = res.get("reward")
    if isinstance(r, (int, float)):
        return 1 if r > 0.5 else 0
    return None


def cpu_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs"


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
