//! What goes in: an [`Item`], with its [`Id`]s, [`Task`], [`ExtractMode`]
//! and, for code, its tests ([`CodeTests`]).
//!
//! The doc comments of the types and fields below are the descriptions of
//! the server's OpenAPI document (with the `openapi` feature): editing one
//! edits the served document.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An item or problem identifier: a string or an integer, echoed back as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Id {
    /// A string id.
    Str(String),
    /// An integer id.
    Int(i64),
}

/// Integers first, in numeric order, then strings, in byte order.
impl Ord for Id {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Id::Int(a), Id::Int(b)) => a.cmp(b),
            (Id::Str(a), Id::Str(b)) => a.cmp(b),
            (Id::Int(_), Id::Str(_)) => Ordering::Less,
            (Id::Str(_), Id::Int(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
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
/// is its decimal string, so it still comes back unchanged.
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A final answer compared with the gold `answer`.
    Math,
    /// A Python program run in the server's sandbox against `tests`.
    Code,
}

/// How the answer is found in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExtractMode {
    /// The default: the last `\boxed{}`, else an "answer is …" phrase, else
    /// the last math span, else the last number.
    #[default]
    Lenient,
    /// Only `\boxed{}` / `\fbox{}` counts (RL training mode).
    Boxed,
}

// `compare` and `value` are modules of reward-server (its `code::compare`
// and `code::value`); the text stays as it is because it is also the
// OpenAPI description.
/// The tests of a code item, by format (the `type` field).
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CodeTests {
    /// Standard input in, standard output compared ([`compare`]).
    Stdio {
        /// The cases, run in order.
        cases: Vec<IoCase>,
    },
    /// LiveCodeBench call-based: `Solution().fn_name(*args)` when the
    /// program defines a class `Solution`, else the top-level `fn_name`;
    /// the return value compared as JSON ([`value`]).
    Function {
        /// The function (or `Solution` method) to call.
        fn_name: String,
        /// `input`: the arguments, one JSON value per line; `output`: the
        /// expected return value as JSON.
        cases: Vec<IoCase>,
    },
    /// HumanEval `check` style: `code` runs after the program; correct when
    /// it finishes without an exception. Plain asserts
    /// (`assert f(1, 2) == 3`, HumanEval's `check(candidate)`) are decided
    /// by the server itself, outside the sandbox; the rest runs in the
    /// sandbox, in globals of its own that see the program's.
    Assert {
        /// The test code.
        code: String,
        /// Let the server decide plain asserts itself, outside the sandbox
        /// (true by default): the program's function is called in the
        /// sandbox, and its return value compared with the expected one
        /// outside, with Python's `==`. False runs the whole test code in
        /// the sandbox.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        host_compare: bool,
    },
}

/// How a program's output is compared with the expected output (code
/// items): our own rule, or the rule of a benchmark's runner. Each mode is
/// described, side by side, in the server's `docs/CODE.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CompareMode {
    /// Our rule: tokens per line; integers exact, other numbers within 1e-6.
    #[default]
    Default,
    /// LiveCodeBench's runner: lines compared after `strip()`, else as
    /// lists of `Decimal`s; return values with Python's `==`; its import
    /// preamble and `sys.set_int_max_str_digits(50000)`.
    Lcb,
    /// The APPS runner's leniencies (stripped lines, one float per line
    /// within numpy's `allclose`, lines as unordered sets of tokens); `[v]`
    /// and `v` both match an expected `[v]`.
    Apps,
    /// EvalPlus: Python's `==`, else `allclose(rtol=1e-7, atol)` for
    /// floats of the same type (`atol` 1e-6 when the item gives none and
    /// the expected value is floats).
    Evalplus,
}

/// What the `reward` of a result is (any item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RewardMode {
    /// 1.0 when the verdict is `correct`, else 0.0.
    #[default]
    Binary,
    /// `passed / total` over all the test cases (code items run every
    /// case, as with `all_cases`); verl's `continuous` scoring.
    Fraction,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// One case: an input and the expected output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IoCase {
    /// Standard input (`stdio`) or the arguments (`function`).
    pub input: String,
    /// Expected standard output (`stdio`) or return value (`function`).
    pub output: String,
}

/// One thing to grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Item {
    /// Echoed in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Groups samples of one problem for avg@n and pass@k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_id: Option<Id>,
    /// Which verifier to use.
    pub task: Task,
    /// The full model output.
    pub response: String,
    /// The gold answer (math items), possibly in `$…$` or `\boxed{}`, possibly several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// How the answer is found in `response` (math items); `lenient` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExtractMode>,
    /// The tests the program must pass (code items): `stdio`, `function` or `assert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<CodeTests>))]
    pub tests: Option<Value>,
    /// CPU budget per test case in seconds (code items); 6 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<f64>,
    /// Memory limit in MiB (code items); 1024 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
    /// Run every case and report `passed`/`total` instead of stopping at the first failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_cases: bool,
    /// CPU budget per test case in seconds of native CPython (code items),
    /// converted to fuel with the server's calibrated factor; instead of
    /// `time_limit_s`. The default for the benchmark `compare` modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_native_s: Option<f64>,
    /// How outputs are compared (code items); `default` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareMode>,
    /// Absolute tolerance for floats (`compare: "evalplus"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atol: Option<f64>,
    /// `binary` (default) or `fraction` (`passed / total`, every case run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardMode>,
    /// The whole `response` is the program (code items): no fenced block is
    /// looked for. For already extracted code and HumanEval completions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_code: bool,
    /// Any other field, kept and sent as is; the server ignores it. Not
    /// part of the OpenAPI schema. A key that repeats a named field (`"id"`,
    /// `"task"`, ...) would be sent twice; don't.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extra: Map<String, Value>,
}

/// Building items. The optional fields are set builder-style, and fields
/// left unset are not serialized, so the server's defaults apply.
impl Item {
    /// A math item: `response` is graded against the gold `answer`.
    ///
    /// ```
    /// use reward_api::{ExtractMode, Item};
    ///
    /// let item = Item::math("so $x = \\boxed{\\frac12}$", "0.5")
    ///     .id(7)
    ///     .problem_id("aime24-3")
    ///     .extract(ExtractMode::Boxed)
    ///     .field("step", 120); // passed through, ignored by the server
    /// assert_eq!(item.problem_id, Some("aime24-3".into()));
    /// assert_eq!(
    ///     serde_json::to_string(&item).unwrap(),
    ///     r#"{"id":7,"problem_id":"aime24-3","task":"math","response":"so $x = \\boxed{\\frac12}$","answer":"0.5","extract":"boxed","step":120}"#
    /// );
    /// ```
    pub fn math(response: impl Into<String>, answer: impl Into<String>) -> Item {
        Item::new(Task::Math, response.into(), Some(answer.into()), None)
    }

    /// A code item: the last fenced ```` ```python ```` block of `response`
    /// runs against `tests`, JSON in the form of [`CodeTests`]:
    /// `{"type": "stdio", "cases": [{"input": ..., "output": ...}]}`,
    /// `{"type": "function", "fn_name": ..., "cases": [...]}` or
    /// `{"type": "assert", "code": ...}`. They are sent as given (the server
    /// checks them), so a test format newer than this crate gets through.
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
            time_limit_native_s: None,
            compare: None,
            atol: None,
            reward: None,
            raw_code: false,
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
    pub fn extract(mut self, extract: ExtractMode) -> Item {
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

    /// Sets the CPU budget per test case in seconds of native CPython (code
    /// items).
    #[must_use]
    pub fn time_limit_native_s(mut self, seconds: f64) -> Item {
        self.time_limit_native_s = Some(seconds);
        self
    }

    /// Sets how outputs are compared (code items).
    #[must_use]
    pub fn compare(mut self, mode: CompareMode) -> Item {
        self.compare = Some(mode);
        self
    }

    /// Sets the absolute float tolerance of `compare: "evalplus"`.
    #[must_use]
    pub fn atol(mut self, atol: f64) -> Item {
        self.atol = Some(atol);
        self
    }

    /// Sets what the reward is: binary, or the fraction of cases passed.
    #[must_use]
    pub fn reward(mut self, mode: RewardMode) -> Item {
        self.reward = Some(mode);
        self
    }

    /// Takes the whole response as the program (code items).
    #[must_use]
    pub fn raw_code(mut self, raw: bool) -> Item {
        self.raw_code = raw;
        self
    }

    /// Adds a field to [`Item::extra`], passed through to the server.
    #[must_use]
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Item {
        self.extra.insert(key.into(), value.into());
        self
    }
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
                .extract(ExtractMode::Lenient)
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
    fn benchmark_options_round_trip() {
        let item = Item::code("print(1)", json!({"type": "stdio", "cases": []}))
            .time_limit_native_s(6.0)
            .compare(CompareMode::Lcb)
            .reward(RewardMode::Fraction)
            .raw_code(true);
        let wire = json!({
            "task": "code", "response": "print(1)", "tests": {"type": "stdio", "cases": []},
            "time_limit_native_s": 6.0, "compare": "lcb", "reward": "fraction", "raw_code": true,
        });
        assert_eq!(serde_json::to_value(&item).unwrap(), wire);
        assert_eq!(serde_json::from_value::<Item>(wire).unwrap(), item);
        let plus = Item::code("x", json!(null))
            .compare(CompareMode::Evalplus)
            .atol(1e-3);
        assert_eq!(serde_json::to_value(&plus).unwrap()["atol"], json!(0.001));
        let err = serde_json::from_value::<Item>(json!({"task": "code", "response": "x", "compare": "taco"}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown variant `taco`, expected one of `default`, `lcb`, `apps`, `evalplus`"
        );
        assert!(
            serde_json::from_value::<Item>(json!({"task": "math", "response": "x", "reward": "half"}))
                .is_err()
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
    fn defaults_and_nulls_of_a_minimal_item() {
        let item: Item = serde_json::from_value(json!({
            "id": null, "task": "code", "response": "x", "tests": null, "extract": null,
        }))
        .unwrap();
        assert_eq!(item, Item::new(Task::Code, "x".into(), None, None));
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"task": "code", "response": "x"})
        );
    }

    #[test]
    fn malformed_items_name_the_problem() {
        let err = |v: Value| serde_json::from_value::<Item>(v).unwrap_err().to_string();
        assert_eq!(err(json!({"response": "x"})), "missing field `task`");
        assert_eq!(err(json!({"task": "math"})), "missing field `response`");
        assert_eq!(
            err(json!({"task": "chess", "response": "x"})),
            "unknown variant `chess`, expected `math` or `code`"
        );
        assert_eq!(
            err(json!({"task": "math", "response": "x", "extract": "strict"})),
            "unknown variant `strict`, expected `lenient` or `boxed`"
        );
        assert_eq!(
            err(json!({"task": "math", "response": "x", "id": 1.5})),
            "data did not match any variant of untagged enum Id"
        );
        assert_eq!(
            err(json!({"task": "code", "response": "x", "memory_limit_mb": 1024.0})),
            "invalid type: floating point `1024.0`, expected u64"
        );
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
        assert!(serde_json::from_value::<Id>(json!(9223372036854775808u64)).is_err());
        assert!(serde_json::from_value::<Id>(json!(1.5)).is_err());
        assert_eq!(Id::Int(-3).to_string(), "-3");
        assert_eq!(Id::from("q1").to_string(), "q1");
    }

    #[test]
    fn ids_order_integers_before_strings() {
        let mut ids = vec![Id::from("b"), Id::from(10), Id::from("a"), Id::from(-1)];
        ids.sort();
        assert_eq!(ids, [Id::Int(-1), Id::Int(10), Id::from("a"), Id::from("b")]);
    }

    #[test]
    fn code_tests_in_every_format() {
        let cases = [
            (
                json!({"type": "stdio", "cases": [{"input": "21", "output": "42"}]}),
                CodeTests::Stdio {
                    cases: vec![IoCase {
                        input: "21".into(),
                        output: "42".into(),
                    }],
                },
            ),
            (
                json!({"type": "function", "fn_name": "f", "cases": [{"input": "1\n2", "output": "3"}]}),
                CodeTests::Function {
                    fn_name: "f".into(),
                    cases: vec![IoCase {
                        input: "1\n2".into(),
                        output: "3".into(),
                    }],
                },
            ),
            (
                json!({"type": "assert", "code": "assert f(1) == 1"}),
                CodeTests::Assert {
                    code: "assert f(1) == 1".into(),
                    host_compare: true,
                },
            ),
            (
                json!({"type": "assert", "code": "assert f(1) == 1", "host_compare": false}),
                CodeTests::Assert {
                    code: "assert f(1) == 1".into(),
                    host_compare: false,
                },
            ),
        ];
        for (wire, tests) in cases {
            assert_eq!(serde_json::from_value::<CodeTests>(wire.clone()).unwrap(), tests);
            assert_eq!(serde_json::to_value(&tests).unwrap(), wire);
        }
        let err = |v: Value| serde_json::from_value::<CodeTests>(v).unwrap_err().to_string();
        assert_eq!(err(json!({"cases": []})), "missing field `type`");
        assert_eq!(
            err(json!({"type": "checker"})),
            "unknown variant `checker`, expected one of `stdio`, `function`, `assert`"
        );
        assert_eq!(err(json!({"type": "stdio"})), "missing field `cases`");
        assert_eq!(
            err(json!("assert True")),
            "invalid type: string \"assert True\", expected internally tagged enum CodeTests"
        );
    }

    #[test]
    fn extract_modes() {
        assert_eq!(ExtractMode::default(), ExtractMode::Lenient);
        assert_eq!(serde_json::to_value(ExtractMode::Boxed).unwrap(), json!("boxed"));
        assert_eq!(serde_json::to_value(Task::Code).unwrap(), json!("code"));
    }
}
