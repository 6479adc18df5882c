//! Write-behind staging of small side writes (message index records, group payloads and
//! receipt rows) that the committer puts into its next inbox-log batch as one `Writes` record,
//! instead of each being a write of its own.
//!
//! A caller stages before it queues the append that depends on it, so the write rides in that
//! append's batch or an earlier one, and the batch's fsync covers it; the log then applies it to
//! its fjall keyspace (and re-applies it at recovery). Readers look here first, so a staged value
//! is visible at once; the committer forgets a value only after the batch holding it is durable
//! and applied.

use foldhash::HashMap;
use std::sync::{Mutex, PoisonError};

use super::log::KvWrite;

/// A staged key or value.
pub(super) type Bytes = Box<[u8]>;

/// Writes of one keyspace waiting for the committer's next batch (the latest write of a key
/// wins, as an upsert on disk would).
pub(super) struct Staged {
    /// The side keyspace the writes go to (the log's space number).
    space: u8,
    records: Mutex<HashMap<Bytes, Bytes>>,
    /// Most keys staged; past this `stage` refuses and the caller writes directly, so a stalled
    /// committer cannot make the staging grow without bound.
    len_max: usize,
}

impl Staged {
    pub(super) fn new(space: u8, len_max: usize) -> Self {
        Self { space, records: Mutex::default(), len_max }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Bytes>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether nothing is staged.
    pub(super) fn is_empty(&self) -> bool {
        self.records().is_empty()
    }

    /// Stages all of `writes` or, when the staging is full, none (`None`). `Some(true)` when the
    /// staging was empty: the committer may be idle and should be woken.
    pub(super) fn stage(&self, writes: &[(&[u8], &[u8])]) -> Option<bool> {
        let mut records = self.records();
        let new_keys = writes.iter().filter(|(key, _)| !records.contains_key(*key)).count();
        if records.len() + new_keys > self.len_max {
            return None;
        }
        let was_empty = records.is_empty();
        for (key, value) in writes {
            records.insert((*key).into(), (*value).into());
        }
        Some(was_empty)
    }

    /// The staged value of `key`, if one is waiting.
    pub(super) fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.records().get(key).cloned()
    }

    /// Staged keys and values whose key matches `pick`, sorted by key (overlays on a scan).
    pub(super) fn matching(&self, pick: impl Fn(&[u8]) -> bool) -> Vec<(Bytes, Bytes)> {
        let mut found: Vec<_> =
            self.records().iter().filter(|(k, _)| pick(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        found.sort_unstable();
        found
    }

    /// Removes the staged writes whose key matches `pick` (expiry); returns their keys. A write
    /// already in a batch being committed still reaches disk, where the next expiry finds it.
    pub(super) fn remove(&self, pick: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        let mut records = self.records();
        let doomed: Vec<Bytes> = records.keys().filter(|k| pick(k)).cloned().collect();
        for key in &doomed {
            records.remove(key);
        }
        doomed
    }

    /// Adds every staged write to `writes`; returns them, for [`Staged::forget`] once the batch
    /// is committed.
    pub(super) fn write_into(&self, writes: &mut Vec<KvWrite>) -> Vec<(Bytes, Bytes)> {
        let staged: Vec<(Bytes, Bytes)> = self.records().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        writes.extend(staged.iter().map(|(key, value)| KvWrite {
            space: self.space,
            key: key.to_vec(),
            value: Some(value.to_vec()),
        }));
        staged
    }

    /// Drops the writes a committed batch made, unless a key was staged again meanwhile.
    pub(super) fn forget(&self, written: &[(Bytes, Bytes)]) {
        if written.is_empty() {
            return;
        }
        let mut records = self.records();
        for (key, value) in written {
            if records.get(key) == Some(value) {
                records.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Staged;

    #[test]
    fn staged_writes_are_read_back_until_a_committed_batch_forgets_them() {
        // Proves read-your-writes before the commit, the bound, and that a re-staged key survives.
        let staged = Staged::new(3, 2);
        assert_eq!(staged.stage(&[(b"a", b"1")]), Some(true));
        assert_eq!(staged.stage(&[(b"b", b"2")]), Some(false));
        assert_eq!(staged.stage(&[(b"c", b"3")]), None);
        let mut writes = Vec::new();
        let written = staged.write_into(&mut writes);
        assert_eq!(writes.len(), 2);
        assert!(writes.iter().all(|w| w.space == 3));
        staged.stage(&[(b"a", b"9")]).unwrap();
        staged.forget(&written);
        assert_eq!(staged.get(b"a").as_deref(), Some(&b"9"[..]));
        assert_eq!(staged.get(b"b"), None);
        assert_eq!(staged.remove(|k| k == b"a").len(), 1);
        assert!(staged.is_empty());
    }
}
