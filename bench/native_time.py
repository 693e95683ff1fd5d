#!/usr/bin/env python3
"""Fuel per native CPython second: the factor behind `time_limit_native_s`.

For each workload in bench/native_time/ (typical contest-style Python:
loops, sieves, dicts, sorting, recursion, graphs, DP, big integers, heaps,
input parsing, float math, comprehensions), this runs:

- native CPython (`python3`, the anchor): the workload's CPU time, measured
  in the process around `exec` (no interpreter start-up), best of
  `--repeat` runs;
- the guest: `reward-server run` prints the fuel the case burned (fuel is
  deterministic: one run).

It prints fuel per native second for each workload and their spread, and
the factor to commit (the highest, see reward-server/src/code/time_limit.rs).
Timings are only meaningful on an idle machine: bench/native_time.sh takes
the exclusive CPU lock.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / "native_time"
FUEL_RE = re.compile(r"\((\d+) fuel\)")

NATIVE_RUNNER = r"""
import sys, time
src = open(sys.argv[1]).read()
code = compile(src, sys.argv[1], "exec")
t = time.process_time()
exec(code, {"__name__": "__main__"})
sys.stdout.flush()
sys.stderr.write("cpu=%r\n" % (time.process_time() - t))
"""


def parse_input_stdin() -> str:
    rng = random.Random(5)
    n = 200_000
    return f"{n}\n" + " ".join(str(rng.randrange(10**9)) for _ in range(n)) + "\n"


def native_cpu(path: Path, stdin: str, python: str, repeat: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        p = subprocess.run(
            [python, "-c", NATIVE_RUNNER, str(path)], input=stdin, capture_output=True, text=True, check=True
        )
        cpu = float(p.stderr.strip().rsplit("cpu=", 1)[1])
        best, out = min(best, cpu), p.stdout
    return best, out


def guest_fuel(path: Path, stdin: str, server: str) -> tuple[int, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as f:
        f.write(stdin)
        stdin_path = f.name
    try:
        p = subprocess.run(
            [server, "run", str(path), "--stdin", stdin_path, "--time-limit", "60"],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(stdin_path)
    last = p.stderr.strip().splitlines()[-1]
    if p.returncode != 0:
        sys.exit(f"{path.name}: the guest run failed: {last}")
    return int(FUEL_RE.search(last).group(1)), p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="target/debug/reward-server")
    ap.add_argument("--python", default="python3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    rows = []
    for path in sorted(WORKLOADS.glob("*.py")):
        stdin = parse_input_stdin() if path.stem == "parse_input" else ""
        cpu, native_out = native_cpu(path, stdin, args.python, args.repeat)
        fuel, guest_out = guest_fuel(path, stdin, args.server)
        if native_out != guest_out:
            sys.exit(f"{path.name}: native and guest outputs differ: {native_out!r} vs {guest_out!r}")
        rows.append({"workload": path.stem, "native_cpu_s": cpu, "fuel": fuel, "fuel_per_native_s": fuel / cpu})
        print(f"{path.stem:>14}  native {cpu:6.3f} s  guest {fuel / 1e9:7.2f} G fuel  {fuel / cpu / 1e9:6.2f} G fuel/native s")
    rates = [r["fuel_per_native_s"] for r in rows]
    summary = {
        "python": subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip(),
        "min": min(rates),
        "median": statistics.median(rates),
        "max": max(rates),
        "max_over_min": max(rates) / min(rates),
    }
    print(
        f"fuel per native second: min {summary['min'] / 1e9:.2f} G, median {summary['median'] / 1e9:.2f} G, "
        f"max {summary['max'] / 1e9:.2f} G (max/min {summary['max_over_min']:.2f}); {summary['python']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"workloads": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
