//! Finding the final answer inside a model's response.
//!
//! `lenient` (the default) looks, in order, for the last `\boxed{}`/`\fbox{}`
//! (several boxed answers at the very end form one multi-answer), an
//! "answer is …" / "Answer: …" phrase, the last math span (`$…$`, `\(…\)`,
//! `\[…\]`), and the last number. `boxed` only accepts `\boxed{}`/`\fbox{}`,
//! which is what RL training wants: the model is rewarded for the format too.
//! Every search here is one linear pass over the response.

pub use crate::api::ExtractMode;

/// Where an extracted answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One or more `\boxed{}` / `\fbox{}` at the end.
    Boxed,
    /// An "answer is …" / "Answer: …" phrase.
    Phrase,
    /// The last `$…$`, `\(…\)` or `\[…\]`.
    MathSpan,
    /// The last number in the text.
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
    if let Some(text) = last_math_span(response) {
        if let Some(e) = non_empty(text.to_string(), Source::MathSpan) {
            return Some(e);
        }
    }
    last_number(response).map(|n| Extracted {
        text: n.to_string(),
        source: Source::LastNumber,
    })
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
    let parts: Vec<&str> = boxed[first..].iter().map(|b| b.content.trim()).collect();
    if parts.len() == 1 {
        return Some(last.content.to_string());
    }
    Some(parts.join(", "))
}

/// True when `gap` (the text between two boxed answers) only joins them.
fn is_connector(gap: &str) -> bool {
    if gap.len() > 80 {
        return false;
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
        let t = t.strip_prefix("is ").unwrap_or(t);
        if t.len() == tail.len() {
            break;
        }
        tail = t;
    }
    let line = tail.split('\n').next().unwrap_or("");
    let line = line.trim();
    if line.is_empty() {
        // "**Final Answer**\n\n 5": the answer is on the next non-empty line.
        let next = tail.lines().map(str::trim).find(|l| !l.is_empty())?;
        return Some(first_sentence(next).to_string());
    }
    if let Some(span) = leading_math_span(line) {
        return Some(span.to_string());
    }
    Some(first_sentence(line).to_string())
}

/// `line` up to the first sentence end (a `.` followed by white space or the end).
fn first_sentence(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' && (i + 1 == b.len() || b[i + 1].is_ascii_whitespace()) {
            return line[..i].trim_end_matches('*').trim();
        }
    }
    line.trim_end_matches('*').trim()
}

/// The math span a line starts with, if it does.
fn leading_math_span(line: &str) -> Option<&str> {
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(rest) = line.strip_prefix(open) {
            if let Some(end) = rest.find(close) {
                return Some(&rest[..end]);
            }
        }
    }
    None
}

/// The content of the last complete math span in `s`.
fn last_math_span(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    // (content start, content end) of the span that ends last.
    let mut best: Option<(usize, usize)> = None;
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
                            best = Some((st, i));
                        }
                    }
                    Some(b']') => {
                        if let Some(st) = open_bracket.take() {
                            best = Some((st, i));
                        }
                    }
                    _ => {}
                }
                i += 2;
            }
            b'$' => {
                let width = if b.get(i + 1) == Some(&b'$') { 2 } else { 1 };
                match open_dollar {
                    Some((st, _)) => {
                        best = Some((st, i));
                        open_dollar = None;
                    }
                    None => open_dollar = Some((i + width, width)),
                }
                i += width;
            }
            _ => i += 1,
        }
    }
    best.map(|(a, z)| &s[a..z])
}

/// Longest number the last-number fallback takes, in bytes.
const MAX_NUMBER_BYTES: usize = 256;

/// The last number in the text: an optional sign, digits with `,` thousands
/// groups, a decimal part, and an optional `/denominator`.
fn last_number(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut end = b.len();
    while end > 0 && !b[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end == 0 {
        return None;
    }
    let mut start = end;
    while start > 0 && end - start < MAX_NUMBER_BYTES {
        let c = b[start - 1];
        let digit_before = start >= 2 && b[start - 2].is_ascii_digit();
        // A comma only inside a thousands group: exactly three digits follow.
        let group = c == b','
            && b[start..]
                .iter()
                .take(4)
                .take_while(|c| c.is_ascii_digit())
                .count()
                == 3
            && b.get(start + 3).is_none_or(|c| !c.is_ascii_digit());
        let inner_sep = (matches!(c, b'.' | b'/') || group) && digit_before && start < end;
        if c.is_ascii_digit() || inner_sep {
            start -= 1;
        } else {
            break;
        }
    }
    if start > 0 && b[start - 1] == b'-' {
        start -= 1;
    }
    Some(&s[start..end])
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
        assert_eq!(
            lenient("thus we get $x^2$ and \\(y=4\\).").unwrap(),
            ("y=4".into(), Source::MathSpan)
        );
        assert_eq!(
            lenient("after all that it is 1,234 apples").unwrap(),
            ("1,234".into(), Source::LastNumber)
        );
        assert_eq!(lenient("we try 3,4 and then 12,5").unwrap().0, "5");
        assert_eq!(lenient("so 1,234,567 in all").unwrap().0, "1,234,567");
        assert_eq!(lenient("Answers: **Final answer** is 9").unwrap().0, "9");
        assert_eq!(lenient("no digits here"), None);
        assert_eq!(extract("The answer is 5.", ExtractMode::Boxed), None);
    }

    #[test]
    fn gold_with_several_boxes() {
        assert_eq!(gold_text("\\boxed{1} and \\boxed{-2}"), "1, -2");
        assert_eq!(gold_text(" 3 "), "3");
    }
}
