//! The cluster-wide order of a group: a transaction-level advisory lock on the group's shard,
//! held from before the roster is read until the operation's inbox entries are durable (see
//! [`GroupOrderHold`] and ARCHITECTURE.md, "Groups"). Every node takes the same lock on the same
//! shard, so a send on one node and a membership change on another are ordered, and since the
//! next holder starts only after the previous one's entries committed, every inbox (whatever
//! its shard, whichever node's committer wrote it) gets them in that order.
//!
//! Why an advisory lock and not `SELECT … FOR UPDATE` on the group's row: a row lock writes
//! the row (a WAL record and a transaction id per send) and would collide with the
//! version-checked update of the same row, which runs in a transaction of its own; the
//! advisory lock lives in memory only, so a send's hold is a read-only transaction that costs
//! PostgreSQL no WAL and no transaction id. Why not a per-group sequence checked at commit: the
//! entries commit on the members' shards, which do not hold the group's sequence, so the check
//! would need a distributed transaction.
//!
//! A hold is one connection of the shard's `order` pool in an open transaction; dropping it
//! rolls that transaction back on a task (releasing the lock) and returns the connection. A
//! node that dies releases its holds with its connections; a node that hangs releases them
//! after `idle_in_transaction_session_timeout`; a caller waits at most `lock_timeout` for a
//! group another caller holds, then gets `Overloaded`.

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use super::error::db_err;
use super::shards::{sql, Shard, SHARD_BITS};
use crate::{GroupId, GroupOrderHold, StoreError, StoreResult};

/// First key of every group-order advisory lock ("grpo" in ASCII): keeps them apart from any
/// other advisory lock (the migration lock uses the one-key form).
const ORDER_LOCK_CLASS: i32 = 0x6772_706f;
/// Longest wait for a group another caller holds before `Overloaded`, ms.
const ORDER_WAIT_MS: u32 = 5_000;
/// Longest a hold may sit idle in its transaction before PostgreSQL ends its session (and so
/// releases the group), ms: bounds a hung node. A holder is idle while its append commits,
/// which the committer bounds to 10 s.
const ORDER_IDLE_MS: u32 = 30_000;
/// Suggested wait for a caller that waited `ORDER_WAIT_MS` in vain.
const BUSY_RETRY_AFTER_MS: u32 = 200;

/// A group's order, just taken.
pub(super) struct Held {
    /// Released when dropped.
    pub hold: GroupOrderHold,
    /// The group's outbox has rows: a change whose events may not be appended yet (a crash or
    /// a failed append after its record committed). The holder drives them before its own
    /// operation, so they keep their place in the group's order.
    pub outbox_left: bool,
}

/// Takes `group`'s order on `shard` (the group's shard), waiting while another caller holds it,
/// and looks for the group's leftover outbox rows in the same round trip.
pub(super) async fn hold(shard: &Shard, group: GroupId) -> StoreResult<Held> {
    let mut release = Release { client: Some(shard.order_client().await?), idle: false };
    // The group's sequence (its id without the shard bits): unique on its shard for 2^32
    // groups; a collision beyond that only makes two groups share a lock.
    let key = (group >> SHARD_BITS) as u32 as i32;
    // Read after the lock is granted, so a change that committed its row before this hold
    // is seen (each statement of a read-committed transaction takes a fresh snapshot).
    let statement = format!(
        "BEGIN; SET LOCAL lock_timeout = {ORDER_WAIT_MS}; \
         SET LOCAL idle_in_transaction_session_timeout = {ORDER_IDLE_MS}; \
         SELECT pg_advisory_xact_lock({ORDER_LOCK_CLASS}, {key}); \
         SELECT EXISTS (SELECT 1 FROM group_outbox WHERE group_id = {id})",
        id = sql(group)
    );
    let client = release.client.as_ref().ok_or(StoreError::Closed)?;
    match client.simple_query(&statement).await {
        Ok(messages) => {
            release.idle = true;
            let outbox_left = messages.iter().rev().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
                _ => None,
            });
            let outbox_left = outbox_left.ok_or_else(|| {
                StoreError::Unavailable(format!("shard {}: the outbox check returned no row", shard.idx))
            })?;
            Ok(Held { hold: GroupOrderHold::new(release), outbox_left })
        }
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            // The transaction is aborted, the connection idle: the rollback makes it reusable.
            release.idle = true;
            Err(StoreError::Overloaded { retry_after_ms: BUSY_RETRY_AFTER_MS })
        }
        Err(e) => Err(db_err(shard.idx, e)),
    }
}

/// Ends a hold's transaction when dropped.
struct Release {
    client: Option<Object>,
    /// The connection has no statement in flight: a `ROLLBACK` ends the transaction at once.
    /// Otherwise (a wait cut short, a failed connection) the connection is discarded, which
    /// ends the transaction on the server's side.
    idle: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if self.idle => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                });
            }
            _ => drop(Object::take(client)),
        }
    }
}
