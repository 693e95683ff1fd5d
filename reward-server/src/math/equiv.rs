//! Deciding whether two parsed answers are mathematically the same.
//!
//! The rules, in the order they are tried:
//!
//! 1. Identical canonical forms are equal (this is how `10^{10^{10}}` is
//!    compared: never by computing it).
//! 2. A whole answer is first put in its plain form: `x = 5` becomes `5`,
//!    `(p, q) = (3, 2)` becomes `(3, 2)`, `x \in S` becomes `S`, an inequality
//!    in one variable becomes its interval (`1 < x \le 3` is `(1, 3]`), and
//!    `a \pm b` becomes the two answers `a + b, a - b`. `50\%` may mean 50 or
//!    1/2, and `30^\circ` may mean 30 or π/6.
//! 3. Structures compare by shape: tuples and matrices in order, sets, bare
//!    lists and unions as multisets, intervals by endpoints and which ends are
//!    closed. A two-element tuple `(a, b)` also matches the open interval.
//! 4. Constants are evaluated: two exact rationals must be equal; two sums
//!    of square roots of rationals must have the same normal form
//!    ([`surd`]); otherwise the relative difference must be within
//!    [`REL_TOL`].
//! 5. A decimal literal stands for a rounded value. It matches an exact value
//!    whose decimal expansion terminates only if it is exactly equal; it
//!    matches any other value only if it has at least [`MIN_SIGNIFICANT`]
//!    significant digits and is within one unit of its last written place
//!    (so `0.3333` and `0.333333` match `\frac13`, `0.33` does not). Two
//!    decimals are two exact numbers: `650.11` does not match `650.1`.
//! 6. Expressions with variables are compared at [`POINTS`] fixed
//!    pseudo-random points (exactly when both sides stay rational there); a
//!    point where either side is undefined is skipped, and at least
//!    [`MIN_VALID_POINTS`] must agree. Equations compare as `lhs - rhs` up to
//!    a non-zero constant factor (a positive one for inequalities).

use num_bigint::BigInt;
use num_complex::Complex64;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};

use super::ast::{Const, Expr, Precision, RelOp};
use super::eval::{eval, rational_to_f64, Env, Value};
use super::surd;

/// Relative tolerance for comparing values that are not both exact.
pub const REL_TOL: f64 = 1e-9;
/// Significant digits a decimal needs to match a non-terminating value.
pub const MIN_SIGNIFICANT: u32 = 4;
/// Evaluation points tried for expressions with variables.
pub const POINTS: usize = 8;
/// Points at which both sides must be defined and agree.
pub const MIN_VALID_POINTS: usize = 3;
/// Longest list, set or tuple compared element by element.
pub const MAX_ITEMS: usize = 4096;

/// True when `gold` and `resp` are the same answer.
pub fn equivalent(gold: &Expr, resp: &Expr) -> bool {
    if gold.to_string() == resp.to_string() {
        return true;
    }
    if let (Expr::Relation { terms: t1, ops: o1 }, Expr::Relation { terms: t2, ops: o2 }) = (gold, resp) {
        if relation_eq(t1, o1, t2, o2) {
            return true;
        }
    }
    let golds = readings(gold, is_decimal(resp));
    let resps = readings(resp, is_decimal(gold));
    golds.iter().any(|g| resps.iter().any(|r| same(g, r)))
}

/// True when the whole answer is a decimal literal (a rounded value).
fn is_decimal(e: &Expr) -> bool {
    decimal_precision(&plain_form(e)).is_some()
}

/// Every reading of a whole answer: its plain form (rule 2) with the
/// percent and degree alternatives, and for `exact \approx decimal` the
/// decimal too when the other answer is itself a decimal and the decimal
/// here rounds the exact value. Against an exact answer only the exact side
/// counts: `x = 6.6 \approx 7` is not 7.
fn readings(e: &Expr, other_is_decimal: bool) -> Vec<Expr> {
    let mut out = alternatives(plain_form(e));
    if other_is_decimal {
        if let Some(rounded) = consistent_rounding(e) {
            out.extend(alternatives(rounded));
        }
    }
    out
}

/// For a chain `… = exact \approx … \approx rounded`, the rounded value when
/// it is within one unit of its last written digit of the exact value; an
/// approximation that does not round the exact value is not a second answer.
fn consistent_rounding(e: &Expr) -> Option<Expr> {
    let Expr::Relation { terms, ops } = e else {
        return None;
    };
    let k = ops.iter().position(|o| *o == RelOp::Approx)?;
    if !ops.iter().all(|o| matches!(o, RelOp::Eq | RelOp::Approx)) {
        return None;
    }
    let exact = &terms[k];
    let rounded = terms.last()?;
    if !is_constant(exact) || names_vars(exact) || !is_constant(rounded) {
        return None;
    }
    let unit = match decimal_precision(rounded) {
        Some(p) => pow10(p.last_place),
        None => BigRational::one(),
    };
    let (a, b) = (
        eval(exact, &Env::new()).approx()?,
        eval(rounded, &Env::new()).approx()?,
    );
    let unit = rational_to_f64(&unit)?;
    ((a - b).norm() <= unit * (1.0 + 1e-9)).then(|| rounded.clone())
}

/// The readings of a whole answer: `50\%` is 1/2 or 50, `30^\circ` is π/6 or 30.
fn alternatives(e: Expr) -> Vec<Expr> {
    match e {
        Expr::Percent(x) => vec![Expr::Percent(x.clone()), *x],
        Expr::Degrees(x) => vec![Expr::Degrees(x.clone()), *x],
        other => vec![other],
    }
}

fn is_var(e: &Expr) -> bool {
    matches!(e, Expr::Var(_))
}

fn is_constant(e: &Expr) -> bool {
    e.variables().is_empty()
}

/// Rewrites a whole answer to its plain form (see the module doc, rule 2).
fn plain_form(e: &Expr) -> Expr {
    match e {
        Expr::Relation { terms, ops } => relation_plain_form(terms, ops).unwrap_or_else(|| e.clone()),
        Expr::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match plain_form(item) {
                    Expr::List(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            if out.len() == 1 {
                out.pop().unwrap()
            } else {
                Expr::List(out)
            }
        }
        e if !e.is_structure() || matches!(e, Expr::PlusMinus(..)) => {
            let mut all = expand_plus_minus(e);
            if all.len() == 1 {
                all.pop().unwrap()
            } else {
                Expr::List(all)
            }
        }
        Expr::Set(items) => Expr::Set(items.iter().map(plain_form).collect()),
        Expr::Tuple(items) => Expr::Tuple(items.iter().map(plain_form).collect()),
        other => other.clone(),
    }
}

/// Most `\pm` signs expanded in one answer (each doubles the answers).
const MAX_PLUS_MINUS: u32 = 4;

/// Every reading of `e` with each `\pm` taken as `+` and as `-`.
fn expand_plus_minus(e: &Expr) -> Vec<Expr> {
    let mut out = vec![e.clone()];
    for _ in 0..MAX_PLUS_MINUS {
        if !out[0].any(&|x| matches!(x, Expr::PlusMinus(..))) {
            break;
        }
        out = out
            .iter()
            .flat_map(|x| {
                [
                    replace_first_plus_minus(x, true, &mut true),
                    replace_first_plus_minus(x, false, &mut true),
                ]
            })
            .collect();
    }
    out
}

/// `e` with its first `\pm` (in pre-order) replaced by `+` (`plus`) or `-`.
fn replace_first_plus_minus(e: &Expr, plus: bool, pending: &mut bool) -> Expr {
    if !*pending {
        return e.clone();
    }
    if let Expr::PlusMinus(a, b) = e {
        *pending = false;
        return match (a, plus) {
            (Some(a), true) => Expr::Add(a.clone(), b.clone()),
            (Some(a), false) => Expr::Sub(a.clone(), b.clone()),
            (None, true) => (**b).clone(),
            (None, false) => Expr::Neg(b.clone()),
        };
    }
    e.map_children(|c| replace_first_plus_minus(c, plus, pending))
}

/// True for the left side of an assignment: a variable (`x`, `x_1`), a tuple
/// of them (`(p, q)`), or a segment or point name in capitals (`AB`).
fn names_vars(e: &Expr) -> bool {
    fn capitals(e: &Expr) -> bool {
        match e {
            Expr::Var(v) => v.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
            Expr::Mul(a, b) => capitals(a) && capitals(b),
            _ => false,
        }
    }
    is_var(e) || capitals(e) || matches!(e, Expr::Tuple(v) if v.iter().all(is_var))
}

fn relation_plain_form(terms: &[Expr], ops: &[RelOp]) -> Option<Expr> {
    let all_eq = ops.iter().all(|o| matches!(o, RelOp::Eq | RelOp::Approx));
    if all_eq && (terms.len() > 2 || ops.contains(&RelOp::Approx) || terms.iter().all(is_constant)) {
        // A chain `x = 5+5+1 = 11` stands for its last side, and `x = \frac13
        // \approx 0.33` for the exact side before the first `\approx` (its
        // rounding is a second reading only when consistent, see `readings`).
        let k = ops.iter().position(|o| *o == RelOp::Approx).unwrap_or(ops.len());
        let answer = if names_vars(&terms[k]) {
            terms.last()?
        } else {
            &terms[k]
        };
        return Some(plain_form(answer));
    }
    // An identity `(x+1)^2 = x^2 + 2x + 1` stands for its last side; an
    // equation to solve (`x^2 = 4`) stays an equation.
    if let ([lhs, rhs], [RelOp::Eq]) = (terms, ops) {
        if !names_vars(lhs)
            && !names_vars(rhs)
            && !lhs.is_structure()
            && !rhs.is_structure()
            && scalar_eq(lhs, rhs)
        {
            return Some(plain_form(rhs));
        }
    }
    match (terms, ops) {
        ([lhs, rhs], [RelOp::Eq | RelOp::In]) if names_vars(lhs) => Some(plain_form(rhs)),
        ([lhs, rhs], [RelOp::Eq]) if names_vars(rhs) && is_constant(lhs) => Some(plain_form(lhs)),
        // `x \ne c` is every number but c.
        ([x, c], [RelOp::Ne]) | ([c, x], [RelOp::Ne]) if is_var(x) && is_constant(c) => {
            let inf = Expr::Const(Const::Infinity);
            let neg_inf = Expr::Neg(inf.clone().boxed());
            Some(Expr::Union(vec![
                interval(&neg_inf, c, false, false),
                interval(c, &inf, false, false),
            ]))
        }
        ([x, c], [op]) if is_var(x) && is_constant(c) => half_line(c, *op, false),
        ([c, x], [op]) if is_var(x) && is_constant(c) => half_line(c, *op, true),
        ([a, x, b], [o1, o2]) if is_var(x) && is_constant(a) && is_constant(b) => {
            let closed = |o: &RelOp| matches!(o, RelOp::Le | RelOp::Ge);
            match (o1, o2) {
                (RelOp::Lt | RelOp::Le, RelOp::Lt | RelOp::Le) => {
                    Some(interval(a, b, closed(o1), closed(o2)))
                }
                (RelOp::Gt | RelOp::Ge, RelOp::Gt | RelOp::Ge) => {
                    Some(interval(b, a, closed(o2), closed(o1)))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn interval(lo: &Expr, hi: &Expr, lo_closed: bool, hi_closed: bool) -> Expr {
    Expr::Interval {
        lo: lo.clone().boxed(),
        hi: hi.clone().boxed(),
        lo_closed,
        hi_closed,
    }
}

/// `x op c` (or `c op x` when `mirrored`) as an interval.
fn half_line(c: &Expr, op: RelOp, mirrored: bool) -> Option<Expr> {
    let op = if mirrored {
        match op {
            RelOp::Lt => RelOp::Gt,
            RelOp::Le => RelOp::Ge,
            RelOp::Gt => RelOp::Lt,
            RelOp::Ge => RelOp::Le,
            other => other,
        }
    } else {
        op
    };
    let inf = Expr::Const(Const::Infinity);
    let neg_inf = Expr::Neg(inf.clone().boxed());
    match op {
        RelOp::Lt => Some(interval(&neg_inf, c, false, false)),
        RelOp::Le => Some(interval(&neg_inf, c, false, true)),
        RelOp::Gt => Some(interval(c, &inf, false, false)),
        RelOp::Ge => Some(interval(c, &inf, true, false)),
        _ => None,
    }
}

/// Structural comparison of two plain forms (rule 3), down to scalars.
fn same(a: &Expr, b: &Expr) -> bool {
    use Expr::*;
    if let Some(eq) = based_eq(a, b) {
        return eq;
    }
    match (a, b) {
        (List(x) | Set(x), List(y) | Set(y)) => multiset_eq(x, y),
        (List(x), other) | (other, List(x)) if x.len() == 1 => same(&x[0], other),
        (Set(x), other) | (other, Set(x)) if x.len() == 1 && !other.is_structure() => same(&x[0], other),
        (Tuple(x), Tuple(y)) => {
            x.len() == y.len() && x.len() <= MAX_ITEMS && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (
            Tuple(x),
            Interval {
                lo,
                hi,
                lo_closed: false,
                hi_closed: false,
            },
        )
        | (
            Interval {
                lo,
                hi,
                lo_closed: false,
                hi_closed: false,
            },
            Tuple(x),
        ) if x.len() == 2 => same(&x[0], lo) && same(&x[1], hi),
        (
            Interval {
                lo: l1,
                hi: h1,
                lo_closed: lc1,
                hi_closed: hc1,
            },
            Interval {
                lo: l2,
                hi: h2,
                lo_closed: lc2,
                hi_closed: hc2,
            },
        ) => lc1 == lc2 && hc1 == hc2 && same(l1, l2) && same(h1, h2),
        (Union(x), Union(y)) => multiset_eq(x, y),
        (Matrix(x), Matrix(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(r, s)| r.len() == s.len() && r.iter().zip(s).all(|(p, q)| same(p, q)))
        }
        (Relation { terms: t1, ops: o1 }, Relation { terms: t2, ops: o2 }) => relation_eq(t1, o1, t2, o2),
        (Text(x), Text(y)) => x == y,
        (x, y) if !x.is_structure() && !y.is_structure() => scalar_eq(x, y),
        _ => false,
    }
}

/// Integers written with a base subscript (`204_5`): equal to the same
/// number in the same base, and to a plain integer written with the same
/// digits (the base left out); anything else is a different answer. `None`
/// when neither side has a base.
fn based_eq(a: &Expr, b: &Expr) -> Option<bool> {
    fn base_of(e: &Expr) -> Option<(&super::ast::Number, u32)> {
        match e {
            Expr::Num(n) => n.base.map(|b| (n, u32::from(b))),
            _ => None,
        }
    }
    match (base_of(a), base_of(b)) {
        (None, None) => None,
        (Some((x, bx)), Some((y, by))) => Some(bx == by && x.value == y.value),
        (Some((x, bx)), None) | (None, Some((x, bx))) => {
            let other = if base_of(a).is_some() { b } else { a };
            Some(match other {
                Expr::Num(n) if n.is_integer_literal() => {
                    x.digits_in(bx).is_some_and(|d| Some(d) == n.digits_in(10))
                }
                _ => false,
            })
        }
    }
}

/// Elements left after exact-key matching that are still compared pairwise.
const MAX_PAIRWISE: usize = 64;

/// A key that only equal elements share: the exact value of a rational
/// constant, else the canonical form.
fn exact_key(e: &Expr) -> String {
    if !e.is_structure() && is_constant(e) {
        if let Value::Exact(q) = eval(e, &Env::new()) {
            return format!("={q}");
        }
    }
    e.to_string()
}

/// Unordered comparison: every element of `x` pairs with a distinct equal
/// element of `y`. Elements with the same exact key pair first (linear); the
/// rest are compared pairwise, at most [`MAX_PAIRWISE`] of them.
fn multiset_eq(x: &[Expr], y: &[Expr]) -> bool {
    if x.len() != y.len() || x.len() > MAX_ITEMS {
        return false;
    }
    let mut unmatched: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for (j, q) in y.iter().enumerate() {
        unmatched.entry(exact_key(q)).or_default().push(j);
    }
    let mut used = vec![false; y.len()];
    let mut rest = Vec::new();
    for p in x {
        match unmatched.get_mut(&exact_key(p)).and_then(Vec::pop) {
            Some(j) => used[j] = true,
            None => rest.push(p),
        }
    }
    if rest.len() > MAX_PAIRWISE {
        return false;
    }
    rest.iter().all(|p| {
        let found = y.iter().enumerate().position(|(j, q)| !used[j] && same(p, q));
        found.map(|j| used[j] = true).is_some()
    })
}

/// Scalar comparison (rules 4 to 6).
fn scalar_eq(a: &Expr, b: &Expr) -> bool {
    let mut vars = a.variables();
    vars.extend(b.variables());
    vars.sort();
    vars.dedup();
    if vars.is_empty() {
        return constants_eq(a, b);
    }
    let mut valid = 0;
    for env in sample_points(&vars) {
        let (va, vb) = (eval(a, &env), eval(b, &env));
        if matches!(va, Value::Undefined) || matches!(vb, Value::Undefined) {
            continue;
        }
        if !values_eq(&va, &vb, 1e3 * REL_TOL) {
            return false;
        }
        valid += 1;
    }
    valid >= MIN_VALID_POINTS
}

fn constants_eq(a: &Expr, b: &Expr) -> bool {
    let (va, vb) = (eval(a, &Env::new()), eval(b, &Env::new()));
    match (decimal_precision(a), decimal_precision(b)) {
        (Some(p), None) => decimal_matches(&va, p, &vb),
        (None, Some(p)) => decimal_matches(&vb, p, &va),
        // Two decimals are two exact numbers: `2.50` is `2.5`, but `650.11`
        // is not `650.1` (nor `3.1416` `3.14159`), whichever was rounded.
        (Some(_), Some(_)) => values_eq(&va, &vb, 0.0),
        (None, None) => {
            // A rational power that is provably irrational never equals a
            // rational, however close in floating point (`2^{1/2^{1000}}` ≠ 1).
            if matches!(va, Value::Exact(_)) && irrational_power(b)
                || matches!(vb, Value::Exact(_)) && irrational_power(a)
            {
                return false;
            }
            // Radicals: decide exactly in the surd normal form when both fit it.
            let exact = matches!(va, Value::Exact(_)) && matches!(vb, Value::Exact(_));
            if !exact && (surd::has_radical(a) || surd::has_radical(b)) {
                if let (Some(x), Some(y)) = (surd::eval(a), surd::eval(b)) {
                    return x == y;
                }
            }
            values_eq(&va, &vb, REL_TOL)
        }
    }
}

/// True for `a^{p/n}` (or `\sqrt[n]{a}`) with a positive rational `a ≠ 1` that
/// is not a perfect n-th power: an irrational number. Roots of index beyond
/// the size of `a` are decided without computing them.
fn irrational_power(e: &Expr) -> bool {
    let (base, exp) = match e {
        Expr::Pow(b, x) => (eval(b, &Env::new()), eval(x, &Env::new())),
        Expr::Root { index, radicand } => {
            let n = eval(index, &Env::new());
            let Value::Exact(n) = n else { return false };
            if n.is_zero() {
                return false;
            }
            (eval(radicand, &Env::new()), Value::Exact(n.recip()))
        }
        _ => return false,
    };
    let (Value::Exact(a), Value::Exact(q)) = (base, exp) else {
        return false;
    };
    if !a.is_positive() || a.is_one() || q.is_integer() {
        return false;
    }
    let n = q.denom().magnitude().clone();
    let is_nth_power = |v: &BigInt| -> bool {
        if v.is_one() {
            return true;
        }
        match u32::try_from(&n) {
            Ok(k) if u64::from(k) <= v.bits() => num_traits::pow(v.nth_root(k), k as usize) == *v,
            // An index beyond the bit length: only 1 is such a power.
            _ => false,
        }
    };
    !(is_nth_power(a.numer()) && is_nth_power(a.denom()))
}

/// How precisely `e` was written, when it is a decimal literal (possibly
/// negated, scaled by a power of ten or given as a percentage).
fn decimal_precision(e: &Expr) -> Option<Precision> {
    match e {
        Expr::Num(n) => n.decimal,
        Expr::Neg(x) => decimal_precision(x),
        Expr::Percent(x) => decimal_precision(x).map(|p| Precision {
            last_place: p.last_place - 2,
            ..p
        }),
        Expr::Mul(m, p) => {
            let mp = decimal_precision(m)?;
            let Expr::Pow(ten, k) = &**p else { return None };
            let is_ten = matches!(&**ten, Expr::Num(t) if t.value == BigRational::from_integer(10.into()));
            let k = match &**k {
                Expr::Num(n) if n.value.is_integer() => i32::try_from(n.value.numer()).ok()?,
                Expr::Neg(x) => match &**x {
                    Expr::Num(n) if n.value.is_integer() => -i32::try_from(n.value.numer()).ok()?,
                    _ => return None,
                },
                _ => return None,
            };
            is_ten.then_some(Precision {
                last_place: mp.last_place.saturating_add(k),
                ..mp
            })
        }
        _ => None,
    }
}

/// True when the decimal expansion of `q` terminates (its denominator has only 2s and 5s).
fn terminates(q: &BigRational) -> bool {
    let mut d = q.denom().clone();
    for p in [2u32, 5] {
        let p = BigInt::from(p);
        while (&d % &p).is_zero() {
            d /= &p;
        }
    }
    d.is_one()
}

/// Rule 5: does the decimal `dec`, written to precision `p`, stand for `other`?
fn decimal_matches(dec: &Value, p: Precision, other: &Value) -> bool {
    let Value::Exact(d) = dec else { return false };
    match other {
        Value::Exact(q) if terminates(q) => d == q,
        Value::Exact(q) => {
            if p.significant < MIN_SIGNIFICANT {
                return false;
            }
            let unit = pow10(p.last_place);
            (d - q).abs() < unit
        }
        Value::Approx(c) => {
            if p.significant < MIN_SIGNIFICANT || c.im.abs() > REL_TOL * c.re.abs().max(1.0) {
                return false;
            }
            let (Some(df), Some(unit)) = (rational_to_f64(d), rational_to_f64(&pow10(p.last_place))) else {
                return false;
            };
            (df - c.re).abs() < unit * (1.0 + 1e-9)
        }
        _ => false,
    }
}

fn pow10(k: i32) -> BigRational {
    let p = num_traits::pow(BigInt::from(10), k.unsigned_abs() as usize);
    if k >= 0 {
        BigRational::from_integer(p)
    } else {
        BigRational::new(BigInt::one(), p)
    }
}

/// Equality of two values: exact when both are exact, else within `tol` relative.
fn values_eq(a: &Value, b: &Value, tol: f64) -> bool {
    match (a, b) {
        (Value::Exact(x), Value::Exact(y)) => x == y,
        (Value::Infinite(p), Value::Infinite(q)) => p == q,
        (Value::Undefined, _) | (_, Value::Undefined) => false,
        _ => match (a.approx(), b.approx()) {
            (Some(x), Some(y)) => close(x, y, tol.max(REL_TOL)),
            _ => false,
        },
    }
}

fn close(x: Complex64, y: Complex64, tol: f64) -> bool {
    (x - y).norm() <= tol * x.norm().max(y.norm()) + 1e-12
}

/// Fixed pseudo-random rational points, both signs, away from small integers
/// where removable singularities hide.
fn sample_points(vars: &[String]) -> Vec<Env> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..POINTS)
        .map(|k| {
            let values = vars
                .iter()
                .map(|v| {
                    let num = (next() % 2000) as i64 + 137;
                    let den = (next() % 500) as i64 + 101;
                    let sign = if (k + v.len()) % 3 == 2 { -1 } else { 1 };
                    (
                        v.clone(),
                        Value::Exact(BigRational::new((sign * num).into(), den.into())),
                    )
                })
                .collect();
            Env::point(values)
        })
        .collect()
}

/// Equations and inequalities: same operators (after turning `>` around) and
/// `lhs - rhs` proportional (rule 6).
fn relation_eq(t1: &[Expr], o1: &[RelOp], t2: &[Expr], o2: &[RelOp]) -> bool {
    if t1.len() != 2 || t2.len() != 2 {
        return o1 == o2 && t1.len() == t2.len() && t1.iter().zip(t2).all(|(a, b)| scalar_eq(a, b));
    }
    let canon = |t: &[Expr], op: RelOp| -> (RelOp, Expr) {
        let diff = |a: &Expr, b: &Expr| Expr::Sub(a.clone().boxed(), b.clone().boxed());
        match op {
            RelOp::Gt => (RelOp::Lt, diff(&t[1], &t[0])),
            RelOp::Ge => (RelOp::Le, diff(&t[1], &t[0])),
            other => (other, diff(&t[0], &t[1])),
        }
    };
    let (op1, f) = canon(t1, o1[0]);
    let (op2, g) = canon(t2, o2[0]);
    if op1 != op2 || op1 == RelOp::In {
        return false;
    }
    let mut vars = f.variables();
    vars.extend(g.variables());
    vars.sort();
    vars.dedup();
    let mut ratio: Option<Complex64> = None;
    let mut valid = 0;
    for env in sample_points(&vars) {
        let (Some(x), Some(y)) = (eval(&f, &env).approx(), eval(&g, &env).approx()) else {
            continue;
        };
        match ratio {
            None if y.norm() > 1e-12 => {
                let r = x / y;
                let positive = r.re > 0.0 && r.im.abs() <= 1e-9 * r.re;
                if r.norm() < 1e-12 || (op1 != RelOp::Eq && op1 != RelOp::Ne && !positive) {
                    return false;
                }
                ratio = Some(r);
            }
            None => {
                if x.norm() > 1e-12 {
                    return false;
                }
            }
            Some(r) => {
                if !close(x, r * y, 1e-7) {
                    return false;
                }
            }
        }
        valid += 1;
    }
    ratio.is_some() && valid >= MIN_VALID_POINTS.min(POINTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse;

    fn eq(a: &str, b: &str) -> bool {
        equivalent(&parse(a).unwrap(), &parse(b).unwrap())
    }

    #[test]
    fn exact_and_radicals() {
        assert!(eq("\\sqrt{12}", "2\\sqrt{3}"));
        assert!(eq("\\frac{6}{\\sqrt3}", "2\\sqrt3"));
        assert!(!eq("2\\sqrt{3}", "3\\sqrt{2}"));
        assert!(eq("\\frac{1}{1+\\sqrt2}", "\\sqrt2 - 1"));
        // Equal in floating point, different exactly.
        assert!(!eq("\\sqrt{1+10^{-18}}", "1"));
        assert!(!eq("2^{\\frac{1}{2^{1000}}}", "1"));
        assert!(!eq("[1,+\\infty)", "[2^{\\frac{1}{2^{1000}}}, \\infty)"));
        assert!(eq("8^{\\frac13}", "2"));
        assert!(eq("\\sqrt[3]{8}", "2"));
        assert!(eq("2.50", "\\frac52"));
        assert!(!eq("123456789012345678", "123456789012345679"));
    }

    #[test]
    fn decimal_precision_rule() {
        assert!(eq("\\frac13", "0.3333"));
        assert!(eq("\\frac13", "0.333333"));
        assert!(eq("\\frac23", "0.6667"));
        assert!(eq("\\frac23", "0.6666"));
        assert!(!eq("\\frac13", "0.33"));
        assert!(!eq("\\frac13", "0.333"));
        assert!(!eq("0.33", "\\frac13"));
        assert!(eq("\\pi", "3.1416"));
        assert!(!eq("\\pi", "3.14"));
        assert!(!eq("5", "4.9999"));
        assert!(eq("\\frac18", "0.125"));
        assert!(!eq("3.1416", "3.14159"));
        assert!(!eq("650.1", "650.11"));
        assert!(!eq("181.49", "181.5"));
        assert!(eq("2.50", "2.5"));
        assert!(eq("\\frac13", "33.33%"));
    }

    #[test]
    fn symbolic() {
        assert!(eq("(x+1)^2", "x^2+2x+1"));
        assert!(eq("\\frac{x^2-1}{x-1}", "x+1"));
        assert!(!eq("x^2", "2x"));
        assert!(!eq("|x|", "x"));
        assert!(!eq("2x+3", "2y+3"));
        assert!(eq("\\sin^2 x + \\cos^2 x", "1"));
    }

    #[test]
    fn structures_and_relations() {
        assert!(eq("(3,2)", "(3, 2)"));
        assert!(!eq("(3,2)", "(2,3)"));
        assert!(eq("1, -2", "-2, 1"));
        assert!(!eq("1, -2", "1"));
        assert!(eq("\\{1,2\\}", "2, 1"));
        let big: Vec<String> = (0..1500).map(|k| k.to_string()).collect();
        let rev: Vec<String> = big.iter().rev().cloned().collect();
        assert!(eq(
            &format!("\\{{{}\\}}", big.join(", ")),
            &format!("\\{{{}\\}}", rev.join(", "))
        ));
        assert!(eq("\\{\\frac12, 0.3333, 2\\}", "\\{2, \\frac13, 0.5\\}"));
        assert!(eq("[0,1) \\cup (2,\\infty)", "(2, \\infty) \\cup [0, 1)"));
        assert!(!eq("[0,1]", "[0,1)"));
        assert!(eq("(0,1)", "(0, 1)"));
        assert!(eq("x = 5", "5"));
        assert!(eq("5", "x=5"));
        assert!(eq("(p,q)=(3,2)", "(3,2)"));
        assert!(eq("x \\le 3", "(-\\infty, 3]"));
        assert!(eq("1 < x \\le 3", "(1,3]"));
        assert!(!eq("x > 3", "[3,\\infty)"));
        assert!(eq("1 \\pm \\sqrt2", "1+\\sqrt2, 1-\\sqrt2"));
        assert!(eq("\\pm 2i", "2i, -2i"));
        assert!(eq(
            "\\frac{-1\\pm\\sqrt{5}}{2}",
            "\\frac{-1-\\sqrt5}{2}, \\frac{-1+\\sqrt5}{2}"
        ));
        assert!(!eq("\\pm 2i", "2i"));
        assert!(eq("2x - y + 3 = 0", "y = 2x + 3"));
        assert!(!eq("2x - y + 3 = 0", "y = 2x - 3"));
        assert!(eq("x + y = 1", "2x + 2y = 2"));
        assert!(eq("x < y", "y > x"));
        assert!(!eq("x < y", "y < x"));
    }

    #[test]
    fn chains_approximations_and_assignments() {
        assert!(eq("11", "x = 5+5+1 = 11"));
        assert!(!eq("11", "x = 11 = 12"));
        assert!(eq("20", "4 \\cdot 5 = 20"));
        assert!(eq("x^2+2x+1", "(x+1)^2 = x^2 + 2x + 1"));
        assert!(
            !eq("81", "x^2 = 81"),
            "an equation to solve is not its right side"
        );
        assert!(eq("\\frac13", "x = \\frac13 \\approx 0.33"));
        assert!(eq("0.33", "x = \\frac13 \\approx 0.33"));
        assert!(!eq("0.34", "x = \\frac13 \\approx 0.33"));
        assert!(!eq("7", "x = 5 \\approx 7"));
        assert!(
            !eq("7", "x = 6.6 \\approx 7"),
            "an exact gold needs the exact side"
        );
        assert!(eq("6.6", "x = 6.6 \\approx 7"));
        assert!(eq("x \\ne 3", "(-\\infty,3)\\cup(3,\\infty)"));
        assert!(!eq("x \\ne 3", "(-\\infty,3]\\cup(3,\\infty)"));
        assert!(eq("4, 5", "AB=4, CD=5"));
        assert!(!eq("4", "AB=4, CD=5"));
        assert!(eq("(5,2),(7,2)", "p=5,q=2; p=7,q=2"));
        assert!(eq("-2 3 5", "-2, 3, 5"));
    }

    #[test]
    fn based_numerals() {
        assert!(eq("204_5", "204_{5}"));
        assert!(eq("204_5", "204"));
        assert!(!eq("204_5", "54"));
        assert!(!eq("54", "204_5"));
        assert!(!eq("204_5", "204_6"));
        assert!(!eq("11_2", "3_4"));
        assert!(eq("55", "\\sum_{k=1}^{10} k"));
        assert!(eq("\\prod_{k=1}^{5} k", "120"));
        assert!(eq(
            "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}",
            "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}"
        ));
        assert!(!eq(
            "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}",
            "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k}"
        ));
    }

    #[test]
    fn percent_and_degrees() {
        assert!(eq("50%", "50"));
        assert!(eq("50%", "\\frac12"));
        assert!(eq("0.5", "50%"));
        assert!(eq("30°", "30"));
        assert!(eq("30°", "\\frac{\\pi}{6}"));
    }

    #[test]
    fn collection_and_plus_minus_limits() {
        let list = |n: usize, rev: bool| {
            let mut v: Vec<String> = (0..n).map(|k| k.to_string()).collect();
            if rev {
                v.reverse();
            }
            v.join(", ")
        };
        assert!(eq(&list(MAX_ITEMS, false), &list(MAX_ITEMS, true)));
        assert!(!eq(&list(MAX_ITEMS + 1, false), &list(MAX_ITEMS + 1, true)));
        // Elements that only match pairwise (a decimal against a third) are capped.
        let thirds = |n: usize| {
            (1..=n)
                .map(|k| format!("\\frac{{{}}}{{3}}", 3 * k + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let decimals = |n: usize| {
            (1..=n)
                .map(|k| format!("{:.6}", (3 * k + 1) as f64 / 3.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let n = MAX_PAIRWISE;
        assert!(eq(&thirds(n), &decimals(n)));
        assert!(!eq(&thirds(n + 1), &decimals(n + 1)));
        // Four \pm expand to 16 answers; a fifth is not expanded.
        assert!(eq(
            "\\pm 1 \\pm 2 \\pm 4 \\pm 8",
            "-15,-13,-11,-9,-7,-5,-3,-1,1,3,5,7,9,11,13,15"
        ));
        assert!(!eq("\\pm 1 \\pm 2 \\pm 4 \\pm 8 \\pm 16", "1"));
    }

    #[test]
    fn huge_values_are_not_computed() {
        assert!(eq("10^{10^{10}}", "10^{10^{10}}"));
        assert!(!eq("10^{10^{10}}", "10^{10^{11}}"));
    }
}
