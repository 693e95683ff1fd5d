//! Python data on the host, and Python's `==` between two such values: how
//! the host itself decides an `assert f(args) == literal` test
//! ([`super::asserts`]), so that nothing the program does inside the sandbox
//! can change the comparison.
//!
//! Values cross the sandbox boundary as *typed JSON*, which keeps what plain
//! JSON loses: JSON `null`, `true`/`false`, strings and arrays (Python
//! lists) as they are; a number written without `.` or an exponent is an
//! `int` of any size, one with them a `float` (the guest writes
//! `float.__repr__`, which always has one); everything else is a one-key
//! object: `{"tuple": [...]}`, `{"set": [...]}`, `{"frozenset": [...]}`,
//! `{"dict": [[key, value], ...]}`, `{"bytes": "<hex>"}`,
//! `{"float": "inf" | "-inf" | "nan"}`, `{"complex": [re, im]}`,
//! `{"hexint": "-ff"}` (an int too long for decimal text) and
//! `{"ratio": ["<hex numerator>", "<hex denominator>"]}` (a `Fraction`, or a
//! finite `Decimal`). The guest's side is `sandboxes/harness/data.py`.
//!
//! [`py_eq`] is Python's `==` on such data: numbers compare by exact value
//! across `bool`, `int`, `float`, `Fraction`/`Decimal` and `complex`
//! (`1 == 1.0 == True`, `0.1 + 0.2 != 0.3`, `nan != nan`); a list never
//! equals a tuple; `set` and `frozenset` compare as sets; dicts compare by
//! keys (hashed as Python would: `{1: 'a'}` == `{1.0: 'a'}`) and values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};

use super::value::{self, Value};

/// A Python data value.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An `int`.
    Int(BigInt),
    /// A `float`.
    Float(f64),
    /// A `complex`: real and imaginary parts.
    Complex(f64, f64),
    /// A `Fraction` or a finite `Decimal`, exactly.
    Ratio(BigRational),
    /// A `str`.
    Str(String),
    /// `bytes` (or a `bytearray`, which compares equal to them).
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `tuple`.
    Tuple(Vec<PyValue>),
    /// A `set`.
    Set(Vec<PyValue>),
    /// A `frozenset`.
    FrozenSet(Vec<PyValue>),
    /// A `dict`, as key-value pairs.
    Dict(Vec<(PyValue, PyValue)>),
}

/// Parses typed JSON (see the module docs).
pub fn parse(text: &str) -> Result<PyValue, String> {
    from_json(&value::parse(text)?)
}

fn from_json(v: &Value) -> Result<PyValue, String> {
    Ok(match v {
        Value::Null => PyValue::None,
        Value::Bool(b) => PyValue::Bool(*b),
        Value::Number(text) => number(text)?,
        Value::String(s) => PyValue::Str(s.clone()),
        Value::Array(items) => PyValue::List(items_of(items)?),
        Value::Object(map) => tagged(map)?,
    })
}

fn items_of(items: &[Value]) -> Result<Vec<PyValue>, String> {
    items.iter().map(from_json).collect()
}

fn number(text: &str) -> Result<PyValue, String> {
    if text.contains(['.', 'e', 'E']) {
        text.parse::<f64>()
            .map(PyValue::Float)
            .map_err(|e| format!("bad float {text:?}: {e}"))
    } else {
        text.parse::<BigInt>()
            .map(PyValue::Int)
            .map_err(|e| format!("bad int {text:?}: {e}"))
    }
}

fn hex_int(text: &str) -> Result<BigInt, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let n = BigInt::parse_bytes(digits.as_bytes(), 16).ok_or_else(|| format!("bad hex int {text:?}"))?;
    Ok(if negative { -n } else { n })
}

fn tagged(map: &BTreeMap<String, Value>) -> Result<PyValue, String> {
    let mut entries = map.iter();
    let (Some((tag, body)), None) = (entries.next(), entries.next()) else {
        return Err("a typed value is an object with exactly one key".into());
    };
    let array = |what: &str| match body {
        Value::Array(items) => Ok(items.as_slice()),
        _ => Err(format!("`{what}` holds an array")),
    };
    let text = |what: &str| match body {
        Value::String(s) => Ok(s.as_str()),
        _ => Err(format!("`{what}` holds a string")),
    };
    Ok(match tag.as_str() {
        "tuple" => PyValue::Tuple(items_of(array("tuple")?)?),
        "set" => PyValue::Set(items_of(array("set")?)?),
        "frozenset" => PyValue::FrozenSet(items_of(array("frozenset")?)?),
        "dict" => {
            let mut pairs = Vec::new();
            for pair in array("dict")? {
                match pair {
                    Value::Array(kv) if kv.len() == 2 => pairs.push((from_json(&kv[0])?, from_json(&kv[1])?)),
                    _ => return Err("`dict` holds [key, value] pairs".into()),
                }
            }
            PyValue::Dict(pairs)
        }
        "bytes" => {
            let hex = text("bytes")?;
            if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("`bytes` holds hex digits".into());
            }
            PyValue::Bytes(
                (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).expect("checked hex"))
                    .collect(),
            )
        }
        "float" => PyValue::Float(match text("float")? {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => return Err(format!("`float` holds inf, -inf or nan, not {other:?}")),
        }),
        "complex" => match array("complex")? {
            [re, im] => PyValue::Complex(part(re)?, part(im)?),
            _ => return Err("`complex` holds [re, im]".into()),
        },
        "hexint" => PyValue::Int(hex_int(text("hexint")?)?),
        "ratio" => match array("ratio")? {
            [Value::String(n), Value::String(d)] => {
                let (n, d) = (hex_int(n)?, hex_int(d)?);
                if d.is_zero() {
                    return Err("`ratio` with a zero denominator".into());
                }
                PyValue::Ratio(BigRational::new(n, d))
            }
            _ => return Err("`ratio` holds two hex strings".into()),
        },
        other => return Err(format!("unknown typed value `{other}`")),
    })
}

/// A float part of a complex: a number or a `{"float": ...}`.
fn part(v: &Value) -> Result<f64, String> {
    match from_json(v)? {
        PyValue::Float(x) => Ok(x),
        PyValue::Int(n) => Ok(n.to_f64().unwrap_or(f64::NAN)),
        _ => Err("a complex part is a float".into()),
    }
}

/// A real number as Python compares it: exact when finite.
#[derive(Debug, Clone, PartialEq)]
enum Real {
    Exact(BigRational),
    Infinite { negative: bool },
    NaN,
}

impl Real {
    fn of_float(x: f64) -> Real {
        if x.is_nan() {
            Real::NaN
        } else if x.is_infinite() {
            Real::Infinite { negative: x < 0.0 }
        } else {
            Real::Exact(BigRational::from_float(x).expect("a finite float is a ratio"))
        }
    }

    /// Python's `==`: NaN equals nothing.
    fn eq(&self, other: &Real) -> bool {
        !matches!(self, Real::NaN) && self == other
    }

    fn is_zero(&self) -> bool {
        matches!(self, Real::Exact(q) if q.is_zero())
    }
}

impl PyValue {
    /// The value as a complex number `(re, im)`, for the numeric types.
    fn as_number(&self) -> Option<(Real, Real)> {
        let zero = || Real::Exact(BigRational::zero());
        Some(match self {
            PyValue::Bool(b) => (
                Real::Exact(BigRational::from_integer(BigInt::from(u8::from(*b)))),
                zero(),
            ),
            PyValue::Int(n) => (Real::Exact(BigRational::from_integer(n.clone())), zero()),
            PyValue::Float(x) => (Real::of_float(*x), zero()),
            PyValue::Ratio(q) => (Real::Exact(q.clone()), zero()),
            PyValue::Complex(re, im) => (Real::of_float(*re), Real::of_float(*im)),
            _ => return None,
        })
    }

    /// The value as a float, for `int`, `float`, `bool` and ratios (as
    /// Python's `float(x)` gives it, inf for an int too big).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Bool(b) => Some(f64::from(u8::from(*b))),
            PyValue::Int(n) => Some(n.to_f64().unwrap_or(f64::NAN)),
            PyValue::Float(x) => Some(*x),
            PyValue::Ratio(q) => q.to_f64(),
            _ => None,
        }
    }

    /// Python's `bool(value)`.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(b) => *b,
            PyValue::Int(n) => !n.is_zero(),
            PyValue::Float(x) => *x != 0.0,
            PyValue::Complex(re, im) => *re != 0.0 || *im != 0.0,
            PyValue::Ratio(q) => !q.is_zero(),
            PyValue::Str(s) => !s.is_empty(),
            PyValue::Bytes(b) => !b.is_empty(),
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) | PyValue::FrozenSet(v) => !v.is_empty(),
            PyValue::Dict(pairs) => !pairs.is_empty(),
        }
    }

    /// A text that two hashable values share exactly when Python's `==`
    /// holds between them (so when they are the same set element or dict
    /// key); `None` for an unhashable value, or a NaN (which equals
    /// nothing).
    fn key(&self) -> Option<String> {
        fn real(r: &Real) -> Option<String> {
            match r {
                Real::Exact(q) if q.is_integer() => Some(format!("i{}", q.numer())),
                Real::Exact(q) => Some(format!("q{}/{}", q.numer(), q.denom())),
                Real::Infinite { negative } => Some(if *negative { "-inf" } else { "+inf" }.into()),
                Real::NaN => None,
            }
        }
        fn joined(open: &str, keys: Vec<String>) -> String {
            let mut out = String::from(open);
            for k in keys {
                let _ = write!(out, "{}:{k}", k.len());
            }
            out
        }
        if let Some((re, im)) = self.as_number() {
            return if im.is_zero() {
                real(&re)
            } else {
                Some(format!("c{}|{}", real(&re)?, real(&im)?))
            };
        }
        match self {
            PyValue::None => Some("N".into()),
            PyValue::Str(s) => Some(format!("s{s}")),
            PyValue::Bytes(b) => Some(joined("b", b.iter().map(|x| x.to_string()).collect())),
            PyValue::Tuple(items) => Some(joined(
                "t",
                items.iter().map(PyValue::key).collect::<Option<_>>()?,
            )),
            PyValue::FrozenSet(items) => {
                let mut keys: Vec<String> = items.iter().map(PyValue::key).collect::<Option<_>>()?;
                keys.sort();
                Some(joined("f", keys))
            }
            _ => None,
        }
    }
}

/// Python's `a == b` between two data values.
pub fn py_eq(a: &PyValue, b: &PyValue) -> bool {
    if let (Some((ar, ai)), Some((br, bi))) = (a.as_number(), b.as_number()) {
        return ar.eq(&br) && ai.eq(&bi);
    }
    match (a, b) {
        (PyValue::None, PyValue::None) => true,
        (PyValue::Str(x), PyValue::Str(y)) => x == y,
        (PyValue::Bytes(x), PyValue::Bytes(y)) => x == y,
        (PyValue::List(x), PyValue::List(y)) | (PyValue::Tuple(x), PyValue::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (PyValue::Set(x) | PyValue::FrozenSet(x), PyValue::Set(y) | PyValue::FrozenSet(y)) => sets_eq(x, y),
        (PyValue::Dict(x), PyValue::Dict(y)) => dicts_eq(x, y),
        _ => false,
    }
}

/// The elements' keys, sorted, when every element is hashable, not NaN
/// and distinct (what a real set holds).
fn set_keys(items: &[PyValue]) -> Option<Vec<String>> {
    let mut keys: Vec<String> = items.iter().map(PyValue::key).collect::<Option<_>>()?;
    keys.sort();
    let n = keys.len();
    keys.dedup();
    (keys.len() == n).then_some(keys)
}

fn sets_eq(x: &[PyValue], y: &[PyValue]) -> bool {
    match (set_keys(x), set_keys(y)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The pairs by their keys' keys, when every key is hashable and distinct.
fn dict_map(pairs: &[(PyValue, PyValue)]) -> Option<BTreeMap<String, &PyValue>> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.key()?, v).is_some() {
            return None;
        }
    }
    Some(map)
}

fn dicts_eq(x: &[(PyValue, PyValue)], y: &[(PyValue, PyValue)]) -> bool {
    let (Some(a), Some(b)) = (dict_map(x), dict_map(y)) else {
        return false;
    };
    a.len() == b.len() && a.iter().all(|(k, va)| b.get(k).is_some_and(|vb| py_eq(va, vb)))
}

/// Most characters [`repr`] writes before cutting the text short.
const REPR_LIMIT: usize = 200;

/// A Python-like `repr` of `value` for messages, cut at about 200
/// characters.
pub fn repr(value: &PyValue) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    if out.chars().count() > REPR_LIMIT {
        out = out.chars().take(REPR_LIMIT).collect::<String>() + "...";
    }
    out
}

fn write_repr(value: &PyValue, out: &mut String) {
    if out.len() > REPR_LIMIT * 4 {
        return;
    }
    let seq = |items: &[PyValue], open: &str, close: &str, out: &mut String| {
        out.push_str(open);
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            write_repr(item, out);
        }
        out.push_str(close);
    };
    match value {
        PyValue::None => out.push_str("None"),
        PyValue::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        PyValue::Int(n) => {
            let _ = write!(out, "{n}");
        }
        PyValue::Float(x) => out.push_str(&float_repr(*x)),
        PyValue::Complex(re, im) => {
            let _ = write!(
                out,
                "({}{}{}j)",
                float_repr(*re),
                if *im < 0.0 { "" } else { "+" },
                float_repr(*im)
            );
        }
        PyValue::Ratio(q) => {
            let _ = write!(out, "Fraction({}, {})", q.numer(), q.denom());
        }
        PyValue::Str(s) => {
            let _ = write!(out, "{s:?}");
        }
        PyValue::Bytes(b) => {
            let _ = write!(out, "b{:?}", String::from_utf8_lossy(b));
        }
        PyValue::List(items) => seq(items, "[", "]", out),
        PyValue::Tuple(items) if items.len() == 1 => seq(items, "(", ",)", out),
        PyValue::Tuple(items) => seq(items, "(", ")", out),
        PyValue::Set(items) if items.is_empty() => out.push_str("set()"),
        PyValue::Set(items) => seq(items, "{", "}", out),
        PyValue::FrozenSet(items) => seq(items, "frozenset({", "})", out),
        PyValue::Dict(pairs) => {
            out.push('{');
            for (k, (key, val)) in pairs.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                write_repr(key, out);
                out.push_str(": ");
                write_repr(val, out);
            }
            out.push('}');
        }
    }
}

fn float_repr(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x < 0.0 { "-inf" } else { "inf" }.into()
    } else {
        format!("{x:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> PyValue {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn eq(a: &str, b: &str) -> bool {
        let (a, b) = (v(a), v(b));
        assert_eq!(py_eq(&a, &b), py_eq(&b, &a), "== is symmetric on data");
        py_eq(&a, &b)
    }

    #[test]
    fn typed_json_reads_every_type() {
        assert_eq!(v("null"), PyValue::None);
        assert_eq!(
            v("123456789012345678901234567890"),
            PyValue::Int("123456789012345678901234567890".parse().unwrap())
        );
        assert_eq!(v("3.0"), PyValue::Float(3.0));
        assert_eq!(v("1e+16"), PyValue::Float(1e16));
        assert_eq!(
            v(r#"{"tuple": [1, "a"]}"#),
            PyValue::Tuple(vec![PyValue::Int(1.into()), PyValue::Str("a".into())])
        );
        assert_eq!(v(r#"{"bytes": "00ff"}"#), PyValue::Bytes(vec![0, 255]));
        assert_eq!(v(r#"{"hexint": "-ff"}"#), PyValue::Int((-255).into()));
        assert!(matches!(v(r#"{"float": "nan"}"#), PyValue::Float(x) if x.is_nan()));
        assert_eq!(
            v(r#"{"complex": [1.0, {"float": "-inf"}]}"#),
            PyValue::Complex(1.0, f64::NEG_INFINITY)
        );
        assert_eq!(
            v(r#"{"ratio": ["1", "2"]}"#),
            PyValue::Ratio(BigRational::new(1.into(), 2.into()))
        );
        for bad in [
            r#"{"tuple": 1}"#,
            r#"{"a": 1, "b": 2}"#,
            r#"{"bytes": "0"}"#,
            r#"{"float": "1"}"#,
            r#"{"ratio": ["1", "0"]}"#,
            r#"{"dict": [[1]]}"#,
            r#"{"object": []}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_compare_by_exact_value_across_types() {
        assert!(eq("1", "1.0"));
        assert!(eq("true", "1"));
        assert!(eq("false", "0.0"));
        assert!(eq(r#"{"complex": [2.0, 0.0]}"#, "2"));
        assert!(eq(r#"{"ratio": ["1", "2"]}"#, "0.5"));
        assert!(!eq(r#"{"ratio": ["1", "3"]}"#, "0.3333333333333333"));
        // 0.1 + 0.2 is not 0.3 in Python either.
        assert!(!eq("0.30000000000000004", "0.3"));
        assert!(!eq("999999000.0", "999999937"));
        assert!(!eq("9007199254740993", "9007199254740992.0"));
        assert!(eq("9007199254740992", "9007199254740992.0"));
        assert!(!eq(r#"{"float": "nan"}"#, r#"{"float": "nan"}"#));
        assert!(eq(r#"{"float": "-inf"}"#, r#"{"float": "-inf"}"#));
        assert!(!eq(r#"{"float": "inf"}"#, "1e308"));
        assert!(!eq("1", "\"1\""));
    }

    #[test]
    fn containers_compare_as_python_does() {
        assert!(eq("[1, [2, 3]]", "[1.0, [2, 3]]"));
        assert!(!eq("[1, 2]", r#"{"tuple": [1, 2]}"#));
        assert!(eq(r#"{"tuple": []}"#, r#"{"tuple": []}"#));
        assert!(eq(r#"{"set": [3, 1, 2]}"#, r#"{"frozenset": [1, 2, 3.0]}"#));
        assert!(!eq(r#"{"set": [1, 2]}"#, r#"{"set": [1, 2, 3]}"#));
        assert!(
            !eq(r#"{"set": [1, 1]}"#, r#"{"set": [1, 2]}"#),
            "a forged set with a repeat"
        );
        assert!(!eq(r#"{"set": [1]}"#, "[1]"));
        assert!(eq(
            r#"{"dict": [[1, "a"], ["b", [2]]]}"#,
            r#"{"dict": [["b", [2.0]], [1.0, "a"]]}"#
        ));
        assert!(!eq(r#"{"dict": [[1, "a"]]}"#, r#"{"dict": [["1", "a"]]}"#));
        assert!(
            !eq(
                r#"{"dict": [[1, "a"], [1, "a"]]}"#,
                r#"{"dict": [[1, "a"], [2, "b"]]}"#
            ),
            "a forged dict with a repeated key"
        );
        assert!(eq(
            r#"{"set": [{"tuple": [1, "x"]}, {"frozenset": [2, 3]}]}"#,
            r#"{"set": [{"frozenset": [3, 2]}, {"tuple": [1.0, "x"]}]}"#
        ));
        assert!(
            !eq(r#"{"set": [[1]]}"#, r#"{"set": [[1]]}"#),
            "lists are unhashable"
        );
        assert!(eq(r#"{"bytes": "6162"}"#, r#"{"bytes": "6162"}"#));
        assert!(!eq(r#"{"bytes": "61"}"#, "\"a\""));
    }

    #[test]
    fn truthiness_and_floats() {
        for falsy in [
            "null",
            "false",
            "0",
            "0.0",
            "\"\"",
            "[]",
            r#"{"dict": []}"#,
            r#"{"set": []}"#,
        ] {
            assert!(!v(falsy).truthy(), "{falsy}");
        }
        for truthy in [
            "true",
            "-1",
            r#"{"float": "nan"}"#,
            "\"0\"",
            "[0]",
            r#"{"tuple": [null]}"#,
        ] {
            assert!(v(truthy).truthy(), "{truthy}");
        }
        assert_eq!(v("3").as_f64(), Some(3.0));
        assert_eq!(v("\"3\"").as_f64(), None);
    }

    #[test]
    fn repr_reads_like_python_and_is_short() {
        assert_eq!(
            repr(&v(r#"[null, true, 1.5, {"tuple": [1]}, {"set": []}]"#)),
            "[None, True, 1.5, (1,), set()]"
        );
        assert_eq!(repr(&v(r#"{"dict": [["a", 1]]}"#)), "{\"a\": 1}");
        let long = format!("[{}]", vec!["1"; 1000].join(","));
        assert!(repr(&v(&long)).chars().count() <= REPR_LIMIT + 3);
    }
}
