//! Held-out evaluation: avg@k pass@1 through the reward server.
//!
//! Each problem gets k samples (temperature 0.6, top-p 0.95 by default; k
//! per set, as the recipe's avg@64 for AIME and avg@8 for LiveCodeBench);
//! pass@1 is the fraction correct over all of them (avg@k), and pass@k uses
//! the unbiased estimator `1 - C(n-c, k)/C(n, k)` with n = k, that is the
//! fraction of problems solved at least once. Every evaluation draws with the
//! same seed, so two evaluations of one policy agree and two policies are
//! compared on common random numbers.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::data::Problem;
use super::rollout::{rollouts, Rewarder};
use crate::engine::{EngineConfig, SamplingParams};
use crate::model::Qwen2;
use crate::tokenizer::Tokenizer;

/// One set's result (a line of `eval.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Global step of the policy evaluated.
    pub step: u64,
    /// The stage it was in (empty before the first).
    pub stage: String,
    /// Why it ran: `start`, `every`, or `stage_end`.
    pub when: String,
    /// The set's name.
    pub set: String,
    /// Problems in the set.
    pub problems: usize,
    /// Samples per problem.
    pub k: usize,
    /// avg@k pass@1.
    pub pass1: f64,
    /// pass@k.
    pub pass_k: f64,
    /// Mean response length in tokens.
    pub mean_len: f64,
    /// Fraction of responses cut at the length limit.
    pub truncated: f64,
}

/// pass@k of one problem with `c` correct of `n` samples (unbiased estimator).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if n < k || c == 0 {
        return if c > 0 { 1.0 } else { 0.0 };
    }
    if n - c < k {
        return 1.0;
    }
    // 1 - prod_{i = n-c+1}^{n} (1 - k / i)
    1.0 - ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

/// Evaluates `problems` with `k` samples each, drawn with `seed`; returns
/// pass@1 (avg@k), pass@k, the mean response length and the fraction cut
/// at the length limit.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &Qwen2,
    tokenizer: &Tokenizer,
    rewarder: &Rewarder,
    problems: &[Problem],
    k: usize,
    params: &SamplingParams,
    engine: &EngineConfig,
    seed: u64,
) -> Result<(f64, f64, f64, f64)> {
    let refs: Vec<&Problem> = problems.iter().collect();
    let (rolls, _) = rollouts(model, tokenizer, rewarder, &refs, k, params, engine, seed)?;
    let n = rolls.len().max(1) as f64;
    let pass1 = rolls.iter().filter(|r| r.verdict.is_correct()).count() as f64 / n;
    let pass_k = rolls
        .chunks(k)
        .map(|g| pass_at_k(k, g.iter().filter(|r| r.verdict.is_correct()).count(), k))
        .sum::<f64>()
        / problems.len().max(1) as f64;
    let mean_len = rolls.iter().map(|r| r.ids.len()).sum::<usize>() as f64 / n;
    let truncated = rolls.iter().filter(|r| r.truncated).count() as f64 / n;
    Ok((pass1, pass_k, mean_len, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_matches_the_closed_form() {
        assert_eq!(pass_at_k(8, 0, 1), 0.0);
        assert!((pass_at_k(8, 3, 1) - 3.0 / 8.0).abs() < 1e-12);
        assert_eq!(pass_at_k(8, 1, 8), 1.0);
        // 1 - C(6,2)/C(10,2) = 1 - 15/45
        assert!((pass_at_k(10, 4, 2) - (1.0 - 15.0 / 45.0)).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 4, 2), 1.0);
    }
}
