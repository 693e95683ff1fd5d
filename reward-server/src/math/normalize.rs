//! String-level clean-up of an extracted answer before parsing.
//!
//! This stage only rewrites text: it drops math delimiters, spacing and
//! sizing commands, unit words and `\text{}` wrappers, unifies synonyms
//! (`\dfrac` → `\frac`, `\leq` → `\le`, `°` → degrees) and joins digit groups
//! (`1\,000`, `1{,}000`, `1 000`). It knows nothing of the grammar; the parser
//! (`parse.rs`) sees only its output. Every pass is linear in the input.

/// The two views of a cleaned-up answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Text for the parser: units and `\text{}` words removed.
    pub math: String,
    /// Text for string comparison: `\text{}` contents kept, wrappers removed,
    /// lower-cased, only letters, digits and a few signs kept.
    pub plain: String,
    /// True when the answer is only words (`\text{Tuesday}`, `(C)` inside text):
    /// it is compared as a string, not parsed.
    pub is_text: bool,
}

/// Commands whose argument is text (units, words, or a letter in roman type).
const TEXT_COMMANDS: &[&str] = &[
    "text",
    "textbf",
    "textrm",
    "textit",
    "textsf",
    "texttt",
    "textnormal",
    "mathrm",
    "mbox",
    "mathsf",
    "mathtt",
    "hbox",
    "textup",
    "emph",
];

/// Commands that only change how their argument looks: replaced by it.
const STYLE_COMMANDS: &[&str] = &[
    "mathbf",
    "boldsymbol",
    "bm",
    "mathit",
    "mathnormal",
    "pmb",
    "mathbb",
    "mathcal",
    "underline",
    "bold",
    "boxed",
    "fbox",
];

/// Commands dropped outright (spacing, sizing, display style).
const DROPPED_COMMANDS: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "enspace",
    "thinspace",
    "negthinspace",
    "medspace",
    "thickspace",
    "limits",
    "nolimits",
    "dots",
    "ldots",
    "cdots",
    "middle",
    "phantom",
    "hphantom",
    "vphantom",
    "mathstrut",
    "strut",
    "noindent",
    "hfill",
    "bigskip",
    "medskip",
    "smallskip",
    "nonumber",
    "notag",
];

/// Synonyms rewritten to the one spelling the parser knows.
const RENAMED_COMMANDS: &[(&str, &str)] = &[
    ("dfrac", "\\frac"),
    ("tfrac", "\\frac"),
    ("cfrac", "\\frac"),
    ("dbinom", "\\binom"),
    ("tbinom", "\\binom"),
    ("leq", "\\le"),
    ("leqslant", "\\le"),
    ("leqq", "\\le"),
    ("geq", "\\ge"),
    ("geqslant", "\\ge"),
    ("geqq", "\\ge"),
    ("neq", "\\ne"),
    ("lt", "<"),
    ("gt", ">"),
    ("approx", "\\approx"),
    ("thickapprox", "\\approx"),
    ("simeq", "\\approx"),
    ("equiv", "="),
    ("lbrace", "\\{"),
    ("rbrace", "\\}"),
    ("lvert", "|"),
    ("rvert", "|"),
    ("vert", "|"),
    ("mid", "|"),
    ("lVert", "|"),
    ("rVert", "|"),
    ("ast", "*"),
    ("star", "*"),
    ("colon", ":"),
    ("infin", "\\infty"),
    ("degree", "°"),
    ("circ", "°"),
    ("varnothing", "\\emptyset"),
    ("land", ","),
    ("lor", ","),
    ("wedge", ","),
    ("vee", ","),
];

/// Unit and filler words dropped from the end of a plain-text answer
/// (`5 cm`, `12 dollars`, `4 square units`).
const UNIT_WORDS: &[&str] = &[
    "cm",
    "mm",
    "km",
    "m",
    "meter",
    "meters",
    "metre",
    "metres",
    "centimeters",
    "kilometers",
    "inch",
    "inches",
    "in",
    "ft",
    "foot",
    "feet",
    "yard",
    "yards",
    "mile",
    "miles",
    "mi",
    "g",
    "kg",
    "gram",
    "grams",
    "kilograms",
    "pound",
    "pounds",
    "lb",
    "lbs",
    "oz",
    "ounce",
    "ounces",
    "s",
    "sec",
    "second",
    "seconds",
    "min",
    "minute",
    "minutes",
    "h",
    "hr",
    "hrs",
    "hour",
    "hours",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "dollar",
    "dollars",
    "cent",
    "cents",
    "unit",
    "units",
    "square",
    "sq",
    "cubic",
    "liter",
    "liters",
    "litre",
    "litres",
    "l",
    "ml",
    "mph",
    "kph",
    "people",
    "students",
    "ways",
    "times",
    "points",
    "percent",
    "percentage",
    "pct",
    "degree",
    "degrees",
    "deg",
    "radians",
    "rad",
    "rupees",
    "euros",
    "yuan",
    "steps",
    "numbers",
    "integers",
    "values",
    "solutions",
    "pairs",
    "triangles",
    "apples",
    "marbles",
    "balls",
    "coins",
    "cards",
    "books",
    "pages",
    "items",
];

/// Cleans up one extracted answer. Linear in the input's length.
pub fn normalize(answer: &str) -> Normalized {
    let s = undouble_backslashes(answer.trim());
    let s = unicode_to_latex(&s);
    let s = strip_delimiters(&s);
    let (math, plain, is_text) = rewrite_commands(&s);
    let math = if is_text { math } else { connector_words(&math) };
    let math = strip_unit_words(&math);
    let math = join_digit_groups(&math);
    let math = mixed_numbers(&math);
    let math = trim_punctuation(&math);
    let plain = plain_key(&plain);
    Normalized { math, plain, is_text }
}

/// The string-comparison key: lower case, letters, digits and `.-/+` kept.
pub fn plain_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '-' | '/' | '+' | ',') {
            out.extend(c.to_lowercase());
        }
    }
    while out.ends_with('.') || out.ends_with(',') {
        out.pop();
    }
    out
}

/// Model output that went through JSON escaping twice writes `\\frac` for
/// `\frac`. When a doubled backslash comes right before a command name, every
/// doubled backslash in the answer is one escaped backslash (a matrix row
/// break `\\\\` becomes `\\`). A genuine row break is followed by white
/// space or a digit, so real LaTeX is left alone.
fn undouble_backslashes(s: &str) -> String {
    let b = s.as_bytes();
    let escaped = b.windows(3).enumerate().any(|(i, w)| {
        w[0] == b'\\' && w[1] == b'\\' && w[2].is_ascii_alphabetic() && (i == 0 || b[i - 1] != b'\\')
    });
    if !escaped {
        return s.to_string();
    }
    s.replace("\\\\", "\\")
}

/// `2**(1/4)`: a power in Python notation, between two operands.
fn python_powers(s: &str) -> String {
    if !s.contains("**") {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let operands = i > 0
            && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b')')
            && b.get(i + 2)
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'(' | b'-'));
        if b[i] == b'*' && b.get(i + 1) == Some(&b'*') && operands {
            out.push('^');
            i += 2;
            continue;
        }
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// The bare words "and" / "or" between parts of an answer become commas
/// (`$1$ and $2$`, `(11,7) or (7,11)`): one answer with several parts, never
/// a choice between them.
fn connector_words(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let word_start = b[i].is_ascii_alphabetic()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'\\'));
        if word_start {
            let len = b[i..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
            let word = &s[i..i + len];
            if matches!(word, "and" | "or") && b.get(i + len).is_none_or(|c| !c.is_ascii_alphanumeric()) {
                let kept = out.trim_end();
                if !(kept.ends_with(',') || kept.ends_with(';') || kept.is_empty()) {
                    out.truncate(kept.len());
                    out.push_str(", ");
                }
                i += len;
                continue;
            }
            out.push_str(word);
            i += len;
            continue;
        }
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn unicode_to_latex(s: &str) -> String {
    let s = &python_powers(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '−' | '–' | '—' => out.push('-'),
            '×' => out.push_str("\\times "),
            '·' | '⋅' => out.push_str("\\cdot "),
            '÷' => out.push_str("\\div "),
            '√' => out.push_str("\\sqrt"),
            'π' => out.push_str("\\pi "),
            '∞' => out.push_str("\\infty "),
            '≤' => out.push_str("\\le "),
            '≥' => out.push_str("\\ge "),
            '≠' => out.push_str("\\ne "),
            '≈' => out.push_str("\\approx "),
            '±' => out.push_str("\\pm "),
            '∪' => out.push_str("\\cup "),
            '∩' => out.push_str("\\cap "),
            '∈' => out.push_str("\\in "),
            '\u{a0}' | '\u{2009}' | '\u{202f}' => out.push(' '),
            '’' => out.push('\''),
            _ => out.push(c),
        }
    }
    out
}

/// Drops outer `$…$`, `\(…\)`, `\[…\]` wrappers and any remaining unescaped `$`.
fn strip_delimiters(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let before = t;
        for (open, close) in [("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$"), ("$", "$")] {
            if t.len() >= open.len() + close.len() && t.starts_with(open) && t.ends_with(close) {
                t = t[open.len()..t.len() - close.len()].trim();
            }
        }
        if t == before {
            break;
        }
    }
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                chars.next();
            }
            '$' => {}
            _ => out.push(c),
        }
    }
    out
}

/// Reads a `{…}` group starting at byte `i` (which must be `{`); returns the
/// content and the index after the closing brace.
fn brace_group(s: &str, i: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[i + 1..j], j + 1));
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

fn skip_spaces(s: &str, mut i: usize) -> usize {
    while s.as_bytes().get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// One pass over the commands: renames synonyms, drops spacing, unwraps
/// style commands and turns `\text{}` into separators, letters or nothing.
/// Returns (math text, plain text, whether the answer is only words).
fn rewrite_commands(s: &str) -> (String, String, bool) {
    let mut math = String::with_capacity(s.len());
    let mut plain = String::with_capacity(s.len());
    let mut saw_text = false;
    // Brace and `\begin` nesting of the text read so far.
    let mut depth = 0i32;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            _ => {}
        }
        if c == b'\\' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_alphabetic() {
                end += 1;
            }
            if end == start {
                // A one-character command: `\,` `\;` `\!` `\:` `\ ` are spacing.
                match b.get(start) {
                    Some(b',' | b'!') if thousands_comma(&math, &s[start + 1..]) => {
                        // `11,\! 111`: the space after a thousands comma is cancelled.
                        math.truncate(math.trim_end().len());
                        i = skip_spaces(s, start + 1);
                    }
                    Some(b',' | b';' | b'!' | b':' | b' ' | b'>') => {
                        math.push(' ');
                        plain.push(' ');
                        i = start + 1;
                    }
                    Some(b'%') => {
                        math.push('%');
                        plain.push('%');
                        i = start + 1;
                    }
                    Some(_) => {
                        let ch_end = start + s[start..].chars().next().map_or(1, char::len_utf8);
                        math.push_str(&s[i..ch_end]);
                        plain.push_str(&s[start..ch_end]);
                        i = ch_end;
                    }
                    None => i = start,
                }
                continue;
            }
            let name = &s[start..end];
            if TEXT_COMMANDS.contains(&name) {
                let g = skip_spaces(s, end);
                if let Some((content, after)) = brace_group(s, g) {
                    let words = content.trim();
                    let lower = words.to_ascii_lowercase();
                    plain.push(' ');
                    plain.push_str(words);
                    plain.push(' ');
                    let unit_letter = words.len() == 1
                        && UNIT_WORDS.contains(&lower.as_str())
                        && math.trim_end().ends_with(|c: char| c.is_ascii_digit());
                    if matches!(lower.as_str(), "and" | "or" | "," | ";" | "and/or") {
                        // One separator, also after a comma (`7, -2, \text{ and } -5`).
                        let kept = math.trim_end();
                        if kept.ends_with([',', ';']) || kept.is_empty() {
                            math.push(' ');
                        } else {
                            math.push_str(", ");
                        }
                    } else if words.len() == 1 && words.as_bytes()[0].is_ascii_alphabetic() && !unit_letter {
                        // `\mathrm{e}`, `\text{i}`, `\mathrm{d}`: a letter in roman type.
                        math.push_str(words);
                    } else if !words.is_empty() {
                        saw_text = true;
                        // A unit's exponent (`\text{cm}^2`) goes with it.
                        let mut k = skip_spaces(s, after);
                        if b.get(k) == Some(&b'^') {
                            k += 1;
                            if let Some((_, a)) = brace_group(s, k) {
                                k = a;
                            } else if b.get(k).is_some_and(u8::is_ascii_digit) {
                                k += 1;
                            }
                            i = k;
                            continue;
                        }
                    }
                    i = after;
                    continue;
                }
                i = end;
                continue;
            }
            if STYLE_COMMANDS.contains(&name) {
                i = end;
                continue;
            }
            if name == "operatorname" {
                let g = skip_spaces(s, end);
                if let Some((content, after)) = brace_group(s, g) {
                    math.push('\\');
                    math.push_str(content.trim());
                    math.push(' ');
                    plain.push_str(content);
                    i = after;
                    continue;
                }
            }
            if matches!(name, "angle" | "measuredangle" | "triangle") {
                // `\angle APC = 74^\circ`: the name of the angle follows.
                math.push(' ');
                i = end;
                continue;
            }
            if name == "pmod" {
                // `n \equiv 5 \pmod{17}`: the modulus is not part of the value.
                let g = skip_spaces(s, end);
                i = brace_group(s, g).map_or(end, |(_, after)| after);
                continue;
            }
            if matches!(name, "hspace" | "vspace" | "label" | "tag") {
                let g = skip_spaces(s, end);
                i = brace_group(s, g).map_or(end, |(_, after)| after);
                continue;
            }
            if matches!(name, "quad" | "qquad") {
                // Wide space between the parts of an answer (`x_1 = 2 \quad
                // x_2 = 3`) separates them; elsewhere it is only space.
                let kept = math.trim_end();
                let separates = depth == 0
                    && kept
                        .chars()
                        .last()
                        .is_some_and(|c| c.is_alphanumeric() || matches!(c, ')' | ']' | '}' | '%' | '°'));
                if separates {
                    math.truncate(kept.len());
                    math.push_str(", ");
                } else {
                    math.push(' ');
                }
                plain.push(' ');
                i = end;
                continue;
            }
            if DROPPED_COMMANDS.contains(&name) {
                // `\left.` and `\right.` are invisible delimiters.
                i = end;
                if matches!(name, "left" | "right" | "middle") && b.get(i) == Some(&b'.') {
                    i += 1;
                }
                math.push(' ');
                continue;
            }
            if let Some((_, to)) = RENAMED_COMMANDS.iter().find(|(from, _)| *from == name) {
                math.push_str(to);
                math.push(' ');
                plain.push_str(to.trim_start_matches('\\'));
                i = end;
                continue;
            }
            match name {
                "begin" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            math.push_str(&s[i..end]);
            // Keep a command separated from a following letter it might merge with.
            if b.get(end).is_some_and(u8::is_ascii_alphabetic) {
                math.push(' ');
            }
            plain.push_str(name);
            i = end;
            continue;
        }
        if c == b'~' {
            math.push(' ');
            plain.push(' ');
            i += 1;
            continue;
        }
        if c == b'{' && s[i..].starts_with("{,}") {
            depth -= 1;
            math.push(',');
            plain.push(',');
            i += 3;
            continue;
        }
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        math.push_str(&s[i..i + ch_len]);
        plain.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    let math = degree_marks(&math);
    let is_text = saw_text && !math.chars().any(|c| c.is_alphanumeric() || c == '\\');
    (math, plain, is_text)
}

/// True when `math` ends with a digit and a comma and `rest` (after the
/// spacing command) starts with exactly three digits: a thousands group.
fn thousands_comma(math: &str, rest: &str) -> bool {
    let kept = math.trim_end();
    let digit_comma = kept
        .strip_suffix(',')
        .is_some_and(|m| m.ends_with(|c: char| c.is_ascii_digit()));
    let rest = rest.trim_start_matches(' ');
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digit_comma && digits == 3
}

/// `^°`, `^{°}` and `^{ ° }` (after `\circ` became `°`) become a plain `°`.
fn degree_marks(s: &str) -> String {
    if !s.contains('°') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('^') {
        out.push_str(&rest[..p]);
        let after = rest[p + 1..].trim_start();
        let (braced, inner) = match after.strip_prefix('{') {
            Some(x) => (true, x.trim_start()),
            None => (false, after),
        };
        match inner.strip_prefix('°') {
            Some(tail) => {
                let tail = tail.trim_start();
                match (braced, tail.strip_prefix('}')) {
                    (false, _) => {
                        out.push('°');
                        rest = tail;
                    }
                    (true, Some(t)) => {
                        out.push('°');
                        rest = t;
                    }
                    (true, None) => {
                        out.push('^');
                        rest = &rest[p + 1..];
                    }
                }
            }
            None => {
                out.push('^');
                rest = &rest[p + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Drops unit words at the end of the answer when a number or bracket precedes them.
fn strip_unit_words(s: &str) -> String {
    let mut t = s.trim_end();
    // A long unit glued to its number (`10weeks`); short ones (`10cm`, `10m`)
    // stay letters, since `m` may be a variable.
    let letters = t.bytes().rev().take_while(u8::is_ascii_alphabetic).count();
    let glued = &t[t.len() - letters..];
    if letters >= 4
        && t[..t.len() - letters].ends_with(|c: char| c.is_ascii_digit())
        && UNIT_WORDS.contains(&glued.to_ascii_lowercase().as_str())
    {
        t = &t[..t.len() - letters];
    }
    loop {
        let cut = t
            .char_indices()
            .rev()
            .find(|&(_, c)| !c.is_ascii_alphabetic() && c != '^' && !c.is_ascii_digit())
            .map_or(0, |(p, c)| p + c.len_utf8());
        let word = &t[cut..];
        let bare = word.split('^').next().unwrap_or("");
        if cut == 0 || bare.is_empty() || !t[..cut].ends_with(' ') {
            break;
        }
        let lower = bare.to_ascii_lowercase();
        if !UNIT_WORDS.contains(&lower.as_str()) || bare.len() == 1 && bare != "m" && bare != "g" {
            break;
        }
        let before = t[..cut].trim_end();
        if !before.ends_with(|c: char| c.is_ascii_digit() || matches!(c, '}' | ')' | '°' | '%'))
            && !UNIT_WORDS
                .iter()
                .any(|w| before.to_ascii_lowercase().ends_with(&format!(" {w}")))
        {
            break;
        }
        let degrees = matches!(lower.as_str(), "degree" | "degrees" | "deg");
        let percent = matches!(lower.as_str(), "percent" | "percentage" | "pct");
        t = before;
        if degrees || percent {
            let mut out = t.to_string();
            out.push(if degrees { '°' } else { '%' });
            return out;
        }
    }
    t.to_string()
}

/// Joins digit groups separated by spaces: `1 000 000` → `1000000`. Only
/// groups of exactly three digits after a group of one to three digits.
fn join_digit_groups(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' '
            && i > 0
            && b[i - 1].is_ascii_digit()
            && i + 3 < b.len() + 1
            && b.get(i + 1..i + 4)
                .is_some_and(|g| g.iter().all(u8::is_ascii_digit))
            && !b.get(i + 4).is_some_and(|c| c.is_ascii_digit() || *c == b'/')
        {
            // Length of the digit run before the space, and what precedes it.
            let mut j = i;
            while j > 0 && b[j - 1].is_ascii_digit() {
                j -= 1;
            }
            let run = i - j;
            let grouped_before = j > 0 && b[j - 1] == b' ' && j >= 2 && b[j - 2].is_ascii_digit();
            let starts_number = j == 0 || !(b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'.');
            if (1..=3).contains(&run) && (starts_number || grouped_before) {
                i += 1;
                continue;
            }
        }
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Plain-text mixed numbers `3 1/2` become `3\frac{1}{2}`, which the parser
/// reads as 3 + 1/2.
fn mixed_numbers(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if b.get(j) == Some(&b' ') {
                let n0 = j + 1;
                let mut n1 = n0;
                while n1 < b.len() && b[n1].is_ascii_digit() {
                    n1 += 1;
                }
                if n1 > n0 && b.get(n1) == Some(&b'/') {
                    let d0 = n1 + 1;
                    let mut d1 = d0;
                    while d1 < b.len() && b[d1].is_ascii_digit() {
                        d1 += 1;
                    }
                    let followed = b
                        .get(d1)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'^');
                    if d1 > d0 && !followed {
                        out.push_str(&s[last..j]);
                        out.push_str("\\frac{");
                        out.push_str(&s[n0..n1]);
                        out.push_str("}{");
                        out.push_str(&s[d0..d1]);
                        out.push('}');
                        last = d1;
                        i = d1;
                        continue;
                    }
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out.push_str(&s[last..]);
    out
}

fn trim_punctuation(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let before = t;
        t = t.trim_end_matches(['.', ';', ':']).trim_end();
        t = t.strip_suffix("\\\\").unwrap_or(t).trim_end();
        if t.ends_with(',') && !t.ends_with("{,") {
            t = t[..t.len() - 1].trim_end();
        }
        if t == before {
            break;
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> String {
        normalize(s).math.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn delimiters_and_spacing() {
        assert_eq!(m("$\\displaystyle \\dfrac{1}{2}$"), "\\frac {1}{2}");
        assert_eq!(m("\\(\\left( 1, 2 \\right)\\)"), "( 1, 2 )");
        assert_eq!(m("\\$12.50"), "12.50");
        assert_eq!(m("1\\,000"), "1 000".replace(' ', ""));
        assert_eq!(m("1{,}000"), "1,000");
        assert_eq!(m("x \\leq 3"), "x \\le 3");
    }

    #[test]
    fn text_units_and_words() {
        assert_eq!(m("5\\text{ cm}"), "5");
        assert_eq!(m("5 \\text{cm}^2"), "5");
        assert_eq!(m("1 \\text{ and } 2"), "1 , 2");
        assert_eq!(m("12 dollars"), "12");
        assert_eq!(m("4 square units"), "4");
        assert_eq!(m("30 degrees"), "30°");
        assert_eq!(m("\\mathrm{e}^2"), "e^2");
        let t = normalize("\\text{Tuesday}");
        assert!(t.is_text);
        assert_eq!(t.plain, "tuesday");
        assert!(!normalize("5\\text{ cm}").is_text);
    }

    #[test]
    fn degrees_and_percent() {
        assert_eq!(m("30^\\circ"), "30°");
        assert_eq!(m("30^{\\circ}"), "30°");
        assert_eq!(m("30°"), "30°");
        assert_eq!(m("50\\%"), "50%");
    }

    #[test]
    fn real_output_notations() {
        assert_eq!(m("11,\\! 111,\\! 111,\\! 100"), "11,111,111,100");
        assert_eq!(m("1,\\! 2"), "1, 2");
        assert_eq!(m("\\\\frac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(
            m("\\\\begin{pmatrix} 1 \\\\\\\\ 2 \\\\end{pmatrix}"),
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
        );
        assert_eq!(
            m("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
        );
        assert_eq!(m("$1$ and $2$ and $3$"), "1, 2, 3");
        assert_eq!(m("7, -2, \\text{ and } -5"), "7, -2, -5");
        assert_eq!(m("(11,7) or (7,11)"), "(11,7), (7,11)");
        assert_eq!(m("x_1 = 2 \\quad x_2 = 3"), "x_1 = 2, x_2 = 3");
        assert_eq!(m("5 \\quad \\text{cm}"), "5");
        assert_eq!(
            m("\\begin{pmatrix} 1 & \\quad 2 \\end{pmatrix}"),
            "\\begin{pmatrix} 1 & 2 \\end{pmatrix}"
        );
        assert_eq!(m("2**(1/4)"), "2^(1/4)");
        assert_eq!(m("**5**"), "**5**");
        assert_eq!(m("10weeks"), "10");
        assert_eq!(m("10cm"), "10cm");
        assert_eq!(m("50 pct"), "50%");
        assert_eq!(m("n \\equiv 5 \\pmod{17}"), "n = 5");
        assert_eq!(m("\\angle APC = 74^\\circ"), "APC = 74°");
        assert_eq!(m("144\\mbox{m}^3"), "144");
        assert_eq!(m("\\mathrm{e}^2"), "e^2");
        assert_eq!(m("x \\approx 2"), "x \\approx 2");
    }

    #[test]
    fn digit_groups_and_mixed_numbers() {
        assert_eq!(m("1 000 000"), "1000000");
        assert_eq!(m("2 3"), "2 3");
        assert_eq!(m("3 1/2"), "3\\frac{1}{2}");
        assert_eq!(m("x = 12 345."), "x = 12345");
    }
}
