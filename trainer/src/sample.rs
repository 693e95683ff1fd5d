//! Batched autoregressive sampling with a KV cache.
//!
//! Prompts are left-padded into one batch, prefilled once, then decoded a
//! token at a time. Each row stops on its own: at an end-of-sequence id, at a
//! stop string, or at the token budget (flagged as truncated). For every
//! generated token the sampler also returns what the RL step needs: the
//! token's log-probability and the entropy of the distribution it was drawn
//! from, both under `softmax(logits / temperature)` (plain `softmax(logits)`
//! for greedy decoding). Top-k and top-p only restrict which tokens can be
//! drawn; the reported log-probabilities are of the untruncated
//! temperature-scaled distribution, as the policy gradient uses.
//!
//! Each row draws from its own generator seeded from `seed` and the row's
//! index, so a row's sample does not depend on which other rows share its batch.

use candle_core::{DType, Result, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::model::{KvCache, Qwen2};
use crate::tokenizer::Tokenizer;

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Most tokens generated per row.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of top tokens whose
    /// probability reaches `top_p` (1 disables it).
    pub top_p: f64,
    /// Draw only from the `top_k` most likely tokens (0 disables it).
    pub top_k: usize,
    /// Seed of the rows' generators.
    pub seed: u64,
    /// Ids that end a row (kept as its last token).
    pub stop_ids: Vec<u32>,
    /// Strings that end a row once its decoded text contains them (the
    /// token completing the string is kept).
    pub stop_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop_ids: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// It produced one of the stop ids.
    Eos,
    /// Its text came to contain this stop string.
    StopString(String),
    /// It used up `max_new_tokens` (or the model's context) first.
    Length,
}

/// One generated row.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The new token ids.
    pub ids: Vec<u32>,
    /// Log-probability of each new token.
    pub logprobs: Vec<f32>,
    /// Entropy (nats) of the distribution each new token was drawn from.
    pub entropies: Vec<f32>,
    /// Why the row ended.
    pub finish: Finish,
}

impl Sample {
    /// Whether the row was cut at the length limit rather than ending itself.
    pub fn truncated(&self) -> bool {
        self.finish == Finish::Length
    }
}

/// Checks parameters, naming the bad one.
pub fn validate(params: &SamplingParams) -> std::result::Result<(), String> {
    if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
        return Err(format!("temperature must be >= 0, got {}", params.temperature));
    }
    if !(params.top_p > 0.0 && params.top_p <= 1.0) {
        return Err(format!("top_p must be in (0, 1], got {}", params.top_p));
    }
    if params.stop_strings.iter().any(String::is_empty) {
        return Err("stop strings must not be empty".into());
    }
    Ok(())
}

/// Generates a continuation of each prompt. `tokenizer` is needed only for
/// stop strings.
pub fn generate(
    model: &Qwen2,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<Sample>> {
    validate(params).map_err(candle_core::Error::Msg)?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if prompts.iter().any(Vec::is_empty) {
        candle_core::bail!("every prompt needs at least one token");
    }
    if !params.stop_strings.is_empty() && tokenizer.is_none() {
        candle_core::bail!("stop strings need a tokenizer");
    }
    let vocab = model.config().vocab_size as u32;
    if let Some(bad) = prompts.iter().flatten().find(|&&id| id >= vocab) {
        candle_core::bail!("prompt token id {bad} is outside the vocabulary of {vocab}");
    }
    let b = prompts.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let context = model.config().max_position_embeddings;
    if longest >= context {
        candle_core::bail!("a prompt of {longest} tokens leaves no room in the model's context of {context}");
    }
    let budget = params.max_new_tokens.min(context - longest);
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let mut padded = Vec::with_capacity(b * longest);
    for (p, &pad) in prompts.iter().zip(&pads) {
        padded.extend(std::iter::repeat_n(0u32, pad));
        padded.extend_from_slice(p);
    }
    let device = model.device();
    let mut cache = KvCache::new(model.config(), pads, longest + budget, model.dtype(), device)?;
    let ids = Tensor::from_vec(padded, (b, longest), device)?;
    let hidden = model.forward(&ids, None, Some(&mut cache))?;
    let mut logits = model.logits(&hidden.narrow(1, longest - 1, 1)?)?;

    let mut rows: Vec<Row> = (0..b)
        .map(|i| Row {
            rng: StdRng::seed_from_u64(params.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            sample: Sample {
                ids: Vec::new(),
                logprobs: Vec::new(),
                entropies: Vec::new(),
                finish: Finish::Length,
            },
            done: false,
        })
        .collect();
    let stop_window = params.stop_strings.iter().map(String::len).max().unwrap_or(0) + 2;
    let mut scratch = Scratch::default();
    for step in 0..budget {
        let flat = logits.reshape((b, ()))?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut next = Vec::with_capacity(b);
        for (row, l) in rows.iter_mut().zip(&flat) {
            if row.done {
                next.push(0);
                continue;
            }
            let (id, logprob, entropy) = pick(l, params, &mut row.rng, &mut scratch);
            row.sample.ids.push(id);
            row.sample.logprobs.push(logprob);
            row.sample.entropies.push(entropy);
            if params.stop_ids.contains(&id) {
                row.done = true;
                row.sample.finish = Finish::Eos;
            } else if let Some(tok) = tokenizer.filter(|_| !params.stop_strings.is_empty()) {
                let ids = &row.sample.ids;
                let tail = tok
                    .decode(&ids[ids.len().saturating_sub(stop_window)..], false)
                    .map_err(candle_core::Error::wrap)?;
                if let Some(s) = params.stop_strings.iter().find(|s| tail.contains(s.as_str())) {
                    row.done = true;
                    row.sample.finish = Finish::StopString(s.clone());
                }
            }
            next.push(id);
        }
        if rows.iter().all(|r| r.done) || step + 1 == budget {
            break;
        }
        let ids = Tensor::from_vec(next, (b, 1), device)?;
        logits = model.forward_logits(&ids, None, Some(&mut cache))?;
    }
    Ok(rows.into_iter().map(|r| r.sample).collect())
}

struct Row {
    rng: StdRng,
    sample: Sample,
    done: bool,
}

/// Reused buffers for [`pick`].
#[derive(Default)]
struct Scratch {
    probs: Vec<f32>,
    order: Vec<u32>,
}

/// Chooses the next token from one row's logits; returns the id, its
/// log-probability and the distribution's entropy.
fn pick(logits: &[f32], params: &SamplingParams, rng: &mut StdRng, scratch: &mut Scratch) -> (u32, f32, f32) {
    let t = if params.temperature > 0.0 {
        params.temperature as f32
    } else {
        1.0
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let probs = &mut scratch.probs;
    probs.clear();
    probs.extend(logits.iter().map(|&l| ((l - max) / t).exp()));
    let sum: f32 = probs.iter().sum();
    let log_sum = sum.ln();
    // H = log Z - sum p * z, with z the shifted scaled logits.
    let mut entropy = log_sum;
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p /= sum;
        entropy -= *p * ((l - max) / t);
    }
    let id = if params.temperature == 0.0 {
        argmax(logits)
    } else if params.top_k == 0 && params.top_p >= 1.0 {
        draw(
            probs.iter().copied().enumerate().map(|(i, p)| (i as u32, p)),
            1.0,
            rng,
        )
    } else {
        let order = &mut scratch.order;
        order.clear();
        order.extend(0..probs.len() as u32);
        order.sort_unstable_by(|&a, &b| probs[b as usize].total_cmp(&probs[a as usize]).then(a.cmp(&b)));
        let mut keep = if params.top_k > 0 {
            params.top_k.min(order.len())
        } else {
            order.len()
        };
        if params.top_p < 1.0 {
            let mut acc = 0f32;
            for (n, &i) in order[..keep].iter().enumerate() {
                acc += probs[i as usize];
                if acc as f64 >= params.top_p {
                    keep = n + 1;
                    break;
                }
            }
        }
        let total: f32 = order[..keep].iter().map(|&i| probs[i as usize]).sum();
        draw(order[..keep].iter().map(|&i| (i, probs[i as usize])), total, rng)
    };
    let logprob = ((logits[id as usize] - max) / t) - log_sum;
    (id, logprob, entropy.max(0.0))
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws from `(id, weight)` pairs whose weights sum to `total`.
fn draw(weights: impl Iterator<Item = (u32, f32)>, total: f32, rng: &mut StdRng) -> u32 {
    let target = rng.random::<f32>() * total;
    let mut acc = 0f32;
    let mut last = 0;
    for (id, w) in weights {
        acc += w;
        last = id;
        if acc > target {
            return id;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use candle_core::Device;

    fn model() -> Qwen2 {
        let config = Config {
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            max_position_embeddings: 64,
            ..Config::tiny()
        };
        Qwen2::init(config, 5, DType::F32, &Device::Cpu).unwrap()
    }

    fn params(temperature: f64) -> SamplingParams {
        SamplingParams {
            max_new_tokens: 12,
            temperature,
            seed: 7,
            ..Default::default()
        }
    }

    #[test]
    fn rows_do_not_depend_on_their_batch() -> Result<()> {
        let m = model();
        let prompts = vec![vec![1, 2, 3, 4, 5], vec![9, 8], vec![3, 3, 3]];
        for t in [0.0, 1.0] {
            let together = generate(&m, &prompts, &params(t), None)?;
            let alone = generate(&m, &prompts[..1], &params(t), None)?;
            assert_eq!(together[0].ids, alone[0].ids);
            assert!((together[0].logprobs[5] - alone[0].logprobs[5]).abs() < 1e-4);
            assert!(together.iter().all(|s| s.ids.len() == 12 && s.truncated()));
        }
        Ok(())
    }

    #[test]
    fn greedy_follows_the_argmax_of_a_full_forward() -> Result<()> {
        let m = model();
        let s = generate(&m, &[vec![4, 5, 6]], &params(0.0), None)?.remove(0);
        let mut seq = vec![4u32, 5, 6];
        for &id in &s.ids {
            let ids = Tensor::new(seq.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let logits = m
                .forward_logits(&ids, None, None)?
                .get(0)?
                .get(seq.len() - 1)?
                .to_vec1::<f32>()?;
            assert_eq!(argmax(&logits), id);
            seq.push(id);
        }
        Ok(())
    }

    #[test]
    fn stop_ids_end_a_row_and_logprobs_are_consistent() -> Result<()> {
        let m = model();
        let free = generate(&m, &[vec![1, 2]], &params(1.0), None)?.remove(0);
        let stop = free.ids[3];
        let p = SamplingParams {
            stop_ids: vec![stop],
            ..params(1.0)
        };
        let s = generate(&m, &[vec![1, 2]], &p, None)?.remove(0);
        let first = free.ids.iter().position(|&i| i == stop).unwrap();
        assert_eq!(s.ids, free.ids[..=first]);
        assert_eq!(s.finish, Finish::Eos);
        assert!(s.logprobs.iter().all(|&l| l <= 0.0) && s.entropies.iter().all(|&e| e >= 0.0));
        assert!(s.entropies.iter().all(|&e| e <= (50f32).ln() + 1e-4));
        Ok(())
    }

    #[test]
    fn pick_respects_top_k_and_top_p_and_reports_exact_values() {
        let logits = [2.0f32, 1.0, 0.5, -1.0];
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = Scratch::default();
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let probs: Vec<f32> = logits.iter().map(|l| l.exp() / z).collect();
        let h: f32 = -probs.iter().map(|p| p * p.ln()).sum::<f32>();
        for _ in 0..200 {
            let p = SamplingParams {
                top_k: 2,
                ..params(1.0)
            };
            let (id, lp, e) = pick(&logits, &p, &mut rng, &mut s);
            assert!(id < 2);
            assert!((lp - probs[id as usize].ln()).abs() < 1e-5 && (e - h).abs() < 1e-5);
            let p = SamplingParams {
                top_p: 0.5,
                ..params(1.0)
            };
            assert_eq!(pick(&logits, &p, &mut rng, &mut s).0, 0);
        }
        let hot = SamplingParams {
            temperature: 2.0,
            ..params(2.0)
        };
        let (_, _, e_hot) = pick(&logits, &hot, &mut rng, &mut s);
        assert!(e_hot > h);
    }

    #[test]
    fn bad_parameters_and_prompts_are_refused() {
        let m = model();
        let err = generate(
            &m,
            &[vec![1]],
            &SamplingParams {
                top_p: 0.0,
                ..params(1.0)
            },
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("top_p"));
        let err = generate(&m, &[vec![99]], &params(1.0), None).unwrap_err();
        assert!(err.to_string().contains("outside the vocabulary"));
        let err = generate(&m, &[vec![1; 64]], &params(1.0), None).unwrap_err();
        assert!(err.to_string().contains("no room"));
    }
}
