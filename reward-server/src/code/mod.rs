//! The code verifier: response → program → sandboxed runs against the
//! item's tests → verdict.
//!
//! [`extract`] finds the program (the last ```python block), [`compare`]
//! decides whether an output matches, and [`verify`] runs the cases in the
//! shared [`Sandbox`]. Only the `stdio` test format exists so far: a test
//! object of another `type` is rejected when the item is read.
//!
//! Each case runs in a fresh interpreter. The run stops at the first failing
//! case (binary reward) unless the item sets `all_cases`, which reports
//! `passed`/`total` over all of them.

pub mod compare;
pub mod extract;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Verdict;
use crate::sandbox::{Limits, Outcome, Sandbox};

/// Longest `time_limit_s` an item may ask for.
pub const MAX_TIME_LIMIT_S: f64 = 60.0;
/// Largest `memory_limit_mb` an item may ask for (wasm32 addresses 4 GiB).
pub const MAX_MEMORY_LIMIT_MB: u64 = 4096;
/// Most stderr kept in a runtime error message, in bytes (its end).
const STDERR_TAIL: usize = 2000;

/// The tests of a code item, by format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CodeTests {
    /// Standard input in, standard output compared ([`compare`]).
    Stdio {
        /// The cases, run in order.
        cases: Vec<StdioCase>,
    },
}

/// One stdin/stdout case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StdioCase {
    /// Standard input.
    pub input: String,
    /// Expected standard output.
    pub output: String,
}

/// What the code verifier decided.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeOutcome {
    /// The verdict (`correct` only when every case passed).
    pub verdict: Verdict,
    /// Cases passed.
    pub passed: u32,
    /// Cases in the item.
    pub total: u32,
    /// Why the verdict is not `correct`.
    pub error: Option<String>,
}

/// The process-wide sandbox, or why it could not be loaded (for an
/// `invalid` result's `error`).
pub fn shared_sandbox_or_error() -> Result<&'static Sandbox, String> {
    Sandbox::shared().map_err(|e| format!("the code sandbox is unavailable: {e}"))
}

/// The run limits an item asks for, checked; defaults 6 s and 1024 MiB.
pub fn item_limits(time_limit_s: Option<f64>, memory_limit_mb: Option<u64>) -> Result<Limits, String> {
    let mut limits = Limits::default();
    if let Some(t) = time_limit_s {
        if !(t > 0.0 && t <= MAX_TIME_LIMIT_S) {
            return Err(format!(
                "`time_limit_s` must be in (0, {MAX_TIME_LIMIT_S}], got {t}"
            ));
        }
        limits = Limits::with_time(Duration::from_secs_f64(t));
    }
    if let Some(mb) = memory_limit_mb {
        if mb == 0 || mb > MAX_MEMORY_LIMIT_MB {
            return Err(format!(
                "`memory_limit_mb` must be in [1, {MAX_MEMORY_LIMIT_MB}], got {mb}"
            ));
        }
        limits.memory_bytes = usize::try_from(mb * 1024 * 1024).unwrap_or(usize::MAX);
    }
    Ok(limits)
}

/// Runs the program in `response` against `tests`.
pub fn verify(
    sandbox: &Sandbox,
    response: &str,
    tests: &CodeTests,
    limits: &Limits,
    all_cases: bool,
) -> CodeOutcome {
    let CodeTests::Stdio { cases } = tests;
    let total = u32::try_from(cases.len()).unwrap_or(u32::MAX);
    let done = |verdict, passed, error: Option<String>| CodeOutcome {
        verdict,
        passed,
        total,
        error,
    };
    if cases.is_empty() {
        return done(Verdict::Invalid, 0, Some("`tests.cases` is empty".into()));
    }
    let Some(code) = extract::extract_code(response) else {
        return done(
            Verdict::NoAnswer,
            0,
            Some("no fenced code block in the response".into()),
        );
    };
    let mut passed = 0;
    let mut first_failure: Option<(Verdict, String)> = None;
    for (k, case) in cases.iter().enumerate() {
        let failure = match sandbox.run_python(code, case.input.as_bytes(), limits) {
            Err(e) => return done(Verdict::Invalid, passed, Some(format!("the sandbox failed: {e}"))),
            Ok(run) => match run.outcome {
                Outcome::Exited(0)
                    if compare::outputs_match(&String::from_utf8_lossy(&run.stdout), &case.output) =>
                {
                    None
                }
                Outcome::Exited(0) => Some((Verdict::WrongAnswer, "wrong output".to_string())),
                Outcome::Exited(status) => Some((
                    Verdict::RuntimeError,
                    format!("exit status {status}: {}", stderr_tail(&run.stderr)),
                )),
                Outcome::TimeLimit => Some((Verdict::TimeLimit, "time limit exceeded".into())),
                Outcome::MemoryLimit => Some((Verdict::MemoryLimit, "memory limit exceeded".into())),
                Outcome::OutputLimit => Some((Verdict::OutputLimit, "output limit exceeded".into())),
                Outcome::RuntimeError(m) => Some((Verdict::RuntimeError, m)),
            },
        };
        match failure {
            None => passed += 1,
            Some((verdict, why)) => {
                let why = format!("case {}: {why}", k + 1);
                if !all_cases {
                    return done(verdict, passed, Some(why));
                }
                first_failure.get_or_insert((verdict, why));
            }
        }
    }
    match first_failure {
        None => done(Verdict::Correct, passed, None),
        Some((verdict, why)) => done(verdict, passed, Some(why)),
    }
}

/// The end of a program's stderr (where the exception is), as text.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{default_guest_dir, GUEST_WASM};

    /// The shared sandbox, or `None` (skip) when the guest is not fetched
    /// and this is not CI; in CI a missing guest fails.
    fn sandbox() -> Option<&'static Sandbox> {
        if !default_guest_dir().join(GUEST_WASM).is_file() && std::env::var_os("CI").is_none() {
            eprintln!("skipping code verifier test: run `make fetch-guest`");
            return None;
        }
        Some(Sandbox::shared().unwrap_or_else(|e| panic!("{e}")))
    }

    fn stdio(cases: &[(&str, &str)]) -> CodeTests {
        CodeTests::Stdio {
            cases: cases
                .iter()
                .map(|(i, o)| StdioCase {
                    input: i.to_string(),
                    output: o.to_string(),
                })
                .collect(),
        }
    }

    fn fenced(code: &str) -> String {
        format!("Reasoning...\n```python\n{code}\n```\n")
    }

    const SUM: &str = "a, b = map(int, input().split())\nprint(a + b)";

    #[test]
    fn verdicts_for_stdio_programs() {
        let Some(sb) = sandbox() else { return };
        let tests = stdio(&[("1 2\n", "3\n"), ("10 -4\n", "6")]);
        let limits = item_limits(Some(2.0), Some(256)).unwrap();
        let v = |response: &str| verify(sb, response, &tests, &limits, false);

        let ok = v(&fenced(SUM));
        assert_eq!(
            (ok.verdict, ok.passed, ok.total),
            (Verdict::Correct, 2, 2),
            "{:?}",
            ok.error
        );

        let wrong = v(&fenced(
            "a, b = map(int, input().split())\nprint(a - b if a > 5 else a + b)",
        ));
        assert_eq!((wrong.verdict, wrong.passed), (Verdict::WrongAnswer, 1));
        assert_eq!(wrong.error.as_deref(), Some("case 2: wrong output"));

        let syntax = v(&fenced("print(1"));
        assert_eq!(syntax.verdict, Verdict::RuntimeError);
        assert!(syntax.error.unwrap().contains("SyntaxError"));

        let raises = v(&fenced("raise ValueError('boom')"));
        assert_eq!(raises.verdict, Verdict::RuntimeError);
        assert!(raises.error.unwrap().contains("ValueError: boom"));

        assert_eq!(v(&fenced("while True: pass")).verdict, Verdict::TimeLimit);
        assert_eq!(v(&fenced("x = bytearray(10**9)")).verdict, Verdict::MemoryLimit);
        assert_eq!(v("no code here").verdict, Verdict::NoAnswer);
    }

    #[test]
    fn all_cases_counts_every_case() {
        let Some(sb) = sandbox() else { return };
        let tests = stdio(&[("1 2\n", "3"), ("5 5\n", "11"), ("0 0\n", "0")]);
        let limits = item_limits(None, None).unwrap();
        let out = verify(sb, &fenced(SUM), &tests, &limits, true);
        assert_eq!((out.verdict, out.passed, out.total), (Verdict::WrongAnswer, 2, 3));
        assert_eq!(out.error.as_deref(), Some("case 2: wrong output"));
        let stop = verify(sb, &fenced(SUM), &tests, &limits, false);
        assert_eq!((stop.passed, stop.total), (1, 3));
    }

    /// The issue's security list: each program gets its documented verdict,
    /// reads nothing of the host, and the grader survives it.
    #[test]
    fn hostile_programs_get_their_documented_verdicts() {
        let Some(sb) = sandbox() else { return };
        let tests = stdio(&[("", "ok")]);
        let limits = Limits {
            output_bytes: 1 << 20,
            wall: Duration::from_secs(2),
            ..item_limits(Some(1.0), Some(256)).unwrap()
        };
        let cases: &[(&str, &str, Verdict)] = &[
            ("read /etc/passwd", "print(open('/etc/passwd').read())", Verdict::RuntimeError),
            ("list /", "import os\nprint(os.listdir('/'))", Verdict::RuntimeError),
            ("os.system", "import os\nos.system('ls')", Verdict::RuntimeError),
            ("subprocess", "import subprocess\nsubprocess.run(['ls'])", Verdict::RuntimeError),
            ("socket", "import socket\nsocket.create_connection(('127.0.0.1', 80))", Verdict::RuntimeError),
            ("ctypes", "import ctypes\nctypes.CDLL(None)", Verdict::RuntimeError),
            ("fork", "import os\nos.fork()", Verdict::RuntimeError),
            ("write a file", "open('/tmp/pwned', 'w').write('x')", Verdict::RuntimeError),
            ("environment", "import os\nassert not os.environ\nprint('ok')", Verdict::Correct),
            ("infinite loop", "while True: pass", Verdict::TimeLimit),
            ("memory hog", "x = []\nwhile True: x.append(' ' * 10**6)", Verdict::MemoryLimit),
            ("huge string", "s = 'a' * 10**9", Verdict::MemoryLimit),
            // CPython 3.15 keeps pure-Python frames off the C stack: 10**6 deep
            // completes within the memory limit, and the grader survives it.
            ("deep recursion", "import sys\nsys.setrecursionlimit(10**7)\nf = lambda n: f(n - 1) + 1 if n else 0\nf(10**6)\nprint('ok')", Verdict::Correct),
            ("10**8 characters", "print('a' * 10**8)", Verdict::OutputLimit),
            ("sleep", "import time\ntime.sleep(100)", Verdict::TimeLimit),
        ];
        let mut wrong = Vec::new();
        for (name, code, expected) in cases {
            let out = verify(sb, &fenced(code), &tests, &limits, false);
            if out.verdict != *expected {
                wrong.push(format!(
                    "{name}: expected {expected:?}, got {:?} ({:?})",
                    out.verdict, out.error
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(
            !std::path::Path::new("/tmp/pwned").exists(),
            "the guest wrote a host file"
        );
    }

    #[test]
    fn item_limits_are_checked() {
        assert!(item_limits(Some(0.0), None).unwrap_err().contains("time_limit_s"));
        assert!(item_limits(Some(61.0), None).is_err());
        assert!(item_limits(Some(f64::NAN), None).is_err());
        assert!(item_limits(None, Some(0))
            .unwrap_err()
            .contains("memory_limit_mb"));
        assert!(item_limits(None, Some(4097)).is_err());
        assert_eq!(item_limits(None, Some(512)).unwrap().memory_bytes, 512 << 20);
        assert_eq!(item_limits(None, None).unwrap(), Limits::default());
    }
}
