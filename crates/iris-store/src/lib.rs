//! Storage for Iris: the traits the server uses, and their engines.
//!
//! The server sees only [`AccountStore`], [`InboxStore`], [`GroupStore`], [`BlockStore`],
//! [`MessageIndexStore`], [`ContactStore`], [`KeyStore`], [`MediaStore`] and [`PushStore`] (together: [`Store`]). Engines:
//! [`MessageIndexStore`], [`ContactStore`], [`KeyStore`], [`MediaStore`], [`ProfileStore`] and [`AbuseStore`] (together: [`Store`]). Engines:
//! - [`embedded::FjallStore`], the embedded default: an LSM on local disk, with a committer thread
//!   that group-commits appends and fsyncs once per batch.
//! - [`postgres::PgStore`], for cluster mode: the same traits on several PostgreSQL primaries
//!   (shards), group-committed per shard, shared by many Iris nodes.
//!
//! **Invariant:** `InboxStore::append` returns only after the entries are durable (fsync'd or
//! committed); nothing the server acknowledges lives only in memory.
//! **Invariant:** the store never calls the router or knows about connections; it stores bytes
//! that the server encoded (`iris.v1.InboxItem`) without interpreting them.

// Read with `cargo doc --document-private-items`: a crate of this workspace only, whose docs
// link the private items that explain a public one.
#![allow(rustdoc::private_intra_doc_links)]

pub mod abuse;
pub mod contacts;
pub mod embedded;
pub mod erasure;
pub mod error;
pub mod groups;
pub mod keys;
pub mod media;
pub mod message_index;
pub mod postgres;
pub mod profiles;
pub mod push;
pub mod timers;
pub mod types;

pub use abuse::*;
pub use contacts::*;
pub use erasure::*;
pub use error::StoreError;
pub use groups::*;
pub use keys::*;
pub use media::*;
pub use message_index::*;
pub use profiles::*;
pub use push::*;
pub use timers::*;
pub use types::*;

use async_trait::async_trait;

/// Result of every store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A queued append that resolves once it is durable (or failed).
pub type PendingAppend = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<AppendOutcome>> + Send>>;

/// Accounts, devices and refresh tokens: low-rate, strongly consistent records.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// The account registered under `phone` (E.164, already validated), if any.
    async fn account_by_phone(&self, phone: &str) -> StoreResult<Option<Account>>;

    /// The account with this id, if any.
    async fn account(&self, id: AccountId) -> StoreResult<Option<Account>>;

    /// Creates the account for `phone` if it does not exist, then adds a new device to it, in one
    /// atomic step. The first device of an account is its primary. Device ids are never reused.
    /// Fails with [`StoreError::DeviceLimit`] when the account already has `max_devices` active
    /// devices. Durable when it returns.
    async fn register_device(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<(Account, Device)>;

    /// Re-registration of an existing account on a new phone: revokes every active device of
    /// the account of `phone` (deleting their refresh tokens) and adds a new device that is the
    /// account's primary, in one atomic step. Returns the account, the new primary and the
    /// devices it revoked (each recorded as unfinished, to be announced to nobody), or `None`
    /// when `phone` has no account. Durable when it returns.
    async fn register_primary(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
    ) -> StoreResult<Option<(Account, Device, Vec<Device>)>>;

    /// Active (not revoked) devices of an account, ordered by id.
    async fn devices(&self, account: AccountId) -> StoreResult<Vec<Device>>;

    /// One device, revoked or not.
    async fn device(&self, addr: DeviceAddr) -> StoreResult<Option<Device>>;

    /// Marks a device revoked and deletes its refresh tokens, and records the revocation as
    /// unfinished (the server's follow-ups, [`AccountStore::unfinished_revocations`]) in the same
    /// step; `announce_by` is who revoked it, for the `DeviceChange` notice (`None`: no notice).
    /// Returns false if it did not exist or was already revoked. Durable when it returns.
    async fn revoke_device(&self, addr: DeviceAddr, now_ms: u64, announce_by: Option<DeviceId>) -> StoreResult<bool>;

    /// Up to `limit` revocations (by `revoke_device`, `register_primary` or an erasure) made at
    /// or before `before_ms` whose follow-ups (inbox, push target, keys, notices) were not
    /// confirmed with [`AccountStore::finish_revocation`]: a crash or a failure cut them short,
    /// and the server runs them again (each is idempotent).
    async fn unfinished_revocations(&self, before_ms: u64, limit: usize) -> StoreResult<Vec<UnfinishedRevocation>>;

    /// The follow-ups of `addr`'s revocation are done: forgets its record. Durable when it
    /// returns.
    async fn finish_revocation(&self, addr: DeviceAddr) -> StoreResult<()>;

    /// Stores a refresh token by the SHA-256 of its secret.
    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> StoreResult<()>;

    /// Removes and returns the refresh token with this hash (tokens are single-use: rotation).
    async fn take_refresh_token(&self, hash: &[u8; 32]) -> StoreResult<Option<RefreshTokenRecord>>;
}

/// Per-device inboxes and send deduplication: the message path.
#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// Queues an append and returns as soon as it is queued; the returned future resolves when
    /// it is durable. Appends queued one after another by one caller are committed in that
    /// order, so a session that awaits each `enqueue_append` before the next keeps its sends in
    /// order while many commits are in flight. Waits while the queue is full, up to a deadline,
    /// then fails with [`StoreError::Overloaded`].
    ///
    /// The append itself: every entry of `req` goes to its device's inbox with the device's next
    /// sequence number, and `req.dedup` is recorded, all or nothing. If `req.dedup` was already
    /// recorded (a retry), nothing is appended and the original id and time are returned.
    /// Concurrent appends are group-committed: one fsync per batch, not per call.
    async fn enqueue_append(&self, req: AppendRequest) -> StoreResult<PendingAppend>;

    /// [`enqueue_append`](Self::enqueue_append) and wait until durable.
    async fn append(&self, req: AppendRequest) -> StoreResult<AppendOutcome> {
        self.enqueue_append(req).await?.await
    }

    /// Up to `limit` entries of `device` with `seq > after_seq`, in sequence order.
    async fn read(&self, device: DeviceAddr, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEntry>>;

    /// Cumulative ack: deletes every entry with `seq <= up_to_seq` and remembers the cursor.
    /// Need not be synced before returning (a lost ack only means a redelivery).
    async fn ack(&self, device: DeviceAddr, up_to_seq: u64) -> StoreResult<()>;

    /// A cumulative ack together with the receipts it produces (`receipts`, appended to the
    /// senders' inboxes); returns the receipts' outcome. Engines that can make both one atomic,
    /// durable write do (a crash then leaves both or neither: a receipt is never lost, nor
    /// written twice by a redelivery); the default appends the receipts durably first, then
    /// acks (a crash in between can repeat a receipt, never lose one).
    async fn ack_with_receipts(
        &self,
        device: DeviceAddr,
        up_to_seq: u64,
        receipts: AppendRequest,
    ) -> StoreResult<AppendOutcome> {
        let outcome = self.append(receipts).await?;
        self.ack(device, up_to_seq).await?;
        Ok(outcome)
    }

    /// The device's acked cursor and the last sequence number ever assigned to it.
    async fn cursor(&self, device: DeviceAddr) -> StoreResult<InboxCursor>;

    /// The cursors of many devices at once, in the order given. Cluster mode checks the inboxes
    /// of every connected device with it; engines answer it in one query per shard.
    async fn cursors(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<InboxCursor>> {
        let mut out = Vec::with_capacity(devices.len());
        for &d in devices {
            out.push(self.cursor(d).await?);
        }
        Ok(out)
    }

    /// Deletes a device's whole inbox (after revocation).
    async fn purge(&self, device: DeviceAddr) -> StoreResult<()>;

    /// Deletes inbox entries appended before `older_than_ms` and dedup records created before
    /// `dedup_older_than_ms`. Returns how many records were removed. Called periodically.
    async fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64>;

    /// Deletes at most `limit` inbox entries whose `expires_at_ms` is at or before `now_ms`
    /// (disappearing messages), delivered or not; cursors are untouched, so seqs are never
    /// reused. Returns how many went (fewer than `limit`: nothing more is due). Called
    /// periodically by the disappearing-messages sweep; bounded so one pass is short.
    async fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64>;

    /// Registers who hears about every commit (metrics). Engines without group commit may
    /// ignore it.
    fn set_commit_observer(&self, _observer: std::sync::Arc<dyn CommitObserver>) {}

    /// Appends and acks waiting for the committer right now (a metrics gauge).
    fn queue_depth(&self) -> usize {
        0
    }

    /// False after a failed commit (disk full, fsync error) until a commit succeeds again;
    /// drives `/readyz`.
    fn is_healthy(&self) -> bool;

    /// Flushes and stops the committer; later appends fail with [`StoreError::Closed`].
    async fn close(&self) -> StoreResult<()>;
}

/// What one group commit did.
#[derive(Debug, Clone, Copy)]
pub struct CommitSample {
    /// Appends (sends, receipts) in the batch.
    pub appends: u64,
    /// How long the write and its fsync took.
    pub duration: std::time::Duration,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Hears about every commit, on the committer's thread: must be cheap and never block.
pub trait CommitObserver: Send + Sync + 'static {
    /// Called after each commit.
    fn committed(&self, sample: CommitSample);

    /// Called when a replicated store's writable host changed or could not be found (the
    /// PostgreSQL engine, a shard URL listing a primary and its standbys), so a failover shows
    /// in the metrics. Engines with one host never call it.
    fn writer_event(&self, _event: WriterEvent) {}
}

/// What the PostgreSQL engine saw while looking for a shard's writable host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEvent {
    /// A connection found the shard's writable host elsewhere than the last time: a failover
    /// (the old primary gone, a standby promoted).
    Changed {
        /// The shard's index.
        shard: usize,
    },
    /// A bounded search found no host of the shard accepting writes; its caller got
    /// `Unavailable`.
    NotFound {
        /// The shard's index.
        shard: usize,
    },
}

/// Who blocked whom: durable, low-rate, read on every 1:1 send.
#[async_trait]
pub trait BlockStore: Send + Sync + 'static {
    /// Adds (`on`) or removes the block of `blocked` by `blocker`. Durable when it returns.
    async fn set_blocked(&self, blocker: AccountId, blocked: AccountId, on: bool) -> StoreResult<()>;

    /// Whether `blocker` blocked `blocked`.
    async fn is_blocked(&self, blocker: AccountId, blocked: AccountId) -> StoreResult<bool>;

    /// Everyone `blocker` blocked.
    async fn blocked_by(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>>;
}

/// Everything the server needs from an engine.
pub trait Store:
    AccountStore
    + InboxStore
    + GroupStore
    + BlockStore
    + MessageIndexStore
    + ContactStore
    + KeyStore
    + MediaStore
    + TimerStore
    + PushStore
    + ProfileStore
    + ErasureStore
    + AbuseStore
{
}
impl<T> Store for T where
    T: AccountStore
        + InboxStore
        + GroupStore
        + BlockStore
        + MessageIndexStore
        + ContactStore
        + KeyStore
        + MediaStore
        + TimerStore
        + PushStore
        + ProfileStore
        + ErasureStore
        + AbuseStore
{
}
