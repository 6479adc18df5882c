//! The recent-message index on fjall: server msg id (u64 BE) → version ‖ sender ‖ kind ‖
//! conversation id ‖ time ‖ deleted ‖ expires at (0: never), buffered writes made durable by
//! the message's own synced commit. A fixed layout (every send writes one); version 1 records
//! (written before deletions were remembered) lack the flag and read as not deleted, version 2
//! records (before disappearing messages) lack the expiry. Records are written behind
//! (`staged.rs`): staged for the committer's next batch, which the send's append then fsyncs,
//! and written to fjall later in bulk; a disappearing message's key in the expiry index
//! (`expiry.rs`) is staged with it. Expiry and erasure settle what is logged before they scan.

use std::sync::Arc;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::staged::Staged;
use super::{space, unavailable, FjallStore};
use crate::{Conversation, MessageIndexStore, MessageRef, StoreError, StoreResult};

/// Layout without the deleted flag, still read.
const VERSION_1: u8 = 1;
const RECORD_1_LEN: usize = 1 + 8 + 1 + 8 + 8;
/// Layout with a trailing deleted flag (0 or 1), still read.
const VERSION_2: u8 = 2;
const RECORD_2_LEN: usize = RECORD_1_LEN + 1;
/// Current layout: version 2 plus the expiry (u64 BE, 0 when the message does not disappear).
const VERSION: u8 = 3;
const RECORD_LEN: usize = RECORD_2_LEN + 8;
/// Most records held in memory, pending and logged (see [`Staged`]); past this a send waits
/// for a settle.
const STAGED_REFS_MAX: usize = 65_536;
/// Settles of at least this many records write them as one table (`Staged::ingesting_from`):
/// under load (a settle is asked for at a quarter of [`STAGED_REFS_MAX`]), not the trickle of
/// an idle server's once-a-second settle, which would leave a table of a few records each time.
const INGEST_REFS_MIN: usize = STAGED_REFS_MAX / 8;

/// Index-side state of [`FjallStore`].
pub(super) struct MessageIndex {
    db: Database,
    refs: Keyspace,
    /// Records waiting for the committer's next batch; shared with the committer.
    staged: Arc<Staged>,
    /// The expiry index (`expiry.rs`), shared with the cold store.
    pub(super) expiry: Keyspace,
    /// Expiry index keys of disappearing messages' records, staged like the records.
    staged_expiry: Arc<Staged>,
}

impl MessageIndex {
    pub(super) fn open(db: &Database, expiry: Keyspace) -> StoreResult<Self> {
        let refs = db.keyspace("message_refs", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self {
            db: db.clone(),
            staged: Arc::new(Staged::new(space::MESSAGE_REFS, STAGED_REFS_MAX).ingesting_from(INGEST_REFS_MIN)),
            staged_expiry: Arc::new(Staged::new(space::EXPIRY, STAGED_REFS_MAX)),
            refs,
            expiry,
        })
    }

    /// The stagings the committer drains.
    pub(super) fn staged(&self) -> Vec<Arc<Staged>> {
        vec![Arc::clone(&self.staged), Arc::clone(&self.staged_expiry)]
    }

    /// The side keyspaces the log writes index records and their expiry keys to.
    pub(super) fn spaces(&self) -> [(u8, Keyspace); 2] {
        [(space::MESSAGE_REFS, self.refs.clone()), (space::EXPIRY, self.expiry.clone())]
    }
}

impl MessageIndex {
    /// The index records an erased account leaves: messages it sent or that were sent to it
    /// (a full scan: deletion is rare, and the index holds only the inbox TTL's worth).
    pub(super) fn erasures(&self, account: crate::AccountId) -> StoreResult<Vec<super::log::KvWrite>> {
        let one = self.staged.exclusive();
        self.staged.settle_holding(&one, &self.db, &self.refs)?;
        let mut writes = Vec::new();
        for guard in self.refs.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let r = decode(&v)?;
            if r.sender == account || r.conversation == Conversation::Direct(account) {
                writes.push(super::log::KvWrite { space: space::MESSAGE_REFS, key: k.to_vec(), value: None });
            }
        }
        Ok(writes)
    }
}

fn encode(r: MessageRef) -> [u8; RECORD_LEN] {
    let (kind, id) = match r.conversation {
        Conversation::Direct(a) => (0u8, a),
        Conversation::Group(g) => (1u8, g),
    };
    let mut v = [0; RECORD_LEN];
    v[0] = VERSION;
    v[1..9].copy_from_slice(&r.sender.to_be_bytes());
    v[9] = kind;
    v[10..18].copy_from_slice(&id.to_be_bytes());
    v[18..26].copy_from_slice(&r.sent_at_ms.to_be_bytes());
    v[26] = u8::from(r.deleted);
    v[27..35].copy_from_slice(&r.expires_at_ms.unwrap_or(0).to_be_bytes());
    v
}

fn decode(v: &[u8]) -> StoreResult<MessageRef> {
    let corrupt = || StoreError::Corrupt("message ref record".into());
    let flag = || match v[26] {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt()),
    };
    let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().expect("fixed width"));
    let (deleted, expires_at_ms) = match (v.first(), v.len()) {
        (Some(&VERSION_1), RECORD_1_LEN) => (false, None),
        (Some(&VERSION_2), RECORD_2_LEN) => (flag()?, None),
        (Some(&VERSION), RECORD_LEN) => (flag()?, Some(u(27..35)).filter(|&at| at != 0)),
        _ => return Err(corrupt()),
    };
    let conversation = match v[9] {
        0 => Conversation::Direct(u(10..18)),
        1 => Conversation::Group(u(10..18)),
        _ => return Err(corrupt()),
    };
    Ok(MessageRef { sender: u(1..9), conversation, sent_at_ms: u(18..26), deleted, expires_at_ms })
}

#[async_trait]
impl MessageIndexStore for FjallStore {
    async fn put_message_ref(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        let (key, record) = (server_msg_id.to_be_bytes(), encode(r));
        if let Some(at) = r.expires_at_ms {
            // First, so the key is never committed after its record: a record is never left
            // without the key that deletes it (a key without its record is harmless).
            let index_key = super::expiry::ref_key(at, server_msg_id);
            self.stage_or_write(&self.message_index.staged_expiry, &[(&index_key, &[])]).await?;
        }
        self.stage_or_write(&self.message_index.staged, &[(&key, &record)]).await
    }

    async fn message_ref(&self, server_msg_id: u64) -> StoreResult<Option<MessageRef>> {
        if let Some(record) = self.message_index.staged.get(&server_msg_id.to_be_bytes()) {
            return decode(&record).map(Some);
        }
        let value = self.message_index.refs.get(server_msg_id.to_be_bytes()).map_err(unavailable)?;
        value.map(|v| decode(&v)).transpose()
    }

    async fn expire_due_refs(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        let ix = Arc::clone(&self.message_index);
        super::blocking(move || ix.expire_due(now_ms, limit)).await
    }

    async fn expire_message_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        let ix = Arc::clone(&self.message_index);
        super::blocking(move || ix.expire_below(before_msg_id)).await
    }
}

impl MessageIndex {
    /// Blocking (a settle may write a table, and the deletions are as many as the expired
    /// records): deletes at most `limit` records whose disappearing-message expiry passed.
    fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        let (refs, keys) = (self.staged.exclusive(), self.staged_expiry.exclusive());
        self.staged.settle_holding(&refs, &self.db, &self.refs)?;
        self.staged_expiry.settle_holding(&keys, &self.db, &self.expiry)?;
        super::expiry::sweep(&self.db, &self.expiry, &self.refs, super::expiry::REF, now_ms, limit)
    }

    /// Blocking, like [`MessageIndex::expire_due`]: deletes the records of messages with ids
    /// below `before_msg_id` (past the inbox TTL).
    fn expire_below(&self, before_msg_id: u64) -> StoreResult<u64> {
        let before = before_msg_id.to_be_bytes();
        let one = self.staged.exclusive();
        self.staged.settle_holding(&one, &self.db, &self.refs)?;
        let staged = self.staged.remove(|key| key < &before[..]);
        let doomed = self
            .refs
            .range(..before_msg_id.to_be_bytes().to_vec())
            .map(|g| g.key().map_err(unavailable))
            .collect::<StoreResult<Vec<_>>>()?;
        for chunk in doomed.chunks(1024) {
            let mut batch = self.db.batch();
            for key in chunk {
                batch.remove(&self.refs, key.clone());
            }
            batch.durability(Some(PersistMode::Buffer)).commit().map_err(unavailable)?;
        }
        // A record may be both on disk and still staged (committed, not yet forgotten).
        let on_disk: std::collections::HashSet<&[u8]> = doomed.iter().map(|k| &k[..]).collect();
        let only_staged = staged.iter().filter(|key| !on_disk.contains(&key[..])).count();
        Ok((doomed.len() + only_staged) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};
    use crate::embedded::{FjallConfig, FjallStore};
    use crate::{Conversation, InboxStore, MessageIndexStore, MessageRef};

    #[tokio::test]
    async fn refs_round_trip_and_expire_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let a = MessageRef {
            expires_at_ms: None,
            sender: 1,
            conversation: Conversation::Direct(2),
            sent_at_ms: 5,
            deleted: false,
        };
        let b = MessageRef {
            expires_at_ms: None,
            sender: 3,
            conversation: Conversation::Group(9),
            sent_at_ms: 6,
            deleted: false,
        };
        store.put_message_ref(10, a).await.unwrap();
        store.put_message_ref(20, b).await.unwrap();
        assert_eq!(store.message_ref(10).await.unwrap(), Some(a));
        assert_eq!(store.message_ref(20).await.unwrap(), Some(b));
        assert_eq!(store.expire_message_refs(15).await.unwrap(), 1);
        assert_eq!(store.message_ref(10).await.unwrap(), None);
        assert_eq!(store.message_ref(20).await.unwrap(), Some(b));
    }

    #[tokio::test]
    async fn a_deletion_rewrites_the_ref_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let live = MessageRef {
            expires_at_ms: None,
            sender: 1,
            conversation: Conversation::Group(4),
            sent_at_ms: 7,
            deleted: false,
        };
        let gone = MessageRef { deleted: true, ..live };
        {
            let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
            store.put_message_ref(30, live).await.unwrap();
            store.put_message_ref(30, gone).await.unwrap();
            assert_eq!(store.message_ref(30).await.unwrap(), Some(gone));
            store.close().await.unwrap();
        }
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        assert_eq!(store.message_ref(30).await.unwrap(), Some(gone));
    }

    #[tokio::test]
    async fn a_ref_written_behind_is_in_its_keyspace_once_its_segment_is_retired() {
        // Proves the write-behind's invariant: a record held in memory after its batch was
        // logged is in fjall by the time a checkpoint deletes the segment that logged it, and
        // reads see it throughout (held, then on disk, then after a reopen).
        use crate::{AppendRequest, DeviceAddr, NewEntry};
        let dir = tempfile::tempdir().unwrap();
        let config = FjallConfig { log_segment_bytes_max: 4096, log_segments_live_max: 1, ..FjallConfig::default() };
        let r = MessageRef {
            expires_at_ms: Some(9_000),
            sender: 1,
            conversation: Conversation::Direct(2),
            sent_at_ms: 5,
            deleted: false,
        };
        {
            let store = FjallStore::open(dir.path(), config.clone()).unwrap();
            store.put_message_ref(7, r).await.unwrap();
            assert_eq!(store.message_ref(7).await.unwrap(), Some(r));
            for i in 0..20u64 {
                let entries = vec![NewEntry { device: DeviceAddr::new(2, 1), item: vec![b'x'; 512].into() }];
                let req = AppendRequest {
                    expires_at_ms: None,
                    dedup: None,
                    server_msg_id: 100 + i,
                    server_ts_ms: 1,
                    entries,
                };
                store.append(req).await.unwrap();
            }
            // (The checkpointer thread may have retired some already.)
            store.log.checkpoint().unwrap();
            assert_eq!(store.log.stats().segments, 1, "the segment that logged the ref is gone");
            let on_disk = store.message_index.refs.get(7u64.to_be_bytes()).unwrap();
            assert_eq!(on_disk.map(|v| decode(&v).unwrap()), Some(r));
            assert!(store.message_index.staged.get(&7u64.to_be_bytes()).is_none(), "settled values are forgotten");
            let index_key = crate::embedded::expiry::ref_key(9_000, 7);
            assert!(store.message_index.expiry.get(index_key).unwrap().is_some());
            assert_eq!(store.message_ref(7).await.unwrap(), Some(r));
        }
        let store = FjallStore::open(dir.path(), config).unwrap();
        assert_eq!(store.message_ref(7).await.unwrap(), Some(r));
        // The expiry sweep finds it (the index key was settled with it) and deletes it.
        assert_eq!(store.expire_due_refs(9_000, 10).await.unwrap(), 1);
        assert_eq!(store.message_ref(7).await.unwrap(), None);
    }

    #[tokio::test]
    async fn expiry_sees_refs_that_are_logged_but_not_yet_settled() {
        // Proves expiry settles before it scans: a record whose batch is durable but which is
        // still held in memory is found and deleted, not written back later.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let r = MessageRef {
            expires_at_ms: Some(50),
            sender: 1,
            conversation: Conversation::Group(3),
            sent_at_ms: 5,
            deleted: false,
        };
        for id in 1..=3 {
            store.put_message_ref(id, r).await.unwrap();
        }
        // An empty batch of its own logs everything staged before it.
        store.request(|reply| crate::embedded::committer::Command::Writes { writes: Vec::new(), reply }).await.unwrap();
        assert_eq!(store.expire_due_refs(50, 10).await.unwrap(), 3);
        assert_eq!(store.message_ref(2).await.unwrap(), None);
        store.log.settle().unwrap();
        assert_eq!(store.message_ref(2).await.unwrap(), None, "a settle does not bring it back");
        assert!(store.message_index.refs.get(2u64.to_be_bytes()).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_settle_under_load_is_one_table_that_deletions_and_expiry_still_see() {
        // Proves the records' ingestion end to end: a settle of `INGEST_REFS_MIN` records lands
        // as a table that survives a reopen, a later deletion mark (settled through the
        // memtable) replaces its record, and expiry by id removes records of the table.
        use crate::embedded::committer::Command;
        let dir = tempfile::tempdir().unwrap();
        let n = super::INGEST_REFS_MIN as u64 + 1;
        let r = |id: u64| MessageRef {
            expires_at_ms: None,
            sender: 1,
            conversation: Conversation::Direct(2),
            sent_at_ms: id,
            deleted: false,
        };
        {
            let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
            // Staged in one call, so that one batch logs them all and one settle takes them.
            let records: Vec<([u8; 8], [u8; super::RECORD_LEN])> =
                (1..=n).map(|id| (id.to_be_bytes(), encode(r(id)))).collect();
            let writes: Vec<(&[u8], &[u8])> = records.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            store.message_index.staged.stage(&writes).unwrap();
            store.request(|reply| Command::Writes { writes: Vec::new(), reply }).await.unwrap();
            store.log.settle().unwrap();
            assert!(store.message_index.refs.table_count() >= 1, "written as a table");
            assert!(store.message_index.staged.get(&n.to_be_bytes()).is_none(), "settled, so read from the table");
            assert_eq!(store.message_ref(n).await.unwrap(), Some(r(n)));
            store.put_message_ref(5, MessageRef { deleted: true, ..r(5) }).await.unwrap();
            store.request(|reply| Command::Writes { writes: Vec::new(), reply }).await.unwrap();
            store.log.settle().unwrap();
            assert!(store.message_ref(5).await.unwrap().unwrap().deleted, "the newer write wins over the table");
            assert_eq!(store.expire_message_refs(4).await.unwrap(), 3);
            assert_eq!(store.message_ref(3).await.unwrap(), None);
            store.close().await.unwrap();
        }
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        assert!(store.message_ref(5).await.unwrap().unwrap().deleted);
        assert_eq!(store.message_ref(n).await.unwrap(), Some(r(n)));
    }

    #[test]
    fn version_1_records_read_as_not_deleted() {
        // Golden bytes of a record written before deletions were remembered.
        let mut v1 = vec![1];
        v1.extend_from_slice(&5u64.to_be_bytes());
        v1.push(0);
        v1.extend_from_slice(&6u64.to_be_bytes());
        v1.extend_from_slice(&7u64.to_be_bytes());
        let r = decode(&v1).unwrap();
        assert_eq!(
            r,
            MessageRef {
                expires_at_ms: None,
                sender: 5,
                conversation: Conversation::Direct(6),
                sent_at_ms: 7,
                deleted: false
            }
        );
        // The current layout round-trips both flags and refuses a bad flag or a wrong length.
        for deleted in [false, true] {
            for expires_at_ms in [None, Some(86_400_007)] {
                let r = MessageRef { deleted, expires_at_ms, ..r };
                assert_eq!(decode(&encode(r)).unwrap(), r);
            }
        }
        // A version 2 record (before disappearing messages) never disappears.
        let mut v2 = encode(r)[..27].to_vec();
        v2[0] = 2;
        assert_eq!(decode(&v2).unwrap(), r);
        let mut bad = encode(r);
        bad[26] = 2;
        assert!(decode(&bad).is_err());
        assert!(decode(&v1[..20]).is_err());
        let mut v2_short = v1.clone();
        v2_short[0] = 2;
        assert!(decode(&v2_short).is_err());
    }
}
