"""HTTP client for `reward-server serve` (standard library only).

`RewardClient.reward(items)` posts items to `POST /v1/reward` and returns the
results in the same order. It splits long lists into batches, spreads the
batches round-robin over several servers, and retries connection errors and
overload answers (503, honouring `Retry-After`) with exponential backoff and
jitter. A request the server rejects (400, 413, any other 4xx) raises
`RewardRequestError` at once: sending it again would not help.

With `dns_refresh=SECONDS`, every base URL whose host is a name (a Kubernetes
headless Service, one address per ready pod) is resolved to all its
addresses, each a server of its own, and resolved again every `dns_refresh`
seconds: new pods get requests, gone ones stop getting them, and a failing
one rests for its backoff.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import logging
import math
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "RewardClient",
    "RewardServerError",
    "RewardRequestError",
    "RewardServerUnavailable",
    "backoff_delay",
    "parse_retry_after",
    "normalize_base_urls",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TIMEOUT_S",
]

DEFAULT_BATCH_SIZE = 1024
DEFAULT_TIMEOUT_S = 660.0

# Answers worth sending again, perhaps to another server: 503 is the server's
# own "overloaded", 502 comes from a proxy or load balancer in front. 504 is
# not retried: `reward-server serve` answers 504 when its request deadline
# (--deadline-s) passed, and the same batch would only time out again.
RETRY_STATUSES = frozenset({502, 503})


class RewardServerError(Exception):
    """Base class of the client's errors.

    Raised as such for answers the client cannot use: a 5xx other than
    502/503 (504: the server's request deadline passed), a body that is not the expected JSON, or a result count that
    does not match the items sent.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, url: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url


class RewardRequestError(RewardServerError):
    """The server rejected the request (400 bad body, 413 body too large, other 4xx).

    Not retried. `status` is the HTTP status, `message` the server's `error`.
    """


class RewardServerUnavailable(RewardServerError):
    """No server answered usefully within `max_retries` retries.

    `attempts` is the number of requests made, `last_error` the last failure
    (an exception, or a description of the last 503).
    """

    def __init__(self, message: str, *, attempts: int, last_error: Any = None, **kw: Any):
        super().__init__(message, **kw)
        self.attempts = attempts
        self.last_error = last_error


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, description: str, retry_after: Optional[float] = None, status: Optional[int] = None):
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after
        self.status = status


def normalize_base_urls(base_url: Union[str, Sequence[str]]) -> List[str]:
    """Turns one URL, a comma-separated string or a list into clean base URLs.

    `host:port` gets `http://`; a trailing `/` is dropped.
    """
    if isinstance(base_url, str):
        parts = base_url.split(",")
    else:
        parts = list(base_url)
    urls = []
    for p in parts:
        if not isinstance(p, str):
            raise TypeError(f"base URL must be a string, got {type(p).__name__}")
        p = p.strip()
        if not p:
            continue
        if "://" not in p:
            p = "http://" + p
        urls.append(p.rstrip("/"))
    if not urls:
        raise ValueError("no reward server base URL given")
    return urls


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a `Retry-After` header value, or None when absent or unreadable.

    Accepts delta-seconds (`"3"`, also `"1.5"`) and an HTTP date.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(
    attempt: int,
    retry_after: Optional[float] = None,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    max_retry_after: float = 300.0,
    rng: Optional[random.Random] = None,
) -> float:
    """Seconds to wait before retry number `attempt + 1` (`attempt` counts from 0).

    Without `Retry-After`: exponential backoff with "equal jitter", a value in
    `[d/2, d]` where `d = min(cap, base * 2**attempt)`, so that many clients
    hit by the same failure do not come back in step.

    With `Retry-After` (seconds, already parsed): the server's wish is honoured,
    never less, capped at `max_retry_after`, plus up to `min(base, 1 s)` of
    jitter to spread the clients that got the same header.
    """
    r = rng.random() if rng is not None else random.random()
    if retry_after is not None:
        return min(max(0.0, retry_after), max_retry_after) + r * min(base, 1.0)
    d = min(cap, base * (2.0 ** min(attempt, 62)))
    return d / 2.0 + r * d / 2.0


def _json_default(o: Any) -> Any:
    # Parquet-backed datasets (verl, `datasets`) hand out numpy arrays and
    # scalars inside ground truths and extra_info.
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode("utf-8")
    if isinstance(o, Mapping):
        return dict(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def encode_json(payload: Any) -> bytes:
    """JSON bytes for a request body (numpy values allowed; NaN refused)."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_json_default).encode("utf-8")


class RewardClient:
    """Client for one or several `reward-server serve` instances.

    Args:
        base_url: `"http://127.0.0.1:8080"`, a list of such URLs, or one
            comma-separated string. Requests go round-robin over them.
        timeout: socket timeout in seconds for each request (a batch of code
            items can take a while to grade). The default is a little above
            the server's default request deadline (`--deadline-s 600`), so
            that the server's 504 arrives before the client gives up.
        max_retries: retries after the first attempt, on connection errors,
            timeouts, 502 and 503. 0 disables retrying.
        batch_size: most items per request; `reward` splits longer lists.
        max_workers: batches in flight at once (default: one per server).
        backoff_base, backoff_max: exponential backoff parameters (seconds).
        max_retry_after: cap on a server's `Retry-After` (seconds).
        use_env_proxy: use `http_proxy`/`HTTP_PROXY` from the environment.
            Off by default: reward servers are internal, and a cluster-wide
            proxy setting would otherwise swallow the requests.
        headers: extra HTTP headers for every request.
        token: send `Authorization: Bearer TOKEN` (a server run with
            `--auth-token-file`).
        dns_refresh: spread requests over every address of each base URL's
            host name, resolving the names again every this many seconds
            (off by default). Raise `max_workers` to cover the servers.
        resolver: `resolver(host) -> [ip, ...]` in place of the system
            resolver, for `dns_refresh` (a fixed table, a test's hosts).
    """

    def __init__(
        self,
        base_url: Union[str, Sequence[str]] = "http://127.0.0.1:8080",
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 5,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_workers: Optional[int] = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 300.0,
        use_env_proxy: bool = False,
        headers: Optional[Mapping[str, str]] = None,
        token: Optional[str] = None,
        dns_refresh: Optional[float] = None,
        resolver: Optional[Callable[[str], Sequence[str]]] = None,
    ):
        self.base_urls = normalize_base_urls(base_url)
        if dns_refresh is not None and not dns_refresh > 0:
            raise ValueError("dns_refresh must be positive")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.timeout = timeout
        self.max_retries = int(max_retries)
        self.batch_size = int(batch_size)
        self.max_workers = int(max_workers) if max_workers else len(self.base_urls)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.headers = dict(headers or {})
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.dns_refresh = dns_refresh
        self._resolver = resolver or _system_resolver
        handlers = [] if use_env_proxy else [urllib.request.ProxyHandler({})]
        self._opener = urllib.request.build_opener(*handlers)
        self._lock = threading.Lock()
        self._next = 0
        # The servers requests go to: the base URLs, or with dns_refresh
        # their names' addresses; and per server, the monotonic time before
        # which it should not get a request (set after a failure to its
        # backoff delay or its Retry-After).
        self._targets: List[str] = list(self.base_urls)
        self._not_before: Dict[str, float] = {}
        self._known: Dict[str, List[str]] = {}
        self._resolved_at: Optional[float] = None
        self._rng = random.Random()
        # Seams for tests.
        self._sleep = time.sleep
        self._clock = time.monotonic

    def __repr__(self) -> str:
        return f"RewardClient({self.base_urls!r}, batch_size={self.batch_size}, max_retries={self.max_retries})"

    # ------------------------------------------------------------------ API

    def reward(self, items: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        """Grades `items` (dicts shaped like `reward-server grade` input lines).

        Returns one result dict per item, in order. Lists longer than
        `batch_size` go out as several requests (concurrently when there are
        several servers); the results are put back in order.
        """
        items = list(items)
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise TypeError(f"item {i} is a {type(item).__name__}, not a dict")
        if not items:
            return []
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        if len(batches) == 1 or self.max_workers <= 1:
            out: List[Dict[str, Any]] = []
            for b in batches:
                out.extend(self._reward_batch(b))
            return out
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(batches))) as pool:
            futures = [pool.submit(self._reward_batch, b) for b in batches]
            out = []
            try:
                for f in futures:
                    out.extend(f.result())
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            return out

    def rewards(self, items: Iterable[Mapping[str, Any]]) -> List[float]:
        """Just the `reward` floats of `reward(items)`."""
        return [float(r["reward"]) for r in self.reward(items)]

    def health(self, timeout: float = 10.0) -> Dict[str, Dict[str, Any]]:
        """`GET /healthz` on every server, without retries.

        Returns `{base_url: body}` (body is `{"status": "ok"}`). Raises
        `RewardServerUnavailable` naming the first server that cannot be
        reached or does not answer 200.
        """
        out = {}
        self._refresh_if_due()
        for url in list(self._targets):
            try:
                status, body, _ = self._send(url, "GET", "/healthz", None, timeout)
            except _Retryable as e:
                raise RewardServerUnavailable(
                    f"reward server {url} is not healthy: {e.description}", attempts=1, last_error=e, url=url
                ) from None
            if status != 200:
                raise RewardServerUnavailable(
                    f"reward server {url} is not healthy: HTTP {status}", attempts=1, status=status, url=url
                )
            out[url] = self._parse_json(body, url, status)
        return out

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.2) -> None:
        """Polls `health()` until every server answers, or raises after `timeout` seconds."""
        deadline = self._clock() + timeout
        while True:
            try:
                self.health(timeout=min(10.0, max(0.1, timeout)))
                return
            except RewardServerUnavailable as e:
                if self._clock() >= deadline:
                    raise RewardServerUnavailable(
                        f"reward servers not ready after {timeout:g} s: {e.message}", attempts=e.attempts, last_error=e
                    ) from None
            self._sleep(interval)

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        data: Optional[bytes] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """One request with the client's retry policy; returns the parsed JSON body.

        `payload` is encoded as JSON; `data` sends raw bytes instead. Raises
        like `reward`. Useful for endpoints this client does not wrap.
        """
        if data is None and payload is not None:
            data = encode_json(payload)
        return self._call(method, path, data, timeout)

    # ------------------------------------------------------------- internals

    def _reward_batch(self, batch: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        body = self._call("POST", "/v1/reward", encode_json({"items": batch}), None)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            got = f"{len(results)} results" if isinstance(results, list) else f"{type(body).__name__} without a results list"
            raise RewardServerError(f"reward server answered {got} for {len(batch)} items")
        return results

    def _refresh_if_due(self) -> None:
        """With `dns_refresh`, resolves the base URLs' names again when due.

        A name that does not resolve keeps its last addresses (or, never
        resolved, stays a server by name, whose connection error then says
        what is wrong).
        """
        if self.dns_refresh is None:
            return
        with self._lock:
            now = self._clock()
            if self._resolved_at is not None and now - self._resolved_at < self.dns_refresh:
                return
            self._resolved_at = now
        targets: List[str] = []
        for base in self.base_urls:
            parts = urlsplit(base)
            host = parts.hostname or ""
            if _is_ip(host):
                targets.append(base)
                continue
            try:
                addresses = sorted(set(str(a) for a in self._resolver(host)))
            except (OSError, ValueError) as e:
                addresses = []
                reason = str(e)
            else:
                reason = "no address"
            if addresses:
                self._known[host] = addresses
            else:
                addresses = self._known.get(host, [])
                _log.warning("reward_client: cannot resolve %s (%s); keeping %d known address(es)", host, reason, len(addresses))
            if not addresses:
                targets.append(base)
            for ip in addresses:
                shown = f"[{ip}]" if ":" in ip else ip
                netloc = f"{shown}:{parts.port}" if parts.port else shown
                targets.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/"))
        with self._lock:
            if targets != self._targets:
                self._targets = targets
                self._next = 0
            self._not_before = {t: at for t, at in self._not_before.items() if t in targets}

    def _pick(self) -> Tuple[str, float]:
        """The next server round-robin, skipping servers still in their backoff.

        Returns its base URL and how long to wait before using it (0 unless
        every server is backing off, in which case it is the one free soonest).
        """
        self._refresh_if_due()
        with self._lock:
            targets = self._targets
            n = len(targets)
            now = self._clock()
            rest = [self._not_before.get(t, 0.0) for t in targets]
            chosen = None
            for k in range(n):
                i = (self._next + k) % n
                if rest[i] <= now:
                    chosen = i
                    break
            if chosen is None:
                chosen = min(range(n), key=lambda j: (rest[j], (j - self._next) % n))
            self._next = (chosen + 1) % n
            return targets[chosen], max(0.0, rest[chosen] - now)

    def _call(self, method: str, path: str, data: Optional[bytes], timeout: Optional[float]) -> Any:
        last: Optional[_Retryable] = None
        attempts = 0
        for attempt in range(self.max_retries + 1):
            url, wait = self._pick()
            if wait > 0:
                self._sleep(wait)
            attempts += 1
            try:
                status, body, headers = self._send(url, method, path, data, timeout)
                if status in RETRY_STATUSES:
                    ra = parse_retry_after(headers.get("Retry-After"))
                    raise _Retryable(f"{url}: HTTP {status} ({_error_text(body)})", retry_after=ra, status=status)
            except _Retryable as e:
                last = e
                delay = backoff_delay(
                    attempt,
                    e.retry_after,
                    base=self.backoff_base,
                    cap=self.backoff_max,
                    max_retry_after=self.max_retry_after,
                    rng=self._rng,
                )
                with self._lock:
                    self._not_before[url] = max(self._not_before.get(url, 0.0), self._clock() + delay)
                continue
            with self._lock:
                self._not_before.pop(url, None)
            if 200 <= status < 300:
                return self._parse_json(body, url, status)
            message = _error_text(body)
            if status == 504:
                message += " (a smaller batch_size, or a larger --deadline-s on the server, may help)"
            if 400 <= status < 500:
                raise RewardRequestError(f"{url}{path}: HTTP {status}: {message}", status=status, url=url)
            raise RewardServerError(f"{url}{path}: HTTP {status}: {message}", status=status, url=url)
        assert last is not None
        raise RewardServerUnavailable(
            f"reward server unavailable after {attempts} attempts ({', '.join(self.base_urls)}); last error: {last.description}",
            attempts=attempts,
            last_error=last,
            status=last.status,
        )

    def _send(
        self, base: str, method: str, path: str, data: Optional[bytes], timeout: Optional[float]
    ) -> Tuple[int, bytes, Any]:
        """One HTTP exchange. Returns (status, body, headers) for any HTTP
        answer; raises `_Retryable` when there is no complete answer."""
        headers = {"Accept": "application/json", "User-Agent": "reward-client-python/0.1"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        headers.update(self.headers)
        req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout if timeout is None else timeout) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            try:
                body = e.read()
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                e.close()
            return e.code, body, e.headers
        except urllib.error.URLError as e:
            raise _Retryable(f"{base}: cannot connect: {e.reason}") from None
        except (OSError, http.client.HTTPException, socket.timeout) as e:
            raise _Retryable(f"{base}: {type(e).__name__}: {e}") from None

    @staticmethod
    def _parse_json(body: bytes, url: str, status: int) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RewardServerError(
                f"{url}: HTTP {status} with a body that is not JSON ({e}): {body[:200]!r}", status=status, url=url
            ) from None


_log = logging.getLogger("reward_client")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _system_resolver(host: str) -> List[str]:
    """Every address of `host`, from the system resolver."""
    return [info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


def _error_text(body: bytes) -> str:
    """The `error` field of a JSON error body, else the start of the body."""
    try:
        v = json.loads(body.decode("utf-8"))
        if isinstance(v, dict) and "error" in v:
            return str(v["error"])
    except (UnicodeDecodeError, ValueError):
        pass
    text = body[:300].decode("utf-8", "replace").strip()
    return text or "empty body"
