//! `trainer generate`: samples continuations of prompts from a checkpoint
//! with the rollout engine ([`crate::engine`]).
//!
//! One prompt (`--prompt TEXT`) prints the continuation, or with `--json`
//! one JSON line. A file of prompts (`--prompts FILE`, JSONL lines
//! `{"prompt": "..."}` or `{"prompt_ids": [...]}`) writes one JSON line per
//! sample to stdout or `--output`. `--samples N` draws N samples of each
//! prompt (sharing its prefill), row `r` (prompt after prompt) seeded with
//! `engine::row_seed(seed, r)`. A summary goes to stderr (and, with
//! `--stats-json`, to a file): samples, new tokens, time, tokens per
//! second, peak memory, the KV cache's blocks.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::engine::{Engine, EngineConfig, Request, SamplingParams};
use crate::model::checkpoint;
use crate::runtime::{parse_device, parse_dtype, peak_rss_bytes};
use crate::template::{Message, Template};
use crate::tokenizer::Tokenizer;

/// Arguments of `trainer generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A Hugging Face Qwen2-family checkpoint directory (config.json,
    /// safetensors weights; tokenizer.json unless every prompt is token ids).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt. Tokenised as-is unless --chat is given.
    #[arg(long, required_unless_present = "prompts", conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// A JSONL file of prompts: `{"prompt": "..."}` or `{"prompt_ids": [...]}` per line.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Wrap each text prompt as a ChatML user turn (`<|im_start|>user ...`)
    /// and start the assistant's turn.
    #[arg(long)]
    pub chat: bool,
    /// A system message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Samples of each prompt.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f64,
    /// Nucleus sampling threshold (1 disables it).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    /// Sample only from the k most likely tokens (0 disables it).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also stop when the output contains this text (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Also stop at these token ids (comma-separated), besides the
    /// tokenizer's end-of-sequence ids.
    #[arg(long = "stop-ids", value_delimiter = ',')]
    pub stop_ids: Vec<u32>,
    /// Print JSON lines: `{"prompt", "sample", "prompt_ids", "output_ids",
    /// "text", "finish_reason", "logprobs", "entropies"}` (always so with --prompts).
    #[arg(long)]
    pub json: bool,
    /// Write the JSON lines here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write the run's summary (tokens, seconds, memory, engine stats) as JSON here.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Token slots per KV-cache block.
    #[arg(long, default_value_t = EngineConfig::default().block_size)]
    pub block_size: usize,
    /// KV-cache memory in MiB (all layers, keys and values).
    #[arg(long, default_value_t = EngineConfig::default().kv_cache_mib)]
    pub kv_cache_mib: usize,
    /// Most sequences decoded at once.
    #[arg(long, default_value_t = EngineConfig::default().max_seqs)]
    pub max_seqs: usize,
    /// Most prompt tokens prefilled per step.
    #[arg(long, default_value_t = EngineConfig::default().max_step_tokens)]
    pub max_step_tokens: usize,
    /// Parameter dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: candle_core::Device,
}

/// A prompt as given: text, or token ids.
enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

fn read_prompts(path: &Path) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), n + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        out.push(match (v.get("prompt"), v.get("prompt_ids")) {
            (Some(serde_json::Value::String(s)), None) => Prompt::Text(s.clone()),
            (None, Some(ids)) => Prompt::Ids(
                serde_json::from_value(ids.clone())
                    .with_context(|| format!("{}: prompt_ids must be a list of token ids", at()))?,
            ),
            _ => bail!(
                "{}: needs exactly one of \"prompt\" (text) or \"prompt_ids\"",
                at()
            ),
        });
    }
    if out.is_empty() {
        bail!("{} holds no prompts", path.display());
    }
    Ok(out)
}

/// Runs `trainer generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let model = checkpoint::load(&args.model, args.dtype, &args.device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let prompts = match (&args.prompt, &args.prompts) {
        (Some(p), None) => vec![Prompt::Text(p.clone())],
        (None, Some(path)) => read_prompts(path)?,
        _ => bail!("give --prompt or --prompts"),
    };
    let needs_text = !args.stop.is_empty() || prompts.iter().any(|p| matches!(p, Prompt::Text(_)));
    let tokenizer = if needs_text || args.model.join("tokenizer.json").exists() {
        Some(Tokenizer::from_dir(&args.model)?)
    } else {
        None
    };
    let mut ids = Vec::with_capacity(prompts.len());
    for p in &prompts {
        ids.push(match p {
            Prompt::Ids(ids) => ids.clone(),
            Prompt::Text(t) => {
                let tok = tokenizer
                    .as_ref()
                    .context("text prompts need the checkpoint's tokenizer.json")?;
                let text = if args.chat {
                    let mut messages = Vec::new();
                    if let Some(system) = &args.system {
                        messages.push(Message {
                            role: "system".into(),
                            content: system.clone(),
                        });
                    }
                    messages.push(Message {
                        role: "user".into(),
                        content: t.clone(),
                    });
                    Template::ChatMl.render_prompt(&messages)
                } else {
                    t.clone()
                };
                let ids = tok.encode(&text)?;
                if ids.is_empty() {
                    bail!("a prompt is empty after tokenisation");
                }
                ids
            }
        });
    }
    let mut stop_ids = tokenizer.as_ref().map_or_else(Vec::new, |t| t.eos_ids().to_vec());
    stop_ids.extend(
        args.stop_ids
            .iter()
            .filter(|i| !stop_ids.contains(i))
            .collect::<Vec<_>>(),
    );
    let params = SamplingParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        stop_ids,
        stop_strings: args.stop.clone(),
    };
    params.validate().map_err(anyhow::Error::msg)?;
    let config = EngineConfig {
        block_size: args.block_size,
        kv_cache_mib: args.kv_cache_mib,
        max_seqs: args.max_seqs,
        max_step_tokens: args.max_step_tokens,
    };
    let requests = Request::batch(&ids, args.samples, args.seed);
    let total = (requests.len() * args.samples) as u64;
    let bar = crate::progress::items("generate", total, "samples", total > 1);
    let engine = Engine::new(&model, &config)?;
    let (samples, stats) = engine.run(&requests, &params, tokenizer.as_ref(), |_| bar.inc(1))?;
    bar.finish_and_clear();

    let json_lines = args.json || args.prompts.is_some() || args.output.is_some();
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for (p, group) in samples.iter().enumerate() {
        for (j, s) in group.iter().enumerate() {
            let text = match &tokenizer {
                Some(t) => Some(t.decode(&s.ids, true)?),
                None => None,
            };
            if json_lines {
                let line = json!({
                    "prompt": p,
                    "sample": j,
                    "prompt_ids": ids[p],
                    "output_ids": s.ids,
                    "text": text,
                    "finish_reason": s.finish,
                    "logprobs": s.logprobs,
                    "entropies": s.entropies,
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{}", text.unwrap_or_default())?;
            }
        }
    }
    out.flush()?;
    let summary = json!({
        "samples": total,
        "new_tokens": stats.new_tokens,
        "seconds": stats.seconds,
        "new_tokens_per_s": stats.new_tokens as f64 / stats.seconds.max(1e-9),
        "eos_stops": samples.iter().flatten().filter(|s| !s.truncated()).count(),
        "peak_rss_mib": peak_rss_bytes().map(|b| b as f64 / (1 << 20) as f64),
        "engine": stats,
    });
    eprintln!(
        "generate: {total} samples, {} new tokens in {:.2} s ({:.1} tokens/s); KV cache {} blocks of {} ({:.1} MiB), at most {} in use, {} preemptions",
        stats.new_tokens,
        stats.seconds,
        stats.new_tokens as f64 / stats.seconds.max(1e-9),
        stats.blocks,
        stats.block_size,
        stats.kv_cache_bytes as f64 / (1 << 20) as f64,
        stats.peak_blocks,
        stats.preemptions
    );
    if let Some(path) = &args.stats_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
