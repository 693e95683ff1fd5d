//! The guest's clocks, driven by the fuel it burns instead of the host's
//! time.
//!
//! CPU budgets are counted in fuel so that verdicts do not depend on load;
//! a program that times itself (`time.perf_counter()` in a search that stops
//! after 1.8 s) must not bring load back in. So `clock_time_get` answers
//! from the fuel burned since the instance started, at
//! [`FUEL_PER_SECOND`]: the guest sees time pass exactly as its budget does.
//! The realtime clock starts at [`REALTIME_START_NS`] (2025-01-01T00:00:00Z)
//! in every run.
//!
//! Waiting is spending: [`poll_oneoff`] (what `time.sleep` and `select` call)
//! never waits on the host's clock. A wait for a clock burns the fuel that
//! much time is worth, at once, so the guest's clocks move on by exactly the
//! time it asked to wait, the wait counts against the case's CPU budget, a
//! wait longer than what is left of the budget ends the case with
//! `time_limit` on the spot, and a short sleep costs no wall time at all.
//! Waits on the standard streams and files never block here (they are in
//! memory), so they are answered as ready at once.

use wasmtime::{Caller, Extern, Trap};

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

/// WASI preview 1's `subscription` (48 bytes) and `event` (32 bytes), as
/// laid out in linear memory.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
/// `eventtype`: `clock`, `fd_read`, `fd_write`.
const EVENT_CLOCK: u8 = 0;
const EVENT_FD_READ: u8 = 1;
const EVENT_FD_WRITE: u8 = 2;
/// `subclockflags::subscription_clock_abstime`.
const CLOCK_ABSTIME: u16 = 1;

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

/// Fuel worth `ns` nanoseconds, rounded up, saturating.
pub(crate) fn fuel_for_nanos(ns: u64) -> u64 {
    let fuel = (u128::from(ns) * u128::from(FUEL_PER_SECOND)).div_ceil(1_000_000_000);
    u64::try_from(fuel).unwrap_or(u64::MAX)
}

/// What clock `id` reads after `spent` fuel, or `None` for an unknown clock.
fn now(id: u32, spent: u64) -> Option<u64> {
    match id {
        // realtime
        0 => Some(REALTIME_START_NS.saturating_add(nanos(spent))),
        // monotonic, process CPU time, thread CPU time
        1..=3 => Some(MONOTONIC_START_NS.saturating_add(nanos(spent))),
        _ => None,
    }
}

/// `wasi_snapshot_preview1::clock_time_get(id, precision, out) -> errno`.
pub(crate) fn clock_time_get(
    mut caller: Caller<'_, GuestState>,
    id: i32,
    _precision: i64,
    out: i32,
) -> wasmtime::Result<i32> {
    let spent = caller.data().clock.spent(caller.get_fuel()?);
    let Some(ns) = now(id as u32, spent) else {
        return Ok(ERRNO_INVAL);
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

/// One subscription of a `poll_oneoff` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// Wake when clock `id` reads `timeout` (absolute) or after `timeout` ns.
    Clock { id: u32, timeout: u64, absolute: bool },
    /// Wake when the descriptor is ready: `fd_read` or `fd_write`.
    Fd { event: u8 },
}

impl Subscription {
    /// Reads one from its 48 bytes; `None` for an unknown tag.
    fn read(bytes: &[u8]) -> Option<(u64, Subscription)> {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let userdata = u64_at(0);
        let sub = match bytes[8] {
            EVENT_CLOCK => Subscription::Clock {
                id: u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")),
                timeout: u64_at(24),
                absolute: u16::from_le_bytes(bytes[40..42].try_into().expect("2 bytes")) & CLOCK_ABSTIME != 0,
            },
            event @ (EVENT_FD_READ | EVENT_FD_WRITE) => Subscription::Fd { event },
            _ => return None,
        };
        Some((userdata, sub))
    }
}

/// The 32 bytes of a successful event.
fn event(userdata: u64, kind: u8, nbytes: u64) -> [u8; EVENT_SIZE] {
    let mut bytes = [0u8; EVENT_SIZE];
    bytes[..8].copy_from_slice(&userdata.to_le_bytes());
    bytes[10] = kind;
    bytes[16..24].copy_from_slice(&nbytes.to_le_bytes());
    bytes
}

/// What a poll does: the events it reports (index of the subscription,
/// event type) and the nanoseconds of guest time it waits first.
fn plan_poll(subs: &[Subscription], spent: u64) -> Result<(Vec<(usize, u8)>, u64), i32> {
    // Descriptors are in memory and always ready: report them, wait for
    // nothing.
    let ready: Vec<(usize, u8)> = subs
        .iter()
        .enumerate()
        .filter_map(|(k, sub)| match sub {
            Subscription::Fd { event } => Some((k, *event)),
            Subscription::Clock { .. } => None,
        })
        .collect();
    if !ready.is_empty() {
        return Ok((ready, 0));
    }
    let mut waits = Vec::with_capacity(subs.len());
    for sub in subs {
        let Subscription::Clock {
            id,
            timeout,
            absolute,
        } = *sub
        else {
            unreachable!("only clocks are left")
        };
        let now = now(id, spent).ok_or(ERRNO_INVAL)?;
        waits.push(if absolute {
            timeout.saturating_sub(now)
        } else {
            timeout
        });
    }
    let wait = waits.iter().copied().min().ok_or(ERRNO_INVAL)?;
    let fired = waits
        .iter()
        .enumerate()
        .filter(|(_, w)| **w == wait)
        .map(|(k, _)| (k, EVENT_CLOCK))
        .collect();
    Ok((fired, wait))
}

/// `wasi_snapshot_preview1::poll_oneoff(in, out, nsubscriptions, nevents)
/// -> errno`, on the guest's fuel clock (see the module docs): the wait is
/// paid in fuel, and a wait past the budget is a `time_limit` at once.
pub(crate) fn poll_oneoff(
    mut caller: Caller<'_, GuestState>,
    subs_ptr: i32,
    events_ptr: i32,
    count: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Ok(ERRNO_FAULT);
    };
    let [subs_ptr, events_ptr, count, nevents_ptr] =
        [subs_ptr, events_ptr, count, nevents_ptr].map(|v| v as u32 as usize);
    if count == 0 {
        return Ok(ERRNO_INVAL);
    }
    let size = memory.data_size(&caller);
    let in_bounds = |at: usize, len: usize| at.checked_add(len).is_some_and(|end| end <= size);
    if !in_bounds(subs_ptr, count.saturating_mul(SUBSCRIPTION_SIZE))
        || !in_bounds(events_ptr, count.saturating_mul(EVENT_SIZE))
        || !in_bounds(nevents_ptr, 4)
    {
        return Ok(ERRNO_FAULT);
    }
    let mut subs = Vec::with_capacity(count);
    let mut userdata = Vec::with_capacity(count);
    {
        let data = memory.data(&caller);
        for k in 0..count {
            let at = subs_ptr + k * SUBSCRIPTION_SIZE;
            let Some((user, sub)) = Subscription::read(&data[at..at + SUBSCRIPTION_SIZE]) else {
                return Ok(ERRNO_INVAL);
            };
            userdata.push(user);
            subs.push(sub);
        }
    }
    let left = caller.get_fuel()?;
    let spent = caller.data().clock.spent(left);
    let (events, wait) = match plan_poll(&subs, spent) {
        Ok(plan) => plan,
        Err(errno) => return Ok(errno),
    };
    let cost = fuel_for_nanos(wait);
    if cost > left {
        // The wait outlasts the budget: the case is out of time now.
        caller.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    caller.set_fuel(left - cost)?;
    for (n, (k, kind)) in events.iter().enumerate() {
        let nbytes = u64::from(*kind != EVENT_CLOCK);
        memory.write(
            &mut caller,
            events_ptr + n * EVENT_SIZE,
            &event(userdata[*k], *kind, nbytes),
        )?;
    }
    memory.write(&mut caller, nevents_ptr, &(events.len() as u32).to_le_bytes())?;
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

    #[test]
    fn fuel_and_nanos_convert_both_ways() {
        assert_eq!(fuel_for_nanos(1_000_000_000), FUEL_PER_SECOND);
        assert_eq!(fuel_for_nanos(1), FUEL_PER_SECOND.div_ceil(1_000_000_000));
        assert_eq!(fuel_for_nanos(u64::MAX), u64::MAX);
        assert_eq!(nanos(fuel_for_nanos(123_456_789)), 123_456_789);
    }

    fn clock(id: u32, timeout: u64, absolute: bool) -> Subscription {
        Subscription::Clock {
            id,
            timeout,
            absolute,
        }
    }

    #[test]
    fn a_poll_waits_for_its_earliest_clock_or_not_at_all() {
        // 1 s of fuel spent: the monotonic clock reads 2 s.
        let spent = FUEL_PER_SECOND;
        assert_eq!(
            plan_poll(&[clock(1, 5_000, false)], spent),
            Ok((vec![(0, EVENT_CLOCK)], 5_000))
        );
        assert_eq!(
            plan_poll(
                &[clock(1, 9, false), clock(1, 3, false), clock(0, 3, false)],
                spent
            ),
            Ok((vec![(1, EVENT_CLOCK), (2, EVENT_CLOCK)], 3))
        );
        // Absolute: until the clock reads the timeout; one in the past is now.
        assert_eq!(
            plan_poll(&[clock(1, MONOTONIC_START_NS + 1_500_000_000, true)], spent),
            Ok((vec![(0, EVENT_CLOCK)], 500_000_000))
        );
        assert_eq!(
            plan_poll(&[clock(0, REALTIME_START_NS, true)], spent),
            Ok((vec![(0, EVENT_CLOCK)], 0))
        );
        // A ready descriptor wins over any clock.
        assert_eq!(
            plan_poll(
                &[clock(1, 5, false), Subscription::Fd { event: EVENT_FD_READ }],
                spent
            ),
            Ok((vec![(1, EVENT_FD_READ)], 0))
        );
        assert_eq!(plan_poll(&[clock(9, 5, false)], spent), Err(ERRNO_INVAL));
    }

    #[test]
    fn subscriptions_are_read_from_their_wasi_layout() {
        let mut bytes = [0u8; SUBSCRIPTION_SIZE];
        bytes[..8].copy_from_slice(&42u64.to_le_bytes());
        bytes[8] = EVENT_CLOCK;
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&7_000u64.to_le_bytes());
        bytes[40..42].copy_from_slice(&CLOCK_ABSTIME.to_le_bytes());
        assert_eq!(Subscription::read(&bytes), Some((42, clock(1, 7_000, true))));
        bytes[8] = EVENT_FD_WRITE;
        assert_eq!(
            Subscription::read(&bytes),
            Some((
                42,
                Subscription::Fd {
                    event: EVENT_FD_WRITE
                }
            ))
        );
        bytes[8] = 9;
        assert_eq!(Subscription::read(&bytes), None);
        let e = event(42, EVENT_FD_READ, 1);
        assert_eq!(&e[..8], &42u64.to_le_bytes());
        assert_eq!((e[10], e[16]), (EVENT_FD_READ, 1));
    }
}
