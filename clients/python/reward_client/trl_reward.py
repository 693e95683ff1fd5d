"""A TRL `GRPOTrainer` reward function backed by `reward-server serve`.

TRL calls each reward function as `f(prompts=..., completions=..., **columns)`
where `columns` holds every other dataset column as a list (one value per
completion) plus trainer extras (`completion_ids`, `trainer_state`, ...), and
expects one float per completion. The function's `__name__` labels the
reward in TRL's logs.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Sequence, Union

from reward_client.client import RewardClient
from reward_client.items import CODE_OPTION_KEYS, code_item, completion_text, math_item

__all__ = ["make_trl_reward_func"]

_TASKS = ("math", "code", "auto")


def make_trl_reward_func(
    task: str = "math",
    answer_key: str = "answer",
    tests_key: str = "tests",
    *,
    client: Optional[RewardClient] = None,
    base_url: Union[str, Sequence[str], None] = None,
    extract: Optional[str] = None,
    name: Optional[str] = None,
    **client_kwargs: Any,
) -> Callable[..., List[float]]:
    """Returns `reward_func(prompts, completions, **kwargs) -> list[float]`.

    Args:
        task: `"math"` (gold answer in column `answer_key`), `"code"` (tests in
            column `tests_key`: a tests object or its JSON text), or `"auto"`
            (per row: code when the row's `tests_key` value is present and not
            None, else math).
        answer_key, tests_key: dataset column names.
        client: a `RewardClient` to use; else one is made from `base_url`
            (default: `$REWARD_SERVER_URL`, else http://127.0.0.1:8080) and
            `client_kwargs` (`timeout`, `max_retries`, `batch_size`, ...).
        extract: `"lenient"` or `"boxed"` for math items (default: the server's,
            lenient). A dataset column named `extract` overrides it per row.
        name: the function's `__name__` (default `reward_server_<task>`).

    Columns named `time_limit_s`, `memory_limit_mb` or `all_cases` are passed
    on to code items.
    """
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    if client is None:
        if base_url is None:
            base_url = os.environ.get("REWARD_SERVER_URL") or "http://127.0.0.1:8080"
        client = RewardClient(base_url, **client_kwargs)
    elif client_kwargs or base_url is not None:
        raise TypeError("give either client or base_url/client options, not both")

    def column(kwargs: dict, key: str, n: int, required: bool) -> List[Any]:
        if key not in kwargs or kwargs[key] is None:
            if required:
                cols = sorted(k for k in kwargs if k not in ("trainer_state", "completion_ids"))
                raise KeyError(f"{reward_func.__name__}: dataset column {key!r} missing (columns: {cols})")
            return [None] * n
        values = list(kwargs[key])
        if len(values) != n:
            raise ValueError(f"{reward_func.__name__}: column {key!r} has {len(values)} values for {n} completions")
        return values

    def reward_func(prompts: Any = None, completions: Any = None, **kwargs: Any) -> List[float]:
        if completions is None:
            raise TypeError(f"{reward_func.__name__}: no completions given")
        texts = [completion_text(c) for c in completions]
        n = len(texts)
        if task == "auto":
            tests = column(kwargs, tests_key, n, required=False)
            is_code = [t is not None for t in tests]
            answers = column(kwargs, answer_key, n, required=not all(is_code))
        elif task == "code":
            tests, is_code = column(kwargs, tests_key, n, required=True), [True] * n
            answers = [None] * n
        else:
            tests, is_code = [None] * n, [False] * n
            answers = column(kwargs, answer_key, n, required=True)
        extracts = column(kwargs, "extract", n, required=False)
        opts = {k: column(kwargs, k, n, required=False) for k in CODE_OPTION_KEYS}
        items = []
        for i, text in enumerate(texts):
            if is_code[i]:
                items.append(code_item(text, tests[i], **{k: v[i] for k, v in opts.items()}))
            else:
                items.append(math_item(text, answers[i], extract=extracts[i] or extract))
        return [float(r["reward"]) for r in client.reward(items)]

    reward_func.__name__ = reward_func.__qualname__ = name or f"reward_server_{task}"
    reward_func.client = client  # type: ignore[attr-defined]
    return reward_func
