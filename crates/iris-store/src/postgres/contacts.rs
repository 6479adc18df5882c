//! [`ContactStore`] on PostgreSQL: one row per (owner, contact) pair and the presence privacy
//! code, on the owner's shard, written with synced commits.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::error::db_err;
use super::shards::{sql, unsql};
use super::PgStore;
use crate::{AccountId, ContactStore, StoreResult};

#[async_trait]
impl ContactStore for PgStore {
    async fn set_contacts(&self, owner: AccountId, contacts: &[AccountId], on: bool) -> StoreResult<()> {
        let (idx, client) = self.account_client(owner).await?;
        let statement = if on {
            "INSERT INTO contacts (owner, contact) SELECT $1, c FROM unnest($2::int8[]) AS c ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM contacts WHERE owner = $1 AND contact = ANY($2::int8[])"
        };
        let ids: Vec<i64> = contacts.iter().map(|&c| sql(c)).collect();
        let params: [&(dyn ToSql + Sync); 2] = [&sql(owner), &ids];
        client.execute(statement, &params).await.map_err(|e| db_err(idx, e))?;
        Ok(())
    }

    async fn contacts(&self, owner: AccountId) -> StoreResult<Vec<AccountId>> {
        let (idx, client) = self.account_client(owner).await?;
        let rows = client
            .query("SELECT contact FROM contacts WHERE owner = $1 ORDER BY contact", &[&sql(owner)])
            .await
            .map_err(|e| db_err(idx, e))?;
        let mut ids: Vec<AccountId> = rows.iter().map(|r| unsql(r.get(0))).collect();
        ids.sort_unstable(); // u64 order (bigint order differs above 2^63)
        Ok(ids)
    }

    async fn is_contact(&self, owner: AccountId, contact: AccountId) -> StoreResult<bool> {
        let (idx, client) = self.account_client(owner).await?;
        let row = client
            .query_opt("SELECT 1 FROM contacts WHERE owner = $1 AND contact = $2", &[&sql(owner), &sql(contact)])
            .await
            .map_err(|e| db_err(idx, e))?;
        Ok(row.is_some())
    }

    async fn set_presence_privacy(&self, account: AccountId, code: u8) -> StoreResult<()> {
        let (idx, client) = self.account_client(account).await?;
        client
            .execute(
                "INSERT INTO presence_privacy (account, code) VALUES ($1, $2)
                 ON CONFLICT (account) DO UPDATE SET code = excluded.code",
                &[&sql(account) as &(dyn ToSql + Sync), &i16::from(code)],
            )
            .await
            .map_err(|e| db_err(idx, e))?;
        Ok(())
    }

    async fn presence_privacy(&self, account: AccountId) -> StoreResult<Option<u8>> {
        let (idx, client) = self.account_client(account).await?;
        let row = client
            .query_opt("SELECT code FROM presence_privacy WHERE account = $1", &[&sql(account)])
            .await
            .map_err(|e| db_err(idx, e))?;
        Ok(row.map(|r| r.get::<_, i16>(0) as u8))
    }
}
