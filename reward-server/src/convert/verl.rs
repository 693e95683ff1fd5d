//! verl rows (`data_source`, `prompt`, `reward_model.ground_truth`,
//! `extra_info.index`), dispatched by `data_source` as verl's
//! `default_compute_score` does (`verl/utils/reward_score/__init__.py`):
//!
//! | `data_source` | verl's scorer | item |
//! |---|---|---|
//! | `openai/gsm8k` | `gsm8k` | math, lenient |
//! | `lighteval/MATH`, `DigitalLearningGmbH/MATH-lighteval`, `HuggingFaceH4/MATH-500` | `math_reward` (last `\boxed{}`) | math, boxed |
//! | `math_dapo`, `math`, `math_dapo_reasoning`, `aime*` | `math_dapo` | math, lenient |
//! | `numina_*` (six sources) | `prime_math` | math, lenient |
//! | `hiyouga/geometry3k` | `geo3k` (`\boxed{}`) | math, boxed |
//! | `codecontests`, `apps`, `codeforces`, `taco` | `prime_code`, `continuous=True` | code, reward `fraction`, 5 native s per case |
//! | anything else | (not implemented in verl, or `searchR1_*` exact match) | skipped and counted |
//!
//! Code ground truth is `{inputs, outputs, fn_name?}` JSON text in the
//! PRIME shape ([`super::cases`]). `prime_code` compares outputs with the
//! APPS checks minus the set-based ones; we grade those rows with our
//! default rule (`--compare apps` for APPS's). With `continuous=True`,
//! `prime_code` scores a failing sample by the fraction of its first ten
//! cases passed; `"reward": "fraction"` counts every case.

use serde_json::Value;

use super::cases::{from_any, unstring};
use super::math::answer_text;
use super::rows::Row;
use super::{row_id, ConvertArgs, Grading, Problem, Skips};
use crate::api::{CompareMode, ExtractMode, RewardMode};

/// `prime_code`'s per-case limit, native seconds (`timeout=5`).
pub const CODE_TIME_LIMIT_NATIVE_S: f64 = 5.0;

const MATH_BOXED: &[&str] = &[
    "lighteval/MATH",
    "DigitalLearningGmbH/MATH-lighteval",
    "HuggingFaceH4/MATH-500",
    "hiyouga/geometry3k",
];
const MATH_LENIENT: &[&str] = &[
    "openai/gsm8k",
    "math_dapo",
    "math",
    "math_dapo_reasoning",
    "numina_aops_forum",
    "numina_synthetic_math",
    "numina_amc_aime",
    "numina_synthetic_amc",
    "numina_cn_k12",
    "numina_olympiads",
];
const CODE: &[&str] = &["codecontests", "apps", "codeforces", "taco"];

/// The problems of `rows`; a row that cannot be read, or whose data source
/// verl's default scorer does not grade here, is skipped and counted.
pub fn problems(rows: &[Row], args: &ConvertArgs, skips: &mut Skips) -> Vec<Problem> {
    let mut out = Vec::new();
    for row in rows {
        match problem(row, args) {
            Ok(Ok(p)) => out.push(p),
            Ok(Err(source)) => skips.add(
                format!("rows of data_source {source:?}, which verl's default_compute_score does not grade with math or code tests"),
                format!("{}: data_source {source:?} is not supported", row.place),
            ),
            Err(e) => skips.add("unreadable problems", e),
        }
    }
    out
}

/// `Ok(Err(source))` for an unsupported data source.
fn problem(row: &Row, args: &ConvertArgs) -> Result<Result<Problem, String>, String> {
    let source = row.string("data_source")?;
    let extra_index = row.fields.get("extra_info").and_then(|e| e.get("index")).cloned();
    let id = match (&args.id_field, extra_index) {
        (None, Some(Value::Number(n))) if n.is_i64() => crate::api::Id::Int(n.as_i64().unwrap_or_default()),
        (None, Some(Value::String(s))) => crate::api::Id::Str(s),
        _ => row_id(row, args.id_field.as_deref(), &["index", "id"])?,
    };
    let truth = row
        .fields
        .get("reward_model")
        .and_then(|r| r.get("ground_truth"))
        .ok_or_else(|| format!("{}: missing field `reward_model.ground_truth`", row.place))?;
    let grading =
        if MATH_BOXED.contains(&source) || MATH_LENIENT.contains(&source) || source.starts_with("aime") {
            Grading::Math {
                answer: answer_text(truth)
                    .map_err(|e| format!("{}: field `reward_model.ground_truth` {e}", row.place))?,
                extract: if MATH_BOXED.contains(&source) {
                    ExtractMode::Boxed
                } else {
                    ExtractMode::Lenient
                },
            }
        } else if CODE.contains(&source) {
            let tests = unstring(truth)
                .and_then(|v| from_any(&v))
                .map_err(|e| format!("{}: field `reward_model.ground_truth`: {e}", row.place))?;
            Grading::Code {
                tests,
                compare: CompareMode::Default,
                time_limit_native_s: CODE_TIME_LIMIT_NATIVE_S,
                atol: None,
                reward: RewardMode::Fraction,
            }
        } else {
            return Ok(Err(source.to_string()));
        };
    Ok(Ok(Problem {
        id,
        place: row.place.clone(),
        row: row.index,
        grading,
        prompt: None,
    }))
}
