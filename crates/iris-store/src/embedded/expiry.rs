//! The expiry index of disappearing messages on fjall: one empty key per thing that disappears
//! at a given time, ordered by that time, so a sweep pass deletes what is due by a bounded range
//! read instead of a full scan. Keys: kind ‖ expires_at (u64 BE) ‖ what.
//! - [`INBOX`]: a cold inbox entry, device address ‖ seq (entries in the log's memory are swept
//!   there; one moved to the cold store gets its key in the same batch).
//! - [`REF`]: a message-index record, server msg id (staged with the record itself).
//!
//! A key may outlive what it names (an entry acked before it expired): the sweep deletes both,
//! and deleting what is already gone is harmless, since inbox seqs and message ids are never
//! reused.

use fjall::{Keyspace, PersistMode};

use super::{keys, unavailable};
use crate::{DeviceAddr, StoreResult};

/// Kind byte of a cold inbox entry's key.
pub(super) const INBOX: u8 = 0;
/// Kind byte of a message-index record's key.
pub(super) const REF: u8 = 1;

/// The key of a cold inbox entry that disappears at `at`.
pub(super) fn inbox_key(at: u64, device: DeviceAddr, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 + 20);
    k.push(INBOX);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(&keys::inbox(device, seq));
    k
}

/// The key of a message-index record that disappears at `at`.
pub(super) fn ref_key(at: u64, server_msg_id: u64) -> [u8; 17] {
    let mut k = [0; 17];
    k[0] = REF;
    k[1..9].copy_from_slice(&at.to_be_bytes());
    k[9..].copy_from_slice(&server_msg_id.to_be_bytes());
    k
}

/// Deletes at most `limit` index keys of `kind` due at or before `now_ms`, and with each the
/// key of `target` it names (the bytes after the time); returns how many. Not synced: a lost
/// deletion is redone by the next pass.
pub(super) fn sweep(
    db: &fjall::Database,
    index: &Keyspace,
    target: &Keyspace,
    kind: u8,
    now_ms: u64,
    limit: usize,
) -> StoreResult<u64> {
    // Exclusive end: the first key due after `now_ms`.
    let mut end = vec![kind];
    match now_ms.checked_add(1) {
        Some(next) => end.extend_from_slice(&next.to_be_bytes()),
        None => end[0] = kind + 1,
    }
    let due = index
        .range(vec![kind]..end)
        .take(limit)
        .map(|g| g.key().map_err(unavailable))
        .collect::<StoreResult<Vec<_>>>()?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut batch = db.batch();
    for key in &due {
        batch.remove(target, key[9..].to_vec());
        batch.remove(index, key.clone());
    }
    batch.durability(Some(PersistMode::Buffer)).commit().map_err(unavailable)?;
    Ok(due.len() as u64)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::embedded::{FjallConfig, FjallStore};
    use crate::{AppendRequest, DeviceAddr, InboxStore, NewEntry};

    #[tokio::test]
    async fn entries_moved_to_the_cold_store_are_indexed_and_swept_there() {
        // Proves: a checkpoint moving un-acked expiring entries out of the log's memory indexes
        // them in the cold store, and the sweep deletes them there by the index (no scan),
        // leaving the entries that do not expire.
        let dir = tempfile::tempdir().unwrap();
        let config = FjallConfig { log_segment_bytes_max: 4096, log_segments_live_max: 1, ..FjallConfig::default() };
        let store = FjallStore::open(dir.path(), config).unwrap();
        let bob = DeviceAddr::new(2, 1);
        for i in 0..40u64 {
            let expires_at_ms = (i % 2 == 0).then_some(5_000 + i);
            let item = Bytes::from(vec![b'x'; 512]);
            let req = AppendRequest {
                expires_at_ms,
                dedup: None,
                server_msg_id: i + 1,
                server_ts_ms: 1_000,
                entries: vec![NewEntry { device: bob, item }],
            };
            store.append(req).await.unwrap();
        }
        store.log.checkpoint().unwrap();
        let indexed = store.message_index.expiry.prefix([super::INBOX]).count();
        assert!(indexed >= 10, "the checkpoint moved expiring entries to the cold store ({indexed})");
        assert_eq!(store.expire_due(u64::MAX - 1, 1_000).await.unwrap(), 20);
        assert_eq!(store.message_index.expiry.prefix([super::INBOX]).count(), 0);
        let left = store.read(bob, 0, 100).await.unwrap();
        assert_eq!(left.len(), 20);
        assert!(left.iter().all(|e| e.expires_at_ms.is_none() && e.seq % 2 == 0));
    }
}
