//! The committer thread: the only writer of inbox entries, cursors and dedup records. It
//! collects queued requests into a batch (bounded by time and size), applies them in queue order
//! to one fjall write batch, commits it with one fdatasync, then answers every caller. Being the
//! single writer is what makes per-device seqs gap-free, ordered and never reused.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjall::{OwnedWriteBatch, PersistMode};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::staged::{self, Staged};
use super::{codec, inbox, keys, unavailable, FjallConfig, Keyspaces, Shared};
use crate::{AppendOutcome, AppendRequest, CommitSample, DedupKey, DeviceAddr, InboxCursor, StoreError, StoreResult};

/// Devices whose committed cursor the committer keeps in memory; past this the cache is
/// dropped and refilled from disk, so memory stays bounded however many devices exist.
const CURSOR_CACHE_LEN_MAX: usize = 1 << 20;
/// Longest sleep while waiting to fill a batch: the granularity of the batch wait.
const POLL_INTERVAL: Duration = Duration::from_micros(50);

/// A request to the committer, with the channel its answer goes to.
pub(super) enum Command {
    /// `InboxStore::append`, with optional extra writes committed atomically with it.
    Append { req: AppendRequest, side: Option<SideWrites>, reply: oneshot::Sender<StoreResult<AppendOutcome>> },
    /// `InboxStore::ack`.
    Ack { device: DeviceAddr, up_to_seq: u64, reply: oneshot::Sender<StoreResult<()>> },
    /// `InboxStore::purge`.
    Purge { device: DeviceAddr, reply: oneshot::Sender<StoreResult<()>> },
    /// Stop accepting requests; answered once everything queued before it is committed.
    Close { reply: oneshot::Sender<()> },
    /// Nothing to apply: wakes an idle committer so staged writes reach the journal.
    Flush,
}

impl Command {
    /// Weight of the command against `batch_max_ops`.
    fn ops(&self) -> usize {
        match self {
            Command::Append { req, .. } => req.entries.len().max(1),
            _ => 1,
        }
    }
}

/// The committer's state; lives on its own thread.
pub(super) struct Committer {
    ks: Keyspaces,
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    batch_max_ops: usize,
    batch_max_wait: Duration,
    /// Committed cursor of devices seen recently (disk is the truth; this saves reads). Holds
    /// only committed state, so a failed batch is rolled back by not merging its cursors.
    cursors: HashMap<DeviceAddr, InboxCursor>,
    /// Callers of close, answered when the queue is drained.
    closers: Vec<oneshot::Sender<()>>,
    /// Buffered writes of other parts of the engine staged for the next batch (`staged.rs`).
    staged: Vec<Arc<Staged>>,
}

/// A batch being built: the fjall writes plus the state they make true once committed.
struct Batch {
    writes: OwnedWriteBatch,
    /// Cursors of the devices this batch touches, as they will be after it.
    cursors: HashMap<DeviceAddr, InboxCursor>,
    /// Dedup keys recorded earlier in this batch: a second retry in one batch is a duplicate.
    dedup: HashMap<DedupKey, (u64, u64)>,
    replies: Vec<Reply>,
    /// Whether the batch holds an append and so needs the fsync (acks alone do not).
    sync: bool,
    /// Staged writes this batch makes (per staging), forgotten once it is committed.
    staged: Vec<Vec<(staged::Bytes, staged::Bytes)>>,
    n_appends: u64,
    n_duplicates: u64,
}

/// Writes of another part of the engine (a group record) that must commit atomically with an
/// append.
pub(super) type SideWrites = Box<dyn FnOnce(&mut OwnedWriteBatch) + Send>;

/// Acks of at most this many seqs delete by computed key; larger ones scan what exists (a
/// resume after a long absence must not write a tombstone per expired entry).
const ACK_DIRECT_DELETE_MAX: u64 = 4096;

/// A caller's answer, held until the batch is committed.
enum Reply {
    Append(oneshot::Sender<StoreResult<AppendOutcome>>, StoreResult<AppendOutcome>),
    Done(oneshot::Sender<StoreResult<()>>, StoreResult<()>),
}

impl Committer {
    pub(super) fn new(
        ks: Keyspaces,
        rx: mpsc::Receiver<Command>,
        config: &FjallConfig,
        shared: Arc<Shared>,
        staged: Vec<Arc<Staged>>,
    ) -> Self {
        Self {
            staged,
            ks,
            rx,
            shared,
            batch_max_ops: config.batch_max_ops.max(1),
            batch_max_wait: Duration::from_micros(config.batch_max_wait_us),
            cursors: HashMap::new(),
            closers: Vec::new(),
        }
    }

    /// The thread's body: batches until the queue is closed and drained.
    pub(super) fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let commands = self.gather(first);
            self.process(commands);
        }
        // Writes staged after the last batch.
        if self.staged.iter().any(|s| !s.is_empty()) {
            self.process(Vec::new());
        }
        // Acks were written without fsync; make them durable too before saying we are closed.
        if let Err(e) = self.ks.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "final persist of the store failed");
        }
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
    }

    /// Collects commands after `first` until the batch is full, its wait is over, or a close.
    fn gather(&mut self, first: Command) -> Vec<Command> {
        let deadline = Instant::now() + self.batch_max_wait;
        let mut ops = first.ops();
        let mut commands = vec![first];
        while ops < self.batch_max_ops && !matches!(commands.last(), Some(Command::Close { .. })) {
            match self.rx.try_recv() {
                Ok(command) => {
                    ops += command.ops();
                    commands.push(command);
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep((deadline - now).min(POLL_INTERVAL));
                }
            }
        }
        commands
    }

    /// Applies `commands` in order and commits them (in two batches around a purge).
    fn process(&mut self, commands: Vec<Command>) {
        let mut batch = self.new_batch();
        batch.staged = self.staged.iter().map(|s| s.write_into(&mut batch.writes)).collect();
        for command in commands {
            match command {
                Command::Append { req, side, reply } => {
                    let result = self.append(&mut batch, &req);
                    if let (Ok(_), Some(side)) = (&result, side) {
                        side(&mut batch.writes);
                        batch.sync = true;
                    }
                    batch.replies.push(Reply::Append(reply, result));
                }
                Command::Ack { device, up_to_seq, reply } => {
                    let result = self.ack(&mut batch, device, up_to_seq);
                    batch.replies.push(Reply::Done(reply, result));
                }
                Command::Purge { device, reply } => {
                    // A barrier: commit what came before, so the purge's scan sees those entries.
                    let before = std::mem::replace(&mut batch, self.new_batch());
                    self.commit(before);
                    let result = self.purge(&mut batch, device);
                    batch.replies.push(Reply::Done(reply, result));
                }
                Command::Close { reply } => {
                    self.rx.close();
                    self.closers.push(reply);
                }
                Command::Flush => {}
            }
        }
        self.commit(batch);
    }

    fn new_batch(&self) -> Batch {
        Batch {
            writes: self.ks.db.batch(),
            cursors: HashMap::new(),
            dedup: HashMap::new(),
            replies: Vec::new(),
            sync: false,
            staged: Vec::new(),
            n_appends: 0,
            n_duplicates: 0,
        }
    }

    /// Adds one append to the batch: all of it, or (on a read error) nothing.
    fn append(&mut self, batch: &mut Batch, req: &AppendRequest) -> StoreResult<AppendOutcome> {
        if let Some(key) = &req.dedup {
            if let Some((server_msg_id, server_ts_ms)) = self.recorded(batch, key)? {
                batch.n_duplicates += 1;
                return Ok(AppendOutcome::Duplicate { server_msg_id, server_ts_ms });
            }
        }
        // Every read happens before the first write, so a failure leaves the batch untouched.
        let loaded = req.entries.iter().map(|entry| self.load(batch, entry.device)).collect::<StoreResult<Vec<_>>>()?;
        let mut seqs = Vec::with_capacity(req.entries.len());
        for (entry, cursor) in req.entries.iter().zip(loaded) {
            let cursor = batch.cursors.entry(entry.device).or_insert(cursor);
            cursor.last += 1;
            let value = codec::encode_inbox(req.server_ts_ms, &entry.item);
            batch.writes.insert(&self.ks.inbox, keys::inbox(entry.device, cursor.last), value);
            seqs.push(cursor.last);
        }
        if let Some(key) = &req.dedup {
            let value = codec::encode_dedup(req.server_msg_id, req.server_ts_ms);
            batch.writes.insert(&self.ks.dedup, keys::dedup(key), value);
            batch.dedup.insert(key.clone(), (req.server_msg_id, req.server_ts_ms));
        }
        batch.sync = true;
        batch.n_appends += 1;
        Ok(AppendOutcome::Appended { seqs })
    }

    /// The original (id, time) of a dedup key: from this batch first, then from disk.
    fn recorded(&self, batch: &Batch, key: &DedupKey) -> StoreResult<Option<(u64, u64)>> {
        if let Some(&found) = batch.dedup.get(key) {
            return Ok(Some(found));
        }
        let value = self.ks.dedup.get(keys::dedup(key)).map_err(unavailable)?;
        value.map(|v| codec::decode_dedup(&v)).transpose()
    }

    /// Deletes the device's entries up to `up_to_seq`, clamped to what is committed; acks at or
    /// below the cursor are no-ops. Clamping to the committed `last` (not to seqs assigned
    /// earlier in this batch) keeps the scan below complete: it sees every entry it must delete.
    fn ack(&mut self, batch: &mut Batch, device: DeviceAddr, up_to_seq: u64) -> StoreResult<()> {
        let committed_last = self.committed(device)?.last;
        let cursor = self.load(batch, device)?;
        let up_to = up_to_seq.min(committed_last);
        if up_to <= cursor.acked {
            return Ok(());
        }
        let from = cursor.acked + 1;
        if up_to - from < ACK_DIRECT_DELETE_MAX {
            // Seqs are dense, so the keys are known: deleting them directly skips a range scan
            // of the memtable (the hot case: a window of a few hundred entries). The tombstones
            // are weak: an inbox key is written exactly once (seqs are never reused), so a weak
            // tombstone and its entry annihilate when they meet in a flush or compaction. Entries
            // acked while still in the memtable (most of them) are then never written to a table,
            // instead of flushing both the entry and a tombstone that lives until the last level.
            for seq in from..=up_to {
                batch.writes.remove_weak(&self.ks.inbox, keys::inbox(device, seq));
            }
        } else {
            self.delete_range(batch, device, from, up_to)?;
        }
        batch.cursors.insert(device, InboxCursor { acked: up_to, ..cursor });
        Ok(())
    }

    /// Deletes every entry of the device and moves its cursor to `last` (seqs are not reused).
    fn purge(&mut self, batch: &mut Batch, device: DeviceAddr) -> StoreResult<()> {
        let cursor = self.load(batch, device)?;
        if let Some(from) = cursor.acked.checked_add(1) {
            self.delete_range(batch, device, from, u64::MAX)?;
        }
        batch.cursors.insert(device, InboxCursor { acked: cursor.last, ..cursor });
        Ok(())
    }

    /// Adds deletes of the device's entries with `from <= seq <= to` (scanning only that range).
    fn delete_range(&self, batch: &mut Batch, device: DeviceAddr, from: u64, to: u64) -> StoreResult<()> {
        let doomed = self
            .ks
            .inbox
            .range(keys::inbox(device, from)..=keys::inbox(device, to))
            .map(|guard| guard.key().map_err(unavailable))
            .collect::<StoreResult<Vec<_>>>()?;
        for key in doomed {
            batch.writes.remove(&self.ks.inbox, key);
        }
        Ok(())
    }

    /// The device's cursor as this batch sees it.
    fn load(&mut self, batch: &mut Batch, device: DeviceAddr) -> StoreResult<InboxCursor> {
        if let Some(&cursor) = batch.cursors.get(&device) {
            return Ok(cursor);
        }
        let cursor = self.committed(device)?;
        batch.cursors.insert(device, cursor);
        Ok(cursor)
    }

    /// The device's committed cursor: cached, or the stored one with `last` raised to the
    /// highest seq in the inbox (scanning from `acked + 1`, never over acked tombstones).
    fn committed(&mut self, device: DeviceAddr) -> StoreResult<InboxCursor> {
        if let Some(&cursor) = self.cursors.get(&device) {
            return Ok(cursor);
        }
        let stored = inbox::cursor(&self.ks, device)?;
        let highest = match stored.acked.checked_add(1) {
            Some(from) => self.highest_seq(device, from)?,
            None => 0,
        };
        let cursor = InboxCursor { last: stored.last.max(highest), ..stored };
        self.cursors.insert(device, cursor);
        Ok(cursor)
    }

    /// The highest seq stored for the device at or above `from`, or 0.
    fn highest_seq(&self, device: DeviceAddr, from: u64) -> StoreResult<u64> {
        let range = keys::inbox(device, from)..=keys::inbox(device, u64::MAX);
        match self.ks.inbox.range(range).next_back() {
            Some(guard) => keys::inbox_seq(&guard.key().map_err(unavailable)?),
            None => Ok(0),
        }
    }

    /// Writes the batch's cursors, commits (fdatasync if it holds an append) and answers.
    fn commit(&mut self, batch: Batch) {
        let Batch { mut writes, cursors, replies, sync, staged, n_appends, n_duplicates, .. } = batch;
        for (device, cursor) in &cursors {
            if self.cursors.get(device) != Some(cursor) {
                writes.insert(&self.ks.cursors, keys::device(*device), codec::encode_cursor(*cursor));
            }
        }
        let result = if writes.is_empty() {
            Ok(())
        } else {
            let mode = if sync { PersistMode::SyncData } else { PersistMode::Buffer };
            let started = Instant::now();
            let result = writes.durability(Some(mode)).commit();
            self.shared.record_batch(result.is_ok());
            if let Some(observer) = self.shared.observer.get() {
                observer.committed(CommitSample {
                    appends: n_appends,
                    duration: started.elapsed(),
                    ok: result.is_ok(),
                });
            }
            result
        };
        match result {
            Ok(()) => {
                self.shared.appends.fetch_add(n_appends, Ordering::Relaxed);
                self.shared.duplicates.fetch_add(n_duplicates, Ordering::Relaxed);
                self.remember(cursors);
                for (staging, written) in self.staged.iter().zip(&staged) {
                    staging.forget(written);
                }
                answer(replies, None);
            }
            Err(e) => {
                // The cursors of the batch are dropped: the seqs it assigned will be assigned
                // again. fjall poisons the database after a failed journal write or fsync, so
                // nothing commits until a restart, whose recovery sees a consistent journal.
                tracing::error!(error = %e, "inbox batch commit failed");
                answer(replies, Some(&e.to_string()));
            }
        }
    }

    /// Merges a committed batch's cursors into the cache, keeping the cache bounded.
    fn remember(&mut self, cursors: HashMap<DeviceAddr, InboxCursor>) {
        self.cursors.extend(cursors);
        if self.cursors.len() > CURSOR_CACHE_LEN_MAX {
            self.cursors.clear();
        }
    }
}

/// Sends every caller its answer, or [`StoreError::Unavailable`] if the commit failed.
fn answer(replies: Vec<Reply>, failure: Option<&str>) {
    for reply in replies {
        match reply {
            Reply::Append(tx, result) => {
                let _ = tx.send(settle(result, failure));
            }
            Reply::Done(tx, result) => {
                let _ = tx.send(settle(result, failure));
            }
        }
    }
}

fn settle<T>(result: StoreResult<T>, failure: Option<&str>) -> StoreResult<T> {
    match failure {
        Some(why) => Err(StoreError::Unavailable(format!("commit failed: {why}"))),
        None => result,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use crate::embedded::{FjallConfig, FjallStore};
    use crate::{
        AppendOutcome, AppendRequest, Conversation, DedupKey, DeviceAddr, InboxStore, MessageIndexStore, MessageRef,
        NewEntry,
    };

    /// CPU seconds (user + system, all threads) of this process so far.
    fn cpu_s() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        // Fields 14 and 15 of proc(5), counted after the command name: utime, stime in ticks.
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "a measurement, not a check: cargo test --release -p iris-store --lib committer_cost -- --ignored --nocapture"]
    async fn committer_cost_per_message() {
        // The 1:1 shape at the store: per message an index record, a deduplicated append to one
        // device and, once a round is durable, the device's ack. Prints CPU µs per message.
        const DEVICES: u64 = 200;
        const PER_ROUND: u64 = 2000;
        const ROUNDS: u64 = 100;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FjallStore::open(dir.path(), FjallConfig::default()).unwrap());
        let item = Bytes::from(vec![7u8; 200]);
        let (started, cpu0) = (Instant::now(), cpu_s());
        let mut last = vec![0u64; DEVICES as usize];
        for round in 0..ROUNDS {
            let mut pending = Vec::new();
            for i in 0..PER_ROUND {
                let id = round * PER_ROUND + i + 1;
                let (to, from) = (DeviceAddr::new(id % DEVICES + 1, 1), DeviceAddr::new((id + 7) % DEVICES + 1, 1));
                let r = MessageRef {
                    sender: from.account,
                    conversation: Conversation::Direct(to.account),
                    sent_at_ms: 1,
                    deleted: false,
                };
                store.put_message_ref(id, r).await.unwrap();
                let dedup = Some(DedupKey { sender: from, client_msg_id: format!("c-{id}") });
                let entries = vec![NewEntry { device: to, item: item.clone() }];
                pending.push((
                    to,
                    store
                        .enqueue_append(AppendRequest { dedup, server_msg_id: id, server_ts_ms: 1, entries })
                        .await
                        .unwrap(),
                ));
            }
            for (to, p) in pending {
                if let AppendOutcome::Appended { seqs } = p.await.unwrap() {
                    let slot = &mut last[(to.account - 1) as usize];
                    *slot = (*slot).max(seqs[0]);
                }
            }
            let acks: Vec<_> = (0..DEVICES)
                .map(|d| {
                    let store = store.clone();
                    let up_to = last[d as usize];
                    tokio::spawn(async move { store.ack(DeviceAddr::new(d + 1, 1), up_to).await.unwrap() })
                })
                .collect();
            for a in acks {
                a.await.unwrap();
            }
        }
        let n = (ROUNDS * PER_ROUND) as f64;
        let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_s() - cpu0);
        println!("committer_cost: {n} msgs, {:.0} msgs/s wall, {:.2} µs CPU per msg", n / wall, cpu * 1e6 / n);
    }
}
