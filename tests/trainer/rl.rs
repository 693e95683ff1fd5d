//! The RL pipeline end to end against the real `reward-server serve` on
//! 127.0.0.1: the shortened demo (tasks, tokenizer, SFT, math and code GRPO,
//! evaluations, report), exact resumption, and stopping cleanly when the
//! server goes away.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use trainer::demo::{demo, DemoArgs};
use trainer::local_server::RewardServer;
use trainer::rl::config::RlConfig;
use trainer::rl::StepRecord;

use crate::util::reward_server;

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
    // A server that dies mid-run: the step fails after the retries, the
    // policy of the last completed step is saved, and resuming says how.
    let server = start_server(dir.path());
    config.reward.endpoints = vec![server.url().to_string()];
    let url = server.url().to_string();
    let killer = std::thread::spawn(move || {
        // The health check passes, then the server goes away.
        std::thread::sleep(Duration::from_millis(300));
        drop(server);
    });
    let result = trainer::rl::train(&config, true, None);
    killer.join().unwrap();
    match result {
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("reward server failed") && msg.contains("--resume"),
                "{msg}"
            );
            assert!(msg.contains(&url), "{msg}");
            let ckpts = trainer::rl::list_checkpoints(&dir.path().join("run/checkpoints")).unwrap();
            let state: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(ckpts.last().unwrap().1.join("rl_state.json")).unwrap(),
            )
            .unwrap();
            assert!(state["step"].as_u64().unwrap() >= 1);
        }
        // The two remaining steps can finish within 300 ms on a fast
        // machine; then there was nothing to lose.
        Ok(summary) => assert_eq!(summary.state.step, 3),
    }
}

#[test]
fn filters_dynamic_sampling_ppo_epochs_and_kl_run_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let mut config = rl_config(&server, &dir.path().join("run"));
    config.stages.truncate(1);
    let stage = &mut config.stages[0];
    stage.steps = 0;
    stage.epochs = 2;
    stage.prompts_per_batch = 16;
    // Keep prompts solved at most once in 2 attempts, then drop those
    // solved more than 2 of 4 times in an epoch.
    stage.difficulty_filter = Some(trainer::rl::config::DifficultyFilter {
        attempts: 2,
        max_solved: 1,
    });
    stage.group_size = 4;
    stage.easy_filter = Some(2);
    stage.dynamic_sampling = 2;
    stage.ppo_epochs = 2;
    stage.kl_beta = 0.05;
    let summary = trainer::rl::train(&config, false, None).unwrap();
    let records = steps(&dir.path().join("run/metrics.jsonl"));
    assert_eq!(summary.state.step as usize, records.len());
    // 40 prompts (at most, after the difficulty split) in batches of 16,
    // two epochs.
    assert!((2..=6).contains(&records.len()), "{}", records.len());
    for r in &records {
        assert!(r.prompts_active <= 40, "{r:?}");
        assert!(r.kl.is_finite() && r.kl >= 0.0, "{r:?}");
        assert!(r.flat_groups >= 0.0 && r.flat_groups <= 1.0, "{r:?}");
    }
    let report = std::fs::read_to_string(dir.path().join("run/report.md")).unwrap();
    assert!(report.contains("| math-16 | math |"), "{report}");
}
