//! [`GroupStore`] on PostgreSQL. A group's record (members and pending joins as parallel
//! arrays), its member index and invite token live on the group's shard and change together in
//! one version-checked, synced transaction. A change that carries inbox events also writes an
//! outbox row in that transaction and then queues the events (see `outbox.rs` and the module
//! doc of `postgres`). Payloads and receipts live on the message's shard and are written
//! without waiting for the WAL flush, like fjall's buffered writes.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_postgres::Row;

use super::error::db_err;
use super::outbox;
use super::shards::{compose_id, sql, sql_msg, unsql};
use super::{execute_unsynced, query, PgStore};
use crate::{
    AccountId, AppendRequest, Group, GroupId, GroupMember, GroupOrderHold, GroupReceiptRow, GroupRole, GroupSettings,
    GroupStore, PendingAppend, PendingJoin, ReceiptProgress, StoreError, StoreResult,
};

const GROUP_COLUMNS: &str = "id, version, name, description, flags, created_at_ms, member_accounts, member_roles, \
                             member_joined_at_ms, member_joined_versions, pending_accounts, pending_requested_ms, \
                             invite_token";

fn role_code(r: GroupRole) -> i16 {
    match r {
        GroupRole::Member => 1,
        GroupRole::Admin => 2,
        GroupRole::Creator => 3,
    }
}

fn flags(s: GroupSettings) -> i16 {
    i16::from(s.admins_only_send) | i16::from(s.admins_only_edit) << 1 | i16::from(s.join_approval) << 2
}

fn group_of(row: &Row) -> StoreResult<Group> {
    let flags: i16 = row.get(4);
    let accounts: Vec<i64> = row.get(6);
    let roles: Vec<i16> = row.get(7);
    let joined_at: Vec<i64> = row.get(8);
    let joined_version: Vec<i64> = row.get(9);
    let pending_accounts: Vec<i64> = row.get(10);
    let pending_at: Vec<i64> = row.get(11);
    let id = unsql(row.get(0));
    if roles.len() != accounts.len() || joined_at.len() != accounts.len() || joined_version.len() != accounts.len() {
        return Err(StoreError::Corrupt(format!("group {id}: member arrays of different lengths")));
    }
    let mut members = Vec::with_capacity(accounts.len());
    for i in 0..accounts.len() {
        let role = match roles[i] {
            1 => GroupRole::Member,
            2 => GroupRole::Admin,
            3 => GroupRole::Creator,
            r => return Err(StoreError::Corrupt(format!("group {id}: role {r}"))),
        };
        members.push(GroupMember {
            account: unsql(accounts[i]),
            role,
            joined_at_ms: unsql(joined_at[i]),
            joined_version: unsql(joined_version[i]),
        });
    }
    let pending = pending_accounts
        .iter()
        .zip(&pending_at)
        .map(|(&a, &t)| PendingJoin { account: unsql(a), requested_at_ms: unsql(t) })
        .collect();
    Ok(Group {
        id,
        version: unsql(row.get(1)),
        name: row.get(2),
        description: row.get(3),
        settings: GroupSettings {
            admins_only_send: flags & 1 != 0,
            admins_only_edit: flags & 2 != 0,
            join_approval: flags & 4 != 0,
        },
        created_at_ms: unsql(row.get(5)),
        members,
        pending,
        invite_token: row.get(12),
    })
}

/// Writes `g` (insert or replace) and its member index in transaction `tx`.
async fn write_group(tx: &deadpool_postgres::Transaction<'_>, g: &Group) -> Result<(), tokio_postgres::Error> {
    let accounts: Vec<i64> = g.members.iter().map(|m| sql(m.account)).collect();
    let roles: Vec<i16> = g.members.iter().map(|m| role_code(m.role)).collect();
    let joined_at: Vec<i64> = g.members.iter().map(|m| sql(m.joined_at_ms)).collect();
    let joined_version: Vec<i64> = g.members.iter().map(|m| sql(m.joined_version)).collect();
    let pending_accounts: Vec<i64> = g.pending.iter().map(|p| sql(p.account)).collect();
    let pending_at: Vec<i64> = g.pending.iter().map(|p| sql(p.requested_at_ms)).collect();
    tx.execute(
        &format!(
            "INSERT INTO groups ({GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, name = excluded.name,
                 description = excluded.description, flags = excluded.flags, created_at_ms = excluded.created_at_ms,
                 member_accounts = excluded.member_accounts, member_roles = excluded.member_roles,
                 member_joined_at_ms = excluded.member_joined_at_ms,
                 member_joined_versions = excluded.member_joined_versions,
                 pending_accounts = excluded.pending_accounts, pending_requested_ms = excluded.pending_requested_ms,
                 invite_token = excluded.invite_token"
        ),
        &[
            &sql(g.id),
            &sql(g.version),
            &g.name,
            &g.description,
            &flags(g.settings),
            &sql(g.created_at_ms),
            &accounts,
            &roles,
            &joined_at,
            &joined_version,
            &pending_accounts,
            &pending_at,
            &g.invite_token,
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM group_members WHERE group_id = $1 AND account <> ALL($2::int8[])",
        &[&sql(g.id), &accounts],
    )
    .await?;
    tx.execute(
        "INSERT INTO group_members (account, group_id) SELECT a, $1 FROM unnest($2::int8[]) AS a ON CONFLICT DO NOTHING",
        &[&sql(g.id), &accounts],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// Replaces the group if its stored version is `group.version - 1`, with the outbox row of
    /// `events` in the same synced transaction. False (nothing written) if the version moved.
    async fn replace_group(&self, group: &Group, events: Option<&AppendRequest>) -> StoreResult<bool> {
        let shard = self.account_shard(group.id);
        let err = |e| db_err(shard.idx, e);
        let mut client = shard.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let row = tx
            .query_opt("SELECT version FROM groups WHERE id = $1 FOR UPDATE", &[&sql(group.id)])
            .await
            .map_err(err)?;
        match row {
            Some(row) if unsql(row.get(0)).checked_add(1) == Some(group.version) => {}
            // A creation: a reserved id, not stored yet.
            None if group.version == 1 => {}
            _ => return Ok(false),
        }
        write_group(&tx, group).await.map_err(err)?;
        if let Some(events) = events {
            outbox::insert(&tx, group, events).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }
}

/// Marks one member's receipt of a group message in one statement (one round trip, its own
/// transaction): locks the message's counters, then the member's row (the order every marker
/// takes), sets the row's delivered (and, when `$5`, read) time where still 0, and adds what
/// changed to the counters. The main query reads `counters` first, so that lock is taken first.
/// Columns: `sender`, `n_recipients`; `marked` (the member is a recipient); `d_new` / `r_new`
/// (this call delivered / read it first) and the counters after, NULL when nothing changed.
const MARK_GROUP_RECEIPT: &str = "
    WITH counters AS (
        SELECT sender, n_recipients FROM group_receipts
        WHERE server_msg_id = $1 AND group_id = $2 FOR UPDATE
    ), old AS (
        SELECT r.delivered_at_ms AS d0, r.read_at_ms AS r0 FROM group_receipt_rows r
        WHERE r.server_msg_id = $1 AND r.group_id = $2 AND r.account = $3
          AND EXISTS (SELECT 1 FROM counters)
        FOR UPDATE
    ), changed AS (
        UPDATE group_receipt_rows r SET
            delivered_at_ms = CASE WHEN old.d0 = 0 THEN $4::int8 ELSE old.d0 END,
            read_at_ms = CASE WHEN $5::bool AND old.r0 = 0 THEN $4::int8 ELSE old.r0 END
        FROM old
        WHERE r.server_msg_id = $1 AND r.group_id = $2 AND r.account = $3
          AND (old.d0 = 0 OR ($5::bool AND old.r0 = 0))
        RETURNING old.d0 = 0 AS d_new, ($5::bool AND old.r0 = 0) AS r_new
    ), counted AS (
        UPDATE group_receipts g SET
            n_delivered = g.n_delivered + CASE WHEN c.d_new THEN 1 ELSE 0 END,
            n_read = g.n_read + CASE WHEN c.r_new THEN 1 ELSE 0 END
        FROM changed c
        WHERE g.server_msg_id = $1 AND g.group_id = $2
        RETURNING c.d_new, c.r_new, g.n_delivered, g.n_read
    )
    SELECT counters.sender, counters.n_recipients, EXISTS (SELECT 1 FROM old) AS marked,
           counted.d_new, counted.r_new, counted.n_delivered, counted.n_read
    FROM counters LEFT JOIN counted ON true";

#[async_trait]
impl GroupStore for PgStore {
    async fn hold_group_order(&self, group: GroupId) -> StoreResult<Option<GroupOrderHold>> {
        self.on_task(move |this| async move {
            this.inner.check_open()?;
            let held = super::group_order::hold(this.account_shard(group), group).await?;
            if held.outbox_left {
                // A change's events were left behind (a crash or a failed append after its
                // record committed): they go first, so members see the change before what
                // follows it. Until they can be appended the group's operations fail.
                let driven = super::outbox::redrive_group(&this.inner, group).await?;
                tracing::info!(group, driven, "drove a group's leftover outbox rows before its next operation");
            }
            Ok(Some(held.hold))
        })
        .await
    }

    async fn reserve_group_id(&self) -> StoreResult<GroupId> {
        self.on_task(move |this| async move {
            let idx = this.inner.next_group_shard.fetch_add(1, Ordering::Relaxed) % this.inner.n_shards();
            // Not synced by itself: the creation's synced commit on this same shard (the id
            // names it) flushes the sequence's WAL too, and an id lost in a crash before that
            // was never used.
            let client = this.inner.shard(idx).client().await?;
            let seq: i64 =
                client.query_one("SELECT nextval('group_seq')", &[]).await.map_err(|e| db_err(idx, e))?.get(0);
            compose_id(seq, idx)
        })
        .await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        self.on_task(move |this| async move {
            let statement = format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = $1");
            let rows = query(this.account_shard(id), &statement, &[&sql(id)]).await?;
            rows.first().map(group_of).transpose()
        })
        .await
    }

    async fn update_group(&self, group: &Group) -> StoreResult<bool> {
        let group = group.to_owned();
        self.on_task(move |this| async move {
            let group: &Group = &group;
            this.replace_group(group, None).await
        })
        .await
    }

    async fn enqueue_group_update(&self, group: &Group, events: AppendRequest) -> StoreResult<Option<PendingAppend>> {
        self.inner.check_open()?;
        let events = outbox::with_dedup(group, events);
        let group = group.clone();
        self.on_task(move |this| async move {
            if !this.replace_group(&group, Some(&events)).await? {
                return Ok(None);
            }
            // The record and the outbox row are durable: from here on the events will be
            // appended, by this call or, after a crash or an error, by the re-drive.
            let pending = this.inner.enqueue_append(events).await?;
            let (inner, id, version) = (std::sync::Arc::clone(&this.inner), group.id, group.version);
            // The pending half takes a pooled connection too (the outbox row's cleanup), so it
            // runs on a task of its own as well (see `on_task`).
            let done = tokio::spawn(async move {
                let outcome = pending.await?;
                if let Err(e) = outbox::delete(&inner, id, version).await {
                    tracing::warn!(group = id, version, error = %e, "outbox row left for the re-drive");
                }
                Ok(outcome)
            });
            let pending: PendingAppend =
                Box::pin(
                    async move { done.await.map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))? },
                );
            Ok(Some(pending))
        })
        .await
    }

    async fn groups_of(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        self.on_task(move |this| async move {
            // The member index lives on each group's shard: ask them all.
            let mut ids = Vec::new();
            for shard in &this.inner.shards {
                let client = shard.client().await?;
                let rows = client
                    .query("SELECT group_id FROM group_members WHERE account = $1", &[&sql(account)])
                    .await
                    .map_err(|e| db_err(shard.idx, e))?;
                ids.extend(rows.iter().map(|r| unsql(r.get(0))));
            }
            ids.sort_unstable();
            Ok(ids)
        })
        .await
    }

    async fn group_by_invite(&self, token: &str) -> StoreResult<Option<GroupId>> {
        let token = token.to_owned();
        self.on_task(move |this| async move {
            let token: &str = &token;
            for shard in &this.inner.shards {
                let client = shard.client().await?;
                let row = client
                    .query_opt("SELECT id FROM groups WHERE invite_token = $1 LIMIT 1", &[&token])
                    .await
                    .map_err(|e| db_err(shard.idx, e))?;
                if let Some(row) = row {
                    return Ok(Some(unsql(row.get(0))));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn put_group_payload(&self, group: GroupId, server_msg_id: u64, payload: Bytes) -> StoreResult<()> {
        self.on_task(move |this| async move {
            execute_unsynced(
                this.msg_shard(server_msg_id),
                "INSERT INTO group_payloads (server_msg_id, group_id, payload) VALUES ($1, $2, $3)
                 ON CONFLICT (server_msg_id, group_id) DO UPDATE SET payload = excluded.payload",
                &[&sql_msg(server_msg_id), &sql(group), &&payload[..]],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn group_payload(&self, group: GroupId, server_msg_id: u64) -> StoreResult<Option<Bytes>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.msg_shard(server_msg_id),
                "SELECT payload FROM group_payloads WHERE server_msg_id = $1 AND group_id = $2",
                &[&sql_msg(server_msg_id), &sql(group)],
            )
            .await?;
            Ok(rows.first().map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
        })
        .await
    }

    async fn start_group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
        sender: AccountId,
        recipients: &[AccountId],
    ) -> StoreResult<()> {
        let recipients = recipients.to_owned();
        self.on_task(move |this| async move {
            let recipients: &[AccountId] = &recipients;
            let accounts: Vec<i64> = recipients.iter().map(|&a| sql(a)).collect();
            // One statement, so one round trip and atomic without an explicit transaction.
            execute_unsynced(
                this.msg_shard(server_msg_id),
                "WITH counters AS (
                     INSERT INTO group_receipts (server_msg_id, group_id, sender, n_recipients, n_delivered, n_read)
                     VALUES ($1, $2, $3, cardinality($4::int8[]), 0, 0)
                     ON CONFLICT (server_msg_id, group_id) DO UPDATE SET sender = excluded.sender,
                         n_recipients = excluded.n_recipients, n_delivered = 0, n_read = 0
                 )
                 INSERT INTO group_receipt_rows (server_msg_id, group_id, account, delivered_at_ms, read_at_ms)
                 SELECT $1, $2, a, 0, 0 FROM unnest($4::int8[]) AS a
                 ON CONFLICT (server_msg_id, group_id, account) DO UPDATE SET delivered_at_ms = 0, read_at_ms = 0",
                &[&sql_msg(server_msg_id), &sql(group), &sql(sender), &accounts],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn mark_group_receipt(
        &self,
        group: GroupId,
        server_msg_id: u64,
        account: AccountId,
        read: bool,
        now_ms: u64,
    ) -> StoreResult<Option<ReceiptProgress>> {
        self.on_task(move |this| async move {
            let shard = this.msg_shard(server_msg_id);
            let err = |e| db_err(shard.idx, e);
            let client = shard.unsynced_client().await?;
            let prepared = client.prepare_cached(MARK_GROUP_RECEIPT).await.map_err(err)?;
            let now = sql(now_ms);
            let rows = client
                .query(&prepared, &[&sql_msg(server_msg_id), &sql(group), &sql(account), &now, &read])
                .await
                .map_err(err)?;
            // No row: the message is not tracked. A row without `marked`: `account` is not one
            // of its recipients.
            let Some(row) = rows.first() else { return Ok(None) };
            if !row.get::<_, bool>("marked") {
                return Ok(None);
            }
            let sender = unsql(row.get("sender"));
            let n: i64 = row.get("n_recipients");
            let (d_new, r_new): (Option<bool>, Option<bool>) = (row.get("d_new"), row.get("r_new"));
            let (n_delivered, n_read): (Option<i64>, Option<i64>) = (row.get("n_delivered"), row.get("n_read"));
            Ok(Some(ReceiptProgress {
                sender,
                all_delivered_now: d_new == Some(true) && n_delivered == Some(n),
                all_read_now: r_new == Some(true) && n_read == Some(n),
            }))
        })
        .await
    }

    async fn group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
    ) -> StoreResult<Option<(AccountId, Vec<GroupReceiptRow>)>> {
        self.on_task(move |this| async move {
            let shard = this.msg_shard(server_msg_id);
            let err = |e| db_err(shard.idx, e);
            let client = shard.client().await?;
            let (msg, group) = (sql_msg(server_msg_id), sql(group));
            let Some(counters) = client
                .query_opt(
                    "SELECT sender FROM group_receipts WHERE server_msg_id = $1 AND group_id = $2",
                    &[&msg, &group],
                )
                .await
                .map_err(err)?
            else {
                return Ok(None);
            };
            let rows = client
                .query(
                    "SELECT account, delivered_at_ms, read_at_ms FROM group_receipt_rows
                     WHERE server_msg_id = $1 AND group_id = $2",
                    &[&msg, &group],
                )
                .await
                .map_err(err)?;
            let mut rows: Vec<GroupReceiptRow> = rows
                .iter()
                .map(|r| GroupReceiptRow {
                    account: unsql(r.get(0)),
                    delivered_at_ms: unsql(r.get(1)),
                    read_at_ms: unsql(r.get(2)),
                })
                .collect();
            rows.sort_unstable_by_key(|r| r.account);
            Ok(Some((unsql(counters.get(0)), rows)))
        })
        .await
    }

    async fn expire_group_messages(&self, before_msg_id: u64) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            let before = sql_msg(before_msg_id);
            let mut removed = 0;
            for shard in &this.inner.shards {
                let client = shard.client().await?;
                for table in ["group_payloads", "group_receipts", "group_receipt_rows"] {
                    removed += client
                        .execute(&format!("DELETE FROM {table} WHERE server_msg_id < $1"), &[&before])
                        .await
                        .map_err(|e| db_err(shard.idx, e))?;
                }
            }
            Ok(removed)
        })
        .await
    }
}
