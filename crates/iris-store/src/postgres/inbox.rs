//! [`InboxStore`] on PostgreSQL: appends are split by shard and queued to the shards'
//! committers (all queues reserved first, so an append is queued whole or not at all); reads,
//! cursors, purges and expiry go straight to the shards' pools.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::committer::{AppendPart, Op, PartOutcome};
use super::error::db_err;
use super::shards::{shard_of_id, shard_of_msg, sql, unsql, SHARD_BITS};
use super::{Inner, PgStore, OVERLOADED_RETRY_AFTER_MS};
use crate::{
    AppendOutcome, AppendRequest, CommitObserver, DeviceAddr, InboxCursor, InboxStore, NewEntry, PendingAppend,
    StoreError, StoreResult, StoredEntry,
};

/// The bits of an account id that name its shard, for SQL.
const SHARD_MASK: i64 = (1 << SHARD_BITS) - 1;
/// Most entries one `read` returns.
const READ_LIMIT_MAX: usize = 1024;

/// One shard's share of an append before it is queued: which request entries it holds.
struct Split {
    entries: Vec<NewEntry>,
    /// The message's staged ref, on the message's shard only.
    message_ref: Option<crate::MessageRef>,
    /// Index in the request of each of `entries`.
    positions: Vec<usize>,
}

impl Inner {
    /// Operations waiting in the committers' queues.
    pub(super) fn queued(&self) -> usize {
        self.committers.iter().map(|tx| tx.max_capacity() - tx.capacity()).sum()
    }

    /// Splits `req` by shard and queues every part, or none: capacity on every involved queue
    /// is reserved first (shards in ascending order), waiting up to the enqueue timeout.
    pub(super) async fn enqueue_append(self: &Arc<Self>, req: AppendRequest) -> StoreResult<PendingAppend> {
        self.check_open()?;
        let n = self.n_shards();
        let mut splits: BTreeMap<usize, Split> = BTreeMap::new();
        let empty = || Split { entries: Vec::new(), message_ref: None, positions: Vec::new() };
        let sender_shard = req.dedup.as_ref().map(|key| shard_of_id(key.sender.account, n));
        if let Some(shard) = sender_shard {
            splits.entry(shard).or_insert_with(empty);
        }
        let message_ref = self.take_staged_ref(req.server_msg_id);
        splits.entry(shard_of_msg(req.server_msg_id, n)).or_insert_with(empty).message_ref = message_ref;
        let n_entries = req.entries.len();
        for (pos, entry) in req.entries.into_iter().enumerate() {
            let split = splits.entry(shard_of_id(entry.device.account, n)).or_insert_with(empty);
            split.entries.push(entry);
            split.positions.push(pos);
        }
        let reserve_all = async {
            let mut permits = Vec::with_capacity(splits.len());
            for &shard in splits.keys() {
                permits.push(self.committers[shard].reserve().await.map_err(|_| StoreError::Closed)?);
            }
            Ok::<_, StoreError>(permits)
        };
        let permits = match tokio::time::timeout(self.enqueue_timeout, reserve_all).await {
            Ok(permits) => permits?,
            Err(_) => return Err(StoreError::Overloaded { retry_after_ms: OVERLOADED_RETRY_AFTER_MS }),
        };
        let mut waits = Vec::with_capacity(splits.len());
        for (permit, (shard, split)) in permits.into_iter().zip(splits) {
            let (reply, answer) = oneshot::channel();
            permit.send(Op::Append(AppendPart {
                dedup: req.dedup.clone(),
                server_msg_id: req.server_msg_id,
                server_ts_ms: req.server_ts_ms,
                entries: split.entries,
                message_ref: split.message_ref,
                expires_at_ms: req.expires_at_ms,
                reply,
            }));
            waits.push(Wait { positions: split.positions, from_sender_shard: Some(shard) == sender_shard, answer });
        }
        let shared = Arc::clone(&self.shared);
        Ok(Box::pin(async move {
            let outcome = resolve(n_entries, waits).await;
            match &outcome {
                Ok(AppendOutcome::Appended { .. }) => shared.appends.fetch_add(1, Ordering::Relaxed),
                Ok(AppendOutcome::Duplicate { .. }) => shared.duplicates.fetch_add(1, Ordering::Relaxed),
                Err(_) => 0,
            };
            outcome
        }))
    }
}

/// A queued part's answer, and where its seqs go in the request.
struct Wait {
    positions: Vec<usize>,
    /// The sender's shard holds the authoritative dedup record (the first attempt always
    /// wrote it there): its answer wins when shards recorded different originals.
    from_sender_shard: bool,
    answer: oneshot::Receiver<StoreResult<PartOutcome>>,
}

/// Combines the shards' answers: an error if any part failed (the caller retries; dedup
/// completes only the missing parts), `Duplicate` if any shard had the key (with the sender's
/// shard's original), else the seqs in request order.
async fn resolve(n_entries: usize, waits: Vec<Wait>) -> StoreResult<AppendOutcome> {
    let mut seqs = vec![0; n_entries];
    let mut duplicate = None;
    let mut failure = None;
    for wait in waits {
        match wait.answer.await {
            Ok(Ok(PartOutcome::Appended(part_seqs))) => {
                for (pos, seq) in wait.positions.into_iter().zip(part_seqs) {
                    seqs[pos] = seq;
                }
            }
            Ok(Ok(PartOutcome::Duplicate { server_msg_id, server_ts_ms })) => {
                if wait.from_sender_shard || duplicate.is_none() {
                    duplicate = Some(AppendOutcome::Duplicate { server_msg_id, server_ts_ms });
                }
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(StoreError::Unavailable("committer stopped without answering".into())),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(duplicate.unwrap_or(AppendOutcome::Appended { seqs }))
}

#[async_trait]
impl InboxStore for PgStore {
    async fn enqueue_append(&self, req: AppendRequest) -> StoreResult<PendingAppend> {
        self.inner.enqueue_append(req).await
    }

    async fn read(&self, device: DeviceAddr, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEntry>> {
        self.on_task(move |this| async move {
            let shard = this.inner.shard(shard_of_id(device.account, this.inner.n_shards()));
            let client = shard.client().await?;
            let limit = limit.min(READ_LIMIT_MAX) as i64;
            let stmt = client
                .prepare_cached(
                    "SELECT seq, item, expires_at_ms FROM inbox
                     WHERE account = $1 AND device = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                )
                .await
                .map_err(|e| db_err(shard.idx, e))?;
            let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
            let rows = client
                .query(&stmt, &[&sql(device.account), &(device.device as i32), &after, &limit])
                .await
                .map_err(|e| db_err(shard.idx, e))?;
            Ok(rows
                .iter()
                .map(|r| StoredEntry {
                    seq: unsql(r.get(0)),
                    item: bytes::Bytes::from(r.get::<_, Vec<u8>>(1)),
                    expires_at_ms: r.get::<_, Option<i64>>(2).map(unsql),
                })
                .collect())
        })
        .await
    }

    async fn ack(&self, device: DeviceAddr, up_to_seq: u64) -> StoreResult<()> {
        self.on_task(move |this| async move {
            this.inner.check_open()?;
            let shard = shard_of_id(device.account, this.inner.n_shards());
            let (reply, answer) = oneshot::channel();
            let up_to_seq = up_to_seq.min(i64::MAX as u64);
            let op = Op::Ack { device, up_to_seq, reply };
            match tokio::time::timeout(this.inner.enqueue_timeout, this.inner.committers[shard].send(op)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StoreError::Closed),
                Err(_) => return Err(StoreError::Overloaded { retry_after_ms: OVERLOADED_RETRY_AFTER_MS }),
            }
            answer.await.map_err(|_| StoreError::Unavailable("committer stopped without answering".into()))?
        })
        .await
    }

    async fn cursor(&self, device: DeviceAddr) -> StoreResult<InboxCursor> {
        self.on_task(move |this| async move { Ok(this.cursors(&[device]).await?.pop().unwrap_or_default()) }).await
    }

    async fn cursors(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<InboxCursor>> {
        let devices = devices.to_owned();
        self.on_task(move |this| async move {
            let devices: &[DeviceAddr] = &devices;
            let n = this.inner.n_shards();
            let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (pos, device) in devices.iter().enumerate() {
                by_shard.entry(shard_of_id(device.account, n)).or_default().push(pos);
            }
            let mut out = vec![InboxCursor::default(); devices.len()];
            for (shard_idx, positions) in by_shard {
                let shard = this.inner.shard(shard_idx);
                let err = |e| db_err(shard_idx, e);
                let client = shard.client().await?;
                let stmt = client
                    .prepare_cached(
                        "SELECT k.pos, c.acked, c.last
                         FROM unnest($1::int8[], $2::int4[], $3::int4[]) AS k(account, device, pos)
                         JOIN cursors c USING (account, device)",
                    )
                    .await
                    .map_err(err)?;
                let accounts: Vec<i64> = positions.iter().map(|&p| sql(devices[p].account)).collect();
                let ids: Vec<i32> = positions.iter().map(|&p| devices[p].device as i32).collect();
                let pos: Vec<i32> = positions.iter().map(|&p| p as i32).collect();
                for row in client.query(&stmt, &[&accounts, &ids, &pos]).await.map_err(err)? {
                    let p = row.get::<_, i32>(0) as usize;
                    if let Some(slot) = out.get_mut(p) {
                        *slot = InboxCursor { acked: unsql(row.get(1)), last: unsql(row.get(2)) };
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn purge(&self, device: DeviceAddr) -> StoreResult<()> {
        self.on_task(move |this| async move {
            this.inner.check_open()?;
            let shard = this.inner.shard(shard_of_id(device.account, this.inner.n_shards()));
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let (account, id) = (sql(device.account), device.device as i32);
            let tx = client.transaction().await.map_err(err)?;
            // Lock the cursor first: an append of another node cannot slip in between.
            tx.execute("SELECT 1 FROM cursors WHERE account = $1 AND device = $2 FOR UPDATE", &[&account, &id])
                .await
                .map_err(err)?;
            tx.execute("DELETE FROM inbox WHERE account = $1 AND device = $2", &[&account, &id]).await.map_err(err)?;
            tx.execute("UPDATE cursors SET acked = last WHERE account = $1 AND device = $2", &[&account, &id])
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)
        })
        .await
    }

    async fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            let mut removed = 0;
            let n = this.inner.n_shards();
            for shard in &this.inner.shards {
                let err = |e| db_err(shard.idx, e);
                let client = shard.client().await?;
                let inbox = client
                    .execute("DELETE FROM inbox WHERE appended_at_ms < $1", &[&sql(older_than_ms)])
                    .await
                    .map_err(err)?;
                // Every shard of an append holds a copy of its dedup row; count only the sender's
                // shard's copy, so the count is that of logical dedup records, as in fjall.
                let dedup: i64 = client
                    .query_one(
                        "WITH gone AS (DELETE FROM dedup WHERE server_ts_ms < $1 RETURNING account)
                         SELECT count(*) FROM gone WHERE (account & $2) % $3 = $4",
                        &[&sql(dedup_older_than_ms), &SHARD_MASK, &(n as i64), &(shard.idx as i64)],
                    )
                    .await
                    .map_err(err)?
                    .get(0);
                removed += inbox + dedup as u64;
            }
            Ok(removed)
        })
        .await
    }

    async fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            this.delete_due(
                "DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM inbox WHERE expires_at_ms <= $1 LIMIT $2))",
                now_ms,
                limit,
            )
            .await
        })
        .await
    }

    fn set_commit_observer(&self, observer: Arc<dyn CommitObserver>) {
        let _ = self.inner.shared.observer.set(observer);
    }

    fn queue_depth(&self) -> usize {
        self.inner.queued()
    }

    fn is_healthy(&self) -> bool {
        (0..self.inner.n_shards()).all(|shard| self.inner.shared.is_shard_healthy(shard))
    }

    async fn close(&self) -> StoreResult<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.tasks.redrive.abort();
        self.stop_committers().await;
        Ok(())
    }
}
