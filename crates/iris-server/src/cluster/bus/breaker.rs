//! The circuit breaker in front of every bus call: after `failures_max` consecutive failures the
//! circuit opens and calls fail at once for `open_ms`; then one call is let through as a probe and
//! its outcome closes or re-opens the circuit. Pure state over atomics and a `now_ms` argument, so
//! it is tested without Redis or clocks; it knows nothing of Redis.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Circuit state shared by every clone of a bus.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Consecutive failures while closed.
    failures: AtomicU32,
    /// When the open period ends, ms on the bus's clock; 0 while closed.
    open_until_ms: AtomicU64,
    /// A probe is in flight (half-open): other calls keep failing fast until it settles.
    probing: AtomicBool,
    /// Consecutive failures that open the circuit.
    failures_max: u32,
    /// How long the circuit stays open before the next probe.
    open_ms: u64,
}

/// Leave to make one call; reports its outcome. Dropped unsettled (the caller gave up on the
/// future), a probe frees the half-open slot so the next call probes instead.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Breaker {
    /// A closed breaker; `failures_max` is at least 1.
    pub(crate) fn new(failures_max: u32, open_ms: u64) -> Self {
        Self {
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            failures_max: failures_max.max(1),
            open_ms: open_ms.max(1),
        }
    }

    /// Leave to call Redis now, or `None` while the circuit is open (or half-open with a probe
    /// already in flight).
    pub(crate) fn admit(&self, now_ms: u64) -> Option<Permit<'_>> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Some(Permit { breaker: self, probe: false, settled: false });
        }
        if now_ms < until {
            return None;
        }
        self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| Permit {
            breaker: self,
            probe: true,
            settled: false,
        })
    }

    /// Whether calls go through (closed circuit).
    pub(crate) fn is_closed(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) == 0
    }

    fn open(&self, now_ms: u64) {
        self.open_until_ms.store(now_ms.saturating_add(self.open_ms).max(1), Ordering::Release);
    }
}

impl Permit<'_> {
    /// Redis answered (even with an error of the command's own): the circuit closes.
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        let b = self.breaker;
        b.failures.store(0, Ordering::Release);
        b.open_until_ms.store(0, Ordering::Release);
        if self.probe {
            b.probing.store(false, Ordering::Release);
        }
    }

    /// Redis did not answer in time or the connection failed.
    pub(crate) fn failed(mut self, now_ms: u64) {
        self.settled = true;
        let b = self.breaker;
        if self.probe {
            b.open(now_ms);
            b.probing.store(false, Ordering::Release);
            return;
        }
        let n = b.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n >= b.failures_max && b.is_closed() {
            b.open(now_ms);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_probes_once() {
        // Proves: failures_max consecutive failures open it, calls fail fast while open, and
        // exactly one probe goes through afterwards; a successful probe closes it.
        let b = Breaker::new(3, 100);
        for _ in 0..2 {
            b.admit(0).unwrap().failed(0);
        }
        assert!(b.is_closed());
        b.admit(0).unwrap().succeeded();
        for _ in 0..3 {
            b.admit(10).unwrap().failed(10);
        }
        assert!(!b.is_closed());
        assert!(b.admit(50).is_none());
        let probe = b.admit(110).expect("probe after the open period");
        assert!(b.admit(110).is_none(), "only one probe at a time");
        probe.succeeded();
        assert!(b.is_closed());
        assert!(b.admit(111).is_some());
    }

    #[test]
    fn failed_probe_reopens_and_dropped_probe_frees_the_slot() {
        // Proves: a failed probe re-opens for a full period; a probe whose caller gave up lets
        // the next call probe instead of wedging the circuit open.
        let b = Breaker::new(1, 100);
        b.admit(0).unwrap().failed(0);
        b.admit(100).unwrap().failed(100);
        assert!(b.admit(150).is_none());
        drop(b.admit(200).unwrap());
        let probe = b.admit(200).expect("the dropped probe freed the slot");
        probe.succeeded();
        assert!(b.is_closed());
    }
}
