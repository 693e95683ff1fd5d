//! Grading a batch: one entry point for the CLI and the HTTP API, so both
//! return identical results.
//!
//! Each input is either a well-formed [`Item`] or a [`Malformed`] record of
//! why it could not be read; a malformed input becomes a result with verdict
//! `invalid`, and the rest of the batch is graded as usual. Results come back
//! in input order; the work is spread over the rayon thread pool.

use std::time::Instant;

use rayon::prelude::*;
use serde_json::Value;

use crate::api::{GradeResult, Id, Item, Task, Verdict};
use crate::{code, math};

/// An input that could not be turned into an [`Item`].
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// The `id` field, if one could be read.
    pub id: Option<Id>,
    /// The `problem_id` field, if one could be read.
    pub problem_id: Option<Id>,
    /// What was wrong, naming the field or the JSON error.
    pub error: String,
}

/// One entry of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A well-formed item.
    Item(Item),
    /// An entry that is not a valid item.
    Malformed(Malformed),
}

impl Input {
    /// Reads one JSONL line; `line_no` (1-based) goes into error messages.
    pub fn from_line(line: &str, line_no: usize) -> Input {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => Input::from_value(v, &format!("line {line_no}")),
            Err(e) => Input::Malformed(Malformed {
                id: None,
                problem_id: None,
                error: format!("line {line_no}: not valid JSON: {e}"),
            }),
        }
    }

    /// Reads one item from a JSON value; `place` ("line 3", "items[2]") prefixes errors.
    pub fn from_value(v: Value, place: &str) -> Input {
        let id_of = |key: &str| {
            v.get(key)
                .and_then(|x| serde_json::from_value::<Id>(x.clone()).ok())
        };
        let (id, problem_id) = (id_of("id"), id_of("problem_id"));
        if !v.is_object() {
            return Input::Malformed(Malformed {
                id,
                problem_id,
                error: format!("{place}: expected a JSON object, found {}", json_kind(&v)),
            });
        }
        match serde_json::from_value::<Item>(v) {
            Ok(item) => Input::Item(item),
            Err(e) => Input::Malformed(Malformed {
                id,
                problem_id,
                error: format!("{place}: {e}"),
            }),
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn result(
    id: Option<Id>,
    problem_id: Option<Id>,
    verdict: Verdict,
    error: Option<String>,
    started: Instant,
) -> GradeResult {
    let correct = verdict == Verdict::Correct;
    GradeResult {
        id,
        problem_id,
        reward: if correct { 1.0 } else { 0.0 },
        verdict,
        passed: u32::from(correct),
        total: 1,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        extracted: None,
        error,
    }
}

/// Grades one input. A bug in a verifier (a panic) becomes an `invalid`
/// result saying so, never a crash of the batch or the server.
pub fn grade_one(input: &Input) -> GradeResult {
    let started = Instant::now();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grade_unguarded(input, started))) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let (id, pid) = match input {
                Input::Item(i) => (i.id.clone(), i.problem_id.clone()),
                Input::Malformed(m) => (m.id.clone(), m.problem_id.clone()),
            };
            let why = format!("internal error in the verifier (please report it): {what}");
            result(id, pid, Verdict::Invalid, Some(why), started)
        }
    }
}

fn grade_unguarded(input: &Input, started: Instant) -> GradeResult {
    let item = match input {
        Input::Item(item) => item,
        Input::Malformed(m) => {
            let why = Some(m.error.clone());
            return result(m.id.clone(), m.problem_id.clone(), Verdict::Invalid, why, started);
        }
    };
    let (id, pid) = (item.id.clone(), item.problem_id.clone());
    match item.task {
        Task::Math => {
            let Some(answer) = &item.answer else {
                let why = "math items need an `answer` field (the gold answer)".to_string();
                return result(id, pid, Verdict::Invalid, Some(why), started);
            };
            let out = math::verify(answer, &item.response, item.extract.unwrap_or_default());
            let mut r = result(id, pid, out.verdict, out.error, started);
            r.extracted = out.extracted;
            r
        }
        Task::Code => {
            let outcome = match &item.tests {
                None => Err("code items need a `tests` field".to_string()),
                Some(tests) => Ok(code::workers::verify_item(&code::workers::Job {
                    response: &item.response,
                    tests,
                    time_limit_s: item.time_limit_s,
                    memory_limit_mb: item.memory_limit_mb,
                    all_cases: item.all_cases,
                })),
            };
            match outcome {
                Ok(out) => {
                    let mut r = result(id, pid, out.verdict, out.error, started);
                    (r.passed, r.total) = (out.passed, out.total);
                    r
                }
                Err(why) => result(id, pid, Verdict::Invalid, Some(why), started),
            }
        }
    }
}

/// Grades a batch on the current rayon pool; results are in input order.
pub fn grade_batch(inputs: &[Input]) -> Vec<GradeResult> {
    inputs.par_iter().map(grade_one).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_become_invalid_results() {
        let inputs = vec![
            Input::from_line(
                r#"{"id": "a", "task": "math", "response": "\\boxed{2}", "answer": "2"}"#,
                1,
            ),
            Input::from_line("{not json", 2),
            Input::from_line(r#"{"id": 7, "task": "math", "answer": "1"}"#, 3),
            Input::from_line(r#"{"task": "chess", "response": "", "answer": "1"}"#, 4),
            Input::from_line(r#"[1, 2]"#, 5),
            Input::from_line(r#"{"id": "c", "task": "code", "response": "print(1)"}"#, 6),
            Input::from_line(r#"{"id": "m", "task": "math", "response": "5"}"#, 7),
        ];
        let out = grade_batch(&inputs);
        let verdicts: Vec<_> = out.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts[0], Verdict::Correct);
        assert!(verdicts[1..].iter().all(|v| *v == Verdict::Invalid));
        assert!(out[1]
            .error
            .as_deref()
            .unwrap()
            .starts_with("line 2: not valid JSON"));
        assert_eq!(out[2].id, Some(Id::Int(7)));
        assert!(out[2]
            .error
            .as_deref()
            .unwrap()
            .contains("missing field `response`"));
        assert!(out[3]
            .error
            .as_deref()
            .unwrap()
            .contains("unknown variant `chess`"));
        assert!(out[4]
            .error
            .as_deref()
            .unwrap()
            .contains("expected a JSON object, found an array"));
        assert!(out[5]
            .error
            .as_deref()
            .unwrap()
            .contains("code items need a `tests` field"));
        assert!(out[6].error.as_deref().unwrap().contains("`answer`"));
        assert_eq!((out[0].reward, out[0].passed, out[0].total), (1.0, 1, 1));
    }
}
