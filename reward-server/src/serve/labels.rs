//! How a trainer's `label` becomes an item, for the OpenRLHF and slime
//! routes ([`super::openrlhf`], [`super::slime`]): a small config, read
//! from the TOML file of `serve --label-config` (every key optional):
//!
//! ```toml
//! task = "auto"           # "math", "code", or "auto": code when the label holds tests
//! answer_key = "answer"   # a JSON-object label: the gold answer's key (math)
//! tests_key = "tests"     # a JSON-object label: the tests' key (code)
//! extract = "boxed"       # math items' `extract`
//! compare = "lcb"         # code items' `compare`
//! reward = "fraction"     # "binary" or "fraction"
//! time_limit_native_s = 6 # or time_limit_s; memory_limit_mb
//! ```
//!
//! A label is text (a math answer), or JSON text of an object: the gold
//! answer under `answer_key`, or tests under `tests_key` (or the object is
//! itself the tests: APPS `input_output`, a case list, our tests object;
//! see [`crate::convert::cases`]). An object may also carry any item option
//! (`compare`, `reward`, `extract`, `time_limit_s`, `time_limit_native_s`,
//! `memory_limit_mb`, `atol`), which wins over the config.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::{CompareMode, ExtractMode, Item, RewardMode};
use crate::convert::cases::{from_any, unstring};
use crate::convert::math::answer_text;

/// Which verifier labels go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelTask {
    /// Code when the label holds tests, else math.
    #[default]
    Auto,
    /// Always math: the label is the gold answer.
    Math,
    /// Always code: the label holds the tests.
    Code,
}

/// The mapping of labels to items.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelConfig {
    /// Which verifier.
    pub task: LabelTask,
    /// The gold answer's key in an object label.
    pub answer_key: String,
    /// The tests' key in an object label.
    pub tests_key: String,
    /// Math items' `extract`.
    pub extract: Option<ExtractMode>,
    /// Code items' `compare`.
    pub compare: Option<CompareMode>,
    /// Every item's `reward`.
    pub reward: Option<RewardMode>,
    /// Code items' `time_limit_s`.
    pub time_limit_s: Option<f64>,
    /// Code items' `time_limit_native_s`.
    pub time_limit_native_s: Option<f64>,
    /// Code items' `memory_limit_mb`.
    pub memory_limit_mb: Option<u64>,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            task: LabelTask::Auto,
            answer_key: "answer".into(),
            tests_key: "tests".into(),
            extract: None,
            compare: None,
            reward: None,
            time_limit_s: None,
            time_limit_native_s: None,
            memory_limit_mb: None,
        }
    }
}

/// Item options an object label may set.
const OPTION_KEYS: &[&str] = &[
    "compare",
    "reward",
    "extract",
    "time_limit_s",
    "time_limit_native_s",
    "memory_limit_mb",
    "atol",
];

impl LabelConfig {
    /// Reads the TOML file of `--label-config`.
    pub fn load(path: &Path) -> Result<LabelConfig, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The item grading `response` against `label`.
    pub fn item(&self, response: String, label: &Value) -> Result<Item, String> {
        let object: Option<Map<String, Value>> = match label {
            Value::Object(m) => Some(m.clone()),
            Value::String(s) if s.trim_start().starts_with('{') => match serde_json::from_str(s) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            },
            _ => None,
        };
        let holds_tests = |m: &Map<String, Value>| {
            m.contains_key(&self.tests_key) || m.contains_key("type") || m.contains_key("inputs")
        };
        let code = match self.task {
            LabelTask::Math => false,
            LabelTask::Code => true,
            LabelTask::Auto => object.as_ref().is_some_and(holds_tests),
        };
        let mut item = if code {
            let m = object
                .as_ref()
                .ok_or("a code label must be a JSON object holding tests")?;
            let tests = match m.get(&self.tests_key) {
                Some(t) => unstring(t).and_then(|v| from_any(&v)),
                None => from_any(&Value::Object(m.clone())),
            }
            .map_err(|e| format!("the label's tests: {e}"))?;
            let mut item = Item::code(response, serde_json::to_value(tests).map_err(|e| e.to_string())?);
            item.compare = self.compare;
            item.time_limit_s = self.time_limit_s;
            item.time_limit_native_s = self.time_limit_native_s;
            item.memory_limit_mb = self.memory_limit_mb;
            item
        } else {
            let answer = match (&object, label) {
                (Some(m), _) => {
                    let a = m
                        .get(&self.answer_key)
                        .ok_or_else(|| format!("the label has no `{}`", self.answer_key))?;
                    answer_text(a).map_err(|e| format!("the label's `{}` {e}", self.answer_key))?
                }
                (None, Value::String(s)) => s.clone(),
                (None, Value::Number(n)) => n.to_string(),
                (None, Value::Null) => return Err("no label (the gold answer)".into()),
                (None, other) => answer_text(other).map_err(|e| format!("the label {e}"))?,
            };
            let mut item = Item::math(response, answer);
            item.extract = self.extract;
            item
        };
        item.reward = self.reward;
        if let Some(m) = &object {
            let mut with = serde_json::to_value(&item).map_err(|e| e.to_string())?;
            for key in OPTION_KEYS {
                if let Some(v) = m.get(*key) {
                    with[*key] = v.clone();
                }
            }
            item = serde_json::from_value(with).map_err(|e| format!("the label's options: {e}"))?;
        }
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Task;
    use serde_json::json;

    #[test]
    fn labels_to_items() {
        let c = LabelConfig::default();
        let math = c.item("so \\boxed{4}".into(), &json!("4")).unwrap();
        assert_eq!((math.task, math.answer.as_deref()), (Task::Math, Some("4")));
        let obj = c
            .item("r".into(), &json!("{\"answer\": 12, \"extract\": \"boxed\"}"))
            .unwrap();
        assert_eq!(
            (obj.answer.as_deref(), obj.extract),
            (Some("12"), Some(ExtractMode::Boxed))
        );
        let code = c
            .item(
                "r".into(),
                &json!("{\"inputs\": [\"1\"], \"outputs\": [\"2\"], \"compare\": \"lcb\"}"),
            )
            .unwrap();
        assert_eq!(code.task, Task::Code);
        assert_eq!(code.compare, Some(CompareMode::Lcb));
        assert_eq!(code.tests.unwrap()["type"], "stdio");
        let nested = c
            .item(
                "r".into(),
                &json!({"tests": "{\"type\": \"assert\", \"code\": \"assert f()\"}"}),
            )
            .unwrap();
        assert_eq!(nested.tests.unwrap()["type"], "assert");
        assert!(c.item("r".into(), &Value::Null).unwrap_err().contains("no label"));
        let forced = LabelConfig {
            task: LabelTask::Code,
            ..LabelConfig::default()
        };
        assert!(forced
            .item("r".into(), &json!("7"))
            .unwrap_err()
            .contains("JSON object"));
    }

    #[test]
    fn config_files_are_checked() {
        let c: LabelConfig =
            toml::from_str("task = \"math\"\nextract = \"boxed\"\nreward = \"fraction\"").unwrap();
        assert_eq!(
            (c.task, c.extract, c.reward),
            (
                LabelTask::Math,
                Some(ExtractMode::Boxed),
                Some(RewardMode::Fraction)
            )
        );
        assert!(toml::from_str::<LabelConfig>("tasks = \"math\"")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
    }
}
