//! `trainer bench-step`: one SFT or GRPO training step of a randomly
//! initialised Qwen2 model at a real size (the Qwen2.5-0.5B or -1.5B shapes,
//! or any other), timed, with the process's peak memory and the memory
//! [`crate::plan`] predicts for it. `bench/step_bench.py` runs it side by side
//! with the PyTorch + `transformers` anchor (`bench/anchors/torch_step.py`);
//! `bench/gpu.sh` runs it on a GPU.
//!
//! A step is what `trainer sft` / `trainer rl` do per optimizer step, on
//! `batch x seq` random tokens:
//!
//! - `sft`: the loss is the mean negative log-likelihood of every next token
//!   (as `transformers` computes it with `labels = input_ids`), through the
//!   chunked LM head ([`Qwen2::token_stats`]);
//! - `grpo`: log-probabilities at temperature 0.6, the first eighth of each
//!   row as prompt (no loss), a random advantage of +-1 per row, and the
//!   clipped policy loss of [`crate::rl::grpo::policy_loss`] against the
//!   step's own (detached) log-probabilities;
//!
//! then the backward pass, the gradients accumulated in `f32`, global-norm
//! clipping at 1.0 and an AdamW step (with `f32` master weights for a 16-bit
//! model). Tokens per second count every position of the batch.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use clap::Args;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::model::{CheckpointLayers, Config, Qwen2};
use crate::optim::{accumulate, clip_grad_norm, named_grads, AdamW, AdamWConfig};
use crate::plan::{self, Workload};
use crate::rl::grpo;
use crate::runtime::{parse_device, parse_dtype};

/// Arguments of `trainer bench-step`.
#[derive(Debug, Args)]
pub struct BenchStepArgs {
    /// Model shape: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, qwen2.5-7b or tiny.
    #[arg(long, default_value = "qwen2.5-0.5b")]
    pub model: String,
    /// Overrides the preset's layer count (for quick runs).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 4096)]
    pub seq: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Parameter dtype: f32, bf16 or f16 (16-bit ones get f32 master weights).
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// sft or grpo.
    #[arg(long, default_value = "sft")]
    pub workload: String,
    /// Checkpointed decoder layers: true, false or a number.
    #[arg(long, default_value = "true")]
    pub checkpoint_layers: String,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 1)]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Peak dense bf16 FLOP/s of the device, for MFU (e.g. 989e12 for an
    /// H100 SXM); without it no MFU is reported.
    #[arg(long)]
    pub peak_flops: Option<f64>,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The architecture of a named preset (random weights; the hub's
/// `config.json` values for the Qwen2.5 ones).
pub fn preset(name: &str) -> Result<Config> {
    let base = Config {
        max_position_embeddings: 32768,
        rope_theta: Some(1_000_000.0),
        ..Config::tiny()
    };
    let (hidden, layers, heads, kv, mlp, tied) = match name {
        "qwen2.5-0.5b" => (896, 24, 14, 2, 4864, true),
        "qwen2.5-1.5b" => (1536, 28, 12, 2, 8960, true),
        "qwen2.5-3b" => (2048, 36, 16, 2, 11008, true),
        "qwen2.5-7b" => (3584, 28, 28, 4, 18944, false),
        "tiny" => return Ok(Config::tiny()),
        _ => anyhow::bail!(
            "unknown model {name:?}: use qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, qwen2.5-7b or tiny"
        ),
    };
    Ok(Config {
        vocab_size: if name == "qwen2.5-7b" { 152_064 } else { 151_936 },
        hidden_size: hidden,
        intermediate_size: mlp,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv),
        rms_norm_eps: 1e-6,
        tie_word_embeddings: tied,
        ..base
    })
}

/// Parses `true`, `false` or a layer count.
pub fn parse_checkpoint_layers(s: &str) -> Result<CheckpointLayers> {
    match s {
        "true" => Ok(CheckpointLayers::All(true)),
        "false" => Ok(CheckpointLayers::All(false)),
        n => n
            .parse()
            .map(CheckpointLayers::First)
            .map_err(|_| anyhow::anyhow!("checkpoint layers {s:?}: use true, false or a number")),
    }
}

/// Runs `trainer bench-step`.
pub fn run(args: BenchStepArgs) -> Result<()> {
    let mut config = preset(&args.model)?;
    if let Some(l) = args.layers {
        config.num_hidden_layers = l;
    }
    anyhow::ensure!(
        args.seq >= 2 && args.batch >= 1 && args.steps >= 1,
        "need --seq >= 2, --batch and --steps >= 1"
    );
    config.max_position_embeddings = config.max_position_embeddings.max(args.seq);
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let dtype = parse_dtype(&args.dtype).map_err(anyhow::Error::msg)?;
    let workload = match args.workload.as_str() {
        "sft" => Workload::Sft,
        "grpo" => Workload::Grpo,
        w => anyhow::bail!("unknown workload {w:?}: use sft or grpo"),
    };
    let ck = parse_checkpoint_layers(&args.checkpoint_layers)?;
    let started = Instant::now();
    let mut model = Qwen2::init(config.clone(), 0, dtype, &device)?;
    model.set_checkpoint_layers(ck.count(config.num_hidden_layers));
    let vars = model.named_vars();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let init_s = started.elapsed().as_secs_f64();
    let (b, t) = (args.batch, args.seq);
    let mut rng = StdRng::seed_from_u64(1);
    let mut times = Vec::new();
    let mut loss_value = 0f64;
    for step in 0..args.warmup + args.steps {
        let ids: Vec<u32> = (0..b * (t + 1))
            .map(|_| rng.random_range(0..config.vocab_size as u32))
            .collect();
        let ids = Tensor::from_vec(ids, (b, t + 1), &device)?;
        let inputs = ids.narrow(1, 0, t)?.contiguous()?;
        let targets = ids.narrow(1, 1, t)?.contiguous()?;
        let adv: Vec<f32> = (0..b)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        if device.is_cuda() {
            device.synchronize()?;
        }
        let t0 = Instant::now();
        let loss = match workload {
            Workload::Sft => {
                let logprobs = model.token_stats(&inputs, &targets, 1.0, None)?.logprobs;
                (logprobs.sum_all()?.neg()? / (b * t) as f64)?
            }
            Workload::Grpo => {
                let batch = grpo_batch(&inputs, &targets, &adv, t)?;
                let logp = grpo::logprobs(&model, &batch, 0.6)?;
                grpo::policy_loss(&batch, &logp, &logp.detach(), None, 0.2, batch.tokens)?.loss
            }
        };
        loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let t1 = Instant::now();
        let mut grads = Default::default();
        accumulate(&mut grads, named_grads(&vars, &model.backward(&loss)?))?;
        if device.is_cuda() {
            device.synchronize()?;
        }
        let t2 = Instant::now();
        clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&grads, 1e-6)?;
        drop(grads);
        if device.is_cuda() {
            device.synchronize()?;
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "step {}: {secs:.2} s (forward {:.2}, backward {:.2}, clip and update {:.2}), loss {loss_value:.4}",
            step + 1,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        );
        if step >= args.warmup {
            times.push(secs);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tok_per_s = (b * t) as f64 / median;
    let peak = peak_rss_bytes();
    let input = plan::PlanInput {
        config: config.clone(),
        dtype,
        batch: b,
        seq: t,
        checkpoint_layers: ck.count(config.num_hidden_layers),
        workload,
        rollout: None,
        gpu: !device.is_cpu(),
    };
    let predicted = plan::estimate(&input);
    let params = model.num_params();
    // 6 N FLOPs per token for the products with the weights, plus the
    // attention's (12 L T d per token for a causal forward and backward).
    let flops = 6.0 * params as f64 * (b * t) as f64
        + 12.0
            * (config.num_hidden_layers * config.num_attention_heads * config.head_dim()) as f64
            * (b * t) as f64
            * t as f64
            / 2.0;
    let mfu = args.peak_flops.map(|p| flops / median / p);
    let gib = |x: u64| x as f64 / (1u64 << 30) as f64;
    println!(
        "{} {} {:?} {}x{} checkpoint {}: {:.1} tok/s (median {:.2} s of {}), peak RSS {:.2} GiB, plan {:.2} GiB{}, loss {:.4}, init {:.1} s",
        args.model,
        args.workload,
        dtype,
        b,
        t,
        input.checkpoint_layers,
        tok_per_s,
        median,
        times.len(),
        peak.map_or(f64::NAN, gib),
        gib(predicted.total()),
        mfu.map(|m| format!(", MFU {:.1}%", 100.0 * m)).unwrap_or_default(),
        loss_value,
        init_s
    );
    if let Some(path) = &args.json {
        let doc = json!({
            "side": "ours",
            "model": args.model,
            "layers": config.num_hidden_layers,
            "params": params,
            "workload": args.workload,
            "dtype": args.dtype,
            "device": args.device,
            "batch": b,
            "seq": t,
            "checkpoint_layers": input.checkpoint_layers,
            "step_s": times,
            "median_s": median,
            "tok_per_s": tok_per_s,
            "peak_rss_bytes": peak,
            "plan_bytes": predicted.total(),
            "plan": predicted.components.iter().map(|(k, v, held)| json!([k, v, held])).collect::<Vec<_>>(),
            "flops_per_step": flops,
            "mfu": mfu,
            "loss": loss_value,
            "threads": rayon::current_num_threads(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A GRPO micro-batch over `inputs`/`targets` (`(b, t)`): the first eighth
/// of each row is prompt, the rest response with the row's advantage.
fn grpo_batch(inputs: &Tensor, targets: &Tensor, adv: &[f32], t: usize) -> Result<grpo::MicroBatch> {
    let b = adv.len();
    let prompt = (t / 8).max(1);
    let device = inputs.device();
    let mut mask = vec![0f32; b * t];
    let mut advantages = vec![0f32; b * t];
    for ((mask, advantages), a) in mask.chunks_mut(t).zip(advantages.chunks_mut(t)).zip(adv) {
        mask[prompt..].fill(1.0);
        advantages[prompt..].fill(*a);
    }
    Ok(grpo::MicroBatch {
        inputs: inputs.clone(),
        targets: targets.clone(),
        mask: Tensor::from_vec(mask, (b, t), device)?,
        advantages: Tensor::from_vec(advantages, (b, t), device)?,
        sampler: Tensor::zeros((b, t), DType::F32, device)?,
        tokens: b * (t - prompt),
        positions: b * t,
    })
}

/// The process's peak resident set size (`VmHWM`), where Linux reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
