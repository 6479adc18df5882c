//! [`ContactStore`] on PostgreSQL: one row per (owner, contact) pair and the presence privacy
//! code, on the owner's shard, written with synced commits.

use async_trait::async_trait;

use super::shards::{sql, unsql};
use super::{query, PgStore};
use crate::{AccountId, ContactStore, StoreResult};

#[async_trait]
impl ContactStore for PgStore {
    async fn set_contacts(&self, owner: AccountId, contacts: &[AccountId], on: bool) -> StoreResult<()> {
        let contacts = contacts.to_owned();
        self.on_task(move |this| async move {
            let contacts: &[AccountId] = &contacts;
            let statement = if on {
                "INSERT INTO contacts (owner, contact) SELECT $1, c FROM unnest($2::int8[]) AS c ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM contacts WHERE owner = $1 AND contact = ANY($2::int8[])"
            };
            let ids: Vec<i64> = contacts.iter().map(|&c| sql(c)).collect();
            query(this.account_shard(owner), statement, &[&sql(owner), &ids]).await?;
            Ok(())
        })
        .await
    }

    async fn contacts(&self, owner: AccountId) -> StoreResult<Vec<AccountId>> {
        self.on_task(move |this| async move {
            let rows =
                query(this.account_shard(owner), "SELECT contact FROM contacts WHERE owner = $1", &[&sql(owner)])
                    .await?;
            let mut ids: Vec<AccountId> = rows.iter().map(|r| unsql(r.get(0))).collect();
            ids.sort_unstable(); // u64 order (bigint order differs above 2^63)
            Ok(ids)
        })
        .await
    }

    async fn is_contact(&self, owner: AccountId, contact: AccountId) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(owner),
                "SELECT 1 FROM contacts WHERE owner = $1 AND contact = $2",
                &[&sql(owner), &sql(contact)],
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn set_presence_privacy(&self, account: AccountId, code: u8) -> StoreResult<()> {
        self.on_task(move |this| async move {
            query(
                this.account_shard(account),
                "INSERT INTO presence_privacy (account, code) VALUES ($1, $2)
                 ON CONFLICT (account) DO UPDATE SET code = excluded.code",
                &[&sql(account), &i16::from(code)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn presence_privacy(&self, account: AccountId) -> StoreResult<Option<u8>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT code FROM presence_privacy WHERE account = $1",
                &[&sql(account)],
            )
            .await?;
            Ok(rows.first().map(|r| r.get::<_, i16>(0) as u8))
        })
        .await
    }
}
