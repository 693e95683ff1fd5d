//! Evaluating scalar expressions: exactly over the rationals where possible,
//! in complex floating point otherwise.
//!
//! Integers and fractions stay exact big rationals through `+ - × ÷`,
//! integer powers, perfect roots, factorials and binomials, so `2^{100}` and
//! `\frac{6}{\sqrt{36}}` compare exactly. Anything else (π, e, i, irrational
//! roots, functions) becomes a `Complex64`. Every exact operation checks the
//! size of its result first: past [`MAX_BITS`] bits (or [`POINT_MAX_BITS`]
//! at sample points) it continues in floating point, and a value that does
//! not fit a float is [`Value::Undefined`] (`10^{10^{10}}` costs nothing).

use std::cell::Cell;
use std::collections::HashMap;

use num_bigint::BigInt;
use num_complex::Complex64;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::ast::{BigOpKind, Const, Expr, Func};

/// Largest exact intermediate result, in bits of numerator plus denominator.
pub const MAX_BITS: u64 = 16_384;
/// Largest `n` for an exact `n!`.
pub const MAX_FACTORIAL: u64 = 1000;

/// The value of a scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An exact rational.
    Exact(BigRational),
    /// An approximation (may be complex).
    Approx(Complex64),
    /// Positive (`true`) or negative infinity, as interval endpoints need.
    Infinite(bool),
    /// Division by zero, a domain error, overflow, or a structure where a number was needed.
    Undefined,
}

impl Value {
    /// The value as a complex float, if it is a finite number.
    pub fn approx(&self) -> Option<Complex64> {
        match self {
            Value::Exact(q) => {
                let f = rational_to_f64(q)?;
                Some(Complex64::new(f, 0.0))
            }
            Value::Approx(c) if c.re.is_finite() && c.im.is_finite() => Some(*c),
            _ => None,
        }
    }
}

/// Converts a rational to f64, or `None` when it does not fit.
pub fn rational_to_f64(q: &BigRational) -> Option<f64> {
    let f = q.to_f64()?;
    f.is_finite().then_some(f)
}

fn bits(q: &BigRational) -> u64 {
    q.numer().bits() + q.denom().bits()
}

fn approx(c: Complex64) -> Value {
    if c.re.is_finite() && c.im.is_finite() {
        Value::Approx(c)
    } else {
        Value::Undefined
    }
}

/// Largest exact intermediate result while evaluating at sample points
/// (expressions with variables): past it the point is evaluated in floating
/// point, which is all the comparison there needs.
pub const POINT_MAX_BITS: u64 = 512;

/// Exact big-number work one evaluation of a constant may do, in 64-bit word
/// operations (an integer product of `w`-word numbers costs `w²`, a rational
/// result's gcd `64·w²`). Past it, arithmetic continues in floating point.
/// About a few milliseconds of work.
pub const MAX_WORK: u64 = 1_000_000;
/// The work budget at one sample point of an expression with variables.
pub const POINT_MAX_WORK: u64 = 20_000;

/// What an evaluation may use: variable values, a size limit and a work budget.
#[derive(Debug, Clone)]
pub struct Env {
    /// Values of the free variables; unknown variables are undefined.
    pub vars: HashMap<String, Value>,
    /// Exact results larger than this many bits continue in floating point.
    pub max_bits: u64,
    /// Exact work left (see [`MAX_WORK`]).
    work: Cell<u64>,
}

impl Env {
    /// No variables; exact up to [`MAX_BITS`] and [`MAX_WORK`].
    pub fn new() -> Env {
        Env {
            vars: HashMap::new(),
            max_bits: MAX_BITS,
            work: Cell::new(MAX_WORK),
        }
    }

    /// Variables set to `vars`; exact up to [`POINT_MAX_BITS`] and [`POINT_MAX_WORK`].
    pub fn point(vars: HashMap<String, Value>) -> Env {
        Env {
            vars,
            max_bits: POINT_MAX_BITS,
            work: Cell::new(POINT_MAX_WORK),
        }
    }

    /// True, and charged, when an exact result of about `result_bits` bits
    /// is within the size limit and the work budget. `rational` results pay
    /// for their gcd reduction.
    fn affords(&self, result_bits: u64, rational: bool) -> bool {
        if result_bits > self.max_bits {
            return false;
        }
        let words = result_bits / 64 + 1;
        self.charge(words * words * if rational { 64 } else { 1 })
    }

    /// True, and charged, when `cost` units of work are left.
    fn charge(&self, cost: u64) -> bool {
        let left = self.work.get();
        if cost > left {
            return false;
        }
        self.work.set(left - cost);
        true
    }
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

/// Evaluates `e` with the variables in `env`; unknown variables are undefined.
pub fn eval(e: &Expr, env: &Env) -> Value {
    match e {
        Expr::Num(n) => Value::Exact(n.value.clone()),
        Expr::Const(Const::Pi) => Value::Approx(Complex64::new(std::f64::consts::PI, 0.0)),
        Expr::Const(Const::E) => Value::Approx(Complex64::new(std::f64::consts::E, 0.0)),
        Expr::Const(Const::I) => Value::Approx(Complex64::new(0.0, 1.0)),
        Expr::Const(Const::Infinity) => Value::Infinite(true),
        Expr::Var(v) => env.vars.get(v).cloned().unwrap_or(Value::Undefined),
        Expr::Neg(a) => neg(eval(a, env)),
        Expr::Add(a, b) => add(eval(a, env), eval(b, env), env),
        Expr::Sub(a, b) => add(eval(a, env), neg(eval(b, env)), env),
        Expr::Mul(a, b) => mul(eval(a, env), eval(b, env), env),
        Expr::Div(a, b) => div(eval(a, env), eval(b, env), env),
        Expr::Pow(a, b) => pow(eval(a, env), eval(b, env), env),
        Expr::Func(f, a) => func(*f, eval(a, env)),
        Expr::Log { base, arg } => div(
            func(Func::Ln, eval(arg, env)),
            func(Func::Ln, eval(base, env)),
            env,
        ),
        Expr::Root { index, radicand } => root(eval(index, env), eval(radicand, env), env),
        Expr::Factorial(a) => factorial(eval(a, env), env),
        Expr::Binom(n, k) => binom(eval(n, env), eval(k, env), env),
        Expr::Percent(a) => div(
            eval(a, env),
            Value::Exact(BigRational::from_integer(100.into())),
            env,
        ),
        Expr::Degrees(a) => mul(
            eval(a, env),
            Value::Approx(Complex64::new(std::f64::consts::PI / 180.0, 0.0)),
            env,
        ),
        Expr::BigOp {
            kind,
            var,
            lo,
            hi,
            body,
        } => big_op(*kind, var, eval(lo, env), eval(hi, env), body, env),
        _ => Value::Undefined,
    }
}

/// Most terms of a `\sum` or `\prod` that are evaluated.
pub const MAX_BIG_OP_TERMS: u64 = 1000;

/// A sum or product over integer bounds, term by term, sharing the work
/// budget of `env`; undefined for symbolic or too wide bounds.
fn big_op(kind: BigOpKind, var: &str, lo: Value, hi: Value, body: &Expr, env: &Env) -> Value {
    let (Value::Exact(lo), Value::Exact(hi)) = (lo, hi) else {
        return Value::Undefined;
    };
    if !lo.is_integer() || !hi.is_integer() {
        return Value::Undefined;
    }
    let (lo, hi) = (lo.to_integer(), hi.to_integer());
    let count = (&hi - &lo + 1u32).to_u64().unwrap_or(u64::MAX);
    if hi < lo {
        return Value::Exact(BigRational::from_integer(match kind {
            BigOpKind::Sum => 0.into(),
            BigOpKind::Prod => 1.into(),
        }));
    }
    if count > MAX_BIG_OP_TERMS || !env.charge(count) {
        return Value::Undefined;
    }
    let mut acc = Value::Exact(BigRational::from_integer(match kind {
        BigOpKind::Sum => 0.into(),
        BigOpKind::Prod => 1.into(),
    }));
    let mut k = lo;
    while k <= hi {
        let mut vars = env.vars.clone();
        vars.insert(
            var.to_string(),
            Value::Exact(BigRational::from_integer(k.clone())),
        );
        let inner = Env {
            vars,
            max_bits: env.max_bits,
            work: Cell::new(env.work.get()),
        };
        let term = eval(body, &inner);
        env.work.set(inner.work.get());
        acc = match kind {
            BigOpKind::Sum => add(acc, term, env),
            BigOpKind::Prod => mul(acc, term, env),
        };
        if acc == Value::Undefined {
            return acc;
        }
        k += 1;
    }
    acc
}

fn neg(v: Value) -> Value {
    match v {
        Value::Exact(q) => Value::Exact(-q),
        Value::Approx(c) => Value::Approx(-c),
        Value::Infinite(p) => Value::Infinite(!p),
        Value::Undefined => Value::Undefined,
    }
}

// Exact operands whose result is past the size limit or the work budget
// (`Env::affords`) fall through to the floating-point arm. Integers skip the
// gcd a rational result needs.

fn add(a: Value, b: Value, env: &Env) -> Value {
    match (a, b) {
        (Value::Exact(x), Value::Exact(y))
            if env.affords(bits(&x) + bits(&y), !(x.is_integer() && y.is_integer())) =>
        {
            if x.is_integer() && y.is_integer() {
                Value::Exact(BigRational::from_integer(x.numer() + y.numer()))
            } else {
                Value::Exact(x + y)
            }
        }
        (Value::Infinite(p), Value::Infinite(q)) if p == q => Value::Infinite(p),
        (Value::Infinite(p), other) | (other, Value::Infinite(p)) => match other.approx() {
            Some(_) => Value::Infinite(p),
            None => Value::Undefined,
        },
        (a, b) => match (a.approx(), b.approx()) {
            (Some(x), Some(y)) => approx(x + y),
            _ => Value::Undefined,
        },
    }
}

fn mul(a: Value, b: Value, env: &Env) -> Value {
    match (a, b) {
        (Value::Exact(x), Value::Exact(y))
            if env.affords(bits(&x) + bits(&y), !(x.is_integer() && y.is_integer())) =>
        {
            if x.is_integer() && y.is_integer() {
                Value::Exact(BigRational::from_integer(x.numer() * y.numer()))
            } else {
                Value::Exact(x * y)
            }
        }
        (Value::Infinite(_), _) | (_, Value::Infinite(_)) => Value::Undefined,
        (a, b) => match (a.approx(), b.approx()) {
            (Some(x), Some(y)) => approx(x * y),
            _ => Value::Undefined,
        },
    }
}

fn div(a: Value, b: Value, env: &Env) -> Value {
    match (a, b) {
        (_, Value::Exact(y)) if y.is_zero() => Value::Undefined,
        (Value::Exact(x), Value::Exact(y)) if env.affords(bits(&x) + bits(&y), true) => Value::Exact(x / y),
        (Value::Infinite(_), _) | (_, Value::Infinite(_)) => Value::Undefined,
        (a, b) => match (a.approx(), b.approx()) {
            (Some(_), Some(y)) if y.norm() == 0.0 => Value::Undefined,
            (Some(x), Some(y)) => approx(x / y),
            _ => Value::Undefined,
        },
    }
}

/// Exact `x^n` for an integer `n`, if the result is affordable.
fn exact_int_pow(x: &BigRational, n: &BigInt, env: &Env) -> Option<Value> {
    if x.is_zero() {
        return Some(match n.sign() {
            num_bigint::Sign::Minus => Value::Undefined,
            num_bigint::Sign::NoSign => Value::Exact(BigRational::one()),
            num_bigint::Sign::Plus => Value::Exact(BigRational::zero()),
        });
    }
    if x.abs().is_one() {
        let odd = n.is_odd();
        return Some(Value::Exact(if x.is_negative() && odd {
            -BigRational::one()
        } else {
            BigRational::one()
        }));
    }
    let e = n.abs().to_u64()?;
    if !env.affords(bits(x).saturating_mul(e), !x.is_integer()) {
        return None;
    }
    let p = num_traits::pow(x.clone(), e as usize);
    Some(Value::Exact(if n.is_negative() { p.recip() } else { p }))
}

/// The exact `n`th root of a rational, when it is one.
fn exact_root(x: &BigRational, n: u32) -> Option<BigRational> {
    if n == 0 {
        return None;
    }
    let neg = x.is_negative();
    if neg && n.is_multiple_of(2) {
        return None;
    }
    let root_int = |v: &BigInt| -> Option<BigInt> {
        let r = v.abs().nth_root(n);
        (num_traits::pow(r.clone(), n as usize) == v.abs()).then_some(r)
    };
    let num = root_int(x.numer())?;
    let den = root_int(x.denom())?;
    let r = BigRational::new(num, den);
    Some(if neg { -r } else { r })
}

fn pow(a: Value, b: Value, env: &Env) -> Value {
    if let (Value::Exact(x), Value::Exact(y)) = (&a, &b) {
        if y.is_integer() {
            if let Some(v) = exact_int_pow(x, y.numer(), env) {
                return v;
            }
            // Too big to hold exactly. An approximation may still be finite
            // (1.0001^{100000}), but one that underflows to 0 or overflows is
            // no value at all: 10^{-10^{10}} is not 0.
            return match pow_approx(&a, &b) {
                Value::Approx(c) if c.norm() > f64::MIN_POSITIVE => Value::Approx(c),
                _ => Value::Undefined,
            };
        } else if let Some(q) = y.denom().to_u32().filter(|&q| q <= 64) {
            if let Some(r) = exact_root(x, q) {
                if let Some(v) = exact_int_pow(&r, y.numer(), env) {
                    return v;
                }
            }
        }
    }
    pow_approx(&a, &b)
}

fn pow_approx(a: &Value, b: &Value) -> Value {
    if let (Value::Infinite(_), _) | (_, Value::Infinite(_)) = (a, b) {
        return Value::Undefined;
    }
    match (a.approx(), b.approx()) {
        (Some(x), Some(y)) => {
            if x.norm() == 0.0 {
                return if y.re > 0.0 {
                    Value::Exact(BigRational::zero())
                } else {
                    Value::Undefined
                };
            }
            // A negative real base with a real exponent: keep odd roots real.
            if x.im == 0.0 && y.im == 0.0 && x.re < 0.0 {
                if let Value::Exact(q) = b {
                    if q.denom().is_odd() {
                        let m = (-x.re).powf(y.re);
                        let sign = if q.numer().is_odd() { -1.0 } else { 1.0 };
                        return approx(Complex64::new(sign * m, 0.0));
                    }
                }
            }
            if x.im == 0.0 && y.im == 0.0 && x.re > 0.0 {
                return approx(Complex64::new(x.re.powf(y.re), 0.0));
            }
            approx(x.powc(y))
        }
        _ => Value::Undefined,
    }
}

fn root(index: Value, x: Value, env: &Env) -> Value {
    let n = match &index {
        Value::Exact(q) if q.is_integer() => q.numer().to_u32().filter(|n| (1..=1000).contains(n)),
        _ => None,
    };
    if let (Some(n), Value::Exact(q)) = (n, &x) {
        if let Some(r) = exact_root(q, n) {
            return Value::Exact(r);
        }
    }
    match n {
        Some(n) => pow(
            x,
            Value::Exact(BigRational::new(BigInt::one(), BigInt::from(n))),
            env,
        ),
        None => pow(x, div(Value::Exact(BigRational::one()), index, env), env),
    }
}

fn func(f: Func, a: Value) -> Value {
    if let Value::Exact(q) = &a {
        match f {
            Func::Abs => return Value::Exact(q.abs()),
            Func::Floor => return Value::Exact(BigRational::from_integer(q.floor().to_integer())),
            Func::Ceil => return Value::Exact(BigRational::from_integer(q.ceil().to_integer())),
            Func::Ln if q.is_one() => return Value::Exact(BigRational::zero()),
            Func::Exp | Func::Cos | Func::Cosh if q.is_zero() => return Value::Exact(BigRational::one()),
            Func::Sin | Func::Tan | Func::Asin | Func::Atan | Func::Sinh | Func::Tanh if q.is_zero() => {
                return Value::Exact(BigRational::zero())
            }
            _ => {}
        }
    }
    let Some(z) = a.approx() else {
        return Value::Undefined;
    };
    let one = Complex64::new(1.0, 0.0);
    let real_or = |x: f64, fallback: Complex64| {
        if z.im == 0.0 && x.is_finite() {
            Complex64::new(x, 0.0)
        } else {
            fallback
        }
    };
    approx(match f {
        Func::Sin => z.sin(),
        Func::Cos => z.cos(),
        Func::Tan => z.tan(),
        Func::Sec => one / z.cos(),
        Func::Csc => one / z.sin(),
        Func::Cot => one / z.tan(),
        Func::Asin => real_or(z.re.asin(), z.asin()),
        Func::Acos => real_or(z.re.acos(), z.acos()),
        Func::Atan => z.atan(),
        Func::Sinh => z.sinh(),
        Func::Cosh => z.cosh(),
        Func::Tanh => z.tanh(),
        Func::Ln => {
            if z.norm() == 0.0 {
                return Value::Undefined;
            }
            z.ln()
        }
        Func::Exp => z.exp(),
        Func::Abs => Complex64::new(z.norm(), 0.0),
        Func::Floor if z.im == 0.0 => Complex64::new(z.re.floor(), 0.0),
        Func::Ceil if z.im == 0.0 => Complex64::new(z.re.ceil(), 0.0),
        Func::Floor | Func::Ceil => return Value::Undefined,
    })
}

/// A non-negative integer small enough to use as a count, if `v` is one.
fn small_count(v: &Value, max: u64) -> Option<u64> {
    match v {
        Value::Exact(q) if q.is_integer() && !q.is_negative() => q.numer().to_u64().filter(|&n| n <= max),
        _ => None,
    }
}

fn factorial(a: Value, env: &Env) -> Value {
    match small_count(&a, MAX_FACTORIAL) {
        Some(n) => {
            let mut acc = BigInt::one();
            for k in 2..=n {
                // Multiplying by a word costs linear time.
                if !env.charge(acc.bits() / 64 + 1) {
                    return Value::Undefined;
                }
                acc *= k;
            }
            Value::Exact(BigRational::from_integer(acc))
        }
        None => Value::Undefined,
    }
}

fn binom(n: Value, k: Value, env: &Env) -> Value {
    let (Some(n), Some(k)) = (
        small_count(&n, 10 * MAX_FACTORIAL),
        small_count(&k, 10 * MAX_FACTORIAL),
    ) else {
        return Value::Undefined;
    };
    if k > n {
        return Value::Exact(BigRational::zero());
    }
    let k = k.min(n - k);
    if k > MAX_FACTORIAL {
        return Value::Undefined;
    }
    let mut acc = BigInt::one();
    for j in 0..k {
        // A word product and a word division: linear, division the dearer.
        if acc.bits() > env.max_bits || !env.charge(8 * (acc.bits() / 64 + 1)) {
            return Value::Undefined;
        }
        acc = acc * (n - j) / (j + 1);
    }
    Value::Exact(BigRational::from_integer(acc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse;

    fn v(s: &str) -> Value {
        eval(&parse(s).unwrap(), &Env::new())
    }

    fn q(n: i64, d: i64) -> Value {
        Value::Exact(BigRational::new(n.into(), d.into()))
    }

    #[test]
    fn exact_arithmetic() {
        assert_eq!(v("\\frac{6}{\\sqrt{36}}"), q(1, 1));
        assert_eq!(v("2^{-2} + 0.25"), q(1, 2));
        assert_eq!(v("\\sqrt[3]{-8}"), q(-2, 1));
        assert_eq!(v("\\binom{5}{2}"), q(10, 1));
        assert_eq!(v("5!"), q(120, 1));
        assert_eq!(v("8^{2/3}"), q(4, 1));
        assert_eq!(v("|-3|"), q(3, 1));
        let Value::Exact(big) = v("2^{100}") else { panic!() };
        assert_eq!(big.numer().to_string(), "1267650600228229401496703205376");
    }

    #[test]
    fn approximate_values() {
        let c = v("\\sqrt{2}").approx().unwrap();
        assert!((c.re - std::f64::consts::SQRT_2).abs() < 1e-15);
        let c = v("e^{i\\pi}").approx().unwrap();
        assert!((c.re + 1.0).abs() < 1e-12 && c.im.abs() < 1e-12);
        let c = v("\\sqrt[3]{-2}").approx().unwrap();
        assert!((c.re + 2f64.cbrt()).abs() < 1e-12 && c.im == 0.0);
        assert_eq!(v("\\log_2 8").approx().map(|c| (c.re * 1e9).round()), Some(3e9));
    }

    #[test]
    fn work_budget_bounds_exact_arithmetic() {
        assert!(matches!(v("\\binom{2000}{1000}"), Value::Exact(_)));
        // Twenty of them cost more exact work than one evaluation may do.
        let many = vec!["\\binom{2000}{1000}"; 20].join("+");
        assert_eq!(v(&many), Value::Undefined);
        // Past the budget, rational arithmetic goes on in floating point.
        let sum = (1..300)
            .map(|k| format!("\\frac{{1}}{{{}}}", 1000 + 7 * k))
            .collect::<Vec<_>>()
            .join("+");
        assert!(matches!(v(&sum), Value::Approx(_)));
        let few = (1..5)
            .map(|k| format!("\\frac{{1}}{{{}}}", 1000 + 7 * k))
            .collect::<Vec<_>>()
            .join("+");
        assert!(matches!(v(&few), Value::Exact(_)));
    }

    #[test]
    fn sums_and_products() {
        assert_eq!(v("\\sum_{k=1}^{10} k"), q(55, 1));
        assert_eq!(v("\\prod_{k=1}^{5} k"), q(120, 1));
        assert_eq!(v("\\sum_{k=5}^{1} k"), q(0, 1));
        let n = MAX_BIG_OP_TERMS as i64;
        assert_eq!(v(&format!("\\sum_{{k=1}}^{{{n}}} 1")), q(n, 1));
        assert_eq!(v(&format!("\\sum_{{k=1}}^{{{}}} 1", n + 1)), Value::Undefined);
        assert_eq!(v("\\sum_{k=1}^{n} k"), Value::Undefined);
    }

    #[test]
    fn huge_and_undefined() {
        assert_eq!(v("10^{10^{10}}"), Value::Undefined);
        assert_eq!(v("10^{-10^{10}}"), Value::Undefined);
        assert!(matches!(v("1.0001^{100000}"), Value::Approx(_)));
        assert_eq!(v("1/0"), Value::Undefined);
        assert_eq!(v("1001!"), Value::Undefined);
        assert_eq!(v("-\\infty"), Value::Infinite(false));
        assert_eq!(v("(2.5)!"), Value::Undefined);
    }
}
