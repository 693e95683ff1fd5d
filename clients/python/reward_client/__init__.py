"""Python client for `reward-server serve` (standard library only, Python >= 3.9).

- `RewardClient`: `reward(items)`, `health()`, batching, retries, round-robin.
- `compute_score`, `compute_score_batch`: verl `custom_reward_function`s.
- `make_trl_reward_func`: a reward function for TRL's `GRPOTrainer`.
- `reward_client.openrlhf.reward_func`, `reward_client.slime.custom_rm`:
  OpenRLHF's and slime's reward functions (their remote reward model
  protocols are also served directly: `/v1/openrlhf`, `/v1/slime`).

See clients/python/README.md.
"""

from reward_client.client import (
    DEFAULT_BATCH_SIZE,
    RewardClient,
    RewardRequestError,
    RewardServerError,
    RewardServerUnavailable,
    backoff_delay,
    parse_retry_after,
)
from reward_client.items import code_item, completion_text, math_item, verl_item
from reward_client.trl_reward import make_trl_reward_func
from reward_client.verl_reward import compute_score, compute_score_batch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RewardClient",
    "RewardRequestError",
    "RewardServerError",
    "RewardServerUnavailable",
    "backoff_delay",
    "parse_retry_after",
    "code_item",
    "completion_text",
    "math_item",
    "verl_item",
    "make_trl_reward_func",
    "compute_score",
    "compute_score_batch",
]
