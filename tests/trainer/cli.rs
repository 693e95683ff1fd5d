//! The `trainer` command line, run as a real process.

use std::process::{Command, Output};

use crate::util::{fixture, ids, reference_json};

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("trainer runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn generate_json_is_greedy_at_temperature_0_and_matches_transformers() {
    let reference = reference_json("tiny-qwen2");
    let case = &reference["generation"]["single"][1];
    let dir = fixture("tiny-qwen2");
    let prompt = case["prompt_text"].as_str().unwrap();
    let out = trainer(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--max-new-tokens",
        "40",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&v["prompt_ids"]), ids(&case["prompt_ids"]));
    assert_eq!(ids(&v["output_ids"]), ids(&case["output_ids"]));
    assert!(v["text"].is_string());
    assert_eq!(v["finish_reason"], "eos");
}

#[test]
fn generate_with_chat_uses_the_chatml_prompt() {
    let reference = reference_json("tiny-qwen2");
    let dir = fixture("tiny-qwen2");
    let out = trainer(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "What is 2+2?",
        "--chat",
        "--system",
        "You are terse.",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--max-new-tokens",
        "5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chat = reference["chat"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["messages"].as_array().unwrap().len() == 2)
        .unwrap();
    assert_eq!(ids(&v["prompt_ids"]), ids(&chat["ids"]));
    assert!(ids(&v["output_ids"]).len() <= 5);
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = trainer(&["generate", "--model", missing.to_str().unwrap(), "--prompt", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let dir = fixture("tiny-qwen2");
    let out = trainer(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "x",
        "--top-p",
        "2",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("top_p"), "{}", stderr(&out));
    let out = trainer(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "x",
        "--device",
        "tpu",
    ]);
    assert!(stderr(&out).contains("cpu, cuda or cuda:N"), "{}", stderr(&out));
    let out = trainer(&["sft", "--config", tmp.path().join("none.toml").to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("none.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tokenizer_init_sft_and_generate_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_str().unwrap().to_string();
    let lines: Vec<String> = (0..64)
        .map(|i| {
            serde_json::json!({"prompt": format!("{i} times 2 is"), "response": format!(" {}", i * 2)})
                .to_string()
        })
        .collect();
    std::fs::write(p("data.jsonl"), lines.join("\n")).unwrap();
    let out = trainer(&[
        "tokenizer",
        "--input",
        &p("data.jsonl"),
        "--vocab-size",
        "300",
        "--out",
        &p("tok"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = trainer(&[
        "init",
        "--tokenizer",
        &p("tok"),
        "--out",
        &p("init"),
        "--hidden-size",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--intermediate-size",
        "64",
        "--context",
        "32",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let toml = "[model]\ncheckpoint = \"init\"\n[data]\ntrain = \"data.jsonl\"\nmax_len = 32\n\
                [train]\nbatch_size = 8\nmax_steps = 4\nlr = 0.003\nwarmup_steps = 1\n\
                [output]\ndir = \"run\"\nsave_every = 2\n";
    std::fs::write(p("sft.toml"), toml).unwrap();
    let out = trainer(&["--threads", "1", "sft", "--config", &p("sft.toml")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("4 steps"), "{}", stderr(&out));
    let ckpt = p("run/checkpoints/step-000004");
    let out = trainer(&[
        "generate",
        "--model",
        &ckpt,
        "--prompt",
        "3 times 2 is",
        "--max-new-tokens",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = trainer(&["sft", "--config", &p("sft.toml")]);
    assert!(
        !out.status.success() && stderr(&out).contains("--resume"),
        "{}",
        stderr(&out)
    );
}
