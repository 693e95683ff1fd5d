//! `trainer rl`: GRPO with verifiable rewards, stage after stage.
//!
//! Each step takes `prompts_per_batch` prompts of the stage's data (a seeded
//! shuffle per epoch), samples `group_size` responses to each from the
//! current policy at the stage's temperature, has `reward-server` grade them
//! over HTTP ([`rollout`]), turns rewards into group-normalised advantages
//! and takes `ppo_epochs` AdamW steps on the token-level clipped loss
//! ([`grpo`]). The temperature policy then sets the next step's temperature
//! ([`temperature`]). Between epochs, prompts solved too often are dropped;
//! a stage can also start by keeping only prompts the model does not solve
//! too often (its difficulty split). Held-out sets are evaluated at the start,
//! every `eval.every` steps and at each stage's end ([`eval`]).
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
pub mod grpo;
pub mod report;
pub mod rollout;
pub mod temperature;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::model::checkpoint::{self, CheckpointWriter, AUX_FILES, MAX_SHARD_BYTES};
use crate::model::Qwen2;
use crate::optim::{accumulate, clip_grad_norm, named_grads, AdamW};
use crate::resume::{list_step_dirs, prune_checkpoints, resume_point, truncate_after_step};
use crate::runtime::{parse_device, parse_dtype};
use crate::sample::SamplingParams;
use crate::tokenizer::Tokenizer;
use config::{RlConfig, Stage};
use data::{read_problems, Problem};
use eval::EvalRecord;
use grpo::{advantages, collate, policy_loss, Sequence};
use rollout::{rollouts, Rewarder, Rollout};
use temperature::Temperature;

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

/// Where a run stands: saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlState {
    /// Optimizer steps taken (rollout batches trained on), over all stages.
    pub step: u64,
    /// Index of the current stage.
    pub stage: usize,
    /// Steps taken in the current stage.
    pub stage_step: u64,
    /// Epoch over the stage's prompts.
    pub epoch: u64,
    /// Next position in the epoch's prompt order.
    pub position: usize,
    /// Temperature of the next step.
    pub temperature: Option<f64>,
    /// Ids of the stage's prompts still in play (after filtering); `None`
    /// until the stage has started.
    pub active: Option<Vec<String>>,
    /// Times each prompt was solved in this epoch (for the easy filter).
    pub solved: BTreeMap<String, usize>,
    /// Whether the starting policy has been evaluated.
    pub evaluated_start: bool,
}

impl RlState {
    fn new() -> RlState {
        RlState {
            step: 0,
            stage: 0,
            stage_step: 0,
            epoch: 0,
            position: 0,
            temperature: None,
            active: None,
            solved: BTreeMap::new(),
            evaluated_start: false,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Global step just taken.
    pub step: u64,
    /// Stage name.
    pub stage: String,
    /// Step within the stage.
    pub stage_step: u64,
    /// Epoch over the stage's prompts.
    pub epoch: u64,
    /// Sampling temperature of this step's rollouts.
    pub temperature: f64,
    /// Mean per-token entropy (nats) of the temperature-scaled distributions of the rollouts.
    pub entropy: f64,
    /// The entropy aimed at, when the temperature is closed-loop.
    pub target_entropy: Option<f64>,
    /// Mean reward.
    pub reward_mean: f64,
    /// Fraction of responses judged correct.
    pub accuracy: f64,
    /// Mean response length in tokens.
    pub response_len: f64,
    /// Fraction of responses cut at the length limit.
    pub truncated: f64,
    /// Fraction of groups whose rewards were all equal (no signal), after resampling.
    pub flat_groups: f64,
    /// Groups replaced by dynamic sampling.
    pub resampled: usize,
    /// Fraction of trained tokens whose ratio was clipped (last PPO epoch).
    pub clip_frac: f64,
    /// Mean KL estimate to the reference per trained token (0 without one).
    pub kl: f64,
    /// Loss of the last PPO epoch.
    pub loss: f64,
    /// Global gradient norm before clipping (last PPO epoch).
    pub grad_norm: f64,
    /// Learning rate.
    pub lr: f64,
    /// Tokens trained on (after overlong filtering).
    pub trained_tokens: usize,
    /// Mean |log p_sampler - log p_trainer| over trained tokens (numerical
    /// agreement of the cached sampler and the training forward).
    pub logprob_gap: f64,
    /// Generated tokens per second of sampling.
    pub sample_tokens_per_s: f64,
    /// Positions per second of the update (forward and backward).
    pub train_tokens_per_s: f64,
    /// Mean seconds per reward request.
    pub reward_latency_s: f64,
    /// Seconds spent waiting for rewards after sampling ended.
    pub reward_wait_s: f64,
    /// Seconds for the whole step.
    pub step_s: f64,
    /// Prompts still in play in the stage.
    pub prompts_active: usize,
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

/// Why a step could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NonFinite(String);

/// Everything a run holds while it trains.
struct Run<'a> {
    config: &'a RlConfig,
    model: Qwen2,
    reference: Option<Qwen2>,
    tokenizer: Tokenizer,
    opt: AdamW,
    rewarder: Rewarder,
    state: RlState,
    stop_ids: Vec<u32>,
    eval_sets: Vec<(String, Vec<Problem>)>,
    source: PathBuf,
    metrics: std::fs::File,
    evals_file: std::fs::File,
    evals: Vec<EvalRecord>,
    last_checkpoint: Option<PathBuf>,
    /// Set while a multi-epoch update has stepped but not finished: the
    /// policy is then between two states a checkpoint can describe.
    partial: bool,
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
        eval_sets.push((set.name.clone(), problems));
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
fn eval_tokens(config: &RlConfig, stage: usize) -> usize {
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
fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h = (h ^ p).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

impl Run<'_> {
    fn stages(&mut self, stop_after: Option<u64>) -> Result<()> {
        if self.config.eval.at_start && !self.state.evaluated_start {
            self.evaluate("start")?;
            self.state.evaluated_start = true;
        }
        let mut previous_t = self.state.temperature;
        while self.state.stage < self.config.stages.len() {
            let config = self.config;
            let stage = &config.stages[self.state.stage];
            let ended = self.stage(stage, previous_t, stop_after)?;
            if !ended {
                return Ok(());
            }
            self.evaluate("stage_end")?;
            previous_t = self.state.temperature;
            self.state.stage += 1;
            self.state.stage_step = 0;
            self.state.epoch = 0;
            self.state.position = 0;
            self.state.active = None;
            self.state.solved.clear();
            // Kept as the next stage's starting point (when it carries it).
            self.state.temperature = previous_t;
            let dir = self.save()?;
            tracing::info!("stage {} done; saved {}", stage.name, dir.display());
        }
        Ok(())
    }

    /// Runs (the rest of) a stage; false when stopped early by `stop_after`.
    fn stage(&mut self, stage: &Stage, previous_t: Option<f64>, stop_after: Option<u64>) -> Result<bool> {
        let context = self.model.config().max_position_embeddings;
        if stage.max_response_tokens >= context {
            bail!(
                "stage {}: max_response_tokens {} leaves no room for a prompt in the model's context of {context}",
                stage.name,
                stage.max_response_tokens
            );
        }
        let mut problems = Vec::new();
        for path in &stage.datasets {
            let (mut ps, skipped) = read_problems(
                path,
                stage.task,
                self.config.model.template,
                &self.tokenizer,
                context - stage.max_response_tokens,
            )?;
            if skipped > 0 {
                tracing::warn!(skipped, "{}: prompts too long for the context", path.display());
            }
            problems.append(&mut ps);
        }
        let mut temp = match (self.state.stage_step, self.state.temperature) {
            (s, Some(t)) if s > 0 => Temperature::resume(stage.temperature, t),
            _ => Temperature::new(stage.temperature, previous_t),
        };
        if self.state.active.is_none() {
            let mut ids: Vec<String> = problems.iter().map(|p| p.id.clone()).collect();
            if let Some(filter) = stage.difficulty_filter {
                ids = self.difficulty_split(stage, &problems, filter, temp.current())?;
            }
            self.state.active = Some(ids);
        }
        let keep: BTreeSet<&str> = self.state.active.iter().flatten().map(String::as_str).collect();
        let mut active: Vec<usize> = (0..problems.len())
            .filter(|&i| keep.contains(problems[i].id.as_str()))
            .collect();
        let per_epoch = active.len().div_ceil(stage.prompts_per_batch) as u64;
        let total = if stage.steps > 0 {
            stage.steps
        } else {
            stage.epochs * per_epoch
        };
        tracing::info!(
            stage = stage.name,
            prompts = active.len(),
            steps = total,
            temperature = temp.current(),
            "starting stage"
        );
        let bar = crate::progress::steps(
            Some(&stage.name),
            total,
            self.state.stage_step,
            self.config.output.progress,
        );
        loop {
            let done = if stage.steps > 0 {
                self.state.stage_step >= stage.steps
            } else {
                self.state.epoch >= stage.epochs
            };
            if done || active.is_empty() {
                if active.is_empty() {
                    bar.println(format!(
                        "stage {}: every prompt was filtered out; ending it",
                        stage.name
                    ));
                }
                bar.finish_and_clear();
                self.state.temperature = Some(temp.current());
                return Ok(true);
            }
            if stop_after.is_some_and(|s| self.state.step >= s) {
                bar.finish_and_clear();
                self.state.temperature = Some(temp.current());
                let dir = self.save()?;
                tracing::info!("stopped after step {}; saved {}", self.state.step, dir.display());
                return Ok(false);
            }
            let order = epoch_order(
                &active,
                mix(&[self.config.train.seed, self.state.stage as u64, self.state.epoch]),
            );
            let record = self.step(stage, &problems, &order, &mut temp)?;
            if self.state.position >= order.len() {
                // End of an epoch: drop the prompts solved too often.
                if let Some(k) = stage.easy_filter {
                    let before = active.len();
                    let solved = std::mem::take(&mut self.state.solved);
                    active.retain(|&i| solved.get(&problems[i].id).copied().unwrap_or(0) <= k);
                    let kept: BTreeSet<usize> = active.iter().copied().collect();
                    self.state.active = Some(
                        (0..problems.len())
                            .filter(|i| kept.contains(i))
                            .map(|i| problems[i].id.clone())
                            .collect(),
                    );
                    bar.println(format!(
                        "stage {} epoch {}: easy filter (solved > {k} of {}) dropped {} of {before} prompts",
                        stage.name,
                        self.state.epoch,
                        stage.group_size,
                        before - active.len()
                    ));
                }
                self.state.solved.clear();
                self.state.epoch += 1;
                self.state.position = 0;
            }
            bar.set_message(format!(
                "reward {:.3} | H {:.3} | T {:.2} | len {:.0}",
                record.reward_mean, record.entropy, record.temperature, record.response_len
            ));
            bar.inc(1);
            self.state.temperature = Some(temp.current());
            let stage_step = self.state.stage_step;
            let every = |n: u64| n > 0 && stage_step.is_multiple_of(n);
            let stage_over = if stage.steps > 0 {
                self.state.stage_step >= stage.steps
            } else {
                self.state.epoch >= stage.epochs
            };
            if !stage_over && every(self.config.eval.every) {
                bar.suspend(|| self.evaluate("every"))?;
            }
            if !stage_over && every(self.config.output.save_every) {
                let dir = self.save()?;
                bar.println(format!("saved {}", dir.display()));
            }
        }
    }

    /// One GRPO step: rollouts, advantages, update, temperature, metrics.
    fn step(
        &mut self,
        stage: &Stage,
        problems: &[Problem],
        order: &[usize],
        temp: &mut Temperature,
    ) -> Result<StepRecord> {
        let started = Instant::now();
        let t = temp.current();
        let params = SamplingParams {
            max_new_tokens: stage.max_response_tokens,
            temperature: t,
            top_p: stage.top_p,
            top_k: 0,
            seed: 0,
            stop_ids: self.stop_ids.clone(),
            stop_strings: Vec::new(),
        };
        let g = stage.group_size;
        let mut position = self.state.position;
        let take = |position: &mut usize, n: usize| -> Vec<usize> {
            let end = (*position + n).min(order.len());
            let picked = order[*position..end].to_vec();
            *position = end;
            picked
        };
        let mut chosen = take(&mut position, stage.prompts_per_batch);
        let refs: Vec<&Problem> = chosen.iter().map(|&i| &problems[i]).collect();
        let seed = mix(&[self.config.train.seed, self.state.step, 0]);
        let (mut rolls, mut timing) = rollouts(
            &self.model,
            &self.tokenizer,
            &self.rewarder,
            &refs,
            g,
            &params,
            self.config.train.rollout_chunk,
            seed,
        )?;
        // Dynamic sampling: replace groups with no signal by fresh prompts.
        let mut resampled = 0;
        let mut notes = Vec::new();
        for round in 1..=stage.dynamic_sampling {
            let flat: Vec<usize> = (0..chosen.len())
                .filter(|&k| is_flat(&rolls[k * g..(k + 1) * g]))
                .collect();
            if flat.is_empty() || position >= order.len() {
                break;
            }
            let fresh = take(&mut position, flat.len());
            let refs: Vec<&Problem> = fresh.iter().map(|&i| &problems[i]).collect();
            let seed = mix(&[self.config.train.seed, self.state.step, round as u64]);
            let (more, more_timing) = rollouts(
                &self.model,
                &self.tokenizer,
                &self.rewarder,
                &refs,
                g,
                &params,
                self.config.train.rollout_chunk,
                seed,
            )?;
            timing.sample_s += more_timing.sample_s;
            timing.wait_s += more_timing.wait_s;
            for (j, (&slot, &p)) in flat.iter().zip(&fresh).enumerate() {
                // Count the replaced group's solves for the easy filter too.
                notes.push((chosen[slot], solved(&rolls[slot * g..(slot + 1) * g])));
                chosen[slot] = p;
                for r in 0..g {
                    let mut roll = more[j * g + r].clone();
                    roll.problem = slot;
                    rolls[slot * g + r] = roll;
                }
                resampled += 1;
            }
        }
        for (k, &p) in chosen.iter().enumerate() {
            notes.push((p, solved(&rolls[k * g..(k + 1) * g])));
        }

        let rewards: Vec<f64> = rolls.iter().map(|r| r.reward).collect();
        let (adv, flat) = advantages(&rewards, g, self.config.train.adv_eps);
        let seqs: Vec<Sequence> = rolls
            .iter()
            .zip(&adv)
            .map(|(r, &a)| Sequence {
                prompt: problems[chosen[r.problem]].prompt.clone(),
                response: r.ids.clone(),
                advantage: a as f32,
                trained: !(r.ids.is_empty() || stage.overlong_filter && r.truncated),
                sampler_logprobs: r.logprobs.clone(),
            })
            .collect();
        let update = self.update(stage, &seqs, t)?;
        for (p, n) in notes {
            *self.state.solved.entry(problems[p].id.clone()).or_default() += n;
        }

        let n = rolls.len().max(1) as f64;
        let gen_tokens: usize = rolls.iter().map(|r| r.ids.len()).sum();
        let entropy = mean_entropy(&rolls);
        temp.update(entropy);
        self.state.position = position;
        self.state.step += 1;
        self.state.stage_step += 1;
        let record = StepRecord {
            step: self.state.step,
            stage: stage.name.clone(),
            stage_step: self.state.stage_step,
            epoch: self.state.epoch,
            temperature: t,
            entropy,
            target_entropy: temp.target(),
            reward_mean: rewards.iter().sum::<f64>() / n,
            accuracy: rolls.iter().filter(|r| r.verdict.is_correct()).count() as f64 / n,
            response_len: gen_tokens as f64 / n,
            truncated: rolls.iter().filter(|r| r.truncated).count() as f64 / n,
            flat_groups: flat as f64 / chosen.len().max(1) as f64,
            resampled,
            clip_frac: update.clipped / update.tokens.max(1) as f64,
            kl: update.kl_sum / update.tokens.max(1) as f64,
            loss: update.loss,
            grad_norm: update.grad_norm,
            lr: update.lr,
            trained_tokens: update.tokens,
            logprob_gap: update.gap,
            sample_tokens_per_s: gen_tokens as f64 / timing.sample_s.max(1e-9),
            train_tokens_per_s: update.positions as f64 / update.seconds.max(1e-9),
            reward_latency_s: timing.latency_s,
            reward_wait_s: timing.wait_s,
            step_s: started.elapsed().as_secs_f64(),
            prompts_active: self.state.active.as_ref().map_or(0, Vec::len),
        };
        writeln!(self.metrics, "{}", serde_json::to_string(&record)?)?;
        self.metrics.flush()?;
        Ok(record)
    }

    /// `ppo_epochs` AdamW steps on the batch.
    fn update(&mut self, stage: &Stage, seqs: &[Sequence], temperature: f64) -> Result<Update> {
        let started = Instant::now();
        let device = self.model.device().clone();
        let pad = self.tokenizer.pad_id();
        // Similar lengths share a micro-batch.
        let mut order: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].trained).collect();
        order.sort_by_key(|&i| seqs[i].prompt.len() + seqs[i].response.len());
        let batches = order
            .chunks(self.config.train.micro_batch)
            .map(|c| collate(&c.iter().map(|&i| &seqs[i]).collect::<Vec<_>>(), pad, &device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let tokens: usize = batches.iter().map(|b| b.tokens).sum();
        let positions: usize = batches.iter().map(|b| b.positions).sum();
        let lr = if stage.warmup_steps > 0 && self.state.stage_step < stage.warmup_steps {
            stage.lr * (self.state.stage_step + 1) as f64 / stage.warmup_steps as f64
        } else {
            stage.lr
        };
        let mut out = Update {
            lr,
            tokens,
            positions: positions * stage.ppo_epochs,
            ..Update::default()
        };
        if tokens == 0 {
            out.seconds = started.elapsed().as_secs_f64();
            return Ok(out);
        }
        let references = match (&self.reference, stage.kl_beta > 0.0) {
            (Some(r), true) => Some(
                batches
                    .iter()
                    .map(|b| grpo::logprobs(r, b, temperature).map(|t| t.detach()))
                    .collect::<candle_core::Result<Vec<_>>>()?,
            ),
            _ => None,
        };
        let vars = self.model.named_vars();
        let mut olds: Vec<Tensor> = Vec::with_capacity(batches.len());
        for epoch in 0..stage.ppo_epochs {
            let mut grads = HashMap::new();
            let (mut loss, mut clipped, mut kl_sum, mut gap) = (0.0, 0.0, 0.0, 0.0);
            for (i, batch) in batches.iter().enumerate() {
                let logp = grpo::logprobs(&self.model, batch, temperature)?;
                if epoch == 0 {
                    let old = logp.detach();
                    gap += ((&old - &batch.sampler)?.abs()? * &batch.mask)?
                        .sum_all()?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?;
                    olds.push(old);
                }
                let reference = references.as_ref().map(|r| (&r[i], stage.kl_beta));
                let l = policy_loss(batch, &logp, &olds[i], reference, stage.clip_eps, tokens)?;
                if !l.value.is_finite() {
                    return Err(NonFinite(format!(
                        "the loss is {} (PPO epoch {}, micro-batch {})",
                        l.value,
                        epoch + 1,
                        i + 1
                    ))
                    .into());
                }
                loss += l.value;
                clipped += l.clipped;
                kl_sum += l.kl_sum;
                accumulate(&mut grads, named_grads(&vars, &l.loss.backward()?))?;
            }
            let norm = clip_grad_norm(&mut grads, self.config.train.max_grad_norm)?;
            if !norm.is_finite() {
                return Err(
                    NonFinite(format!("the gradient norm is {norm} (PPO epoch {})", epoch + 1)).into(),
                );
            }
            self.opt.step(&grads, lr)?;
            self.partial = epoch + 1 < stage.ppo_epochs;
            out.loss = loss;
            out.clipped = clipped;
            out.kl_sum = kl_sum;
            out.grad_norm = norm;
            if epoch == 0 {
                out.gap = gap / tokens as f64;
            }
        }
        self.partial = false;
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Keeps the stage's prompts solved at most `max_solved` of `attempts` times.
    fn difficulty_split(
        &mut self,
        stage: &Stage,
        problems: &[Problem],
        filter: config::DifficultyFilter,
        temperature: f64,
    ) -> Result<Vec<String>> {
        let params = SamplingParams {
            max_new_tokens: stage.max_response_tokens,
            temperature,
            top_p: stage.top_p,
            top_k: 0,
            seed: mix(&[self.config.train.seed, self.state.stage as u64, 0xD1FF]),
            stop_ids: self.stop_ids.clone(),
            stop_strings: Vec::new(),
        };
        let refs: Vec<&Problem> = problems.iter().collect();
        let mut kept = Vec::new();
        let per_call = (self.config.train.rollout_chunk / filter.attempts).max(1) * 8;
        for (c, part) in refs.chunks(per_call).enumerate() {
            let (rolls, _) = rollouts(
                &self.model,
                &self.tokenizer,
                &self.rewarder,
                part,
                filter.attempts,
                &params,
                self.config.train.rollout_chunk,
                mix(&[params.seed, c as u64]),
            )?;
            for (p, group) in part.iter().zip(rolls.chunks(filter.attempts)) {
                if group.iter().filter(|r| r.verdict.is_correct()).count() <= filter.max_solved {
                    kept.push(p.id.clone());
                }
            }
        }
        tracing::info!(
            stage = stage.name,
            kept = kept.len(),
            of = problems.len(),
            "difficulty split: kept prompts solved at most {} of {} times",
            filter.max_solved,
            filter.attempts
        );
        Ok(kept)
    }

    /// Evaluates every held-out set, writing `eval.jsonl` lines.
    fn evaluate(&mut self, when: &str) -> Result<()> {
        if self.eval_sets.is_empty() {
            return Ok(());
        }
        let e = &self.config.eval;
        let params = SamplingParams {
            max_new_tokens: eval_tokens(self.config, self.state.stage),
            temperature: e.temperature,
            top_p: e.top_p,
            top_k: 0,
            seed: mix(&[self.config.train.seed, 0xE7A1]),
            stop_ids: self.stop_ids.clone(),
            stop_strings: Vec::new(),
        };
        let stage = self
            .config
            .stages
            .get(self.state.stage)
            .filter(|_| when != "start")
            .map_or(String::new(), |s| s.name.clone());
        for (name, problems) in &self.eval_sets {
            let (pass1, pass_k, mean_len, truncated) = eval::evaluate(
                &self.model,
                &self.tokenizer,
                &self.rewarder,
                problems,
                e.k,
                &params,
                self.config.train.rollout_chunk,
            )?;
            let record = EvalRecord {
                step: self.state.step,
                stage: stage.clone(),
                when: when.to_string(),
                set: name.clone(),
                problems: problems.len(),
                k: e.k,
                pass1,
                pass_k,
                mean_len,
                truncated,
            };
            tracing::info!(
                step = record.step,
                set = name,
                pass1 = format!("{pass1:.3}"),
                pass_k = format!("{pass_k:.3}"),
                "eval avg@{}",
                e.k
            );
            writeln!(self.evals_file, "{}", serde_json::to_string(&record)?)?;
            self.evals_file.flush()?;
            self.evals.push(record);
        }
        Ok(())
    }

    /// Writes `checkpoints/step-N` for the current state.
    fn save(&mut self) -> Result<PathBuf> {
        let root = self.config.output.dir.join("checkpoints");
        let dir = root.join(format!("step-{:06}", self.state.step));
        let writer = CheckpointWriter::new(&dir)?;
        writer.write_model(&self.model, MAX_SHARD_BYTES)?;
        writer.copy_from(&self.source, AUX_FILES)?;
        if !writer.dir().join("tokenizer.json").exists() {
            self.tokenizer.save_dir(writer.dir())?;
        }
        self.opt.save(&writer.dir().join("optimizer.safetensors"))?;
        std::fs::write(
            writer.dir().join("rl_state.json"),
            serde_json::to_string_pretty(&self.state)?,
        )?;
        std::fs::write(writer.dir().join("rl.toml"), self.config.to_toml())?;
        let dir = writer.finish()?;
        prune_checkpoints(&list_checkpoints(&root)?, self.config.output.keep_checkpoints)?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }
}

/// What an update did.
#[derive(Debug, Default)]
struct Update {
    lr: f64,
    tokens: usize,
    positions: usize,
    loss: f64,
    clipped: f64,
    kl_sum: f64,
    grad_norm: f64,
    gap: f64,
    seconds: f64,
}

fn solved(group: &[Rollout]) -> usize {
    group.iter().filter(|r| r.verdict.is_correct()).count()
}

fn is_flat(group: &[Rollout]) -> bool {
    group.windows(2).all(|w| w[0].reward == w[1].reward)
}

fn mean_entropy(rolls: &[Rollout]) -> f64 {
    let (sum, n) = rolls
        .iter()
        .flat_map(|r| &r.entropies)
        .fold((0f64, 0usize), |(s, n), &e| (s + e as f64, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The prompts of `active` in a seeded order.
fn epoch_order(active: &[usize], seed: u64) -> Vec<usize> {
    let mut order = active.to_vec();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
}
