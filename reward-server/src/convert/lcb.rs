//! LiveCodeBench `code_generation_lite` rows, read as
//! `lcb_runner/benchmarks/code_generation.py` reads them: `question_id`;
//! `public_test_cases`, JSON text of `[{input, output, testtype}]`;
//! `private_test_cases`, the same JSON, or base64 of zlib of a pickled
//! `str` holding it ([`super::pickle`]); `metadata`, JSON text whose
//! `func_name` makes the tests calls (the runner's `fn_name`). Graded with
//! `compare: "lcb"` and 6 native seconds per case, the runner's `timeout`.

use serde_json::Value;

use super::cases::from_case_list;
use super::pickle::decode_tests_text;
use super::rows::{kind, Row};
use super::{row_id, ConvertArgs, Grading, LcbTests, Problem, Skips};
use crate::api::{CompareMode, RewardMode};

/// LiveCodeBench's per-case limit, native seconds.
pub const TIME_LIMIT_NATIVE_S: f64 = 6.0;

/// The problems of `rows`; a row that cannot be read is skipped and counted.
pub fn problems(rows: &[Row], args: &ConvertArgs, skips: &mut Skips) -> Vec<Problem> {
    skips.readable_problems(rows, |row| problem(row, args))
}

fn test_list(row: &Row, name: &str) -> Result<Vec<Value>, String> {
    let value = match row.fields.get(name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(_) => {
                let text = decode_tests_text(s).map_err(|e| format!("{}: field `{name}`: {e}", row.place))?;
                serde_json::from_str(&text).map_err(|e| {
                    format!(
                        "{}: field `{name}`: the decoded tests are not JSON: {e}",
                        row.place
                    )
                })?
            }
        },
        Some(v) => v.clone(),
    };
    match value {
        Value::Array(items) => Ok(items),
        other => Err(format!(
            "{}: field `{name}` holds {}, expected a list of tests",
            row.place,
            kind(&other)
        )),
    }
}

fn problem(row: &Row, args: &ConvertArgs) -> Result<Problem, String> {
    let id = row_id(row, args.id_field.as_deref().or(Some("question_id")), &[])?;
    let mut list = Vec::new();
    if args.lcb_tests != LcbTests::Private {
        list.extend(test_list(row, "public_test_cases")?);
    }
    if args.lcb_tests != LcbTests::Public {
        list.extend(test_list(row, "private_test_cases")?);
    }
    let metadata = match row.fields.get("metadata") {
        None | Some(Value::Null) => Value::Null,
        Some(_) => row.json("metadata")?,
    };
    let fn_name = metadata.get("func_name").and_then(Value::as_str);
    let tests = from_case_list(&list, fn_name).map_err(|e| format!("{}: tests: {e}", row.place))?;
    Ok(Problem {
        id,
        place: row.place.clone(),
        row: row.index,
        grading: Grading::Code {
            tests,
            compare: CompareMode::Lcb,
            time_limit_native_s: TIME_LIMIT_NATIVE_S,
            atol: None,
            reward: RewardMode::Binary,
        },
        prompt: None,
    })
}
