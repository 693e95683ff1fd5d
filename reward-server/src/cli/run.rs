//! The `run` command: one program, one input, in the same sandbox and
//! harness the grader uses, with its output and how it ended; for people
//! debugging a test.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{io_err, CliError};
use crate::code::compare;
use crate::code::modes::CompareMode;
use crate::code::time_limit::{code_limits, fuel_to_native_seconds};
use crate::sandbox::limits::FUEL_PER_SECOND;
use crate::sandbox::{CaseEnd, CaseInput, Mode, Program, Sandbox};

/// Options of `reward-server run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The Python program, or `-` to read it from standard input.
    pub program: PathBuf,
    /// File the program reads as standard input [default: none, empty input].
    #[arg(long, value_name = "PATH")]
    pub stdin: Option<PathBuf>,
    /// Expected output: also report the grader's verdict for it (`correct`
    /// or `wrong_answer`, by the stdio comparison rules).
    #[arg(long, value_name = "PATH")]
    pub expect: Option<PathBuf>,
    /// CPU budget in seconds, counted in instructions (fuel) as when grading.
    #[arg(long, value_name = "SECONDS", default_value_t = 6.0)]
    pub time_limit: f64,
    /// CPU budget in seconds of native CPython instead (converted to fuel with the calibrated factor, as `time_limit_native_s`).
    #[arg(long, value_name = "SECONDS")]
    pub time_limit_native: Option<f64>,
    /// Memory limit in MiB (the interpreter itself takes 40).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory_limit: u64,
}

/// What a `run` found.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The grader's verdict: `correct`/`wrong_answer` with `--expect`,
    /// else `finished` or how the program failed (`runtime_error`,
    /// `time_limit`, ...).
    pub verdict: &'static str,
    /// Why, when it did not finish cleanly.
    pub detail: Option<String>,
}

impl RunReport {
    /// True when the program finished (and matched `--expect`, if given).
    pub fn ok(&self) -> bool {
        matches!(self.verdict, "finished" | "correct")
    }
}

fn read_input(path: &PathBuf, what: &'static str) -> Result<Vec<u8>, CliError> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .map_err(io_err("cannot read", path))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|source| CliError::Io {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Runs the program, copies its stdout and stderr to ours, and prints a
/// last line on stderr with the verdict, fuel (as seconds of budget) and
/// wall time.
pub fn run_program(args: &RunArgs) -> Result<RunReport, CliError> {
    let fuel_time = args.time_limit_native.is_none().then_some(args.time_limit);
    let limits = code_limits(
        fuel_time,
        args.time_limit_native,
        Some(args.memory_limit),
        CompareMode::Default,
    )
    .map_err(|e| {
        CliError::Usage(
            e.replace("`time_limit_s`", "--time-limit")
                .replace("`time_limit_native_s`", "--time-limit-native")
                .replace("`memory_limit_mb`", "--memory-limit"),
        )
    })?;
    let budget = match args.time_limit_native {
        Some(n) => format!("{n} native s"),
        None => format!("{} s", args.time_limit),
    };
    if args.program.as_os_str() == "-" && args.stdin.as_ref().is_some_and(|p| p.as_os_str() == "-") {
        return Err(CliError::Usage(
            "the program and --stdin cannot both be standard input".into(),
        ));
    }
    let source = read_input(&args.program, "cannot read the program")?;
    let source = String::from_utf8(source)
        .map_err(|_| CliError::Usage(format!("{} is not UTF-8 text", args.program.display())))?;
    let stdin = match &args.stdin {
        Some(path) => read_input(path, "cannot read --stdin")?,
        None => Vec::new(),
    };
    let expected = match &args.expect {
        Some(path) => Some(String::from_utf8_lossy(&read_input(path, "cannot read --expect")?).into_owned()),
        None => None,
    };
    let sandbox =
        Sandbox::shared().map_err(|e| CliError::Sandbox(format!("the code sandbox is unavailable: {e}")))?;
    let run = sandbox
        .run_cases(
            Program {
                source,
                mode: Mode::Stdio,
            },
            vec![CaseInput {
                stdin: Bytes::from(stdin),
                args: None,
            }],
            &limits,
            Arc::new(|_, _| true),
        )
        .map_err(|e| CliError::Sandbox(e.to_string()))?;

    let (report, fuel) = match (&run.compile_error, run.cases.first().and_then(Option::as_ref)) {
        (Some(error), _) => (
            RunReport {
                verdict: "runtime_error",
                detail: Some(format!("{}: {}", error.kind, error.message)),
            },
            0,
        ),
        (None, Some(case)) => {
            io::stdout()
                .write_all(&case.stdout)
                .map_err(io_err("cannot write", "standard output".as_ref()))?;
            io::stdout()
                .flush()
                .map_err(io_err("cannot write", "standard output".as_ref()))?;
            io::stderr().write_all(&case.stderr).ok();
            let report = match (&case.end, &expected) {
                (CaseEnd::Finished, Some(want))
                    if compare::outputs_match(&String::from_utf8_lossy(&case.stdout), want) =>
                {
                    RunReport {
                        verdict: "correct",
                        detail: None,
                    }
                }
                (CaseEnd::Finished, Some(_)) => RunReport {
                    verdict: "wrong_answer",
                    detail: Some("the output differs from --expect".into()),
                },
                (CaseEnd::Finished, None) => RunReport {
                    verdict: "finished",
                    detail: None,
                },
                (CaseEnd::Exited(status), _) => RunReport {
                    verdict: "runtime_error",
                    detail: Some(format!("exit status {status}")),
                },
                (CaseEnd::Raised { kind, message, .. }, _) => RunReport {
                    verdict: "runtime_error",
                    detail: Some(format!("{kind}: {message}")),
                },
                (CaseEnd::TimeLimit, _) => RunReport {
                    verdict: "time_limit",
                    detail: Some(format!(
                        "over the {budget} CPU budget (or its wall-clock backstop)"
                    )),
                },
                (CaseEnd::MemoryLimit, _) => RunReport {
                    verdict: "memory_limit",
                    detail: Some(format!("over {} MiB", args.memory_limit)),
                },
                (CaseEnd::OutputLimit, _) => RunReport {
                    verdict: "output_limit",
                    detail: Some(format!("more than {} bytes of output", limits.output_bytes)),
                },
                (CaseEnd::Crashed(why), _) => RunReport {
                    verdict: "runtime_error",
                    detail: Some(why.clone()),
                },
                (CaseEnd::Broke(why), _) => RunReport {
                    verdict: "runtime_error",
                    detail: Some(format!("the program broke the harness protocol: {why}")),
                },
                (
                    CaseEnd::Returned(_)
                    | CaseEnd::Unserialisable(_)
                    | CaseEnd::TestsPassed
                    | CaseEnd::Rejected { .. },
                    _,
                ) => RunReport {
                    verdict: "runtime_error",
                    detail: Some("unexpected return value".into()),
                },
            };
            let report = match &run.broke {
                Some(why) if report.ok() => RunReport {
                    verdict: "runtime_error",
                    detail: Some(format!("the program broke the harness protocol: {why}")),
                },
                _ => report,
            };
            (report, case.fuel_used)
        }
        (None, None) => return Err(CliError::Sandbox("the sandbox ran no case".into())),
    };
    // CPU in the budget's unit: fuel seconds, or native seconds.
    let used = match args.time_limit_native {
        Some(_) => format!("{:.3} native s", fuel_to_native_seconds(fuel)),
        None => format!("{:.3} s", fuel as f64 / FUEL_PER_SECOND as f64),
    };
    let mut line = format!(
        "reward-server run: {} · CPU {used} of {budget} ({fuel} fuel) · wall {:.1} ms",
        report.verdict,
        run.elapsed.as_secs_f64() * 1e3
    );
    if let Some(detail) = &report.detail {
        line.push_str(&format!(" · {detail}"));
    }
    eprintln!("{line}");
    Ok(report)
}
