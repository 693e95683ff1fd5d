//! The wire types shared by the `grade` CLI and the HTTP API (`serve`): one
//! [`Item`] in, one [`GradeResult`] out, with a [`Verdict`]. They derive
//! `utoipa::ToSchema`, so the served OpenAPI document is generated from them.
//!
//! Unknown fields in an item are ignored, so trainers can pass their own
//! bookkeeping through. `id` and `problem_id` may be strings or integers and
//! are echoed back unchanged.

use serde::{Deserialize, Serialize};

use crate::code::CodeTests;
use crate::math::ExtractMode;

/// The outcome of grading one item.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The answer is right (reward 1).
    Correct,
    /// An answer was found and it is wrong.
    WrongAnswer,
    /// No answer could be found in the response.
    NoAnswer,
    /// A program ran past its CPU budget.
    TimeLimit,
    /// A program used more memory than allowed.
    MemoryLimit,
    /// A program crashed, raised, or did not compile.
    RuntimeError,
    /// A program printed more than allowed.
    OutputLimit,
    /// The item itself is malformed (bad JSON, missing fields, unusable gold answer).
    Invalid,
}

impl Verdict {
    /// Every verdict, in a fixed order (for histograms).
    pub const ALL: [Verdict; 8] = [
        Verdict::Correct,
        Verdict::WrongAnswer,
        Verdict::NoAnswer,
        Verdict::TimeLimit,
        Verdict::MemoryLimit,
        Verdict::RuntimeError,
        Verdict::OutputLimit,
        Verdict::Invalid,
    ];

    /// The wire name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::NoAnswer => "no_answer",
            Verdict::TimeLimit => "time_limit",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::RuntimeError => "runtime_error",
            Verdict::OutputLimit => "output_limit",
            Verdict::Invalid => "invalid",
        }
    }
}

/// An item or problem identifier: a string or an integer, echoed back as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Id {
    /// A string id.
    Str(String),
    /// An integer id.
    Int(i64),
}

/// Which verifier an item goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A final answer compared with `answer`.
    Math,
    /// A Python program run in the sandbox against `tests`.
    Code,
}

/// One thing to grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    /// Echoed in the result.
    #[serde(default)]
    pub id: Option<Id>,
    /// Groups samples of one problem for avg@n and pass@k.
    #[serde(default)]
    pub problem_id: Option<Id>,
    /// Which verifier to use.
    pub task: Task,
    /// The full model output.
    pub response: String,
    /// The gold answer (math items), possibly in `$…$` or `\boxed{}`, possibly several.
    #[serde(default)]
    pub answer: Option<String>,
    /// How the answer is found in `response` (math items); `lenient` by default.
    #[serde(default)]
    pub extract: Option<ExtractMode>,
    /// The tests the program must pass (code items): `stdio`, `function` or `assert`.
    #[serde(default)]
    pub tests: Option<CodeTests>,
    /// CPU budget per test case in seconds (code items); 6 by default.
    #[serde(default)]
    pub time_limit_s: Option<f64>,
    /// Memory limit in MiB (code items); 1024 by default.
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Run every case and report `passed`/`total` instead of stopping at the first failure.
    #[serde(default)]
    pub all_cases: bool,
}

/// The grade of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GradeResult {
    /// The item's `id`, or null.
    pub id: Option<Id>,
    /// The item's `problem_id`, or null.
    pub problem_id: Option<Id>,
    /// 1.0 when the verdict is `correct`, else 0.0.
    pub reward: f64,
    /// What was decided.
    pub verdict: Verdict,
    /// Test cases passed (math: 1 when correct, else 0).
    pub passed: u32,
    /// Test cases run (math: 1).
    pub total: u32,
    /// Time spent grading this item, in milliseconds.
    pub elapsed_ms: f64,
    /// The answer found in the response (math items), for debugging rejections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    /// Why the item is not `correct`, when there is more to say than the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
