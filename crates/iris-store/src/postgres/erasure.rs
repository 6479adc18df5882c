//! [`ErasureStore`] on PostgreSQL. The mark lives on the account's shard (`account_erasures`,
//! migration 0007), taken under the account row's lock so a registration cannot slip past it.
//! Erasing runs one transaction per shard: rows keyed by the account (its own data, on its
//! shard) and rows that name it elsewhere (others' contacts, blocks and key peers, message index
//! entries, group receipt rows, media references) are deleted on every shard, which is cheap
//! for a rare operation and needs no routing knowledge of each table. The mark goes last.

use async_trait::async_trait;

use super::error::db_err;
use super::shards::{sql, unsql};
use super::{query, PgStore};
use crate::{Account, AccountId, ErasureStore, GroupId, PendingErasure, StoreResult};

/// What one shard deletes for an erased account (`$1`), in order.
const ERASE_STATEMENTS: &[&str] = &[
    "DELETE FROM refresh_tokens WHERE account = $1",
    "DELETE FROM devices WHERE account = $1",
    "DELETE FROM device_revocations WHERE account = $1",
    "DELETE FROM inbox WHERE account = $1",
    "DELETE FROM cursors WHERE account = $1",
    "DELETE FROM dedup WHERE account = $1",
    "DELETE FROM blocks WHERE blocker = $1 OR blocked = $1",
    "DELETE FROM contacts WHERE owner = $1 OR contact = $1",
    "DELETE FROM presence_privacy WHERE account = $1",
    "DELETE FROM group_members WHERE account = $1",
    "DELETE FROM group_receipt_rows WHERE account = $1",
    "DELETE FROM group_receipt_rows r USING group_receipts g
     WHERE g.sender = $1 AND r.server_msg_id = g.server_msg_id AND r.group_id = g.group_id",
    "DELETE FROM group_receipts WHERE sender = $1",
    "DELETE FROM message_refs WHERE sender = $1 OR (kind = 0 AND conversation_id = $1)",
    "DELETE FROM device_identities WHERE account = $1",
    "DELETE FROM one_time_keys WHERE account = $1",
    "DELETE FROM key_state WHERE account = $1",
    "DELETE FROM key_peers WHERE account = $1 OR peer = $1",
    "DELETE FROM media_refs WHERE account = $1",
    "DELETE FROM media_uploads WHERE account = $1",
    "DELETE FROM media_quota WHERE account = $1",
    // Blobs stay for the messages of others that reference them; who uploaded them goes.
    "UPDATE media_blobs SET owner = 0 WHERE owner = $1",
    "DELETE FROM push_targets WHERE account = $1",
    "DELETE FROM profiles WHERE account = $1",
    "DELETE FROM registration_pins WHERE account = $1",
    "DELETE FROM pending_links WHERE account = $1",
    "DELETE FROM abuse_states WHERE account = $1",
    "DELETE FROM abuse_reports WHERE reported = $1",
    // Reports it filed stay for their review; who filed them goes.
    "UPDATE abuse_reports SET reporter_account = 0, reporter_device = 0 WHERE reporter_account = $1",
    "DELETE FROM accounts WHERE id = $1",
];

#[async_trait]
impl ErasureStore for PgStore {
    async fn begin_erasure(&self, account: &Account, now_ms: u64) -> StoreResult<()> {
        let account = account.to_owned();
        self.on_task(move |this| async move {
            let account: &Account = &account;
            let shard = this.account_shard(account.id);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            // The same lock `register_device` takes: a registration either committed before (its
            // device is erased with the rest) or sees the mark.
            tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&sql(account.id)]).await.map_err(err)?;
            tx.execute(
                "INSERT INTO account_erasures (account, phone, started_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&sql(account.id), &account.phone, &sql(now_ms)],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)
        })
        .await
    }

    async fn erasures_pending(&self) -> StoreResult<Vec<PendingErasure>> {
        self.on_task(move |this| async move {
            let mut out = Vec::new();
            for shard in &this.inner.shards {
                let rows = query(shard, "SELECT account, phone, started_at_ms FROM account_erasures", &[]).await?;
                out.extend(rows.iter().map(|r| PendingErasure {
                    account: unsql(r.get(0)),
                    phone: r.get(1),
                    started_at_ms: unsql(r.get(2)),
                }));
            }
            Ok(out)
        })
        .await
    }

    async fn groups_pending_for(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        self.on_task(move |this| async move {
            let mut out = Vec::new();
            for shard in &this.inner.shards {
                let rows =
                    query(shard, "SELECT id FROM groups WHERE $1 = ANY(pending_accounts)", &[&sql(account)]).await?;
                out.extend(rows.iter().map(|r| unsql(r.get(0))));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_group(&self, group: GroupId) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let shard = this.account_shard(group);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            tx.execute("DELETE FROM group_members WHERE group_id = $1", &[&sql(group)]).await.map_err(err)?;
            tx.execute("DELETE FROM groups WHERE id = $1 AND cardinality(member_accounts) = 0", &[&sql(group)])
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)
        })
        .await
    }

    async fn erase_account(&self, erasure: &PendingErasure) -> StoreResult<()> {
        let erasure = erasure.to_owned();
        self.on_task(move |this| async move {
            let erasure: &PendingErasure = &erasure;
            let id = sql(erasure.account);
            for shard in &this.inner.shards {
                let err = |e| db_err(shard.idx, e);
                let mut client = shard.client().await?;
                let tx = client.transaction().await.map_err(err)?;
                for statement in ERASE_STATEMENTS {
                    tx.execute(*statement, &[&id]).await.map_err(err)?;
                }
                tx.commit().await.map_err(err)?;
            }
            let shard = this.account_shard(erasure.account);
            query(shard, "DELETE FROM account_erasures WHERE account = $1", &[&id]).await?;
            Ok(())
        })
        .await
    }
}
