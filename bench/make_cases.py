#!/usr/bin/env python3
"""Generate a deterministic benchmark corpus of math grading items (JSONL).

    python3 bench/make_cases.py bench/out/corpus.jsonl            # 5,000 items
    python3 bench/make_cases.py OUT.jsonl --n 500 --seed 7

Each line is a `reward-server grade` item:

    {"id", "problem_id", "task": "math", "response", "answer",
     "intended": "correct"|"wrong"|"no_answer", "kind": ...}

`answer` is the gold answer in LaTeX (no delimiters). `response` is a few
hundred to a few thousand characters of chain-of-thought style text that
(usually) ends in \\boxed{...}. About half the items box an answer equivalent
to the gold but written in a different notation, about half box a wrong
answer, and ~2% are truncated before any final answer. `intended` and `kind`
are extra fields (the grader ignores them); `intended` is what the generator
meant, not ground truth for every notation edge case.

Items are grouped 8 responses per problem (problem_id), the usual RL rollout
shape, and the whole file is shuffled so neighbouring lines rarely share a
gold. Python 3 stdlib only; same seed -> byte-identical file.
"""

import argparse
import json
import math
import random
from fractions import Fraction

SAMPLES_PER_PROBLEM = 8


# ---------------------------------------------------------------------------
# Gold generators. Each returns (kind, gold, [equivalent forms], [wrong forms]).
# Equivalent forms deliberately differ from the gold's notation.
# ---------------------------------------------------------------------------

def frac_tex(fr, cmd="frac"):
    """LaTeX for a Fraction, sign in front."""
    sign = "-" if fr < 0 else ""
    fr = abs(fr)
    if fr.denominator == 1:
        return f"{sign}{fr.numerator}"
    return f"{sign}\\{cmd}{{{fr.numerator}}}{{{fr.denominator}}}"


def terminating(fr):
    d = fr.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def dec_str(fr):
    """Exact decimal string of a terminating Fraction."""
    sign = "-" if fr < 0 else ""
    fr = abs(fr)
    for places in range(0, 12):
        scaled = fr * 10**places
        if scaled.denominator == 1:
            s = str(scaled.numerator).rjust(places + 1, "0")
            return sign + (s[:-places] + "." + s[-places:] if places else s)
    raise ValueError(fr)


def g_integer(r):
    n = r.choice([r.randint(0, 99), r.randint(100, 9999), r.randint(10000, 2_000_000), -r.randint(1, 500)])
    equiv = [f"{n}.0", f"{{{n}}}", f"\\mathbf{{{n}}}", f"{n}.00", f"\\text{{{n}}}"]
    if abs(n) >= 10000:
        equiv.append(f"{n:,}".replace(",", "{,}"))
    if n > 0:
        equiv.append(f"+{n}")
    wrong = [str(n + r.choice([-2, -1, 1, 2, 10])), str(-n if n else 1), str(n * 2 if n else 3), f"{n}.5"]
    return "integer", str(n), equiv, wrong


def g_fraction(r):
    while True:
        fr = Fraction(r.choice([1, -1]) * r.randint(1, 60), r.randint(2, 48))
        if fr.denominator != 1:
            break
    k = r.randint(2, 5)
    raw = f"\\frac{{{abs(fr.numerator) * k}}}{{{fr.denominator * k}}}"
    sgn = "-" if fr < 0 else ""
    equiv = [
        frac_tex(fr, "dfrac"),
        frac_tex(fr, "tfrac"),
        f"{fr.numerator}/{fr.denominator}",
        sgn + raw,
        f"\\frac{{{fr.numerator}}}{{{fr.denominator}}}",
        f"{sgn}\\left(\\frac{{{abs(fr.numerator)}}}{{{fr.denominator}}}\\right)",
    ]
    if terminating(fr):
        equiv.append(dec_str(fr))
    if abs(fr) > 1:  # mixed-number free improper forms are what models emit
        equiv.append(f"{sgn}\\frac{{{abs(fr.numerator)}}}{{{fr.denominator}}}")
    wrong = [
        frac_tex(Fraction(fr.denominator, fr.numerator) if fr.numerator else fr + 1),
        frac_tex(fr + Fraction(1, fr.denominator)),
        frac_tex(-fr),
        f"\\frac{{{abs(fr.numerator) + 1}}}{{{fr.denominator}}}",
    ]
    return "fraction", frac_tex(fr), equiv, wrong


SQUAREFREE = [2, 3, 5, 6, 7, 10, 11, 13, 14, 15, 17, 19, 21]


def g_radical(r):
    a = r.randint(1, 9)
    b = r.choice(SQUAREFREE)
    if r.random() < 0.5:
        gold = f"{a if a > 1 else ''}\\sqrt{{{b}}}"
        equiv = [f"\\sqrt{{{a * a * b}}}", f"{a} \\sqrt {b}" if b < 10 else f"{a}\\sqrt{{{b}}}",
                 f"\\sqrt{{{b}}} \\cdot {a}", f"{a}\\cdot\\sqrt{{{b}}}", f"{a}*\\sqrt{{{b}}}"]
        wrong = [f"{b}\\sqrt{{{a + 1}}}", f"\\sqrt{{{(a + 1) * b}}}", f"{a + 1}\\sqrt{{{b}}}", f"{a * a * b}"]
        return "radical", gold, equiv, wrong
    d = r.choice([2, 3, 4, 6])
    gold = f"\\frac{{{a if a > 1 else ''}\\sqrt{{{b}}}}}{{{d}}}"
    equiv = [f"\\frac{{{a}}}{{{d}}}\\sqrt{{{b}}}", f"\\dfrac{{\\sqrt{{{a * a * b}}}}}{{{d}}}",
             f"\\frac{{{a * b}}}{{{d}\\sqrt{{{b}}}}}", f"{a}\\sqrt{{{b}}}/{d}"]
    wrong = [f"\\frac{{{a}\\sqrt{{{b}}}}}{{{d + 1}}}", f"\\frac{{{d}}}{{{a}\\sqrt{{{b}}}}}", f"\\frac{{\\sqrt{{{b}}}}}{{{(a + 1) * d}}}"]
    return "radical", gold, equiv, wrong


def poly_tex(coeffs, var="x"):
    """coeffs highest degree first -> LaTeX polynomial."""
    deg = len(coeffs) - 1
    out = []
    for i, c in enumerate(coeffs):
        p = deg - i
        if c == 0:
            continue
        sign = "-" if c < 0 else "+"
        mag = abs(c)
        if p == 0:
            body = str(mag)
        else:
            body = ("" if mag == 1 else str(mag)) + var + (f"^{{{p}}}" if p > 1 else "")
        out.append((sign, body))
    if not out:
        return "0"
    s = ("-" if out[0][0] == "-" else "") + out[0][1]
    for sign, body in out[1:]:
        s += f" {sign} {body}"
    return s


def lin(a, var="x"):
    """(x - a) style factor."""
    if a == 0:
        return var
    return f"({var} {'-' if a > 0 else '+'} {abs(a)})"


def g_expr_x(r):
    roll = r.random()
    if roll < 0.4:  # product of two linear factors
        a, b = r.randint(-9, 9), r.randint(-9, 9)
        while a + b == 0:  # else (x+a)(x+b) == (x-a)(x-b) and a "wrong" form is right
            b = r.randint(-9, 9)
        gold = poly_tex([1, -(a + b), a * b])
        equiv = [lin(a) + lin(b), lin(b) + lin(a), poly_tex([1, -(a + b), a * b]).replace(" ", ""),
                 f"x^2 {'-' if a + b > 0 else '+'} {abs(a + b)}x {'+' if a * b >= 0 else '-'} {abs(a * b)}"]
        wrong = [lin(-a) + lin(-b), poly_tex([1, a + b, a * b]), poly_tex([1, -(a + b), a * b + 1]), lin(a) + lin(b + 1)]
        return "expr_x", gold, equiv, wrong
    if roll < 0.7:  # rational function
        a, b = r.randint(1, 9), r.randint(1, 9)
        gold = f"\\frac{{{a}}}{{x + {b}}}"
        equiv = [f"{a}/(x+{b})", f"\\frac{{{2 * a}}}{{2x + {2 * b}}}", f"\\dfrac{{{a}}}{{{b} + x}}", f"{a}(x+{b})^{{-1}}"]
        wrong = [f"\\frac{{{a}}}{{x - {b}}}", f"\\frac{{{b}}}{{x + {a}}}" if a != b else f"\\frac{{{a + 1}}}{{x + {b}}}", f"\\frac{{{a}x}}{{x + {b}}}"]
        return "expr_x", gold, equiv, wrong
    # derivative / integral style answers
    n, c = r.randint(2, 6), r.randint(2, 9)
    gold = f"{c * n}x^{{{n - 1}}}" if n > 2 else f"{c * n}x"
    equiv = [f"{c}\\cdot {n} x^{{{n - 1}}}", f"x^{{{n - 1}}} \\cdot {c * n}", f"{c * n} x^{n - 1}" if n - 1 < 10 else gold]
    wrong = [f"{c}x^{{{n}}}", f"{c * n}x^{{{n}}}", f"{c * (n - 1)}x^{{{n - 1}}}"]
    return "expr_x", gold, equiv, wrong


def g_interval(r):
    a = r.randint(-20, 10)
    b = a + r.randint(1, 15)
    lo, hi = r.choice(["(", "["]), r.choice([")", "]"])
    shape = r.random()
    if shape < 0.25:
        gold = f"(-\\infty, {b}{hi}"
        equiv = [f"(-\\infty,{b}{hi}", f"\\left(-\\infty, {b}\\right{hi}", f"(-\\infty, {b}.0{hi}"]
        wrong = [f"(-\\infty, {b}{')' if hi == ']' else ']'}", f"({b}, \\infty)", f"(-\\infty, {b + 1}{hi}"]
    elif shape < 0.45:
        gold = f"{lo}{a}, \\infty)"
        equiv = [f"{lo}{a},\\infty)", f"\\left{lo}{a}, \\infty\\right)", f"{lo}{a}, +\\infty)"]
        wrong = [f"{'[' if lo == '(' else '('}{a}, \\infty)", f"(-\\infty, {a}{']' if lo == '(' else ')'}", f"{lo}{a - 1}, \\infty)"]
    elif shape < 0.6:
        gold = f"(-\\infty, {a}) \\cup ({b}, \\infty)"
        equiv = [f"(-\\infty,{a})\\cup({b},\\infty)", f"\\left(-\\infty, {a}\\right) \\cup \\left({b}, \\infty\\right)",
                 f"({b}, \\infty) \\cup (-\\infty, {a})"]
        wrong = [f"({a}, {b})", f"(-\\infty, {a}] \\cup [{b}, \\infty)", f"(-\\infty, {b}) \\cup ({a}, \\infty)"]
    else:
        gold = f"{lo}{a}, {b}{hi}"
        equiv = [f"{lo}{a},{b}{hi}", f"\\left{lo}{a}, {b}\\right{hi}", f"{lo}{a}, \\, {b}{hi}", f"{lo}{a}.0, {b}{hi}"]
        flip_lo = "[" if lo == "(" else "("
        wrong = [f"{flip_lo}{a}, {b}{hi}", f"{lo}{a}, {b + 1}{hi}", f"{lo}{-b}, {-a}{hi}" if a != -b else f"{lo}{a - 1}, {b}{hi}"]
    return "interval", gold, equiv, wrong


def g_tuple(r):
    k = r.choice([2, 2, 2, 3])
    vals = [r.randint(-12, 12) for _ in range(k)]
    while len(set(vals)) < k:
        vals = [r.randint(-12, 12) for _ in range(k)]
    body = ", ".join(map(str, vals))
    gold = f"({body})"
    equiv = [f"({','.join(map(str, vals))})", f"\\left({body}\\right)", "(" + ",\\ ".join(map(str, vals)) + ")",
             "(" + ", ".join(f"{v}.0" if i == 0 else str(v) for i, v in enumerate(vals)) + ")"]
    wrong = ["(" + ", ".join(map(str, reversed(vals))) + ")", "(" + ", ".join(str(v + (i == k - 1)) for i, v in enumerate(vals)) + ")",
             "(" + ", ".join(str(-v) for v in vals) + ")"]
    return "tuple", gold, equiv, wrong


def g_decimal(r):
    places = r.choice([1, 2, 2, 3])
    n = r.randint(1, 99999)
    fr = Fraction(n, 10**places)
    if fr.denominator == 1:
        fr += Fraction(1, 10**places)
    gold = dec_str(fr)
    equiv = [gold + "0", frac_tex(fr), f"{fr.numerator}/{fr.denominator}"]
    if fr < 1:
        equiv.append(gold.lstrip("0") or gold)
    wrong = [dec_str(fr + Fraction(1, 10**places)), dec_str(fr * 10), dec_str(fr + 1), dec_str(fr / 10)]
    return "decimal", gold, equiv, wrong


def g_pi(r):
    shape = r.random()
    if shape < 0.45:
        fr = Fraction(r.randint(1, 11), r.choice([2, 3, 4, 5, 6, 8, 12]))
        if fr.denominator == 1:
            fr = Fraction(fr.numerator, fr.numerator + 1)
        p, q = fr.numerator, fr.denominator
        pn = "" if p == 1 else str(p)
        gold = f"\\frac{{{pn}\\pi}}{{{q}}}"
        equiv = [f"{pn}\\pi/{q}", f"\\frac{{{p}}}{{{q}}}\\pi", f"\\dfrac{{{pn}\\pi}}{{{q}}}", f"\\frac{{{2 * p}\\pi}}{{{2 * q}}}"]
        wrong = [f"\\frac{{{pn}\\pi}}{{{q + 1}}}", f"\\frac{{{q}\\pi}}{{{p}}}" if p != q else "\\pi", f"\\frac{{{p}}}{{{q}}}", f"{p}\\pi"]
        return "pi", gold, equiv, wrong
    if shape < 0.75:
        c = r.randint(2, 99)
        gold = f"{c}\\pi"
        equiv = [f"{c} \\pi", f"\\pi \\cdot {c}", f"{c}\\cdot\\pi", f"{c}*\\pi"]
        wrong = [f"{c + 1}\\pi", f"{c}", f"{2 * c}\\pi", f"\\frac{{{c}\\pi}}{{2}}"]
        return "pi", gold, equiv, wrong
    a, b = r.randint(2, 20), r.randint(1, 9)
    gold = f"{a}\\pi - {b}\\sqrt{{3}}" if b > 1 else f"{a}\\pi - \\sqrt{{3}}"
    equiv = [f"-{b}\\sqrt{{3}} + {a}\\pi", f"{a} \\pi - {b} \\sqrt{{3}}", f"\\pi \\cdot {a} - \\sqrt{{{3 * b * b}}}"]
    wrong = [f"{a}\\pi + {b}\\sqrt{{3}}", f"{a}\\pi - {b}\\sqrt{{2}}", f"{a + 1}\\pi - {b}\\sqrt{{3}}"]
    return "pi", gold, equiv, wrong


def g_set(r):
    vals = sorted(r.sample(range(-9, 15), r.randint(2, 4)))
    gold = "\\{" + ", ".join(map(str, vals)) + "\\}"
    shuffled = vals[:]
    while shuffled == vals:
        r.shuffle(shuffled)
    equiv = ["\\{" + ", ".join(map(str, shuffled)) + "\\}", "\\left\\{" + ",".join(map(str, vals)) + "\\right\\}"]
    wrong = ["\\{" + ", ".join(map(str, vals[:-1])) + "\\}", "\\{" + ", ".join(str(v + 1) for v in vals) + "\\}"]
    return "set", gold, equiv, wrong


# Weights roughly follow answer-type frequencies in competition-math sets
# (integers dominate), while keeping every kind well represented.
GENERATORS = [
    (g_integer, 30), (g_fraction, 15), (g_radical, 10), (g_expr_x, 10), (g_interval, 8),
    (g_tuple, 7), (g_decimal, 7), (g_pi, 9), (g_set, 4),
]


# ---------------------------------------------------------------------------
# Reasoning text.
# ---------------------------------------------------------------------------

OPENERS = [
    "Let me work through this step by step.",
    "We need to carefully set up the problem first.",
    "Okay, so I need to find the requested quantity. Let me start by restating what is given.",
    "First, let's understand the structure of the problem.",
    "To solve this, I'll break it into smaller parts.",
]

STEP_TEMPLATES = [
    "Let $a = {a}$ and $b = {b}$. Then $a + b = {apb}$ and $ab = {ab}$.",
    "Substituting $x = {a}$ into the equation gives ${a}^2 - {b} \\cdot {a} = {sq_minus}$.",
    "We can rewrite the expression as $\\frac{{{a}}}{{{b}}} + \\frac{{{b}}}{{{a}}} = \\frac{{{a2b2}}}{{{ab}}}$.",
    "By the Pythagorean theorem, the hypotenuse is $\\sqrt{{{a}^2 + {b}^2}} = \\sqrt{{{a2b2}}}$.",
    "Hmm, wait. Let me double-check that computation: ${a} \\times {b} = {ab}$. Yes, that's right.",
    "Now consider the quadratic $t^2 - {apb}t + {ab} = 0$, whose roots are $t = {a}$ and $t = {b}$.",
    "Using the identity $(a+b)^2 = a^2 + 2ab + b^2$, we get ${apb}^2 = {a2b2} + 2 \\cdot {ab}$.",
    "The sum of the first ${a}$ positive integers is $\\frac{{{a}({a}+1)}}{{2}} = {tri}$.",
    "Since $\\gcd({a}, {b}) = {g}$, the fraction simplifies accordingly.",
    "Taking the derivative, $f'(x) = {a}x^{{2}} - {b}$, which vanishes at $x^2 = \\frac{{{b}}}{{{a}}}$.",
    "Let's check the boundary case separately: when $n = {a}$ the inequality becomes ${a} \\le {b}$, which is {truth}.",
    "So the area of the region is $\\frac{{1}}{{2}} \\cdot {a} \\cdot {b} = \\frac{{{ab}}}{{2}}$.",
    "Alternatively, we could use complementary counting: $\\binom{{{n}}}{{2}} = {choose}$ total pairs.",
    "I think I made an arithmetic slip earlier. Recomputing: ${a} + {b} = {apb}$, not ${apb1}$.",
    "This means the angle satisfies $\\sin\\theta = \\frac{{{a}}}{{{c}}}$ and $\\cos\\theta = \\frac{{{b}}}{{{c}}}$.",
    "Multiplying both sides by ${b}$ gives ${ab} = {b}k$, so $k = {a}$.",
    "In modular arithmetic, ${ab} \\equiv {abmod} \\pmod{{7}}$.",
]

FILLER = [
    "This is consistent with what we found above.",
    "Let me make sure I haven't missed any cases.",
    "That seems reasonable, so let's continue.",
    "We should verify that this satisfies all of the original constraints.",
    "Note that the problem asks for the exact value, not a decimal approximation.",
    "Therefore the remaining case contributes nothing new.",
    "Putting these pieces together gives the result.",
]

INTERMEDIATE_BOX = "So, for the first part, we have $\\boxed{{{v}}}$ as an intermediate value, but we still need to finish."

ENDINGS = [
    "Therefore, the answer is $\\boxed{{{ans}}}$.",
    "\n\n**Final Answer**\n\\[\n\\boxed{{{ans}}}\n\\]",
    "So the final answer is \\boxed{{{ans}}}.",
    "\n\nThe final answer is $\\boxed{{{ans}}}$. I hope it is correct.",
    "Thus, the required value is \\(\\boxed{{{ans}}}\\).",
    "</think>\n\nAfter simplifying, the answer is:\n\n$$\\boxed{{{ans}}}$$",
]


def step(r):
    a, b = r.randint(2, 40), r.randint(2, 40)
    n = r.randint(4, 30)
    return r.choice(STEP_TEMPLATES).format(
        a=a, b=b, apb=a + b, apb1=a + b + 1, ab=a * b, a2b2=a * a + b * b, sq_minus=a * a - b * a,
        tri=a * (a + 1) // 2, g=math.gcd(a, b), truth="true" if a <= b else "false",
        n=n, choose=n * (n - 1) // 2, c=r.randint(41, 90), abmod=(a * b) % 7,
    )


def reasoning(r, target_len):
    parts = [r.choice(OPENERS)]
    length = len(parts[0])
    while length < target_len:
        para = []
        for _ in range(r.randint(2, 5)):
            para.append(step(r) if r.random() < 0.7 else r.choice(FILLER))
        text = " ".join(para)
        parts.append(text)
        length += len(text) + 2
    return "\n\n".join(parts)


def make_item(r, pid, sample_idx, gold_info):
    kind, gold, equiv, wrong = gold_info
    # Log-uniform length between ~200 and ~4000 chars of reasoning.
    target_len = int(math.exp(r.uniform(math.log(200), math.log(4000))))
    body = reasoning(r, target_len)
    roll = r.random()
    if roll < 0.02:
        intended, boxed = "no_answer", None
        body = body[: max(80, int(len(body) * r.uniform(0.5, 0.95)))]  # truncated mid-thought
    elif roll < 0.51:
        intended, boxed = "correct", r.choice(equiv)
    else:
        intended, boxed = "wrong", r.choice(wrong)
    if boxed is not None:
        if r.random() < 0.05:  # an earlier, non-final boxed value
            body = body + "\n\n" + INTERMEDIATE_BOX.format(v=r.randint(2, 999)) + "\n\n" + reasoning(r, 150)
        body = body + " " + r.choice(ENDINGS).format(ans=boxed)
    return {
        "id": f"bench-{pid:05d}-{sample_idx}",
        "problem_id": f"p{pid:05d}",
        "task": "math",
        "response": body,
        "answer": gold,
        "intended": intended,
        "kind": kind,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output JSONL path")
    ap.add_argument("--n", type=int, default=5000, help="number of items (default 5000)")
    ap.add_argument("--seed", type=int, default=20240501)
    args = ap.parse_args()

    r = random.Random(args.seed)
    gens = [g for g, _ in GENERATORS]
    weights = [w for _, w in GENERATORS]
    items = []
    pid = 0
    while len(items) < args.n:
        gold_info = r.choices(gens, weights)[0](r)
        for s in range(SAMPLES_PER_PROBLEM):
            if len(items) >= args.n:
                break
            items.append(make_item(r, pid, s, gold_info))
        pid += 1
    r.shuffle(items)
    with open(args.out, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
