//! The wire format of `reward-server`: one [`Item`] in, one [`GradeResult`]
//! out, with its [`Verdict`], and the bodies of `POST /v1/reward`
//! ([`RewardRequest`], [`RewardResponse`], [`ErrorBody`]).
//!
//! This crate is the one definition of that format. The server (its `grade`
//! command and `serve`), the Rust client (`reward-client`) and the trainer
//! all use these types, so they cannot drift apart. It depends on serde and
//! serde_json only: no wasmtime, no sandbox, no math verifier, so a trainer
//! that calls the server through the client does not build them. With the
//! `openapi` feature (the server's) the types also implement
//! `utoipa::ToSchema` and the served OpenAPI document is generated from
//! them; their doc comments are its descriptions.
//!
//! The types take what the server takes, and are lenient where a client
//! must be:
//!
//! - `id` and `problem_id` ([`Id`]) are strings or integers, echoed back
//!   unchanged.
//! - Item fields that are not set are not serialized, so the server's
//!   defaults apply; fields this crate does not know (a trainer's own
//!   bookkeeping) are kept in [`Item::extra`] and sent back as they came.
//!   The server ignores them.
//! - Code tests stay raw JSON in [`Item::tests`], sent as given; the server
//!   reads them as [`CodeTests`].
//! - A verdict name this version does not know reads as
//!   [`Verdict::Unknown`] instead of failing the whole response.
//!
//! ```
//! use reward_api::{GradeResult, Item, Verdict};
//!
//! let item = Item::math("so $x = \\boxed{\\frac12}$", "0.5").id("q1");
//! assert_eq!(
//!     serde_json::to_string(&item).unwrap(),
//!     r#"{"id":"q1","task":"math","response":"so $x = \\boxed{\\frac12}$","answer":"0.5"}"#
//! );
//! let result: GradeResult = serde_json::from_str(
//!     r#"{"id":"q1","problem_id":null,"reward":1.0,"verdict":"correct","passed":1,"total":1,"elapsed_ms":0.05}"#,
//! )
//! .unwrap();
//! assert_eq!(result.verdict, Verdict::Correct);
//! ```

mod item;
mod result;

use serde::{Deserialize, Serialize};

pub use item::{CodeTests, CompareMode, ExtractMode, Id, IoCase, Item, RewardMode, Task};
pub use result::{AssertReport, GradeResult, Verdict};

/// The request body: the items to grade, each as `reward-server grade`
/// reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RewardRequest {
    /// The items. A malformed item gets verdict `invalid`; the others are
    /// graded as usual.
    pub items: Vec<Item>,
}

/// The answer: one result per item, in the order of the items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RewardResponse {
    /// The results.
    pub results: Vec<GradeResult>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

/// The exact JSON of representative values: a change here is a change of
/// the wire format, which the server, its clients (Rust and Python) and
/// their users all see.
#[cfg(test)]
mod wire {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_json_is_pinned() {
        let tests = json!({"type": "stdio", "cases": [{"input": "21", "output": "42"}]});
        let code = Item::code("```python\nprint(int(input()) * 2)\n```", tests.clone())
            .id(3)
            .problem_id("p-7")
            .time_limit_s(2.5)
            .memory_limit_mb(256)
            .all_cases(true)
            .field("step", 12);
        // `tests` is raw JSON, sent as it is: its keys come in serde_json's
        // map order, so it is compared as a value.
        let sent_tests = serde_json::to_string(&code.tests).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&sent_tests).unwrap(),
            tests
        );
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            format!(
                concat!(
                    r#"{{"id":3,"problem_id":"p-7","task":"code","response":"```python\nprint(int(input()) * 2)\n```","#,
                    r#""tests":{},"time_limit_s":2.5,"memory_limit_mb":256,"all_cases":true,"step":12}}"#
                ),
                sent_tests
            )
        );
        let back: Item = serde_json::from_str(&serde_json::to_string(&code).unwrap()).unwrap();
        assert_eq!(back, code);

        let math = Item::math("so \\boxed{2}", "2").extract(ExtractMode::Boxed);
        assert_eq!(
            serde_json::to_string(&math).unwrap(),
            r#"{"task":"math","response":"so \\boxed{2}","answer":"2","extract":"boxed"}"#
        );

        // The typed tests, as the server reads them.
        let typed = CodeTests::Function {
            fn_name: "f".into(),
            cases: vec![IoCase {
                input: "1\n2".into(),
                output: "3".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            r#"{"type":"function","fn_name":"f","cases":[{"input":"1\n2","output":"3"}]}"#
        );
        assert_eq!(
            serde_json::to_string(&CodeTests::Assert {
                code: "assert f()".into(),
                host_compare: true,
            })
            .unwrap(),
            r#"{"type":"assert","code":"assert f()"}"#
        );
    }

    #[test]
    fn grade_result_json_is_pinned() {
        let r = GradeResult {
            id: Some(Id::Str("q1".into())),
            problem_id: None,
            reward: 0.0,
            verdict: Verdict::WrongAnswer,
            passed: 1,
            total: 2,
            elapsed_ms: 4.5,
            extracted: None,
            error: Some("case 2: wrong output".into()),
            asserts: None,
        };
        let text = concat!(
            r#"{"id":"q1","problem_id":null,"reward":0.0,"verdict":"wrong_answer","passed":1,"total":2,"#,
            r#""elapsed_ms":4.5,"error":"case 2: wrong output"}"#
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), text);
        assert_eq!(serde_json::from_str::<GradeResult>(text).unwrap(), r);
        let math = GradeResult {
            id: Some(Id::Int(1)),
            problem_id: Some(Id::Int(2)),
            reward: 1.0,
            verdict: Verdict::Correct,
            passed: 1,
            total: 1,
            elapsed_ms: 0.05,
            extracted: Some("\\frac{1}{2}".into()),
            error: None,
            asserts: None,
        };
        assert_eq!(
            serde_json::to_string(&math).unwrap(),
            r#"{"id":1,"problem_id":2,"reward":1.0,"verdict":"correct","passed":1,"total":1,"elapsed_ms":0.05,"extracted":"\\frac{1}{2}"}"#
        );
    }

    #[test]
    fn envelopes_are_pinned() {
        let request = RewardRequest {
            items: vec![Item::math("1", "1").id("a")],
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"items":[{"id":"a","task":"math","response":"1","answer":"1"}]}"#
        );
        let response: RewardResponse = serde_json::from_str(r#"{"results": []}"#).unwrap();
        assert!(response.results.is_empty());
        assert_eq!(
            serde_json::to_string(&ErrorBody {
                error: "overloaded".into()
            })
            .unwrap(),
            r#"{"error":"overloaded"}"#
        );
    }
}
