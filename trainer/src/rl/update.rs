//! The update of a GRPO step: `ppo_epochs` AdamW steps on the token-level
//! clipped loss over the batch's responses ([`super::grpo`]).
//!
//! Responses of similar length share a micro-batch; gradients accumulate
//! over micro-batches and the loss is normalised by the trained tokens of
//! the whole batch. A response whose advantage is 0 (its group's rewards
//! were all equal) adds nothing to the loss or the gradient when there is
//! no KL term, so it is not run forward or backward at all; its tokens
//! still count in the normaliser, so the loss and the gradients are those
//! of the full batch, and an update where every group is flat still steps
//! AdamW with zero gradients, as running them would.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

use super::config::Stage;
use super::grpo::{self, collate, policy_loss, MicroBatch, Sequence};
use super::run::{NonFinite, Run};
use crate::model::Qwen2;
use crate::optim::{accumulate, clip_grad_norm, named_grads};

/// What an update did.
#[derive(Debug, Default)]
pub(super) struct Update {
    pub(super) lr: f64,
    /// Trained tokens (the loss's normaliser).
    pub(super) tokens: usize,
    /// Positions run forward and backward, over all PPO epochs.
    pub(super) positions: usize,
    pub(super) loss: f64,
    pub(super) clipped: f64,
    pub(super) kl_sum: f64,
    pub(super) grad_norm: f64,
    /// Mean |sampler - trainer| log-probability over the tokens run forward.
    pub(super) gap: f64,
    pub(super) seconds: f64,
}

/// The micro-batches of `seqs` to run, `micro` sequences each, similar
/// lengths together, and the batch's trained tokens (every trained
/// response's, also those not run). With `skip_no_signal`, responses whose
/// advantage is 0 are not run.
pub fn micro_batches(
    seqs: &[Sequence],
    micro: usize,
    pad: u32,
    device: &Device,
    skip_no_signal: bool,
) -> candle_core::Result<(Vec<MicroBatch>, usize)> {
    let tokens = seqs.iter().filter(|s| s.trained).map(|s| s.response.len()).sum();
    let mut order: Vec<usize> = (0..seqs.len())
        .filter(|&i| seqs[i].trained && !(skip_no_signal && seqs[i].advantage == 0.0))
        .collect();
    order.sort_by_key(|&i| seqs[i].prompt.len() + seqs[i].response.len());
    let batches = order
        .chunks(micro.max(1))
        .map(|c| collate(&c.iter().map(|&i| &seqs[i]).collect::<Vec<_>>(), pad, device))
        .collect::<candle_core::Result<_>>()?;
    Ok((batches, tokens))
}

/// One pass over the micro-batches: the loss, its gradients and what it measured.
#[derive(Debug, Default)]
pub struct Pass {
    /// Gradients by parameter name.
    pub grads: HashMap<String, Tensor>,
    /// The batch loss.
    pub loss: f64,
    /// Trained tokens whose clipped term was taken.
    pub clipped: f64,
    /// Sum of the KL estimate over trained tokens.
    pub kl_sum: f64,
    /// Sum of |sampler - trainer| log-probabilities (first pass only).
    pub gap_sum: f64,
}

/// Runs `batches` forward and backward under `model` at `temperature`;
/// `olds` holds the log-probabilities before the first update (filled on
/// the first pass), `references` the reference's with its weight.
#[allow(clippy::too_many_arguments)]
pub fn pass(
    model: &Qwen2,
    batches: &[MicroBatch],
    olds: &mut Vec<Tensor>,
    references: Option<(&[Tensor], f64)>,
    clip_eps: f64,
    tokens: usize,
    temperature: f64,
    what: &str,
) -> Result<Pass> {
    let vars = model.named_vars();
    let mut out = Pass::default();
    let first = olds.is_empty();
    for (i, batch) in batches.iter().enumerate() {
        let logp = grpo::logprobs(model, batch, temperature)?;
        if first {
            let old = logp.detach();
            out.gap_sum += ((&old - &batch.sampler)?.abs()? * &batch.mask)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            olds.push(old);
        }
        let reference = references.map(|(r, beta)| (&r[i], beta));
        let l = policy_loss(batch, &logp, &olds[i], reference, clip_eps, tokens)?;
        if !l.value.is_finite() {
            return Err(NonFinite(format!("the loss is {} ({what}, micro-batch {})", l.value, i + 1)).into());
        }
        out.loss += l.value;
        out.clipped += l.clipped;
        out.kl_sum += l.kl_sum;
        accumulate(&mut out.grads, named_grads(&vars, &model.backward(&l.loss)?))?;
    }
    // Nothing ran (every group flat): the gradients are zero.
    for (name, var) in vars {
        if let std::collections::hash_map::Entry::Vacant(e) = out.grads.entry(name) {
            e.insert(var.as_tensor().zeros_like()?);
        }
    }
    Ok(out)
}

impl Run<'_> {
    /// `ppo_epochs` AdamW steps on the batch.
    pub(super) fn update(&mut self, stage: &Stage, seqs: &[Sequence], temperature: f64) -> Result<Update> {
        let started = Instant::now();
        let device = self.model.device().clone();
        let pad = self.tokenizer.pad_id();
        let kl = stage.kl_beta > 0.0;
        let (batches, tokens) = micro_batches(seqs, self.config.train.micro_batch, pad, &device, !kl)?;
        let positions: usize = batches.iter().map(|b| b.positions).sum();
        let forwarded: usize = batches.iter().map(|b| b.tokens).sum();
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
        let references = match (&self.reference, kl) {
            (Some(r), true) => Some(
                batches
                    .iter()
                    .map(|b| grpo::logprobs(r, b, temperature).map(|t| t.detach()))
                    .collect::<candle_core::Result<Vec<_>>>()?,
            ),
            _ => None,
        };
        let mut olds = Vec::with_capacity(batches.len());
        for epoch in 0..stage.ppo_epochs {
            let what = format!("PPO epoch {}", epoch + 1);
            let references = references.as_deref().map(|r| (r, stage.kl_beta));
            let mut p = pass(
                &self.model,
                &batches,
                &mut olds,
                references,
                stage.clip_eps,
                tokens,
                temperature,
                &what,
            )?;
            let norm = clip_grad_norm(&mut p.grads, self.config.train.max_grad_norm)?;
            if !norm.is_finite() {
                return Err(NonFinite(format!("the gradient norm is {norm} ({what})")).into());
            }
            self.opt.step(&p.grads, lr)?;
            self.partial = epoch + 1 < stage.ppo_epochs;
            out.loss = p.loss;
            out.clipped = p.clipped;
            out.kl_sum = p.kl_sum;
            out.grad_norm = norm;
            if epoch == 0 {
                out.gap = p.gap_sum / forwarded.max(1) as f64;
            }
        }
        self.partial = false;
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use crate::ops::testing::max_diff;

    #[test]
    fn groups_with_no_signal_are_skipped_without_changing_loss_or_gradients() -> Result<()> {
        let config = Config {
            vocab_size: 40,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            max_position_embeddings: 64,
            ..Config::tiny()
        };
        let model = Qwen2::init(config, 8, DType::F32, &Device::Cpu)?;
        // Two groups of three: the first has signal, the second is flat.
        let seq = |prompt: Vec<u32>, response: Vec<u32>, advantage: f32| Sequence {
            sampler_logprobs: vec![-1.0; response.len()],
            prompt,
            response,
            advantage,
            trained: true,
        };
        let seqs = vec![
            seq(vec![1, 2, 3], vec![4, 5, 6, 7], 1.1),
            seq(vec![1, 2, 3], vec![8, 9], -0.3),
            seq(vec![1, 2, 3], vec![10, 11, 12, 13, 14, 15], -0.8),
            seq(vec![5, 6], vec![20, 21, 22], 0.0),
            seq(vec![5, 6], vec![23; 9], 0.0),
            seq(vec![5, 6], vec![24], 0.0),
        ];
        let run = |skip: bool| -> Result<(Pass, usize, usize)> {
            let (batches, tokens) = micro_batches(&seqs, 2, 0, &Device::Cpu, skip)?;
            let n = batches.len();
            let p = pass(&model, &batches, &mut Vec::new(), None, 0.2, tokens, 0.8, "test")?;
            Ok((p, tokens, n))
        };
        let (all, tokens_all, n_all) = run(false)?;
        let (skipped, tokens_skipped, n_skipped) = run(true)?;
        assert_eq!((tokens_all, tokens_skipped), (25, 25));
        assert_eq!((n_all, n_skipped), (3, 2));
        assert!(
            (all.loss - skipped.loss).abs() < 1e-7,
            "{} vs {}",
            all.loss,
            skipped.loss
        );
        assert_eq!(all.grads.len(), skipped.grads.len());
        for (name, g) in &all.grads {
            let d = max_diff(g, &skipped.grads[name]);
            assert!(d < 1e-7, "{name}: {d}");
        }
        // A flat batch runs nothing, and its gradients are zeros.
        let flat: Vec<Sequence> = seqs[3..].to_vec();
        let (batches, tokens) = micro_batches(&flat, 2, 0, &Device::Cpu, true)?;
        assert!(batches.is_empty() && tokens == 13);
        let p = pass(&model, &batches, &mut Vec::new(), None, 0.2, tokens, 0.8, "test")?;
        assert_eq!(p.grads.len(), model.named_vars().len());
        for g in p.grads.values() {
            assert_eq!(g.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
        }
        Ok(())
    }
}
