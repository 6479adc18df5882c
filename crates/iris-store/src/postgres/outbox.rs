//! The group outbox: how a group change and its inbox events, which live on different shards,
//! still never part ways. The change's transaction on the group's shard also stores the events
//! (`group_outbox`); once they are appended (deduplicated by group and version) the row is
//! deleted. Rows left by a crash or a failed append are re-driven by every node: once at start
//! and then periodically, only rows older than a grace period (so a change still in flight on
//! another node is normally left to it; if both drive it, dedup keeps one copy).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::error::db_err;
use super::shards::{shard_of_id, sql, sql_msg, unsql, unsql_msg};
use super::Inner;
use crate::{AppendRequest, DedupKey, DeviceAddr, Group, GroupId, NewEntry, StoreResult};

/// How often each node looks for leftover outbox rows.
const REDRIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How old a row must be before a periodic re-drive takes it.
const REDRIVE_GRACE_MS: i64 = 10_000;
/// Rows re-driven per shard per round (bounds one round's work).
const REDRIVE_BATCH_MAX: i64 = 100;
/// The device number of the synthetic sender of group events (real devices start at 1).
const GROUP_EVENTS_DEVICE: u32 = 0;

/// The events with a dedup key: the caller's, or one naming the group and version, whose dedup
/// row lands on the group's shard.
pub(super) fn with_dedup(group: &Group, mut events: AppendRequest) -> AppendRequest {
    if events.dedup.is_none() {
        events.dedup = Some(DedupKey {
            sender: DeviceAddr::new(group.id, GROUP_EVENTS_DEVICE),
            client_msg_id: format!("group-{}-v{}", group.id, group.version),
        });
    }
    events
}

/// Stores the events of `group`'s change in the change's transaction.
pub(super) async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    group: &Group,
    events: &AppendRequest,
) -> Result<(), tokio_postgres::Error> {
    let (dedup_account, dedup_device, client_msg_id) = match &events.dedup {
        Some(k) => (sql(k.sender.account), k.sender.device as i32, k.client_msg_id.as_str()),
        None => (0, 0, ""),
    };
    let accounts: Vec<i64> = events.entries.iter().map(|e| sql(e.device.account)).collect();
    let devices: Vec<i32> = events.entries.iter().map(|e| e.device.device as i32).collect();
    let items: Vec<&[u8]> = events.entries.iter().map(|e| &e.item[..]).collect();
    tx.execute(
        "INSERT INTO group_outbox (group_id, version, created_at_ms, dedup_account, dedup_device, client_msg_id,
             server_msg_id, server_ts_ms, accounts, devices, items)
         VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (group_id, version) DO NOTHING",
        &[
            &sql(group.id),
            &sql(group.version),
            &dedup_account,
            &dedup_device,
            &client_msg_id,
            &sql_msg(events.server_msg_id),
            &sql(events.server_ts_ms),
            &accounts,
            &devices,
            &items,
        ],
    )
    .await?;
    Ok(())
}

/// Forgets a change's outbox row once its events are durable (a lost delete is re-driven,
/// harmlessly: the events are deduplicated).
pub(super) async fn delete(inner: &Inner, group: GroupId, version: u64) -> StoreResult<()> {
    super::execute_unsynced(
        inner.shard(shard_of_id(group, inner.n_shards())),
        "DELETE FROM group_outbox WHERE group_id = $1 AND version = $2",
        &[&sql(group), &sql(version)],
    )
    .await?;
    Ok(())
}

/// The re-drive task of one store: runs until aborted (close or drop).
pub(super) async fn redrive_forever(inner: Arc<Inner>) {
    loop {
        if inner.check_open().is_err() {
            return;
        }
        match redrive_once(&inner, REDRIVE_GRACE_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "re-drove group outbox rows"),
            Err(e) => tracing::warn!(error = %e, "group outbox re-drive failed; will retry"),
        }
        tokio::time::sleep(REDRIVE_INTERVAL).await;
    }
}

/// Appends the events of outbox rows at least `grace_ms` old and deletes the rows; returns how
/// many were driven. A shard that fails is skipped until the next round.
pub(super) async fn redrive_once(inner: &Arc<Inner>, grace_ms: i64) -> StoreResult<usize> {
    let mut driven = 0;
    let mut first_error = None;
    for idx in 0..inner.n_shards() {
        match redrive_shard(inner, idx, grace_ms).await {
            Ok(n) => driven += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if driven == 0 => Err(e),
        _ => Ok(driven),
    }
}

async fn redrive_shard(inner: &Arc<Inner>, idx: usize, grace_ms: i64) -> StoreResult<usize> {
    let filter = "WHERE created_at_ms <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1
                  ORDER BY group_id, version LIMIT $2";
    drive_selected(inner, idx, filter, &[&grace_ms, &REDRIVE_BATCH_MAX]).await
}

/// Drives every outbox row of `group`, oldest version first, and returns how many. Called by
/// the holder of the group's order before its own operation (`hold_group_order`), so a change
/// whose events were left behind is announced before anything that follows it in the group.
pub(super) async fn redrive_group(inner: &Arc<Inner>, group: GroupId) -> StoreResult<usize> {
    let idx = shard_of_id(group, inner.n_shards());
    drive_selected(inner, idx, "WHERE group_id = $1 ORDER BY version", &[&sql(group)]).await
}

/// Drives, in order, the outbox rows of shard `idx` that `filter` (a `WHERE … ORDER BY …`
/// clause) selects; returns how many. Stops at the first that fails.
async fn drive_selected(
    inner: &Arc<Inner>,
    idx: usize,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<usize> {
    let rows = {
        let client = inner.shard(idx).client().await?;
        let statement = format!("SELECT {ROW_COLUMNS} FROM group_outbox {filter}");
        client.query(&statement, params).await.map_err(|e| db_err(idx, e))?
    };
    for row in &rows {
        drive(inner, row).await?;
    }
    Ok(rows.len())
}

/// The columns [`drive`] reads, in its order.
const ROW_COLUMNS: &str = "group_id, version, dedup_account, dedup_device, client_msg_id, server_msg_id, \
                           server_ts_ms, accounts, devices, items";

/// Appends one outbox row's events (deduplicated, so a row driven twice appends once) and
/// deletes the row once they are durable.
async fn drive(inner: &Arc<Inner>, row: &tokio_postgres::Row) -> StoreResult<()> {
    let (group, version) = (unsql(row.get(0)), unsql(row.get(1)));
    let client_msg_id: String = row.get(4);
    let dedup = (!client_msg_id.is_empty())
        .then(|| DedupKey { sender: DeviceAddr::new(unsql(row.get(2)), row.get::<_, i32>(3) as u32), client_msg_id });
    let accounts: Vec<i64> = row.get(7);
    let devices: Vec<i32> = row.get(8);
    let items: Vec<Vec<u8>> = row.get(9);
    let entries = accounts
        .iter()
        .zip(&devices)
        .zip(items)
        .map(|((&a, &d), item)| NewEntry { device: DeviceAddr::new(unsql(a), d as u32), item: Bytes::from(item) })
        .collect();
    let req = AppendRequest {
        expires_at_ms: None,
        dedup,
        server_msg_id: unsql_msg(row.get(5)),
        server_ts_ms: unsql(row.get(6)),
        entries,
    };
    inner.enqueue_append(req).await?.await?;
    delete(inner, group, version).await
}
