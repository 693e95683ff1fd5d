//! The RL run's TOML config: the model, the reward server, evaluation,
//! outputs, and the stages in order. Every field but the paths has a default;
//! the resolved config (defaults filled in) is written to the run directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::model::CheckpointLayers;
use crate::optim::AdamWConfig;
use crate::template::Template;

/// A whole RL run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    /// The starting policy.
    pub model: ModelConfig,
    /// Where rewards come from.
    #[serde(default)]
    pub reward: RewardConfig,
    /// Optimisation settings shared by the stages.
    #[serde(default)]
    pub train: TrainConfig,
    /// The rollout engine's memory and batch settings (sampling for the
    /// steps, the difficulty split and evaluation).
    #[serde(default)]
    pub engine: EngineConfig,
    /// Held-out evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Where and how often to write.
    pub output: OutputConfig,
    /// The stages, run in order.
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
}

/// The starting checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A Hugging Face Qwen2 checkpoint directory with its tokenizer.
    pub checkpoint: PathBuf,
    /// Parameter dtype: `f32`, `bf16` or `f16`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// How prompts are rendered.
    #[serde(default)]
    pub template: Template,
}

/// The reward server(s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Base URLs of `reward-server serve`; batches go round-robin over them.
    pub endpoints: Vec<String>,
    /// Items per HTTP request.
    pub batch_size: usize,
    /// Retries of a failed request (connection refused, timeout, 502/503)
    /// before the run stops with a resumable checkpoint.
    pub max_retries: u32,
    /// First retry delay in seconds; doubles each retry (with jitter).
    pub backoff_s: f64,
    /// Per-request timeout in seconds.
    pub timeout_s: f64,
    /// Math answers only count inside `\boxed{}` (`boxed`, the RL default) or
    /// also in looser forms (`lenient`).
    pub math_extract: reward_client::ExtractMode,
    /// CPU seconds per test case of a code item.
    pub code_time_limit_s: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            endpoints: vec!["http://127.0.0.1:8080".into()],
            batch_size: 256,
            max_retries: 5,
            backoff_s: 0.5,
            timeout_s: 120.0,
            math_extract: reward_client::ExtractMode::Boxed,
            code_time_limit_s: 2.0,
        }
    }
}

/// Settings shared by every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of prompt order and sampling.
    pub seed: u64,
    /// Sequences per forward/backward micro-batch of the update (memory,
    /// not maths: the loss is normalised over the whole batch).
    pub micro_batch: usize,
    /// Clip the global gradient norm to this (0 disables clipping).
    pub max_grad_norm: f64,
    /// Added to the group's standard deviation in the advantage.
    pub adv_eps: f64,
    /// AdamW moments and weight decay.
    pub adamw: AdamWConfig,
    /// Recompute each decoder layer's activations in the backward pass
    /// instead of keeping them: `true` (every layer), `false`, or the number
    /// of layers (the first N). Saves memory for a second forward pass.
    pub checkpoint_layers: CheckpointLayers,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            checkpoint_layers: CheckpointLayers::default(),
            seed: 0,
            micro_batch: 64,
            max_grad_norm: 1.0,
            adv_eps: 1e-6,
            adamw: AdamWConfig {
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
        }
    }
}

/// A held-out set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    /// Its name in metrics and reports (e.g. `math`).
    pub name: String,
    /// Which verifier grades it.
    pub task: Task,
    /// JSONL of problems (see [`crate::rl::data`]).
    pub path: PathBuf,
    /// Samples per problem for this set (the recipe: 64 for AIME); unset,
    /// the `[eval]` table's `k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
}

/// Held-out evaluation: avg@k pass@1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// The sets.
    pub sets: Vec<EvalSet>,
    /// Samples per problem of a set that does not set its own `k`.
    pub k: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus sampling.
    pub top_p: f64,
    /// Most response tokens (0: the stage's `max_response_tokens`).
    pub max_response_tokens: usize,
    /// Evaluate every this many steps of a stage (0: only at stage ends).
    pub every: u64,
    /// Also evaluate the starting policy before the first step.
    pub at_start: bool,
}

impl EvalConfig {
    /// Samples per problem of `set`.
    pub fn k_of(&self, set: &EvalSet) -> usize {
        set.k.unwrap_or(self.k)
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            sets: Vec::new(),
            k: 8,
            temperature: 0.6,
            top_p: 0.95,
            max_response_tokens: 0,
            every: 0,
            at_start: true,
        }
    }
}

/// Outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The run directory: resolved config, metrics, checkpoints, plots, report.
    pub dir: PathBuf,
    /// Save a checkpoint every this many steps (and at stage ends; 0: only there).
    #[serde(default)]
    pub save_every: u64,
    /// Checkpoints kept; older ones are deleted (0 keeps all).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Draw the progress bar (it is hidden anyway when stderr is not a terminal).
    #[serde(default = "default_true")]
    pub progress: bool,
}

/// Which verifier a stage or set uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Final answers in `\boxed{}`.
    Math,
    /// Python programs against tests.
    Code,
}

impl Task {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Math => "math",
            Task::Code => "code",
        }
    }
}

/// How a stage picks its sampling temperature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum TemperaturePolicy {
    /// The same temperature every step.
    Fixed {
        /// The temperature.
        fixed: f64,
    },
    /// Closed loop: each step moves the temperature so that the mean
    /// per-token entropy of the rollouts approaches `target_entropy`
    /// (see [`crate::rl::temperature`]).
    TargetEntropy {
        /// The entropy aimed at, in nats per token.
        target_entropy: f64,
        /// Starting temperature (a resumed or following stage continues
        /// from the last one when `carry` is set).
        #[serde(default = "default_initial_t")]
        initial: f64,
        /// Lowest temperature allowed.
        #[serde(default = "default_min_t")]
        min: f64,
        /// Highest temperature allowed.
        #[serde(default = "default_max_t")]
        max: f64,
        /// Gain on the entropy error `ln(target / entropy)`, in log-temperature
        /// per step (see rl/temperature.rs: keep it below 1 / the model's
        /// `d ln H / d ln T`).
        #[serde(default = "default_gain")]
        gain: f64,
        /// Largest change of log-temperature in one step.
        #[serde(default = "default_max_step")]
        max_step: f64,
        /// Start from the previous stage's final temperature instead of `initial`.
        #[serde(default = "default_true")]
        carry: bool,
    },
}

/// Drop prompts the model finds too easy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DifficultyFilter {
    /// Samples per prompt to estimate difficulty.
    pub attempts: usize,
    /// Keep a prompt only if it was solved at most this many times.
    pub max_solved: usize,
}

/// One stage of the curriculum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Its name in logs, metrics and the report.
    pub name: String,
    /// Which verifier grades its rollouts.
    pub task: Task,
    /// JSONL files of prompts (see [`crate::rl::data`]), concatenated.
    pub datasets: Vec<PathBuf>,
    /// Most tokens per response; longer ones are cut (truncated).
    pub max_response_tokens: usize,
    /// Prompts per rollout batch.
    #[serde(default = "default_prompts")]
    pub prompts_per_batch: usize,
    /// Responses per prompt (G).
    #[serde(default = "default_group")]
    pub group_size: usize,
    /// Learning rate (constant within the stage after `warmup_steps`).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Linear learning-rate warm-up at the start of the stage.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Steps in the stage (0: `epochs` passes over the prompts).
    #[serde(default)]
    pub steps: u64,
    /// Passes over the prompts when `steps` is 0.
    #[serde(default = "default_epochs")]
    pub epochs: u64,
    /// Truncated responses contribute no gradient (instead of their reward).
    #[serde(default)]
    pub overlong_filter: bool,
    /// After each epoch, drop prompts solved in more than this many of the
    /// G attempts they got in that epoch (unset: keep all; G - 1 drops
    /// those solved every time).
    #[serde(default)]
    pub easy_filter: Option<usize>,
    /// At the start of the stage, sample each prompt `attempts` times and
    /// keep those solved at most `max_solved` times (the recipe's
    /// difficulty split).
    #[serde(default)]
    pub difficulty_filter: Option<DifficultyFilter>,
    /// How the sampling temperature is chosen.
    #[serde(default = "default_temperature")]
    pub temperature: TemperaturePolicy,
    /// Nucleus sampling of the rollouts (1 disables it; the recipe uses 1).
    #[serde(default = "default_one")]
    pub top_p: f64,
    /// Gradient updates per rollout batch (1: strict on-policy, the recipe).
    #[serde(default = "default_one_u")]
    pub ppo_epochs: usize,
    /// PPO clip range of the probability ratio.
    #[serde(default = "default_clip")]
    pub clip_eps: f64,
    /// KL-to-reference coefficient (0: no reference model, the recipe).
    #[serde(default)]
    pub kl_beta: f64,
    /// Resample prompts whose G rewards are all equal (no signal), up to
    /// this many extra rollout rounds per step (0: keep them, report them).
    #[serde(default)]
    pub dynamic_sampling: usize,
}

fn default_dtype() -> String {
    "f32".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_keep() -> usize {
    2
}
fn default_true() -> bool {
    true
}
fn default_prompts() -> usize {
    16
}
fn default_group() -> usize {
    8
}
fn default_lr() -> f64 {
    1e-6
}
fn default_epochs() -> u64 {
    1
}
fn default_one() -> f64 {
    1.0
}
fn default_one_u() -> usize {
    1
}
fn default_clip() -> f64 {
    0.2
}
fn default_initial_t() -> f64 {
    1.0
}
fn default_min_t() -> f64 {
    0.3
}
fn default_max_t() -> f64 {
    2.0
}
fn default_gain() -> f64 {
    0.5
}
fn default_max_step() -> f64 {
    0.1
}
fn default_temperature() -> TemperaturePolicy {
    TemperaturePolicy::Fixed { fixed: 1.0 }
}

impl RlConfig {
    /// Reads and checks a TOML config. Relative paths are taken relative to
    /// the config file's directory.
    pub fn from_file(path: &Path) -> anyhow::Result<RlConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut config: RlConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.rebase(path.parent().unwrap_or(Path::new("")));
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.model.checkpoint);
        fix(&mut self.output.dir);
        self.eval.sets.iter_mut().for_each(|s| fix(&mut s.path));
        for stage in &mut self.stages {
            stage.datasets.iter_mut().for_each(fix);
        }
    }

    /// Checks values, naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        crate::runtime::parse_dtype(&self.model.dtype)?;
        let r = &self.reward;
        if r.endpoints.is_empty() {
            return Err("reward.endpoints must name at least one server".into());
        }
        if r.batch_size == 0 {
            return Err("reward.batch_size must be at least 1".into());
        }
        if !(r.timeout_s > 0.0 && r.backoff_s >= 0.0 && r.code_time_limit_s > 0.0) {
            return Err(
                "reward.timeout_s and reward.code_time_limit_s must be positive, reward.backoff_s >= 0"
                    .into(),
            );
        }
        let t = &self.train;
        if t.micro_batch == 0 {
            return Err("train.micro_batch must be at least 1".into());
        }
        self.engine.validate()?;
        if t.max_grad_norm < 0.0 || t.adv_eps.is_nan() || t.adv_eps <= 0.0 {
            return Err("train.max_grad_norm must be >= 0 and train.adv_eps > 0".into());
        }
        let e = &self.eval;
        if e.k == 0 || e.sets.iter().any(|s| s.k == Some(0)) {
            return Err("eval.k (and each eval set's k) must be at least 1".into());
        }
        if !(e.temperature >= 0.0 && e.top_p > 0.0 && e.top_p <= 1.0) {
            return Err("eval.temperature must be >= 0 and eval.top_p in (0, 1]".into());
        }
        let mut names: Vec<&str> = e.sets.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("eval.sets names must be distinct".into());
        }
        if self.stages.is_empty() {
            return Err("at least one [[stage]] is needed".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            s.validate()
                .map_err(|m| format!("stage {} ({}): {m}", i + 1, s.name))?;
        }
        Ok(())
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }
}

impl Stage {
    /// Checks the stage's values, naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.datasets.is_empty(), "datasets must name at least one file"),
            (
                self.max_response_tokens == 0,
                "max_response_tokens must be at least 1",
            ),
            (
                self.prompts_per_batch == 0,
                "prompts_per_batch must be at least 1",
            ),
            (
                self.group_size < 2,
                "group_size must be at least 2 (advantages compare a group)",
            ),
            (!(self.lr > 0.0 && self.lr.is_finite()), "lr must be positive"),
            (self.steps == 0 && self.epochs == 0, "set steps or epochs"),
            (self.ppo_epochs == 0, "ppo_epochs must be at least 1"),
            (
                self.clip_eps.is_nan() || self.clip_eps <= 0.0,
                "clip_eps must be positive",
            ),
            (
                self.kl_beta.is_nan() || self.kl_beta < 0.0,
                "kl_beta must be >= 0",
            ),
            (
                !(self.top_p > 0.0 && self.top_p <= 1.0),
                "top_p must be in (0, 1]",
            ),
            (
                self.easy_filter.is_some_and(|k| k >= self.group_size),
                "easy_filter must be below group_size (it drops prompts solved more than k times)",
            ),
        ];
        if let Some((_, msg)) = checks.iter().find(|(bad, _)| *bad) {
            return Err(msg.to_string());
        }
        if let Some(d) = self.difficulty_filter {
            if d.attempts == 0 || d.max_solved >= d.attempts {
                return Err("difficulty_filter needs attempts >= 1 and max_solved < attempts".into());
            }
        }
        match self.temperature {
            TemperaturePolicy::Fixed { fixed } => {
                if !(fixed > 0.0 && fixed.is_finite()) {
                    return Err("temperature.fixed must be positive".into());
                }
            }
            TemperaturePolicy::TargetEntropy {
                target_entropy,
                initial,
                min,
                max,
                gain,
                max_step,
                ..
            } => {
                if !(target_entropy > 0.0 && target_entropy.is_finite()) {
                    return Err("temperature.target_entropy must be positive".into());
                }
                if !(min > 0.0 && min <= initial && initial <= max && max.is_finite()) {
                    return Err("temperature needs 0 < min <= initial <= max".into());
                }
                if !(gain > 0.0 && max_step > 0.0) {
                    return Err("temperature.gain and temperature.max_step must be positive".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped recipe file parses, validates and has the papers' shape.
    #[test]
    fn the_acereason_recipe_file_is_the_papers_curriculum() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/acereason-nemotron.toml");
        let c = RlConfig::from_file(&path).unwrap();
        let shape: Vec<(Task, usize, bool)> = c
            .stages
            .iter()
            .map(|s| (s.task, s.max_response_tokens, s.overlong_filter))
            .collect();
        assert_eq!(
            shape,
            [
                (Task::Math, 8192, true),
                (Task::Math, 16384, true),
                (Task::Math, 24576, false),
                (Task::Math, 32768, false),
                (Task::Code, 24576, false),
                (Task::Code, 32768, false),
            ]
        );
        let split = DifficultyFilter {
            attempts: 16,
            max_solved: 14,
        };
        assert_eq!(c.stages[2].difficulty_filter, Some(split));
        for s in &c.stages {
            assert_eq!(
                (s.ppo_epochs, s.kl_beta),
                (1, 0.0),
                "{}: strict on-policy, no KL",
                s.name
            );
            assert!(
                matches!(s.temperature, TemperaturePolicy::TargetEntropy { target_entropy, .. } if target_entropy == 0.3)
            );
            if s.task == Task::Code {
                assert_eq!(s.easy_filter, Some(s.group_size - 1), "{}", s.name);
            }
            assert!(s
                .datasets
                .iter()
                .all(|d| d.is_absolute() || d.starts_with(path.parent().unwrap())));
        }
        assert_eq!((c.eval.temperature, c.eval.top_p), (0.6, 0.95));
    }

    const BASE: &str = r#"
[model]
checkpoint = "ckpt"
[output]
dir = "run"
[[stage]]
name = "math-short"
task = "math"
datasets = ["math.jsonl"]
max_response_tokens = 64
temperature = { target_entropy = 0.3, min = 0.5 }
[[stage]]
name = "code"
task = "code"
datasets = ["code.jsonl"]
max_response_tokens = 96
temperature = { fixed = 0.8 }
easy_filter = 7
"#;

    #[test]
    fn defaults_fill_in_and_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rl.toml");
        std::fs::write(&path, BASE).unwrap();
        let c = RlConfig::from_file(&path).unwrap();
        assert_eq!(c.model.checkpoint, dir.path().join("ckpt"));
        assert_eq!(c.stages[0].datasets[0], dir.path().join("math.jsonl"));
        assert_eq!(c.stages[0].group_size, 8);
        assert_eq!(c.stages[0].ppo_epochs, 1);
        assert_eq!(c.stages[0].kl_beta, 0.0);
        assert!(matches!(
            c.stages[0].temperature,
            TemperaturePolicy::TargetEntropy { target_entropy, min, max, .. }
                if target_entropy == 0.3 && min == 0.5 && max == 2.0
        ));
        assert_eq!(c.stages[1].temperature, TemperaturePolicy::Fixed { fixed: 0.8 });
        assert_eq!(c.reward.math_extract, reward_client::ExtractMode::Boxed);
        let again: RlConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rl.toml");
        for (from, to, needle) in [
            (
                "max_response_tokens = 64",
                "max_response_tokens = 0",
                "max_response_tokens",
            ),
            ("easy_filter = 7", "easy_filter = 8", "easy_filter"),
            ("task = \"math\"", "task = \"poetry\"", "poetry"),
            ("min = 0.5", "min = 1.5", "min <= initial"),
            ("dir = \"run\"", "dir = \"run\"\nsave_evry = 3", "save_evry"),
            ("{ fixed = 0.8 }", "{ fixed = 0.0 }", "temperature.fixed"),
        ] {
            assert!(BASE.contains(from), "{from}");
            std::fs::write(&path, BASE.replace(from, to)).unwrap();
            let err = format!("{:#}", RlConfig::from_file(&path).unwrap_err());
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
