//! The open-loop schedule of a raw load run: send `k` is due at `start + k / rate`, whatever
//! happened to earlier sends. The driver asks, at each tick, which sends are due; a send
//! written more than [`LATE_NS`] after its time counts as late (the generator fell behind).

use std::ops::Range;

/// A send written this long after its scheduled time means the generator fell behind its
/// schedule (10 ms: ten ticks, far beyond the tick's own ≤ 1 ms delay).
pub const LATE_NS: u64 = 10_000_000;

/// A fixed rate for a fixed number of sends.
#[derive(Debug, Clone)]
pub struct OpenSchedule {
    start_ns: u64,
    interval_ns: f64,
    total: u64,
    next: u64,
}

impl OpenSchedule {
    /// `rate` sends per second for `duration_s`, the first due at `start_ns`.
    pub fn new(start_ns: u64, rate: f64, duration_s: f64) -> Self {
        let total = (rate * duration_s).round().max(0.0) as u64;
        Self { start_ns, interval_ns: 1e9 / rate.max(1e-3), total, next: 0 }
    }

    /// The sends due by `now_ns` that were not handed out yet (as send numbers).
    pub fn due(&mut self, now_ns: u64) -> Range<u64> {
        let elapsed = now_ns.saturating_sub(self.start_ns) as f64;
        let due = if now_ns < self.start_ns { 0 } else { ((elapsed / self.interval_ns) as u64 + 1).min(self.total) };
        let range = self.next..due.max(self.next);
        self.next = range.end;
        range
    }

    /// When send `k` is due.
    pub fn time_of(&self, k: u64) -> u64 {
        self.start_ns + (k as f64 * self.interval_ns) as u64
    }

    /// Whether every send was handed out.
    pub fn done(&self) -> bool {
        self.next >= self.total
    }

    /// Sends in the whole schedule.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_come_due_at_the_rate_and_each_once() {
        let mut s = OpenSchedule::new(1_000, 1_000.0, 1.0);
        assert_eq!(s.total(), 1_000);
        assert_eq!(s.due(999), 0..0);
        assert_eq!(s.due(1_000), 0..1);
        assert_eq!(s.due(1_000 + 2_500_000), 1..3, "t = 2.5 ms: sends 0, 1, 2 are due");
        assert_eq!(s.time_of(2), 1_000 + 2_000_000);
        assert_eq!(s.due(1_000 + 2_500_000), 3..3);
        assert!(!s.done());
        assert_eq!(s.due(u64::MAX / 2), 3..1_000, "a late tick catches up, never past the total");
        assert!(s.done());
    }
}
