#!/usr/bin/env python3
"""Writes the format fixtures of `reward-server convert` (testcases/formats/).

Every problem, test and sample here was written for this project; none is
copied from a benchmark. Each format gets the files its own tools produce or
read, in their layout:

  FORMAT/problems.jsonl   the benchmark's problem rows
  FORMAT/samples.json[l]  the samples, as the benchmark's generator writes them
  FORMAT/expected.jsonl   {"id", "verdict", "reward"} per item `convert` makes

Run it from the repository root after changing a fixture; the files are
committed, and tests/all/formats.rs checks `convert` + `grade` (and the same
items through POST /v1/reward) against expected.jsonl.

    python3 testcases/formats/make_fixtures.py
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


def expect(*rows):
    return [{"id": i, "verdict": v, "reward": r} for i, v, r in rows]


# ----------------------------------------------------------------- lcb
def lcb_compress(tests) -> str:
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(json str)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def lcb() -> None:
    stdin = lambda i, o: {"input": i, "output": o, "testtype": "stdin"}
    fn = lambda i, o: {"input": i, "output": o, "testtype": "functional"}
    base = {"question_content": "(written for these tests)", "platform": "atcoder", "contest_id": "fx",
            "contest_date": "2025-01-01T00:00:00", "starter_code": "", "difficulty": "easy"}
    problems = [
        # Sum of a list; private tests compressed as LiveCodeBench ships them.
        dict(base, question_title="sum", question_id="fx_sum",
             public_test_cases=json.dumps([stdin("3\n1 2 3\n", "6\n")]),
             private_test_cases=lcb_compress([stdin("2\n-5 5\n", "0\n"), stdin("1\n1000000000000\n", "1000000000000\n")]),
             metadata="{}"),
        # A mean printed with decimals: LiveCodeBench compares Decimals exactly.
        dict(base, question_title="mean", question_id="fx_mean",
             public_test_cases=json.dumps([stdin("2\n1 2\n", "1.5\n")]),
             private_test_cases=json.dumps([stdin("4\n1 2 3 4\n", "2.5\n")]),
             metadata="{}"),
        # A LeetCode-style function; private tests compressed too.
        dict(base, platform="leetcode", question_title="pair", question_id="fx_pair",
             starter_code="class Solution:\n    def pairSum(self, nums: List[int], k: int) -> List[int]:\n        ",
             public_test_cases=json.dumps([fn("[1, 4, 6]\n10", "[1, 2]")]),
             private_test_cases=lcb_compress([fn("[5, 5]\n10", "[0, 1]"), fn("[2, 7, 11]\n18", "[1, 2]")]),
             metadata=json.dumps({"func_name": "pairSum"})),
    ]
    write_jsonl(HERE / "lcb/problems.jsonl", problems)
    pair_ok = ("class Solution:\n    def pairSum(self, nums: List[int], k: int) -> List[int]:\n"
               "        seen = {}\n        for i, x in enumerate(nums):\n"
               "            if k - x in seen:\n                return [seen[k - x], i]\n            seen[x] = i\n")
    # lcb_runner's output file: a JSON array of {question_id, code_list, output_list}.
    samples = [
        {"question_id": "fx_sum", "output_list": ["..."] * 3, "code_list": [
            "n = int(input())\nprint(sum(map(int, input().split())))",
            # Uses the preamble's names without importing them (gcd, reduce): fine under lcb.
            "n = int(input())\nprint(reduce(lambda a, b: a + b, map(int, input().split()), 0) + 0 * gcd(1, 1))",
            # int() of a 1-digit-short sum: wrong on the big case.
            "n = int(input())\nprint(sum(map(int, input().split())) % 10**9)",
        ]},
        {"question_id": "fx_mean", "output_list": ["..."] * 3, "code_list": [
            "n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs) / n)",
            # 1.50 == 1.5 as Decimals.
            "n = int(input())\nxs = list(map(int, input().split()))\nprint(f'{sum(xs) / n:.2f}')",
            # 1.5000001 != 1.5: no tolerance under lcb.
            "n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs) / n + 1e-7)",
        ]},
        {"question_id": "fx_pair", "output_list": ["..."] * 2, "code_list": [
            pair_ok,
            "class Solution:\n    def pairSum(self, nums, k):\n        return (0, 1)\n",
        ]},
    ]
    (HERE / "lcb/samples.json").write_text(json.dumps(samples, indent=1) + "\n")
    write_jsonl(HERE / "lcb/expected.jsonl", expect(
        ("fx_sum/0", "correct", 1.0), ("fx_sum/1", "correct", 1.0), ("fx_sum/2", "wrong_answer", 0.0),
        ("fx_mean/0", "correct", 1.0), ("fx_mean/1", "correct", 1.0), ("fx_mean/2", "wrong_answer", 0.0),
        ("fx_pair/0", "correct", 1.0), ("fx_pair/1", "wrong_answer", 0.0),
    ))


# ----------------------------------------------------------------- apps
def apps() -> None:
    problems = [
        {"problem_id": 4001, "question": "(written for these tests) print the numbers sorted",
         "input_output": json.dumps({"inputs": ["3\n3 1 2\n", "2\n5 4\n"], "outputs": ["1 2 3\n", "4 5\n"]})},
        # APPS call-based: argument lists and [v]-wrapped outputs.
        {"problem_id": 4002, "question": "(written for these tests) digits sum",
         "input_output": json.dumps({"fn_name": "digit_sum", "inputs": [[123], [9]], "outputs": [[6], [9]]})},
        {"problem_id": 4003, "question": "broken row", "input_output": json.dumps({"inputs": ["1\n"], "outputs": []})},
    ]
    write_jsonl(HERE / "apps/problems.jsonl", problems)
    samples = [
        {"problem_id": 4001, "response": fenced("input()\nprint(*sorted(map(int, input().split())))")},
        # Trailing spaces and an extra blank line: APPS strips lines.
        {"problem_id": 4001, "response": fenced("input()\nprint(' '.join(map(str, sorted(map(int, input().split())))) + '  ')\nprint()")},
        # Unsorted: the same tokens on one line, which APPS's set rule accepts.
        {"problem_id": 4001, "response": fenced("input()\nprint(input().strip())")},
        {"problem_id": 4001, "response": "no code at all"},
        {"problem_id": 4002, "response": fenced("def digit_sum(n):\n    return sum(map(int, str(n)))")},
        {"problem_id": 4002, "response": fenced("def digit_sum(n):\n    return [sum(map(int, str(n)))]")},
        {"problem_id": 4002, "response": fenced("def digit_sum(n):\n    return n % 9")},
        {"problem_id": 9999, "response": "a sample for a problem that does not exist"},
    ]
    write_jsonl(HERE / "apps/samples.jsonl", samples)
    write_jsonl(HERE / "apps/expected.jsonl", expect(
        ("4001/0", "correct", 1.0), ("4001/1", "correct", 1.0), ("4001/2", "correct", 1.0),
        ("4001/3", "no_answer", 0.0),
        ("4002/0", "correct", 1.0), ("4002/1", "correct", 1.0), ("4002/2", "wrong_answer", 0.0),
    ))


# ----------------------------------------------------------------- taco (and DeepCoder rows)
def taco() -> None:
    problems = [
        # TACO rows have no id: the row number (0) is the id.
        {"question": "(written for these tests) square", "source": "fixture",
         "input_output": json.dumps({"inputs": ["4\n", "-3\n"], "outputs": ["16\n", "9\n"]})},
        # A DeepCoder row: `tests` as a list of cases (its lcbv5/codeforces shape).
        {"problem": "(written for these tests) reverse a word",
         "tests": json.dumps([{"input": "abc\n", "output": "cba\n", "testtype": "stdin"},
                              {"input": "x\n", "output": "x\n", "testtype": "stdin"}])},
        # A DeepCoder primeintellect-style row: a function case list.
        {"problem": "(written for these tests) double",
         "tests": json.dumps([{"input": "3", "output": "6", "fn_name": "double"}, {"input": "-1", "output": "-2", "fn_name": "double"}])},
    ]
    write_jsonl(HERE / "taco/problems.jsonl", problems)
    samples = [
        {"index": 0, "responses": [fenced("n = int(input())\nprint(n * n)"), fenced("n = int(input())\nprint(n * 2)")]},
        {"index": 1, "response": fenced("print(input()[::-1])")},
        {"index": 2, "response": fenced("def double(x):\n    return 2 * x")},
    ]
    write_jsonl(HERE / "taco/samples.jsonl", samples)
    write_jsonl(HERE / "taco/expected.jsonl", expect(
        ("0/0", "correct", 1.0), ("0/1", "wrong_answer", 0.0), ("1/0", "correct", 1.0), ("2/0", "correct", 1.0),
    ))


# ----------------------------------------------------------------- humaneval
def humaneval() -> None:
    problems = [
        {"task_id": "Fixture/0", "entry_point": "clamp",
         "prompt": "def clamp(x: int, lo: int, hi: int) -> int:\n    \"\"\"Return x limited to [lo, hi].\"\"\"\n",
         "canonical_solution": "    return max(lo, min(hi, x))\n",
         "test": "def check(candidate):\n    assert candidate(5, 0, 3) == 3\n    assert candidate(-1, 0, 3) == 0\n    assert candidate(2, 0, 3) == 2\n"},
        {"task_id": "Fixture/1", "entry_point": "words",
         "prompt": "def words(s: str) -> int:\n    \"\"\"Count the words of s.\"\"\"\n",
         "canonical_solution": "    return len(s.split())\n",
         "test": "def check(candidate):\n    assert candidate('a b  c') == 3\n    assert candidate('') == 0\n"},
    ]
    write_jsonl(HERE / "humaneval/problems.jsonl", problems)
    samples = [
        {"task_id": "Fixture/0", "completion": "    return max(lo, min(hi, x))\n"},
        {"task_id": "Fixture/0", "completion": "    return min(hi, x)\n"},
        {"task_id": "Fixture/1", "solution": "def words(s):\n    return len(s.split())\n"},
        {"task_id": "Fixture/1", "completion": "    while True:\n        pass\n"},
        {"task_id": "Fixture/1", "response": fenced("def words(s):\n    return s.count(' ') + 1")},
    ]
    write_jsonl(HERE / "humaneval/samples.jsonl", samples)
    write_jsonl(HERE / "humaneval/expected.jsonl", expect(
        ("Fixture/0/0", "correct", 1.0), ("Fixture/0/1", "wrong_answer", 0.0),
        ("Fixture/1/0", "correct", 1.0), ("Fixture/1/1", "time_limit", 0.0), ("Fixture/1/2", "wrong_answer", 0.0),
    ))


# ----------------------------------------------------------------- evalplus
def evalplus() -> None:
    problems = [
        {"task_id": "FixturePlus/0", "entry_point": "mean",
         "prompt": "def mean(xs: list) -> float:\n    \"\"\"The mean of xs.\"\"\"\n",
         "canonical_solution": "    return sum(xs) / len(xs)\n",
         "contract": "", "atol": 0,
         "base_input": [[[2, 4]], [[3]]], "plus_input": [[[0.1, 0.2, 0.4]], [[1e6, 1e-6]]]},
        {"task_id": "FixturePlus/1", "entry_point": "area",
         "prompt": "import math\n\ndef area(r: float) -> float:\n    \"\"\"Area of a circle of radius r.\"\"\"\n",
         "canonical_solution": "    return math.pi * r * r\n",
         "contract": "", "atol": 1e-3,
         "base_input": [[1.0], [2.0]], "plus_input": [[0.5], [10.0]]},
        {"task_id": "FixturePlus/2", "entry_point": "find_zero",
         "prompt": "def find_zero(xs: list):\n    \"\"\"A zero of the polynomial xs.\"\"\"\n",
         "canonical_solution": "    return 0.0\n", "contract": "", "atol": 1e-6,
         "base_input": [[[0, 1]]], "plus_input": []},
    ]
    write_jsonl(HERE / "evalplus/problems.jsonl", problems)
    samples = [
        {"task_id": "FixturePlus/0", "completion": "    return sum(xs) / len(xs)\n"},
        # Summing in another order: within EvalPlus's enforced 1e-6.
        {"task_id": "FixturePlus/0", "completion": "    return sum(reversed(xs)) / len(xs)\n"},
        # Integer division: right on the base inputs, wrong on the plus inputs.
        {"task_id": "FixturePlus/0", "completion": "    return sum(xs) // len(xs)\n"},
        # 3.1416 for pi: within atol 1e-3 of the reference.
        {"task_id": "FixturePlus/1", "completion": "    return 3.1416 * r * r\n"},
        {"task_id": "FixturePlus/1", "completion": "    return 3.14 * r * r\n"},
    ]
    write_jsonl(HERE / "evalplus/samples.jsonl", samples)
    write_jsonl(HERE / "evalplus/expected.jsonl", expect(
        ("FixturePlus/0/0", "correct", 1.0), ("FixturePlus/0/1", "correct", 1.0),
        ("FixturePlus/0/2", "wrong_answer", 0.0),
        ("FixturePlus/1/0", "correct", 1.0), ("FixturePlus/1/1", "wrong_answer", 0.0),
    ))


# ----------------------------------------------------------------- verl
def verl() -> None:
    row = lambda k, source, truth, ability: {
        "data_source": source, "prompt": [{"role": "user", "content": "(written for these tests)"}],
        "ability": ability, "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"split": "test", "index": k}}
    problems = [
        row(0, "HuggingFaceH4/MATH-500", "\\frac{1}{2}", "math"),
        row(1, "openai/gsm8k", "72", "math"),
        # PRIME / verl code ground truth: JSON lines and JSON text, with fn_name.
        row(2, "apps", json.dumps({"fn_name": "add", "inputs": ["1\n2", "-1\n1", "10\n5"], "outputs": ["3", "0", "15"]}), "code"),
        row(3, "codeforces", json.dumps({"inputs": ["2\n", "3\n"], "outputs": ["4\n", "9\n"]}), "code"),
        row(4, "searchR1_nq", json.dumps({"target": ["Paris"]}), "qa"),
    ]
    write_jsonl(HERE / "verl/problems.jsonl", problems)
    samples = [
        {"index": 0, "response": "So $x = \\boxed{0.5}$."},
        # MATH sources use verl's boxed-only extraction.
        {"index": 0, "response": "The answer is 1/2."},
        {"index": 1, "response": "She sold 48 + 24 = 72 clips.\n#### 72"},
        {"index": 2, "response": fenced("def add(a, b):\n    return a + b")},
        # Right on two of three cases: reward 2/3 (verl's continuous score).
        {"index": 2, "response": fenced("def add(a, b):\n    return abs(a) + b")},
        {"index": 3, "response": fenced("n = int(input())\nprint(n * n)")},
        {"index": 4, "response": "Paris"},
    ]
    write_jsonl(HERE / "verl/samples.jsonl", samples)
    write_jsonl(HERE / "verl/expected.jsonl", expect(
        ("0/0", "correct", 1.0), ("0/1", "no_answer", 0.0), ("1/0", "correct", 1.0),
        ("2/0", "correct", 1.0), ("2/1", "wrong_answer", 2 / 3), ("3/0", "correct", 1.0),
    ))


# ----------------------------------------------------------------- math
def math() -> None:
    problems = [
        {"id": "m1", "problem": "(written for these tests) 1/4 + 1/4?", "answer": "\\frac{1}{2}"},
        {"id": "m2", "question": "(written for these tests) 6 boxes of 12?", "gold": "72"},
        # GSM8K's answer field: the number follows ####.
        {"id": "m3", "question": "(written for these tests) 3 times 4?", "answer": "3 * 4 = 12\n#### 12"},
        {"id": "m4", "problem": "a row without an answer"},
    ]
    write_jsonl(HERE / "math/problems.jsonl", problems)
    samples = [
        {"id": "m1", "responses": ["Add: $\\boxed{\\frac24}$", "It is 0.25."]},
        {"id": "m2", "response": "6 * 12 = \\boxed{72}"},
        {"id": "m3", "response": "3 * 4 = 12. The answer is 12."},
    ]
    write_jsonl(HERE / "math/samples.jsonl", samples)
    write_jsonl(HERE / "math/expected.jsonl", expect(
        ("m1/0", "correct", 1.0), ("m1/1", "wrong_answer", 0.0), ("m2/0", "correct", 1.0), ("m3/0", "correct", 1.0),
    ))


if __name__ == "__main__":
    for make in (lcb, apps, taco, humaneval, evalplus, verl, math):
        make()
