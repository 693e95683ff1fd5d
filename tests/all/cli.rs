//! `reward-server grade`: files and stdin, output order, summaries, errors.

use crate::util::{have_guest, jsonl, root, run};

const ITEMS: &str = concat!(
    r#"{"id": "a", "problem_id": "p1", "task": "math", "response": "so \\boxed{\\frac12}", "answer": "0.5"}"#,
    "\n",
    r#"{"id": "b", "problem_id": "p1", "task": "math", "response": "so \\boxed{2}", "answer": "0.5"}"#,
    "\n",
    "\n",
    r#"{"id": "c", "problem_id": "p2", "task": "math", "response": "The answer is 7.", "answer": "$7$"}"#,
    "\n",
    r#"{"id": "d", "problem_id": "p2", "task": "math", "response": "The answer is 7.", "answer": "7", "extract": "boxed"}"#,
    "\n",
    "{broken\n",
    r#"{"id": 9, "problem_id": "p3", "task": "math", "response": "nothing here", "answer": "1"}"#,
    "\n",
);

#[test]
fn grades_stdin_in_order_with_one_result_per_item() {
    let out = run(&["grade", "-"], ITEMS);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results = jsonl(&out.stdout);
    let ids: Vec<_> = results.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(
        ids,
        serde_json::json!(["a", "b", "c", "d", null, 9])
            .as_array()
            .unwrap()
            .clone()
    );
    let verdicts: Vec<_> = results.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(
        verdicts,
        [
            "correct",
            "wrong_answer",
            "correct",
            "no_answer",
            "invalid",
            "no_answer"
        ]
    );
    assert_eq!(results[0]["reward"], 1.0);
    assert_eq!(results[1]["reward"], 0.0);
    assert_eq!(
        (results[0]["passed"].as_u64(), results[0]["total"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(results[0]["elapsed_ms"].as_f64().unwrap() >= 0.0);
    // The malformed line is reported with its line number (blank lines count).
    let err = results[4]["error"].as_str().unwrap();
    assert!(err.starts_with("line 6: not valid JSON"), "{err}");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("graded 6 items: 2 correct"), "{summary}");
    assert!(summary.contains("no_answer"), "{summary}");
    assert!(summary.contains("avg@n"), "{summary}");
}

#[test]
fn writes_output_and_summary_json_with_pass_at_k() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let summary = dir.path().join("summary.json");
    std::fs::write(&input, ITEMS).unwrap();
    let out = run(
        &[
            "grade",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
            "--k",
            "1,2",
            "--threads",
            "2",
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(jsonl(&std::fs::read(&output).unwrap()).len(), 6);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["count"], 6);
    assert_eq!(s["correct"], 2);
    assert_eq!(s["problems"], 3);
    // p1: 1 of 2, p2: 1 of 2, p3: 0 of 1.
    assert!((s["avg_at_n"].as_f64().unwrap() - (0.5 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
    assert_eq!(s["pass_at_k"][0]["k"], 1);
    assert!((s["pass_at_k"][0]["value"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    // pass@2 only over p1 and p2, each certain to include its correct sample.
    assert_eq!(s["pass_at_k"][1]["problems"], 2);
    assert_eq!(s["pass_at_k"][1]["value"], 1.0);
    assert_eq!(s["verdicts"]["invalid"], 1);
}

#[test]
fn grades_the_shipped_testcases_file() {
    let file = root().join("testcases/math/fractions.jsonl");
    let out = run(&["grade", file.to_str().unwrap(), "--no-progress"], "");
    assert!(out.status.success());
    let lines = std::fs::read_to_string(&file).unwrap();
    let expected: Vec<serde_json::Value> = jsonl(lines.as_bytes());
    let results = jsonl(&out.stdout);
    assert_eq!(results.len(), expected.len());
    for (r, e) in results.iter().zip(&expected) {
        assert_eq!(r["id"], e["id"]);
        assert_eq!(r["verdict"], e["expected"]["verdict"], "{}", e["id"]);
    }
}

#[test]
fn bad_usage_and_missing_files_fail_clearly() {
    let out = run(&["grade", "/nonexistent/items.jsonl"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/items.jsonl"), "{err}");

    let out = run(&["grade", "-", "--k", "0"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--k values must be at least 1"));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("items.jsonl");
    std::fs::write(&f, ITEMS).unwrap();
    let out = run(&["grade", f.to_str().unwrap(), "-o", f.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        ITEMS,
        "the input must be untouched"
    );

    let out = run(&["grade", "--help"], "");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--output", "--summary-json", "--k", "--threads"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn invalid_utf8_line_is_one_invalid_result() {
    let mut bytes =
        b"{\"id\": \"x\", \"task\": \"math\", \"response\": \"\\\\boxed{1}\", \"answer\": \"1\"}\n".to_vec();
    bytes.extend_from_slice(b"\xff\xfe garbage\n");
    let mut child = crate::util::bin()
        .args(["grade", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let results = jsonl(&out.stdout);
    assert_eq!(results[0]["verdict"], "correct");
    assert_eq!(results[1]["verdict"], "invalid");
    assert!(results[1]["error"]
        .as_str()
        .unwrap()
        .contains("line 2: not valid UTF-8"));
}

#[test]
fn grades_code_items_in_all_three_formats() {
    if !have_guest() {
        return;
    }
    let tests = r#"{"type": "stdio", "cases": [{"input": "2 3\n", "output": "5\n"}, {"input": "-1 1\n", "output": "0"}]}"#;
    let item = |id: &str, code: &str| {
        let response = format!("Here is my solution:\n```python\n{code}\n```");
        format!(
            "{{\"id\": \"{id}\", \"task\": \"code\", \"response\": {}, \"tests\": {tests}, \"time_limit_s\": 2}}\n",
            serde_json::to_string(&response).unwrap()
        )
    };
    let input = [
        item("ok", "a, b = map(int, input().split())\nprint(a + b)"),
        item("wrong", "a, b = map(int, input().split())\nprint(abs(a + b) + 1 if a < 0 else a + b)"),
        item("crash", "print(undefined_name)"),
        r#"{"id": "fmt", "task": "code", "response": "x", "tests": {"type": "interactive", "cases": []}}"#.to_string() + "\n",
        r#"{"id": "fn", "task": "code", "response": "```python\nclass Solution:\n    def add(self, a, b):\n        return a + b\n```", "tests": {"type": "function", "fn_name": "add", "cases": [{"input": "1\n2", "output": "3"}, {"input": "[1]\n[2]", "output": "[1, 2]"}]}}"#.to_string() + "\n",
        r#"{"id": "assert", "task": "code", "response": "```python\ndef add(a, b):\n    return a - b\n```", "tests": {"type": "assert", "code": "assert add(2, 2) == 4"}}"#.to_string() + "\n",
    ]
    .concat();
    let out = run(&["grade", "-"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results = jsonl(&out.stdout);
    let got: Vec<_> = results
        .iter()
        .map(|r| {
            (
                r["verdict"].as_str().unwrap(),
                r["passed"].as_u64().unwrap(),
                r["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("correct", 2, 2),
            ("wrong_answer", 1, 2),
            ("runtime_error", 0, 2),
            ("invalid", 0, 1),
            ("correct", 2, 2),
            ("wrong_answer", 0, 1)
        ]
    );
    assert_eq!(results[0]["reward"], 1.0);
    assert!(results[2]["error"].as_str().unwrap().contains("NameError"));
    assert!(results[3]["error"]
        .as_str()
        .unwrap()
        .contains("unknown variant `interactive`"));
}

/// Code items graded in worker processes (the default) and in-process get
/// the same results.
#[test]
fn worker_processes_and_in_process_grading_agree() {
    if !have_guest() {
        return;
    }
    let mut input = String::new();
    for (k, code) in [
        "print(int(input()) * 2)",
        "print(int(input()) + 2)",
        "import sys; sys.exit(3)",
        "while True: pass",
        "print(",
    ]
    .iter()
    .enumerate()
    {
        let item = serde_json::json!({
            "id": k, "task": "code", "time_limit_s": 0.5,
            "response": format!("```python\n{code}\n```"),
            "tests": {"type": "stdio", "cases": [{"input": "2\n", "output": "4"}, {"input": "5\n", "output": "10"}]},
        });
        input.push_str(&format!("{item}\n"));
    }
    let strip = |out: &std::process::Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        jsonl(&out.stdout)
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("elapsed_ms");
                r
            })
            .collect()
    };
    let workers = strip(&run(&["grade", "-", "--threads", "2"], &input));
    let in_process = strip(&run(&["grade", "-", "--threads", "2", "--in-process"], &input));
    assert_eq!(workers, in_process);
    let verdicts: Vec<&str> = workers.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(
        verdicts,
        [
            "correct",
            "wrong_answer",
            "runtime_error",
            "time_limit",
            "runtime_error"
        ]
    );
}
