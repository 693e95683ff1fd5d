//! The `trainer` command line: generation, supervised fine-tuning, RL, data
//! curation and benchmarks.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Trains Qwen2-architecture models (SFT, and GRPO against reward-server) with candle.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// CPU threads for tensor work and `trainer data` (0: all cores, or RAYON_NUM_THREADS).
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
    /// GRPO reinforcement learning against reward-server, stage after stage.
    Rl(trainer::rl::RlArgs),
    /// The recipe in small on synthetic tasks: SFT, then math and code GRPO against a local reward-server.
    Demo(trainer::demo::DemoArgs),
    /// Train a byte-level BPE tokenizer on JSONL or text files.
    Tokenizer(trainer::init::TokenizerArgs),
    /// Create a randomly initialised checkpoint around a tokenizer.
    Init(trainer::init::InitArgs),
    /// Data curation on JSONL prompt sets: decontaminate, dedup, filter-math,
    /// validate-code, difficulty.
    Data(trainer::curate::DataArgs),
    /// CPU throughput benchmark of the tiny model (train, sample, GRPO step),
    /// mirroring bench/anchors/torch_tiny_gpt.py.
    Bench(trainer::bench::BenchArgs),
    /// One SFT or GRPO step of a random model at a real size (Qwen2.5-0.5B
    /// by default): time, peak memory and the plan's prediction.
    BenchStep(trainer::bench_step::BenchStepArgs),
    /// The peak memory a run config will need, by component, and whether it
    /// fits a GPU.
    Plan(trainer::plan::PlanArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    trainer::runtime::keep_freed_memory();
    let cli = Cli::parse();
    trainer::runtime::set_threads(cli.threads);
    let result = match cli.command {
        Command::Generate(args) => trainer::generate::run(args),
        Command::Sft(args) => trainer::sft::run(args),
        Command::Rl(args) => trainer::rl::run(args),
        Command::Demo(args) => trainer::demo::run(args),
        Command::Tokenizer(args) => trainer::init::run_tokenizer(args),
        Command::Init(args) => trainer::init::run_init(args),
        Command::Data(args) => trainer::curate::run(args),
        Command::Bench(args) => trainer::bench::run(args),
        Command::BenchStep(args) => trainer::bench_step::run(args),
        Command::Plan(args) => trainer::plan::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
