//! `trainer sft`: supervised fine-tuning with the loss on response tokens only.
//!
//! The loop, per optimizer step: take `grad_accum` length-bucketed
//! micro-batches, add up their gradients of the summed token loss divided by
//! the step's response-token count (a token-level mean over the whole step),
//! clip the global norm, set the learning rate from the warm-up + cosine
//! schedule, and take an AdamW step. Eval loss on the held-out split, metrics
//! records and checkpoints come at their configured intervals and at the end.
//!
//! A checkpoint (`checkpoints/step-N/`) is a Hugging Face model directory plus
//! `optimizer.safetensors` and `trainer_state.json` (step, data position).
//! The data order is a pure function of the seed and the epoch, so the step
//! and data position are all the random state a resumed run needs, and a
//! resumed run retraces the loss curve of an uninterrupted one.

pub mod config;
pub mod data;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::model::checkpoint::{self, CheckpointWriter, AUX_FILES, MAX_SHARD_BYTES};
use crate::model::Qwen2;
use crate::optim::{accumulate, clip_grad_norm, named_grads, AdamW};
use crate::resume::{prune_checkpoints, resume_point};
use crate::runtime::{parse_device, parse_dtype};
use crate::schedule::Schedule;
use crate::tokenizer::Tokenizer;
use config::SftConfig;
use data::{collate, collate_packed, epoch_batches, read_jsonl, split, Batch, Example};

/// Arguments of `trainer sft`.
#[derive(Debug, Args)]
pub struct SftArgs {
    /// The run's TOML config (see docs/TRAINER.md for every field).
    #[arg(long)]
    pub config: PathBuf,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Save and stop after this optimizer step, as if interrupted (the
    /// schedule still spans the whole run).
    #[arg(long)]
    pub stop_after: Option<u64>,
}

/// Where a run stands: saved with every checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epoch of the next micro-batch.
    pub epoch: u64,
    /// Index of the next micro-batch within its epoch.
    pub batch_in_epoch: usize,
    /// Response tokens trained on so far.
    pub loss_tokens_seen: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Optimizer step just taken.
    pub step: u64,
    /// Epoch (fractional: position in the data).
    pub epoch: f64,
    /// Mean response-token loss of the step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Input tokens per second of this step.
    pub tokens_per_s: f64,
    /// Held-out mean token loss, on steps that evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
}

/// Runs `trainer sft`.
pub fn run(args: SftArgs) -> Result<()> {
    let config = SftConfig::from_file(&args.config)?;
    let summary = train(&config, args.resume, args.stop_after)?;
    eprintln!(
        "sft: {} steps; final checkpoint {}{}",
        summary.state.step,
        summary.checkpoint.display(),
        summary
            .eval_loss
            .map(|l| format!("; held-out loss {l:.4}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// What a finished (or stopped) run produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The state at the end.
    pub state: TrainerState,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// The last held-out loss, when there is a held-out set.
    pub eval_loss: Option<f64>,
}

/// Trains per `config`; `resume` continues from the newest checkpoint,
/// `stop_after` ends early (with a checkpoint) after that step.
pub fn train(config: &SftConfig, resume: bool, stop_after: Option<u64>) -> Result<Summary> {
    let device = parse_device(&config.model.device).map_err(anyhow::Error::msg)?;
    let dtype = parse_dtype(&config.model.dtype).map_err(anyhow::Error::msg)?;
    let out = &config.output.dir;
    let ckpt_root = out.join("checkpoints");
    let resume_from = resume_point(&ckpt_root, &list_checkpoints(&ckpt_root)?, resume)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let source = resume_from
        .clone()
        .unwrap_or_else(|| config.model.checkpoint.clone());
    let tokenizer = Tokenizer::from_dir(&source)?;
    let mut model =
        checkpoint::load(&source, dtype, &device).with_context(|| format!("loading {}", source.display()))?;
    let layers = model.config().num_hidden_layers;
    model.set_checkpoint_layers(config.train.checkpoint_layers.count(layers));
    let max_len = config.data.max_len.min(model.config().max_position_embeddings);

    let (examples, stats) = read_jsonl(&config.data.train, config.data.template, &tokenizer, max_len)?;
    tracing::info!(
        records = stats.records,
        truncated = stats.truncated,
        skipped = stats.skipped,
        "read {}",
        config.data.train.display()
    );
    let (train_set, eval_set) = match &config.data.eval {
        Some(path) => {
            let (eval, s) = read_jsonl(path, config.data.template, &tokenizer, max_len)?;
            tracing::info!(
                records = s.records,
                truncated = s.truncated,
                skipped = s.skipped,
                "read {}",
                path.display()
            );
            (examples, eval)
        }
        None => split(examples, config.data.eval_fraction, config.train.seed),
    };
    if train_set.is_empty() {
        anyhow::bail!("no training examples left after holding out the eval split");
    }
    let t = &config.train;
    let lengths: Vec<usize> = train_set.iter().map(Example::len).collect();
    let batches_per_epoch = train_set.len().div_ceil(t.batch_size);
    let total_steps = if t.max_steps > 0 {
        t.max_steps
    } else {
        (t.epochs * batches_per_epoch).div_ceil(t.grad_accum) as u64
    };
    let schedule = Schedule {
        lr: t.lr,
        warmup_steps: t.warmup_steps,
        total_steps,
        min_lr_ratio: t.min_lr_ratio,
    };
    let vars = model.named_vars();
    let mut opt = AdamW::new(vars.clone(), t.adamw)?;
    let mut state = TrainerState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        loss_tokens_seen: 0,
    };
    let metrics_path = out.join("metrics.jsonl");
    if let Some(dir) = &resume_from {
        let saved =
            std::fs::read_to_string(dir.join("sft.toml")).context("reading the checkpoint's sft.toml")?;
        let saved: SftConfig = toml::from_str(&saved).context("parsing the checkpoint's sft.toml")?;
        if saved.data != config.data || saved.train != config.train {
            anyhow::bail!("the [data] or [train] settings differ from the run being resumed ({}); resume with the same settings", dir.display());
        }
        opt.load(&dir.join("optimizer.safetensors"))
            .context("loading optimizer state")?;
        state = serde_json::from_str(&std::fs::read_to_string(dir.join("trainer_state.json"))?)?;
        crate::resume::truncate_after_step(&metrics_path, state.step)?;
        tracing::info!(step = state.step, "resuming from {}", dir.display());
    } else if metrics_path.exists() {
        std::fs::remove_file(&metrics_path)?;
    }
    std::fs::write(out.join("sft.resolved.toml"), config.to_toml())?;
    tracing::info!(
        params = model.num_params(),
        train = train_set.len(),
        eval = eval_set.len(),
        steps = total_steps,
        "starting SFT"
    );

    let bar = crate::progress::steps(None, total_steps, state.step, true);
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)?;
    let mut order = epoch_batches(&lengths, t.batch_size, t.bucket_batches, t.seed, state.epoch);
    let mut last_checkpoint = resume_from.clone();
    let mut eval_loss = None;
    let end = stop_after.map_or(total_steps, |s| s.min(total_steps));
    while state.step < end {
        let started = Instant::now();
        // The micro-batches of this step, crossing into the next epoch if needed.
        let mut micro = Vec::with_capacity(t.grad_accum);
        for _ in 0..t.grad_accum {
            if state.batch_in_epoch == order.len() {
                state.epoch += 1;
                state.batch_in_epoch = 0;
                order = epoch_batches(&lengths, t.batch_size, t.bucket_batches, t.seed, state.epoch);
            }
            let refs: Vec<&Example> = order[state.batch_in_epoch]
                .iter()
                .map(|&i| &train_set[i])
                .collect();
            micro.push(make_batch(&refs, t.pack, max_len, &device)?);
            state.batch_in_epoch += 1;
        }
        let step_tokens: usize = micro.iter().map(|b| b.loss_tokens).sum();
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        let mut loss_sum = 0f64;
        let mut tokens = 0usize;
        for batch in &micro {
            let nll = batch_nll(&model, batch)?;
            loss_sum += nll.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let scaled = (nll / step_tokens.max(1) as f64)?;
            accumulate(&mut grads, named_grads(&vars, &model.backward(&scaled)?))?;
            tokens += batch.tokens;
        }
        let grad_norm = clip_grad_norm(&mut grads, t.max_grad_norm)?;
        let lr = schedule.at(state.step);
        opt.step(&grads, lr)?;
        state.step += 1;
        state.loss_tokens_seen += step_tokens as u64;
        let loss = loss_sum / step_tokens.max(1) as f64;
        if !loss.is_finite() {
            anyhow::bail!(
                "loss became {loss} at step {}; lower train.lr or check the data",
                state.step
            );
        }
        let secs = started.elapsed().as_secs_f64();
        let last = state.step == end;
        let every = |n: u64| n > 0 && state.step.is_multiple_of(n);
        if !eval_set.is_empty() && (last || every(config.output.eval_every)) {
            let pack = t.pack.then_some(max_len);
            let l = evaluate(&model, &eval_set, t.batch_size, pack, &device)?;
            tracing::info!(step = state.step, eval_loss = l, "held-out loss");
            eval_loss = Some(l);
        }
        let record = Metrics {
            step: state.step,
            epoch: state.epoch as f64 + state.batch_in_epoch as f64 / order.len() as f64,
            loss,
            lr,
            grad_norm,
            tokens_per_s: tokens as f64 / secs,
            eval_loss: eval_loss.filter(|_| last || every(config.output.eval_every)),
        };
        if last || every(config.output.log_every) || record.eval_loss.is_some() {
            writeln!(metrics_file, "{}", serde_json::to_string(&record)?)?;
            metrics_file.flush()?;
        }
        bar.set_message(format!("loss {loss:.4} | {:.0} tok/s", record.tokens_per_s));
        bar.inc(1);
        if last || every(config.output.save_every) {
            let dir = save_checkpoint(&model, &opt, &state, config, &source, &ckpt_root, &tokenizer)?;
            bar.println(format!("saved {}", dir.display()));
            last_checkpoint = Some(dir);
        }
    }
    bar.finish_and_clear();
    let checkpoint = match last_checkpoint {
        Some(c) => c,
        None => save_checkpoint(&model, &opt, &state, config, &source, &ckpt_root, &tokenizer)?,
    };
    Ok(Summary {
        state,
        checkpoint,
        eval_loss,
    })
}

/// The tensors of a micro-batch: packed in rows of up to `max_len`
/// positions when `pack`, else one padded row per example.
pub fn make_batch(examples: &[&Example], pack: bool, max_len: usize, device: &Device) -> Result<Batch> {
    Ok(if pack {
        collate_packed(examples, max_len, device)?
    } else {
        collate(examples, device)?
    })
}

/// The summed negative log-likelihood of a batch's response tokens
/// (differentiable).
pub fn batch_nll(model: &Qwen2, batch: &Batch) -> Result<Tensor> {
    let stats = match &batch.starts {
        Some(starts) => model.token_stats_packed(&batch.inputs, &batch.targets, 1.0, starts)?,
        None => model.token_stats(&batch.inputs, &batch.targets, 1.0, None)?,
    };
    Ok((stats.logprobs * &batch.mask)?.sum_all()?.neg()?)
}

/// Mean response-token loss over `examples`; `pack` packs each batch in rows
/// of up to that many positions.
pub fn evaluate(
    model: &Qwen2,
    examples: &[Example],
    batch_size: usize,
    pack: Option<usize>,
    device: &Device,
) -> Result<f64> {
    let mut total = 0f64;
    let mut tokens = 0usize;
    for chunk in examples.chunks(batch_size) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(&refs, pack.is_some(), pack.unwrap_or(0), device)?;
        let nll = batch_nll(model, &batch)?.detach();
        total += nll.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        tokens += batch.loss_tokens;
    }
    Ok(total / tokens.max(1) as f64)
}

/// `(step, dir)` of the SFT checkpoints under `root`, oldest first.
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    crate::resume::list_step_dirs(root, "trainer_state.json")
}

#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    model: &Qwen2,
    opt: &AdamW,
    state: &TrainerState,
    config: &SftConfig,
    source: &Path,
    root: &Path,
    tokenizer: &Tokenizer,
) -> Result<PathBuf> {
    let dir = root.join(format!("step-{:06}", state.step));
    let writer = CheckpointWriter::new(&dir)?;
    writer.write_model(model, MAX_SHARD_BYTES)?;
    writer.copy_from(source, AUX_FILES)?;
    if !writer.dir().join("tokenizer.json").exists() {
        tokenizer.save_dir(writer.dir())?;
    }
    opt.save(&writer.dir().join("optimizer.safetensors"))?;
    std::fs::write(
        writer.dir().join("trainer_state.json"),
        serde_json::to_string_pretty(state)?,
    )?;
    std::fs::write(writer.dir().join("sft.toml"), config.to_toml())?;
    let dir = writer.finish()?;
    prune_checkpoints(&list_checkpoints(root)?, config.output.keep_checkpoints)?;
    Ok(dir)
}
