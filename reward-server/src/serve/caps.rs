//! The server's caps on what one request may ask for: items per request
//! (`--max-items`), test cases per code item (`--max-cases`; with
//! `all_cases` every one of them runs), and the `time_limit_s` and
//! `memory_limit_mb` an item may set (`--max-time-limit-s`,
//! `--max-memory-limit-mb`). A request over a cap is refused whole with a
//! 4xx naming the item and the flag, before any grading: the client's
//! configuration is wrong, and no item would be graded as it asked.

use axum::http::StatusCode;

use crate::api::{CodeTests, Item};
use crate::code::{MAX_MEMORY_LIMIT_MB, MAX_TIME_LIMIT_S};
use crate::grade::Input;

/// The caps, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Caps {
    pub(crate) max_items: usize,
    pub(crate) max_cases: usize,
    pub(crate) max_memory_limit_mb: u64,
    pub(crate) max_time_limit_s: f64,
}

/// A refusal: the status and the message.
pub(crate) type Refusal = (StatusCode, String);

impl Caps {
    /// The caps, or why a flag is out of range.
    pub(crate) fn new(
        max_items: usize,
        max_cases: usize,
        max_memory_limit_mb: u64,
        max_time_limit_s: f64,
    ) -> Result<Caps, String> {
        if !(1..=MAX_MEMORY_LIMIT_MB).contains(&max_memory_limit_mb) {
            return Err(format!(
                "--max-memory-limit-mb must be in [1, {MAX_MEMORY_LIMIT_MB}], got {max_memory_limit_mb}"
            ));
        }
        if !(max_time_limit_s > 0.0 && max_time_limit_s <= MAX_TIME_LIMIT_S) {
            return Err(format!(
                "--max-time-limit-s must be in (0, {MAX_TIME_LIMIT_S}], got {max_time_limit_s}"
            ));
        }
        Ok(Caps {
            max_items,
            max_cases,
            max_memory_limit_mb,
            max_time_limit_s,
        })
    }

    /// The refusal for a request of more than `max_items` items.
    pub(crate) fn too_many_items(&self) -> Refusal {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request has more than {} items (--max-items); send smaller batches",
                self.max_items
            ),
        )
    }

    /// Checks every well-formed item (malformed ones are graded `invalid`).
    pub(crate) fn check(&self, inputs: &[Input]) -> Result<(), Refusal> {
        for (k, input) in inputs.iter().enumerate() {
            if let Input::Item { item, tests } = input {
                self.check_item(k, item, tests.as_ref())?;
            }
        }
        Ok(())
    }

    fn check_item(&self, k: usize, item: &Item, tests: Option<&CodeTests>) -> Result<(), Refusal> {
        let cases = match tests {
            Some(CodeTests::Stdio { cases } | CodeTests::Function { cases, .. }) => cases.len(),
            Some(CodeTests::Assert { .. }) | None => 0,
        };
        if cases > self.max_cases {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "item {k} has {cases} test cases, over the limit of {} (--max-cases)",
                    self.max_cases
                ),
            ));
        }
        if let Some(t) = item.time_limit_s.filter(|&t| t > self.max_time_limit_s) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "item {k} asks for time_limit_s {t}, over this server's limit of {} (--max-time-limit-s)",
                    self.max_time_limit_s
                ),
            ));
        }
        if let Some(mb) = item.memory_limit_mb.filter(|&mb| mb > self.max_memory_limit_mb) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "item {k} asks for memory_limit_mb {mb}, over this server's limit of {} (--max-memory-limit-mb)",
                    self.max_memory_limit_mb
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Input {
        Input::from_line(json, 1)
    }

    #[test]
    fn each_cap_names_the_item_and_the_flag() {
        let caps = Caps::new(10, 2, 512, 5.0).unwrap();
        let ok = line(
            r#"{"task": "code", "response": "", "time_limit_s": 5, "memory_limit_mb": 512, "tests": {"type": "stdio", "cases": [{"input": "", "output": ""}, {"input": "", "output": ""}]}}"#,
        );
        assert_eq!(caps.check(std::slice::from_ref(&ok)), Ok(()));
        let cases = line(
            r#"{"task": "code", "response": "", "tests": {"type": "function", "fn_name": "f", "cases": [{"input": "", "output": ""}, {"input": "", "output": ""}, {"input": "", "output": ""}]}}"#,
        );
        let (status, why) = caps.check(&[ok.clone(), cases]).unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            why.starts_with("item 1 has 3 test cases") && why.contains("--max-cases"),
            "{why}"
        );
        let time = line(
            r#"{"task": "code", "response": "", "time_limit_s": 5.5, "tests": {"type": "assert", "code": ""}}"#,
        );
        let (status, why) = caps.check(&[time]).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            why.contains("time_limit_s 5.5") && why.contains("--max-time-limit-s"),
            "{why}"
        );
        let memory = line(
            r#"{"task": "code", "response": "", "memory_limit_mb": 513, "tests": {"type": "assert", "code": ""}}"#,
        );
        assert!(caps
            .check(&[memory])
            .unwrap_err()
            .1
            .contains("--max-memory-limit-mb"));
        // A malformed item is graded `invalid`, not refused.
        assert_eq!(caps.check(&[line("{")]), Ok(()));
        assert!(Caps::new(1, 1, 4097, 1.0).is_err());
        assert!(Caps::new(1, 1, 1, 61.0).is_err());
        assert!(caps.too_many_items().1.contains("--max-items"));
    }
}
