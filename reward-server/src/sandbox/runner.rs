//! Assert test code that the host cannot decide itself runs in an
//! interpreter of its own, where no submitted program ever runs: the
//! *tests' interpreter*. Its harness (harness.py, "runner" mode) runs the
//! test code in globals where each of the program's functions is a proxy;
//! calling one sends the call, with its arguments as typed data, through
//! the host to the program's interpreter, which runs it and sends back the
//! value (again as data) or the exception it raised. So nothing of the
//! program reaches the tests but data: no object of its, no `__eq__`, no
//! frame, no patched builtin; and the host knows the test code ran to its
//! end because that interpreter, which the program cannot touch, says so.
//!
//! The two interpreters run side by side on one thread: two stores, two
//! futures on one current-thread runtime ([`Sandbox::run_with_runner`]).
//! They talk through the host only, over two channels: the program's
//! [`Session`](super::cases::Session) sends [`ToRunner`] messages (begin,
//! run this chunk, the call returned) and waits, inside its door call, for
//! [`FromRunner`] ones (call this, chunk done, the tests raised, the tests'
//! interpreter stopped); the [`TestRunner`] does the reverse.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::cases::{code_reply, HarnessCode, Next, Reply};
use super::limits::{Limits, Outcome};
use super::run::{async_runtime, Finished, Host, Launch};
use super::streams::{Output, StdinPipe};
use super::{Sandbox, SandboxError};

/// From the program's side to the tests' interpreter.
#[derive(Debug)]
pub(crate) enum ToRunner {
    /// The program ran: these are its functions (and classes) to proxy.
    Begin { names: Vec<String> },
    /// Run this chunk of test code (whole statements, from line `line`).
    Chunk { source: String, line: u32 },
    /// No more chunks.
    Done,
    /// The program's function returned `value` (typed JSON); `args`: its
    /// positional arguments after the call, for the ones it changed in
    /// place.
    Returned { value: String, args: Option<String> },
    /// The program's function raised.
    Threw { kind: String, message: String },
}

/// From the tests' interpreter to the program's side.
#[derive(Debug)]
pub(crate) enum FromRunner {
    /// The test code calls the program's `name(*args, **kwargs)`.
    Call {
        name: String,
        args: String,
        kwargs: String,
    },
    /// The chunk ran to its end.
    ChunkDone,
    /// The test code raised (a failed assert is an `AssertionError`).
    Raised {
        kind: String,
        message: String,
        traceback: String,
    },
    /// The tests' interpreter stopped (a limit, a crash).
    Stopped(Outcome),
}

/// The program's side of the link.
pub(crate) struct RunnerLink {
    pub(crate) to: UnboundedSender<ToRunner>,
    /// Taken while a door call waits on it.
    pub(crate) from: Option<UnboundedReceiver<FromRunner>>,
    /// `Begin` was sent.
    pub(crate) begun: bool,
}

/// The host's side of the tests' interpreter's door. Its harness runs no
/// submitted code, so its frames are trusted as they come.
pub(crate) struct TestRunner {
    to: UnboundedSender<FromRunner>,
    /// Taken while a door call waits on it.
    from: Option<UnboundedReceiver<ToRunner>>,
    harness_code: Arc<OnceLock<HarnessCode>>,
    /// A chunk is running: the next `chunk` frame means it finished.
    in_chunk: bool,
    /// What the harness waits for, while a door call waits.
    waiting: Waiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Nothing,
    Begin,
    Chunk,
    Call,
}

/// A frame from the tests' harness.
#[derive(Deserialize)]
struct Frame {
    op: String,
    name: Option<String>,
    args: Option<String>,
    kwargs: Option<String>,
    kind: Option<String>,
    message: Option<String>,
    traceback: Option<String>,
}

impl TestRunner {
    /// The receiver a waiting door call awaits.
    pub(crate) fn take_inbox(&mut self) -> Option<UnboundedReceiver<ToRunner>> {
        self.from.take()
    }

    /// Gives the receiver back after the wait.
    pub(crate) fn put_inbox(&mut self, inbox: UnboundedReceiver<ToRunner>) {
        self.from = Some(inbox);
    }

    /// Answers one frame of the tests' harness; an `Err` is a frame this
    /// side cannot use (a bug: the instance stops).
    pub(crate) fn answer(&mut self, frame: &[u8]) -> Result<Next, String> {
        let frame: Frame = serde_json::from_slice(frame).map_err(|e| format!("an unreadable frame: {e}"))?;
        let send = |to: &UnboundedSender<FromRunner>, msg| {
            to.send(msg).map_err(|_| "the program's side is gone".to_string())
        };
        match frame.op.as_str() {
            "harness" | "calls" => {
                let code = self.harness_code.get().ok_or("the harness is not compiled yet")?;
                Ok(Next::Reply(code_reply(if frame.op == "harness" {
                    &code.core
                } else {
                    &code.calls
                })))
            }
            "start" => {
                self.waiting = Waiting::Begin;
                Ok(Next::Wait)
            }
            "chunk" => {
                if std::mem::take(&mut self.in_chunk) {
                    send(&self.to, FromRunner::ChunkDone)?;
                }
                self.waiting = Waiting::Chunk;
                Ok(Next::Wait)
            }
            "call" => {
                send(
                    &self.to,
                    FromRunner::Call {
                        name: frame.name.ok_or("`call` without `name`")?,
                        args: frame.args.ok_or("`call` without `args`")?,
                        kwargs: frame.kwargs.unwrap_or_else(|| "{\"dict\":[]}".into()),
                    },
                )?;
                self.waiting = Waiting::Call;
                Ok(Next::Wait)
            }
            "raised" => {
                send(
                    &self.to,
                    FromRunner::Raised {
                        kind: frame.kind.unwrap_or_default(),
                        message: frame.message.unwrap_or_default(),
                        traceback: frame.traceback.unwrap_or_default(),
                    },
                )?;
                Ok(Next::Reply(reply(json!({}))))
            }
            other => Err(format!("an unknown frame `{other}`")),
        }
    }

    /// Answers the waiting frame with what the program's side sent; `None`:
    /// that side is gone (the case ended), and so are the tests.
    pub(crate) fn on_message(&mut self, message: Option<ToRunner>) -> Result<Next, String> {
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Nothing);
        let Some(message) = message else {
            return Err("the program's side is gone".into());
        };
        let body = match (waiting, message) {
            (Waiting::Begin, ToRunner::Begin { names }) => json!({"mode": "runner", "names": names}),
            (Waiting::Chunk, ToRunner::Chunk { source, line }) => {
                self.in_chunk = true;
                json!({"code": source, "line": line})
            }
            (Waiting::Chunk, ToRunner::Done) => json!({"done": true}),
            (Waiting::Call, ToRunner::Returned { value, args }) => json!({"value": value, "args": args}),
            (Waiting::Call, ToRunner::Threw { kind, message }) => json!({"threw": kind, "message": message}),
            (waiting, message) => return Err(format!("{message:?} while waiting for {waiting:?}")),
        };
        Ok(Next::Reply(reply(body)))
    }
}

fn reply(body: serde_json::Value) -> Reply {
    Reply {
        bytes: body.to_string().into_bytes(),
        arm: None,
    }
}

impl Sandbox {
    /// Runs the program's instance (`launch`, whose session needs a tests'
    /// interpreter) and a tests' interpreter side by side until the
    /// program's instance ends; the tests' interpreter then goes too. Waits
    /// for two pool slots at once, so that runs waiting for their second
    /// slot cannot hold every slot.
    pub(crate) fn run_with_runner(&self, mut launch: Launch<'_>) -> Result<Finished, SandboxError> {
        let (to_runner, from_cases) = unbounded_channel();
        let (to_cases, from_runner) = unbounded_channel();
        if let Host::Cases(session) = &mut launch.host {
            session.link_runner(RunnerLink {
                to: to_runner,
                from: Some(from_runner),
                begun: false,
            });
        }
        let limits: Limits = launch.limits.clone();
        let runner = TestRunner {
            to: to_cases.clone(),
            from: Some(from_cases),
            harness_code: Arc::clone(&self.inner.harness_code),
            in_chunk: false,
            waiting: Waiting::Nothing,
        };
        let runtime = async_runtime()?;
        let (program_slot, runner_slot) = self.take_slot_pair();
        let runner_launch = Launch {
            source: super::cases::bootstrap(&self.inner.harness_code),
            stdin: StdinPipe::new(bytes::Bytes::new()),
            output: Output::new(limits.output_bytes),
            limits: &limits,
            // The program's: the door moves it when a case starts, and the
            // tests' interpreter only works within a case.
            deadline: launch.deadline.clone(),
            // A cancelled run stops the tests' interpreter too.
            cancel: launch.cancel.clone(),
            host: Host::Runner(runner),
        };
        runtime.block_on(async {
            let program = self.run_instance_async(launch, program_slot);
            let tests = self.run_instance_async(runner_launch, runner_slot);
            let mut program = std::pin::pin!(program);
            let mut tests = std::pin::pin!(tests);
            let mut tests_running = true;
            loop {
                tokio::select! {
                    finished = &mut program => break finished,
                    stopped = &mut tests, if tests_running => {
                        tests_running = false;
                        let outcome = match stopped {
                            Ok(finished) => finished.outcome,
                            Err(e) => Outcome::RuntimeError(e.to_string()),
                        };
                        let _ = to_cases.send(FromRunner::Stopped(outcome));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> (
        TestRunner,
        UnboundedSender<ToRunner>,
        UnboundedReceiver<FromRunner>,
    ) {
        let (to_runner, from_cases) = unbounded_channel();
        let (to_cases, from_runner) = unbounded_channel();
        let code = Arc::new(OnceLock::new());
        let _ = code.set(HarnessCode {
            core: b"core".to_vec(),
            calls: b"calls".to_vec(),
        });
        (
            TestRunner {
                to: to_cases,
                from: Some(from_cases),
                harness_code: code,
                in_chunk: false,
                waiting: Waiting::Nothing,
            },
            to_runner,
            from_runner,
        )
    }

    fn text(next: Next) -> String {
        match next {
            Next::Reply(reply) => String::from_utf8(reply.bytes).unwrap(),
            Next::Wait => "wait".into(),
        }
    }

    /// The conversation, with the program's side played by hand.
    #[test]
    fn the_runner_relays_chunks_and_calls() {
        let (mut r, _to_runner, mut from_runner) = runner();
        assert_eq!(text(r.answer(br#"{"op":"harness"}"#).unwrap()), "Mcore");
        assert_eq!(text(r.answer(br#"{"op":"start"}"#).unwrap()), "wait");
        let begun = r
            .on_message(Some(ToRunner::Begin {
                names: vec!["f".into()],
            }))
            .unwrap();
        assert_eq!(text(begun), r#"{"mode":"runner","names":["f"]}"#);
        assert_eq!(text(r.answer(br#"{"op":"calls"}"#).unwrap()), "Mcalls");
        assert_eq!(text(r.answer(br#"{"op":"chunk"}"#).unwrap()), "wait");
        let chunk = r
            .on_message(Some(ToRunner::Chunk {
                source: "assert f(1) == 2".into(),
                line: 3,
            }))
            .unwrap();
        assert_eq!(text(chunk), r#"{"code":"assert f(1) == 2","line":3}"#);
        assert_eq!(
            text(r.answer(br#"{"op":"call","name":"f","args":"[1]"}"#).unwrap()),
            "wait"
        );
        assert!(matches!(from_runner.try_recv(), Ok(FromRunner::Call { name, .. }) if name == "f"));
        let value = r
            .on_message(Some(ToRunner::Returned {
                value: "2".into(),
                args: None,
            }))
            .unwrap();
        assert_eq!(text(value), r#"{"args":null,"value":"2"}"#);
        // The next chunk request says the first one finished.
        assert_eq!(text(r.answer(br#"{"op":"chunk"}"#).unwrap()), "wait");
        assert!(matches!(from_runner.try_recv(), Ok(FromRunner::ChunkDone)));
        assert_eq!(
            text(r.on_message(Some(ToRunner::Done)).unwrap()),
            r#"{"done":true}"#
        );
        // Out of turn, or with the program's side gone: the runner stops.
        assert!(r.on_message(Some(ToRunner::Done)).is_err());
        assert!(r.on_message(None).is_err());
        assert!(r.answer(b"not json").is_err());
    }
}
