"""Speed of `trainer data decontaminate` (and, once, `dedup`) on synthetic data.

    python3 bench/curate_bench.py --bin target/release/trainer [--train 1000000] [--bench 10000]
                                  [--rounds 3] [--anchor] [--no-dedup]

Makes (once, cached under bench/out/curate/) a training file of --train
prompts and a benchmark file of --bench prompts, math-flavoured text of
30-70 words (a 5,000-word vocabulary, numbers, some LaTeX), ~440 bytes a
line with an id and an answer (437 MB for 1M). One training prompt in 100 gets a 12-word
span copied from a random benchmark prompt, so exactly those must be dropped
(random 9-grams from a 5,000-word vocabulary do not repeat by chance); the
run fails if the count differs.

Each round runs `trainer --threads T data decontaminate --n 9 --quiet` and
times the whole process (reading the benchmarks, streaming the training
file, writing the output and the report). The median of --rounds is the
figure. --anchor also times a plain single-process Python implementation of
the same check (set of 9-gram tuples, same word rules for this data) once;
--no-dedup skips one timed `trainer data dedup` of the training file.
Results go to bench/out/curate_bench.json.
"""

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")

FILLER = ("find the number of ways let be such that compute determine what is value sum product of all "
          "positive integers real numbers triangle circle square area perimeter probability digits "
          "remainder when divided by express your answer as a common fraction in simplest form").split()
LATEX = ["$x^2$", "$\\frac{1}{2}$", "$\\sqrt{3}$", "$a_n$", "$\\pi r^2$", "$n!$", "$\\binom{n}{k}$"]


def make_vocab(rng, n=5000):
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = set(FILLER)
    while len(vocab) < n:
        vocab.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(vocab)


def prompt(rng, vocab):
    words = rng.choices(vocab, k=rng.randint(30, 70))
    # Each snippet at most once: three `$\binom{n}{k}$` in a row would be a
    # 9-gram that benchmark prompts can share by chance.
    for snippet in rng.sample(LATEX, rng.randint(0, 3)):
        words.insert(rng.randrange(len(words)), snippet)
    for _ in range(rng.randint(1, 4)):
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 10**6)))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", "?", "."])


def generate(dir_, n_train, n_bench, seed):
    """Writes train.jsonl and bench.jsonl under dir_ unless there; returns the injected count."""
    meta_path = os.path.join(dir_, "meta.json")
    want = {"train": n_train, "bench": n_bench, "seed": seed, "version": 2}
    if os.path.exists(meta_path):
        meta = json.load(open(meta_path))
        if {k: meta.get(k) for k in want} == want:
            return meta["injected"]
    os.makedirs(dir_, exist_ok=True)
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    t0 = time.perf_counter()
    bench = [prompt(rng, vocab) for _ in range(n_bench)]
    with open(os.path.join(dir_, "bench.jsonl"), "w") as f:
        for i, p in enumerate(bench):
            f.write(json.dumps({"id": f"bench-{i}", "problem": p, "answer": str(i)}) + "\n")
    injected = 0
    with open(os.path.join(dir_, "train.jsonl"), "w") as f:
        for i in range(n_train):
            p = prompt(rng, vocab)
            if i % 100 == 7:
                # A 12-word span of a benchmark prompt, inside this prompt.
                src = rng.choice(bench).split()
                start = rng.randrange(len(src) - 12)
                span = " ".join(src[start:start + 12])
                cut = p.split()
                at = rng.randrange(len(cut))
                p = " ".join(cut[:at] + [span] + cut[at:])
                injected += 1
            f.write(json.dumps({"id": f"train-{i}", "prompt": p, "answer": str(i % 997)}) + "\n")
    want["injected"] = injected
    json.dump(want, open(meta_path, "w"))
    print(f"generated {n_train} + {n_bench} prompts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return injected


def words(text):
    return re.findall(r"[^\W_]+", text.lower())


def python_anchor(train, bench, n=9):
    """Plain Python: a set of benchmark 9-gram tuples, then every training 9-gram looked up."""
    t0 = time.perf_counter()
    grams = set()
    with open(bench) as f:
        for line in f:
            w = words(json.loads(line)["problem"])
            grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    dropped = 0
    with open(train) as f, open(os.path.join(OUT, "curate", "anchor.clean.jsonl"), "w") as out:
        for line in f:
            w = words(json.loads(line)["prompt"])
            if any(tuple(w[i:i + n]) in grams for i in range(len(w) - n + 1)):
                dropped += 1
            else:
                out.write(line)
    return time.perf_counter() - t0, dropped


def timed(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed, proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--train", type=int, default=1_000_000)
    ap.add_argument("--bench", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="trainer --threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--anchor", action="store_true")
    ap.add_argument("--no-dedup", action="store_true")
    args = ap.parse_args()

    data = os.path.join(OUT, "curate")
    injected = generate(data, args.train, args.bench, args.seed)
    train, bench = os.path.join(data, "train.jsonl"), os.path.join(data, "bench.jsonl")
    clean, report = os.path.join(data, "train.clean.jsonl"), os.path.join(data, "dropped.jsonl")
    result = {
        "train_prompts": args.train,
        "bench_prompts": args.bench,
        "train_bytes": os.path.getsize(train),
        "injected": injected,
        "nproc": os.cpu_count(),
        "loadavg_start": os.getloadavg()[0],
    }
    cmd = [args.bin, "--threads", str(args.threads), "data", "decontaminate", "--input", train,
           "--against", bench, "--bench-field", "problem", "--n", "9", "--output", clean,
           "--report", report, "--quiet"]
    times = []
    for r in range(args.rounds):
        elapsed, stdout = timed(cmd)
        dropped = sum(1 for _ in open(report))
        if dropped != injected:
            sys.exit(f"round {r + 1}: dropped {dropped}, expected {injected}")
        times.append(elapsed)
        print(f"decontaminate round {r + 1}: {elapsed:.2f} s, dropped {dropped}", file=sys.stderr)
    result["decontaminate_s"] = times
    result["decontaminate_median_s"] = statistics.median(times)
    result["decontaminate_summary"] = stdout
    print(stdout)

    if args.anchor:
        elapsed, dropped = python_anchor(train, bench)
        if dropped != injected:
            sys.exit(f"python anchor dropped {dropped}, expected {injected}")
        result["python_anchor_s"] = elapsed
        print(f"python anchor: {elapsed:.2f} s, dropped {dropped}", file=sys.stderr)

    if not args.no_dedup:
        elapsed, stdout = timed([args.bin, "--threads", str(args.threads), "data", "dedup", "--input", train,
                                 "--output", os.path.join(data, "train.dedup.jsonl"), "--quiet"])
        result["dedup_s"] = elapsed
        result["dedup_summary"] = stdout
        print(stdout)
        print(f"dedup: {elapsed:.2f} s", file=sys.stderr)

    result["loadavg_end"] = os.getloadavg()[0]
    with open(os.path.join(OUT, "curate_bench.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"decontaminate {args.train} prompts against {args.bench}: median {result['decontaminate_median_s']:.2f} s "
          f"over {args.rounds} rounds ({', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
