//! Coalescing: at most one wake-up per device per interval. Sans-IO (the time is passed in), so
//! it is tested without clocks or sockets.
//!
//! A device offered when it had no wake-up within the interval is woken at once; offered again
//! within the interval, it gets exactly one more wake-up, at the end of the interval, however
//! many inbox changes came meanwhile.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use iris_store::DeviceAddr;
use tokio::time::Instant;

/// Devices tracked before the first sweep of idle ones.
const SWEEP_AT_MIN: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct State {
    last_woken: Instant,
    pending: bool,
}

/// Which devices to wake, and when.
pub struct Coalescer {
    interval: Duration,
    devices: HashMap<DeviceAddr, State>,
    due: BinaryHeap<Reverse<(Instant, DeviceAddr)>>,
    sweep_at: usize,
}

impl Coalescer {
    /// At most one wake-up per device per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, devices: HashMap::new(), due: BinaryHeap::new(), sweep_at: SWEEP_AT_MIN }
    }

    /// `addr`'s inbox changed at `now`: whether to wake it now (otherwise it is woken by
    /// [`take_due`](Self::take_due) at the end of its interval, or already will be).
    pub fn offer(&mut self, addr: DeviceAddr, now: Instant) -> bool {
        if self.devices.len() >= self.sweep_at {
            self.sweep(now);
        }
        match self.devices.get_mut(&addr) {
            Some(s) if s.pending => false,
            Some(s) if now < s.last_woken + self.interval => {
                s.pending = true;
                self.due.push(Reverse((s.last_woken + self.interval, addr)));
                false
            }
            _ => {
                self.devices.insert(addr, State { last_woken: now, pending: false });
                true
            }
        }
    }

    /// When the next coalesced wake-up is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// The devices whose coalesced wake-up is due at `now`; they count as woken now.
    pub fn take_due(&mut self, now: Instant) -> Vec<DeviceAddr> {
        let mut out = Vec::new();
        while let Some(&Reverse((at, addr))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            self.devices.insert(addr, State { last_woken: now, pending: false });
            out.push(addr);
        }
        out
    }

    /// Devices tracked (bounded by the sweep: those woken within the last interval).
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether no device is tracked.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Forgets devices with nothing pending whose interval is over (they would be woken at
    /// once anyway).
    fn sweep(&mut self, now: Instant) {
        let interval = self.interval;
        self.devices.retain(|_, s| s.pending || now < s.last_woken + interval);
        self.sweep_at = (self.devices.len() * 2).max(SWEEP_AT_MIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: DeviceAddr = DeviceAddr { account: 1, device: 1 };
    const B: DeviceAddr = DeviceAddr { account: 2, device: 1 };
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn one_wake_up_now_and_one_at_the_end_of_the_interval() {
        // Proves: the first change wakes at once; any number of changes within the interval
        // give exactly one more wake-up, at its end; a change after that wakes at once again.
        let t0 = Instant::now();
        let mut c = Coalescer::new(10 * SEC);
        assert!(c.offer(A, t0));
        assert!(!c.offer(A, t0 + SEC));
        assert!(!c.offer(A, t0 + 2 * SEC));
        assert!(c.offer(B, t0 + 2 * SEC), "other devices are independent");
        assert_eq!(c.next_due(), Some(t0 + 10 * SEC));
        assert!(c.take_due(t0 + 9 * SEC).is_empty());
        assert_eq!(c.take_due(t0 + 10 * SEC), vec![A]);
        assert_eq!(c.next_due(), None);
        assert!(!c.offer(A, t0 + 15 * SEC), "woken at 10 s: the next one waits until 20 s");
        assert_eq!(c.take_due(t0 + 20 * SEC), vec![A]);
        assert!(c.offer(A, t0 + 31 * SEC), "quiet for a whole interval: at once");
    }

    #[test]
    fn idle_devices_are_forgotten() {
        // Proves: the map stays bounded by the devices woken within one interval.
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        for i in 0..5000u64 {
            let now = t0 + Duration::from_millis(i * 10);
            assert!(c.offer(DeviceAddr::new(i, 1), now));
        }
        assert!(c.len() < 2 * SWEEP_AT_MIN, "tracked {}", c.len());
    }
}
