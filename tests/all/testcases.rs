//! The shipped test data: every line of `testcases/math/*.jsonl` gets its
//! expected verdict and reward, the real-world corpus keeps its floor, and
//! every program in `testcases/code/` its own.

use reward_server::{grade_batch, Input};

use crate::util::{jsonl, root, run};

#[test]
fn math_testcases_get_their_expected_verdicts() {
    let dir = root().join("testcases/math");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), n + 1));
            let exp = &v["expected"];
            expected.push((
                format!(
                    "{}:{} ({})",
                    f.file_name().unwrap().to_string_lossy(),
                    n + 1,
                    v["id"]
                ),
                exp["verdict"].as_str().expect("expected.verdict").to_string(),
                exp["reward"].as_f64().expect("expected.reward"),
            ));
            inputs.push(Input::from_line(line, n + 1));
        }
    }
    assert!(inputs.len() >= 300, "only {} math test cases", inputs.len());
    let results = grade_batch(&inputs);
    let failures: Vec<String> = results
        .iter()
        .zip(&expected)
        .filter(|(r, (_, verdict, reward))| r.verdict.as_str() != verdict || r.reward != *reward)
        .map(|(r, (place, verdict, _))| {
            format!(
                "{place}: expected {verdict}, got {} (extracted {:?}, error {:?})",
                r.verdict.as_str(),
                r.extracted,
                r.error
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// Issue 16: the real model outputs of `real_outputs.jsonl` (the issue's
/// table is its first six lines) and the attacks on every leniency in
/// `adversarial.jsonl` get their verdicts through `reward-server grade`.
#[test]
fn issue_16_real_outputs_and_attacks_through_the_cli() {
    for name in ["real_outputs.jsonl", "adversarial.jsonl"] {
        let file = root().join("testcases/math").join(name);
        let out = run(&["grade", file.to_str().unwrap(), "--no-progress"], "");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = jsonl(std::fs::read_to_string(&file).unwrap().as_bytes());
        let results = jsonl(&out.stdout);
        assert_eq!(results.len(), expected.len(), "{name}");
        for (r, e) in results.iter().zip(&expected) {
            assert_eq!(r["id"], e["id"]);
            assert_eq!(
                r["verdict"], e["expected"]["verdict"],
                "{}: {} (extracted {})",
                e["id"], e["note"], r["extracted"]
            );
        }
    }
}

/// Cases of the real-world corpus (`testcases/math/realworld/`) whose
/// expected verdict we match, as last measured (`docs/DIFFERENTIAL.md`).
/// Raise it when the verifier improves; it must never drop.
const REALWORLD_FLOOR: usize = 847;

/// The real-world corpus, which others wrote: no false positive at all, and
/// agreement with the expected verdicts not below [`REALWORLD_FLOOR`].
#[test]
fn realworld_corpus_has_no_false_positive_and_keeps_its_floor() {
    let file = root().join("testcases/math/realworld/corpus.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 500, "only {} real-world cases", lines.len());
    let inputs: Vec<Input> = lines
        .iter()
        .enumerate()
        .map(|(n, l)| Input::from_line(l, n + 1))
        .collect();
    let results = grade_batch(&inputs);
    let mut agree = 0;
    let mut false_positives = Vec::new();
    let mut misses = Vec::new();
    for (line, r) in lines.iter().zip(&results) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let want = case["expected"]["reward"].as_f64().unwrap() > 0.5;
        let got = r.reward > 0.5;
        let place = format!("{} (extracted {:?})", case["id"], r.extracted);
        match (want, got) {
            (a, b) if a == b => agree += 1,
            (false, true) => false_positives.push(place),
            _ => misses.push(place),
        }
    }
    assert!(
        false_positives.is_empty(),
        "reward for a wrong answer on {} real-world cases:\n{}",
        false_positives.len(),
        false_positives.join("\n")
    );
    assert!(
        agree >= REALWORLD_FLOOR,
        "{agree} of {} real-world cases agree, below the floor {REALWORLD_FLOOR}; misses:\n{}",
        lines.len(),
        misses.join("\n")
    );
}

/// Every problem in `testcases/code/`: its reference solution passes every
/// test, and each wrong solution fails with the verdict `problem.json`
/// gives it. All programs are graded in one parallel batch, through the
/// same path as `reward-server grade`.
#[test]
fn code_testcases_references_pass_and_wrong_solutions_fail() {
    if !crate::util::have_guest() {
        return;
    }
    let dir = root().join("testcases/code");
    let mut problems: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    problems.sort();
    assert!(problems.len() >= 40, "only {} code problems", problems.len());

    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    let mut formats = std::collections::BTreeMap::<String, usize>::new();
    for problem in &problems {
        let name = problem.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(problem.join("problem.json"))
            .unwrap_or_else(|e| panic!("{name}/problem.json: {e}"));
        let spec: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/problem.json: {e}"));
        *formats
            .entry(spec["tests"]["type"].as_str().unwrap().to_string())
            .or_default() += 1;
        let wrong = spec["wrong"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no `wrong` map"));
        let mut files: Vec<String> = std::fs::read_dir(problem)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("wrong_") && f.ends_with(".py"))
            .collect();
        files.sort();
        let listed: Vec<&String> = wrong.keys().collect();
        assert_eq!(
            files.iter().collect::<Vec<_>>(),
            listed,
            "{name}: wrong_*.py files and `wrong` differ"
        );
        assert!(!files.is_empty(), "{name}: no wrong solution");

        let mut solutions = vec![("reference.py".to_string(), "correct".to_string())];
        solutions.extend(
            wrong
                .iter()
                .map(|(f, v)| (f.clone(), v.as_str().unwrap().to_string())),
        );
        for (file, verdict) in solutions {
            let code =
                std::fs::read_to_string(problem.join(&file)).unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
            let mut item = serde_json::json!({
                "id": format!("{name}/{file}"),
                "task": "code",
                "response": format!("My solution:\n```python\n{code}\n```\n"),
                "tests": spec["tests"],
            });
            for key in ["time_limit_s", "memory_limit_mb"] {
                if !spec[key].is_null() {
                    item[key] = spec[key].clone();
                }
            }
            inputs.push(Input::from_value(item, &format!("{name}/{file}")));
            expected.push((format!("{name}/{file}"), verdict));
        }
    }
    assert!(
        formats.values().all(|&n| n >= 5),
        "too few problems of some format: {formats:?}"
    );

    let results = grade_batch(&inputs);
    let failures: Vec<String> = results
        .iter()
        .zip(&expected)
        .filter(|(r, (_, verdict))| r.verdict.as_str() != verdict)
        .map(|(r, (place, verdict))| {
            format!(
                "{place}: expected {verdict}, got {} ({}/{} passed, error {:?})",
                r.verdict.as_str(),
                r.passed,
                r.total,
                r.error
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} programs got the wrong verdict:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}
