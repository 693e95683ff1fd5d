//! Math written in prose without delimiters: `The ratio is \frac{10}{9}`,
//! `so p = .4`, `it is 3 or 4`.
//!
//! [`math_tail`] finds the last stretch of math in a text, joined with the
//! stretches just before it that only connectors ("and", "or", commas)
//! separate from it, so a hedge (`3 or 4`) comes out whole and is graded as
//! the list it is. A stretch is read as written: a whole number with its
//! sign, decimal point and thousands groups, a LaTeX command with its
//! arguments, an expression with its operators. Digits glued to a word
//! (`AZYUK2A`, `3rd`) are part of the word, not a number. [`extract`] uses
//! this for the end of an "answer is" sentence and for its last fallback; it
//! knows nothing of the grammar of `parse.rs`.
//!
//! [`extract`]: super::extract

/// How far back the fallback looks at a time, in bytes: the text is read in
/// windows of this size from its end, so a 16 MiB response costs one linear
/// pass and bounded memory.
const WINDOW: usize = 8 * 1024;
/// Longest brace group read as a command's argument, and longest `$…$` span.
const MAX_GROUP: usize = 4096;
/// Most stretches joined into one answer.
const MAX_JOINED: usize = 64;

/// Words that join the parts of one answer.
const CONNECTORS: &[&str] = &["and", "or"];

/// Words that deny the math right after them (`5, not 7`).
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "isn't", "aren't", "wasn't", "cannot", "can't", "neither", "nor", "except",
];

/// Most prose words between two stretches that "or" still joins (`3, or
/// maybe 4`).
const MAX_HEDGE_WORDS: usize = 6;

/// Commands whose argument is prose, not math.
const PROSE_COMMANDS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsf",
    "texttt",
    "textnormal",
    "emph",
    "mbox",
    "hbox",
    "section",
    "subsection",
    "item",
    "label",
    "ref",
    "cite",
    "footnote",
];

/// Function and constant names that count as math when written as words.
const MATH_WORDS: &[&str] = &[
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi", "inf", "infty",
];

/// Unit words that may follow a number without a space (`5cm`).
const GLUED_UNITS: &[&str] = &[
    "cm", "mm", "km", "m", "kg", "g", "mg", "ml", "l", "s", "ms", "h", "hr", "hrs", "min", "ft", "in", "lb",
    "lbs", "oz", "mph", "kph",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A number as written: `-` is separate, `1,234.5` and `.4` are one token.
    Num,
    /// A LaTeX command with its arguments, `2x`, a math span, a math word.
    Math,
    /// An operator or bracket.
    Op,
    /// A single letter: math only next to an operator or a number.
    Letter,
    Space,
    Comma,
    /// "and" / "or".
    Connector,
    /// Prose, punctuation, a blank line: ends a stretch of math.
    Break,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// For a math span, where its content lies (without the delimiters).
    inner: Option<(usize, usize)>,
}

/// The last stretch of math in `text` (with the stretches joined to it by
/// connectors), or `None`. A stretch right after a negation (`not 7`) does
/// not count. With `needs_value` (the fallback over a whole response), a
/// stretch only counts when it holds a number or a value command (`\frac`,
/// `\sqrt`, `\pi`, …), and digits glued into a word after the last stretch
/// (`… the code is AZYUK2A`) mean there is no answer: the text ends with
/// something that is not math. Without it, a letter answer such as `(C)`
/// counts too.
pub(crate) fn math_tail(text: &str, needs_value: bool) -> Option<String> {
    math_tail_at(text, needs_value).map(|(found, _)| found)
}

/// [`math_tail`], with the byte offset where the found math ends in `text`.
pub(crate) fn math_tail_at(text: &str, needs_value: bool) -> Option<(String, usize)> {
    let mut end = text.len();
    while end > 0 {
        let mut start = end.saturating_sub(WINDOW);
        // Start the window at a line start when there is one nearby, else at
        // a space, so that no number or expression is cut in the middle.
        if start > 0 {
            while !text.is_char_boundary(start) {
                start += 1;
            }
            let mut floor = start.saturating_sub(WINDOW);
            while !text.is_char_boundary(floor) {
                floor += 1;
            }
            start = match text[floor..start].rfind('\n') {
                Some(nl) => floor + nl + 1,
                None => {
                    let mut lo = start.saturating_sub(256);
                    while !text.is_char_boundary(lo) {
                        lo += 1;
                    }
                    text[lo..start]
                        .rfind(|c: char| c.is_ascii_whitespace())
                        .map_or(start, |k| lo + k + 1)
                }
            };
        }
        match tail_in(&text[..end], start, needs_value) {
            Found::Here(found, at) => return Some((found, at)),
            Found::Stop => return None,
            Found::NotHere => end = start,
        }
    }
    None
}

enum Found {
    /// The answer and where it ends.
    Here(String, usize),
    /// The text ends with something that rules out an answer.
    Stop,
    NotHere,
}

/// Value commands: a stretch with one of them holds a value.
const VALUE_COMMANDS: &[&str] = &["\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\pi", "\\infty"];

/// False when `window` cannot hold a value (no digit, no closed-looking math
/// span, no value command): the window is skipped without tokenizing it.
fn may_hold_value(window: &str) -> bool {
    let b = window.as_bytes();
    (0..b.len()).any(|i| match b[i] {
        c if c.is_ascii_digit() => true,
        b'$' => b.get(i + 1).is_some_and(|&c| c != b'$'),
        b'\\' => {
            matches!(b.get(i + 1), Some(b')' | b']'))
                || VALUE_COMMANDS.iter().any(|c| b[i..].starts_with(c.as_bytes()))
        }
        _ => false,
    })
}

fn tail_in(text: &str, from: usize, needs_value: bool) -> Found {
    if needs_value && !may_hold_value(&text[from..]) {
        return Found::NotHere;
    }
    let mut tokens = tokenize(text, from);
    resolve_letters(text, &mut tokens);
    let stretches = stretches(text, &tokens);
    let word = |t: &Token| text[t.start..t.end].to_ascii_lowercase();
    let negated = |s: &(usize, usize)| {
        tokens[..s.0]
            .iter()
            .rev()
            .find(|t| !matches!(t.kind, Kind::Space | Kind::Comma))
            .is_some_and(|t| t.kind == Kind::Break && NEGATIONS.contains(&word(t).as_str()))
    };
    let valid = |s: &(usize, usize)| (!needs_value || holds_value(text, &tokens[s.0..s.1])) && !negated(s);
    let glued = tokens
        .iter()
        .rposition(|t| t.kind == Kind::Break && text[t.start..t.end].bytes().any(|c| c.is_ascii_digit()));
    let Some(last) = stretches.iter().rposition(valid) else {
        return if needs_value && glued.is_some() {
            Found::Stop
        } else {
            Found::NotHere
        };
    };
    if needs_value && glued.is_some_and(|g| g >= stretches[last].1) {
        return Found::Stop;
    }
    let mut parts = vec![stretches[last]];
    let mut k = last;
    while k > 0 && parts.len() < MAX_JOINED {
        let prev = stretches[k - 1];
        let gap = &tokens[prev.1..stretches[k].0];
        if !joins(text, gap) || !valid(&prev) {
            break;
        }
        parts.push(prev);
        k -= 1;
    }
    parts.reverse();
    let texts: Vec<String> = parts.iter().map(|&(a, b)| render(text, &tokens[a..b])).collect();
    Found::Here(texts.join(", "), tokens[stretches[last].1 - 1].end)
}

/// True when the tokens between two stretches join them into one answer:
/// only commas and connectors, or a hedge inside one sentence ("3, or maybe
/// 4", "3 (or possibly 4)").
fn joins(text: &str, gap: &[Token]) -> bool {
    let plain = gap
        .iter()
        .any(|t| matches!(t.kind, Kind::Connector | Kind::Comma))
        && gap
            .iter()
            .all(|t| matches!(t.kind, Kind::Connector | Kind::Comma | Kind::Space));
    if plain {
        return true;
    }
    let or = gap
        .iter()
        .any(|t| t.kind == Kind::Connector && text[t.start..t.end].eq_ignore_ascii_case("or"));
    let sentence_end = gap.iter().any(|t| {
        t.kind == Kind::Break && matches!(&text[t.start..t.end], "." | "?" | "!" | ";" | ":" | "\n")
    });
    let words = gap.iter().filter(|t| t.kind == Kind::Break).count();
    or && !sentence_end && words <= MAX_HEDGE_WORDS
}

/// The text of a stretch: math spans without their delimiters.
fn render(text: &str, tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match (t.kind, t.inner) {
            (_, Some((a, b))) => out.push_str(&text[a..b]),
            (Kind::Space, _) => out.push(' '),
            (Kind::Connector, _) => out.push_str(", "),
            _ => out.push_str(&text[t.start..t.end]),
        }
    }
    out.trim().to_string()
}

/// True when a stretch holds a number or a value command.
fn holds_value(text: &str, tokens: &[Token]) -> bool {
    tokens.iter().any(|t| match t.kind {
        Kind::Num => true,
        Kind::Math => {
            let s = &text[t.start..t.end];
            t.inner.is_some()
                || s.bytes().any(|c| c.is_ascii_digit())
                || VALUE_COMMANDS.iter().any(|c| s.starts_with(c))
        }
        _ => false,
    })
}

/// Maximal runs of math tokens as `(first, end)` token indices, trimmed of
/// spaces, commas and dangling operators and brackets at both ends.
fn stretches(text: &str, tokens: &[Token]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !in_stretch(tokens[i].kind) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < tokens.len() && in_stretch(tokens[j].kind) {
            j += 1;
        }
        if let Some(s) = trim(text, &tokens[..j], i) {
            out.push(s);
        }
        i = j;
    }
    out
}

fn in_stretch(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Num | Kind::Math | Kind::Op | Kind::Letter | Kind::Space | Kind::Comma
    )
}

fn trim(text: &str, tokens: &[Token], from: usize) -> Option<(usize, usize)> {
    let (mut a, mut b) = (from, tokens.len());
    let op = |t: &Token| &text[t.start..t.end];
    loop {
        let before = (a, b);
        while a < b && matches!(tokens[a].kind, Kind::Space | Kind::Comma) {
            a += 1;
        }
        while b > a && matches!(tokens[b - 1].kind, Kind::Space | Kind::Comma) {
            b -= 1;
        }
        // A stretch does not start with a relation or a closing bracket, nor
        // end with an operator that still wants an operand.
        while a < b
            && tokens[a].kind == Kind::Op
            && matches!(
                op(&tokens[a]),
                "=" | "<" | ">" | ")" | "]" | "}" | "*" | "/" | "^" | "_" | "!" | "|"
            )
        {
            a += 1;
        }
        while b > a
            && tokens[b - 1].kind == Kind::Op
            && matches!(
                op(&tokens[b - 1]),
                "=" | "<" | ">" | "(" | "[" | "{" | "+" | "-" | "*" | "/" | "^" | "_"
            )
        {
            b -= 1;
        }
        // Unbalanced brackets at the ends: `(which is 5)` gives `5`.
        let depth: i64 = tokens[a..b]
            .iter()
            .filter(|t| t.kind == Kind::Op)
            .map(|t| match op(t) {
                "(" | "[" | "{" => 1,
                ")" | "]" | "}" => -1,
                _ => 0,
            })
            .sum();
        if depth < 0
            && b > a
            && matches!(op(&tokens[b - 1]), ")" | "]" | "}")
            && tokens[b - 1].kind == Kind::Op
        {
            b -= 1;
        } else if depth > 0
            && a < b
            && tokens[a].kind == Kind::Op
            && matches!(op(&tokens[a]), "(" | "[" | "{")
        {
            a += 1;
        }
        if (a, b) == before {
            break;
        }
    }
    (a < b).then_some((a, b))
}

/// A letter is math when it touches an operator or a number, or when its
/// nearest neighbour (across spaces) is a relation or arithmetic sign:
/// `x = 5`, `2x`, `(C)`; but not the `a` in `is a 5`.
fn resolve_letters(text: &str, tokens: &mut [Token]) {
    let arith = |t: &Token| {
        t.kind == Kind::Op
            && matches!(
                &text[t.start..t.end],
                "=" | "<" | ">" | "+" | "-" | "*" | "/" | "^" | "_"
            )
    };
    let touching = |t: &Token| matches!(t.kind, Kind::Op | Kind::Num | Kind::Math);
    let n = tokens.len();
    let mut is_math = vec![false; n];
    for (i, t) in tokens.iter().enumerate() {
        if t.kind != Kind::Letter {
            continue;
        }
        let left_touch = i > 0 && touching(&tokens[i - 1]);
        let right_touch = i + 1 < n && touching(&tokens[i + 1]);
        let left = tokens[..i].iter().rev().find(|t| t.kind != Kind::Space);
        let right = tokens[i + 1..].iter().find(|t| t.kind != Kind::Space);
        is_math[i] = left_touch || right_touch || left.is_some_and(arith) || right.is_some_and(arith);
    }
    for (t, m) in tokens.iter_mut().zip(is_math) {
        if t.kind == Kind::Letter && !m {
            t.kind = Kind::Break;
        }
    }
}

/// What the tokenizer knows about the text ahead, so that every search for
/// a closing delimiter is linear over the window: the matching `}` of each
/// `{` (found once, with a stack), and for each kind of span how far it is
/// known that no closing delimiter occurs.
struct Ahead {
    /// For the `{` at `from + k`, the distance to the index after its
    /// matching `}` (0: none within [`MAX_GROUP`]).
    close_brace: Vec<u16>,
    from: usize,
    /// For `$`, `$$`, `\)`, `\]`: no closer occurs before this index.
    no_closer: [usize; 4],
}

impl Ahead {
    fn new(s: &str, from: usize) -> Ahead {
        let b = s.as_bytes();
        let mut close_brace = vec![0u16; b.len() - from];
        let mut stack = Vec::new();
        let mut i = from;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 1,
                b'{' => stack.push(i),
                b'}' => {
                    if let Some(open) = stack.pop() {
                        if let Ok(d) = u16::try_from(i + 1 - open) {
                            close_brace[open - from] = d;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Ahead {
            close_brace,
            from,
            no_closer: [0; 4],
        }
    }

    /// The index after the balanced `{…}` at `i`, within [`MAX_GROUP`] bytes.
    fn group_end(&self, b: &[u8], i: usize) -> Option<usize> {
        if b.get(i) != Some(&b'{') || i < self.from {
            return None;
        }
        let d = usize::from(self.close_brace[i - self.from]);
        (d > 0 && d <= MAX_GROUP).then_some(i + d)
    }

    /// The first `needle` (kind `k`) in `s[from..limit]`, skipping escaped
    /// characters; remembers how far there is none.
    fn find(&mut self, s: &str, k: usize, from: usize, limit: usize, needle: &str) -> Option<usize> {
        let start = from.max(self.no_closer[k]);
        let found = find_within(s, start, limit, needle);
        if found.is_none() {
            self.no_closer[k] = self.no_closer[k].max(limit);
        }
        found
    }
}

fn tokenize(s: &str, from: usize) -> Vec<Token> {
    let b = s.as_bytes();
    let mut ahead = Ahead::new(s, from);
    let mut out = Vec::new();
    let mut i = from;
    let push = |out: &mut Vec<Token>, kind, start, end| {
        out.push(Token {
            kind,
            start,
            end,
            inner: None,
        })
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let end = number_end(b, i);
            // Letters glued to the number: a unit, a variable (`2x`) or a word.
            let letters = b[end..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
            let glued_word = {
                let after = end + letters;
                let more = b.get(after).is_some_and(u8::is_ascii_alphanumeric);
                let preceded = start > 0 && b[start - 1].is_ascii_alphabetic();
                preceded || more || (letters >= 2 && !GLUED_UNITS.contains(&&s[end..end + letters]))
            };
            if glued_word {
                // A number that starts at its `.` (`a.5`) is no word's start:
                // the break runs to the number's end at least, so the scan
                // always moves on.
                i = word_end(b, start).max(end);
                push(&mut out, Kind::Break, start, i);
            } else if letters == 1 && !GLUED_UNITS.contains(&&s[end..end + 1]) {
                i = end + 1;
                push(&mut out, Kind::Math, start, i);
            } else {
                push(&mut out, Kind::Num, start, end);
                if letters > 0 {
                    push(&mut out, Kind::Space, end, end + letters);
                }
                i = end + letters;
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            let end = word_end(b, i);
            let word = &s[i..end];
            if word.contains('\'') {
                push(&mut out, Kind::Break, i, end);
                i = end;
                continue;
            }
            let letters_only = word.bytes().all(|c| c.is_ascii_alphabetic());
            let long_run = word
                .as_bytes()
                .split(u8::is_ascii_digit)
                .any(|run| run.len() >= 2);
            let kind = if CONNECTORS.contains(&word) {
                Kind::Connector
            } else if letters_only && MATH_WORDS.contains(&word) {
                Kind::Math
            } else if long_run {
                Kind::Break
            } else if word.len() == 1 {
                Kind::Letter
            } else {
                Kind::Math
            };
            push(&mut out, kind, i, end);
            i = end;
            continue;
        }
        match c {
            b'\\' => {
                let (kind, end, inner) = command(s, i, &mut ahead);
                out.push(Token {
                    kind,
                    start,
                    end,
                    inner,
                });
                i = end;
            }
            b'$' => {
                let width = if b.get(i + 1) == Some(&b'$') { 2 } else { 1 };
                let delim = if width == 2 { "$$" } else { "$" };
                let body = i + width;
                let limit = (body + MAX_GROUP).min(s.len());
                match ahead.find(s, width - 1, body, limit, delim) {
                    Some(close) if close > body => {
                        out.push(Token {
                            kind: Kind::Math,
                            start,
                            end: close + width,
                            inner: Some((body, close)),
                        });
                        i = close + width;
                    }
                    _ => {
                        push(&mut out, Kind::Break, i, i + width);
                        i += width;
                    }
                }
            }
            b' ' | b'\t' | b'\r' => {
                push(&mut out, Kind::Space, i, i + 1);
                i += 1;
            }
            b'\n' => {
                // A line break is space inside math; a blank line ends it.
                let blank = s[i + 1..].trim_start_matches([' ', '\t', '\r']).starts_with('\n');
                push(&mut out, if blank { Kind::Break } else { Kind::Space }, i, i + 1);
                i += 1;
            }
            b',' => {
                push(&mut out, Kind::Comma, i, i + 1);
                i += 1;
            }
            b'=' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'^' | b'_' | b'(' | b')' | b'[' | b']'
            | b'{' | b'}' | b'|' | b'!' | b'%' | b'\'' | b'&' => {
                push(&mut out, Kind::Op, i, i + 1);
                i += 1;
            }
            _ if c >= 0x80 => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                let w = ch.len_utf8();
                let kind = if "−–×÷·√π∞≤≥≠±°≈".contains(ch) {
                    Kind::Op
                } else if ch.is_whitespace() {
                    Kind::Space
                } else {
                    Kind::Break
                };
                push(&mut out, kind, i, i + w);
                i += w;
            }
            _ => {
                push(&mut out, Kind::Break, i, i + 1);
                i += 1;
            }
        }
    }
    out
}

/// End of a number starting at `i`: digits with `,` thousands groups (a
/// comma followed by exactly three digits), then a decimal part.
fn number_end(b: &[u8], i: usize) -> usize {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut j = i + digits(i);
    let lead = j - i;
    if (1..=3).contains(&lead) {
        while b.get(j) == Some(&b',') && digits(j + 1) == 3 {
            j += 4;
        }
    }
    if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j += 1 + digits(j + 1);
    }
    j
}

/// End of a word: letters and digits, and an apostrophe between letters (`isn't`).
fn word_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() {
        let apostrophe = b[j] == b'\''
            && j > i
            && b[j - 1].is_ascii_alphabetic()
            && b.get(j + 1).is_some_and(u8::is_ascii_alphabetic);
        if !(b[j].is_ascii_alphanumeric() || apostrophe) {
            break;
        }
        j += 1;
    }
    j
}

/// First occurrence of `needle` in `s[from..limit]`, skipping escaped characters.
fn find_within(s: &str, from: usize, limit: usize, needle: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = from;
    while i < limit {
        if b[i..].starts_with(needle.as_bytes()) {
            return Some(i);
        }
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    None
}

/// A backslash at `i`: a command with its arguments, a spacing command, an
/// escaped character or a `\(…\)` / `\[…\]` span.
fn command(s: &str, i: usize, ahead: &mut Ahead) -> (Kind, usize, Option<(usize, usize)>) {
    let b = s.as_bytes();
    let Some(&next) = b.get(i + 1) else {
        return (Kind::Break, i + 1, None);
    };
    // `\\frac` in doubly escaped output is the command `\frac`.
    if next == b'\\' && b.get(i + 2).is_some_and(u8::is_ascii_alphabetic) {
        let (kind, end, inner) = command(s, i + 1, ahead);
        return (kind, end, inner);
    }
    if next == b'(' || next == b'[' {
        let (close, k) = if next == b'(' { ("\\)", 2) } else { ("\\]", 3) };
        let body = i + 2;
        let limit = (body + MAX_GROUP).min(s.len());
        return match ahead.find(s, k, body, limit, close) {
            Some(end) if end > body => (Kind::Math, end + 2, Some((body, end))),
            _ => (Kind::Break, i + 2, None),
        };
    }
    if !next.is_ascii_alphabetic() {
        let w = s[i + 1..].chars().next().map_or(1, char::len_utf8);
        let kind = match next {
            b',' | b'!' | b';' | b':' | b' ' | b'\\' => Kind::Space,
            b'{' | b'}' | b'%' | b'$' => Kind::Op,
            _ => Kind::Break,
        };
        return (kind, i + 1 + w, None);
    }
    let name_end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let name = &s[i + 1..name_end];
    let mut end = name_end;
    // Arguments: `[n]` for roots, then brace groups.
    if name == "sqrt" && b.get(end) == Some(&b'[') {
        if let Some(close) = s[end..(end + 64).min(s.len())].find(']') {
            end += close + 1;
        }
    }
    loop {
        let mut j = end;
        while b.get(j) == Some(&b' ') {
            j += 1;
        }
        match ahead.group_end(b, j) {
            Some(after) => end = after,
            None => break,
        }
    }
    let kind = if PROSE_COMMANDS.contains(&name) {
        Kind::Break
    } else {
        Kind::Math
    };
    (kind, end, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(s: &str) -> Option<String> {
        math_tail(s, true)
    }

    #[test]
    fn whole_numbers_as_written() {
        assert_eq!(tail("The ratio is \\frac{10}{9}").unwrap(), "\\frac{10}{9}");
        assert_eq!(tail("so p = .4").unwrap(), "p = .4");
        assert_eq!(tail("so it is -\\frac{10}{9}.").unwrap(), "-\\frac{10}{9}");
        assert_eq!(tail("we need 10,455 of them").unwrap(), "10,455");
        assert_eq!(tail("it costs 3.50. Done").unwrap(), "3.50");
        assert_eq!(tail("after all that it is 1,234 apples").unwrap(), "1,234");
    }

    #[test]
    fn a_decimal_glued_to_a_word_ends() {
        // `a.5` once kept the tokenizer at the `.` for ever, pushing empty
        // tokens until memory ran out.
        assert_eq!(tail("so x.5"), None);
        assert_eq!(tail("the answer is abc.5 then 7").unwrap(), "7");
        let tokens = tokenize("word.5 more.25x", 0);
        assert!(tokens.iter().all(|t| t.end > t.start), "{tokens:?}");
    }

    #[test]
    fn glued_letters_are_words() {
        assert_eq!(tail("the code is AZYUK2A"), None);
        // The text ends in a word with digits: no answer, not the 7 before it.
        assert_eq!(tail("we got 7, the code is AZYUK2A"), None);
        assert_eq!(tail("the code AZYUK2A gives 7").unwrap(), "7");
        assert_eq!(tail("the 3rd one"), None);
        assert_eq!(tail("it is 5cm long").unwrap(), "5");
        assert_eq!(tail("so 2x").unwrap(), "2x");
    }

    #[test]
    fn hedges_come_out_whole() {
        assert_eq!(tail("it is 3 or 4").unwrap(), "3, 4");
        assert_eq!(tail("the roots are 1, 2 and 3.").unwrap(), "1, 2, 3");
        assert_eq!(tail("I tried 3 and then found 4").unwrap(), "4");
        assert_eq!(tail("is $3$ or $4$").unwrap(), "3, 4");
    }

    #[test]
    fn negated_math_is_not_the_answer() {
        assert_eq!(tail("so it is 5, not 7").unwrap(), "5");
        assert_eq!(tail("it isn't 7"), None);
        assert_eq!(tail("the answer is 3, or maybe 4").unwrap(), "3, 4");
        assert_eq!(tail("it is 3 (or possibly 4)").unwrap(), "3, 4");
        assert_eq!(tail("It is 3. Or maybe it is 4").unwrap(), "4");
        assert_eq!(tail("we have 2 cases. The code is AZYUK2A"), None);
    }

    #[test]
    fn prose_letters_and_brackets() {
        assert_eq!(tail("is a 5").unwrap(), "5");
        assert_eq!(tail("(which is 5)").unwrap(), "5");
        assert_eq!(tail("so x = 5+5+1 = 11.").unwrap(), "x = 5+5+1 = 11");
        assert_eq!(math_tail("The answer is (C).", false).unwrap(), "(C)");
        assert_eq!(tail("no digits here"), None);
        assert_eq!(tail("5 \\text{ cm}").unwrap(), "5");
    }

    #[test]
    fn joins_and_arguments_are_bounded() {
        let many: Vec<String> = (0..MAX_JOINED + 5).map(|k| k.to_string()).collect();
        let found = tail(&many.join(" or ")).unwrap();
        assert_eq!(found.split(", ").count(), MAX_JOINED);
        // A brace group longer than MAX_GROUP is not read as one argument.
        let long = format!("{{{}}}", "1".repeat(MAX_GROUP));
        assert_eq!(Ahead::new(&long, 0).group_end(long.as_bytes(), 0), None);
        let short = format!("{{{}}}", "1".repeat(MAX_GROUP - 2));
        assert_eq!(
            Ahead::new(&short, 0).group_end(short.as_bytes(), 0),
            Some(MAX_GROUP)
        );
    }

    #[test]
    fn long_text_is_read_in_windows() {
        let mut s = "x".repeat(3 * WINDOW);
        s.insert_str(10, " 42 ");
        assert_eq!(tail(&s).unwrap(), "42");
        let mut t = "1 ".to_string();
        t.push_str(&"word ".repeat(10_000));
        assert_eq!(tail(&t).unwrap(), "1");
    }
}
