//! Property tests over the whole verifier: a value written in different
//! notations is equal to itself, a polynomial equals its expansion, nearby
//! values are rejected, and no input makes the verifier panic.

use proptest::prelude::*;

use super::{verify, ExtractMode};
use crate::api::Verdict;

fn grade(gold: &str, answer: &str) -> Verdict {
    verify(
        gold,
        &format!("Therefore the result is $\\boxed{{{answer}}}$."),
        ExtractMode::Boxed,
    )
    .verdict
}

/// `n` with thousands separators spelled `sep` (`1,234,567`).
fn grouped(n: u64, sep: &str) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(sep);
        }
        out.push(c);
    }
    out
}

/// Notations of the integer `n`.
fn integer_notations(n: i64) -> Vec<String> {
    let sign = if n < 0 { "-" } else { "" };
    let a = n.unsigned_abs();
    let mut v = vec![
        n.to_string(),
        format!("{sign}{}", grouped(a, ",")),
        format!("{sign}{}", grouped(a, "\\,")),
        format!("{sign}{}", grouped(a, "{,}")),
        format!("{n}.0"),
        format!("\\frac{{{}}}{{2}}", 2 * n as i128),
        format!("{n} \\cdot 1"),
    ];
    if a >= 10 {
        let s = a.to_string();
        v.push(format!("{sign}{}.{}e{}", &s[..1], &s[1..], s.len() - 1));
    }
    v
}

/// Notations of the fraction `p/q` (q > 1, in lowest terms).
fn fraction_notations(p: i64, q: i64) -> Vec<String> {
    let sign = if p < 0 { "-" } else { "" };
    let a = p.abs();
    let mut v = vec![
        format!("{p}/{q}"),
        format!("\\frac{{{p}}}{{{q}}}"),
        format!("{sign}\\dfrac{{{a}}}{{{q}}}"),
        format!("\\frac{{{}}}{{{}}}", 3 * p, 3 * q),
        format!("{p} \\div {q}"),
    ];
    if a > q {
        v.push(format!("{sign}{}\\frac{{{}}}{{{q}}}", a / q, a % q));
    }
    // A terminating decimal when q has only the prime factors 2 and 5.
    let (mut d, mut twos, mut fives) = (q, 0u32, 0u32);
    while d % 2 == 0 {
        d /= 2;
        twos += 1;
    }
    while d % 5 == 0 {
        d /= 5;
        fives += 1;
    }
    if d == 1 {
        let places = twos.max(fives);
        let scaled = a as i128 * 10i128.pow(places) / q as i128;
        let s = format!("{:0>width$}", scaled, width = places as usize + 1);
        let (int, frac) = s.split_at(s.len() - places as usize);
        v.push(format!("{sign}{int}.{frac}"));
    }
    v
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

/// `c` as a LaTeX coefficient of `x^k`, with its sign.
fn term(c: i64, k: usize) -> String {
    let x = match k {
        0 => String::new(),
        1 => "x".into(),
        _ => format!("x^{{{k}}}"),
    };
    let mag = match (c.abs(), k) {
        (1, k) if k > 0 => String::new(),
        (m, _) => m.to_string(),
    };
    format!("{} {mag}{x}", if c < 0 { "-" } else { "+" })
}

/// Notations of `p/q` (q ≥ 1, lowest terms) that prose writes without
/// delimiters: integers with and without thousands groups, decimals with and
/// without a leading zero, `\frac` with the sign outside or inside, `a/b`.
fn prose_notations(p: i64, q: i64) -> Vec<String> {
    let sign = if p < 0 { "-" } else { "" };
    let a = p.abs();
    if q == 1 {
        let mut v = vec![p.to_string(), format!("{sign}{}", grouped(a.unsigned_abs(), ","))];
        v.push(format!("{p}.0"));
        return v;
    }
    let mut v = vec![
        format!("{sign}\\frac{{{a}}}{{{q}}}"),
        format!("\\frac{{{p}}}{{{q}}}"),
        format!("{sign}\\dfrac{{{a}}}{{{q}}}"),
        format!("{p}/{q}"),
    ];
    // A terminating decimal when q divides a power of ten.
    if let Some(places) = (1..=6u32).find(|&k| 10i128.pow(k) % q as i128 == 0) {
        let scaled = a as i128 * 10i128.pow(places) / q as i128;
        let digits = format!("{:0>width$}", scaled, width = places as usize + 1);
        let (int, frac) = digits.split_at(digits.len() - places as usize);
        v.push(format!("{sign}{int}.{frac}"));
        if int == "0" {
            v.push(format!("{sign}.{frac}"));
        }
    }
    v
}

/// Sentences a response may end with, the answer written bare in them.
const PROSE: &[&str] = &[
    "The ratio is {}",
    "so p = {}",
    "Therefore the value comes out to {}.",
    "Adding everything up we get {} in total",
    "{}",
    "After simplifying, x = {} and we are done.",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Lenient extraction ends on any mix of letters, digits, dots and
    /// TeX (it once looped for ever on `a.5`, a letter before a decimal).
    #[test]
    fn lenient_extraction_ends_on_any_text(text in "[a-z0-9. ,=$\\{}']{0,40}") {
        let _ = crate::math::extract::extract(&text, ExtractMode::Lenient);
    }

    #[test]
    fn a_bare_number_in_prose_is_read_whole(p in -200_000i64..200_000, q in prop::sample::select(vec![1i64, 2, 3, 4, 5, 8, 9, 10, 16, 20, 25, 40, 125])) {
        prop_assume!(gcd(p, q) == 1 || (p == 0 && q == 1));
        let gold = if q == 1 { p.to_string() } else { format!("\\frac{{{p}}}{{{q}}}") };
        let near = if q == 1 { (p + 1).to_string() } else { format!("\\frac{{{}}}{{{q}}}", p + 1) };
        for written in prose_notations(p, q) {
            for template in PROSE {
                let response = template.replace("{}", &written);
                let ext = crate::math::extract::extract(&response, ExtractMode::Lenient);
                prop_assert!(ext.is_some(), "nothing extracted from {:?}", response);
                prop_assert_eq!(verify(&gold, &response, ExtractMode::Lenient).verdict, Verdict::Correct, "{:?} vs {}", response, gold);
                prop_assert_eq!(verify(&near, &response, ExtractMode::Lenient).verdict, Verdict::WrongAnswer, "{:?} vs {}", response, near);
                // The number without its leading digit is another number.
                if q == 1 && p.abs() >= 10 {
                    let part = &p.abs().to_string()[1..];
                    prop_assert_eq!(verify(part, &response, ExtractMode::Lenient).verdict, Verdict::WrongAnswer, "{:?} vs part {}", response, part);
                }
            }
        }
    }

    #[test]
    fn an_integer_in_any_notation_equals_itself(n in -10_000_000i64..10_000_000) {
        let notations = integer_notations(n);
        for a in &notations {
            for b in &notations {
                prop_assert_eq!(grade(a, b), Verdict::Correct, "{} vs {}", a, b);
            }
            prop_assert_eq!(grade(a, &(n + 1).to_string()), Verdict::WrongAnswer, "{} vs n+1", a);
        }
    }

    #[test]
    fn a_fraction_in_any_notation_equals_itself(p in -5000i64..5000, q in 2i64..2000) {
        prop_assume!(p != 0 && gcd(p, q) == 1);
        let notations = fraction_notations(p, q);
        for a in &notations {
            for b in &notations {
                prop_assert_eq!(grade(a, b), Verdict::Correct, "{} vs {}", a, b);
            }
            prop_assert_eq!(grade(a, &format!("\\frac{{{}}}{{{q}}}", p + 1)), Verdict::WrongAnswer);
        }
    }

    #[test]
    fn a_product_of_linear_factors_equals_its_expansion(
        roots in prop::collection::vec((-9i64..10, 1i64..4), 1..5),
    ) {
        // Π (a x + b), expanded by multiplying coefficient vectors.
        let mut coeffs = vec![1i64];
        for &(b, a) in &roots {
            let mut next = vec![0i64; coeffs.len() + 1];
            for (k, c) in coeffs.iter().enumerate() {
                next[k] += c * b;
                next[k + 1] += c * a;
            }
            coeffs = next;
        }
        let factored: String = roots.iter().map(|(b, a)| format!("({a}x {} {})", if *b < 0 { "-" } else { "+" }, b.abs())).collect();
        let expand = |cs: &[i64]| -> String {
            let s: String = cs.iter().enumerate().rev().filter(|(_, c)| **c != 0).map(|(k, c)| term(*c, k)).collect();
            if s.is_empty() { "0".into() } else { s.trim_start_matches(" +").trim().to_string() }
        };
        prop_assert_eq!(grade(&factored, &expand(&coeffs)), Verdict::Correct, "{} vs {}", factored, expand(&coeffs));
        let mut off = coeffs.clone();
        off[0] += 1;
        prop_assert_eq!(grade(&factored, &expand(&off)), Verdict::WrongAnswer);
    }

    #[test]
    fn arbitrary_latex_never_panics(s in "[-0-9a-z+*/^_{}()\\[\\]|,.=<>!%$ \\\\]{0,60}") {
        let _ = verify(&s, &s, ExtractMode::Lenient);
        let _ = verify("1", &format!("\\boxed{{{s}}}"), ExtractMode::Boxed);
    }
}
