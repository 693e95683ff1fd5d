#!/usr/bin/env python3
"""Fault and load figures of `reward-server serve` (issue 20).

    python3 bench/fault_bench.py [--bin target/release/reward-server] [--only NAME,...]

Each scenario starts its own `reward-server serve --listen 127.0.0.1:0`
(release binary; stderr to bench/out/fault-NAME.log), drives it from
threads of this process over loopback, and stops it with SIGTERM. Memory is
the server's and its sandbox workers' resident set, summed, sampled every
50 ms from /proc (peak of the sum). Python 3 stdlib only.

Scenarios:

  overload   code batches (8 items x 5 cases of tiny programs) from closed-
             loop clients, --workers 2 --max-queue-wait-s 1: first 4
             clients (about the capacity), then 16 (4x), for --duration s
             each (a client waits 50 ms after a 503). Every
             answer must be 200 or 503 (503 with Retry-After); reported:
             answers by status, p50/p99 of the 200s, 503 latency, peak
             memory.
  slowloris  single-item math requests from 1 closed-loop client for
             --duration s, idle, then again while 200 connections trickle
             request headers (one byte per second each); p50/p99 of both.
  sigterm    16 clients posting code batches; SIGTERM after 3 s; every
             request that was admitted (a 200 or its connection still open
             at the signal) must be answered 200, others 503 or refused;
             reported: counts, the drain time, the exit status.
  kill9      4 clients posting code batches for --duration s while a
             sandbox worker is killed with SIGKILL every 2 s; every item
             must get its verdict; reported: kills, items, verdict errors.
  disconnect 10 times: a request of one item of 20 two-second cases, the
             client gone 0.5 s in; the time until /metrics shows no busy
             sandbox (median, max).
  slow64     the issue's measurement: 64 clients at once, each posting 8
             items that run to their 2 s CPU budget, each giving up after
             120 s; reported: answered, refused (503, and how fast), timed
             out.
  memory     the worst case of the memory bound, --queue 8 --max-body-mb 8
             --workers 2 --max-memory-limit-mb 1024: 2 clients each posting
             a body that parses into the most the budget allows, 2 clients
             posting code items whose guests fill 1 GiB and 64 MiB of
             output per case; peak memory against the bound documented in
             the README (128 MiB + queue x max-body + workers x (max
             memory + 192 MiB)).

Results: Markdown on stdout, JSON in bench/out/fault_bench.json.
"""

import argparse
import atexit
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_BIN, DEFAULT_OUT, cpu_info, die, loadavg  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
LIVE = []


@atexit.register
def _kill_leftovers():
    for proc in LIVE:
        if proc.poll() is None:
            proc.kill()


class Server:
    def __init__(self, binary, args, name, out_dir):
        self.log_path = os.path.join(out_dir, f"fault-{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        LIVE.append(self.proc)
        self.port = None
        for line in self.proc.stderr:
            self.log.write(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            die(f"the server did not start; see {self.log_path}")
        threading.Thread(target=self._drain, daemon=True).start()
        self.peak = 0
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        deadline = time.time() + 300
        while get(self.port, "/readyz")[0] != 200:
            if time.time() > deadline:
                die("not ready after 300 s")
            time.sleep(0.1)

    def _drain(self):
        for line in self.proc.stderr:
            self.log.write(line)

    def pids(self):
        out = [self.proc.pid]
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid:
                out.append(int(pid))
        return out

    def workers(self):
        return self.pids()[1:]

    def rss(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * PAGE
            except OSError:
                pass
        return total

    def _sample(self):
        while self._sampling and self.proc.poll() is None:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.05)

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "killed"
        self._sampling = False
        return rc


def get(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError as e:
        return None, str(e).encode()


def post(port, path, body, timeout=300):
    """(status or None, seconds, headers)."""
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, time.perf_counter() - t0, {k.lower(): v for k, v in r.getheaders()}, data
    except OSError as e:
        return None, time.perf_counter() - t0, {}, str(e).encode()


def code_item(program, cases, time_limit=2.0):
    return {
        "task": "code",
        "time_limit_s": time_limit,
        "response": f"```python\n{program}\n```",
        "tests": {"type": "stdio", "cases": [{"input": f"{k} {k}\n", "output": str(2 * k)} for k in range(cases)]},
    }


SUM = "a, b = map(int, input().split())\nprint(a + b)"
CODE8 = json.dumps({"items": [code_item(SUM, 5) for _ in range(8)]}).encode()
MATH1 = json.dumps({"items": [{"task": "math", "response": "so \\boxed{\\frac{1}{2}}", "answer": "0.5"}]}).encode()


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def closed_loop(port, body, clients, duration):
    results = []
    lock = threading.Lock()
    stop = time.time() + duration

    def run():
        while time.time() < stop:
            status, secs, headers, _ = post(port, "/v1/reward", body)
            with lock:
                results.append((status, secs, headers.get("retry-after")))
            if status == 503:
                time.sleep(0.05)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def summarize(results, duration):
    by = {}
    for status, _, _ in results:
        by[str(status)] = by.get(str(status), 0) + 1
    ok = [s for st, s, _ in results if st == 200]
    refused = [s for st, s, _ in results if st == 503]
    return {
        "answers": by,
        "ok_per_s": len(ok) / duration,
        "p50_ms": pct(ok, 50) and pct(ok, 50) * 1e3,
        "p99_ms": pct(ok, 99) and pct(ok, 99) * 1e3,
        "503_p99_ms": pct(refused, 99) and pct(refused, 99) * 1e3,
        "503_without_retry_after": sum(1 for st, _, ra in results if st == 503 and not ra),
    }


def overload(args):
    server = Server(args.bin, ["--workers", "2", "--max-queue-wait-s", "1"], "overload", args.out)
    base = summarize(closed_loop(server.port, CODE8, 4, args.duration), args.duration)
    over = summarize(closed_loop(server.port, CODE8, 16, args.duration), args.duration)
    rc = server.stop()
    return {"capacity_4_clients": base, "overload_16_clients": over, "peak_rss_mib": server.peak / 2**20, "exit": rc}


def slowloris(args):
    server = Server(args.bin, [], "slowloris", args.out)
    idle = summarize(closed_loop(server.port, MATH1, 1, args.duration), args.duration)
    stop = threading.Event()
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/reward HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)

    def trickle():
        while not stop.is_set():
            for s in list(socks):
                try:
                    s.sendall(b"X")
                except OSError:
                    socks.remove(s)
            stop.wait(1.0)

    t = threading.Thread(target=trickle)
    t.start()
    loaded = summarize(closed_loop(server.port, MATH1, 1, args.duration), args.duration)
    still_open = len(socks)
    stop.set()
    t.join()
    for s in socks:
        s.close()
    rc = server.stop()
    return {"idle": idle, "with_200_slowloris": loaded, "slow_connections_still_open_at_end": still_open, "exit": rc}


def sigterm(args):
    server = Server(args.bin, ["--workers", "2"], "sigterm", args.out)
    results = []
    lock = threading.Lock()
    signalled = threading.Event()

    def run():
        while not signalled.is_set() or time.time() < signalled.at + 1.0:
            started = time.time()
            status, secs, _, _ = post(server.port, "/v1/reward", CODE8)
            with lock:
                results.append((started, status, secs))
            if status is None:
                return
            if status == 503:
                time.sleep(0.05)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(3)
    signalled.at = time.time()
    signalled.set()
    server.proc.send_signal(signal.SIGTERM)
    t0 = time.perf_counter()
    rc = server.proc.wait(120)
    drain = time.perf_counter() - t0
    server._sampling = False
    for t in threads:
        t.join()
    before = [r for r in results if r[0] < signalled.at]
    after = [r for r in results if r[0] >= signalled.at]
    count = lambda rs, st: sum(1 for r in rs if r[1] == st)  # noqa: E731
    return {
        "sent_before_sigterm": len(before),
        "before_200": count(before, 200),
        "before_503": count(before, 503),
        "before_cut_off": count(before, None),
        "after_503": count(after, 503),
        "after_refused": count(after, None),
        "after_200": count(after, 200),
        "drain_s": drain,
        "exit": rc,
    }


def kill9(args):
    server = Server(args.bin, ["--workers", "2"], "kill9", args.out)
    stop = time.time() + args.duration
    kills = []

    def killer():
        while time.time() < stop - 1:
            time.sleep(2)
            ws = server.workers()
            if ws:
                os.kill(ws[0], signal.SIGKILL)
                kills.append(ws[0])

    k = threading.Thread(target=killer)
    k.start()
    results = []
    lock = threading.Lock()

    def run():
        while time.time() < stop:
            status, secs, _, data = post(server.port, "/v1/reward", CODE8)
            verdicts = [r["verdict"] for r in json.loads(data)["results"]] if status == 200 else []
            with lock:
                results.append((status, verdicts))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    k.join()
    workers_at_end = len(server.workers())
    rc = server.stop()
    items = sum(len(v) for _, v in results)
    return {
        "kills": len(kills),
        "requests": len(results),
        "statuses": sorted({str(s) for s, _ in results}),
        "items": items,
        "items_not_correct": sum(1 for _, v in results for x in v if x != "correct"),
        "workers_at_end": workers_at_end,
        "exit": rc,
    }


def disconnect(args):
    server = Server(args.bin, ["--workers", "1"], "disconnect", args.out)
    body = json.dumps({"items": [code_item("while True: pass", 20, 2.0)]}).encode()
    freed = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        while b"reward_sandbox_busy 1" not in get(server.port, "/metrics")[1]:
            time.sleep(0.01)
        time.sleep(0.5)
        s.close()
        t0 = time.perf_counter()
        while b"reward_sandbox_busy 0" not in get(server.port, "/metrics")[1]:
            time.sleep(0.005)
        freed.append(time.perf_counter() - t0)
    rc = server.stop()
    return {"trials": len(freed), "freed_median_ms": statistics.median(freed) * 1e3, "freed_max_ms": max(freed) * 1e3, "case_ms": 2000, "exit": rc}


def slow64(args):
    # The measurement: 64 clients at once, each posting 8 items of a
    # program that runs to its 2 s CPU budget, each giving up after 120 s.
    server = Server(args.bin, ["--workers", "2"], "slow64", args.out)
    body = json.dumps({"items": [code_item("while True: pass", 1, 2.0) for _ in range(8)]}).encode()
    results = []
    lock = threading.Lock()

    def run():
        status, secs, headers, _ = post(server.port, "/v1/reward", body, timeout=120)
        with lock:
            results.append((status, secs, headers.get("retry-after")))

    threads = [threading.Thread(target=run) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rc = server.stop()
    ok = [s for st, s, _ in results if st == 200]
    refused = [s for st, s, _ in results if st == 503]
    return {
        "answered_200": len(ok),
        "refused_503": len(refused),
        "timed_out_or_failed": sum(1 for st, _, _ in results if st not in (200, 503)),
        "slowest_200_s": max(ok) if ok else None,
        "slowest_503_s": max(refused) if refused else None,
        "retry_after_values": sorted({ra for st, _, ra in results if st == 503}),
        "exit": rc,
    }


def memory(args):
    queue, body_mb, workers, guest_mb = 8, 8, 2, 1024
    server = Server(
        args.bin,
        ["--workers", str(workers), "--queue", str(queue), "--max-body-mb", str(body_mb), "--max-memory-limit-mb", str(guest_mb)],
        "memory",
        args.out,
    )
    # A body whose parse cost fills most of its share of the budget: long
    # strings in ordinary math items (cheap to parse, large), 7 MiB.
    heavy = json.dumps({"items": [{"task": "math", "response": "x" * 70_000 + " \\boxed{1}", "answer": "1"} for _ in range(100)]}).encode()
    # A guest that fills its memory limit, and its output cap, on each case.
    hog = "import sys\nx = bytearray(900 * 2**20)\nsys.stderr.write('e' * 60_000_000)\nprint('ok')"
    hog_body = json.dumps({"items": [dict(code_item(hog, 3, 10.0), memory_limit_mb=guest_mb, tests={"type": "stdio", "cases": [{"input": "", "output": "ok"}] * 3})]}).encode()
    stop = time.time() + args.duration
    statuses = []
    lock = threading.Lock()

    def run(body):
        while time.time() < stop:
            status, _, _, _ = post(server.port, "/v1/reward", body)
            with lock:
                statuses.append(status)
            if status == 503:
                time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(heavy,)) for _ in range(12)]
    threads += [threading.Thread(target=run, args=(hog_body,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rc = server.stop()
    bound = 128 + queue * body_mb + workers * (guest_mb + 192)
    by = {}
    for s in statuses:
        by[str(s)] = by.get(str(s), 0) + 1
    return {"answers": by, "peak_rss_mib": server.peak / 2**20, "bound_mib": bound, "exit": rc}


SCENARIOS = {"slow64": slow64, "overload": overload, "slowloris": slowloris, "sigterm": sigterm, "kill9": kill9, "disconnect": disconnect, "memory": memory}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        die(f"{args.bin} not found; build it with `cargo build --release -p reward-server`")
    os.makedirs(args.out, exist_ok=True)
    report = {"cpu": cpu_info(), "loadavg_start": loadavg(), "bin": args.bin, "duration_s": args.duration}
    for name in args.only.split(","):
        t0 = time.time()
        report[name] = SCENARIOS[name](args)
        report[name]["took_s"] = round(time.time() - t0, 1)
        print(f"## {name}\n\n```json\n{json.dumps(report[name], indent=2)}\n```\n", flush=True)
    report["loadavg_end"] = loadavg()
    with open(os.path.join(args.out, "fault_bench.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
