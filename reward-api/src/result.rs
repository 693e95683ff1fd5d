//! What comes out: a [`GradeResult`] per item, with its [`Verdict`].
//!
//! As for the items, the doc comments of [`GradeResult`] and its fields are
//! the descriptions of the server's OpenAPI document.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Id;

/// The outcome of grading one item.
///
/// Serialized as its snake_case wire name. A name this version does not
/// know deserializes to [`Verdict::Unknown`], so a newer server does not
/// break an older client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The answer is right (reward 1.0).
    Correct,
    /// An answer was found and it is wrong.
    WrongAnswer,
    /// No answer could be found in the response (code: no fenced code block).
    NoAnswer,
    /// A program ran past its CPU budget.
    TimeLimit,
    /// A program used more memory than allowed.
    MemoryLimit,
    /// A program crashed, raised, or did not compile.
    RuntimeError,
    /// A program printed more than allowed.
    OutputLimit,
    /// The item itself is malformed (bad JSON, missing fields, unusable gold
    /// answer); the result's `error` says why.
    Invalid,
    /// A verdict this version does not know, with its wire name. The server
    /// never gives one; a client gets one from a newer server.
    Unknown(String),
}

impl Verdict {
    /// The eight verdicts of the current server, in a fixed order (for
    /// histograms).
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

    /// The same list as [`Verdict::KNOWN`], by the name the server's code
    /// used for it.
    pub const ALL: [Verdict; 8] = Verdict::KNOWN;

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

/// The schema a derive would give the enum without [`Verdict::Unknown`]:
/// a string, one of the known names.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Verdict {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("The outcome of grading one item."))
            .enum_values(Some(Verdict::KNOWN.iter().map(Verdict::as_str)))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Verdict {
    fn name() -> std::borrow::Cow<'static, str> {
        "Verdict".into()
    }
}

/// The grade of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GradeResult {
    /// The item's `id`, or null.
    #[serde(default)]
    pub id: Option<Id>,
    /// The item's `problem_id`, or null.
    #[serde(default)]
    pub problem_id: Option<Id>,
    /// 1.0 when the verdict is `correct`, else 0.0; with `"reward":
    /// "fraction"`, `passed / total`.
    pub reward: f64,
    /// What was decided.
    pub verdict: Verdict,
    // `passed`, `total` and `elapsed_ms` default to 0 when read, so a
    // server that leaves them out can be read; the server always sends them,
    // and the schema says so.
    /// Test cases passed (math: 1 when correct, else 0).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub passed: u32,
    /// Test cases run (math: 1).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub total: u32,
    /// Time spent grading this item, in milliseconds.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub elapsed_ms: f64,
    /// The answer found in the response (math items), for debugging rejections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    /// Why the item is not `correct`, when there is more to say than the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Assert items: which asserts the server compared itself, outside the
    /// sandbox, and which test code ran inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asserts: Option<AssertReport>,
}

/// How an assert item's test code was run, by line of the test code
/// (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssertReport {
    /// The asserts the server decided itself: it called the program's
    /// function in the sandbox and compared the value with the expected one
    /// outside it, where the program cannot reach.
    pub host_compared: Vec<u32>,
    /// The first line of each statement that ran as code inside the
    /// sandbox, in an interpreter of its own where the program's functions
    /// are called with data.
    pub in_sandbox: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RewardResponse;
    use serde_json::{json, Value};

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
                asserts: None,
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
            assert_eq!(Verdict::from_name(v.as_str()), v);
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
        assert_eq!(Verdict::ALL, Verdict::KNOWN);
        let r: GradeResult = serde_json::from_value(json!({
            "id": null, "problem_id": null, "reward": 0.0, "verdict": "sandbox_lost",
            "passed": 0, "total": 3, "elapsed_ms": 1.5, "new_field": true,
        }))
        .unwrap();
        assert_eq!(r.verdict, Verdict::Unknown("sandbox_lost".into()));
        assert_eq!(serde_json::to_value(&r.verdict).unwrap(), json!("sandbox_lost"));
        assert_eq!(r.verdict.to_string(), "sandbox_lost");
        assert!(!r.verdict.is_correct() && Verdict::Correct.is_correct());
        assert!(serde_json::from_value::<Verdict>(json!(3)).is_err());
    }

    #[test]
    fn verdicts_order_as_listed_unknown_last() {
        let mut vs = vec![
            Verdict::Unknown("a".into()),
            Verdict::Invalid,
            Verdict::WrongAnswer,
            Verdict::Correct,
        ];
        vs.sort();
        assert_eq!(
            vs,
            [
                Verdict::Correct,
                Verdict::WrongAnswer,
                Verdict::Invalid,
                Verdict::Unknown("a".into())
            ]
        );
    }

    #[test]
    fn counts_and_time_default_to_zero_when_read() {
        let r: GradeResult = serde_json::from_value(json!({"reward": 0.0, "verdict": "invalid"})).unwrap();
        assert_eq!((r.id, r.problem_id, r.passed, r.total), (None, None, 0, 0));
        assert_eq!(r.elapsed_ms, 0.0);
        assert!(serde_json::from_value::<GradeResult>(json!({"verdict": "invalid"})).is_err());
        assert!(serde_json::from_value::<GradeResult>(json!({"reward": 0.0})).is_err());
    }
}
