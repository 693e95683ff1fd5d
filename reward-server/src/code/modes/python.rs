//! Python's text and value semantics, as the benchmarks' runners use them:
//! `str.strip()`, `str.split()`, `str.splitlines()`, `float()`, `Decimal()`
//! and `==` between values that came through JSON.
//!
//! Only what the comparison modes need, written from the Python language
//! reference (built-in types, `decimal`), not from any runner's code.

use num_bigint::BigInt;
use num_traits::{ToPrimitive, Zero};

use crate::code::value::Value;

/// `str.isspace()` for one character: Unicode white space, plus the four
/// separator controls U+001C..U+001F that Python counts and Rust does not.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.strip()`.
pub(crate) fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `s.split()`: runs of white space separate, none are kept.
pub(crate) fn split(s: &str) -> Vec<&str> {
    s.split(is_space).filter(|t| !t.is_empty()).collect()
}

/// `s.splitlines()`: every line boundary Python knows (`\n`, `\r`, `\r\n`,
/// `\v`, `\f`, U+001C..U+001E, U+0085, U+2028, U+2029); no empty last line
/// for a final boundary.
pub(crate) fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if boundary {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Removes the underscores of PEP 515 digit grouping, or `None` when one is
/// not between two digits.
fn ungroup(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let before = i.checked_sub(1).map(|j| b[j]);
            let after = b.get(i + 1).copied();
            if !(before.is_some_and(|x| x.is_ascii_digit()) && after.is_some_and(|x| x.is_ascii_digit())) {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

/// `float(s)`: surrounding white space allowed, digit grouping, `inf`,
/// `infinity` and `nan` in any case; `None` where Python raises.
pub(crate) fn float(s: &str) -> Option<f64> {
    let t = strip(s);
    let (sign, body) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    let lower = body.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    let plain = ungroup(body)?;
    let ok = !plain.is_empty()
        && plain
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && plain.bytes().any(|c| c.is_ascii_digit())
        && !plain.starts_with(['+', '-']);
    if !ok {
        return None;
    }
    plain.parse::<f64>().ok().map(|x| sign * x)
}

/// A `decimal.Decimal` made from a string, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decimal {
    /// Any zero (`0`, `-0.00`, `0e5`): all equal.
    Zero,
    /// `(-1)^negative × digits × 10^exponent`, `digits` without leading or
    /// trailing zeros, so equal values have equal fields.
    Finite {
        /// The sign.
        negative: bool,
        /// The significant digits.
        digits: String,
        /// The power of ten of the last digit.
        exponent: i128,
    },
    /// `Infinity` or `-Infinity`.
    Infinite {
        /// The sign.
        negative: bool,
    },
    /// `NaN` or `sNaN`: equal to nothing.
    NaN,
}

impl Decimal {
    /// `Decimal(s)` for a token, or `None` where Python raises
    /// `InvalidOperation` (ASCII digits only).
    pub(crate) fn parse(s: &str) -> Option<Decimal> {
        let t = strip(s);
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            return Some(Decimal::Infinite { negative });
        }
        for nan in ["nan", "snan"] {
            if let Some(rest) = lower.strip_prefix(nan) {
                return rest.bytes().all(|c| c.is_ascii_digit()).then_some(Decimal::NaN);
            }
        }
        let plain = ungroup(body)?;
        let (mantissa, exp_text) = match plain.find(['e', 'E']) {
            Some(k) => (&plain[..k], Some(&plain[k + 1..])),
            None => (plain.as_str(), None),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(k) => (&mantissa[..k], &mantissa[k + 1..]),
            None => (mantissa, ""),
        };
        let digits_only = |p: &str| p.bytes().all(|c| c.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty()) || !digits_only(int_part) || !digits_only(frac_part)
        {
            return None;
        }
        let mut exponent: i128 = match exp_text {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits_only(digits) {
                    return None;
                }
                e.parse().ok()?
            }
        };
        exponent -= frac_part.len() as i128;
        let all = format!("{int_part}{frac_part}");
        let trimmed = all.trim_start_matches('0');
        if trimmed.is_empty() {
            return Some(Decimal::Zero);
        }
        let significant = trimmed.trim_end_matches('0');
        exponent += (trimmed.len() - significant.len()) as i128;
        Some(Decimal::Finite {
            negative,
            digits: significant.to_string(),
            exponent,
        })
    }

    /// Python's `==` between two decimals: numeric equality, NaN equal to
    /// nothing.
    pub(crate) fn equals(&self, other: &Decimal) -> bool {
        !matches!(self, Decimal::NaN) && self == other
    }
}

/// A JSON number as Python's `json.loads` reads it: an `int` when the text
/// has no fraction or exponent, else a `float`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Number {
    /// An exact integer.
    Int(BigInt),
    /// A double.
    Float(f64),
}

impl Number {
    /// The number of a JSON number's text (`None` for text that is not one).
    pub(crate) fn of(text: &str) -> Option<Number> {
        if text.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
            text.parse::<f64>().ok().map(Number::Float)
        } else {
            text.parse::<BigInt>().ok().map(Number::Int)
        }
    }

    /// As a double (numpy's view of a Python number).
    pub(crate) fn as_f64(&self) -> f64 {
        match self {
            Number::Int(n) => n.to_f64().unwrap_or(f64::NAN),
            Number::Float(x) => *x,
        }
    }
}

/// Python's `==` between an `int` and a `float`: exact, as Python compares
/// them (`10**20 == 1e20`, `2**53 + 1 != 2.0**53`).
fn int_equals_float(n: &BigInt, x: f64) -> bool {
    if !x.is_finite() || x.fract() != 0.0 {
        return false;
    }
    if x == 0.0 {
        return n.is_zero();
    }
    // A finite integral double is m × 2^e exactly.
    let bits = x.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = if exp == 0 {
        (bits & ((1 << 52) - 1)) << 1
    } else {
        (bits & ((1 << 52) - 1)) | (1 << 52)
    };
    let shift = exp - 1075;
    let mut value = BigInt::from(mantissa);
    if shift >= 0 {
        value <<= shift as usize;
    } else {
        value >>= (-shift) as usize;
    }
    if x < 0.0 {
        value = -value;
    }
    &value == n
}

/// Python's `==` between two numbers.
pub(crate) fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x == y,
        (Number::Float(x), Number::Float(y)) => x == y,
        (Number::Int(n), Number::Float(x)) | (Number::Float(x), Number::Int(n)) => int_equals_float(n, *x),
    }
}

/// A value as a Python number, where it is one: numbers, and booleans
/// (`bool` is a subclass of `int`: `True == 1`).
fn as_number(v: &Value) -> Option<Number> {
    match v {
        Value::Number(text) => Number::of(text),
        Value::Bool(b) => Some(Number::Int(BigInt::from(u8::from(*b)))),
        _ => None,
    }
}

/// Python's `==` between the values two JSON texts stand for: numbers by
/// value across `int` and `float`, `True == 1`, lists element by element,
/// dicts by keys and values. (JSON cannot tell a tuple from a list, so a
/// tuple compares equal to the list it was written as.)
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return numbers_equal(&x, &y);
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => false,
    }
}

/// numpy's `isclose(a, b, rtol, atol)` for two doubles: `|a - b| <= atol +
/// rtol × |b|`; infinities equal when they have the same sign; NaN close to
/// nothing.
pub(crate) fn isclose(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return false;
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= atol + rtol * b.abs()
}

/// Python's `round(x, 3)`, as the text of the rounded value (`-0.0`
/// printed as `0.000`, since `-0.0 == 0.0`).
pub(crate) fn round3(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let text = format!("{x:.3}");
    match text.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|c| c == b'0' || c == b'.') => rest.to_string(),
        _ => text,
    }
}
