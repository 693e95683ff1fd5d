//! The wire format of `POST /v1/reward`: [`Item`] in, [`GradeResult`] out,
//! wrapped in [`RewardRequest`] / [`RewardResponse`].
//!
//! These mirror `reward-server`'s own API types (`reward-server/src/api/`)
//! without depending on that crate. They are deliberately looser than the
//! server's: code `tests` stay raw JSON, an item keeps fields it does not know
//! in [`Item::extra`], and a verdict this version does not know becomes
//! [`Verdict::Unknown`] instead of failing the whole response.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// An item or problem identifier: a string or an integer, echoed back by the
/// server exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Int(n)
    }
}

impl From<i32> for Id {
    fn from(n: i32) -> Self {
        Id::Int(n.into())
    }
}

impl From<u32> for Id {
    fn from(n: u32) -> Self {
        Id::Int(n.into())
    }
}

/// Beyond `i64::MAX` (which the server does not take as an integer) the id
/// is sent as its decimal string, so it still comes back unchanged.
impl From<u64> for Id {
    fn from(n: u64) -> Self {
        i64::try_from(n).map_or_else(|_| Id::Str(n.to_string()), Id::Int)
    }
}

/// Like `u64`: an index too large for `i64` becomes a string.
impl From<usize> for Id {
    fn from(n: usize) -> Self {
        i64::try_from(n).map_or_else(|_| Id::Str(n.to_string()), Id::Int)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Str(s.to_string())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::Str(s)
    }
}

/// Which verifier an item goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A final answer compared with the gold `answer`.
    Math,
    /// A Python program run in the server's sandbox against `tests`.
    Code,
}

/// How the final answer of a math item is found in its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Extract {
    /// The server's default: the last `\boxed{}`, else an "answer is …"
    /// phrase, else the last math span, else the last number.
    Lenient,
    /// Only `\boxed{}` / `\fbox{}` counts (RL training mode).
    Boxed,
}

/// One thing to grade: a math response with its gold answer
/// ([`Item::math`]) or a code response with its tests ([`Item::code`]).
///
/// The optional fields are set builder-style:
///
/// ```
/// use reward_client::{Extract, Item};
///
/// let item = Item::math("so $x = \\boxed{\\frac12}$", "0.5")
///     .id(7)
///     .problem_id("aime24-3")
///     .extract(Extract::Boxed)
///     .field("step", 120); // passed through, ignored by the server
/// assert_eq!(item.problem_id, Some("aime24-3".into()));
/// ```
///
/// Fields are serialized only when set, so the server's defaults apply to
/// the rest. `extra` holds any other field (the trainer's own bookkeeping,
/// or a field newer than this crate); it is sent as is and the server
/// ignores what it does not know. An `extra` key that repeats a named field
/// (`"id"`, `"task"`, ...) would send that key twice; don't.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Echoed in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Groups samples of one problem (for avg@n and pass@k); echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_id: Option<Id>,
    /// Which verifier to use.
    pub task: Task,
    /// The full model output.
    pub response: String,
    /// Math items: the gold answer (may be wrapped in `$…$` or `\boxed{}`,
    /// may hold several answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Math items: how the answer is found in `response` (server default:
    /// lenient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,
    /// Code items: the tests, as the server takes them:
    /// `{"type": "stdio", "cases": [{"input": ..., "output": ...}]}`,
    /// `{"type": "function", "fn_name": ..., "cases": [...]}` or
    /// `{"type": "assert", "code": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Value>,
    /// Code items: CPU budget per test case in seconds (server default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<f64>,
    /// Code items: memory limit in MiB (server default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
    /// Code items: run every case and report `passed`/`total` instead of
    /// stopping at the first failing case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_cases: bool,
    /// Any other field, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Item {
    /// A math item: `response` is graded against the gold `answer`.
    pub fn math(response: impl Into<String>, answer: impl Into<String>) -> Item {
        Item::new(Task::Math, response.into(), Some(answer.into()), None)
    }

    /// A code item: the last fenced ```` ```python ```` block of `response`
    /// runs against `tests` (JSON as described on [`Item::tests`]).
    pub fn code(response: impl Into<String>, tests: Value) -> Item {
        Item::new(Task::Code, response.into(), None, Some(tests))
    }

    fn new(task: Task, response: String, answer: Option<String>, tests: Option<Value>) -> Item {
        Item {
            id: None,
            problem_id: None,
            task,
            response,
            answer,
            extract: None,
            tests,
            time_limit_s: None,
            memory_limit_mb: None,
            all_cases: false,
            extra: Map::new(),
        }
    }

    /// Sets `id` (echoed in the result).
    #[must_use]
    pub fn id(mut self, id: impl Into<Id>) -> Item {
        self.id = Some(id.into());
        self
    }

    /// Sets `problem_id` (echoed in the result).
    #[must_use]
    pub fn problem_id(mut self, problem_id: impl Into<Id>) -> Item {
        self.problem_id = Some(problem_id.into());
        self
    }

    /// Sets how a math answer is extracted.
    #[must_use]
    pub fn extract(mut self, extract: Extract) -> Item {
        self.extract = Some(extract);
        self
    }

    /// Sets the CPU budget per test case, in seconds (code items).
    #[must_use]
    pub fn time_limit_s(mut self, seconds: f64) -> Item {
        self.time_limit_s = Some(seconds);
        self
    }

    /// Sets the memory limit in MiB (code items).
    #[must_use]
    pub fn memory_limit_mb(mut self, mib: u64) -> Item {
        self.memory_limit_mb = Some(mib);
        self
    }

    /// Runs every test case instead of stopping at the first failure (code items).
    #[must_use]
    pub fn all_cases(mut self, all: bool) -> Item {
        self.all_cases = all;
        self
    }

    /// Adds a field to [`Item::extra`], passed through to the server.
    #[must_use]
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Item {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// The outcome of grading one item.
///
/// Serialized as its snake_case wire name. A name this version does not
/// know deserializes to [`Verdict::Unknown`], so a newer server does not
/// break an older client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The answer is right (reward 1.0).
    Correct,
    /// An answer was found and it is wrong.
    WrongAnswer,
    /// No answer was found in the response (code: no fenced code block).
    NoAnswer,
    /// A program ran past its CPU budget.
    TimeLimit,
    /// A program used more memory than allowed.
    MemoryLimit,
    /// A program crashed, raised, or did not compile.
    RuntimeError,
    /// A program printed more than allowed.
    OutputLimit,
    /// The item itself is malformed (missing field, unknown task, unusable
    /// gold answer); the result's `error` says why.
    Invalid,
    /// A verdict this client version does not know, with its wire name.
    Unknown(String),
}

impl Verdict {
    /// The eight verdicts of the current server, in the server's order.
    pub const KNOWN: [Verdict; 8] = [
        Verdict::Correct,
        Verdict::WrongAnswer,
        Verdict::NoAnswer,
        Verdict::TimeLimit,
        Verdict::MemoryLimit,
        Verdict::RuntimeError,
        Verdict::OutputLimit,
        Verdict::Invalid,
    ];

    /// The wire name (`"correct"`, `"wrong_answer"`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Verdict::Correct => "correct",
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::NoAnswer => "no_answer",
            Verdict::TimeLimit => "time_limit",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::RuntimeError => "runtime_error",
            Verdict::OutputLimit => "output_limit",
            Verdict::Invalid => "invalid",
            Verdict::Unknown(name) => name,
        }
    }

    /// The verdict of a wire name; [`Verdict::Unknown`] for a name not in
    /// [`Verdict::KNOWN`].
    pub fn from_name(name: &str) -> Verdict {
        Verdict::KNOWN
            .into_iter()
            .find(|v| v.as_str() == name)
            .unwrap_or_else(|| Verdict::Unknown(name.to_string()))
    }

    /// True for [`Verdict::Correct`].
    pub fn is_correct(&self) -> bool {
        *self == Verdict::Correct
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Verdict::from_name(&name))
    }
}

/// The grade of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeResult {
    /// The item's `id`, or `None`.
    #[serde(default)]
    pub id: Option<Id>,
    /// The item's `problem_id`, or `None`.
    #[serde(default)]
    pub problem_id: Option<Id>,
    /// 1.0 when the verdict is `correct`, else 0.0.
    pub reward: f64,
    /// What was decided.
    pub verdict: Verdict,
    /// Test cases passed (math: 1 when correct, else 0).
    #[serde(default)]
    pub passed: u32,
    /// Test cases run (math: 1).
    #[serde(default)]
    pub total: u32,
    /// Time the server spent grading this item, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: f64,
    /// The answer found in the response (math items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    /// Why the verdict is not `correct`, when there is more to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `POST /v1/reward`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardRequest {
    /// The items to grade.
    pub items: Vec<Item>,
}

/// The answer of `POST /v1/reward`: one result per item, in item order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardResponse {
    /// The results.
    pub results: Vec<GradeResult>,
}

/// The body of the server's error answers (400, 413, 503, 504, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

/// A borrowed request body, so a batch is serialized without cloning items.
#[derive(Serialize)]
pub(crate) struct RewardRequestRef<'a> {
    pub(crate) items: &'a [Item],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readme_item_example_round_trips() {
        // README.md, "### Item".
        let text = r#"{"id": "q1", "problem_id": "aime24-3", "task": "math", "response": "…", "answer": "\\frac{1}{2}", "extract": "lenient"}"#;
        let item: Item = serde_json::from_str(text).unwrap();
        assert_eq!(
            item,
            Item::math("…", "\\frac{1}{2}")
                .id("q1")
                .problem_id("aime24-3")
                .extract(Extract::Lenient)
        );
        let back: Value = serde_json::to_value(&item).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn only_set_fields_are_sent() {
        let item = Item::math("so \\boxed{\\frac{1}{2}}", "0.5").id(1);
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            // README.md, the `curl` example of `serve`.
            json!({"id": 1, "task": "math", "response": "so \\boxed{\\frac{1}{2}}", "answer": "0.5"})
        );
    }

    #[test]
    fn code_item_with_every_option() {
        let tests = json!({"type": "stdio", "cases": [{"input": "21", "output": "42"}]});
        let item = Item::code("```python\nprint(int(input()) * 2)\n```", tests.clone())
            .id(3u64)
            .time_limit_s(0.3)
            .memory_limit_mb(256)
            .all_cases(true);
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({
                "id": 3, "task": "code", "response": "```python\nprint(int(input()) * 2)\n```",
                "tests": tests, "time_limit_s": 0.3, "memory_limit_mb": 256, "all_cases": true,
            })
        );
    }

    #[test]
    fn unknown_item_fields_pass_through() {
        let text = json!({"task": "math", "response": "7", "answer": "7", "step": 12, "meta": {"k": [1, 2]}});
        let item: Item = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(item.extra.get("step"), Some(&json!(12)));
        assert_eq!(serde_json::to_value(&item).unwrap(), text);
        let built = Item::math("7", "7")
            .field("step", 12)
            .field("meta", json!({"k": [1, 2]}));
        assert_eq!(built, item);
    }

    #[test]
    fn ids_are_strings_or_integers() {
        assert_eq!(serde_json::to_value(Id::from(5usize)).unwrap(), json!(5));
        assert_eq!(serde_json::to_value(Id::from("a")).unwrap(), json!("a"));
        assert_eq!(
            Id::from(u64::MAX),
            Id::Str("18446744073709551615".into()),
            "too large for the server's i64: sent as a string"
        );
        assert_eq!(serde_json::from_value::<Id>(json!(-3)).unwrap(), Id::Int(-3));
        assert_eq!(
            serde_json::from_value::<Id>(json!("-3")).unwrap(),
            Id::Str("-3".into())
        );
    }

    #[test]
    fn readme_result_examples_parse() {
        // README.md, "### Result" (every field present).
        let full = r#"{"id": "q1", "problem_id": "aime24-3", "reward": 1.0, "verdict": "correct", "passed": 1, "total": 1, "elapsed_ms": 0.011, "extracted": "\\dfrac{1}{2}", "error": "…"}"#;
        let r: GradeResult = serde_json::from_str(full).unwrap();
        assert_eq!(
            r,
            GradeResult {
                id: Some(Id::Str("q1".into())),
                problem_id: Some(Id::Str("aime24-3".into())),
                reward: 1.0,
                verdict: Verdict::Correct,
                passed: 1,
                total: 1,
                elapsed_ms: 0.011,
                extracted: Some("\\dfrac{1}{2}".into()),
                error: Some("…".into()),
            }
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::from_str::<Value>(full).unwrap()
        );

        // README.md, the two `curl` answers of `serve`.
        let math = r#"{"results":[{"id":1,"problem_id":null,"reward":1.0,"verdict":"correct","passed":1,"total":1,"elapsed_ms":0.05,"extracted":"\\frac{1}{2}"}]}"#;
        let code = r#"{"results":[{"id":null,"problem_id":null,"reward":1.0,"verdict":"correct","passed":1,"total":1,"elapsed_ms":4.1}]}"#;
        let math: RewardResponse = serde_json::from_str(math).unwrap();
        assert_eq!(math.results[0].id, Some(Id::Int(1)));
        assert_eq!(math.results[0].extracted.as_deref(), Some("\\frac{1}{2}"));
        let code: RewardResponse = serde_json::from_str(code).unwrap();
        assert_eq!(code.results[0].id, None);
        assert_eq!(code.results[0].error, None);
        assert_eq!(code.results[0].elapsed_ms, 4.1);
    }

    #[test]
    fn every_verdict_round_trips_and_unknown_ones_survive() {
        for v in Verdict::KNOWN {
            let wire = serde_json::to_value(&v).unwrap();
            assert_eq!(wire, json!(v.as_str()));
            assert_eq!(serde_json::from_value::<Verdict>(wire).unwrap(), v);
        }
        let names: Vec<&str> = Verdict::KNOWN.iter().map(Verdict::as_str).collect();
        // README.md: "`verdict` is one of ...".
        assert_eq!(
            names,
            [
                "correct",
                "wrong_answer",
                "no_answer",
                "time_limit",
                "memory_limit",
                "runtime_error",
                "output_limit",
                "invalid"
            ]
        );
        let r: GradeResult = serde_json::from_value(json!({
            "id": null, "problem_id": null, "reward": 0.0, "verdict": "sandbox_lost",
            "passed": 0, "total": 3, "elapsed_ms": 1.5, "new_field": true,
        }))
        .unwrap();
        assert_eq!(r.verdict, Verdict::Unknown("sandbox_lost".into()));
        assert_eq!(serde_json::to_value(&r.verdict).unwrap(), json!("sandbox_lost"));
        assert!(serde_json::from_value::<Verdict>(json!(3)).is_err());
    }

    #[test]
    fn request_envelope() {
        let items = [Item::math("1", "1"), Item::math("2", "3").id("b")];
        let borrowed = serde_json::to_value(RewardRequestRef { items: &items }).unwrap();
        let owned = serde_json::to_value(RewardRequest {
            items: items.to_vec(),
        })
        .unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(
            borrowed,
            json!({"items": [
                {"task": "math", "response": "1", "answer": "1"},
                {"id": "b", "task": "math", "response": "2", "answer": "3"},
            ]})
        );
        let err: ErrorBody = serde_json::from_str(r#"{"error": "overloaded"}"#).unwrap();
        assert_eq!(err.error, "overloaded");
    }
}
