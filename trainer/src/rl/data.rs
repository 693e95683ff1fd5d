//! RL prompts: one problem per JSONL line, and the reward items of responses.
//!
//! A line is `{"id": ..., "prompt": "..."}` or `{"id": ..., "messages": [...]}`
//! (the conversation so far, without the response), plus what grades it:
//! `"answer"` (math: the gold final answer) or `"tests"` (code: the reward
//! server's test JSON, `{"type": "stdio" | "function" | "assert", ...}`).
//! `id` is optional (the line number stands in). Other fields are ignored.

use std::path::Path;

use anyhow::{bail, Context, Result};
use reward_client::{ExtractMode, Item};
use serde::Deserialize;
use serde_json::Value;

use super::config::Task;
use crate::template::{Message, Template};
use crate::tokenizer::Tokenizer;

/// One problem, tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Its id (from the file, else `file:line`).
    pub id: String,
    /// Which verifier grades it.
    pub task: Task,
    /// The rendered prompt's ids.
    pub prompt: Vec<u32>,
    /// What grades it: the gold answer (math) or the tests (code).
    pub reference: Reference,
}

/// What a response is graded against.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// A math answer.
    Answer(String),
    /// Code tests, as the reward server takes them.
    Tests(Value),
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    answer: Option<Value>,
    #[serde(default)]
    tests: Option<Value>,
}

/// Reads the problems of `path` for `task`, rendering prompts with
/// `template`. Prompts longer than `max_prompt_tokens` are skipped (and
/// counted in the returned number).
pub fn read_problems(
    path: &Path,
    task: Task,
    template: Template,
    tokenizer: &Tokenizer,
    max_prompt_tokens: usize,
) -> Result<(Vec<Problem>, usize)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut skipped = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let r: Record = serde_json::from_str(line).with_context(|| format!("{at}: not a JSON object"))?;
        let rendered = match (r.prompt, r.messages) {
            (Some(p), None) => template.render_user(&p),
            (None, Some(m)) if !m.is_empty() => template.render_prompt(&m),
            _ => bail!("{at}: needs exactly one of \"prompt\" or a non-empty \"messages\""),
        };
        let reference = match (task, r.answer, r.tests) {
            (Task::Math, Some(Value::String(a)), _) => Reference::Answer(a),
            (Task::Math, Some(a @ Value::Number(_)), _) => Reference::Answer(a.to_string()),
            (Task::Math, _, _) => bail!("{at}: a math problem needs \"answer\" (a string or number)"),
            (Task::Code, _, Some(t @ Value::Object(_))) => Reference::Tests(t),
            (Task::Code, _, _) => bail!("{at}: a code problem needs \"tests\" (an object)"),
        };
        let id = match r.id {
            Some(Value::String(s)) => s,
            Some(v @ Value::Number(_)) => v.to_string(),
            None => at.clone(),
            Some(_) => bail!("{at}: \"id\" must be a string or number"),
        };
        let prompt = tokenizer.encode(&rendered)?;
        if prompt.is_empty() {
            bail!("{at}: the prompt renders to no tokens");
        }
        if prompt.len() > max_prompt_tokens {
            skipped += 1;
            continue;
        }
        out.push(Problem {
            id,
            task,
            prompt,
            reference,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: no usable problems ({skipped} prompts longer than {max_prompt_tokens} tokens)",
            path.display()
        );
    }
    Ok((out, skipped))
}

/// The reward item grading `response` to `problem`.
pub fn reward_item(problem: &Problem, response: &str, math_extract: ExtractMode, time_limit_s: f64) -> Item {
    let item = match &problem.reference {
        Reference::Answer(a) => Item::math(response, a.clone()).extract(math_extract),
        Reference::Tests(t) => Item::code(response, t.clone()).time_limit_s(time_limit_s),
    };
    item.problem_id(problem.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tokenizer() -> Tokenizer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-qwen2");
        Tokenizer::from_dir(&dir).unwrap()
    }

    #[test]
    fn reads_math_and_code_and_names_bad_lines() {
        let tok = tokenizer();
        let dir = tempfile::tempdir().unwrap();
        let math = dir.path().join("m.jsonl");
        std::fs::write(
            &math,
            "{\"id\": \"a\", \"prompt\": \"1+1?\", \"answer\": \"2\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}], \"answer\": 4}\n",
        )
        .unwrap();
        let (ps, skipped) = read_problems(&math, Task::Math, Template::ChatMl, &tok, 1000).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].id, "a");
        assert_eq!(ps[1].reference, Reference::Answer("4".into()));
        assert!(ps[1].id.ends_with("m.jsonl:3"));
        let item = reward_item(&ps[0], "so \\boxed{2}", ExtractMode::Boxed, 1.0);
        assert_eq!(item.answer.as_deref(), Some("2"));
        assert_eq!(item.extract, Some(ExtractMode::Boxed));

        let err = read_problems(&math, Task::Math, Template::ChatMl, &tok, 3).unwrap_err();
        assert!(
            err.to_string().contains("2 prompts longer than 3 tokens"),
            "{err}"
        );

        let code = dir.path().join("c.jsonl");
        std::fs::write(&code, "{\"prompt\": \"p\", \"answer\": \"2\"}\n").unwrap();
        let err = format!(
            "{:#}",
            read_problems(&code, Task::Code, Template::Plain, &tok, 100).unwrap_err()
        );
        assert!(err.contains("c.jsonl:1") && err.contains("\"tests\""), "{err}");
        std::fs::write(
            &code,
            "{\"prompt\": \"p\", \"tests\": {\"type\": \"stdio\", \"cases\": []}}\n",
        )
        .unwrap();
        let (ps, _) = read_problems(&code, Task::Code, Template::Plain, &tok, 100).unwrap();
        let item = reward_item(&ps[0], "```python\nprint(1)\n```", ExtractMode::Boxed, 2.0);
        assert_eq!(item.time_limit_s, Some(2.0));
        assert_eq!(item.problem_id, Some(ps[0].id.clone().into()));
        std::fs::write(&code, "{\"tests\": {}}\n").unwrap();
        let err = format!(
            "{:#}",
            read_problems(&code, Task::Code, Template::Plain, &tok, 100).unwrap_err()
        );
        assert!(err.contains("\"prompt\""), "{err}");
    }
}
