//! `Sync`, the connection's barrier: which `Synced` answers are due once an operation finishes.
//!
//! Operations run concurrently and are answered when they finish, so answers can come in any
//! order; a `Sync` is answered only when every operation that arrived before it was answered.
//! Each operation answered later gets a number in arrival order ([`Syncs::start`]); a `Sync`
//! waits for the numbers below the next one at its arrival. Acks are not operations here (the
//! delivery machine applies them in the background). No I/O, no clock: the driver tells it what
//! started and finished and writes the `Synced`s it returns, after the finished answer.

use std::collections::{BTreeSet, VecDeque};

/// Operations in flight and the `Sync`s waiting for them.
#[derive(Debug, Default)]
pub(super) struct Syncs {
    /// The number the next operation gets.
    next_op: u64,
    /// Operations started and not yet answered.
    running: BTreeSet<u64>,
    /// Waiting `Sync`s in arrival order: (the first operation number not waited for, request id).
    waiting: VecDeque<(u64, u64)>,
}

impl Syncs {
    /// An operation answered later started; returns its number for [`Syncs::finished`].
    pub(super) fn start(&mut self) -> u64 {
        let op = self.next_op;
        self.next_op += 1;
        self.running.insert(op);
        op
    }

    /// A `Sync` with `request_id` arrived; returns the request ids of the `Sync`s now due (it,
    /// when nothing before it is running), in order.
    pub(super) fn sync(&mut self, request_id: u64) -> Vec<u64> {
        self.waiting.push_back((self.next_op, request_id));
        self.due()
    }

    /// Operation `op` was answered; returns the request ids of the `Sync`s now due, in order.
    pub(super) fn finished(&mut self, op: u64) -> Vec<u64> {
        self.running.remove(&op);
        self.due()
    }

    /// How many `Sync`s wait (they count towards the connection's in-flight bound).
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn due(&mut self) -> Vec<u64> {
        let oldest_running = self.running.first().copied().unwrap_or(u64::MAX);
        let mut due = Vec::new();
        while let Some(&(until, request_id)) = self.waiting.front() {
            if oldest_running < until {
                break;
            }
            self.waiting.pop_front();
            due.push(request_id);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_waits_for_every_earlier_operation_and_syncs_keep_their_order() {
        // Proves: a Sync with nothing running is due at once; one after running operations is due
        // only when the last of them finished, whatever order they finish in; later operations do
        // not hold it back; Syncs are answered in arrival order.
        let mut s = Syncs::default();
        assert_eq!(s.sync(1), vec![1]);
        let (a, b) = (s.start(), s.start());
        assert_eq!(s.sync(2), Vec::<u64>::new());
        let c = s.start();
        assert_eq!(s.sync(3), Vec::<u64>::new());
        assert_eq!(s.waiting(), 2);
        assert_eq!(s.finished(b), Vec::<u64>::new());
        assert_eq!(s.finished(a), vec![2], "c started after Sync 2 and does not hold it");
        assert_eq!(s.finished(c), vec![3]);
        assert_eq!(s.waiting(), 0);
        let d = s.start();
        assert_eq!(s.sync(4), Vec::<u64>::new());
        assert_eq!(s.sync(5), Vec::<u64>::new());
        assert_eq!(s.finished(d), vec![4, 5]);
    }
}
