//! Running one program against many test cases in one interpreter.
//!
//! [`Sandbox::run_cases`] starts the guest with a small bootstrap as its
//! `-c` program, which fetches the harness (`sandboxes/harness/harness.py`)
//! through the door ([`super::door`]) and runs it. Compiling the harness
//! costs the guest ~22 M instructions (~7 ms), so the first bootstrap of a
//! process compiles it, hands the host the marshalled code object and quits
//! (an instance of its own, so that every case then runs in an interpreter
//! in the same state, to the instruction), and later ones receive the code
//! and only unmarshal it. The harness asks the host for the program, compiles
//! it once, and then asks for one case at a time. This module is the host's
//! side of that conversation, the [`Session`]: for each case it refills stdin,
//! clears the captured output and arms a fresh CPU (fuel) and wall-clock budget, so
//! every case has the limits it would have in a process of its own, without
//! paying for the interpreter's start-up again.
//!
//! After each case the caller's [`KeepGoing`] sees the case's run, decides
//! whether to go on, and may drop its output (a verifier keeps only what its
//! error message needs), so an item's memory does not grow with its cases.
//! A [`Cancel`] stops the run before the next case, or mid-case within an
//! epoch tick.
//!
//! When a case ends the instance (a limit, a trap, `os._exit`), the next case
//! starts in a fresh instance. A case that hits the memory limit in an
//! instance that ran other cases first is run again in a fresh one, so heap
//! left over from earlier cases never decides its verdict.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::cancel::Cancel;
use super::limits::{Limits, Outcome};
use super::run::{Deadline, Launch};
use super::streams::{Output, StdinPipe};
use super::{Sandbox, SandboxError};

/// The guest-side harness.
pub const HARNESS: &str = include_str!("../../../sandboxes/harness/harness.py");

/// The guest's `-c` program: get the harness compiled (`M` + marshal bytes)
/// and run it, or get its source (`S` + text), compile it, give the host the
/// code, and quit. Only this code runs before the harness's `start`, so only
/// it can hand the host a compiled harness.
const BOOTSTRAP: &str = "\
import _host, marshal, os
r = _host.call(b'{\"op\":\"harness\"}')
if r[:1] == b'S':
    _host.call(b'harness_code\\n' + marshal.dumps(compile(r[1:], '<harness>', 'exec', dont_inherit=True)))
    os._exit(0)
exec(marshal.loads(r[1:]))
";

/// How the bootstrap's frame with the compiled harness starts.
const HARNESS_CODE_TAG: &[u8] = b"harness_code\n";

/// A program and how its cases call it.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The Python source.
    pub source: String,
    /// What a case does with it.
    pub mode: Mode,
}

/// How a case runs the program.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Run it as a script with the case's stdin.
    Stdio,
    /// Run it, then call `Solution().fn_name(*args)` (or the top-level
    /// `fn_name`) with the case's arguments and report the return value.
    Function {
        /// The function or method to call.
        fn_name: String,
    },
    /// Run it, then run `tests` in the same globals (one case).
    Assert {
        /// The test code.
        tests: String,
    },
}

/// One case's input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CaseInput {
    /// Standard input.
    pub stdin: Bytes,
    /// For [`Mode::Function`]: the arguments, one JSON value per line.
    pub args: Option<String>,
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseEnd {
    /// The program ran to its end, or exited with status 0.
    Finished,
    /// [`Mode::Function`]: the call returned this value, as JSON text.
    Returned(String),
    /// [`Mode::Function`]: the return value has no JSON form (the message
    /// says why).
    Unserialisable(String),
    /// The program exited with this non-zero status.
    Exited(i32),
    /// The program raised an exception it did not catch.
    Raised {
        /// The exception's type name (`ValueError`).
        kind: String,
        /// Its message.
        message: String,
        /// Raised by [`Mode::Assert`]'s test code, not the program itself.
        in_tests: bool,
    },
    /// The CPU budget or the wall-clock backstop ran out.
    TimeLimit,
    /// A memory grow past the limit was refused.
    MemoryLimit,
    /// stdout and stderr together passed the output limit.
    OutputLimit,
    /// A wasm trap or another failure of the instance.
    Crashed(String),
}

impl CaseEnd {
    /// The case end for an instance that stopped while the case ran.
    fn from_outcome(outcome: Outcome) -> CaseEnd {
        match outcome {
            Outcome::Exited(0) => CaseEnd::Finished,
            Outcome::Exited(status) => CaseEnd::Exited(status),
            Outcome::TimeLimit => CaseEnd::TimeLimit,
            Outcome::MemoryLimit => CaseEnd::MemoryLimit,
            Outcome::OutputLimit => CaseEnd::OutputLimit,
            Outcome::RuntimeError(message) => CaseEnd::Crashed(message),
        }
    }
}

/// One case's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRun {
    /// How it ended.
    pub end: CaseEnd,
    /// What it wrote to stdout (up to the output limit).
    pub stdout: Vec<u8>,
    /// What it wrote to stderr, tracebacks included.
    pub stderr: Vec<u8>,
    /// Fuel the case burned.
    pub fuel_used: u64,
}

/// Decides, after each case, whether to run the next one. It may take the
/// run's output (what it leaves is what [`CasesRun::cases`] keeps).
pub type KeepGoing = Arc<dyn Fn(usize, &mut CaseRun) -> bool + Send + Sync>;

/// The program did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// `SyntaxError`, `ValueError` (null bytes), ...
    pub kind: String,
    /// The message, with the line.
    pub message: String,
    /// The test code ([`Mode::Assert`]) failed to compile, not the program.
    pub in_tests: bool,
}

/// Everything [`Sandbox::run_cases`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct CasesRun {
    /// The program (or the assert tests) did not compile; no case ran.
    pub compile_error: Option<CompileError>,
    /// One entry per case, `None` for cases not run (after a stop).
    pub cases: Vec<Option<CaseRun>>,
    /// Interpreters that ran the harness (not counting the one a process
    /// starts once to compile it).
    pub instances: u32,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The run was cancelled: cases after the cancellation did not run, and
    /// the one running then may have ended early.
    pub cancelled: bool,
}

impl Sandbox {
    /// Runs `program` against `cases` in as few interpreters as possible,
    /// each case under the full `limits`. After each case, `keep_going`
    /// decides whether to go on (stop at the first failure for a binary
    /// reward).
    ///
    /// An `Err` means the host could not set a run up; how the program
    /// behaved is always in the result.
    pub fn run_cases(
        &self,
        program: Program,
        cases: Vec<CaseInput>,
        limits: &Limits,
        keep_going: KeepGoing,
    ) -> Result<CasesRun, SandboxError> {
        self.run_cases_until(program, cases, limits, keep_going, &Cancel::new())
    }

    /// [`Sandbox::run_cases`], stopped early when `cancel` is cancelled.
    pub fn run_cases_until(
        &self,
        program: Program,
        cases: Vec<CaseInput>,
        limits: &Limits,
        keep_going: KeepGoing,
        cancel: &Cancel,
    ) -> Result<CasesRun, SandboxError> {
        let started = Instant::now();
        let total = cases.len();
        let output = Output::new(limits.output_bytes);
        let stdin = StdinPipe::new(Bytes::new());
        let deadline = Deadline::after(limits.wall);
        let mut session = Session {
            job: Arc::new(Job {
                program,
                cases,
                limits: limits.clone(),
                keep_going,
            }),
            output: output.clone(),
            stdin: stdin.clone(),
            deadline: deadline.clone(),
            cancel: cancel.clone(),
            harness_code: Arc::clone(&self.inner.harness_code),
            started: false,
            compiled_harness: false,
            current: None,
            next: 0,
            first_in_instance: None,
            results: vec![None; total],
            compile_error: None,
            stopped: false,
            restart: false,
        };
        let mut instances = 0;
        while !session.stopped && session.next < total && !cancel.is_cancelled() {
            output.reset();
            stdin.refill(Bytes::new());
            deadline.reset(limits.wall);
            let finished = self.run_instance(Launch {
                source: BOOTSTRAP,
                stdin: stdin.clone(),
                output: output.clone(),
                limits,
                deadline: deadline.clone(),
                cancel: cancel.clone(),
                session: Some(session),
            })?;
            session = finished
                .session
                .expect("the store hands back the session it was given");
            if session.instance_ended(finished.outcome, limits.fuel.saturating_sub(finished.fuel_left)) {
                instances += 1;
            }
        }
        Ok(CasesRun {
            compile_error: session.compile_error,
            cases: session.results,
            instances,
            elapsed: started.elapsed(),
            cancelled: cancel.is_cancelled(),
        })
    }
}

/// What a session runs; shared, never changed.
struct Job {
    program: Program,
    cases: Vec<CaseInput>,
    limits: Limits,
    keep_going: KeepGoing,
}

/// The host's side of the harness protocol, carried from one instance's
/// store to the next.
pub(crate) struct Session {
    job: Arc<Job>,
    output: Output,
    stdin: StdinPipe,
    deadline: Deadline,
    cancel: Cancel,
    /// The sandbox's compiled harness, once a bootstrap has handed it over.
    harness_code: Arc<OnceLock<Vec<u8>>>,
    /// This instance's harness has asked for the program: from now on the
    /// program's code may run, and the bootstrap frames are refused.
    started: bool,
    /// This instance's bootstrap compiled the harness (and then quits).
    compiled_harness: bool,
    /// The case running now, between its `next` and its `result`.
    current: Option<usize>,
    /// The next case to hand out.
    next: usize,
    /// The first case this instance ran.
    first_in_instance: Option<usize>,
    results: Vec<Option<CaseRun>>,
    compile_error: Option<CompileError>,
    /// No more cases: a compile error, or `keep_going` said stop.
    stopped: bool,
    /// The harness asked for a fresh interpreter after its last case.
    restart: bool,
}

/// The door's answer to one frame.
pub(crate) struct Reply {
    /// The response frame.
    pub(crate) bytes: Vec<u8>,
    /// Set when a case starts: its fresh budget.
    pub(crate) arm: Option<Arm>,
}

/// A case's CPU and wall-clock budget, armed once its `next` is answered.
pub(crate) struct Arm {
    pub(crate) fuel: u64,
    pub(crate) epoch_ticks: u64,
}

/// A frame from the harness.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Harness,
    Start,
    CompileError {
        kind: String,
        message: String,
        #[serde(rename = "in")]
        place: String,
    },
    Next,
    Result(Report),
}

/// How the harness saw a case end.
#[derive(Deserialize)]
struct Report {
    status: String,
    code: Option<i32>,
    kind: Option<String>,
    message: Option<String>,
    value: Option<String>,
    #[serde(rename = "in")]
    place: Option<String>,
    /// The harness cannot go on (the program closed a standard fd) and
    /// quits after this frame.
    #[serde(default)]
    restart: bool,
}

impl Report {
    fn into_end(self) -> Result<CaseEnd, String> {
        Ok(match self.status.as_str() {
            "ok" => self.value.map_or(CaseEnd::Finished, CaseEnd::Returned),
            "exit" => CaseEnd::Exited(self.code.ok_or("`exit` without `code`")?),
            "raised" => CaseEnd::Raised {
                kind: self.kind.unwrap_or_default(),
                message: self.message.unwrap_or_default(),
                in_tests: self.place.as_deref() == Some("tests"),
            },
            "unserialisable" => CaseEnd::Unserialisable(self.message.unwrap_or_default()),
            other => return Err(format!("unknown status {other:?}")),
        })
    }
}

impl Session {
    /// Answers one frame from the guest. `fuel_left` is the store's fuel
    /// when the frame arrived. An `Err` is a frame that breaks the protocol
    /// (the door answers a fault and nothing changes).
    pub(crate) fn answer(&mut self, frame: &[u8], fuel_left: u64) -> Result<Reply, String> {
        let reply = |value: serde_json::Value| Reply {
            bytes: value.to_string().into_bytes(),
            arm: None,
        };
        if let Some(code) = frame.strip_prefix(HARNESS_CODE_TAG) {
            if self.started {
                return Err("harness code after start".into());
            }
            // A concurrent bootstrap may have been first; both compiled the
            // same source in the same guest.
            let _ = self.harness_code.set(code.to_vec());
            self.compiled_harness = true;
            return Ok(reply(json!({})));
        }
        let request: Request = serde_json::from_slice(frame).map_err(|e| e.to_string())?;
        match request {
            Request::Harness => {
                if self.started {
                    return Err("harness requested after start".into());
                }
                let bytes = match self.harness_code.get() {
                    Some(code) => [b"M".as_slice(), code].concat(),
                    None => [b"S".as_slice(), HARNESS.as_bytes()].concat(),
                };
                Ok(Reply { bytes, arm: None })
            }
            Request::Start => {
                self.started = true;
                let job = &self.job;
                Ok(reply(match &job.program.mode {
                    Mode::Stdio => json!({"mode": "stdio", "source": job.program.source}),
                    Mode::Function { fn_name } => {
                        json!({"mode": "function", "source": job.program.source, "fn_name": fn_name})
                    }
                    Mode::Assert { tests } => {
                        json!({"mode": "assert", "source": job.program.source, "tests": tests})
                    }
                }))
            }
            Request::CompileError { kind, message, place } => {
                if self.current.is_some() || self.compile_error.is_some() {
                    return Err("compile_error out of turn".into());
                }
                self.compile_error = Some(CompileError {
                    kind,
                    message,
                    in_tests: place == "tests",
                });
                self.stopped = true;
                Ok(reply(json!({})))
            }
            Request::Next => {
                if self.current.is_some() {
                    return Err("next during a case".into());
                }
                if self.stopped || self.next >= self.job.cases.len() || self.cancel.is_cancelled() {
                    return Ok(reply(json!({"done": true})));
                }
                let k = self.next;
                self.next += 1;
                self.current = Some(k);
                self.first_in_instance.get_or_insert(k);
                let case = &self.job.cases[k];
                self.stdin.refill(case.stdin.clone());
                self.output.reset();
                let limits = &self.job.limits;
                self.deadline.reset(limits.wall);
                let mut answer = reply(json!({"case": k, "args": case.args}));
                answer.arm = Some(Arm {
                    fuel: limits.fuel,
                    // The wall backstop is the `Deadline` just reset; the
                    // epoch callback checks it, and the cancel flag, at
                    // every tick.
                    epoch_ticks: 1,
                });
                Ok(answer)
            }
            Request::Result(report) => {
                let k = self.current.ok_or("result outside a case")?;
                self.restart = report.restart;
                let end = report.into_end()?;
                self.current = None;
                let fuel_used = self.job.limits.fuel.saturating_sub(fuel_left);
                self.record(k, end, fuel_used);
                Ok(reply(json!({})))
            }
        }
    }

    /// Stores case `k`'s run and asks whether to go on.
    fn record(&mut self, k: usize, end: CaseEnd, fuel_used: u64) {
        let (stdout, stderr) = self.output.take();
        let mut run = CaseRun {
            end,
            stdout,
            stderr,
            fuel_used,
        };
        if !(self.job.keep_going)(k, &mut run) {
            self.stopped = true;
        }
        self.results[k] = Some(run);
    }

    /// Accounts for an instance that stopped: the case it was running ends
    /// with the instance's outcome (or runs again in a fresh instance, see
    /// the module docs); an instance that stopped between cases with cases
    /// left charges its outcome to the next one, so every instance makes
    /// progress (the one that compiled the harness made its own). Returns
    /// false for that harness-compiling instance.
    fn instance_ended(&mut self, outcome: Outcome, fuel_used: u64) -> bool {
        let first = self.first_in_instance.take();
        self.started = false;
        if std::mem::take(&mut self.compiled_harness) && self.current.is_none() {
            return false;
        }
        let restart = std::mem::take(&mut self.restart);
        if let Some(k) = self.current.take() {
            if outcome == Outcome::MemoryLimit && first != Some(k) {
                self.next = k;
                return true;
            }
            self.record(k, CaseEnd::from_outcome(outcome), fuel_used);
        } else if !restart && !self.stopped && self.next < self.job.cases.len() {
            let k = self.next;
            self.next += 1;
            let end = match outcome {
                Outcome::Exited(status) => CaseEnd::Crashed(format!(
                    "the interpreter exited (status {status}) before case {} began",
                    k + 1
                )),
                other => CaseEnd::from_outcome(other),
            };
            self.record(k, end, fuel_used);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::fuel_for;
    use crate::sandbox::test_sandbox;

    fn small() -> Limits {
        Limits {
            fuel: fuel_for(Duration::from_secs(1)),
            wall: Duration::from_secs(10),
            memory_bytes: 256 << 20,
            output_bytes: 1 << 20,
        }
    }

    fn always() -> KeepGoing {
        Arc::new(|_, _| true)
    }

    fn stdio(source: &str) -> Program {
        Program {
            source: source.into(),
            mode: Mode::Stdio,
        }
    }

    fn inputs(stdins: &[&str]) -> Vec<CaseInput> {
        stdins
            .iter()
            .map(|s| CaseInput {
                stdin: Bytes::copy_from_slice(s.as_bytes()),
                args: None,
            })
            .collect()
    }

    fn run_job(
        program: Program,
        cases: Vec<CaseInput>,
        limits: &Limits,
        keep: KeepGoing,
    ) -> Option<CasesRun> {
        let sandbox = test_sandbox()?;
        Some(
            sandbox
                .run_cases(program, cases, limits, keep)
                .expect("the run could be set up"),
        )
    }

    fn case(run: &CasesRun, k: usize) -> &CaseRun {
        run.cases[k]
            .as_ref()
            .unwrap_or_else(|| panic!("case {k} did not run: {run:?}"))
    }

    fn out(run: &CaseRun) -> String {
        String::from_utf8_lossy(&run.stdout).into_owned()
    }

    #[test]
    fn each_case_gets_its_own_stdin_stdout_and_globals() {
        let program = stdio(
            "import sys\n\
             seen = globals().get('seen', 0) + 1\n\
             data = sys.stdin.read().split()\n\
             print(sum(map(int, data)), seen)\n",
        );
        let Some(run) = run_job(program, inputs(&["1 2", "", "10 20 30\n"]), &small(), always()) else {
            return;
        };
        assert_eq!(run.instances, 1, "{run:?}");
        let outs: Vec<String> = (0..3).map(|k| out(case(&run, k))).collect();
        assert_eq!(outs, ["3 1\n", "0 1\n", "60 1\n"]);
        assert!(run.cases.iter().flatten().all(|c| c.end == CaseEnd::Finished));
    }

    #[test]
    fn stdin_idioms_read_the_case_input() {
        for (idiom, expected) in [
            ("print(repr(input()), repr(input()))", ["'a' 'b'\n", "'x' 'y'\n"]),
            (
                "import sys\nprint(repr(sys.stdin.readline()))",
                ["'a\\n'\n", "'x\\n'\n"],
            ),
            ("print(repr(open(0).read()))", ["'a\\nb\\nc'\n", "'x\\ny\\n'\n"]),
            (
                "import sys\nprint(sys.stdin.buffer.read())",
                ["b'a\\nb\\nc'\n", "b'x\\ny\\n'\n"],
            ),
            ("import os\nprint(os.read(0, 3))", ["b'a\\nb'\n", "b'x\\ny'\n"]),
        ] {
            let Some(run) = run_job(stdio(idiom), inputs(&["a\nb\nc", "x\ny\n"]), &small(), always()) else {
                return;
            };
            assert_eq!(out(case(&run, 0)), expected[0], "{idiom}");
            assert_eq!(out(case(&run, 1)), expected[1], "{idiom}");
        }
    }

    #[test]
    fn exits_and_exceptions_end_only_their_case() {
        let program = stdio(
            "import sys, os\n\
             n = int(input())\n\
             print('case', n)\n\
             if n == 1: sys.exit(3)\n\
             if n == 2: raise ValueError('bad value')\n\
             if n == 3: sys.exit(0)\n\
             if n == 4: sys.stdout.flush(); os._exit(0)\n\
             if n == 5: sys.stdout.flush(); os._exit(7)\n",
        );
        let Some(run) = run_job(
            program,
            inputs(&["0", "1", "2", "3", "4", "5", "6"]),
            &small(),
            always(),
        ) else {
            return;
        };
        let ends: Vec<&CaseEnd> = run.cases.iter().flatten().map(|c| &c.end).collect();
        assert_eq!(ends.len(), 7, "{run:?}");
        assert_eq!(ends[0], &CaseEnd::Finished);
        assert_eq!(ends[1], &CaseEnd::Exited(3));
        assert!(
            matches!(ends[2], CaseEnd::Raised { kind, message, in_tests: false } if kind == "ValueError" && message == "bad value"),
            "{:?}",
            ends[2]
        );
        assert!(String::from_utf8_lossy(&case(&run, 2).stderr).contains("ValueError: bad value"));
        assert_eq!(ends[3], &CaseEnd::Finished);
        assert_eq!(ends[4], &CaseEnd::Finished);
        assert_eq!(ends[5], &CaseEnd::Exited(7));
        assert_eq!(ends[6], &CaseEnd::Finished);
        for k in 0..7 {
            assert_eq!(out(case(&run, k)), format!("case {k}\n"));
        }
        // os._exit ends the interpreter: cases 5 and 6 each needed a new one.
        assert_eq!(run.instances, 3);
    }

    #[test]
    fn every_case_gets_the_full_cpu_budget() {
        // Each case burns about 60% of its budget: run back to back they
        // would need three budgets, but every case must pass.
        let limits = small();
        let Some(calibrate) = run_job(
            stdio("s = 0\nfor i in range(300_000): s += i\n"),
            inputs(&[""]),
            &limits,
            always(),
        ) else {
            return;
        };
        let per_loop = case(&calibrate, 0).fuel_used;
        let loops = (limits.fuel as f64 * 0.6 / per_loop as f64) as u64 * 300_000;
        let program = stdio(&format!("s = 0\nfor i in range({loops}): s += i\nprint('ok')\n"));
        let run = run_job(program, inputs(&["", "", ""]), &limits, always()).expect("sandbox");
        for k in 0..3 {
            let c = case(&run, k);
            assert_eq!(c.end, CaseEnd::Finished, "case {k}: {run:?}");
            assert!(
                c.fuel_used < limits.fuel && c.fuel_used > limits.fuel / 2,
                "{}",
                c.fuel_used
            );
        }
        assert_eq!(run.instances, 1);
    }

    /// The determinism check: programs just under and just over
    /// their CPU budget get the same verdict, and burn the same fuel, on an
    /// idle machine and under twice as many busy threads as cores.
    #[test]
    fn verdicts_at_the_budget_edge_do_not_depend_on_load() {
        use std::sync::atomic::{AtomicBool, Ordering};

        let limits = Limits {
            fuel: fuel_for(Duration::from_millis(200)),
            ..small()
        };
        let program = |n: u64| stdio(&format!("s = 0\nfor i in range({n}): s += i\nprint('done')\n"));
        let fuel = |n: u64| -> Option<u64> {
            let run = run_job(program(n), inputs(&[""]), &limits, always())?;
            Some(case(&run, 0).fuel_used)
        };
        // fuel(n) = a + b n, measured (fuel is deterministic).
        let Some(f1) = fuel(100_000) else {
            return;
        };
        let f2 = fuel(200_000).expect("sandbox");
        let per_iteration = (f2 - f1) as f64 / 100_000.0;
        let fixed = f1 as f64 - per_iteration * 100_000.0;
        let n_at = |share: f64| ((limits.fuel as f64 * share - fixed) / per_iteration) as u64;
        let (under, over) = (n_at(0.97), n_at(1.03));

        let idle_under = run_job(program(under), inputs(&[""]), &limits, always()).expect("sandbox");
        let idle_under = case(&idle_under, 0).clone();
        assert_eq!(idle_under.end, CaseEnd::Finished, "{idle_under:?}");
        let idle_over = run_job(program(over), inputs(&[""]), &limits, always()).expect("sandbox");
        assert_eq!(case(&idle_over, 0).end, CaseEnd::TimeLimit);

        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners: Vec<_> = (0..2 * cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                })
            })
            .collect();
        let loaded: Vec<(CaseRun, CaseRun)> = (0..3)
            .map(|_| {
                let u = run_job(program(under), inputs(&[""]), &limits, always()).expect("sandbox");
                let o = run_job(program(over), inputs(&[""]), &limits, always()).expect("sandbox");
                (case(&u, 0).clone(), case(&o, 0).clone())
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        for spinner in spinners {
            spinner.join().expect("spinner");
        }
        for (u, o) in loaded {
            assert_eq!(u.end, CaseEnd::Finished, "just under, loaded");
            assert_eq!(u.fuel_used, idle_under.fuel_used, "the same fuel, loaded or idle");
            assert_eq!(o.end, CaseEnd::TimeLimit, "just over, loaded");
        }
    }

    #[test]
    fn a_limit_ends_the_case_and_the_next_case_starts_fresh() {
        let program = stdio(
            "n = int(input())\n\
             if n == 1:\n    while True: pass\n\
             if n == 2:\n    x = bytearray(400 << 20)\n\
             if n == 3:\n    print('x' * (2 << 20))\n\
             print('fine', n)\n",
        );
        let Some(run) = run_job(program, inputs(&["0", "1", "2", "3", "4"]), &small(), always()) else {
            return;
        };
        let ends: Vec<&CaseEnd> = run.cases.iter().flatten().map(|c| &c.end).collect();
        assert_eq!(
            ends,
            [
                &CaseEnd::Finished,
                &CaseEnd::TimeLimit,
                &CaseEnd::MemoryLimit,
                &CaseEnd::OutputLimit,
                &CaseEnd::Finished
            ]
        );
        assert_eq!(out(case(&run, 4)), "fine 4\n");
        // Case 2's memory limit came in an instance it shared with no
        // earlier case (it ran again on its own, or started one).
        assert!(run.instances >= 4, "{run:?}");
    }

    #[test]
    fn closing_a_standard_fd_costs_a_fresh_interpreter_not_a_case() {
        let program = stdio(
            "import io, sys\n\
             print(input(), flush=True)\n\
             io.FileIO(0).close()\n",
        );
        let Some(run) = run_job(program, inputs(&["a", "b", "c"]), &small(), always()) else {
            return;
        };
        for (k, expected) in ["a\n", "b\n", "c\n"].iter().enumerate() {
            assert_eq!(case(&run, k).end, CaseEnd::Finished);
            assert_eq!(&out(case(&run, k)), expected);
        }
        assert_eq!(run.instances, 3);
    }

    #[test]
    fn a_cancelled_run_stops_mid_case_and_runs_no_more_cases() {
        let Some(sandbox) = test_sandbox() else {
            return;
        };
        for program in ["while True: pass", "import time\ntime.sleep(100)"] {
            let cancel = Cancel::new();
            let canceller = {
                let cancel = cancel.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    cancel.cancel();
                })
            };
            let limits = Limits {
                fuel: fuel_for(Duration::from_secs(60)),
                wall: Duration::from_secs(120),
                ..small()
            };
            let started = Instant::now();
            let run = sandbox
                .run_cases_until(stdio(program), inputs(&["", "", ""]), &limits, always(), &cancel)
                .expect("the run could be set up");
            canceller.join().unwrap();
            assert!(run.cancelled, "{program}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{program}: {:?}",
                started.elapsed()
            );
            assert!(
                run.cases[1].is_none() && run.cases[2].is_none(),
                "{program}: {run:?}"
            );
        }
    }

    #[test]
    fn keep_going_may_drop_a_cases_output() {
        let keep: KeepGoing = Arc::new(|_, run: &mut CaseRun| {
            run.stdout = Vec::new();
            true
        });
        let Some(run) = run_job(stdio("print('x' * 1000)\n"), inputs(&["", ""]), &small(), keep) else {
            return;
        };
        assert!(run
            .cases
            .iter()
            .flatten()
            .all(|c| c.stdout.is_empty() && c.end == CaseEnd::Finished));
    }

    #[test]
    fn keep_going_stops_the_run() {
        let program = stdio("print(input())\n");
        let keep: KeepGoing = Arc::new(|_, run: &mut CaseRun| run.stdout != b"stop\n");
        let Some(run) = run_job(program, inputs(&["a", "stop", "c"]), &small(), keep) else {
            return;
        };
        assert!(run.cases[0].is_some() && run.cases[1].is_some());
        assert!(run.cases[2].is_none(), "{run:?}");
    }

    #[test]
    fn syntax_errors_are_compile_errors_and_run_nothing() {
        let Some(run) = run_job(stdio("print('a'\n"), inputs(&["", ""]), &small(), always()) else {
            return;
        };
        let error = run.compile_error.as_ref().expect("a compile error");
        assert_eq!(error.kind, "SyntaxError", "{error:?}");
        assert!(!error.in_tests);
        assert!(run.cases.iter().all(Option::is_none));
    }

    #[test]
    fn function_mode_calls_solution_methods_and_plain_functions() {
        let cases = vec![
            CaseInput {
                stdin: Bytes::new(),
                args: Some("[1, 2, 3]\n10".into()),
            },
            CaseInput {
                stdin: Bytes::new(),
                args: Some("[]\n0".into()),
            },
        ];
        let method = Program {
            source: "class Solution:\n    def shift(self, xs, k):\n        return [x + k for x in xs], (k, None)\n"
                .into(),
            mode: Mode::Function {
                fn_name: "shift".into(),
            },
        };
        let Some(run) = run_job(method, cases.clone(), &small(), always()) else {
            return;
        };
        assert_eq!(
            case(&run, 0).end,
            CaseEnd::Returned("[[11, 12, 13], [10, null]]".into())
        );
        assert_eq!(case(&run, 1).end, CaseEnd::Returned("[[], [0, null]]".into()));

        let function = Program {
            source:
                "def shift(xs, k):\n    print('debug output is ignored')\n    return {1, 2} if k else 2**70\n"
                    .into(),
            mode: Mode::Function {
                fn_name: "shift".into(),
            },
        };
        let run = run_job(function, cases, &small(), always()).expect("sandbox");
        assert!(matches!(&case(&run, 0).end, CaseEnd::Unserialisable(m) if m.contains("set")));
        assert_eq!(
            case(&run, 1).end,
            CaseEnd::Returned("1180591620717411303424".into())
        );

        let missing = Program {
            source: "def other(): pass\n".into(),
            mode: Mode::Function {
                fn_name: "shift".into(),
            },
        };
        let run = run_missing(missing);
        if let Some(run) = run {
            assert!(matches!(&case(&run, 0).end, CaseEnd::Raised { kind, .. } if kind == "NameError"));
        }
    }

    fn run_missing(program: Program) -> Option<CasesRun> {
        run_job(
            program,
            vec![CaseInput {
                stdin: Bytes::new(),
                args: Some("1".into()),
            }],
            &small(),
            always(),
        )
    }

    #[test]
    fn assert_mode_tells_failed_asserts_from_program_errors() {
        let assert = |source: &str, tests: &str| {
            run_job(
                Program {
                    source: source.into(),
                    mode: Mode::Assert { tests: tests.into() },
                },
                vec![CaseInput::default()],
                &small(),
                always(),
            )
        };
        let Some(good) = assert("def add(a, b): return a + b\n", "assert add(1, 2) == 3\n") else {
            return;
        };
        assert_eq!(case(&good, 0).end, CaseEnd::Finished);
        let wrong = assert("def add(a, b): return a - b\n", "assert add(1, 2) == 3\n").expect("sandbox");
        assert!(
            matches!(&case(&wrong, 0).end, CaseEnd::Raised { kind, in_tests: true, .. } if kind == "AssertionError")
        );
        let own = assert("assert False, 'own'\n", "pass\n").expect("sandbox");
        assert!(matches!(
            &case(&own, 0).end,
            CaseEnd::Raised { in_tests: false, .. }
        ));
        let bad_tests = assert("x = 1\n", "assert (\n").expect("sandbox");
        assert!(bad_tests.compile_error.as_ref().is_some_and(|e| e.in_tests));
    }

    #[test]
    fn randomness_is_the_same_on_every_run() {
        let program =
            stdio("import random, os\nrandom.seed()\nprint(random.random(), os.urandom(8).hex())\n");
        let Some(first) = run_job(program.clone(), inputs(&[""]), &small(), always()) else {
            return;
        };
        let second = run_job(program, inputs(&[""]), &small(), always()).expect("sandbox");
        assert_eq!(out(case(&first, 0)), out(case(&second, 0)));
        assert!(!out(case(&first, 0)).is_empty());
    }

    /// A program that times itself sees the same time pass on every run:
    /// the guest's clocks follow its fuel.
    #[test]
    fn clocks_follow_fuel_not_the_host() {
        let program = stdio(
            "import time\n\
             t0, w0 = time.perf_counter(), time.time()\n\
             n = 0\n\
             while time.perf_counter() - t0 < 0.05:\n    n += 1\n\
             print(n, round(time.time() - w0, 2), time.gmtime(w0).tm_year)\n",
        );
        let Some(first) = run_job(program.clone(), inputs(&[""]), &small(), always()) else {
            return;
        };
        let second = run_job(program, inputs(&[""]), &small(), always()).expect("sandbox");
        let text = out(case(&first, 0));
        assert_eq!(text, out(case(&second, 0)), "the same count on every run");
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert!(fields[0].parse::<u64>().unwrap() > 1000, "{text}");
        assert_eq!(&fields[1..], ["0.05", "2025"], "{text}");
    }

    #[test]
    fn the_program_cannot_forge_door_frames() {
        let program = stdio(
            "import _host\n\
             try:\n    _host.call(b'not json')\nexcept OSError as e:\n    print('refused', e)\n\
             try:\n    _host.call(b'{\"op\": \"next\"}')\nexcept OSError:\n    print('next refused')\n\
             for frame in [b'harness_code\\nxx', b'{\"op\": \"harness\"}']:\n\
             \x20   try:\n        _host.call(frame)\n    except OSError:\n        print('boot refused')\n",
        );
        let Some(run) = run_job(program, inputs(&[""]), &small(), always()) else {
            return;
        };
        let text = out(case(&run, 0));
        assert!(text.starts_with("refused"), "{text}");
        assert!(text.contains("next refused"), "{text}");
        assert_eq!(text.matches("boot refused").count(), 2, "{text}");
    }
}
