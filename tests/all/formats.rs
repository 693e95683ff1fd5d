//! `reward-server convert` end to end, one test per format: the fixtures of
//! testcases/formats/ (written for this project by
//! testcases/formats/make_fixtures.py) converted, graded by
//! `reward-server grade`, and checked sample by sample against their
//! expected.jsonl; then the same items through `POST /v1/reward` on the
//! real server must get the same verdicts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{post_json, Server};
use crate::util::{bin, have_guest, jsonl, root, run};

/// Converts `format`'s fixtures; returns the items (JSONL text) and stderr.
fn convert(format: &str, samples: &str, extra: &[&str]) -> (String, String) {
    let dir = root().join("testcases/formats").join(format);
    let problems = dir.join("problems.jsonl");
    let samples = dir.join(samples);
    let mut args = vec![
        "convert",
        format,
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args, "");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "convert {format} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// `expected.jsonl`: id → (verdict, reward).
fn expected(format: &str) -> BTreeMap<String, (String, f64)> {
    let text = std::fs::read(
        root()
            .join("testcases/formats")
            .join(format)
            .join("expected.jsonl"),
    )
    .unwrap();
    jsonl(&text)
        .into_iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                (
                    e["verdict"].as_str().unwrap().to_string(),
                    e["reward"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

/// id → (verdict, reward) of results.
fn outcomes(results: &[Value]) -> BTreeMap<String, (String, f64)> {
    results
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                (
                    r["verdict"].as_str().unwrap().to_string(),
                    r["reward"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

fn assert_outcomes(format: &str, got: &BTreeMap<String, (String, f64)>, results: &[Value]) {
    let want = expected(format);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{format}: item ids"
    );
    for (id, (verdict, reward)) in &want {
        let (v, r) = &got[id];
        let result = results.iter().find(|x| x["id"] == json!(id)).unwrap();
        assert_eq!(v, verdict, "{format} {id}: {result}");
        assert!(
            (r - reward).abs() < 1e-9,
            "{format} {id}: reward {r}, expected {reward}"
        );
    }
}

/// Convert, grade with the CLI, check; then the same items over HTTP.
fn check_format(format: &str, samples: &str, extra: &[&str]) -> String {
    let (items, stderr) = convert(format, samples, extra);
    let graded = run(&["grade", "-", "--no-progress"], &items);
    assert!(
        graded.status.success(),
        "{}",
        String::from_utf8_lossy(&graded.stderr)
    );
    let results = jsonl(&graded.stdout);
    assert_outcomes(format, &outcomes(&results), &results);

    let server = Server::start(&[]);
    let body = json!({"items": jsonl(items.as_bytes())});
    let answer = post_json(server.addr, "/v1/reward", &body);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let http = answer.json()["results"].as_array().unwrap().clone();
    assert_outcomes(format, &outcomes(&http), &http);
    assert_eq!(server.stop(Duration::from_secs(10)).code(), Some(0));
    stderr
}

#[test]
fn lcb_problems_with_compressed_private_tests() {
    if !have_guest() {
        return;
    }
    let stderr = check_format("lcb", "samples.json", &[]);
    assert!(stderr.contains("3 problems → 8 items"), "{stderr}");
}

#[test]
fn lcb_items_carry_the_benchmark_rules() {
    let (items, _) = convert("lcb", "samples.json", &["--lcb-tests", "public"]);
    let items = jsonl(items.as_bytes());
    assert_eq!(items[0]["compare"], "lcb");
    assert_eq!(items[0]["time_limit_native_s"], 6.0);
    assert_eq!(items[0]["raw_code"], true, "code_list holds extracted programs");
    assert_eq!(
        items[0]["tests"]["cases"].as_array().unwrap().len(),
        1,
        "public tests only"
    );
    assert_eq!(items[6]["tests"]["type"], "function");
    assert_eq!(items[6]["tests"]["fn_name"], "pairSum");
}

#[test]
fn apps_with_its_leniencies_and_skips_counted() {
    if !have_guest() {
        return;
    }
    let stderr = check_format("apps", "samples.jsonl", &[]);
    assert!(stderr.contains("skipped 1 × unreadable problems"), "{stderr}");
    assert!(
        stderr.contains("problems line 3: field `input_output`: 1 inputs but 0 outputs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped 1 × samples for an unknown problem"),
        "{stderr}"
    );
    assert!(
        stderr.contains("samples line 8: no problem has the id \"9999\""),
        "{stderr}"
    );
}

#[test]
fn apps_leniency_only_when_asked() {
    if !have_guest() {
        return;
    }
    // Under our default rule the unsorted output (4001/2) is wrong.
    let (items, _) = convert("apps", "samples.jsonl", &["--compare", "default"]);
    let graded = run(&["grade", "-", "--no-progress"], &items);
    let results = outcomes(&jsonl(&graded.stdout));
    assert_eq!(results["4001/2"].0, "wrong_answer");
    assert_eq!(results["4001/1"].0, "correct");
}

#[test]
fn taco_and_deepcoder_rows() {
    if !have_guest() {
        return;
    }
    check_format("taco", "samples.jsonl", &[]);
}

#[test]
fn humaneval_completions_and_solutions() {
    if !have_guest() {
        return;
    }
    // One sample loops forever: a tenth of a native second (instead of
    // HumanEval's 3) keeps its `time_limit` cheap; the others finish far
    // below it.
    check_format("humaneval", "samples.jsonl", &["--time-limit-native", "0.1"]);
    let (items, _) = convert("humaneval", "samples.jsonl", &[]);
    let items = jsonl(items.as_bytes());
    assert_eq!(
        items[0]["time_limit_native_s"], 3.0,
        "HumanEval's own limit by default"
    );
    assert!(
        items[0]["response"].as_str().unwrap().starts_with("def clamp("),
        "prompt + completion"
    );
    assert_eq!(
        items[0]["tests"]["code"].as_str().unwrap().lines().last(),
        Some("check(clamp)")
    );
}

#[test]
fn evalplus_expected_outputs_from_the_reference_run() {
    if !have_guest() {
        return;
    }
    let stderr = check_format("evalplus", "samples.jsonl", &[]);
    assert!(
        stderr.contains("skipped 1 × problems with a special oracle"),
        "{stderr}"
    );
    let (items, _) = convert("evalplus", "samples.jsonl", &["--evalplus-set", "base"]);
    let items = jsonl(items.as_bytes());
    assert_eq!(
        items[0]["tests"]["cases"].as_array().unwrap().len(),
        2,
        "base inputs only"
    );
    assert_eq!(
        items[0]["tests"]["cases"][0]["output"], "3.0",
        "computed by the canonical solution"
    );
    assert_eq!(items[3]["atol"], 0.001);
}

#[test]
fn verl_rows_dispatched_by_data_source() {
    if !have_guest() {
        return;
    }
    let stderr = check_format("verl", "samples.jsonl", &[]);
    assert!(stderr.contains("data_source \"searchR1_nq\""), "{stderr}");
}

#[test]
fn math_rows_with_their_answer_fields() {
    let stderr = check_format("math", "samples.jsonl", &[]);
    assert!(stderr.contains("problems line 4: no gold answer"), "{stderr}");
}

#[test]
fn convert_help_lists_every_format_with_an_example() {
    let out = bin().args(["convert", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for format in ["lcb", "apps", "taco", "humaneval", "evalplus", "verl", "math"] {
        assert!(
            help.contains(&format!("reward-server convert {format} ")),
            "no example for {format}:\n{help}"
        );
        assert!(
            help.contains(&format!("- {format}:")),
            "{format} not listed:\n{help}"
        );
    }
}

#[test]
fn a_malicious_pickle_is_refused_with_line_and_field() {
    use std::io::Write;
    // base64(zlib(pickle)) of GLOBAL os.system + REDUCE, as an LCB row's
    // private tests.
    let pickle = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.";
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(pickle).unwrap();
    let field = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, z.finish().unwrap());
    let row = json!({"question_id": "evil", "public_test_cases": "[]", "private_test_cases": field, "metadata": "{}"});
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    std::fs::write(&problems, format!("{row}\n")).unwrap();
    let out = run(
        &[
            "convert",
            "lcb",
            "--problems",
            problems.to_str().unwrap(),
            "--strict",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "--strict fails on a skip: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("problems line 1: field `private_test_cases`: pickle opcode GLOBAL"),
        "{stderr}"
    );
}
