//! Comparing a program's standard output with the expected output, and the
//! default rule for numbers that `stdio` tokens and `function` return values
//! share ([`numbers_match`]).
//!
//! Line by line, tokens split on white space; trailing white space and
//! trailing blank lines are ignored. Two tokens that are the same text match;
//! two tokens that are both numbers match by [`numbers_match`]; other tokens
//! must be the same text.
//!
//! # The default numeric rule
//!
//! The expected number decides how exact the comparison is:
//!
//! - an **integer** (`-?[0-9]+`, a `+` allowed) must be met exactly: the
//!   actual number must have the same value, to the last digit and whatever
//!   its size. It may be written as a decimal (`3.0`, `3.000`, `3e0`), but
//!   `999999000.0` is not `999999937`, nor `3.0000001` `3`;
//! - a number **with a fractional part or an exponent** (`0.5`, `1e-3`) is
//!   met within [`FLOAT_TOL`] absolute or relative (`0.3333333` meets
//!   `0.33333333`).
//!
//! LiveCodeBench (`lcb_runner/evaluation/testing_util.py`, `grade_stdio`)
//! compares a line that differs as text token by token as Python `Decimal`s,
//! exactly, so it too rejects `999999000.0` for `999999937` and accepts
//! `3.0` for `3`; where the expected token has a fractional part it also
//! rejects `0.3333333` for `0.33333333`, which this rule accepts. Per-benchmark
//! rules that differ from this default sit beside it, never in it.

/// Absolute and relative tolerance for an expected number that is not an
/// integer.
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

fn tokens_match(actual: &str, expected: &str) -> bool {
    actual == expected || numbers_match(actual, expected)
}

/// The default numeric rule: whether the number written `actual` meets the
/// number written `expected` (see the module docs). Text that is not a
/// number (`nan`, `inf`, `0x10`, `1_000`) matches nothing here.
pub fn numbers_match(actual: &str, expected: &str) -> bool {
    let Some(want) = Decimal::parse(expected) else {
        return false;
    };
    let Some(got) = Decimal::parse(actual) else {
        return false;
    };
    if want.is_integer_literal {
        return got.equals_integer(&want);
    }
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            let diff = (x - y).abs();
            diff <= FLOAT_TOL || diff <= FLOAT_TOL * x.abs().max(y.abs())
        }
        _ => false,
    }
}

/// A decimal number as written: `[+-] digits [. digits] [e [+-] digits]`,
/// kept as its significant digits and a power of ten, so that it can be
/// compared with an integer exactly without building a huge number
/// (`1e999999999`).
#[derive(Debug, PartialEq)]
struct Decimal {
    negative: bool,
    /// The significant digits, without leading or trailing zeros; empty for
    /// zero.
    digits: String,
    /// The value is `digits × 10^exponent`.
    exponent: i128,
    /// Written as `-?[0-9]+` (or with a `+`): no point, no exponent.
    is_integer_literal: bool,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(at) => (&mantissa[..at], Some(&mantissa[at + 1..])),
            None => (mantissa, None),
        };
        let frac = frac_part.unwrap_or("");
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac.is_empty()) || !all_digits(int_part) || !all_digits(frac) {
            return None;
        }
        let mut exponent: i128 = match exp {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return None;
                }
                // Exponents past 10^30 are clamped: no number in a test is
                // that far from 1, and the comparison stays exact below it.
                let significant = digits.trim_start_matches('0');
                let magnitude: i128 = match significant.len() {
                    0 => 0,
                    1..=30 => significant.parse().unwrap_or(0),
                    _ => 10i128.pow(30),
                };
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        exponent -= frac.len() as i128;
        let all: String = [int_part, frac].concat();
        let trimmed = all.trim_start_matches('0');
        let significant = trimmed.trim_end_matches('0');
        exponent += (trimmed.len() - significant.len()) as i128;
        Some(Decimal {
            negative: negative && !significant.is_empty(),
            digits: significant.to_string(),
            exponent: if significant.is_empty() { 0 } else { exponent },
            is_integer_literal: exp.is_none() && frac_part.is_none(),
        })
    }

    /// Exactly equal to `integer` (whose own exponent is ≥ 0).
    fn equals_integer(&self, integer: &Decimal) -> bool {
        self.negative == integer.negative
            && self.digits == integer.digits
            && self.exponent == integer.exponent
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
        // An integer may meet an expected decimal within the tolerance.
        assert!(outputs_match("3", "3.0000000001"));
    }

    #[test]
    fn integers_compare_exactly() {
        assert!(!outputs_match("100000000000000000001", "100000000000000000000"));
        assert!(outputs_match("100000000000000000001", "100000000000000000001"));
        assert!(outputs_match("-0 +7 007", "0 7 7"));
        assert!(!outputs_match("1e3", "999"));
    }

    /// The case: an integer expected is met only by the same value.
    #[test]
    fn an_expected_integer_is_met_exactly() {
        assert!(!numbers_match("999999000.0", "999999937"));
        assert!(!numbers_match("999999937.0000001", "999999937"));
        assert!(!numbers_match("3.0000000001", "3"));
        assert!(!numbers_match("2.9999999999", "3"));
        assert!(numbers_match("3.0", "3"));
        assert!(numbers_match("3.000", "3"));
        assert!(numbers_match("3e0", "3"));
        assert!(numbers_match("30e-1", "3"));
        assert!(numbers_match("1e16", "10000000000000000"));
        assert!(numbers_match("-0.0", "0"));
        assert!(numbers_match("0e5", "-0"));
        assert!(numbers_match("+12.50e1", "125"));
        assert!(!numbers_match("-3.0", "3"));
        assert!(!numbers_match("1e999999999999999999999999999999999", "1"));
        assert!(!numbers_match("inf", "1"));
        assert!(!numbers_match("nan", "0"));
        assert!(!numbers_match("0x10", "16"));
        assert!(!numbers_match("1_000", "1000"));
        assert!(!numbers_match(".", "0"));
        assert!(!numbers_match("1e", "1"));
        assert!(numbers_match("3.", "3"));
        assert!(numbers_match(".5e1", "5"));
        assert!(outputs_match("999999937 3.0", "999999937 3"));
        assert!(!outputs_match("999999000.0", "999999937"));
    }

    #[test]
    fn decimals_keep_their_digits_and_power() {
        let d = Decimal::parse("-0012.3400e2").unwrap();
        assert_eq!((d.negative, d.digits.as_str(), d.exponent), (true, "1234", 0));
        let zero = Decimal::parse("-0.000").unwrap();
        assert_eq!(
            (zero.negative, zero.digits.as_str(), zero.exponent),
            (false, "", 0)
        );
        let big = Decimal::parse("5000").unwrap();
        assert_eq!((big.digits.as_str(), big.exponent), ("5", 3));
        assert!(big.is_integer_literal);
        assert!(!Decimal::parse("5000.").unwrap().is_integer_literal);
        assert_eq!(
            Decimal::parse("1e-99999999999999999999999999999999999")
                .unwrap()
                .exponent,
            -(10i128.pow(30))
        );
    }
}
