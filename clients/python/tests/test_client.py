"""Tests of the Python client (standard library only).

Run from the repository root:

    python3 -m unittest discover -s clients/python/tests -v

Two groups:

- tests that need no server: the mapping of verl/TRL arguments to items, the
  backoff computation, and the retry/error handling against a tiny local
  `http.server` stub (it plays an overloaded or broken server);
- tests against the real `reward-server serve` binary: `$REWARD_SERVER_BIN`,
  else `$CARGO_TARGET_DIR/debug/reward-server`, else
  `target/debug/reward-server`. When it is missing they skip, unless `CI` is
  set, where they fail. Code items also need the sandbox guest
  (`make fetch-guest`), with the same skip/fail rule.
"""

from __future__ import annotations

import atexit
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional
from unittest import mock

HERE = Path(__file__).resolve().parent
CLIENT_DIR = HERE.parent
REPO_ROOT = HERE.parents[2]
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))

import reward_client  # noqa: E402
from reward_client import (  # noqa: E402
    RewardClient,
    RewardRequestError,
    RewardServerError,
    RewardServerUnavailable,
    backoff_delay,
    compute_score,
    compute_score_batch,
    make_trl_reward_func,
    parse_retry_after,
)
from reward_client.items import completion_text, is_code_source, parse_tests, verl_item  # noqa: E402

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LISTENING_RE = re.compile(r"reward-server: listening on (http://\S+)")

SUM_TESTS = {"type": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"}]}
SUM_OK = "Here you go:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n"
SUM_BAD = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"


# --------------------------------------------------------------------------
# Finding and running the real server


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def server_bin() -> Path:
    if os.environ.get("REWARD_SERVER_BIN"):
        p = Path(os.environ["REWARD_SERVER_BIN"])
        return p if p.is_absolute() else REPO_ROOT / p
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "reward-server"


def require_server_bin() -> Path:
    """The binary, or SkipTest (outside CI) / AssertionError (under CI)."""
    p = server_bin()
    if p.is_file() and os.access(p, os.X_OK):
        return p
    msg = (
        f"reward-server binary not found at {p} (build it with `cargo build -p reward-server`, "
        "or set REWARD_SERVER_BIN)"
    )
    if in_ci():
        raise AssertionError(msg + "; CI is set, so this is a failure")
    raise unittest.SkipTest("skipping server tests: " + msg)


def require_guest(test: unittest.TestCase) -> None:
    guest_dir = Path(os.environ.get("SANDBOX_GUEST_DIR") or REPO_ROOT / "target" / "sandbox-guest")
    if (guest_dir / "python-snapshot.wasm").is_file():
        return
    msg = f"no sandbox guest in {guest_dir} (run `make fetch-guest`)"
    if in_ci():
        test.fail(msg + "; CI is set, so this is a failure")
    test.skipTest("skipping code items: " + msg)


_live: List["ServerProcess"] = []


@atexit.register
def _kill_leftovers() -> None:
    for s in list(_live):
        if s.proc.poll() is None:
            s.proc.kill()


class ServerProcess:
    """`reward-server serve --listen 127.0.0.1:0`, its URL read from stderr."""

    def __init__(self, binary: Path):
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0"],
            cwd=str(REPO_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        _live.append(self)
        self.stderr_lines: List[str] = []
        self.stdout_lines: List[str] = []
        self.url: Optional[str] = None
        self._ready = threading.Event()
        # Both pipes are drained for the server's whole life, so its logging
        # can never fill a pipe and block it.
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr_lines, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout_lines, False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        if not self._ready.wait(START_TIMEOUT_S) or self.url is None:
            try:
                rc = self.proc.wait(5) if self._ready.is_set() else self.proc.poll()
            except subprocess.TimeoutExpired:
                rc = None
            self.kill()
            why = f"exited with status {rc}" if rc is not None else f"was still silent after {START_TIMEOUT_S:g} s"
            raise AssertionError(
                f"`{binary} serve --listen 127.0.0.1:0` {why} without printing "
                f"'reward-server: listening on http://...' on stderr.\nstderr:\n{self.output()}"
            )

    def _drain(self, stream, lines: List[str], watch: bool) -> None:
        for line in stream:
            lines.append(line)
            if watch and self.url is None:
                m = LISTENING_RE.search(line)
                if m:
                    self.url = m.group(1).rstrip("/")
                    self._ready.set()
        if watch:
            self._ready.set()  # EOF: the process is gone

    def output(self) -> str:
        out = "".join(self.stderr_lines[-60:])
        if self.stdout_lines:
            out += "\nstdout:\n" + "".join(self.stdout_lines[-20:])
        return out

    def stop(self) -> int:
        """SIGTERM, then the exit status (kills it after STOP_TIMEOUT_S)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"reward-server did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM\n{self.output()}")
        finally:
            self._forget()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._forget()

    def _forget(self) -> None:
        if self in _live:
            _live.remove(self)
        # The drain threads end at EOF; wait for them so the pipes close cleanly.
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass


def closed_port_url() -> str:
    """A URL on a port nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def record_urls(client: RewardClient) -> List[str]:
    """Makes `client` log the base URL of every request it sends."""
    seen: List[str] = []
    original = client._send

    def send(base, *a, **kw):
        seen.append(base)
        return original(base, *a, **kw)

    client._send = send  # type: ignore[method-assign]
    return seen


# --------------------------------------------------------------------------
# A stub HTTP server for the server-free tests


class Stub:
    """An HTTP server on 127.0.0.1:0 whose answers come from `script`.

    `script` is a list of (status, headers, body) consumed in order; when it
    runs out, every POST /v1/reward is graded by `grade` (reward 1.0 when an
    item's answer is "ok"). Each request's JSON body is kept in `requests`.
    """

    def __init__(self, script: Optional[List[tuple]] = None, host: str = "127.0.0.1", port: int = 0):
        self.script = list(script or [])
        self.requests: List[Any] = []
        self.times: List[float] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, headers: Dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                stub.times.append(time.monotonic())
                self._answer(200, {}, b'{"status": "ok"}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                stub.times.append(time.monotonic())
                try:
                    stub.requests.append(json.loads(raw))
                except ValueError:
                    stub.requests.append(raw)
                if stub.script:
                    status, headers, body = stub.script.pop(0)
                    if not isinstance(body, bytes):
                        body = json.dumps(body).encode()
                    self._answer(status, headers, body)
                    return
                items = stub.requests[-1]["items"]
                self._answer(200, {}, json.dumps({"results": [stub.grade(it) for it in items]}).encode())

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @staticmethod
    def grade(item: Dict[str, Any]) -> Dict[str, Any]:
        ok = item.get("answer") == "ok"
        return {
            "id": item.get("id"),
            "problem_id": item.get("problem_id"),
            "reward": 1.0 if ok else 0.0,
            "verdict": "correct" if ok else "wrong_answer",
            "passed": int(ok),
            "total": 1,
            "elapsed_ms": 0.0,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fast_client(urls, **kw) -> RewardClient:
    kw.setdefault("timeout", 30)
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return RewardClient(urls, **kw)


# ==========================================================================
# Server-free tests


class MappingTests(unittest.TestCase):
    def test_math_item_from_verl_args(self):
        item = verl_item("lighteval/MATH", "so \\boxed{2}", 2, {"split": "train", "index": 7})
        self.assertEqual(item, {"task": "math", "response": "so \\boxed{2}", "answer": "2"})
        self.assertEqual(verl_item("gsm8k", "x", "\\frac{1}{2}")["answer"], "\\frac{1}{2}")
        self.assertEqual(verl_item("aime", "x", 0.5)["answer"], "0.5")

    def test_math_extract_from_extra_info_or_argument(self):
        self.assertEqual(verl_item("math", "r", "1", {"extract": "boxed"})["extract"], "boxed")
        self.assertEqual(verl_item("math", "r", "1", None, extract="boxed")["extract"], "boxed")
        self.assertNotIn("extract", verl_item("math", "r", "1"))

    def test_code_item_from_ground_truth_dict_with_tests(self):
        gt = {"tests": SUM_TESTS, "time_limit_s": 2, "unrelated": 1}
        item = verl_item("anything", SUM_OK, gt, {"memory_limit_mb": 256})
        self.assertEqual(
            item,
            {"task": "code", "response": SUM_OK, "tests": SUM_TESTS, "time_limit_s": 2, "memory_limit_mb": 256},
        )

    def test_code_item_from_ground_truth_tests_as_json_text_in_dict(self):
        item = verl_item("mixed", SUM_OK, {"tests": json.dumps(SUM_TESTS)})
        self.assertEqual(item["tests"], SUM_TESTS)

    def test_code_item_from_extra_info_tests(self):
        item = verl_item("mixed", SUM_OK, "", {"tests": json.dumps(SUM_TESTS), "all_cases": True})
        self.assertEqual(item, {"task": "code", "response": SUM_OK, "tests": SUM_TESTS, "all_cases": True})

    def test_code_source_with_json_ground_truth(self):
        for source in ("livecodebench", "codeforces", "TACO-verified", "apps", "deepcoder", "code_contests"):
            with self.subTest(source=source):
                self.assertTrue(is_code_source(source))
                item = verl_item(source, SUM_OK, json.dumps(SUM_TESTS))
                self.assertEqual(item, {"task": "code", "response": SUM_OK, "tests": SUM_TESTS})
        for source in ("math", "gsm8k", "aime24", "openr1_math", None):
            self.assertFalse(is_code_source(source), source)

    def test_code_source_with_bad_json_is_left_to_the_server(self):
        item = verl_item("livecodebench", SUM_OK, "not json")
        self.assertEqual(item["tests"], "not json")
        self.assertEqual(item["task"], "code")

    def test_tests_object_as_ground_truth(self):
        item = verl_item("mixed", SUM_OK, SUM_TESTS)
        self.assertEqual(item["tests"], SUM_TESTS)

    def test_apps_stdio_input_output_is_converted(self):
        apps = {"inputs": ["1 2\n", "10 -4\n"], "outputs": ["3\n", "6\n"]}
        self.assertEqual(parse_tests(json.dumps(apps)), SUM_TESTS)
        self.assertEqual(verl_item("apps", SUM_OK, json.dumps(apps))["tests"], SUM_TESTS)
        call_based = {"inputs": [[1, 2]], "outputs": [3], "fn_name": "add"}
        self.assertEqual(parse_tests(call_based), call_based)  # left to the server

    def test_numpy_like_values_are_serialised(self):
        class FakeArray:  # what parquet-backed datasets return for lists
            def __init__(self, values):
                self.values = values

            def tolist(self):
                return list(self.values)

        tests = {"type": "stdio", "cases": FakeArray(SUM_TESTS["cases"])}
        item = verl_item("x", SUM_OK, {"tests": tests})
        body = reward_client.client.encode_json({"items": [item]})
        self.assertEqual(json.loads(body)["items"][0]["tests"], SUM_TESTS)

    def test_completion_text(self):
        self.assertEqual(completion_text("plain"), "plain")
        self.assertEqual(completion_text([{"role": "assistant", "content": "hi"}]), "hi")
        self.assertEqual(
            completion_text(
                [{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}, {"role": "assistant", "content": "b"}]
            ),
            "b",
        )
        self.assertEqual(completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]), "xy")
        self.assertEqual(completion_text([]), "")

    def test_compute_score_batch_checks_lengths(self):
        with self.assertRaises(ValueError):
            compute_score_batch(["math"], ["a", "b"], ["1", "2"], None)

    def test_trl_func_name_and_bad_task(self):
        f = make_trl_reward_func(base_url="http://127.0.0.1:9")
        self.assertEqual(f.__name__, "reward_server_math")
        self.assertEqual(make_trl_reward_func(task="code", name="code_reward", base_url="x:1").__name__, "code_reward")
        with self.assertRaises(ValueError):
            make_trl_reward_func(task="chess")

    def test_trl_missing_column_is_a_clear_error(self):
        f = make_trl_reward_func(base_url="http://127.0.0.1:9")
        with self.assertRaisesRegex(KeyError, "'answer' missing"):
            f(prompts=["p"], completions=["c"], solution=["1"])

    def test_base_urls(self):
        c = RewardClient("http://a:1/, b:2 ,")
        self.assertEqual(c.base_urls, ["http://a:1", "http://b:2"])
        self.assertEqual(RewardClient(["http://a:1"]).base_urls, ["http://a:1"])
        with self.assertRaises(ValueError):
            RewardClient("")


class BackoffTests(unittest.TestCase):
    def test_exponential_with_jitter(self):
        import random

        rng = random.Random(1)
        for attempt in range(8):
            d = min(30.0, 0.5 * 2**attempt)
            for _ in range(50):
                v = backoff_delay(attempt, base=0.5, cap=30.0, rng=rng)
                self.assertGreaterEqual(v, d / 2)
                self.assertLessEqual(v, d)
        self.assertLessEqual(backoff_delay(1000, base=0.5, cap=30.0), 30.0)

    def test_retry_after_is_honoured_never_less(self):
        for _ in range(50):
            v = backoff_delay(0, retry_after=7.0, base=0.5)
            self.assertGreaterEqual(v, 7.0)
            self.assertLessEqual(v, 7.5)
        self.assertLessEqual(backoff_delay(0, retry_after=10_000, max_retry_after=60.0), 61.0)

    def test_parse_retry_after(self):
        self.assertEqual(parse_retry_after("3"), 3.0)
        self.assertEqual(parse_retry_after(" 1.5 "), 1.5)
        self.assertEqual(parse_retry_after("-4"), 0.0)
        self.assertIsNone(parse_retry_after(None))
        self.assertIsNone(parse_retry_after("soon"))
        self.assertIsNone(parse_retry_after("nan"))
        now = 1_700_000_000.0
        date = "Tue, 14 Nov 2023 22:13:40 GMT"  # now + 20 s
        self.assertAlmostEqual(parse_retry_after(date, now=now), 20.0, places=3)


class StubServerTests(unittest.TestCase):
    def setUp(self):
        self.stubs: List[Stub] = []

    def tearDown(self):
        for s in self.stubs:
            s.close()

    def stub(self, script=None) -> Stub:
        s = Stub(script)
        self.stubs.append(s)
        return s

    def test_503_then_200_honours_retry_after(self):
        s = self.stub([(503, {"Retry-After": "1"}, {"error": "overloaded"})])
        c = fast_client(s.url)
        slept: List[float] = []
        c._sleep = lambda d: (slept.append(d), time.sleep(d))  # type: ignore[assignment]
        t0 = time.monotonic()
        out = c.reward([{"id": 1, "answer": "ok"}, {"id": 2, "answer": "no"}])
        self.assertEqual([r["reward"] for r in out], [1.0, 0.0])
        self.assertEqual(len(s.requests), 2)
        self.assertGreaterEqual(s.times[1] - s.times[0], 1.0)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertEqual(len(slept), 1)
        self.assertGreaterEqual(slept[0], 0.9)

    def test_overloaded_server_goes_to_the_other_one_first(self):
        busy = self.stub([(503, {"Retry-After": "30"}, {"error": "overloaded"})])
        free = self.stub()
        c = fast_client([busy.url, free.url])
        t0 = time.monotonic()
        self.assertEqual(c.rewards([{"answer": "ok"}]), [1.0])
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual((len(busy.requests), len(free.requests)), (1, 1))

    def test_retries_exhausted(self):
        s = self.stub([(503, {"Retry-After": "0"}, {"error": "overloaded"})] * 10)
        c = fast_client(s.url, max_retries=2)
        with self.assertRaises(RewardServerUnavailable) as cm:
            c.reward([{"answer": "ok"}])
        self.assertEqual(cm.exception.attempts, 3)
        self.assertEqual(cm.exception.status, 503)
        self.assertEqual(len(s.requests), 3)
        self.assertIn("overloaded", str(cm.exception))

    def test_connection_refused_is_retried_then_fails(self):
        c = fast_client(closed_port_url(), max_retries=2)
        urls = record_urls(c)
        with self.assertRaises(RewardServerUnavailable) as cm:
            c.reward([{"answer": "ok"}])
        self.assertEqual(cm.exception.attempts, 3)
        self.assertEqual(len(urls), 3)
        self.assertIn("cannot connect", str(cm.exception))

    def test_400_and_413_raise_without_retry(self):
        for status in (400, 413):
            with self.subTest(status=status):
                s = self.stub([(status, {}, {"error": f"bad request {status}"})])
                c = fast_client(s.url)
                with self.assertRaises(RewardRequestError) as cm:
                    c.reward([{"answer": "ok"}])
                self.assertEqual(cm.exception.status, status)
                self.assertIn(f"bad request {status}", str(cm.exception))
                self.assertEqual(len(s.requests), 1)

    def test_500_and_504_raise_server_error_without_retry(self):
        for status in (500, 504):
            with self.subTest(status=status):
                s = self.stub([(status, {}, b"boom")])
                with self.assertRaises(RewardServerError) as cm:
                    fast_client(s.url).reward([{"answer": "ok"}])
                self.assertNotIsInstance(cm.exception, (RewardRequestError, RewardServerUnavailable))
                self.assertEqual(cm.exception.status, status)
                self.assertEqual(len(s.requests), 1)

    def test_502_is_retried(self):
        s = self.stub([(502, {}, b"bad gateway")])
        self.assertEqual(fast_client(s.url).rewards([{"answer": "ok"}]), [1.0])
        self.assertEqual(len(s.requests), 2)

    def test_wrong_result_count_is_an_error(self):
        s = self.stub([(200, {}, {"results": []})])
        with self.assertRaisesRegex(RewardServerError, "0 results for 1 items"):
            fast_client(s.url).reward([{"answer": "ok"}])

    def test_batches_keep_order(self):
        s = self.stub()
        c = fast_client(s.url, batch_size=3)
        items = [{"id": i, "answer": "ok" if i % 3 == 0 else "no"} for i in range(8)]
        out = c.reward(items)
        self.assertEqual([r["id"] for r in out], list(range(8)))
        self.assertEqual([r["reward"] for r in out], [1.0 if i % 3 == 0 else 0.0 for i in range(8)])
        self.assertEqual(sorted(len(r["items"]) for r in s.requests), [2, 3, 3])
        self.assertEqual(c.reward([]), [])
        with self.assertRaises(TypeError):
            c.reward(["not a dict"])

    def test_env_proxy_is_ignored_by_default(self):
        s = self.stub()
        with mock.patch.dict(os.environ, {"http_proxy": closed_port_url(), "HTTP_PROXY": closed_port_url(), "no_proxy": ""}):
            self.assertEqual(fast_client(s.url, max_retries=0).rewards([{"answer": "ok"}]), [1.0])

    def test_verl_and_trl_against_stub(self):
        s = self.stub()
        with mock.patch.dict(os.environ, {"REWARD_SERVER_URL": s.url}):
            self.assertEqual(compute_score("math", "r", "ok"), 1.0)
            self.assertEqual(compute_score_batch(["math", "math"], ["r", "r"], ["ok", "no"], [None, {}]), [1.0, 0.0])
        f = make_trl_reward_func(base_url=s.url)
        self.assertEqual(f(prompts=["p", "p"], completions=["a", [{"role": "assistant", "content": "b"}]], answer=["ok", "no"]), [1.0, 0.0])
        self.assertEqual([it["response"] for it in s.requests[-1]["items"]], ["a", "b"])

    def test_health(self):
        a, b = self.stub(), self.stub()
        self.assertEqual(fast_client([a.url, b.url]).health(), {a.url: {"status": "ok"}, b.url: {"status": "ok"}})
        with self.assertRaises(RewardServerUnavailable):
            fast_client([a.url, closed_port_url()]).health()


# ==========================================================================
# Tests against the real `reward-server serve`


class RealServerTests(unittest.TestCase):
    """One shared server for the tests that need only one."""

    server: ServerProcess

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(require_server_bin())

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        if rc != 0:
            raise AssertionError(f"reward-server exited with status {rc} after SIGTERM\n{cls.server.output()}")

    def client(self, **kw) -> RewardClient:
        kw.setdefault("timeout", 300)
        return fast_client(self.server.url, **kw)

    def test_health(self):
        self.assertEqual(self.client().health(), {self.server.url: {"status": "ok"}})

    def test_math_correct_wrong_invalid(self):
        items = [
            {"id": "ok", "problem_id": "p1", "task": "math", "response": "so $x = \\boxed{\\dfrac{1}{2}}$.", "answer": "0.5"},
            {"id": "wrong", "problem_id": 7, "task": "math", "response": "The answer is \\boxed{3}.", "answer": "4"},
            {"id": "invalid", "task": "math", "response": "\\boxed{1}"},  # no answer
        ]
        ok, wrong, invalid = self.client().reward(items)
        self.assertEqual((ok["id"], ok["problem_id"], ok["reward"], ok["verdict"]), ("ok", "p1", 1.0, "correct"))
        self.assertEqual(ok["extracted"], "\\dfrac{1}{2}")
        self.assertEqual((ok["passed"], ok["total"]), (1, 1))
        self.assertIsInstance(ok["elapsed_ms"], (int, float))
        self.assertEqual((wrong["id"], wrong["problem_id"], wrong["reward"], wrong["verdict"]), ("wrong", 7, 0.0, "wrong_answer"))
        self.assertEqual((invalid["id"], invalid["reward"], invalid["verdict"]), ("invalid", 0.0, "invalid"))
        self.assertIn("answer", invalid.get("error", ""))

    def test_order_preserved(self):
        items = [
            {"id": i, "task": "math", "response": f"\\boxed{{{i}}}", "answer": str(i if i % 2 == 0 else i + 1)}
            for i in range(40)
        ]
        out = self.client().reward(items)
        self.assertEqual([r["id"] for r in out], list(range(40)))
        self.assertEqual([r["reward"] for r in out], [1.0 if i % 2 == 0 else 0.0 for i in range(40)])
        self.assertEqual([r["extracted"] for r in out], [str(i) for i in range(40)])

    def test_batching_over_batch_size(self):
        c = self.client(batch_size=3)
        urls = record_urls(c)
        items = [{"id": f"b{i}", "task": "math", "response": f"\\boxed{{{i}}}", "answer": "4"} for i in range(10)]
        out = c.reward(items)
        self.assertEqual(len(urls), 4)  # 3 + 3 + 3 + 1
        self.assertEqual([r["id"] for r in out], [f"b{i}" for i in range(10)])
        self.assertEqual([r["reward"] for r in out], [1.0 if i == 4 else 0.0 for i in range(10)])

    def test_code_correct_and_wrong(self):
        require_guest(self)
        items = [
            {"id": "c-ok", "task": "code", "response": SUM_OK, "tests": SUM_TESTS},
            {"id": "c-bad", "task": "code", "response": SUM_BAD, "tests": SUM_TESTS, "all_cases": True},
            {"id": "c-none", "task": "code", "response": "no code here", "tests": SUM_TESTS},
        ]
        ok, bad, none = self.client().reward(items)
        self.assertEqual((ok["id"], ok["reward"], ok["verdict"], ok["passed"], ok["total"]), ("c-ok", 1.0, "correct", 2, 2))
        self.assertEqual((bad["id"], bad["reward"], bad["verdict"], bad["total"]), ("c-bad", 0.0, "wrong_answer", 2))
        self.assertEqual(bad["passed"], 0)
        self.assertEqual((none["reward"], none["verdict"]), (0.0, "no_answer"))

    def test_hostile_programs_fail_and_honest_ones_pass(self):
        """testcases/hostile/: every hack gets its documented verdict (never
        `correct`) and every honest twin `correct`, through this client."""
        require_guest(self)
        root = REPO_ROOT / "testcases" / "hostile"
        cases = sorted(p for p in root.iterdir() if p.is_dir())
        self.assertGreaterEqual(len(cases), 30)
        items, expected = [], []
        for case in cases:
            meta = json.loads((case / "case.json").read_text())
            self.assertNotEqual(meta["expected"], "correct", case.name)
            for kind, verdict in (("hack", meta["expected"]), ("honest", "correct")):
                program = (case / f"{kind}.py").read_text()
                items.append(
                    {
                        "id": f"{case.name}/{kind}",
                        "task": "code",
                        "response": f"My solution:\n```python\n{program}```\n",
                        "tests": meta["tests"],
                        "time_limit_s": meta["time_limit_s"],
                    }
                )
                expected.append(verdict)
        results = self.client().reward(items)
        wrong = [
            f"{'HACK GRADED CORRECT' if r['verdict'] == 'correct' else 'unexpected verdict'}: {r['id']} got "
            f"{r['verdict']} ({r.get('error')}), expected {want}"
            for r, want in zip(results, expected)
            if r["verdict"] != want
        ]
        self.assertEqual(wrong, [])
        self.assertEqual([r["id"] for r in results], [i["id"] for i in items])
        self.assertEqual([r["reward"] for r in results], [1.0 if v == "correct" else 0.0 for v in expected])

    def test_compute_score_math_and_code(self):
        with mock.patch.dict(os.environ, {"REWARD_SERVER_URL": self.server.url}):
            self.assertEqual(compute_score("lighteval/MATH", "Thus \\boxed{\\frac{3}{4}}", "0.75"), 1.0)
            self.assertEqual(compute_score("lighteval/MATH", "Thus \\boxed{3}", "0.75", {"index": 1}), 0.0)
            self.assertEqual(compute_score(data_source="gsm8k", solution_str="#### 72", ground_truth=72, extra_info=None), 1.0)
            require_guest(self)
            self.assertEqual(compute_score("livecodebench", SUM_OK, json.dumps(SUM_TESTS)), 1.0)
            self.assertEqual(compute_score("livecodebench", SUM_BAD, json.dumps(SUM_TESTS)), 0.0)
            self.assertEqual(compute_score("mixed", SUM_OK, {"tests": SUM_TESTS}, {"index": 3}), 1.0)
            self.assertEqual(compute_score("mixed", SUM_OK, "", {"tests": json.dumps(SUM_TESTS)}), 1.0)

    def test_compute_score_batch(self):
        require_guest(self)
        with mock.patch.dict(os.environ, {"REWARD_SERVER_URL": self.server.url, "REWARD_SERVER_BATCH_SIZE": "2"}):
            scores = compute_score_batch(
                ["math", "math", "codeforces", "codeforces", "mixed"],
                ["\\boxed{2}", "\\boxed{5}", SUM_OK, SUM_BAD, SUM_OK],
                ["2", "6", json.dumps(SUM_TESTS), json.dumps(SUM_TESTS), {"tests": SUM_TESTS}],
                [{"index": 0}, None, {}, {"split": "train"}, {}],
            )
        self.assertEqual(scores, [1.0, 0.0, 1.0, 0.0, 1.0])
        self.assertTrue(all(isinstance(s, float) for s in scores))

    def test_trl_math_strings_and_messages(self):
        f = make_trl_reward_func(base_url=self.server.url, timeout=300)
        prompts = ["What is 1+1?"] * 4
        completions = ["\\boxed{2}", "\\boxed{3}", "The answer is \\boxed{2}", "\\boxed{11}"]
        extra = {"answer": ["2", "2", "2", "2"], "trainer_state": object(), "completion_ids": [[1]] * 4, "other": [0] * 4}
        self.assertEqual(f(prompts=prompts, completions=completions, **extra), [1.0, 0.0, 1.0, 0.0])
        chat = [[{"role": "assistant", "content": c}] for c in completions]
        chat_prompts = [[{"role": "user", "content": p}] for p in prompts]
        self.assertEqual(f(prompts=chat_prompts, completions=chat, **extra), [1.0, 0.0, 1.0, 0.0])

    def test_trl_code_and_auto(self):
        require_guest(self)
        f = make_trl_reward_func(task="code", tests_key="tests", base_url=self.server.url, timeout=300)
        tests = [json.dumps(SUM_TESTS), SUM_TESTS]
        self.assertEqual(f(prompts=["p", "p"], completions=[SUM_OK, [{"role": "assistant", "content": SUM_BAD}]], tests=tests), [1.0, 0.0])
        auto = make_trl_reward_func(task="auto", base_url=self.server.url, timeout=300)
        self.assertEqual(
            auto(prompts=["p"] * 3, completions=[SUM_OK, "\\boxed{9}", "\\boxed{8}"], tests=[SUM_TESTS, None, None], answer=[None, "9", "9"]),
            [1.0, 1.0, 0.0],
        )

    def test_bad_request_raises_request_error(self):
        c = self.client()
        for data in (b"this is not json", b'{"items": "not a list"}', b'{"no_items": []}'):
            with self.subTest(body=data):
                with self.assertRaises(RewardRequestError) as cm:
                    c.request("POST", "/v1/reward", data=data)
                self.assertEqual(cm.exception.status, 400)
                self.assertTrue(cm.exception.message)
        # The server still works afterwards.
        self.assertEqual(c.rewards([{"task": "math", "response": "\\boxed{1}", "answer": "1"}]), [1.0])

    def test_retry_on_connection_error(self):
        dead = closed_port_url()
        c = fast_client([dead, self.server.url], timeout=300, max_retries=3)
        urls = record_urls(c)
        out = c.reward([{"id": "r", "task": "math", "response": "\\boxed{5}", "answer": "5"}])
        self.assertEqual(out[0]["reward"], 1.0)
        self.assertEqual(urls, [dead, self.server.url])


class DnsFleetTests(unittest.TestCase):
    """Several servers behind one name (127.0.0.2-4, one port), the name
    resolved by a table the test changes, as a headless Service's records
    change when pods come and go."""

    def setUp(self):
        first = Stub(host="127.0.0.2")
        self.stubs = {"127.0.0.2": first}
        for host in ("127.0.0.3", "127.0.0.4"):
            self.stubs[host] = Stub(host=host, port=first.port)
        for stub in self.stubs.values():
            self.addCleanup(stub.close)
        self.table = ["127.0.0.2", "127.0.0.3"]
        self.url = f"http://reward.test:{first.port}"

    def resolve(self, host: str) -> List[str]:
        self.assertEqual(host, "reward.test")
        if not self.table:
            raise OSError("NXDOMAIN")
        return list(self.table)

    def items(self, n: int) -> List[Dict[str, Any]]:
        return [{"id": i, "task": "math", "response": "x", "answer": "ok"} for i in range(n)]

    def test_spreads_over_the_names_addresses_and_follows_changes(self):
        clock = [0.0]
        c = fast_client(self.url, dns_refresh=10.0, resolver=self.resolve, batch_size=1, max_workers=1)
        c._clock = lambda: clock[0]
        out = c.reward(self.items(4))
        self.assertEqual([r["reward"] for r in out], [1.0] * 4)
        self.assertEqual(len(self.stubs["127.0.0.2"].requests), 2)
        self.assertEqual(len(self.stubs["127.0.0.3"].requests), 2)
        self.assertEqual(len(self.stubs["127.0.0.4"].requests), 0)

        # A pod is added and one goes away: seen after the refresh period.
        self.table[:] = ["127.0.0.3", "127.0.0.4"]
        c.reward(self.items(2))
        self.assertEqual(len(self.stubs["127.0.0.4"].requests), 0, "not before the refresh")
        clock[0] += 11.0
        before = len(self.stubs["127.0.0.2"].requests)
        c.reward(self.items(4))
        self.assertEqual(len(self.stubs["127.0.0.2"].requests), before)
        self.assertEqual(len(self.stubs["127.0.0.4"].requests), 2)
        self.assertEqual(set(c.health()), {f"http://127.0.0.3:{self.stubs['127.0.0.3'].port}", f"http://127.0.0.4:{self.stubs['127.0.0.4'].port}"})

        # A name that stops resolving keeps its last addresses.
        self.table.clear()
        clock[0] += 11.0
        self.assertEqual([r["reward"] for r in c.reward(self.items(2))], [1.0] * 2)

    def test_a_failing_address_is_dropped_from_rotation(self):
        self.stubs["127.0.0.3"].close()
        c = fast_client(self.url, dns_refresh=10.0, resolver=self.resolve, batch_size=1, max_workers=1, max_retries=3)
        c.backoff_base = c.backoff_max = 60.0
        urls = record_urls(c)
        out = c.reward(self.items(6))
        self.assertEqual([r["reward"] for r in out], [1.0] * 6)
        dead = f"http://127.0.0.3:{self.stubs['127.0.0.3'].port}"
        self.assertEqual(urls.count(dead), 1, urls)  # refused once, then left to rest

    def test_token_is_sent(self):
        c = fast_client(self.stubs["127.0.0.2"].url, token="secret-token-0123456789")
        seen: List[str] = []
        original = c._send

        def send(base, method, path, data, timeout):
            seen.append(c.headers.get("Authorization", ""))
            return original(base, method, path, data, timeout)

        c._send = send  # type: ignore[method-assign]
        c.reward(self.items(1))
        self.assertEqual(seen, ["Bearer secret-token-0123456789"])


class TwoServerTests(unittest.TestCase):
    """Round-robin and failover over two real servers, stopped in tearDown."""

    def setUp(self):
        binary = require_server_bin()
        self.servers: List[ServerProcess] = []
        for _ in range(2):
            s = ServerProcess(binary)
            self.addCleanup(s.kill)  # runs even when setUp fails half-way; a no-op after stop()
            self.servers.append(s)

    def tearDown(self):
        failures = []
        for s in self.servers:
            rc = s.stop()  # SIGTERM (a no-op for one already stopped), then its exit status
            if rc != 0:
                failures.append(f"server {s.url} exited with status {rc} after SIGTERM\n{s.output()}")
        if failures:
            self.fail("\n".join(failures))

    def test_round_robin_and_failover(self):
        a, b = (s.url for s in self.servers)
        self.assertNotEqual(a, b)
        c = fast_client([a, b], timeout=300, batch_size=2, max_workers=1)
        urls = record_urls(c)
        items = [{"id": i, "task": "math", "response": f"\\boxed{{{i}}}", "answer": str(i)} for i in range(8)]
        out = c.reward(items)
        self.assertEqual([r["id"] for r in out], list(range(8)))
        self.assertEqual([r["reward"] for r in out], [1.0] * 8)
        self.assertEqual(urls, [a, b, a, b])
        self.assertEqual(c.health(), {a: {"status": "ok"}, b: {"status": "ok"}})

        # Concurrent batches (one worker per server) use both as well.
        urls.clear()
        c2 = fast_client([a, b], timeout=300, batch_size=2)
        urls2 = record_urls(c2)
        self.assertEqual([r["id"] for r in c2.reward(items)], list(range(8)))
        self.assertEqual(sorted(urls2), sorted([a, b] * 2))

        # Stop the first server: requests fail over to the second.
        self.assertEqual(self.servers[0].stop(), 0)
        urls.clear()
        out = c.reward(items[:4])
        self.assertEqual([r["reward"] for r in out], [1.0] * 4)
        self.assertIn(a, urls)  # tried, refused, retried on the other
        self.assertEqual(urls.count(b), 2)


if __name__ == "__main__":
    unittest.main()
