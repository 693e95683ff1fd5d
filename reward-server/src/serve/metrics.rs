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
    /// Sandbox worker processes busy with a job, plus guests running in
    /// this process (`--in-process`).
    pub(crate) sandbox_busy: usize,
    /// How long new work would wait, estimated (admission's).
    pub(crate) queue_wait_seconds: f64,
    /// Bytes of the memory budget held by requests in progress.
    pub(crate) memory_reserved_bytes: u64,
    /// The memory budget (`--queue` x `--max-body-mb`).
    pub(crate) memory_budget_bytes: u64,
    /// Connections open now.
    pub(crate) connections_open: usize,
    /// Connections closed at once since the start (over `--max-connections`).
    pub(crate) connections_refused: usize,
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
        for (name, kind, help, value) in [
            (
                "reward_queue_depth",
                "gauge",
                "Requests admitted and not yet answered.",
                gauges.queue_depth as f64,
            ),
            (
                "reward_queue_limit",
                "gauge",
                "Requests admitted at most (--queue); beyond it, 503.",
                gauges.queue_limit as f64,
            ),
            (
                "reward_sandbox_busy",
                "gauge",
                "Sandboxes busy: worker processes running a job, plus guests running in the server (--in-process).",
                gauges.sandbox_busy as f64,
            ),
            (
                "reward_queue_wait_seconds",
                "gauge",
                "Estimated wait of new work for the work queued before it; over --max-queue-wait-s, 503.",
                gauges.queue_wait_seconds,
            ),
            (
                "reward_memory_reserved_bytes",
                "gauge",
                "Memory held by requests in progress (bodies and what they parse into).",
                gauges.memory_reserved_bytes as f64,
            ),
            (
                "reward_memory_budget_bytes",
                "gauge",
                "The memory budget of requests in progress (--queue x --max-body-mb).",
                gauges.memory_budget_bytes as f64,
            ),
            (
                "reward_connections_open",
                "gauge",
                "HTTP connections open.",
                gauges.connections_open as f64,
            ),
            (
                "reward_connections_refused_total",
                "counter",
                "Connections closed at once because --max-connections were open.",
                gauges.connections_refused as f64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
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
            queue_wait_seconds: 1.5,
            memory_reserved_bytes: 1024,
            memory_budget_bytes: 4096,
            connections_open: 3,
            connections_refused: 0,
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
        assert!(text.contains("reward_queue_wait_seconds 1.5"));
        assert!(text.contains("reward_memory_reserved_bytes 1024"));
    }
}
