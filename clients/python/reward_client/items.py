"""Building reward-server items from what trainers hand to a reward function.

An item is one line of `reward-server grade` input (see the repository's
README, "Item"). This module maps verl's `(data_source, solution_str,
ground_truth, extra_info)` and TRL's completions onto items. The mapping is
documented in clients/python/README.md.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

__all__ = [
    "math_item",
    "code_item",
    "verl_item",
    "is_code_source",
    "completion_text",
    "CODE_SOURCE_MARKERS",
    "CODE_OPTION_KEYS",
]

# A data source whose lower-cased name contains one of these is a code source
# (livecodebench, codeforces, deepcoder, leetcode and codecontests all contain
# "code").
CODE_SOURCE_MARKERS = ("code", "taco", "apps", "humaneval", "mbpp")

# Optional per-item code fields copied from a ground-truth dict or extra_info.
CODE_OPTION_KEYS = (
    "time_limit_s",
    "time_limit_native_s",
    "memory_limit_mb",
    "all_cases",
    "compare",
    "atol",
    "reward",
    "raw_code",
)

_TEST_TYPES = ("stdio", "function", "assert")


def math_item(response: str, answer: Any, *, extract: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    """A math item; `answer` is turned into a string, `extract` is "lenient" or "boxed"."""
    item: Dict[str, Any] = {"task": "math", "response": _text(response), "answer": _answer_text(answer)}
    if extract:
        item["extract"] = extract
    item.update({k: v for k, v in extra.items() if v is not None})
    return item


def code_item(response: str, tests: Any, **options: Any) -> Dict[str, Any]:
    """A code item; `tests` is a tests object, or its JSON text (see `parse_tests`)."""
    item: Dict[str, Any] = {"task": "code", "response": _text(response), "tests": parse_tests(tests)}
    item.update({k: v for k, v in options.items() if v is not None})
    return item


def parse_tests(tests: Any) -> Any:
    """Normalises a tests value.

    - JSON text is decoded (text that is not JSON is passed through unchanged,
      and the server answers `invalid` for that item, so one bad row does not
      stop a training run);
    - `{"tests": {...}}` is unwrapped;
    - an APPS/TACO `input_output` object for standard input, `{"inputs": [...],
      "outputs": [...]}` of strings without `fn_name`, becomes
      `{"type": "stdio", "cases": [...]}`.
    Anything else is passed through for the server to judge.
    """
    if isinstance(tests, (bytes, bytearray)):
        tests = bytes(tests).decode("utf-8", "replace")
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except ValueError:
            return tests
    if isinstance(tests, Mapping) and "tests" in tests and "type" not in tests:
        return parse_tests(tests["tests"])
    if isinstance(tests, Mapping) and "type" not in tests and _is_apps_stdio(tests):
        return {
            "type": "stdio",
            "cases": [{"input": i, "output": o} for i, o in zip(list(tests["inputs"]), list(tests["outputs"]))],
        }
    return tests


def _is_apps_stdio(t: Mapping) -> bool:
    if "inputs" not in t or "outputs" not in t or t.get("fn_name"):
        return False
    try:
        ins, outs = list(t["inputs"]), list(t["outputs"])
    except TypeError:
        return False
    return len(ins) == len(outs) and all(isinstance(x, str) for x in ins + outs)


def is_code_source(data_source: Any) -> bool:
    """True when the verl data source name says code (see `CODE_SOURCE_MARKERS`)."""
    if data_source is None:
        return False
    name = str(data_source).lower()
    return any(m in name for m in CODE_SOURCE_MARKERS)


def _is_tests_object(v: Any) -> bool:
    return isinstance(v, Mapping) and v.get("type") in _TEST_TYPES


def verl_item(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Optional[Mapping[str, Any]] = None,
    *,
    extract: Optional[str] = None,
) -> Dict[str, Any]:
    """Maps verl's reward-function arguments to an item.

    1. `ground_truth` is a dict with `tests` (or is itself a tests object,
       `{"type": "stdio"|"function"|"assert", ...}`): a code item with those
       tests; `time_limit_s`, `memory_limit_mb`, `all_cases` come from the
       dict, else from `extra_info`.
    2. Else `extra_info` has `tests`: a code item with those tests.
    3. Else the data source is a code source (`is_code_source`): a code item
       whose `ground_truth` is the tests object, as JSON text or as a dict.
    4. Else a math item with `answer = str(ground_truth)`; `extract` comes
       from `extra_info["extract"]`, else the `extract` argument.
    """
    extra = extra_info if isinstance(extra_info, Mapping) else {}
    response = _text(solution_str)

    def options(*sources: Mapping) -> Dict[str, Any]:
        out = {}
        for key in CODE_OPTION_KEYS:
            for s in sources:
                if key in s and s[key] is not None:
                    out[key] = _plain(s[key])
                    break
        return out

    if isinstance(ground_truth, Mapping) and "tests" in ground_truth:
        return code_item(response, ground_truth["tests"], **options(ground_truth, extra))
    if _is_tests_object(ground_truth):
        return code_item(response, ground_truth, **options(extra))
    if extra.get("tests") is not None:
        return code_item(response, extra["tests"], **options(extra))
    if is_code_source(data_source) and isinstance(ground_truth, (str, bytes, bytearray, Mapping)):
        gt_opts = ground_truth if isinstance(ground_truth, Mapping) else {}
        return code_item(response, ground_truth, **options(gt_opts, extra))
    return math_item(response, ground_truth, extract=extra.get("extract") or extract)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion.

    A string is returned as is. A conversation (a list of messages
    `{"role": ..., "content": ...}`) gives the content of its last assistant
    message (the last message when none has a role). Content given as a list
    of parts (`[{"type": "text", "text": ...}]`) is joined.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if completion is None:
        return ""
    messages = list(completion)
    if not messages:
        return ""
    chosen = None
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "assistant":
            chosen = m
            break
    if chosen is None:
        chosen = messages[-1]
    if isinstance(chosen, Mapping):
        return _content_text(chosen.get("content"))
    return _text(chosen)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, Mapping) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "".join(parts)
    return str(content)


def _text(s: Any) -> str:
    if s is None:
        return ""
    if isinstance(s, (bytes, bytearray)):
        return bytes(s).decode("utf-8", "replace")
    return s if isinstance(s, str) else str(s)


def _answer_text(answer: Any) -> str:
    if isinstance(answer, (bytes, bytearray)):
        return bytes(answer).decode("utf-8", "replace")
    if hasattr(answer, "item") and not isinstance(answer, str) and getattr(answer, "shape", None) == ():
        answer = answer.item()  # a numpy scalar
    return str(answer)


def _plain(v: Any) -> Any:
    """A numpy scalar as a Python value; anything else unchanged."""
    if hasattr(v, "item") and getattr(v, "shape", None) == ():
        return v.item()
    return v
