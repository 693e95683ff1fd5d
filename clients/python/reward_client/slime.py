"""slime reward functions backed by `reward-server serve`.

slime reads rewards in one of two ways, and both work with reward-server:

1. `--rm-type remote_rm --rm-url http://HOST:8080/v1/slime`: slime posts
   `{"prompt", "response", "label"}` per sample
   (`slime/rollout/rm_hub/__init__.py`, `remote_rm`) and uses the answer, a
   bare number, as the reward (`/v1/slime?detail=true` with
   `--reward-key reward` answers the whole result instead).
2. `--custom-rm-path reward_client.slime.custom_rm`: slime awaits
   `custom_rm(args, sample)` per sample, or `custom_rm(args, samples)` with
   a list (`batched_async_rm`); this one sends a list as one request, with
   the client's retries and round-robin over several servers.

How labels become items is the server's `--label-config`. The server comes
from `REWARD_SERVER_URL` (as for the verl functions).
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Sequence, Union

from reward_client.client import RewardClient, RewardServerError
from reward_client.openrlhf import OPENRLHF_PATH
from reward_client.verl_reward import default_client

__all__ = ["slime_request", "custom_rm", "rewards", "SLIME_PATH"]

SLIME_PATH = "/v1/slime"


def slime_request(sample: Any) -> Dict[str, Any]:
    """The body slime posts for a `Sample` (or a dict with the same keys)."""
    get = sample.get if isinstance(sample, dict) else lambda k: getattr(sample, k, None)
    response = get("response")
    return {"prompt": get("prompt"), "response": "" if response is None else str(response), "label": get("label")}


def rewards(samples: Sequence[Any], client: Optional[RewardClient] = None) -> List[float]:
    """The rewards of several samples in one request (blocking).

    A batch goes through `/v1/openrlhf` with each response as its query and
    no prompt: the server maps the labels the same way.
    """
    bodies = [slime_request(s) for s in samples]
    if not bodies:
        return []
    c = client or default_client()
    answer = c.request(
        "POST",
        OPENRLHF_PATH,
        {"query": [b["response"] for b in bodies], "prompts": [], "labels": [b["label"] for b in bodies]},
    )
    got = answer.get("rewards") if isinstance(answer, dict) else None
    if not isinstance(got, list) or len(got) != len(bodies):
        raise RewardServerError(f"reward server answered {answer!r:.200} for {len(bodies)} samples")
    return [float(r) for r in got]


async def custom_rm(args: Any, sample: Union[Any, Sequence[Any]], **kwargs: Any) -> Union[float, List[float]]:
    """slime's custom reward function: one sample → its reward; a list of
    samples → their rewards, in order. The request runs in a thread, so the
    event loop is not blocked."""
    if isinstance(sample, (list, tuple)):
        return await asyncio.to_thread(rewards, list(sample))
    body = slime_request(sample)
    answer = await asyncio.to_thread(default_client().request, "POST", SLIME_PATH, body)
    if not isinstance(answer, (int, float)):
        raise RewardServerError(f"reward server answered {answer!r:.200} for one sample")
    return float(answer)
