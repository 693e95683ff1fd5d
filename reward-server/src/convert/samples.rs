//! Reading the model's samples: records keyed by problem id, each holding
//! one or several responses.
//!
//! A record names its problem with the format's id field (`question_id`,
//! `task_id`, ...) or `problem_id` / `id` / `index` / `idx`, and holds:
//!
//! - `code_list`: programs already taken out of the responses
//!   (LiveCodeBench's output files; `lcb_runner/runner/custom_evaluator.py`
//!   reads the same `{question_id, code_list}` records); graded as they are;
//! - `output_list`, `responses` (lists) or `response`: raw model outputs,
//!   whose last fenced code block (or final answer) is graded;
//! - `completion` (HumanEval / EvalPlus): appended to the problem's prompt,
//!   as `human_eval/execution.py` and `evalplus/evaluate.py` do;
//! - `solution` (HumanEval / EvalPlus): a whole program.

use serde_json::Value;

use super::rows::{kind as value_kind, Row};
use super::Format;

/// One sample's text and how it becomes the item's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleText {
    /// A model's output: the program or answer is found in it.
    Response(String),
    /// A program, graded as it is.
    Program(String),
    /// The rest of the problem's prompt (HumanEval), graded as a program.
    Completion(String),
}

/// Whether `completion` and `solution` are programs (HumanEval, EvalPlus)
/// or responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// `completion` continues the prompt; `solution` is a program.
    HumanEval,
    /// Everything else.
    Other,
}

impl TextKind {
    /// The kind of a format.
    pub fn of(format: Format) -> TextKind {
        match format {
            Format::Humaneval | Format::Evalplus => TextKind::HumanEval,
            _ => TextKind::Other,
        }
    }
}

/// The fields a sample's problem id is looked for in, in order.
pub fn key_fields(format: Format, id_field: Option<&str>) -> Vec<String> {
    let own: &[&str] = match format {
        Format::Lcb => &["question_id"],
        Format::Humaneval | Format::Evalplus => &["task_id"],
        _ => &[],
    };
    id_field
        .into_iter()
        .chain(own.iter().copied())
        .chain(["problem_id", "id", "index", "idx", "task_id", "question_id"])
        .map(str::to_string)
        .collect()
}

/// The problem key and texts of one sample record.
pub fn read_sample(
    row: &Row,
    key_fields: &[String],
    kind: TextKind,
) -> Result<(String, Vec<SampleText>), String> {
    let names: Vec<&str> = key_fields.iter().map(String::as_str).collect();
    let key = match row.first(&names) {
        Some((_, Value::String(s))) => s.clone(),
        Some((_, Value::Number(n))) if n.is_i64() => n.to_string(),
        Some((name, other)) => {
            return Err(format!(
                "{}: field `{name}` is {}, expected an id",
                row.place,
                value_kind(other)
            ))
        }
        None => {
            return Err(format!(
                "{}: no problem id (one of `{}`)",
                row.place,
                names.join("`, `")
            ))
        }
    };
    let texts = texts(row, kind)?;
    if texts.is_empty() {
        return Err(format!(
            "{}: no response (`code_list`, `output_list`, `responses`, `response`, `completion` or `solution`)",
            row.place
        ));
    }
    Ok((key, texts))
}

/// The responses a problem row carries itself (when there is no samples
/// file); none when it carries none or they are malformed.
pub fn inline_texts(row: &Row, kind: TextKind) -> Vec<SampleText> {
    texts(row, kind).unwrap_or_default()
}

fn texts(row: &Row, kind: TextKind) -> Result<Vec<SampleText>, String> {
    let strings = |name: &str| -> Result<Option<Vec<String>>, String> {
        match row.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        format!(
                            "{}: field `{name}`[{k}] is {}, expected a string",
                            row.place,
                            value_kind(v)
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(other) => Err(format!(
                "{}: field `{name}` is {}, expected a string or a list",
                row.place,
                value_kind(other)
            )),
        }
    };
    if let Some(code) = strings("code_list")? {
        return Ok(code.into_iter().map(SampleText::Program).collect());
    }
    for name in ["output_list", "responses", "response"] {
        if let Some(outs) = strings(name)? {
            return Ok(outs.into_iter().map(SampleText::Response).collect());
        }
    }
    if let Some(c) = strings("completion")? {
        return Ok(c
            .into_iter()
            .map(|c| match kind {
                TextKind::HumanEval => SampleText::Completion(c),
                TextKind::Other => SampleText::Response(c),
            })
            .collect());
    }
    if kind == TextKind::HumanEval {
        if let Some(s) = strings("solution")? {
            return Ok(s.into_iter().map(SampleText::Program).collect());
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::rows::parse_rows;

    #[test]
    fn sample_records_in_every_shape() {
        let rows = parse_rows(
            concat!(
                r#"[{"question_id": "q1", "code_list": ["print(1)", "print(2)"], "output_list": ["a", "b"]},"#,
                r#"{"task_id": "HumanEval/0", "completion": "    return 1\n"},"#,
                r#"{"problem_id": 7, "responses": ["r1", "r2"]},"#,
                r#"{"id": "x"},"#,
                r#"{"response": "r"},"#,
                r#"{"problem_id": 1, "response": 5}]"#
            ),
            "samples",
        )
        .unwrap();
        let lcb = key_fields(Format::Lcb, None);
        assert_eq!(
            read_sample(&rows[0], &lcb, TextKind::Other).unwrap(),
            (
                "q1".into(),
                vec![
                    SampleText::Program("print(1)".into()),
                    SampleText::Program("print(2)".into())
                ]
            )
        );
        let he = key_fields(Format::Humaneval, None);
        assert_eq!(
            read_sample(&rows[1], &he, TextKind::HumanEval).unwrap(),
            (
                "HumanEval/0".into(),
                vec![SampleText::Completion("    return 1\n".into())]
            )
        );
        let math = key_fields(Format::Math, None);
        assert_eq!(read_sample(&rows[2], &math, TextKind::Other).unwrap().0, "7");
        assert!(read_sample(&rows[3], &math, TextKind::Other)
            .unwrap_err()
            .contains("no response"));
        assert!(read_sample(&rows[4], &math, TextKind::Other)
            .unwrap_err()
            .contains("no problem id"));
        assert_eq!(
            read_sample(&rows[5], &math, TextKind::Other).unwrap_err(),
            "samples element 5: field `response` is a number, expected a string or a list"
        );
    }
}
