//! `reward-server`: grade model outputs from the command line.
//!
//! Run `reward-server grade --help` or `reward-server run --help` for the
//! options.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reward_server::cli::{run_grade, run_program, CliError, GradeArgs, RunArgs};
use reward_server::convert::{run_convert, ConvertArgs};
use reward_server::serve::{run_serve, ServeArgs};

/// Verifiable rewards for RL: checks math answers against the gold answer and runs programs against tests.
#[derive(Parser)]
#[command(name = "reward-server", version, about, long_about = None)]
struct Cli {
    /// Log lines on stderr as text, or as one JSON object per line (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of log lines.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn as_arg(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings, and the
/// server's own info lines).
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,reward_server=info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Grade a JSONL file of items: one result per item (stdout or --output), a summary on stderr.
    ///
    /// Each input line is an item: {"id": str?, "problem_id": str?, "task": "math",
    /// "response": str, "answer": str, "extract": "lenient"|"boxed"?}, or a code item
    /// {"task": "code", "response": str, "tests": TESTS, "time_limit_s"?,
    /// "memory_limit_mb"?, "all_cases"?}, run in the WebAssembly sandbox, where TESTS is
    /// {"type": "stdio", "cases": [{"input": str, "output": str}]},
    /// {"type": "function", "fn_name": str, "cases": [{"input": "<json>\n<json>", "output": "<json>"}]}
    /// or {"type": "assert", "code": str}. Each output line is {"id", "problem_id",
    /// "reward", "verdict", "passed", "total", "elapsed_ms", "extracted"?, "error"?}.
    /// Items with a problem_id are grouped for avg@n and the unbiased pass@k.
    ///
    /// Exit status: 0 when every line was graded (whatever the verdicts), 1 when a
    /// file could not be read or written, 2 on a usage error.
    Grade(GradeArgs),
    /// Run one Python program in the grader's sandbox and print its output and verdict.
    ///
    /// The program runs exactly as a stdio test case does when grading (same
    /// interpreter, harness and limits). Its stdout and stderr are copied to
    /// ours; a last line on stderr gives the verdict, the CPU used (fuel, as
    /// seconds of the budget) and the wall time. With --expect, the verdict is
    /// the grader's (correct or wrong_answer).
    ///
    /// Exit status: 0 when the program finished (and matched --expect), 1 when it
    /// did not, 2 on a usage error, 3 when a file could not be read or the sandbox
    /// is unavailable.
    Run(RunArgs),
    /// Turn a benchmark's or dataset's files into items for `grade` (JSONL on stdout).
    ///
    /// Formats: lcb (LiveCodeBench), apps, taco (and DeepCoder rows), humaneval,
    /// evalplus (HumanEval+/MBPP+), verl, math. Each problem gets the comparison
    /// mode and time limit of its benchmark's own runner. Every problem or sample
    /// that cannot be used is counted by reason on stderr.
    ///
    /// Exit status: 0 when the items were written (1 with --strict when anything was
    /// skipped), 1 when a file could not be read or written, 2 on a usage error or an
    /// unreadable file.
    Convert(ConvertArgs),
    /// Serve rewards over HTTP: POST /v1/reward, /run_code; GET /healthz, /readyz, /metrics, /openapi.json.
    ///
    /// POST /v1/reward takes {"items": [ITEM, ...]} (the items of `grade`) and answers
    /// {"results": [RESULT, ...]} in the same order. Prints
    /// "reward-server: listening on http://ADDR" on stderr once listening; /readyz
    /// answers 200 once the sandbox is loaded. SIGTERM or SIGINT stops accepting,
    /// finishes in-flight requests (up to --shutdown-timeout-s) and exits 0. Every
    /// limit below is explicit; the README's serve section explains each.
    Serve(ServeArgs),
    /// Internal: verify code items sent by `grade` on stdin, one JSON job per line.
    #[command(name = "sandbox-worker", hide = true)]
    SandboxWorker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match &cli.command {
        Command::Grade(args) => match run_grade(args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        Command::Convert(args) => match run_convert(args) {
            Ok(done) if args.strict && !done.skips.is_empty() => ExitCode::FAILURE,
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        Command::SandboxWorker => match reward_server::code::workers::serve_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: sandbox worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            match run_serve(args, vec!["--log-format".into(), cli.log_format.as_arg().into()]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, 1),
            }
        }
        Command::Run(args) => match run_program(args) {
            Ok(report) if report.ok() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => fail(&e, 3),
        },
    }
}

/// Prints the error; usage errors exit 2 (as clap's own do), the others
/// `other`.
fn fail(error: &CliError, other: u8) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        CliError::Usage(_) => ExitCode::from(2),
        CliError::Io { .. } | CliError::Sandbox(_) => ExitCode::from(other),
    }
}
