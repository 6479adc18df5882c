//! The embedded engine: [`FjallStore`] implements the store traits on local disk. Inboxes,
//! acks, dedup records and every write of the side keyspaces (message index, groups, group
//! payloads and receipts) go through the inbox log (`log/`), driven by one committer thread that
//! group-commits them (one fdatasync per batch) and a checkpointer thread; fjall (a pure-Rust
//! LSM) holds everything else and, beneath the log, what outlives its segments (`cold.rs`).
//! It knows nothing of the wire format: inbox items are opaque bytes.

mod abuse;
mod accounts;
#[cfg(feature = "sim")]
mod append_faults;
mod blocks;
mod codec;
mod cold;
mod committer;
mod contacts;
mod erasure;
mod expiry;
mod groups;
mod key_directory;
mod keys;
pub mod log;
mod media;
mod message_index;
mod profiles;
mod push;
mod read_cache;
mod receipt_blocks;
mod staged;
mod sweep;
mod timers;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Account, AccountId, AccountStore, AppendOutcome, AppendRequest, CommitObserver, Device, DeviceAddr, DeviceId,
    InboxCursor, InboxStore, PendingAppend, RefreshTokenRecord, StoreError, StoreResult, StoredEntry,
    UnfinishedRevocation,
};
use accounts::Accounts;
#[cfg(feature = "sim")]
pub use append_faults::{AppendFault, AppendFaults};
use committer::{Command, Committer};
pub use erasure::KeyspaceRecord;
use log::{DirFs, InboxLog, KvWrite, LogConfig};

/// Suggested wait returned with [`StoreError::Overloaded`]: long enough for the committer to
/// drain a few full batches.
const OVERLOADED_RETRY_AFTER_MS: u32 = 200;
/// Times a caller waits for the committer to drain a full staging before giving up.
const STAGE_ATTEMPTS_MAX: usize = 8;

/// The side keyspaces the inbox log writes to, by the number its records carry. Never renumber:
/// recovery replays records written by earlier versions.
mod space {
    /// Message index records (`message_index.rs`).
    pub(super) const MESSAGE_REFS: u8 = 1;
    /// Group payloads.
    pub(super) const GROUP_PAYLOADS: u8 = 2;
    /// Group receipt rows.
    pub(super) const GROUP_RECEIPTS: u8 = 3;
    /// Group records.
    pub(super) const GROUPS: u8 = 4;
    /// Account ‖ group index.
    pub(super) const GROUP_MEMBERS: u8 = 5;
    /// Invite token index.
    pub(super) const GROUP_INVITES: u8 = 6;
    /// Named counters (the next group id).
    pub(super) const META: u8 = 7;
    /// The expiry index of disappearing messages (`expiry.rs`).
    pub(super) const EXPIRY: u8 = 8;
}

/// Most bytes of fjall journal kept before fjall flushes the memtables they hold (fjall's
/// smallest allowed value). A restart replays the whole journal, item by item, before the
/// server listens; with fjall's default (512 MiB) a backlog moved out of the inbox log left
/// ~180 MB of journal to replay, half of the restart's CPU; capped, the restart took half as
/// long (BENCHMARKS.md, "Restart").
const JOURNAL_BYTES_MAX: u64 = 64 << 20;

/// Tuning of the embedded engine. The defaults suit a small server; every field is a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FjallConfig {
    /// Size at which a keyspace's memtable is sealed and flushed to disk. Larger is faster for
    /// traffic that is acked quickly (appends and their deletes meet in memory); smaller copes
    /// better with offline backlogs. Default 16 MiB (DESIGN.md measured 8–16 MiB fastest).
    /// fjall records it when a keyspace is created: changing it for an existing data directory
    /// has no effect.
    pub max_memtable_bytes: u64,
    /// Most operations (inbox entries; at least one per request) the committer puts in one
    /// batch, i.e. behind one fsync. Default 1024.
    pub batch_max_ops: usize,
    /// How long the committer waits, after the first request of a batch arrives, for more
    /// requests to share its fsync. 0 (the default) commits whatever queued up during the
    /// previous commit: a lone request pays one fdatasync, and under load batches grow by
    /// themselves.
    pub batch_max_wait_us: u64,
    /// Requests waiting for the committer; when full, callers wait (backpressure). Default 16384.
    pub queue_len_max: usize,
    /// How long a caller waits for room in a full queue before getting
    /// [`StoreError::Overloaded`]. Default 2000 ms.
    pub enqueue_timeout_ms: u64,
    /// Inbox log segment size; a full segment is closed and the next started. Default 64 MiB.
    pub log_segment_bytes_max: u64,
    /// Segments kept before the oldest are retired to fjall: bounds recovery (≈ this many
    /// segments replayed). Default 4.
    pub log_segments_live_max: u64,
    /// Bytes of un-acked entries kept in memory; past it the largest backlogs move to fjall
    /// (a device offline for a month costs disk, not memory). Default 256 MiB.
    pub log_hot_bytes_max: u64,
    /// Retired segment files kept to be recycled as new segments, so that a batch's
    /// `fdatasync` does not grow its file (0: deleted at once). Default 2.
    pub log_spares_max: u64,
}

impl Default for FjallConfig {
    fn default() -> Self {
        Self {
            max_memtable_bytes: 16 * 1024 * 1024,
            batch_max_ops: 1024,
            batch_max_wait_us: 0,
            queue_len_max: 16_384,
            enqueue_timeout_ms: 2000,
            log_segment_bytes_max: LogConfig::default().segment_bytes_max,
            log_segments_live_max: LogConfig::default().segments_live_max,
            log_hot_bytes_max: LogConfig::default().hot_bytes_max,
            log_spares_max: LogConfig::default().spares_max,
        }
    }
}

/// Counters of the committer, for metrics (the server exports them to Prometheus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FjallStats {
    /// Batches committed (each with one fsync when it holds an append).
    pub commits: u64,
    /// Batches whose commit failed; every request in them got [`StoreError::Unavailable`].
    pub commit_failures: u64,
    /// Append requests stored (answered [`AppendOutcome::Appended`]).
    pub appends: u64,
    /// Append requests answered [`AppendOutcome::Duplicate`].
    pub duplicates: u64,
    /// Requests waiting in the committer queue right now (a gauge; compare `queue_len_max`).
    pub queued: u64,
}

/// State shared by the store handle, the committer and account operations.
struct Shared {
    /// False after a failed commit until one succeeds; drives `is_healthy`.
    healthy: AtomicBool,
    /// The counters of [`FjallStats`], written by the committer.
    commits: AtomicU64,
    commit_failures: AtomicU64,
    appends: AtomicU64,
    duplicates: AtomicU64,
    /// Who hears about each commit (metrics), once set.
    observer: std::sync::OnceLock<Arc<dyn CommitObserver>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            observer: std::sync::OnceLock::new(),
        }
    }

    /// Records the outcome of any commit: a failure makes the store unhealthy until one succeeds.
    fn set_healthy(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Release);
    }

    /// Records the outcome of one committer batch, for health and stats.
    fn record_batch(&self, ok: bool) {
        self.set_healthy(ok);
        let counter = if ok { &self.commits } else { &self.commit_failures };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> FjallStats {
        FjallStats {
            commits: self.commits.load(Ordering::Relaxed),
            commit_failures: self.commit_failures.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            queued: 0,
        }
    }
}

/// Handles to the database and its keyspaces; cheap to clone (all reference-counted).
#[derive(Clone)]
struct Keyspaces {
    db: Database,
    /// Account id → account record.
    accounts: Keyspace,
    /// Phone → account id.
    phones: Keyspace,
    /// Device address → device record.
    devices: Keyspace,
    /// Token hash → refresh token record.
    tokens: Keyspace,
    /// Device address ‖ token hash → empty: finds a device's tokens on revocation.
    token_index: Keyspace,
    /// Device address ‖ seq → append time ‖ item.
    inbox: Keyspace,
    /// Device address → acked ‖ last.
    cursors: Keyspace,
    /// Sender address ‖ client message id → server message id ‖ server time.
    dedup: Keyspace,
    /// Named counters (next account id).
    meta: Keyspace,
    /// Expiry index of disappearing messages: kind ‖ expires at ‖ what (`expiry.rs`).
    expiry: Keyspace,
    /// Phone → account id ‖ start time: accounts being deleted (`erasure.rs`).
    erasures: Keyspace,
    /// Device address → revocation mark (`codec::encode_revocation_mark`): revocations whose
    /// server-side follow-ups are not confirmed done (`accounts.rs`).
    revocations: Keyspace,
}

impl Keyspaces {
    fn open(db: Database, max_memtable_bytes: u64) -> StoreResult<Self> {
        let open = |name: &str| {
            db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(max_memtable_bytes))
                .map_err(unavailable)
        };
        Ok(Self {
            accounts: open("accounts")?,
            phones: open("phones")?,
            devices: open("devices")?,
            tokens: open("refresh_tokens")?,
            token_index: open("refresh_token_index")?,
            inbox: open("inbox")?,
            cursors: open("cursors")?,
            dedup: open("dedup")?,
            meta: open("meta")?,
            expiry: open("expiry")?,
            erasures: open("account_erasures")?,
            revocations: open("device_revocations")?,
            db,
        })
    }
}

/// The embedded store. Not `Clone`: share it behind an `Arc`. Dropping it flushes the pending
/// batch and stops the committer (blocking briefly), so the directory can be reopened.
pub struct FjallStore {
    /// The message core: inboxes, acks, dedup, side writes (`log/`).
    log: Arc<InboxLog>,
    accounts: Arc<Accounts>,
    /// Groups, shared payloads and group receipts (`groups.rs`).
    groups: Arc<groups::Groups>,
    /// Block lists (`blocks.rs`).
    blocks: blocks::Blocks,
    /// Contact lists (`contacts.rs`).
    contacts: contacts::Contacts,
    /// Push targets (`push.rs`).
    push: push::Push,
    /// Recent messages for message actions (`message_index.rs`).
    message_index: Arc<message_index::MessageIndex>,
    /// End-to-end keys (`key_directory.rs`).
    key_directory: Arc<key_directory::KeyDirectory>,
    /// Media metadata: blobs, references, uploads, quotas (`media.rs`).
    media: media::Media,
    /// Disappearing-messages timers (`timers.rs`).
    timers: timers::Timers,
    /// Profiles, registration PINs, pending device links (`profiles.rs`).
    profiles: Arc<profiles::Profiles>,
    /// Abuse state and reports (`abuse.rs`).
    abuse: abuse::Abuse,
    shared: Arc<Shared>,
    /// Queue to the committer; `None` only while dropping, which is how the committer learns
    /// that no request can arrive any more.
    tx: Option<mpsc::Sender<Command>>,
    /// Set by `close` so later calls fail fast with [`StoreError::Closed`].
    closed: AtomicBool,
    /// The committer and checkpointer threads, taken by whoever stops them first (`close` or
    /// drop). A tokio mutex because `close` holds it across the wait, so a concurrent `close`
    /// returns only after they have stopped.
    threads: tokio::sync::Mutex<Option<Threads>>,
    enqueue_timeout: Duration,
    /// Appends failing on demand, for the tests of a failing disk (feature `sim`).
    #[cfg(feature = "sim")]
    append_faults: AppendFaults,
}

/// The threads that drive the log.
struct Threads {
    committer: std::thread::JoinHandle<()>,
    checkpointer: std::thread::JoinHandle<()>,
}

impl Threads {
    /// Waits for both (the committer first: it ends the checkpointer by dropping its wake-up).
    fn join(self) -> Result<(), ()> {
        let committed = self.committer.join();
        let checkpointed = self.checkpointer.join();
        committed.and(checkpointed).map_err(|_| ())
    }
}

/// Writes to the side keyspaces through the log from a blocking thread, waiting until durable
/// (group creations and updates without events).
pub(super) struct SideWriter {
    tx: mpsc::Sender<Command>,
}

impl SideWriter {
    /// Commits `writes` as a batch of their own and waits for it. Call from a blocking thread.
    pub(super) fn write_blocking(&self, writes: Vec<KvWrite>) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.tx.blocking_send(Command::Writes { writes, reply }).map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Unavailable("committer stopped without answering".into()))?
    }
}

impl FjallStore {
    /// Opens (or creates) the store in directory `path`, recovers the inbox log and starts its
    /// threads. Blocking: call it from `spawn_blocking` or before the runtime starts.
    pub fn open(path: &Path, config: FjallConfig) -> StoreResult<Self> {
        let db = Database::builder(path).max_journaling_size(JOURNAL_BYTES_MAX).open().map_err(unavailable)?;
        let ks = Keyspaces::open(db, config.max_memtable_bytes)?;
        let shared = Arc::new(Shared::new());
        let (tx, rx) = mpsc::channel(config.queue_len_max.max(1));
        let groups = groups::Groups::open(&ks.db, ks.meta.clone(), config.max_memtable_bytes)?;
        let message_index = Arc::new(message_index::MessageIndex::open(&ks.db, ks.expiry.clone())?);
        let mut spaces = groups.spaces();
        spaces.extend(message_index.spaces());
        let mut staged = message_index.staged();
        staged.extend(groups.staged());
        let cold = cold::FjallCold::new(ks.clone(), spaces, staged.clone());
        let fs = DirFs::open(path.join("inbox-log")).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let log_config = LogConfig {
            segment_bytes_max: config.log_segment_bytes_max,
            segments_live_max: config.log_segments_live_max,
            hot_bytes_max: config.log_hot_bytes_max,
            spares_max: config.log_spares_max,
        };
        let log = Arc::new(InboxLog::open(Arc::new(fs), cold, log_config)?);
        let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(1);
        let committer = Committer::new(Arc::clone(&log), rx, &config, Arc::clone(&shared), staged, wake_tx);
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|e| StoreError::Unavailable(format!("cannot start thread {name}: {e}")))
        };
        let checkpointer = {
            let log = Arc::clone(&log);
            spawn("iris-checkpoint", Box::new(move || committer::run_checkpointer(log, wake_rx)))?
        };
        let committer = spawn("iris-committer", Box::new(move || committer.run()))?;
        let blocks = blocks::Blocks::open(&ks.db)?;
        let contacts = contacts::Contacts::open(&ks.db)?;
        let push = push::Push::open(&ks.db)?;
        let key_directory = key_directory::KeyDirectory::open(&ks.db)?;
        let media = media::Media::open(&ks.db)?;
        let timers = timers::Timers::open(&ks.db)?;
        let profiles = Arc::new(profiles::Profiles::open(&ks.db)?);
        let abuse = abuse::Abuse::open(&ks.db)?;
        Ok(Self {
            abuse,
            timers,
            profiles,
            key_directory,
            accounts: Arc::new(Accounts::new(ks.clone(), Arc::clone(&shared))),
            log,
            blocks,
            contacts,
            push,
            media,
            message_index,
            groups: Arc::new(groups),
            shared,
            tx: Some(tx),
            closed: AtomicBool::new(false),
            threads: tokio::sync::Mutex::new(Some(Threads { committer, checkpointer })),
            enqueue_timeout: Duration::from_millis(config.enqueue_timeout_ms),
            #[cfg(feature = "sim")]
            append_faults: AppendFaults::default(),
        })
    }

    /// The switch that makes this store's appends fail (feature `sim`).
    #[cfg(feature = "sim")]
    pub fn append_faults(&self) -> AppendFaults {
        self.append_faults.clone()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> FjallStats {
        let queued = self.tx.as_ref().map_or(0, |tx| tx.max_capacity() - tx.capacity());
        FjallStats { queued: queued as u64, ..self.shared.stats() }
    }

    /// Figures of the inbox log (memory held, live segments, dedup records in memory).
    pub fn log_stats(&self) -> log::LogStats {
        self.log.stats()
    }

    /// Number of successful committer batches: with group commit, fewer than appends under load.
    pub fn commit_count(&self) -> u64 {
        self.stats().commits
    }

    /// Queues `cmd` for the committer, waiting up to the enqueue timeout when the queue is full.
    async fn submit(&self, cmd: Command) -> StoreResult<()> {
        let tx = match &self.tx {
            Some(tx) if !self.closed.load(Ordering::Acquire) => tx,
            _ => return Err(StoreError::Closed),
        };
        let cmd = match tx.try_send(cmd) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
            Err(mpsc::error::TrySendError::Full(cmd)) => cmd,
        };
        match tokio::time::timeout(self.enqueue_timeout, tx.send(cmd)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Overloaded { retry_after_ms: OVERLOADED_RETRY_AFTER_MS }),
        }
    }

    /// Sends `make(reply)` to the committer and waits for its answer.
    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Command) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.submit(make(reply)).await?;
        answer.await.map_err(|_| StoreError::Unavailable("committer stopped without answering".into()))?
    }

    /// Queues an append, with `side` writes that commit atomically with it.
    async fn enqueue_append_with(&self, req: AppendRequest, side: Vec<KvWrite>) -> StoreResult<PendingAppend> {
        let (reply, answer) = oneshot::channel();
        self.submit(Command::Append { req, side, reply }).await?;
        Ok(Box::pin(async move {
            answer.await.map_err(|_| StoreError::Unavailable("committer stopped without answering".into()))?
        }))
    }

    /// A handle for blocking threads to write side keyspaces through the log.
    fn side_writer(&self) -> StoreResult<SideWriter> {
        match &self.tx {
            Some(tx) if !self.closed.load(Ordering::Acquire) => Ok(SideWriter { tx: tx.clone() }),
            _ => Err(StoreError::Closed),
        }
    }

    /// Stages `writes` for the committer's next batch (`staged.rs`); false when they cannot be
    /// (the staging is full, or the store is closing and no batch may follow).
    fn stage(&self, staged: &staged::Staged, writes: &[(&[u8], &[u8])]) -> bool {
        let Some(tx) = self.tx.as_ref().filter(|_| !self.closed.load(Ordering::Acquire)) else {
            return false;
        };
        match staged.stage(writes) {
            // The committer may be idle (a deletion mark has no append of its own): wake it so
            // the writes reach the log soon. A full queue means a busy committer, which
            // drains the staging with its next batch anyway.
            Some(true) => {
                let _ = tx.try_send(Command::Flush);
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    /// Stages `writes`; while the staging is full, waits for the committer to log it and for
    /// its logged values to be written to fjall (backpressure), and gives up with
    /// [`StoreError::Overloaded`] after a few rounds.
    async fn stage_or_write(&self, staged: &staged::Staged, writes: &[(&[u8], &[u8])]) -> StoreResult<()> {
        for _ in 0..STAGE_ATTEMPTS_MAX {
            if self.stage(staged, writes) {
                return Ok(());
            }
            if self.closed.load(Ordering::Acquire) || self.tx.is_none() {
                return Err(StoreError::Closed);
            }
            // An empty batch of its own: answered once the batch that logs the staging is in.
            self.request(|reply| Command::Writes { writes: Vec::new(), reply }).await?;
            let log = Arc::clone(&self.log);
            blocking(move || log.settle()).await?;
        }
        Err(StoreError::Overloaded { retry_after_ms: OVERLOADED_RETRY_AFTER_MS })
    }

    /// Stops the committer after it has handled everything queued before this call.
    async fn stop_committer(&self) -> StoreResult<()> {
        let mut slot = self.threads.lock().await;
        let Some(threads) = slot.take() else {
            return Ok(());
        };
        if let Some(tx) = &self.tx {
            let (reply, done) = oneshot::channel();
            if tx.send(Command::Close { reply }).await.is_ok() {
                let _ = done.await;
            }
        }
        let joined = tokio::task::spawn_blocking(move || threads.join()).await;
        match joined {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Unavailable("committer thread panicked".into())),
        }
    }
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the only sender lets the committer drain the queue and exit.
        drop(self.tx.take());
        if let Some(threads) = self.threads.get_mut().take() {
            if threads.join().is_err() {
                tracing::error!("committer or checkpointer thread panicked");
            }
        }
    }
}

#[async_trait]
impl AccountStore for FjallStore {
    async fn account_by_phone(&self, phone: &str) -> StoreResult<Option<Account>> {
        self.accounts.by_phone(phone)
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        Ok(self.accounts.record(id)?.map(|rec| rec.account))
    }

    async fn register_device(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<(Account, Device)> {
        let (accounts, phone, name) = (Arc::clone(&self.accounts), phone.to_owned(), device_name.to_owned());
        blocking(move || accounts.register_device(&phone, &name, now_ms, max_devices)).await
    }

    async fn register_primary(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
    ) -> StoreResult<Option<(Account, Device, Vec<Device>)>> {
        let (accounts, phone, name) = (Arc::clone(&self.accounts), phone.to_owned(), device_name.to_owned());
        blocking(move || accounts.register_primary(&phone, &name, now_ms)).await
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<Device>> {
        self.accounts.devices(account)
    }

    async fn device(&self, addr: DeviceAddr) -> StoreResult<Option<Device>> {
        self.accounts.device(addr)
    }

    async fn revoke_device(&self, addr: DeviceAddr, now_ms: u64, announce_by: Option<DeviceId>) -> StoreResult<bool> {
        let accounts = Arc::clone(&self.accounts);
        blocking(move || accounts.revoke_device(addr, now_ms, announce_by)).await
    }

    async fn unfinished_revocations(&self, before_ms: u64, limit: usize) -> StoreResult<Vec<UnfinishedRevocation>> {
        let accounts = Arc::clone(&self.accounts);
        blocking(move || accounts.unfinished_revocations(before_ms, limit)).await
    }

    async fn finish_revocation(&self, addr: DeviceAddr) -> StoreResult<()> {
        let accounts = Arc::clone(&self.accounts);
        blocking(move || accounts.finish_revocation(addr)).await
    }

    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> StoreResult<()> {
        let accounts = Arc::clone(&self.accounts);
        blocking(move || accounts.put_token(&token)).await
    }

    async fn take_refresh_token(&self, hash: &[u8; 32]) -> StoreResult<Option<RefreshTokenRecord>> {
        let (accounts, hash) = (Arc::clone(&self.accounts), *hash);
        blocking(move || accounts.take_token(&hash)).await
    }
}

#[async_trait]
impl InboxStore for FjallStore {
    fn set_commit_observer(&self, observer: Arc<dyn CommitObserver>) {
        let _ = self.shared.observer.set(observer);
    }

    fn queue_depth(&self) -> usize {
        self.stats().queued as usize
    }

    async fn enqueue_append(&self, req: AppendRequest) -> StoreResult<PendingAppend> {
        #[cfg(feature = "sim")]
        self.append_faults.check()?;
        self.enqueue_append_with(req, Vec::new()).await
    }

    async fn read(&self, device: DeviceAddr, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEntry>> {
        #[cfg(feature = "sim")]
        self.append_faults.check_read()?;
        self.log.read(device, after_seq, limit)
    }

    async fn ack(&self, device: DeviceAddr, up_to_seq: u64) -> StoreResult<()> {
        self.request(|reply| Command::Ack { device, up_to_seq, reply }).await
    }

    async fn ack_with_receipts(
        &self,
        device: DeviceAddr,
        up_to_seq: u64,
        receipts: AppendRequest,
    ) -> StoreResult<AppendOutcome> {
        #[cfg(feature = "sim")]
        self.append_faults.check()?; // the receipts are an append
        self.request(|reply| Command::AckWithReceipts { device, up_to_seq, receipts, reply }).await
    }

    async fn cursor(&self, device: DeviceAddr) -> StoreResult<InboxCursor> {
        self.log.cursor(device)
    }

    async fn purge(&self, device: DeviceAddr) -> StoreResult<()> {
        self.request(|reply| Command::Purge { device, reply }).await
    }

    async fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
        let log = Arc::clone(&self.log);
        blocking(move || log.expire(older_than_ms, dedup_older_than_ms)).await
    }

    async fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        let log = Arc::clone(&self.log);
        blocking(move || log.expire_due(now_ms, limit)).await
    }

    fn is_healthy(&self) -> bool {
        #[cfg(feature = "sim")]
        if self.append_faults.unhealthy() {
            return false;
        }
        self.shared.healthy.load(Ordering::Acquire) && !self.log.is_poisoned()
    }

    async fn close(&self) -> StoreResult<()> {
        self.closed.store(true, Ordering::Release);
        self.stop_committer().await
    }
}

/// Runs blocking work (fsyncs, scans) off the async worker threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
}

/// Whether `space` holds any key starting with `prefix` (a read of the first such key).
fn has_prefix(space: &Keyspace, prefix: &[u8]) -> StoreResult<bool> {
    match space.prefix(prefix).next() {
        None => Ok(false),
        Some(first) => first.key().map(|_| true).map_err(unavailable),
    }
}

/// Every fjall error means the disk or the database failed; nothing was stored.
fn unavailable(e: fjall::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
