//! APPS, TACO and DeepCoder rows: the tests in `input_output` (APPS, TACO:
//! JSON text of `{inputs, outputs, fn_name?}`) or `tests` (DeepCoder: any of
//! the shapes in [`super::cases`]).
//!
//! APPS is graded with `compare: "apps"` and 4 native seconds per case
//! (`hendrycks/apps` `eval/testing_util.py`: `timeout = 4`). TACO's runner
//! (`FlagOpen/TACO` `metrics/testing_util.py`, `compare_std_results`)
//! compares the whole output after `strip()` (its APPS-style fallbacks work
//! on a string where APPS had a list of lines, and match nothing useful),
//! with the same 4 s: its rows are graded with our default rule, which
//! accepts those outputs and also inner white-space and 1e-6 float
//! differences (`--compare apps` for APPS's rules instead).

use super::cases::{from_any, unstring};
use super::rows::Row;
use super::{row_id, ConvertArgs, Format, Grading, Problem, Skips};
use crate::api::{CompareMode, RewardMode};

/// APPS's and TACO's per-case limit, native seconds.
pub const TIME_LIMIT_NATIVE_S: f64 = 4.0;

/// The problems of `rows`; a row that cannot be read is skipped and counted.
pub fn problems(rows: &[Row], args: &ConvertArgs, skips: &mut Skips) -> Vec<Problem> {
    let compare = match args.format {
        Format::Apps => CompareMode::Apps,
        _ => CompareMode::Default,
    };
    skips.readable_problems(rows, |row| problem(row, args, compare))
}

fn problem(row: &Row, args: &ConvertArgs, compare: CompareMode) -> Result<Problem, String> {
    let id = row_id(
        row,
        args.id_field.as_deref(),
        &["problem_id", "id", "task_id", "question_id"],
    )?;
    let (name, raw) = row
        .first(&["input_output", "tests", "test_cases"])
        .ok_or_else(|| {
            format!(
                "{}: no tests (`input_output`, `tests` or `test_cases`)",
                row.place
            )
        })?;
    let tests = unstring(raw)
        .and_then(|v| from_any(&v))
        .map_err(|e| format!("{}: field `{name}`: {e}", row.place))?;
    Ok(Problem {
        id,
        place: row.place.clone(),
        row: row.index,
        grading: Grading::Code {
            tests,
            compare,
            time_limit_native_s: TIME_LIMIT_NATIVE_S,
            atol: None,
            reward: RewardMode::Binary,
        },
        prompt: None,
    })
}
