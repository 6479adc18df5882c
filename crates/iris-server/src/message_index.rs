//! The index of recent messages as the services use it: sends record each message (so replies,
//! edits, deletions and reactions can be checked against it), replies are checked here, and
//! deletions for everyone are remembered here.
//!
//! Knows only the store's message index ([`MessageIndexStore`]); nothing of inboxes, groups'
//! rosters or sessions. Both messaging and groups check replies here, so neither needs the
//! actions service.

use std::sync::Arc;

use iris_store::{AccountId, Conversation, MessageIndexStore, MessageRef};

use crate::clock::Clock;
use crate::error::ServiceError;
use crate::ids::IdGenerator;

/// Most fresh ids [`MessageIndex::next_id`] tries for one message. With n shards a try misses
/// the sender's shard with chance 1 − 1/n, so all of them miss with (1 − 1/n)^64: 0.02 % at 8
/// shards, 5 % at 22, 36 % at 64. A bound still, because ids are 4,096 per ms per node: a node
/// with many shards must not run its ids ahead of the clock (at 22 shards a node spends ~22 ids
/// per message, ~75 per ms at a PostgreSQL node's ~3,400 msgs/s).
pub const ID_TRIES_MAX: usize = 64;

/// Why an action on a message deleted for everyone fails (shown as "… not found").
pub const DELETED: &str = "message (deleted for everyone)";

/// Whether `r` is a 1:1 message between `a` and `b` (either direction; `a == b` is a note to
/// self).
pub fn direct_between(r: &MessageRef, a: AccountId, b: AccountId) -> bool {
    match r.conversation {
        Conversation::Direct(to) => (r.sender == a && to == b) || (r.sender == b && to == a),
        Conversation::Group(_) => false,
    }
}

/// Recent messages by server id.
pub struct MessageIndex {
    store: Arc<dyn MessageIndexStore>,
    /// Judges disappearing messages: one past its expiry is gone, swept or not.
    clock: Arc<dyn Clock>,
}

impl MessageIndex {
    /// The index kept in `store`, disappearing messages judged by `clock`.
    pub fn new(store: Arc<dyn MessageIndexStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Records a new message right before its append is queued: written with the append (in
    /// its transaction on PostgreSQL, a buffered write made durable by its commit embedded).
    pub async fn record(&self, server_msg_id: u64, r: MessageRef) -> Result<(), ServiceError> {
        Ok(self.store.put_message_ref_with_append(server_msg_id, r).await?)
    }

    /// A fresh server message id for a message from `sender`, preferring one whose records the
    /// store keeps where `sender`'s inbox and dedup records are (PostgreSQL: its shard), so a
    /// 1:1 message between two accounts of one shard is one transaction. Tries at most
    /// [`ID_TRIES_MAX`] ids (each try uses up an id; with n shards one in n fits), then takes
    /// the last; on the embedded store the first always fits.
    pub fn next_id(&self, ids: &IdGenerator, now_ms: u64, sender: AccountId) -> u64 {
        let mut id = ids.next(now_ms);
        for _ in 1..ID_TRIES_MAX {
            if self.store.message_id_is_near(id, sender) {
                break;
            }
            id = ids.next(now_ms);
        }
        id
    }

    /// The message with this id, if still indexed (deleted or not) and not disappeared.
    pub async fn get(&self, server_msg_id: u64) -> Result<Option<MessageRef>, ServiceError> {
        let now = self.clock.now_ms();
        Ok(self.store.message_ref(server_msg_id).await?.filter(|r| !r.is_expired(now)))
    }

    /// Remembers that `r` (with id `server_msg_id`) was deleted for everyone.
    pub async fn mark_deleted(&self, server_msg_id: u64, r: MessageRef) -> Result<(), ServiceError> {
        Ok(self.store.put_message_ref(server_msg_id, MessageRef { deleted: true, ..r }).await?)
    }

    /// Checks a reply's target: 0 (no reply) passes; otherwise it must be indexed, `in_chat` and
    /// not deleted for everyone.
    pub async fn check_reply(
        &self,
        reply_to: u64,
        in_chat: impl FnOnce(&MessageRef) -> bool,
    ) -> Result<(), ServiceError> {
        if reply_to == 0 {
            return Ok(());
        }
        // Outsiders learn nothing, not even that the message was deleted.
        match self.get(reply_to).await?.filter(|r| in_chat(r)) {
            Some(r) if r.deleted => Err(ServiceError::NotFound(DELETED)),
            Some(_) => Ok(()),
            None => Err(ServiceError::NotFound("the message replied to is not in this conversation")),
        }
    }
}
