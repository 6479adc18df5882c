//! The committer of one shard: a task that owns one connection to the shard and group-commits
//! what the store queues for it. It takes up to `batch_ops_max` operations (or what arrives
//! within `batch_wait_us` of the first) and writes every append of the batch in ONE transaction
//! of multi-row statements (`unnest` arrays), committed with `synchronous_commit = on`: one
//! WAL flush per batch. The batch's acks go first, in a transaction that does not wait for
//! the flush (a lost ack only means a redelivery).
//!
//! Sequence numbers come from the database (`cursors.last`, bumped once per device per batch,
//! devices in sorted order so two nodes' batches cannot deadlock), so several Iris nodes may
//! append to the same inbox. A batch that loses a race (deadlock, serialization failure) is run
//! again from scratch; any other failure answers every caller with `Unavailable` (nothing was
//! acknowledged), drops the connection, and the next batch reconnects — through the shard's
//! `Writer`, so after a failover to the promoted standby. The task never exits on a database
//! error, only when the store is closed or dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Statement, Transaction};

use super::error::{db_err, is_retryable};
use super::message_index::{RefColumns, REFS_UPSERT};
use super::shards::{sql, sql_msg, unsql, unsql_msg};
use super::writer::Writer;
use super::Shared;
use crate::{CommitSample, DedupKey, DeviceAddr, MessageRef, NewEntry, StoreError, StoreResult};

/// Attempts at a batch that keeps losing races (deadlock or serialization failure).
const ATTEMPTS_MAX: usize = 5;
/// Longest a batch may take (statements and commit); past it the connection is dropped and the
/// callers get `Unavailable`. Bounds the wait on a hung server.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// While the shard is unhealthy and idle, how often the committer tries a commit to find out
/// whether it is back (so `is_healthy` recovers without traffic).
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// One shard's share of an append: its entries, and the dedup key of the whole append.
pub(super) struct AppendPart {
    pub dedup: Option<DedupKey>,
    pub server_msg_id: u64,
    pub server_ts_ms: u64,
    pub entries: Vec<NewEntry>,
    /// The message's index record, staged by `put_message_ref_with_append`: only on the
    /// message's shard, written in the part's transaction whatever its dedup outcome (as an
    /// immediate write would have been).
    pub message_ref: Option<MessageRef>,
    /// When the entries disappear (disappearing messages), if they do.
    pub expires_at_ms: Option<u64>,
    pub reply: oneshot::Sender<StoreResult<PartOutcome>>,
}

/// What a shard did with its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PartOutcome {
    /// Stored; seqs in the order of the part's entries.
    Appended(Vec<u64>),
    /// The dedup key was already recorded on this shard; nothing stored.
    Duplicate { server_msg_id: u64, server_ts_ms: u64 },
}

/// A request to a shard's committer.
pub(super) enum Op {
    /// An append part (durable when answered).
    Append(AppendPart),
    /// A cumulative ack (answered once committed, not flushed).
    Ack { device: DeviceAddr, up_to_seq: u64, reply: oneshot::Sender<StoreResult<()>> },
    /// Stop after everything queued before it; answered when the queue is drained.
    Close { reply: oneshot::Sender<()> },
}

impl Op {
    /// Weight of the op against `batch_ops_max`.
    fn weight(&self) -> usize {
        match self {
            Op::Append(part) => part.entries.len().max(1),
            _ => 1,
        }
    }
}

/// The statements of one connection, prepared once per connection.
struct Statements {
    dedup_insert: Statement,
    dedup_select: Statement,
    cursors_bump: Statement,
    inbox_insert: Statement,
    refs_upsert: Statement,
    sync_marker: Statement,
    ack_lock: Statement,
    ack_delete: Statement,
    ack_update: Statement,
}

/// Records the dedup keys of a batch; returns the ones that were new.
const DEDUP_INSERT: &str = "INSERT INTO dedup (account, device, client_msg_id, server_msg_id, server_ts_ms)
     SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::int8[], $5::int8[])
     ON CONFLICT DO NOTHING
     RETURNING account, device, client_msg_id";
/// The recorded answers of keys that were not new.
const DEDUP_SELECT: &str = "SELECT d.account, d.device, d.client_msg_id, d.server_msg_id, d.server_ts_ms
     FROM dedup d JOIN unnest($1::int8[], $2::int4[], $3::text[]) AS k(account, device, client_msg_id)
     USING (account, device, client_msg_id)";
/// Reserves `n` seqs per device (rows in the given, sorted, order); returns the new `last`.
const CURSORS_BUMP: &str = "INSERT INTO cursors AS c (account, device, last)
     SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[])
     ON CONFLICT (account, device) DO UPDATE SET last = c.last + excluded.last
     RETURNING account, device, last";
const INBOX_INSERT: &str = "INSERT INTO inbox (account, device, seq, appended_at_ms, item, expires_at_ms)
     SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::int8[], $5::bytea[], $6::int8[])";
/// A transactional WAL record: makes a batch that wrote nothing else take a transaction id and
/// flush the WAL at commit (which makes earlier unsynced writes on this shard durable).
const SYNC_MARKER: &str = "SELECT pg_logical_emit_message(true, 'iris', '')::text";
/// Locks the cursors of the acked devices, in sorted order.
const ACK_LOCK: &str = "SELECT c.account, c.device, c.acked, c.last
     FROM cursors c JOIN unnest($1::int8[], $2::int4[]) AS k(account, device) USING (account, device)
     ORDER BY c.account, c.device
     FOR UPDATE OF c";
const ACK_DELETE: &str = "DELETE FROM inbox i
     USING unnest($1::int8[], $2::int4[], $3::int8[], $4::int8[]) AS r(account, device, lo, hi)
     WHERE i.account = r.account AND i.device = r.device AND i.seq > r.lo AND i.seq <= r.hi";
const ACK_UPDATE: &str = "UPDATE cursors c SET acked = r.acked
     FROM unnest($1::int8[], $2::int4[], $3::int8[]) AS r(account, device, acked)
     WHERE c.account = r.account AND c.device = r.device";

/// A live connection and its statements.
struct Conn {
    client: Client,
    stmts: Statements,
}

/// The committer of one shard; lives on its own task.
pub(super) struct Committer {
    shard: usize,
    /// The way to the shard's writable host (after a failover, the promoted standby).
    writer: Arc<Writer>,
    rx: mpsc::Receiver<Op>,
    conn: Option<Conn>,
    batch_ops_max: usize,
    batch_wait: Duration,
    shared: Arc<Shared>,
    /// Callers of close, answered once the queue is drained.
    closers: Vec<oneshot::Sender<()>>,
}

/// What one transaction of the committer does.
#[derive(Clone, Copy)]
enum Work<'a> {
    /// A batch's acks, then its appends (see [`write_batch`]).
    Batch { acks: &'a [(DeviceAddr, u64)], parts: &'a [AppendPart] },
    /// An empty synced commit: is the shard back?
    Probe,
}

/// What it produced.
enum Done {
    /// The outcomes of the batch's appends, in order.
    Batch(Vec<PartOutcome>),
    Nothing,
}

/// Why a batch failed: a lost race is retried, anything else is reported.
enum BatchError {
    Retry,
    Fail(StoreError),
}

impl Committer {
    pub(super) fn new(
        shard: usize,
        writer: Arc<Writer>,
        rx: mpsc::Receiver<Op>,
        batch_ops_max: usize,
        batch_wait: Duration,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            shard,
            writer,
            rx,
            conn: None,
            batch_ops_max: batch_ops_max.max(1),
            batch_wait,
            shared,
            closers: Vec::new(),
        }
    }

    /// The task's body: batches until the queue is closed and drained.
    pub(super) async fn run(mut self) {
        loop {
            let healthy = self.shared.is_shard_healthy(self.shard);
            let first = tokio::select! {
                op = self.rx.recv() => op,
                () = tokio::time::sleep(PROBE_INTERVAL), if !healthy => {
                    self.probe().await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let ops = self.gather(first).await;
            self.process(ops).await;
        }
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
    }

    /// Collects ops after `first` until the batch is full, its wait is over, or a close.
    async fn gather(&mut self, first: Op) -> Vec<Op> {
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        let mut weight = first.weight();
        let mut ops = vec![first];
        while weight < self.batch_ops_max && !matches!(ops.last(), Some(Op::Close { .. })) {
            let op = match self.rx.try_recv() {
                Ok(op) => op,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(op)) => op,
                    _ => break,
                },
            };
            weight += op.weight();
            ops.push(op);
        }
        ops
    }

    /// Commits the acks and appends of `ops` (see [`write_batch`]) and answers every caller.
    async fn process(&mut self, ops: Vec<Op>) {
        let mut parts = Vec::new();
        let mut acks = Vec::new();
        for op in ops {
            match op {
                Op::Append(part) => parts.push(part),
                Op::Ack { device, up_to_seq, reply } => acks.push((device, up_to_seq, reply)),
                Op::Close { reply } => {
                    self.rx.close();
                    self.closers.push(reply);
                }
            }
        }
        if parts.is_empty() && acks.is_empty() {
            return;
        }
        let requests: Vec<(DeviceAddr, u64)> = acks.iter().map(|(d, s, _)| (*d, *s)).collect();
        let started = Instant::now();
        let result = self.with_retries(Work::Batch { acks: &requests, parts: &parts }).await;
        if !parts.is_empty() {
            self.record(parts.len() as u64, started.elapsed(), &result);
        }
        let (outcomes, failure) = match result {
            Ok(Done::Batch(outcomes)) => (outcomes, None),
            Ok(Done::Nothing) => (Vec::new(), Some(StoreError::Unavailable("batch produced no outcomes".into()))),
            Err(e) => (Vec::new(), Some(e)),
        };
        for (_, _, reply) in acks {
            let _ = reply.send(failure.clone().map_or(Ok(()), Err));
        }
        match failure {
            None => {
                for (part, outcome) in parts.into_iter().zip(outcomes) {
                    let _ = part.reply.send(Ok(outcome));
                }
            }
            Some(e) => {
                for part in parts {
                    let _ = part.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Runs `work` in a fresh transaction until it commits, loses too many races, or fails.
    async fn with_retries(&mut self, work: Work<'_>) -> StoreResult<Done> {
        let shard = self.shard;
        for _ in 0..ATTEMPTS_MAX {
            let conn = self.connection().await?;
            let attempt = async {
                match work {
                    Work::Batch { acks, parts } => write_batch(conn, acks, parts).await.map(Done::Batch),
                    Work::Probe => write_marker(conn).await.map(|()| Done::Nothing),
                }
            };
            let outcome = match tokio::time::timeout(BATCH_TIMEOUT, attempt).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(e)) if is_retryable(&e) => BatchError::Retry,
                Ok(Err(e)) => BatchError::Fail(db_err(shard, e)),
                Err(_) => BatchError::Fail(StoreError::Unavailable(format!(
                    "PostgreSQL shard {shard}: batch took longer than {BATCH_TIMEOUT:?}"
                ))),
            };
            match outcome {
                BatchError::Retry => continue,
                BatchError::Fail(e) => {
                    // The connection may be broken or mid-transaction: start afresh next time.
                    self.conn = None;
                    return Err(e);
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "PostgreSQL shard {shard}: batch kept conflicting after {ATTEMPTS_MAX} attempts"
        )))
    }

    /// The live connection, opened (and its statements prepared) if needed.
    async fn connection(&mut self) -> StoreResult<&mut Conn> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn =
                tokio::time::timeout(self.writer.search_timeout(), connect(self.shard, &self.writer)).await.map_err(
                    |_| StoreError::Unavailable(format!("PostgreSQL shard {}: connect timed out", self.shard)),
                )??;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Tries an empty synced commit, so health recovers once the shard is back. Not a batch:
    /// counted nowhere, logged only at debug level (it fails every interval while the shard
    /// is down).
    async fn probe(&mut self) {
        match self.with_retries(Work::Probe).await {
            Ok(_) => {
                self.shared.set_healthy(self.shard, true);
                tracing::info!(shard = self.shard, "PostgreSQL shard is back");
            }
            Err(e) => tracing::debug!(shard = self.shard, error = %e, "PostgreSQL shard still unavailable"),
        }
    }

    /// Health, counters and the commit observer after a batch's synced commit; `appends` counts
    /// the append parts this shard committed.
    fn record<T>(&self, appends: u64, duration: Duration, result: &StoreResult<T>) {
        let ok = result.is_ok();
        self.shared.record_commit(self.shard, ok);
        if let Err(e) = result {
            tracing::warn!(shard = self.shard, error = %e, "PostgreSQL batch failed");
        }
        if let Some(observer) = self.shared.observer.get() {
            observer.committed(CommitSample { appends, duration, ok });
        }
    }
}

/// Opens the committer's connection (to the shard's writable host) and prepares its
/// statements.
async fn connect(shard: usize, writer: &Writer) -> StoreResult<Conn> {
    let (client, _driver) = writer.connect().await?;
    let prepare = |sql: &'static str| {
        let client = &client;
        async move { client.prepare(sql).await.map_err(|e| db_err(shard, e)) }
    };
    let stmts = Statements {
        dedup_insert: prepare(DEDUP_INSERT).await?,
        dedup_select: prepare(DEDUP_SELECT).await?,
        cursors_bump: prepare(CURSORS_BUMP).await?,
        inbox_insert: prepare(INBOX_INSERT).await?,
        refs_upsert: prepare(REFS_UPSERT).await?,
        sync_marker: prepare(SYNC_MARKER).await?,
        ack_lock: prepare(ACK_LOCK).await?,
        ack_delete: prepare(ACK_DELETE).await?,
        ack_update: prepare(ACK_UPDATE).await?,
    };
    Ok(Conn { client, stmts })
}

/// A dedup key as its columns.
type KeyCols<'a> = (u64, u32, &'a str);

fn key_cols(key: &DedupKey) -> KeyCols<'_> {
    (key.sender.account, key.sender.device, key.client_msg_id.as_str())
}

/// One batch: its acks in a transaction that does not wait for the WAL flush, then its appends
/// in one synced transaction. Acks go first, as in fjall, so they are clamped to what was
/// committed before this batch and never delete an entry of it. Two transactions, not one:
/// each keeps one lock order (acks: cursors sorted; appends: dedup keys sorted, then cursors
/// sorted), so batches of several nodes cannot deadlock. Re-running both after a lost race is
/// harmless: acks are idempotent.
async fn write_batch(
    conn: &mut Conn,
    acks: &[(DeviceAddr, u64)],
    parts: &[AppendPart],
) -> Result<Vec<PartOutcome>, tokio_postgres::Error> {
    let Conn { client, stmts } = conn;
    if !acks.is_empty() {
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL synchronous_commit = off").await?;
        write_acks(&tx, stmts, acks).await?;
        tx.commit().await?;
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await?;
    let outcomes = write_appends(&tx, stmts, parts).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Writes every append part of the batch; the outcomes are in part order.
async fn write_appends(
    tx: &Transaction<'_>,
    stmts: &Statements,
    parts: &[AppendPart],
) -> Result<Vec<PartOutcome>, tokio_postgres::Error> {
    let mut wrote = false;

    // Dedup: each key once, in sorted order (two nodes inserting the same keys wait on each
    // other in the same order instead of deadlocking). The first part with a key owns it.
    let mut owner: BTreeMap<KeyCols<'_>, usize> = BTreeMap::new();
    for (idx, part) in parts.iter().enumerate() {
        if let Some(key) = &part.dedup {
            owner.entry(key_cols(key)).or_insert(idx);
        }
    }
    let mut inserted: HashSet<KeyCols<'_>> = HashSet::new();
    let mut recorded: HashMap<KeyCols<'_>, (u64, u64)> = HashMap::new();
    if !owner.is_empty() {
        let (mut accounts, mut devices, mut ids, mut msg_ids, mut times) = (vec![], vec![], vec![], vec![], vec![]);
        for (&(account, device, cmid), &idx) in &owner {
            accounts.push(sql(account));
            devices.push(device as i32);
            ids.push(cmid);
            msg_ids.push(sql_msg(parts[idx].server_msg_id));
            times.push(sql(parts[idx].server_ts_ms));
        }
        let rows = tx.query(&stmts.dedup_insert, &[&accounts, &devices, &ids, &msg_ids, &times]).await?;
        wrote |= !rows.is_empty();
        let mut fresh: HashSet<(i64, i32, String)> = HashSet::new();
        for row in rows {
            fresh.insert((row.get(0), row.get(1), row.get(2)));
        }
        let (mut old_accounts, mut old_devices, mut old_ids) = (vec![], vec![], vec![]);
        for &(account, device, cmid) in owner.keys() {
            if fresh.contains(&(sql(account), device as i32, cmid.to_owned())) {
                inserted.insert((account, device, cmid));
            } else {
                old_accounts.push(sql(account));
                old_devices.push(device as i32);
                old_ids.push(cmid);
            }
        }
        if !old_ids.is_empty() {
            let rows = tx.query(&stmts.dedup_select, &[&old_accounts, &old_devices, &old_ids]).await?;
            let mut found: HashMap<(i64, i32, String), (u64, u64)> = HashMap::with_capacity(rows.len());
            for row in rows {
                found.insert((row.get(0), row.get(1), row.get(2)), (unsql_msg(row.get(3)), unsql(row.get(4))));
            }
            for &k in owner.keys() {
                if let Some(&answer) = found.get(&(sql(k.0), k.1 as i32, k.2.to_owned())) {
                    recorded.insert(k, answer);
                }
            }
        }
    }

    // Which parts store their entries; the others are duplicates with the recorded answer.
    let mut outcomes: Vec<Option<PartOutcome>> = Vec::with_capacity(parts.len());
    for (idx, part) in parts.iter().enumerate() {
        let duplicate = part.dedup.as_ref().and_then(|key| {
            let k = key_cols(key);
            let first = owner.get(&k).copied().unwrap_or(idx);
            if first != idx && inserted.contains(&k) {
                Some((parts[first].server_msg_id, parts[first].server_ts_ms))
            } else if !inserted.contains(&k) {
                // Recorded before this batch; a row deleted meanwhile (expiry) reads as the
                // original answer of this part, which is what a retry would have got.
                Some(recorded.get(&k).copied().unwrap_or((part.server_msg_id, part.server_ts_ms)))
            } else {
                None
            }
        });
        outcomes.push(
            duplicate.map(|(server_msg_id, server_ts_ms)| PartOutcome::Duplicate { server_msg_id, server_ts_ms }),
        );
    }

    // Seqs: reserve every device's count in one statement, devices sorted (no deadlocks).
    let mut counts: BTreeMap<DeviceAddr, i64> = BTreeMap::new();
    for (part, outcome) in parts.iter().zip(&outcomes) {
        if outcome.is_none() {
            for entry in &part.entries {
                *counts.entry(entry.device).or_default() += 1;
            }
        }
    }
    let mut next: HashMap<DeviceAddr, u64> = HashMap::with_capacity(counts.len());
    if !counts.is_empty() {
        let accounts: Vec<i64> = counts.keys().map(|d| sql(d.account)).collect();
        let devices: Vec<i32> = counts.keys().map(|d| d.device as i32).collect();
        let ns: Vec<i64> = counts.values().copied().collect();
        for row in tx.query(&stmts.cursors_bump, &[&accounts, &devices, &ns]).await? {
            let device = DeviceAddr::new(unsql(row.get(0)), row.get::<_, i32>(1) as u32);
            let last = unsql(row.get(2));
            let n = counts.get(&device).copied().unwrap_or(0) as u64;
            next.insert(device, last + 1 - n);
        }
        let (mut accounts, mut devices, mut seqs, mut times, mut items) = (vec![], vec![], vec![], vec![], vec![]);
        let mut expiries: Vec<Option<i64>> = vec![];
        for (part, outcome) in parts.iter().zip(outcomes.iter_mut()) {
            if outcome.is_some() {
                continue;
            }
            let mut part_seqs = Vec::with_capacity(part.entries.len());
            for entry in &part.entries {
                let seq = next.entry(entry.device).or_insert(1);
                accounts.push(sql(entry.device.account));
                devices.push(entry.device.device as i32);
                seqs.push(sql(*seq));
                times.push(sql(part.server_ts_ms));
                items.push(&entry.item[..]);
                expiries.push(part.expires_at_ms.map(sql));
                part_seqs.push(*seq);
                *seq += 1;
            }
            *outcome = Some(PartOutcome::Appended(part_seqs));
        }
        tx.execute(&stmts.inbox_insert, &[&accounts, &devices, &seqs, &times, &items, &expiries]).await?;
        wrote = true;
    }
    // Staged message refs: one statement, each id once (the last staged wins), ids sorted.
    let refs: BTreeMap<u64, &MessageRef> =
        parts.iter().filter_map(|p| p.message_ref.as_ref().map(|r| (p.server_msg_id, r))).collect();
    if !refs.is_empty() {
        let mut cols = RefColumns::default();
        for (&id, r) in &refs {
            cols.push(id, r);
        }
        let RefColumns { ids, senders, kinds, conversations, sent_at, deleted, expires_at } = &cols;
        tx.execute(&stmts.refs_upsert, &[ids, senders, kinds, conversations, sent_at, deleted, expires_at]).await?;
        wrote = true;
    }
    if !wrote {
        tx.query(&stmts.sync_marker, &[]).await?;
    }
    Ok(outcomes.into_iter().map(|o| o.unwrap_or(PartOutcome::Appended(Vec::new()))).collect())
}

/// Applies a batch of cumulative acks: per device the highest ack, clamped to the committed
/// `last`; acks at or below the cursor change nothing.
async fn write_acks(
    tx: &Transaction<'_>,
    stmts: &Statements,
    requests: &[(DeviceAddr, u64)],
) -> Result<(), tokio_postgres::Error> {
    let mut wanted: BTreeMap<DeviceAddr, u64> = BTreeMap::new();
    for &(device, up_to) in requests {
        let slot = wanted.entry(device).or_default();
        *slot = (*slot).max(up_to);
    }
    let accounts: Vec<i64> = wanted.keys().map(|d| sql(d.account)).collect();
    let devices: Vec<i32> = wanted.keys().map(|d| d.device as i32).collect();
    let (mut m_accounts, mut m_devices, mut los, mut his) = (vec![], vec![], vec![], vec![]);
    for row in tx.query(&stmts.ack_lock, &[&accounts, &devices]).await? {
        let device = DeviceAddr::new(unsql(row.get(0)), row.get::<_, i32>(1) as u32);
        let (acked, last) = (unsql(row.get(2)), unsql(row.get(3)));
        let up_to = wanted.get(&device).copied().unwrap_or(0).min(last);
        if up_to > acked {
            m_accounts.push(sql(device.account));
            m_devices.push(device.device as i32);
            los.push(sql(acked));
            his.push(sql(up_to));
        }
    }
    if !his.is_empty() {
        tx.execute(&stmts.ack_delete, &[&m_accounts, &m_devices, &los, &his]).await?;
        tx.execute(&stmts.ack_update, &[&m_accounts, &m_devices, &his]).await?;
    }
    Ok(())
}

/// An otherwise empty synced commit (the health probe).
async fn write_marker(conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
    let Conn { client, stmts } = conn;
    let tx = client.transaction().await?;
    tx.query(&stmts.sync_marker, &[]).await?;
    tx.commit().await
}
