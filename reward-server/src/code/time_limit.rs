//! The CPU budget of a code item, from its `time_limit_s` (seconds of fuel
//! at [`FUEL_PER_SECOND`]) or its `time_limit_native_s` (seconds of native
//! CPython, converted with [`NATIVE_FUEL_PER_SECOND`]), or from the default
//! of its `compare` mode.
//!
//! A benchmark states its limits in seconds of a native CPython process
//! (LiveCodeBench: 6 s per case). The guest runs compute-bound Python
//! several times slower than native CPython, so the same number of fuel
//! seconds would give `time_limit` to programs the benchmark accepts. The
//! conversion factor is a committed constant, so verdicts still depend only
//! on the fuel count; `bench/native_time.sh` measured it (docs/CODE.md,
//! "Time limits").

use std::time::Duration;

use super::modes::{native_time_limit, CompareMode};
use super::{item_limits, MAX_TIME_LIMIT_S};
use crate::sandbox::limits::FUEL_PER_SECOND;
use crate::sandbox::Limits;

/// Fuel the guest burns for a program that native CPython runs in one
/// second of CPU, on the reference machine.
///
/// Measured by `bench/native_time.sh` on the 2-core development VM, against
/// Debian's CPython 3.11.2 (the fastest CPython there), guest CPython 3.15
/// under wasmtime 48: over fourteen typical workloads the guest burned
/// 10.6 G (sorting, `heapq`: C code) to 66.9 G (a tight integer loop) fuel
/// per native second, median 37.9 G. We take the highest, so a program
/// within a benchmark's native limit on that machine is within its fuel
/// budget here whatever kind of work it does; the C-heavy kinds get up to
/// 6.3 times more room than natively. (docs/CODE.md §13, docs/BENCHMARKS.md.)
pub const NATIVE_FUEL_PER_SECOND: u64 = 67_000_000_000;

/// Longest `time_limit_native_s` an item may ask for.
pub const MAX_NATIVE_TIME_LIMIT_S: f64 = MAX_TIME_LIMIT_S;

/// Fuel seconds (the unit of `time_limit_s`) per native second.
pub fn native_to_fuel_seconds(native_s: f64) -> f64 {
    native_s * NATIVE_FUEL_PER_SECOND as f64 / FUEL_PER_SECOND as f64
}

/// Native seconds for `fuel` units (for reports, e.g. a reference run).
pub fn fuel_to_native_seconds(fuel: u64) -> f64 {
    fuel as f64 / NATIVE_FUEL_PER_SECOND as f64
}

/// The limits of an item: its time in one of the two units (not both),
/// else its mode's native default, else the fuel default; and its memory.
pub fn code_limits(
    time_limit_s: Option<f64>,
    time_limit_native_s: Option<f64>,
    memory_limit_mb: Option<u64>,
    mode: CompareMode,
) -> Result<Limits, String> {
    let native = match (time_limit_s, time_limit_native_s) {
        (Some(_), Some(_)) => {
            return Err("give `time_limit_s` or `time_limit_native_s`, not both".into());
        }
        (Some(_), None) => None,
        (None, Some(n)) => Some(n),
        (None, None) => native_time_limit(mode),
    };
    let mut limits = item_limits(time_limit_s, memory_limit_mb)?;
    if let Some(n) = native {
        if !(n > 0.0 && n <= MAX_NATIVE_TIME_LIMIT_S) {
            return Err(format!(
                "`time_limit_native_s` must be in (0, {MAX_NATIVE_TIME_LIMIT_S}], got {n}"
            ));
        }
        let memory = limits.memory_bytes;
        limits = Limits::with_time(Duration::from_secs_f64(native_to_fuel_seconds(n)));
        limits.memory_bytes = memory;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::fuel_for;

    #[test]
    fn native_seconds_become_fuel_with_the_committed_factor() {
        let l = code_limits(None, Some(2.0), Some(256), CompareMode::Default).unwrap();
        assert_eq!(
            l.fuel,
            fuel_for(Duration::from_secs_f64(native_to_fuel_seconds(2.0)))
        );
        assert!(l.fuel.abs_diff(2 * NATIVE_FUEL_PER_SECOND) < 16, "{}", l.fuel);
        assert_eq!(l.memory_bytes, 256 << 20);
        // A benchmark mode without a limit gets the benchmark's.
        let lcb = code_limits(None, None, None, CompareMode::Lcb).unwrap();
        assert!(lcb.fuel.abs_diff(6 * NATIVE_FUEL_PER_SECOND) < 16);
        assert_eq!(
            code_limits(None, None, None, CompareMode::Default).unwrap(),
            Limits::default()
        );
        // An explicit fuel limit wins over the mode's default.
        assert_eq!(
            code_limits(Some(1.0), None, None, CompareMode::Lcb).unwrap().fuel,
            FUEL_PER_SECOND
        );
        assert!(code_limits(Some(1.0), Some(1.0), None, CompareMode::Default)
            .unwrap_err()
            .contains("not both"));
        assert!(code_limits(None, Some(0.0), None, CompareMode::Default).is_err());
        assert!(code_limits(None, Some(61.0), None, CompareMode::Default).is_err());
        assert!(fuel_to_native_seconds(3 * NATIVE_FUEL_PER_SECOND) == 3.0);
    }
}
