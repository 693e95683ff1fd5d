//! One GRPO step: rollout -> rewards -> advantages -> update, and the
//! step's record. Dynamic sampling's bookkeeping ([`Batch`]) is here too.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use super::config::Stage;
use super::data::Problem;
use super::filter::{solved, tally_solves};
use super::grpo::{advantages, Sequence};
use super::mix;
use super::rollout::{rollouts, Rollout, RolloutTiming};
use super::run::Run;
use super::state::StepRecord;
use super::temperature::Temperature;
use super::update::Update;
use crate::engine::SamplingParams;

impl Run<'_> {
    /// One GRPO step on the next prompts of `order` (the epoch's prompts,
    /// indices into `problems`).
    pub(super) fn step(
        &mut self,
        stage: &Stage,
        problems: &[Problem],
        order: &[usize],
        temp: &mut Temperature,
    ) -> Result<StepRecord> {
        let started = Instant::now();
        let t = temp.current();
        let mut cursor = Cursor {
            order,
            position: self.state.position,
        };
        // Rollout: G responses per prompt, graded; groups with no signal
        // replaced by fresh prompts (dynamic sampling).
        let (batch, timing) = self.sample(stage, problems, &mut cursor, t)?;
        // Rewards -> group-normalised advantages.
        let rewards: Vec<f64> = batch.rolls.iter().map(|r| r.reward).collect();
        let (adv, flat) = advantages(&rewards, stage.group_size, self.config.train.adv_eps);
        // The update on the token-level clipped loss.
        let seqs = batch.sequences(problems, &adv, stage.overlong_filter);
        let update = self.update(stage, &seqs, t)?;
        // Bookkeeping: solves for the easy filter, the next temperature.
        tally_solves(&mut self.state.solved, problems, &batch.solves());
        let entropy = mean_entropy(&batch.rolls);
        temp.update(entropy);
        self.state.position = cursor.position;
        self.state.step += 1;
        self.state.stage_step += 1;
        let record = self.record(
            stage,
            &batch,
            flat,
            (t, entropy, temp.target()),
            &update,
            timing,
            started,
        );
        writeln!(self.metrics, "{}", serde_json::to_string(&record)?)?;
        self.metrics.flush()?;
        Ok(record)
    }

    /// The step's rollouts at temperature `t`, dynamic sampling included.
    fn sample(
        &self,
        stage: &Stage,
        problems: &[Problem],
        cursor: &mut Cursor<'_>,
        t: f64,
    ) -> Result<(Batch, RolloutTiming)> {
        let params = SamplingParams {
            max_new_tokens: stage.max_response_tokens,
            temperature: t,
            top_p: stage.top_p,
            top_k: 0,
            stop_ids: self.stop_ids.clone(),
            stop_strings: Vec::new(),
        };
        let g = stage.group_size;
        let roll = |chosen: &[usize], round: u64| {
            let refs: Vec<&Problem> = chosen.iter().map(|&i| &problems[i]).collect();
            let seed = mix(&[self.config.train.seed, self.state.step, round]);
            let engine = &self.config.engine;
            rollouts(
                &self.model,
                &self.tokenizer,
                &self.rewarder,
                &refs,
                g,
                &params,
                engine,
                seed,
            )
        };
        let chosen = cursor.take(stage.prompts_per_batch);
        let (rolls, mut timing) = roll(&chosen, 0)?;
        let mut batch = Batch::new(chosen, rolls, g);
        for round in 1..=stage.dynamic_sampling as u64 {
            let flat = batch.flat_slots();
            if flat.is_empty() || cursor.done() {
                break;
            }
            let fresh = cursor.take(flat.len());
            let (more, more_timing) = roll(&fresh, round)?;
            timing.sample_s += more_timing.sample_s;
            timing.wait_s += more_timing.wait_s;
            batch.replace(&flat, &fresh, more);
        }
        Ok((batch, timing))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        stage: &Stage,
        batch: &Batch,
        flat: usize,
        (temperature, entropy, target_entropy): (f64, f64, Option<f64>),
        update: &Update,
        timing: RolloutTiming,
        started: Instant,
    ) -> StepRecord {
        let rolls = &batch.rolls;
        let n = rolls.len().max(1) as f64;
        let gen_tokens: usize = rolls.iter().map(|r| r.ids.len()).sum();
        StepRecord {
            step: self.state.step,
            stage: stage.name.clone(),
            stage_step: self.state.stage_step,
            epoch: self.state.epoch,
            temperature,
            entropy,
            target_entropy,
            reward_mean: rolls.iter().map(|r| r.reward).sum::<f64>() / n,
            accuracy: rolls.iter().filter(|r| r.verdict.is_correct()).count() as f64 / n,
            response_len: gen_tokens as f64 / n,
            truncated: rolls.iter().filter(|r| r.truncated).count() as f64 / n,
            flat_groups: flat as f64 / batch.chosen.len().max(1) as f64,
            resampled: batch.resampled,
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
        }
    }
}

/// The epoch's prompts in order, and how many are used.
struct Cursor<'a> {
    order: &'a [usize],
    position: usize,
}

impl Cursor<'_> {
    /// The next `n` prompts (fewer at the epoch's end).
    fn take(&mut self, n: usize) -> Vec<usize> {
        let end = (self.position + n).min(self.order.len());
        let picked = self.order[self.position..end].to_vec();
        self.position = end;
        picked
    }

    fn done(&self) -> bool {
        self.position >= self.order.len()
    }
}

/// A step's groups while dynamic sampling replaces those with no signal.
#[derive(Debug)]
pub struct Batch {
    /// The problem of each group slot (indices into the stage's problems).
    pub chosen: Vec<usize>,
    /// The rollouts, group after group; a rollout's `problem` is its slot.
    pub rolls: Vec<Rollout>,
    /// Groups replaced.
    pub resampled: usize,
    /// `(problem, solves)` of the groups replaced.
    replaced: Vec<(usize, usize)>,
    group: usize,
}

impl Batch {
    /// The groups of `chosen` (`rolls` group after group, `group` each).
    pub fn new(chosen: Vec<usize>, rolls: Vec<Rollout>, group: usize) -> Batch {
        assert_eq!(rolls.len(), chosen.len() * group, "rollouts come in whole groups");
        Batch {
            chosen,
            rolls,
            resampled: 0,
            replaced: Vec::new(),
            group,
        }
    }

    /// Slots whose group's rewards are all equal (no signal).
    pub fn flat_slots(&self) -> Vec<usize> {
        let g = self.group;
        (0..self.chosen.len())
            .filter(|&k| {
                self.rolls[k * g..(k + 1) * g]
                    .windows(2)
                    .all(|w| w[0].reward == w[1].reward)
            })
            .collect()
    }

    /// Puts the groups of the `fresh` problems (`rolls` group after group)
    /// in the first `fresh.len()` of `slots`, keeping the replaced groups'
    /// solves for the easy filter.
    pub fn replace(&mut self, slots: &[usize], fresh: &[usize], rolls: Vec<Rollout>) {
        let g = self.group;
        assert_eq!(rolls.len(), fresh.len() * g, "rollouts come in whole groups");
        let mut rolls = rolls.into_iter();
        for (&slot, &p) in slots.iter().zip(fresh) {
            let old = self.chosen[slot];
            self.replaced
                .push((old, solved(&self.rolls[slot * g..(slot + 1) * g])));
            self.chosen[slot] = p;
            for (r, mut roll) in rolls.by_ref().take(g).enumerate() {
                roll.problem = slot;
                self.rolls[slot * g + r] = roll;
            }
            self.resampled += 1;
        }
    }

    /// `(problem, solves)` of every group the step sampled, replaced ones included.
    pub fn solves(&self) -> Vec<(usize, usize)> {
        let g = self.group;
        let kept = self
            .chosen
            .iter()
            .enumerate()
            .map(|(k, &p)| (p, solved(&self.rolls[k * g..(k + 1) * g])));
        self.replaced.iter().copied().chain(kept).collect()
    }

    /// The responses to train on, with their advantages `adv`; responses
    /// cut at the length limit are left out under `overlong_filter`.
    pub fn sequences(&self, problems: &[Problem], adv: &[f64], overlong_filter: bool) -> Vec<Sequence> {
        self.rolls
            .iter()
            .zip(adv)
            .map(|(r, &a)| Sequence {
                prompt: problems[self.chosen[r.problem]].prompt.clone(),
                response: r.ids.clone(),
                advantage: a as f32,
                trained: !(r.ids.is_empty() || overlong_filter && r.truncated),
                sampler_logprobs: r.logprobs.clone(),
            })
            .collect()
    }
}

/// Mean per-token entropy of the rollouts (NaN with no tokens).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::filter::tests::roll;

    /// Groups of two for problems `chosen`, solved as `correct` says.
    fn groups(chosen: &[usize], correct: &[[bool; 2]]) -> Vec<Rollout> {
        chosen
            .iter()
            .enumerate()
            .flat_map(|(slot, _)| correct[slot].iter().map(move |&c| roll(slot, c)))
            .collect()
    }

    #[test]
    fn dynamic_sampling_replaces_flat_groups_and_keeps_their_solves() {
        // Slot 0 has signal, slot 1 is all wrong, slot 2 all right.
        let mut b = Batch::new(
            vec![10, 11, 12],
            groups(&[10, 11, 12], &[[true, false], [false, false], [true, true]]),
            2,
        );
        assert_eq!(b.flat_slots(), [1, 2]);
        // Only one fresh prompt left in the epoch: slot 1 gets it, slot 2 stays.
        b.replace(&[1, 2], &[20], groups(&[20], &[[false, true]]));
        assert_eq!(b.chosen, [10, 20, 12]);
        assert_eq!(b.resampled, 1);
        assert_eq!(b.flat_slots(), [2]);
        assert!(b.rolls[2..4].iter().all(|r| r.problem == 1));
        assert_eq!(b.rolls[3].reward, 1.0);
        // The replaced group's solves count too (problem 11: none).
        assert_eq!(b.solves(), [(11, 0), (10, 1), (20, 1), (12, 2)]);
        // A second round replaces slot 2.
        b.replace(&[2], &[21], groups(&[21], &[[false, false]]));
        assert_eq!((b.chosen[2], b.resampled), (21, 2));
        assert_eq!(b.solves(), [(11, 0), (12, 2), (10, 1), (20, 1), (21, 0)]);
    }

    #[test]
    fn sequences_carry_advantages_and_leave_out_overlong_responses() {
        use crate::rl::filter::tests::problem;
        let problems: Vec<Problem> = (0..3).map(|i| problem(&format!("p{i}"))).collect();
        let mut rolls = groups(&[2], &[[true, false]]);
        rolls[1].truncated = true;
        let b = Batch::new(vec![2], rolls, 2);
        let s = b.sequences(&problems, &[0.7, -0.7], true);
        assert_eq!((s[0].advantage, s[0].trained), (0.7, true));
        assert_eq!((s[1].advantage, s[1].trained), (-0.7, false));
        assert_eq!(s[0].prompt, problems[2].prompt);
        assert!(b.sequences(&problems, &[0.7, -0.7], false)[1].trained);
    }

    #[test]
    fn the_cursor_stops_at_the_epochs_end() {
        let order = [4, 2, 9];
        let mut c = Cursor {
            order: &order,
            position: 1,
        };
        assert_eq!(c.take(5), [2, 9]);
        assert!(c.done() && c.take(1).is_empty());
    }
}
