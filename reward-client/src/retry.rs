//! The retry policy as pure functions: backoff delays, `Retry-After`
//! parsing, and which endpoint gets the next attempt.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    /// The first retry waits between `base / 2` and `base`.
    pub(crate) base: Duration,
    /// No exponential delay is longer than this.
    pub(crate) cap: Duration,
    /// A server's `Retry-After` is honoured up to this long.
    pub(crate) max_retry_after: Duration,
}

impl Backoff {
    /// How long to wait after failed attempt number `attempt` (0 for the
    /// first attempt), given the server's `Retry-After` if it sent one, and
    /// `jitter`, a number in `[0, 1)`.
    ///
    /// Without `Retry-After`: exponential backoff with "equal jitter", a
    /// delay in `[d/2, d)` where `d = min(cap, base * 2^attempt)`, so that
    /// clients hit by the same failure do not come back in step.
    ///
    /// With `Retry-After`: at least what the server asked (capped at
    /// `max_retry_after`), plus up to `min(base, 1 s)` of jitter.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let jitter = jitter.clamp(0.0, 1.0);
        if let Some(asked) = retry_after {
            let spread = self.base.min(Duration::from_secs(1));
            return asked.min(self.max_retry_after) + spread.mul_f64(jitter);
        }
        let d = self.base.saturating_mul(1u32 << attempt.min(31)).min(self.cap);
        d / 2 + (d / 2).mul_f64(jitter)
    }
}

/// The delay of a `Retry-After` header value: delta-seconds (`"1"`, also a
/// decimal `"1.5"`). `None` for an HTTP date or anything unreadable, and the
/// caller falls back to its own backoff.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let seconds: f64 = value.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// Which endpoints may take a request now: the round-robin position and,
/// per endpoint, the instant before which it should not be used (set after
/// a failure to that failure's backoff).
#[derive(Debug)]
pub(crate) struct EndpointState {
    next: usize,
    not_before: Vec<Option<Instant>>,
}

impl EndpointState {
    /// `n` endpoints, all healthy, starting with the first.
    pub(crate) fn new(n: usize) -> EndpointState {
        assert!(n > 0, "at least one endpoint");
        EndpointState {
            next: 0,
            not_before: vec![None; n],
        }
    }

    /// The endpoint for the next attempt at `now`, and how long to wait
    /// before using it: the next endpoint round-robin that is not backing
    /// off (wait zero); when every one is, the one free soonest.
    pub(crate) fn pick(&mut self, now: Instant) -> (usize, Duration) {
        let n = self.not_before.len();
        let order = (0..n).map(|k| (self.next + k) % n);
        let free = order
            .clone()
            .find(|&i| self.not_before[i].is_none_or(|t| t <= now));
        // `min_by_key` keeps the first of equals: round-robin order breaks ties.
        let chosen = free.unwrap_or_else(|| {
            order
                .min_by_key(|&i| self.not_before[i])
                .expect("at least one endpoint")
        });
        self.next = (chosen + 1) % n;
        let wait = self.not_before[chosen].map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        (chosen, wait)
    }

    /// Endpoint `i` failed: keep it out of rotation until `until` (or
    /// longer, if another failure already said so).
    pub(crate) fn failed(&mut self, i: usize, until: Instant) {
        let slot = &mut self.not_before[i];
        *slot = Some(slot.map_or(until, |t| t.max(until)));
    }

    /// When endpoint `i` may be used again, if it is resting.
    pub(crate) fn not_before(&self, i: usize) -> Option<Instant> {
        self.not_before[i]
    }

    /// Endpoint `i` answered: back in rotation.
    pub(crate) fn succeeded(&mut self, i: usize) {
        self.not_before[i] = None;
    }
}

/// A number in `[0, 1)` for jitter: splitmix64 over a counter seeded from
/// the process's random hash keys. Not for anything but spreading retries.
pub(crate) fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        seed = RandomState::new().hash_one(Instant::now()) | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn default_backoff() -> Backoff {
        Backoff {
            base: 100 * MS,
            cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_doubles_from_base_to_cap_with_equal_jitter() {
        let b = default_backoff();
        // jitter 0 gives d/2, jitter near 1 gives nearly d.
        let low: Vec<u128> = (0..10).map(|k| b.delay(k, None, 0.0).as_millis()).collect();
        assert_eq!(low, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        let high: Vec<u128> = (0..10).map(|k| b.delay(k, None, 0.999_999).as_millis()).collect();
        assert_eq!(high, [99, 199, 399, 799, 1599, 3199, 6399, 9999, 9999, 9999]);
        assert_eq!(b.delay(3, None, 0.5), 600 * MS);
        // Huge attempt numbers neither overflow nor pass the cap.
        assert_eq!(b.delay(1000, None, 0.0), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX, None, 1.0), Duration::from_secs(10));
        // Out-of-range jitter is clamped.
        assert_eq!(b.delay(0, None, -3.0), 50 * MS);
    }

    #[test]
    fn retry_after_is_honoured_never_less_and_capped() {
        let b = default_backoff();
        let one = Duration::from_secs(1);
        assert_eq!(b.delay(0, Some(one), 0.0), one);
        assert_eq!(b.delay(7, Some(one), 0.0), one, "not the exponential delay");
        assert_eq!(
            b.delay(0, Some(one), 0.5),
            one + 50 * MS,
            "jitter up to min(base, 1 s)"
        );
        assert_eq!(b.delay(0, Some(Duration::ZERO), 0.0), Duration::ZERO);
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(3600)), 0.0),
            Duration::from_secs(60)
        );
        let slow = Backoff {
            base: Duration::from_secs(5),
            ..b
        };
        assert_eq!(slow.delay(0, Some(one), 0.5), one + 500 * MS);
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(1500 * MS));
        for bad in [
            "",
            "-1",
            "soon",
            "1e3",
            "inf",
            "NaN",
            "1.2.3",
            ".",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "99999999999999999999999999",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_robin_when_all_are_healthy() {
        let now = Instant::now();
        let mut s = EndpointState::new(3);
        let picks: Vec<usize> = (0..7).map(|_| s.pick(now).0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert!((0..3).all(|_| s.pick(now).1.is_zero()));
    }

    #[test]
    fn a_failed_endpoint_is_skipped_for_its_backoff() {
        let now = Instant::now();
        let mut s = EndpointState::new(3);
        s.failed(1, now + 500 * MS);
        let picks: Vec<(usize, Duration)> = (0..4).map(|_| s.pick(now)).collect();
        let zero = Duration::ZERO;
        assert_eq!(picks, [(0, zero), (2, zero), (0, zero), (2, zero)]);
        // Once its time has come, it is back in rotation.
        let later = now + 500 * MS;
        let picks: Vec<usize> = (0..3).map(|_| s.pick(later).0).collect();
        assert_eq!(picks, [0, 1, 2]);
        // A success puts it back at once.
        s.failed(2, later + Duration::from_secs(9));
        s.succeeded(2);
        assert_eq!((0..3).map(|_| s.pick(later).0).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn when_all_back_off_the_soonest_free_is_chosen_with_its_wait() {
        let now = Instant::now();
        let mut s = EndpointState::new(3);
        s.failed(0, now + 300 * MS);
        s.failed(1, now + 100 * MS);
        s.failed(2, now + 200 * MS);
        assert_eq!(s.pick(now), (1, 100 * MS));
        // A later failure does not shorten an earlier, longer backoff.
        s.failed(0, now + 10 * MS);
        assert_eq!(s.pick(now + 250 * MS), (2, Duration::ZERO));
        // Ties go round-robin.
        let mut t = EndpointState::new(2);
        t.failed(0, now + MS);
        t.failed(1, now + MS);
        assert_eq!(t.pick(now).0, 0);
        assert_eq!(t.pick(now).0, 1);
    }

    #[test]
    fn jitter_is_in_the_unit_interval_and_varies() {
        let xs: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
