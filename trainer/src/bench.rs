//! `trainer bench`: the CPU throughput benchmark that mirrors the PyTorch
//! anchor `bench/anchors/torch_tiny_gpt.py` workload for workload, so
//! `bench/trainer_bench.py` can run both side by side and print ratios.
//!
//! Model: [`Config::tiny`] (vocab 512, d_model 256, 4 layers, 4 heads, MLP
//! 1024, context 256, tied embeddings), `f32` on the CPU. Workloads:
//!
//! - `train`: batch 16 x 256 random tokens, forward, mean cross-entropy over
//!   every position, backward, AdamW step.
//! - `sample`: [`engine::generate`] with 32-token random prompts and 224 new
//!   tokens at temperature 1, batch 16 and batch 1. Besides drawing the token
//!   (what the anchor does) our sampler computes each token's log-probability
//!   and the distribution's entropy.
//! - `grpo`: 16 sequences of 256 tokens (the batch-16 samples when `sample`
//!   ran, else random tokens, as in the anchor), each completion cut at a
//!   random length with the rest padded, per-sequence advantages from random
//!   0/1 rewards, log-probs of the sequence's own tokens, entropy (no
//!   gradient), loss `-(adv * logprob)` averaged over completion tokens,
//!   backward, AdamW step.
//!
//! Reported like the anchor: tokens per second of the median step (train,
//! grpo), new tokens per second of the median run (sampling), and the same
//! JSON shape for `--json`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

use crate::engine::{self, SamplingParams};
use crate::model::{Config, Qwen2};
use crate::ops;
use crate::optim::{named_grads, AdamW, AdamWConfig};

/// Arguments of `trainer bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Timed steps of the train and grpo workloads.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed sampling runs per batch size (after one untimed run).
    #[arg(long, default_value_t = 3)]
    pub sample_runs: usize,
    /// Workloads to run, comma-separated: train, sample, grpo.
    #[arg(long, default_value = "train,sample,grpo")]
    pub only: String,
    /// Write the results as JSON here (the anchor's `--json` shape).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Key/value heads (< 4 for grouped-query attention).
    #[arg(long, default_value_t = 4)]
    pub kv_heads: usize,
    /// Give the LM head its own matrix instead of the embedding's.
    #[arg(long)]
    pub untied: bool,
}

/// Batch and sequence length of the train and grpo steps.
const BATCH: usize = 16;
/// Prompt length of the sampling runs and of the grpo sequences.
const PROMPT: usize = 32;

/// Runs `trainer bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    if let Some(bad) = only.iter().find(|w| !["train", "sample", "grpo"].contains(w)) {
        anyhow::bail!("unknown workload {bad:?} in --only: use train, sample, grpo");
    }
    anyhow::ensure!(
        args.steps > 0 && args.sample_runs > 0,
        "--steps and --sample-runs must be at least 1"
    );
    let config = Config {
        num_key_value_heads: Some(args.kv_heads),
        tie_word_embeddings: !args.untied,
        ..Config::tiny()
    };
    let threads = rayon::current_num_threads();
    let env = json!({
        "trainer": env!("CARGO_PKG_VERSION"),
        "candle": "0.11",
        "threads": threads,
        "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "cpu": cpu_model(),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "config": serde_json::to_value(&config)?,
    });
    println!(
        "trainer {}  threads {threads}  {}",
        env!("CARGO_PKG_VERSION"),
        env["cpu"].as_str().unwrap_or("?")
    );
    let results = bench(&config, &args, &only)?;
    println!("\n| mode    | train tok/s | sample b16 new tok/s | sample b1 new tok/s | grpo tok/s |");
    println!("|---------|------------:|---------------------:|--------------------:|-----------:|");
    let f = |k: &str, f2: &str| {
        results
            .get(k)
            .and_then(|r| r[f2].as_f64())
            .map_or("-".into(), |v| format!("{v:.0}"))
    };
    println!(
        "| candle  | {:>11} | {:>20} | {:>19} | {:>10} |",
        f("train", "tok_per_s"),
        f("sample_b16", "new_tok_per_s"),
        f("sample_b1", "new_tok_per_s"),
        f("grpo", "tok_per_s")
    );
    if let Some(path) = &args.json {
        let doc = json!({"env": env, "results": [results]});
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn bench(config: &Config, args: &BenchArgs, only: &[&str]) -> Result<Value> {
    let device = Device::Cpu;
    let model = Qwen2::init(config.clone(), 0, DType::F32, &device)?;
    let vars = model.named_vars();
    // torch.optim.AdamW's defaults, with the anchor's weight decay.
    let adamw = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(vars.clone(), adamw)?;
    let lr = 3e-4;
    let mut res = json!({"mode": "candle", "params": model.num_params()});
    let (b, t, v) = (BATCH, config.max_position_embeddings, config.vocab_size);
    let mut rng = StdRng::seed_from_u64(0);
    let random_ids =
        |rng: &mut StdRng, n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(0..v as u32)).collect() };

    // a. training
    if only.contains(&"train") {
        let data = random_ids(&mut rng, b * (t + 1));
        let data = Tensor::from_vec(data, (b, t + 1), &device)?;
        let x = data.narrow(1, 0, t)?.contiguous()?;
        let y = data.narrow(1, 1, t)?.contiguous()?;
        let mut step = || -> Result<f32> {
            let logits = model.forward_logits(&x, None)?;
            let loss = ops::token_logprobs(&logits, &y)?.mean_all()?.neg()?;
            let grads = model.backward(&loss)?;
            opt.step(&named_grads(&vars, &grads), lr)?;
            Ok(loss.to_scalar::<f32>()?)
        };
        let (warm, _) = timed(args.warmup, &mut step)?;
        let (ts, loss) = timed(args.steps, &mut step)?;
        let med = median(&ts);
        println!(
            "[candle] train: {:9.0} tok/s  (median step {:.1} ms, warmup {:.1} s, loss {:.3})",
            (b * t) as f64 / med,
            med * 1e3,
            total(&warm),
            loss.unwrap_or(f32::NAN)
        );
        res["train"] = json!({
            "tok_per_s": (b * t) as f64 / med, "median_step_s": med, "min_step_s": min(&ts),
            "max_step_s": max(&ts), "warmup_s": total(&warm), "loss_last": loss,
        });
    }

    // b. sampling
    let n_new = t - PROMPT;
    let mut samples16: Option<Vec<u32>> = None;
    if only.contains(&"sample") {
        for sb in [16usize, 1] {
            let prompts: Vec<Vec<u32>> = (0..sb).map(|_| random_ids(&mut rng, PROMPT)).collect();
            let params = SamplingParams {
                max_new_tokens: n_new,
                temperature: 1.0,
                ..Default::default()
            };
            let mut run = || -> Result<Vec<engine::Sample>> {
                Ok(engine::generate(&model, &prompts, &params, 123, None)?)
            };
            let (warm, _) = timed(1, &mut run)?;
            let (ts, out) = timed(args.sample_runs, &mut run)?;
            let out = out.context("no sampling run")?;
            anyhow::ensure!(
                out.len() == sb && out.iter().all(|s| s.ids.len() == n_new),
                "short samples"
            );
            if sb == 16 {
                samples16 = Some(
                    prompts
                        .iter()
                        .zip(&out)
                        .flat_map(|(p, s)| p.iter().chain(&s.ids).copied())
                        .collect(),
                );
            }
            let med = median(&ts);
            println!(
                "[candle] sample b={sb:2}: {:9.0} new tok/s  (median run {med:.3} s, {:.2} ms/token-step, warmup {:.1} s)",
                (sb * n_new) as f64 / med,
                med / n_new as f64 * 1e3,
                warm[0]
            );
            res[format!("sample_b{sb}")] = json!({
                "new_tok_per_s": (sb * n_new) as f64 / med, "median_run_s": med, "runs_s": ts,
                "warmup_s": warm[0], "ms_per_decode_step": med / n_new as f64 * 1e3,
            });
        }
    }

    // c. GRPO-style policy-gradient step
    if only.contains(&"grpo") {
        let mut seqs = match samples16 {
            Some(s) => s,
            None => random_ids(&mut rng, b * t),
        };
        // Completion = positions >= PROMPT; each ends at a random length, the rest is padding (id 0).
        let lens: Vec<usize> = (0..b).map(|_| rng.random_range(n_new / 2..=n_new)).collect();
        let mut mask = vec![0f32; b * t];
        for (r, &len) in lens.iter().enumerate() {
            for p in 0..t {
                if p >= PROMPT + len {
                    seqs[r * t + p] = 0;
                } else if p >= PROMPT {
                    mask[r * t + p] = 1.0;
                }
            }
        }
        let rewards: Vec<f32> = (0..b).map(|_| rng.random_range(0..2u32) as f32).collect();
        let mean = rewards.iter().sum::<f32>() / b as f32;
        let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (b - 1) as f32).sqrt();
        let adv: Vec<f32> = rewards.iter().map(|r| (r - mean) / (std + 1e-4)).collect();
        let seqs = Tensor::from_vec(seqs, (b, t), &device)?;
        let inputs = seqs.clone();
        let targets = seqs.narrow(1, 1, t - 1)?.contiguous()?;
        let mask = Tensor::from_vec(mask, (b, t), &device)?
            .narrow(1, 1, t - 1)?
            .contiguous()?;
        let n_loss = mask.sum_all()?.to_scalar::<f32>()?;
        // -(adv * mask) / n per token: the loss's weight on each log-prob.
        let weights = mask
            .broadcast_mul(&Tensor::from_vec(adv, (b, 1), &device)?)?
            .affine(-1.0 / n_loss as f64, 0.0)?;
        let mut step = || -> Result<(f32, f32)> {
            // logits[:, :-1], by dropping the last position before the LM head.
            let hidden = model.forward(&inputs, None)?;
            let logits = model.logits(&hidden.narrow(1, 0, t - 1)?)?;
            // Both from one pass over the logits; the entropy gets no gradient.
            let stats = ops::token_stats(&logits, &targets, 1.0)?;
            let (logp, entropy) = (stats.logprobs, stats.entropy.detach());
            let loss = (logp * &weights)?.sum_all()?;
            let grads = model.backward(&loss)?;
            opt.step(&named_grads(&vars, &grads), lr)?;
            let ent = ((entropy * &mask)?.sum_all()?.to_scalar::<f32>()? / n_loss) as f32;
            Ok((loss.to_scalar::<f32>()?, ent))
        };
        let (warm, _) = timed(args.warmup, &mut step)?;
        let (ts, last) = timed(args.steps, &mut step)?;
        let (loss, ent) = last.unwrap_or((f32::NAN, f32::NAN));
        let med = median(&ts);
        println!(
            "[candle] grpo : {:9.0} tok/s  (median step {:.1} ms, warmup {:.1} s, {} loss tokens, entropy {ent:.3})",
            (b * t) as f64 / med,
            med * 1e3,
            total(&warm),
            n_loss as usize
        );
        res["grpo"] = json!({
            "tok_per_s": (b * t) as f64 / med, "median_step_s": med, "min_step_s": min(&ts),
            "max_step_s": max(&ts), "warmup_s": total(&warm),
            "loss_tokens_per_step": n_loss as usize, "entropy_last": ent, "loss_last": loss,
        });
    }
    Ok(res)
}

/// Runs `f` `n` times; the seconds each took and the last result.
fn timed<T>(n: usize, f: &mut impl FnMut() -> Result<T>) -> Result<(Vec<f64>, Option<T>)> {
    let mut ts = Vec::with_capacity(n);
    let mut last = None;
    for _ in 0..n {
        let t0 = Instant::now();
        last = Some(f()?);
        ts.push(t0.elapsed().as_secs_f64());
    }
    Ok((ts, last))
}

/// The median (mean of the middle two for an even count), as Python's `statistics.median`.
fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The sum (0 for none, not `-0`).
fn total(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0, |a, b| a + b)
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_pythons() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
