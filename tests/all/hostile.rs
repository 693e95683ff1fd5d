//! The hostile-submission suite (`testcases/hostile/`): programs written to
//! get `correct` without solving the task, each beside an honest program
//! that solves it with the same means. Every hack must get the verdict its
//! `case.json` gives (never `correct`), and every honest program `correct`,
//! through `reward-server grade`, through `POST /v1/reward` on a real
//! server, and, for the stdio ones, through SandboxFusion's `/run_code`
//! scored as verl scores it. clients/python/tests runs the same suite
//! through the Python client.

use std::path::Path;

use serde_json::{json, Value};

use crate::http::{post_json, Server};
use crate::util::{have_guest, jsonl, root, run};

/// One hack and its honest counterpart.
struct Case {
    name: String,
    tests: Value,
    time_limit_s: f64,
    expected: String,
    /// Why `/run_code`, which runs one case, cannot show this hack.
    run_code_skip: Option<String>,
    hack: String,
    honest: String,
}

fn suite() -> Vec<Case> {
    let dir = root().join("testcases/hostile");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let read = |name: &str, file: &str| {
        std::fs::read_to_string(Path::new(&dir).join(name).join(file))
            .unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
    };
    let cases: Vec<Case> = names
        .iter()
        .map(|name| {
            let meta: Value =
                serde_json::from_str(&read(name, "case.json")).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = meta["expected"].as_str().expect("expected").to_string();
            assert_ne!(expected, "correct", "{name}: a hack is never expected to pass");
            assert!(
                meta["hack"].is_string() && meta["why"].is_string(),
                "{name}: say what it tries and why it fails"
            );
            Case {
                name: name.clone(),
                tests: meta["tests"].clone(),
                time_limit_s: meta["time_limit_s"].as_f64().unwrap_or(6.0),
                expected,
                run_code_skip: meta["run_code_skip"].as_str().map(str::to_string),
                hack: read(name, "hack.py"),
                honest: read(name, "honest.py"),
            }
        })
        .collect();
    assert!(cases.len() >= 30, "only {} hostile programs", cases.len());
    for format in ["stdio", "function", "assert"] {
        assert!(
            cases.iter().filter(|c| c.tests["type"] == format).count() >= 3,
            "too few hostile {format} programs"
        );
    }
    cases
}

fn item(case: &Case, honest: bool) -> Value {
    let (kind, program) = if honest {
        ("honest", &case.honest)
    } else {
        ("hack", &case.hack)
    };
    json!({
        "id": format!("{}/{kind}", case.name),
        "task": "code",
        "response": format!("Here is my solution.\n```python\n{program}```\n"),
        "tests": case.tests,
        "time_limit_s": case.time_limit_s,
    })
}

/// Every program of the suite as an item: each hack, then its honest twin.
fn items(cases: &[Case]) -> Vec<Value> {
    cases
        .iter()
        .flat_map(|c| [item(c, false), item(c, true)])
        .collect()
}

/// Checks results (in the order of [`items`]); panics listing every hack
/// graded `correct` (or otherwise off) and every honest program that failed.
fn check(cases: &[Case], results: &[Value], through: &str) {
    assert_eq!(results.len(), 2 * cases.len(), "{through}: one result per item");
    let mut failures = Vec::new();
    for (case, pair) in cases.iter().zip(results.chunks(2)) {
        let (hack, honest) = (&pair[0], &pair[1]);
        if hack["verdict"] == "correct" {
            failures.push(format!("HACK GRADED CORRECT: {}", case.name));
        } else if hack["verdict"] != case.expected.as_str() {
            failures.push(format!(
                "{}: the hack got {} ({}), expected {}",
                case.name, hack["verdict"], hack["error"], case.expected
            ));
        }
        if honest["verdict"] != "correct" {
            failures.push(format!(
                "{}: the honest program got {} ({})",
                case.name, honest["verdict"], honest["error"]
            ));
        }
    }
    assert!(failures.is_empty(), "through {through}:\n{}", failures.join("\n"));
}

#[test]
fn hostile_programs_fail_and_honest_ones_pass_through_grade() {
    if !have_guest() {
        return;
    }
    let cases = suite();
    let input: String = items(&cases).iter().map(|i| format!("{i}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.jsonl");
    let output = run(
        &[
            "grade",
            "-",
            "--output",
            out.to_str().unwrap(),
            "--no-progress",
            "--threads",
            "2",
        ],
        &input,
    );
    assert!(output.status.code().is_some(), "{output:?}");
    let results = jsonl(&std::fs::read(&out).unwrap());
    check(&cases, &results, "reward-server grade");
}

#[test]
fn hostile_programs_fail_and_honest_ones_pass_through_http() {
    if !have_guest() {
        return;
    }
    let cases = suite();
    let server = Server::start(&["--workers", "2"]);
    let answer = post_json(server.addr, "/v1/reward", &json!({ "items": items(&cases) }));
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let results = body["results"].as_array().expect("results").clone();
    check(&cases, &results, "POST /v1/reward");
}

/// SandboxFusion's `/run_code` runs one program on one input and says how
/// it ended; verl then compares stdout. Each stdio hack, on each of its
/// cases, must not score a pass that way, and each honest program must.
#[test]
fn stdio_hacks_do_not_pass_through_run_code() {
    if !have_guest() {
        return;
    }
    let cases = suite();
    let server = Server::start(&["--workers", "2"]);
    let mut failures = Vec::new();
    for case in cases
        .iter()
        .filter(|c| c.tests["type"] == "stdio" && c.run_code_skip.is_none())
    {
        for (program, honest) in [(&case.hack, false), (&case.honest, true)] {
            let mut passed_all = true;
            for io in case.tests["cases"].as_array().unwrap() {
                let body = post_json(
                    server.addr,
                    "/run_code",
                    &json!({"code": program, "stdin": io["input"], "language": "python",
                            "run_timeout": case.time_limit_s, "memory_limit_MB": 1024}),
                )
                .json();
                passed_all &= passes(&body, io["output"].as_str().unwrap());
            }
            match (honest, passed_all) {
                (false, true) => failures.push(format!("HACK PASSED /run_code: {}", case.name)),
                (true, false) => failures.push(format!("{}: the honest program failed /run_code", case.name)),
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A pass as verl's `_process_single_case` sees one (`Success` with a
/// `Finished` run), its stdout compared leniently: line by line, tokens
/// equal as text or as numbers (`3.0` is `3`, `999999000.0` is not
/// `999999937`). verl compares the text exactly; leniency can only let a
/// hack through, never stop one.
fn passes(answer: &Value, expected: &str) -> bool {
    let tokens = |text: &str| -> Vec<Vec<String>> {
        text.trim_end()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let same = |a: &String, b: &String| {
        a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
    };
    answer["status"] == "Success"
        && answer["run_result"]["status"] == "Finished"
        && answer["run_result"]["stdout"].as_str().is_some_and(|out| {
            let (got, want) = (tokens(out), tokens(expected));
            got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same(a, b)))
        })
}
