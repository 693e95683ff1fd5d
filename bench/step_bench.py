#!/usr/bin/env python3
"""Real-size training steps on the CPU: `trainer bench-step` against the
PyTorch + transformers anchor (anchors/torch_step.py), and the memory plan
against measured peak RSS.

Every run is its own process (so its peak RSS is its own), one at a time:
run this under `flock -x /tmp/cpu.lock` on a shared machine, the runs need
up to ~16 GiB each.

Modes:

  compare (default): for each --workloads x --seqs, ROUNDS rounds of one
      step each side, ours and PyTorch alternating which goes first; table of
      the median tokens/s of each side, the ratio ours/PyTorch, and each
      side's peak RSS. PyTorch gets --checkpointing when ours checkpoints.
  --plan-check: ours only, over --configs ("layers:seq:checkpoint" items);
      table of `trainer plan`'s prediction against the measured peak RSS.
  --ours-only: ours only over --seqs (peak memory against length).

  python3 bench/step_bench.py --bin target/release/trainer --python VENV/bin/python \\
      --seqs 4096 --workloads sft,grpo --rounds 1
  python3 bench/step_bench.py --bin target/release/trainer --plan-check \\
      --configs 24:1024:true,24:2048:true,4:1024:false,8:2048:false

JSON of every run goes to bench/out/step_bench.json (--out).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, log):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + ["--json", path], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"exited with {proc.returncode}: {' '.join(cmd)}")
        log("    " + proc.stdout.strip().splitlines()[-1] + f"  [{wall:.0f} s wall]")
        with open(path) as fh:
            doc = json.load(fh)
        doc["wall_s"] = wall
        return doc
    finally:
        os.unlink(path)


def ours_cmd(a, workload, seq, layers=None, ck=None):
    cmd = [a.bin, "--threads", str(a.threads), "bench-step", "--model", a.model, "--seq", str(seq),
           "--workload", workload, "--dtype", a.dtype, "--checkpoint-layers", ck or a.checkpoint_layers,
           "--steps", str(a.steps), "--warmup", str(a.warmup)]
    if layers:
        cmd += ["--layers", str(layers)]
    return cmd


def torch_cmd(a, workload, seq):
    cmd = [a.python, os.path.join(HERE, "anchors", "torch_step.py"), "--threads", str(a.threads),
           "--model", a.model, "--seq", str(seq), "--workload", workload, "--dtype", a.dtype,
           "--steps", str(a.steps), "--warmup", str(a.warmup)]
    if a.checkpoint_layers != "false":
        cmd.append("--checkpointing")
    return cmd


def gib(b):
    return f"{b / 2**30:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", help="the torch venv's python (compare mode)")
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--seqs", default="4096")
    ap.add_argument("--workloads", default="sft,grpo")
    ap.add_argument("--checkpoint-layers", default="true")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plan-check", action="store_true")
    ap.add_argument("--configs", default="24:1024:true,24:4096:true,4:1024:false,4:4096:false")
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "step_bench.json"))
    a = ap.parse_args()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    log = lambda s: print(s, flush=True)
    with open("/proc/loadavg") as f:
        log(f"load average at start: {' '.join(f.read().split()[:3])}")
    runs = []
    if a.plan_check:
        log("| layers | seq | checkpointing | workload | plan GiB | measured peak RSS GiB | plan / measured |")
        log("|---:|---:|---|---|---:|---:|---:|")
        rows = []
        for item in a.configs.split(","):
            layers, seq, ck = item.split(":")
            for w in a.workloads.split(","):
                doc = run(ours_cmd(a, w, int(seq), int(layers), ck), log)
                runs.append(doc)
                ratio = doc["plan_bytes"] / doc["peak_rss_bytes"]
                rows.append(f"| {layers} | {seq} | {ck} | {w} | {gib(doc['plan_bytes'])} | "
                            f"{gib(doc['peak_rss_bytes'])} | {ratio:.2f} |")
        log("\n".join(rows))
    elif a.ours_only:
        rows = []
        for w in a.workloads.split(","):
            for seq in map(int, a.seqs.split(",")):
                doc = run(ours_cmd(a, w, seq), log)
                runs.append(doc)
                rows.append(f"| {w} | {seq} | {doc['tok_per_s']:.1f} | {gib(doc['peak_rss_bytes'])} | "
                            f"{gib(doc['plan_bytes'])} |")
        log("| workload | seq | tok/s | peak RSS GiB | plan GiB |")
        log("|---|---:|---:|---:|---:|")
        log("\n".join(rows))
    else:
        if not a.python:
            raise SystemExit("compare mode needs --python (the torch venv's python)")
        rows = []
        for w in a.workloads.split(","):
            for seq in map(int, a.seqs.split(",")):
                ours, theirs = [], []
                for r in range(a.rounds):
                    order = [("ours", ours_cmd(a, w, seq)), ("torch", torch_cmd(a, w, seq))]
                    if r % 2:
                        order.reverse()
                    for side, cmd in order:
                        doc = run(cmd, log)
                        runs.append(doc)
                        (ours if side == "ours" else theirs).append(doc)
                o = statistics.median(d["tok_per_s"] for d in ours)
                t = statistics.median(d["tok_per_s"] for d in theirs)
                om = max(d["peak_rss_bytes"] for d in ours)
                tm = max(d["peak_rss_bytes"] for d in theirs)
                rows.append(f"| {w} | {seq} | {t:.1f} | {o:.1f} | **{o / t:.2f}** | {gib(tm)} | {gib(om)} |")
        log("| workload | seq | PyTorch tok/s | ours tok/s | ours / PyTorch | PyTorch peak RSS GiB | ours peak RSS GiB |")
        log("|---|---:|---:|---:|---:|---:|---:|")
        log("\n".join(rows))
    with open("/proc/loadavg") as f:
        log(f"load average at end: {' '.join(f.read().split()[:3])}")
    with open(a.out, "w") as f:
        json.dump(runs, f, indent=2)


if __name__ == "__main__":
    main()
