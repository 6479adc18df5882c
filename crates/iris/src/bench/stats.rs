//! Measurements of a run: latency histogram (microsecond resolution) and the final report.

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

use super::timeline::RatePoint;

/// Highest latency recorded, in microseconds (larger values are clamped): 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Send→delivered latencies, in microseconds.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty histogram with 3 significant digits.
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"))
    }

    /// Records one latency in nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        let us = (ns / 1_000).clamp(1, MAX_LATENCY_US);
        self.0.saturating_record(us);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    /// The percentiles reported, in milliseconds.
    pub fn summary(&self) -> LatencyMs {
        let ms = |q: f64| if self.0.is_empty() { 0.0 } else { self.0.value_at_quantile(q) as f64 / 1_000.0 };
        LatencyMs { p50: ms(0.5), p99: ms(0.99), p999: ms(0.999), max: self.0.max() as f64 / 1_000.0 }
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Counts per logarithmic bucket (×1.5 from 10 µs) as (upper bound in ms, count), for the
    /// report's histogram chart.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        self.0
            .iter_log(10, 1.5)
            .map(|v| (v.value_iterated_to() as f64 / 1_000.0, v.count_since_last_iteration()))
            .collect()
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// What the HTML report draws, beyond the JSON fields.
#[derive(Debug, Clone, Default)]
pub struct Charts {
    /// Latency histogram: (bucket upper bound in ms, count).
    pub histogram: Vec<(f64, u64)>,
    /// Rates per 100 ms over the run.
    pub rates: Vec<RatePoint>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest seen.
    pub max: f64,
}

/// The result of one scenario run (the JSON line of `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Sends started.
    pub sent: u64,
    /// Sends the server answered ACCEPTED.
    pub accepted: u64,
    /// Distinct messages received by their recipients.
    pub delivered: u64,
    /// Deliveries of ACCEPTED messages that never arrived, after draining until everything
    /// arrived or `--drain-s` passed (a backlog still arriving is not loss: see
    /// `backlog_at_end`). Non-zero makes `iris bench` exit 1.
    pub lost: u64,
    /// Messages a recipient received twice (same `server_msg_id`).
    pub duplicates: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Length of the measured phase, in seconds.
    pub duration_s: f64,
    /// Delivered per second of the measured phase.
    pub msgs_per_s: f64,
    /// Send→delivered latency (drain: connect→delivered).
    pub latency_ms: LatencyMs,
    /// Resident memory of the spawned server at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    /// CPU time (user + system) of the spawned server over its life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// CPU time (user + system) of this process (the generator) over the measured phase.
    pub generator_cpu_s: Option<f64>,
    /// Whether the generator was the limit in the measured phase (its core ≥ 90% busy, or it
    /// skipped sends or fell behind its schedule): then the figures are the generator's.
    pub generator_limited: Option<bool>,
    /// Scenario-specific fields (steps, connections, reconnect time…), flattened into the JSON.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Series for `--report` charts (not part of the JSON line).
    #[serde(skip)]
    pub charts: Charts,
}

impl Report {
    /// Prints the human table, or the JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("report serializes"));
            return;
        }
        let l = &self.latency_ms;
        println!("scenario      {}", self.scenario);
        println!("sent          {}", self.sent);
        println!("accepted      {}", self.accepted);
        println!("delivered     {}", self.delivered);
        println!("lost          {}", self.lost);
        println!("duplicates    {}", self.duplicates);
        println!("send errors   {}", self.send_errors);
        println!("duration      {:.2} s", self.duration_s);
        println!("rate          {:.0} msgs/s", self.msgs_per_s);
        println!("latency ms    p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}", l.p50, l.p99, l.p999, l.max);
        if let (Some(rss), Some(cpu)) = (self.server_rss_bytes, self.server_cpu_s) {
            println!("server        rss {:.1} MiB  cpu {cpu:.2} s", rss as f64 / (1024.0 * 1024.0));
        }
        if let (Some(cpu), Some(limited)) = (self.generator_cpu_s, self.generator_limited) {
            let verdict = if limited {
                "LIMITED: the generator was the bottleneck; these figures are the generator's, not the server's"
            } else {
                "kept up (not the limit)"
            };
            println!("generator     cpu {cpu:.2} s  {verdict}");
        }
        for (key, value) in &self.extra {
            println!("{key:<13} {}", human(value));
        }
    }

    /// Counts only what was delivered while sending in the rate: a backlog delivered during
    /// the drain is not part of the rate the server sustained.
    pub fn rate_while_sending(&mut self, delivered_while_sending: u64, sending: std::time::Duration) {
        self.msgs_per_s = delivered_while_sending as f64 / sending.as_secs_f64().max(1e-9);
        self.set("delivered_after_sending", self.delivered.saturating_sub(delivered_while_sending));
    }

    /// Writes the loss accounting of a run: `lost` (owed after the drain), `backlog_at_end`
    /// (owed when sending stopped: queued, not lost) and the number of messages lost.
    pub fn set_loss(&mut self, lost: u64, backlog_at_end: u64, lost_messages: u64) {
        self.lost = lost;
        self.set("backlog_at_end", backlog_at_end);
        self.set("lost_messages", lost_messages);
    }

    /// Adds a scenario-specific field.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.to_owned(), value.into());
    }
}

/// A JSON value for the human table: strings without quotes, arrays one element per line.
fn human(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(|v| format!("\n  {v}")).collect(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut h = Latencies::new();
        for ms in 1..=1000u64 {
            h.record_ns(ms * 1_000_000);
        }
        let s = h.summary();
        assert!((s.p50 - 500.0).abs() < 2.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 2.0, "{s:?}");
        assert!((s.max - 1000.0).abs() < 2.0, "{s:?}");
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(Latencies::new().summary().p99, 0.0);
    }
}
