#!/usr/bin/env python3
"""Benchmark code grading: `reward-server grade` against a native CPython pool.

    bash bench/code_bench.sh            # guest + release build + full run (~2.5 min on 2 cores)
    bash bench/code_bench.sh --quick    # small workloads, 1 round, for a smoke run
    python3 bench/code_bench.py [--bin PATH] [--rounds 3] [--quick] [--json PATH]
    bash bench/code_bench.sh --baseline-bin OLD/reward-server   # also before/after, in the same run

(code_bench.sh fetches the sandbox guest and builds the release binary first;
this script only runs it.)

Both sides grade the SAME generated items (written to bench/out/code-*.jsonl),
in one run:

  ours    reward-server grade ITEMS --threads W --output R --no-progress
          (CPython 3.15 for WASI in wasmtime; all cases of an item in one
          interpreter, fresh globals/stdin per case; items in parallel)
  native  a concurrent.futures.ProcessPoolExecutor with W workers over the
          items, the way graders do it today: each worker writes the program
          to a temp file and runs every case as
              subprocess.run([PYTHON, FILE], input=..., capture_output=True, timeout=time_limit_s)
          (PYTHON: --native-python, default this interpreter; code_bench.sh
          passes a clean venv of the system python3, see there)
          comparing stdout with the same rule as ours (tokens per line,
          trailing white space and blank lines ignored, integers exact,
          numbers within 1e-6 absolute or relative). Like ours without
          `all_cases`, it stops at an item's first failing case.

Workloads (deterministic, seed below):
  startup  200 items x 10 cases of tiny programs (a+b in 4 variants: input(),
           sys.stdin.read(), floats with 10 decimals, and one that is wrong
           on sums >= 1500), all cores.
  single   100 single-case a+b items: per-item latency, all cores and 1 worker.
  assert   100 HumanEval-shaped items (a function, ten plain asserts that the
           host compares, a loop of asserts run as test code in the tests'
           own interpreter; every fourth function wrong), "by 4": four
           samples per problem share its test code (pass@k, an RL group: the
           converted tests are cached), "by 1": each item its own tests.
           Native runs the program and the tests as one script, passed when
           it exits 0.
  compute  8 items of a 3e6-addition loop + 8 of a pure-Python sieve of
           Eratosthenes to 2e6, one case each: all cores and 1 worker (the
           1-worker run shows the per-core slowdown against native CPython).

Before anything is timed, one tiny `grade` run loads the sandbox (it compiles
the guest once, ~100 s, when its cache is missing) and one native `python3`
runs, so neither one-time cost is measured. Each measurement then runs
--rounds times (ours and native alternate, and which goes first alternates);
throughput is the median wall time over rounds, latencies are pooled over
rounds. Wall time is the whole grader: the `reward-server` process (start,
sandbox load, grading, writing results) vs pool start + grading + shutdown.

Per-case latency: ours = an item's elapsed_ms / cases it ran (cases are not
timed one by one; one value per item); native = each subprocess.run, timed in
the worker. Per-item latency: elapsed_ms vs the worker's time for the item
(temp file included). Ratios are ours/native: above 1 means ours has more
throughput (items/s, cases/s) or more latency (ms).

With --baseline-bin, a third side runs in every round: another reward-server
binary (an older build) on the same items, so a change's cost shows as
ours/baseline ratios measured on the same machine in the same run.

Verdicts and `passed` must agree item by item; mismatches are counted and
listed (a mismatch is a bug in one of the two, not noise). Results go to
stdout and, as JSON, to bench/out/code_bench.json (or --json).

Python 3 stdlib only.
"""

import argparse
import collections
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_BIN, DEFAULT_OUT, cpu_info, die, loadavg, median, percentile, read_jsonl  # noqa: E402

SEED = 20241121
TIME_LIMIT_S = 6
FLOAT_TOL = 1e-6

# ---------------------------------------------------------------------------
# Workloads

PROGRAMS = {
    "sum_input": "a, b = map(int, input().split())\nprint(a + b)\n",
    "sum_stdin_read": (
        "import sys\n"
        "a, b = map(int, sys.stdin.read().split())\n"
        "sys.stdout.write(f'{a + b}\\n')\n"
    ),
    "sum_float": "a, b = map(float, input().split())\nprint(f'{a + b:.10f}')\n",
    # Wrong: off by one when the sum is at least 1500 (about 1 case in 8).
    "sum_wrong": "a, b = map(int, input().split())\ns = a + b\nprint(s if s < 1500 else s - 1)\n",
    "loop_3e6": (
        "n = int(input())\n"
        "s = 0\n"
        "for i in range(n):\n"
        "    s += i\n"
        "print(s)\n"
    ),
    "sieve_2e6": (
        "n = int(input())\n"
        "is_p = [True] * (n + 1)\n"
        "is_p[0] = is_p[1] = False\n"
        "i = 2\n"
        "while i * i <= n:\n"
        "    if is_p[i]:\n"
        "        for j in range(i * i, n + 1, i):\n"
        "            is_p[j] = False\n"
        "    i += 1\n"
        "print(sum(is_p))\n"
    ),
}


def response_for(program):
    return f"Read the input, compute, print.\n\n```python\n{program}```\n"


def prime_count(n):
    s = bytearray([1]) * (n + 1)
    s[0] = s[1] = 0
    i = 2
    while i * i <= n:
        if s[i]:
            s[i * i::i] = bytes(len(range(i * i, n + 1, i)))
        i += 1
    return sum(s)


def sum_case(rng, kind):
    if kind == "sum_float":
        a, b = round(rng.uniform(-1000, 1000), 6), round(rng.uniform(-1000, 1000), 6)
        return {"input": f"{a:.6f} {b:.6f}\n", "output": f"{a + b:.6f}\n"}
    a, b = rng.randrange(1000), rng.randrange(1000)
    return {"input": f"{a} {b}\n", "output": f"{a + b}\n"}


def item(item_id, kind, cases):
    return {
        "id": item_id, "kind": kind, "task": "code", "response": response_for(PROGRAMS[kind]),
        "tests": {"type": "stdio", "cases": cases}, "time_limit_s": TIME_LIMIT_S,
    }


def make_startup(n_items, n_cases, seed):
    rng = random.Random(seed)
    kinds = ["sum_input", "sum_stdin_read", "sum_float", "sum_wrong"]
    out = []
    for i in range(n_items):
        kind = kinds[i % len(kinds)]
        out.append(item(f"startup-{i}", kind, [sum_case(rng, kind) for _ in range(n_cases)]))
    return out


def make_single(n_items, seed):
    rng = random.Random(seed + 1)
    return [item(f"single-{i}", "sum_input", [sum_case(rng, "sum_input")]) for i in range(n_items)]


def make_compute(n_each):
    out = []
    for i in range(n_each):
        n = 3_000_000 + i
        out.append(item(f"loop-{i}", "loop_3e6", [{"input": f"{n}\n", "output": f"{n * (n - 1) // 2}\n"}]))
        n = 2_000_000 + 1000 * i
        out.append(item(f"sieve-{i}", "sieve_2e6", [{"input": f"{n}\n", "output": f"{prime_count(n)}\n"}]))
    return out


ASSERT_PROGRAM = (
    "def add(a, b):\n"
    "    return a + b\n"
)


def make_assert(n_items, seed, samples=1):
    """HumanEval-shaped items: a function and ten plain asserts (compared by
    the host) plus a loop of asserts (run as test code); every fourth item's
    function is wrong. `samples` items in a row share their test code, as
    the samples of one problem do (pass@k, an RL group)."""
    rng = random.Random(seed + 2)
    out = []
    pairs = []
    for i in range(n_items):
        program = ASSERT_PROGRAM if i % 4 else "def add(a, b):\n    return a - b\n"
        if i % samples == 0:
            pairs = [(rng.randrange(1000), rng.randrange(1, 1000)) for _ in range(10)]
        code = "".join(f"assert add({a}, {b}) == {a + b}\n" for a, b in pairs)
        code += "for i in range(20):\n    assert add(i, 1) == i + 1\n"
        out.append({
            "id": f"assert-{i}", "kind": "assert_add", "task": "code", "response": response_for(program),
            "tests": {"type": "assert", "code": code}, "time_limit_s": TIME_LIMIT_S,
        })
    return out


def write_jsonl(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")


# ---------------------------------------------------------------------------
# The native baseline (runs in the pool workers; top-level so it pickles)

def extract_code(response):
    """The last ```python (or py/python3) block, else the last fenced block;
    the same rule as reward-server's code::extract."""
    last_py = last_any = None
    pos = 0
    while True:
        open_ = response.find("```", pos)
        if open_ < 0:
            break
        nl = response.find("\n", open_ + 3)
        info_end = nl if nl >= 0 else len(response)
        info = response[open_ + 3:info_end].strip().lower()
        body = min(info_end + 1, len(response))
        close = response.find("```", body)
        if close < 0:
            break
        code = response[body:close]
        if info in ("python", "py", "python3"):
            last_py = code
        last_any = code
        pos = close + 3
    return last_py if last_py is not None else last_any


def _int_token(t):
    d = t[1:] if t[:1] in ("-", "+") else t
    if d and d.isascii() and d.isdigit():
        return int(t)
    return None


def _exact(t):
    """A decimal token's exact value (Decimal), or None."""
    import decimal
    if "_" in t or not t or not all(c in "0123456789+-.eE" for c in t):
        return None
    try:
        v = decimal.Decimal(t)
    except decimal.InvalidOperation:
        return None
    return v if v.is_finite() else None


def _float_token(t):
    # Rust's f64::from_str has no '_' separators and no surrounding blanks.
    if "_" in t:
        return None
    try:
        return float(t)
    except ValueError:
        return None


def tokens_match(a, b):
    """Actual token a against expected b, reward-server's default rule: an
    expected integer is met exactly (3.0 meets 3), another number within
    FLOAT_TOL absolute or relative."""
    if a == b:
        return True
    y = _int_token(b)
    if y is not None:
        x = _exact(a)
        return x is not None and x == y
    x, y = _float_token(a), _float_token(b)
    if x is None or y is None or x != x or y != y or abs(x) == float("inf") or abs(y) == float("inf"):
        return False
    diff = abs(x - y)
    return diff <= FLOAT_TOL or diff <= FLOAT_TOL * max(abs(x), abs(y))


def _lines(s):
    # Rust's str::lines: split on \n, drop one trailing \r, no final empty line.
    parts = s.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    v = [(p[:-1] if p.endswith("\r") else p).split() for p in parts]
    while v and not v[-1]:
        v.pop()
    return v


def outputs_match(actual, expected):
    a, e = _lines(actual), _lines(expected)
    return len(a) == len(e) and all(
        len(x) == len(y) and all(tokens_match(p, q) for p, q in zip(x, y)) for x, y in zip(a, e))


def native_grade_item(it, python=sys.executable):
    t0 = time.perf_counter()
    # Assert tests run the way HumanEval's harness runs them: the program
    # and the tests as one script, passed when it exits 0.
    asserts = it["tests"]["type"] == "assert"
    cases = [{"input": ""}] if asserts else it["tests"]["cases"]
    res = {"id": it["id"], "verdict": None, "passed": 0, "total": len(cases), "case_ms": [], "error": None}
    code = extract_code(it["response"])
    if code is None:
        res.update(verdict="no_answer", error="no fenced code block in the response")
        res["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
        return res
    fd, path = tempfile.mkstemp(suffix=".py", prefix="code_bench_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(code + "\n\n" + it["tests"]["code"] if asserts else code)
        for k, case in enumerate(cases):
            c0 = time.perf_counter()
            fail = None
            try:
                p = subprocess.run([python, path], input=case["input"].encode(),
                                   capture_output=True, timeout=it.get("time_limit_s", TIME_LIMIT_S))
            except subprocess.TimeoutExpired:
                p = None
                fail = ("time_limit", "time limit exceeded")
            res["case_ms"].append((time.perf_counter() - c0) * 1e3)
            if fail is None and asserts and p.returncode != 0 and b"AssertionError" in p.stderr:
                fail = ("wrong_answer", "a test failed")
            if fail is None and p.returncode != 0:
                tail = p.stderr.decode("utf-8", "replace").strip()[-300:]
                fail = ("runtime_error", f"exit status {p.returncode}: {tail}")
            elif fail is None and not asserts and not outputs_match(p.stdout.decode("utf-8", "replace"), case["output"]):
                fail = ("wrong_answer", "wrong output")
            if fail is None:
                res["passed"] += 1
            elif res["verdict"] is None:
                res["verdict"], res["error"] = fail[0], f"case {k + 1}: {fail[1]}"
                if not it.get("all_cases"):
                    break
    finally:
        os.unlink(path)
    if res["verdict"] is None:
        res["verdict"] = "correct"
    res["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
    return res


# ---------------------------------------------------------------------------
# Running both sides

def cases_run_ours(r):
    """Cases our grader ran for result r (it stops at the first failure)."""
    v = r.get("verdict")
    if v == "correct":
        return int(r.get("total", 0))
    if v in ("wrong_answer", "runtime_error", "time_limit", "memory_limit", "output_limit"):
        return int(r.get("passed", 0)) + 1
    return 0  # no_answer, invalid: nothing ran


def run_ours(bin_path, items_path, n_items, workers, out_path, err_path):
    cmd = [bin_path, "grade", items_path, "--output", out_path, "--no-progress", "--threads", str(workers)]
    with open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        with open(err_path, encoding="utf-8", errors="replace") as f:
            die(f"reward-server exited {rc}: {' '.join(cmd)}\n{f.read()[-2000:]}")
    results = read_jsonl(out_path)
    if len(results) != n_items:
        die(f"{out_path}: {len(results)} results for {n_items} items")
    case_ms, item_ms, by_kind, cases = [], [], collections.defaultdict(list), 0
    for r in results:
        n = cases_run_ours(r)
        ms = float(r["elapsed_ms"])
        item_ms.append(ms)
        cases += n
        if n:
            case_ms.append(ms / n)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_mib": ru.ru_maxrss / 1024.0,
            "cases": cases, "case_ms": case_ms, "item_ms": item_ms, "results": results}


def run_native(items, workers, python):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(partial(native_grade_item, python=python), items, chunksize=1))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    case_ms = [ms for r in results for ms in r["case_ms"]]
    return {"wall_s": wall, "cpu_s": cpu, "cases": len(case_ms), "case_ms": case_ms,
            "item_ms": [r["elapsed_ms"] for r in results], "results": results}


def lat(ms):
    if not ms:
        return {"median_ms": None, "p90_ms": None, "n": 0}
    return {"median_ms": median(ms), "p90_ms": percentile(ms, 90), "n": len(ms)}


def ratio(a, b):
    return a / b if a is not None and b else None


def summarise(runs, n_items):
    """Median throughput over rounds; latencies pooled over rounds."""
    walls = [r["wall_s"] for r in runs]
    w = median(walls)
    cases = median([r["cases"] for r in runs])
    return {
        "wall_s": walls, "median_wall_s": w, "median_cpu_s": median([r["cpu_s"] for r in runs]),
        "items_per_s": n_items / w, "cases_per_s": cases / w, "cases_run": cases,
        "per_case": lat([x for r in runs for x in r["case_ms"]]),
        "per_item": lat([x for r in runs for x in r["item_ms"]]),
    }


def per_kind_case_ms(items, runs, side):
    """Per-case latency by program kind, pooled over rounds."""
    kind_of = {it["id"]: it["kind"] for it in items}
    acc = collections.defaultdict(list)
    for run in runs:
        for r in run["results"]:
            if side == "ours":
                n = cases_run_ours(r)
                if n:
                    acc[kind_of[r["id"]]].append(float(r["elapsed_ms"]) / n)
            else:
                acc[kind_of[r["id"]]].extend(r["case_ms"])
    return {k: lat(v) for k, v in sorted(acc.items())}


def compare_verdicts(ours_results, native_results):
    mism = []
    for a, b in zip(ours_results, native_results):
        if a.get("id") != b["id"] or a.get("verdict") != b["verdict"] or int(a.get("passed", -1)) != b["passed"]:
            mism.append({"id": b["id"], "ours": [a.get("verdict"), a.get("passed"), a.get("error")],
                         "native": [b["verdict"], b["passed"], b["error"]]})
    return mism


def fmt(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=DEFAULT_BIN, help="reward-server binary (release)")
    ap.add_argument("--baseline-bin", help="another reward-server binary to run as a third side (before/after)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per measurement (default 3)")
    ap.add_argument("--quick", action="store_true", help="small workloads, 1 round")
    ap.add_argument("--native-python", default=sys.executable,
                    help="interpreter the native pool runs programs with (default: this one; "
                         "code_bench.sh passes a clean venv, see there)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel workers/threads (default: cores)")
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--json", help="write the summary here (default OUT_DIR/code_bench.json)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        die(f"{args.bin} not found; build it with `cargo build --release -p reward-server` (or use bench/code_bench.sh)")
    rounds = 1 if args.quick else args.rounds
    nw = args.workers
    od = args.out_dir
    os.makedirs(od, exist_ok=True)

    if args.quick:
        startup, single, compute = make_startup(40, 10, SEED), make_single(20, SEED), make_compute(2)
        asserts, asserts1 = make_assert(20, SEED, 4), make_assert(20, SEED + 1)
    else:
        startup, single, compute = make_startup(200, 10, SEED), make_single(100, SEED), make_compute(8)
        asserts, asserts1 = make_assert(100, SEED, 4), make_assert(100, SEED + 1)
    n_cases_startup = len(startup[0]["tests"]["cases"])
    workloads = {"startup": startup, "single": single, "compute": compute, "assert": asserts,
                 "assert1": asserts1}
    paths = {}
    for name, items in workloads.items():
        paths[name] = os.path.join(od, f"code-{name}.jsonl")
        write_jsonl(paths[name], items)
    # (label, workload, workers)
    plan = [
        (f"startup {len(startup)}x{n_cases_startup}, {nw}w", "startup", nw),
        (f"single {len(single)}x1, {nw}w", "single", nw),
        (f"single {len(single)}x1, 1w", "single", 1),
        (f"assert {len(asserts)}x1 by 4, {nw}w", "assert", nw),
        (f"assert {len(asserts1)}x1 by 1, {nw}w", "assert1", nw),
        (f"compute {len(compute)}x1, {nw}w", "compute", nw),
        (f"compute {len(compute)}x1, 1w", "compute", 1),
    ]

    py = args.native_python
    py_ver = subprocess.run([py, "--version"], capture_output=True, text=True).stdout.strip()
    py_real = subprocess.run([py, "-c", "import sys, os; print(os.path.realpath(sys.executable))"],
                             capture_output=True, text=True).stdout.strip()
    print(f"machine  {cpu_info()}; load avg {loadavg():.2f}")
    print(f"ours     {args.bin}")
    if args.baseline_bin:
        print(f"baseline {args.baseline_bin}")
    print(f"native   {py} -> {py_real} ({py_ver}), ProcessPoolExecutor, one subprocess per case")
    if loadavg() > 0.5:
        print("warning  machine is not idle (load avg > 0.5): timings will be noisy")

    # Warm-up: the sandbox's one-time module compile (or cache load) and page cache.
    warm_path = os.path.join(od, "code-warmup.jsonl")
    write_jsonl(warm_path, make_single(1, SEED + 7))
    print("warm-up  reward-server grade (1 tiny item; compiles the guest if its cache is missing) ...", flush=True)
    t0 = time.perf_counter()
    warm = run_ours(args.bin, warm_path, 1, 1, os.path.join(od, "code-warmup-ours.jsonl"),
                    os.path.join(od, "code-ours.stderr"))
    warm_ours_s = time.perf_counter() - t0
    if warm["results"][0].get("verdict") != "correct":
        die(f"warm-up item not correct: {warm['results'][0]}")
    if args.baseline_bin:
        warm = run_ours(args.baseline_bin, warm_path, 1, 1, os.path.join(od, "code-warmup-baseline.jsonl"),
                        os.path.join(od, "code-baseline.stderr"))
        if warm["results"][0].get("verdict") != "correct":
            die(f"baseline warm-up item not correct: {warm['results'][0]}")
    start_ms = []
    for _ in range(21):
        t1 = time.perf_counter()
        subprocess.run([py, "-c", "pass"], check=True)
        start_ms.append((time.perf_counter() - t1) * 1e3)
    print(f"native   `{os.path.basename(py)} -c pass`: median {median(start_ms):.1f} ms over 21 runs")
    warm_nat = run_native(make_single(1, SEED + 7), 1, args.native_python)
    print(f"warm-up  ours {warm_ours_s:.2f} s (not timed below), native {warm_nat['wall_s']:.2f} s", flush=True)

    summary = {
        "machine": cpu_info(), "nproc": os.cpu_count(), "workers": nw, "rounds": rounds, "seed": SEED,
        "native_python": py_ver, "native_python_path": py, "native_python_real": py_real,
        "native_start_ms_median": median(start_ms), "bin": args.bin, "baseline_bin": args.baseline_bin,
        "platform": platform.platform(),
        "warmup_ours_s": warm_ours_s, "load_avg_start": loadavg(), "measurements": {},
    }
    total_mismatch = 0
    mismatch_examples = []
    for label, wname, w in plan:
        items = workloads[wname]
        sides = ["ours", "native"] + (["baseline"] if args.baseline_bin else [])
        runs = {who: [] for who in sides}
        for r in range(rounds):
            # Which side goes first rotates from round to round.
            order = sides[r % len(sides):] + sides[:r % len(sides)]
            for who in order:
                if who == "ours":
                    res = run_ours(args.bin, paths[wname], len(items), w, os.path.join(od, f"code-{wname}-ours.jsonl"),
                                   os.path.join(od, "code-ours.stderr"))
                elif who == "baseline":
                    res = run_ours(args.baseline_bin, paths[wname], len(items), w,
                                   os.path.join(od, f"code-{wname}-baseline.jsonl"), os.path.join(od, "code-baseline.stderr"))
                else:
                    res = run_native(items, w, args.native_python)
                runs[who].append(res)
            walls = "   ".join(f"{who} {runs[who][-1]['wall_s']:7.2f} s" for who in sides)
            print(f"{label:<24} round {r + 1}/{rounds}  {walls}   load {loadavg():.2f}", flush=True)
        mism = []
        for a, b in zip(runs["ours"], runs["native"]):
            mism += compare_verdicts(a["results"], b["results"])
        total_mismatch += len(mism)
        mismatch_examples += [dict(m, measurement=label) for m in mism[:5]]
        verdicts = collections.Counter(x["verdict"] for x in runs["ours"][-1]["results"])
        so, sn = summarise(runs["ours"], len(items)), summarise(runs["native"], len(items))
        m = {
            "workload": wname, "workers": w, "items": len(items), "ours": so, "native": sn,
            "ratio_ours_over_native": {
                "items_per_s": ratio(so["items_per_s"], sn["items_per_s"]),
                "cases_per_s": ratio(so["cases_per_s"], sn["cases_per_s"]),
                "per_case_median": ratio(so["per_case"]["median_ms"], sn["per_case"]["median_ms"]),
                "per_case_p90": ratio(so["per_case"]["p90_ms"], sn["per_case"]["p90_ms"]),
                "per_item_median": ratio(so["per_item"]["median_ms"], sn["per_item"]["median_ms"]),
                "per_item_p90": ratio(so["per_item"]["p90_ms"], sn["per_item"]["p90_ms"]),
            },
            "verdicts_ours_last_round": dict(verdicts),
            "verdict_mismatches": len(mism),
        }
        if args.baseline_bin:
            sb = summarise(runs["baseline"], len(items))
            m["baseline"] = sb
            m["ratio_ours_over_baseline"] = {
                "items_per_s": ratio(so["items_per_s"], sb["items_per_s"]),
                "cases_per_s": ratio(so["cases_per_s"], sb["cases_per_s"]),
                "per_case_median": ratio(so["per_case"]["median_ms"], sb["per_case"]["median_ms"]),
                "per_item_median": ratio(so["per_item"]["median_ms"], sb["per_item"]["median_ms"]),
            }
            base_mism = []
            for a, b in zip(runs["ours"], runs["baseline"]):
                base_mism += [x for x, y in zip(a["results"], b["results"])
                              if x.get("verdict") != y.get("verdict") or x.get("passed") != y.get("passed")]
            m["verdict_mismatches_vs_baseline"] = len(base_mism)
        if wname == "compute":
            ko, kn = per_kind_case_ms(items, runs["ours"], "ours"), per_kind_case_ms(items, runs["native"], "native")
            m["per_kind_case_ms"] = {
                k: {"ours": ko[k], "native": kn.get(k), "ratio_median": ratio(ko[k]["median_ms"], kn[k]["median_ms"])}
                for k in ko}
        summary["measurements"][label] = m
    summary["load_avg_end"] = loadavg()
    summary["verdict_mismatches"] = total_mismatch
    summary["mismatch_examples"] = mismatch_examples

    # ------------------------------------------------------------------ table
    print()
    print(f"== ours = reward-server grade (wasm), native = {py_ver} process pool; {rounds} round(s); "
          f"throughput: median wall; latency: pooled over rounds ==")
    hdr = (f"{'measurement':<24} {'side':<7} {'wall s':>7} {'items/s':>9} {'cases/s':>9} "
           f"{'case med':>9} {'case p90':>9} {'item med':>9} {'item p90':>9}")
    print(hdr)
    print("-" * len(hdr))
    for label, m in summary["measurements"].items():
        for side in ("ours", "native"):
            s = m[side]
            print(f"{label if side == 'ours' else '':<24} {side:<7} {s['median_wall_s']:7.2f} {fmt(s['items_per_s']):>9} "
                  f"{fmt(s['cases_per_s']):>9} {fmt(s['per_case']['median_ms'], 2):>9} {fmt(s['per_case']['p90_ms'], 2):>9} "
                  f"{fmt(s['per_item']['median_ms'], 2):>9} {fmt(s['per_item']['p90_ms'], 2):>9}")
        q = m["ratio_ours_over_native"]
        print(f"{'':<24} {'ratio':<7} {'':>7} {fmt(q['items_per_s'], 2):>9} {fmt(q['cases_per_s'], 2):>9} "
              f"{fmt(q['per_case_median'], 2):>9} {fmt(q['per_case_p90'], 2):>9} "
              f"{fmt(q['per_item_median'], 2):>9} {fmt(q['per_item_p90'], 2):>9}")
    print("(latencies in ms; ratio = ours/native: >1 in items/s and cases/s means ours is faster, "
          ">1 in ms means ours is slower)")
    if args.baseline_bin:
        print()
        print(f"== before/after: ours = {args.bin}, baseline = {args.baseline_bin}; same rounds ==")
        hdr2 = (f"{'measurement':<24} {'ours items/s':>13} {'base items/s':>13} {'ratio':>7} "
                f"{'ours case med':>14} {'base case med':>14} {'ratio':>7} {'verdicts differ':>16}")
        print(hdr2)
        print("-" * len(hdr2))
        for label, m in summary["measurements"].items():
            q = m["ratio_ours_over_baseline"]
            print(f"{label:<24} {fmt(m['ours']['items_per_s']):>13} {fmt(m['baseline']['items_per_s']):>13} "
                  f"{fmt(q['items_per_s'], 3):>7} {fmt(m['ours']['per_case']['median_ms'], 2):>14} "
                  f"{fmt(m['baseline']['per_case']['median_ms'], 2):>14} {fmt(q['per_case_median'], 3):>7} "
                  f"{m['verdict_mismatches_vs_baseline']:>16}")
        print("(ratio = ours/baseline: items/s below 1 means ours is slower; case ms above 1 means ours is slower)")
    for label, m in summary["measurements"].items():
        if "per_kind_case_ms" in m:
            parts = [f"{k} ours {fmt(v['ours']['median_ms'], 0)} ms / native {fmt(v['native']['median_ms'], 0)} ms "
                     f"= {fmt(v['ratio_median'], 2)}x" for k, v in m["per_kind_case_ms"].items()]
            print(f"per case by program, {label}: " + "; ".join(parts))

    # ---------------------------------------------------------------- targets
    ms = list(summary["measurements"].values())
    st, s_n, s_1, _assert, _assert1, c_n, c_1 = ms
    targets = {
        "a_startup_faster_than_native_pool": {
            "items_per_s_ratio": st["ratio_ours_over_native"]["items_per_s"],
            "met": st["ratio_ours_over_native"]["items_per_s"] > 1},
        "b_compute_within_3x_of_native_1_worker": {
            "per_case_median_ratio": c_1["ratio_ours_over_native"]["per_case_median"],
            "per_kind": {k: v["ratio_median"] for k, v in c_1.get("per_kind_case_ms", {}).items()},
            "met": c_1["ratio_ours_over_native"]["per_case_median"] <= 3},
        "trivial_case_under_5ms": {
            "startup_per_case_median_ms": st["ours"]["per_case"]["median_ms"],
            "single_case_item_median_ms_1_worker": s_1["ours"]["per_item"]["median_ms"],
            "single_case_item_median_ms_all_workers": s_n["ours"]["per_item"]["median_ms"],
            "met_amortised": st["ours"]["per_case"]["median_ms"] < 5,
            "met_single_case_item": s_1["ours"]["per_item"]["median_ms"] < 5},
    }
    summary["targets"] = targets
    print()
    t = targets["a_startup_faster_than_native_pool"]
    print(f"target (a) start-up bound, faster than the native pool: ours/native items/s = "
          f"{t['items_per_s_ratio']:.2f}x -> {'met' if t['met'] else 'MISSED'}")
    t = targets["b_compute_within_3x_of_native_1_worker"]
    kinds = ", ".join(f"{k} {v:.2f}x" for k, v in t["per_kind"].items())
    print(f"target (b) compute, 1 worker, within 3x of native: per-case median ours/native = "
          f"{t['per_case_median_ratio']:.2f}x ({kinds}) -> {'met' if t['met'] else 'MISSED'}")
    t = targets["trivial_case_under_5ms"]
    print(f"target     trivial case < 5 ms median: {t['startup_per_case_median_ms']:.2f} ms per case in "
          f"{n_cases_startup}-case items ({'met' if t['met_amortised'] else 'MISSED'}); "
          f"{t['single_case_item_median_ms_1_worker']:.2f} ms for a single-case item, 1 worker "
          f"({'met' if t['met_single_case_item'] else 'MISSED'})")
    print(f"verdict mismatches (verdict or passed, ours vs native, all rounds): {total_mismatch}")
    for ex in mismatch_examples[:10]:
        print(f"  {ex['measurement']}: {ex['id']}: ours {ex['ours']}  native {ex['native']}")

    jpath = args.json or os.path.join(od, "code_bench.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"\nsummary JSON: {jpath}; items: {od}/code-*.jsonl")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(bench took {time.time() - t0:.0f} s)")
