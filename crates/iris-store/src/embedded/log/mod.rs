//! The inbox log: the embedded engine's message core, an append-only log built for
//! append-then-ack (DESIGN.md "Storage").
//!
//! **On disk.** Numbered segment files of checksummed records (`record.rs`, `segment.rs`)
//! written only by the committer: one `Append` record per logical message (each distinct item
//! once, every target inbox with its seq, side writes and an ack made atomic with it), `Ack`
//! records, and `Writes` records for the side keyspaces (message index, group payloads and
//! receipts). A batch is written with one `write` and made durable with one `fdatasync`
//! before anyone is answered. Beneath the log, the cold store ([`Cold`], fjall in production)
//! keeps what outlives segments: cursors, entries moved out of memory, dedup records of retired
//! segments, the side keyspaces and the checkpoint. Held writes (`Op::HeldWrites`) are logged
//! like any `Writes` record but not applied by the commit: the engine keeps them in memory and
//! the cold store writes them later ([`Cold::settle`]), at the latest before a checkpoint
//! retires their segment; recovery replays them like the rest.
//!
//! **In memory** (`hot.rs`): per device its cursor and its un-acked entries of live segments,
//! so a session reads without touching the disk; the dedup records of live segments
//! (`dedup.rs`).
//!
//! **Checkpoint.** When more than `segments_live_max` segments exist, the oldest are retired:
//! their un-acked entries move to the cold store, with every changed cursor and their dedup
//! records, in one batch that also records the new first segment; the cold store is persisted;
//! then the segment files become spares (up to `spares_max`) or are deleted. Recovery replays
//! the live segments only.
//!
//! **Recycling.** A new segment is made of a spare when there is one: renamed, its header and
//! records written over the old bytes from the start, so a batch's `fdatasync` does not grow
//! the file (no size to write; on a journaled file system no journal commit). The old records
//! past the new ones never read as records (their checksums are seeded with their own
//! segment's number), and a segment is cut to its records before the next one starts, so only
//! the last segment can hold old bytes past its end, which recovery cuts like a torn tail.
//!
//! **Invariants.** A record is applied to memory only after the batch holding it is durable, so
//! nothing read from the log can vanish in a crash. Seqs are assigned by the committer alone and
//! are dense per device. Replaying a record twice changes nothing (seqs are explicit and acks
//! cumulative), so a checkpoint may record state newer than its position. A write, fsync or
//! cold-store failure poisons the log: nothing commits until a restart, whose recovery cuts a torn
//! tail of the last segment and refuses damage anywhere else.

mod cold;
mod dedup;
mod fs;
mod hot;
mod record;
mod segment;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;

use foldhash::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

pub use cold::{Cold, ColdBatch, ColdCursor, ColdEntry};
pub use fs::{DirFs, LogFile, LogFs};
pub use record::KvWrite;

use dedup::DedupWindow;
use hot::{DeviceState, Hot, HotEntry, ENTRY_OVERHEAD_BYTES};
use record::{Record, Target};

use crate::{AppendOutcome, AppendRequest, DedupKey, DeviceAddr, InboxCursor, StoreError, StoreResult, StoredEntry};

/// Most entries one read returns, so a call never holds a shard for long.
pub const READ_LIMIT_MAX: usize = 1024;
/// When memory is over budget, each backlogged device keeps this many of its newest entries in
/// memory (a slow reader goes on from memory); only if that is not enough are they moved too.
const RELIEVE_KEEP_ENTRIES: usize = 512;
/// Devices moved per cold-store batch while relieving memory.
const RELIEVE_CHUNK: usize = 256;
/// A reused encode buffer larger than this is given back after its batch.
const BUF_KEEP_BYTES: usize = 8 << 20;
/// Largest batch (in records) whose plan is kept for the next batch.
const PLAN_KEEP_OPS: usize = 1 << 16;

/// Bounds of the log. Every field is a bound; see `FjallConfig` for how they are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment that reaches this size is closed and a new one started.
    pub segment_bytes_max: u64,
    /// Segments kept before the oldest are retired by a checkpoint (≥ 1): bounds recovery time
    /// and the dedup records in memory.
    pub segments_live_max: u64,
    /// Bytes of entries kept in memory; past it the largest backlogs move to the cold store.
    pub hot_bytes_max: u64,
    /// Retired segment files kept to be recycled as new segments (0: deleted at once). Each
    /// costs up to `segment_bytes_max` of disk.
    pub spares_max: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { segment_bytes_max: 64 << 20, segments_live_max: 4, hot_bytes_max: 256 << 20, spares_max: 2 }
    }
}

/// One request to the committer.
#[derive(Debug)]
pub enum Op {
    /// Store a message in many inboxes (deduplicated), with side writes and optionally a device's
    /// ack made atomic with it (an ack and the receipts it produces).
    Append {
        /// The append.
        req: AppendRequest,
        /// Side writes committed with it.
        writes: Vec<KvWrite>,
        /// A cumulative ack committed with it: (device, up to seq).
        ack: Option<(DeviceAddr, u64)>,
    },
    /// A cumulative ack; clamped to the device's last durable seq.
    Ack {
        /// The inbox.
        device: DeviceAddr,
        /// Up to and including this seq.
        up_to: u64,
    },
    /// Drop a device's whole inbox (revocation).
    Purge {
        /// The inbox.
        device: DeviceAddr,
    },
    /// Side writes on their own.
    Writes(Vec<KvWrite>),
    /// Side writes the engine holds in memory and writes to the cold store later (write-behind,
    /// [`Cold::settle`]): logged like [`Op::Writes`], so recovery replays them, but not applied
    /// to the cold store by the commit, which keeps a sorted insert per write off the path
    /// between the fsync and the answers.
    HeldWrites(Vec<KvWrite>),
    /// Forget a device for good (account deletion): its inbox, cursor and the dedup records
    /// of its sends, in memory and in the cold store.
    Forget {
        /// The device.
        device: DeviceAddr,
    },
}

/// What one op did, once its batch is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// An append's outcome.
    Append(AppendOutcome),
    /// Anything else.
    Ok,
}

/// The answers of one batch, and what it asks of the checkpointer.
#[derive(Debug)]
pub struct Committed {
    /// One result per op, in order.
    pub results: Vec<StoreResult<Done>>,
    /// Appends stored.
    pub appends: u64,
    /// Appends answered from a dedup record.
    pub duplicates: u64,
    /// Whether the batch wrote anything (and so fsync'd).
    pub wrote: bool,
    /// Whether the write or its fsync failed (every result is then an error).
    pub failed: bool,
    /// Which ops went into the batch's write (the others failed before it, or changed nothing):
    /// after a failed write, these are the ones a crash may or may not have kept.
    pub written: Vec<bool>,
    /// A segment was closed or memory is over budget: the checkpointer has work.
    pub wants_checkpoint: bool,
}

/// Figures of the log for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Bytes of entries held in memory.
    pub hot_bytes: u64,
    /// Live segments (the first is the checkpoint).
    pub segments: u64,
    /// Dedup records held in memory.
    pub dedup_records: u64,
}

/// The committer's side: the open segment and the dedup records of live segments.
struct Writer {
    file: Box<dyn LogFile>,
    segment: u64,
    /// Bytes of header and records: where the next batch goes.
    len: u64,
    /// The checksum seed of the open segment's records (its number; 0 in a segment of the
    /// first format, which recovery may leave open).
    seed: u64,
    /// The file's size, which is more than `len` while a recycled file holds old bytes past
    /// the records.
    file_len: u64,
    buf: Vec<u8>,
    dedup: DedupWindow,
    /// The last batch's plan, emptied, for the next one: its vector and maps keep their
    /// capacity, so a batch neither allocates them afresh nor faults in new pages for them.
    plan: Plan,
}

/// The inbox log. Shared by the committer (`commit`), the checkpointer (`checkpoint`,
/// `relieve`) and readers (`read`, `cursor`), from any threads.
pub struct InboxLog {
    fs: Arc<dyn LogFs>,
    cold: Arc<dyn Cold>,
    config: LogConfig,
    hot: Hot,
    writer: Mutex<Writer>,
    /// First live segment: the checkpoint.
    first_segment: AtomicU64,
    /// Set by a failed write, fsync or cold-store write; see the module doc.
    poisoned: AtomicBool,
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
    /// Spare files (by the number of the segment they were) for the next segments.
    spares: Mutex<Vec<u64>>,
}

/// Everything a batch decided before writing. Its maps hash with foldhash, not SipHash: they
/// are looked up several times per message under the writer lock (SipHash was ~2.5% of the
/// server's instructions), and their keys are bounded by the batch.
#[derive(Default)]
struct Plan {
    records: Vec<Record>,
    /// Indexes in `records` of held writes (`Op::HeldWrites`): durable, not applied.
    held: Vec<usize>,
    /// Last seq per device as this batch assigned them.
    lasts: HashMap<DeviceAddr, u64>,
    /// Acked seq per device as this batch moved them.
    acked: HashMap<DeviceAddr, u64>,
    /// Dedup keys recorded earlier in this batch.
    dedup: HashMap<DedupKey, (u64, u64)>,
    /// Senders forgotten earlier in this batch: their keys recorded before it (window, cold
    /// store) no longer count.
    forgotten: HashSet<DeviceAddr>,
    appends: u64,
    duplicates: u64,
}

impl Plan {
    /// Empties the plan for a batch of `ops` operations, its maps sized so the batch never
    /// rehashes them.
    fn reset(&mut self, ops: usize) {
        self.records.clear();
        self.held.clear();
        self.lasts.clear();
        self.acked.clear();
        self.dedup.clear();
        self.forgotten.clear();
        self.appends = 0;
        self.duplicates = 0;
        self.records.reserve(ops);
        self.lasts.reserve(ops);
        self.acked.reserve(ops);
        self.dedup.reserve(ops);
    }

    /// Whether the plan is small enough to keep for the next batch (a huge batch's capacity
    /// is given back).
    fn worth_keeping(&self) -> bool {
        self.records.capacity() <= PLAN_KEEP_OPS
    }
}

impl InboxLog {
    /// Opens the log on `fs` above `cold`: replays the live segments (cutting a torn tail of the
    /// last one) and is ready to commit.
    pub fn open(fs: Arc<dyn LogFs>, cold: Arc<dyn Cold>, config: LogConfig) -> StoreResult<Self> {
        let config = LogConfig { segments_live_max: config.segments_live_max.max(1), ..config };
        let first = cold.checkpoint()?.max(1);
        let names = fs.list().map_err(io)?;
        let mut numbers: Vec<u64> = names.iter().filter_map(|n| segment::number(n)).collect();
        numbers.sort_unstable();
        let mut spares: Vec<u64> = names.iter().filter_map(|n| segment::spare_number(n)).collect();
        for &n in numbers.iter().filter(|&&n| n < first) {
            // Retired by a checkpoint whose renames or deletions did not reach the disk.
            fs.rename(&segment::name(n), &segment::spare_name(n)).map_err(io)?;
            spares.push(n);
        }
        spares.sort_unstable();
        let excess = spares.len().saturating_sub(config.spares_max as usize);
        for n in spares.drain(..excess) {
            fs.remove(&segment::spare_name(n)).map_err(io)?;
        }
        let live: Vec<u64> = numbers.into_iter().filter(|&n| n >= first).collect();
        if let Some((i, _)) = live.iter().enumerate().find(|&(i, &n)| n != first + i as u64) {
            return Err(StoreError::Corrupt(format!("inbox log segment {} is missing", first + i as u64)));
        }
        let hot = Hot::new();
        let mut dedup = DedupWindow::default();
        let mut tail = None;
        for (i, &n) in live.iter().enumerate() {
            let scanned = segment::scan(n, fs.read(&segment::name(n)).map_err(io)?);
            if let Some(why) = scanned.damage.filter(|_| i + 1 < live.len()) {
                return Err(StoreError::Corrupt(format!(
                    "inbox log segment {n} is damaged at byte {}: {why}",
                    scanned.valid_len
                )));
            }
            let mut batch = ColdBatch::default();
            for record in scanned.records {
                apply(&hot, &*cold, &mut dedup, n, record, &mut batch)?;
            }
            cold.write(batch)?;
            tail = Some((n, scanned.valid_len, scanned.damage, scanned.seed));
        }
        let writer = match tail {
            Some((n, len, damage, seed)) if len >= segment::HEADER_BYTES => {
                if let Some(why) = damage {
                    // After a crash: a torn write, or the old bytes of a recycled file.
                    tracing::warn!(segment = n, at = len, why, "cutting the inbox log after its last whole record");
                    fs.truncate(&segment::name(n), len).map_err(io)?;
                }
                let file = fs.open_append(&segment::name(n)).map_err(io)?;
                Writer { file, segment: n, len, seed, file_len: len, buf: Vec::new(), dedup, plan: Plan::default() }
            }
            // No segment yet, or the last one never got its header: (re)start it.
            Some((n, ..)) => Writer::fresh(start_segment(&*fs, n).map_err(io)?, n, dedup),
            None => Writer::fresh(start_segment(&*fs, first).map_err(io)?, first, dedup),
        };
        Ok(Self {
            fs,
            cold,
            config,
            hot,
            writer: Mutex::new(writer),
            first_segment: AtomicU64::new(first),
            poisoned: AtomicBool::new(false),
            checkpointing: Mutex::new(()),
            spares: Mutex::new(spares),
        })
    }

    /// Whether a failure poisoned the log (it then refuses every commit until reopened).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    fn poison(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, "inbox log {what} failed; refusing writes until a restart");
        self.poisoned.store(true, Ordering::Release);
    }

    /// Commits `ops` as one batch: decides, writes, fsyncs once, applies, answers. Only the
    /// committer calls it (batches are serialised by the writer lock anyway).
    pub fn commit(&self, ops: Vec<Op>) -> Committed {
        self.commit_then(ops, || {})
    }

    /// [`InboxLog::commit`], calling `durable` once the batch is durable and applied, before
    /// any later batch or checkpoint can start: the engine marks its held writes as logged
    /// there, so a checkpoint that retires their segment finds them ([`Cold::settle`]).
    pub fn commit_then(&self, ops: Vec<Op>, durable: impl FnOnce()) -> Committed {
        let mut w = lock(&self.writer);
        let n_ops = ops.len();
        let failed = |why: String, written: Vec<bool>| Committed {
            results: (0..n_ops).map(|_| Err(StoreError::Unavailable(why.clone()))).collect(),
            appends: 0,
            duplicates: 0,
            wrote: false,
            failed: true,
            written,
            wants_checkpoint: false,
        };
        if self.is_poisoned() {
            return failed("the inbox log failed earlier; restart the server".into(), vec![false; n_ops]);
        }
        let mut plan = std::mem::take(&mut w.plan);
        plan.reset(n_ops);
        let mut results = Vec::with_capacity(n_ops);
        let mut written = Vec::with_capacity(n_ops);
        for op in ops {
            let records_before = plan.records.len();
            results.push(match op {
                Op::Append { req, writes, ack } => {
                    self.plan_append(&w.dedup, &mut plan, req, writes, ack).map(Done::Append)
                }
                Op::Ack { device, up_to } => self.plan_ack(&mut plan, device, Some(up_to)).map(|()| Done::Ok),
                Op::Purge { device } => self.plan_ack(&mut plan, device, None).map(|()| Done::Ok),
                Op::Forget { device } => {
                    plan.dedup.retain(|key, _| key.sender != device);
                    plan.forgotten.insert(device);
                    plan.records.push(Record::Forget { device });
                    Ok(Done::Ok)
                }
                Op::Writes(writes) => {
                    if !writes.is_empty() {
                        plan.records.push(Record::Writes(writes));
                    }
                    Ok(Done::Ok)
                }
                Op::HeldWrites(writes) => {
                    if !writes.is_empty() {
                        plan.held.push(plan.records.len());
                        plan.records.push(Record::Writes(writes));
                    }
                    Ok(Done::Ok)
                }
            });
            written.push(plan.records.len() > records_before);
        }
        let mut committed = Committed {
            results,
            appends: plan.appends,
            duplicates: plan.duplicates,
            wrote: !plan.records.is_empty(),
            failed: false,
            written,
            wants_checkpoint: false,
        };
        if plan.records.is_empty() {
            w.plan = plan;
            return committed;
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        for r in &plan.records {
            record::encode(r, w.seed, &mut buf);
        }
        let written = w.file.write_all(&buf).and_then(|()| w.file.sync_data());
        w.len += buf.len() as u64;
        w.file_len = w.file_len.max(w.len);
        if buf.capacity() <= BUF_KEEP_BYTES {
            w.buf = buf;
        }
        if let Err(e) = written {
            self.poison("write", &e);
            return failed(format!("inbox log write failed: {e}"), committed.written);
        }
        let segment = w.segment;
        let mut batch = ColdBatch::default();
        let mut held = plan.held.iter().peekable();
        for (i, r) in plan.records.drain(..).enumerate() {
            if held.next_if_eq(&&i).is_some() {
                continue;
            }
            if let Err(e) = apply(&self.hot, &*self.cold, &mut w.dedup, segment, r, &mut batch) {
                self.poison("apply", &e);
            }
        }
        drop(held);
        if plan.worth_keeping() {
            w.plan = plan;
        }
        if !batch.is_empty() {
            if let Err(e) = self.cold.write(batch) {
                self.poison("cold-store write", &e);
            }
        }
        committed.wants_checkpoint = self.hot.bytes() > self.config.hot_bytes_max;
        if w.len >= self.config.segment_bytes_max {
            match self.roll(&mut w) {
                Ok(()) => committed.wants_checkpoint = true,
                Err(e) => self.poison("segment roll", &e),
            }
        }
        durable();
        committed
    }

    fn plan_append(
        &self,
        dedup: &DedupWindow,
        plan: &mut Plan,
        req: AppendRequest,
        writes: Vec<KvWrite>,
        ack: Option<(DeviceAddr, u64)>,
    ) -> StoreResult<AppendOutcome> {
        if let Some(key) = &req.dedup {
            let earlier = !plan.forgotten.contains(&key.sender);
            let found = match plan.dedup.get(key).copied().or_else(|| dedup.get(key).filter(|_| earlier)) {
                Some(found) => Some(found),
                None if earlier => self.cold.dedup(key)?,
                None => None,
            };
            if let Some((server_msg_id, server_ts_ms)) = found {
                plan.duplicates += 1;
                return Ok(AppendOutcome::Duplicate { server_msg_id, server_ts_ms });
            }
        }
        // Every read before the first change, so a failed read leaves the plan as it was.
        let mut bases = Vec::with_capacity(req.entries.len());
        for e in &req.entries {
            bases.push(match plan.lasts.get(&e.device) {
                Some(&last) => last,
                None => self.hot.with(e.device, &*self.cold, |s| {
                    s.touched = true;
                    s.last
                })?,
            });
        }
        let ack = match ack {
            Some((device, up_to)) => self.ack_target(plan, device, Some(up_to))?.map(|to| (device, to)),
            None => None,
        };
        let mut items = ItemSet::default();
        let mut seqs = Vec::with_capacity(req.entries.len());
        let mut targets = Vec::with_capacity(req.entries.len());
        for (e, base) in req.entries.into_iter().zip(bases) {
            let last = plan.lasts.entry(e.device).or_insert(base);
            *last += 1;
            seqs.push(*last);
            targets.push(Target { device: e.device, seq: *last, item: items.index(e.item) });
        }
        if let Some((device, up_to)) = ack {
            plan.acked.insert(device, up_to);
        }
        if let Some(key) = &req.dedup {
            plan.dedup.insert(key.clone(), (req.server_msg_id, req.server_ts_ms));
        }
        plan.records.push(Record::Append {
            ts_ms: req.server_ts_ms,
            msg_id: req.server_msg_id,
            dedup: req.dedup,
            items: items.items,
            targets,
            writes,
            ack,
            expires_at_ms: req.expires_at_ms,
        });
        plan.appends += 1;
        Ok(AppendOutcome::Appended { seqs })
    }

    /// Where an ack (or, with `None`, a purge) moves a device's cursor, if it moves it: an ack
    /// is clamped to the last durable seq (a client can only ack what it was sent), a purge
    /// covers everything including this batch's appends.
    fn ack_target(&self, plan: &Plan, device: DeviceAddr, up_to: Option<u64>) -> StoreResult<Option<u64>> {
        let (acked, last) = self.hot.with(device, &*self.cold, |s| {
            s.touched = true;
            (s.acked, s.last)
        })?;
        let acked = plan.acked.get(&device).copied().unwrap_or(acked).max(acked);
        let target = match up_to {
            Some(up_to) => up_to.min(last),
            None => plan.lasts.get(&device).copied().unwrap_or(last).max(last),
        };
        Ok((target > acked).then_some(target))
    }

    fn plan_ack(&self, plan: &mut Plan, device: DeviceAddr, up_to: Option<u64>) -> StoreResult<()> {
        if let Some(up_to) = self.ack_target(plan, device, up_to)? {
            plan.acked.insert(device, up_to);
            plan.records.push(Record::Ack { device, up_to });
        }
        Ok(())
    }

    /// Closes the open segment (cut to its records, so that only the last segment can hold a
    /// recycled file's old bytes) and starts the next, from a spare when there is one.
    fn roll(&self, w: &mut Writer) -> std::io::Result<()> {
        self.cut_old_bytes(w)?;
        let next = w.segment + 1;
        let spare = lock(&self.spares).pop();
        let reused = match spare {
            None => None,
            Some(spare) => match reuse_segment(&*self.fs, spare, next) {
                Ok(reused) => Some(reused),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Deleted by hand since it was made a spare: a new file does as well.
                    tracing::warn!(error = %e, "an inbox log spare is gone; starting a new segment file");
                    None
                }
                Err(e) => return Err(e),
            },
        };
        let (file, file_len) = match reused {
            Some(reused) => reused,
            None => (start_segment(&*self.fs, next)?, segment::HEADER_BYTES),
        };
        w.file = file;
        w.segment = next;
        w.seed = next;
        w.len = segment::HEADER_BYTES;
        w.file_len = file_len;
        Ok(())
    }

    /// Cuts the open segment's file to its records (durably) when a recycled file holds old
    /// bytes past them.
    fn cut_old_bytes(&self, w: &mut Writer) -> std::io::Result<()> {
        if w.file_len > w.len {
            self.fs.truncate(&segment::name(w.segment), w.len)?;
            w.file_len = w.len;
        }
        Ok(())
    }

    /// Up to `limit` (at most [`READ_LIMIT_MAX`]) entries of `device` with `seq > after_seq`,
    /// in seq order: from the cold store below `cold_hi`, then from memory.
    pub fn read(&self, device: DeviceAddr, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEntry>> {
        let limit = limit.min(READ_LIMIT_MAX);
        let mut out: Vec<StoredEntry> = Vec::new();
        let mut after = after_seq;
        loop {
            // Under the lock: either the hot entries (done), or where the cold part ends.
            let cold_to = self.hot.with(device, &*self.cold, |s| {
                after = after.max(s.acked);
                if after < s.cold_hi {
                    return Some(s.cold_hi);
                }
                let from = s.position(after.saturating_add(1));
                out.extend(s.entries.range(from..).take(limit - out.len()).map(|e| StoredEntry {
                    seq: e.seq,
                    item: e.item.clone(),
                    expires_at_ms: e.expires_at_ms,
                }));
                None
            })?;
            let Some(cold_to) = cold_to else { return Ok(out) };
            // Cold entries were written before `cold_hi` moved, so they are there to read; if a
            // spill moves `cold_hi` meanwhile, the next turn reads the rest from cold too.
            let found = self.cold.read(device, after + 1, cold_to, limit - out.len())?;
            let full = found.len() == limit - out.len();
            after = if full { found.last().map_or(cold_to, |e| e.seq) } else { cold_to };
            out.extend(found.into_iter().map(|e| StoredEntry {
                seq: e.seq,
                item: e.item,
                expires_at_ms: e.expires_at_ms,
            }));
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }

    /// Whether the log holds anything of `device` in memory: its inbox state or dedup records
    /// of its sends (audits: an erased account's devices leave neither).
    pub fn mentions(&self, device: DeviceAddr) -> bool {
        self.hot.contains(device) || lock(&self.writer).dedup.has_sender(device)
    }

    /// The devices whose inbox state is in memory now (audits).
    pub fn devices_in_memory(&self) -> Vec<DeviceAddr> {
        let mut out = Vec::new();
        self.hot.for_each(|d, _| {
            out.push(d);
            true
        });
        out
    }

    /// The device's acked cursor and last durable seq.
    pub fn cursor(&self, device: DeviceAddr) -> StoreResult<InboxCursor> {
        self.hot.with(device, &*self.cold, |s| InboxCursor { acked: s.acked, last: s.last })
    }

    /// Whether more than `segments_live_max` segments exist (a checkpoint would retire some).
    pub fn checkpoint_due(&self) -> bool {
        let current = lock(&self.writer).segment;
        current + 1 - self.first_segment.load(Ordering::Acquire) > self.config.segments_live_max
    }

    /// Retires segments beyond `segments_live_max` (see the module doc) and writes the cursors
    /// that changed; evicts devices unused since the previous checkpoint. Returns whether
    /// segments were retired. Only the checkpointer calls it.
    pub fn checkpoint(&self) -> StoreResult<bool> {
        let _one = self.checkpointing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_poisoned() {
            return Err(StoreError::Unavailable("the inbox log failed earlier".into()));
        }
        let first = self.first_segment.load(Ordering::Acquire);
        let current = lock(&self.writer).segment;
        let retire_to = (current + 1).saturating_sub(self.config.segments_live_max).max(first);
        // Held writes of the segments about to go: every one was marked logged before the
        // segment after it started (`commit_then`), so settling now writes them all.
        self.cold.settle().inspect_err(|e| self.poison("settling held writes", e))?;
        let mut batch = ColdBatch::default();
        if retire_to > first {
            batch.dedup = lock(&self.writer).dedup.before(retire_to);
            batch.checkpoint = Some(retire_to);
        }
        let mut spilled = Vec::new();
        self.hot.for_each(|d, s| {
            let n = s.entries.iter().take_while(|e| e.segment < retire_to).count();
            if n > 0 {
                spill_front(&mut batch, &mut spilled, d, s, n);
            } else if s.dirty {
                batch.cursors.push((d, s.cold_cursor()));
                s.dirty = false;
            } else if !s.touched && s.entries.is_empty() {
                return false;
            }
            s.touched = false;
            true
        });
        self.cold.write(batch).inspect_err(|e| self.poison("checkpoint write", e))?;
        self.finish_spill(spilled)?;
        if retire_to == first {
            return Ok(false);
        }
        self.cold.persist().inspect_err(|e| self.poison("checkpoint persist", e))?;
        lock(&self.writer).dedup.drop_before(retire_to);
        self.first_segment.store(retire_to, Ordering::Release);
        for n in first..retire_to {
            let keep = (lock(&self.spares).len() as u64) < self.config.spares_max;
            let done = if keep {
                self.fs.rename(&segment::name(n), &segment::spare_name(n)).map(|()| lock(&self.spares).push(n))
            } else {
                self.fs.remove(&segment::name(n))
            };
            if let Err(e) = done {
                tracing::warn!(segment = n, error = %e, "cannot recycle or delete a retired inbox log segment");
            }
        }
        // Not needed for correctness (recovery deletes leftovers before the checkpoint).
        let _ = self.fs.sync_dir();
        Ok(true)
    }

    /// Moves the oldest entries of the largest backlogs to the cold store until memory is back
    /// under three quarters of its budget. Only the checkpointer calls it.
    pub fn relieve(&self) -> StoreResult<()> {
        let _one = self.checkpointing.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = self.config.hot_bytes_max;
        if self.hot.bytes() <= budget || self.is_poisoned() {
            return Ok(());
        }
        let target = budget / 4 * 3;
        for keep in [RELIEVE_KEEP_ENTRIES, 0] {
            let mut backlogs = Vec::new();
            self.hot.for_each(|d, s| {
                if s.entries.len() > keep {
                    backlogs.push((s.entries.len(), d));
                }
                true
            });
            backlogs.sort_unstable_by(|a, b| b.cmp(a));
            for chunk in backlogs.chunks(RELIEVE_CHUNK) {
                let (mut batch, mut spilled) = (ColdBatch::default(), Vec::new());
                for &(_, d) in chunk {
                    self.hot.with(d, &*self.cold, |s| {
                        let n = s.entries.len().saturating_sub(keep);
                        if n > 0 {
                            spill_front(&mut batch, &mut spilled, d, s, n);
                        }
                    })?;
                }
                self.cold.write(batch).inspect_err(|e| self.poison("spill write", e))?;
                self.finish_spill(spilled)?;
                if self.hot.bytes() <= target {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The second half of a spill, after the cold store has the entries: move `cold_hi`, drop
    /// the entries from memory, and delete from cold any that were acked meanwhile.
    fn finish_spill(&self, spilled: Vec<(DeviceAddr, u64, u64)>) -> StoreResult<()> {
        let mut garbage = ColdBatch::default();
        for (d, lo, hi) in spilled {
            let freed = self.hot.with(d, &*self.cold, |s| {
                s.cold_hi = s.cold_hi.max(hi);
                let mut freed = 0;
                while s.entries.front().is_some_and(|e| e.seq <= hi) {
                    freed += s.entries.pop_front().expect("checked").charge;
                }
                if s.acked >= lo {
                    garbage.deletes.push((d, lo, s.acked.min(hi)));
                }
                freed
            })?;
            self.hot.sub_bytes(freed);
        }
        if garbage.is_empty() {
            return Ok(());
        }
        self.cold.write(garbage).inspect_err(|e| self.poison("spill cleanup", e))
    }

    /// Deletes entries appended before `older_than_ms` and dedup records of sends made before
    /// `dedup_older_than_ms`, in memory and cold. Not logged: a restart brings expired entries
    /// and records of live segments back until the next sweep.
    pub fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
        let mut removed = 0u64;
        let mut freed = 0u64;
        self.hot.for_each(|_, s| {
            if s.entries.front().is_some_and(|e| e.ts_ms < older_than_ms)
                || s.entries.iter().any(|e| e.ts_ms < older_than_ms)
            {
                s.entries.retain(|e| {
                    let keep = e.ts_ms >= older_than_ms;
                    if !keep {
                        removed += 1;
                        freed += e.charge;
                    }
                    keep
                });
            }
            true
        });
        self.hot.sub_bytes(freed);
        removed += lock(&self.writer).dedup.expire(dedup_older_than_ms);
        Ok(removed + self.cold.expire(older_than_ms, dedup_older_than_ms)?)
    }

    /// Deletes at most `limit` entries whose disappearing-messages expiry is at or before
    /// `now_ms`: first in memory (a scan of the devices held there, each device's entries
    /// checked only when it holds an expiring one), then in the cold store through its expiry
    /// index. Not logged, like [`expire`](Self::expire): expiry is not monotonic in seq, so an
    /// entry in the middle of an inbox may go while its neighbours stay, and a restart may bring
    /// back an expired entry of a live segment until the next pass. Readers never deliver one
    /// (its expiry travels with it), and a checkpoint moving it to the cold store indexes it
    /// there, so the next pass still finds it.
    pub fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        let mut removed = 0usize;
        let mut freed = 0u64;
        self.hot.for_each(|_, s| {
            if removed < limit && s.entries.iter().any(|e| e.expires_at_ms.is_some_and(|at| at <= now_ms)) {
                s.entries.retain(|e| {
                    let due = removed < limit && e.expires_at_ms.is_some_and(|at| at <= now_ms);
                    if due {
                        removed += 1;
                        freed += e.charge;
                    }
                    !due
                });
            }
            true
        });
        self.hot.sub_bytes(freed);
        let cold = if removed < limit { self.cold.expire_due(now_ms, limit - removed)? } else { 0 };
        Ok(removed as u64 + cold)
    }

    /// Writes the side writes the engine holds back ([`Cold::settle`]); the checkpointer calls
    /// it when they pile up, and every checkpoint does before it retires segments.
    pub fn settle(&self) -> StoreResult<()> {
        if self.is_poisoned() {
            return Ok(());
        }
        self.cold.settle().inspect_err(|e| self.poison("settling held writes", e))
    }

    /// Makes the cold store durable, held writes included (at shutdown; the log itself is
    /// synced by every batch), and cuts a recycled last segment's old bytes, so a clean restart
    /// has nothing to cut.
    pub fn close(&self) -> StoreResult<()> {
        self.cold.settle()?;
        self.cold.persist()?;
        if !self.is_poisoned() {
            self.cut_old_bytes(&mut lock(&self.writer)).map_err(io)?;
        }
        Ok(())
    }

    /// Figures for metrics.
    pub fn stats(&self) -> LogStats {
        let w = lock(&self.writer);
        LogStats {
            hot_bytes: self.hot.bytes(),
            segments: w.segment + 1 - self.first_segment.load(Ordering::Acquire),
            dedup_records: w.dedup.len() as u64,
        }
    }
}

/// Applies one durable record to memory; what it changes in the cold store goes to `out`.
fn apply(
    hot: &Hot,
    cold: &dyn Cold,
    dedup: &mut DedupWindow,
    segment: u64,
    record: Record,
    out: &mut ColdBatch,
) -> StoreResult<()> {
    match record {
        Record::Append { ts_ms, msg_id, dedup: key, items, targets, writes, ack, expires_at_ms } => {
            out.writes.extend(writes);
            let mut shares = vec![0u64; items.len()];
            for t in &targets {
                shares[t.item as usize] += 1;
            }
            for t in targets {
                let item = items[t.item as usize].clone();
                let charge = ENTRY_OVERHEAD_BYTES + item.len() as u64 / shares[t.item as usize];
                let entry = HotEntry { seq: t.seq, ts_ms, expires_at_ms, item, segment, charge };
                let added = hot.with(t.device, cold, |s| s.push(entry))?;
                hot.add_bytes(added);
            }
            if let Some((device, up_to)) = ack {
                apply_ack(hot, cold, device, up_to, out)?;
            }
            if let Some(key) = key {
                dedup.insert(segment, key, (msg_id, ts_ms));
            }
        }
        Record::Ack { device, up_to } => apply_ack(hot, cold, device, up_to, out)?,
        Record::Writes(writes) => out.writes.extend(writes),
        Record::Forget { device } => {
            if let Some(state) = hot.remove(device) {
                hot.sub_bytes(state.entries.iter().map(|e| e.charge).sum());
            }
            dedup.forget_sender(device);
            out.forget.push(device);
        }
    }
    Ok(())
}

fn apply_ack(hot: &Hot, cold: &dyn Cold, device: DeviceAddr, up_to: u64, out: &mut ColdBatch) -> StoreResult<()> {
    let (freed, cold_range) = hot.with(device, cold, |s| s.ack(up_to))?;
    hot.sub_bytes(freed);
    if let Some((from, to)) = cold_range.filter(|(from, to)| from <= to) {
        out.deletes.push((device, from, to));
    }
    Ok(())
}

/// The first half of a spill, under the device's lock: copy its first `n` entries and its
/// cursor (with the new `cold_hi`) into `batch`; remember what to finish.
fn spill_front(
    batch: &mut ColdBatch,
    spilled: &mut Vec<(DeviceAddr, u64, u64)>,
    d: DeviceAddr,
    s: &mut DeviceState,
    n: usize,
) {
    let moving = s.entries.range(..n);
    let (lo, hi) = (s.entries[0].seq, s.entries[n - 1].seq);
    batch.entries.extend(
        moving.map(|e| {
            (d, ColdEntry { seq: e.seq, ts_ms: e.ts_ms, expires_at_ms: e.expires_at_ms, item: e.item.clone() })
        }),
    );
    batch.cursors.push((d, ColdCursor { cold_hi: s.cold_hi.max(hi), ..s.cold_cursor() }));
    s.dirty = false;
    spilled.push((d, lo, hi));
}

/// Distinct items of one append: entries that share an item (the same `Bytes`) store it once.
#[derive(Default)]
struct ItemSet {
    items: Vec<Bytes>,
    by_ptr: HashMap<(usize, usize), u32>,
}

impl ItemSet {
    /// Past this many distinct items, look them up by address instead of scanning.
    const SCAN_MAX: usize = 8;

    fn index(&mut self, item: Bytes) -> u32 {
        let key = (item.as_ptr() as usize, item.len());
        if self.items.len() <= Self::SCAN_MAX {
            if let Some(i) = self.items.iter().position(|x| (x.as_ptr() as usize, x.len()) == key) {
                return i as u32;
            }
            if self.items.len() == Self::SCAN_MAX {
                self.by_ptr =
                    self.items.iter().enumerate().map(|(i, x)| ((x.as_ptr() as usize, x.len()), i as u32)).collect();
            }
        } else if let Some(&i) = self.by_ptr.get(&key) {
            return i;
        }
        let i = self.items.len() as u32;
        if self.items.len() >= Self::SCAN_MAX {
            self.by_ptr.insert(key, i);
        }
        self.items.push(item);
        i
    }
}

/// Creates segment `n` with its header, durable (name included) before any record goes in.
fn start_segment(fs: &dyn LogFs, n: u64) -> std::io::Result<Box<dyn LogFile>> {
    let mut file = fs.create(&segment::name(n))?;
    file.write_all(&segment::header(n))?;
    file.sync_data()?;
    fs.sync_dir()?;
    Ok(file)
}

/// Makes the spare that was segment `spare` into segment `n`: renamed, its header written over
/// the old one, both durable before any record goes in. Returns the file and its size. A crash
/// before the header is durable leaves a segment with another's header, which recovery starts
/// afresh (it can only be the last one).
fn reuse_segment(fs: &dyn LogFs, spare: u64, n: u64) -> std::io::Result<(Box<dyn LogFile>, u64)> {
    fs.rename(&segment::spare_name(spare), &segment::name(n))?;
    let (mut file, len) = fs.open_over(&segment::name(n))?;
    file.write_all(&segment::header(n))?;
    file.sync_data()?;
    fs.sync_dir()?;
    Ok((file, len.max(segment::HEADER_BYTES)))
}

impl Writer {
    /// A writer at the start of a just-created segment.
    fn fresh(file: Box<dyn LogFile>, segment: u64, dedup: DedupWindow) -> Self {
        let len = segment::HEADER_BYTES;
        Self { file, segment, len, seed: segment, file_len: len, buf: Vec::new(), dedup, plan: Plan::default() }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("inbox log i/o: {e}"))
}
