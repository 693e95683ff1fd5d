//! `trainer data …` run as a real process on the fixtures in
//! `testcases/curate/` (its README says what each line is for); the
//! verifying commands against the real `reward-server`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use trainer::local_server::RewardServer;

use crate::util::reward_server;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testcases/curate")
        .join(rel)
}

fn data(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("data")
        .args(args)
        .arg("--quiet")
        .output()
        .expect("trainer runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "trainer failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn json_lines(p: &Path) -> Vec<Value> {
    lines(p)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `id` of every line of a JSONL file.
fn ids(p: &Path) -> Vec<String> {
    json_lines(p)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every line of `out` is a line of `input`, byte for byte.
fn assert_lines_unchanged(out: &Path, input: &Path) {
    let original = lines(input);
    for l in lines(out) {
        assert!(original.contains(&l), "{} has a changed line: {l}", out.display());
    }
}

#[test]
fn decontaminate_drops_prompts_sharing_a_benchmark_ngram() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("decontaminate/train.jsonl");
    let before = std::fs::read(&input).unwrap();
    let (out, report) = (tmp.path().join("clean.jsonl"), tmp.path().join("dropped.jsonl"));
    let stdout = ok(&data(&[
        "decontaminate",
        "--input",
        s(&input),
        "--against",
        s(&fixture("decontaminate/bench_a.jsonl")),
        s(&fixture("decontaminate/bench_b.jsonl")),
        "--bench-field",
        "problem",
        "--output",
        s(&out),
        "--report",
        s(&report),
    ]));
    assert_eq!(ids(&out), ["t1", "t4", "t6", "t7", "t8", "t9"]);
    assert_lines_unchanged(&out, &input);
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input is untouched");
    let r = json_lines(&report);
    let got: Vec<(&str, &str, &str)> = r
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap(),
                v["benchmark"].as_str().unwrap(),
                v["ngram"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("t2", "benchA-1", "a bag holds 12 red marbles and 8 blue"),
            ("t3", "benchB-1", "the sides of a triangle have lengths 13 14"),
            ("t5", "benchA-3", "compute 7 100 bmod 13"),
        ]
    );
    assert_eq!(r[0]["line"], 2);
    assert!(r[1]["benchmark_file"]
        .as_str()
        .unwrap()
        .ends_with("bench_b.jsonl"));
    assert!(
        stdout.contains("dropped") && stdout.contains("3 (33.3%)"),
        "{stdout}"
    );

    // A smaller n finds shorter overlaps: t4 and t6 share 5 and 6 words
    // with benchA-2 and benchB-2, and t8 holds the whole of benchB-2 (with
    // n = 9 it is a short benchmark prompt, matched only by an equal one).
    let out5 = tmp.path().join("clean5.jsonl");
    ok(&data(&[
        "decontaminate",
        "--input",
        s(&input),
        "--against",
        s(&fixture("decontaminate/bench_a.jsonl")),
        s(&fixture("decontaminate/bench_b.jsonl")),
        "--bench-field",
        "problem",
        "--n",
        "5",
        "--output",
        s(&out5),
    ]));
    assert_eq!(ids(&out5), ["t1", "t7", "t9"]);
}

#[test]
fn outputs_never_replace_inputs_and_bad_lines_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"prompt\": \"a b c\"}\n").unwrap();
    let bench = fixture("decontaminate/bench_b.jsonl");
    let o = data(&[
        "decontaminate",
        "--input",
        s(&input),
        "--against",
        s(&bench),
        "--bench-field",
        "problem",
        "--output",
        s(&input),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to write"));
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        "{\"prompt\": \"a b c\"}\n"
    );

    // A malformed line stops the run with its place, and leaves no output.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"fine\"}\n{\"prompt\": \"cut\n").unwrap();
    let out = tmp.path().join("out.jsonl");
    let o = data(&["dedup", "--input", s(&bad), "--output", s(&out)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:2: not a JSON object"), "{err}");
    assert!(!out.exists());
    // A missing field, likewise.
    std::fs::write(&bad, "{\"prompt\": \"fine\"}\n\n{\"text\": \"no prompt\"}\n").unwrap();
    let o = data(&["dedup", "--input", s(&bad), "--output", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:3: no \"prompt\" field"), "{err}");
    // --field names another text field.
    std::fs::write(&bad, "{\"text\": \"Same text\"}\n{\"text\": \"same, TEXT!\"}\n").unwrap();
    let stdout = ok(&data(&[
        "dedup",
        "--input",
        s(&bad),
        "--output",
        s(&out),
        "--field",
        "text",
    ]));
    assert!(stdout.contains("lines read"), "{stdout}");
    assert_eq!(lines(&out), ["{\"text\": \"Same text\"}"]);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().contains(".tmp-")),
        "no temporary file is left behind: {left:?}"
    );
}

#[test]
fn dedup_keeps_the_first_of_each_cluster_across_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (fixture("dedup/a.jsonl"), fixture("dedup/b.jsonl"));
    let dir = tmp.path().join("out");
    let report = tmp.path().join("clusters.jsonl");
    let stdout = ok(&data(&[
        "dedup",
        "--input",
        s(&a),
        s(&b),
        "--output-dir",
        s(&dir),
        "--report",
        s(&report),
    ]));
    assert_eq!(ids(&dir.join("a.jsonl")), ["a1", "a2", "a4"]);
    assert_eq!(ids(&dir.join("b.jsonl")), ["b1", "b4"]);
    assert_lines_unchanged(&dir.join("b.jsonl"), &b);
    let clusters: BTreeMap<String, Vec<(String, String)>> = json_lines(&report)
        .iter()
        .map(|c| {
            let dropped = c["dropped"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let sim = m["similarity"].as_f64().unwrap();
                    assert!(sim >= 0.8, "{m}");
                    (
                        m["id"].as_str().unwrap().to_string(),
                        m["match"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (c["kept"]["id"].as_str().unwrap().to_string(), dropped)
        })
        .collect();
    let pair = |id: &str, kind: &str| (id.to_string(), kind.to_string());
    assert_eq!(clusters["a1"], [pair("a3", "near")]);
    assert_eq!(clusters["a2"], [pair("a5", "exact"), pair("b5", "exact")]);
    assert_eq!(clusters["a4"], [pair("b2", "exact"), pair("b3", "near")]);
    assert_eq!(clusters.len(), 3);
    assert!(stdout.contains("exact duplicates"), "{stdout}");

    // Exact only: the near duplicates stay; a stricter threshold, too.
    let exact = tmp.path().join("exact");
    ok(&data(&[
        "dedup",
        "--input",
        s(&a),
        s(&b),
        "--output-dir",
        s(&exact),
        "--exact-only",
    ]));
    assert_eq!(ids(&exact.join("a.jsonl")), ["a1", "a2", "a3", "a4"]);
    assert_eq!(ids(&exact.join("b.jsonl")), ["b1", "b3", "b4"]);
    let strict = tmp.path().join("strict.jsonl");
    ok(&data(&[
        "dedup",
        "--input",
        s(&a),
        "--output",
        s(&strict),
        "--threshold",
        "0.95",
    ]));
    assert_eq!(ids(&strict), ["a1", "a2", "a3", "a4"]);
}

/// (id, rules) of every line of a filter-math report.
fn rules(report: &Path) -> Vec<(String, Vec<String>)> {
    json_lines(report)
        .iter()
        .map(|v| {
            let mut r: Vec<String> = v["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            r.sort();
            (v["id"].as_str().unwrap().to_string(), r)
        })
        .collect()
}

#[test]
fn filter_math_applies_the_text_rules_and_the_verifier() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("filter_math/problems.jsonl");
    let (out, report) = (tmp.path().join("kept.jsonl"), tmp.path().join("report.jsonl"));
    // No --reward-url: the command starts a server for the run.
    let stdout = ok(&data(&[
        "filter-math",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--report",
        s(&report),
        "--reward-server",
        s(reward_server()),
        "--workers",
        "1",
    ]));
    assert_eq!(ids(&out), ["m1", "m2", "m10", "m11", "m13"]);
    assert_lines_unchanged(&out, &input);
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules(&report),
        [
            ("m3".to_string(), v(&["multi_part"])),
            ("m4".into(), v(&["multi_part"])),
            ("m5".into(), v(&["multiple_choice"])),
            ("m6".into(), v(&["no_answer", "proof"])),
            ("m7".into(), v(&["proof"])),
            ("m8".into(), v(&["no_answer"])),
            ("m9".into(), v(&["unverifiable"])),
            ("m12".into(), v(&["unverifiable"])),
        ]
    );
    let r = json_lines(&report);
    assert!(
        r[6]["evidence"]["unverifiable"]
            .as_str()
            .unwrap()
            .starts_with("invalid"),
        "{}",
        r[6]
    );
    assert!(stdout.contains("answers verified"), "{stdout}");
}

#[test]
fn filter_math_uses_a_running_server_and_skips_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let server = RewardServer::start(
        reward_server(),
        1,
        &tmp.path().join("server.log"),
        Duration::from_secs(60),
    )
    .unwrap();
    let input = fixture("filter_math/problems.jsonl");
    let out = tmp.path().join("kept.jsonl");
    let stdout = ok(&data(&[
        "filter-math",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--reward-url",
        server.url(),
        "--skip",
        "proof",
        "--skip",
        "multiple_choice",
    ]));
    assert_eq!(ids(&out), ["m1", "m2", "m5", "m7", "m10", "m11", "m13"]);
    assert!(stdout.contains(server.url()), "{stdout}");
    assert!(stdout.contains("skipped"), "{stdout}");

    // Without the verifier (no server at all), the bad answers stay.
    let out = tmp.path().join("unverified.jsonl");
    ok(&data(&[
        "filter-math",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--no-verify",
    ]));
    assert_eq!(ids(&out), ["m1", "m2", "m9", "m10", "m11", "m12", "m13"]);
    // A server that is not there is an error, not an empty output.
    drop(server);
    let o = data(&[
        "filter-math",
        "--input",
        s(&input),
        "--output",
        s(&tmp.path().join("x.jsonl")),
        "--reward-url",
        "http://127.0.0.1:9",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not answering"));
}

#[test]
fn validate_code_runs_reference_wrong_and_trivial_programs() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("validate_code/problems.jsonl");
    let (out, report) = (tmp.path().join("valid.jsonl"), tmp.path().join("report.jsonl"));
    let stdout = ok(&data(&[
        "validate-code",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--report",
        s(&report),
        "--reward-server",
        s(reward_server()),
        "--workers",
        "2",
    ]));
    assert_eq!(ids(&out), ["c1", "c4", "c5", "c6", "c7", "c9", "c10"]);
    assert_lines_unchanged(&out, &input);
    let r = json_lines(&report);
    let status: Vec<(&str, &str)> = r
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            ("c1", "valid"),
            ("c2", "invalid"),
            ("c3", "invalid"),
            ("c4", "flagged"),
            ("c5", "flagged"),
            ("c6", "valid"),
            ("c7", "valid"),
            ("c8", "invalid"),
            ("c9", "flagged"),
            ("c10", "valid"),
        ]
    );
    let trivial = |i: usize| -> Vec<&str> {
        r[i]["trivial_accepted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect()
    };
    assert_eq!(trivial(3), ["prints_first_expected_output"]);
    assert_eq!(trivial(4), ["echo_input"]);
    assert_eq!(trivial(8), ["returns_empty_list", "returns_first_expected_value"]);
    assert!(trivial(0).is_empty() && trivial(5).is_empty() && trivial(6).is_empty());
    // c1: both known-wrong programs fail; c2's reference fails with its count.
    assert_eq!(r[0]["wrong_solutions"][1]["verdict"], "wrong_answer");
    assert_eq!(r[1]["references"][0]["total"], 3);
    assert_eq!(r[1]["references"][0]["passed"], 0);
    assert!(r[2]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("known-wrong solution 1 passes"));
    assert!(r[7]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("no reference solution"));
    assert!(stdout.contains("flagged (kept)"), "{stdout}");

    let strict = tmp.path().join("strict.jsonl");
    ok(&data(&[
        "validate-code",
        "--input",
        s(&input),
        "--output",
        s(&strict),
        "--drop-flagged",
        "--reward-server",
        s(reward_server()),
    ]));
    assert_eq!(ids(&strict), ["c1", "c6", "c7", "c10"]);
}

#[test]
fn difficulty_splits_prompts_by_pass_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("splits");
    let kept = tmp.path().join("kept.jsonl");
    let prompts = fixture("difficulty/prompts.jsonl");
    let stdout = ok(&data(&[
        "difficulty",
        "--rollouts",
        s(&fixture("difficulty/rollouts.jsonl")),
        "--input",
        s(&prompts),
        "--output-dir",
        s(&dir),
        "--drop-solved-above",
        "14/16",
        "--output",
        s(&kept),
    ]));
    assert_eq!(ids(&dir.join("easy.jsonl")), ["p1", "p2"]);
    assert_eq!(ids(&dir.join("medium.jsonl")), ["p3", "p4"]);
    assert_eq!(ids(&dir.join("hard.jsonl")), ["p5", "p6"]);
    assert_eq!(ids(&dir.join("unrated.jsonl")), ["p7"]);
    assert_eq!(ids(&kept), ["p3", "p4", "p5", "p6", "p7"]);
    assert_lines_unchanged(&kept, &prompts);
    let rates = json_lines(&dir.join("pass_rates.jsonl"));
    let p2 = rates.iter().find(|r| r["id"] == "p2").unwrap();
    assert_eq!(
        (p2["samples"].as_u64(), p2["solved"].as_u64()),
        (Some(16), Some(15))
    );
    assert_eq!(p2["split"], "easy");
    let p5 = rates.iter().find(|r| r["id"] == "p5").unwrap();
    assert_eq!(
        (p5["solved"].as_u64(), p5["split"].as_str()),
        (Some(10), Some("hard"))
    );
    assert_eq!(rates.len(), 7);
    assert!(stdout.contains("kept by --drop-solved-above 14/16"), "{stdout}");

    // Other thresholds (decimals): 0.95 makes only p1 easy, 0.5 moves p5 to medium.
    let other = tmp.path().join("other");
    ok(&data(&[
        "difficulty",
        "--rollouts",
        s(&fixture("difficulty/rollouts.jsonl")),
        "--input",
        s(&prompts),
        "--output-dir",
        s(&other),
        "--easy-above",
        "0.95",
        "--medium-above",
        "0.5",
    ]));
    assert_eq!(ids(&other.join("easy.jsonl")), ["p1"]);
    assert_eq!(ids(&other.join("medium.jsonl")), ["p2", "p3", "p4", "p5"]);
    let o = data(&[
        "difficulty",
        "--rollouts",
        s(&fixture("difficulty/rollouts.jsonl")),
        "--output-dir",
        s(&other),
        "--easy-above",
        "3/2",
    ]);
    assert!(!o.status.success());
}
