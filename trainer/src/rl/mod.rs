//! `trainer rl`: GRPO with verifiable rewards, stage after stage.
//!
//! Each step (`step.rs`) takes `prompts_per_batch` prompts of the stage's
//! data (a seeded shuffle per epoch), samples `group_size` responses to each
//! from the current policy at the stage's temperature with the rollout
//! engine, has `reward-server` grade them over HTTP ([`rollout`]), replaces
//! groups with no signal by fresh prompts (dynamic sampling), turns rewards
//! into group-normalised advantages and takes `ppo_epochs` AdamW steps on
//! the token-level clipped loss ([`grpo`], `update.rs`). The temperature
//! policy then sets the next step's temperature ([`temperature`]). Between
//! epochs, prompts solved too often are dropped; a stage can also start by
//! keeping only prompts the model does not solve too often (its difficulty
//! split, [`filter`]). Held-out sets are evaluated at the start, every
//! `eval.every` steps and at each stage's end ([`eval`]); `run.rs` holds the
//! stage loop, the evaluations and the checkpoints.
//!
//! A run directory holds `rl.resolved.toml`, `metrics.jsonl` (one line per
//! step), `eval.jsonl`, `checkpoints/step-N/` (the model, the optimizer,
//! `rl_state.json` and `rl.toml`), `plots/*.png` and `report.md`
//! ([`report`]). `--resume` continues from the newest checkpoint and, with
//! the same config, samples exactly what the uninterrupted run would have.
//!
//! When the reward server stays unreachable after the client's retries, or a
//! loss or gradient is not finite, the run saves a checkpoint of the last
//! good policy (the failed step is not applied) and stops with a message
//! saying how to resume.

pub mod config;
pub mod data;
pub mod eval;
pub mod filter;
pub mod grpo;
pub mod report;
pub mod rollout;
mod run;
mod state;
mod step;
pub mod temperature;
mod update;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::model::checkpoint;
use crate::optim::AdamW;
use crate::resume::{list_step_dirs, resume_point, truncate_after_step};
use crate::runtime::{parse_device, parse_dtype};
use crate::tokenizer::Tokenizer;
use config::RlConfig;
use data::read_problems;
use eval::EvalRecord;
use rollout::Rewarder;
use run::{NonFinite, Run};
pub use state::{RlState, StepRecord};
pub use step::Batch;
pub use update::{micro_batches, pass, Pass};

/// Arguments of `trainer rl`.
#[derive(Debug, Args)]
pub struct RlArgs {
    /// The run's TOML config (see docs/TRAINER.md for every field).
    #[arg(long)]
    pub config: PathBuf,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Save and stop after this global step, as if interrupted.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Reward server URL(s), replacing `reward.endpoints` (repeat for several).
    #[arg(long = "reward-url", value_name = "URL")]
    pub reward_urls: Vec<String>,
}

/// Runs `trainer rl`.
pub fn run(args: RlArgs) -> Result<()> {
    let mut config = RlConfig::from_file(&args.config)?;
    if !args.reward_urls.is_empty() {
        config.reward.endpoints = args.reward_urls;
    }
    let summary = train(&config, args.resume, args.stop_after)?;
    eprintln!(
        "rl: {} steps; final checkpoint {}; report {}",
        summary.state.step,
        summary.checkpoint.display(),
        config.output.dir.join("report.md").display()
    );
    Ok(())
}

/// What a finished (or stopped) run produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The state at the end.
    pub state: RlState,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// Every evaluation of this invocation, in order.
    pub evals: Vec<EvalRecord>,
}
/// Trains per `config`; `resume` continues from the newest checkpoint,
/// `stop_after` ends early (with a checkpoint) after that global step.
pub fn train(config: &RlConfig, resume: bool, stop_after: Option<u64>) -> Result<Summary> {
    let device = parse_device(&config.model.device).map_err(anyhow::Error::msg)?;
    let dtype = parse_dtype(&config.model.dtype).map_err(anyhow::Error::msg)?;
    let out = &config.output.dir;
    let ckpt_root = out.join("checkpoints");
    let resume_from = resume_point(&ckpt_root, &list_checkpoints(&ckpt_root)?, resume)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let source = resume_from
        .clone()
        .unwrap_or_else(|| config.model.checkpoint.clone());
    let tokenizer = Tokenizer::from_dir(&source)?;
    let mut model =
        checkpoint::load(&source, dtype, &device).with_context(|| format!("loading {}", source.display()))?;
    let layers = model.config().num_hidden_layers;
    model.set_checkpoint_layers(config.train.checkpoint_layers.count(layers));
    let reference = if config.stages.iter().any(|s| s.kl_beta > 0.0) {
        let p = &config.model.checkpoint;
        Some(
            checkpoint::load(p, dtype, &device)
                .with_context(|| format!("loading the reference {}", p.display()))?,
        )
    } else {
        None
    };
    let mut opt = AdamW::new(model.named_vars(), config.train.adamw)?;
    let mut state = RlState::new();
    let metrics_path = out.join("metrics.jsonl");
    let eval_path = out.join("eval.jsonl");
    if let Some(dir) = &resume_from {
        let saved =
            std::fs::read_to_string(dir.join("rl.toml")).context("reading the checkpoint's rl.toml")?;
        let saved: RlConfig = toml::from_str(&saved).context("parsing the checkpoint's rl.toml")?;
        if saved.stages != config.stages || saved.train != config.train || saved.eval != config.eval {
            bail!(
                "the [train], [eval] or [[stage]] settings differ from the run being resumed ({}); resume with the same settings",
                dir.display()
            );
        }
        opt.load(&dir.join("optimizer.safetensors"))
            .context("loading optimizer state")?;
        state = serde_json::from_str(&std::fs::read_to_string(dir.join("rl_state.json"))?)
            .context("reading rl_state.json")?;
        truncate_after_step(&metrics_path, state.step)?;
        truncate_after_step(&eval_path, state.step)?;
        tracing::info!(
            step = state.step,
            stage = state.stage,
            "resuming from {}",
            dir.display()
        );
    } else {
        for p in [&metrics_path, &eval_path] {
            if p.exists() {
                std::fs::remove_file(p)?;
            }
        }
    }
    std::fs::write(out.join("rl.resolved.toml"), config.to_toml())?;

    let rewarder = Rewarder::new(&config.reward)?;
    rewarder.health()?;
    let mut stop_ids = tokenizer.eos_ids().to_vec();
    if let Some(id) = config
        .model
        .template
        .end_of_turn()
        .and_then(|t| tokenizer.token_id(t))
    {
        if !stop_ids.contains(&id) {
            stop_ids.push(id);
        }
    }
    let context = model.config().max_position_embeddings;
    let eval_budget = eval_tokens(config, 0);
    let mut eval_sets = Vec::new();
    for set in &config.eval.sets {
        let (problems, skipped) = read_problems(
            &set.path,
            set.task,
            config.model.template,
            &tokenizer,
            context.saturating_sub(eval_budget),
        )?;
        if skipped > 0 {
            tracing::warn!(skipped, "eval set {}: prompts too long for the context", set.name);
        }
        eval_sets.push(problems);
    }
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening {}", p.display()))
    };
    let mut run = Run {
        config,
        model,
        reference,
        tokenizer,
        opt,
        rewarder,
        state,
        stop_ids,
        eval_sets,
        source,
        metrics: open(&metrics_path)?,
        evals_file: open(&eval_path)?,
        evals: Vec::new(),
        last_checkpoint: resume_from,
        partial: false,
    };
    let outcome = run.stages(stop_after);
    if let Err(e) = report::write(out, config) {
        tracing::warn!("writing the report: {e:#}");
    }
    if let Err(e) = outcome {
        let kind = if e.downcast_ref::<rollout::RewardUnavailable>().is_some() {
            "the reward server failed"
        } else if e.downcast_ref::<NonFinite>().is_some() {
            "training diverged"
        } else {
            return Err(e);
        };
        let saved = if run.partial {
            // Part of the step's PPO epochs were applied: keep the last
            // checkpoint rather than save a policy no state describes.
            run.last_checkpoint.clone()
        } else {
            Some(run.save().context("saving a checkpoint after the failure")?)
        };
        let saved = saved.map_or("no checkpoint was written yet".to_string(), |d| {
            format!("the last good policy is saved in {}", d.display())
        });
        bail!(
            "{kind} at step {}: {e:#}\n{saved}; fix the cause and rerun with --resume",
            run.state.step + 1,
        );
    }
    let checkpoint = match run.last_checkpoint.clone() {
        Some(c) => c,
        None => run.save()?,
    };
    Ok(Summary {
        state: run.state,
        checkpoint,
        evals: run.evals,
    })
}

/// Response budget of evaluations during stage `stage`.
pub(super) fn eval_tokens(config: &RlConfig, stage: usize) -> usize {
    if config.eval.max_response_tokens > 0 {
        config.eval.max_response_tokens
    } else {
        config.stages[stage.min(config.stages.len() - 1)].max_response_tokens
    }
}

/// `(step, dir)` of the RL checkpoints under `root`, oldest first.
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    list_step_dirs(root, "rl_state.json")
}

/// A stable seed from parts.
pub(super) fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h = (h ^ p).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}
