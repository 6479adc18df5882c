//! Rate over time: per-100 ms counts of sends started, sends accepted and messages delivered,
//! in [`now_ns`](super::harness::now_ns) time, for the report's rate chart and the open-loop
//! step controller. Fixed size (one hour); later events land in the last bucket.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Width of one bucket.
pub const BUCKET_NS: u64 = 100_000_000;
/// Buckets kept: one hour of 100 ms.
const BUCKETS: usize = 36_000;

/// Which count an event adds to.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A send started.
    Sent = 0,
    /// A send answered ACCEPTED.
    Accepted = 1,
    /// A distinct message delivered.
    Delivered = 2,
}

/// Three counters per 100 ms bucket.
pub struct Timeline {
    counts: Box<[[AtomicU32; 3]]>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self { counts: (0..BUCKETS).map(|_| Default::default()).collect() }
    }
}

/// Rates per second of one bucket, for charts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RatePoint {
    /// Start of the bucket, seconds after the first non-empty bucket.
    pub t_s: f64,
    /// Sends started per second.
    pub sent: f64,
    /// Sends accepted per second.
    pub accepted: f64,
    /// Messages delivered per second.
    pub delivered: f64,
}

impl Timeline {
    /// Counts one event at time `ns`.
    pub fn add(&self, kind: Kind, ns: u64) {
        self.add_n(kind, ns, 1);
    }

    /// Counts `n` events at time `ns` (a batch that was handled together).
    pub fn add_n(&self, kind: Kind, ns: u64, n: u32) {
        if n == 0 {
            return;
        }
        let i = ((ns / BUCKET_NS) as usize).min(BUCKETS - 1);
        self.counts[i][kind as usize].fetch_add(n, Relaxed);
    }

    /// The non-empty span of buckets as rates per second.
    pub fn series(&self) -> Vec<RatePoint> {
        let busy = |c: &[AtomicU32; 3]| c.iter().any(|x| x.load(Relaxed) > 0);
        let Some(first) = self.counts.iter().position(busy) else { return Vec::new() };
        let last = self.counts.iter().rposition(busy).unwrap_or(first);
        let per_s = 1e9 / BUCKET_NS as f64;
        (first..=last)
            .map(|i| {
                let c = &self.counts[i];
                let rate = |k: Kind| f64::from(c[k as usize].load(Relaxed)) * per_s;
                RatePoint {
                    t_s: (i - first) as f64 * BUCKET_NS as f64 / 1e9,
                    sent: rate(Kind::Sent),
                    accepted: rate(Kind::Accepted),
                    delivered: rate(Kind::Delivered),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_spans_the_busy_buckets_as_rates() {
        let t = Timeline::default();
        t.add(Kind::Sent, 5 * BUCKET_NS + 1);
        t.add(Kind::Delivered, 7 * BUCKET_NS);
        t.add(Kind::Delivered, 7 * BUCKET_NS + 3);
        let s = t.series();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].sent, 10.0);
        assert_eq!(s[2].delivered, 20.0);
        assert!((s[2].t_s - 0.2).abs() < 1e-9);
    }
}
