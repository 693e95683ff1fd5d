//! The answer AST: what the parser produces and the comparison consumes.
//!
//! One [`Expr`] covers scalar expressions and the structured answers that
//! benchmarks use (tuples, sets, intervals, matrices, equations and
//! inequalities, bare answer lists). `Display` prints a canonical, fully
//! parenthesised form: two answers that print the same are equal, which is
//! the comparison's fast path and what the parser tests check.

use std::fmt;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

/// A numeric literal: its exact value plus, for literals written with a
/// decimal point, how precisely they were written.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    /// The exact value of the literal as written (`0.33` is `33/100`).
    pub value: BigRational,
    /// Present for literals written with a decimal point (or in scientific
    /// notation with a fractional mantissa): they may stand for a rounded value.
    pub decimal: Option<Precision>,
    /// For an integer written with a base subscript (`204_5`), the base.
    pub base: Option<u8>,
}

/// How precisely a decimal literal was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    /// Significant digits in the mantissa (`0.0330` has 3).
    pub significant: u32,
    /// The last written place as a power of ten (`3.14` has -2, `1.5e3` has 2).
    pub last_place: i32,
}

impl Number {
    /// An exact integer literal.
    pub fn int(n: impl Into<BigInt>) -> Number {
        Number {
            value: BigRational::from_integer(n.into()),
            decimal: None,
            base: None,
        }
    }

    /// The digits of an integer in `base` (2 to 36), most significant first.
    pub fn digits_in(&self, base: u32) -> Option<String> {
        if !self.value.is_integer() || !(2..=36).contains(&base) {
            return None;
        }
        Some(self.value.numer().to_str_radix(base).to_ascii_uppercase())
    }

    /// True for a literal written as a plain integer (no decimal point).
    pub fn is_integer_literal(&self) -> bool {
        self.decimal.is_none() && self.value.is_integer()
    }
}

/// Named constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Const {
    /// π.
    Pi,
    /// Euler's number.
    E,
    /// The imaginary unit.
    I,
    /// Positive infinity (negate for −∞).
    Infinity,
}

/// Functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    /// Natural logarithm; `\log` without a base is read as this too.
    Ln,
    Exp,
    Abs,
    Floor,
    Ceil,
}

impl Func {
    /// The canonical name used when printing.
    pub fn name(self) -> &'static str {
        match self {
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Sec => "sec",
            Func::Csc => "csc",
            Func::Cot => "cot",
            Func::Asin => "asin",
            Func::Acos => "acos",
            Func::Atan => "atan",
            Func::Sinh => "sinh",
            Func::Cosh => "cosh",
            Func::Tanh => "tanh",
            Func::Ln => "ln",
            Func::Exp => "exp",
            Func::Abs => "abs",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
        }
    }
}

/// Relation operators in equations and inequalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Set membership, `x \in [0, 1]`.
    In,
    /// `\approx`: the right side is a rounding of the left.
    Approx,
}

impl RelOp {
    fn symbol(self) -> &'static str {
        match self {
            RelOp::Eq => "=",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Le => "<=",
            RelOp::Gt => ">",
            RelOp::Ge => ">=",
            RelOp::In => "in",
            RelOp::Approx => "~=",
        }
    }
}

/// An answer or a part of one.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Expr {
    Num(Number),
    Const(Const),
    /// A variable: one letter, a Greek letter name, optionally with a subscript (`x_1`).
    Var(String),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    /// `a \pm b` (or `\pm b` when the first part is absent): two answers.
    PlusMinus(Option<Box<Expr>>, Box<Expr>),
    Func(Func, Box<Expr>),
    /// `\log_base(x)`.
    Log {
        base: Box<Expr>,
        arg: Box<Expr>,
    },
    /// `\sqrt[index]{radicand}`.
    Root {
        index: Box<Expr>,
        radicand: Box<Expr>,
    },
    Factorial(Box<Expr>),
    Binom(Box<Expr>, Box<Expr>),
    /// `x\%`: means x/100 inside an expression; a whole answer may also mean x.
    Percent(Box<Expr>),
    /// `x^\circ`: means x·π/180 inside an expression; a whole answer may also mean x.
    Degrees(Box<Expr>),
    /// A parenthesised, ordered tuple `(a, b, …)`.
    Tuple(Vec<Expr>),
    /// An interval with its endpoints and which ends are closed.
    Interval {
        lo: Box<Expr>,
        hi: Box<Expr>,
        lo_closed: bool,
        hi_closed: bool,
    },
    /// A set `\{a, b\}`: unordered.
    Set(Vec<Expr>),
    /// A bare list of answers `1, -2`: unordered.
    List(Vec<Expr>),
    /// `A \cup B \cup …`.
    Union(Vec<Expr>),
    /// `A \cap B`.
    Intersection(Box<Expr>, Box<Expr>),
    /// Rows of a matrix.
    Matrix(Vec<Vec<Expr>>),
    /// A chain `e0 op0 e1 op1 e2 …` with `ops.len() == terms.len() - 1`.
    Relation {
        terms: Vec<Expr>,
        ops: Vec<RelOp>,
    },
    /// An answer that is words, compared as a normalised string.
    Text(String),
    /// `\sum_{var=lo}^{hi} body` (or `\prod`).
    BigOp {
        kind: BigOpKind,
        var: String,
        lo: Box<Expr>,
        hi: Box<Expr>,
        body: Box<Expr>,
    },
}

/// Which big operator a [`Expr::BigOp`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigOpKind {
    /// `\sum`.
    Sum,
    /// `\prod`.
    Prod,
}

impl Expr {
    /// Boxes `self`; shorthand for building trees.
    pub fn boxed(self) -> Box<Expr> {
        Box::new(self)
    }

    /// An integer constant.
    pub fn int(n: i64) -> Expr {
        Expr::Num(Number::int(n))
    }

    /// True for nodes that are collections or relations rather than values.
    pub fn is_structure(&self) -> bool {
        matches!(
            self,
            Expr::Tuple(_)
                | Expr::Interval { .. }
                | Expr::Set(_)
                | Expr::List(_)
                | Expr::Union(_)
                | Expr::Intersection(..)
                | Expr::Matrix(_)
                | Expr::Relation { .. }
                | Expr::Text(_)
                | Expr::PlusMinus(..)
        )
    }

    /// Calls `f` on every direct child.
    pub fn for_each_child(&self, mut f: impl FnMut(&Expr)) {
        match self {
            Expr::Num(_) | Expr::Const(_) | Expr::Var(_) | Expr::Text(_) => {}
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Factorial(a) | Expr::Percent(a) | Expr::Degrees(a) => {
                f(a)
            }
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Binom(a, b)
            | Expr::Intersection(a, b) => {
                f(a);
                f(b);
            }
            Expr::PlusMinus(a, b) => {
                if let Some(a) = a {
                    f(a);
                }
                f(b);
            }
            Expr::Log { base, arg } => {
                f(base);
                f(arg);
            }
            Expr::Root { index, radicand } => {
                f(index);
                f(radicand);
            }
            Expr::Interval { lo, hi, .. } => {
                f(lo);
                f(hi);
            }
            Expr::Tuple(v) | Expr::Set(v) | Expr::List(v) | Expr::Union(v) => v.iter().for_each(f),
            Expr::Matrix(rows) => rows.iter().flatten().for_each(f),
            Expr::Relation { terms, .. } => terms.iter().for_each(f),
            Expr::BigOp { lo, hi, body, .. } => {
                f(lo);
                f(hi);
                f(body);
            }
        }
    }

    /// A copy with every direct child replaced by `f(child)`.
    pub fn map_children(&self, mut f: impl FnMut(&Expr) -> Expr) -> Expr {
        let mut b = |e: &Expr| f(e).boxed();
        match self {
            Expr::Num(_) | Expr::Const(_) | Expr::Var(_) | Expr::Text(_) => self.clone(),
            Expr::Neg(a) => Expr::Neg(b(a)),
            Expr::Func(func, a) => Expr::Func(*func, b(a)),
            Expr::Factorial(a) => Expr::Factorial(b(a)),
            Expr::Percent(a) => Expr::Percent(b(a)),
            Expr::Degrees(a) => Expr::Degrees(b(a)),
            Expr::Add(x, y) => Expr::Add(b(x), b(y)),
            Expr::Sub(x, y) => Expr::Sub(b(x), b(y)),
            Expr::Mul(x, y) => Expr::Mul(b(x), b(y)),
            Expr::Div(x, y) => Expr::Div(b(x), b(y)),
            Expr::Pow(x, y) => Expr::Pow(b(x), b(y)),
            Expr::Binom(x, y) => Expr::Binom(b(x), b(y)),
            Expr::Intersection(x, y) => Expr::Intersection(b(x), b(y)),
            Expr::PlusMinus(x, y) => Expr::PlusMinus(x.as_ref().map(|x| b(x)), b(y)),
            Expr::Log { base, arg } => Expr::Log {
                base: b(base),
                arg: b(arg),
            },
            Expr::Root { index, radicand } => Expr::Root {
                index: b(index),
                radicand: b(radicand),
            },
            Expr::Interval {
                lo,
                hi,
                lo_closed,
                hi_closed,
            } => Expr::Interval {
                lo: b(lo),
                hi: b(hi),
                lo_closed: *lo_closed,
                hi_closed: *hi_closed,
            },
            Expr::Tuple(v) => Expr::Tuple(v.iter().map(&mut f).collect()),
            Expr::Set(v) => Expr::Set(v.iter().map(&mut f).collect()),
            Expr::List(v) => Expr::List(v.iter().map(&mut f).collect()),
            Expr::Union(v) => Expr::Union(v.iter().map(&mut f).collect()),
            Expr::Matrix(rows) => Expr::Matrix(rows.iter().map(|r| r.iter().map(&mut f).collect()).collect()),
            Expr::Relation { terms, ops } => Expr::Relation {
                terms: terms.iter().map(&mut f).collect(),
                ops: ops.clone(),
            },
            Expr::BigOp {
                kind,
                var,
                lo,
                hi,
                body,
            } => Expr::BigOp {
                kind: *kind,
                var: var.clone(),
                lo: b(lo),
                hi: b(hi),
                body: b(body),
            },
        }
    }

    /// True when some node of the tree satisfies `pred`.
    pub fn any(&self, pred: &impl Fn(&Expr) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        let mut found = false;
        self.for_each_child(|c| found = found || c.any(pred));
        found
    }

    /// Free variable names, sorted and deduplicated (a sum's index is bound).
    pub fn variables(&self) -> Vec<String> {
        fn walk(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::Var(v) => out.push(v.clone()),
                Expr::BigOp {
                    var, lo, hi, body, ..
                } => {
                    walk(lo, out);
                    walk(hi, out);
                    let mut inner = Vec::new();
                    walk(body, &mut inner);
                    out.extend(inner.into_iter().filter(|v| v != var));
                }
                _ => e.for_each_child(|c| walk(c, out)),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, open: &str, items: &[Expr], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(close)
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = self.base {
            if let Some(digits) = self.digits_in(u32::from(b)) {
                return write!(f, "{digits}_{b}");
            }
        }
        if self.value.denom().is_one() {
            write!(f, "{}", self.value.numer())
        } else {
            write!(f, "{}/{}", self.value.numer(), self.value.denom())
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num(n) if n.value.is_zero() => f.write_str("0"),
            Expr::Num(n) if n.value.denom().is_one() => write!(f, "{n}"),
            Expr::Num(n) => write!(f, "[{n}]"),
            Expr::Const(Const::Pi) => f.write_str("pi"),
            Expr::Const(Const::E) => f.write_str("e"),
            Expr::Const(Const::I) => f.write_str("i"),
            Expr::Const(Const::Infinity) => f.write_str("oo"),
            Expr::Var(v) => f.write_str(v),
            Expr::Neg(a) => write!(f, "(-{a})"),
            Expr::Add(a, b) => write!(f, "({a} + {b})"),
            Expr::Sub(a, b) => write!(f, "({a} - {b})"),
            Expr::Mul(a, b) => write!(f, "({a} * {b})"),
            Expr::Div(a, b) => write!(f, "({a} / {b})"),
            Expr::Pow(a, b) => write!(f, "({a} ^ {b})"),
            Expr::PlusMinus(Some(a), b) => write!(f, "({a} +- {b})"),
            Expr::PlusMinus(None, b) => write!(f, "(+-{b})"),
            Expr::Func(func, a) => write!(f, "{}({a})", func.name()),
            Expr::Log { base, arg } => write!(f, "log_{base}({arg})"),
            Expr::Root { index, radicand } => write!(f, "root_{index}({radicand})"),
            Expr::Factorial(a) => write!(f, "({a})!"),
            Expr::Binom(a, b) => write!(f, "binom({a}, {b})"),
            Expr::Percent(a) => write!(f, "({a})%"),
            Expr::Degrees(a) => write!(f, "({a})deg"),
            Expr::Tuple(v) => write_list(f, "tuple(", v, ")"),
            Expr::Interval {
                lo,
                hi,
                lo_closed,
                hi_closed,
            } => write!(
                f,
                "{}{lo}, {hi}{}",
                if *lo_closed { "[" } else { "(" },
                if *hi_closed { "]" } else { ")" }
            ),
            Expr::Set(v) => write_list(f, "{", v, "}"),
            Expr::List(v) => write_list(f, "list(", v, ")"),
            Expr::Union(v) => {
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" U ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            Expr::Intersection(a, b) => write!(f, "({a} n {b})"),
            Expr::Matrix(rows) => {
                f.write_str("matrix(")?;
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write_list(f, "", r, "")?;
                }
                f.write_str(")")
            }
            Expr::Relation { terms, ops } => {
                write!(f, "{}", terms[0])?;
                for (op, t) in ops.iter().zip(&terms[1..]) {
                    write!(f, " {} {t}", op.symbol())?;
                }
                Ok(())
            }
            Expr::Text(s) => write!(f, "text({s:?})"),
            Expr::BigOp {
                kind,
                var,
                lo,
                hi,
                body,
            } => {
                let name = match kind {
                    BigOpKind::Sum => "sum",
                    BigOpKind::Prod => "prod",
                };
                write!(f, "{name}_{{{var}={lo}}}^{{{hi}}}({body})")
            }
        }
    }
}
