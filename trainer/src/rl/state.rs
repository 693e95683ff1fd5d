//! Where a run stands (saved with every checkpoint) and what each step
//! records (`metrics.jsonl`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    pub(super) fn new() -> RlState {
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
    /// Mean |log p_sampler - log p_trainer| over the tokens the update ran
    /// forward (numerical agreement of the rollout engine and the training
    /// forward; groups with no signal are not run).
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
