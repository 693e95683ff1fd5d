//! The `trainer` command line: generation, supervised fine-tuning and benchmarks.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Trains Qwen2-architecture models (SFT, and GRPO against reward-server) with candle.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// CPU threads for tensor work (0: all cores, or RAYON_NUM_THREADS).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample a continuation of a prompt from a checkpoint directory.
    Generate(trainer::generate::GenerateArgs),
    /// Supervised fine-tuning from a TOML config (loss on response tokens only).
    Sft(trainer::sft::SftArgs),
    /// Train a byte-level BPE tokenizer on JSONL or text files.
    Tokenizer(trainer::init::TokenizerArgs),
    /// Create a randomly initialised checkpoint around a tokenizer.
    Init(trainer::init::InitArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    trainer::runtime::set_threads(cli.threads);
    let result = match cli.command {
        Command::Generate(args) => trainer::generate::run(args),
        Command::Sft(args) => trainer::sft::run(args),
        Command::Tokenizer(args) => trainer::init::run_tokenizer(args),
        Command::Init(args) => trainer::init::run_init(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
