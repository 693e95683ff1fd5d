//! Comparing a program's standard output with the expected output.
//!
//! Line by line, tokens split on white space; trailing white space and
//! trailing blank lines are ignored. Two tokens that both parse as floats are
//! equal within [`FLOAT_TOL`] absolute or relative, except that two integers
//! (`-?[0-9]+`) compare exactly, big ones included; other tokens must match
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
    // Two integers compare exactly: as floats, 10^20 and 10^20 + 1 would be
    // "equal within 1e-6 relative".
    if let (Some(x), Some(y)) = (integer(a), integer(b)) {
        return x == y;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            let diff = (x - y).abs();
            diff <= FLOAT_TOL || diff <= FLOAT_TOL * x.abs().max(y.abs())
        }
        _ => false,
    }
}

/// `token` as an exact integer when it is one (`-12`, `+7`, `007`).
pub(crate) fn integer(token: &str) -> Option<num_bigint::BigInt> {
    let digits = token.strip_prefix(['-', '+']).unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.strip_prefix('+').unwrap_or(token).parse().ok()
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

    #[test]
    fn integers_compare_exactly() {
        assert!(!outputs_match("100000000000000000001", "100000000000000000000"));
        assert!(outputs_match("100000000000000000001", "100000000000000000001"));
        assert!(outputs_match("-0 +7 007", "0 7 7"));
        assert!(outputs_match("3", "3.0000000001"));
        assert!(!outputs_match("1e3", "999"));
    }
}
