//! The trainer protocols of `reward-server serve` on 127.0.0.1, with
//! requests shaped exactly as the trainers send them:
//!
//! - OpenRLHF: `openrlhf/utils/agent.py` (`SingleTurnAgentExecutor.
//!   _fetch_rewards_via_http`) posts `{"query": [...], "prompts": [...],
//!   "labels": [...]}`; the query is the decoded prompt and response;
//!   it reads `rewards`, `scores` and `extra_logs` (`openrlhf/cli/serve_rm.py`
//!   answers that shape);
//! - slime: `slime/rollout/rm_hub/__init__.py` (`remote_rm`) posts
//!   `{"prompt": ..., "response": ..., "label": ...}` and takes the JSON
//!   answer as the reward.

use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{post_json, request, Server};
use crate::util::have_guest;

const PROMPT: &str = "<|im_start|>user\nWhat is 1/4 + 1/4?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn openrlhf_batches_math_and_code_labels() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&[]);
    let tests = json!({"inputs": ["2\n", "5\n"], "outputs": ["4\n", "25\n"]}).to_string();
    let code_prompt = "<|im_start|>user\nSquare a number.<|im_end|>\n<|im_start|>assistant\n";
    let body = json!({
        "query": [
            format!("{PROMPT}So the sum is $\\boxed{{\\frac12}}$.<|im_end|>"),
            format!("{PROMPT}It is \\boxed{{1}}.<|im_end|>"),
            format!("{code_prompt}```python\nn = int(input())\nprint(n * n)\n```<|im_end|>"),
            format!("{code_prompt}```python\nprint(4)\n```<|im_end|>"),
            "a query whose label is bad".to_string(),
        ],
        "prompts": [PROMPT, PROMPT, code_prompt, code_prompt, "x"],
        "labels": ["0.5", "0.5", tests, tests, "{\"inputs\": [\"1\"], \"outputs\": []}"],
    });
    let answer = post_json(server.addr, "/v1/openrlhf", &body);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let got = answer.json();
    assert_eq!(got["rewards"], json!([1.0, 0.0, 1.0, 0.0, 0.0]));
    assert_eq!(got["scores"], got["rewards"]);
    assert_eq!(got["extra_logs"]["correct"], json!([1.0, 0.0, 1.0, 0.0, 0.0]));
    assert_eq!(got["extra_logs"]["passed"], json!([1.0, 0.0, 2.0, 1.0, 0.0]));
    assert_eq!(got["extra_logs"]["invalid"], json!([0.0, 0.0, 0.0, 0.0, 1.0]));

    let mismatch = post_json(
        server.addr,
        "/v1/openrlhf",
        &json!({"query": ["a"], "prompts": [], "labels": []}),
    );
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.json()["error"]
        .as_str()
        .unwrap()
        .contains("1 queries but 0 labels"));
    let bad = request(server.addr, "POST", "/v1/openrlhf", b"{\"queries\": []}");
    assert_eq!(bad.status, 400);
    assert_eq!(server.stop(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn slime_gets_a_bare_reward_or_the_result() {
    let server = Server::start(&[]);
    let sample = json!({
        "prompt": [{"role": "user", "content": "What is 6 * 7?"}],
        "response": "6 * 7 = \\boxed{42}",
        "label": "42",
    });
    let answer = post_json(server.addr, "/v1/slime", &sample);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json(), json!(1.0));
    let wrong = post_json(
        server.addr,
        "/v1/slime",
        &json!({"prompt": "q", "response": "\\boxed{41}", "label": "42"}),
    );
    assert_eq!(wrong.json(), json!(0.0));
    let detail = post_json(server.addr, "/v1/slime?detail=true", &sample).json();
    assert_eq!(
        (detail["reward"].clone(), detail["verdict"].clone()),
        (json!(1.0), json!("correct"))
    );
    let no_label = post_json(
        server.addr,
        "/v1/slime?detail=true",
        &json!({"prompt": "q", "response": "r", "label": null}),
    );
    let r: Value = no_label.json();
    assert_eq!(r["verdict"], "invalid");
    assert!(r["error"].as_str().unwrap().contains("no label"));
    assert_eq!(server.stop(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_label_config_sets_how_labels_grade() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("labels.toml");
    std::fs::write(
        &config,
        "task = \"math\"\nanswer_key = \"gold\"\nextract = \"boxed\"\n",
    )
    .unwrap();
    let server = Server::start(&["--label-config", config.to_str().unwrap()]);
    // "boxed": an unboxed answer is no answer.
    let lenient = post_json(
        server.addr,
        "/v1/slime?detail=true",
        &json!({"prompt": "q", "response": "The answer is 42.", "label": "{\"gold\": \"42\"}"}),
    );
    assert_eq!(lenient.json()["verdict"], "no_answer");
    let boxed = post_json(
        server.addr,
        "/v1/slime",
        &json!({"prompt": "q", "response": "\\boxed{42}", "label": "{\"gold\": 42}"}),
    );
    assert_eq!(boxed.json(), json!(1.0));
    assert_eq!(server.stop(Duration::from_secs(10)).code(), Some(0));

    std::fs::write(&config, "tasks = \"math\"\n").unwrap();
    let out = crate::util::run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--label-config",
            config.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `tasks`"));
}
