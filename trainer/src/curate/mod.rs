//! `trainer data …`: curation of prompt sets in JSONL, the recipe's data
//! steps (docs/CURATION.md has the formats, thresholds and an example).
//!
//! - [`decontaminate`]: drop prompts sharing a word 9-gram with a benchmark.
//! - [`dedup`]: exact and MinHash/LSH near duplicates, within and across files.
//! - [`filter_math`]: multi-part, multiple-choice and proof problems, and
//!   answers the verifier cannot grade.
//! - [`validate_code`]: reference solutions must pass, known-wrong ones and
//!   trivial programs must fail, in the reward server's sandbox.
//! - [`difficulty`]: pass rates from graded samples; easy/medium/hard splits.
//!
//! Every command streams its inputs ([`jsonl`]), never modifies them, writes
//! input lines unchanged to outputs that appear atomically, shows a progress
//! bar on stderr and ends with a summary table on stdout ([`report`]). The
//! verifying commands ask a reward server over HTTP ([`grader`]); the trainer
//! does not link the sandbox.

pub mod decontaminate;
pub mod dedup;
pub mod difficulty;
pub mod filter_math;
pub mod grader;
pub mod hash;
pub mod jsonl;
pub mod minhash;
pub mod normalize;
pub mod report;
pub mod validate_code;

use anyhow::Result;
use clap::{Args, Subcommand};

/// Arguments of `trainer data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long, global = true)]
    pub quiet: bool,
    /// The curation step.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The curation steps.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Drop training prompts that share a word n-gram with a benchmark prompt.
    Decontaminate(decontaminate::DecontaminateArgs),
    /// Drop exact and near-duplicate prompts (MinHash/LSH), keeping the first.
    Dedup(dedup::DedupArgs),
    /// Drop multi-part, multiple-choice and proof problems, and unverifiable answers.
    FilterMath(filter_math::FilterMathArgs),
    /// Check code problems' tests with their reference, wrong and trivial solutions.
    ValidateCode(validate_code::ValidateCodeArgs),
    /// Pass rates from graded rollouts; easy/medium/hard splits.
    Difficulty(difficulty::DifficultyArgs),
}

/// Runs a `trainer data` command and prints its summary table.
pub fn run(args: DataArgs) -> Result<()> {
    let q = args.quiet;
    let summary = match &args.command {
        DataCommand::Decontaminate(a) => decontaminate::run(a, q)?,
        DataCommand::Dedup(a) => dedup::run(a, q)?,
        DataCommand::FilterMath(a) => filter_math::run(a, q)?,
        DataCommand::ValidateCode(a) => validate_code::run(a, q)?,
        DataCommand::Difficulty(a) => difficulty::run(a, q)?,
    };
    summary.print();
    Ok(())
}
