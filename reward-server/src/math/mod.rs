//! The math answer verifier: response → extracted answer → normalised text →
//! AST → equivalence with the gold answer.
//!
//! Each stage lives in its own module and knows nothing of the others'
//! internals: [`extract`] finds the answer in the response, [`normalize`]
//! cleans the LaTeX as text, [`parse`] builds an [`ast::Expr`] with `nom`,
//! [`eval`] computes values and [`equiv`] decides equality. [`verify`] runs
//! them in order and turns the result into a verdict.
//!
//! ```
//! use reward_server::math::{verify, ExtractMode};
//! use reward_server::api::Verdict;
//!
//! let out = verify("\\frac{1}{2}", "So $x = \\boxed{0.5}$.", ExtractMode::Lenient);
//! assert_eq!(out.verdict, Verdict::Correct);
//! ```

pub mod ast;
pub mod equiv;
pub mod eval;
pub mod extract;
pub mod normalize;
pub mod parse;
#[cfg(test)]
mod properties;
mod prose;
pub mod surd;

pub use extract::ExtractMode;

use crate::api::Verdict;
use ast::Expr;
use normalize::Normalized;

/// Longest extracted or gold answer that is parsed, in bytes.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024;
/// Longest response searched for an answer, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// What the math verifier decided about one response.
#[derive(Debug, Clone, PartialEq)]
pub struct MathOutcome {
    /// `correct`, `wrong_answer`, `no_answer` or `invalid`.
    pub verdict: Verdict,
    /// The answer found in the response, if any.
    pub extracted: Option<String>,
    /// Why the verdict is not `correct`, when there is more to say than the verdict.
    pub error: Option<String>,
}

impl MathOutcome {
    fn new(verdict: Verdict, extracted: Option<String>, error: Option<String>) -> MathOutcome {
        MathOutcome {
            verdict,
            extracted,
            error,
        }
    }
}

/// A gold or response answer after normalising and parsing.
enum Reading {
    /// A parsed expression.
    Parsed(Expr),
    /// Words, or text the grammar does not cover: compared as a normalised string.
    Text,
}

/// Normalises and parses `text`. `Err` carries the parse error when the text
/// is neither an expression nor plain words.
fn read(n: &Normalized) -> Result<Reading, parse::ParseError> {
    if n.is_text {
        return Ok(Reading::Text);
    }
    parse::parse(&n.math).map(Reading::Parsed)
}

/// True for text that is plain words and signs, which a failed parse may
/// still compare as a string (`Tuesday!`, `(C) only`).
fn looks_like_words(s: &str) -> bool {
    !s.contains(['\\', '{', '}', '^', '_']) && s.chars().any(char::is_alphanumeric)
}

/// Grades one math response against its gold answer.
pub fn verify(answer: &str, response: &str, mode: ExtractMode) -> MathOutcome {
    let gold = extract::gold_text(answer);
    if gold.is_empty() {
        return MathOutcome::new(Verdict::Invalid, None, Some("the gold `answer` is empty".into()));
    }
    if gold.len() > MAX_ANSWER_BYTES {
        return MathOutcome::new(
            Verdict::Invalid,
            None,
            Some(format!(
                "the gold `answer` is {} bytes; the limit is {MAX_ANSWER_BYTES}",
                gold.len()
            )),
        );
    }
    let gold_n = normalize::normalize(&gold);
    let gold_reading = match read(&gold_n) {
        Ok(r) => r,
        Err(_) if looks_like_words(&gold_n.math) => Reading::Text,
        Err(e) => {
            return MathOutcome::new(
                Verdict::Invalid,
                None,
                Some(format!("the gold `answer` {gold:?}: {e}")),
            );
        }
    };
    if response.len() > MAX_RESPONSE_BYTES {
        return MathOutcome::new(
            Verdict::Invalid,
            None,
            Some(format!(
                "the response is {} bytes; the limit is {MAX_RESPONSE_BYTES}",
                response.len()
            )),
        );
    }
    // A response that is the gold answer, character for character (`odd $n$`,
    // an answer with words and math), needs no extraction.
    if mode == ExtractMode::Lenient && response.trim() == answer.trim() {
        return MathOutcome::new(Verdict::Correct, Some(response.trim().to_string()), None);
    }
    let Some(found) = extract::extract(response, mode) else {
        let why = match mode {
            ExtractMode::Boxed => "no \\boxed{} answer in the response",
            ExtractMode::Lenient => "no answer found in the response",
        };
        return MathOutcome::new(Verdict::NoAnswer, None, Some(why.into()));
    };
    if found.text.len() > MAX_ANSWER_BYTES {
        let why = format!(
            "the extracted answer is {} bytes; the limit is {MAX_ANSWER_BYTES}",
            found.text.len()
        );
        let head: String = found.text.chars().take(200).collect();
        return MathOutcome::new(Verdict::WrongAnswer, Some(head), Some(why));
    }
    let (mut correct, error) = compare(&gold_n, &gold_reading, &found.text);
    let mut extracted = found.text;
    // An answer in several parts, each boxed on its own with prose between
    // the boxes: the last as many boxes as the gold has parts. Only the
    // last ones count, and a list must match as a whole, so boxing extra
    // candidates earlier or later cannot win.
    if !correct && found.source == extract::Source::Boxed {
        if let Reading::Parsed(ast::Expr::List(parts)) = &gold_reading {
            if let Some(text) = extract::last_boxes(response, parts.len()) {
                if text != extracted
                    && text.len() <= MAX_ANSWER_BYTES
                    && compare(&gold_n, &gold_reading, &text).0
                {
                    correct = true;
                    extracted = text;
                }
            }
        }
    }
    let verdict = if correct {
        Verdict::Correct
    } else {
        Verdict::WrongAnswer
    };
    MathOutcome::new(verdict, Some(extracted), if correct { None } else { error })
}

/// Compares an extracted answer with the gold: (equal, parse error of the answer).
fn compare(gold_n: &Normalized, gold: &Reading, answer: &str) -> (bool, Option<String>) {
    let resp_n = normalize::normalize(answer);
    let text_match = || !gold_n.plain.is_empty() && gold_n.plain == resp_n.plain;
    match (gold, read(&resp_n)) {
        (Reading::Parsed(g), Ok(Reading::Parsed(r))) => (equiv::equivalent(g, &r), None),
        (_, Ok(_)) => (text_match(), None),
        (Reading::Text, Err(_)) => (text_match(), None),
        (Reading::Parsed(_), Err(e)) => (false, Some(format!("response answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(gold: &str, resp: &str) -> Verdict {
        verify(gold, resp, ExtractMode::Lenient).verdict
    }

    #[test]
    fn verdicts() {
        assert_eq!(v("\\frac13", "thus \\boxed{\\dfrac{1}{3}}"), Verdict::Correct);
        assert_eq!(v("\\frac13", "thus \\boxed{0.33}"), Verdict::WrongAnswer);
        assert_eq!(v("5", "I could not solve it."), Verdict::NoAnswer);
        assert_eq!(v("", "\\boxed{5}"), Verdict::Invalid);
        assert_eq!(v("\\frac{", "\\boxed{5}"), Verdict::Invalid);
        assert_eq!(
            v("\\text{Tuesday}", "The day is \\boxed{\\text{tuesday}}"),
            Verdict::Correct
        );
        assert_eq!(v("Tuesday", "\\boxed{\\text{Tuesday}}"), Verdict::Correct);
        assert_eq!(v("(C)", "\\boxed{C}"), Verdict::Correct);
        assert_eq!(
            v("\\boxed{1} and \\boxed{-2}", "$x=\\boxed{-2}$ or $x=\\boxed{1}$"),
            Verdict::Correct
        );
        let out = verify("5", "\\boxed{5 +}", ExtractMode::Lenient);
        assert_eq!(out.verdict, Verdict::WrongAnswer);
        assert!(out.error.unwrap().contains("cannot parse"));
        // An unbalanced box is no box, and the unfinished `5 \frac{` in it is
        // not the number 5.
        assert_eq!(v("5", "\\boxed{5 \\frac{"), Verdict::WrongAnswer);
        assert_eq!(v("5", "\\boxed{5 and then 5"), Verdict::Correct);
    }

    /// Worst-case inputs stay bounded in stack (the parser caps tree depth)
    /// on a thread with half the usual 2 MiB stack (release builds need a
    /// quarter of that; this runs unoptimised).
    #[test]
    fn pathological_answers_fit_a_small_stack() {
        let cases: Vec<String> = vec![
            format!("{}1{}", "(".repeat(4000), ")".repeat(4000)),
            "1+".repeat(4000) + "1",
            "2".to_string() + &"!".repeat(8000),
            "-".repeat(8000) + "1",
            "2^".repeat(4000) + "2",
            "\\sqrt".repeat(1600) + "{2}",
            "\\frac{1}".repeat(1000) + "{1}",
            "x".repeat(8000),
            "(x+1)^{1000}".repeat(100),
            "\\binom{10000}{5000}".into(),
            "9^{9^{9^{9}}}".into(),
            "1,".repeat(4000) + "1",
        ];
        let handle = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                for c in &cases {
                    let out = verify("1", &format!("\\boxed{{{c}}}"), ExtractMode::Boxed);
                    assert_ne!(out.verdict, Verdict::Correct, "{}", &c[..30.min(c.len())]);
                    let out = verify(c, &format!("\\boxed{{{c}}}"), ExtractMode::Boxed);
                    assert_ne!(out.verdict, Verdict::NoAnswer);
                }
            })
            .unwrap();
        handle.join().expect("no stack overflow or panic");
    }

    #[test]
    fn size_limits_are_enforced() {
        let huge = "x".repeat(MAX_RESPONSE_BYTES + 1);
        let out = verify("1", &huge, ExtractMode::Lenient);
        assert_eq!(out.verdict, Verdict::Invalid);
        assert!(out.error.unwrap().contains("the limit is 16777216"));

        let long_gold = "1+".repeat(MAX_ANSWER_BYTES / 2) + "1";
        let out = verify(&long_gold, "\\boxed{1}", ExtractMode::Lenient);
        assert_eq!(out.verdict, Verdict::Invalid);
        assert!(out.error.unwrap().contains("gold `answer` is"));

        let long_answer = format!("\\boxed{{{}}}", "1".repeat(MAX_ANSWER_BYTES + 1));
        let out = verify("1", &long_answer, ExtractMode::Lenient);
        assert_eq!(out.verdict, Verdict::WrongAnswer);
        assert!(out.error.unwrap().contains("extracted answer is 8193 bytes"));

        // Just under the limit is still graded.
        let list = vec!["1"; 2730].join(", ");
        assert!(list.len() < MAX_ANSWER_BYTES);
        let ok = format!("\\boxed{{{list}}}");
        assert_eq!(verify(&list, &ok, ExtractMode::Lenient).verdict, Verdict::Correct);
    }

    #[test]
    fn boxed_mode_needs_a_box() {
        assert_eq!(
            verify("5", "The answer is 5.", ExtractMode::Boxed).verdict,
            Verdict::NoAnswer
        );
        assert_eq!(
            verify("5", "\\boxed{5}", ExtractMode::Boxed).verdict,
            Verdict::Correct
        );
    }

    #[test]
    fn megabyte_response_is_bounded() {
        let mut r = "\\boxed{".repeat(100_000);
        r.push_str(&"(".repeat(300_000));
        r.push_str(" so \\boxed{42}");
        let out = verify("42", &r, ExtractMode::Lenient);
        assert_eq!(out.verdict, Verdict::Correct);
        let deep = format!("\\boxed{{{}1{}}}", "(".repeat(3000), ")".repeat(3000));
        assert_eq!(
            verify("1", &deep, ExtractMode::Lenient).verdict,
            Verdict::WrongAnswer
        );
    }
}
