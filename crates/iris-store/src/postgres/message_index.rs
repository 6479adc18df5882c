//! [`MessageIndexStore`] on PostgreSQL: one row per recent message on the message's shard.
//! Written without waiting for the WAL flush: the message's append takes part on the same
//! shard and its synced commit makes the row durable before the send is acknowledged.

use async_trait::async_trait;

use super::error::db_err;
use super::shards::{shard_of_msg, sql, sql_msg, unsql, Shard};
use super::{execute_unsynced, query, PgStore};
use crate::{Conversation, MessageIndexStore, MessageRef, StoreError, StoreResult};

#[async_trait]
impl MessageIndexStore for PgStore {
    async fn put_message_ref(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        let (kind, conversation): (i16, u64) = match r.conversation {
            Conversation::Direct(a) => (0, a),
            Conversation::Group(g) => (1, g),
        };
        execute_unsynced(
            self.msg_shard(server_msg_id),
            "INSERT INTO message_refs (server_msg_id, sender, kind, conversation_id, sent_at_ms, deleted)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (server_msg_id) DO UPDATE SET sender = excluded.sender, kind = excluded.kind,
                 conversation_id = excluded.conversation_id, sent_at_ms = excluded.sent_at_ms,
                 deleted = excluded.deleted",
            &[&sql_msg(server_msg_id), &sql(r.sender), &kind, &sql(conversation), &sql(r.sent_at_ms), &r.deleted],
        )
        .await?;
        Ok(())
    }

    async fn message_ref(&self, server_msg_id: u64) -> StoreResult<Option<MessageRef>> {
        let rows = query(
            self.msg_shard(server_msg_id),
            "SELECT sender, kind, conversation_id, sent_at_ms, deleted FROM message_refs WHERE server_msg_id = $1",
            &[&sql_msg(server_msg_id)],
        )
        .await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let id = unsql(row.get(2));
        let conversation = match row.get::<_, i16>(1) {
            0 => Conversation::Direct(id),
            1 => Conversation::Group(id),
            k => return Err(StoreError::Corrupt(format!("message ref of kind {k}"))),
        };
        Ok(Some(MessageRef {
            sender: unsql(row.get(0)),
            conversation,
            sent_at_ms: unsql(row.get(3)),
            deleted: row.get(4),
        }))
    }

    async fn expire_message_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        let mut removed = 0;
        for shard in &self.inner.shards {
            let client = shard.client().await?;
            removed += client
                .execute("DELETE FROM message_refs WHERE server_msg_id < $1", &[&sql_msg(before_msg_id)])
                .await
                .map_err(|e| db_err(shard.idx, e))?;
        }
        Ok(removed)
    }
}

impl PgStore {
    /// The shard of records keyed by `server_msg_id`.
    pub(super) fn msg_shard(&self, server_msg_id: u64) -> &Shard {
        self.inner.shard(shard_of_msg(server_msg_id, self.inner.n_shards()))
    }
}
