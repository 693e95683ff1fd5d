//! Grading a batch: one entry point for the CLI and the HTTP API, so both
//! return identical results.
//!
//! Each input is either a well-formed [`Item`], its code tests read as
//! [`CodeTests`], or a [`Malformed`] record of why it could not be read; a
//! malformed input becomes a result with verdict `invalid`, and the rest of
//! the batch is graded as usual. Results come back in input order; the work
//! is spread over the rayon thread pool.

use std::time::Instant;

use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{CodeTests, GradeResult, Id, Item, RewardMode, Task, Verdict};
use crate::code::workers::JobContext;
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
    Item {
        /// The item, without its `tests` (moved to `tests`) and its unknown
        /// fields (`extra`, dropped: nothing here reads them).
        item: Item,
        /// The item's `tests`, read.
        tests: Option<CodeTests>,
    },
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
        // The item keeps its tests as raw JSON (as a client sends them);
        // they are read here, so bad tests make a malformed item like any
        // other bad field. Taken out, they are read without a copy. (When
        // the tests and another field are both bad, the other one is
        // reported.)
        let read = serde_json::from_value::<Item>(v).and_then(|mut item| {
            item.extra = serde_json::Map::new();
            let tests = item.tests.take().map(CodeTests::deserialize).transpose()?;
            Ok(Input::Item { item, tests })
        });
        read.unwrap_or_else(|e| {
            Input::Malformed(Malformed {
                id,
                problem_id,
                error: format!("{place}: {e}"),
            })
        })
    }
}

impl Input {
    /// Reads one item from its JSON text (a slice of a request body);
    /// `place` ("item 2") prefixes errors. Unlike [`Input::from_value`] it
    /// never builds a [`Value`] of the whole item: only its `tests` and
    /// unknown fields go through one.
    pub fn from_json(json: &str, place: &str) -> Input {
        let read = serde_json::from_str::<Item>(json).and_then(|mut item| {
            item.extra = serde_json::Map::new();
            let tests = item.tests.take().map(CodeTests::deserialize).transpose()?;
            Ok(Input::Item { item, tests })
        });
        read.unwrap_or_else(|e| {
            /// The ids of an item that did not read, if they do.
            #[derive(Deserialize)]
            struct Ids<'a> {
                #[serde(borrow, default)]
                id: Option<&'a serde_json::value::RawValue>,
                #[serde(borrow, default)]
                problem_id: Option<&'a serde_json::value::RawValue>,
            }
            let kind = raw_json_kind(json);
            // (serde would read a struct from an array too.)
            let ids = (kind == "an object")
                .then(|| serde_json::from_str::<Ids<'_>>(json).ok())
                .flatten();
            let id_of = |raw: Option<&serde_json::value::RawValue>| {
                raw.and_then(|r| serde_json::from_str::<Id>(r.get()).ok())
            };
            let error = if kind == "an object" {
                format!("{place}: {e}")
            } else {
                format!("{place}: expected a JSON object, found {kind}")
            };
            Input::Malformed(Malformed {
                id: ids.as_ref().and_then(|i| id_of(i.id)),
                problem_id: ids.as_ref().and_then(|i| id_of(i.problem_id)),
                error,
            })
        })
    }
}

/// What kind of JSON value a text holds, from its first character.
fn raw_json_kind(json: &str) -> &'static str {
    match json.trim_start().bytes().next() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
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
        asserts: None,
    }
}

/// Grades one input. A bug in a verifier (a panic) becomes an `invalid`
/// result saying so, never a crash of the batch or the server.
pub fn grade_one(input: &Input) -> GradeResult {
    grade_one_with(input, &JobContext::default())
}

/// [`grade_one`] for a request: `context` can cancel a code item mid-run
/// and names the request in the sandbox worker's log lines.
pub fn grade_one_with(input: &Input, context: &JobContext) -> GradeResult {
    let started = Instant::now();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grade_unguarded(input, context, started)
    })) {
        Ok(r) => r,
        Err(panic) => {
            let what = code::workers::panic_text(&*panic);
            let (id, pid) = match input {
                Input::Item { item, .. } => (item.id.clone(), item.problem_id.clone()),
                Input::Malformed(m) => (m.id.clone(), m.problem_id.clone()),
            };
            let why = format!("internal error in the verifier (please report it): {what}");
            result(id, pid, Verdict::Invalid, Some(why), started)
        }
    }
}

fn grade_unguarded(input: &Input, context: &JobContext, started: Instant) -> GradeResult {
    let (item, tests) = match input {
        Input::Item { item, tests } => (item, tests),
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
            let fraction = item.reward == Some(RewardMode::Fraction);
            let outcome = match tests {
                None => Err("code items need a `tests` field".to_string()),
                Some(tests) => Ok(code::workers::verify_item(
                    &code::workers::Job {
                        response: &item.response,
                        tests,
                        time_limit_s: item.time_limit_s,
                        memory_limit_mb: item.memory_limit_mb,
                        all_cases: item.all_cases || fraction,
                        time_limit_native_s: item.time_limit_native_s,
                        rules: code::Rules {
                            compare: item.compare.unwrap_or_default(),
                            atol: item.atol,
                            raw_code: item.raw_code,
                        },
                    },
                    context,
                )),
            };
            match outcome {
                Ok(out) => {
                    let mut r = result(id, pid, out.verdict, out.error, started);
                    (r.passed, r.total, r.asserts) = (out.passed, out.total, out.asserts);
                    if fraction && out.total > 0 && r.verdict != Verdict::Invalid {
                        r.reward = f64::from(out.passed) / f64::from(out.total);
                    }
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
        let verdicts: Vec<_> = out.iter().map(|r| r.verdict.clone()).collect();
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

    #[test]
    fn items_read_from_json_text_as_from_values() {
        for (k, line) in [
            r#"{"id": "a", "task": "math", "response": "1", "answer": "1", "extra": [1, {"b": 2}]}"#,
            r#"{"id": 7, "problem_id": "p", "task": "math", "answer": "1"}"#,
            r#"{"task": "code", "response": "x", "tests": {"type": "stdio"}}"#,
            r#"[1, 2]"#,
            r#"{"id": {"not": "an id"}, "task": "math"}"#,
        ]
        .iter()
        .enumerate()
        {
            let from_value = Input::from_line(line, 1);
            let from_json = Input::from_json(line, "line 1");
            match (&from_value, &from_json) {
                (Input::Item { .. }, _) => assert_eq!(from_value, from_json, "{k}"),
                (Input::Malformed(a), Input::Malformed(b)) => {
                    assert_eq!((&a.id, &a.problem_id), (&b.id, &b.problem_id), "{k}");
                    assert!(
                        b.error.starts_with(a.error.split(" at line").next().unwrap()),
                        "{k}: {} / {}",
                        a.error,
                        b.error
                    );
                }
                _ => panic!("{k}: {from_value:?} / {from_json:?}"),
            }
        }
    }

    #[test]
    fn code_tests_are_read_with_the_item() {
        let line =
            r#"{"task": "code", "response": "x", "tests": {"type": "assert", "code": "pass"}, "step": 3}"#;
        let Input::Item { item, tests } = Input::from_line(line, 1) else {
            panic!("not an item");
        };
        assert_eq!(
            tests,
            Some(CodeTests::Assert {
                code: "pass".into(),
                host_compare: true
            })
        );
        assert_eq!(item.tests, None, "moved out");
        assert!(item.extra.is_empty(), "unknown fields are not kept");

        let line = r#"{"id": 4, "task": "code", "response": "x", "tests": {"type": "stdio"}}"#;
        assert_eq!(
            Input::from_line(line, 2),
            Input::Malformed(Malformed {
                id: Some(Id::Int(4)),
                problem_id: None,
                error: "line 2: missing field `cases`".into(),
            })
        );
        let line = r#"{"task": "math", "response": "1", "answer": "1", "tests": null}"#;
        assert!(matches!(
            Input::from_line(line, 3),
            Input::Item { tests: None, .. }
        ));
    }

    #[test]
    fn fraction_rewards_count_every_case() {
        if crate::sandbox::test_sandbox().is_none() {
            return;
        }
        let cases = r#"[{"input": "1", "output": "2"}, {"input": "2", "output": "4"}, {"input": "3", "output": "7"}]"#;
        let item = |reward: &str| {
            Input::from_line(
                &format!(
                    r#"{{"task": "code", "response": "```python\nprint(2 * int(input()))\n```", {reward} "tests": {{"type": "stdio", "cases": {cases}}}}}"#
                ),
                1,
            )
        };
        let out = grade_batch(&[
            item(r#""reward": "fraction","#),
            item(""),
            item(r#""reward": "binary","#),
        ]);
        assert_eq!(out[0].verdict, Verdict::WrongAnswer);
        assert_eq!((out[0].passed, out[0].total), (2, 3), "every case ran");
        assert!((out[0].reward - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (out[1].reward, out[1].passed),
            (0.0, 2),
            "binary stops at the first failure"
        );
        assert_eq!(out[2].reward, 0.0);
        let math = Input::from_line(
            r#"{"task": "math", "response": "\\boxed{2}", "answer": "2", "reward": "fraction"}"#,
            1,
        );
        assert_eq!(grade_batch(&[math])[0].reward, 1.0);
    }
}
