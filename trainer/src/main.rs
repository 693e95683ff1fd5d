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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    keep_freed_memory();
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tells glibc's malloc to keep freed memory for reuse. Every candle op
/// allocates its output, and with the defaults a tensor of a few MB comes
/// from a fresh `mmap` and goes back with `munmap` (or the heap is trimmed),
/// so each step of training re-faults and zeroes its working set: a third of
/// a training step's time on the tiny model was in the kernel's page-fault
/// path (see docs/BENCHMARKS.md, "Trainer CPU throughput vs PyTorch").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only sets allocator parameters; it is called once,
    // before any other thread exists. No allocation is mapped on its own
    // (the heap serves them all, however large) and the heap is not trimmed
    // below 1 GiB of free memory.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
