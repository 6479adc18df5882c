//! [`MessageIndexStore`] on PostgreSQL: one row per recent message on the message's shard.
//! A new message's row is staged in memory and written by the committer in its append's own
//! transaction on that shard ([`Inner::stage_ref`]), so it costs no transaction of its own and
//! appears with the entries. Re-writes (deletions) are written at once without waiting for the
//! WAL flush: the next synced commit on the shard makes them durable.

use async_trait::async_trait;

use super::error::db_err;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::shards::{shard_of_id, shard_of_msg, sql, sql_msg, unsql, Shard};
use super::{execute_unsynced, query, Inner, PgStore};
use crate::{AccountId, Conversation, MessageIndexStore, MessageRef, StoreError, StoreResult};

/// Most message refs staged at once (waiting for their appends); past it refs are written
/// at once, as before staging existed.
const STAGED_REFS_MAX: usize = 65_536;
/// A staged ref whose append has not come after this long never will (its send failed): it
/// is dropped when room is needed.
const STAGED_REF_TTL: Duration = Duration::from_secs(60);

/// A message ref waiting for its append (see the module doc).
pub(super) struct StagedRef {
    r: MessageRef,
    staged_at: Instant,
}

/// The `message_refs` columns of a ref: kind and conversation id.
fn conversation_cols(c: Conversation) -> (i16, u64) {
    match c {
        Conversation::Direct(a) => (0, a),
        Conversation::Group(g) => (1, g),
    }
}

/// Message refs as `unnest` arrays, for the committer's one statement per batch.
#[derive(Default)]
pub(super) struct RefColumns {
    pub ids: Vec<i64>,
    pub senders: Vec<i64>,
    pub kinds: Vec<i16>,
    pub conversations: Vec<i64>,
    pub sent_at: Vec<i64>,
    pub deleted: Vec<bool>,
    pub expires_at: Vec<Option<i64>>,
}

impl RefColumns {
    /// Adds the ref of message `server_msg_id`.
    pub(super) fn push(&mut self, server_msg_id: u64, r: &MessageRef) {
        let (kind, conversation) = conversation_cols(r.conversation);
        self.ids.push(sql_msg(server_msg_id));
        self.senders.push(sql(r.sender));
        self.kinds.push(kind);
        self.conversations.push(sql(conversation));
        self.sent_at.push(sql(r.sent_at_ms));
        self.deleted.push(r.deleted);
        self.expires_at.push(r.expires_at_ms.map(sql));
    }
}

/// The committer's statement for a batch's refs (upserts, like `put_message_ref`).
pub(super) const REFS_UPSERT: &str = "INSERT INTO message_refs AS m
         (server_msg_id, sender, kind, conversation_id, sent_at_ms, deleted, expires_at_ms)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int2[], $4::int8[], $5::int8[], $6::bool[], $7::int8[])
     ON CONFLICT (server_msg_id) DO UPDATE SET sender = excluded.sender, kind = excluded.kind,
         conversation_id = excluded.conversation_id, sent_at_ms = excluded.sent_at_ms,
         deleted = excluded.deleted, expires_at_ms = excluded.expires_at_ms";

impl Inner {
    /// Keeps `r` for the append of `server_msg_id`; false (nothing kept) when the stage is
    /// full of refs younger than [`STAGED_REF_TTL`].
    fn stage_ref(&self, server_msg_id: u64, r: MessageRef) -> bool {
        let mut staged = self.staged_refs.lock().unwrap_or_else(|e| e.into_inner());
        if staged.len() >= STAGED_REFS_MAX {
            staged.retain(|_, s| s.staged_at.elapsed() < STAGED_REF_TTL);
            if staged.len() >= STAGED_REFS_MAX {
                return false;
            }
        }
        staged.insert(server_msg_id, StagedRef { r, staged_at: Instant::now() });
        true
    }

    /// The ref staged for the append of `server_msg_id`, if any (taken: it is written once).
    pub(super) fn take_staged_ref(&self, server_msg_id: u64) -> Option<MessageRef> {
        let mut staged = self.staged_refs.lock().unwrap_or_else(|e| e.into_inner());
        staged.remove(&server_msg_id).map(|s| s.r)
    }
}

/// The empty stage of a new store.
pub(super) fn new_stage() -> std::sync::Mutex<HashMap<u64, StagedRef>> {
    std::sync::Mutex::new(HashMap::new())
}

#[async_trait]
impl MessageIndexStore for PgStore {
    async fn put_message_ref(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let (kind, conversation) = conversation_cols(r.conversation);
            execute_unsynced(
                this.msg_shard(server_msg_id),
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
        })
        .await
    }

    async fn put_message_ref_with_append(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        self.on_task(move |this| async move {
            this.inner.check_open()?;
            if this.inner.stage_ref(server_msg_id, r) {
                return Ok(());
            }
            this.put_message_ref(server_msg_id, r).await
        })
        .await
    }

    fn message_id_is_near(&self, server_msg_id: u64, account: AccountId) -> bool {
        let n = self.inner.n_shards();
        shard_of_msg(server_msg_id, n) == shard_of_id(account, n)
    }

    async fn message_ref(&self, server_msg_id: u64) -> StoreResult<Option<MessageRef>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.msg_shard(server_msg_id),
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
        })
        .await
    }

    async fn expire_due_refs(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            this.delete_due(
                "DELETE FROM message_refs WHERE server_msg_id = ANY(ARRAY(
                     SELECT server_msg_id FROM message_refs WHERE expires_at_ms <= $1 LIMIT $2))",
                now_ms,
                limit,
            )
            .await
        })
        .await
    }

    async fn expire_message_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            let mut removed = 0;
            for shard in &this.inner.shards {
                let client = shard.client().await?;
                removed += client
                    .execute("DELETE FROM message_refs WHERE server_msg_id < $1", &[&sql_msg(before_msg_id)])
                    .await
                    .map_err(|e| db_err(shard.idx, e))?;
            }
            Ok(removed)
        })
        .await
    }
}

impl PgStore {
    /// The shard of records keyed by `server_msg_id`.
    pub(super) fn msg_shard(&self, server_msg_id: u64) -> &Shard {
        self.inner.shard(shard_of_msg(server_msg_id, self.inner.n_shards()))
    }
}
