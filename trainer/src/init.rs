//! `trainer tokenizer` and `trainer init`: a tokenizer trained on your text
//! and a randomly initialised checkpoint around it, the starting point of a
//! model trained from scratch (the demo's).

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::Args;

use crate::model::checkpoint::{CheckpointWriter, MAX_SHARD_BYTES};
use crate::model::{Config, Qwen2};
use crate::tokenizer::Tokenizer;

/// Arguments of `trainer tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Text to train on: JSONL files (`prompt`/`response` or `messages`
    /// contents are used) or plain text files (one text per line).
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Vocabulary size, including the 256 bytes and the special tokens
    /// `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`.
    #[arg(long, default_value_t = 512)]
    pub vocab_size: usize,
    /// Directory to write `tokenizer.json` and `tokenizer_config.json` into.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `trainer init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory holding the tokenizer (as written by `trainer tokenizer`).
    #[arg(long, required_unless_present = "vocab_size")]
    pub tokenizer: Option<PathBuf>,
    /// Make a checkpoint without a tokenizer, of this vocabulary (used as
    /// given): for benchmarks that feed token ids (`trainer generate
    /// --prompts` with `prompt_ids`).
    #[arg(long, conflicts_with = "tokenizer")]
    pub vocab_size: Option<usize>,
    /// Checkpoint directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 256)]
    pub hidden_size: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Query heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Key/value heads (fewer than --heads for grouped-query attention).
    #[arg(long, default_value_t = 4)]
    pub kv_heads: usize,
    /// Width of the MLP's hidden layer.
    #[arg(long, default_value_t = 1024)]
    pub intermediate_size: usize,
    /// Longest sequence (prompt + response) the model handles.
    #[arg(long, default_value_t = 256)]
    pub context: usize,
    /// Rotary embedding base.
    #[arg(long, default_value_t = 10000.0)]
    pub rope_theta: f64,
    /// Give the LM head its own matrix instead of reusing the embedding.
    #[arg(long)]
    pub untied: bool,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Texts of JSONL records or lines of plain files.
pub fn read_texts(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for path in paths {
        let content = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let jsonl = path.extension().is_some_and(|e| e == "jsonl");
        for (n, line) in content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            if !jsonl {
                texts.push(line.to_string());
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
            let mut found = false;
            for key in ["prompt", "response", "text"] {
                if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                    texts.push(s.to_string());
                    found = true;
                }
            }
            for m in v.get("messages").and_then(|m| m.as_array()).into_iter().flatten() {
                if let Some(s) = m.get("content").and_then(|s| s.as_str()) {
                    texts.push(s.to_string());
                    found = true;
                }
            }
            if !found {
                anyhow::bail!(
                    "{}:{}: no prompt, response, text or messages field",
                    path.display(),
                    n + 1
                );
            }
        }
    }
    Ok(texts)
}

/// Runs `trainer tokenizer`.
pub fn run_tokenizer(args: TokenizerArgs) -> Result<()> {
    let texts = read_texts(&args.inputs)?;
    let tok = Tokenizer::train_byte_level_bpe(
        &texts,
        args.vocab_size,
        &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    )?;
    tok.save_dir(&args.out)?;
    eprintln!(
        "tokenizer: {} ids from {} texts -> {}",
        tok.vocab_size(),
        texts.len(),
        args.out.display()
    );
    Ok(())
}

/// The config `trainer init` builds: the tokenizer's vocabulary rounded up
/// to a multiple of 32, or `--vocab-size` as given.
pub fn init_config(args: &InitArgs, vocab: usize) -> Config {
    Config {
        vocab_size: args.vocab_size.unwrap_or(vocab.div_ceil(32) * 32),
        hidden_size: args.hidden_size,
        intermediate_size: args.intermediate_size,
        num_hidden_layers: args.layers,
        num_attention_heads: args.heads,
        num_key_value_heads: Some(args.kv_heads),
        max_position_embeddings: args.context,
        rope_theta: Some(args.rope_theta),
        rms_norm_eps: 1e-6,
        tie_word_embeddings: !args.untied,
        hidden_act: "silu".into(),
        extra: Default::default(),
    }
}

/// Runs `trainer init`.
pub fn run_init(args: InitArgs) -> Result<()> {
    let tok = match &args.tokenizer {
        Some(dir) => Some(Tokenizer::from_dir(dir)?),
        None => None,
    };
    let config = init_config(&args, tok.as_ref().map_or(0, Tokenizer::vocab_size));
    config.validate()?;
    let model = Qwen2::init(config, args.seed, DType::F32, &Device::Cpu)?;
    let writer = CheckpointWriter::new(&args.out)?;
    writer.write_model(&model, MAX_SHARD_BYTES)?;
    if let Some(tok) = &tok {
        tok.save_dir(writer.dir())?;
        let generation = serde_json::json!({
            "eos_token_id": tok.eos_ids(),
            "pad_token_id": tok.pad_id(),
        });
        std::fs::write(
            writer.dir().join("generation_config.json"),
            serde_json::to_string_pretty(&generation)? + "\n",
        )?;
    }
    let out = writer.finish()?;
    eprintln!("init: {} parameters -> {}", model.num_params(), out.display());
    Ok(())
}
