//! `reward-server`: grade model outputs from the command line.
//!
//! Run `reward-server grade --help` for the options.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reward_server::cli::{run_grade, GradeArgs, GradeError};

/// Verifiable rewards for RL: checks math answers against the gold answer and runs programs against tests.
#[derive(Parser)]
#[command(name = "reward-server", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Grade a JSONL file of items: one result per item (stdout or --output), a summary on stderr.
    ///
    /// Each input line is an item: {"id": str?, "problem_id": str?, "task": "math",
    /// "response": str, "answer": str, "extract": "lenient"|"boxed"?}, or a code item
    /// {"task": "code", "response": str, "tests": {"type": "stdio", "cases":
    /// [{"input": str, "output": str}]}, "time_limit_s"?, "memory_limit_mb"?,
    /// "all_cases"?}, run in the WebAssembly sandbox. Each output
    /// line is {"id", "problem_id", "reward", "verdict", "passed", "total",
    /// "elapsed_ms", "extracted"?, "error"?}. Items with a problem_id are grouped
    /// for avg@n and the unbiased pass@k.
    Grade(GradeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,reward_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Grade(args) => run_grade(args).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Bad options are usage errors (2, as clap uses); I/O failures are 1.
            match e {
                GradeError::Usage(_) => ExitCode::from(2),
                GradeError::Io { .. } => ExitCode::FAILURE,
            }
        }
    }
}
