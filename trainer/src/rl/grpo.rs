//! The GRPO objective: group-normalised advantages and the token-level
//! clipped policy loss.
//!
//! For a prompt's G responses with rewards `r_1..r_G`, every token of
//! response i gets the advantage `A_i = (r_i - mean(r)) / (std(r) + eps)`
//! (`std` with Bessel's correction, as verl computes it). A group whose
//! rewards are all equal has advantage 0: no signal.
//!
//! The loss over a batch is the token-level mean (every trained token of
//! every response weighs the same, DAPO/AceReason style, not a mean per
//! sequence):
//!
//! ```text
//! L = sum_tokens [ -min(rho * A, clip(rho, 1 - e, 1 + e) * A) + beta * KL ] / N
//! rho = exp(logp - logp_old)
//! KL  = exp(logp_ref - logp) - (logp_ref - logp) - 1     (the k3 estimator)
//! ```
//!
//! where `logp` is under `softmax(logits / T)` at the rollout temperature T,
//! N counts the batch's trained tokens, and `logp_old` is the policy's own
//! log-probability before the batch's first update. With one update per
//! batch (strict on-policy) `rho` is exactly 1 and the clip never binds.

use candle_core::{DType, Device, Result, Tensor};

use crate::model::Qwen2;

/// Group-normalised advantages of `rewards`, laid out group after group
/// (`group` responses each), and the number of groups with no signal.
pub fn advantages(rewards: &[f64], group: usize, eps: f64) -> (Vec<f64>, usize) {
    assert!(
        group > 0 && rewards.len().is_multiple_of(group),
        "rewards come in whole groups"
    );
    let mut out = Vec::with_capacity(rewards.len());
    let mut flat = 0;
    for g in rewards.chunks(group) {
        let n = g.len() as f64;
        let mean = g.iter().sum::<f64>() / n;
        let var = if g.len() > 1 {
            g.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        if var == 0.0 {
            flat += 1;
            out.extend(std::iter::repeat_n(0.0, g.len()));
        } else {
            out.extend(g.iter().map(|r| (r - mean) / (var.sqrt() + eps)));
        }
    }
    (out, flat)
}

/// One response to train on.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// The prompt's ids.
    pub prompt: Vec<u32>,
    /// The response's ids.
    pub response: Vec<u32>,
    /// The response's advantage.
    pub advantage: f32,
    /// Whether its tokens get gradient (false for overlong-filtered ones).
    pub trained: bool,
    /// The sampler's log-probability of each response token.
    pub sampler_logprobs: Vec<f32>,
}

/// A padded micro-batch: predict `targets` from `inputs`, loss where `mask` is 1.
#[derive(Debug)]
pub struct MicroBatch {
    /// `(b, t)` u32 ids.
    pub inputs: Tensor,
    /// `(b, t)` u32 next ids.
    pub targets: Tensor,
    /// `(b, t)` f32: 1 on trained response tokens.
    pub mask: Tensor,
    /// `(b, t)` f32 advantages.
    pub advantages: Tensor,
    /// `(b, t)` f32: the sampler's log-probabilities of the response tokens.
    pub sampler: Tensor,
    /// Trained tokens in it.
    pub tokens: usize,
    /// Positions (prompt and response) in it.
    pub positions: usize,
}

/// Packs `seqs` (right-padded with `pad`) into a micro-batch.
pub fn collate(seqs: &[&Sequence], pad: u32, device: &Device) -> Result<MicroBatch> {
    let t = seqs
        .iter()
        .map(|s| s.prompt.len() + s.response.len() - 1)
        .max()
        .unwrap_or(0);
    let b = seqs.len();
    let mut inputs = vec![pad; b * t];
    let mut targets = vec![pad; b * t];
    let mut mask = vec![0f32; b * t];
    let mut adv = vec![0f32; b * t];
    let mut sampler = vec![0f32; b * t];
    let mut tokens = 0;
    for (r, s) in seqs.iter().enumerate() {
        let full: Vec<u32> = s.prompt.iter().chain(&s.response).copied().collect();
        let row = r * t;
        inputs[row..row + full.len() - 1].copy_from_slice(&full[..full.len() - 1]);
        targets[row..row + full.len() - 1].copy_from_slice(&full[1..]);
        if s.trained {
            let start = row + s.prompt.len() - 1;
            for (j, i) in (start..start + s.response.len()).enumerate() {
                mask[i] = 1.0;
                adv[i] = s.advantage;
                sampler[i] = s.sampler_logprobs.get(j).copied().unwrap_or(0.0);
            }
            tokens += s.response.len();
        }
    }
    Ok(MicroBatch {
        inputs: Tensor::from_vec(inputs, (b, t), device)?,
        targets: Tensor::from_vec(targets, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        advantages: Tensor::from_vec(adv, (b, t), device)?,
        sampler: Tensor::from_vec(sampler, (b, t), device)?,
        tokens,
        positions: b * t,
    })
}

/// Log-probabilities `(b, t)` of the batch's targets under
/// `softmax(logits / temperature)`, through [`Qwen2::token_stats`]: the LM
/// head and the fused statistics a chunk of positions at a time, so the
/// logits never exist in full, nor are they scaled into a copy or turned
/// into a softmax.
pub fn logprobs(model: &Qwen2, batch: &MicroBatch, temperature: f64) -> Result<Tensor> {
    Ok(model
        .token_stats(&batch.inputs, &batch.targets, temperature, None)?
        .logprobs)
}

/// The loss of one micro-batch and what it measured.
#[derive(Debug)]
pub struct Loss {
    /// The micro-batch's share of the batch loss (divided by the batch's
    /// trained tokens), to backpropagate.
    pub loss: Tensor,
    /// Its value.
    pub value: f64,
    /// Trained tokens whose clipped term was the one taken.
    pub clipped: f64,
    /// Sum of the KL estimate over trained tokens (0 without a reference).
    pub kl_sum: f64,
}

/// The clipped policy loss of a micro-batch, given the policy's `logp`,
/// `old` (the log-probabilities before the batch's first update), the
/// reference's `reference` (with `beta`), over `batch_tokens` trained tokens
/// in the whole batch.
pub fn policy_loss(
    batch: &MicroBatch,
    logp: &Tensor,
    old: &Tensor,
    reference: Option<(&Tensor, f64)>,
    clip_eps: f64,
    batch_tokens: usize,
) -> Result<Loss> {
    let ratio = (logp - old)?.exp()?;
    let adv = &batch.advantages;
    let unclipped = (&ratio * adv)?;
    let clipped_ratio = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)?;
    let clipped = (&clipped_ratio * adv)?;
    let surrogate = unclipped.minimum(&clipped)?;
    let mut per_token = surrogate.neg()?;
    let mut kl_sum = 0.0;
    if let Some((reference, beta)) = reference {
        let d = (reference - logp)?;
        let kl = ((d.exp()? - &d)? - 1.0)?;
        kl_sum = (kl.detach() * &batch.mask)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        per_token = (per_token + (kl * beta)?)?;
    }
    let total = (per_token * &batch.mask)?.sum_all()?;
    let loss = (total / batch_tokens.max(1) as f64)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    // A token is clipped when the clipped term is strictly smaller (the
    // gradient through the ratio is then zero).
    let is_clipped = clipped.lt(&unclipped)?.to_dtype(DType::F32)?;
    let clipped = (is_clipped * &batch.mask)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(Loss {
        loss,
        value,
        clipped,
        kl_sum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn advantages_normalise_each_group_and_flag_flat_ones() {
        let (a, flat) = advantages(&[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 4, 0.0);
        assert_eq!(flat, 1);
        // mean 0.25, sample std 0.5
        assert!((a[0] - 1.5).abs() < 1e-12 && (a[1] + 0.5).abs() < 1e-12, "{a:?}");
        assert_eq!(&a[4..], &[0.0; 4]);
        assert!(a[..4].iter().sum::<f64>().abs() < 1e-12);
    }

    #[test]
    fn collate_masks_responses_and_skips_untrained() {
        let seqs = [
            Sequence {
                prompt: vec![1, 2],
                response: vec![3, 4, 5],
                advantage: 0.5,
                trained: true,
                sampler_logprobs: vec![-1.0, -2.0, -3.0],
            },
            Sequence {
                prompt: vec![1],
                response: vec![6],
                advantage: -1.0,
                trained: false,
                sampler_logprobs: vec![-1.0],
            },
        ];
        let refs: Vec<&Sequence> = seqs.iter().collect();
        let b = collate(&refs, 0, &Device::Cpu).unwrap();
        assert_eq!(
            b.inputs.to_vec2::<u32>().unwrap(),
            vec![vec![1, 2, 3, 4], vec![1, 0, 0, 0]]
        );
        assert_eq!(
            b.targets.to_vec2::<u32>().unwrap(),
            vec![vec![2, 3, 4, 5], vec![6, 0, 0, 0]]
        );
        assert_eq!(
            b.mask.to_vec2::<f32>().unwrap(),
            vec![vec![0.0, 1.0, 1.0, 1.0], vec![0.0; 4]]
        );
        assert_eq!(
            b.advantages.to_vec2::<f32>().unwrap()[0],
            vec![0.0, 0.5, 0.5, 0.5]
        );
        assert_eq!(
            b.sampler.to_vec2::<f32>().unwrap()[0],
            vec![0.0, -1.0, -2.0, -3.0]
        );
        assert_eq!(b.tokens, 3);
    }

    #[test]
    fn logprobs_are_under_the_tempered_softmax() -> Result<()> {
        let model = Qwen2::init(crate::model::Config::tiny(), 3, DType::F32, &Device::Cpu)?;
        let seq = Sequence {
            prompt: vec![1, 2, 3],
            response: vec![400, 5, 61, 7],
            advantage: 1.0,
            trained: true,
            sampler_logprobs: vec![0.0; 4],
        };
        let b = collate(&[&seq], 0, &Device::Cpu)?;
        let logits = model.forward_logits(&b.inputs, None)?;
        for t in [1.0, 0.6] {
            let got = logprobs(&model, &b, t)?;
            let want = crate::ops::token_logprobs_reference(&(&logits / t)?, &b.targets)?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "T {t}: off by {diff}");
        }
        Ok(())
    }

    fn batch(adv: &[f32], mask: &[f32]) -> MicroBatch {
        let n = adv.len();
        MicroBatch {
            inputs: Tensor::zeros((1, n), DType::U32, &Device::Cpu).unwrap(),
            targets: Tensor::zeros((1, n), DType::U32, &Device::Cpu).unwrap(),
            mask: Tensor::from_slice(mask, (1, n), &Device::Cpu).unwrap(),
            advantages: Tensor::from_slice(adv, (1, n), &Device::Cpu).unwrap(),
            sampler: Tensor::zeros((1, n), DType::F32, &Device::Cpu).unwrap(),
            tokens: mask.iter().filter(|&&m| m > 0.0).count(),
            positions: n,
        }
    }

    #[test]
    fn on_policy_gradient_is_minus_advantage_over_tokens() {
        let b = batch(&[2.0, -1.0, 3.0], &[1.0, 1.0, 0.0]);
        let logp = Var::from_slice(&[-0.5f32, -1.0, -2.0], (1, 3), &Device::Cpu).unwrap();
        let old = logp.as_tensor().detach();
        let l = policy_loss(&b, logp.as_tensor(), &old, None, 0.2, 4).unwrap();
        // -(2 * 1 + -1 * 1) / 4
        assert!((l.value + 0.25).abs() < 1e-6, "{}", l.value);
        assert_eq!(l.clipped, 0.0);
        let g = l.loss.backward().unwrap();
        let g = g.get(logp.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(g[0], vec![-0.5, 0.25, 0.0]);
    }

    #[test]
    fn clip_binds_off_policy_and_kl_is_zero_at_the_reference() {
        let b = batch(&[1.0, -1.0], &[1.0, 1.0]);
        let logp = Var::from_slice(&[0.0f32, 0.0], (1, 2), &Device::Cpu).unwrap();
        // ratio e^0.5 ~ 1.65 for both tokens.
        let old = Tensor::from_slice(&[-0.5f32, -0.5], (1, 2), &Device::Cpu).unwrap();
        let l = policy_loss(&b, logp.as_tensor(), &old, None, 0.2, 2).unwrap();
        // token 0: min(1.65, 1.2) = 1.2 clipped; token 1: min(-1.65, -1.2) = -1.65 not clipped.
        assert_eq!(l.clipped, 1.0);
        assert!(
            (l.value - (-(1.2) + 0.5f64.exp()) / 2.0).abs() < 1e-5,
            "{}",
            l.value
        );
        let g = l.loss.backward().unwrap();
        let g = g.get(logp.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!(
            g[0][0].abs() < 1e-7 && (g[0][1] - 0.5f32.exp() / 2.0).abs() < 1e-5,
            "{g:?}"
        );

        let reference = logp.as_tensor().detach();
        let l = policy_loss(&b, logp.as_tensor(), &old, Some((&reference, 0.1)), 0.2, 2).unwrap();
        assert!(l.kl_sum.abs() < 1e-7);
        let far = Tensor::from_slice(&[-1.0f32, 1.0], (1, 2), &Device::Cpu).unwrap();
        let l = policy_loss(&b, logp.as_tensor(), &old, Some((&far, 0.1)), 0.2, 2).unwrap();
        let want = ((-1f64).exp() + 1.0 - 1.0) + (1f64.exp() - 1.0 - 1.0);
        assert!((l.kl_sum - want).abs() < 1e-5, "{} vs {want}", l.kl_sum);
    }
}
