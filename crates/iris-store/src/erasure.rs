//! Account erasure: the durable "deleting" mark and the engine's half of deleting an account.
//!
//! The server drives a deletion in steps (ARCHITECTURE.md "Account deletion"): mark, close the
//! devices, leave the groups, then [`ErasureStore::erase_account`]. The mark comes first and goes
//! last, so a crash anywhere in between leaves an account that a retry (or the next start, which
//! lists [`ErasureStore::erasures_pending`]) finishes; every step is idempotent.

use async_trait::async_trait;

use crate::{Account, AccountId, GroupId, StoreResult};

/// An account whose deletion started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingErasure {
    /// The account being deleted (its record may already be gone).
    pub account: AccountId,
    /// Its phone number: refused for registration until the deletion finishes.
    pub phone: String,
    /// When the deletion started, ms since the Unix epoch.
    pub started_at_ms: u64,
}

/// The engine's part of account deletion.
#[async_trait]
pub trait ErasureStore: Send + Sync + 'static {
    /// Durably marks `account` as being deleted (idempotent: a second call keeps the first
    /// time). From then on `register_device` for its phone fails with
    /// [`crate::StoreError::AccountDeleting`], so no new device can join an account that is
    /// going away.
    async fn begin_erasure(&self, account: &Account, now_ms: u64) -> StoreResult<()>;

    /// Every deletion started and not finished (after a crash: what to finish).
    async fn erasures_pending(&self) -> StoreResult<Vec<PendingErasure>>;

    /// The groups where `account` waits for a join approval (not a member yet).
    async fn groups_pending_for(&self, account: AccountId) -> StoreResult<Vec<GroupId>>;

    /// Removes a group that has no members left: its record and its indexes.
    async fn delete_group(&self, group: GroupId) -> StoreResult<()>;

    /// Erases every record of the account the engine keeps outside groups: account and phone
    /// index, devices, refresh tokens, inboxes and cursors, dedup records of its devices,
    /// contacts (its list and its place in others'), blocks (both directions), presence
    /// privacy, keys and key peers (both directions), message index entries it sent or
    /// received, group receipt rows, media references, uploads and quota windows (blobs it
    /// uploaded stay for the others' messages, their owner cleared). Removes the mark last.
    /// Idempotent: erasing an erased account does nothing.
    async fn erase_account(&self, erasure: &PendingErasure) -> StoreResult<()>;
}
