//! [`BlockStore`] on PostgreSQL: one row per (blocker, blocked) pair on the blocker's shard,
//! written with a synced commit.

use async_trait::async_trait;

use super::shards::{sql, unsql};
use super::{query, PgStore};
use crate::{AccountId, BlockStore, StoreResult};

#[async_trait]
impl BlockStore for PgStore {
    async fn set_blocked(&self, blocker: AccountId, blocked: AccountId, on: bool) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let statement = if on {
                "INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2"
            };
            query(this.account_shard(blocker), statement, &[&sql(blocker), &sql(blocked)]).await?;
            Ok(())
        })
        .await
    }

    async fn is_blocked(&self, blocker: AccountId, blocked: AccountId) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(blocker),
                "SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2",
                &[&sql(blocker), &sql(blocked)],
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn blocked_by(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
        self.on_task(move |this| async move {
            let rows =
                query(this.account_shard(blocker), "SELECT blocked FROM blocks WHERE blocker = $1", &[&sql(blocker)])
                    .await?;
            let mut ids: Vec<AccountId> = rows.iter().map(|r| unsql(r.get(0))).collect();
            ids.sort_unstable(); // u64 order (bigint order differs above 2^63)
            Ok(ids)
        })
        .await
    }
}
