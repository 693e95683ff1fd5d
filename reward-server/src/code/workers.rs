//! Code verification in worker processes.
//!
//! Many threads running guests in one process scale badly: every run dirties
//! and resets pages of its pooled linear memory, and each such page-table
//! change in a shared address space costs a TLB shoot-down on every core
//! running the process. Measured on 2 cores with 1,000 single-case items:
//! one thread graded them in 2.5 s, two threads in 3.4 s (kernel time 1.0 s
//! against 4.0 s), while two processes of one thread each took 1.7 s.
//!
//! So `reward-server grade` and `serve` run guests in worker processes, one
//! per grading thread: the same binary started as `reward-server
//! sandbox-worker`, one job per line on its stdin, one answer per line on its
//! stdout. A job verifies a code item ([`verify_item`]) or runs one program
//! as SandboxFusion's `/run_code` does ([`run_code`]). A worker process also
//! isolates the server from what goes wrong in a run: a panic or a crash ends
//! only the worker, whose job then runs once more in a fresh worker (and is
//! `invalid`, saying why, if that one dies too).
//!
//! A job can be cancelled ([`Cancel`]): the parent writes a `cancel` line,
//! and the worker stops the run before its next case, or mid-case within an
//! epoch tick. When [`use_worker_processes`] did not set workers up, jobs run
//! in this process (the library's default, and what the unit tests use).

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::time_limit::code_limits;
use super::{shared_sandbox_or_error, verify_until, CodeOutcome, CodeTests, Rules};
use crate::sandbox::{Cancel, Limits};
use crate::serve::sandbox_fusion::{run_as_sandbox_fusion, sandbox_error, RunCodeResponse};

/// The hidden subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "sandbox-worker";

/// The line that cancels a worker's current job.
const CANCEL_LINE: &str = "cancel";

/// One code item to verify: what [`verify_until`] needs, with the item's
/// limits as given.
#[derive(Debug, Clone, Serialize)]
pub struct Job<'a> {
    /// The model's response.
    pub response: &'a str,
    /// The tests.
    pub tests: &'a CodeTests,
    /// The item's `time_limit_s`.
    pub time_limit_s: Option<f64>,
    /// The item's `memory_limit_mb`.
    pub memory_limit_mb: Option<u64>,
    /// The item's `all_cases` (or implied by `"reward": "fraction"`).
    pub all_cases: bool,
    /// The item's `time_limit_native_s`.
    pub time_limit_native_s: Option<f64>,
    /// The item's `compare`, `atol` and `raw_code`.
    pub rules: Rules,
}

/// A job as a worker reads it.
#[derive(Deserialize)]
struct OwnedJob {
    response: String,
    tests: CodeTests,
    time_limit_s: Option<f64>,
    memory_limit_mb: Option<u64>,
    all_cases: bool,
    #[serde(default)]
    time_limit_native_s: Option<f64>,
    #[serde(default)]
    rules: Rules,
}

/// One program for `/run_code`: run as a script with `stdin`, under `limits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunCodeJob {
    /// The Python source.
    pub(crate) code: String,
    /// Its standard input (none: empty).
    pub(crate) stdin: Option<String>,
    /// The run's limits, checked by the caller.
    pub(crate) limits: Limits,
}

/// Where a job comes from, for the worker's log lines.
#[derive(Debug, Clone, Default)]
pub struct JobContext {
    /// Stops the job early; the outcome is then never read.
    pub cancel: Cancel,
    /// The HTTP request's id (`X-Request-Id`), if any.
    pub request_id: Option<String>,
}

/// A line to a worker.
#[derive(Serialize)]
struct Envelope<'a, J> {
    request_id: Option<&'a str>,
    job: J,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum JobRef<'a> {
    Verify(&'a Job<'a>),
    RunCode(&'a RunCodeJob),
}

#[derive(Deserialize)]
struct OwnedEnvelope {
    request_id: Option<String>,
    job: WorkerJob,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerJob {
    Verify(OwnedJob),
    RunCode(RunCodeJob),
}

/// Verifies `job` in this process.
pub fn verify_in_process(job: &Job<'_>, cancel: &Cancel) -> CodeOutcome {
    let limits = match code_limits(
        job.time_limit_s,
        job.time_limit_native_s,
        job.memory_limit_mb,
        job.rules.compare,
    ) {
        Ok(limits) => limits,
        Err(why) => return CodeOutcome::invalid(why),
    };
    match shared_sandbox_or_error() {
        Ok(sandbox) => verify_until(
            sandbox,
            job.response,
            job.tests,
            &limits,
            job.all_cases,
            &job.rules,
            cancel,
        ),
        Err(why) => CodeOutcome::invalid(why),
    }
}

/// Runs `job` in this process.
fn run_code_in_process(job: &RunCodeJob, cancel: &Cancel) -> RunCodeResponse {
    match shared_sandbox_or_error() {
        Ok(sandbox) => run_as_sandbox_fusion(sandbox, &job.code, job.stdin.as_deref(), &job.limits, cancel),
        Err(why) => sandbox_error(why),
    }
}

/// The worker processes, when [`use_worker_processes`] set them up.
static WORKERS: RwLock<Option<Arc<Workers>>> = RwLock::new(None);

/// From now on, jobs run in up to `count` worker processes started from
/// `exe` (this program's binary) with `args` before the subcommand (the
/// global options, `--log-format`). They start when first needed, or at
/// [`start_worker_processes`].
pub fn use_worker_processes(exe: PathBuf, args: Vec<String>, count: usize) {
    let workers = Workers::new(exe, args, count);
    *WORKERS.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(workers));
}

/// Starts every worker process now (loading the guest in this process
/// first, compiling it on a first run), so the first jobs do not wait for
/// that. A no-op when jobs run in this process.
pub fn start_worker_processes() -> Result<(), String> {
    let Some(workers) = current() else {
        return shared_sandbox_or_error().map(|_| ());
    };
    let mut started = Vec::new();
    for _ in 0..workers.max {
        started.push(workers.take()?);
    }
    for worker in started {
        workers.give_back(worker);
    }
    Ok(())
}

/// Stops the worker processes (each exits when its stdin closes) and goes
/// back to running jobs in this process.
pub fn stop_worker_processes() {
    let workers = WORKERS.write().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(workers) = workers {
        let idle = std::mem::take(&mut workers.lock().idle);
        for worker in idle {
            worker.stop();
        }
    }
}

/// Worker processes busy with a job now (0 when jobs run in this process).
pub fn busy_workers() -> usize {
    current().map_or(0, |w| {
        let pool = w.lock();
        pool.running - pool.idle.len()
    })
}

fn current() -> Option<Arc<Workers>> {
    WORKERS.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Verifies `job` in a worker process when they are set up, else here.
pub fn verify_item(job: &Job<'_>, context: &JobContext) -> CodeOutcome {
    match current() {
        Some(workers) => workers
            .call(&JobRef::Verify(job), context)
            .unwrap_or_else(CodeOutcome::invalid),
        None => verify_in_process(job, &context.cancel),
    }
}

/// Runs `job` in a worker process when they are set up, else here (a panic
/// then becomes a `SandboxError` answer).
pub(crate) fn run_code(job: &RunCodeJob, context: &JobContext) -> RunCodeResponse {
    match current() {
        Some(workers) => workers
            .call(&JobRef::RunCode(job), context)
            .unwrap_or_else(sandbox_error),
        None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_code_in_process(job, &context.cancel)
        }))
        .unwrap_or_else(|panic| {
            sandbox_error(format!(
                "internal error (please report it): {}",
                panic_text(&*panic)
            ))
        }),
    }
}

/// A panic's message.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

struct Workers {
    exe: PathBuf,
    args: Vec<String>,
    max: usize,
    state: Mutex<Pool>,
    freed: Condvar,
}

struct Pool {
    idle: Vec<Worker>,
    /// Workers alive, idle or busy.
    running: usize,
}

struct Worker {
    child: Child,
    /// Shared with the cancel hook of the job in flight.
    stdin: Arc<Mutex<BufWriter<std::process::ChildStdin>>>,
    stdout: BufReader<ChildStdout>,
}

impl Workers {
    fn new(exe: PathBuf, args: Vec<String>, count: usize) -> Workers {
        Workers {
            exe,
            args,
            max: count.max(1),
            state: Mutex::new(Pool {
                idle: Vec::new(),
                running: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `job` to a worker and reads its answer. A worker that dies
    /// (killed, crashed) is replaced and the job sent once more.
    fn call<T: DeserializeOwned>(&self, job: &JobRef<'_>, context: &JobContext) -> Result<T, String> {
        let line = serde_json::to_string(&Envelope {
            request_id: context.request_id.as_deref(),
            job,
        })
        .map_err(|e| format!("cannot encode the job: {e}"))?;
        let mut failure = String::new();
        for attempt in 0..2 {
            let mut worker = self.take()?;
            match worker.exchange(&line, &context.cancel) {
                Ok(answer) => {
                    self.give_back(worker);
                    return Ok(answer);
                }
                Err(e) => {
                    let pid = worker.child.id();
                    worker.kill();
                    self.lock().running -= 1;
                    self.freed.notify_one();
                    if context.cancel.is_cancelled() {
                        return Err("cancelled".into());
                    }
                    tracing::error!(pid, attempt, "a sandbox worker failed and was replaced: {e}");
                    failure = e.to_string();
                }
            }
        }
        Err(format!(
            "the sandbox worker process failed twice on this item (last: {failure})"
        ))
    }

    fn give_back(&self, worker: Worker) {
        self.lock().idle.push(worker);
        self.freed.notify_one();
    }

    /// An idle worker, a new one if fewer than `max` run, else the next one
    /// freed.
    fn take(&self) -> Result<Worker, String> {
        let mut pool = self.lock();
        loop {
            if let Some(worker) = pool.idle.pop() {
                return Ok(worker);
            }
            if pool.running < self.max {
                pool.running += 1;
                drop(pool);
                return self.spawn().inspect_err(|_| {
                    self.lock().running -= 1;
                    self.freed.notify_one();
                });
            }
            pool = self.freed.wait(pool).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        // Load (and on a first run, compile and cache) the guest here once,
        // so the workers only ever load the cache.
        shared_sandbox_or_error()?;
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .arg(WORKER_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a sandbox worker ({}): {e}", self.exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err("a sandbox worker started without pipes".into());
        };
        Ok(Worker {
            child,
            stdin: Arc::new(Mutex::new(BufWriter::new(stdin))),
            stdout: BufReader::new(stdout),
        })
    }
}

impl Worker {
    fn exchange<T: DeserializeOwned>(&mut self, line: &str, cancel: &Cancel) -> io::Result<T> {
        {
            let mut stdin = self.stdin.lock().unwrap_or_else(PoisonError::into_inner);
            stdin.write_all(line.as_bytes())?;
            stdin.write_all(b"\n")?;
            stdin.flush()?;
        }
        // Until the answer is read, a cancellation goes on to the worker.
        let _hook = cancel.on_cancel({
            let stdin = Arc::clone(&self.stdin);
            move || {
                let mut stdin = stdin.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(stdin, "{CANCEL_LINE}").and_then(|()| stdin.flush());
            }
        });
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer)? == 0 {
            let status = self.child.wait()?;
            return Err(io::Error::other(format!("it exited ({status})")));
        }
        serde_json::from_str(&answer).map_err(|e| {
            let start: String = answer.chars().take(200).collect();
            io::Error::other(format!("unreadable answer {start:?}: {e}"))
        })
    }

    /// Closes its stdin (it exits) and waits for it.
    fn stop(self) {
        let Worker { mut child, stdin, .. } = self;
        drop(stdin);
        let _ = child.wait();
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker's side: reads jobs from stdin until it closes, runs each in
/// this process and writes one answer line per job. A `cancel` line cancels
/// the job running then.
pub fn serve_worker() -> io::Result<()> {
    let (jobs, received) = mpsc::channel::<(String, Cancel)>();
    std::thread::Builder::new()
        .name("worker-stdin".into())
        .spawn(move || {
            let mut current = Cancel::new();
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line == CANCEL_LINE {
                    current.cancel();
                    continue;
                }
                current = Cancel::new();
                if jobs.send((line, current.clone())).is_err() {
                    break;
                }
            }
        })?;
    let mut out = BufWriter::new(io::stdout().lock());
    for (line, cancel) in received {
        out.write_all(answer(&line, &cancel).as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

/// The answer line to one job line; a panic becomes an answer saying so.
fn answer(line: &str, cancel: &Cancel) -> String {
    let envelope = match serde_json::from_str::<OwnedEnvelope>(line) {
        Ok(envelope) => envelope,
        Err(e) => {
            return json(&CodeOutcome::invalid(format!(
                "the sandbox worker got an unreadable job: {e}"
            )))
        }
    };
    let span = tracing::info_span!("request", id = envelope.request_id.as_deref().unwrap_or("-"));
    let _entered = span.enter();
    let guarded = |f: &dyn Fn() -> String, on_panic: &dyn Fn(String) -> String| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|panic| on_panic(panic_text(&*panic)))
    };
    let internal = |what: String| format!("internal error in the sandbox worker (please report it): {what}");
    match envelope.job {
        WorkerJob::Verify(job) => guarded(
            &|| {
                json(&verify_in_process(
                    &Job {
                        response: &job.response,
                        tests: &job.tests,
                        time_limit_s: job.time_limit_s,
                        memory_limit_mb: job.memory_limit_mb,
                        all_cases: job.all_cases,
                        time_limit_native_s: job.time_limit_native_s,
                        rules: job.rules,
                    },
                    cancel,
                ))
            },
            &|what| json(&CodeOutcome::invalid(internal(what))),
        ),
        WorkerJob::RunCode(job) => guarded(&|| json(&run_code_in_process(&job, cancel)), &|what| {
            json(&sandbox_error(internal(what)))
        }),
    }
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the answer: {e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Verdict;
    use crate::code::IoCase;

    fn job_tests() -> CodeTests {
        CodeTests::Stdio {
            cases: vec![IoCase {
                input: String::new(),
                output: "1".into(),
            }],
        }
    }

    fn job(tests: &CodeTests) -> Job<'_> {
        Job {
            response: "```python\nprint(1)\n```",
            tests,
            time_limit_s: None,
            memory_limit_mb: None,
            all_cases: false,
            time_limit_native_s: None,
            rules: Rules::default(),
        }
    }

    fn call(workers: &Workers, job: &Job<'_>) -> CodeOutcome {
        workers
            .call(&JobRef::Verify(job), &JobContext::default())
            .unwrap_or_else(CodeOutcome::invalid)
    }

    #[test]
    fn a_worker_that_cannot_start_or_dies_gives_invalid_with_the_reason() {
        if crate::sandbox::test_sandbox().is_none() {
            return;
        }
        let tests = job_tests();
        let missing = Workers::new(PathBuf::from("/nonexistent/reward-server"), Vec::new(), 1);
        let out = call(&missing, &job(&tests));
        assert_eq!(out.verdict, Verdict::Invalid);
        assert!(out.error.unwrap().contains("cannot start a sandbox worker"));
        assert_eq!(missing.lock().running, 0, "a failed start frees its place");

        // `true` exits at once without answering, like a crashed worker: the
        // job is tried on a second worker, then given up.
        let dies = Workers::new(PathBuf::from("true"), Vec::new(), 1);
        for _ in 0..2 {
            let out = call(&dies, &job(&tests));
            assert_eq!(out.verdict, Verdict::Invalid);
            let error = out.error.unwrap();
            assert!(error.contains("worker process failed twice"), "{error}");
        }
        assert_eq!(dies.lock().running, 0);
    }

    #[test]
    fn an_unreadable_job_gets_an_invalid_answer() {
        let bad = answer("{not json", &Cancel::new());
        let outcome: CodeOutcome = serde_json::from_str(&bad).unwrap();
        assert!(outcome.error.unwrap().contains("unreadable job"));
    }
}
