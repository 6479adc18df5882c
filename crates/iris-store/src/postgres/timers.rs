//! [`TimerStore`] on PostgreSQL: one `chat_timers` row per conversation, on the shard of the
//! pair's lower account or of the group, written with a synced commit.

use async_trait::async_trait;

use super::shards::{shard_of_id, sql, unsql};
use super::{query, PgStore};
use crate::{Chat, ChatTimer, StoreResult, TimerStore};

/// The row key of a conversation: (kind, a, b) and the id that picks its shard.
fn row(chat: Chat) -> (i16, u64, u64) {
    match chat {
        Chat::Direct(a, b) => (0, a, b),
        Chat::Group(g) => (1, g, 0),
    }
}

#[async_trait]
impl TimerStore for PgStore {
    async fn set_timer(&self, chat: Chat, timer: ChatTimer) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let (kind, a, b) = row(chat);
            let shard = this.inner.shard(shard_of_id(a, this.inner.n_shards()));
            query(
                shard,
                "INSERT INTO chat_timers (kind, a, b, seconds, set_by, set_at_ms) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (kind, a, b) DO UPDATE SET seconds = excluded.seconds, set_by = excluded.set_by,
                     set_at_ms = excluded.set_at_ms",
                &[&kind, &sql(a), &sql(b), &(timer.seconds as i32), &sql(timer.set_by), &sql(timer.set_at_ms)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn timer(&self, chat: Chat) -> StoreResult<ChatTimer> {
        self.on_task(move |this| async move {
            let (kind, a, b) = row(chat);
            let shard = this.inner.shard(shard_of_id(a, this.inner.n_shards()));
            let rows = query(
                shard,
                "SELECT seconds, set_by, set_at_ms FROM chat_timers WHERE kind = $1 AND a = $2 AND b = $3",
                &[&kind, &sql(a), &sql(b)],
            )
            .await?;
            Ok(rows
                .first()
                .map(|r| ChatTimer {
                    seconds: r.get::<_, i32>(0) as u32,
                    set_by: unsql(r.get(1)),
                    set_at_ms: unsql(r.get(2)),
                })
                .unwrap_or_default())
        })
        .await
    }
}
