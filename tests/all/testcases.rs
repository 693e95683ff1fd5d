//! Every line of `testcases/math/*.jsonl` gets its expected verdict and reward.

use reward_server::{grade_batch, Input};

use crate::util::root;

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
