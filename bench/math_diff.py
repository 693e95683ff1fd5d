#!/usr/bin/env python3
"""Differential check: `reward-server grade` vs HuggingFace math-verify.

    bash bench/math_diff.sh                      # venv + release build + run
    python3 bench/math_diff.py [--report bench/out/diff.md] [--no-corpus]
    python3 bench/math_diff.py --cases 'testcases/math/*.jsonl' --corpus PATH

Grades every testcases/math/*.jsonl file, the real-world corpus
(testcases/math/realworld/corpus.jsonl: outputs and tests other projects wrote,
see its README) and the generated benchmark corpus (bench/make_cases.py,
bench/out/corpus-5000.jsonl, made on demand) with both
graders: ours (`reward-server grade FILE --output ...`) and math-verify
(bench/mv_worker.py: gold = parse(\\boxed{answer}), pred = parse(response)
with its default extraction, verify with its defaults). Results are matched
line by line (blank lines are dropped from the inputs first).

Writes a Markdown report (default bench/out/diff.md; it never writes
docs/DIFFERENTIAL.md unless you pass that path) listing every item where the
two rewards differ: id, gold, math-verify's extracted answer, response tail,
our verdict, math-verify's verdict, and the test case's `expected` verdict
and `note` when present. A second section lists test cases where our reward
differs from `expected` while math-verify agrees with it, the third where
both are wrong. Items with `"extract": "boxed"` are flagged: math-verify has no
such strict mode, so its verdict there is not comparable.

Exit status 0 whenever both graders ran (disagreements are findings, not
failures); 2 on a setup problem. Python 3 stdlib only.
"""

import argparse
import collections
import datetime
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    DEFAULT_BIN, DEFAULT_OUT, DEFAULT_PY, MV_WORKER, REPO_ROOT, check_tools, ensure_corpus, reward_of,
)


def prepare(src, workdir):
    """Copy src without blank lines; return (path, list of parsed-or-None items)."""
    with open(src, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    items = []
    for l in lines:
        try:
            it = json.loads(l)
            items.append(it if isinstance(it, dict) else None)
        except ValueError:
            items.append(None)
    dst = os.path.join(workdir, os.path.basename(src))
    with open(dst, "w", encoding="utf-8") as f:
        f.writelines(l + "\n" for l in lines)
    return dst, items


def run_grader(name, cmd, out_path, err_path):
    """Run one grader; return (results list or None, error text)."""
    with open(err_path, "wb") as err:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode
    res = []
    try:
        with open(out_path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    res.append(json.loads(line))
    except (OSError, ValueError) as e:
        res = None
        if rc == 0:
            return None, f"{name}: unreadable output: {e}"
    if rc != 0:
        with open(err_path, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-600:]
        return res, f"{name} exited {rc}: {tail.strip()}"
    return res, ""


def cell(s, limit=120, tail=False):
    """Markdown table cell: one line, pipes escaped, code-formatted, truncated."""
    if s is None:
        return ""
    s = str(s).replace("\r", " ").replace("\n", " ⏎ ").replace("`", "'")
    if len(s) > limit:
        s = "…" + s[-limit:] if tail else s[:limit] + "…"
    s = s.replace("|", "\\|")
    return f"`{s}`" if s.strip() else ""


def verdict_cell(res):
    if res is None:
        return "(no result)"
    v = res.get("verdict")
    r = reward_of(res)
    s = f"{v} ({r})" if r is not None else str(v)
    if res.get("error"):
        s += " " + cell(res["error"], 60)
    return s


def expected_of(item):
    exp = (item or {}).get("expected")
    if not isinstance(exp, dict):
        return None, None
    r = exp.get("reward")
    r = (1 if r > 0.5 else 0) if isinstance(r, (int, float)) else None
    return exp.get("verdict"), r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=os.path.join(REPO_ROOT, "testcases", "math", "*.jsonl"),
                    help="glob of test-case files (default testcases/math/*.jsonl)")
    ap.add_argument("--corpus", help="benchmark corpus (default bench/out/corpus-5000.jsonl, generated)")
    ap.add_argument("--corpus-n", type=int, default=5000, help="size of the generated corpus")
    ap.add_argument("--no-corpus", action="store_true", help="no generated corpus")
    ap.add_argument("--realworld", default=os.path.join(REPO_ROOT, "testcases", "math", "realworld", "corpus.jsonl"),
                    help="real-world corpus (default testcases/math/realworld/corpus.jsonl; '' to leave it out)")
    ap.add_argument("--report", default=os.path.join(DEFAULT_OUT, "diff.md"))
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--python", default=DEFAULT_PY)
    ap.add_argument("--threads", type=int, default=0, help="--threads for reward-server (0 = its default)")
    ap.add_argument("--out-dir", default=os.path.join(DEFAULT_OUT, "diff"), help="per-file results go here")
    args = ap.parse_args()

    check_tools(args.bin, args.python)
    os.makedirs(args.out_dir, exist_ok=True)
    sources = sorted(glob.glob(args.cases))
    if args.realworld:
        sources.append(args.realworld)
    if not args.no_corpus:
        sources.append(args.corpus or ensure_corpus(os.path.join(DEFAULT_OUT, f"corpus-{args.corpus_n}.jsonl"), args.corpus_n))
    if not sources:
        print(f"error: nothing to check ({args.cases})", file=sys.stderr)
        return 2

    disagreements = []   # (source, row dict)
    ours_wrong = []      # ours != expected, mv == expected
    both_wrong = []      # ours != expected, mv != expected
    problems = []
    per_source = []
    totals = collections.Counter()
    for src in sources:
        name = os.path.relpath(src, REPO_ROOT) if os.path.abspath(src).startswith(REPO_ROOT) else src
        path, items = prepare(src, args.out_dir)
        base = os.path.splitext(os.path.basename(src))[0]
        o_out = os.path.join(args.out_dir, base + ".ours.jsonl")
        m_out = os.path.join(args.out_dir, base + ".mv.jsonl")
        cmd = [args.bin, "grade", path, "--output", o_out]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        ours, err_o = run_grader("reward-server", cmd, o_out, os.path.join(args.out_dir, base + ".ours.stderr"))
        mv, err_m = run_grader("math-verify", [args.python, MV_WORKER, path, "--output", m_out], m_out,
                               os.path.join(args.out_dir, base + ".mv.stderr"))
        for e in (err_o, err_m):
            if e:
                problems.append(f"{name}: {e}")
        n = len(items)
        if ours is None or mv is None or len(ours) != n or len(mv) != n:
            problems.append(f"{name}: result counts differ (items {n}, ours "
                            f"{None if ours is None else len(ours)}, math-verify {None if mv is None else len(mv)}); skipped")
            per_source.append((name, n, None, None, None, None, None, None))
            continue
        c = collections.Counter()
        for i, (it, a, b) in enumerate(zip(items, ours, mv)):
            ra, rb = reward_of(a), reward_of(b)
            ev, er = expected_of(it)
            c["items"] += 1
            c["agree"] += ra == rb
            if er is not None:
                c["with_expected"] += 1
                c["ours_ok"] += ra == er
                c["mv_ok"] += rb == er
                c["ours_fp"] += ra == 1 and er == 0
                c["mv_fp"] += rb == 1 and er == 0
            row = {"i": i + 1, "item": it or {}, "ours": a, "mv": b, "ev": ev, "er": er}
            if ra != rb:
                disagreements.append((name, row))
            if er is not None and ra != er:
                (ours_wrong if rb == er else both_wrong).append((name, row))
        totals.update(c)
        per_source.append((name, n, c["agree"], c["with_expected"], c["ours_ok"], c["mv_ok"], c["ours_fp"], c["mv_fp"]))

    write_report(args, sources, per_source, totals, disagreements, ours_wrong, both_wrong, problems)

    print(f"checked {totals['items']} items from {len(sources)} files")
    print(f"reward disagreements ours vs math-verify: {len(disagreements)}")
    if totals["with_expected"]:
        w = totals["with_expected"]
        print(f"vs expected ({w} test cases): ours {totals['ours_ok']}/{w} right, math-verify {totals['mv_ok']}/{w} right")
        print(f"  ours wrong where math-verify is right: {len(ours_wrong)}; both wrong: {len(both_wrong)}")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    print(f"report: {args.report}")
    return 0


def mv_version(py):
    try:
        return subprocess.run([py, "-c", "from importlib.metadata import version as v; print(v('math-verify'))"],
                              capture_output=True, text=True, timeout=60).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def table(rows, with_expected=True):
    head = "| # | source:line | id | gold | ours extracted | math-verify extracted | response tail | ours | math-verify |"
    sep = "|---|---|---|---|---|---|---|---|---|"
    if with_expected:
        head += " expected | note |"
        sep += "---|---|"
    out = [head, sep]
    for k, (name, row) in enumerate(rows, 1):
        it = row["item"]
        ident = cell(it.get("id"), 40)
        if it.get("extract") == "boxed":
            ident += " (extract=boxed)"
        line = (f"| {k} | {os.path.basename(name)}:{row['i']} | {ident} | {cell(it.get('answer'), 60)} "
                f"| {cell((row['ours'] or {}).get('extracted'), 60)} | {cell((row['mv'] or {}).get('extracted'), 60)} | {cell(it.get('response'), 90, tail=True)} "
                f"| {verdict_cell(row['ours'])} | {verdict_cell(row['mv'])} |")
        if with_expected:
            exp = "" if row["ev"] is None and row["er"] is None else f"{row['ev']} ({row['er']})"
            note = it.get("note") or it.get("review") or ""
            if it.get("source_verdict") and it.get("source_verdict") != row["ev"]:
                note = f"source said {it['source_verdict']}: {note}"
            line += f" {exp} | {cell(note, 80)} |"
        out.append(line)
    return out


def write_report(args, sources, per_source, totals, disagreements, ours_wrong, both_wrong, problems):
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    L = []
    L.append("# Differential check: reward-server vs math-verify")
    L.append("")
    L.append(f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `python3 bench/math_diff.py` "
             f"(math-verify {mv_version(args.python)}). Rewards are compared; a row appears when they differ. "
             "math-verify is called as `verify(parse(\"\\\\boxed{\" + answer + \"}\"), parse(response))` with all "
             "defaults (see bench/mv_worker.py). Verdicts show `verdict (reward)`; 'ours extracted' is our `extracted` "
             "output field, 'math-verify extracted' the string its parse() matched in the response.")
    L.append("")
    L.append(f"**{totals['items']} items, {len(disagreements)} reward disagreements.**")
    if totals["with_expected"]:
        w = totals["with_expected"]
        L.append(f"On the {w} test cases with an `expected` verdict: ours right on {totals['ours_ok']}/{w}, "
                 f"math-verify right on {totals['mv_ok']}/{w}.")
    L.append("")
    L.append("| source | items | same reward | with expected | ours = expected | math-verify = expected "
             "| ours false positives | math-verify false positives |")
    L.append("|---|---|---|---|---|---|---|---|")
    for name, n, agree, we, ook, mok, ofp, mfp in per_source:
        if agree is None:
            L.append(f"| {name} | {n} | (not compared) | | | | | |")
        else:
            L.append(f"| {name} | {n} | {agree} | {we or ''} | {ook if we else ''} | {mok if we else ''} "
                     f"| {ofp if we else ''} | {mfp if we else ''} |")
    if problems:
        L.append("")
        L.append("## Problems while running")
        L.append("")
        L.extend(f"- {cell(p, 400)}" for p in problems)
    L.append("")
    L.append(f"## Disagreements ({len(disagreements)})")
    L.append("")
    L.extend(table(disagreements) if disagreements else ["None."])
    L.append("")
    L.append(f"## Test cases where ours misses `expected` but math-verify gets it ({len(ours_wrong)})")
    L.append("")
    L.extend(table(ours_wrong) if ours_wrong else ["None."])
    L.append("")
    L.append(f"## Test cases where both miss `expected` ({len(both_wrong)})")
    L.append("")
    L.extend(table(both_wrong) if both_wrong else ["None."])
    L.append("")
    with open(args.report, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    sys.exit(main())
