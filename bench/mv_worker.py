#!/usr/bin/env python3
"""Grade a JSONL file of math items with HuggingFace math-verify, sequentially.

    bench/.venv/bin/python bench/mv_worker.py ITEMS.jsonl [--output RESULTS.jsonl]

This is the anchor side of bench/math_bench.py and bench/math_diff.py; it runs
in the venv made by bench/setup_venv.sh (pinned math-verify). One process, one
thread, items in file order. For every input line it writes one result line:

    {"line": i, "id", "problem_id", "reward": 1.0|0.0,
     "verdict": "correct"|"wrong_answer"|"no_answer"|"invalid",
     "elapsed_ms": parse(gold)+parse(response)+verify, measured with
                   time.perf_counter,
     "extracted": str of math-verify's parsed prediction (truncated),
     "error": str?}

How math-verify is called, i.e. what a user would write:

    gold = parse("\\boxed{" + answer + "}")   # see GOLD WRAPPING below
    pred = parse(response)                    # default extraction config
    ok   = verify(gold, pred)

All of math-verify's defaults are kept, including its own signal.alarm based
timeouts (parse: parsing_timeout=5 s, verify: timeout_seconds=5 s), which work
here because we call it from the main thread.

GOLD WRAPPING: math-verify's parse() only finds LaTeX inside delimiters
($...$, \\[...\\], \\boxed{}); a bare gold such as `2\\sqrt{3}` or
`(-\\infty, 3]` is parsed by its plain-expression fallback as `2` or `3`.
So the gold is wrapped as `\\boxed{answer}` (what e.g. verl's math_verify
reward does) unless it already contains `\\boxed` or `$`. `--gold-wrap
none|dollar|boxed` changes this.

Verdict mapping: an item that is not a JSON object with string `response` and
`answer` -> "invalid"; parse(response) == [] -> "no_answer"; verify true ->
"correct"; otherwise "wrong_answer".

Python 3 stdlib + math-verify only.
"""

import argparse
import json
import logging
import sys
import time


def wrap_gold(answer, mode):
    if mode == "none" or "\\boxed" in answer or "$" in answer:
        return answer
    if mode == "dollar":
        return "$" + answer + "$"
    return "\\boxed{" + answer + "}"


def grade_lines(lines, gold_wrap="boxed"):
    """Yield one result dict per input line (str), in order."""
    from math_verify import parse, verify

    perf = time.perf_counter
    for i, line in enumerate(lines):
        res = {"line": i, "id": None, "problem_id": None, "reward": 0.0}
        try:
            item = json.loads(line)
        except ValueError as e:
            res.update(verdict="invalid", elapsed_ms=0.0, error=f"bad json: {e}")
            yield res
            continue
        if not isinstance(item, dict):
            res.update(verdict="invalid", elapsed_ms=0.0, error="not an object")
            yield res
            continue
        res["id"] = item.get("id")
        res["problem_id"] = item.get("problem_id")
        response, answer = item.get("response"), item.get("answer")
        if not isinstance(response, str) or not isinstance(answer, str):
            res.update(verdict="invalid", elapsed_ms=0.0, error="response/answer missing or not a string")
            yield res
            continue
        err = None
        t0 = perf()
        try:
            gold = parse(wrap_gold(answer, gold_wrap))
            pred = parse(response)
            ok = bool(verify(gold, pred)) if pred else False
        except Exception as e:  # math-verify swallows most errors itself
            gold, pred, ok, err = [], [], False, f"{type(e).__name__}: {e}"
        elapsed = (perf() - t0) * 1e3
        if err is not None:
            verdict = "error"
        elif not pred:
            verdict = "no_answer"
        else:
            verdict = "correct" if ok else "wrong_answer"
        res.update(
            reward=1.0 if ok else 0.0,
            verdict=verdict,
            elapsed_ms=elapsed,
            extracted=_short(pred),
            gold_parsed=_short(gold),
        )
        if err is not None:
            res["error"] = err
        yield res


def _short(parsed, limit=200):
    # parse() returns [sympy_obj, matched_string]; the string is the readable part.
    if not parsed:
        return ""
    s = str(parsed[-1])
    return s if len(s) <= limit else s[:limit] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("items", help="input JSONL ('-' for stdin)")
    ap.add_argument("--output", "-o", default="-", help="results JSONL (default stdout)")
    ap.add_argument("--gold-wrap", choices=["boxed", "dollar", "none"], default="boxed")
    args = ap.parse_args()

    # math-verify logs a WARNING with the whole text on each parse timeout;
    # keep stderr readable, timeouts still show up as no_answer/wrong.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    src = sys.stdin if args.items == "-" else open(args.items, encoding="utf-8")
    lines = [l for l in src.read().splitlines() if l.strip()]
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    t0 = time.perf_counter()
    n = 0
    for res in grade_lines(lines, args.gold_wrap):
        out.write(json.dumps(res, ensure_ascii=False) + "\n")
        n += 1
    out.flush()
    wall = time.perf_counter() - t0
    print(f"mv_worker: {n} items in {wall:.2f} s (in-process, excl. startup/import)", file=sys.stderr)


if __name__ == "__main__":
    main()
