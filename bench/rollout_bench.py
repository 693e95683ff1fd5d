#!/usr/bin/env python3
"""The rollout benchmark: a GRPO-shaped batch sampled three ways, side by side.

Workload: 64 prompts x 8 samples from a random Qwen2 of Qwen2.5's vocabulary
(151,936; by default hidden 128, 4 layers, 4 query and 2 key/value heads, MLP
512, tied embeddings: 20M parameters, float32 on the CPU), prompts of 32 to
256 random tokens, temperature 1, top-p 1 (the RL setting). A set of stop ids
covering 1/MEAN_LEN of the vocabulary ends a response when drawn: the
model's next-token distribution is nearly flat, so each token ends a response
with probability about 1/MEAN_LEN and lengths are geometric (long-tailed: in
a batch of 64 the longest is about 4.7x the mean), cut at MAX_NEW_TOKENS.

Systems, each in its own process with --threads THREADS (default 2):

  engine  `trainer generate` (this tree's rollout engine): continuous
          batching, paged KV cache, shared prompt prefill, sampling on the
          device (here the CPU).
  before  the sampler the engine replaced (bench/before.sh builds it from
          the last commit that had it), driven as `trainer rl` did:
          64-row static batches, each until its longest row stops.
  torch   Hugging Face transformers `generate` (bench/rollout_hf.py), 8
          prompts x num_return_sequences=8 per call (64 rows, static).

The engine and the old sampler seed every row alike (with --chunk 64), so
they draw the same tokens until float rounding first moves a draw across a
token boundary in a row (the two compute the logits and the probabilities
in other orders; at this vocabulary each probability is ~1e-5 wide, so a
rounding of ~1e-7 does it now and then): the summary counts identical rows
and the tokens drawn before each row's first difference. transformers
draws its own. Each
system reports new tokens, seconds of generation (after loading the model)
and its peak resident memory. With --lock FILE each system runs under
`flock -x FILE` (no builds or other benchmarks meanwhile).

Usage (normally through rollout_bench.sh, which builds and makes the venv):
  python3 bench/rollout_bench.py --trainer T --before B --python VENV/bin/python
"""
import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd, lock=None):
    if lock:
        cmd = ["flock", "-x", lock] + cmd
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"rollout_bench: {' '.join(cmd)} failed ({p.returncode})")
    return p.stdout, p.stderr, wall


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("rollout_bench: no JSON line in the output")


def read_ids(path, key):
    with open(path) as f:
        return [json.loads(l)[key] for l in f if l.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainer", required=True, help="this tree's release trainer binary")
    p.add_argument("--before", help="the old sampler's driver (bench/before.sh)")
    p.add_argument("--python", help="python of the torch venv")
    p.add_argument("--out", default=os.path.join(HERE, "out", "rollout"))
    p.add_argument("--only", default="engine,before,torch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lock", help="run each system under flock -x LOCK")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--min-prompt", type=int, default=32)
    p.add_argument("--max-prompt", type=int, default=256)
    p.add_argument("--mean-len", type=int, default=100)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kv-cache-mib", type=int, default=512, help="the engine's KV cache")
    p.add_argument("--max-seqs", type=int, default=256, help="the engine's batch slots")
    p.add_argument("--chunk", type=int, default=64, help="rows per static batch (before, torch)")
    p.add_argument("--model", help="an existing checkpoint to sample (e.g. `trainer init --vocab-size`) instead of making one")
    p.add_argument("--device", default="cpu", help="the engine's device (cpu, cuda)")
    p.add_argument("--dtype", default="f32", help="the engine's dtype (f32, bf16)")
    for name, default in [("vocab", 151936), ("hidden", 128), ("intermediate", 512), ("layers", 4), ("heads", 4), ("kv-heads", 2)]:
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    only = a.only.split(",")
    os.makedirs(a.out, exist_ok=True)
    pad = a.vocab - 293 if a.vocab > 1000 else 0  # 151643, <|endoftext|>, at Qwen2.5's size

    # The model (made by transformers, read by all three), unless given.
    if a.model:
        model = a.model
        a.vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
        pad = a.vocab - 293 if a.vocab > 1000 else 0
    else:
        shape = dict(vocab=a.vocab, hidden=a.hidden, intermediate=a.intermediate, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads)
        model = os.path.join(a.out, "model")
        stamp = os.path.join(model, "shape.json")
        if not (os.path.exists(stamp) and json.load(open(stamp)) == shape):
            if not a.python:
                raise SystemExit("rollout_bench: --python (the torch venv) is needed to make the model")
            args = [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]
            out, _, _ = sh([a.python, os.path.join(HERE, "rollout_hf.py"), "make-model", model, *args, f"--eos={pad}", f"--pad={pad}", "--context=1024"])
            json.dump(shape, open(stamp, "w"))
            print(f"model: {out.strip()}", file=sys.stderr)
    params = json.load(open(os.path.join(model, "config.json")))

    # Prompts and stop ids.
    rng = random.Random(a.seed)
    prompts_path = os.path.join(a.out, "prompts.jsonl")
    with open(prompts_path, "w") as f:
        for _ in range(a.prompts):
            n = rng.randint(a.min_prompt, a.max_prompt)
            f.write(json.dumps({"prompt_ids": [rng.randrange(a.vocab) for _ in range(n)]}) + "\n")
    step = max(1, a.mean_len)
    stops = [i for i in range(7, a.vocab, step) if i != pad]
    stop_arg = ",".join(map(str, stops))
    common = ["--samples", str(a.samples), "--max-new-tokens", str(a.max_new_tokens), "--temperature", str(a.temperature), "--top-p", str(a.top_p)]

    results = {}
    if "engine" in only:
        samples = os.path.join(a.out, "engine.jsonl")
        stats = os.path.join(a.out, "engine.json")
        cmd = [a.trainer, "--threads", str(a.threads), "generate", "--model", model, "--prompts", prompts_path, *common,
               "--top-k", "0", "--seed", str(a.seed), "--stop-ids", stop_arg, "--output", samples, "--stats-json", stats,
               "--kv-cache-mib", str(a.kv_cache_mib), "--max-seqs", str(a.max_seqs), "--device", a.device, "--dtype", a.dtype]
        _, err, wall = sh(cmd, a.lock)
        s = json.load(open(stats))
        s["wall_s"] = wall
        results["engine"] = s
        print(err.strip().splitlines()[-1], file=sys.stderr)
    if "before" in only and a.before:
        samples = os.path.join(a.out, "before.jsonl")
        cmd = [a.before, "bench", "--model", model, "--prompts", prompts_path, *common, "--seed", str(a.seed), "--chunk", str(a.chunk),
               "--stop-ids", stop_arg, "--samples-out", samples]
        env_threads = ["env", f"RAYON_NUM_THREADS={a.threads}"]
        out, _, wall = sh(env_threads + cmd, a.lock)
        s = last_json(out)
        s["wall_s"] = wall
        results["before"] = s
    if "torch" in only and a.python:
        samples = os.path.join(a.out, "torch.jsonl")
        cmd = [a.python, os.path.join(HERE, "rollout_hf.py"), "generate", "--model", model, "--prompts", prompts_path, *common,
               "--prompts-per-call", str(a.chunk // a.samples), "--stop-ids", stop_arg, "--pad", str(pad), "--seed", str(a.seed),
               "--threads", str(a.threads), "--samples-out", samples]
        out, _, wall = sh(cmd, a.lock)
        s = last_json(out)
        s["wall_s"] = wall
        results["torch"] = s

    # Same tokens from the engine and the old sampler?
    identical = None
    # Rows are seeded alike only in 64-row chunks (engine::row_seed).
    if "engine" in results and "before" in results and a.chunk == 64:
        e = read_ids(os.path.join(a.out, "engine.jsonl"), "output_ids")
        b = read_ids(os.path.join(a.out, "before.jsonl"), "ids")
        same = sum(x == y for x, y in zip(e, b))
        # Tokens drawn before the first difference, over all rows.
        agree = sum(next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y))) for x, y in zip(e, b))
        identical = {"rows": len(e), "identical_rows": same, "tokens_before_first_difference": agree, "engine_tokens": sum(map(len, e))}
    lens = read_ids(os.path.join(a.out, "engine.jsonl"), "output_ids") if "engine" in results else []
    lens = sorted(len(x) for x in lens)
    q = lambda f: lens[min(len(lens) - 1, int(f * len(lens)))] if lens else 0

    base = results.get("before", {}).get("new_tokens_per_s")
    rows = []
    for name in ["engine", "before", "torch"]:
        if name not in results:
            continue
        r = results[name]
        ratio = r["new_tokens_per_s"] / base if base else float("nan")
        rows.append(f"| {name} | {r['new_tokens']} | {r['seconds']:.1f} | {r['new_tokens_per_s']:.0f} | {ratio:.2f} | {r['peak_rss_mib']:.0f} |")
    table = ["| system | new tokens | seconds | new tokens/s | vs before | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|", *rows]
    if "engine" in results and "torch" in results:
        table.append("")
        table.append(f"engine / torch: {results['engine']['new_tokens_per_s'] / results['torch']['new_tokens_per_s']:.2f}x new tokens/s")
    env = {
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()),
        "nproc": os.cpu_count(),
        "threads": a.threads,
        "params": params,
        "lengths": {"mean": statistics.mean(lens) if lens else 0, "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": lens[-1] if lens else 0},
        "identical_engine_before": identical,
        "args": vars(a),
        "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
    }
    doc = {"env": env, "results": results}
    json.dump(doc, open(os.path.join(a.out, "rollout_bench.json"), "w"), indent=2)
    print("\n".join(table))
    print(f"\nresponse lengths (engine): mean {env['lengths']['mean']:.0f}, p50 {env['lengths']['p50']}, p90 {env['lengths']['p90']}, p99 {env['lengths']['p99']}, max {env['lengths']['max']}")
    if identical is not None:
        i = identical
        print(f"engine and before: {i['identical_rows']} of {i['rows']} rows identical; {i['tokens_before_first_difference']} of {i['engine_tokens']} tokens drawn before a row's first difference")
    if "engine" in results:
        eng = results["engine"]["engine"]
        print(f"engine: {eng['steps']} steps, KV cache {eng['blocks']} blocks of {eng['block_size']} ({eng['kv_cache_bytes'] / 2**20:.0f} MiB), at most {eng['peak_blocks']} in use, {eng['preemptions']} preemptions")


if __name__ == "__main__":
    main()
