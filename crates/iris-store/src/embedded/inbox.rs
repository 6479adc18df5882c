//! Inbox operations that need no sequencing with appends: reads, cursors and expiry. Everything
//! that assigns seqs or moves a cursor lives in the committer.

use super::{codec, keys, unavailable, Keyspaces};
use crate::{DeviceAddr, InboxCursor, StoreResult, StoredEntry};

/// Most entries one `read` returns, so a call never scans for long on an async thread.
pub(super) const READ_LIMIT_MAX: usize = 1024;
/// Deletes per write batch during expiry, so a large sweep does not build one huge batch.
const EXPIRE_CHUNK_LEN: usize = 1024;

/// Up to `limit` (at most [`READ_LIMIT_MAX`]) entries of `device` after `after_seq`. A range
/// scan that starts at `after_seq + 1`, so it never walks the tombstones of acked entries.
pub(super) fn read(ks: &Keyspaces, device: DeviceAddr, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEntry>> {
    let Some(first) = after_seq.checked_add(1) else {
        return Ok(Vec::new());
    };
    let range = keys::inbox(device, first)..=keys::inbox(device, u64::MAX);
    ks.inbox
        .range(range)
        .take(limit.min(READ_LIMIT_MAX))
        .map(|guard| {
            let (key, value) = guard.into_inner().map_err(unavailable)?;
            Ok(StoredEntry { seq: keys::inbox_seq(&key)?, item: codec::inbox_item(&value)? })
        })
        .collect()
}

/// The stored cursor: it is written in the same batch as the entries, so it is never behind.
pub(super) fn cursor(ks: &Keyspaces, device: DeviceAddr) -> StoreResult<InboxCursor> {
    match ks.cursors.get(keys::device(device)).map_err(unavailable)? {
        Some(value) => codec::decode_cursor(&value),
        None => Ok(InboxCursor::default()),
    }
}

/// Deletes inbox entries appended before `older_than_ms` and dedup records created before
/// `dedup_older_than_ms`, by full scans. Cursors are untouched, so seqs are never reused. Not
/// synced: a lost expiry is simply redone by the next sweep.
pub(super) fn expire(ks: &Keyspaces, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
    let inbox = sweep(ks, &ks.inbox, |value| Ok(codec::inbox_time(value)? < older_than_ms))?;
    let dedup = sweep(ks, &ks.dedup, |value| Ok(codec::decode_dedup(value)?.1 < dedup_older_than_ms))?;
    Ok(inbox + dedup)
}

/// Deletes every record of `keyspace` whose value matches `is_old`; returns how many.
fn sweep(ks: &Keyspaces, keyspace: &fjall::Keyspace, is_old: impl Fn(&[u8]) -> StoreResult<bool>) -> StoreResult<u64> {
    let mut removed = 0;
    let mut batch = ks.db.batch();
    for guard in keyspace.iter() {
        let (key, value) = guard.into_inner().map_err(unavailable)?;
        if !is_old(&value)? {
            continue;
        }
        batch.remove(keyspace, key);
        removed += 1;
        if batch.len() >= EXPIRE_CHUNK_LEN {
            std::mem::replace(&mut batch, ks.db.batch()).commit().map_err(unavailable)?;
        }
    }
    batch.commit().map_err(unavailable)?;
    Ok(removed)
}
