#!/usr/bin/env python3
"""Benchmark `reward-server grade` against HuggingFace math-verify on one corpus.

    bash bench/math_bench.sh            # venv + release build + corpus + full run
    bash bench/math_bench.sh --quick    # 500 items, for a smoke run
    python3 bench/math_bench.py [--n 5000] [--rounds 3] [--quick] [--json PATH]

(math_bench.sh sets up bench/.venv and builds target/release/reward-server
first; this script only runs them.)

On the same corpus (bench/make_cases.py, generated on demand into bench/out/),
in one run, it measures:

 (a) whole-process throughput: wall time of
        reward-server grade CORPUS --threads 1 --output /dev/null
     vs  bench/.venv/bin/python bench/mv_worker.py CORPUS --output FILE
     (one process, items in order, parse(gold) + parse(response) + verify with
     math-verify's default timeouts). Both are single-core. The two programs
     alternate, --rounds times (the first one to go alternates too), after one
     untimed warm-up each; medians are reported. Wall time includes process
     start-up (for Python: importing sympy / math-verify).
 (b) per-item latency: our `elapsed_ms` from one extra `--threads 1 --output
     FILE` run vs math-verify's per-item time.perf_counter() around
     parse+parse+verify (from its last timed round); median and p99 each.

It also prints verdict agreement between the two on the corpus (reward 1/0
and a verdict cross table), and how each matches the generator's `intended`
label. Ratios: throughput ratio = our items/s / math-verify items/s;
latency ratio = math-verify ms / our ms (both >1 means we are faster).
Results go to stdout and, as JSON, to bench/out/bench.json (or --json).

Python 3 stdlib only (math-verify runs in its own venv process).
"""

import argparse
import collections
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    DEFAULT_BIN, DEFAULT_OUT, DEFAULT_PY, MV_WORKER, check_tools, cpu_info, die, ensure_corpus,
    loadavg, median, percentile, read_jsonl, reward_of, timed_run,
)


def run_ours(bin_path, corpus, output, stderr_path):
    cmd = [bin_path, "grade", corpus, "--threads", "1", "--output", output]
    return cmd, timed_run(cmd, stderr_path=stderr_path)


def run_mv(py, corpus, output, stderr_path):
    cmd = [py, MV_WORKER, corpus, "--output", output]
    return cmd, timed_run(cmd, stderr_path=stderr_path)


def check_rc(name, cmd, rc, stderr_path):
    if rc != 0:
        tail = ""
        try:
            with open(stderr_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:]
        except OSError:
            pass
        die(f"{name} exited {rc}: {' '.join(cmd)}\n{tail}")


def lat_stats(ms):
    return {"median_ms": median(ms), "p99_ms": percentile(ms, 99), "mean_ms": sum(ms) / len(ms), "max_ms": max(ms)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run: --n 500 (rounds unchanged)")
    ap.add_argument("--n", type=int, default=None, help="corpus size (default 5000, 500 with --quick)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per program (default 3)")
    ap.add_argument("--corpus", help="use this JSONL instead of a generated bench/out/corpus-N.jsonl")
    ap.add_argument("--bin", default=DEFAULT_BIN, help="reward-server binary")
    ap.add_argument("--python", default=DEFAULT_PY, help="python of the math-verify venv")
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--json", help="write the summary here (default OUT_DIR/bench.json)")
    args = ap.parse_args()

    n = args.n or (500 if args.quick else 5000)
    check_tools(args.bin, args.python)
    os.makedirs(args.out_dir, exist_ok=True)
    corpus = os.path.abspath(args.corpus or ensure_corpus(os.path.join(args.out_dir, f"corpus-{n}.jsonl"), n))
    items = read_jsonl(corpus)
    n = len(items)
    od = args.out_dir
    ours_out, ours_err = os.path.join(od, "ours.jsonl"), os.path.join(od, "ours.stderr")
    mv_out, mv_err = os.path.join(od, "mv.jsonl"), os.path.join(od, "mv.stderr")

    print(f"corpus   {corpus} ({n} items, {os.path.getsize(corpus) / 1e6:.1f} MB)")
    print(f"machine  {cpu_info()}; python {platform.python_version()}; load avg {loadavg():.2f}")
    if loadavg() > 0.5:
        print("warning  machine is not idle (load avg > 0.5): timings will be noisy")

    # Warm-up (page cache, .pyc) + the per-item latency run for our binary.
    print("warm-up  ...", flush=True)
    cmd, (rc, ours_lat_wall, _, _) = run_ours(args.bin, corpus, ours_out, ours_err)
    check_rc("reward-server", cmd, rc, ours_err)
    warm = os.path.join(od, "mv-warmup.jsonl")
    with open(warm, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(it) + "\n" for it in items[:20])
    cmd, (rc, _, _, _) = run_mv(args.python, warm, os.devnull, mv_err)
    check_rc("math-verify worker", cmd, rc, mv_err)

    # (a) alternating timed rounds.
    walls = {"ours": [], "mv": []}
    cpus = {"ours": [], "mv": []}
    rss = {"ours": [], "mv": []}
    for r in range(args.rounds):
        order = ["ours", "mv"] if r % 2 == 0 else ["mv", "ours"]
        for who in order:
            if who == "ours":
                cmd, (rc, wall, cpu, mrss) = run_ours(args.bin, corpus, os.devnull, ours_err)
                check_rc("reward-server", cmd, rc, ours_err)
            else:
                cmd, (rc, wall, cpu, mrss) = run_mv(args.python, corpus, mv_out, mv_err)
                check_rc("math-verify worker", cmd, rc, mv_err)
            walls[who].append(wall)
            cpus[who].append(cpu)
            rss[who].append(mrss)
        print(f"round {r + 1}/{args.rounds}  ours {walls['ours'][-1]:8.3f} s   math-verify {walls['mv'][-1]:8.3f} s", flush=True)

    # (b) per-item latency + verdicts.
    ours = read_jsonl(ours_out)
    mv = read_jsonl(mv_out)
    if len(ours) != n or len(mv) != n:
        die(f"result counts differ from corpus: ours {len(ours)}, math-verify {len(mv)}, corpus {n}")
    ours_ms = [float(x["elapsed_ms"]) for x in ours if isinstance(x.get("elapsed_ms"), (int, float))]
    mv_ms = [float(x["elapsed_ms"]) for x in mv]
    if not ours_ms:
        die(f"no elapsed_ms in {ours_out}")
    if len(ours_ms) != n:
        print(f"warning  {n - len(ours_ms)} of our results have no numeric elapsed_ms")

    agree = 0
    cross = collections.Counter()
    intended_match = {"ours": 0, "mv": 0}
    label = {"correct": 1, "wrong": 0, "no_answer": 0}
    for it, a, b in zip(items, ours, mv):
        ra, rb = reward_of(a), reward_of(b)
        agree += ra == rb
        cross[(a.get("verdict"), b.get("verdict"))] += 1
        want = label.get(it.get("intended"))
        if want is not None:
            intended_match["ours"] += ra == want
            intended_match["mv"] += rb == want
    n_intended = sum(1 for it in items if it.get("intended") in label)

    w_ours, w_mv = median(walls["ours"]), median(walls["mv"])
    tp_ours, tp_mv = n / w_ours, n / w_mv
    lo, lm = lat_stats(ours_ms), lat_stats(mv_ms)
    summary = {
        "corpus": corpus, "items": n, "rounds": args.rounds,
        "machine": cpu_info(), "load_avg_end": loadavg(),
        "whole_process": {
            "ours": {"wall_s": walls["ours"], "median_wall_s": w_ours, "items_per_s": tp_ours,
                     "median_cpu_s": median(cpus["ours"]), "max_rss_mib": max(rss["ours"])},
            "math_verify": {"wall_s": walls["mv"], "median_wall_s": w_mv, "items_per_s": tp_mv,
                            "median_cpu_s": median(cpus["mv"]), "max_rss_mib": max(rss["mv"])},
            "throughput_ratio_ours_over_mv": tp_ours / tp_mv,
        },
        "latency": {
            "ours": lo, "math_verify": lm,
            "median_ratio_mv_over_ours": lm["median_ms"] / lo["median_ms"] if lo["median_ms"] > 0 else None,
            "p99_ratio_mv_over_ours": lm["p99_ms"] / lo["p99_ms"] if lo["p99_ms"] > 0 else None,
            "ours_latency_run_wall_s": ours_lat_wall,
        },
        "agreement": {
            "reward_agree": agree, "rate": agree / n,
            "cross_table": {f"{k[0]} | {k[1]}": v for k, v in sorted(cross.items(), key=lambda kv: -kv[1])},
            "intended_match": {k: v / n_intended if n_intended else None for k, v in intended_match.items()},
        },
    }

    def ratio(x):
        return "n/a" if x is None else f"{x:.1f}x"

    print()
    print(f"== whole process, {n} items, median of {args.rounds} rounds, 1 thread each ==")
    print(f"  reward-server  {w_ours:9.3f} s  {tp_ours:12.1f} items/s   cpu {median(cpus['ours']):.3f} s  maxrss {max(rss['ours']):.0f} MiB")
    print(f"  math-verify    {w_mv:9.3f} s  {tp_mv:12.1f} items/s   cpu {median(cpus['mv']):.3f} s  maxrss {max(rss['mv']):.0f} MiB")
    print(f"  throughput ratio (ours / math-verify): {tp_ours / tp_mv:.1f}x")
    print(f"== per-item latency (ms) ==")
    print(f"  reward-server  median {lo['median_ms']:9.4f}   p99 {lo['p99_ms']:9.4f}   max {lo['max_ms']:9.3f}")
    print(f"  math-verify    median {lm['median_ms']:9.4f}   p99 {lm['p99_ms']:9.4f}   max {lm['max_ms']:9.3f}")
    print(f"  latency ratio (math-verify / ours): median {ratio(summary['latency']['median_ratio_mv_over_ours'])}, "
          f"p99 {ratio(summary['latency']['p99_ratio_mv_over_ours'])}")
    print(f"== agreement ==")
    print(f"  same reward on {agree}/{n} items ({100.0 * agree / n:.2f}%)")
    if n_intended:
        print(f"  match generator's intended label: ours {100.0 * intended_match['ours'] / n_intended:.2f}%, "
              f"math-verify {100.0 * intended_match['mv'] / n_intended:.2f}%")
    print("  verdicts (ours | math-verify): count")
    for k, v in sorted(cross.items(), key=lambda kv: -kv[1]):
        print(f"    {str(k[0]):>14} | {str(k[1]):<14} {v}")
    print("  (bench/math_diff.py lists the disagreeing items)")

    jpath = args.json or os.path.join(od, "bench.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"\nsummary JSON: {jpath}; per-item results: {ours_out}, {mv_out}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(bench took {time.time() - t0:.0f} s)")
