//! EvalPlus's rule for return values, from `evalplus/eval/__init__.py`
//! (`unsafe_execute`, `is_floats`):
//!
//! - `out == exp` (Python's `==`) passes;
//! - else, when the problem's `atol` is not 0 (or is 0 and the expected
//!   value is a float, or a non-empty list of floats, which makes it 1e-6),
//!   the output must have the same type as the expected value (`int`,
//!   `float`, `bool`, `list`, ...), a list the same length, and numpy's
//!   `allclose(out, exp, rtol=1e-07, atol=atol)` must hold;
//! - else it fails.
//!
//! One difference: EvalPlus keeps the 1e-6 it enforced for a float case
//! for the later cases of the same problem; here each case starts from the
//! problem's `atol`. It changes only integers beyond 2^53 compared after a
//! float case. Special oracles (HumanEval/32 `find_zero`, some MBPP+ tasks)
//! are not reproduced; the converter refuses those problems.

use super::python::{isclose, values_equal, Number};
use crate::code::value::Value;

/// `rtol` of EvalPlus's `np.allclose` call.
pub const RTOL: f64 = 1e-7;
/// The `atol` EvalPlus enforces for floats when the problem gives 0.
pub const FLOAT_ATOL: f64 = 1e-6;

/// `is_floats(exp)`: a float, or a non-empty list of floats.
fn is_floats(v: &Value) -> bool {
    let float = |v: &Value| matches!(v, Value::Number(t) if matches!(Number::of(t), Some(Number::Float(_))));
    float(v) || matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(float))
}

/// Python's type of a value that came through JSON.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(t) => match Number::of(t) {
            Some(Number::Int(_)) => "int",
            _ => "float",
        },
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// numpy's `allclose` over numbers, booleans and nested lists of equal
/// shape; anything else (strings, `None`, ragged lists) is an error in
/// numpy, so a failure here.
fn allclose(a: &Value, b: &Value, atol: f64) -> bool {
    let number = |v: &Value| match v {
        Value::Number(t) => Number::of(t).map(|n| n.as_f64()),
        Value::Bool(x) => Some(f64::from(u8::from(*x))),
        _ => None,
    };
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| allclose(p, q, atol))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => isclose(x, y, RTOL, atol),
            _ => false,
        },
    }
}

/// True when `actual` passes against `expected` with the problem's `atol`.
pub fn values_match(actual: &Value, expected: &Value, atol: f64) -> bool {
    if values_equal(actual, expected) {
        return true;
    }
    let atol = if atol == 0.0 && is_floats(expected) {
        FLOAT_ATOL
    } else {
        atol
    };
    if atol == 0.0 || type_name(actual) != type_name(expected) {
        return false;
    }
    if let (Value::Array(a), Value::Array(e)) = (actual, expected) {
        if a.len() != e.len() {
            return false;
        }
    }
    allclose(actual, expected, atol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::value::parse;

    fn m(actual: &str, expected: &str, atol: f64) -> bool {
        values_match(&parse(actual).unwrap(), &parse(expected).unwrap(), atol)
    }

    /// Each expectation is what `unsafe_execute` decides for one input.
    #[test]
    fn value_by_value() {
        // Exact matches, Python's ==.
        assert!(m("3", "3", 0.0));
        assert!(m("3.0", "3", 0.0), "3.0 == 3");
        assert!(m("[1, 2]", "[1, 2]", 0.0));
        assert!(!m("[1, 2]", "[2, 1]", 0.0));
        assert!(m("\"abc\"", "\"abc\"", 0.0));
        // A float expected value enforces atol 1e-6.
        assert!(m("0.30000000000000004", "0.3", 0.0));
        assert!(m("0.3000005", "0.3", 0.0));
        assert!(!m("0.30001", "0.3", 0.0));
        assert!(m("[0.1, 0.2]", "[0.1000001, 0.2]", 0.0));
        // ... but the types must agree: an int is not a float.
        assert!(!m("0", "0.0000001", 0.0));
        // Integers compare exactly when atol is 0.
        assert!(!m("4", "3", 0.0));
        // A problem's atol applies to its non-float values too.
        assert!(m("[1.0001, 2]", "[1.0, 2]", 1e-3));
        assert!(!m("[1.0001]", "[1.0, 2.0]", 1e-3), "lengths differ");
        assert!(!m("[\"a\"]", "[\"b\"]", 1e-3), "numpy cannot compare strings");
        assert!(m("1e-7", "0.0", 1e-6), "allclose uses atol");
        assert!(!m("null", "0.0", 0.0));
    }
}
