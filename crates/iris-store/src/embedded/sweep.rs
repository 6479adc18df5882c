//! Expiry of the cold inbox entries and dedup records in fjall: full scans, run by the periodic
//! retention sweep through the inbox log (`log/`), which expires what it holds in memory itself.

use super::{codec, unavailable, Keyspaces};
use crate::StoreResult;

/// Deletes per write batch during expiry, so a large sweep does not build one huge batch.
const EXPIRE_CHUNK_LEN: usize = 1024;

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
