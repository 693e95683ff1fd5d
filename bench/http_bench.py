#!/usr/bin/env python3
"""HTTP load benchmark of `reward-server serve`, driven by oha.

    bash bench/http_bench.sh            # guest + release build + oha + full run (~2 min)
    bash bench/http_bench.sh --quick    # 2 s runs at 1 and 16 connections, for a smoke run
    python3 bench/http_bench.py --bin PATH --oha PATH [--duration 10] [--conns 1,16,64] ...

(http_bench.sh fetches the sandbox guest, builds the release binary and
installs oha into bench/.tools first; this script only runs them.)

The script starts `reward-server serve --listen 127.0.0.1:0 [--queue N]
[--workers N]` itself (its stderr, one log line per request, goes to
bench/out/http-server.log), waits for "listening on http://ADDR", runs the
workloads against it, then stops it with SIGTERM and checks that it exits 0.

Workloads, all POST /v1/reward; bodies are generated deterministically into
bench/out/http-*.jsonl, one request body per line, and oha sends a line
picked at random for each request (`-Z`):

  math64  32 distinct batches of 64 math items each (2,048 items from
          bench/make_cases.py, seed below: chain-of-thought responses of
          200 to 4,700 characters ending in \\boxed{} with integers,
          fractions, radicals, expressions, intervals, tuples, decimals, pi
          expressions and sets; ~49% correct in another notation, ~49%
          wrong, ~2% truncated). ~80 KB per body.
  math1   the same 2,048 items, one per request.
  code8   16 distinct batches of 8 code items (stdio, 5 cases each) of tiny
          programs: a + b (input() and sys.stdin.read()), max of a list,
          reverse a word, and one off-by-one program (wrong_answer); 7 of 8
          items correct.

For each workload, outside the timed runs: every distinct body is posted once
(urllib) and the answer must be 200 with one result per item; rewards are
compared with what the generator intended (a mismatch is reported, not
fatal). Then one warm-up run (--warmup seconds at 16 connections, not
recorded), then one timed run per connection count:

  oha URL -m POST -T application/json -Z BODIES -c C -z DURATION --no-tui
      --output-format json --stats-success-breakdown -o OUT.json

Before each run the script waits until the server's queue is empty
(reward_queue_depth 0 on /metrics), so an earlier run's cancelled requests
do not overlap it.

Reported per run: requests/s = 200 answers / oha's total time (requests cut
off by the -z deadline and non-200 answers are left out); items/s = items
per request x requests/s; latency p50/p99/max of the 200 answers (oha's
latencyPercentilesSuccessful: from sending the request to the end of the
answer, on a kept-alive connection); non-200 answers by status, and oha's
errors other than "aborted due to deadline"; CPU used during the run by the
server (its process and its sandbox worker processes, from /proc) and by oha
(wait4 rusage), in cores (CPU seconds / wall seconds). oha and the server
share the machine's cores: on a 2-core machine the load generator's share is
CPU the server does not get.

If a run at 64 connections or more gets 503 answers (the queue, --queue,
default 64, was full), the script reruns those rows on a server started with
--queue 4 x connections, and reports both. Last, an overload probe: math64
at 2 x --queue connections for --probe seconds, to show the 503 path (set
--probe 0 to skip it).

Results go to stdout as Markdown tables and, as JSON, to
bench/out/http_bench.json (or --json). Python 3 stdlib only.
"""

import argparse
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_BIN, DEFAULT_OUT, MAKE_CASES, cpu_info, die, loadavg  # noqa: E402

SEED = 20241122
MATH_ITEMS = 2048
MATH_BATCH = 64
CODE_BATCHES = 16
CODE_BATCH = 8
CODE_CASES = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------
# Workloads


def write_lines(path, bodies):
    with open(path, "w", encoding="utf-8") as f:
        for b in bodies:
            line = json.dumps(b, ensure_ascii=False, separators=(",", ":"))
            assert "\n" not in line
            f.write(line + "\n")


def math_items(out_dir):
    """2,048 math items from make_cases.py, without its extra fields, and the
    0/1 reward the generator intended for each."""
    corpus = os.path.join(out_dir, "http-math-corpus.jsonl")
    subprocess.run([sys.executable, MAKE_CASES, corpus, "--n", str(MATH_ITEMS), "--seed", str(SEED)], check=True)
    items, expected = [], []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            it = json.loads(line)
            expected.append(1 if it["intended"] == "correct" else 0)
            items.append({k: it[k] for k in ("id", "problem_id", "task", "response", "answer")})
    return items, expected


CODE_PROGRAMS = {
    # name: (program, function from the case's numbers to its expected output, is it correct)
    "sum_input": "a, b = map(int, input().split())\nprint(a + b)\n",
    "sum_read": "import sys\na, b = map(int, sys.stdin.read().split())\nsys.stdout.write(f'{a + b}\\n')\n",
    "max_list": "n = int(input())\nxs = list(map(int, input().split()))\nprint(max(xs))\n",
    "reverse": "s = input().strip()\nprint(s[::-1])\n",
    # Off by one when a + b >= 1000 (about half the cases): wrong_answer.
    "sum_wrong": "a, b = map(int, input().split())\nprint(a + b if a + b < 1000 else a + b + 1)\n",
}
# Per batch of 8: 7 correct items, 1 wrong (the last).
CODE_LAYOUT = ["sum_input", "sum_read", "max_list", "reverse", "sum_input", "sum_read", "max_list", "sum_wrong"]


def code_case(rng, kind, first):
    if kind == "max_list":
        xs = [rng.randrange(-10_000, 10_000) for _ in range(rng.randrange(1, 30))]
        return {"input": f"{len(xs)}\n{' '.join(map(str, xs))}\n", "output": f"{max(xs)}\n"}
    if kind == "reverse":
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(1, 40)))
        return {"input": w + "\n", "output": w[::-1] + "\n"}
    if kind == "sum_wrong" and first:  # fails on its first case, so it always runs 1 case
        a, b = rng.randrange(500, 1000), rng.randrange(500, 1000)
    else:
        a, b = rng.randrange(1000), rng.randrange(1000)
    return {"input": f"{a} {b}\n", "output": f"{a + b}\n"}


def code_batches():
    import random

    rng = random.Random(SEED)
    bodies, expected = [], []
    for k in range(CODE_BATCHES):
        items, exp = [], []
        for j, kind in enumerate(CODE_LAYOUT):
            cases = [code_case(rng, kind, c == 0) for c in range(CODE_CASES)]
            items.append({
                "id": f"code-{k}-{j}", "task": "code",
                "response": f"Read the input and print the answer.\n\n```python\n{CODE_PROGRAMS[kind]}```\n",
                "tests": {"type": "stdio", "cases": cases},
            })
            exp.append(0 if kind == "sum_wrong" else 1)
        bodies.append({"items": items})
        expected.append(exp)
    return bodies, expected


def make_workloads(out_dir):
    """{name: dict(path, bodies, expected (list of lists of 0/1), items per request)}"""
    items, exp = math_items(out_dir)
    w = {}
    b64 = [{"items": items[i:i + MATH_BATCH]} for i in range(0, len(items), MATH_BATCH)]
    e64 = [exp[i:i + MATH_BATCH] for i in range(0, len(items), MATH_BATCH)]
    w["math64"] = dict(bodies=b64, expected=e64, items=MATH_BATCH,
                       what=f"math, {len(b64)} distinct batches of {MATH_BATCH} items")
    w["math1"] = dict(bodies=[{"items": [it]} for it in items], expected=[[e] for e in exp], items=1,
                      what=f"math, 1 item per request ({len(items)} distinct items)")
    cb, ce = code_batches()
    w["code8"] = dict(bodies=cb, expected=ce, items=CODE_BATCH,
                      what=f"code, {len(cb)} distinct batches of {CODE_BATCH} stdio items x {CODE_CASES} cases")
    for name, spec in w.items():
        spec["path"] = os.path.join(out_dir, f"http-{name}.jsonl")
        write_lines(spec["path"], spec["bodies"])
        sizes = sorted(len(json.dumps(b, ensure_ascii=False, separators=(",", ":")).encode()) for b in spec["bodies"])
        spec["body_bytes_median"] = sizes[len(sizes) // 2]
    return w


# ---------------------------------------------------------------------------
# The server


class Server:
    def __init__(self, bin_path, log_path, queue=None, workers=None):
        self.args = ["serve", "--listen", "127.0.0.1:0"]
        if queue is not None:
            self.args += ["--queue", str(queue)]
        if workers is not None:
            self.args += ["--workers", str(workers)]
        self.cmd = [bin_path] + self.args
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        self.addr = None
        while self.addr is None:
            if self.proc.poll() is not None:
                die(f"server exited with {self.proc.returncode} before listening; see {log_path}")
            if time.monotonic() > deadline:
                self.proc.kill()
                die(f"server did not print its address within 60 s; see {log_path}")
            with open(log_path, "rb") as f:
                m = re.search(rb"reward-server: listening on http://(\S+)", f.read())
            if m:
                self.addr = m.group(1).decode()
            else:
                time.sleep(0.05)
        self.base = f"http://{self.addr}"

    def flags(self):
        return " ".join(self.args)

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return r.status, r.read()

    def queue_depth(self):
        _, text = self.get("/metrics")
        m = re.search(rb"^reward_queue_depth (\d+)", text, re.M)
        return int(m.group(1)) if m else None

    def wait_idle(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            d = self.queue_depth()
            if d in (0, None):
                return
            if time.monotonic() > deadline:
                print(f"warning  queue depth still {d} after {timeout} s", flush=True)
                return
            time.sleep(0.1)

    def cpu_seconds(self):
        """utime + stime of the server and every process below it (the sandbox workers)."""
        children = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    st = f.read()
            except OSError:
                continue
            rest = st[st.rindex(b")") + 2:].split()
            children.setdefault(int(rest[1]), []).append((int(d), int(rest[11]) + int(rest[12])))
        total, todo = 0, [self.proc.pid]
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as f:
                st = f.read()
            rest = st[st.rindex(b")") + 2:].split()
            total += int(rest[11]) + int(rest[12])
        except OSError:
            pass
        while todo:
            for pid, ticks in children.get(todo.pop(), []):
                total += ticks
                todo.append(pid)
        return total / CLK_TCK

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.log.close()
        return rc


def verify(server, spec):
    """Post every distinct body once, on one kept-alive connection.
    Returns (requests, items, reward mismatches, verdict counts); dies on a
    non-200 answer or a wrong number of results."""
    host, port = server.addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    mismatches, verdicts, n_items = [], {}, 0
    for k, (body, exp) in enumerate(zip(spec["bodies"], spec["expected"])):
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        conn.request("POST", "/v1/reward", body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        if r.status != 200:
            die(f"verify: body {k} of {spec['path']} answered {r.status}: {raw[:300]!r}")
        results = json.loads(raw)["results"]
        if len(results) != len(body["items"]):
            die(f"verify: body {k}: {len(results)} results for {len(body['items'])} items")
        for it, res, e in zip(body["items"], results, exp):
            if res.get("id") != it.get("id"):
                die(f"verify: body {k}: result id {res.get('id')!r} for item {it.get('id')!r} (order?)")
            verdicts[res["verdict"]] = verdicts.get(res["verdict"], 0) + 1
            got = 1 if res.get("reward", 0) > 0.5 else 0
            if got != e:
                mismatches.append((it["id"], e, res["verdict"], res.get("extracted")))
            n_items += 1
    conn.close()
    return len(spec["bodies"]), n_items, mismatches, verdicts


# ---------------------------------------------------------------------------
# oha


def run_oha(oha, server, spec, conns, duration, out_json):
    cmd = [oha, server.base + "/v1/reward", "-m", "POST", "-T", "application/json", "-Z", spec["path"],
           "-c", str(conns), "-z", f"{round(duration * 1000)}ms", "--no-tui", "--output-format", "json",
           "--stats-success-breakdown", "-o", out_json]
    server.wait_idle()
    la0 = loadavg()
    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    with open(out_json + ".stderr", "wb") as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    cpu1 = server.cpu_seconds()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        with open(out_json + ".stderr", "rb") as f:
            die(f"oha exited {rc}: {' '.join(cmd)}\n{f.read()[-2000:].decode(errors='replace')}")
    with open(out_json) as f:
        o = json.load(f)
    total_s = o["summary"]["total"]
    codes = {int(k): v for k, v in o.get("statusCodeDistribution", {}).items()}
    ok = codes.get(200, 0)
    errors = {k: v for k, v in o.get("errorDistribution", {}).items() if "deadline" not in k.lower()}
    aborted = sum(v for k, v in o.get("errorDistribution", {}).items() if "deadline" in k.lower())
    pct = o.get("latencyPercentilesSuccessful") or {}

    def ms(key):
        v = pct.get(key)
        return None if v is None or v != v else v * 1e3

    rps = ok / total_s if total_s > 0 else 0.0
    return {
        "connections": conns, "duration_s": total_s, "ok": ok,
        "non_200": {str(c): n for c, n in sorted(codes.items()) if c != 200},
        "errors": errors, "aborted_at_deadline": aborted,
        "requests_per_s": rps, "items_per_s": rps * spec["items"],
        "p50_ms": ms("p50"), "p90_ms": ms("p90"), "p99_ms": ms("p99"), "p99_9_ms": ms("p99.9"),
        "all_responses_per_s": sum(codes.values()) / total_s if total_s > 0 else 0.0,
        "server_cpu_cores": (cpu1 - cpu0) / wall,
        "oha_cpu_cores": (ru.ru_utime + ru.ru_stime) / wall,
        "loadavg_before": la0, "loadavg_after": loadavg(),
        "oha_json": out_json,
    }


# ---------------------------------------------------------------------------
# Formatting


def fmt(v, nd=1, dash="–"):
    if v is None:
        return dash
    if isinstance(v, float) and v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}"


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def table(rows):
    out = ["| connections | queue | requests/s | items/s | p50 ms | p99 ms | non-200 | other errors | server CPU | oha CPU |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        non200 = ", ".join(f"{n:,} x {c}" for c, n in r["non_200"].items()) or "0"
        errs = ", ".join(f"{n:,} x {e}" for e, n in r["errors"].items()) or "0"
        out.append(
            f"| {r['connections']} | {r['queue']} | {fmt(r['requests_per_s'])} | "
            f"{fmt(r['items_per_s'])} | "
            f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {non200} | {errs} | "
            f"{r['server_cpu_cores']:.2f} | {r['oha_cpu_cores']:.2f} |")
    return "\n".join(out)


def busy_builds():
    """Other processes named rustc/cargo (a build sharing the machine)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            if name in ("rustc", "cargo", "cc1", "cc1plus", "ld"):
                found.append(name)
    return found


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=DEFAULT_BIN, help="reward-server binary (release)")
    ap.add_argument("--oha", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".tools", "bin", "oha"))
    ap.add_argument("--duration", type=float, default=10, help="seconds per timed run (default 10)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of the untimed warm-up run per workload (default 3)")
    ap.add_argument("--conns", default="1,16,64", help="connection counts (default 1,16,64)")
    ap.add_argument("--workloads", default="math64,math1,code8", help="which workloads, in order")
    ap.add_argument("--queue", type=int, help="server --queue (default: the server's, 64)")
    ap.add_argument("--workers", type=int, help="server --workers (default: the server's, one per core)")
    ap.add_argument("--probe", type=float, default=5, help="seconds of the overload probe (0: skip)")
    ap.add_argument("--quick", action="store_true", help="2 s runs at 1 and 16 connections, 1 s warm-up, no probe")
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--json", help="write the results here (default OUT_DIR/http_bench.json)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.conns, args.probe = 2, 1, "1,16", 0
    conns = [int(c) for c in args.conns.split(",") if c.strip()]
    for path, what in ((args.bin, "reward-server"), (args.oha, "oha")):
        if not os.access(path, os.X_OK):
            die(f"{what} not found at {path}; use bench/http_bench.sh, which builds/installs it")
    od = args.out_dir
    os.makedirs(od, exist_ok=True)
    oha_version = subprocess.run([args.oha, "--version"], capture_output=True, text=True).stdout.strip()
    queue_default = 64

    t_start = time.perf_counter()
    print(f"machine  {cpu_info()} ({platform.platform()}); load avg {os.getloadavg()}")
    builds = busy_builds()
    if builds:
        print(f"warning  other builds running ({', '.join(sorted(set(builds)))} x{len(builds)}): timings will be noisy")
    elif loadavg() > 0.5:
        print("warning  machine is not idle (load avg > 0.5): timings will be noisy")
    print(f"server   {args.bin}")
    print(f"oha      {args.oha} ({oha_version})")
    print("bodies   generating ...", flush=True)
    workloads = make_workloads(od)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    for n in names:
        if n not in workloads:
            die(f"unknown workload {n!r} (have {', '.join(workloads)})")

    log_path = os.path.join(od, "http-server.log")
    server = Server(args.bin, log_path, args.queue, args.workers)
    queue = args.queue or queue_default
    print(f"server   {server.flags()} -> {server.base} (log {log_path})", flush=True)
    results = {"machine": cpu_info(), "nproc": os.cpu_count(), "platform": platform.platform(),
               "oha": oha_version, "server_flags": server.flags(), "duration_s": args.duration,
               "warmup_s": args.warmup, "loadavg_start": os.getloadavg(), "builds_at_start": builds,
               "workloads": {}}
    exits = []
    retry = []  # (workload, connections) that got 503s
    for name in names:
        spec = workloads[name]
        print(f"\n## {name}: {spec['what']} (median body {spec['body_bytes_median']:,} bytes)", flush=True)
        t0 = time.perf_counter()
        n_req, n_items, mism, verdicts = verify(server, spec)
        vs = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
        print(f"verify   {n_req} requests, {n_items} items, all 200 with one result per item, "
              f"{time.perf_counter() - t0:.1f} s; verdicts: {vs}; reward != intended: {len(mism)}")
        for m in mism[:10]:
            print(f"         mismatch {m}")
        run_oha(args.oha, server, spec, 16, args.warmup, os.path.join(od, f"http-{name}-warmup.json"))
        rows = []
        for c in conns:
            r = run_oha(args.oha, server, spec, c, args.duration, os.path.join(od, f"http-{name}-c{c}.json"))
            r["queue"] = queue
            rows.append(r)
            print(f"c={c:<4} {r['requests_per_s']:9,.1f} req/s {r['items_per_s']:10,.1f} items/s  "
                  f"p50 {fmt_ms(r['p50_ms'])} ms  p99 {fmt_ms(r['p99_ms'])} ms  non-200 {r['non_200'] or 0}  "
                  f"errors {r['errors'] or 0}  cpu server {r['server_cpu_cores']:.2f} oha {r['oha_cpu_cores']:.2f}",
                  flush=True)
            if c >= 64 and r["non_200"].get("503"):
                retry.append((name, c))
        results["workloads"][name] = {"what": spec["what"], "items_per_request": spec["items"],
                                      "body_bytes_median": spec["body_bytes_median"],
                                      "verify": {"requests": n_req, "items": n_items, "verdicts": verdicts,
                                                 "reward_mismatches": len(mism)},
                                      "runs": rows}

    probe = None
    if args.probe > 0 and "math64" in workloads:
        pc = 2 * queue
        print(f"\n## overload probe: math64 at {pc} connections, --queue {queue}, {args.probe:g} s", flush=True)
        probe = run_oha(args.oha, server, workloads["math64"], pc, args.probe, os.path.join(od, "http-probe.json"))
        probe["queue"] = queue
        print(f"c={pc:<4} {probe['requests_per_s']:9,.1f} req/s (200) {probe['items_per_s']:10,.1f} items/s  "
              f"all answers {probe['all_responses_per_s']:,.0f}/s  non-200 {probe['non_200'] or 0}  "
              f"p50 {fmt_ms(probe['p50_ms'])} ms p99 {fmt_ms(probe['p99_ms'])} ms (200s)", flush=True)
    results["overload_probe"] = probe
    results["server_peak_rss_mib"] = server.rss_mib()
    rc = server.stop()
    exits.append((server.flags(), rc))
    print(f"\nserver   SIGTERM -> exit {rc}; peak RSS {fmt(results['server_peak_rss_mib'])} MiB")

    if retry:
        big = 4 * max(c for _, c in retry)
        server = Server(args.bin, os.path.join(od, "http-server-bigqueue.log"), big, args.workers)
        print(f"\n## rerun with a larger queue (503s at >= 64 connections): {server.flags()}", flush=True)
        for name, c in retry:
            r = run_oha(args.oha, server, workloads[name], 16, args.warmup, os.path.join(od, f"http-{name}-warmup-q.json"))
            r = run_oha(args.oha, server, workloads[name], c, args.duration, os.path.join(od, f"http-{name}-c{c}-q{big}.json"))
            r["queue"] = big
            results["workloads"][name]["runs"].append(r)
            print(f"{name} c={c} queue {big}: {r['requests_per_s']:,.1f} req/s, non-200 {r['non_200'] or 0}", flush=True)
        rc = server.stop()
        exits.append((server.flags(), rc))
        print(f"server   SIGTERM -> exit {rc}")

    results["server_exits"] = exits
    results["loadavg_end"] = os.getloadavg()
    results["builds_at_end"] = busy_builds()
    results["wall_s"] = time.perf_counter() - t_start

    print(f"\n# Results ({args.duration:g} s per run; load avg at start {results['loadavg_start'][0]:.2f}, "
          f"at end {results['loadavg_end'][0]:.2f})\n")
    for name in names:
        w = results["workloads"][name]
        print(f"{name}: {w['what']}\n")
        print(table(w["runs"]))
        print()
    if probe:
        print("overload probe (math64):\n")
        print(table([probe]))
        print()
    jp = args.json or os.path.join(od, "http_bench.json")
    with open(jp, "w") as f:
        json.dump(results, f, indent=1)
    print(f"JSON     {jp}; took {results['wall_s']:.0f} s")
    bad = [(f, rc) for f, rc in exits if rc != 0]
    if bad:
        die(f"server did not exit 0 on SIGTERM: {bad}")


if __name__ == "__main__":
    main()
