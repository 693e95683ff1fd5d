//! Code verification in worker processes.
//!
//! Many threads running guests in one process scale badly: every run dirties
//! and resets pages of its pooled linear memory, and each such page-table
//! change in a shared address space costs a TLB shoot-down on every core
//! running the process. Measured on 2 cores with 1,000 single-case items:
//! one thread graded them in 2.5 s, two threads in 3.4 s (kernel time 1.0 s
//! against 4.0 s), while two processes of one thread each took 1.7 s.
//!
//! So `reward-server grade` verifies code items in worker processes, one per
//! grading thread: the same binary started as `reward-server sandbox-worker`,
//! one job per line on its stdin, one outcome per line on its stdout.
//! [`verify_item`] sends a job to a free worker when [`use_worker_processes`]
//! set them up, and verifies in this process otherwise (the library's
//! default, and what the unit tests use).

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::time_limit::code_limits;
use super::{shared_sandbox_or_error, verify_with, CodeOutcome, CodeTests, Rules};

/// The hidden subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "sandbox-worker";

/// One code item to verify: what [`verify`] needs, with the item's limits as
/// given.
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

/// Verifies `job` in this process.
pub fn verify_in_process(job: &Job<'_>) -> CodeOutcome {
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
        Ok(sandbox) => verify_with(
            sandbox,
            job.response,
            job.tests,
            &limits,
            job.all_cases,
            &job.rules,
        ),
        Err(why) => CodeOutcome::invalid(why),
    }
}

/// The worker processes, when [`use_worker_processes`] set them up.
static WORKERS: RwLock<Option<Arc<Workers>>> = RwLock::new(None);

/// From now on, [`verify_item`] runs jobs in up to `count` worker processes
/// started from `exe` (this program's binary). They start when first needed.
pub fn use_worker_processes(exe: PathBuf, count: usize) {
    let workers = Workers::new(exe, count);
    *WORKERS.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(workers));
}

/// Stops the worker processes (each exits when its stdin closes) and goes
/// back to verifying in this process.
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
    let workers = WORKERS.read().unwrap_or_else(PoisonError::into_inner).clone();
    workers.map_or(0, |w| {
        let pool = w.lock();
        pool.running - pool.idle.len()
    })
}

/// Verifies `job` in a worker process when they are set up, else here.
pub fn verify_item(job: &Job<'_>) -> CodeOutcome {
    let workers = WORKERS.read().unwrap_or_else(PoisonError::into_inner).clone();
    match workers {
        Some(workers) => workers.verify(job),
        None => verify_in_process(job),
    }
}

struct Workers {
    exe: PathBuf,
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
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Workers {
    fn new(exe: PathBuf, count: usize) -> Workers {
        Workers {
            exe,
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

    fn verify(&self, job: &Job<'_>) -> CodeOutcome {
        let mut worker = match self.take() {
            Ok(worker) => worker,
            Err(why) => return CodeOutcome::invalid(why),
        };
        match worker.exchange(job) {
            Ok(outcome) => {
                self.lock().idle.push(worker);
                self.freed.notify_one();
                outcome
            }
            Err(e) => {
                tracing::error!("a sandbox worker failed and was stopped: {e}");
                worker.kill();
                self.lock().running -= 1;
                self.freed.notify_one();
                CodeOutcome::invalid(format!("the sandbox worker process failed: {e}"))
            }
        }
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
            stdin: BufWriter::new(stdin),
            stdout: BufReader::new(stdout),
        })
    }
}

impl Worker {
    fn exchange(&mut self, job: &Job<'_>) -> io::Result<CodeOutcome> {
        serde_json::to_writer(&mut self.stdin, job)?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(io::Error::other(format!("it exited ({status})")));
        }
        serde_json::from_str(&line).map_err(|e| io::Error::other(format!("unreadable answer {line:?}: {e}")))
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

/// The worker's side: reads jobs from stdin until it closes, verifies each
/// in this process and writes one reply line per job.
pub fn serve_worker() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let line = line?;
        let outcome = match serde_json::from_str::<OwnedJob>(&line) {
            Ok(job) => verify_in_process(&Job {
                response: &job.response,
                tests: &job.tests,
                time_limit_s: job.time_limit_s,
                memory_limit_mb: job.memory_limit_mb,
                all_cases: job.all_cases,
                time_limit_native_s: job.time_limit_native_s,
                rules: job.rules,
            }),
            Err(e) => CodeOutcome::invalid(format!("the sandbox worker got an unreadable job: {e}")),
        };
        serde_json::to_writer(&mut out, &outcome)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
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

    #[test]
    fn a_worker_that_cannot_start_or_dies_gives_invalid_with_the_reason() {
        if crate::sandbox::test_sandbox().is_none() {
            return;
        }
        let tests = job_tests();
        let missing = Workers::new(PathBuf::from("/nonexistent/reward-server"), 1);
        let out = missing.verify(&job(&tests));
        assert_eq!(out.verdict, Verdict::Invalid);
        assert!(out.error.unwrap().contains("cannot start a sandbox worker"));
        assert_eq!(missing.lock().running, 0, "a failed start frees its place");

        // `true` exits at once without answering, like a crashed worker.
        let dies = Workers::new(PathBuf::from("true"), 1);
        for _ in 0..2 {
            let out = dies.verify(&job(&tests));
            assert_eq!(out.verdict, Verdict::Invalid);
            assert!(out.error.unwrap().contains("worker process failed"));
        }
        assert_eq!(dies.lock().running, 0);
    }
}
