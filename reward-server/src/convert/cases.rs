//! Test cases in the shapes datasets keep them, turned into our
//! [`CodeTests`]:
//!
//! - our own tests object (`{"type": "stdio" | "function" | "assert", ...}`);
//! - APPS / TACO `input_output`: `{"inputs": [...], "outputs": [...],
//!   "fn_name"?}`. Without `fn_name`, standard input: each input and output
//!   a string (or a list of lines, joined with `\n`, as the APPS runner
//!   does). With `fn_name`, a call: in APPS each input is the list of
//!   arguments and each output the return value (usually wrapped, `[v]`);
//!   in PRIME / verl each input is a string of JSON values, one argument
//!   per line, and each output a JSON string (`verl/utils/reward_score/
//!   prime_code/testing_util.py`, `run_test`);
//! - a list of cases `[{"input", "output", "testtype"?, "metadata"?:
//!   {"func_name"}, "fn_name"?}]`: LiveCodeBench, and DeepCoder's
//!   `lcbv5` / `codeforces` / `primeintellect` splits (`rllm/rewards/
//!   code_reward.py`).

use serde_json::Value;

use super::rows::kind;
use crate::api::{CodeTests, IoCase};
use crate::code::value;

/// Tests from any of the shapes above.
pub fn from_any(v: &Value) -> Result<CodeTests, String> {
    match v {
        Value::Object(m) if m.contains_key("type") => {
            let tests: CodeTests = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            check(&tests)?;
            Ok(tests)
        }
        Value::Object(m) if m.contains_key("inputs") || m.contains_key("outputs") => from_input_output(v),
        Value::Object(m) if m.contains_key("tests") => from_any(&unstring(&m["tests"])?),
        Value::Array(list) => from_case_list(list, None),
        other => Err(format!(
            "expected tests (an `input_output` object, a list of cases or a tests object), found {}",
            kind(other)
        )),
    }
}

/// A string holding JSON, decoded; any other value as it is.
pub fn unstring(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => serde_json::from_str(s).map_err(|e| format!("a string that is not JSON: {e}")),
        other => Ok(other.clone()),
    }
}

/// A string, or a list of strings joined with `\n`.
fn text(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(lines) => lines
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what} holds {}", kind(l)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|ls| ls.join("\n")),
        other => Err(format!("{what} is {}, expected a string", kind(other))),
    }
}

/// The APPS / PRIME `input_output` object.
pub fn from_input_output(v: &Value) -> Result<CodeTests, String> {
    let list = |key: &str| match v.get(key) {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!("`{key}` is {}, expected an array", kind(other))),
        None => Err(format!("missing `{key}`")),
    };
    let (inputs, outputs) = (list("inputs")?, list("outputs")?);
    if inputs.len() != outputs.len() {
        return Err(format!("{} inputs but {} outputs", inputs.len(), outputs.len()));
    }
    let fn_name = match v.get("fn_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("`fn_name` is {}, expected a string", kind(other))),
    };
    let mut cases = Vec::with_capacity(inputs.len());
    for (k, (input, output)) in inputs.iter().zip(outputs).enumerate() {
        let case = match &fn_name {
            None => IoCase {
                input: text(input, &format!("inputs[{k}]"))?,
                output: text(output, &format!("outputs[{k}]"))?,
            },
            Some(_) => match input {
                // PRIME / verl: JSON lines and JSON text.
                Value::String(s) => IoCase {
                    input: s.clone(),
                    output: match output {
                        Value::String(o) => o.clone(),
                        other => other.to_string(),
                    },
                },
                // APPS: the arguments and the value.
                Value::Array(args) => IoCase {
                    input: args.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
                    output: output.to_string(),
                },
                other => return Err(format!("inputs[{k}] is {}, expected arguments", kind(other))),
            },
        };
        cases.push(case);
    }
    let tests = match fn_name {
        None => CodeTests::Stdio { cases },
        Some(fn_name) => CodeTests::Function { fn_name, cases },
    };
    check(&tests)?;
    Ok(tests)
}

/// A list of `{input, output, testtype?, metadata?, fn_name?}` cases. With
/// `fn_name` (LiveCodeBench's `metadata.func_name`, which is what its runner
/// goes by) every case is a call; else each case's `testtype` (or its own
/// `fn_name`) says.
pub fn from_case_list(list: &[Value], fn_name: Option<&str>) -> Result<CodeTests, String> {
    let mut cases = Vec::with_capacity(list.len());
    let mut functional = fn_name.map(|_| true);
    let mut name = fn_name.map(str::to_string);
    for (k, case) in list.iter().enumerate() {
        let field = |key: &str| case.get(key).ok_or_else(|| format!("case {k}: missing `{key}`"));
        let is_fn = fn_name.is_some()
            || match case.get("testtype").and_then(Value::as_str) {
                Some("functional") => true,
                Some("stdin") | None => case.get("fn_name").is_some_and(|v| !v.is_null()),
                Some(other) => return Err(format!("case {k}: unknown testtype {other:?}")),
            };
        if *functional.get_or_insert(is_fn) != is_fn {
            return Err(format!("case {k}: functional and stdin cases are mixed"));
        }
        if is_fn && name.is_none() {
            name = case
                .get("fn_name")
                .or_else(|| case.get("metadata").and_then(|m| m.get("func_name")))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let as_text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        cases.push(IoCase {
            input: text(field("input")?, &format!("case {k} `input`"))?,
            output: as_text(field("output")?),
        });
    }
    let tests = if functional == Some(true) {
        let fn_name = name.ok_or("functional cases without a function name (`metadata.func_name`)")?;
        CodeTests::Function { fn_name, cases }
    } else {
        CodeTests::Stdio { cases }
    };
    check(&tests)?;
    Ok(tests)
}

/// What the grader would refuse, refused here with the case named: no
/// cases, and function cases whose arguments or value are not JSON.
pub fn check(tests: &CodeTests) -> Result<(), String> {
    match tests {
        CodeTests::Stdio { cases } | CodeTests::Function { cases, .. } if cases.is_empty() => {
            Err("no test cases".into())
        }
        CodeTests::Function { cases, .. } => {
            for (k, c) in cases.iter().enumerate() {
                for line in c.input.lines().filter(|l| !l.trim().is_empty()) {
                    value::parse(line).map_err(|e| format!("case {k}: an argument is not JSON: {e}"))?;
                }
                value::parse(&c.output).map_err(|e| format!("case {k}: the output is not JSON: {e}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn case(input: &str, output: &str) -> IoCase {
        IoCase {
            input: input.into(),
            output: output.into(),
        }
    }

    #[test]
    fn apps_stdio_and_line_lists() {
        let t = from_any(&json!({"inputs": ["1 2\n", ["3", "4"]], "outputs": ["3\n", ["7"]]})).unwrap();
        assert_eq!(
            t,
            CodeTests::Stdio {
                cases: vec![case("1 2\n", "3\n"), case("3\n4", "7")]
            }
        );
    }

    #[test]
    fn apps_and_prime_call_based_shapes() {
        // APPS: argument lists, wrapped outputs.
        let apps = from_any(&json!({"fn_name": "add", "inputs": [[1, [2, 3]]], "outputs": [[6]]})).unwrap();
        assert_eq!(
            apps,
            CodeTests::Function {
                fn_name: "add".into(),
                cases: vec![case("1\n[2,3]", "[6]")]
            }
        );
        // PRIME / verl: JSON lines and JSON text.
        let prime = from_any(&json!({"fn_name": "add", "inputs": ["1\n[2, 3]"], "outputs": ["6"]})).unwrap();
        assert_eq!(
            prime,
            CodeTests::Function {
                fn_name: "add".into(),
                cases: vec![case("1\n[2, 3]", "6")]
            }
        );
    }

    #[test]
    fn case_lists_of_lcb_and_deepcoder() {
        let lcb = json!([{"input": "[1]\n2", "output": "3", "testtype": "functional", "metadata": {"func_name": "f"}}]);
        assert_eq!(
            from_any(&lcb).unwrap(),
            CodeTests::Function {
                fn_name: "f".into(),
                cases: vec![case("[1]\n2", "3")]
            }
        );
        let cf = json!([{"input": "5\n", "output": "25\n"}]);
        assert_eq!(
            from_any(&cf).unwrap(),
            CodeTests::Stdio {
                cases: vec![case("5\n", "25\n")]
            }
        );
        let pi = json!([{"input": "2", "output": "4", "fn_name": "sq"}]);
        assert!(matches!(from_any(&pi).unwrap(), CodeTests::Function { fn_name, .. } if fn_name == "sq"));
    }

    #[test]
    fn bad_tests_name_the_problem() {
        let err = |v: Value| from_any(&v).unwrap_err();
        assert_eq!(
            err(json!({"inputs": ["1"], "outputs": []})),
            "1 inputs but 0 outputs"
        );
        assert_eq!(err(json!({"inputs": [], "outputs": []})), "no test cases");
        assert!(err(json!({"fn_name": "f", "inputs": ["[1,"], "outputs": ["1"]}))
            .contains("case 0: an argument is not JSON"));
        assert!(err(json!([{"input": "1", "output": "1", "testtype": "functional"}])).contains("func_name"));
        assert!(err(json!([{"input": "1", "output": "1", "testtype": "stdin"}, {"input": "1", "output": "1", "testtype": "functional", "metadata": {"func_name": "f"}}])).contains("mixed"));
        assert!(err(json!(3)).contains("found a number"));
        assert!(err(json!({"inputs": [3], "outputs": ["1"]})).contains("inputs[0] is a number"));
    }
}
