//! The inbox log's cold store on fjall ([`FjallCold`]): device cursors, spilled entries, dedup
//! records of retired segments and the checkpoint, in the keyspaces the engine used before the
//! log existed (so an older data directory opens as "everything is cold"), plus the side
//! keyspaces the log's writes go to, where it settles the engine's held writes (`staged.rs`).
//! Batches are written without fsync; `persist` makes them durable (the log calls it at each
//! checkpoint and at shutdown).

use std::sync::Arc;

use fjall::{Keyspace, PersistMode};

use super::log::{Cold, ColdBatch, ColdCursor, ColdEntry};
use super::staged::Staged;
use super::{codec, expiry, keys, sweep, unavailable, Keyspaces};
use crate::{DedupKey, DeviceAddr, StoreError, StoreResult};

/// Meta key of the first live log segment.
const CHECKPOINT: &[u8] = b"log_checkpoint";
/// Acks of at most this many seqs delete by computed key; larger ones scan what exists (a
/// resume after a long absence must not write a tombstone per expired entry).
const DIRECT_DELETE_MAX: u64 = 4096;

/// The cold store: fjall keyspaces shared with the rest of the engine.
pub(super) struct FjallCold {
    ks: Keyspaces,
    /// The side keyspaces, by the space number the log's writes carry.
    spaces: Vec<(u8, Keyspace)>,
    /// The engine's write-behind stagings, whose logged values `settle` writes.
    held: Vec<Arc<Staged>>,
}

impl FjallCold {
    /// The cold store on `ks`, with `spaces` as the side keyspaces and `held` the stagings
    /// whose logged writes it settles into them.
    pub(super) fn new(ks: Keyspaces, spaces: Vec<(u8, Keyspace)>, held: Vec<Arc<Staged>>) -> Arc<Self> {
        Arc::new(Self { ks, spaces, held })
    }

    fn space(&self, n: u8) -> StoreResult<&Keyspace> {
        self.spaces
            .iter()
            .find(|(s, _)| *s == n)
            .map(|(_, k)| k)
            .ok_or_else(|| StoreError::Corrupt(format!("inbox log write to unknown keyspace {n}")))
    }
}

/// Value of the cursors keyspace: acked ‖ last ‖ cold_hi. Before the log, the value was
/// acked ‖ last with every entry in the inbox keyspace: cold up to `last`.
fn encode_cursor(c: ColdCursor) -> [u8; 24] {
    let mut v = [0; 24];
    v[..8].copy_from_slice(&c.acked.to_be_bytes());
    v[8..16].copy_from_slice(&c.last.to_be_bytes());
    v[16..].copy_from_slice(&c.cold_hi.to_be_bytes());
    v
}

fn decode_cursor(v: &[u8]) -> StoreResult<ColdCursor> {
    let word = |i: usize| -> StoreResult<u64> { Ok(u64::from_be_bytes(keys::array(&v[i..i + 8])?)) };
    match v.len() {
        16 => {
            let c = codec::decode_cursor(v)?;
            Ok(ColdCursor { acked: c.acked, last: c.last, cold_hi: c.last })
        }
        24 => Ok(ColdCursor { acked: word(0)?, last: word(8)?, cold_hi: word(16)? }),
        n => Err(StoreError::Corrupt(format!("cursor of {n} bytes"))),
    }
}

impl Cold for FjallCold {
    fn cursor(&self, device: DeviceAddr) -> StoreResult<Option<ColdCursor>> {
        self.ks.cursors.get(keys::device(device)).map_err(unavailable)?.map(|v| decode_cursor(&v)).transpose()
    }

    fn read(&self, device: DeviceAddr, from: u64, to: u64, limit: usize) -> StoreResult<Vec<ColdEntry>> {
        if from > to {
            return Ok(Vec::new());
        }
        self.ks
            .inbox
            .range(keys::inbox(device, from)..=keys::inbox(device, to))
            .take(limit)
            .map(|guard| {
                let (key, value) = guard.into_inner().map_err(unavailable)?;
                Ok(ColdEntry {
                    seq: keys::inbox_seq(&key)?,
                    ts_ms: codec::inbox_time(&value)?,
                    expires_at_ms: codec::inbox_expiry(&value)?,
                    item: codec::inbox_item(&value)?,
                })
            })
            .collect()
    }

    fn dedup(&self, key: &DedupKey) -> StoreResult<Option<(u64, u64)>> {
        self.ks.dedup.get(keys::dedup(key)).map_err(unavailable)?.map(|v| codec::decode_dedup(&v)).transpose()
    }

    fn write(&self, b: ColdBatch) -> StoreResult<()> {
        if b.is_empty() {
            return Ok(());
        }
        let mut batch = self.ks.db.batch();
        for (d, e) in &b.entries {
            batch.insert(
                &self.ks.inbox,
                keys::inbox(*d, e.seq),
                codec::encode_inbox(e.ts_ms, e.expires_at_ms, &e.item),
            );
            if let Some(at) = e.expires_at_ms {
                batch.insert(&self.ks.expiry, expiry::inbox_key(at, *d, e.seq), []);
            }
        }
        for &(d, from, to) in &b.deletes {
            if to - from < DIRECT_DELETE_MAX {
                // Each inbox key is written once (seqs are never reused), so a weak tombstone
                // and its entry annihilate in the next compaction.
                for seq in from..=to {
                    batch.remove_weak(&self.ks.inbox, keys::inbox(d, seq));
                }
            } else {
                for guard in self.ks.inbox.range(keys::inbox(d, from)..=keys::inbox(d, to)) {
                    batch.remove(&self.ks.inbox, guard.key().map_err(unavailable)?);
                }
            }
        }
        for &(d, c) in &b.cursors {
            batch.insert(&self.ks.cursors, keys::device(d), encode_cursor(c));
        }
        for (key, id, ts) in &b.dedup {
            batch.insert(&self.ks.dedup, keys::dedup(key), codec::encode_dedup(*id, *ts));
        }
        for w in &b.writes {
            let space = self.space(w.space)?;
            match &w.value {
                Some(v) => batch.insert(space, &w.key[..], &v[..]),
                None => batch.remove(space, &w.key[..]),
            }
        }
        for &d in &b.forget {
            batch.remove(&self.ks.cursors, keys::device(d));
            for ks in [&self.ks.inbox, &self.ks.dedup] {
                for guard in ks.prefix(keys::device(d)) {
                    batch.remove(ks, guard.key().map_err(unavailable)?);
                }
            }
        }
        if let Some(p) = b.checkpoint {
            batch.insert(&self.ks.meta, CHECKPOINT, p.to_be_bytes());
        }
        batch.durability(Some(PersistMode::Buffer)).commit().map_err(unavailable)
    }

    fn persist(&self) -> StoreResult<()> {
        self.ks.db.persist(PersistMode::SyncAll).map_err(unavailable)
    }

    fn settle(&self) -> StoreResult<()> {
        for staged in &self.held {
            let space = self.space(staged.space())?;
            staged.settle(&self.ks.db, space)?;
        }
        Ok(())
    }

    fn checkpoint(&self) -> StoreResult<u64> {
        match self.ks.meta.get(CHECKPOINT).map_err(unavailable)? {
            Some(v) => Ok(u64::from_be_bytes(keys::array(&v)?)),
            None => Ok(0),
        }
    }

    fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
        sweep::expire(&self.ks, older_than_ms, dedup_older_than_ms)
    }

    fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        expiry::sweep(&self.ks.db, &self.ks.expiry, &self.ks.inbox, expiry::INBOX, now_ms, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_of_the_engine_before_the_log_read_as_all_cold() {
        // Proves an older data directory's cursor (acked ‖ last) means every entry is cold.
        let old = codec::encode_cursor(crate::InboxCursor { acked: 3, last: 9 });
        assert_eq!(decode_cursor(&old).unwrap(), ColdCursor { acked: 3, last: 9, cold_hi: 9 });
        let c = ColdCursor { acked: 1, last: 5, cold_hi: 2 };
        assert_eq!(decode_cursor(&encode_cursor(c)).unwrap(), c);
    }
}
