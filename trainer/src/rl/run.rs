//! A run in progress: the stages, each stage's epochs and filters, the
//! held-out evaluations and the checkpoints. The GRPO step itself is
//! `step.rs`, its update `update.rs`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::config::{self, RlConfig, Stage};
use super::data::{read_problems, Problem};
use super::eval::{self, EvalRecord};
use super::filter::{drop_easy, keep_hard};
use super::rollout::{rollouts, Rewarder, Rollout};
use super::state::RlState;
use super::temperature::Temperature;
use super::{eval_tokens, list_checkpoints, mix};
use crate::engine::SamplingParams;
use crate::model::checkpoint::{CheckpointWriter, AUX_FILES, MAX_SHARD_BYTES};
use crate::model::Qwen2;
use crate::optim::AdamW;
use crate::resume::prune_checkpoints;
use crate::tokenizer::Tokenizer;

/// Why a step could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct NonFinite(pub(super) String);

/// Everything a run holds while it trains.
pub(super) struct Run<'a> {
    pub(super) config: &'a RlConfig,
    pub(super) model: Qwen2,
    pub(super) reference: Option<Qwen2>,
    pub(super) tokenizer: Tokenizer,
    pub(super) opt: AdamW,
    pub(super) rewarder: Rewarder,
    pub(super) state: RlState,
    pub(super) stop_ids: Vec<u32>,
    /// The held-out sets' problems, in `config.eval.sets` order.
    pub(super) eval_sets: Vec<Vec<Problem>>,
    pub(super) source: PathBuf,
    pub(super) metrics: std::fs::File,
    pub(super) evals_file: std::fs::File,
    pub(super) evals: Vec<EvalRecord>,
    pub(super) last_checkpoint: Option<PathBuf>,
    /// Set while a multi-epoch update has stepped but not finished: the
    /// policy is then between two states a checkpoint can describe.
    pub(super) partial: bool,
}

impl Run<'_> {
    /// Runs the stages from where the state stands.
    pub(super) fn stages(&mut self, stop_after: Option<u64>) -> Result<()> {
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
                    let (kept, dropped) = drop_easy(&active, &problems, &self.state.solved, k);
                    active = kept;
                    let kept: BTreeSet<usize> = active.iter().copied().collect();
                    self.state.active = Some(
                        (0..problems.len())
                            .filter(|i| kept.contains(i))
                            .map(|i| problems[i].id.clone())
                            .collect(),
                    );
                    bar.println(format!(
                        "stage {} epoch {}: easy filter (solved > {k} times) dropped {dropped} of {before} prompts",
                        stage.name, self.state.epoch,
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

    /// Keeps the stage's prompts solved at most `max_solved` of `attempts` times.
    pub(super) fn difficulty_split(
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
            stop_ids: self.stop_ids.clone(),
            stop_strings: Vec::new(),
        };
        let seed = mix(&[self.config.train.seed, self.state.stage as u64, 0xD1FF]);
        let refs: Vec<&Problem> = problems.iter().collect();
        let mut kept = Vec::new();
        // Parts of 512 responses, so grading of one overlaps the next.
        let per_call = (512 / filter.attempts).max(1);
        for (c, part) in refs.chunks(per_call).enumerate() {
            let (rolls, _) = rollouts(
                &self.model,
                &self.tokenizer,
                &self.rewarder,
                part,
                filter.attempts,
                &params,
                &self.config.engine,
                mix(&[seed, c as u64]),
            )?;
            let groups: Vec<&[Rollout]> = rolls.chunks(filter.attempts).collect();
            kept.extend(keep_hard(part, &groups, filter.max_solved));
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
    pub(super) fn evaluate(&mut self, when: &str) -> Result<()> {
        if self.eval_sets.is_empty() {
            return Ok(());
        }
        let e = &self.config.eval;
        let params = SamplingParams {
            max_new_tokens: eval_tokens(self.config, self.state.stage),
            temperature: e.temperature,
            top_p: e.top_p,
            top_k: 0,
            stop_ids: self.stop_ids.clone(),
            stop_strings: Vec::new(),
        };
        let seed = mix(&[self.config.train.seed, 0xE7A1]);
        let stage = self
            .config
            .stages
            .get(self.state.stage)
            .filter(|_| when != "start")
            .map_or(String::new(), |s| s.name.clone());
        for (set, problems) in self.config.eval.sets.iter().zip(&self.eval_sets) {
            let (name, k) = (&set.name, e.k_of(set));
            let (pass1, pass_k, mean_len, truncated) = eval::evaluate(
                &self.model,
                &self.tokenizer,
                &self.rewarder,
                problems,
                k,
                &params,
                &self.config.engine,
                seed,
            )?;
            let record = EvalRecord {
                step: self.state.step,
                stage: stage.clone(),
                when: when.to_string(),
                set: name.clone(),
                problems: problems.len(),
                k,
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
                "eval avg@{k}"
            );
            writeln!(self.evals_file, "{}", serde_json::to_string(&record)?)?;
            self.evals_file.flush()?;
            self.evals.push(record);
        }
        Ok(())
    }

    /// Writes `checkpoints/step-N` for the current state.
    pub(super) fn save(&mut self) -> Result<PathBuf> {
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

/// The prompts of `active` in a seeded order.
fn epoch_order(active: &[usize], seed: u64) -> Vec<usize> {
    let mut order = active.to_vec();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
}
