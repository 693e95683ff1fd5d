//! `trainer demo`: the whole recipe in small, on synthetic tasks, on a CPU.
//!
//! 1. Generate math word problems and small Python tasks with held-out
//!    splits ([`tasks`]): held-out problems have other numbers and
//!    compositions of operations never seen in SFT or RL.
//! 2. Train a byte-level BPE tokenizer, initialise a tiny Qwen2-architecture
//!    model, and SFT it on a deliberately small set of demonstrations.
//! 3. Start `reward-server serve` on 127.0.0.1 as a child process ([`server`])
//!    and run GRPO: math stages of growing length, then a code stage, with
//!    the entropy-targeted temperature.
//! 4. Evaluate the held-out sets (avg@8 pass@1 at temperature 0.6, top-p
//!    0.95) after SFT, after math RL and after code RL; write
//!    `report.json`, `report.md` and the curves; stop the server.

pub mod flaws;
pub mod tasks;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::engine::EngineConfig;
use crate::init::{init_config, run_init, InitArgs};
use crate::optim::AdamWConfig;
use crate::rl::config::{
    EvalConfig, EvalSet, ModelConfig as RlModel, OutputConfig as RlOutput, RewardConfig, RlConfig, Stage,
    Task, TemperaturePolicy, TrainConfig as RlTrain,
};
use crate::rl::eval::EvalRecord;
use crate::rl::StepRecord;
use crate::sft::config::{DataConfig, ModelConfig, OutputConfig, SftConfig, TrainConfig};
use crate::template::Template;
use crate::tokenizer::Tokenizer;
use tasks::TaskSizes;

/// Arguments of `trainer demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the tasks, the model's initialisation, SFT and RL.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run directory [default: runs/demo-seed<SEED>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The reward-server binary [default: the one next to this executable].
    #[arg(long, value_name = "PATH")]
    pub reward_server: Option<PathBuf>,
    /// Grading workers of the reward server (sandbox processes for code).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// A few steps of every phase with tiny sizes: checks the pipeline end
    /// to end in about a minute (its numbers mean nothing).
    #[arg(long)]
    pub quick: bool,
    /// Replace an existing run directory.
    #[arg(long)]
    pub force: bool,
}

/// Sizes and settings of a demo run.
#[derive(Debug, Clone)]
struct Plan {
    sizes: TaskSizes,
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    context: usize,
    sft_epochs: usize,
    sft_batch: usize,
    sft_lr: f64,
    /// Fraction of SFT demonstrations given a flaw ([`flaws`]).
    flaw_fraction: f64,
    /// (name, max response tokens, steps) of the math stages.
    math_stages: Vec<(&'static str, usize, u64)>,
    code_stages: Vec<(&'static str, usize, u64)>,
    prompts_per_batch: usize,
    /// Code rollouts cost more to grade (a sandboxed CPython run per item).
    code_prompts_per_batch: usize,
    group: usize,
    rl_lr: f64,
    eval_k: usize,
    eval_tokens: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            sizes: TaskSizes {
                sft_math: 4000,
                sft_code: 1000,
                rl_math: 2000,
                rl_code: 2000,
                eval_math: 64,
                eval_code: 64,
            },
            vocab: 512,
            hidden: 128,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            intermediate: 384,
            context: 192,
            // After 4 epochs the arithmetic was barely learnt (held-out answers
            // right ignoring the box: 8% after 4 epochs, 67% after 8).
            sft_epochs: 8,
            sft_batch: 16,
            sft_lr: 2e-3,
            flaw_fraction: 0.6,
            math_stages: vec![("math-48", 48, 50), ("math-64", 64, 50)],
            code_stages: vec![("code-64", 64, 60)],
            prompts_per_batch: 32,
            code_prompts_per_batch: 16,
            group: 8,
            rl_lr: 1e-4,
            eval_k: 8,
            eval_tokens: 64,
        }
    }

    fn quick() -> Plan {
        Plan {
            sizes: TaskSizes {
                sft_math: 40,
                sft_code: 40,
                rl_math: 40,
                rl_code: 40,
                eval_math: 6,
                eval_code: 6,
            },
            vocab: 384,
            hidden: 32,
            layers: 1,
            heads: 2,
            kv_heads: 1,
            intermediate: 64,
            context: 160,
            sft_epochs: 1,
            sft_batch: 16,
            sft_lr: 1e-3,
            flaw_fraction: 0.4,
            math_stages: vec![("math-16", 16, 1), ("math-24", 24, 1)],
            code_stages: vec![("code-24", 24, 1)],
            prompts_per_batch: 2,
            code_prompts_per_batch: 2,
            group: 4,
            rl_lr: 1e-4,
            eval_k: 2,
            eval_tokens: 24,
        }
    }
}

/// `report.json` of a demo run.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// The seed.
    pub seed: u64,
    /// Wall-clock minutes of the whole run.
    pub minutes: f64,
    /// Held-out avg@k pass@1 after each phase.
    pub eval: Phases,
    /// How well the temperature controller held the entropy.
    pub entropy: EntropyReport,
}

/// pass@1 per task after each phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phases {
    /// After SFT.
    pub sft: TaskScores,
    /// After the math RL stages.
    pub math_rl: TaskScores,
    /// After the code RL stages.
    pub code_rl: TaskScores,
}

/// pass@1 of each held-out set.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TaskScores {
    /// Held-out math.
    pub math: f64,
    /// Held-out code.
    pub code: f64,
}

/// Entropy of the rollouts against the controller's target.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EntropyReport {
    /// The target (nats per token).
    pub target: f64,
    /// Mean per-step entropy after each stage's first `warmup_steps` steps
    /// (null when no stage ran longer than that).
    pub mean_after_warmup: Option<f64>,
    /// Largest |entropy - target| of a step after warm-up.
    pub max_abs_dev_after_warmup: Option<f64>,
    /// Steps skipped at the start of each stage.
    pub warmup_steps: u64,
}

/// The entropy target of the demo's stages.
const TARGET_ENTROPY: f64 = 0.3;
/// Steps at the start of each stage left out of the entropy statistics: the
/// controller is still moving from the last stage's temperature.
const ENTROPY_WARMUP: u64 = 5;

/// Runs `trainer demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    demo(&args)?;
    Ok(())
}

/// Runs the whole demo and returns its report.
pub fn demo(args: &DemoArgs) -> Result<DemoReport> {
    let started = Instant::now();
    let plan = if args.quick { Plan::quick() } else { Plan::full() };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/demo-seed{}", args.seed)));
    if out.exists() && std::fs::read_dir(&out)?.next().is_some() {
        if !args.force {
            bail!(
                "{} already exists; pass --force to replace it or --out for another directory",
                out.display()
            );
        }
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The configs written below name absolute paths, so they run from anywhere.
    let out = std::path::absolute(&out).with_context(|| format!("resolving {}", out.display()))?;
    let binary = crate::local_server::find_binary(args.reward_server.as_deref())?;
    let phase =
        |n: u32, what: &str| eprintln!("demo [{n}/5] {what} ({:.0} s)", started.elapsed().as_secs_f64());

    phase(1, "generating tasks");
    let mut generated = tasks::generate(args.seed, &plan.sizes);
    let flawed = flaws::add_flaws(&mut generated, plan.flaw_fraction, args.seed);
    eprintln!(
        "demo: {} of {} math and {} of {} code demonstrations carry a flaw the verifier rejects (see demo/flaws.rs)",
        flawed.math,
        generated.sft_math.len(),
        flawed.code,
        generated.sft_code.len()
    );
    let files = tasks::write(&out.join("data"), &generated)?;

    phase(2, "tokenizer, model, SFT");
    let mut texts =
        crate::init::read_texts(&[files.sft.clone(), files.rl_math.clone(), files.rl_code.clone()])?;
    texts.sort();
    let tokenizer = Tokenizer::train_byte_level_bpe(
        &texts,
        plan.vocab,
        &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    )?;
    let tok_dir = out.join("tokenizer");
    tokenizer.save_dir(&tok_dir)?;
    let init = InitArgs {
        tokenizer: Some(tok_dir),
        vocab_size: None,
        out: out.join("init"),
        hidden_size: plan.hidden,
        layers: plan.layers,
        heads: plan.heads,
        kv_heads: plan.kv_heads,
        intermediate_size: plan.intermediate,
        context: plan.context,
        rope_theta: 10000.0,
        untied: false,
        seed: args.seed,
    };
    init_config(&init, tokenizer.vocab_size()).validate()?;
    run_init(init)?;
    let sft = SftConfig {
        model: ModelConfig {
            checkpoint: out.join("init"),
            dtype: "f32".into(),
            device: "cpu".into(),
        },
        data: DataConfig {
            train: files.sft.clone(),
            eval: None,
            eval_fraction: 0.0,
            template: Template::ChatMl,
            max_len: plan.context,
        },
        train: TrainConfig {
            batch_size: plan.sft_batch,
            grad_accum: 1,
            epochs: plan.sft_epochs,
            max_steps: 0,
            lr: plan.sft_lr,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            seed: args.seed,
            bucket_batches: 8,
            ..TrainConfig::default()
        },
        output: OutputConfig {
            dir: out.join("sft"),
            log_every: 10,
            eval_every: 0,
            save_every: 0,
            keep_checkpoints: 1,
        },
    };
    std::fs::write(out.join("sft.toml"), sft.to_toml())?;
    let sft_summary = crate::sft::train(&sft, false, None)?;

    phase(3, "starting reward-server");
    let server = crate::local_server::RewardServer::start(
        &binary,
        args.workers,
        &out.join("reward-server.log"),
        Duration::from_secs(120),
    )?;
    eprintln!("demo: reward-server at {}", server.url());

    phase(4, "GRPO: math stages, then code");
    let stage = |task: Task, (name, tokens, steps): (&'static str, usize, u64), data: &Path| Stage {
        name: name.to_string(),
        task,
        datasets: vec![data.to_path_buf()],
        max_response_tokens: tokens,
        prompts_per_batch: match task {
            Task::Math => plan.prompts_per_batch,
            Task::Code => plan.code_prompts_per_batch,
        },
        group_size: plan.group,
        lr: plan.rl_lr,
        warmup_steps: 0,
        steps,
        epochs: 1,
        overlong_filter: tokens < plan.eval_tokens,
        easy_filter: None,
        difficulty_filter: None,
        temperature: TemperaturePolicy::TargetEntropy {
            target_entropy: TARGET_ENTROPY,
            initial: 1.0,
            // After 8 epochs of SFT the model is so sure of itself that an
            // entropy of 0.3 takes T near 2 by the end of the math stages.
            min: 0.3,
            max: 3.0,
            // Entropy here moves as T^8 to T^14 (rl/temperature.rs); 0.05
            // keeps the loop from overshooting.
            gain: 0.05,
            // The default 10% per step: from T = 1 (entropy 0.03) to the
            // stage's T of about 1.7 in 6 steps; 5% took 15.
            max_step: 0.1,
            carry: true,
        },
        top_p: 1.0,
        ppo_epochs: 1,
        clip_eps: 0.2,
        kl_beta: 0.0,
        dynamic_sampling: 0,
    };
    let mut stages: Vec<Stage> = plan
        .math_stages
        .iter()
        .map(|&s| stage(Task::Math, s, &files.rl_math))
        .collect();
    stages.extend(
        plan.code_stages
            .iter()
            .map(|&s| stage(Task::Code, s, &files.rl_code)),
    );
    let rl = RlConfig {
        model: RlModel {
            checkpoint: sft_summary.checkpoint.clone(),
            dtype: "f32".into(),
            device: "cpu".into(),
            template: Template::ChatMl,
        },
        reward: RewardConfig {
            endpoints: vec![server.url().to_string()],
            ..RewardConfig::default()
        },
        train: RlTrain {
            seed: args.seed,
            micro_batch: 32,
            ..RlTrain::default()
        },
        engine: EngineConfig::default(),
        eval: EvalConfig {
            sets: vec![
                EvalSet {
                    name: "math".into(),
                    task: Task::Math,
                    path: files.eval_math.clone(),
                    k: None,
                },
                EvalSet {
                    name: "code".into(),
                    task: Task::Code,
                    path: files.eval_code.clone(),
                    k: None,
                },
            ],
            k: plan.eval_k,
            temperature: 0.6,
            top_p: 0.95,
            max_response_tokens: plan.eval_tokens,
            every: 0,
            at_start: true,
        },
        output: RlOutput {
            dir: out.join("rl"),
            save_every: 0,
            keep_checkpoints: 1,
            progress: true,
        },
        stages,
    };
    rl.validate().map_err(anyhow::Error::msg)?;
    std::fs::write(out.join("rl.toml"), rl.to_toml())?;
    let summary = crate::rl::train(&rl, false, None)?;
    drop(server);

    phase(5, "report");
    let last_math = plan.math_stages.last().map(|s| s.0).unwrap_or_default();
    let last_code = plan.code_stages.last().map(|s| s.0).unwrap_or_default();
    let scores = |pick: &dyn Fn(&EvalRecord) -> bool| -> Result<TaskScores> {
        let get = |set: &str| {
            summary
                .evals
                .iter()
                .find(|e| e.set == set && pick(e))
                .map(|e| e.pass1)
                .context("an evaluation is missing from the RL run")
        };
        Ok(TaskScores {
            math: get("math")?,
            code: get("code")?,
        })
    };
    let eval = Phases {
        sft: scores(&|e| e.when == "start")?,
        math_rl: scores(&|e| e.when == "stage_end" && e.stage == last_math)?,
        code_rl: scores(&|e| e.when == "stage_end" && e.stage == last_code)?,
    };
    let steps: Vec<StepRecord> = crate::rl::report::read_jsonl(&out.join("rl/metrics.jsonl"))?;
    let after: Vec<f64> = steps
        .iter()
        .filter(|s| s.stage_step > ENTROPY_WARMUP && s.entropy.is_finite())
        .map(|s| s.entropy)
        .collect();
    let entropy = EntropyReport {
        target: TARGET_ENTROPY,
        mean_after_warmup: (!after.is_empty()).then(|| after.iter().sum::<f64>() / after.len() as f64),
        max_abs_dev_after_warmup: (!after.is_empty()).then(|| {
            after
                .iter()
                .map(|e| (e - TARGET_ENTROPY).abs())
                .fold(0.0, f64::max)
        }),
        warmup_steps: ENTROPY_WARMUP,
    };
    let report = DemoReport {
        seed: args.seed,
        minutes: started.elapsed().as_secs_f64() / 60.0,
        eval,
        entropy,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let md = markdown(&report, &out);
    std::fs::write(out.join("report.md"), &md)?;
    println!("{md}");
    eprintln!(
        "demo: wrote {} and {}",
        out.join("report.json").display(),
        out.join("report.md").display()
    );
    Ok(report)
}

fn markdown(r: &DemoReport, out: &Path) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Demo, seed {} ({:.1} minutes)\n", r.seed, r.minutes);
    let _ = writeln!(md, "Held-out avg@8 pass@1 (temperature 0.6, top-p 0.95):\n");
    let _ = writeln!(md, "| after | math | code |\n|---|---:|---:|");
    for (name, s) in [
        ("SFT", r.eval.sft),
        ("math RL", r.eval.math_rl),
        ("code RL", r.eval.code_rl),
    ] {
        let _ = writeln!(md, "| {name} | {:.3} | {:.3} |", s.math, s.code);
    }
    let _ = writeln!(
        md,
        "\nRL gain over SFT: math {:+.1} points, code {:+.1} points.\n",
        100.0 * (r.eval.code_rl.math - r.eval.sft.math),
        100.0 * (r.eval.code_rl.code - r.eval.sft.code)
    );
    match (r.entropy.mean_after_warmup, r.entropy.max_abs_dev_after_warmup) {
        (Some(mean), Some(dev)) => {
            let _ = writeln!(
                md,
                "Rollout entropy after each stage's first {} steps: mean {mean:.3} against the target {:.2}; largest step deviation {dev:.3}.\n",
                r.entropy.warmup_steps, r.entropy.target
            );
        }
        _ => {
            let _ = writeln!(
                md,
                "No stage ran past its first {} steps: no entropy statistics.\n",
                r.entropy.warmup_steps
            );
        }
    }
    let _ = writeln!(
        md,
        "Curves and per-stage numbers: `{}`.",
        out.join("rl/report.md").display()
    );
    md
}
