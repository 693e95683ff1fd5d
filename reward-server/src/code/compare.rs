//! Comparing a program's standard output with the expected output.
//!
//! Line by line, tokens split on white space; trailing white space and
//! trailing blank lines are ignored. Two tokens that both parse as floats are
//! equal within [`FLOAT_TOL`] absolute or relative; other tokens must match
//! exactly.

/// Absolute and relative tolerance for tokens that are both numbers.
pub const FLOAT_TOL: f64 = 1e-6;

/// True when `actual` matches `expected` under the rules above.
pub fn outputs_match(actual: &str, expected: &str) -> bool {
    let lines = |s: &str| -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = s
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        while v.last().is_some_and(|l| l.is_empty()) {
            v.pop();
        }
        v
    };
    let (a, e) = (lines(actual), lines(expected));
    a.len() == e.len()
        && a.iter()
            .zip(&e)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| tokens_match(p, q)))
}

fn tokens_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            let diff = (x - y).abs();
            diff <= FLOAT_TOL || diff <= FLOAT_TOL * x.abs().max(y.abs())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_trailing_lines() {
        assert!(outputs_match("1 2\n3\n", "1 2\n3"));
        assert!(outputs_match("1   2  \n3\n\n\n", "1 2\n3\n"));
        assert!(!outputs_match("1 2 3\n", "1 2\n3\n"));
        assert!(!outputs_match("", "0\n"));
        assert!(outputs_match("", "\n\n"));
    }

    #[test]
    fn floats_within_tolerance() {
        assert!(outputs_match("0.3333333", "0.33333333"));
        assert!(outputs_match("1000000.5", "1000000.0"));
        assert!(!outputs_match("0.333", "0.3333333"));
        assert!(!outputs_match("nan", "nan2"));
        assert!(!outputs_match("YES", "yes"));
    }
}
