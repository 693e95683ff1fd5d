//! Running one program against many test cases in one interpreter, and the
//! rules of the harness protocol.
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
//!
//! # The protocol is the host's
//!
//! The program shares its interpreter with the harness, so it can call the
//! door too. The host therefore trusts no frame for what it says, only for
//! when it comes:
//!
//! - **One phase per frame.** Each frame is accepted only in the phase where
//!   the harness sends it ([`Phase`]): the bootstrap's before `start`,
//!   `compile_error` right after it, `next` between cases, `result` during
//!   a case, and in assert mode `tests` when the program has run, `value`
//!   after a call step and `ran` after a code step. Every frame after
//!   `start` also carries the key of the host's last reply, a fresh random
//!   one each time, which only the harness holds.
//! - **A frame out of phase, or without the key, ends the item**: the door
//!   traps, the case running gets [`CaseEnd::Broke`] and the run
//!   [`CasesRun::broke`], which the verifier turns into `runtime_error`.
//! - **Completion is proven, not assumed.** An assert-mode case passes only
//!   with [`CaseEnd::TestsPassed`], which only the host records, when the
//!   harness has reported the last of the steps the host handed out, one at
//!   a time, after the program ran. An instance that stops first (an exit of
//!   any status, `os._exit`, a trap) ends the case as it stopped
//!   ([`CaseEnd::Exited`] for status 0 too).
//! - **The host decides what it can.** A call step's value comes back as
//!   typed JSON, and the step's [`ValueCheck`], which holds the expected
//!   value on the host, says whether it passes; a rejected value ends the
//!   case with [`CaseEnd::Rejected`].
//! - **Test code never runs beside the program.** A code step runs in the
//!   tests' own interpreter ([`super::runner`]), which reaches the program
//!   only through the host, as calls with data in and data out; the
//!   program's harness only ever runs the calls it is handed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;

use super::cancel::Cancel;
use super::limits::{Limits, Outcome};
use super::run::{Deadline, Host, Launch};
use super::runner::{FromRunner, RunnerLink, ToRunner};
use super::streams::{Output, StdinPipe};
use super::{Sandbox, SandboxError};

/// The guest-side harness.
pub const HARNESS: &str = include_str!("../../../sandboxes/harness/harness.py");

/// What the harness loads only to serve assert calls or run assert tests:
/// the typed-data codec it shares with the assert converter, then the code
/// that serves calls and runs tests. Compiled with the harness, unmarshalled
/// only where needed (a start-up-bound stdio case never pays for it).
pub const CALLS: &str = concat!(
    include_str!("../../../sandboxes/harness/data.py"),
    include_str!("../../../sandboxes/harness/calls.py")
);

/// The harness and its calls code, compiled by the guest (marshal bytes).
#[derive(Debug)]
pub(crate) struct HarnessCode {
    pub(crate) core: Vec<u8>,
    pub(crate) calls: Vec<u8>,
}

impl HarnessCode {
    /// From a bootstrap's frame: 8 bytes of the core's length (little
    /// endian), the core, the calls code.
    fn parse(frame: &[u8]) -> Option<HarnessCode> {
        let len = usize::try_from(u64::from_le_bytes(frame.get(..8)?.try_into().ok()?)).ok()?;
        let rest = &frame[8..];
        (len <= rest.len()).then(|| HarnessCode {
            core: rest[..len].to_vec(),
            calls: rest[len..].to_vec(),
        })
    }
}

/// The reply that hands over compiled code: `M` and the marshal bytes.
pub(crate) fn code_reply(code: &[u8]) -> Reply {
    Reply {
        bytes: [b"M".as_slice(), code].concat(),
        arm: None,
    }
}

/// The guest's `-c` program: get the harness compiled (`M` + marshal bytes)
/// and run it, or get its source and its calls code's (`S`, the two texts
/// apart by a NUL), compile both (docstrings dropped), give the host the
/// code, and quit. Only this code runs before the harness's `start`, so only
/// it can hand the host a compiled harness.
pub(crate) const BOOTSTRAP: &str = "\
import _host, marshal, os
r = _host.call(b'{\"op\":\"harness\"}')
if r[:1] == b'S':
    h, c = r[1:].split(b'\\0', 1)
    h = marshal.dumps(compile(h, '<harness>', 'exec', dont_inherit=True, optimize=2))
    c = marshal.dumps(compile(c, '<calls>', 'exec', dont_inherit=True, optimize=2))
    _host.call(b'harness_code\\n' + len(h).to_bytes(8, 'little') + h + c)
    os._exit(0)
exec(marshal.loads(r[1:]))
";

/// [`BOOTSTRAP`] once the harness is compiled: only its last line. Every
/// instance parses and compiles its `-c` source, so the shorter the better.
const WARM_BOOTSTRAP: &str = "\
import _host, marshal
exec(marshal.loads(_host.call(b'{\"op\":\"harness\"}')[1:]))
";

/// The bootstrap for the next instance: the short one once the harness is
/// compiled (the host then answers `harness` with its code).
pub(crate) fn bootstrap(harness_code: &OnceLock<HarnessCode>) -> &'static str {
    if harness_code.get().is_some() {
        WARM_BOOTSTRAP
    } else {
        BOOTSTRAP
    }
}

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
    /// Run it, then the steps of its tests, in its globals, one at a time
    /// (one case; `code::asserts` makes the steps from assert tests).
    Assert {
        /// The steps, in order.
        steps: Vec<Step>,
    },
}

impl Mode {
    /// Whether test code runs: then it needs an interpreter of its own.
    fn needs_runner(&self) -> bool {
        match self {
            Mode::Assert { steps } => steps.iter().any(|s| matches!(s, Step::Code { .. })),
            _ => false,
        }
    }
}

/// One step of assert-mode tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Call `name(*args, **kwargs)` in the program's globals (then `wrap`,
    /// a builtin the test applied to the result); `check` decides the
    /// value on the host.
    Call {
        /// The function.
        name: String,
        /// The positional arguments: a typed-JSON list.
        args: String,
        /// The keyword arguments: a typed-JSON dict.
        kwargs: Option<String>,
        /// `set`, `frozenset`, `sorted`, `list` or `tuple`.
        wrap: Option<String>,
        /// Whether the value (typed JSON) passes.
        check: ValueCheck,
    },
    /// Run test code, in the tests' own interpreter ([`super::runner`]),
    /// where the program's functions are proxies that call it through the
    /// host.
    Code {
        /// The code: whole statements of the test code.
        source: String,
        /// Its first line in the test code.
        line: u32,
    },
}

/// Decides on the host whether a call step's value (typed JSON) passes.
#[derive(Clone)]
pub struct ValueCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for ValueCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueCheck")
    }
}

impl PartialEq for ValueCheck {
    fn eq(&self, other: &ValueCheck) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
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
    /// [`Mode::Stdio`]: the program ran to its end, or exited with status 0.
    Finished,
    /// [`Mode::Function`]: the call returned this value, as JSON text.
    Returned(String),
    /// The return value has no JSON form (the message says why).
    Unserialisable(String),
    /// The program exited with this status (in function and assert mode,
    /// status 0 too: the function did not return, the tests did not finish).
    Exited(i32),
    /// The program raised an exception it did not catch.
    Raised {
        /// The exception's type name (`ValueError`).
        kind: String,
        /// Its message.
        message: String,
        /// Raised while a step of the tests ran, not the program itself.
        in_tests: bool,
    },
    /// [`Mode::Assert`]: the host saw every step through.
    TestsPassed,
    /// [`Mode::Assert`]: the host's check rejected call step `step`'s value.
    Rejected {
        /// The step.
        step: usize,
        /// The value, as typed JSON.
        value: String,
    },
    /// The CPU budget or the wall-clock backstop ran out.
    TimeLimit,
    /// A memory grow past the limit was refused.
    MemoryLimit,
    /// stdout and stderr together passed the output limit.
    OutputLimit,
    /// A wasm trap or another failure of the instance.
    Crashed(String),
    /// A frame broke the harness protocol (the program called the door).
    Broke(String),
}

impl CaseEnd {
    /// The case end for an instance that stopped while the case ran.
    fn from_outcome(outcome: Outcome, stdio: bool) -> CaseEnd {
        match outcome {
            Outcome::Exited(0) if stdio => CaseEnd::Finished,
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
    /// [`Mode::Assert`]: the step that was running when the case ended.
    pub step: Option<usize>,
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
}

/// Everything [`Sandbox::run_cases`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct CasesRun {
    /// The program did not compile; no case ran.
    pub compile_error: Option<CompileError>,
    /// One entry per case, `None` for cases not run (after a stop).
    pub cases: Vec<Option<CaseRun>>,
    /// The first frame that broke the protocol, which ended the run: the
    /// program called the door itself.
    pub broke: Option<String>,
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
        let needs_runner = program.mode.needs_runner();
        let output = Output::new(limits.output_bytes);
        let stdin = StdinPipe::new(Bytes::new());
        let deadline = Deadline::after(limits.wall);
        let mut session = Session::new(
            Job {
                program,
                cases,
                limits: limits.clone(),
                keep_going,
            },
            output.clone(),
            stdin.clone(),
            deadline.clone(),
            cancel.clone(),
            Arc::clone(&self.inner.harness_code),
        );
        let mut instances = 0;
        while !session.stopped && session.next < total && !cancel.is_cancelled() {
            output.reset();
            stdin.refill(Bytes::new());
            deadline.reset(limits.wall);
            let launch = Launch {
                source: bootstrap(&self.inner.harness_code),
                stdin: stdin.clone(),
                output: output.clone(),
                limits,
                deadline: deadline.clone(),
                cancel: cancel.clone(),
                host: Host::Cases(session),
            };
            // Once the harness is compiled, test code gets its own
            // interpreter beside the program's.
            let finished = if needs_runner && self.inner.harness_code.get().is_some() {
                self.run_with_runner(launch)?
            } else {
                self.run_instance(launch)?
            };
            let Host::Cases(returned) = finished.host else {
                unreachable!("the store hands back the session it was given")
            };
            session = returned;
            if session.instance_ended(finished.outcome, limits.fuel.saturating_sub(finished.fuel_left)) {
                instances += 1;
            }
        }
        Ok(CasesRun {
            compile_error: session.compile_error,
            cases: session.results,
            broke: session.broke,
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

/// Where the conversation with the current instance's harness is, which
/// decides the one kind of frame (or two) the host accepts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A fresh instance: the bootstrap's `harness` and `harness_code`, then
    /// the harness's `start`.
    Boot,
    /// After `start`, before the first case: `compile_error` or `next`.
    Started,
    /// Between cases: `next`.
    Idle,
    /// Case `k`'s program runs: `result`, or in assert mode `tests`.
    Program(usize),
    /// Case `k`'s step `i` runs: `result`, or `value`/`threw` (a call
    /// step). During a code step the program's harness waits in its door
    /// call while the tests run.
    Step(usize, usize),
    /// Case `k`'s code step `i` called one of the program's functions,
    /// which runs: `value`/`threw` (sent on to the tests), or `result`.
    Forwarded(usize, usize),
}

impl Phase {
    /// The case running, and its step.
    fn case(self) -> Option<(usize, Option<usize>)> {
        match self {
            Phase::Program(k) => Some((k, None)),
            Phase::Step(k, i) | Phase::Forwarded(k, i) => Some((k, Some(i))),
            _ => None,
        }
    }

    fn describe(self) -> String {
        match self {
            Phase::Boot => "before the harness started".into(),
            Phase::Started => "before the first case".into(),
            Phase::Idle => "between cases".into(),
            Phase::Program(k) => format!("while case {}'s program ran", k + 1),
            Phase::Step(k, i) | Phase::Forwarded(k, i) => {
                format!("while step {} of case {}'s tests ran", i + 1, k + 1)
            }
        }
    }
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
    harness_code: Arc<OnceLock<HarnessCode>>,
    /// Draws the keys.
    keys: StdRng,
    /// The key the next frame must carry: the one in the host's last reply.
    key: Option<String>,
    phase: Phase,
    /// This instance's bootstrap compiled the harness (and then quits).
    compiled_harness: bool,
    /// The next case to hand out.
    next: usize,
    /// The first case this instance ran.
    first_in_instance: Option<usize>,
    results: Vec<Option<CaseRun>>,
    compile_error: Option<CompileError>,
    broke: Option<String>,
    /// No more cases: a compile error, a broken protocol, or `keep_going`
    /// said stop.
    stopped: bool,
    /// The harness asked for a fresh interpreter after its last case.
    restart: bool,
    /// The tests' interpreter, for code steps.
    runner: Option<RunnerLink>,
    /// The program's functions (and classes), as its harness listed them.
    names: Vec<String>,
}

/// What the door does with a frame: reply now, or wait for the tests'
/// interpreter first (then [`Session::on_runner`]).
pub(crate) enum Next {
    Reply(Reply),
    Wait,
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

/// A frame from the harness: its `op`, its key, and the fields of the ops
/// that have any.
#[derive(Deserialize)]
struct Frame {
    op: String,
    key: Option<String>,
    status: Option<String>,
    code: Option<i32>,
    kind: Option<String>,
    message: Option<String>,
    value: Option<String>,
    /// `value` of a call the tests made: the arguments after the call.
    args: Option<String>,
    /// `tests`: the program's functions.
    names: Option<Vec<String>>,
    /// The harness cannot go on (the program closed a standard fd) and
    /// quits after this frame.
    #[serde(default)]
    restart: bool,
}

/// A frame that broke the protocol; the item ends (the door traps).
#[derive(Debug)]
pub(crate) struct Broken(pub(crate) String);

impl Session {
    fn new(
        job: Job,
        output: Output,
        stdin: StdinPipe,
        deadline: Deadline,
        cancel: Cancel,
        harness_code: Arc<OnceLock<HarnessCode>>,
    ) -> Session {
        let total = job.cases.len();
        Session {
            job: Arc::new(job),
            output,
            stdin,
            deadline,
            cancel,
            harness_code,
            keys: rand::make_rng(),
            key: None,
            phase: Phase::Boot,
            compiled_harness: false,
            next: 0,
            first_in_instance: None,
            results: vec![None; total],
            compile_error: None,
            broke: None,
            stopped: false,
            restart: false,
            runner: None,
            names: Vec::new(),
        }
    }

    /// Connects the tests' interpreter for this instance.
    pub(crate) fn link_runner(&mut self, link: RunnerLink) {
        self.runner = Some(link);
    }

    /// The receiver a waiting door call awaits.
    pub(crate) fn take_inbox(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<FromRunner>> {
        self.runner.as_mut().and_then(|link| link.from.take())
    }

    /// Gives the receiver back after the wait.
    pub(crate) fn put_inbox(&mut self, inbox: tokio::sync::mpsc::UnboundedReceiver<FromRunner>) {
        if let Some(link) = self.runner.as_mut() {
            link.from = Some(inbox);
        }
    }

    /// Answers one frame from the guest. `fuel_left` is the store's fuel
    /// when the frame arrived. An `Err` is a frame that broke the protocol:
    /// it has been recorded, and the instance must stop.
    pub(crate) fn answer(&mut self, frame: &[u8], fuel_left: u64) -> Result<Next, Broken> {
        if let Some(code) = frame.strip_prefix(HARNESS_CODE_TAG) {
            if self.phase != Phase::Boot {
                return Err(self.broken("the bootstrap's `harness_code`"));
            }
            let Some(code) = HarnessCode::parse(code) else {
                return Err(self.broken("a bootstrap's `harness_code` frame that is cut short"));
            };
            // A concurrent bootstrap may have been first; both compiled the
            // same source in the same guest.
            let _ = self.harness_code.set(code);
            self.compiled_harness = true;
            return Ok(Next::Reply(plain(json!({}))));
        }
        let Ok(frame) = serde_json::from_slice::<Frame>(frame) else {
            return Err(self.broken("a frame that is not the protocol's"));
        };
        match (self.phase, frame.op.as_str()) {
            (Phase::Boot, "harness") => {
                return Ok(Next::Reply(match self.harness_code.get() {
                    Some(code) => code_reply(&code.core),
                    None => Reply {
                        bytes: [b"S", HARNESS.as_bytes(), b"\0", CALLS.as_bytes()].concat(),
                        arm: None,
                    },
                }));
            }
            (Phase::Boot, "start") => {
                self.phase = Phase::Started;
                let job = Arc::clone(&self.job);
                let source = &job.program.source;
                return Ok(Next::Reply(self.reply(match &job.program.mode {
                    Mode::Stdio => json!({"mode": "stdio", "source": source}),
                    Mode::Function { fn_name } => {
                        json!({"mode": "function", "source": source, "fn_name": fn_name})
                    }
                    Mode::Assert { .. } => json!({"mode": "assert", "source": source}),
                })));
            }
            _ => {}
        }
        if self.phase == Phase::Boot || frame.key.is_none() || frame.key != self.key {
            return Err(self.broken(&format!("a `{}` frame without the harness's key", frame.op)));
        }
        let reply = |r: Reply| Ok(Next::Reply(r));
        match (self.phase, frame.op.as_str()) {
            (Phase::Started, "compile_error") => {
                self.compile_error = Some(CompileError {
                    kind: frame.kind.unwrap_or_default(),
                    message: frame.message.unwrap_or_default(),
                });
                self.stopped = true;
                reply(self.reply(json!({})))
            }
            // Raw, and the key stays: the harness loads this code before any
            // of the program runs.
            (Phase::Started, "calls") if matches!(self.job.program.mode, Mode::Assert { .. }) => {
                match self.harness_code.get() {
                    Some(code) => reply(code_reply(&code.calls)),
                    None => Err(self.broken("`calls` before the harness was compiled")),
                }
            }
            (Phase::Started | Phase::Idle, "next") => reply(self.start_case()),
            (Phase::Program(k) | Phase::Step(k, _) | Phase::Forwarded(k, _), "result") => {
                let end = self.result_end(frame)?;
                self.record(k, end, fuel_left, None);
                reply(self.reply(json!({})))
            }
            (Phase::Program(k), "tests") if matches!(self.job.program.mode, Mode::Assert { .. }) => {
                self.names = frame.names.unwrap_or_default();
                Ok(self.step(k, 0, fuel_left))
            }
            (Phase::Step(k, i), "value") if matches!(self.steps().get(i), Some(Step::Call { .. })) => {
                let Some(value) = frame.value else {
                    return Err(self.broken("a `value` frame without a value"));
                };
                let Some(Step::Call { check, .. }) = self.steps().get(i) else {
                    unreachable!("checked above")
                };
                let check = check.clone();
                if (check.0)(&value) {
                    Ok(self.step(k, i + 1, fuel_left))
                } else {
                    self.record(k, CaseEnd::Rejected { step: i, value }, fuel_left, None);
                    reply(self.reply(json!({"end": true})))
                }
            }
            (Phase::Step(k, i), "threw") if matches!(self.steps().get(i), Some(Step::Call { .. })) => {
                let end = CaseEnd::Raised {
                    kind: frame.kind.unwrap_or_default(),
                    message: frame.message.unwrap_or_default(),
                    in_tests: true,
                };
                self.record(k, end, fuel_left, None);
                reply(self.reply(json!({"end": true})))
            }
            (Phase::Forwarded(k, i), "value") => {
                let Some(value) = frame.value else {
                    return Err(self.broken("a `value` frame without a value"));
                };
                self.phase = Phase::Step(k, i);
                Ok(self.relay_to_runner(
                    k,
                    ToRunner::Returned {
                        value,
                        args: frame.args,
                    },
                    fuel_left,
                ))
            }
            (Phase::Forwarded(k, i), "threw") => {
                self.phase = Phase::Step(k, i);
                let threw = ToRunner::Threw {
                    kind: frame.kind.unwrap_or_default(),
                    message: frame.message.unwrap_or_default(),
                };
                Ok(self.relay_to_runner(k, threw, fuel_left))
            }
            (phase, op) => Err(self.broken(&format!("a `{op}` frame {}", phase.describe()))),
        }
    }

    /// Sends `message` to the tests' interpreter and waits for its answer;
    /// if it is gone, the case ends.
    fn relay_to_runner(&mut self, k: usize, message: ToRunner, fuel_left: u64) -> Next {
        let sent = self
            .runner
            .as_ref()
            .is_some_and(|link| link.to.send(message).is_ok());
        if sent {
            Next::Wait
        } else {
            let end = CaseEnd::Crashed("the tests' interpreter is gone".into());
            self.record(k, end, fuel_left, None);
            Next::Reply(self.reply(json!({"end": true})))
        }
    }

    /// What the tests' interpreter said, while the program's harness waits
    /// in its door call during code step `i`: a call of the program's to run
    /// (handed to the harness), the chunk's end (on to the next step), or
    /// the end of the tests.
    pub(crate) fn on_runner(&mut self, message: Option<FromRunner>, fuel_left: u64) -> Next {
        let Phase::Step(k, i) = self.phase else {
            return Next::Reply(self.reply(json!({"end": true})));
        };
        let end = match message {
            Some(FromRunner::Call { name, args, kwargs }) => {
                self.phase = Phase::Forwarded(k, i);
                let call =
                    json!({"call": name, "args": args, "kwargs": kwargs, "wrap": null, "copy_back": true});
                return Next::Reply(self.reply(call));
            }
            Some(FromRunner::ChunkDone) => return self.step(k, i + 1, fuel_left),
            Some(FromRunner::Raised {
                kind,
                message,
                traceback,
            }) => {
                let end = CaseEnd::Raised {
                    kind,
                    message,
                    in_tests: true,
                };
                self.record(k, end, fuel_left, Some(traceback.into_bytes()));
                return Next::Reply(self.reply(json!({"end": true})));
            }
            Some(FromRunner::Stopped(outcome)) => match outcome {
                Outcome::TimeLimit => CaseEnd::TimeLimit,
                Outcome::MemoryLimit => CaseEnd::MemoryLimit,
                other => CaseEnd::Crashed(format!("the tests' interpreter stopped: {other:?}")),
            },
            None => CaseEnd::Crashed("the tests' interpreter is gone".into()),
        };
        self.record(k, end, fuel_left, None);
        Next::Reply(self.reply(json!({"end": true})))
    }

    /// The assert steps (none in other modes).
    fn steps(&self) -> &[Step] {
        match &self.job.program.mode {
            Mode::Assert { steps } => steps,
            _ => &[],
        }
    }

    /// A reply carrying a fresh key, which the next frame must carry.
    fn reply(&mut self, mut body: serde_json::Value) -> Reply {
        let key = format!("{:016x}{:016x}", self.keys.next_u64(), self.keys.next_u64());
        body["key"] = json!(key);
        self.key = Some(key);
        plain(body)
    }

    /// Records a frame that broke the protocol, against the case running
    /// (if any) and the item, and stops the run.
    fn broken(&mut self, what: &str) -> Broken {
        let why = format!("{what} came {}", self.phase.describe());
        if let Some((k, _)) = self.phase.case() {
            self.record(k, CaseEnd::Broke(why.clone()), self.job.limits.fuel, None);
        }
        self.broke.get_or_insert_with(|| why.clone());
        self.stopped = true;
        Broken(why)
    }

    /// `next`: the next case, with its fresh budget, or `done`.
    fn start_case(&mut self) -> Reply {
        if self.stopped || self.next >= self.job.cases.len() || self.cancel.is_cancelled() {
            self.phase = Phase::Idle;
            return self.reply(json!({"done": true}));
        }
        let k = self.next;
        self.next += 1;
        self.phase = Phase::Program(k);
        self.first_in_instance.get_or_insert(k);
        let job = Arc::clone(&self.job);
        let case = &job.cases[k];
        self.stdin.refill(case.stdin.clone());
        self.output.reset();
        self.deadline.reset(job.limits.wall);
        let mut answer = self.reply(json!({"case": k, "args": case.args}));
        answer.arm = Some(Arm {
            fuel: job.limits.fuel,
            // The wall backstop is the `Deadline` just reset; the epoch
            // callback checks it, and the cancel flag, at every tick.
            epoch_ticks: 1,
        });
        answer
    }

    /// Step `i` of case `k`'s tests, or `end` when they are all done. A code
    /// step goes to the tests' interpreter, and the harness waits.
    fn step(&mut self, k: usize, i: usize, fuel_left: u64) -> Next {
        let job = Arc::clone(&self.job);
        let Mode::Assert { steps } = &job.program.mode else {
            unreachable!("steps are assert mode's")
        };
        self.phase = Phase::Step(k, i);
        match steps.get(i) {
            None => {
                if let Some(link) = &self.runner {
                    let _ = link.to.send(ToRunner::Done);
                }
                self.record(k, CaseEnd::TestsPassed, fuel_left, None);
                Next::Reply(self.reply(json!({"end": true})))
            }
            Some(Step::Call {
                name,
                args,
                kwargs,
                wrap,
                ..
            }) => {
                Next::Reply(self.reply(json!({"call": name, "args": args, "kwargs": kwargs, "wrap": wrap})))
            }
            Some(Step::Code { source, line }) => {
                if let Some(link) = self.runner.as_mut() {
                    if !std::mem::replace(&mut link.begun, true) {
                        let names = std::mem::take(&mut self.names);
                        let _ = link.to.send(ToRunner::Begin { names });
                    }
                }
                let chunk = ToRunner::Chunk {
                    source: source.clone(),
                    line: *line,
                };
                self.relay_to_runner(k, chunk, fuel_left)
            }
        }
    }

    /// How a `result` frame says the case ended, as its mode allows.
    fn result_end(&mut self, frame: Frame) -> Result<CaseEnd, Broken> {
        self.restart = frame.restart;
        let in_tests = matches!(self.phase, Phase::Step(..));
        let mode = &self.job.program.mode;
        Ok(match (frame.status.as_deref(), mode) {
            (Some("ok"), Mode::Stdio) => CaseEnd::Finished,
            (Some("ok"), Mode::Function { .. }) if frame.value.is_some() => {
                CaseEnd::Returned(frame.value.unwrap_or_default())
            }
            (Some("exit"), _) if frame.code.is_some() => match frame.code {
                Some(0) if matches!(mode, Mode::Stdio) => CaseEnd::Finished,
                code => CaseEnd::Exited(code.unwrap_or_default()),
            },
            (Some("raised"), _) => CaseEnd::Raised {
                kind: frame.kind.unwrap_or_default(),
                message: frame.message.unwrap_or_default(),
                in_tests,
            },
            (Some("unserialisable"), Mode::Function { .. } | Mode::Assert { .. }) => {
                CaseEnd::Unserialisable(frame.message.unwrap_or_default())
            }
            (status, _) => return Err(self.broken(&format!("a `result` frame with status {status:?}"))),
        })
    }

    /// Stores case `k`'s run (with `note` after its stderr) and asks
    /// whether to go on; the instance is then between cases.
    fn record(&mut self, k: usize, end: CaseEnd, fuel_left: u64, note: Option<Vec<u8>>) {
        let step = self.phase.case().and_then(|(_, step)| step);
        self.phase = Phase::Idle;
        let (stdout, mut stderr) = self.output.take();
        stderr.extend(note.unwrap_or_default());
        let mut run = CaseRun {
            end,
            stdout,
            stderr,
            fuel_used: self.job.limits.fuel.saturating_sub(fuel_left),
            step,
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
        let phase = std::mem::replace(&mut self.phase, Phase::Boot);
        self.key = None;
        self.runner = None;
        if std::mem::take(&mut self.compiled_harness) && phase == Phase::Boot {
            return false;
        }
        let restart = std::mem::take(&mut self.restart);
        let stdio = matches!(self.job.program.mode, Mode::Stdio);
        let fuel_left = self.job.limits.fuel.saturating_sub(fuel_used);
        if let Some((k, _)) = phase.case() {
            if outcome == Outcome::MemoryLimit && first != Some(k) {
                self.next = k;
                return true;
            }
            self.phase = phase;
            self.record(k, CaseEnd::from_outcome(outcome, stdio), fuel_left, None);
            self.phase = Phase::Boot;
        } else if !restart && !self.stopped && !self.cancel.is_cancelled() && self.next < self.job.cases.len()
        {
            // A cancelled run charges no case that had not begun: a
            // cancellation between cases stops the instance, and that is
            // no verdict on the next case.
            let k = self.next;
            self.next += 1;
            let end = match outcome {
                Outcome::Exited(status) => CaseEnd::Crashed(format!(
                    "the interpreter exited (status {status}) before case {} began",
                    k + 1
                )),
                other => CaseEnd::from_outcome(other, stdio),
            };
            self.record(k, end, fuel_left, None);
            self.phase = Phase::Boot;
        }
        true
    }
}

/// A reply without a key (the bootstrap's).
fn plain(body: serde_json::Value) -> Reply {
    Reply {
        bytes: body.to_string().into_bytes(),
        arm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::fuel_for;
    use crate::sandbox::test_sandbox;
    use serde_json::json;

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

    /// The issue's determinism check: programs just under and just over
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
        let assert = |source: &str, tests: &str| Program {
            source: source.into(),
            mode: Mode::Assert {
                steps: vec![code(tests, 1)],
            },
        };
        // A spinning program; a program whose door call waits while the
        // tests' interpreter spins; and the tests' interpreter waiting in
        // its door call while the program's function spins. (A sleep is no
        // wait: it is paid in fuel, see `super::clock`.)
        let programs = [
            stdio("while True: pass"),
            assert("def f():\n    return 1\n", "while True: pass"),
            assert("def f():\n    while True: pass\n", "assert f() == 1"),
        ];
        for program in programs {
            let what = program.source.clone();
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
                .run_cases_until(program, inputs(&["", "", ""]), &limits, always(), &cancel)
                .expect("the run could be set up");
            canceller.join().unwrap();
            assert!(run.cancelled, "{what}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{what}: {:?}",
                started.elapsed()
            );
            assert!(
                run.cases[0]
                    .as_ref()
                    .is_none_or(|c| c.end != CaseEnd::TestsPassed),
                "{what}: {run:?}"
            );
            assert!(
                run.cases[1].is_none() && run.cases[2].is_none(),
                "{what}: {run:?}"
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

    /// A call step whose value the host accepts when it is this typed JSON.
    fn call(name: &str, args: &str, want: &'static str) -> Step {
        Step::Call {
            name: name.into(),
            args: args.into(),
            kwargs: None,
            wrap: None,
            check: ValueCheck(Arc::new(move |value: &str| value == want)),
        }
    }

    fn code(source: &str, line: u32) -> Step {
        Step::Code {
            source: source.into(),
            line,
        }
    }

    fn run_steps(source: &str, steps: Vec<Step>) -> Option<CasesRun> {
        run_job(
            Program {
                source: source.into(),
                mode: Mode::Assert { steps },
            },
            vec![CaseInput::default()],
            &small(),
            always(),
        )
    }

    #[test]
    fn assert_steps_run_in_order_and_the_host_decides_the_calls() {
        let add = "def add(a, b): return a + b\n";
        let steps = || {
            vec![
                call("add", "[1,2]", "3"),
                code("assert add(2, 2) == 4\nassert add(0, 0) == 0", 2),
                call(
                    "add",
                    r#"[{"tuple":[1]},{"tuple":[2.5]}]"#,
                    r#"{"tuple":[1,2.5]}"#,
                ),
            ]
        };
        let Some(good) = run_steps(add, steps()) else {
            return;
        };
        assert_eq!(case(&good, 0).end, CaseEnd::TestsPassed, "{good:?}");
        assert!(good.broke.is_none());

        let wrong = run_steps("def add(a, b): return a * b\n", steps()).expect("sandbox");
        assert_eq!(
            case(&wrong, 0).end,
            CaseEnd::Rejected {
                step: 0,
                value: "2".into()
            }
        );
        // A failed assert in test code (run in the tests' interpreter), at its own line.
        let off = run_steps("def add(a, b): return a + b if a != 2 else 5\n", steps()).expect("sandbox");
        let end = &case(&off, 0);
        assert!(
            matches!(&end.end, CaseEnd::Raised { kind, in_tests: true, .. } if kind == "AssertionError"),
            "{end:?}"
        );
        assert_eq!(end.step, Some(1));
        assert!(out_err(end).contains("line 2"), "{}", out_err(end));
        // The program's own error, before any step.
        let own = run_steps("assert False, 'own'\n", steps()).expect("sandbox");
        assert!(matches!(
            &case(&own, 0).end,
            CaseEnd::Raised { in_tests: false, .. }
        ));
        assert_eq!(case(&own, 0).step, None);
        // No steps: the program only has to finish.
        let none = run_steps("x = 1\n", vec![]).expect("sandbox");
        assert_eq!(case(&none, 0).end, CaseEnd::TestsPassed);
    }

    fn out_err(run: &CaseRun) -> String {
        String::from_utf8_lossy(&run.stderr).into_owned()
    }

    /// The issue's first hacks: any exit before the host saw the tests
    /// through fails the case, status 0 included, wherever it happens.
    #[test]
    fn an_exit_before_the_tests_end_fails_the_case() {
        let steps = || vec![call("add", "[1,2]", "3")];
        for (name, source) in [
            ("sys.exit(0)", "import sys\nsys.exit(0)\n"),
            ("raise SystemExit", "raise SystemExit\n"),
            ("exit()", "exit()\n"),
            ("quit(0)", "quit(0)\n"),
            ("os._exit(0)", "import os\nos._exit(0)\n"),
            (
                "sys.exit(0) in the function",
                "import sys\ndef add(a, b): sys.exit(0)\n",
            ),
            (
                "os._exit(0) in the function",
                "import os\ndef add(a, b): os._exit(0)\n",
            ),
        ] {
            let Some(run) = run_steps(source, steps()) else {
                return;
            };
            assert_eq!(case(&run, 0).end, CaseEnd::Exited(0), "{name}: {run:?}");
        }
    }

    /// Frames the program sends itself break the protocol: in its own
    /// phase, during the tests, and between cases (a finalizer).
    #[test]
    fn a_forged_frame_ends_the_item() {
        let forge = |frame: &str| format!("import _host\n_host.call(b'{frame}')\n");
        for (name, source) in [
            ("a result", forge(r#"{"op": "result", "status": "ok"}"#)),
            ("tests done", forge(r#"{"op": "tests"}"#)),
            (
                "a compile error in the tests",
                forge(r#"{"op": "compile_error", "kind": "SyntaxError", "message": "x", "in": "tests"}"#),
            ),
            (
                "a guessed key",
                forge(r#"{"op": "result", "status": "ok", "key": "00000000000000000000000000000000"}"#),
            ),
            ("not json", forge("not json")),
            ("the bootstrap's frame", forge("harness_code\\nxx")),
        ] {
            let Some(run) = run_steps(
                &(source + "def add(a, b): return a + b\n"),
                vec![call("add", "[1,2]", "3")],
            ) else {
                return;
            };
            assert!(run.broke.is_some(), "{name}: {run:?}");
            assert!(matches!(&case(&run, 0).end, CaseEnd::Broke(_)), "{name}: {run:?}");
        }
        // During a step: the function called by the tests forges.
        let during = run_steps(
            "import _host\ndef add(a, b):\n    _host.call(b'{\"op\": \"value\", \"value\": \"3\"}')\n    return 3\n",
            vec![call("add", "[1,2]", "3")],
        )
        .expect("sandbox");
        assert!(
            matches!(&case(&during, 0).end, CaseEnd::Broke(why) if why.contains("step 1")),
            "{during:?}"
        );
        // After its case: a finalizer of case 1's globals (a cycle: its
        // class refers to them), collected while case 2 runs.
        let program = stdio(
            "import _host, gc\n\
             gc.collect()\n\
             class Later:\n    def __del__(self):\n        _host.call(b'{\"op\": \"next\"}')\n\
             keep = Later()\nprint(input())\n",
        );
        let run = run_job(program, inputs(&["a", "b"]), &small(), always()).expect("sandbox");
        assert!(run.broke.is_some(), "{run:?}");
        assert_eq!(case(&run, 0).end, CaseEnd::Finished);
        assert!(matches!(&case(&run, 1).end, CaseEnd::Broke(_)), "{run:?}");
    }

    /// A session as `run_cases` makes one, for driving the protocol by hand.
    /// Links a stand-in for the tests' interpreter to `s`: what the session
    /// sends it, and the sender of its answers (kept, so its channel stays
    /// open).
    fn link(
        s: &mut Session,
    ) -> (
        tokio::sync::mpsc::UnboundedReceiver<ToRunner>,
        tokio::sync::mpsc::UnboundedSender<FromRunner>,
    ) {
        let (to_runner, inbox) = tokio::sync::mpsc::unbounded_channel();
        let (to_cases, from_runner) = tokio::sync::mpsc::unbounded_channel();
        s.link_runner(RunnerLink {
            to: to_runner,
            from: Some(from_runner),
            begun: false,
        });
        (inbox, to_cases)
    }

    fn session(mode: Mode, cases: usize) -> Session {
        Session::new(
            Job {
                program: Program {
                    source: "pass".into(),
                    mode,
                },
                cases: vec![CaseInput::default(); cases],
                limits: small(),
                keep_going: always(),
            },
            Output::new(1 << 20),
            StdinPipe::new(Bytes::new()),
            Deadline::after(Duration::from_secs(10)),
            Cancel::new(),
            Arc::default(),
        )
    }

    /// Sends `frame` with the session's current key (unless it has one);
    /// the reply (`null` while it waits for the tests' interpreter), or why
    /// the protocol broke.
    fn send(s: &mut Session, mut frame: serde_json::Value) -> Result<serde_json::Value, String> {
        if frame.get("key").is_none() {
            if let Some(key) = &s.key {
                frame["key"] = json!(key);
            }
        }
        match s.answer(frame.to_string().as_bytes(), 0).map_err(|b| b.0)? {
            Next::Reply(reply) => Ok(serde_json::from_slice(&reply.bytes).unwrap_or(json!(null))),
            Next::Wait => Ok(json!(null)),
        }
    }

    fn reply_of(next: Next) -> serde_json::Value {
        match next {
            Next::Reply(reply) => serde_json::from_slice(&reply.bytes).unwrap(),
            Next::Wait => json!(null),
        }
    }

    /// The protocol's table: each frame in each phase, by hand, with no
    /// guest; what the harness sends in order passes, anything else breaks
    /// the item.
    #[test]
    fn each_frame_is_accepted_only_in_its_phase() {
        let steps = vec![call("f", "[]", "1"), call("g", "[]", "2")];
        let order = [
            json!({"op": "harness"}),
            json!({"op": "start"}),
            json!({"op": "next"}),
            json!({"op": "tests", "names": ["f", "g"]}),
            json!({"op": "value", "value": "1"}),
            json!({"op": "value", "value": "2"}),
            json!({"op": "next"}),
        ];
        let mut s = session(Mode::Assert { steps: steps.clone() }, 1);
        let replies: Vec<serde_json::Value> =
            order.iter().map(|f| send(&mut s, f.clone()).unwrap()).collect();
        assert!(replies[1]["key"].as_str().is_some_and(|k| k.len() == 32));
        assert_eq!(replies[2]["case"], json!(0));
        assert_eq!(replies[3]["call"], json!("f"));
        assert_eq!(replies[4]["call"], json!("g"));
        assert_eq!(replies[5]["end"], json!(true));
        assert_eq!(replies[6]["done"], json!(true));
        assert_ne!(replies[3]["key"], replies[4]["key"], "a fresh key every time");
        assert_eq!(s.results[0].as_ref().map(|r| &r.end), Some(&CaseEnd::TestsPassed));
        assert!(s.broke.is_none());

        // Each wrong frame, at each point of that order, breaks the item.
        let wrong = [
            json!({"op": "start"}),
            json!({"op": "harness"}),
            json!({"op": "compile_error", "kind": "SyntaxError", "message": "x", "in": "tests"}),
            json!({"op": "result", "status": "ok"}),
            json!({"op": "tests"}),
            json!({"op": "value", "value": "1"}),
            json!({"op": "threw", "kind": "ValueError", "message": ""}),
            json!({"op": "ran"}),
            json!({"op": "next", "key": "not the key"}),
            json!({"op": "mystery"}),
        ];
        for at in 0..order.len() {
            for bad in &wrong {
                // What the harness itself sends at this point passes (a
                // second `harness` before `start` too: no program runs yet).
                let op = bad["op"].as_str().unwrap_or_default();
                let allowed = match at {
                    0 | 1 => op == "harness" || op == "start",
                    2 => op == "compile_error",
                    3 => op == "tests",
                    4 | 5 => op == "value" || op == "threw",
                    _ => op == "next",
                } && bad.get("key").is_none();
                let mut s = session(Mode::Assert { steps: steps.clone() }, 1);
                for frame in &order[..at] {
                    send(&mut s, frame.clone()).unwrap();
                }
                let answer = send(&mut s, bad.clone());
                if allowed {
                    continue;
                }
                assert!(answer.is_err(), "{bad} at step {at} was accepted: {answer:?}");
                assert!(s.broke.is_some() && s.stopped);
            }
        }
        // `result` says "ok" only in stdio and function mode.
        let mut s = session(Mode::Assert { steps }, 1);
        for frame in &order[..3] {
            send(&mut s, frame.clone()).unwrap();
        }
        assert!(send(&mut s, json!({"op": "result", "status": "ok"})).is_err());
        assert!(matches!(
            s.results[0].as_ref().map(|r| &r.end),
            Some(CaseEnd::Broke(_))
        ));
        // A stdio program exiting 0 finished; a function's did not return.
        for (mode, end) in [
            (Mode::Stdio, CaseEnd::Finished),
            (Mode::Function { fn_name: "f".into() }, CaseEnd::Exited(0)),
        ] {
            let mut s = session(mode, 1);
            for frame in &order[..3] {
                send(&mut s, frame.clone()).unwrap();
            }
            send(&mut s, json!({"op": "result", "status": "exit", "code": 0})).unwrap();
            assert_eq!(s.results[0].as_ref().map(|r| &r.end), Some(&end));
        }
    }

    /// A code step, by hand: the program's side hands the chunk to the tests'
    /// interpreter, relays the calls it makes, and goes on when it is done.
    #[test]
    fn a_code_step_relays_between_the_two_interpreters() {
        let steps = vec![code("assert f(1) == 2", 1), call("f", "[2]", "3")];
        let mut s = session(Mode::Assert { steps }, 1);
        let (mut runner_inbox, _to_cases) = link(&mut s);
        for frame in [
            json!({"op": "harness"}),
            json!({"op": "start"}),
            json!({"op": "next"}),
        ] {
            send(&mut s, frame).unwrap();
        }
        assert_eq!(
            send(&mut s, json!({"op": "tests", "names": ["f"]})).unwrap(),
            json!(null)
        );
        assert!(matches!(runner_inbox.try_recv(), Ok(ToRunner::Begin { names }) if names == ["f"]));
        assert!(matches!(
            runner_inbox.try_recv(),
            Ok(ToRunner::Chunk { line: 1, .. })
        ));
        let forwarded = reply_of(s.on_runner(
            Some(FromRunner::Call {
                name: "f".into(),
                args: "[1]".into(),
                kwargs: "{\"dict\":[]}".into(),
            }),
            0,
        ));
        assert_eq!(
            (forwarded["call"].as_str(), forwarded["copy_back"].as_bool()),
            (Some("f"), Some(true))
        );
        // The value goes to the tests, unchecked: the tests decide.
        assert_eq!(
            send(&mut s, json!({"op": "value", "value": "2", "args": "[1]"})).unwrap(),
            json!(null)
        );
        assert!(matches!(runner_inbox.try_recv(), Ok(ToRunner::Returned { value, .. }) if value == "2"));
        let next = reply_of(s.on_runner(Some(FromRunner::ChunkDone), 0));
        assert_eq!(next["args"], json!("[2]"));
        assert!(next.get("copy_back").is_none(), "a host-compared call");
        assert_eq!(
            send(&mut s, json!({"op": "value", "value": "3"})).unwrap()["end"],
            json!(true)
        );
        assert!(matches!(runner_inbox.try_recv(), Ok(ToRunner::Done)));
        assert_eq!(s.results[0].as_ref().map(|r| &r.end), Some(&CaseEnd::TestsPassed));

        // The tests raised, or their interpreter stopped: the case ends so.
        for (message, end) in [
            (
                Some(FromRunner::Raised {
                    kind: "AssertionError".into(),
                    message: String::new(),
                    traceback: "Traceback ...\n".into(),
                }),
                CaseEnd::Raised {
                    kind: "AssertionError".into(),
                    message: String::new(),
                    in_tests: true,
                },
            ),
            (Some(FromRunner::Stopped(Outcome::TimeLimit)), CaseEnd::TimeLimit),
            (None, CaseEnd::Crashed("the tests' interpreter is gone".into())),
        ] {
            let mut s = session(
                Mode::Assert {
                    steps: vec![code("pass", 1)],
                },
                1,
            );
            let (_inbox, _to_cases) = link(&mut s);
            for frame in [
                json!({"op": "harness"}),
                json!({"op": "start"}),
                json!({"op": "next"}),
                json!({"op": "tests"}),
            ] {
                send(&mut s, frame).unwrap();
            }
            assert_eq!(reply_of(s.on_runner(message, 0))["end"], json!(true));
            assert_eq!(s.results[0].as_ref().map(|r| &r.end), Some(&end));
        }
    }

    /// Test code runs in an interpreter of its own: it sees the program's
    /// functions as proxies (data in, data out, exceptions by kind, lists
    /// changed in place changed back), and nothing else of the program's.
    #[test]
    fn test_code_runs_apart_and_calls_the_program_with_data() {
        let program = "\
import builtins, math, collections
SECRET = 7
builtins.len = lambda x: 3
math.isclose = lambda *a, **k: True
collections.Counter.__eq__ = lambda self, other: True
def f(x): return x + 1
def fail(x): raise ValueError('no ' + str(x))
def sort_in_place(xs): xs.sort()
";
        let tests = "\
import math, collections
assert f(1) == 2
assert 'SECRET' not in globals() and 'math' in globals()
assert len([1, 2]) == 2 and not math.isclose(1, 2)
assert collections.Counter('ab') != collections.Counter('a')
try:
    fail(3)
except ValueError as e:
    assert str(e) == 'no 3'
else:
    assert False
xs = [3, 1, 2]
sort_in_place(xs)
assert xs == [1, 2, 3]
";
        let Some(run) = run_steps(program, vec![code(tests, 1)]) else {
            return;
        };
        assert_eq!(case(&run, 0).end, CaseEnd::TestsPassed, "{run:?}");
        assert_eq!(run.instances, 1);

        // A failed assert in the test code, reported with its line.
        let wrong = run_steps(
            "def f(x): return x\n",
            vec![code("assert f(1) == 1\nassert f(2) == 3", 4)],
        )
        .expect("sandbox");
        let end = case(&wrong, 0);
        assert!(
            matches!(&end.end, CaseEnd::Raised { kind, in_tests: true, .. } if kind == "AssertionError"),
            "{wrong:?}"
        );
        assert!(out_err(end).contains("line 5"), "{}", out_err(end));
        // A value the program cannot send as data ends the case.
        let object = run_steps(
            "def f(): return object()\n",
            vec![code("assert f() is not None", 1)],
        )
        .expect("sandbox");
        assert!(
            matches!(&case(&object, 0).end, CaseEnd::Unserialisable(_)),
            "{object:?}"
        );
        // The program exits in a call the tests made.
        let exits = run_steps("import os\ndef f(): os._exit(0)\n", vec![code("f()", 1)]).expect("sandbox");
        assert_eq!(case(&exits, 0).end, CaseEnd::Exited(0), "{exits:?}");
        // Code and host-compared steps interleave, in order.
        let mixed = run_steps(
            "n = [0]\ndef bump():\n    n[0] += 1\n    return n[0]\n",
            vec![
                call("bump", "[]", "1"),
                code("assert bump() == 2", 2),
                call("bump", "[]", "3"),
            ],
        )
        .expect("sandbox");
        assert_eq!(case(&mixed, 0).end, CaseEnd::TestsPassed, "{mixed:?}");
    }

    /// The tests' interpreter is beyond the program's reach: frames, gc
    /// and always-equal objects find nothing to use there.
    #[test]
    fn the_program_cannot_reach_the_tests() {
        let tests =
            "cases = [((1, 2), 3), ((2, 5), 7)]\nfor args, want in cases:\n    assert add(*args) == want\n";
        for (name, program) in [
            (
                "frame peek",
                "import sys\ndef add(a, b):\n    f = sys._getframe(1)\n    return f.f_locals.get('want', 0)\n",
            ),
            (
                "gc scan",
                "import gc\ndef add(a, b):\n    for o in gc.get_objects():\n        if type(o) is tuple and len(o) == 2 and o[0] == (a, b):\n            return o[1]\n    return 0\n",
            ),
            (
                "globals peek",
                "def add(a, b):\n    return dict(globals().get('cases', [])).get((a, b), 0)\n",
            ),
        ] {
            let Some(run) = run_steps(program, vec![code(tests, 1)]) else {
                return;
            };
            let end = &case(&run, 0).end;
            assert!(
                matches!(end, CaseEnd::Raised { kind, in_tests: true, .. } if kind == "AssertionError"),
                "{name}: {run:?}"
            );
        }
        let always = run_steps(
            "class Yes:\n    def __eq__(self, o): return True\ndef add(a, b): return Yes()\n",
            vec![code(tests, 1)],
        )
        .expect("sandbox");
        assert!(
            matches!(&case(&always, 0).end, CaseEnd::Unserialisable(_)),
            "{always:?}"
        );
    }

    /// Sleeping is spending: a sleep burns the fuel its time is worth, at
    /// once, so a long one is a time limit at once and a short one costs no
    /// wall time.
    #[test]
    fn sleeps_advance_the_fuel_clock_and_spend_the_budget() {
        let Some(long) = run_job(
            stdio("import time\ntime.sleep(100)\n"),
            inputs(&[""]),
            &small(),
            always(),
        ) else {
            return;
        };
        assert_eq!(case(&long, 0).end, CaseEnd::TimeLimit);
        assert!(long.elapsed < Duration::from_secs(2), "{:?}", long.elapsed);

        let short = run_job(
            stdio("import time\nt = time.perf_counter()\ntime.sleep(0.5)\nprint(round(time.perf_counter() - t, 3))\n"),
            inputs(&["", ""]),
            &small(),
            always(),
        )
        .expect("sandbox");
        for k in 0..2 {
            assert_eq!(out(case(&short, k)), "0.5\n", "{short:?}");
            // The half second was paid in fuel: 3e9 of the 6e9 budget.
            assert!(case(&short, k).fuel_used >= fuel_for(Duration::from_millis(500)));
        }
        assert!(short.elapsed < Duration::from_millis(400), "{:?}", short.elapsed);

        // Many short sleeps add up against the 1 s budget.
        let many = run_job(
            stdio("import time\nfor _ in range(2000):\n    time.sleep(0.001)\nprint('done')\n"),
            inputs(&[""]),
            &small(),
            always(),
        )
        .expect("sandbox");
        assert_eq!(case(&many, 0).end, CaseEnd::TimeLimit);
        // A wait on a ready descriptor returns at once.
        let select = run_job(
            stdio("import select, sys\nr, w, _ = select.select([sys.stdin], [sys.stdout], [], 50)\nprint(len(r), len(w), input())\n"),
            inputs(&["x"]),
            &small(),
            always(),
        )
        .expect("sandbox");
        let c = case(&select, 0);
        assert_eq!(
            (&c.end, out(c).as_str()),
            (&CaseEnd::Finished, "1 1 x\n"),
            "{select:?}"
        );
    }
}
