#!/usr/bin/env python3
"""Build the real-world math corpus from other projects' public data.

    python3 bench/math_corpus.py [--mirror /work/.mirror] [--out testcases/math/realworld/corpus.jsonl]

Reads git snapshots of public repositories (one directory per repository,
`MIRROR/<owner>+<name>/repo`, a git directory as the `fetch` tool leaves it;
`git clone --bare` gives the same) at the pinned commits below, and writes one
JSON line per case in the format of `testcases/math/*.jsonl` plus provenance:

    {"id", "task": "math", "answer", "response", "expected": {"verdict", "reward"},
     "source": {"repo", "path", "commit", "license", "item"},
     "source_verdict", "note"?, "review"?}

`source_verdict` is what the source says (its grader's verdict, or the
assertion of its test). `expected` is the same unless `REVIEWED` below says
the source is wrong by the mathematics; then `review` says why. Nothing else
is changed: responses and answers are the sources' strings.

Two kinds of source:
- model outputs with a verdict (NeMo-Skills test data, MathCoder's released
  evaluation outputs, inspect_ai's scorer cases): the response is the whole
  model output;
- equivalence tests of a grader function `f(gold, prediction)` (NeMo-Skills,
  MARIO_EVAL, hendrycks/math): the function receives an already extracted
  answer, so the response is `\\boxed{prediction}`, which hands both graders
  the same extracted answer.

math-verify's own test suite is deliberately not a source: it is held out as
an independent check. No third-party code is copied; only test data is read.
Python 3 stdlib only.
"""

import argparse
import ast
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

NEMO = ("NVIDIA/NeMo-Skills", "0b012df8a09cd4730d31b16e90a0d8f13d145fb8", "Apache-2.0")
# tests/data/openmathinstruct.test was removed later; read it at its last commit.
NEMO_OMI1 = ("NVIDIA/NeMo-Skills", "055123cbe70838cf8e243169ef00ed2b82ba96b9", "Apache-2.0")
MATHCODER = ("mathllm/MathCoder", "d6c91fbd8c02ad9f9669423f4ff331dc1605d126", "Apache-2.0")
MARIO = ("MARIO-Math-Reasoning/MARIO_EVAL", "13584f20b71ffc6e9873e86481054849ed015065", "MIT")
HENDRYCKS = ("hendrycks/math", "985bdc1696e88e8643f081a0ff4719da39f2ae2a", "MIT")
INSPECT = ("UKGovernmentBEIS/inspect_ai", "499e6152e7b8fc8cbd8ac5283536572aa6e4ab17", "MIT")


class Mirror:
    def __init__(self, root):
        self.root = root

    def show(self, repo, commit, path):
        gitdir = os.path.join(self.root, repo.replace("/", "+"), "repo")
        if not os.path.isdir(gitdir):
            sys.exit(f"error: no snapshot of {repo} at {gitdir}")
        out = subprocess.run(["git", "-C", gitdir, "show", f"{commit}:{path}"], capture_output=True)
        if out.returncode != 0:
            sys.exit(f"error: {repo}@{commit}:{path}: {out.stderr.decode().strip()}")
        return out.stdout.decode("utf-8")


def case(src, path, item, answer, response, verdict, note=None):
    repo, commit, lic = src
    c = {
        "answer": answer,
        "response": response,
        "source": {"repo": repo, "path": path, "commit": commit, "license": lic, "item": item},
        "source_verdict": verdict,
    }
    if note:
        c["note"] = note
    return c


def boxed(prediction):
    # A trailing backslash would escape the box's closing brace: a space goes between.
    odd = (len(prediction) - len(prediction.rstrip("\\"))) % 2 == 1
    return "\\boxed{" + prediction + (" " if odd else "") + "}"


# ---- model outputs with a verdict ------------------------------------------------


def nemo_outputs(m):
    """NeMo-Skills' sample generations on MATH train problems; `symbolic_correct`
    is the verdict of its math grader."""
    for k in range(3):
        path = f"tests/data/output-rs{k}.test"
        for n, line in enumerate(m.show(NEMO[0], NEMO[1], path).splitlines(), 1):
            r = json.loads(line)
            v = "correct" if r["symbolic_correct"] else "wrong_answer"
            yield f"nemo-rs{k}-{n:03}", case(NEMO, path, f"line {n}", r["expected_answer"], r["generation"], v)


def nemo_openmathinstruct(m):
    """OpenMathInstruct-1 and -2 samples: solutions kept because their final
    answer matched the expected one (the datasets' construction), so all correct."""
    path = "tests/data/openmathinstruct2.test"
    for n, line in enumerate(m.show(NEMO[0], NEMO[1], path).splitlines(), 1):
        r = json.loads(line)
        yield f"nemo-omi2-{n:03}", case(NEMO, path, f"line {n}", r["expected_answer"], r["generated_solution"], "correct")
    path = "tests/data/openmathinstruct.test"
    for n, line in enumerate(m.show(NEMO_OMI1[0], NEMO_OMI1[1], path).splitlines(), 1):
        r = json.loads(line)
        v = "correct" if r["is_correct"] else "wrong_answer"
        yield f"nemo-omi1-{n:03}", case(NEMO_OMI1, path, f"line {n}", r["expected_answer"], r["generated_solution"], v)


def mathcoder_response(r):
    """The model's turns as one text: prose as written, code and its output fenced.
    A last text message equal to MathCoder's extracted answer (`completion`)
    is its grader's note, not model output, and is left out."""
    msgs = r["debug_result"]
    if isinstance(msgs, str):
        msgs = ast.literal_eval(msgs)
    turns = msgs[2:]
    last = turns[-1] if turns else None
    if last and last["role"] == "text" and str(last["content"]).strip() == str(r["completion"]).strip():
        turns = turns[:-1]
    parts = []
    for msg in turns:
        role, text = msg["role"], msg["content"]
        if role == "code":
            parts.append("```python\n" + text + "\n```")
        elif role == "execution":
            parts.append("```output\n" + text + "\n```")
        else:
            parts.append(text)
    return "\n\n".join(parts)


def mathcoder_answer(r):
    gt = r["ground_truth"]
    if isinstance(gt, str):
        gt = ast.literal_eval(gt)
    return str(gt["answer"])


def mathcoder(m):
    """MathCoder's released evaluation outputs, split by its grader into
    `-correct` and `-wrong` files. Every `step`-th line is taken."""
    files = [
        ("outs/MathCoder-L-7b/MATH/MATH_test_result-20230917-2026-correct.jsonl", "correct", 8),
        ("outs/MathCoder-L-70b/mathematics/mathematics_test_result-20230918-2031-correct.jsonl", "correct", 10),
        ("outs/MathCoder-L-70b/mathematics/mathematics_test_result-20230918-2031-wrong.jsonl", "wrong_answer", 3),
        ("outs/MathCoder-CL-7b/mathematics/mathematics_test_result-20230917-2303-wrong.jsonl", "wrong_answer", 12),
    ]
    for path, verdict, step in files:
        tag = "math" if "/MATH/" in path else "dm"
        model = path.split("/")[1].lower().removeprefix("mathcoder-")
        split = "ok" if verdict == "correct" else "bad"
        for n, line in enumerate(m.show(MATHCODER[0], MATHCODER[1], path).splitlines(), 1):
            if (n - 1) % step:
                continue
            r = json.loads(line)
            yield f"mathcoder-{model}-{tag}-{split}-{n:04}", case(
                MATHCODER, path, f"line {n}" + (f" ({r['id']})" if 'id' in r else ""), mathcoder_answer(r), mathcoder_response(r), verdict
            )


def inspect_cases(m):
    """inspect_ai's math scorer compatibility cases (model output, target, C/I)."""
    path = "tests/scorer/math_cases.json"
    for n, c in enumerate(json.loads(m.show(INSPECT[0], INSPECT[1], path)), 1):
        v = {"C": "correct", "I": "wrong_answer"}[c["expected"]]
        yield f"inspect-{n:03}", case(INSPECT, path, f"case {n - 1} ({c['source']})", c["target"], c["output"], v)


# ---- equivalence tests of grader functions -----------------------------------------


def literal(node):
    """A test's literal argument as the string the grader receives (numbers via str())."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return str(literal_value(node.left) / literal_value(node.right))
    v = literal_value(node)
    return v if v is None or isinstance(v, str) else str(v)


def literal_value(node):
    return ast.literal_eval(node)


def nemo_math_equal(m):
    """`math_equal(a, b)` is asserted both ways, so each pair gives two cases."""
    path = "tests/test_math_equal.py"
    tree = ast.parse(m.show(NEMO[0], NEMO[1], path))
    for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        verdict = {"test_correct_examples": "correct", "test_incorrect_examples": "wrong_answer"}.get(fn.name)
        if verdict is None:
            continue
        pairs = fn.decorator_list[0].args[1]
        for k, pair in enumerate(pairs.elts, 1):
            a, b = (literal(e) for e in pair.elts)
            if a is None or b is None:
                continue
            for d, (gold, pred) in enumerate([(b, a), (a, b)]):
                yield f"nemo-eq-{fn.name[5:8]}-{k:02}{'ab'[d]}", case(
                    NEMO, path, f"{fn.name}[{k - 1}], {'reversed' if d else 'as written'}", gold, boxed(pred), verdict
                )


def assertion_pairs(source_text):
    """(test name, gold, prediction, equal?) from unittest methods that assign
    `test_in`/`test_out` (or loop over `test_pairs`) and assert an equivalence
    function on them (`assertTrue(f(gold, pred))` / `assertFalse(...)`)."""
    tree = ast.parse(source_text)
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        for fn in [n for n in cls.body if isinstance(n, ast.FunctionDef)]:
            env = {}
            k = 0
            for stmt in fn.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                    try:
                        env[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                    except ValueError:
                        pass
                    continue
                calls = []
                if isinstance(stmt, ast.For) and isinstance(stmt.iter, ast.Name):
                    names = [e.id for e in stmt.target.elts]
                    for values in env[stmt.iter.id]:
                        calls.append((stmt.body[0].value, dict(zip(names, values))))
                elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                    calls.append((stmt.value, env))
                for call, scope in calls:
                    method = getattr(call.func, "attr", None)
                    if method not in ("assertTrue", "assertFalse"):
                        continue
                    inner = call.args[0]
                    args = [scope[a.id] if isinstance(a, ast.Name) else ast.literal_eval(a) for a in inner.args[:2]]
                    k += 1
                    yield f"{fn.name}[{k}]", args[0], args[1], method == "assertTrue"


def mario(m):
    """MARIO_EVAL's `is_equiv(ground_truth, given)` tests."""
    path = "math_evaluation/tests/test_is_equiv.py"
    for k, (name, gold, pred, equal) in enumerate(assertion_pairs(m.show(MARIO[0], MARIO[1], path)), 1):
        yield f"mario-{k:03}", case(MARIO, path, name, gold, boxed(pred), "correct" if equal else "wrong_answer")


def hendrycks(m):
    """The MATH dataset's own `is_equiv(str1, str2)` tests."""
    path = "modeling/math_equivalence_test.py"
    for k, (name, gold, pred, equal) in enumerate(assertion_pairs(m.show(HENDRYCKS[0], HENDRYCKS[1], path)), 1):
        yield f"hendrycks-{k:03}", case(HENDRYCKS, path, name, gold, boxed(pred), "correct" if equal else "wrong_answer")


SOURCES = [nemo_outputs, nemo_openmathinstruct, mathcoder, inspect_cases, nemo_math_equal, mario, hendrycks]

# Cases whose source verdict is wrong by the mathematics: id -> (verdict, why).
# Found by reading every case where the source, math-verify and reward-server
# did not all agree (bench/math_diff.py lists them).
BOX_ONLY = "NeMo-Skills' grader reads only \\boxed{}; "
REVIEWED = {
    "rw-nemo-rs0-024": ("correct", "`\\boxed{1320 km}`: the unit does not change the value 1320; the source grader compared the text with its unit"),
    "rw-nemo-rs0-027": ("correct", "the problem asks for (x+y)^2, and `\\boxed{(x+y)^2=81}` states it is 81"),
    "rw-nemo-rs0-035": ("correct", BOX_ONLY + "the response states the smallest value S = 13 and is cut off before boxing it"),
    "rw-nemo-rs0-042": ("correct", BOX_ONLY + "the response ends by stating the value is \\$675"),
    "rw-nemo-rs1-049": ("correct", BOX_ONLY + "the answer 958 is in `\\fbox{}`"),
    "rw-nemo-rs2-017": ("correct", BOX_ONLY + "the response ends with `Thus, the answer is: \\[ \\frac{207}{64} \\]`"),
    "rw-nemo-omi1-001": ("wrong_answer", "the response answers 900 (dollars) for an expected 90000; the file's is_correct flags are test fixtures, all true"),
    "rw-nemo-omi1-039": ("wrong_answer", "the response gives only f(0) = 1; the possible values are 0 and 1"),
    "rw-mathcoder-l-7b-math-ok-0057": ("wrong_answer", "0.067 is 3125/46656 = 0.06698... to 2 significant digits; the problem asks for the exact maximum"),
    "rw-mathcoder-l-7b-math-ok-0201": ("wrong_answer", "27/50 is not 6/11: the response converted 0.\\overline{54} wrongly"),
    "rw-mathcoder-l-7b-math-ok-0241": ("wrong_answer", "0.964 is not 625/648 = 0.96451... (3 digits, and not even its rounding)"),
    "rw-mathcoder-l-7b-math-ok-0249": ("wrong_answer", "0.0287 is 448/15625 = 0.028672 to 3 significant digits; the problem asks for the exact probability"),
    "rw-mathcoder-l-7b-math-ok-0793": ("wrong_answer", "0.167 is 1/6 to 3 significant digits; the problem asks for the exact distance"),
    "rw-mathcoder-l-7b-math-ok-1177": ("wrong_answer", "3x - 6y + 2z + 23 = 0 is a different plane from 11x + 6y + 5z + 86 = 0"),
    "rw-mathcoder-l-70b-dm-bad-0082": ("correct", "-20x is -20*x; the source grader compared the texts"),
    "rw-mathcoder-l-70b-dm-bad-0118": ("correct", "-150y is -150*y; the source grader compared the texts"),
    "rw-mathcoder-cl-7b-dm-bad-0193": ("correct", "the gold lists -2, 3, 5 with spaces between them, and the response boxes -2, 3, 5; the source compared the texts"),
    "rw-mathcoder-cl-7b-dm-bad-0289": ("correct", "as rw-mathcoder-cl-7b-dm-bad-0193: the gold `-4 1 2` and the boxed `-4, 1, 2` are the same numbers in the same order"),
    "rw-hendrycks-002": ("correct", "a comma-separated list of answers is unordered unless the problem orders it (MATH: 'enter all the solutions, separated by commas'); the test pins that the string normaliser does not reorder"),
    "rw-hendrycks-009": ("correct", "as rw-hendrycks-002: 0.1, 4, 2 and 4, .1, 2 are the same answers"),
    "rw-mario-055": ("wrong_answer", "2^(1/2^1000) is not 1, so [2^(1/2^1000), oo) is not [1, oo); only floating point cannot tell them apart"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", default="/work/.mirror", help="directory of <owner>+<name>/repo git snapshots")
    ap.add_argument("--out", default=os.path.join(ROOT, "testcases", "math", "realworld", "corpus.jsonl"))
    args = ap.parse_args()
    m = Mirror(args.mirror)
    rows = []
    seen = set()
    counts = {}
    for source in SOURCES:
        for ident, c in source(m):
            ident = "rw-" + ident
            if ident in seen:
                sys.exit(f"error: duplicate id {ident}")
            seen.add(ident)
            verdict = c["source_verdict"]
            review = REVIEWED.get(ident)
            if review:
                verdict = review[0]
            row = {"id": ident, "task": "math", "answer": c["answer"], "response": c["response"],
                   "expected": {"verdict": verdict, "reward": 1.0 if verdict == "correct" else 0.0}}
            row.update({k: v for k, v in c.items() if k not in ("answer", "response")})
            if review:
                row["review"] = review[1]
            rows.append(row)
            key = c["source"]["repo"]
            counts[key] = counts.get(key, 0) + 1
    missing = set(REVIEWED) - seen
    if missing:
        sys.exit(f"error: reviewed ids not in the corpus: {sorted(missing)}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for repo, n in counts.items():
        print(f"{n:5}  {repo}")
    print(f"{len(rows):5}  cases -> {os.path.relpath(args.out, ROOT)} ({len(REVIEWED)} source verdicts overridden)")


if __name__ == "__main__":
    main()
