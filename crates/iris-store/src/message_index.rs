//! The index of recent messages that message actions (reply, edit, delete, react) are checked
//! against: server message id → sender, conversation, time, and whether it was deleted for
//! everyone. Expires with the inbox TTL.

use async_trait::async_trait;

use crate::{AccountId, GroupId, StoreResult};

/// The conversation a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation {
    /// A 1:1 message to this account (the other side is the sender).
    Direct(AccountId),
    /// A message to this group.
    Group(GroupId),
}

/// What the server remembers about one recent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef {
    /// Who sent it.
    pub sender: AccountId,
    /// Where it was sent.
    pub conversation: Conversation,
    /// When the server accepted it.
    pub sent_at_ms: u64,
    /// Deleted for everyone: the server refuses further actions on it (edits, reactions,
    /// replies, another delete), as WhatsApp leaves only a tombstone. Set by re-writing the ref
    /// with [`MessageIndexStore::put_message_ref`] once the deletion is durable.
    pub deleted: bool,
    /// When the message disappears (a disappearing-messages timer was on when it was sent):
    /// the ref is deleted by [`MessageIndexStore::expire_due_refs`] and must be treated as
    /// gone from this time on, even before the sweep ran.
    pub expires_at_ms: Option<u64>,
}

impl MessageRef {
    /// Whether the message has disappeared at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// Recent messages by server id.
#[async_trait]
pub trait MessageIndexStore: Send + Sync + 'static {
    /// Records a message, replacing any earlier record of the same id (an upsert: a deletion
    /// re-writes the ref with `deleted` set). A buffered write: callers write it before queueing
    /// the message's append, whose synced commit makes it durable (same journal), like group
    /// payloads; a deletion's re-write becomes durable with the next synced commit.
    async fn put_message_ref(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()>;

    /// Records a NEW message whose append (same `server_msg_id`) the caller queues right after.
    /// An engine may keep the record back and write it in that append's own transaction
    /// (PostgreSQL: one transaction where there were two, and the record appears atomically
    /// with the entries). Readers may not see it before the append commits, and if no append
    /// follows (the send failed, so nobody learnt the id) it may be forgotten. Default: as
    /// [`put_message_ref`](Self::put_message_ref).
    async fn put_message_ref_with_append(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        self.put_message_ref(server_msg_id, r).await
    }

    /// Whether a message with this id keeps its records (index, group payload and receipts)
    /// where `account`'s inbox and dedup records are: then a message from `account` whose
    /// recipients are there too is ONE transaction in one place. Servers pick among fresh ids
    /// with it; ids are not otherwise chosen. Engines with one place for everything: always.
    fn message_id_is_near(&self, server_msg_id: u64, account: AccountId) -> bool {
        let _ = (server_msg_id, account);
        true
    }

    /// The message with this id, if still indexed.
    async fn message_ref(&self, server_msg_id: u64) -> StoreResult<Option<MessageRef>>;

    /// Forgets messages with ids below `before_msg_id` (ids start with their time). Returns how
    /// many were removed.
    async fn expire_message_refs(&self, before_msg_id: u64) -> StoreResult<u64>;

    /// Forgets at most `limit` messages whose `expires_at_ms` is at or before `now_ms`
    /// (disappearing messages). Returns how many went.
    async fn expire_due_refs(&self, now_ms: u64, limit: usize) -> StoreResult<u64>;
}
