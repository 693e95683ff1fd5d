//! LiveCodeBench's rules, from `lcb_runner/evaluation/testing_util.py`
//! (`grade_stdio`, `grade_call_based`, `import_string`) and
//! `lcb_runner/evaluation/compute_code_generation_metrics.py` (which calls
//! `sys.set_int_max_str_digits(50000)` in the process that runs programs).
//!
//! Standard output: the whole output and the expected output are
//! `strip()`ped and split on `\n`; each line is `strip()`ped. The line
//! counts must be equal; each pair of lines must be equal as text, or else
//! both split on white space into tokens that all parse as `Decimal` and
//! whose lists are equal (exact decimal values: `1.0` = `1`, `0.1` ≠
//! `0.10000001`, `1e3` = `1000`). Return values: Python's `==`, no
//! tolerance.

use super::python::{split, strip, Decimal};

/// The runner's preamble: its star imports, plain imports and recursion
/// limit, in its order, then the digit limit its evaluator sets.
pub const PREAMBLE: &str = concat!(
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n",
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n",
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n",
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n",
    "from builtins import *\nfrom typing import *\n",
    "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\n",
    "import copy\nimport math\nimport random\nimport statistics\nimport itertools\nimport functools\n",
    "import operator\nimport io\nimport sys\nimport json\n",
    "sys.setrecursionlimit(50000)\nsys.set_int_max_str_digits(50000)\n",
);

/// `val.strip()` split on `\n`, each line `strip()`ped.
fn stripped_lines(text: &str) -> Vec<&str> {
    strip(text).split('\n').map(strip).collect()
}

/// The tokens of a line as decimals, or `None` when one is not a number.
fn decimals(line: &str) -> Option<Vec<Decimal>> {
    split(line).into_iter().map(Decimal::parse).collect()
}

/// True when `actual` matches `expected` under LiveCodeBench's rule.
pub fn outputs_match(actual: &str, expected: &str) -> bool {
    let (got, want) = (stripped_lines(actual), stripped_lines(expected));
    got.len() == want.len()
        && got.iter().zip(&want).all(|(g, w)| {
            g == w
                || match (decimals(g), decimals(w)) {
                    (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.equals(y)),
                    _ => false,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each expectation is what `grade_stdio` decides for the pair.
    #[test]
    fn token_by_token() {
        let cases: &[(&str, &str, bool)] = &[
            ("3\n", "3", true),
            ("  1 2  \n\n", "1 2", true),
            // Inner spacing: not equal as text, equal as decimals.
            ("1  2", "1 2", true),
            // ... but words must match as text.
            ("a  b", "a b", false),
            ("YES", "yes", false),
            // Exact decimals: no tolerance.
            ("0.3333333", "0.33333333", false),
            ("1.0", "1", true),
            ("1.50", "1.5", true),
            ("1e3", "1000", true),
            ("-0", "0", true),
            ("+7", "7", true),
            ("1_000", "1000", true),
            ("Infinity", "inf", true),
            ("nan", "nan", true), // equal as text before any decimal is made
            ("nan 1", "nan 2", false),
            ("100000000000000000001", "100000000000000000000", false),
            ("0.1", "0.10000000000000001", false),
            // Line structure: blank lines inside count, trailing ones do not.
            ("1\n\n2", "1\n2", false),
            ("1\n2\n\n\n", "1\n2", true),
            ("1 2", "1\n2", false),
            ("", "", true),
            ("", "0", false),
            ("1\r\n2\r\n", "1\n2", true),
            ("3 4", "3 4 5", false),
        ];
        for (actual, expected, ok) in cases {
            assert_eq!(outputs_match(actual, expected), *ok, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn preamble_raises_the_digit_limit_and_recursion_limit() {
        assert!(PREAMBLE.contains("sys.set_int_max_str_digits(50000)"));
        assert!(PREAMBLE.contains("sys.setrecursionlimit(50000)"));
        assert!(PREAMBLE.starts_with("from string import *"));
    }
}
