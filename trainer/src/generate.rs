//! `trainer generate`: sample a continuation of one prompt from a checkpoint.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::model::checkpoint;
use crate::runtime::{parse_device, parse_dtype};
use crate::sample::{generate, SamplingParams};
use crate::template::{Message, Template};
use crate::tokenizer::Tokenizer;

/// Arguments of `trainer generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A Hugging Face Qwen2-family checkpoint directory (config.json,
    /// safetensors weights, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt. Tokenised as-is unless --chat is given.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a ChatML user turn (`<|im_start|>user ...`) and
    /// start the assistant's turn.
    #[arg(long)]
    pub chat: bool,
    /// A system message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Most new tokens.
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
    /// Print `{"prompt_ids", "output_ids", "text", ...}` as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Parameter dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: candle_core::Device,
}

/// Runs `trainer generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let tokenizer = Tokenizer::from_dir(&args.model)?;
    let model = checkpoint::load(&args.model, args.dtype, &args.device)
        .with_context(|| format!("loading {}", args.model.display()))?;
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
            content: args.prompt.clone(),
        });
        Template::ChatMl.render_prompt(&messages)
    } else {
        args.prompt.clone()
    };
    let prompt_ids = tokenizer.encode(&text)?;
    if prompt_ids.is_empty() {
        anyhow::bail!("the prompt is empty after tokenisation");
    }
    let params = SamplingParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop_ids: tokenizer.eos_ids().to_vec(),
        stop_strings: args.stop.clone(),
    };
    let sample = generate(
        &model,
        std::slice::from_ref(&prompt_ids),
        &params,
        Some(&tokenizer),
    )?
    .remove(0);
    let text = tokenizer.decode(&sample.ids, true)?;
    if args.json {
        let line = serde_json::json!({
            "prompt_ids": prompt_ids,
            "output_ids": sample.ids,
            "text": text,
            "finish_reason": sample.finish,
            "logprobs": sample.logprobs,
        });
        println!("{line}");
    } else {
        println!("{text}");
    }
    Ok(())
}
