//! The cold store beneath the inbox log: what outlives the log's segments. Device cursors,
//! entries moved out of memory (a backlogged device's older entries), dedup records of retired
//! segments, the side keyspaces the log's writes go to, and the checkpoint position. The
//! embedded engine implements it on fjall (`embedded/cold.rs`); the crash simulation on a model
//! that loses whatever was not persisted.
//!
//! Writes are atomic batches that become visible at once and durable at the next
//! [`Cold::persist`]; a crash keeps a prefix of the batches written since. The log never relies
//! on an unpersisted batch: everything in one is also in a segment the log still keeps.

use bytes::Bytes;

use super::record::KvWrite;
use crate::{DedupKey, DeviceAddr, StoreResult};

/// Where a device's inbox stands in the cold store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ColdCursor {
    /// Highest acked seq.
    pub acked: u64,
    /// Highest seq ever assigned, as far as the cold store knows (the log's tail may know more).
    pub last: u64,
    /// Entries with `acked < seq <= cold_hi` live in the cold store (those not expired).
    pub cold_hi: u64,
}

/// One spilled inbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdEntry {
    /// Its seq.
    pub seq: u64,
    /// Append time, ms since the Unix epoch.
    pub ts_ms: u64,
    /// When it disappears (disappearing messages), if it does.
    pub expires_at_ms: Option<u64>,
    /// The encoded item.
    pub item: Bytes,
}

/// One atomic write to the cold store.
#[derive(Debug, Default)]
pub struct ColdBatch {
    /// Entries moved out of memory.
    pub entries: Vec<(DeviceAddr, ColdEntry)>,
    /// Entries acked or purged: seqs `from..=to` of a device.
    pub deletes: Vec<(DeviceAddr, u64, u64)>,
    /// Cursors to record.
    pub cursors: Vec<(DeviceAddr, ColdCursor)>,
    /// Dedup records of retired segments: key → (server msg id, server time).
    pub dedup: Vec<(DedupKey, u64, u64)>,
    /// Side writes (index records, group records, payloads, receipts).
    pub writes: Vec<KvWrite>,
    /// The first segment recovery must replay, once this batch is persisted.
    pub checkpoint: Option<u64>,
    /// Devices gone for good: their cursor, spilled entries and the dedup records of their
    /// sends are deleted (after everything else of the batch).
    pub forget: Vec<DeviceAddr>,
}

impl ColdBatch {
    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.deletes.is_empty()
            && self.cursors.is_empty()
            && self.dedup.is_empty()
            && self.writes.is_empty()
            && self.checkpoint.is_none()
            && self.forget.is_empty()
    }
}

/// The store beneath the log; see the module doc.
pub trait Cold: Send + Sync + 'static {
    /// A device's cursor, if it was ever recorded.
    fn cursor(&self, device: DeviceAddr) -> StoreResult<Option<ColdCursor>>;
    /// Up to `limit` spilled entries of `device` with `from <= seq <= to`, in seq order.
    fn read(&self, device: DeviceAddr, from: u64, to: u64, limit: usize) -> StoreResult<Vec<ColdEntry>>;
    /// The dedup record of a retired segment, if any: (server msg id, server time).
    fn dedup(&self, key: &DedupKey) -> StoreResult<Option<(u64, u64)>>;
    /// Applies `batch` atomically; visible at once, durable after the next `persist`.
    fn write(&self, batch: ColdBatch) -> StoreResult<()>;
    /// Makes every batch written so far durable.
    fn persist(&self) -> StoreResult<()>;
    /// Writes the side writes the engine holds in memory after logging them
    /// ([`super::Op::HeldWrites`]); visible at once, durable after the next `persist`. A
    /// checkpoint calls it before it retires segments. Nothing held: nothing to do.
    fn settle(&self) -> StoreResult<()> {
        Ok(())
    }
    /// The recorded checkpoint: the first segment recovery must replay (0: none yet).
    fn checkpoint(&self) -> StoreResult<u64>;
    /// Deletes spilled entries appended before `older_than_ms` and dedup records created before
    /// `dedup_older_than_ms`; returns how many records went.
    fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64>;
    /// Deletes at most `limit` spilled entries whose `expires_at_ms <= now_ms` (disappearing
    /// messages), finding them without a full scan; returns how many went.
    fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64>;
}
