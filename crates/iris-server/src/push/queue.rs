//! A provider's queue of wake-ups: bounded, and shedding the oldest when full (a provider that
//! is down must not hold memory without bound, and the newest wake-up carries the newest
//! badge). Also the retry delays: exponential with full jitter.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// A bounded FIFO whose `push` sheds the oldest item when full.
pub struct ShedQueue<T> {
    items: Mutex<VecDeque<T>>,
    len_max: usize,
    ready: Notify,
}

impl<T> ShedQueue<T> {
    /// A queue of at most `len_max` (at least 1) items.
    pub fn new(len_max: usize) -> Self {
        Self { items: Mutex::new(VecDeque::new()), len_max: len_max.max(1), ready: Notify::new() }
    }

    /// Queues `item`; returns the oldest item if it had to be shed.
    pub fn push(&self, item: T) -> Option<T> {
        let shed = {
            let mut items = self.items.lock().expect("push queue lock");
            let shed = if items.len() >= self.len_max { items.pop_front() } else { None };
            items.push_back(item);
            shed
        };
        self.ready.notify_one();
        shed
    }

    /// The oldest item, waiting for one.
    pub async fn pop(&self) -> T {
        loop {
            let notified = self.ready.notified();
            if let Some(item) = self.items.lock().expect("push queue lock").pop_front() {
                return item;
            }
            notified.await;
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.items.lock().expect("push queue lock").len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before retry `attempt` (1 = the first retry): a uniform draw from zero to
/// `initial × 2^(attempt-1)`, capped at `max` ("full jitter"), so a provider coming back is not
/// hit by every retry at once. `unit` is a uniform draw in [0, 1).
pub fn backoff(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let ceiling = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_sheds_its_oldest() {
        // Proves: the bound holds, the oldest goes first, and pop returns in FIFO order.
        let q = ShedQueue::new(2);
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), Some(1));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().await, 2);
        assert_eq!(q.pop().await, 3);
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff(1, i, m, 0.999_999).as_millis(), 99);
        assert_eq!(backoff(3, i, m, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(10, i, m, 0.5), Duration::from_millis(500), "capped at max");
        assert_eq!(backoff(2, i, m, 0.0), Duration::ZERO);
    }
}
