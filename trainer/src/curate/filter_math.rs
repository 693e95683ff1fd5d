//! `trainer data filter-math`: drops math problems RL cannot use well:
//! several questions in one, multiple choice (guessable), proofs (no final
//! answer to verify), and answers the verifier cannot handle.
//!
//! The text rules look at the prompt; every rule that matches is reported
//! with the text that set it off. Only a prompt that no text rule drops is
//! sent to the verifier: its gold answer, boxed, is graded as the response
//! to itself (`extract: boxed`, as in RL), and anything but `correct` drops
//! the line (`unverifiable`).
//!
//! | rule | drops a prompt that |
//! |---|---|
//! | `multi_part` | labels parts `(a)` … `(b)`, `(i)` … `(ii)`, `(1)` … `(2)` (the digits only at the start of a line or sentence, not "equation (1)"), `a)` … `b)` at line starts, or "part (a)" … "part (b)"; or asks two or more questions (`?` outside math) |
//! | `multiple_choice` | has options `(A)` … `(B)`, `A)` … `B)`, `A.` `B.` `C.` in a row, or says "which of the following", "answer choices", "choose/select the correct/best …", "multiple choice" |
//! | `proof` | says "prove", "proof", "show that", "demonstrate that", "verify that" |
//! | `no_answer` | has no answer (the answer field missing, null or blank) |
//! | `unverifiable` | has an answer the verifier does not grade `correct` against itself |

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use regex::Regex;
use reward_client::{ExtractMode, Item, Verdict};
use serde::Serialize;
use serde_json::Value;

use super::grader::{Grader, GraderArgs};
use super::jsonl::{
    ensure_distinct, id_string, kind, parse_fields, required_string, At, AtomicOutput, LineReader, CHUNK,
};
use super::report::{percent, Summary};
use crate::progress::bytes as progress;

/// Arguments of `trainer data filter-math`.
#[derive(Debug, Clone, Args)]
pub struct FilterMathArgs {
    /// Math problems (JSONL).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where the kept lines go (JSONL, lines unchanged).
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,
    /// Report: one JSON line per dropped problem with its rules and what
    /// set them off.
    #[arg(long, value_name = "R")]
    pub report: Option<PathBuf>,
    /// The text field of the problems.
    #[arg(long, value_name = "NAME", default_value = "prompt")]
    pub field: String,
    /// The gold answer's field (a string or a number).
    #[arg(long, value_name = "NAME", default_value = "answer")]
    pub answer_field: String,
    /// Rules not to apply (repeatable).
    #[arg(long, value_name = "RULE", value_enum)]
    pub skip: Vec<Rule>,
    /// Do not ask the verifier (same as --skip unverifiable; no server needed).
    #[arg(long)]
    pub no_verify: bool,
    /// The reward server.
    #[command(flatten)]
    pub grader: GraderArgs,
}

/// Why a problem is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Rule {
    /// Several questions or labelled parts.
    MultiPart,
    /// Answer options to choose from.
    MultipleChoice,
    /// A proof is asked for.
    Proof,
    /// No gold answer.
    NoAnswer,
    /// The verifier does not accept the gold answer as its own response.
    Unverifiable,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 5] = [
        Rule::MultiPart,
        Rule::MultipleChoice,
        Rule::Proof,
        Rule::NoAnswer,
        Rule::Unverifiable,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::MultiPart => "multi_part",
            Rule::MultipleChoice => "multiple_choice",
            Rule::Proof => "proof",
            Rule::NoAnswer => "no_answer",
            Rule::Unverifiable => "unverifiable",
        }
    }
}

struct Patterns {
    paren_label: Regex,
    digit_label: Regex,
    line_label: Regex,
    part_label: Regex,
    choice_paren: Regex,
    choice_bracket: Regex,
    choice_dots: Regex,
    choice_words: Regex,
    proof: Regex,
    math: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("a valid pattern");
        Patterns {
            // "(a)", "(ii)" after a boundary (not "f(a)" or "$(a)$").
            paren_label: re(r"(?m)(?:^|[\s:;,.?!])([(（]([a-e]|i{1,3}|iv|v)[)）])"),
            // "(1)" only at the start of a line or after a sentence's end.
            digit_label: re(r"(?m)(?:^|[.;:?!。；：？]\s*)([(（]([1-5])[)）])"),
            // "a) ..." or "b. ..." at the start of a line.
            line_label: re(r"(?m)^\s*(([a-e])[).])\s"),
            part_label: re(r"(?i)\b(parts?\s*[(（]?([a-e]|i{1,3}|iv|[1-5]))\b"),
            choice_paren: re(r"([(（]([A-E])[)）])"),
            choice_bracket: re(r"(?m)(?:^|\s)(([A-E])\))\s"),
            choice_dots: re(r"(?s)(?:^|\s)A[.:．]\s*\S.*?\sB[.:．]\s*\S.*?\sC[.:．]\s*\S"),
            choice_words: re(
                r"(?i)\bwhich of the following\b|\banswer choices\b|\b(?:choose|select) the (?:correct|right|best)\b|\bmultiple[- ]choice\b",
            ),
            proof: re(r"(?i)\b(?:prove|proving|proof)\b|\b(?:show|demonstrate|verify) that\b"),
            math: re(r"(?s)\$\$.*?\$\$|\$.*?\$|\\\(.*?\\\)|\\\[.*?\\\]"),
        }
    })
}

/// Whether `labels` hold a first and a second part label (`a`/`b`,
/// `i`/`ii`, `1`/`2`), the evidence text if so.
fn two_parts(labels: &[(String, String)]) -> Option<String> {
    for (first, second) in [("a", "b"), ("i", "ii"), ("1", "2")] {
        let f = labels.iter().find(|(l, _)| l.eq_ignore_ascii_case(first));
        let s = labels.iter().find(|(l, _)| l.eq_ignore_ascii_case(second));
        if let (Some((_, f)), Some((_, s))) = (f, s) {
            return Some(format!("{} … {}", f.trim(), s.trim()));
        }
    }
    None
}

/// (label, the label as written) of every match of `re` (group 2 is the
/// label, group 1 the label with its brackets).
fn labels(re: &Regex, text: &str) -> Vec<(String, String)> {
    re.captures_iter(text)
        .map(|c| (c[2].to_string(), c[1].to_string()))
        .collect()
}

/// The text rules `prompt` breaks, each with the text that set it off.
pub fn text_rules(prompt: &str) -> Vec<(Rule, String)> {
    let p = patterns();
    let mut out = Vec::new();

    let mut multi = None;
    for re in [&p.paren_label, &p.digit_label, &p.line_label, &p.part_label] {
        multi = multi.or_else(|| two_parts(&labels(re, prompt)));
    }
    if multi.is_none() {
        let prose = p.math.replace_all(prompt, " ");
        let questions = prose.matches(['?', '？']).count();
        if questions >= 2 {
            multi = Some(format!("{questions} question marks"));
        }
    }
    if let Some(e) = multi {
        out.push((Rule::MultiPart, e));
    }

    let mut choice = None;
    for re in [&p.choice_paren, &p.choice_bracket] {
        let found = labels(re, prompt);
        let a = found.iter().find(|(l, _)| l == "A");
        let b = found.iter().find(|(l, _)| l == "B");
        if let (Some((_, a)), Some((_, b))) = (a, b) {
            choice = choice.or(Some(format!("{} … {}", a.trim(), b.trim())));
        }
    }
    choice = choice
        .or_else(|| p.choice_dots.find(prompt).map(|_| "A. … B. … C.".to_string()))
        .or_else(|| p.choice_words.find(prompt).map(|m| m.as_str().to_string()));
    if let Some(e) = choice {
        out.push((Rule::MultipleChoice, e));
    }

    if let Some(m) = p.proof.find(prompt) {
        out.push((Rule::Proof, m.as_str().to_string()));
    }
    out
}

/// The gold answer as the response to grade against it: boxed once (an
/// answer already holding `\boxed` goes as it is; `$…$`, `\(…\)`, `\[…\]`
/// around it are taken off first).
pub fn self_response(answer: &str) -> String {
    let a = answer.trim();
    if a.contains("\\boxed") {
        return a.to_string();
    }
    let inner = [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")]
        .iter()
        .find_map(|(l, r)| {
            a.strip_prefix(l)
                .and_then(|x| x.strip_suffix(r))
                .filter(|x| !x.is_empty())
        })
        .unwrap_or(a);
    format!("\\boxed{{{}}}", inner.trim())
}

/// What the text rules found in one line.
struct Checked {
    id: Option<String>,
    /// The gold answer (`None`: none given).
    answer: Option<String>,
    hits: Vec<(Rule, String)>,
}

/// One line of the report.
#[derive(Serialize)]
struct Dropped<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    rules: Vec<Rule>,
    evidence: serde_json::Map<String, Value>,
}

fn answer_text(v: Option<Value>, name: &str, at: At<'_>) -> Result<Option<String>> {
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(n @ Value::Number(_)) => Some(n.to_string()),
        Some(other) => bail!("{at}: \"{name}\" is {}, not a string or a number", kind(&other)),
    })
}

/// Runs the command; returns its summary table.
pub fn run(args: &FilterMathArgs, quiet: bool) -> Result<Summary> {
    let mut outputs: Vec<&Path> = vec![&args.output];
    outputs.extend(args.report.as_deref());
    ensure_distinct(&[&args.input], &outputs)?;
    let started = Instant::now();
    let skipped = |r: Rule| args.skip.contains(&r) || (r == Rule::Unverifiable && args.no_verify);
    let active = |r: Rule| !skipped(r);
    let mut reader = LineReader::open(&args.input)?;
    let grader = if active(Rule::Unverifiable) {
        Some(Grader::connect(&args.grader)?)
    } else {
        None
    };
    let bar = progress("filter-math", reader.size(), quiet);
    let mut out = AtomicOutput::create(&args.output)?;
    let mut report = args.report.as_deref().map(AtomicOutput::create).transpose()?;
    let mut read = 0u64;
    let mut counts = [0u64; Rule::ALL.len()];
    let mut verified = 0u64;
    let fields = [args.field.as_str(), args.answer_field.as_str(), "id"];
    loop {
        let chunk = reader.chunk(CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        let checked: Vec<Result<Checked>> = chunk
            .par_iter()
            .map(|line| {
                let at = At {
                    path: &args.input,
                    line: line.number,
                };
                let mut v = parse_fields(line, &fields, at)?;
                let prompt = required_string(v[0].take(), &args.field, at)?;
                let answer = answer_text(v[1].take(), &args.answer_field, at)?;
                let mut hits: Vec<(Rule, String)> = text_rules(&prompt)
                    .into_iter()
                    .filter(|(r, _)| active(*r))
                    .collect();
                if answer.is_none() && active(Rule::NoAnswer) {
                    hits.push((Rule::NoAnswer, format!("no \"{}\"", args.answer_field)));
                }
                Ok(Checked {
                    id: id_string(v[2].as_ref()),
                    answer,
                    hits,
                })
            })
            .collect();
        let mut checked = checked.into_iter().collect::<Result<Vec<_>>>()?;

        // The verifier, for the lines the text rules keep.
        if let Some(g) = &grader {
            let ask: Vec<usize> = (0..checked.len())
                .filter(|&i| checked[i].hits.is_empty() && checked[i].answer.is_some())
                .collect();
            let items: Vec<Item> = ask
                .iter()
                .map(|&i| {
                    let a = checked[i].answer.as_deref().expect("asked only with an answer");
                    Item::math(self_response(a), a).extract(ExtractMode::Boxed)
                })
                .collect();
            let results = g.grade(&items)?;
            verified += items.len() as u64;
            for (&i, r) in ask.iter().zip(results) {
                if r.verdict != Verdict::Correct {
                    let why = match &r.error {
                        Some(e) => format!("{}: {e}", r.verdict),
                        None => r.verdict.to_string(),
                    };
                    checked[i].hits.push((Rule::Unverifiable, why));
                }
            }
        }

        for (line, c) in chunk.iter().zip(&checked) {
            read += 1;
            if c.hits.is_empty() {
                out.write_raw(line)?;
                continue;
            }
            for (r, _) in &c.hits {
                counts[*r as usize] += 1;
            }
            if let Some(rep) = report.as_mut() {
                rep.write_json(&Dropped {
                    line: line.number,
                    id: c.id.as_deref(),
                    rules: c.hits.iter().map(|(r, _)| *r).collect(),
                    evidence: c
                        .hits
                        .iter()
                        .map(|(r, e)| (r.name().to_string(), Value::String(e.clone())))
                        .collect(),
                })?;
            }
        }
        bar.set_position(reader.consumed());
        bar.set_message(format!("{read} lines, {} dropped", read - out.lines()));
    }
    bar.finish_and_clear();
    let kept = out.lines();
    out.commit()?;
    if let Some(r) = report {
        r.commit()?;
    }

    let mut s = Summary::new(format!("trainer data filter-math: {}", args.input.display()));
    s.row("lines read", read);
    s.row("kept", percent(kept, read));
    s.row("dropped", percent(read - kept, read));
    s.row("lines matching each rule", "");
    for r in Rule::ALL {
        let value = if active(r) {
            counts[r as usize].to_string()
        } else {
            "skipped".to_string()
        };
        s.sub(r.name(), value);
    }
    if let Some(g) = &grader {
        s.row("answers verified", format!("{verified} at {}", g.endpoints()));
    }
    s.time(started.elapsed());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &str) -> Vec<Rule> {
        text_rules(p).into_iter().map(|(r, _)| r).collect()
    }

    #[test]
    fn multi_part_questions() {
        assert_eq!(
            rules("Let $f(x)=x^2$. (a) Find $f(2)$. (b) Find $f(3)$."),
            [Rule::MultiPart]
        );
        assert_eq!(
            rules("Given the sequence.\n(1) Find a_1;\n(2) find a_2."),
            [Rule::MultiPart]
        );
        assert_eq!(rules("Given ...（1）求 a；（2）求 b"), [Rule::MultiPart]);
        assert_eq!(rules("(i) Compute x. (ii) Compute y."), [Rule::MultiPart]);
        assert_eq!(rules("a) Find x.\nb) Find y."), [Rule::MultiPart]);
        assert_eq!(
            rules("In part (a) we found x; in part (b) find y."),
            [Rule::MultiPart]
        );
        assert_eq!(rules("What is $x$? What is $y$?"), [Rule::MultiPart]);
        // Not parts: function values, intervals, equation references, one question.
        assert!(rules("Find $f(a) + f(b)$ where $a = 1$ and $b = 2$.").is_empty());
        assert!(rules("Solve the system (1) and (2) for $x$.").is_empty());
        assert!(rules("Is $x$ in $(a, b)$? Give $x$.").is_empty());
        // A question mark inside math is not a question.
        assert!(rules("Find $a ? b$ where ? is the larger of $a$ and $b$, for $a=1, b=2$.").is_empty());
        assert!(rules("How many integers $n$ satisfy $|n| < 5$?").is_empty());
    }

    #[test]
    fn multiple_choice_questions() {
        let amc = "What is $1+1$? $\\textbf{(A)}\\ 1 \\qquad \\textbf{(B)}\\ 2 \\qquad \\textbf{(C)}\\ 3$";
        assert_eq!(rules(amc), [Rule::MultipleChoice]);
        assert_eq!(rules("Pick one.\nA) 3\nB) 4"), [Rule::MultipleChoice]);
        assert_eq!(rules("The value is A. 1 B. 2 C. 3 D. 4"), [Rule::MultipleChoice]);
        assert_eq!(
            rules("Which of the following numbers is prime: 4, 6, 7?"),
            [Rule::MultipleChoice]
        );
        // Capital letters that are points, and one "A." initial.
        assert!(rules("Points $A$ and $B$ lie on a circle; find $AB$.").is_empty());
        assert!(rules("Triangle (ABC) has sides 3, 4, 5. Find its area.").is_empty());
        assert!(rules("By A. Smith: find the sum.").is_empty());
    }

    #[test]
    fn proofs() {
        assert_eq!(rules("Prove that $\\sqrt2$ is irrational."), [Rule::Proof]);
        assert_eq!(rules("Show that $n^2 \\ge n$."), [Rule::Proof]);
        assert!(rules("A waterproof box holds 3 balls; how many boxes hold 12?").is_empty());
        assert!(rules("Show the work and find $x$ if $2x = 4$.").is_empty());
    }

    #[test]
    fn the_gold_answer_is_boxed_once() {
        assert_eq!(self_response("\\frac{1}{2}"), "\\boxed{\\frac{1}{2}}");
        assert_eq!(self_response(" $3\\sqrt2$ "), "\\boxed{3\\sqrt2}");
        assert_eq!(self_response("\\(x+1\\)"), "\\boxed{x+1}");
        assert_eq!(self_response("\\boxed{7}"), "\\boxed{7}");
        assert_eq!(self_response("$"), "\\boxed{$}");
        let at = At {
            path: Path::new("m.jsonl"),
            line: 2,
        };
        assert_eq!(
            answer_text(Some(Value::from(12)), "answer", at)
                .unwrap()
                .as_deref(),
            Some("12")
        );
        assert_eq!(answer_text(Some(Value::from("  ")), "answer", at).unwrap(), None);
        assert_eq!(answer_text(None, "answer", at).unwrap(), None);
        let err = answer_text(Some(serde_json::json!([1])), "answer", at).unwrap_err();
        assert!(
            err.to_string().starts_with("m.jsonl:2: \"answer\" is an array"),
            "{err}"
        );
    }
}
