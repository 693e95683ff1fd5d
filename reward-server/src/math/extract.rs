//! Finding the final answer inside a model's response.
//!
//! `lenient` (the default) looks, in order, for the last `\boxed{}`/`\fbox{}`
//! (several boxed answers at the very end form one multi-answer), an
//! "answer is …" / "Answer: …" phrase (the math at the end of its sentence),
//! the last math span (`$…$`, `\(…\)`, `\[…\]`), and the last stretch of
//! math in the prose ([`prose`]). Answers that only connectors ("and", "or",
//! commas) separate are taken together, so a hedge such as `$3$ or $4$` is
//! graded as the list it is, never as its last part. `boxed` only accepts
//! `\boxed{}`/`\fbox{}`, which is what RL training wants: the model is
//! rewarded for the format too. Every search here is one linear pass over the
//! response.
//!
//! [`prose`]: super::prose

pub use crate::api::ExtractMode;

use super::prose;

/// Where an extracted answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One or more `\boxed{}` / `\fbox{}` at the end.
    Boxed,
    /// An "answer is …" / "Answer: …" phrase.
    Phrase,
    /// The last `$…$`, `\(…\)` or `\[…\]`.
    MathSpan,
    /// The last stretch of math in the prose (a number, an expression).
    LastNumber,
}

/// An answer found in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The answer text; several boxed answers are joined with `, `.
    pub text: String,
    /// Which rule found it.
    pub source: Source,
}

/// A `\boxed{…}` found in the text: byte span of the whole command and its content.
#[derive(Debug, Clone, Copy)]
struct BoxedSpan<'a> {
    start: usize,
    end: usize,
    content: &'a str,
}

/// Finds the answer in `response`, or `None` when there is nothing to grade.
pub fn extract(response: &str, mode: ExtractMode) -> Option<Extracted> {
    let boxed = boxed_spans(response);
    if let Some(text) = final_boxed(response, &boxed) {
        return non_empty(text, Source::Boxed);
    }
    if mode == ExtractMode::Boxed {
        return None;
    }
    if let Some(text) = answer_phrase(response) {
        if let Some(e) = non_empty(text, Source::Phrase) {
            return Some(e);
        }
    }
    let ends_answer = |at: usize| response[at..].trim().len() <= MAX_TRAILING;
    if let Some((text, at)) = last_math_spans(response) {
        if ends_answer(at) {
            if let Some(e) = non_empty(text, Source::MathSpan) {
                return Some(e);
            }
        }
    }
    let (text, at) = prose::math_tail_at(response, true)?;
    if !ends_answer(at) {
        return None;
    }
    non_empty(text, Source::LastNumber)
}

/// Most text after the last math span or stretch of math for it to be taken
/// as the final answer, in bytes: a response that goes on writing prose
/// after its last math (a truncated or rambling output) has not stated a
/// final answer with it.
pub const MAX_TRAILING: usize = 300;

/// The last boxed answers of `response`, as many as `count`, joined: the
/// parts of one answer boxed one by one with prose between them ("the width
/// is $\boxed{3}$ and the length is $\boxed{4}$"). `None` when there are
/// fewer boxes.
pub fn last_boxes(response: &str, count: usize) -> Option<String> {
    let boxed = boxed_spans(response);
    if count == 0 || boxed.len() < count {
        return None;
    }
    let parts: Vec<&str> = boxed[boxed.len() - count..]
        .iter()
        .map(|b| b.content.trim())
        .collect();
    Some(parts.join(", "))
}

/// The gold answer's text: every boxed part joined when it has any, else all of it.
pub fn gold_text(answer: &str) -> String {
    let boxed = boxed_spans(answer);
    if boxed.is_empty() {
        return answer.trim().to_string();
    }
    boxed
        .iter()
        .map(|b| b.content.trim())
        .collect::<Vec<_>>()
        .join(", ")
}

fn non_empty(text: String, source: Source) -> Option<Extracted> {
    let t = text.trim();
    (!t.is_empty()).then(|| Extracted {
        text: t.to_string(),
        source,
    })
}

/// All balanced `\boxed{…}` / `\fbox{…}` (and brace-less `\boxed 5`) in order,
/// found in one pass. Only the braces that open a box are remembered (with
/// the brace depth they opened at), so memory grows with the number of boxes,
/// not of braces.
fn boxed_spans(s: &str) -> Vec<BoxedSpan<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Open boxes: (brace depth inside the box, start of `\boxed`, position of `{`).
    let mut open: Vec<(usize, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                // `\\boxed` in doubly escaped output is a box too.
                if s[i + 1..].starts_with("\\boxed") || s[i + 1..].starts_with("\\fbox") {
                    i += 1;
                    continue;
                }
                let rest = &s[i..];
                let name_len = if rest.starts_with("\\boxed") {
                    6
                } else if rest.starts_with("\\fbox") {
                    5
                } else {
                    // Skip escaped characters (`\{`, `\}`) and other commands.
                    i += 2;
                    continue;
                };
                let after = i + name_len;
                if b.get(after).is_some_and(u8::is_ascii_alphabetic) {
                    i = after;
                    continue;
                }
                let mut j = after;
                while b.get(j) == Some(&b' ') {
                    j += 1;
                }
                if b.get(j) == Some(&b'{') {
                    depth += 1;
                    open.push((depth, i, j));
                    i = j + 1;
                } else {
                    // `\boxed 5`: the next token up to white space or a delimiter.
                    let end = s[j..]
                        .find(|c: char| c.is_whitespace() || matches!(c, '$' | '\\' | '}'))
                        .map_or(s.len(), |k| j + k);
                    if end > j {
                        out.push(BoxedSpan {
                            start: i,
                            end,
                            content: &s[j..end],
                        });
                    }
                    i = end.max(j);
                }
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                if open.last().is_some_and(|&(d, _, _)| d == depth) {
                    let (_, start, brace) = open.pop().unwrap();
                    out.push(BoxedSpan {
                        start,
                        end: i + 1,
                        content: &s[brace + 1..i],
                    });
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    // Nested boxes are pushed inner-first; order by position.
    out.sort_by_key(|b| b.start);
    // Keep only outermost boxes.
    let mut outer: Vec<BoxedSpan<'_>> = Vec::with_capacity(out.len());
    for span in out {
        if outer.last().is_some_and(|o| span.start < o.end) {
            continue;
        }
        outer.push(span);
    }
    outer
}

/// The last boxed answer, joined with the boxed answers just before it when
/// only connectors ("and", "or", commas, `x =`, math delimiters) separate them.
fn final_boxed(s: &str, boxed: &[BoxedSpan<'_>]) -> Option<String> {
    let last = boxed.last()?;
    let mut first = boxed.len() - 1;
    while first > 0 && is_connector(&s[boxed[first - 1].end..boxed[first].start]) {
        first -= 1;
    }
    // An empty box (`put the answer in \boxed{}`) is no part of the answer.
    let parts: Vec<&str> = boxed[first..]
        .iter()
        .map(|b| b.content.trim())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() <= 1 {
        return Some(parts.first().map_or(last.content, |p| p).to_string());
    }
    Some(parts.join(", "))
}

/// True when `gap` (the text between two boxed answers) only joins them.
fn is_connector(gap: &str) -> bool {
    if gap.len() > 80 {
        return false;
    }
    if is_hedge(gap) {
        return true;
    }
    let cleaned = gap
        .replace("\\text", " ")
        .replace("\\quad", " ")
        .replace("\\qquad", " ")
        .replace("\\\\", " ");
    cleaned
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .all(|w| {
            let lower = w.to_ascii_lowercase();
            matches!(lower.as_str(), "and" | "or" | "also" | "quad")
                || (w.as_bytes()[0].is_ascii_alphabetic()
                    && w.len() <= 4
                    && w[1..].bytes().all(|c| c.is_ascii_digit() || c == b'_'))
        })
}

/// The text after the last "answer is" / "answer:" phrase, to the end of its sentence.
fn answer_phrase(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let mut end = lower.len();
    let mut best = None;
    // The last "answer" followed by ":" or "is" (with `*` and spaces between).
    while let Some(p) = lower[..end].rfind("answer") {
        let after = lower[p + 6..].trim_start_matches(['*', ' ']);
        if after.starts_with(':') || after.starts_with("is ") || after.starts_with("is:") {
            best = Some(p + 6);
            break;
        }
        end = p;
    }
    let mut tail = &s[best?..];
    // Skip `:`, `**`, `is`, white space between the phrase and the answer.
    loop {
        let t = tail.trim_start_matches([':', '*', ' ', '\t']);
        let t = t
            .strip_prefix("is")
            .filter(|r| r.starts_with([' ', ':', '\n', '\t']))
            .unwrap_or(t);
        if t.len() == tail.len() {
            break;
        }
        tail = t;
    }
    let line = tail.split('\n').next().unwrap_or("");
    let line = match line.trim() {
        // "**Final Answer**\n\n 5": the answer is on the next non-empty line.
        "" => tail.lines().map(str::trim).find(|l| !l.is_empty())?,
        l => l,
    };
    let sentence = first_sentence(line);
    // The math at the end of the sentence ("The largest $n$ is 34"), with
    // what connectors join to it; a sentence of words is a text answer.
    Some(prose::math_tail(sentence, false).unwrap_or_else(|| sentence.to_string()))
}

/// `line` up to the first sentence end (a `.` followed by white space or the
/// end, outside math spans).
fn first_sentence(line: &str) -> &str {
    let b = line.as_bytes();
    let mut in_dollar = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'$' => in_dollar = !in_dollar,
            b'.' if !in_dollar && (i + 1 == b.len() || b[i + 1].is_ascii_whitespace()) => {
                return line[..i].trim_end_matches('*').trim();
            }
            _ => {}
        }
        i += 1;
    }
    line.trim_end_matches('*').trim()
}

/// Longest gap between two math spans that may still join them into one answer.
const MAX_SPAN_GAP: usize = 80;

/// The content of the last complete math span in `s`, joined with the spans
/// just before it that only connectors separate from it (`$3$ or $4$`).
fn last_math_spans(s: &str) -> Option<(String, usize)> {
    let spans = math_spans(s);
    let last = spans.len().checked_sub(1)?;
    let mut first = last;
    while first > 0
        && spans[first].0 >= spans[first - 1].1
        && spans[first].0 - spans[first - 1].1 <= MAX_SPAN_GAP
        && is_span_connector(&s[spans[first - 1].1..spans[first].0])
    {
        first -= 1;
    }
    let parts: Vec<&str> = spans[first..]
        .iter()
        .map(|&(_, _, a, z)| s[a..z].trim())
        .collect();
    Some((parts.join(", "), spans[last].1))
}

/// True when `gap` offers a choice inside one sentence ("$3$, or maybe $4$",
/// "\boxed{3} or possibly \boxed{4}"): the word "or" and no sentence end.
/// The choices are then one answer with several parts, which a single gold
/// never equals, so hedging earns nothing.
fn is_hedge(gap: &str) -> bool {
    let has_or = gap
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| w.eq_ignore_ascii_case("or"));
    let sentence_end = gap.contains(['?', '!', '\n']) || gap.contains(". ") || gap.trim_end().ends_with('.');
    has_or && !sentence_end
}

/// True when `gap` (between two math spans) is only commas, "and", "or" and
/// white space, with at least one comma or connector word, or a hedge.
fn is_span_connector(gap: &str) -> bool {
    if is_hedge(gap) {
        return true;
    }
    let words: Vec<&str> = gap
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let has_joint = gap.contains([',', ';']) || !words.is_empty();
    has_joint
        && words
            .iter()
            .all(|w| matches!(w.to_ascii_lowercase().as_str(), "and" | "or"))
}

/// Most math spans remembered while scanning (the last ones): the most
/// that can join into one answer.
const MAX_SPANS: usize = 64;

/// The last complete math spans in `s`, at most [`MAX_SPANS`], in order:
/// (start, end, content start, content end).
fn math_spans(s: &str) -> Vec<(usize, usize, usize, usize)> {
    let b = s.as_bytes();
    let mut spans = std::collections::VecDeque::with_capacity(MAX_SPANS);
    let mut push = |span| {
        if spans.len() == MAX_SPANS {
            spans.pop_front();
        }
        spans.push_back(span);
    };
    let mut open_dollar: Option<(usize, usize)> = None; // (content start, delimiter width)
    let mut open_paren: Option<usize> = None;
    let mut open_bracket: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'(') => open_paren = Some(i + 2),
                    Some(b'[') => open_bracket = Some(i + 2),
                    Some(b')') => {
                        if let Some(st) = open_paren.take() {
                            push((st - 2, i + 2, st, i));
                        }
                    }
                    Some(b']') => {
                        if let Some(st) = open_bracket.take() {
                            push((st - 2, i + 2, st, i));
                        }
                    }
                    _ => {}
                }
                i += 2;
            }
            b'$' => {
                let width = if b.get(i + 1) == Some(&b'$') { 2 } else { 1 };
                match open_dollar {
                    Some((st, w)) => {
                        push((st - w, i + width, st, i));
                        open_dollar = None;
                    }
                    None => open_dollar = Some((i + width, width)),
                }
                i += width;
            }
            _ => i += 1,
        }
    }
    spans.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenient(s: &str) -> Option<(String, Source)> {
        extract(s, ExtractMode::Lenient).map(|e| (e.text, e.source))
    }

    #[test]
    fn last_boxed_with_nested_braces() {
        let r = "First \\boxed{1}. Then \\boxed{\\frac{1}{\\sqrt{2}}} is it.";
        assert_eq!(
            lenient(r).unwrap(),
            ("\\frac{1}{\\sqrt{2}}".into(), Source::Boxed)
        );
        assert_eq!(lenient("\\fbox{7}").unwrap().0, "7");
        assert_eq!(lenient("so $\\boxed 5$.").unwrap().0, "5");
    }

    #[test]
    fn several_boxes_at_the_end_form_one_answer() {
        let r = "The roots are $x = \\boxed{1}$ and $x = \\boxed{-2}$.";
        assert_eq!(lenient(r).unwrap().0, "1, -2");
        let r = "Step: \\boxed{3} was wrong. We re-derive everything carefully and get \\boxed{4}";
        assert_eq!(lenient(r).unwrap().0, "4");
        let r = "It is \\boxed{3}, or possibly \\boxed{4}";
        assert_eq!(lenient(r).unwrap().0, "3, 4");
        let r = "It is \\boxed{3}. Or is it? No: \\boxed{4}";
        assert_eq!(lenient(r).unwrap().0, "4");
    }

    #[test]
    fn unbalanced_box_is_ignored() {
        assert_eq!(lenient("\\boxed{3} and \\boxed{4").unwrap().0, "3");
    }

    #[test]
    fn phrase_span_and_number_fallbacks() {
        assert_eq!(
            lenient("So the answer is $12$. Done").unwrap(),
            ("12".into(), Source::Phrase)
        );
        assert_eq!(lenient("**Answer:** 3.5.").unwrap().0, "3.5");
        // Spans that "and" joins are one answer.
        assert_eq!(
            lenient("thus we get $x^2$ and \\(y=4\\).").unwrap(),
            ("x^2, y=4".into(), Source::MathSpan)
        );
        assert_eq!(
            lenient("thus we get $x^2$, so \\(y=4\\).").unwrap(),
            ("y=4".into(), Source::MathSpan)
        );
        assert_eq!(
            lenient("after all that it is 1,234 apples").unwrap(),
            ("1,234".into(), Source::LastNumber)
        );
        // Read as written: `12,5` is not the number 5.
        assert_eq!(lenient("we try 3,4 and then 12,5").unwrap().0, "12,5");
        assert_eq!(lenient("so 1,234,567 in all").unwrap().0, "1,234,567");
        assert_eq!(lenient("Answers: **Final answer** is 9").unwrap().0, "9");
        assert_eq!(lenient("no digits here"), None);
        assert_eq!(extract("The answer is 5.", ExtractMode::Boxed), None);
    }

    #[test]
    fn phrase_takes_the_math_at_the_end_of_its_sentence() {
        let r = "Final Answer: The largest $n$ is 34.";
        assert_eq!(lenient(r).unwrap(), ("34".into(), Source::Phrase));
        let r = "Final Answer: The final answer is $34$. I hope it is correct.";
        assert_eq!(lenient(r).unwrap().0, "34");
        assert_eq!(lenient("The answer is Tuesday.").unwrap().0, "Tuesday");
        assert_eq!(lenient("The answer is (B).").unwrap().0, "(B)");
        assert_eq!(
            lenient("Thus, the answer is:\n\\[ \\frac{207}{64} \\]")
                .unwrap()
                .0,
            "\\frac{207}{64}"
        );
    }

    #[test]
    fn hedges_are_taken_whole() {
        assert_eq!(lenient("The answer is $3$ or $4$.").unwrap().0, "3, 4");
        assert_eq!(lenient("So $x=3$ or $x=4$").unwrap().0, "x=3, x=4");
        assert_eq!(lenient("so it is 3 or 4").unwrap().0, "3, 4");
        assert_eq!(lenient("So $3$, or maybe $4$").unwrap().0, "3, 4");
        assert_eq!(lenient("The answer is 5, not 7.").unwrap().0, "5");
        assert_eq!(lenient("We get $y$. Then $x = 4$").unwrap().0, "x = 4");
    }

    #[test]
    fn bare_latex_is_math() {
        assert_eq!(lenient("The ratio is \\frac{10}{9}").unwrap().0, "\\frac{10}{9}");
        assert_eq!(lenient("so p = .4").unwrap().0, "p = .4");
        assert_eq!(lenient("the code is AZYUK2A"), None);
    }

    #[test]
    fn trailing_prose_and_span_limits() {
        let prose = |n: usize| "word ".repeat(n / 5);
        let r = format!("so $x = 5$. {}", prose(MAX_TRAILING - 10));
        assert_eq!(lenient(&r).unwrap().0, "x = 5");
        let r = format!("so $x = 5$. {}", prose(MAX_TRAILING + 10));
        assert_eq!(lenient(&r), None);
        let r = format!("so x = 5. {}", prose(MAX_TRAILING + 10));
        assert_eq!(lenient(&r), None);
        // At most MAX_SPANS spans join into one answer.
        let spans: Vec<String> = (0..MAX_SPANS + 6).map(|k| format!("${k}$")).collect();
        let joined = lenient(&spans.join(" or ")).unwrap().0;
        assert_eq!(joined.split(", ").count(), MAX_SPANS);
        assert!(joined.ends_with(&format!("{}", MAX_SPANS + 5)));
    }

    #[test]
    fn last_boxes_for_answers_in_parts() {
        let r = "The width is $\\boxed{3}$ and the length is $\\boxed{4}$.";
        assert_eq!(lenient(r).unwrap().0, "4");
        assert_eq!(last_boxes(r, 2).unwrap(), "3, 4");
        assert_eq!(last_boxes(r, 3), None);
    }

    #[test]
    fn gold_with_several_boxes() {
        assert_eq!(gold_text("\\boxed{1} and \\boxed{-2}"), "1, -2");
        assert_eq!(gold_text(" 3 "), "3");
    }
}
