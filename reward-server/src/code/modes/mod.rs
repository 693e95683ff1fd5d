//! The benchmark comparison modes (`"compare"` on a code item), beside our
//! own rule ([`super::compare`] for standard output, [`super::value`] for
//! return values).
//!
//! Each mode reproduces what one benchmark's runner accepts, so that a
//! score computed here matches the published one:
//!
//! - [`lcb`]: LiveCodeBench (`lcb_runner/evaluation/testing_util.py`,
//!   `compute_code_generation_metrics.py`);
//! - [`apps`]: APPS (`hendrycks/apps` `eval/testing_util.py`);
//! - [`evalplus`]: EvalPlus (`evalplus/eval/__init__.py`, `unsafe_execute`).
//!
//! A mode decides three things: the lines put before the program (the
//! runner's import preamble), whether a standard output matches, and
//! whether a return value matches. The rules are listed side by side in
//! docs/CODE.md. [`python`] holds the Python semantics they share.

pub mod apps;
pub mod evalplus;
pub mod lcb;
pub(crate) mod python;

use serde::{Deserialize, Serialize};

use super::{compare, value};
pub use crate::api::CompareMode;

/// How an item's program is taken and judged, beyond its tests and limits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Rules {
    /// The comparison mode.
    #[serde(default)]
    pub compare: CompareMode,
    /// `compare: "evalplus"`: the absolute tolerance (0 when not given).
    #[serde(default)]
    pub atol: Option<f64>,
    /// The whole response is the program (no fenced block is looked for).
    #[serde(default)]
    pub raw_code: bool,
}

impl Rules {
    /// Checks the combination: `atol` belongs to `evalplus` and must be a
    /// finite number ≥ 0.
    pub fn check(&self) -> Result<(), String> {
        match self.atol {
            Some(_) if self.compare != CompareMode::Evalplus => {
                Err("`atol` applies only to `\"compare\": \"evalplus\"`".into())
            }
            Some(a) if !(a.is_finite() && a >= 0.0) => {
                Err(format!("`atol` must be a finite number >= 0, got {a}"))
            }
            _ => Ok(()),
        }
    }

    /// The lines the benchmark's runner puts before the program, if any.
    pub fn preamble(&self) -> &'static str {
        match self.compare {
            CompareMode::Default | CompareMode::Evalplus => "",
            CompareMode::Lcb => lcb::PREAMBLE,
            CompareMode::Apps => apps::PREAMBLE,
        }
    }

    /// True when the program's standard output `actual` matches `expected`.
    pub fn outputs_match(&self, actual: &str, expected: &str) -> bool {
        match self.compare {
            CompareMode::Default | CompareMode::Evalplus => compare::outputs_match(actual, expected),
            CompareMode::Lcb => lcb::outputs_match(actual, expected),
            CompareMode::Apps => apps::outputs_match(actual, expected),
        }
    }

    /// True when a function's return value matches the expected one.
    pub fn values_match(&self, actual: &value::Value, expected: &value::Value) -> bool {
        match self.compare {
            CompareMode::Default => value::values_match(actual, expected),
            CompareMode::Lcb => python::values_equal(actual, expected),
            CompareMode::Apps => apps::values_match(actual, expected),
            CompareMode::Evalplus => evalplus::values_match(actual, expected, self.atol.unwrap_or(0.0)),
        }
    }

    /// True when a stdio program that exits with a non-zero status (or
    /// `sys.exit(...)`) still has its output compared: LiveCodeBench and
    /// APPS run the program as a function and swallow `SystemExit`.
    pub fn compares_after_exit(&self) -> bool {
        matches!(self.compare, CompareMode::Lcb | CompareMode::Apps)
    }
}

/// The default CPU budget of a mode, in seconds of native CPython: the
/// benchmark's own per-case limit (`None` for our default mode, whose
/// budget is counted in fuel seconds).
pub fn native_time_limit(mode: CompareMode) -> Option<f64> {
    match mode {
        CompareMode::Default => None,
        // lcb_runner: `timeout=6` per test case.
        CompareMode::Lcb => Some(6.0),
        // hendrycks/apps eval/testing_util.py: `timeout = 4`.
        CompareMode::Apps => Some(4.0),
        // evalplus/config.py: DEFAULT_MIN_TIME_LIMIT = 4.0 (the floor of
        // max(4, 4 × the reference solution's time)).
        CompareMode::Evalplus => Some(4.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CodeTests, IoCase, Verdict};
    use crate::code::{item_limits, verify_with};
    use crate::sandbox::test_sandbox;

    fn stdio(input: &str, output: &str) -> CodeTests {
        CodeTests::Stdio {
            cases: vec![IoCase {
                input: input.into(),
                output: output.into(),
            }],
        }
    }

    fn verdict(program: &str, tests: &CodeTests, rules: Rules) -> Option<Verdict> {
        let sandbox = test_sandbox()?;
        let limits = item_limits(Some(2.0), Some(256)).unwrap();
        let response = format!("```python\n{program}\n```");
        Some(verify_with(sandbox, &response, tests, &limits, false, &rules).verdict)
    }

    fn mode(compare: CompareMode) -> Rules {
        Rules {
            compare,
            ..Rules::default()
        }
    }

    /// LiveCodeBench's evaluator raises the digit limit and imports
    /// `math`, `functools`, ... with `*`; our default does neither.
    #[test]
    fn the_lcb_preamble_is_in_effect() {
        let big = stdio("", &"9".repeat(5000));
        let p = "print(10**5000 - 1)";
        let Some(default) = verdict(p, &big, Rules::default()) else {
            return;
        };
        assert_eq!(
            default,
            Verdict::RuntimeError,
            "4300 digits is CPython's default limit"
        );
        assert_eq!(verdict(p, &big, mode(CompareMode::Lcb)), Some(Verdict::Correct));
        let names = stdio("", "2 6");
        let p = "print(gcd(4, 6), reduce(lambda a, b: a * b, [1, 2, 3]))";
        assert_eq!(verdict(p, &names, Rules::default()), Some(Verdict::RuntimeError));
        assert_eq!(verdict(p, &names, mode(CompareMode::Lcb)), Some(Verdict::Correct));
        assert_eq!(
            verdict(
                "print(sqrt(4) and gcd(4, 6) * 0 + 2, 6)",
                &names,
                mode(CompareMode::Apps)
            ),
            Some(Verdict::Correct)
        );
    }

    #[test]
    fn benchmark_modes_compare_output_after_sys_exit() {
        let t = stdio("", "3");
        let p = "print(3)\nimport sys\nsys.exit(1)";
        let Some(default) = verdict(p, &t, Rules::default()) else {
            return;
        };
        assert_eq!(default, Verdict::RuntimeError);
        assert_eq!(verdict(p, &t, mode(CompareMode::Lcb)), Some(Verdict::Correct));
        assert_eq!(verdict(p, &t, mode(CompareMode::Apps)), Some(Verdict::Correct));
        assert_eq!(
            verdict("print(4)\nraise SystemExit(1)", &t, mode(CompareMode::Lcb)),
            Some(Verdict::WrongAnswer)
        );
    }

    #[test]
    fn raw_code_takes_the_whole_response() {
        let Some(sandbox) = test_sandbox() else { return };
        let t = stdio("", "2");
        let limits = item_limits(Some(2.0), Some(256)).unwrap();
        let raw = Rules {
            raw_code: true,
            ..Rules::default()
        };
        assert_eq!(
            verify_with(sandbox, "print(2)", &t, &limits, false, &raw).verdict,
            Verdict::Correct
        );
        assert_eq!(
            verify_with(sandbox, "print(2)", &t, &limits, false, &Rules::default()).verdict,
            Verdict::NoAnswer
        );
    }

    #[test]
    fn atol_belongs_to_evalplus() {
        let bad = Rules {
            atol: Some(1e-3),
            ..Rules::default()
        };
        assert!(bad.check().unwrap_err().contains("evalplus"));
        let negative = Rules {
            compare: CompareMode::Evalplus,
            atol: Some(-1.0),
            ..Rules::default()
        };
        assert!(negative.check().is_err());
        assert!(Rules {
            compare: CompareMode::Evalplus,
            atol: Some(1e-3),
            ..Rules::default()
        }
        .check()
        .is_ok());
    }
}
