//! Exact arithmetic on sums of square roots: `Σ qᵢ·√mᵢ` with rational `qᵢ`
//! and distinct square-free integers `mᵢ ≥ 1`.
//!
//! This is the normal form that decides radical answers exactly:
//! `\sqrt{12}`, `2\sqrt3` and `\frac{6}{\sqrt3}` are all `2·√3`,
//! `\frac{1}{1+\sqrt2}` is `-1 + √2`, and `\sqrt{1+10^{-18}}` is *not* 1
//! (which floating point cannot tell). [`eval`] returns `None` for anything
//! outside the form (π, cube roots of non-cubes, `√(1+√2)`, variables) or too
//! big to decide; the caller then falls back to floating point.

use std::collections::BTreeMap;

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::ast::Expr;

/// Most terms in one sum.
pub const MAX_TERMS: usize = 64;
/// Largest radicand (before removing square factors) that is factored.
pub const MAX_RADICAND: u128 = 1 << 100;
/// Largest size of a coefficient, in bits of numerator plus denominator.
const MAX_BITS: u64 = 2048;
/// Coefficient operations one evaluation may do, counted in 64-bit words
/// squared times 64 (the gcd that reduces each rational).
const MAX_WORK: u64 = 2_000_000;
/// Primes up to this bound are divided out; a cofactor below its cube is
/// then a prime or a product of two primes, so square-freeness is decidable.
const TRIAL_BOUND: u64 = 10_000;

/// `Σ coefficient·√radicand`, radicands square-free, coefficients non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Surd(BTreeMap<u128, BigRational>);

impl Surd {
    /// A rational number.
    pub fn rational(q: BigRational) -> Surd {
        let mut m = BTreeMap::new();
        if !q.is_zero() {
            m.insert(1, q);
        }
        Surd(m)
    }

    fn zero() -> Surd {
        Surd(BTreeMap::new())
    }

    /// The value when it is rational.
    fn as_rational(&self) -> Option<BigRational> {
        match self.0.len() {
            0 => Some(BigRational::zero()),
            1 => self.0.get(&1).cloned(),
            _ => None,
        }
    }

    fn checked(self) -> Option<Surd> {
        let ok = self.0.len() <= MAX_TERMS
            && self
                .0
                .values()
                .all(|q| q.numer().bits() + q.denom().bits() <= MAX_BITS);
        ok.then_some(self)
    }

    fn add(&self, other: &Surd, work: &Work) -> Option<Surd> {
        let mut m = self.0.clone();
        for (r, q) in &other.0 {
            work.charge(q)?;
            let sum = match m.get(r) {
                Some(p) => add_q(p, q),
                None => q.clone(),
            };
            if sum.is_zero() {
                m.remove(r);
            } else {
                m.insert(*r, sum);
            }
        }
        Surd(m).checked()
    }

    fn neg(&self) -> Surd {
        Surd(self.0.iter().map(|(r, q)| (*r, -q.clone())).collect())
    }

    fn scale(&self, k: &BigRational, work: &Work) -> Option<Surd> {
        if k.is_zero() {
            return Some(Surd::zero());
        }
        for q in self.0.values() {
            work.charge(q)?;
        }
        Surd(self.0.iter().map(|(r, q)| (*r, q * k)).collect()).checked()
    }

    fn mul(&self, other: &Surd, work: &Work) -> Option<Surd> {
        let mut acc = Surd::zero();
        for (m, a) in &self.0 {
            for (n, b) in &other.0 {
                work.charge(a)?;
                work.charge(b)?;
                // √m·√n = g·√(m/g · n/g) with g = gcd(m, n); the rest stays square-free.
                let g = m.gcd(n);
                let rad = (m / g).checked_mul(n / g)?;
                let coef = mul_q(&mul_q(a, b), &BigRational::from_integer(BigInt::from(g)));
                acc = acc.add(&Surd(BTreeMap::from([(rad, coef)])), work)?;
            }
        }
        Some(acc)
    }

    /// The inverse, when the denominator can be rationalised: a single term,
    /// or a rational plus one radical term (`a + b√n` by its conjugate).
    fn recip(&self, work: &Work) -> Option<Surd> {
        match self.0.len() {
            0 => None,
            1 => {
                let (n, c) = self.0.iter().next().unwrap();
                // 1/(c√n) = √n / (c·n)
                let k = (c * BigRational::from_integer(BigInt::from(*n))).recip();
                Surd(BTreeMap::from([(*n, k)])).checked()
            }
            2 if self.0.contains_key(&1) => {
                let conj = Surd(
                    self.0
                        .iter()
                        .map(|(r, q)| (*r, if *r == 1 { q.clone() } else { -q.clone() }))
                        .collect(),
                );
                let den = self.mul(&conj, work)?.as_rational()?;
                if den.is_zero() {
                    return None;
                }
                conj.scale(&den.recip(), work)
            }
            _ => None,
        }
    }

    fn pow(&self, n: i64, work: &Work) -> Option<Surd> {
        if n.unsigned_abs() > 64 {
            return None;
        }
        let base = if n < 0 { self.recip(work)? } else { self.clone() };
        let mut acc = Surd::rational(BigRational::one());
        for _ in 0..n.unsigned_abs() {
            acc = acc.mul(&base, work)?;
        }
        Some(acc)
    }

    /// The square root of a non-negative rational, in normal form.
    fn sqrt_rational(q: &BigRational, work: &Work) -> Option<Surd> {
        if q.is_negative() {
            return None;
        }
        if q.is_zero() {
            return Some(Surd::zero());
        }
        // √(p/r) = √p / √r, each written as s·√f.
        let root = |v: &BigInt| -> Option<Surd> {
            let v = v.to_u128().filter(|&v| v <= MAX_RADICAND)?;
            let (sq, free) = split_square(v)?;
            Some(Surd(BTreeMap::from([(
                free,
                BigRational::from_integer(BigInt::from(sq)),
            )])))
        };
        root(q.numer())?.mul(&root(q.denom())?.recip(work)?, work)
    }
}

/// `a + b`, skipping the gcd when both are integers (num-rational reduces
/// even by a denominator of 1, which costs a binary gcd).
fn add_q(a: &BigRational, b: &BigRational) -> BigRational {
    if a.is_integer() && b.is_integer() {
        BigRational::from_integer(a.numer() + b.numer())
    } else {
        a + b
    }
}

/// `a · b`, skipping the gcd when both are integers.
fn mul_q(a: &BigRational, b: &BigRational) -> BigRational {
    if a.is_integer() && b.is_integer() {
        BigRational::from_integer(a.numer() * b.numer())
    } else {
        a * b
    }
}

/// True when `e` has a square root (or a half-integer power) for the
/// normal form to decide; otherwise exact rationals already do.
pub fn has_radical(e: &Expr) -> bool {
    e.any(&|x| match x {
        Expr::Root { .. } => true,
        Expr::Pow(_, p) => !matches!(&**p, Expr::Num(n) if n.value.is_integer()),
        _ => false,
    })
}

/// The coefficient work left in one evaluation.
struct Work(std::cell::Cell<u64>);

impl Work {
    /// Charges for one operation on `q`; `None` when the budget is spent.
    fn charge(&self, q: &BigRational) -> Option<()> {
        let words = (q.numer().bits() + q.denom().bits()) / 64 + 1;
        let cost = 64 * words * words;
        let left = self.0.get().checked_sub(cost)?;
        self.0.set(left);
        Some(())
    }
}

/// Writes `v = s²·f` with `f` square-free; `None` when that cannot be decided cheaply.
fn split_square(mut v: u128) -> Option<(u128, u128)> {
    let mut s: u128 = 1;
    let mut f: u128 = 1;
    let mut p: u128 = 2;
    while p <= u128::from(TRIAL_BOUND) && p * p <= v {
        let mut e = 0;
        while v.is_multiple_of(p) {
            v /= p;
            e += 1;
        }
        s *= p.pow(e / 2);
        if e % 2 == 1 {
            f *= p;
        }
        p += if p == 2 { 1 } else { 2 };
    }
    if v > 1 {
        let bound = u128::from(TRIAL_BOUND);
        if p * p > v || v < bound * bound * bound {
            // v is 1, a prime, or a product of two primes above the bound.
            let r = v.isqrt();
            if r * r == v {
                s *= r;
            } else {
                f = f.checked_mul(v)?;
            }
        } else {
            return None;
        }
    }
    Some((s, f))
}

/// The surd value of a constant expression, or `None` when it is not one
/// (or deciding it would take more than a bounded amount of work).
pub fn eval(e: &Expr) -> Option<Surd> {
    eval_in(e, &Work(std::cell::Cell::new(MAX_WORK)))
}

fn eval_in(e: &Expr, w: &Work) -> Option<Surd> {
    match e {
        Expr::Num(n) => Some(Surd::rational(n.value.clone())),
        Expr::Neg(a) => Some(eval_in(a, w)?.neg()),
        Expr::Add(a, b) => eval_in(a, w)?.add(&eval_in(b, w)?, w),
        Expr::Sub(a, b) => eval_in(a, w)?.add(&eval_in(b, w)?.neg(), w),
        Expr::Mul(a, b) => eval_in(a, w)?.mul(&eval_in(b, w)?, w),
        Expr::Div(a, b) => eval_in(a, w)?.mul(&eval_in(b, w)?.recip(w)?, w),
        Expr::Percent(a) => eval_in(a, w)?.scale(&BigRational::new(BigInt::one(), BigInt::from(100)), w),
        Expr::Root { index, radicand } => {
            let n = eval_in(index, w)?.as_rational()?;
            if n != BigRational::from_integer(BigInt::from(2)) {
                return None;
            }
            Surd::sqrt_rational(&eval_in(radicand, w)?.as_rational()?, w)
        }
        Expr::Pow(a, b) => {
            let exp = eval_in(b, w)?.as_rational()?;
            let base = eval_in(a, w)?;
            if exp.is_integer() {
                return base.pow(exp.to_integer().to_i64()?, w);
            }
            // x^{k/2} = (√x)^k for rational x.
            if *exp.denom() == BigInt::from(2) {
                let root = Surd::sqrt_rational(&base.as_rational()?, w)?;
                return root.pow(exp.numer().to_i64()?, w);
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse;

    fn s(text: &str) -> Option<Surd> {
        eval(&parse(text).unwrap())
    }

    #[test]
    fn normal_forms_agree() {
        assert_eq!(s("\\sqrt{12}"), s("2\\sqrt{3}"));
        assert_eq!(s("\\frac{6}{\\sqrt3}"), s("2\\sqrt3"));
        assert_eq!(s("\\frac{1}{1+\\sqrt2}"), s("\\sqrt2 - 1"));
        assert_eq!(s("(\\sqrt2+\\sqrt3)^2"), s("5+2\\sqrt6"));
        assert_eq!(s("\\sqrt{\\frac{3}{2}}"), s("\\frac{\\sqrt6}{2}"));
        assert_eq!(s("8^{1/2}"), s("2\\sqrt2"));
        assert_eq!(s("\\sqrt{2}\\sqrt{8}"), s("4"));
        assert_ne!(s("2\\sqrt{3}"), s("3\\sqrt{2}"));
    }

    #[test]
    fn decides_what_floats_cannot() {
        // 10^18 + 1 = 101 · 9901 · 999999000001: factored exactly.
        let near_one = s("\\sqrt{1+10^{-18}}").unwrap();
        assert_ne!(Some(near_one), s("1"));
    }

    #[test]
    fn outside_the_form_is_none() {
        assert_eq!(s("\\pi"), None);
        assert_eq!(s("\\sqrt[3]{2}"), None);
        assert_eq!(s("\\sqrt{1+\\sqrt2}"), None);
        assert_eq!(s("\\frac{1}{\\sqrt2+\\sqrt3+1}"), None);
        assert_eq!(s("x\\sqrt2"), None);
        assert_eq!(s("\\sqrt{-4}"), None);
        assert_eq!(s("1/(\\sqrt2-\\sqrt2)"), None);
    }

    #[test]
    fn square_free_split() {
        assert_eq!(split_square(72), Some((6, 2)));
        assert_eq!(split_square(1), Some((1, 1)));
        assert_eq!(split_square(10_007 * 10_007), Some((10_007, 1)));
        assert_eq!(split_square(10_007 * 10_009), Some((1, 10_007 * 10_009)));
        // A product of three large primes cannot be decided by trial division.
        assert_eq!(split_square(10_007 * 10_009 * 10_037), None);
    }
}
