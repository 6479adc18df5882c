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
            "INSERT INTO message_refs (server_msg_id, sender, kind, conversation_id, sent_at_ms, deleted, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (server_msg_id) DO UPDATE SET sender = excluded.sender, kind = excluded.kind,
                 conversation_id = excluded.conversation_id, sent_at_ms = excluded.sent_at_ms,
                 deleted = excluded.deleted, expires_at_ms = excluded.expires_at_ms",
            &[
                &sql_msg(server_msg_id),
                &sql(r.sender),
                &kind,
                &sql(conversation),
                &sql(r.sent_at_ms),
                &r.deleted,
                &r.expires_at_ms.map(sql),
            ],
        )
        .await?;
        Ok(())
    }

    async fn message_ref(&self, server_msg_id: u64) -> StoreResult<Option<MessageRef>> {
        let rows = query(
            self.msg_shard(server_msg_id),
            "SELECT sender, kind, conversation_id, sent_at_ms, deleted, expires_at_ms
             FROM message_refs WHERE server_msg_id = $1",
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
            expires_at_ms: row.get::<_, Option<i64>>(5).map(unsql),
        }))
    }

    async fn expire_due_refs(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        self.delete_due(
            "DELETE FROM message_refs WHERE server_msg_id = ANY(ARRAY(
                 SELECT server_msg_id FROM message_refs WHERE expires_at_ms <= $1 LIMIT $2))",
            now_ms,
            limit,
        )
        .await
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
