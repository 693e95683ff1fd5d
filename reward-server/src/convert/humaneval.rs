//! HumanEval and EvalPlus problems.
//!
//! HumanEval (`openai/human-eval` `human_eval/execution.py`): the program
//! is the prompt plus the completion (or a whole `solution`), then the
//! problem's `test` and `check(entry_point)`; 3 seconds for the whole run.
//! Here: an `assert` item whose test code is `test` + `check(entry_point)`,
//! with 3 native seconds.
//!
//! EvalPlus (`evalplus/evaluate.py`, `evalplus/eval/__init__.py`): the
//! canonical solution runs on each input of `base_input` (and
//! `plus_input`) to give the expected outputs (`get_groundtruth`); a sample
//! passes an input when its return value matches under `compare:
//! "evalplus"` with the problem's `atol`, within `max(4 s, 4 × the
//! reference's time)` (`DEFAULT_MIN_TIME_LIMIT`, `DEFAULT_GT_TIME_LIMIT_FACTOR`
//! in `evalplus/config.py`). The reference runs here, in our sandbox,
//! under `--reference-timeout`; its time is its fuel converted to native
//! seconds. EvalPlus limits each input separately; an item has one limit,
//! so the item gets the largest. Problems EvalPlus judges with a special
//! oracle instead of comparing values (HumanEval/32 `find_zero`, eleven
//! MBPP+ tasks) are skipped and counted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rayon::prelude::*;
use serde_json::Value;

use super::rows::{kind, Row};
use super::{row_id, ConvertArgs, EvalplusSet, Grading, Problem, Skips};
use crate::api::{CodeTests, CompareMode, IoCase, RewardMode};
use crate::cli::CliError;
use crate::code::time_limit::{fuel_to_native_seconds, native_to_fuel_seconds, MAX_NATIVE_TIME_LIMIT_S};
use crate::sandbox::{CaseEnd, CaseInput, Limits, Mode, Program, Sandbox};

/// HumanEval's limit for a whole program, native seconds.
pub const HUMANEVAL_TIME_LIMIT_NATIVE_S: f64 = 3.0;
/// EvalPlus's floor of a per-input limit, native seconds.
pub const EVALPLUS_MIN_TIME_LIMIT_S: f64 = 4.0;
/// EvalPlus's factor on the reference solution's time.
pub const EVALPLUS_TIME_FACTOR: f64 = 4.0;

/// Entry points EvalPlus checks with a special oracle
/// (`evalplus/eval/_special_oracle.py` and `unsafe_execute`).
const SPECIAL_ORACLES: &[&str] = &[
    "find_zero",
    "are_equivalent",
    "sum_div",
    "surface_Area",
    "digit_distance_nums",
    "similar_elements",
    "find_char_long",
    "common_in_nested_lists",
    "extract_singly",
    "larg_nnum",
    "intersection_array",
    "find_dissimilar",
    "Diff",
    "check_str",
    "text_match_three",
    "text_starta_endb",
];

/// HumanEval problems.
pub fn humaneval_problems(rows: &[Row], args: &ConvertArgs, skips: &mut Skips) -> Vec<Problem> {
    skips.readable_problems(rows, |row| {
        let id = row_id(row, args.id_field.as_deref().or(Some("task_id")), &[])?;
        let (prompt, test, entry) = (
            row.string("prompt")?,
            row.string("test")?,
            row.string("entry_point")?,
        );
        Ok(Problem {
            id,
            place: row.place.clone(),
            row: row.index,
            grading: Grading::Code {
                tests: CodeTests::Assert {
                    code: format!("{test}\n\ncheck({entry})\n"),
                    host_compare: true,
                },
                compare: CompareMode::Default,
                time_limit_native_s: HUMANEVAL_TIME_LIMIT_NATIVE_S,
                atol: None,
                reward: RewardMode::Binary,
            },
            prompt: Some(prompt.to_string()),
        })
    })
}

/// An EvalPlus problem before its reference run.
struct Pending {
    problem: Problem,
    program: String,
    entry: String,
    inputs: Vec<String>,
}

fn inputs(row: &Row, name: &str) -> Result<Vec<String>, String> {
    let list = match row.json(name)? {
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "{}: field `{name}` is {}, expected a list of inputs",
                row.place,
                kind(&other)
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(k, args)| match args {
            Value::Array(args) => Ok(args.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")),
            other => Err(format!(
                "{}: field `{name}`[{k}] is {}, expected a list of arguments",
                row.place,
                kind(other)
            )),
        })
        .collect()
}

fn pending(row: &Row, args: &ConvertArgs) -> Result<Pending, String> {
    let id = row_id(row, args.id_field.as_deref().or(Some("task_id")), &[])?;
    let entry = row.string("entry_point")?.to_string();
    if SPECIAL_ORACLES.contains(&entry.as_str()) {
        return Err(format!(
            "{}: EvalPlus judges `{entry}` with a special oracle, not by comparing values; not supported",
            row.place
        ));
    }
    let program = format!("{}{}", row.string("prompt")?, row.string("canonical_solution")?);
    let mut all = inputs(row, "base_input")?;
    if args.evalplus_set == EvalplusSet::Plus {
        all.extend(inputs(row, "plus_input")?);
    }
    let atol = match row.fields.get("atol") {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(other) => {
            return Err(format!(
                "{}: field `atol` is {}, expected a number",
                row.place,
                kind(other)
            ))
        }
    };
    Ok(Pending {
        problem: Problem {
            id,
            place: row.place.clone(),
            row: row.index,
            grading: Grading::Code {
                tests: CodeTests::Function {
                    fn_name: entry.clone(),
                    cases: Vec::new(),
                },
                compare: CompareMode::Evalplus,
                time_limit_native_s: EVALPLUS_MIN_TIME_LIMIT_S,
                atol: (atol != 0.0).then_some(atol),
                reward: RewardMode::Binary,
            },
            prompt: Some(row.string("prompt")?.to_string()),
        },
        program,
        entry,
        inputs: all,
    })
}

/// Runs the canonical solution on every input: the expected outputs, and
/// the item's time limit from the slowest input.
fn reference_run(sandbox: &Sandbox, p: Pending, timeout_native_s: f64) -> Result<Problem, String> {
    if p.inputs.is_empty() {
        return Err(format!("{}: no inputs", p.problem.place));
    }
    let limits = Limits::with_time(Duration::from_secs_f64(native_to_fuel_seconds(timeout_native_s)));
    let run = sandbox
        .run_cases(
            Program {
                source: p.program,
                mode: Mode::Function {
                    fn_name: p.entry.clone(),
                },
            },
            p.inputs
                .iter()
                .map(|a| CaseInput {
                    stdin: Bytes::new(),
                    args: Some(a.clone()),
                })
                .collect(),
            &limits,
            Arc::new(|_, _| true),
        )
        .map_err(|e| format!("{}: the reference run could not start: {e}", p.problem.place))?;
    if let Some(e) = run.compile_error {
        return Err(format!(
            "{}: the canonical solution does not compile: {}: {}",
            p.problem.place, e.kind, e.message
        ));
    }
    let mut cases = Vec::with_capacity(p.inputs.len());
    let mut slowest = 0u64;
    for (k, (input, case)) in p.inputs.iter().zip(&run.cases).enumerate() {
        let Some(case) = case else {
            return Err(format!(
                "{}: the reference run stopped before input {k}",
                p.problem.place
            ));
        };
        match &case.end {
            CaseEnd::Returned(json) => cases.push(IoCase {
                input: input.clone(),
                output: json.clone(),
            }),
            other => {
                return Err(format!(
                    "{}: the canonical solution gives no comparable value on input {k}: {other:?}",
                    p.problem.place
                ))
            }
        }
        slowest = slowest.max(case.fuel_used);
    }
    let mut problem = p.problem;
    if let Grading::Code {
        tests,
        time_limit_native_s,
        ..
    } = &mut problem.grading
    {
        *tests = CodeTests::Function {
            fn_name: p.entry,
            cases,
        };
        *time_limit_native_s = (EVALPLUS_TIME_FACTOR * fuel_to_native_seconds(slowest))
            .clamp(EVALPLUS_MIN_TIME_LIMIT_S, MAX_NATIVE_TIME_LIMIT_S);
    }
    Ok(problem)
}

/// EvalPlus problems, with their expected outputs from reference runs (in
/// parallel).
pub fn evalplus_problems(
    rows: &[Row],
    args: &ConvertArgs,
    skips: &mut Skips,
) -> Result<Vec<Problem>, CliError> {
    if !(args.reference_timeout > 0.0 && args.reference_timeout <= MAX_NATIVE_TIME_LIMIT_S) {
        return Err(CliError::Usage(format!(
            "--reference-timeout must be in (0, {MAX_NATIVE_TIME_LIMIT_S}], got {}",
            args.reference_timeout
        )));
    }
    let mut ready = Vec::new();
    for row in rows {
        match pending(row, args) {
            Ok(p) => ready.push(p),
            Err(e) if e.contains("special oracle") => skips.add("problems with a special oracle", e),
            Err(e) => skips.add("unreadable problems", e),
        }
    }
    let sandbox =
        Sandbox::shared().map_err(|e| CliError::Sandbox(format!("the code sandbox is unavailable: {e}")))?;
    let timeout = args.reference_timeout;
    let results: Vec<Result<Problem, String>> = ready
        .into_par_iter()
        .map(|p| reference_run(sandbox, p, timeout))
        .collect();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(p) => problems.push(p),
            Err(e) => skips.add("problems whose canonical solution failed", e),
        }
    }
    Ok(problems)
}
