//! The `nom` grammar from normalised LaTeX / plain text to [`Expr`].
//!
//! One small function per grammar level, lowest precedence first:
//!
//! | level | rule | operators |
//! |---|---|---|
//! | answer | `list` | `,` `;` (a bare list of answers) |
//! | relation | `relation` | `=` `\ne` `<` `\le` `>` `\ge` `\in` (chains allowed) |
//! | set algebra | `union` | `\cup` `\cap` |
//! | additive | `additive` | `+` `-` `\pm` `\mp` |
//! | multiplicative | `term` | `*` `\cdot` `\times` `/` `\div`, juxtaposition |
//! | sign | `unary` | prefix `-` `+` `\pm` |
//! | power | `power` | `^` (right-associative), postfix `!` `%` `°` |
//! | atoms | `primary` | numbers, constants, variables, `\frac`, `\sqrt`, functions, brackets, matrices |
//!
//! Binary operators at each level are listed as data (`ADDITIVE`, `MULTIPLICATIVE`,
//! `RELATIONS`). Work is bounded: nesting deeper than [`MAX_DEPTH`] and numbers
//! with more than [`MAX_DIGITS`] digits or exponents beyond [`MAX_EXPONENT`] are
//! rejected with a [`ParseError`], never computed.

use std::cell::Cell;

use nom::{
    bytes::complete::tag,
    character::complete::{digit1, multispace0},
    error::{Error as NomError, ErrorKind},
    IResult, Parser,
};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

use super::ast::{BigOpKind, Const, Expr, Func, Number, Precision, RelOp};

/// Deepest nesting of brackets, groups, signs and powers the parser follows.
pub const MAX_DEPTH: u32 = 100;
/// Deepest AST the parser builds (chains such as `1+1+…+1` count one level
/// per operator). Every later stage recurses over the tree, so this bounds
/// their stack use too.
pub const MAX_TREE_DEPTH: u32 = 1000;
/// Most digits in one numeric literal.
pub const MAX_DIGITS: usize = 2000;
/// Largest decimal exponent in scientific notation (`1e5000` is refused).
pub const MAX_EXPONENT: i64 = 5000;

/// Why an answer could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse answer at byte {offset} (near {near:?}): {reason}")]
pub struct ParseError {
    /// Byte offset in the normalised answer where parsing stopped.
    pub offset: usize,
    /// Up to 20 characters of input from that point.
    pub near: String,
    /// What went wrong.
    pub reason: String,
}

type Res<'a, T> = IResult<&'a str, T>;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static TREE: Cell<u32> = const { Cell::new(0) };
    static IN_ABS: Cell<u32> = const { Cell::new(0) };
    /// Inside `(…)`, `[…]` or `\{…\}`, where a comma separates items.
    static IN_LIST: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` with `IN_LIST` raised, so `{100,200}` is two numbers.
fn in_list<T>(f: impl FnOnce() -> T) -> T {
    IN_LIST.with(|c| c.set(c.get() + 1));
    let out = f();
    IN_LIST.with(|c| c.set(c.get() - 1));
    out
}

/// Counts one level of parser recursion (and of tree depth) for as long as it lives.
struct DepthGuard;

impl DepthGuard {
    fn enter(i: &str) -> Result<DepthGuard, nom::Err<NomError<&str>>> {
        let d = DEPTH.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        let t = TREE.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        let guard = DepthGuard;
        if d > MAX_DEPTH || t > MAX_TREE_DEPTH {
            return Err(fail(i, ErrorKind::TooLarge));
        }
        Ok(guard)
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
        TREE.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Counts the tree levels a left-folded chain (`a + b + c`, `n!!!`) adds,
/// for as long as the chain's parser runs.
#[derive(Default)]
struct ChainGuard(u32);

impl ChainGuard {
    /// One more node wraps the accumulated chain.
    fn grow<'a>(&mut self, i: &'a str) -> Result<(), nom::Err<NomError<&'a str>>> {
        self.0 += 1;
        let t = TREE.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        if t > MAX_TREE_DEPTH {
            return Err(fail(i, ErrorKind::TooLarge));
        }
        Ok(())
    }
}

impl Drop for ChainGuard {
    fn drop(&mut self) {
        let n = self.0;
        TREE.with(|c| c.set(c.get().saturating_sub(n)));
    }
}

fn fail(i: &str, kind: ErrorKind) -> nom::Err<NomError<&str>> {
    nom::Err::Failure(NomError::new(i, kind))
}

fn backtrack<T>(i: &str) -> Res<'_, T> {
    Err(nom::Err::Error(NomError::new(i, ErrorKind::Alt)))
}

/// Parses a whole normalised answer.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    DEPTH.with(|c| c.set(0));
    TREE.with(|c| c.set(0));
    IN_ABS.with(|c| c.set(0));
    IN_LIST.with(|c| c.set(0));
    let err = |rest: &str, reason: &str| ParseError {
        offset: input.len() - rest.len(),
        near: rest.chars().take(20).collect(),
        reason: reason.to_string(),
    };
    match answer(input) {
        Ok((rest, e)) => {
            let rest = rest.trim_start();
            if rest.is_empty() {
                Ok(e)
            } else {
                Err(err(rest, "unexpected input"))
            }
        }
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(err(
            e.input,
            match e.code {
                ErrorKind::TooLarge => "nested too deeply",
                ErrorKind::Verify => "number too large",
                _ => "expected an expression",
            },
        )),
        Err(nom::Err::Incomplete(_)) => Err(err("", "incomplete input")),
    }
}

fn ws(i: &str) -> &str {
    multispace0::<&str, NomError<&str>>(i).map_or(i, |(r, _)| r)
}

/// Matches a literal token after optional white space.
fn tok<'a>(t: &'static str) -> impl Fn(&'a str) -> Res<'a, &'a str> {
    move |i: &'a str| tag(t).parse(ws(i))
}

/// Matches `\name` not followed by another letter.
fn cmd<'a>(name: &'static str) -> impl Fn(&'a str) -> Res<'a, ()> {
    move |i: &'a str| {
        let j = ws(i);
        match j.strip_prefix('\\').and_then(|r| r.strip_prefix(name)) {
            Some(r) if !r.starts_with(|c: char| c.is_ascii_alphabetic()) => Ok((r, ())),
            _ => backtrack(i),
        }
    }
}

/// Tries each `(token, value)` in order.
fn one_of<'a, T: Copy>(i: &'a str, table: &[(&'static str, T)]) -> Res<'a, T> {
    let j = ws(i);
    for &(t, v) in table {
        if let Some(r) = j.strip_prefix(t) {
            let is_word = t.starts_with('\\') && t[1..].bytes().all(|c| c.is_ascii_alphabetic());
            if is_word && r.starts_with(|c: char| c.is_ascii_alphabetic()) {
                continue;
            }
            return Ok((r, v));
        }
    }
    backtrack(i)
}

// ---- answer level: bare lists ---------------------------------------------

fn answer(i: &str) -> Res<'_, Expr> {
    let (mut i, first) = relation(i)?;
    // Items, and where a `;` ended a group of them.
    let mut items = vec![first];
    let mut group_ends = Vec::new();
    loop {
        let (r, sep) = match one_of(i, &[(",", false), (";", true)]) {
            Ok(found) => found,
            // Numbers with only spaces between them (`-2 3 5`) are a list.
            Err(_) if ends_with_literal(items.last()) && starts_literal(i) => (i, false),
            Err(_) => break,
        };
        if ws(r).is_empty() {
            i = r;
            break;
        }
        if sep {
            group_ends.push(items.len());
        }
        let (r, e) = relation(r)?;
        items.push(e);
        i = r;
    }
    Ok((i, answer_list(items, group_ends)))
}

/// True for a numeric literal, possibly negated.
fn ends_with_literal(e: Option<&Expr>) -> bool {
    match e {
        Some(Expr::Num(_)) => true,
        Some(Expr::Neg(x)) => matches!(&**x, Expr::Num(_)),
        _ => false,
    }
}

/// True when `i` is white space followed by a (possibly negative) number.
fn starts_literal(i: &str) -> bool {
    let j = ws(i);
    j.len() < i.len()
        && j.trim_start_matches('-')
            .starts_with(|c: char| c.is_ascii_digit())
}

/// A bare answer list. When `;` separates groups of equal size (at least two)
/// made with `,` (`p=5,q=2; p=7,q=2`), each group is one tuple.
fn answer_list(mut items: Vec<Expr>, group_ends: Vec<usize>) -> Expr {
    if items.len() == 1 {
        return items.pop().unwrap();
    }
    let size = group_ends.first().copied().unwrap_or(0);
    let grouped = size >= 2
        && items.len().is_multiple_of(size)
        && group_ends.len() == items.len() / size - 1
        && group_ends.iter().enumerate().all(|(k, &e)| e == (k + 1) * size);
    if !grouped {
        return Expr::List(items);
    }
    let mut groups = Vec::new();
    let mut it = items.into_iter();
    loop {
        let g: Vec<Expr> = it.by_ref().take(size).collect();
        if g.is_empty() {
            break;
        }
        groups.push(Expr::Tuple(g));
    }
    Expr::List(groups)
}

// ---- relations --------------------------------------------------------------

const RELATIONS: &[(&str, RelOp)] = &[
    ("\\le", RelOp::Le),
    ("\\ge", RelOp::Ge),
    ("\\ne", RelOp::Ne),
    ("\\in", RelOp::In),
    ("\\approx", RelOp::Approx),
    ("<=", RelOp::Le),
    (">=", RelOp::Ge),
    ("!=", RelOp::Ne),
    ("=<", RelOp::Le),
    ("=>", RelOp::Ge),
    ("==", RelOp::Eq),
    ("=", RelOp::Eq),
    ("<", RelOp::Lt),
    (">", RelOp::Gt),
];

fn relation(i: &str) -> Res<'_, Expr> {
    let (mut i, first) = union(i)?;
    let mut terms = vec![first];
    let mut ops = Vec::new();
    while let Ok((r, op)) = one_of(i, RELATIONS) {
        let (r, e) = union(r)?;
        ops.push(op);
        terms.push(e);
        i = r;
    }
    if ops.is_empty() {
        Ok((i, terms.pop().unwrap()))
    } else {
        Ok((i, Expr::Relation { terms, ops }))
    }
}

// ---- set algebra --------------------------------------------------------------

fn union(i: &str) -> Res<'_, Expr> {
    let (mut i, first) = additive(i)?;
    let mut parts = vec![first];
    let mut acc: Option<Expr> = None;
    let mut chain = ChainGuard::default();
    loop {
        chain.grow(i)?;
        if let Ok((r, _)) = cmd("cup")(i) {
            let (r, e) = additive(r)?;
            parts.push(e);
            i = r;
        } else if let Ok((r, _)) = cmd("cap")(i) {
            let (r, e) = additive(r)?;
            let left = union_of(std::mem::take(&mut parts));
            acc = Some(Expr::Intersection(left.boxed(), e.boxed()));
            i = r;
        } else {
            break;
        }
        if let Some(a) = acc.take() {
            parts.push(a);
        }
    }
    Ok((i, union_of(parts)))
}

/// A union of several parts; a pair `(a, b)` inside one is an open interval.
fn union_of(mut parts: Vec<Expr>) -> Expr {
    if parts.len() == 1 {
        return parts.pop().unwrap();
    }
    let as_interval = |e: Expr| match e {
        Expr::Tuple(mut v) if v.len() == 2 => {
            let hi = v.pop().unwrap();
            let lo = v.pop().unwrap();
            Expr::Interval {
                lo: lo.boxed(),
                hi: hi.boxed(),
                lo_closed: false,
                hi_closed: false,
            }
        }
        other => other,
    };
    Expr::Union(parts.into_iter().map(as_interval).collect())
}

// ---- additive ---------------------------------------------------------------------

#[derive(Clone, Copy)]
enum AddOp {
    Plus,
    Minus,
    PlusMinus,
}

const ADDITIVE: &[(&str, AddOp)] = &[
    ("+", AddOp::Plus),
    ("-", AddOp::Minus),
    ("\\pm", AddOp::PlusMinus),
    ("\\mp", AddOp::PlusMinus),
];

fn additive(i: &str) -> Res<'_, Expr> {
    let (mut i, mut acc) = term(i)?;
    let mut chain = ChainGuard::default();
    while let Ok((r, op)) = one_of(i, ADDITIVE) {
        chain.grow(i)?;
        let (r, rhs) = term(r)?;
        acc = match op {
            AddOp::Plus => Expr::Add(acc.boxed(), rhs.boxed()),
            AddOp::Minus => Expr::Sub(acc.boxed(), rhs.boxed()),
            AddOp::PlusMinus => Expr::PlusMinus(Some(acc.boxed()), rhs.boxed()),
        };
        i = r;
    }
    Ok((i, acc))
}

// ---- multiplicative ------------------------------------------------------------

#[derive(Clone, Copy)]
enum MulOp {
    Times,
    Over,
}

const MULTIPLICATIVE: &[(&str, MulOp)] = &[
    ("*", MulOp::Times),
    ("\\cdot", MulOp::Times),
    ("\\times", MulOp::Times),
    ("\\div", MulOp::Over),
    ("/", MulOp::Over),
];

fn term(i: &str) -> Res<'_, Expr> {
    let (mut i, mut acc) = unary(i)?;
    let mut first = true;
    let mut chain = ChainGuard::default();
    loop {
        chain.grow(i)?;
        if let Ok((r, op)) = one_of(i, MULTIPLICATIVE) {
            let (r, rhs) = unary(r)?;
            acc = match op {
                MulOp::Times => Expr::Mul(acc.boxed(), rhs.boxed()),
                MulOp::Over => Expr::Div(acc.boxed(), rhs.boxed()),
            };
            i = r;
            first = false;
            continue;
        }
        // Juxtaposition: `2x`, `3\sqrt2`, `(x+1)(x-1)`, and mixed numbers `3\frac12`.
        // Two numbers side by side (`3 5`) are two answers, not a product.
        let next = ws(i);
        if !starts_factor(next) || (ends_with_literal(Some(&acc)) && starts_literal(i)) {
            break;
        }
        let Ok((r, rhs)) = power(next) else { break };
        acc = match mixed_number(&acc, &rhs, first && next.starts_with("\\frac")) {
            Some(m) => m,
            None => Expr::Mul(acc.boxed(), rhs.boxed()),
        };
        i = r;
        first = false;
    }
    Ok((i, acc))
}

/// True when `i` can begin an implicitly multiplied factor.
fn starts_factor(i: &str) -> bool {
    let Some(c) = i.chars().next() else { return false };
    if c == '|' {
        return IN_ABS.with(Cell::get) == 0;
    }
    c.is_ascii_alphanumeric() || matches!(c, '(' | '{' | '.') || (c == '\\' && !i.starts_with("\\{"))
}

/// `3\frac{1}{2}` is 3 + 1/2 (and `-3\frac12` is -(3 + 1/2)) when both are integer literals.
fn mixed_number(whole: &Expr, frac: &Expr, frac_follows_directly: bool) -> Option<Expr> {
    if !frac_follows_directly {
        return None;
    }
    let Expr::Div(n, d) = frac else { return None };
    let int_lit =
        |e: &Expr| matches!(e, Expr::Num(n) if n.is_integer_literal() && !n.value.is_negative_or_zero());
    if !(int_lit(n) && int_lit(d)) {
        return None;
    }
    match whole {
        Expr::Num(w) if w.is_integer_literal() => {
            Some(Expr::Add(whole.clone().boxed(), frac.clone().boxed()))
        }
        Expr::Neg(w) if matches!(&**w, Expr::Num(w) if w.is_integer_literal()) => {
            Some(Expr::Neg(Expr::Add(w.clone(), frac.clone().boxed()).boxed()))
        }
        _ => None,
    }
}

trait SignCheck {
    fn is_negative_or_zero(&self) -> bool;
}

impl SignCheck for BigRational {
    fn is_negative_or_zero(&self) -> bool {
        self <= &BigRational::zero()
    }
}

// ---- signs and powers -------------------------------------------------------------

fn unary(i: &str) -> Res<'_, Expr> {
    let _g = DepthGuard::enter(i)?;
    let j = ws(i);
    if let Some(r) = j.strip_prefix('-') {
        let (r, e) = unary(r)?;
        return Ok((r, Expr::Neg(e.boxed())));
    }
    if let Some(r) = j.strip_prefix('+') {
        return unary(r);
    }
    if let Ok((r, _)) = one_of(j, &[("\\pm", ()), ("\\mp", ())]) {
        let (r, e) = unary(r)?;
        return Ok((r, Expr::PlusMinus(None, e.boxed())));
    }
    power(j)
}

fn power(i: &str) -> Res<'_, Expr> {
    let _g = DepthGuard::enter(i)?;
    let (i, base) = primary(i)?;
    let mut chain = ChainGuard::default();
    let (mut i, mut base) = postfix(i, base, &mut chain)?;
    if let Ok((r, _)) = tok("^")(i) {
        let (r, exp) = exponent(r)?;
        let (r, e) = postfix(r, Expr::Pow(base.boxed(), exp.boxed()), &mut chain)?;
        base = e;
        i = r;
    }
    Ok((i, base))
}

/// The exponent after `^`: a braced group, a digit run, or a signed power.
fn exponent(i: &str) -> Res<'_, Expr> {
    let _g = DepthGuard::enter(i)?;
    let j = ws(i);
    if let Some(r) = j.strip_prefix('-') {
        let (r, e) = exponent(r)?;
        return Ok((r, Expr::Neg(e.boxed())));
    }
    if j.starts_with(|c: char| c.is_ascii_digit()) {
        // Plain-text `2^10` means 2^{10}; a decimal exponent stays one number.
        let (r, n) = number(j)?;
        if let Ok((r2, _)) = tok("^")(r) {
            let (r2, e) = exponent(r2)?;
            return Ok((r2, Expr::Pow(n.boxed(), e.boxed())));
        }
        return Ok((r, n));
    }
    power(j)
}

fn postfix<'a>(mut i: &'a str, mut e: Expr, chain: &mut ChainGuard) -> Res<'a, Expr> {
    loop {
        let j = ws(i);
        if j.starts_with(['!', '%', '°']) {
            chain.grow(j)?;
        }
        if let Some(r) = j.strip_prefix('!').filter(|r| !r.starts_with('=')) {
            e = Expr::Factorial(e.boxed());
            i = r;
        } else if let Some(r) = j.strip_prefix('%') {
            e = Expr::Percent(e.boxed());
            i = r;
        } else if let Some(r) = j.strip_prefix('°') {
            e = Expr::Degrees(e.boxed());
            i = r;
        } else {
            return Ok((i, e));
        }
    }
}

// ---- atoms ---------------------------------------------------------------------

const FUNCTIONS: &[(&str, Func)] = &[
    ("arcsin", Func::Asin),
    ("arccos", Func::Acos),
    ("arctan", Func::Atan),
    ("asin", Func::Asin),
    ("acos", Func::Acos),
    ("atan", Func::Atan),
    ("sinh", Func::Sinh),
    ("cosh", Func::Cosh),
    ("tanh", Func::Tanh),
    ("sin", Func::Sin),
    ("cos", Func::Cos),
    ("tan", Func::Tan),
    ("sec", Func::Sec),
    ("csc", Func::Csc),
    ("cot", Func::Cot),
    ("ln", Func::Ln),
    ("exp", Func::Exp),
    ("abs", Func::Abs),
    ("floor", Func::Floor),
    ("ceil", Func::Ceil),
];

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "varrho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Upsilon",
    "Phi",
    "Psi",
    "Omega",
];

fn primary(i: &str) -> Res<'_, Expr> {
    let _g = DepthGuard::enter(i)?;
    let i = ws(i);
    let Some(c) = i.chars().next() else {
        return backtrack(i);
    };
    match c {
        '0'..='9' | '.' => number(i),
        '(' | '[' => brackets(i),
        '{' => {
            let (r, e) = answer(&i[1..])?;
            let (r, _) = tok("}")(r)?;
            Ok((r, e))
        }
        '|' => {
            IN_ABS.with(|c| c.set(c.get() + 1));
            let inner = relation(&i[1..]);
            IN_ABS.with(|c| c.set(c.get() - 1));
            let (r, e) = inner?;
            let (r, _) = tok("|")(r)?;
            Ok((r, Expr::Func(Func::Abs, e.boxed())))
        }
        '\\' => command(i),
        'a'..='z' | 'A'..='Z' => word(i),
        _ => backtrack(i),
    }
}

/// A numeric literal: digit groups, decimal point or comma, exponent, repeating part.
fn number(i: &str) -> Res<'_, Expr> {
    let b = i.as_bytes();
    let run = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let lead = run(0);
    let mut int_digits = String::from(&i[..lead]);
    let mut pos = lead;
    let mut frac_digits = String::new();
    let mut has_point = false;
    // `7,425,000`: one to three digits, then groups of exactly three; not
    // inside brackets, where `{100,200}` lists two numbers.
    if (1..=3).contains(&lead) && IN_LIST.with(Cell::get) == 0 {
        let mut p = lead;
        let mut grouped = String::from(&i[..lead]);
        while b.get(p) == Some(&b',') && run(p + 1) == 3 {
            grouped.push_str(&i[p + 1..p + 4]);
            p += 4;
        }
        if p > lead && !b.get(p).is_some_and(u8::is_ascii_digit) {
            int_digits = grouped;
            pos = p;
        }
    }
    // `1000,99`: a decimal comma, only after four or more ungrouped digits.
    if lead >= 4 && pos == lead && b.get(pos) == Some(&b',') {
        let f = run(pos + 1);
        if (1..=2).contains(&f) && !b.get(pos + 1 + f).is_some_and(u8::is_ascii_digit) {
            frac_digits = i[pos + 1..pos + 1 + f].to_string();
            has_point = true;
            pos += 1 + f;
        }
    }
    if !has_point && b.get(pos) == Some(&b'.') {
        let f = run(pos + 1);
        if f > 0 || lead > 0 {
            frac_digits = i[pos + 1..pos + 1 + f].to_string();
            has_point = true;
            pos += 1 + f;
        }
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return backtrack(i);
    }
    let mut exp10: i64 = 0;
    let mut has_exp = false;
    if matches!(b.get(pos), Some(b'e' | b'E')) {
        let sign_len = usize::from(matches!(b.get(pos + 1), Some(b'+' | b'-')));
        let d = run(pos + 1 + sign_len);
        if d > 0 {
            let digits = &i[pos + 1..pos + 1 + sign_len + d];
            exp10 = match digits.parse::<i64>() {
                Ok(v) if v.abs() <= MAX_EXPONENT => v,
                _ => return Err(fail(i, ErrorKind::Verify)),
            };
            has_exp = true;
            pos += 1 + sign_len + d;
        }
    }
    // `0.\overline{3}` or `0.1\overline{6}`: a repeating block.
    let mut repeat = String::new();
    if has_point && !has_exp {
        let rest = &i[pos..];
        if let Some(r) = rest.strip_prefix("\\overline") {
            let r = ws(r);
            let (r2, digits) = if let Some(inner) = r.strip_prefix('{') {
                let (after, d) =
                    digit1::<&str, NomError<&str>>(ws(inner)).map_err(|_| fail(i, ErrorKind::Digit))?;
                let (after, _) = tok("}")(after)?;
                (after, d)
            } else {
                let (after, d) = digit1::<&str, NomError<&str>>(r).map_err(|_| fail(i, ErrorKind::Digit))?;
                (after, d)
            };
            repeat = digits.to_string();
            pos = i.len() - r2.len();
        }
    }
    if int_digits.len() + frac_digits.len() + repeat.len() > MAX_DIGITS {
        return Err(fail(i, ErrorKind::Verify));
    }
    // `204_5`, `4210_{7}`: an integer written in another base.
    if !has_point && !has_exp && pos == lead {
        if let Some((base, after)) = base_subscript(&i[pos..]) {
            let value = BigInt::parse_bytes(int_digits.as_bytes(), base);
            if let Some(v) = value {
                let n = Number {
                    value: BigRational::from_integer(v),
                    decimal: None,
                    base: u8::try_from(base).ok(),
                };
                return Ok((after, Expr::Num(n)));
            }
        }
    }
    let mantissa: BigInt = format!("0{int_digits}{frac_digits}").parse().unwrap_or_default();
    let ten = BigInt::from(10);
    let scale = |e: i64| -> BigRational {
        let p = num_traits::pow(ten.clone(), e.unsigned_abs() as usize);
        if e >= 0 {
            BigRational::from_integer(p)
        } else {
            BigRational::new(BigInt::one(), p)
        }
    };
    let mut value = BigRational::from_integer(mantissa.clone()) * scale(exp10 - frac_digits.len() as i64);
    let decimal = if !repeat.is_empty() {
        // x.abc(def)… = x.abc + 0.(def)/10^3
        let block: BigInt = repeat.parse().unwrap_or_default();
        let nines = num_traits::pow(ten.clone(), repeat.len()) - BigInt::one();
        value += BigRational::new(block, nines) * scale(-(frac_digits.len() as i64));
        None
    } else if has_point || has_exp {
        let digits = format!("{int_digits}{frac_digits}");
        let significant = digits.trim_start_matches('0').len().max(1) as u32;
        Some(Precision {
            significant,
            last_place: (exp10 - frac_digits.len() as i64) as i32,
        })
    } else {
        None
    };
    Ok((
        &i[pos..],
        Expr::Num(Number {
            value,
            decimal,
            base: None,
        }),
    ))
}

/// A base subscript after an integer: `_5`, `_{16}`, `_{(2)}`; the base (2 to
/// 36) and the rest of the input.
fn base_subscript(i: &str) -> Option<(u32, &str)> {
    let r = i.strip_prefix('_')?;
    let (digits, rest) = match r.strip_prefix('{') {
        Some(inner) => {
            let close = inner.find('}')?;
            let body = inner[..close]
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')');
            (body, &inner[close + 1..])
        }
        None => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count().min(2);
            (&r[..n], &r[n..])
        }
    };
    let base: u32 = digits.parse().ok()?;
    (2..=36).contains(&base).then_some((base, rest))
}

/// `(…)`, `[…]` and mixed brackets: a group, a tuple or an interval.
fn brackets(i: &str) -> Res<'_, Expr> {
    let open = i.as_bytes()[0];
    let (r, mut items) = in_list(|| items(&i[1..]))?;
    let r = ws(r);
    let close = match r.as_bytes().first() {
        Some(c @ (b')' | b']')) => *c,
        _ => return backtrack(i),
    };
    let r = &r[1..];
    let e = match (open, close, items.len()) {
        (b'(', b')', 1) | (b'[', b']', 1) => items.pop().unwrap(),
        (b'(', b')', _) => Expr::Tuple(items),
        (_, _, 2) => {
            let hi = items.pop().unwrap();
            let lo = items.pop().unwrap();
            Expr::Interval {
                lo: lo.boxed(),
                hi: hi.boxed(),
                lo_closed: open == b'[',
                hi_closed: close == b']',
            }
        }
        (b'[', b']', _) => Expr::Tuple(items),
        _ => return backtrack(i),
    };
    Ok((r, e))
}

/// A braced argument `{…}`, or a single digit, letter or command (`\frac12`, `\sqrt\pi`).
fn arg(i: &str) -> Res<'_, Expr> {
    let j = ws(i);
    if let Some(r) = j.strip_prefix('{') {
        let (r, e) = answer(r)?;
        let (r, _) = tok("}")(r)?;
        return Ok((r, e));
    }
    match j.chars().next() {
        Some(c) if c.is_ascii_digit() => Ok((&j[1..], Expr::int(i64::from(c as u8 - b'0')))),
        Some('\\') | Some('a'..='z' | 'A'..='Z') => primary(j),
        _ => backtrack(i),
    }
}

/// The argument of a function written without braces or parentheses:
/// `\sin 2x` is sin(2x); the run stops at the next function or operator.
fn function_arg(i: &str) -> Res<'_, Expr> {
    let j = ws(i);
    if j.starts_with('(') || j.starts_with('{') {
        return power(j);
    }
    let (mut r, mut acc) = power(j)?;
    let mut chain = ChainGuard::default();
    loop {
        chain.grow(r)?;
        let next = ws(r);
        let starts_fn =
            next.starts_with('\\') && !GREEK.iter().any(|g| cmd(g)(next).is_ok()) && cmd("pi")(next).is_err();
        if !starts_factor(next) || starts_fn || next.starts_with('(') {
            break;
        }
        let Ok((r2, e)) = power(next) else { break };
        acc = Expr::Mul(acc.boxed(), e.boxed());
        r = r2;
    }
    Ok((r, acc))
}

/// A function name already consumed: optional `^{-1}` / `^2`, then its argument.
fn apply_function(i: &str, f: Func) -> Res<'_, Expr> {
    let mut f = f;
    let mut outer_power: Option<Expr> = None;
    if let Ok((r, _)) = tok("^")(i) {
        let (r, p) = exponent(r)?;
        let inverse = matches!(&p, Expr::Neg(x) if matches!(&**x, Expr::Num(n) if n.value.is_one()));
        let inv = match f {
            Func::Sin => Some(Func::Asin),
            Func::Cos => Some(Func::Acos),
            Func::Tan => Some(Func::Atan),
            _ => None,
        };
        match (inverse, inv) {
            (true, Some(g)) => f = g,
            _ => outer_power = Some(p),
        }
        let (r, a) = function_arg(r)?;
        let applied = Expr::Func(f, a.boxed());
        return Ok((
            r,
            match outer_power {
                Some(p) => Expr::Pow(applied.boxed(), p.boxed()),
                None => applied,
            },
        ));
    }
    let (r, a) = function_arg(i)?;
    Ok((r, Expr::Func(f, a.boxed())))
}

/// `\log`, `\log_2 x`, `\log_{10}(x)`.
fn log(i: &str) -> Res<'_, Expr> {
    if let Ok((r, _)) = tok("_")(i) {
        let (r, base) = arg(r)?;
        let (r, x) = function_arg(r)?;
        return Ok((
            r,
            Expr::Log {
                base: base.boxed(),
                arg: x.boxed(),
            },
        ));
    }
    apply_function(i, Func::Ln)
}

/// A LaTeX command in atom position.
fn command(i: &str) -> Res<'_, Expr> {
    let name_len = i[1..].bytes().take_while(u8::is_ascii_alphabetic).count();
    if name_len == 0 {
        if let Some(r) = i.strip_prefix("\\{") {
            return set(r);
        }
        return backtrack(i);
    }
    let name = &i[1..1 + name_len];
    let r = &i[1 + name_len..];
    match name {
        "frac" => {
            let (r, n) = arg(r)?;
            let (r, d) = arg(r)?;
            Ok((r, Expr::Div(n.boxed(), d.boxed())))
        }
        "sqrt" => {
            let (r, index) = match tok("[")(r) {
                Ok((r2, _)) => {
                    let (r2, n) = additive(r2)?;
                    let (r2, _) = tok("]")(r2)?;
                    (r2, n)
                }
                Err(_) => (r, Expr::int(2)),
            };
            let (r, x) = arg(r)?;
            Ok((
                r,
                Expr::Root {
                    index: index.boxed(),
                    radicand: x.boxed(),
                },
            ))
        }
        "binom" | "choose" => {
            let (r, n) = arg(r)?;
            let (r, k) = arg(r)?;
            Ok((r, Expr::Binom(n.boxed(), k.boxed())))
        }
        "pi" => Ok((r, Expr::Const(Const::Pi))),
        "infty" | "inf" => Ok((r, Expr::Const(Const::Infinity))),
        "emptyset" => Ok((r, Expr::Set(vec![]))),
        "log" | "lg" => log(r),
        "lfloor" | "lceil" => {
            let (r, e) = additive(r)?;
            let (close, f) = if name == "lfloor" {
                ("rfloor", Func::Floor)
            } else {
                ("rceil", Func::Ceil)
            };
            let (r, _) = cmd(close)(r)?;
            Ok((r, Expr::Func(f, e.boxed())))
        }
        "begin" => matrix(r),
        "sum" => big_op(r, BigOpKind::Sum),
        "prod" => big_op(r, BigOpKind::Prod),
        "overline" => backtrack(i),
        _ => {
            if let Some(&(_, f)) = FUNCTIONS.iter().find(|(n, _)| *n == name) {
                return apply_function(r, f);
            }
            if GREEK.contains(&name) {
                return subscript(r, name.to_string());
            }
            backtrack(i)
        }
    }
}

/// `\sum_{k=lo}^{hi} body` (the bounds in either order); the body is the
/// product that follows (`\sum_{k=0}^{n-1} F_k F_{n-k-1}`).
fn big_op(i: &str, kind: BigOpKind) -> Res<'_, Expr> {
    let mut r = i;
    let mut lower = None;
    let mut upper = None;
    for _ in 0..2 {
        if let Ok((r2, _)) = tok("_")(r) {
            let (r2, e) = arg(r2)?;
            lower = Some(e);
            r = r2;
        } else if let Ok((r2, _)) = tok("^")(r) {
            let (r2, e) = arg(r2)?;
            upper = Some(e);
            r = r2;
        }
    }
    let (Some(Expr::Relation { terms, ops }), Some(hi)) = (lower, upper) else {
        return backtrack(i);
    };
    let (var, lo) = match (&terms[..], &ops[..]) {
        ([Expr::Var(v), lo], [RelOp::Eq]) => (v.clone(), lo.clone()),
        _ => return backtrack(i),
    };
    let (r, body) = term(r)?;
    Ok((
        r,
        Expr::BigOp {
            kind,
            var,
            lo: lo.boxed(),
            hi: hi.boxed(),
            body: body.boxed(),
        },
    ))
}

/// `\{a, b\}`: the opening `\{` already consumed.
fn set(i: &str) -> Res<'_, Expr> {
    if let Ok((r, _)) = tok("\\}")(i) {
        return Ok((r, Expr::Set(vec![])));
    }
    let (r, items) = in_list(|| items(i))?;
    let (r, _) = tok("\\}")(r)?;
    Ok((r, Expr::Set(items)))
}

/// Comma- or semicolon-separated relations inside brackets.
fn items(i: &str) -> Res<'_, Vec<Expr>> {
    let (mut r, first) = relation(i)?;
    let mut items = vec![first];
    while let Ok((r2, _)) = one_of(r, &[(",", ()), (";", ())]) {
        let (r2, e) = relation(r2)?;
        items.push(e);
        r = r2;
    }
    Ok((r, items))
}

/// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (also bmatrix, matrix, array…).
fn matrix(i: &str) -> Res<'_, Expr> {
    let (r, _) = tok("{")(i)?;
    let r = ws(r);
    let env_len = r
        .bytes()
        .take_while(|c| c.is_ascii_alphabetic() || *c == b'*')
        .count();
    let env = &r[..env_len];
    if !env.ends_with("matrix") && env != "array" {
        return backtrack(i);
    }
    let (mut r, _) = tok("}")(&r[env_len..])?;
    if env == "array" {
        // Skip the column spec `{cc}`.
        if let Ok((r2, _)) = tok("{")(r) {
            let close = r2.find('}').ok_or_else(|| fail(i, ErrorKind::Char))?;
            r = &r2[close + 1..];
        }
    }
    let mut rows: Vec<Vec<Expr>> = vec![vec![]];
    loop {
        let (r2, cell) = additive(r)?;
        rows.last_mut().unwrap().push(cell);
        r = r2;
        if let Ok((r2, _)) = tok("&")(r) {
            r = r2;
        } else if let Some(r2) = row_break(r) {
            r = r2;
            if cmd("end")(r).is_ok() {
                break;
            }
            rows.push(vec![]);
        } else {
            break;
        }
    }
    let (r, _) = cmd("end")(r)?;
    let (r, _) = tok("{")(r)?;
    let Some(r) = ws(r).strip_prefix(env) else {
        return Err(fail(r, ErrorKind::Tag));
    };
    let (r, _) = tok("}")(r)?;
    let width = rows[0].len();
    if rows.iter().any(|row| row.len() != width) {
        return Err(fail(i, ErrorKind::Verify));
    }
    Ok((r, Expr::Matrix(rows)))
}

/// A matrix row break: `\\\\`, or the single backslash some datasets keep of it
/// before a digit or a sign (`-6\6`).
fn row_break(i: &str) -> Option<&str> {
    if let Ok((r, _)) = tok("\\\\")(i) {
        return Some(r);
    }
    let r = ws(i).strip_prefix('\\')?;
    r.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        .then_some(r)
}

/// A word in atom position: a plain function name followed by `(`, a
/// constant spelled out (`pi`, `inf`, `oo`), or a single-letter variable.
fn word(i: &str) -> Res<'_, Expr> {
    let len = i.bytes().take_while(u8::is_ascii_alphabetic).count();
    let w = &i[..len];
    let after = &i[len..];
    let called = ws(after).starts_with('(');
    if called {
        if let Some(&(_, f)) = FUNCTIONS.iter().find(|(n, _)| *n == w) {
            return apply_function(after, f);
        }
        match w {
            "sqrt" => {
                let (r, x) = power(ws(after))?;
                return Ok((
                    r,
                    Expr::Root {
                        index: Expr::int(2).boxed(),
                        radicand: x.boxed(),
                    },
                ));
            }
            "log" => return apply_function(after, Func::Ln),
            _ => {}
        }
    }
    match w {
        "pi" => return Ok((after, Expr::Const(Const::Pi))),
        "inf" | "infty" | "infinity" | "oo" => return Ok((after, Expr::Const(Const::Infinity))),
        _ => {}
    }
    let letter = &i[..1];
    let rest = &i[1..];
    match letter {
        "e" if !rest.starts_with('_') => Ok((rest, Expr::Const(Const::E))),
        "i" if !rest.starts_with('_') => Ok((rest, Expr::Const(Const::I))),
        _ => subscript(rest, letter.to_string()),
    }
}

/// An optional subscript on a variable name: `x_1`, `a_{n}`, `\theta_0`.
fn subscript(i: &str, mut name: String) -> Res<'_, Expr> {
    if let Some(r) = i.strip_prefix('_') {
        let r = ws(r);
        if let Some(inner) = r.strip_prefix('{') {
            let close = inner
                .find('}')
                .filter(|&k| k <= 32)
                .ok_or_else(|| fail(i, ErrorKind::Char))?;
            let sub: String = inner[..close].chars().filter(|c| !c.is_whitespace()).collect();
            if sub.is_empty() {
                return backtrack(i);
            }
            if sub.chars().all(|c| c.is_ascii_alphanumeric()) {
                name.push('_');
                name.push_str(&sub);
            } else if sub
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | ','))
            {
                // An index expression (`F_{n-k-1}`) names its own symbol.
                name.push_str("_{");
                name.push_str(&sub);
                name.push('}');
            } else {
                return backtrack(i);
            }
            return Ok((&inner[close + 1..], Expr::Var(name)));
        }
        let c = r.chars().next().filter(char::is_ascii_alphanumeric);
        let Some(c) = c else { return backtrack(i) };
        name.push('_');
        name.push(c);
        return Ok((&r[1..], Expr::Var(name)));
    }
    Ok((i, Expr::Var(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and prints the canonical form.
    fn p(s: &str) -> String {
        parse(s)
            .map(|e| e.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn numbers() {
        assert_eq!(p("42"), "42");
        assert_eq!(p("7,425,000"), "7425000");
        assert_eq!(p("1,234.5"), "[2469/2]");
        assert_eq!(p(".4"), "[2/5]");
        assert_eq!(p("1000,99"), "[100099/100]");
        assert_eq!(p("2.5e3"), "2500");
        assert_eq!(p("1.5E-2"), "[3/200]");
        assert_eq!(p("0.\\overline{3}"), "[1/3]");
        assert_eq!(p("0.1\\overline{6}"), "[1/6]");
        assert_eq!(p("1, 234"), "list(1, 234)");
        assert_eq!(p("1,2345"), "list(1, 2345)");
        assert_eq!(p("\\{100,200\\}"), "{100, 200}");
        assert_eq!(p("(1,000, 2)"), "tuple(1, 0, 2)");
        assert_eq!(p("\\frac{1,000}{2}"), "(1000 / 2)");
    }

    #[test]
    fn precision_is_recorded() {
        let Expr::Num(n) = parse("0.0330").unwrap() else {
            panic!()
        };
        assert_eq!(
            n.decimal,
            Some(Precision {
                significant: 3,
                last_place: -4
            })
        );
        let Expr::Num(n) = parse("12").unwrap() else {
            panic!()
        };
        assert_eq!(n.decimal, None);
    }

    #[test]
    fn fractions_and_mixed_numbers() {
        assert_eq!(p("\\frac{1}{2}"), "(1 / 2)");
        assert_eq!(p("\\frac12"), "(1 / 2)");
        assert_eq!(p("\\frac1{x}"), "(1 / x)");
        assert_eq!(p("3\\frac{1}{2}"), "(3 + (1 / 2))");
        assert_eq!(p("-3\\frac12"), "(-(3 + (1 / 2)))");
        assert_eq!(p("2 \\cdot \\frac{1}{2}"), "(2 * (1 / 2))");
        assert_eq!(p("x\\frac{1}{2}"), "(x * (1 / 2))");
        assert_eq!(p("a/b/c"), "((a / b) / c)");
    }

    #[test]
    fn implicit_multiplication_and_powers() {
        assert_eq!(p("2x"), "(2 * x)");
        assert_eq!(p("3\\sqrt{2}"), "(3 * root_2(2))");
        assert_eq!(p("2\\pi r"), "((2 * pi) * r)");
        assert_eq!(p("(x+1)(x-1)"), "((x + 1) * (x - 1))");
        assert_eq!(p("-x^2"), "(-(x ^ 2))");
        assert_eq!(p("2^{3^2}"), "(2 ^ (3 ^ 2))");
        assert_eq!(p("2^10"), "(2 ^ 10)");
        assert_eq!(p("x^2y"), "((x ^ 2) * y)");
        assert_eq!(p("e^{i\\pi}"), "(e ^ (i * pi))");
        assert_eq!(p("\\sqrt[3]{8}"), "root_3(8)");
    }

    #[test]
    fn functions() {
        assert_eq!(p("\\sin 2x"), "sin((2 * x))");
        assert_eq!(p("\\sin^2 x"), "(sin(x) ^ 2)");
        assert_eq!(p("\\sin^{-1}(x)"), "asin(x)");
        assert_eq!(p("\\log_2 8"), "log_2(8)");
        assert_eq!(p("\\ln(x) + 1"), "(ln(x) + 1)");
        assert_eq!(p("\\sin x \\cos x"), "(sin(x) * cos(x))");
        assert_eq!(p("5!"), "(5)!");
        assert_eq!(p("\\binom{5}{2}"), "binom(5, 2)");
        assert_eq!(p("|x-1|"), "abs((x - 1))");
        assert_eq!(p("sqrt(2)"), "root_2(2)");
    }

    #[test]
    fn structures() {
        assert_eq!(p("(1, 2)"), "tuple(1, 2)");
        assert_eq!(p("[0,1)"), "[0, 1)");
        assert_eq!(p("(-\\infty, 3]"), "((-oo), 3]");
        assert_eq!(p("[0,1) \\cup (2,\\infty)"), "[0, 1) U (2, oo)");
        assert_eq!(p("\\{1, 2\\}"), "{1, 2}");
        assert_eq!(p("1, -2"), "list(1, (-2))");
        assert_eq!(
            p("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"),
            "matrix(1, 2; 3, 4)"
        );
        assert_eq!(p("x = 5"), "x = 5");
        assert_eq!(p("1 < x \\le 3"), "1 < x <= 3");
        assert_eq!(p("(p,q)=(3,2)"), "tuple(p, q) = tuple(3, 2)");
        assert_eq!(p("1 \\pm \\sqrt2"), "(1 +- root_2(2))");
        assert_eq!(p("x_1 + a_{n}"), "(x_1 + a_n)");
        assert_eq!(p("50%"), "(50)%");
        assert_eq!(p("30°"), "(30)deg");
    }

    #[test]
    fn based_numerals_sums_and_grouped_lists() {
        assert_eq!(p("204_5"), "204_5");
        assert_eq!(p("4210_{7}"), "4210_7");
        assert_eq!(p("1011_{(2)}"), "1011_2");
        assert!(p("204_3").starts_with("ERR"), "digit 4 is not a base-3 digit");
        assert_eq!(p("F_{n-k-1}"), "F_{n-k-1}");
        assert_eq!(
            p("\\sum_{k=0}^{n-1} F_k F_{n-k-1}"),
            "sum_{k=0}^{(n - 1)}((F_k * F_{n-k-1}))"
        );
        assert_eq!(p("\\prod^{5}_{k=1} k"), "prod_{k=1}^{5}(k)");
        assert_eq!(
            p("p=5,q=2; p=7,q=2"),
            "list(tuple(p = 5, q = 2), tuple(p = 7, q = 2))"
        );
        assert_eq!(p("1, 2; 3"), "list(1, 2, 3)");
        assert_eq!(p("-2 3 5"), "list((-2), 3, 5)");
        assert_eq!(p("2 x"), "(2 * x)");
        assert_eq!(p("x \\approx 0.33"), "x ~= [33/100]");
        assert_eq!(p("x != 2"), "x != 2");
        assert_eq!(p("\\begin{pmatrix}-6\\6\\end{pmatrix}"), "matrix((-6); 6)");
    }

    #[test]
    fn bounded_and_rejected() {
        assert!(parse("\\frac{").is_err());
        assert!(parse("1 +").is_err());
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).unwrap_err().reason.contains("deep"));
        for chain in [
            "1+".repeat(3000) + "1",
            "2".to_string() + &"!".repeat(3000),
            "-".repeat(3000) + "1",
            "2^-".repeat(3000) + "1",
        ] {
            assert!(
                parse(&chain).unwrap_err().reason.contains("deep"),
                "{}",
                &chain[..20]
            );
        }
        assert!(parse(&("1+".repeat(500) + "1")).is_ok());
        assert!(parse("1e999999").unwrap_err().reason.contains("too large"));
        let long = "9".repeat(MAX_DIGITS + 1);
        assert!(parse(&long).is_err());
    }
}
