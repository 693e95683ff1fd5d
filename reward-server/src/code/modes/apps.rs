//! The APPS runner's rules, from `hendrycks/apps` `eval/testing_util.py`
//! (`run_test`, `custom_compare_`, `stripped_string_compare`), which TACO,
//! PRIME and verl's `prime_code` started from.
//!
//! Standard output passes when any of these holds, tried in the runner's
//! order (`out` is the output's `splitlines()`, `gt` the expected text):
//!
//! 1. `"\n".join(out).strip() == gt.strip()`, or the same with every output
//!    line `strip()`ped first;
//! 2. `out` equals the non-empty lines of `gt` split on `\n`, each
//!    stripped (`out` as it is, or without its empty lines);
//! 3. every non-empty output line and every such expected line is one
//!    `float()`, as many of each, and numpy's `allclose` (rtol 1e-5, atol
//!    1e-8) holds;
//! 4. the set of lines, each as the set of its tokens, is the same on both
//!    sides: line order, token order and repeats do not matter;
//! 5. the same with every token rounded with `round(float(t), 3)`.
//!
//! Rules 4 and 5 accept wrong answers (the lines of a sorted output in any
//! order): use this mode to reproduce APPS numbers, not to train.
//!
//! Return values: `==` (Python's), or, when the expected value is a
//! non-empty list `[v]`, `== v` (APPS stores call-based outputs wrapped in a
//! list).

use std::collections::BTreeSet;

use super::python::{float, isclose, round3, split, splitlines, strip, values_equal};
use crate::code::value::Value;

/// The runner's preamble, except `import numpy as np`, which is tried
/// (the guest has no numpy), and the module-level `stdin`/`stdout` names
/// its stdio wrapper defines.
pub const PREAMBLE: &str = concat!(
    "import sys\nimport time\nimport itertools\n",
    "from itertools import accumulate, product, permutations, combinations\n",
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n",
    "from functools import lru_cache\nimport math\n",
    "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n",
    "import fractions\nfrom typing import List, Tuple\n",
    "try:\n    import numpy as np\nexcept ImportError:\n    pass\n",
    "import random\nimport heapq\nfrom heapq import *\n",
    "stdin = sys.stdin\nstdout = sys.stdout\n",
);

/// True when `actual` matches `expected` under the APPS rules above.
pub fn outputs_match(actual: &str, expected: &str) -> bool {
    let out = splitlines(actual);
    let gt = strip(expected);
    // Rule 1.
    if strip(&out.join("\n")) == gt {
        return true;
    }
    let stripped: Vec<&str> = out.iter().map(|l| strip(l)).collect();
    if strip(&stripped.join("\n")) == gt {
        return true;
    }
    // Rule 2: the expected lines, empty ones dropped before stripping.
    let gt_lines: Vec<&str> = expected
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(strip)
        .collect();
    if out == gt_lines {
        return true;
    }
    let out_lines: Vec<&str> = out.iter().copied().filter(|l| !l.is_empty()).collect();
    if out_lines == gt_lines {
        return true;
    }
    // Rule 3.
    let floats = |lines: &[&str]| lines.iter().map(|l| float(l)).collect::<Option<Vec<f64>>>();
    if let (Some(a), Some(b)) = (floats(&out_lines), floats(&gt_lines)) {
        if a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| isclose(*x, *y, 1e-5, 1e-8)) {
            return true;
        }
    }
    // Rules 4 and 5.
    let out_sets: Vec<Vec<&str>> = out_lines
        .iter()
        .map(|l| split(l))
        .filter(|t| !t.is_empty())
        .collect();
    let gt_sets: Vec<Vec<&str>> = gt_lines.iter().map(|l| split(l)).collect();
    let set_of_sets = |lines: &[Vec<&str>]| -> BTreeSet<BTreeSet<String>> {
        lines
            .iter()
            .map(|l| l.iter().map(|t| t.to_string()).collect())
            .collect()
    };
    if set_of_sets(&out_sets) == set_of_sets(&gt_sets) {
        return true;
    }
    let rounded = |lines: &[Vec<&str>]| -> Option<BTreeSet<BTreeSet<String>>> {
        lines
            .iter()
            .map(|l| {
                l.iter()
                    .map(|t| float(t).map(round3))
                    .collect::<Option<BTreeSet<String>>>()
            })
            .collect()
    };
    matches!((rounded(&out_sets), rounded(&gt_sets)), (Some(a), Some(b)) if a == b && !has_nan(&a))
}

/// NaN is never equal to itself, so a set holding one matches nothing.
fn has_nan(sets: &BTreeSet<BTreeSet<String>>) -> bool {
    sets.iter().flatten().any(|t| t == "NaN")
}

/// True when the return value `actual` matches `expected` under the APPS
/// rule: `==`, or `== expected[0]` for a non-empty list.
pub fn values_match(actual: &Value, expected: &Value) -> bool {
    values_equal(actual, expected)
        || matches!(expected, Value::Array(items) if !items.is_empty() && values_equal(actual, &items[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::value::parse;

    /// Each expectation is what `run_test` in hendrycks/apps decides.
    #[test]
    fn token_by_token() {
        let cases: &[(&str, &str, bool, &str)] = &[
            ("3\n", "3\n", true, "rule 1"),
            ("  1 2  \n", "1 2", true, "rule 1: the whole output stripped"),
            ("1 \n2 \n", "1\n2", true, "rule 1: every line stripped"),
            ("1\n\n2\n", "1\n2\n", true, "rule 2: empty output lines dropped"),
            ("1  2", "1 2", true, "rule 4: the same tokens"),
            ("0.333333", "0.3333333", true, "rule 3: allclose, rtol 1e-5"),
            ("0.33", "0.3333333", false, "outside allclose and round(…, 3)"),
            ("0.3334", "0.3333", true, "rule 5: both round to 0.333"),
            ("1 0.5", "1 0.50", true, "rule 5: rounded tokens"),
            ("2\n1\n", "1\n2\n", true, "rule 4: line order does not matter"),
            ("2 1", "1 2", true, "rule 4: token order does not matter"),
            ("1 1 2", "1 2", true, "rule 4: repeats collapse"),
            ("YES", "yes", false, "words are case-sensitive"),
            ("1 2 3", "1 2", false, "a token too many"),
            ("", "0", false, "nothing printed"),
            ("nan", "nan", true, "rule 1: equal as text"),
            ("nan 1", "nan 1.0", false, "NaN equals nothing once rounded"),
            ("1e3", "1000", true, "rule 3: floats"),
        ];
        for (actual, expected, ok, why) in cases {
            assert_eq!(
                outputs_match(actual, expected),
                *ok,
                "{actual:?} vs {expected:?}: {why}"
            );
        }
    }

    #[test]
    fn wrapped_return_values() {
        let m = |a: &str, e: &str| values_match(&parse(a).unwrap(), &parse(e).unwrap());
        assert!(m("3", "[3]"), "APPS wraps call-based outputs in a list");
        assert!(m("[3]", "[3]"));
        assert!(m("[1, 2]", "[[1, 2]]"));
        assert!(!m("3", "[]"));
        assert!(m("1.0", "1"), "Python's ==");
        assert!(m("true", "1"), "True == 1 in Python");
        assert!(!m("0.30000000000000004", "0.3"), "no tolerance");
        assert!(!m("\"3\"", "[3]"));
    }
}
