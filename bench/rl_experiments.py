#!/usr/bin/env python3
"""The papers' RL ablations, in small, on the demo's tasks.

Starts from a finished demo run (its SFT checkpoint, data and RL config,
default runs/demo-seed1), starts one `reward-server serve` on 127.0.0.1, and
runs `trainer rl` on the math stage with one setting changed at a time:

  (a) temperature: fixed 0.6 (low), fixed 1.4 (high), target entropy 0.3
  (b) overlong filtering on vs off at a short budget (24 response tokens)
  (c) strict on-policy (1 update per batch) vs 2 PPO epochs

Each run takes STEPS steps (default 60) and evaluates held-out math (avg@8
pass@1, temperature 0.6) at the start and the end. Prints a Markdown table
per experiment and writes bench/out/rl_experiments/{results.json,table.md}
and each run's directory (metrics.jsonl, eval.jsonl, plots/, report.md).

Usage: python3 bench/rl_experiments.py [--demo runs/demo-seed1] [--steps 60] [--only a|b|c]
(build first: cargo build --release -p trainer -p reward-server).
"""

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = ROOT / "target" / "release"


def stage_block(text):
    """The first [[stage]] block of a resolved RL config, without its temperature table."""
    head, rest = text.split("[[stage]]", 1)
    block = rest.split("[[stage]]")[0]
    block = re.sub(r"\n\[stage\.temperature\][^\[]*", "\n", block)
    return head, block


def config(base, out, url, steps, temperature, **overrides):
    head, block = stage_block(base)
    head = re.sub(r'endpoints = \[.*?\]', f'endpoints = ["{url}"]', head)
    head = re.sub(r'\ndir = ".*?"', f'\ndir = "{out}"', head)
    # Held-out math only.
    sets = re.findall(r"\[\[eval\.sets\]\][^\[]*", head)
    for s in sets:
        if 'task = "code"' in s:
            head = head.replace(s, "")
    block = re.sub(r"\nsteps = .*", f"\nsteps = {steps}", block)
    for key, value in overrides.items():
        block = re.sub(rf"\n{key} = .*", f"\n{key} = {value}", block)
    return head + "[[stage]]" + block.rstrip() + "\n\n[stage.temperature]\n" + temperature + "\n"


def run(name, text, outdir):
    path = outdir / f"{name}.toml"
    path.write_text(text)
    started = time.time()
    log = (outdir / f"{name}.log").open("w")
    subprocess.run([str(TARGET / "trainer"), "rl", "--config", str(path)], stderr=log, check=True)
    evals = [json.loads(l) for l in (outdir / name / "eval.jsonl").read_text().splitlines()]
    steps = [json.loads(l) for l in (outdir / name / "metrics.jsonl").read_text().splitlines()]
    tail = steps[-10:]
    mean = lambda k, rows: sum(r[k] for r in rows) / max(len(rows), 1)
    return {
        "name": name,
        "pass1_start": evals[0]["pass1"],
        "pass1_end": evals[-1]["pass1"],
        "train_acc_first10": mean("accuracy", steps[:10]),
        "train_acc_last10": mean("accuracy", tail),
        "entropy_last10": mean("entropy", tail),
        "temperature_last": steps[-1]["temperature"],
        "truncated_last10": mean("truncated", tail),
        "len_last10": mean("response_len", tail),
        "clip_frac_last10": mean("clip_frac", tail),
        "seconds": time.time() - started,
    }


def table(title, rows):
    out = [f"### {title}", "",
           "| run | held-out pass@1 start → end | train acc first 10 → last 10 | entropy (last 10) | T (last) | truncated (last 10) | length (last 10) | clip frac | s |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r['name']} | {r['pass1_start']:.3f} → {r['pass1_end']:.3f} | "
            f"{r['train_acc_first10']:.3f} → {r['train_acc_last10']:.3f} | {r['entropy_last10']:.3f} | "
            f"{r['temperature_last']:.2f} | {r['truncated_last10']:.3f} | {r['len_last10']:.1f} | "
            f"{r['clip_frac_last10']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default=str(ROOT / "runs" / "demo-seed1"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--only", choices=["a", "b", "c"], help="run one experiment only")
    args = ap.parse_args()
    demo = pathlib.Path(args.demo)
    base_path = demo / "rl.toml"
    if not base_path.exists():
        sys.exit(f"{base_path} not found: run `make demo` first (or pass --demo)")
    base = base_path.read_text()
    # Paths the demo wrote relative to where it ran (the repository root).
    base = re.sub(r'"(runs/[^"]*)"', lambda m: '"' + str(ROOT / m.group(1)) + '"', base)
    outdir = ROOT / "bench" / "out" / "rl_experiments"
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    # The server's log goes to a file: a pipe nobody reads would fill up
    # and block the server.
    server_log = outdir / "reward-server.log"
    server = subprocess.Popen(
        [str(TARGET / "reward-server"), "serve", "--listen", "127.0.0.1:0", "--workers", "2"],
        stderr=server_log.open("w"))
    url = None
    for _ in range(600):
        found = re.search(r"listening on (\S+)", server_log.read_text())
        if found:
            url = found.group(1)
            break
        if server.poll() is not None:
            break
        time.sleep(0.1)
    if url is None:
        server.kill()
        sys.exit(f"reward-server did not start; see {server_log}")
    target = "target_entropy = 0.3\ngain = 0.15\nmax_step = 0.05"
    experiments = [
        ("(a) sampling temperature", [
            ("fixed-0.6", {}, "fixed = 0.6"),
            ("fixed-1.4", {}, "fixed = 1.4"),
            ("target-entropy-0.3", {}, target),
        ]),
        ("(b) overlong filtering at a 24-token budget", [
            ("overlong-on", {"max_response_tokens": 24, "overlong_filter": "true"}, target),
            ("overlong-off", {"max_response_tokens": 24, "overlong_filter": "false"}, target),
        ]),
        ("(c) strict on-policy vs 2 PPO epochs", [
            ("ppo-epochs-1", {"ppo_epochs": 1}, target),
            ("ppo-epochs-2", {"ppo_epochs": 2}, target),
        ]),
    ]
    results = {}
    md = [f"Steps per run: {args.steps}; start: {demo}.\n"]
    try:
        for title, runs in experiments:
            if args.only and not title.startswith(f"({args.only})"):
                continue
            rows = []
            for name, overrides, temperature in runs:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                text = config(base, outdir / name, url, args.steps, temperature, **overrides)
                rows.append(run(name, text, outdir))
            results[title] = rows
            md.append(table(title, rows))
            print(md[-1], flush=True)
    finally:
        server.kill()
    (outdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (outdir / "table.md").write_text("\n".join(md))
    print(f"wrote {outdir / 'table.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
