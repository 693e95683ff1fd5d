//! The RL pipeline end to end against the real `reward-server serve` on
//! 127.0.0.1: the shortened demo (tasks, tokenizer, SFT, math and code GRPO,
//! evaluations, report), exact resumption, and stopping cleanly when the
//! server goes away.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use trainer::demo::{demo, DemoArgs};
use trainer::local_server::RewardServer;
use trainer::rl::config::{EvalSet, RlConfig, Task};
use trainer::rl::eval::EvalRecord;
use trainer::rl::StepRecord;

use crate::util::{reward_server, HealthOnly};

/// The quick demo's run directory (made once, shared by the tests).
fn quick_demo() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let args = DemoArgs {
            seed: 3,
            out: Some(dir.join("demo")),
            reward_server: Some(reward_server().to_path_buf()),
            workers: 1,
            quick: true,
            force: false,
        };
        demo(&args).expect("the quick demo runs");
        dir.join("demo")
    })
}

fn steps(path: &Path) -> Vec<StepRecord> {
    trainer::rl::report::read_jsonl(path).unwrap()
}

/// A step's record without the timings (which differ between runs).
fn untimed(mut r: StepRecord) -> StepRecord {
    r.sample_tokens_per_s = 0.0;
    r.train_tokens_per_s = 0.0;
    r.reward_latency_s = 0.0;
    r.reward_wait_s = 0.0;
    r.step_s = 0.0;
    r
}

#[test]
fn quick_demo_runs_every_phase_and_reports() {
    let run = quick_demo();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["seed"], 3);
    for phase in ["sft", "math_rl", "code_rl"] {
        for task in ["math", "code"] {
            let p = report["eval"][phase][task].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{phase}.{task} = {p}");
        }
    }
    assert_eq!(report["entropy"]["target"], 0.3);
    assert!(report["minutes"].as_f64().unwrap() > 0.0);
    // Three one-step stages: math, longer math, code.
    let records = steps(&run.join("rl/metrics.jsonl"));
    let stages: Vec<&str> = records.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(stages, ["math-16", "math-24", "code-24"]);
    // The quick model is barely trained: its responses often run to the
    // limit, and the short stage's overlong filter then leaves nothing to
    // train on. The code stage's budget is the eval's, with no filter.
    assert!(records[2].trained_tokens > 0, "{:?}", records[2]);
    for r in &records {
        assert!(
            r.temperature > 0.0 && r.entropy.is_finite() && r.grad_norm.is_finite(),
            "{r:?}"
        );
        assert!(r.response_len > 0.0, "{r:?}");
        assert!(r.trained_tokens > 0 || r.truncated == 1.0, "{r:?}");
        // Strict on-policy: the ratio is 1, nothing is clipped.
        assert_eq!(r.clip_frac, 0.0);
        // The sampler and the training forward agree on log-probabilities.
        assert!(r.logprob_gap < 1e-3, "{r:?}");
    }
    // Evaluations at the start and after each stage, for both sets.
    let evals: Vec<serde_json::Value> = trainer::rl::report::read_jsonl(&run.join("rl/eval.jsonl")).unwrap();
    assert_eq!(evals.len(), 8, "{evals:?}");
    for file in [
        "report.md",
        "rl/report.md",
        "rl/plots/reward.png",
        "rl/plots/entropy.png",
        "rl/plots/eval.png",
        "reward-server.log",
        "data/eval_code.jsonl",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("| SFT |") && md.contains("| code RL |"), "{md}");
}

/// The quick demo's RL config, pointed at `server` and `out`.
fn rl_config(server: &RewardServer, out: &Path) -> RlConfig {
    let text = std::fs::read_to_string(quick_demo().join("rl.toml")).unwrap();
    let mut config: RlConfig = toml::from_str(&text).unwrap();
    config.reward.endpoints = vec![server.url().to_string()];
    config.output.dir = out.to_path_buf();
    config.output.progress = false;
    config.eval.at_start = false;
    config.eval.sets.clear();
    config
}

fn start_server(dir: &Path) -> RewardServer {
    RewardServer::start(
        reward_server(),
        1,
        &dir.join("server.log"),
        Duration::from_secs(60),
    )
    .unwrap()
}

#[test]
fn a_resumed_run_retraces_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let whole = rl_config(&server, &dir.path().join("whole"));
    trainer::rl::train(&whole, false, None).unwrap();
    let split = rl_config(&server, &dir.path().join("split"));
    let first = trainer::rl::train(&split, false, Some(2)).unwrap();
    assert_eq!(first.state.step, 2);
    // Without --resume an existing run is refused, naming the way out.
    let err = trainer::rl::train(&split, false, None).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    trainer::rl::train(&split, true, None).unwrap();
    let a: Vec<StepRecord> = steps(&dir.path().join("whole/metrics.jsonl"))
        .into_iter()
        .map(untimed)
        .collect();
    let b: Vec<StepRecord> = steps(&dir.path().join("split/metrics.jsonl"))
        .into_iter()
        .map(untimed)
        .collect();
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
}

#[test]
fn a_vanished_reward_server_stops_the_run_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let mut config = rl_config(&server, &dir.path().join("run"));
    config.reward.max_retries = 2;
    config.reward.backoff_s = 0.05;
    config.reward.timeout_s = 5.0;
    // Take one step, then lose the server before the next.
    trainer::rl::train(&config, false, Some(1)).unwrap();
    drop(server);
    let err = format!("{:#}", trainer::rl::train(&config, true, None).unwrap_err());
    assert!(
        err.contains("reward server") && err.contains("not answering"),
        "{err}"
    );
    // A server that answers its health check, then no grading request: the
    // step fails after the retries, the policy of the last completed step
    // is saved, and the message says how to resume.
    let server = start_server(dir.path());
    let relay = HealthOnly::start(server.url());
    config.reward.endpoints = vec![relay.url().to_string()];
    let e = trainer::rl::train(&config, true, None).expect_err("the run must stop when grading fails");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("reward server failed at step 2") && msg.contains("--resume"),
        "{msg}"
    );
    assert!(msg.contains(relay.url()), "{msg}");
    let ckpts = trainer::rl::list_checkpoints(&dir.path().join("run/checkpoints")).unwrap();
    let (step, last) = ckpts.last().unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(last.join("rl_state.json")).unwrap()).unwrap();
    assert_eq!((*step, state["step"].as_u64().unwrap()), (1, 1));
    // With the server back, the run resumes from there.
    config.reward.endpoints = vec![server.url().to_string()];
    let summary = trainer::rl::train(&config, true, None).unwrap();
    assert_eq!(summary.state.step, 3);
}

#[test]
fn filters_dynamic_sampling_ppo_epochs_and_kl_run_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let mut config = rl_config(&server, &dir.path().join("run"));
    config.stages.truncate(1);
    // The quick model never boxes an answer. Graded leniently (the last
    // number in the response) against one-digit answers, its noise is right
    // now and then, so prompts get solved, groups differ and filters bite.
    config.reward.math_extract = reward_client::ExtractMode::Lenient;
    let data = dir.path().join("digits.jsonl");
    let text = std::fs::read_to_string(&config.stages[0].datasets[0]).unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["answer"] = serde_json::json!((i % 10).to_string());
            v.to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    // Two held-out sets, one with its own k (the recipe's avg@64 for AIME),
    // one with the [eval] table's.
    let few = dir.path().join("few.jsonl");
    std::fs::write(&few, lines[..2].join("\n")).unwrap();
    let set = |name: &str, k| EvalSet {
        name: name.into(),
        task: Task::Math,
        path: few.clone(),
        k,
    };
    config.eval.sets = vec![set("own-k", Some(3)), set("eval-k", None)];
    config.eval.k = 2;
    config.eval.at_start = true;
    let stage = &mut config.stages[0];
    stage.datasets = vec![data];
    stage.steps = 0;
    stage.epochs = 2;
    stage.prompts_per_batch = 8;
    // Keep prompts never solved in 8 attempts, then drop those solved at
    // all in an epoch.
    stage.difficulty_filter = Some(trainer::rl::config::DifficultyFilter {
        attempts: 8,
        max_solved: 0,
    });
    stage.group_size = 4;
    stage.easy_filter = Some(0);
    stage.dynamic_sampling = 2;
    stage.ppo_epochs = 2;
    stage.kl_beta = 0.05;
    // Train on the cut responses too, so every step updates.
    stage.overlong_filter = false;
    let summary = trainer::rl::train(&config, false, None).unwrap();
    let records = steps(&dir.path().join("run/metrics.jsonl"));
    assert_eq!(summary.state.step as usize, records.len());
    for r in &records {
        assert!(r.kl.is_finite() && r.kl >= 0.0, "{r:?}");
        assert!(r.flat_groups >= 0.0 && r.flat_groups <= 1.0, "{r:?}");
        assert!(r.trained_tokens > 0 && r.loss.is_finite(), "{r:?}");
    }
    let first_epoch: Vec<&StepRecord> = records.iter().filter(|r| r.epoch == 0).collect();
    let second_epoch: Vec<&StepRecord> = records.iter().filter(|r| r.epoch == 1).collect();
    assert!(!first_epoch.is_empty() && !second_epoch.is_empty());
    // The difficulty split dropped prompts solved in its attempts.
    let split = first_epoch[0].prompts_active;
    assert!(split < 40, "the difficulty split kept all {split} prompts");
    // Dynamic sampling replaced flat groups with fresh prompts: the first
    // epoch took fewer steps than its prompts fill batches of 8.
    let resampled: usize = first_epoch.iter().map(|r| r.resampled).sum();
    assert!(resampled > 0, "nothing was resampled");
    assert_eq!(
        first_epoch.len(),
        (split - resampled).div_ceil(8).max(1),
        "{first_epoch:?}"
    );
    // The easy filter dropped the prompts solved in the first epoch.
    let kept = second_epoch[0].prompts_active;
    assert!(kept < split, "the easy filter kept all {split} prompts");
    assert!(first_epoch.iter().any(|r| r.accuracy > 0.0));
    let report = std::fs::read_to_string(dir.path().join("run/report.md")).unwrap();
    assert!(report.contains("| math-16 | math |"), "{report}");
    // Each evaluation drew each set's own k.
    let evals: Vec<EvalRecord> = trainer::rl::report::read_jsonl(&dir.path().join("run/eval.jsonl")).unwrap();
    let ks: Vec<(&str, &str, usize)> = evals
        .iter()
        .map(|e| (e.when.as_str(), e.set.as_str(), e.k))
        .collect();
    assert_eq!(
        ks,
        [
            ("start", "own-k", 3),
            ("start", "eval-k", 2),
            ("stage_end", "own-k", 3),
            ("stage_end", "eval-k", 2)
        ],
        "{evals:?}"
    );
}
