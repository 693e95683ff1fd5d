//! `trainer data validate-code`: checks code problems against their own
//! tests in the reward server's sandbox.
//!
//! A problem line carries `tests` (the reward server's test JSON: `stdio`,
//! `function` or `assert`), `solutions` (reference programs, a string or an
//! array of strings) and optionally `wrong_solutions` (programs known to be
//! wrong); `time_limit_s` and `memory_limit_mb`, when present, are passed
//! on. A program is Python source; one that holds a ``` fence is sent as it
//! is (the grader takes its last ```python block).
//!
//! - Every reference must pass every test case (graded with `all_cases`,
//!   so the report shows how many passed); a problem without one fails.
//! - Every known-wrong program must fail, else the tests are too weak.
//! - Trivial programs must fail too, else the problem is flagged: for
//!   `stdio`, an empty program, one that echoes its input and one that
//!   prints the first case's expected output whatever the input; for
//!   `function`, functions returning `None`, `0`, `""`, `[]`, their first
//!   argument, or the first case's expected value; for `assert`, every
//!   function the assertions call defined to return `None`, `0`, `""`,
//!   `[]`, `True`, `False` or its first argument.
//!
//! Problems that fail are dropped; flagged ones are kept (and reported)
//! unless `--drop-flagged`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use regex::Regex;
use reward_client::{GradeResult, Item, Verdict};
use serde::Serialize;
use serde_json::Value;

use super::grader::{Grader, GraderArgs};
use super::jsonl::{ensure_distinct, id_string, kind, parse_fields, At, AtomicOutput, LineReader};
use super::report::{percent, Summary};
use crate::progress::bytes as progress;

/// Problems graded per round of requests.
const PROBLEMS_PER_ROUND: usize = 64;

/// Arguments of `trainer data validate-code`.
#[derive(Debug, Clone, Args)]
pub struct ValidateCodeArgs {
    /// Code problems (JSONL).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where the valid problems go (JSONL, lines unchanged).
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,
    /// Report: one JSON line per problem with every program's verdict.
    #[arg(long, value_name = "R")]
    pub report: Option<PathBuf>,
    /// The tests' field.
    #[arg(long, value_name = "NAME", default_value = "tests")]
    pub tests_field: String,
    /// The reference solutions' field (a string or an array of strings).
    #[arg(long, value_name = "NAME", default_value = "solutions")]
    pub solutions_field: String,
    /// The known-wrong solutions' field (optional in each line).
    #[arg(long, value_name = "NAME", default_value = "wrong_solutions")]
    pub wrong_field: String,
    /// CPU seconds per test case for problems without `time_limit_s`
    /// [default: the server's].
    #[arg(long, value_name = "SECONDS")]
    pub time_limit_s: Option<f64>,
    /// Drop problems whose tests accept a trivial program (they are kept
    /// and reported otherwise).
    #[arg(long)]
    pub drop_flagged: bool,
    /// The reward server.
    #[command(flatten)]
    pub grader: GraderArgs,
}

/// Python source as a response the grader reads: fenced unless it is already.
fn fenced(program: &str) -> String {
    if program.contains("```") {
        program.to_string()
    } else {
        format!("```python\n{}\n```", program.trim_end())
    }
}

/// A Python literal of `s` (a JSON string literal is one).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Names that are not the solution's functions.
const NOT_SOLUTION: &[&str] = &[
    "assert",
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "for",
    "while",
    "return",
    "lambda",
    "print",
    "abs",
    "all",
    "any",
    "bool",
    "dict",
    "enumerate",
    "filter",
    "float",
    "frozenset",
    "int",
    "isinstance",
    "len",
    "list",
    "map",
    "max",
    "min",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "sorted",
    "str",
    "sum",
    "tuple",
    "type",
    "zip",
    "hasattr",
    "getattr",
    "callable",
    "iter",
    "next",
    "chr",
    "ord",
    "divmod",
    "pow",
    "hash",
    "id",
    "hex",
    "bin",
    "oct",
    "complex",
    "bytes",
    "format",
    "open",
    "super",
    "object",
    "Exception",
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "math",
    "sys",
];

/// The functions assert-style tests call (not methods, not builtins).
fn called_functions(code: &str) -> Vec<String> {
    static CALL: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = CALL.get_or_init(|| Regex::new(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(").expect("a valid pattern"));
    let mut names: Vec<String> = Vec::new();
    for c in re.captures_iter(code) {
        let m = c.get(1).expect("group 1");
        let before = code[..m.start()].chars().next_back();
        if before.is_some_and(|b| b == '.' || b.is_alphanumeric() || b == '_') {
            continue;
        }
        let name = m.as_str();
        if !NOT_SOLUTION.contains(&name) && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// The trivial programs for `tests`: (name, program).
pub fn trivial_programs(tests: &Value) -> Vec<(&'static str, String)> {
    let first_output = tests["cases"]
        .get(0)
        .and_then(|c| c["output"].as_str())
        .map(str::to_string);
    let constants: [(&'static str, &str); 4] = [
        ("returns_none", "None"),
        ("returns_zero", "0"),
        ("returns_empty_string", "\"\""),
        ("returns_empty_list", "[]"),
    ];
    match tests["type"].as_str() {
        Some("stdio") => {
            let mut out = vec![
                ("empty_program", "pass".to_string()),
                (
                    "echo_input",
                    "import sys\nsys.stdout.write(sys.stdin.read())".to_string(),
                ),
            ];
            if let Some(o) = first_output {
                out.push((
                    "prints_first_expected_output",
                    format!("import sys\nsys.stdout.write({})", py_str(&o)),
                ));
            }
            out
        }
        Some("function") => {
            let Some(name) = tests["fn_name"].as_str() else {
                return Vec::new();
            };
            let def = |body: &str| format!("def {name}(*args, **kwargs):\n    {body}\n");
            let mut out: Vec<(&'static str, String)> = constants
                .iter()
                .map(|(n, c)| (*n, def(&format!("return {c}"))))
                .collect();
            out.push(("returns_first_argument", def("return args[0] if args else None")));
            if let Some(o) = first_output {
                out.push((
                    "returns_first_expected_value",
                    format!(
                        "import json\n{}",
                        def(&format!("return json.loads({})", py_str(&o)))
                    ),
                ));
            }
            out
        }
        Some("assert") => {
            let names = called_functions(tests["code"].as_str().unwrap_or(""));
            if names.is_empty() {
                return Vec::new();
            }
            let define = |body: &str| -> String {
                names
                    .iter()
                    .map(|n| format!("def {n}(*args, **kwargs):\n    {body}\n"))
                    .collect()
            };
            let mut out: Vec<(&'static str, String)> = constants
                .iter()
                .chain(&[("returns_true", "True"), ("returns_false", "False")])
                .map(|(n, c)| (*n, define(&format!("return {c}"))))
                .collect();
            out.push((
                "returns_first_argument",
                define("return args[0] if args else None"),
            ));
            out
        }
        _ => Vec::new(),
    }
}

/// The programs of a solutions field: a string or an array of strings.
fn programs(v: Option<Value>, name: &str, at: At<'_>) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::String(s) => Ok(s),
                other => bail!(
                    "{at}: \"{name}\"[{i}] is {}, not a program (a string)",
                    kind(&other)
                ),
            })
            .collect(),
        Some(other) => bail!(
            "{at}: \"{name}\" is {}, not a string or an array of strings",
            kind(&other)
        ),
    }
}

/// One problem, read.
struct Problem {
    number: u64,
    id: Option<String>,
    tests: Value,
    references: Vec<String>,
    wrong: Vec<String>,
    trivial: Vec<(&'static str, String)>,
    time_limit_s: Option<f64>,
    memory_limit_mb: Option<u64>,
}

impl Problem {
    fn item(&self, program: &str, all_cases: bool) -> Item {
        let mut item = Item::code(fenced(program), self.tests.clone()).all_cases(all_cases);
        if let Some(t) = self.time_limit_s {
            item = item.time_limit_s(t);
        }
        if let Some(m) = self.memory_limit_mb {
            item = item.memory_limit_mb(m);
        }
        item
    }

    /// Its items: references (all cases), known-wrong, trivial programs.
    fn items(&self) -> Vec<Item> {
        let mut items: Vec<Item> = self.references.iter().map(|p| self.item(p, true)).collect();
        items.extend(self.wrong.iter().map(|p| self.item(p, false)));
        items.extend(self.trivial.iter().map(|(_, p)| self.item(p, false)));
        items
    }
}

/// A program's result in the report.
#[derive(Serialize)]
struct Run {
    verdict: String,
    passed: u32,
    total: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<&GradeResult> for Run {
    fn from(r: &GradeResult) -> Run {
        Run {
            verdict: r.verdict.to_string(),
            passed: r.passed,
            total: r.total,
            error: r.error.clone(),
        }
    }
}

/// One line of the report.
#[derive(Serialize)]
struct Verdicts<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    /// `valid`, `flagged` or `invalid`.
    status: &'static str,
    reasons: Vec<String>,
    references: Vec<Run>,
    wrong_solutions: Vec<Run>,
    trivial_accepted: Vec<&'static str>,
}

/// Counts for the summary.
#[derive(Default)]
struct Tally {
    read: u64,
    kept: u64,
    invalid: u64,
    no_reference: u64,
    reference_fails: u64,
    wrong_passes: u64,
    flagged: u64,
    /// Problems (valid or not) whose tests accept a trivial program.
    accepting_trivial: u64,
    trivial: Vec<(&'static str, u64)>,
    programs: u64,
}

/// Grades one round of problems and writes what it decides.
fn judge(
    problems: &[(super::jsonl::RawLine, Problem)],
    grader: &Grader,
    args: &ValidateCodeArgs,
    out: &mut AtomicOutput,
    report: &mut Option<AtomicOutput>,
    tally: &mut Tally,
) -> Result<()> {
    let items: Vec<Item> = problems.iter().flat_map(|(_, p)| p.items()).collect();
    tally.programs += items.len() as u64;
    let results = grader.grade(&items)?;
    let mut results = results.iter();
    for (line, p) in problems {
        tally.read += 1;
        let refs: Vec<&GradeResult> = results.by_ref().take(p.references.len()).collect();
        let wrong: Vec<&GradeResult> = results.by_ref().take(p.wrong.len()).collect();
        let trivial: Vec<&GradeResult> = results.by_ref().take(p.trivial.len()).collect();
        let mut reasons = Vec::new();
        if refs.is_empty() {
            reasons.push(format!("no reference solution (\"{}\")", args.solutions_field));
            tally.no_reference += 1;
        }
        let failing: Vec<usize> = (0..refs.len())
            .filter(|&i| refs[i].verdict != Verdict::Correct)
            .collect();
        for &i in &failing {
            let r = refs[i];
            reasons.push(format!(
                "reference {} fails: {} ({}/{} cases){}",
                i + 1,
                r.verdict,
                r.passed,
                r.total,
                r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        if !failing.is_empty() {
            tally.reference_fails += 1;
        }
        let passing_wrong: Vec<usize> = (0..wrong.len())
            .filter(|&i| wrong[i].verdict == Verdict::Correct)
            .collect();
        for &i in &passing_wrong {
            reasons.push(format!("known-wrong solution {} passes every test", i + 1));
        }
        if !passing_wrong.is_empty() {
            tally.wrong_passes += 1;
        }
        let accepted: Vec<&'static str> = p
            .trivial
            .iter()
            .zip(&trivial)
            .filter(|(_, r)| r.verdict == Verdict::Correct)
            .map(|((name, _), _)| *name)
            .collect();
        if !accepted.is_empty() {
            tally.accepting_trivial += 1;
        }
        for name in &accepted {
            reasons.push(format!("the tests accept a trivial program ({name})"));
            match tally.trivial.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += 1,
                None => tally.trivial.push((name, 1)),
            }
        }
        let invalid = refs.is_empty() || !failing.is_empty() || !passing_wrong.is_empty();
        let status = if invalid {
            tally.invalid += 1;
            "invalid"
        } else if !accepted.is_empty() {
            tally.flagged += 1;
            "flagged"
        } else {
            "valid"
        };
        if status == "valid" || (status == "flagged" && !args.drop_flagged) {
            out.write_raw(line)?;
            tally.kept += 1;
        }
        if let Some(rep) = report.as_mut() {
            rep.write_json(&Verdicts {
                line: p.number,
                id: p.id.as_deref(),
                status,
                reasons,
                references: refs.iter().map(|r| Run::from(*r)).collect(),
                wrong_solutions: wrong.iter().map(|r| Run::from(*r)).collect(),
                trivial_accepted: accepted,
            })?;
        }
    }
    Ok(())
}

fn read_problem(line: &super::jsonl::RawLine, args: &ValidateCodeArgs) -> Result<Problem> {
    let at = At {
        path: &args.input,
        line: line.number,
    };
    let names = [
        args.tests_field.as_str(),
        args.solutions_field.as_str(),
        args.wrong_field.as_str(),
        "id",
        "time_limit_s",
        "memory_limit_mb",
    ];
    let mut v = parse_fields(line, &names, at)?;
    let tests = match v[0].take() {
        Some(t @ Value::Object(_)) => t,
        None => bail!("{at}: no \"{}\" field", args.tests_field),
        Some(other) => bail!(
            "{at}: \"{}\" is {}, not an object",
            args.tests_field,
            kind(&other)
        ),
    };
    let references = programs(v[1].take(), &args.solutions_field, at)?;
    let wrong = programs(v[2].take(), &args.wrong_field, at)?;
    let time_limit_s = match &v[4] {
        Some(t) => Some(
            t.as_f64()
                .ok_or_else(|| anyhow::anyhow!("{at}: \"time_limit_s\" is not a number"))?,
        ),
        None => args.time_limit_s,
    };
    let memory_limit_mb = match &v[5] {
        Some(m) => Some(
            m.as_u64()
                .ok_or_else(|| anyhow::anyhow!("{at}: \"memory_limit_mb\" is not a whole number"))?,
        ),
        None => None,
    };
    Ok(Problem {
        number: line.number,
        id: id_string(v[3].as_ref()),
        trivial: trivial_programs(&tests),
        tests,
        references,
        wrong,
        time_limit_s,
        memory_limit_mb,
    })
}

/// Runs the command; returns its summary table.
pub fn run(args: &ValidateCodeArgs, quiet: bool) -> Result<Summary> {
    let mut outputs: Vec<&Path> = vec![&args.output];
    outputs.extend(args.report.as_deref());
    ensure_distinct(&[&args.input], &outputs)?;
    let started = Instant::now();
    let mut reader = LineReader::open(&args.input)?;
    let grader = Grader::connect(&args.grader)?;
    let bar = progress("validate-code", reader.size(), quiet);
    let mut out = AtomicOutput::create(&args.output)?;
    let mut report = args.report.as_deref().map(AtomicOutput::create).transpose()?;
    let mut tally = Tally::default();
    loop {
        let chunk = reader.chunk(PROBLEMS_PER_ROUND)?;
        if chunk.is_empty() {
            break;
        }
        let problems = chunk
            .into_iter()
            .map(|line| read_problem(&line, args).map(|p| (line, p)))
            .collect::<Result<Vec<_>>>()?;
        judge(&problems, &grader, args, &mut out, &mut report, &mut tally)?;
        bar.set_position(reader.consumed());
        bar.set_message(format!("{} problems, {} kept", tally.read, tally.kept));
    }
    bar.finish_and_clear();
    out.commit()?;
    if let Some(r) = report {
        r.commit()?;
    }

    let t = &tally;
    let mut s = Summary::new(format!("trainer data validate-code: {}", args.input.display()));
    s.row("problems read", t.read);
    s.row("kept", percent(t.kept, t.read));
    s.row("invalid (dropped)", t.invalid);
    s.sub("no reference solution", t.no_reference);
    s.sub("a reference fails", t.reference_fails);
    s.sub("a known-wrong solution passes", t.wrong_passes);
    s.row(
        if args.drop_flagged {
            "flagged (dropped)"
        } else {
            "flagged (kept)"
        },
        t.flagged,
    );
    s.row("tests accepting a trivial program", t.accepting_trivial);
    for (name, n) in &t.trivial {
        s.sub(*name, n);
    }
    s.row(
        "programs run",
        format!("{} at {}", t.programs, grader.endpoints()),
    );
    s.time(started.elapsed());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trivial_programs_per_test_type() {
        let stdio = json!({"type": "stdio", "cases": [{"input": "1 2\n", "output": "3\n\"q\"\n"}]});
        let t = trivial_programs(&stdio);
        let names: Vec<&str> = t.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["empty_program", "echo_input", "prints_first_expected_output"]
        );
        assert_eq!(t[2].1, "import sys\nsys.stdout.write(\"3\\n\\\"q\\\"\\n\")");

        let function = json!({"type": "function", "fn_name": "two_sum", "cases": [{"input": "[1]\n1", "output": "[0, 1]"}]});
        let t = trivial_programs(&function);
        assert_eq!(t.len(), 6);
        assert!(t.iter().all(|(_, p)| p.contains("def two_sum(*args, **kwargs):")));
        assert!(t[5].1.contains("json.loads(\"[0, 1]\")"));
        assert!(trivial_programs(&json!({"type": "function", "cases": []})).is_empty());

        let asserts = json!({"type": "assert", "code": "assert is_pal('a') is True\nassert len(xs.pop()) == 1 and helper(2)"});
        let t = trivial_programs(&asserts);
        assert_eq!(t.len(), 7);
        assert!(
            t[4].1.contains("def is_pal(")
                && t[4].1.contains("def helper(")
                && t[4].1.contains("return True")
        );
        assert!(!t[0].1.contains("def len(") && !t[0].1.contains("def pop("));
        assert!(trivial_programs(&json!({"type": "other"})).is_empty());
    }

    #[test]
    fn programs_are_fenced_once() {
        assert_eq!(fenced("print(1)\n\n"), "```python\nprint(1)\n```");
        assert_eq!(fenced("text\n```python\nx\n```"), "text\n```python\nx\n```");
        let at = At {
            path: Path::new("c.jsonl"),
            line: 4,
        };
        assert_eq!(programs(Some(json!("x")), "solutions", at).unwrap(), ["x"]);
        assert_eq!(
            programs(Some(json!(["a", "b"])), "solutions", at).unwrap(),
            ["a", "b"]
        );
        assert!(programs(None, "solutions", at).unwrap().is_empty());
        let err = programs(Some(json!(["a", 3])), "solutions", at)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "c.jsonl:4: \"solutions\"[1] is a number, not a program (a string)"
        );
    }
}
