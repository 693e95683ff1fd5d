#!/usr/bin/env python3
"""Worst-case latency of the math verifier on hostile items.

    python3 bench/math_adversarial.py [--bin target/release/reward-server] [--rounds 3]

Generates items built to make each stage work hardest. For the response
scan: 1 MB of unclosed boxes, braces, dollars or "answer is". For the
prose fallback: 1 MB of letters, open commands, hedges, words with digits
and numbers. For the parser: 8 KB answers nested or chained to the limits. For exact
arithmetic: products of big integers, sums of distinct fractions, repeated
binomials, big polynomial products at the sample points. Each item is
graded with `reward-server grade --threads 1`, and the script prints each
item's `elapsed_ms` (the median over rounds) and the worst one. The
target is under 10 ms per item. No anchor is involved: this bounds our
own worst case.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MB = 1 << 20
K = 8000  # just under the 8 KiB answer limit


def cases():
    yield "1MB text then box", "42", ("The fox computes 3+4=7. " * (MB // 24)) + " \\boxed{42}"
    yield "1MB unclosed boxes", "42", "\\boxed{" * (MB // 7)
    yield "1MB dollars", "42", "$" * MB
    yield "1MB open braces", "42", "{" * MB
    yield "1MB 'answer is'", "42", "the answer is " * (MB // 14)
    yield "1MB comma digits", "42", "1," * (MB // 2)
    yield "1MB \\(", "42", "\\(" * (MB // 2)
    yield "1MB inside one box", "42", "\\boxed{" + "(" * (MB - 10) + "}"
    # The prose fallback (no box, phrase or math span): every window read.
    yield "1MB single letters", "42", "a " * (MB // 2)
    yield "1MB unclosed \\frac{", "42", "\\frac{" * (MB // 6)
    yield "1MB 'or' hedges", "42", "1 or " * (MB // 5)
    yield "1MB glued words", "42", "AZYUK2A " * (MB // 8)
    # A letter glued to a decimal once kept the tokenizer in place for ever.
    yield "1MB letter.digit", "42", "x.5 " * (MB // 4)
    yield "1MB numbers", "42", "12345 " * (MB // 6)
    box = lambda s: "\\boxed{" + s + "}"
    yield "8K parens", "1", box("(" * 4000 + "1" + ")" * 4000)
    yield "8K power tower", "1", box("2^" * 3000 + "2")
    yield "8K signs", "1", box("-" * 8000 + "1")
    yield "8K nested frac", "1", box("\\frac{1}" * 1000 + "{1}")
    yield "8K factorials", "1", box("9" + "!" * 4000)
    yield "8K list", "1", box("1," * 4000 + "1")
    yield "set of 1500 reversed", "\\{" + ",".join(map(str, range(1500))) + "\\}", box(
        "\\{" + ",".join(map(str, range(1499, -1, -1))) + "\\}"
    )
    yield "product of 800 integers", "*".join(["123456789"] * (K // 10)), box("*".join(["123456789"] * (K // 10)) + "+1")
    yield "sum of 330 fractions", "+".join(f"\\frac{{{i*7919+1}}}{{{i*104729+3}}}" for i in range(1, K // 24)), box(
        "+".join(f"\\frac{{{i*7919+1}}}{{{i*104729+3}}}" for i in range(1, K // 24)) + "+1"
    )
    yield "400 binomials", "+".join(["\\binom{2000}{1000}"] * (K // 20)), box("+".join(["\\binom{2000}{1000}"] * (K // 20)) + "+1")
    yield "product of 570 (x+c)", "*".join(["(x+123456789)"] * (K // 14)), box("*".join(["(x+123456789)"] * (K // 14)) + "+1")
    yield "sum of 500 x/(x+k)", "+".join(f"\\frac{{x}}{{x+{i}}}" for i in range(1, K // 16)), box(
        "+".join(f"\\frac{{x}}{{x+{i}}}" for i in range(1, K // 16)) + "+1"
    )
    yield "9^{9^{9^9}}", "1", box("9^{9^{9^{9}}}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--bin", default=os.path.join(root, "target/release/reward-server"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    named = list(cases())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "adversarial.jsonl")
        with open(path, "w") as f:
            for name, gold, resp in named:
                f.write(json.dumps({"id": name, "task": "math", "answer": gold, "response": resp}) + "\n")
        times = {name: [] for name, _, _ in named}
        verdicts = {}
        for _ in range(args.rounds):
            out = subprocess.run(
                [args.bin, "grade", path, "--threads", "1", "--no-progress"],
                check=True, capture_output=True, text=True,
            ).stdout
            for line in out.splitlines():
                r = json.loads(line)
                times[r["id"]].append(r["elapsed_ms"])
                verdicts[r["id"]] = r["verdict"]
    width = max(len(n) for n in times)
    for name, ts in times.items():
        print(f"{name:<{width}}  {statistics.median(ts):8.3f} ms  {verdicts[name]}")
    worst = max(times, key=lambda n: statistics.median(times[n]))
    print(f"worst: {worst} at {statistics.median(times[worst]):.3f} ms (median of {args.rounds}); target < 10 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
