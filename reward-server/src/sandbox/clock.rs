//! The guest's clocks, driven by the fuel it burns instead of the host's
//! time.
//!
//! CPU budgets are counted in fuel so that verdicts do not depend on load;
//! a program that times itself (`time.perf_counter()` in a search that stops
//! after 1.8 s) must not bring load back in. So `clock_time_get` answers
//! from the fuel burned since the instance started, at
//! [`FUEL_PER_SECOND`]: the guest sees time pass exactly as its budget does.
//! The realtime clock starts at [`REALTIME_START_NS`] (2025-01-01T00:00:00Z)
//! in every run. Sleeping still waits on the host's clock (and the wall
//! backstop ends a long sleep); the guest's clocks do not advance during it.

use wasmtime::{Caller, Extern};

use super::limits::FUEL_PER_SECOND;
use super::run::GuestState;

/// What the realtime clock reads when the guest starts: 2025-01-01T00:00:00Z.
pub(crate) const REALTIME_START_NS: u64 = 1_735_689_600 * 1_000_000_000;

/// What the monotonic and CPU-time clocks read when the guest starts.
pub(crate) const MONOTONIC_START_NS: u64 = 1_000_000_000;

/// WASI's `errno` values used here.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// Fuel burned since the instance started, across the re-arms of each test
/// case's budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FuelClock {
    /// Fuel burned under earlier budgets.
    spent_before: u64,
    /// The budget armed last.
    armed: u64,
}

impl FuelClock {
    /// A clock for an instance whose first budget is `armed`.
    pub(crate) fn new(armed: u64) -> FuelClock {
        FuelClock {
            spent_before: 0,
            armed,
        }
    }

    /// The budget is re-armed to `fuel` while `left` of the old one remained.
    pub(crate) fn rearm(&mut self, left: u64, fuel: u64) {
        self.spent_before = self.spent(left);
        self.armed = fuel;
    }

    /// Fuel burned so far, when `left` remains of the current budget.
    pub(crate) fn spent(&self, left: u64) -> u64 {
        self.spent_before.saturating_add(self.armed.saturating_sub(left))
    }
}

/// Nanoseconds the guest sees for `fuel` burned.
pub(crate) fn nanos(fuel: u64) -> u64 {
    let ns = u128::from(fuel) * 1_000_000_000 / u128::from(FUEL_PER_SECOND);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// `wasi_snapshot_preview1::clock_time_get(id, precision, out) -> errno`.
pub(crate) fn clock_time_get(
    mut caller: Caller<'_, GuestState>,
    id: i32,
    _precision: i64,
    out: i32,
) -> wasmtime::Result<i32> {
    let spent = caller.data().clock.spent(caller.get_fuel()?);
    let ns = match id {
        // realtime
        0 => REALTIME_START_NS.saturating_add(nanos(spent)),
        // monotonic, process CPU time, thread CPU time
        1..=3 => MONOTONIC_START_NS.saturating_add(nanos(spent)),
        _ => return Ok(ERRNO_INVAL),
    };
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Ok(ERRNO_FAULT);
    };
    let out = out as u32 as usize;
    if out + 8 > memory.data_size(&caller) {
        return Ok(ERRNO_FAULT);
    }
    memory.write(&mut caller, out, &ns.to_le_bytes())?;
    Ok(ERRNO_SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_fuel_at_the_calibrated_rate() {
        assert_eq!(nanos(FUEL_PER_SECOND), 1_000_000_000);
        assert_eq!(nanos(FUEL_PER_SECOND / 1000), 1_000_000);
        let mut clock = FuelClock::new(100);
        assert_eq!(clock.spent(100), 0);
        assert_eq!(clock.spent(40), 60);
        // A new case's budget: the 60 already burned stay counted.
        clock.rearm(40, 1000);
        assert_eq!(clock.spent(1000), 60);
        assert_eq!(clock.spent(900), 160);
    }
}
