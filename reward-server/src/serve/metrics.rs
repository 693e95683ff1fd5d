//! The service's counters and histograms, rendered in the Prometheus text
//! format for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A histogram with [`BUCKETS`].
#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
struct Inner {
    /// (path, status) -> requests.
    requests: BTreeMap<(String, u16), u64>,
    /// path -> request latency.
    request_seconds: BTreeMap<String, Histogram>,
    /// (task, verdict) -> items.
    items: BTreeMap<(String, String), u64>,
    /// task -> item grading latency.
    item_seconds: BTreeMap<String, Histogram>,
}

/// Everything `/metrics` reports that is counted as it happens.
#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

/// Values read at render time rather than counted.
pub(crate) struct Gauges {
    /// Requests admitted and not finished (being read, parsed or graded).
    pub(crate) queue_depth: usize,
    /// The admission limit (`--queue`).
    pub(crate) queue_limit: usize,
    /// Sandbox worker processes busy with a code item, plus guests running
    /// in this process (`/run_code`).
    pub(crate) sandbox_busy: usize,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one finished request.
    pub(crate) fn request(&self, path: &str, status: u16, elapsed: Duration) {
        let mut inner = self.lock();
        *inner.requests.entry((path.to_string(), status)).or_default() += 1;
        inner
            .request_seconds
            .entry(path.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one graded item.
    pub(crate) fn item(&self, task: &str, verdict: &str, elapsed_ms: f64) {
        let mut inner = self.lock();
        *inner
            .items
            .entry((task.to_string(), verdict.to_string()))
            .or_default() += 1;
        inner
            .item_seconds
            .entry(task.to_string())
            .or_default()
            .observe(elapsed_ms / 1e3);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP reward_requests_total HTTP requests answered, by path and status."
        );
        let _ = writeln!(out, "# TYPE reward_requests_total counter");
        for ((path, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "reward_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}"
            );
        }
        histograms(
            &mut out,
            "reward_request_duration_seconds",
            "Time to answer a request, by path.",
            "path",
            &inner.request_seconds,
        );
        let _ = writeln!(
            out,
            "# HELP reward_items_total Items graded, by task and verdict."
        );
        let _ = writeln!(out, "# TYPE reward_items_total counter");
        for ((task, verdict), n) in &inner.items {
            let _ = writeln!(
                out,
                "reward_items_total{{task=\"{task}\",verdict=\"{verdict}\"}} {n}"
            );
        }
        histograms(
            &mut out,
            "reward_item_duration_seconds",
            "Time to grade one item, by task.",
            "task",
            &inner.item_seconds,
        );
        for (name, help, value) in [
            (
                "reward_queue_depth",
                "Requests admitted and not yet answered.",
                gauges.queue_depth,
            ),
            (
                "reward_queue_limit",
                "Requests admitted at most (--queue); beyond it, 503.",
                gauges.queue_limit,
            ),
            (
                "reward_sandbox_busy",
                "Sandboxes busy: worker processes running a code item, plus guests running in the server (/run_code).",
                gauges.sandbox_busy,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn histograms(out: &mut String, name: &str, help: &str, label: &str, by: &BTreeMap<String, Histogram>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (value, h) in by {
        for (bound, count) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", h.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.request("/v1/reward", 200, Duration::from_millis(3));
        m.request("/v1/reward", 200, Duration::from_millis(30));
        m.request("/v1/reward", 503, Duration::from_micros(50));
        m.item("math", "correct", 0.01);
        m.item("code", "time_limit", 2500.0);
        let text = m.render(&Gauges {
            queue_depth: 2,
            queue_limit: 64,
            sandbox_busy: 1,
        });
        assert!(
            text.contains("reward_requests_total{path=\"/v1/reward\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("reward_requests_total{path=\"/v1/reward\",status=\"503\"} 1"));
        assert!(text.contains("reward_request_duration_seconds_bucket{path=\"/v1/reward\",le=\"0.005\"} 2"));
        assert!(text.contains("reward_request_duration_seconds_bucket{path=\"/v1/reward\",le=\"+Inf\"} 3"));
        assert!(text.contains("reward_items_total{task=\"code\",verdict=\"time_limit\"} 1"));
        assert!(text.contains("reward_item_duration_seconds_bucket{task=\"code\",le=\"2.5\"} 1"));
        assert!(text.contains("reward_item_duration_seconds_bucket{task=\"code\",le=\"1\"} 0"));
        assert!(text.contains("reward_queue_depth 2"));
        assert!(text.contains("reward_sandbox_busy 1"));
    }
}
