//! Group records the store keeps, independent of any engine, and the [`GroupStore`] trait.
//!
//! The store keeps a group's state as one record with a version; the server decides every
//! change (permissions, limits, serialisation) and the store only refuses a write whose version
//! does not follow the stored one, so a lost race can never overwrite a newer roster.

use async_trait::async_trait;
use bytes::Bytes;

use crate::{AccountId, AppendRequest, PendingAppend, StoreResult};

/// Internal, never reused id of a group.
pub type GroupId = u64;

/// What a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupRole {
    /// Sends (unless the group is admins-only) and reads.
    Member,
    /// Also manages members, info and invite links.
    Admin,
    /// The admin who created the group.
    Creator,
}

impl GroupRole {
    /// Admins and the creator.
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Admin | Self::Creator)
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The account.
    pub account: AccountId,
    /// Its role.
    pub role: GroupRole,
    /// When it joined, ms since the Unix epoch.
    pub joined_at_ms: u64,
    /// The group version that added it (orders "longest-standing").
    pub joined_version: u64,
}

/// A group's switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupSettings {
    /// Only admins may send.
    pub admins_only_send: bool,
    /// Only admins may change name, description and settings.
    pub admins_only_edit: bool,
    /// Joins by invite link wait for an admin.
    pub join_approval: bool,
}

/// A join request waiting for an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJoin {
    /// Who asked.
    pub account: AccountId,
    /// When, ms since the Unix epoch.
    pub requested_at_ms: u64,
}

/// A group and everything about it that changes under its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its id (handed out by [`GroupStore::reserve_group_id`]).
    pub id: GroupId,
    /// At most 100 characters (checked by the server).
    pub name: String,
    /// At most 512 characters (checked by the server).
    pub description: String,
    /// Switches.
    pub settings: GroupSettings,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Grows by one with every change; 1 when created.
    pub version: u64,
    /// Members in join order.
    pub members: Vec<GroupMember>,
    /// Join requests waiting for an admin.
    pub pending: Vec<PendingJoin>,
    /// The current invite link token, if any.
    pub invite_token: Option<String>,
}

impl Group {
    /// The member record of `account`, if it is a member.
    pub fn member(&self, account: AccountId) -> Option<&GroupMember> {
        self.members.iter().find(|m| m.account == account)
    }
}

/// Delivered/read state of one recipient of one group message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupReceiptRow {
    /// The recipient account.
    pub account: AccountId,
    /// When its first device acked the message (0: not yet).
    pub delivered_at_ms: u64,
    /// When it said it read the message (0: not yet).
    pub read_at_ms: u64,
}

/// What recording one receipt changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptProgress {
    /// The sender of the message.
    pub sender: AccountId,
    /// This receipt made the message delivered to every recipient.
    pub all_delivered_now: bool,
    /// This receipt made the message read by every recipient.
    pub all_read_now: bool,
}

/// A group's order, held: while it lives no other holder of the same group, on any node,
/// gets past [`GroupStore::hold_group_order`]. The server takes it around everything that
/// must be ordered with a group's roster (sends, changes, timer changes) and keeps it until
/// that operation's inbox entries are durable, so every inbox sees the operations of one
/// group in one order. Dropping it releases the group (asynchronously; a process that dies
/// releases it with its connections).
pub struct GroupOrderHold {
    /// Whatever the engine needs to release the hold when dropped.
    _release: Box<dyn Send + Sync>,
}

impl GroupOrderHold {
    /// A hold released by dropping `release` (an engine's guard).
    pub fn new(release: impl Send + Sync + 'static) -> Self {
        Self { _release: Box::new(release) }
    }
}

impl std::fmt::Debug for GroupOrderHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupOrderHold")
    }
}

/// Groups, their shared payloads and receipts.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Takes `group`'s order for the whole store, waiting while another caller (of any
    /// process sharing the store) holds it; see [`GroupOrderHold`]. `None` where one process
    /// owns the store (embedded): that process's own group lock already is the whole order,
    /// and the call costs nothing. Fails with [`StoreError::Overloaded`](crate::StoreError)
    /// when the group stays held too long.
    async fn hold_group_order(&self, group: GroupId) -> StoreResult<Option<GroupOrderHold>> {
        let _ = group;
        Ok(None)
    }

    /// A fresh group id for a group about to be created by
    /// [`enqueue_group_update`](Self::enqueue_group_update) at version 1. No two stored groups
    /// ever get the same id, crashes included (a reservation a crash forgets was not used); an
    /// id reserved and never used is only a gap.
    async fn reserve_group_id(&self) -> StoreResult<GroupId>;

    /// The group with this id, if any.
    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>>;

    /// Replaces the group if the stored version is `group.version - 1` (or creates it at version
    /// 1 under a reserved id with no record), updating the member and invite indexes in the
    /// same atomic write; false (nothing written) if the version moved. Durable when it returns.
    async fn update_group(&self, group: &Group) -> StoreResult<bool>;

    /// Replaces the group like [`update_group`](Self::update_group) and appends `events` (the
    /// change's inbox entries) in ONE atomic, synced commit, queued in call order like
    /// `InboxStore::enqueue_append`: a crash leaves either both or neither, so every device
    /// that sees the new roster also gets the event. A group at version 1 whose id has no
    /// record yet (one from [`reserve_group_id`](Self::reserve_group_id)) is created the same
    /// way, with its creation events. Reads see the new record as soon as this returns.
    /// `Ok(None)` (nothing queued) when the version check failed.
    async fn enqueue_group_update(&self, group: &Group, events: AppendRequest) -> StoreResult<Option<PendingAppend>>;

    /// Whether `account` is a member of group `id` (false when there is no such group). Asked
    /// once per member per message (each member's read receipt), where reading the whole
    /// group would make a message's reads cost its size squared: a store with a member index
    /// answers from it.
    async fn is_group_member(&self, id: GroupId, account: AccountId) -> StoreResult<bool> {
        Ok(self.group(id).await?.is_some_and(|g| g.member(account).is_some()))
    }

    /// Ids of the groups `account` is a member of, ascending.
    async fn groups_of(&self, account: AccountId) -> StoreResult<Vec<GroupId>>;

    /// The group whose current invite token is `token`.
    async fn group_by_invite(&self, token: &str) -> StoreResult<Option<GroupId>>;

    /// Stores the one copy of a group message's payload. Written without its own fsync: it
    /// becomes durable with the next synced commit, which the server waits for (the append of
    /// the references) before it acknowledges the send.
    async fn put_group_payload(&self, group: GroupId, server_msg_id: u64, payload: Bytes) -> StoreResult<()>;

    /// The payload of a group message, `None` once expired.
    async fn group_payload(&self, group: GroupId, server_msg_id: u64) -> StoreResult<Option<Bytes>>;

    /// Starts receipt tracking of a group message: `recipients` are the accounts expected to
    /// deliver and read it.
    async fn start_group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
        sender: AccountId,
        recipients: &[AccountId],
    ) -> StoreResult<()>;

    /// Records that `account` delivered (or read: `read`) a group message; `None` if the
    /// message is not tracked or `account` is not one of its recipients.
    async fn mark_group_receipt(
        &self,
        group: GroupId,
        server_msg_id: u64,
        account: AccountId,
        read: bool,
        now_ms: u64,
    ) -> StoreResult<Option<ReceiptProgress>>;

    /// [`GroupStore::mark_group_receipt`] for each of `messages` (group, message id), in
    /// order, one result each; an ack marks every group message it covers at once, and a
    /// store may take its locks once for them. An error stops at that message (the marks
    /// before it stand: marks are idempotent).
    async fn mark_group_receipts(
        &self,
        account: AccountId,
        messages: &[(GroupId, u64)],
        read: bool,
        now_ms: u64,
    ) -> StoreResult<Vec<Option<ReceiptProgress>>> {
        let mut progress = Vec::with_capacity(messages.len());
        for &(group, msg) in messages {
            progress.push(self.mark_group_receipt(group, msg, account, read, now_ms).await?);
        }
        Ok(progress)
    }

    /// The sender and per-recipient receipt state of a group message, if tracked.
    async fn group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
    ) -> StoreResult<Option<(AccountId, Vec<GroupReceiptRow>)>>;

    /// Deletes payloads and receipt records of group messages with ids below `before_msg_id`
    /// (server message ids start with their time, so this is a time cutoff). Returns how many
    /// records were removed.
    async fn expire_group_messages(&self, before_msg_id: u64) -> StoreResult<u64>;
}
