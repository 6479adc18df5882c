//! [`PushStore`] on PostgreSQL: one `push_targets` row per device on its account's shard,
//! written with synced commits (`0005_push.sql`).

use async_trait::async_trait;

use super::shards::{sql, unsql};
use super::{query, PgStore};
use crate::{AccountId, DeviceAddr, PushStore, PushTarget, StoreResult};

#[async_trait]
impl PushStore for PgStore {
    async fn set_push_target(&self, t: PushTarget) -> StoreResult<()> {
        self.on_task(move |this| async move {
            query(
                this.account_shard(t.device.account),
                "INSERT INTO push_targets (account, device, provider, token, updated_at_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account, device) DO UPDATE
                 SET provider = excluded.provider, token = excluded.token, updated_at_ms = excluded.updated_at_ms",
                &[&sql(t.device.account), &(t.device.device as i32), &t.provider, &t.token, &sql(t.updated_at_ms)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn push_target(&self, device: DeviceAddr) -> StoreResult<Option<PushTarget>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(device.account),
                "SELECT provider, token, updated_at_ms FROM push_targets WHERE account = $1 AND device = $2",
                &[&sql(device.account), &(device.device as i32)],
            )
            .await?;
            Ok(rows.first().map(|r| PushTarget {
                device,
                provider: r.get(0),
                token: r.get(1),
                updated_at_ms: unsql(r.get(2)),
            }))
        })
        .await
    }

    async fn delete_push_target(&self, device: DeviceAddr, only_token: Option<&str>) -> StoreResult<bool> {
        let only_token = only_token.map(ToOwned::to_owned);
        self.on_task(move |this| async move {
            let only_token: Option<&str> = only_token.as_deref();
            let rows = query(
                this.account_shard(device.account),
                "DELETE FROM push_targets WHERE account = $1 AND device = $2 AND ($3::text IS NULL OR token = $3)
                 RETURNING 1",
                &[&sql(device.account), &(device.device as i32), &only_token],
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn delete_account_push_targets(&self, account: AccountId) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "DELETE FROM push_targets WHERE account = $1 RETURNING 1",
                &[&sql(account)],
            )
            .await?;
            Ok(rows.len() as u64)
        })
        .await
    }
}
