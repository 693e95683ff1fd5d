"""OpenRLHF reward functions backed by `reward-server serve`.

OpenRLHF reads rewards from `--remote_rm_url`, in one of two ways, and both
work with reward-server:

1. A URL: `--remote_rm_url http://HOST:8080/v1/openrlhf`. OpenRLHF posts
   `{"query": [...], "prompts": [...], "labels": [...]}` there
   (`openrlhf/utils/agent.py`) and the server answers `{"rewards",
   "scores", "extra_logs"}`. How labels become items is the server's
   `--label-config` (see the README, "Trainer protocols").
2. A Python file: `--remote_rm_url /path/to/openrlhf_reward.py`, whose
   `reward_func(queries, prompts, labels)` OpenRLHF calls. This module's
   `reward_func` does the same request through `RewardClient`, so it gets
   the client's retries, backoff and round-robin over several servers
   (`REWARD_SERVER_URL` may list several):

       # openrlhf_reward.py
       from reward_client.openrlhf import reward_func

The server comes from the environment as for the verl functions:
`REWARD_SERVER_URL`, `REWARD_SERVER_TIMEOUT`, `REWARD_SERVER_MAX_RETRIES`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from reward_client.client import RewardClient, RewardServerError
from reward_client.verl_reward import default_client

__all__ = ["openrlhf_request", "reward_func", "OPENRLHF_PATH"]

OPENRLHF_PATH = "/v1/openrlhf"


def _texts(values: Any) -> List[str]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [v if isinstance(v, str) else str(v) for v in values]


def openrlhf_request(queries: Sequence[Any], prompts: Sequence[Any], labels: Sequence[Any]) -> Dict[str, Any]:
    """The body OpenRLHF posts: `{"query", "prompts", "labels"}`, lengths checked."""
    q, p = _texts(queries), _texts(prompts)
    labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if len(labels) != len(q) or (p and len(p) != len(q)):
        raise ValueError(f"{len(q)} queries, {len(p)} prompts and {len(labels)} labels: the lengths must agree")
    return {"query": q, "prompts": p, "labels": labels}


def reward_func(
    queries: Sequence[Any],
    prompts: Sequence[Any],
    labels: Sequence[Any],
    client: Optional[RewardClient] = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    """OpenRLHF's `reward_func(queries, prompts, labels)`: the server's
    `{"rewards", "scores", "extra_logs"}`, as torch tensors when torch is
    installed (OpenRLHF's own examples return tensors), else lists."""
    body = openrlhf_request(queries, prompts, labels)
    if not body["query"]:
        return _tensors({"rewards": [], "scores": [], "extra_logs": {}})
    answer = (client or default_client()).request("POST", OPENRLHF_PATH, body)
    if not isinstance(answer, dict) or len(answer.get("rewards") or []) != len(body["query"]):
        raise RewardServerError(f"reward server answered {answer!r:.200} for {len(body['query'])} queries")
    return _tensors(answer)


def _tensors(answer: Dict[str, Any]) -> Dict[str, Any]:
    try:
        import torch
    except ImportError:
        return answer
    logs = {k: torch.tensor(v, dtype=torch.float32) for k, v in (answer.get("extra_logs") or {}).items()}
    return {
        "rewards": torch.tensor(answer["rewards"], dtype=torch.float32),
        "scores": torch.tensor(answer["scores"], dtype=torch.float32),
        "extra_logs": logs,
    }
