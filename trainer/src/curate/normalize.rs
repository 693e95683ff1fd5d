//! Text normalisation shared by decontamination and deduplication: the
//! words a prompt is compared by.
//!
//! - Letters are lower-cased (Unicode-aware); letters and digits of any
//!   script make up words.
//! - Everything else (punctuation, `$`, braces, `^`, `~`, white space)
//!   separates words.
//! - LaTeX commands: spacing (`\,` `\;` `\:` `\!` `\ ` `\quad` `\qquad`, ...),
//!   sizing (`\left` `\right` `\big` ...) and formatting (`\text`
//!   `\mathrm` `\textbf` `\displaystyle` ...) are dropped, so `$10\,\text{cm}$`
//!   and `10 cm` give the same words; `\dfrac`, `\tfrac` and `\cfrac` read as
//!   `frac`; any other command is a word of its own (`\sqrt{2}` gives
//!   `sqrt 2`).
//!
//! So `Find $x$ if $\dfrac{x}{2}=3$.` becomes `find x if frac x 2 3`.

use std::ops::Range;

/// LaTeX commands that carry no words.
const DROPPED_COMMANDS: &[&str] = &[
    "quad",
    "qquad",
    "thinspace",
    "medspace",
    "thickspace",
    "enspace",
    "negthinspace",
    "negmedspace",
    "negthickspace",
    "hspace",
    "vspace",
    "hfill",
    "left",
    "right",
    "middle",
    "big",
    "bigl",
    "bigr",
    "bigm",
    "Big",
    "Bigl",
    "Bigr",
    "Bigm",
    "bigg",
    "biggl",
    "biggr",
    "Bigg",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "text",
    "textrm",
    "textbf",
    "textit",
    "texttt",
    "textnormal",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "mathnormal",
    "operatorname",
    "boldsymbol",
    "bm",
    "mbox",
];

/// A prompt's words, kept in one buffer: the words joined by single spaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words {
    text: String,
    spans: Vec<Range<u32>>,
}

impl Words {
    /// How many words.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// No words at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`-th word.
    pub fn word(&self, i: usize) -> &str {
        let r = &self.spans[i];
        &self.text[r.start as usize..r.end as usize]
    }

    /// Words `range`, joined by single spaces.
    pub fn joined(&self, range: Range<usize>) -> &str {
        if range.is_empty() {
            return "";
        }
        let start = self.spans[range.start].start as usize;
        let end = self.spans[range.end - 1].end as usize;
        &self.text[start..end]
    }

    /// All the words joined by single spaces: the normalised text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Iterates over the words.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.word(i))
    }

    /// The words' hashes under `seed` ([`super::hash::hash_bytes`]).
    pub fn hashes(&self, seed: u64) -> Vec<u64> {
        self.iter()
            .map(|w| super::hash::hash_bytes(w.as_bytes(), seed))
            .collect()
    }

    fn push_char(&mut self, c: char, in_word: &mut bool) {
        if !*in_word {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let at = self.text.len() as u32;
            self.spans.push(at..at);
            *in_word = true;
        }
        self.text.push(c);
        self.spans.last_mut().expect("a word was started").end = self.text.len() as u32;
    }

    fn push_word(&mut self, word: &str, in_word: &mut bool) {
        *in_word = false;
        for c in word.chars() {
            for l in c.to_lowercase() {
                self.push_char(l, in_word);
            }
        }
        *in_word = false;
    }
}

/// The words of `text` (see the module doc for the rules).
pub fn normalize(text: &str) -> Words {
    let mut w = Words {
        text: String::with_capacity(text.len()),
        spans: Vec::with_capacity(text.len() / 5 + 1),
    };
    let mut in_word = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c == '\\' {
            in_word = false;
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            if name_len == 0 {
                // A control symbol (`\,`, `\{`, `\\`, `\ `): a separator,
                // together with the symbol.
                if let Some(s) = rest.chars().next() {
                    rest = &rest[s.len_utf8()..];
                }
                continue;
            }
            let name = &rest[..name_len];
            rest = &rest[name_len..];
            match name {
                "dfrac" | "tfrac" | "cfrac" => w.push_word("frac", &mut in_word),
                _ if DROPPED_COMMANDS.contains(&name) => {}
                _ => w.push_word(name, &mut in_word),
            }
        } else if c.is_alphanumeric() {
            if c.is_ascii() {
                w.push_char(c.to_ascii_lowercase(), &mut in_word);
            } else {
                for l in c.to_lowercase() {
                    w.push_char(l, &mut in_word);
                }
            }
        } else {
            in_word = false;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        normalize(s).iter().map(str::to_string).collect()
    }

    #[test]
    fn lower_cases_and_splits_on_punctuation() {
        assert_eq!(
            words("Find $x$ if $\\dfrac{x}{2}=3$."),
            ["find", "x", "if", "frac", "x", "2", "3"]
        );
        assert_eq!(words("  Hello,   WORLD!!  "), ["hello", "world"]);
        assert_eq!(words("3.14, x^2+y_1"), ["3", "14", "x", "2", "y", "1"]);
        assert_eq!(words("Ünïcode Straße ΔΕΛΤΑ"), ["ünïcode", "straße", "δελτα"]);
        assert!(normalize("?!  $$ {}").is_empty());
    }

    #[test]
    fn latex_spacing_and_formatting_vanish() {
        let a = normalize("A rod of $10\\,\\text{cm}$ and~$\\left(2\\quad 3\\right)$\\;\\!\\ ok");
        let b = normalize("a rod of 10 cm and (2 3) ok");
        assert_eq!(a, b);
        assert_eq!(a.text(), "a rod of 10 cm and 2 3 ok");
        assert_eq!(words("\\sqrt{2}\\cdot\\pi"), ["sqrt", "2", "cdot", "pi"]);
        // A command ends at its last letter: `\pi2` is `pi` then `2`.
        assert_eq!(words("\\pi2 \\Delta"), ["pi", "2", "delta"]);
        // A trailing backslash is harmless.
        assert_eq!(words("x \\"), ["x"]);
    }

    #[test]
    fn spans_and_joins() {
        let w = normalize("One, two; THREE four");
        assert_eq!(w.len(), 4);
        assert_eq!(w.word(2), "three");
        assert_eq!(w.joined(1..3), "two three");
        assert_eq!(w.joined(2..2), "");
        assert_eq!(w.hashes(1).len(), 4);
        assert_eq!(w.hashes(1)[0], normalize("ONE").hashes(1)[0]);
    }
}
