//! The rollout engine: generation for `trainer rl`, evaluation and
//! `trainer generate`, with continuous batching over a paged KV cache,
//! prompts shared by their samples, and sampling on the model's device.
//!
//! A run takes [`Request`]s (a prompt and one seed per sample) and
//! [`SamplingParams`], and returns every sample's tokens with their
//! log-probabilities and entropies (what the RL step needs). Inside:
//!
//! - **Paged KV cache** ([`PagedKvCache`]): keys and values live in blocks of
//!   `block_size` token slots in one pool per layer, sized by
//!   `kv_cache_mib`, not by the longest sequence that might come. Each
//!   sequence has a block table; free blocks are on a free list.
//! - **Continuous batching** (`scheduler.rs`): every step runs the rows of
//!   all running sequences together (one new token each, plus chunks of
//!   prompts being prefilled), retires sequences the moment they stop and
//!   admits waiting ones as soon as batch slots, the step's token budget and
//!   blocks allow. When the pool runs out the youngest sequence is
//!   preempted: its blocks are freed and it is recomputed later.
//! - **Prefix sharing**: a request's prompt is prefilled once; its samples
//!   draw their first tokens from its last logits and share its blocks,
//!   copying the last, partly filled one before writing into it.
//! - **Sampling on the device** ([`ops::sample_tokens`]): temperature,
//!   top-k and top-p run where the logits are, and only the ids,
//!   log-probabilities and entropies come back.
//!
//! **Exactness.** Each sample draws from its own generator, seeded from
//! its seed alone, one uniform per token; and on the CPU in `f32` every op
//! of a step computes each row on its own ([`Qwen2::forward_step`]). So a
//! sample's tokens, log-probabilities and entropies are the same bits
//! whatever else is in the batch, the block size, the order of admission,
//! whether it was preempted and whether its prompt was shared; and they are
//! those of the sampler the engine replaced (the tests hold them to its
//! recorded outputs, `tests/fixtures/sampler/`).

mod blocks;
mod params;
mod scheduler;

use std::time::Instant;

use candle_core::{bail, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

pub use params::{row_seed, Finish, Sample, SamplingParams};

use crate::model::{DecodeWeights, PagedKvCache, Qwen2, Step};
use crate::ops::{self, PagedRows};
use crate::tokenizer::Tokenizer;
use scheduler::{Limits, Scheduler};

/// The engine's memory and batch settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Token slots per KV-cache block.
    pub block_size: usize,
    /// Memory of the KV cache (keys and values of every layer), in MiB. A
    /// run allocates less when its requests could not fill that much.
    pub kv_cache_mib: usize,
    /// Most sequences decoding at once (a batch slot each).
    pub max_seqs: usize,
    /// Most prompt tokens (prefill and recomputation) one step runs besides
    /// the decoding sequences' one token each; longer prompts go in chunks.
    pub max_step_tokens: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            block_size: 16,
            kv_cache_mib: 2048,
            max_seqs: 256,
            max_step_tokens: 2048,
        }
    }
}

impl EngineConfig {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (v, name) in [
            (self.block_size, "block_size"),
            (self.kv_cache_mib, "kv_cache_mib"),
            (self.max_seqs, "max_seqs"),
            (self.max_step_tokens, "max_step_tokens"),
        ] {
            if v == 0 {
                return Err(format!("engine.{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A prompt and the seeds of its samples (one sample per seed).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// One seed per sample.
    pub seeds: Vec<u64>,
}

impl Request {
    /// `samples` samples of each prompt, the rows (prompt after prompt)
    /// seeded with [`row_seed`]`(seed, row)`.
    pub fn batch(prompts: &[Vec<u32>], samples: usize, seed: u64) -> Vec<Request> {
        prompts
            .iter()
            .enumerate()
            .map(|(p, prompt)| Request {
                prompt: prompt.clone(),
                seeds: (0..samples).map(|j| row_seed(seed, p * samples + j)).collect(),
            })
            .collect()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Model steps.
    pub steps: usize,
    /// Rows run (prompt, recomputed and decoded tokens).
    pub rows: usize,
    /// Tokens generated.
    pub new_tokens: usize,
    /// Sequences (or prompts) preempted for lack of blocks.
    pub preemptions: usize,
    /// Token slots per block.
    pub block_size: usize,
    /// Blocks in the pool.
    pub blocks: usize,
    /// The most blocks in use at once.
    pub peak_blocks: usize,
    /// Bytes of the pool.
    pub kv_cache_bytes: usize,
    /// Seconds the run took.
    pub seconds: f64,
}

/// A sample, reported the moment it finishes.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// Its request's index.
    pub request: usize,
    /// Its index among the request's samples.
    pub index: usize,
    /// The sample.
    pub sample: &'a Sample,
}

/// The engine for one model, whose weights it lays out for decoding when
/// made (make a new one after the weights change).
pub struct Engine<'m> {
    model: &'m Qwen2,
    weights: DecodeWeights,
    config: EngineConfig,
    /// A pool of exactly this many blocks (tests: pools smaller than a MiB).
    blocks: Option<usize>,
}

impl<'m> Engine<'m> {
    /// An engine over `model` with `config`.
    pub fn new(model: &'m Qwen2, config: &EngineConfig) -> Result<Engine<'m>> {
        config.validate().map_err(candle_core::Error::Msg)?;
        Ok(Engine {
            model,
            weights: model.decode_weights()?,
            config: config.clone(),
            blocks: None,
        })
    }

    /// The same engine with a pool of exactly `blocks` blocks.
    #[cfg(test)]
    fn with_blocks(self, blocks: usize) -> Self {
        Engine {
            blocks: Some(blocks),
            ..self
        }
    }

    /// Generates every request's samples; `tokenizer` is needed only for
    /// stop strings. `on_finished` sees each sample as it finishes. Returns
    /// the samples per request, in the requests' order.
    pub fn run(
        &self,
        requests: &[Request],
        params: &SamplingParams,
        tokenizer: Option<&Tokenizer>,
        mut on_finished: impl FnMut(Finished<'_>),
    ) -> Result<(Vec<Vec<Sample>>, Stats)> {
        let started = Instant::now();
        params.validate().map_err(candle_core::Error::Msg)?;
        if !params.stop_strings.is_empty() && tokenizer.is_none() {
            bail!("stop strings need a tokenizer");
        }
        let model = self.model;
        let mc = model.config();
        let (vocab, context) = (mc.vocab_size as u32, mc.max_position_embeddings);
        let bs = self.config.block_size;
        let mut work = Vec::with_capacity(requests.len());
        let (mut need_one, mut need_all) = (0, 0);
        for r in requests {
            let len = r.prompt.len();
            if len == 0 {
                bail!("every prompt needs at least one token");
            }
            if let Some(bad) = r.prompt.iter().find(|&&id| id >= vocab) {
                bail!("prompt token id {bad} is outside the vocabulary of {vocab}");
            }
            if len >= context {
                bail!("a prompt of {len} tokens leaves no room in the model's context of {context}");
            }
            let budget = params.max_new_tokens.min(context - len);
            if budget > 0 && !r.seeds.is_empty() {
                need_one = usize::max(need_one, (len + budget).div_ceil(bs) + 1);
                need_all += len.div_ceil(bs) + r.seeds.len() * (len + budget).div_ceil(bs);
            }
            work.push((r.prompt.clone(), vec![budget; r.seeds.len()]));
        }
        let block_bytes = PagedKvCache::block_bytes(mc, bs, model.dtype());
        let affordable = self
            .blocks
            .unwrap_or(self.config.kv_cache_mib * (1 << 20) / block_bytes);
        if affordable < need_one {
            bail!(
                "engine.kv_cache_mib = {} holds {affordable} blocks of {bs} tokens, and a sequence of this run needs {need_one}: raise kv_cache_mib or lower max_new_tokens",
                self.config.kv_cache_mib
            );
        }
        let blocks = match self.blocks {
            Some(b) => b,
            None => affordable.min(need_all).max(need_one),
        };
        let mut stats = Stats {
            block_size: bs,
            blocks,
            kv_cache_bytes: blocks * block_bytes,
            ..Stats::default()
        };
        let mut sched = Scheduler::new(
            work,
            blocks,
            Limits {
                block_size: bs,
                max_seqs: self.config.max_seqs,
                max_step_tokens: self.config.max_step_tokens,
            },
        );
        let mut rngs: Vec<StdRng> = requests
            .iter()
            .flat_map(|r| r.seeds.iter().map(|&s| StdRng::seed_from_u64(s)))
            .collect();
        // Where each sample sits: (request, index).
        let place: Vec<(usize, usize)> = requests
            .iter()
            .enumerate()
            .flat_map(|(q, r)| (0..r.seeds.len()).map(move |i| (q, i)))
            .collect();
        for (s, seq) in sched.seqs.iter().enumerate() {
            if seq.done {
                on_finished(Finished {
                    request: place[s].0,
                    index: place[s].1,
                    sample: &seq.sample,
                });
            }
        }
        let cache = if sched.finished() {
            None
        } else {
            Some(PagedKvCache::new(mc, blocks, bs, model.dtype(), model.device())?)
        };
        let window = params.stop_strings.iter().map(String::len).max().unwrap_or(0) + 2;
        let draw = params.draw();
        while let Some(cache) = cache.as_ref().filter(|_| !sched.finished()) {
            let plan = sched.plan();
            if plan.ids.is_empty() {
                bail!("the engine scheduled nothing with work left (a bug)");
            }
            for &(src, dst) in &plan.copies {
                cache.copy_block(src as usize, dst as usize)?;
            }
            let logits = model.forward_step(
                &self.weights,
                cache,
                Step {
                    ids: &plan.ids,
                    rows: PagedRows {
                        block_size: bs,
                        tables: &plan.tables,
                        seq: &plan.seq,
                        pos: &plan.pos,
                    },
                    logits_of: &plan.logits_of,
                },
            )?;
            let rows: Vec<u32> = plan.draws.iter().map(|&(at, _)| at).collect();
            let uniforms: Vec<f32> = plan
                .draws
                .iter()
                .map(|&(_, s)| {
                    if params.temperature > 0.0 {
                        rngs[s].random::<f32>()
                    } else {
                        0.0
                    }
                })
                .collect();
            let picks = ops::sample_tokens(&logits, &rows, &uniforms, draw)?;
            for (&(_, s), pick) in plan.draws.iter().zip(picks) {
                let seq = &mut sched.seqs[s];
                let out = &mut seq.sample;
                out.ids.push(pick.id);
                out.logprobs.push(pick.logprob);
                out.entropies.push(pick.entropy);
                stats.new_tokens += 1;
                if let Some(finish) = params::stop(&out.ids, params, tokenizer, window)? {
                    out.finish = finish;
                    seq.done = true;
                } else if out.ids.len() >= seq.budget {
                    seq.done = true;
                }
                if seq.done {
                    on_finished(Finished {
                        request: place[s].0,
                        index: place[s].1,
                        sample: &seq.sample,
                    });
                }
            }
            sched.settle(&plan);
            stats.steps += 1;
            stats.rows += plan.ids.len();
        }
        stats.preemptions = sched.preemptions;
        stats.peak_blocks = sched.peak_blocks();
        let mut samples: Vec<Vec<Sample>> = requests
            .iter()
            .map(|r| Vec::with_capacity(r.seeds.len()))
            .collect();
        for (seq, &(q, _)) in sched.seqs.into_iter().zip(&place) {
            samples[q].push(seq.sample);
        }
        stats.seconds = started.elapsed().as_secs_f64();
        Ok((samples, stats))
    }
}

/// One sample of each prompt with the default [`EngineConfig`], row `i`
/// seeded with [`row_seed`]`(seed, i)`; `tokenizer` is needed only for
/// stop strings.
pub fn generate(
    model: &Qwen2,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<Sample>> {
    let requests = Request::batch(prompts, 1, seed);
    let (samples, _) =
        Engine::new(model, &EngineConfig::default())?.run(&requests, params, tokenizer, |_| {})?;
    Ok(samples.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests;
