#!/usr/bin/env python3
"""SFT sequence packing's throughput on a length-skewed data set.

Makes a small random checkpoint (`trainer init`, the fixture tokenizer) and a
JSONL set whose responses are mostly short with a long tail (80% of 50-250
characters, 20% of 1,500-2,800, as reasoning traces are), then runs the same
`trainer sft` steps with `pack = false` and `pack = true`, with random
batches (`bucket_batches = 1`) and with the default length bucketing (16).
Packing does not change which examples a step trains on, so each pair
processes the same tokens and the ratio of their wall times is the gain.
Rounds alternate the order. Timing: run it alone (`flock -x /tmp/cpu.lock`).

  python3 bench/pack_bench.py --bin target/release/trainer [--steps 12] [--rounds 2]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORDS = ("the of and to in is that for it as with was on be by this are from at or an which "
         "sum root prime factor angle triangle circle number integer square cube even odd "
         "therefore thus we have let so then hence answer check case step value").split()


def text(rng, chars):
    out = []
    n = 0
    while n < chars:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--examples", type=int, default=384)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "out", "pack_bench.json"))
    a = ap.parse_args()
    log = lambda s: print(s, flush=True)
    with open("/proc/loadavg") as f:
        log(f"load average at start: {' '.join(f.read().split()[:3])}")
    tmp = tempfile.mkdtemp(prefix="pack-bench-")
    rng = random.Random(7)
    with open(os.path.join(tmp, "data.jsonl"), "w") as f:
        for _ in range(a.examples):
            long = rng.random() < 0.2
            chars = rng.randint(1500, 2800) if long else rng.randint(50, 250)
            f.write(json.dumps({"prompt": text(rng, rng.randint(20, 80)), "response": text(rng, chars)}) + "\n")
    subprocess.run([a.bin, "init", "--tokenizer", os.path.join(ROOT, "tests", "fixtures", "tiny-qwen2"),
                    "--out", os.path.join(tmp, "init"), "--hidden-size", "256", "--layers", "4", "--heads", "8",
                    "--kv-heads", "4", "--intermediate-size", "1024", "--context", str(a.max_len)],
                   check=True, capture_output=True)
    configs = [(False, 1), (True, 1), (False, 16), (True, 16)]
    walls = {c: [] for c in configs}
    steps = {c: [] for c in configs}
    for r in range(a.rounds):
        order = configs if r % 2 == 0 else list(reversed(configs))
        for pack, bucket in order:
            run = os.path.join(tmp, f"run-{int(pack)}-{bucket}")
            toml = (f'[model]\ncheckpoint = "init"\n'
                    f'[data]\ntrain = "data.jsonl"\nmax_len = {a.max_len}\neval_fraction = 0.0\n'
                    f'[train]\nbatch_size = {a.batch_size}\nmax_steps = {a.steps}\nlr = 0.0003\n'
                    f'warmup_steps = 1\nbucket_batches = {bucket}\npack = {str(pack).lower()}\n'
                    f'[output]\ndir = "{os.path.basename(run)}"\nlog_every = 1\nsave_every = 0\n')
            cfg = os.path.join(tmp, f"sft-{int(pack)}-{bucket}.toml")
            with open(cfg, "w") as f:
                f.write(toml)
            t0 = time.perf_counter()
            subprocess.run([a.bin, "--threads", str(a.threads), "sft", "--config", cfg],
                           check=True, capture_output=True)
            wall = time.perf_counter() - t0
            with open(os.path.join(run, "metrics.jsonl")) as f:
                m = [json.loads(line) for line in f]
            walls[(pack, bucket)].append(wall)
            steps[(pack, bucket)].append(statistics.median(x["tokens_per_s"] for x in m))
            log(f"  pack={pack} bucket_batches={bucket}: {wall:.1f} s, median step "
                f"{steps[(pack, bucket)][-1]:.0f} real tok/s, final loss {m[-1]['loss']:.4f}")
    rows = []
    for bucket in (1, 16):
        u, p = statistics.median(walls[(False, bucket)]), statistics.median(walls[(True, bucket)])
        su, sp = statistics.median(steps[(False, bucket)]), statistics.median(steps[(True, bucket)])
        rows.append(f"| {bucket} | {u:.1f} | {p:.1f} | {su:.0f} | {sp:.0f} | **{u / p:.2f}x** |")
    log(f"{a.steps} SFT steps, batch_size {a.batch_size}, max_len {a.max_len}, {a.rounds} rounds (medians)")
    log("| bucket_batches | unpacked wall s | packed wall s | unpacked real tok/s | packed real tok/s | gain |")
    log("|---:|---:|---:|---:|---:|---:|")
    log("\n".join(rows))
    with open("/proc/loadavg") as f:
        log(f"load average at end: {' '.join(f.read().split()[:3])}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"walls": {f"{k[0]}-{k[1]}": v for k, v in walls.items()},
                   "step_tok_s": {f"{k[0]}-{k[1]}": v for k, v in steps.items()}}, f, indent=2)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
