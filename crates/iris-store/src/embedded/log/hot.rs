//! The inbox log's memory: per device, its cursor and its un-acked entries of live segments,
//! from which sessions read without touching the disk. Sharded maps under short mutexes; the
//! committer adds entries after their batch is durable, acks remove them, the checkpointer moves
//! old ones to the cold store. Knows nothing of files or records.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::cold::{Cold, ColdCursor};
use crate::{DeviceAddr, StoreResult};

/// Shards of the device map: enough that the committer, the checkpointer and the sessions
/// rarely wait for each other.
const SHARDS: usize = 64;

/// Bytes a hot entry costs besides its share of the item: the entry itself and its slot.
pub(crate) const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// One un-acked entry held in memory.
#[derive(Debug, Clone)]
pub(crate) struct HotEntry {
    /// Its seq in the device's inbox.
    pub seq: u64,
    /// Append time, ms since the Unix epoch (expiry).
    pub ts_ms: u64,
    /// When it disappears (disappearing messages), if it does.
    pub expires_at_ms: Option<u64>,
    /// The encoded item (shared by every inbox that got the same item).
    pub item: Bytes,
    /// The log segment holding it: the checkpoint moves entries of retired segments out.
    pub segment: u64,
    /// What it counts against the memory budget.
    pub charge: u64,
}

/// One device's inbox as the log knows it. Invariants: `acked <= last`; entries are ascending,
/// all `> max(acked, cold_hi)` and `<= last`; seqs in `(acked, cold_hi]` live in the cold store.
#[derive(Debug, Default)]
pub(crate) struct DeviceState {
    /// Highest acked seq.
    pub acked: u64,
    /// Highest seq made durable.
    pub last: u64,
    /// Highest seq moved to the cold store.
    pub cold_hi: u64,
    /// Un-acked entries above `cold_hi`.
    pub entries: VecDeque<HotEntry>,
    /// The cursor changed since it was last written to the cold store.
    pub dirty: bool,
    /// Used since the last checkpoint (devices long unused and clean are evicted).
    pub touched: bool,
}

impl DeviceState {
    fn from_cold(c: Option<ColdCursor>) -> Self {
        let c = c.unwrap_or_default();
        Self { acked: c.acked, last: c.last.max(c.acked), cold_hi: c.cold_hi, ..Self::default() }
    }

    /// The cursor to write to the cold store.
    pub fn cold_cursor(&self) -> ColdCursor {
        ColdCursor { acked: self.acked, last: self.last, cold_hi: self.cold_hi }
    }

    /// Adds a durable entry unless the device already has it (replay) or has moved past it.
    /// Returns the bytes it now holds in memory (0 if not added).
    pub fn push(&mut self, entry: HotEntry) -> u64 {
        self.touched = true;
        self.last = self.last.max(entry.seq);
        self.dirty = true;
        let floor = self.acked.max(self.cold_hi);
        if entry.seq <= floor || self.entries.back().is_some_and(|e| e.seq >= entry.seq) {
            return 0;
        }
        let charge = entry.charge;
        self.entries.push_back(entry);
        charge
    }

    /// Cumulative ack (or purge) up to `up_to`: drops the entries it covers and returns their
    /// bytes and the range of cold seqs that must be deleted, if any.
    pub fn ack(&mut self, up_to: u64) -> (u64, Option<(u64, u64)>) {
        self.touched = true;
        if up_to <= self.acked {
            return (0, None);
        }
        let cold = (self.cold_hi > self.acked).then(|| (self.acked + 1, up_to.min(self.cold_hi)));
        self.acked = up_to;
        self.last = self.last.max(up_to);
        self.dirty = true;
        let mut freed = 0;
        while self.entries.front().is_some_and(|e| e.seq <= up_to) {
            freed += self.entries.pop_front().expect("checked").charge;
        }
        (freed, cold)
    }

    /// Index of the first entry with `seq >= from`.
    pub fn position(&self, from: u64) -> usize {
        self.entries.partition_point(|e| e.seq < from)
    }
}

type Shard = HashMap<DeviceAddr, DeviceState, foldhash::fast::RandomState>;

/// Every device the log holds in memory, and the bytes their entries take.
pub(crate) struct Hot {
    shards: Box<[Mutex<Shard>]>,
    bytes: AtomicU64,
}

impl Hot {
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), bytes: AtomicU64::new(0) }
    }

    fn shard_of(&self, d: DeviceAddr) -> &Mutex<Shard> {
        let h = d.account.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(d.device).rotate_left(32);
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// Runs `f` on the device's state, loading its cursor from `cold` on first use.
    pub fn with<R>(&self, d: DeviceAddr, cold: &dyn Cold, f: impl FnOnce(&mut DeviceState) -> R) -> StoreResult<R> {
        let mut shard = lock(self.shard_of(d));
        let state = match shard.get_mut(&d) {
            Some(s) => s,
            None => {
                let loaded = DeviceState::from_cold(cold.cursor(d)?);
                shard.entry(d).or_insert(loaded)
            }
        };
        Ok(f(state))
    }

    /// Whether the device's state is in memory.
    pub fn contains(&self, d: DeviceAddr) -> bool {
        lock(self.shard_of(d)).contains_key(&d)
    }

    /// Drops a device's state (account deletion); returns it, if it was in memory.
    pub fn remove(&self, d: DeviceAddr) -> Option<DeviceState> {
        lock(self.shard_of(d)).remove(&d)
    }

    /// Visits every device in memory, a shard at a time; `f` returns false to evict the device.
    pub fn for_each(&self, mut f: impl FnMut(DeviceAddr, &mut DeviceState) -> bool) {
        for shard in self.shards.iter() {
            lock(shard).retain(|d, s| f(*d, s));
        }
    }

    /// Counts `n` more bytes held in memory.
    pub fn add_bytes(&self, n: u64) {
        if n > 0 {
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts `n` bytes released.
    pub fn sub_bytes(&self, n: u64) {
        if n > 0 {
            self.bytes.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Bytes the entries in memory take (approximately: shared items are split between their
    /// inboxes).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
