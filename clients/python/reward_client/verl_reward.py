"""verl reward functions backed by `reward-server serve`.

verl's `custom_reward_function` calls a module-level function:

- `compute_score(data_source, solution_str, ground_truth, extra_info=None)`
  returns one float (the default "naive" reward manager, one call per sample);
- `compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos)`
  returns a list of floats (`reward_model.reward_manager=batch`), one request
  per `batch_size` samples.

The server comes from the environment (read at each call, so it can be set
after import): `REWARD_SERVER_URL` (one URL, or several separated by commas;
default http://127.0.0.1:8080), `REWARD_SERVER_TIMEOUT` (seconds, default 660),
`REWARD_SERVER_MAX_RETRIES` (default 5), `REWARD_SERVER_BATCH_SIZE` (default
1024) and `REWARD_MATH_EXTRACT` (`lenient` or `boxed`; unset: the server's
default, lenient). How the arguments become items: `items.verl_item`.

A server that stays unreachable raises `RewardServerUnavailable` rather than
returning 0.0: silent zero rewards would train the model on noise.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional, Sequence

from reward_client.client import DEFAULT_BATCH_SIZE, DEFAULT_TIMEOUT_S, RewardClient
from reward_client.items import verl_item

__all__ = ["compute_score", "compute_score_batch", "default_client", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8080"

_lock = threading.Lock()
_clients: Dict[tuple, RewardClient] = {}


def _env_config() -> tuple:
    return (
        os.environ.get("REWARD_SERVER_URL") or DEFAULT_URL,
        float(os.environ.get("REWARD_SERVER_TIMEOUT") or DEFAULT_TIMEOUT_S),
        int(os.environ.get("REWARD_SERVER_MAX_RETRIES") or 5),
        int(os.environ.get("REWARD_SERVER_BATCH_SIZE") or DEFAULT_BATCH_SIZE),
    )


def default_client() -> RewardClient:
    """The client for the current environment settings (one per setting, shared)."""
    key = _env_config()
    with _lock:
        c = _clients.get(key)
        if c is None:
            url, timeout, retries, batch = key
            c = RewardClient(url, timeout=timeout, max_retries=retries, batch_size=batch)
            _clients[key] = c
        return c


def _extract() -> Optional[str]:
    return os.environ.get("REWARD_MATH_EXTRACT") or None


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Optional[Dict[str, Any]] = None,
    **kwargs: Any,
) -> float:
    """The reward (0.0 to 1.0) of one verl sample. Extra keyword arguments
    (verl's `reward_kwargs`) are accepted and ignored."""
    item = verl_item(data_source, solution_str, ground_truth, extra_info, extract=_extract())
    return float(default_client().reward([item])[0]["reward"])


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[Any],
    ground_truths: Sequence[Any],
    extra_infos: Optional[Sequence[Any]] = None,
    **kwargs: Any,
) -> List[float]:
    """The rewards of a batch of verl samples, in order (lists or numpy arrays)."""
    sources, solutions, truths = list(data_sources), list(solution_strs), list(ground_truths)
    infos = [None] * len(solutions) if extra_infos is None else list(extra_infos)
    n = len(solutions)
    if not (len(sources) == len(truths) == len(infos) == n):
        raise ValueError(
            f"compute_score_batch: lengths differ: {len(sources)} data_sources, {n} solution_strs, "
            f"{len(truths)} ground_truths, {len(infos)} extra_infos"
        )
    extract = _extract()
    items = [verl_item(s, r, g, e, extract=extract) for s, r, g, e in zip(sources, solutions, truths, infos)]
    return [float(r["reward"]) for r in default_client().reward(items)]
