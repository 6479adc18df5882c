//! A connected device's backlog: the newest seq committed for it against the newest it acked,
//! kept by the router (hints) and the device's session (acks), read by the send gate
//! (`send_gate.rs`) to hold sends toward a device that is draining more than it can take.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A connected device's backlog as its session and the router see it: the newest seq hinted to
/// it against the newest it acked. One per registration, shared by the router's link, the
/// session and the senders waiting on it.
#[derive(Debug)]
pub struct Backlog {
    /// When the registration was made; `acked_at_ms` counts from here.
    born: Instant,
    /// Highest seq committed for the device since it registered (from the hints).
    hinted: AtomicU64,
    /// Highest seq the device acked; `u64::MAX` until its session has read its cursor.
    acked: AtomicU64,
    /// Milliseconds after `born` when `acked` last moved (0: it registered then).
    acked_at_ms: AtomicU64,
    /// Set when the registration ends: nobody waits on it any more.
    closed: AtomicBool,
    /// Woken when an ack brings the backlog to the bound or below, and when it closes.
    drained: Notify,
}

impl Default for Backlog {
    fn default() -> Self {
        Self {
            born: Instant::now(),
            hinted: AtomicU64::new(0),
            acked: AtomicU64::new(u64::MAX),
            acked_at_ms: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            drained: Notify::new(),
        }
    }
}

impl Backlog {
    /// The session read its cursor: `acked` is where the device stands.
    pub fn started(&self, acked: u64) {
        self.acked.store(acked, Ordering::Release);
    }

    /// A committed entry `seq` was offered to the device (the router calls this for every hint).
    pub fn hinted(&self, seq: u64) {
        self.hinted.fetch_max(seq, Ordering::AcqRel);
    }

    /// The device acked everything up to `seq`; wakes the senders waiting on it once the
    /// backlog is at `bound` or below. Only an ack that moves the cursor counts as draining.
    pub fn acked(&self, seq: u64, bound: u64) {
        // A plain read first: the session reports its cursor on every turn, mostly unmoved.
        if seq <= self.acked.load(Ordering::Acquire) {
            return;
        }
        let before = self.acked.fetch_max(seq, Ordering::AcqRel);
        if seq <= before {
            return; // acked nothing new: not a sign of draining
        }
        self.acked_at_ms.store(self.ms_since_born(), Ordering::Release);
        if self.unacked() <= bound {
            self.drained.notify_waiters();
        }
    }

    /// The registration ended: releases every waiter.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
    }

    /// Entries committed for the device and not acked (0 until its session started).
    pub fn unacked(&self) -> u64 {
        let acked = self.acked.load(Ordering::Acquire);
        self.hinted.load(Ordering::Acquire).saturating_sub(acked)
    }

    /// Whether a send toward the device should wait: the backlog is over `bound`, the device
    /// acked within `stall` (it is draining) and it is still connected.
    pub fn holds(&self, bound: u64, stall: Duration) -> bool {
        if self.closed.load(Ordering::Acquire) || self.unacked() <= bound {
            return false;
        }
        let since_ack = self.ms_since_born().saturating_sub(self.acked_at_ms.load(Ordering::Acquire));
        since_ack <= stall.as_millis() as u64
    }

    /// Waits until the send may go (false) or `deadline` passes (true).
    pub async fn wait(&self, bound: u64, stall: Duration, deadline: Instant) -> bool {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Registered before the check, so an ack between the check and the wait still wakes.
            notified.as_mut().enable();
            if !self.holds(bound, stall) {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return true;
            }
        }
    }

    fn ms_since_born(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const BOUND: u64 = 10;
    const HOLD: Duration = Duration::from_millis(1000);

    fn draining(hinted: u64) -> Backlog {
        let b = Backlog::default();
        b.started(0);
        b.hinted(hinted);
        b
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_counts_only_after_the_session_started() {
        let b = Backlog::default();
        b.hinted(1_000);
        assert_eq!(b.unacked(), 0, "cursor unknown: nothing counts");
        b.started(900);
        assert_eq!(b.unacked(), 100);
        b.acked(950, BOUND);
        assert_eq!(b.unacked(), 50);
        b.acked(940, BOUND);
        assert_eq!(b.unacked(), 50, "acks are cumulative: an older one changes nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_device_over_its_bound_holds_until_it_acks() {
        let b = Arc::new(draining(100));
        assert!(b.holds(BOUND, HOLD));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait(BOUND, HOLD, Instant::now() + HOLD).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.acked(50, BOUND);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "still 50 over a bound of 10");
        b.acked(95, BOUND);
        assert!(!waiter.await.unwrap(), "released by the ack, not the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_ends_at_its_deadline() {
        let b = draining(100);
        let started = Instant::now();
        assert!(b.wait(BOUND, HOLD, Instant::now() + Duration::from_millis(300)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_stopped_acking_holds_no_one() {
        let b = draining(100);
        tokio::time::advance(HOLD + Duration::from_millis(1)).await;
        assert!(!b.holds(BOUND, HOLD), "no ack since it connected: not draining");
        b.acked(0, BOUND);
        assert!(!b.holds(BOUND, HOLD), "an ack that moves nothing is not draining");
        b.acked(1, BOUND);
        assert!(b.holds(BOUND, HOLD), "it acked again: draining");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_releases_waiters() {
        let b = Arc::new(draining(100));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait(BOUND, HOLD, Instant::now() + HOLD).await })
        };
        tokio::task::yield_now().await;
        b.close();
        assert!(!waiter.await.unwrap());
        assert!(!b.holds(BOUND, HOLD));
    }
}
