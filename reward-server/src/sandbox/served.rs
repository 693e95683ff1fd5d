//! A guest that serves jobs: one long-lived instance of trusted guest code
//! that asks the host for an input over the door, answers it, and asks for
//! the next, each job under a fresh fuel and wall-clock budget. It saves an
//! instance's start-up and exit per job (the assert converter:
//! `code::asserts`). Never for submitted code: what one job leaves in the
//! interpreter is there for the next.
//!
//! The guest's side of the protocol, one JSON frame each way:
//!
//! | guest → host | host → guest |
//! |---|---|
//! | `{"op":"next"}` (first frame only) | `{"input": TEXT}` or `{"quit": true}` |
//! | `{"op":"answer","answer":TEXT,"keep":BOOL}` | the next `{"input"}`, or `{"quit": true}` |
//!
//! The host answers `quit` (the guest then exits) when the guest said
//! `"keep": false` (its state changed in a way it cannot vouch for), after
//! [`Retire::jobs`] jobs, when its linear memory passed
//! [`Retire::memory_bytes`], or when the [`Served`] handle was dropped.
//! Each instance runs on a thread of its own, parked in its door call
//! between jobs; parked instances do not count as busy.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::cancel::Cancel;
use super::cases::{Arm, Broken, Next, Reply};
use super::limits::{Limits, Outcome};
use super::run::{Deadline, Host, Launch};
use super::streams::{Output, StdinPipe};
use super::Sandbox;
#[cfg(test)]
use super::POOL_SLOTS;

/// When a served instance is ended after an answer.
#[derive(Debug, Clone, Copy)]
pub struct Retire {
    /// After this many jobs.
    pub jobs: usize,
    /// Once its linear memory is larger than this.
    pub memory_bytes: usize,
}

/// What a served instance said to one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Its answer.
    Answer {
        /// The guest's answer.
        text: String,
        /// The instance ended after it.
        retired: bool,
    },
    /// The instance stopped during the job (a limit, a crash): how, and
    /// what it wrote to stderr for this job.
    Stopped {
        /// How the instance ended.
        outcome: Outcome,
        /// What it wrote to stderr during the job.
        stderr: String,
    },
    /// The instance was gone before it took the job (it failed to start, or
    /// ended earlier); nothing ran.
    Gone,
}

/// A long-lived instance taking jobs; dropping it ends the instance once it
/// is parked.
pub struct ServedGuest {
    jobs: UnboundedSender<Job>,
    /// It answered with `retired`, or stopped.
    ended: bool,
}

struct Job {
    input: String,
    reply: mpsc::Sender<Served>,
}

impl ServedGuest {
    /// Gives the instance `input` and waits for its answer (at most the
    /// per-job wall budget, after which the instance is stopped).
    pub fn ask(&mut self, input: &str) -> Served {
        if self.ended {
            return Served::Gone;
        }
        let (reply, answer) = mpsc::channel();
        let job = Job {
            input: input.to_owned(),
            reply,
        };
        let served = match self.jobs.send(job) {
            Ok(()) => answer.recv().unwrap_or(Served::Gone),
            Err(_) => Served::Gone,
        };
        if !matches!(served, Served::Answer { retired: false, .. }) {
            self.ended = true;
        }
        served
    }

    /// Whether the instance takes no more jobs.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

impl Sandbox {
    /// Starts `python -c source` (with `stdin`) as a served instance on a
    /// thread of its own. `limits.fuel` and `limits.wall` are each job's
    /// budget (start-up runs under them too); memory and output limits hold
    /// for the instance's life, output being emptied at every job.
    pub fn serve_python(
        &self,
        source: &str,
        stdin: Vec<u8>,
        limits: Limits,
        retire: Retire,
    ) -> std::io::Result<ServedGuest> {
        let (jobs, inbox) = unbounded_channel();
        let sandbox = self.clone();
        let source = source.to_owned();
        std::thread::Builder::new()
            .name("served-guest".into())
            .spawn(move || sandbox.run_served(&source, stdin, &limits, retire, inbox))?;
        Ok(ServedGuest { jobs, ended: false })
    }

    fn run_served(
        &self,
        source: &str,
        stdin: Vec<u8>,
        limits: &Limits,
        retire: Retire,
        inbox: UnboundedReceiver<Job>,
    ) {
        let output = Output::new(limits.output_bytes);
        let deadline = Deadline::after(limits.wall);
        let host = ServedHost {
            inbox: Some(inbox),
            current: None,
            deadline: deadline.clone(),
            output: output.clone(),
            limits: limits.clone(),
            retire,
            jobs: 0,
            parked: None,
            sandbox: self.clone(),
        };
        let Ok(finished) = self.run_instance(Launch {
            source,
            stdin: StdinPipe::new(stdin),
            output: output.clone(),
            limits,
            deadline,
            cancel: Cancel::new(),
            host: Host::Served(host),
        }) else {
            // The host state is gone with the error: the asker sees `Gone`.
            return;
        };
        if let Host::Served(host) = finished.host {
            if let Some(reply) = host.current {
                let (_, stderr) = output.take();
                let _ = reply.send(Served::Stopped {
                    outcome: finished.outcome,
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                });
            }
        }
    }
}

/// The host's side of a served instance's door.
pub(crate) struct ServedHost {
    /// Taken while a door call waits on it.
    inbox: Option<UnboundedReceiver<Job>>,
    /// Where the answer to the job in progress goes.
    current: Option<mpsc::Sender<Served>>,
    deadline: Deadline,
    output: Output,
    limits: Limits,
    retire: Retire,
    /// Jobs handed out so far.
    jobs: usize,
    /// Counted as parked in the sandbox (not busy) since this guard.
    parked: Option<Parked>,
    sandbox: Sandbox,
}

/// One parked instance in the sandbox's count, until dropped.
struct Parked(Sandbox);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.inner.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Deserialize)]
struct Frame {
    op: String,
    answer: Option<String>,
    keep: Option<bool>,
}

impl ServedHost {
    /// The guest's frame: `next` waits for a job; `answer` goes to the
    /// asker, then the instance waits for the next job or quits.
    pub(crate) fn answer(&mut self, request: &[u8], memory_bytes: usize) -> Result<Next, Broken> {
        let frame: Frame =
            serde_json::from_slice(request).map_err(|e| Broken(format!("an unreadable frame: {e}")))?;
        match (frame.op.as_str(), self.current.take()) {
            ("next", None) if self.jobs == 0 => Ok(Next::Wait),
            ("answer", Some(reply)) => {
                let text = frame
                    .answer
                    .ok_or_else(|| Broken("an answer frame without its answer".into()))?;
                let retired = !frame.keep.unwrap_or(false)
                    || self.jobs >= self.retire.jobs
                    || memory_bytes > self.retire.memory_bytes;
                let _ = reply.send(Served::Answer { text, retired });
                Ok(if retired { Next::Reply(quit()) } else { Next::Wait })
            }
            (op, _) => Err(Broken(format!("a `{op}` frame out of turn"))),
        }
    }

    /// Waits, parked, for the next job and hands it out with a fresh budget;
    /// `quit` when the handle is gone.
    pub(crate) async fn wait(&mut self) -> Result<Next, Broken> {
        let Some(mut inbox) = self.inbox.take() else {
            return Err(Broken("the served instance lost its inbox".into()));
        };
        // No backstop while parked: nothing runs.
        self.deadline.reset(Duration::MAX);
        self.sandbox.inner.parked.fetch_add(1, Ordering::Relaxed);
        self.parked = Some(Parked(self.sandbox.clone()));
        let job = inbox.recv().await;
        self.unpark();
        self.inbox = Some(inbox);
        let Some(job) = job else {
            return Ok(Next::Reply(quit()));
        };
        self.jobs += 1;
        self.current = Some(job.reply);
        self.output.reset();
        self.deadline.reset(self.limits.wall);
        Ok(Next::Reply(Reply {
            bytes: json!({ "input": job.input }).to_string().into_bytes(),
            arm: Some(Arm {
                fuel: self.limits.fuel,
                epoch_ticks: 1,
            }),
        }))
    }

    fn unpark(&mut self) {
        self.parked = None;
    }
}

fn quit() -> Reply {
    Reply {
        bytes: br#"{"quit":true}"#.to_vec(),
        arm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::fuel_for;

    /// Counts its jobs (so one instance answered them all), upper-cases the
    /// input, spins on `spin`, works 200 ms of fuel on `work`, and keeps
    /// going unless the input is `once`.
    const ECHO: &str = r#"
import _host, json, time
frame = '{"op":"next"}'
count = 0
while True:
    job = json.loads(_host.call(frame.encode()))
    if job.get("quit"):
        break
    count += 1
    text = job["input"]
    if text == "spin":
        while True:
            pass
    if text == "work":
        # The guest's clock follows its fuel.
        until = time.perf_counter() + 0.2
        while time.perf_counter() < until:
            pass
    if text == "raise":
        raise ValueError("asked to")
    frame = json.dumps({"op": "answer", "answer": f"{count}:{text.upper()}", "keep": text != "once"})
"#;

    fn limits() -> Limits {
        Limits {
            fuel: fuel_for(Duration::from_millis(300)),
            wall: Duration::from_secs(10),
            memory_bytes: 256 << 20,
            output_bytes: 1 << 20,
        }
    }

    const LOOSE: Retire = Retire {
        jobs: 1000,
        memory_bytes: 1 << 30,
    };

    fn answer(text: &str, retired: bool) -> Served {
        Served::Answer {
            text: text.into(),
            retired,
        }
    }

    #[test]
    fn one_instance_answers_job_after_job() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), LOOSE).unwrap();
        assert_eq!(guest.ask("a"), answer("1:A", false));
        assert_eq!(guest.ask("b"), answer("2:B", false));
        assert_eq!(guest.ask("c"), answer("3:C", false));
        assert!(!guest.ended());
    }

    #[test]
    fn each_job_has_its_own_fuel() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        // Three jobs of 200 ms each fit a 300 ms budget only if it is
        // reset for each.
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), LOOSE).unwrap();
        for k in 1..=3 {
            assert_eq!(guest.ask("work"), answer(&format!("{k}:WORK"), false));
        }
        let stopped = guest.ask("spin");
        assert_eq!(
            stopped,
            Served::Stopped {
                outcome: Outcome::TimeLimit,
                stderr: String::new()
            }
        );
        assert!(guest.ended());
        assert_eq!(guest.ask("a"), Served::Gone);
    }

    #[test]
    fn a_crash_during_a_job_is_reported_with_its_stderr() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), LOOSE).unwrap();
        assert_eq!(guest.ask("a"), answer("1:A", false));
        let Served::Stopped { outcome, stderr } = guest.ask("raise") else {
            panic!("the job should stop the instance");
        };
        assert_eq!(outcome, Outcome::Exited(1));
        assert!(stderr.contains("ValueError: asked to"), "{stderr}");
    }

    #[test]
    fn instances_retire_when_told_or_after_their_jobs() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), LOOSE).unwrap();
        assert_eq!(guest.ask("once"), answer("1:ONCE", true));
        assert_eq!(guest.ask("a"), Served::Gone);

        let two = Retire { jobs: 2, ..LOOSE };
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), two).unwrap();
        assert_eq!(guest.ask("a"), answer("1:A", false));
        assert_eq!(guest.ask("b"), answer("2:B", true));
        assert_eq!(guest.ask("c"), Served::Gone);

        // The snapshot's heap alone is larger than this.
        let small = Retire {
            memory_bytes: 1 << 20,
            ..LOOSE
        };
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), small).unwrap();
        assert_eq!(guest.ask("a"), answer("1:A", true));
    }

    #[test]
    fn a_guest_that_never_asks_is_gone() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        let mut guest = sandbox.serve_python("pass", Vec::new(), limits(), LOOSE).unwrap();
        assert_eq!(guest.ask("a"), Served::Gone);
        // A frame out of turn ends it too.
        let mut guest = sandbox
            .serve_python(
                "import _host\n_host.call(b'{\"op\":\"answer\",\"answer\":\"x\"}')",
                Vec::new(),
                limits(),
                LOOSE,
            )
            .unwrap();
        assert_eq!(guest.ask("a"), Served::Gone);
    }

    #[test]
    fn a_parked_instance_is_not_busy_and_ends_with_its_handle() {
        if crate::sandbox::test_sandbox().is_none() {
            return;
        }
        // A sandbox of its own, so that other tests' instances do not count.
        let sandbox = Sandbox::load(&crate::sandbox::default_guest_dir()).expect("the guest loads");
        let parked = || sandbox.inner.parked.load(Ordering::Relaxed);
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let until = std::time::Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(std::time::Instant::now() < until, "{what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let mut guest = sandbox.serve_python(ECHO, Vec::new(), limits(), LOOSE).unwrap();
        assert_eq!(guest.ask("a"), answer("1:A", false));
        wait_for("the instance never parked", &|| parked() == 1);
        assert_eq!(sandbox.busy_instances(), 0);
        drop(guest);
        wait_for("the instance did not end with its handle", &|| {
            parked() == 0
                && sandbox.busy_instances() == 0
                && sandbox
                    .inner
                    .slots
                    .free
                    .lock()
                    .is_ok_and(|free| *free == POOL_SLOTS)
        });
    }
}
