//! [`BlockStore`] on PostgreSQL: one row per (blocker, blocked) pair on the blocker's shard,
//! written with a synced commit.

use async_trait::async_trait;

use super::error::db_err;
use super::shards::{sql, unsql};
use super::PgStore;
use crate::{AccountId, BlockStore, StoreResult};

#[async_trait]
impl BlockStore for PgStore {
    async fn set_blocked(&self, blocker: AccountId, blocked: AccountId, on: bool) -> StoreResult<()> {
        let (idx, client) = self.account_client(blocker).await?;
        let statement = if on {
            "INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2"
        };
        client.execute(statement, &[&sql(blocker), &sql(blocked)]).await.map_err(|e| db_err(idx, e))?;
        Ok(())
    }

    async fn is_blocked(&self, blocker: AccountId, blocked: AccountId) -> StoreResult<bool> {
        let (idx, client) = self.account_client(blocker).await?;
        let row = client
            .query_opt("SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2", &[&sql(blocker), &sql(blocked)])
            .await
            .map_err(|e| db_err(idx, e))?;
        Ok(row.is_some())
    }

    async fn blocked_by(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
        let (idx, client) = self.account_client(blocker).await?;
        let rows = client
            .query("SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked", &[&sql(blocker)])
            .await
            .map_err(|e| db_err(idx, e))?;
        Ok(rows.iter().map(|r| unsql(r.get(0))).collect())
    }
}
