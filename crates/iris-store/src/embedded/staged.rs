//! Write-behind of small side writes (message index records, their expiry keys, group
//! payloads and receipt rows): staged in memory, put into the committer's next inbox-log batch
//! as one held `Writes` record, and written to their fjall keyspace later, in bulk
//! ([`Staged::settle`]), instead of each being a sorted insert between a batch's fsync and its
//! answers.
//!
//! A value lives here in three states, each a map swapped whole from one to the next, so a
//! value is never copied or looked up again on its way. **Pending**: staged, not yet in the
//! log; the committer takes the whole map into its next batch (**in flight**). **Logged**:
//! durable in the log, not yet in fjall; a settle takes the whole map, writes it to fjall
//! (**settling**) and drops it. A caller stages before it queues the append that depends on
//! it, so the write rides in that append's batch or an earlier one, and the batch's fsync
//! covers it. Readers look here first (newest state first, then the disk), so a value is
//! visible from the moment it is staged. Recovery replays logged values from the log's live
//! segments; a checkpoint settles before it retires a segment, so none is lost between the two.
//! Memory is bounded by `len_max` values in all states; the committer asks for a settle once a
//! quarter of that is logged.

use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::log::KvWrite;
use crate::StoreResult;

/// A staged key or value.
pub(super) type Bytes = Box<[u8]>;

/// Staged values by key.
pub(super) type Values = HashMap<Bytes, Bytes>;

/// How a settle writes a keyspace's values: as they are in one batch (the default), as one
/// table when many ([`Staged::ingesting_from`]), or its own way (group receipt rows folded
/// into one record per message, `receipt_blocks.rs`).
type SettleWrite = Box<dyn Fn(&fjall::Database, &fjall::Keyspace, &Values) -> StoreResult<()> + Send + Sync>;

/// Values of one keyspace waiting for the log or for fjall (the latest write of a key wins, as
/// an upsert on disk would).
pub(super) struct Staged {
    /// The side keyspace the writes go to (the log's space number).
    space: u8,
    records: Mutex<Records>,
    /// Held by a settle from taking the logged values until it has dropped them, and by
    /// expiry while it deletes: an expired key is never written back by a settle in flight.
    settling: Mutex<()>,
    /// Most values held in all states; past this `stage` refuses, so a stalled committer or
    /// disk cannot make the staging grow without bound.
    len_max: usize,
    /// Writes a settle's values into the keyspace.
    settle_write: SettleWrite,
}

/// The states of [`Staged`]'s values, newest first.
#[derive(Default)]
struct Records {
    pending: Values,
    in_flight: Values,
    logged: Values,
    /// Shared with the settle writing it, so readers still find its values meanwhile.
    settling: Arc<Values>,
}

impl Records {
    fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.pending
            .get(key)
            .or_else(|| self.in_flight.get(key))
            .or_else(|| self.logged.get(key))
            .or_else(|| self.settling.get(key))
    }

    fn len(&self) -> usize {
        self.pending.len() + self.in_flight.len() + self.logged.len() + self.settling.len()
    }
}

/// Moves every value of `from` into `into`, except where `into` holds a newer value of the key.
fn merge_older(into: &mut Values, from: Values) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (key, value) in from {
        into.entry(key).or_insert(value);
    }
}

impl Staged {
    pub(super) fn new(space: u8, len_max: usize) -> Self {
        Self {
            space,
            records: Mutex::default(),
            settling: Mutex::default(),
            len_max,
            settle_write: Box::new(insert_all),
        }
    }

    /// This staging, settled by `write` instead of as the values are: the keyspace's readers
    /// must read what `write` leaves as they would the values themselves.
    pub(super) fn settled_by(
        self,
        write: impl Fn(&fjall::Database, &fjall::Keyspace, &Values) -> StoreResult<()> + Send + Sync + 'static,
    ) -> Self {
        Self { settle_write: Box::new(write), ..self }
    }

    /// This staging, settling `ingest_min` values or more as one new sorted table (fjall's
    /// ingestion) instead of inserting each into the keyspace's memtable: for keys written
    /// once each and increasing (message ids), where a memtable insert is a skiplist search
    /// through everything written since the last flush, and the table is what a flush would
    /// write anyway.
    pub(super) fn ingesting_from(self, ingest_min: usize) -> Self {
        self.settled_by(move |db, space, values| match values.len() >= ingest_min {
            true => ingest_all(space, values),
            false => insert_all(db, space, values),
        })
    }

    /// The log's space number of the keyspace these writes go to.
    pub(super) fn space(&self) -> u8 {
        self.space
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps settles out while the caller deletes keys of this keyspace (expiry).
    pub(super) fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.settling.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether values wait for the log.
    pub(super) fn has_pending(&self) -> bool {
        !self.records().pending.is_empty()
    }

    /// Whether enough values are logged that a settle should run soon.
    pub(super) fn wants_settle(&self) -> bool {
        self.records().logged.len() >= self.len_max / 4
    }

    /// Stages all of `writes` or, when the staging is full, none (`None`). `Some(true)` when
    /// nothing was pending: the committer may be idle and should be woken.
    pub(super) fn stage(&self, writes: &[(&[u8], &[u8])]) -> Option<bool> {
        let mut records = self.records();
        let new_keys = writes.iter().filter(|(key, _)| !records.pending.contains_key(*key)).count();
        if records.len() + new_keys > self.len_max {
            return None;
        }
        let was_idle = records.pending.is_empty();
        for (key, value) in writes {
            records.pending.insert((*key).into(), (*value).into());
        }
        Some(was_idle)
    }

    /// The staged value of `key`, if one is waiting.
    pub(super) fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.records().get(key).cloned()
    }

    /// Staged keys and values whose key matches `pick`, sorted by key (overlays on a scan).
    pub(super) fn matching(&self, pick: impl Fn(&[u8]) -> bool) -> Vec<(Bytes, Bytes)> {
        let records = self.records();
        let mut found: std::collections::BTreeMap<&Bytes, &Bytes> = std::collections::BTreeMap::new();
        // Oldest first, so that newer states replace older values.
        for values in [&*records.settling, &records.logged, &records.in_flight, &records.pending] {
            found.extend(values.iter().filter(|(k, _)| pick(k)));
        }
        found.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Removes the values whose key matches `pick` (expiry; hold [`Staged::exclusive`]);
    /// returns their keys. A value in a batch being committed is still logged, and reaches
    /// fjall only through recovery, where the next expiry finds it.
    pub(super) fn remove(&self, pick: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        let mut guard = self.records();
        let records = &mut *guard;
        let mut doomed = Vec::new();
        for values in [&mut records.pending, &mut records.in_flight, &mut records.logged] {
            let keys: Vec<Bytes> = values.keys().filter(|k| pick(k)).cloned().collect();
            for key in &keys {
                values.remove(key);
            }
            doomed.extend(keys);
        }
        doomed.sort_unstable();
        doomed.dedup();
        doomed
    }

    /// Takes every pending value into the committer's batch (adding it to `writes`); call
    /// [`Staged::logged`] once the batch is durable, or [`Staged::not_logged`] if it failed.
    pub(super) fn write_into(&self, writes: &mut Vec<KvWrite>) {
        let mut guard = self.records();
        let records = &mut *guard;
        writes.extend(records.pending.iter().map(|(key, value)| KvWrite {
            space: self.space,
            key: key.to_vec(),
            value: Some(value.to_vec()),
        }));
        if records.in_flight.is_empty() {
            // A swap, so each map keeps the capacity it grew to (no rehashing every batch).
            std::mem::swap(&mut records.pending, &mut records.in_flight);
        } else {
            let older = std::mem::replace(&mut records.in_flight, std::mem::take(&mut records.pending));
            merge_older(&mut records.in_flight, older);
        }
    }

    /// The batch holding the in-flight values is durable: they are logged (replacing older
    /// logged values of their keys).
    pub(super) fn logged(&self) {
        let mut guard = self.records();
        let records = &mut *guard;
        records.logged.extend(records.in_flight.drain());
    }

    /// The batch holding the in-flight values failed: they wait for the next one.
    pub(super) fn not_logged(&self) {
        let mut guard = self.records();
        let records = &mut *guard;
        for (key, value) in records.in_flight.drain() {
            records.pending.entry(key).or_insert(value);
        }
    }

    /// Writes every logged value into `space` (one unsynced batch: the log holds them until
    /// the next checkpoint persists the keyspaces), then drops them. Returns how many.
    pub(super) fn settle(&self, db: &fjall::Database, space: &fjall::Keyspace) -> StoreResult<usize> {
        let one = self.exclusive();
        self.settle_holding(&one, db, space)
    }

    /// [`Staged::settle`] for a caller already holding [`Staged::exclusive`] (expiry and
    /// erasure settle first, so that what they scan on disk is everything logged).
    pub(super) fn settle_holding(
        &self,
        exclusive: &MutexGuard<'_, ()>,
        db: &fjall::Database,
        space: &fjall::Keyspace,
    ) -> StoreResult<usize> {
        self.settle_with(exclusive, |values| (self.settle_write)(db, space, values))
    }

    /// Hands every logged value to `write`, then drops them (or, if it fails, keeps them).
    fn settle_with(
        &self,
        _exclusive: &MutexGuard<'_, ()>,
        write: impl FnOnce(&Values) -> StoreResult<()>,
    ) -> StoreResult<usize> {
        let settling = {
            let mut records = self.records();
            if records.logged.is_empty() {
                return Ok(0);
            }
            let settling = Arc::new(std::mem::take(&mut records.logged));
            records.settling = Arc::clone(&settling);
            settling
        };
        let (written, n) = (write(&settling), settling.len());
        let mut records = self.records();
        records.settling = Arc::default();
        let mut settled = Arc::try_unwrap(settling).unwrap_or_else(|shared| (*shared).clone());
        if written.is_err() {
            // Back to logged, under anything logged since.
            merge_older(&mut records.logged, settled);
        } else {
            // The settled map becomes the logged one, keeping its capacity: the next settle's
            // worth of values is inserted without growing a map from nothing.
            settled.clear();
            settled.extend(records.logged.drain());
            records.logged = settled;
        }
        written.map(|()| n)
    }
}

/// Writes `values` into `space` in one unsynced batch.
fn insert_all(db: &fjall::Database, space: &fjall::Keyspace, values: &Values) -> StoreResult<()> {
    let mut batch = db.batch();
    for (key, value) in values {
        batch.insert(space, &key[..], &value[..]);
    }
    batch.durability(Some(fjall::PersistMode::Buffer)).commit().map_err(super::unavailable)
}

/// Writes `values` into `space` as one new table, in key order. No memtable insert and no
/// journal: the ingestion syncs the table and the keyspace's version before it returns, and
/// the table's values are newer than everything written to the keyspace before.
fn ingest_all(space: &fjall::Keyspace, values: &Values) -> StoreResult<()> {
    let mut sorted: Vec<(&Bytes, &Bytes)> = values.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut ingestion = space.start_ingestion().map_err(super::unavailable)?;
    for (key, value) in sorted {
        ingestion.write(&key[..], &value[..]).map_err(super::unavailable)?;
    }
    ingestion.finish().map_err(super::unavailable)
}

#[cfg(test)]
mod tests {
    use super::Staged;

    fn settled(staged: &Staged) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        staged
            .settle_with(&staged.exclusive(), |values| {
                out.extend(values.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
                Ok(())
            })
            .unwrap();
        out.sort();
        out
    }

    #[test]
    fn values_are_read_back_in_every_state_and_the_newest_wins() {
        // Proves read-your-writes pending, in flight and logged, the bound, and that neither a
        // commit nor a settle lets an older value of a key replace a newer one.
        let staged = Staged::new(3, 3);
        assert_eq!(staged.stage(&[(b"a", b"1")]), Some(true));
        assert_eq!(staged.stage(&[(b"b", b"2")]), Some(false));
        let mut writes = Vec::new();
        staged.write_into(&mut writes);
        assert_eq!(writes.len(), 2);
        assert!(writes.iter().all(|w| w.space == 3));
        assert!(!staged.has_pending());
        assert_eq!(staged.get(b"a").as_deref(), Some(&b"1"[..]), "in flight");
        staged.stage(&[(b"a", b"9")]).unwrap();
        staged.logged();
        // "a" was staged again: its newer value is pending, the logged one is older.
        assert!(staged.has_pending());
        assert_eq!(staged.get(b"a").as_deref(), Some(&b"9"[..]));
        assert_eq!(staged.get(b"b").as_deref(), Some(&b"2"[..]));
        // Every state counts against the bound (a pending and a logged "a" count twice).
        assert_eq!(staged.stage(&[(b"c", b"3")]), None);
        // A settle writes the logged values and drops them; the pending "a" stays.
        assert_eq!(settled(&staged), vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(staged.get(b"b"), None);
        assert_eq!(staged.get(b"a").as_deref(), Some(&b"9"[..]));
        // The newer "a" is logged over nothing and settles last.
        staged.write_into(&mut Vec::new());
        staged.logged();
        assert_eq!(settled(&staged), vec![(b"a".to_vec(), b"9".to_vec())]);
        assert_eq!(staged.get(b"a"), None);
    }

    #[test]
    fn a_large_settle_is_one_new_table_and_the_newest_value_still_wins() {
        // Proves the ingestion path: a settle of at least `ingest_min` values lands as one
        // table without touching the memtable, its values replace older ones written through
        // the memtable, and a later small settle's values replace the ingested ones.
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let space = db.keyspace("t", fjall::KeyspaceCreateOptions::default).unwrap();
        let staged = Staged::new(3, 64).ingesting_from(4);
        let settle = |pairs: &[(&[u8], &[u8])]| {
            staged.stage(pairs).unwrap();
            staged.write_into(&mut Vec::new());
            staged.logged();
            staged.settle(&db, &space).unwrap()
        };
        let get = |k: &[u8]| space.get(k).unwrap().map(|v| v.to_vec());
        assert_eq!(settle(&[(b"a", b"1")]), 1);
        assert_eq!((space.table_count(), get(b"a")), (0, Some(b"1".to_vec())), "below the bound: the memtable");
        assert_eq!(settle(&[(b"d", b"4"), (b"a", b"2"), (b"c", b"3"), (b"b", b"2")]), 4);
        assert_eq!(get(b"a"), Some(b"2".to_vec()), "the ingested value is the newer one");
        assert_eq!((get(b"b"), get(b"c"), get(b"d")), (Some(b"2".to_vec()), Some(b"3".to_vec()), Some(b"4".to_vec())));
        assert!(space.table_count() >= 1, "written as a table");
        settle(&[(b"c", b"9")]);
        assert_eq!(get(b"c"), Some(b"9".to_vec()), "a later insert replaces an ingested value");
        drop((space, db));
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let space = db.keyspace("t", fjall::KeyspaceCreateOptions::default).unwrap();
        assert_eq!(space.get(b"d").unwrap().as_deref(), Some(&b"4"[..]), "the table survives a reopen");
    }

    #[test]
    fn a_newer_logged_value_replaces_an_older_one_before_the_settle() {
        let staged = Staged::new(3, 8);
        for v in [b"1", b"2"] {
            staged.stage(&[(b"k", v)]).unwrap();
            staged.write_into(&mut Vec::new());
            staged.logged();
        }
        assert_eq!(settled(&staged), vec![(b"k".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn a_failed_batch_or_settle_keeps_every_value() {
        let staged = Staged::new(3, 8);
        staged.stage(&[(b"a", b"1")]).unwrap();
        staged.write_into(&mut Vec::new());
        staged.stage(&[(b"a", b"2"), (b"b", b"1")]).unwrap();
        staged.not_logged();
        // The failed batch's "a" is older than the one staged since: the newer one stays.
        let mut writes = Vec::new();
        staged.write_into(&mut writes);
        writes.sort_by(|x, y| x.key.cmp(&y.key));
        let values: Vec<_> = writes.iter().map(|w| w.value.clone().unwrap()).collect();
        assert_eq!(values, vec![b"2".to_vec(), b"1".to_vec()]);
        staged.logged();
        let failed = staged.settle_with(&staged.exclusive(), |_| Err(crate::StoreError::Unavailable("disk".into())));
        assert!(failed.is_err());
        assert_eq!(staged.get(b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(staged.settle_with(&staged.exclusive(), |_| Ok(())).unwrap(), 2);
        assert_eq!(staged.get(b"a"), None);
        assert_eq!(staged.remove(|_| true).len(), 0);
    }
}
