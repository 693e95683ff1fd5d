//! `reward-server convert`: benchmark and dataset files → grade items
//! (JSONL), so that `reward-server convert lcb ... | reward-server grade -`
//! grades them in one pipe.
//!
//! A format module reads the problems ([`lcb`], [`apps`] for APPS / TACO /
//! DeepCoder, [`humaneval`] for HumanEval and EvalPlus, [`verl`], [`math`])
//! into [`Problem`]s: an id, how to grade (a gold answer, or tests with the
//! benchmark's comparison mode and time limit) and, for HumanEval, the
//! prompt. [`samples`] reads the responses, keyed by problem id. This
//! module joins the two into items, in problem order, and accounts for
//! everything it could not use: every skipped problem or sample is counted
//! by reason on stderr, with the first few errors naming the file, line and
//! field. Nothing is dropped silently.

pub mod apps;
pub mod cases;
pub mod humaneval;
pub mod lcb;
pub mod math;
pub mod pickle;
pub mod rows;
pub mod samples;
pub mod verl;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::{CodeTests, CompareMode, ExtractMode, Id, Item, RewardMode};
use crate::cli::{io_err, CliError};
use rows::{read_rows, Place, Row};
use samples::SampleText;

/// The formats `convert` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// LiveCodeBench `code_generation_lite` rows (question_id, public_test_cases, private_test_cases, metadata); samples: lcb_runner output files (code_list) or {question_id, response}.
    Lcb,
    /// APPS rows (problem_id, input_output), or DeepCoder rows (tests); graded with APPS's rules.
    Apps,
    /// TACO rows (input_output; no id field: the row number is the id), or DeepCoder rows.
    Taco,
    /// HumanEval problems (task_id, prompt, test, entry_point); samples {task_id, completion | solution | response}.
    Humaneval,
    /// HumanEval+ / MBPP+ problems (base_input, plus_input, canonical_solution, atol); expected outputs computed by running the canonical solution here.
    Evalplus,
    /// verl rows (data_source, reward_model.ground_truth, extra_info.index), dispatched by data_source as verl's default_compute_score does.
    Verl,
    /// Math rows with problem/answer or question/gold (AceReason-Math, DeepScaleR, MATH-500, AIME, GSM8K).
    Math,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Lcb => "lcb",
            Format::Apps => "apps",
            Format::Taco => "taco",
            Format::Humaneval => "humaneval",
            Format::Evalplus => "evalplus",
            Format::Verl => "verl",
            Format::Math => "math",
        }
    }
}

/// Which LiveCodeBench tests to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LcbTests {
    /// Public and private, as lcb_runner grades.
    All,
    /// The public tests only.
    Public,
    /// The private tests only.
    Private,
}

/// Which EvalPlus inputs to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalplusSet {
    /// The original HumanEval/MBPP inputs (EvalPlus's `base` score).
    Base,
    /// Base and plus inputs together (the `plus` score, HumanEval+).
    Plus,
}

/// Options of `reward-server convert`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ConvertArgs {
    /// The input format.
    #[arg(value_enum)]
    pub format: Format,
    /// The problems: JSONL, or one JSON array (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub problems: PathBuf,
    /// The model's samples, keyed by problem id: JSONL or a JSON array. Without it, responses are read from the problem rows (`response`, `responses`, `code_list`, `output_list`).
    #[arg(long, value_name = "FILE")]
    pub samples: Option<PathBuf>,
    /// Write the items here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Comparison mode of code items [default: the format's: lcb for lcb, apps for apps, evalplus for evalplus, default otherwise].
    #[arg(long, value_enum, value_name = "MODE")]
    pub compare: Option<CompareArg>,
    /// Reward of each item: binary, or the fraction of test cases passed [default: fraction for verl code rows, as verl's continuous scoring; binary otherwise].
    #[arg(long, value_enum, value_name = "KIND")]
    pub reward: Option<RewardArg>,
    /// CPU limit per case in seconds of native CPython [default: the benchmark's: lcb 6, apps/taco 4, humaneval 3, evalplus max(4, 4 × the reference's time), verl 5].
    #[arg(long, value_name = "SECONDS", conflicts_with = "time_limit")]
    pub time_limit_native: Option<f64>,
    /// CPU limit per case in fuel seconds (the grader's own unit) instead.
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,
    /// Memory limit of code items in MiB [default: the grader's, 1024].
    #[arg(long, value_name = "MIB")]
    pub memory_limit: Option<u64>,
    /// The problems' id field [default: the format's; the row number when none is present].
    #[arg(long, value_name = "NAME")]
    pub id_field: Option<String>,
    /// math: the gold answer's field [default: answer, gold, Answer, final_answer, expected_answer, ground_truth, target].
    #[arg(long, value_name = "NAME")]
    pub answer_field: Option<String>,
    /// math and verl: how the answer is found in a response [default: lenient; boxed for verl's MATH and geometry3k sources].
    #[arg(long, value_enum, value_name = "MODE")]
    pub extract: Option<ExtractArg>,
    /// lcb: which tests.
    #[arg(long, value_enum, default_value = "all")]
    pub lcb_tests: LcbTests,
    /// evalplus: base inputs only, or base and plus.
    #[arg(long, value_enum, default_value = "plus")]
    pub evalplus_set: EvalplusSet,
    /// evalplus: CPU limit per input of the canonical solution's run, in native seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub reference_timeout: f64,
    /// Exit with status 1 when any problem or sample was skipped.
    #[arg(long)]
    pub strict: bool,
}

const EXAMPLES: &str = "\
Examples (each prints items; pipe them into `reward-server grade -`):

  reward-server convert lcb --problems test6.jsonl --samples Qwen_codegeneration_output.json | reward-server grade - --k 1
  reward-server convert apps --problems apps_test.jsonl --samples samples.jsonl
  reward-server convert taco --problems taco_test.jsonl --samples samples.jsonl
  reward-server convert humaneval --problems HumanEval.jsonl --samples samples.jsonl
  reward-server convert evalplus --problems HumanEvalPlus.jsonl --samples samples.jsonl
  reward-server convert verl --problems train.jsonl --samples rollouts.jsonl
  reward-server convert math --problems aime24.jsonl --samples responses.jsonl --extract boxed

Samples are JSONL (or a JSON array) of records keyed by the problem's id
(`question_id`, `task_id`, `problem_id`, `id`, `index`, ...) holding `response`,
`responses` [...], `code_list` [...] (already extracted programs), `completion`
(appended to the HumanEval prompt) or `solution` (a whole program).
A skipped problem or sample is counted by reason on stderr.";

/// `--compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareArg {
    /// Our rule.
    Default,
    /// LiveCodeBench's.
    Lcb,
    /// APPS's leniencies.
    Apps,
    /// EvalPlus's.
    Evalplus,
}

impl From<CompareArg> for CompareMode {
    fn from(c: CompareArg) -> CompareMode {
        match c {
            CompareArg::Default => CompareMode::Default,
            CompareArg::Lcb => CompareMode::Lcb,
            CompareArg::Apps => CompareMode::Apps,
            CompareArg::Evalplus => CompareMode::Evalplus,
        }
    }
}

/// `--reward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RewardArg {
    /// 1.0 or 0.0.
    Binary,
    /// passed / total.
    Fraction,
}

/// `--extract`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExtractArg {
    /// The last \boxed{}, else an "answer is" phrase, else ...
    Lenient,
    /// Only \boxed{}.
    Boxed,
}

/// How a problem is graded.
#[derive(Debug, Clone, PartialEq)]
pub enum Grading {
    /// A math answer.
    Math {
        /// The gold answer.
        answer: String,
        /// How the answer is found in a response.
        extract: ExtractMode,
    },
    /// Tests.
    Code {
        /// The tests.
        tests: CodeTests,
        /// The benchmark's comparison mode.
        compare: CompareMode,
        /// The benchmark's limit per case, native seconds.
        time_limit_native_s: f64,
        /// EvalPlus's `atol`, when not 0.
        atol: Option<f64>,
        /// The benchmark's reward.
        reward: RewardMode,
    },
}

/// One problem, ready to be joined with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Its id (the items' `problem_id`).
    pub id: Id,
    /// Where it was read.
    pub place: Place,
    /// Its row's index among the problem rows.
    pub row: usize,
    /// How it is graded.
    pub grading: Grading,
    /// HumanEval: the prompt a `completion` continues.
    pub prompt: Option<String>,
}

/// Counts of what was skipped, by reason, with the first messages.
#[derive(Debug, Default)]
pub struct Skips {
    counts: BTreeMap<String, usize>,
    messages: Vec<String>,
}

/// Messages printed in full; the rest are only counted.
const SHOWN_MESSAGES: usize = 20;

impl Skips {
    /// Counts one skip under `reason`, keeping `message` (which names the
    /// place and field) if it is among the first few.
    pub fn add(&mut self, reason: impl Into<String>, message: String) {
        *self.counts.entry(reason.into()).or_default() += 1;
        if self.messages.len() < SHOWN_MESSAGES {
            self.messages.push(message);
        }
    }

    /// Nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Total skips.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// `(reason, count)` pairs.
    pub fn counts(&self) -> &BTreeMap<String, usize> {
        &self.counts
    }

    /// The problems `read` makes of `rows`; a row it cannot read is skipped
    /// and counted as an unreadable problem, under its message.
    pub fn readable_problems(
        &mut self,
        rows: &[Row],
        read: impl Fn(&Row) -> Result<Problem, String>,
    ) -> Vec<Problem> {
        rows.iter()
            .filter_map(|row| match read(row) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.add("unreadable problems", e);
                    None
                }
            })
            .collect()
    }
}

/// What a conversion produced.
#[derive(Debug)]
pub struct Converted {
    /// The items, in problem order, samples in their file's order.
    pub items: Vec<Item>,
    /// Problems read.
    pub problems: usize,
    /// What was skipped.
    pub skips: Skips,
}

/// The id of a row: `field` when given (and present), else the first of
/// `defaults`, else its index; ids are strings or integers.
pub fn row_id(row: &Row, field: Option<&str>, defaults: &[&str]) -> Result<Id, String> {
    let found = match field {
        Some(f) => Some((
            f,
            row.fields
                .get(f)
                .ok_or_else(|| format!("{}: missing field `{f}`", row.place))?,
        )),
        None => row.first(defaults),
    };
    match found {
        None => Ok(Id::from(row.index)),
        Some((_, Value::String(s))) => Ok(Id::Str(s.clone())),
        Some((name, Value::Number(n))) => n
            .as_i64()
            .map(Id::Int)
            .ok_or_else(|| format!("{}: field `{name}` is not an integer id", row.place)),
        Some((name, other)) => Err(format!(
            "{}: field `{name}` is {}, expected a string or an integer",
            row.place,
            rows::kind(other)
        )),
    }
}

/// The key samples are matched on: the id as text.
pub fn key(id: &Id) -> String {
    id.to_string()
}

/// Converts problem and sample rows into items.
pub fn convert(args: &ConvertArgs, problems: &[Row], samples: Option<&[Row]>) -> Result<Converted, CliError> {
    let mut skips = Skips::default();
    let built = match args.format {
        Format::Lcb => lcb::problems(problems, args, &mut skips),
        Format::Apps | Format::Taco => apps::problems(problems, args, &mut skips),
        Format::Humaneval => humaneval::humaneval_problems(problems, args, &mut skips),
        Format::Evalplus => humaneval::evalplus_problems(problems, args, &mut skips)?,
        Format::Verl => verl::problems(problems, args, &mut skips),
        Format::Math => math::problems(problems, args, &mut skips),
    };
    let text_kind = samples::TextKind::of(args.format);
    // Samples by problem key, in file order.
    let mut by_key: HashMap<String, Vec<SampleText>> = HashMap::new();
    // A repeated id would make samples ambiguous: the first row keeps it.
    let mut known = HashSet::new();
    let mut built = built;
    built.retain(|p| {
        known.insert(key(&p.id)) || {
            skips.add(
                "problems with a repeated id",
                format!(
                    "{}: the id {:?} was used by an earlier problem",
                    p.place,
                    p.id.to_string()
                ),
            );
            false
        }
    });
    match samples {
        Some(rows) => {
            let key_fields = samples::key_fields(args.format, args.id_field.as_deref());
            for row in rows {
                match samples::read_sample(row, &key_fields, text_kind) {
                    Ok((k, texts)) if known.contains(&k) => by_key.entry(k).or_default().extend(texts),
                    Ok((k, _)) => skips.add(
                        "samples for an unknown problem",
                        format!("{}: no problem has the id {k:?}", row.place),
                    ),
                    Err(e) => skips.add("unreadable samples", e),
                }
            }
        }
        None => {
            for problem in &built {
                let texts = samples::inline_texts(&problems[problem.row], text_kind);
                by_key.entry(key(&problem.id)).or_default().extend(texts);
            }
        }
    }
    let mut items = Vec::new();
    for problem in &built {
        let texts = by_key.remove(&key(&problem.id)).unwrap_or_default();
        if texts.is_empty() {
            skips.add(
                "problems without samples",
                format!(
                    "{}: no sample for problem {:?}",
                    problem.place,
                    problem.id.to_string()
                ),
            );
        }
        for (k, text) in texts.into_iter().enumerate() {
            items.push(item(problem, text, k, args));
        }
    }
    Ok(Converted {
        items,
        problems: problems.len(),
        skips,
    })
}

/// The item for the `k`-th sample of `problem`.
fn item(problem: &Problem, text: SampleText, k: usize, args: &ConvertArgs) -> Item {
    let (response, raw) = match text {
        SampleText::Response(r) => (r, false),
        SampleText::Program(p) => (p, true),
        SampleText::Completion(c) => (format!("{}{c}", problem.prompt.as_deref().unwrap_or("")), true),
    };
    let base = match &problem.grading {
        Grading::Math { answer, extract } => {
            let mut item = Item::math(response, answer.clone());
            item.extract = Some(args.extract.map_or(*extract, |e| match e {
                ExtractArg::Lenient => ExtractMode::Lenient,
                ExtractArg::Boxed => ExtractMode::Boxed,
            }));
            if args.reward == Some(RewardArg::Fraction) {
                item.reward = Some(RewardMode::Fraction);
            }
            item
        }
        Grading::Code {
            tests,
            compare,
            time_limit_native_s,
            atol,
            reward,
        } => {
            let tests = serde_json::to_value(tests).expect("tests serialize");
            let mut item = Item::code(response, tests).raw_code(raw);
            let compare = args.compare.map_or(*compare, CompareMode::from);
            item.compare = Some(compare);
            item.atol = atol.filter(|_| compare == CompareMode::Evalplus);
            match (args.time_limit, args.time_limit_native) {
                (Some(t), _) => item.time_limit_s = Some(t),
                (None, Some(n)) => item.time_limit_native_s = Some(n),
                (None, None) => item.time_limit_native_s = Some(*time_limit_native_s),
            }
            item.memory_limit_mb = args.memory_limit;
            let reward = match args.reward {
                Some(RewardArg::Binary) => RewardMode::Binary,
                Some(RewardArg::Fraction) => RewardMode::Fraction,
                None => *reward,
            };
            if reward == RewardMode::Fraction {
                item.reward = Some(reward);
            }
            item
        }
    };
    base.id(format!("{}/{k}", problem.id))
        .problem_id(problem.id.clone())
}

/// Runs `reward-server convert`: writes the items, and a summary with the
/// skip counts on stderr.
pub fn run_convert(args: &ConvertArgs) -> Result<Converted, CliError> {
    if let Some(out) = &args.output {
        for input in std::iter::once(&args.problems).chain(args.samples.as_ref()) {
            if input.as_os_str() != "-" && same_file(out, input) {
                return Err(CliError::Usage(format!(
                    "--output {} is an input file; refusing to overwrite it",
                    out.display()
                )));
            }
        }
    }
    if args.problems.as_os_str() == "-" && args.samples.as_ref().is_some_and(|s| s.as_os_str() == "-") {
        return Err(CliError::Usage(
            "--problems and --samples cannot both be standard input".into(),
        ));
    }
    let problems = read_rows(&args.problems, "problems")?;
    let samples = args
        .samples
        .as_ref()
        .map(|p| read_rows(p, "samples"))
        .transpose()?;
    let converted = convert(args, &problems, samples.as_deref())?;
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        for item in &converted.items {
            serde_json::to_writer(&mut *w, item)?;
            w.write_all(b"\n")?;
        }
        w.flush()
    };
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(io_err("cannot write", path))?;
            write(&mut BufWriter::new(file)).map_err(io_err("cannot write", path))?;
        }
        None => {
            let stdout = std::io::stdout();
            write(&mut BufWriter::new(stdout.lock()))
                .map_err(io_err("cannot write", "standard output".as_ref()))?;
        }
    }
    report(args, &converted);
    Ok(converted)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The summary on stderr: counts, then each skip reason with its count,
/// then the first messages.
fn report(args: &ConvertArgs, c: &Converted) {
    eprintln!(
        "convert {}: {} problems → {} items{}",
        args.format.name(),
        c.problems,
        c.items.len(),
        if c.skips.is_empty() {
            String::new()
        } else {
            format!("; skipped {}", c.skips.total())
        }
    );
    for (reason, n) in c.skips.counts() {
        eprintln!("  skipped {n} × {reason}");
    }
    for m in &c.skips.messages {
        eprintln!("  {m}");
    }
    if c.skips.messages.len() < c.skips.total() {
        eprintln!(
            "  ... ({} more not shown)",
            c.skips.total() - c.skips.messages.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rows::parse_rows;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConvertArgs,
    }

    fn args(extra: &[&str]) -> ConvertArgs {
        let mut argv = vec!["convert", "math", "--problems", "p.jsonl"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn inline_responses_repeated_ids_and_problems_without_samples() {
        let problems = parse_rows(
            concat!(
                "{\"id\": \"a\", \"answer\": \"1\", \"responses\": [\"\\\\boxed{1}\", \"\\\\boxed{2}\"]}\n",
                "{\"id\": \"a\", \"answer\": \"9\", \"response\": \"\\\\boxed{9}\"}\n",
                "{\"id\": \"b\", \"answer\": \"3\"}\n",
                "{\"id\": 7, \"gold\": 5, \"response\": \"5\"}\n",
            ),
            "problems",
        )
        .unwrap();
        let out = convert(
            &args(&["--extract", "boxed", "--reward", "fraction"]),
            &problems,
            None,
        )
        .unwrap();
        let ids: Vec<String> = out
            .items
            .iter()
            .map(|i| i.id.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["a/0", "a/1", "7/0"]);
        assert_eq!(out.items[2].problem_id, Some(Id::Int(7)));
        assert_eq!(out.items[2].answer.as_deref(), Some("5"));
        assert_eq!(out.items[0].extract, Some(ExtractMode::Boxed));
        assert_eq!(out.items[0].reward, Some(RewardMode::Fraction));
        let counts: Vec<(&str, usize)> = out.skips.counts().iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert_eq!(
            counts,
            [
                ("problems with a repeated id", 1),
                ("problems without samples", 1)
            ]
        );
        assert!(out.skips.messages[0].starts_with("problems line 2: the id \"a\""));
    }
}
