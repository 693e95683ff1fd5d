#!/usr/bin/env python3
"""Side-by-side CPU throughput: `trainer bench` against the PyTorch anchor.

Both programs run the same workloads on the same tiny Qwen2-style model
(vocab 512, d_model 256, 4 layers, 4 heads, MLP 1024, context 256, tied
embeddings, float32), each with --threads THREADS (default 2):

  train       batch 16 x 256: forward, mean cross-entropy, backward, AdamW step
  sample_b16  32-token prompts + 224 new tokens, temperature 1, KV cache, batch 16
  sample_b1   the same, batch 1
  grpo        16 sequences of 256 tokens (the batch-16 samples): log-probs of
              the sampled tokens + entropy, advantage-weighted loss over the
              completion tokens, backward, AdamW step

The anchor is bench/anchors/torch_tiny_gpt.py (eager mode, --no-compile);
ours is `trainer --threads N bench`. Both write the same JSON shape, and the
numbers are theirs: tokens per second of the median step (train, grpo) and
new tokens per second of the median run (sampling).

Each round runs both programs one after the other; the order alternates
from round to round so slow drifts in machine load hit both alike. The table
gives, per workload, the median over rounds of each side and the ratio of
the medians, ours / torch (>= 1.0: we are at least as fast), plus the range
of the per-round ratios. All rounds are saved as JSON (--out).

Usage (normally through trainer_bench.sh, which makes the venv and builds):
  python3 bench/trainer_bench.py --python VENV/bin/python --bin target/release/trainer
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (workload, field) as both programs report them.
METRICS = [
    ("train", "tok_per_s", "train tok/s"),
    ("sample_b16", "new_tok_per_s", "sample b16 new tok/s"),
    ("sample_b1", "new_tok_per_s", "sample b1 new tok/s"),
    ("grpo", "tok_per_s", "grpo tok/s"),
]


def run_side(name, cmd, log):
    """Runs one program; returns (its JSON result entry, env, wall seconds)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + ["--json", path], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        for line in (proc.stdout + proc.stderr).splitlines():
            if line.startswith("[") or "FAILED" in line:
                log(f"    {name}: {line}")
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"{name} exited with {proc.returncode}: {' '.join(cmd)}")
        with open(path) as fh:
            doc = json.load(fh)
    finally:
        os.unlink(path)
    result = next(r for r in doc["results"] if "error" not in r)
    return result, doc["env"], wall


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def git_commit():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="python of the torch venv")
    ap.add_argument("--bin", required=True, help="the trainer binary")
    ap.add_argument("--anchor", default=os.path.join(HERE, "anchors", "torch_tiny_gpt.py"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sample-runs", type=int, default=3)
    ap.add_argument("--only", default="train,sample,grpo")
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "trainer_bench.json"))
    args = ap.parse_args()

    def log(s):
        print(s, file=sys.stderr, flush=True)

    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--sample-runs",
              str(args.sample_runs), "--only", args.only, "--kv-heads", str(args.kv_heads)]
    if args.untied:
        common.append("--untied")
    sides = {
        "torch": [args.python, args.anchor, "--no-compile", "--threads", str(args.threads)] + common,
        "candle": [args.bin, "--threads", str(args.threads), "bench"] + common,
    }
    log(f"torch:  {' '.join(sides['torch'])}")
    log(f"candle: {' '.join(sides['candle'])}")
    started = time.time()
    load_start = load_average()
    rounds = []
    envs = {}
    for r in range(args.rounds):
        order = ["torch", "candle"] if r % 2 == 0 else ["candle", "torch"]
        log(f"round {r + 1}/{args.rounds} ({' then '.join(order)}), load average {load_average()}")
        entry = {}
        for name in order:
            result, env, wall = run_side(name, sides[name], log)
            entry[name] = result
            entry[f"{name}_wall_s"] = wall
            envs[name] = env
        rounds.append(entry)
    load_end = load_average()

    table = []
    for key, field, label in METRICS:
        if not all(key in r["torch"] and key in r["candle"] for r in rounds):
            continue
        torch_v = [r["torch"][key][field] for r in rounds]
        ours_v = [r["candle"][key][field] for r in rounds]
        per_round = [o / t for o, t in zip(ours_v, torch_v)]
        tm, om = statistics.median(torch_v), statistics.median(ours_v)
        table.append({"workload": key, "metric": label, "torch_median": tm, "candle_median": om,
                      "ratio": om / tm, "round_ratios": per_round, "torch": torch_v, "candle": ours_v})

    te = envs.get("torch", {})
    print(f"torch {te.get('torch', '?')} ({te.get('cpu_capability', '?')}), {te.get('cpu', '?')}, "
          f"nproc {te.get('nproc', '?')}, {args.threads} threads each, {args.rounds} rounds, "
          f"commit {git_commit()}")
    print(f"load average {load_start} at the start, {load_end} at the end; "
          f"{time.time() - started:.0f} s in all")
    print()
    print("| workload | PyTorch (median) | ours (median) | ours / PyTorch | per-round ratios |")
    print("|---|---:|---:|---:|---|")
    for row in table:
        rr = ", ".join(f"{x:.2f}" for x in row["round_ratios"])
        print(f"| {row['metric']} | {row['torch_median']:,.0f} | {row['candle_median']:,.0f} "
              f"| **{row['ratio']:.2f}** | {rr} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"args": vars(args), "commit": git_commit(), "host": platform.node(),
                   "load_average": {"start": load_start, "end": load_end}, "env": envs,
                   "table": table, "rounds": rounds}, fh, indent=1)
    print(f"\nall rounds: {os.path.relpath(args.out, os.getcwd())}")


if __name__ == "__main__":
    main()
