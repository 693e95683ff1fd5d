//! Math rows: a gold answer in `answer` (AceReason-Math, DeepScaleR,
//! MATH-500, AIME sets), `gold`, or another field named with
//! `--answer-field`. A GSM8K answer (`... #### 72`) is the text after its
//! `####`, as GSM8K defines it.

use serde_json::Value;

use super::rows::{kind, Row};
use super::{row_id, ConvertArgs, Grading, Problem, Skips};
use crate::api::ExtractMode;

/// Fields tried for the gold answer, in order.
pub const ANSWER_FIELDS: &[&str] = &[
    "answer",
    "gold",
    "Answer",
    "final_answer",
    "expected_answer",
    "ground_truth",
    "target",
];

/// Fields tried for the id, in order.
pub const ID_FIELDS: &[&str] = &[
    "id",
    "problem_id",
    "unique_id",
    "idx",
    "ID",
    "index",
    "question_id",
];

/// The problems of `rows`; a row that cannot be read is skipped and counted.
pub fn problems(rows: &[Row], args: &ConvertArgs, skips: &mut Skips) -> Vec<Problem> {
    skips.readable_problems(rows, |row| problem(row, args))
}

/// A gold answer's text: a string (GSM8K's `####` rule applied), or a
/// number.
pub fn answer_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(match s.rsplit_once("####") {
            Some((_, after)) => after.trim().to_string(),
            None => s.clone(),
        }),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("is {}, expected a string or a number", kind(other))),
    }
}

fn problem(row: &Row, args: &ConvertArgs) -> Result<Problem, String> {
    let id = row_id(row, args.id_field.as_deref(), ID_FIELDS)?;
    let names: Vec<&str> = match &args.answer_field {
        Some(f) => vec![f.as_str()],
        None => ANSWER_FIELDS.to_vec(),
    };
    let (name, value) = row
        .first(&names)
        .ok_or_else(|| format!("{}: no gold answer (one of `{}`)", row.place, names.join("`, `")))?;
    let answer = answer_text(value).map_err(|e| format!("{}: field `{name}` {e}", row.place))?;
    Ok(Problem {
        id,
        place: row.place.clone(),
        row: row.index,
        grading: Grading::Math {
            answer,
            extract: ExtractMode::Lenient,
        },
        prompt: None,
    })
}
