//! The PostgreSQL engine for cluster mode: every durable `iris-store` trait on several
//! PostgreSQL primaries (shards), shared by many stateless Iris nodes.
//!
//! # Sharding
//! A record lives on one shard chosen by a fixed function of its key (`shards.rs`):
//! - **Accounts and groups carry their shard in their id**: ids are `(sequence << 8) | shard`,
//!   taken from the shard's own sequence (`account_seq`, `group_seq`), so they are unique across
//!   shards without coordination, and `shard_of_id(id) = (id & 0xff) % n`. An account is created
//!   on the shard of its phone number (`fnv1a64(phone) % n`) and takes that shard's index, so
//!   the phone index (the unique `accounts.phone` column) and the account are ONE row written
//!   in ONE transaction: registration has no cross-shard step that a crash could split.
//! - On the account's shard: devices, refresh tokens, cursors and inboxes of its devices, dedup
//!   records of its devices' sends, blocks it made, its contacts and presence privacy, and its
//!   devices' end-to-end keys (`key_directory.rs`) and key-exchange peers.
//! - On the group's shard: the group record, its member index (`group_members`), its invite
//!   token and its outbox (below). Groups are placed round-robin at creation.
//! - On the message's shard (`fnv1a64(server_msg_id) % n`): the message index, group payloads
//!   and group receipts. Payloads and receipts are written without waiting for a WAL flush
//!   (`synchronous_commit = off`) before the message's append is queued, and every append
//!   takes part on its message's shard, so the append's synced commit there flushes them:
//!   `ACCEPTED` still means they are durable (the same argument as fjall's shared journal). A
//!   new message's index record is staged in memory instead and written by the committer in
//!   the append's own transaction (`message_index.rs`). Servers pick message ids whose shard is
//!   the sender's (`message_id_is_near`, a few tries among fresh ids), so a 1:1 message between
//!   two accounts of one shard is ONE transaction on that shard (ARCHITECTURE.md, "What a
//!   message costs in PostgreSQL").
//! - Lookups that cannot be routed fan out to every shard: `groups_of` (member index on the
//!   group's shard), `group_by_invite`, `take_refresh_token` (only the token's hash is known),
//!   and the expiry sweeps.
//!
//! The shard list must keep its order and length for the life of the data: each shard records
//! its index and the shard count at first start and refuses another position
//! (`migrations.rs`). Adding shards means moving data; that is not supported here.
//!
//! # The message path
//! An append is split by shard: each involved shard gets the entries of its devices plus the
//! dedup key; the sender's shard and the message's shard always take part (with no entries if
//! need be). Each shard's committer (`committer.rs`) writes its parts of a batch in ONE
//! transaction: the dedup row (`INSERT … ON CONFLICT DO NOTHING`; a key already there makes
//! that shard skip its entries and report the original answer), the seqs (`cursors.last`
//! bumped in the database, so several nodes may write one inbox) and the entries, then commits
//! with `synchronous_commit = on`. The append resolves when every part is durable: `Duplicate`
//! if any shard had the key, else `Appended`. **Never a distributed transaction**: after a
//! failure between shards some parts may be stored and others not; the caller got an error
//! (nothing acknowledged), and its retry (same dedup key) stores only the missing parts.
//!
//! Two attempts with one dedup key that race (a client retry while its first attempt is still
//! in flight on another node) can each win the key on a different shard: every device still
//! gets exactly one copy, both callers hear `Duplicate`, and the copies on different shards
//! carry the two attempts' server ids. The same holds after a partial failure: the missing
//! parts are stored with the retry's server id. The sender's shard's record is the answer.
//!
//! Acks go through the committer too (batched, before the batch's appends, without waiting for
//! the WAL flush). Everything else uses two connection pools per shard: one with synced commits
//! (accounts, groups, blocks, contacts, purges, reads) and one whose sessions skip the WAL flush,
//! only for the buffered writes above.
//!
//! # Failures
//! A shard that is down or restarting fails the calls that need it with
//! [`StoreError::Unavailable`] (nothing acknowledged) and leaves the other shards working.
//! [`InboxStore::is_healthy`](crate::InboxStore::is_healthy) turns false on a failed commit and
//! true again on the next successful one; an unhealthy committer tries an empty commit every
//! 500 ms, so health recovers without traffic. Committers and pools reconnect by themselves,
//! to whichever of the shard URL's hosts accepts writes (`writer.rs`: a primary and its
//! synchronous standbys, so a promoted standby is followed; ARCHITECTURE.md "Synchronous
//! standbys"). A
//! batch is bounded by a 10 s timeout and connects by 5 s; pool queries have no timeout of
//! their own (a hung, not dead, server blocks them until TCP keepalive gives up).
//!
//! # Groups: the cluster-wide order
//! `hold_group_order` takes a transaction-level advisory lock on the group's shard, on a pool
//! of its own, held by the server until the operation's entries are durable
//! (`group_order.rs`): sends and changes of one group are ordered across nodes.
//!
//! # Groups: the outbox
//! `enqueue_group_update` writes the new record, its indexes and an outbox row holding the
//! change's events in one synced transaction on the group's shard (version-checked), then
//! queues the events as an append deduplicated by (group, version) and deletes the outbox row
//! once they are durable. A crash in between leaves the outbox row, which a background task of
//! every node re-drives (`outbox.rs`); the dedup key makes a repeated drive harmless. So no
//! crash leaves a roster change unannounced. Nor does it let later messages overtake the
//! change: taking the group's order also looks for the group's outbox rows (same round trip)
//! and drives them first, so the next operation of the group follows its events.

mod abuse;
mod accounts;
mod blocks;
mod committer;
mod contacts;
mod erasure;
mod error;
mod group_order;
mod groups;
mod inbox;
mod key_directory;
mod media;
mod message_index;
mod migrations;
mod outbox;
mod profiles;
mod push;
mod shards;
mod timers;
mod tls;
mod writer;

pub use shards::{fnv1a64, shard_of_id, shard_of_msg, shard_of_phone, SHARDS_MAX};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::committer::{Committer, Op};
use self::shards::Shard;
use crate::{CommitObserver, StoreError, StoreResult};

/// Suggested wait returned with [`StoreError::Overloaded`].
const OVERLOADED_RETRY_AFTER_MS: u32 = 100;

/// Configuration of the PostgreSQL engine. Every field is a bound or a location. Its `Debug`
/// output hides passwords in the URLs, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// One connection URL per shard (`postgres://user:password@host:port/db`), in a fixed order:
    /// the order decides where every record lives and may never change for existing data. At
    /// most [`SHARDS_MAX`].
    pub shard_urls: Vec<String>,
    /// Pooled connections per shard for everything but the committer (reads, accounts,
    /// groups), which has its own connection. Default 8.
    pub pool_size: usize,
    /// Most operations (inbox entries; at least one per queued part) a shard's committer puts
    /// in one transaction, i.e. behind one WAL flush. Default 1024.
    pub batch_ops_max: usize,
    /// How long a committer waits, after the first operation of a batch arrives, for more to
    /// share its commit. 0 commits whatever queued up during the previous commit. Default
    /// 1000 µs.
    pub batch_wait_us: u64,
    /// Operations waiting for each shard's committer; when full, callers wait (backpressure).
    /// Default 16384.
    pub queue_len_max: usize,
    /// How long a caller waits for room in full queues before getting
    /// [`StoreError::Overloaded`]. Default 2000 ms.
    pub enqueue_timeout_ms: u64,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.shard_urls.iter().map(|u| redact_password(u)).collect();
        f.debug_struct("PgConfig")
            .field("shard_urls", &urls)
            .field("pool_size", &self.pool_size)
            .field("batch_ops_max", &self.batch_ops_max)
            .field("batch_wait_us", &self.batch_wait_us)
            .field("queue_len_max", &self.queue_len_max)
            .field("enqueue_timeout_ms", &self.enqueue_timeout_ms)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let Some(at) = url[scheme_end..].find('@').map(|i| scheme_end + i) else { return url.to_owned() };
    match url[scheme_end..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..scheme_end + colon], &url[at..]),
        None => url.to_owned(),
    }
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            shard_urls: Vec::new(),
            pool_size: 8,
            batch_ops_max: 1024,
            batch_wait_us: 1000,
            queue_len_max: 16_384,
            enqueue_timeout_ms: 2000,
        }
    }
}

/// Counters of the committers, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PgStats {
    /// Committed batches, summed over shards (one WAL flush each).
    pub commits: u64,
    /// Batches whose commit failed; their callers got [`StoreError::Unavailable`].
    pub commit_failures: u64,
    /// Append requests stored (answered `Appended`).
    pub appends: u64,
    /// Append requests answered `Duplicate`.
    pub duplicates: u64,
    /// Operations waiting in the committers' queues right now.
    pub queued: u64,
    /// Times a shard's writable host changed (failovers seen; see `writer.rs`).
    pub writer_changes: u64,
    /// Searches for a writable host that found none.
    pub writer_not_found: u64,
}

/// State shared by the store handle and the committers.
pub(crate) struct Shared {
    /// Per shard: false after a failed commit until one succeeds.
    healthy: Vec<AtomicBool>,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    appends: AtomicU64,
    duplicates: AtomicU64,
    writer_changes: AtomicU64,
    writer_not_found: AtomicU64,
    /// Who hears about each commit (metrics), once set.
    observer: OnceLock<Arc<dyn CommitObserver>>,
}

impl Shared {
    fn new(n_shards: usize) -> Self {
        Self {
            healthy: (0..n_shards).map(|_| AtomicBool::new(true)).collect(),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            writer_changes: AtomicU64::new(0),
            writer_not_found: AtomicU64::new(0),
            observer: OnceLock::new(),
        }
    }

    fn is_shard_healthy(&self, shard: usize) -> bool {
        self.healthy.get(shard).is_none_or(|h| h.load(Ordering::Acquire))
    }

    fn set_healthy(&self, shard: usize, ok: bool) {
        if let Some(h) = self.healthy.get(shard) {
            h.store(ok, Ordering::Release);
        }
    }

    /// Counts what a shard's [`writer::Writer`] saw and tells the observer.
    fn writer_event(&self, event: crate::WriterEvent) {
        let counter = match event {
            crate::WriterEvent::Changed { .. } => &self.writer_changes,
            crate::WriterEvent::NotFound { .. } => &self.writer_not_found,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = self.observer.get() {
            observer.writer_event(event);
        }
    }

    /// Records a batch commit's outcome on `shard`: health and counters.
    fn record_commit(&self, shard: usize, ok: bool) {
        self.set_healthy(shard, ok);
        let counter = if ok { &self.commits } else { &self.commit_failures };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the store handle and its background tasks share.
pub(crate) struct Inner {
    shards: Vec<Shard>,
    /// Queues to the committers, by shard.
    committers: Vec<mpsc::Sender<Op>>,
    shared: Arc<Shared>,
    /// Set by `close`: later calls fail with [`StoreError::Closed`].
    closed: AtomicBool,
    enqueue_timeout: Duration,
    /// Round-robin placement of new groups.
    next_group_shard: AtomicUsize,
    /// Message refs waiting for their appends, by server message id (`message_index.rs`).
    staged_refs: std::sync::Mutex<std::collections::HashMap<u64, message_index::StagedRef>>,
}

impl Inner {
    fn n_shards(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, idx: usize) -> &Shard {
        &self.shards[idx]
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }
}

/// The PostgreSQL store. Share it behind an `Arc`; its clones are handles on one engine (the
/// engine clones itself to run each call on a task, see [`PgStore::on_task`]). Dropping the
/// last handle stops its background tasks; committers finish what was queued, then exit.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    tasks: Arc<Background>,
}

/// The engine's background tasks, stopped when the last [`PgStore`] handle is dropped.
struct Background {
    inner: Arc<Inner>,
    /// The committer tasks, awaited by `close`.
    committers: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    /// The outbox re-drive task (`outbox.rs`), aborted on close and drop.
    redrive: JoinHandle<()>,
}

impl PgStore {
    /// The disappearing-messages sweep on every shard: runs `statement` (`$1` = now, `$2` = how
    /// many rows at most, found through the partial index on `expires_at_ms`) shard by shard
    /// until `limit` rows are deleted in all. Returns how many were.
    async fn delete_due(&self, statement: &str, now_ms: u64, limit: usize) -> StoreResult<u64> {
        let mut removed = 0;
        for shard in &self.inner.shards {
            let left = limit as u64 - removed;
            if left == 0 {
                break;
            }
            let client = shard.client().await?;
            removed += client
                .execute(statement, &[&shards::sql(now_ms), &(left as i64)])
                .await
                .map_err(|e| error::db_err(shard.idx, e))?;
        }
        Ok(removed)
    }

    /// Connects to every shard, runs the migrations on each (idempotent, under an advisory
    /// lock), checks each shard's recorded position, starts one committer per shard and the
    /// outbox re-drive. Fails with [`StoreError::Unavailable`] if a shard cannot be reached.
    pub async fn connect(config: PgConfig) -> StoreResult<PgStore> {
        let n = config.shard_urls.len();
        if n == 0 || n > SHARDS_MAX {
            return Err(StoreError::Unavailable(format!("need 1 to {SHARDS_MAX} shard URLs, got {n}")));
        }
        let shared = Arc::new(Shared::new(n));
        let shards = config
            .shard_urls
            .iter()
            .enumerate()
            .map(|(idx, url)| Shard::new(idx, url, config.pool_size, Arc::clone(&shared)))
            .collect::<StoreResult<Vec<_>>>()?;
        for shard in &shards {
            migrations::run(shard, n).await?;
        }
        let mut committers = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for shard in &shards {
            let (tx, rx) = mpsc::channel(config.queue_len_max.max(1));
            let committer = Committer::new(
                shard.idx,
                Arc::clone(&shard.writer),
                rx,
                config.batch_ops_max,
                Duration::from_micros(config.batch_wait_us),
                Arc::clone(&shared),
            );
            tasks.push(tokio::spawn(committer.run()));
            committers.push(tx);
        }
        let inner = Arc::new(Inner {
            shards,
            committers,
            shared,
            closed: AtomicBool::new(false),
            enqueue_timeout: Duration::from_millis(config.enqueue_timeout_ms),
            next_group_shard: AtomicUsize::new(0),
            staged_refs: message_index::new_stage(),
        });
        let redrive = tokio::spawn(outbox::redrive_forever(Arc::clone(&inner)));
        let tasks =
            Arc::new(Background { inner: Arc::clone(&inner), committers: tokio::sync::Mutex::new(tasks), redrive });
        Ok(PgStore { inner, tasks })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> PgStats {
        let s = &self.inner.shared;
        PgStats {
            commits: s.commits.load(Ordering::Relaxed),
            commit_failures: s.commit_failures.load(Ordering::Relaxed),
            appends: s.appends.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            queued: self.inner.queued() as u64,
            writer_changes: s.writer_changes.load(Ordering::Relaxed),
            writer_not_found: s.writer_not_found.load(Ordering::Relaxed),
        }
    }

    /// Number of shards.
    pub fn n_shards(&self) -> usize {
        self.inner.n_shards()
    }

    /// Re-drives leftover group outbox rows now (normally done periodically); returns how many
    /// were driven. For tests and operators.
    pub async fn redrive_outbox(&self) -> StoreResult<usize> {
        outbox::redrive_once(&self.inner, 0).await
    }

    /// Stops the committers after they have handled everything queued before this call.
    async fn stop_committers(&self) {
        let mut tasks = self.tasks.committers.lock().await;
        if tasks.is_empty() {
            return;
        }
        for tx in &self.inner.committers {
            let (reply, done) = oneshot::channel();
            if tx.send(Op::Close { reply }).await.is_ok() {
                let _ = done.await;
            }
        }
        for task in tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Runs `call` with a handle on this engine on a task of its own and waits for it: every
    /// call that may take a pooled connection goes through here.
    ///
    /// Why: a pool lends a connection to a call until the call's future is polled to the end.
    /// The server keeps many store futures in flight per session (acks, receipts, group
    /// operations) and polls them only between other steps; when such a step itself waits for
    /// a pooled connection, the connections lent to the futures it is not polling never come
    /// back, and the pool starves (measured: 50 clients with 4 sends in flight each fell from
    /// ~2,000 to 13 msgs/s with 8 connections per shard). On a task of its own a call runs to
    /// completion and returns its connection whatever its caller does, and its CPU work may run
    /// on another worker thread. Cost: one task per call, about a microsecond. Only
    /// `enqueue_append` (no connection; must stay in call order) and `close` (waits for the
    /// committers) skip it.
    async fn on_task<T, F, Fut>(&self, call: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(PgStore) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>> + Send + 'static,
    {
        tokio::spawn(call(self.clone()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// Runs one statement on `shard`'s unsynced pool (no wait for the WAL flush): for the buffered
/// writes (message index, group payloads and receipts) made durable by a later synced commit on
/// the same shard. One round trip once the statement is prepared on that connection.
async fn execute_unsynced(
    shard: &Shard,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<u64> {
    let err = |e| error::db_err(shard.idx, e);
    let client = shard.unsynced_client().await?;
    let prepared = client.prepare_cached(statement).await.map_err(err)?;
    client.execute(&prepared, params).await.map_err(err)
}

/// Runs a query on a pooled connection with the statement prepared once per connection.
async fn query(
    shard: &Shard,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let err = |e| error::db_err(shard.idx, e);
    let client = shard.client().await?;
    let prepared = client.prepare_cached(statement).await.map_err(err)?;
    client.query(&prepared, params).await.map_err(err)
}

/// The rows of `statement` from each shard in turn, `map`ped, until `limit` in all (a sweep's
/// batch): `params` are followed by one more, how many rows are still wanted, for the
/// statement's `LIMIT`.
async fn query_shards_up_to<T>(
    shards: &[Shard],
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    limit: usize,
    map: impl Fn(&tokio_postgres::Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for shard in shards {
        let left = i64::try_from(limit.saturating_sub(out.len())).unwrap_or(i64::MAX);
        if left == 0 {
            break;
        }
        let mut all = params.to_vec();
        all.push(&left);
        for row in query(shard, statement, &all).await? {
            out.push(map(&row)?);
        }
    }
    Ok(out)
}

impl Drop for Background {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.redrive.abort();
        for tx in &self.inner.committers {
            // Best effort: a committer whose queue is full stops when its senders are dropped.
            let (reply, _) = oneshot::channel();
            let _ = tx.try_send(Op::Close { reply });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_passwords() {
        // Proves a logged config never shows a shard's password.
        let config = PgConfig {
            shard_urls: vec!["postgres://iris:s3cret@db1:5432/iris".into(), "postgres://iris@db2/iris".into()],
            ..PgConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://iris:***@db1:5432/iris") && shown.contains("postgres://iris@db2/iris"));
    }
}
