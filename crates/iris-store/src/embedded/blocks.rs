//! Block lists on fjall: one empty record per (blocker ‖ blocked) pair, written with fdatasync.
//! Every send asks whether its recipient blocks its sender, so answers are kept in
//! [`ReadCache`]s that writes (and erasure) invalidate: first whether the recipient has blocked
//! anyone at all (one entry per account, and most accounts have not), then, only for those
//! who have, the pair's answer (one entry per pair of accounts: many more, and each lookup a
//! likely cache miss).

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::read_cache::ReadCache;
use super::{has_prefix, keys, unavailable, FjallStore};
use crate::{AccountId, BlockStore, StoreResult};

/// Block-side state of [`FjallStore`].
pub(super) struct Blocks {
    db: Database,
    /// Blocker ‖ blocked (u64 BE each) → empty.
    pairs: Keyspace,
    /// Answers of `is_blocked` by key, asked only for blockers.
    cache: ReadCache<[u8; 16], bool>,
    /// Whether each account has any pair as the blocker.
    blockers: ReadCache<AccountId, bool>,
}

impl Blocks {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let pairs = db.keyspace("blocks", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self { db: db.clone(), pairs, cache: ReadCache::new(), blockers: ReadCache::new() })
    }

    /// Forgets every cached answer: call after deleting pairs other than through
    /// `set_blocked` (account erasure).
    pub(super) fn forget_cached(&self) {
        self.cache.clear();
        self.blockers.clear();
    }

    /// Whether `blocker` has blocked anyone (a read of its first pair, if any).
    fn has_blocked_anyone(&self, blocker: AccountId) -> StoreResult<bool> {
        self.blockers.get_or_read(blocker, |&a| has_prefix(&self.pairs, &keys::account(a)))
    }
}

fn key(blocker: AccountId, blocked: AccountId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&blocker.to_be_bytes());
    k[8..].copy_from_slice(&blocked.to_be_bytes());
    k
}

#[async_trait]
impl BlockStore for FjallStore {
    async fn set_blocked(&self, blocker: AccountId, blocked: AccountId, on: bool) -> StoreResult<()> {
        let b = &self.blocks;
        let mut batch = b.db.batch();
        if on {
            batch.insert(&b.pairs, key(blocker, blocked), []);
        } else {
            batch.remove(&b.pairs, key(blocker, blocked));
        }
        let committed = batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable);
        // Even after a failed commit: the pair's state is then unknown.
        b.cache.invalidate(&key(blocker, blocked));
        b.blockers.invalidate(&blocker);
        committed
    }

    async fn is_blocked(&self, blocker: AccountId, blocked: AccountId) -> StoreResult<bool> {
        if !self.blocks.has_blocked_anyone(blocker)? {
            return Ok(false);
        }
        let pairs = &self.blocks.pairs;
        self.blocks.cache.get_or_read(key(blocker, blocked), |k| pairs.contains_key(k).map_err(unavailable))
    }

    async fn blocked_by(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
        let mut ids = Vec::new();
        for guard in self.blocks.pairs.prefix(blocker.to_be_bytes()) {
            let k = guard.key().map_err(unavailable)?;
            let tail: [u8; 8] = k.get(8..16).and_then(|t| t.try_into().ok()).unwrap_or_default();
            ids.push(u64::from_be_bytes(tail));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use crate::embedded::{FjallConfig, FjallStore};
    use crate::BlockStore;

    #[tokio::test]
    async fn blocks_are_pairs_that_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
            store.set_blocked(1, 2, true).await.unwrap();
            store.set_blocked(1, 3, true).await.unwrap();
            store.set_blocked(1, 3, false).await.unwrap();
            store.set_blocked(2, 1, true).await.unwrap();
        }
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        assert!(store.is_blocked(1, 2).await.unwrap());
        assert!(!store.is_blocked(1, 3).await.unwrap());
        assert!(store.is_blocked(2, 1).await.unwrap());
        assert_eq!(store.blocked_by(1).await.unwrap(), vec![2]);
    }

    #[tokio::test]
    async fn an_answer_cached_as_nobody_blocked_follows_a_later_block_and_unblock() {
        // Proves the per-account cache is invalidated with the pair's: an account first known
        // to block nobody blocks, then unblocks, and each answer follows at once.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        assert!(!store.is_blocked(7, 8).await.unwrap());
        assert!(!store.is_blocked(7, 9).await.unwrap());
        store.set_blocked(7, 9, true).await.unwrap();
        assert!(store.is_blocked(7, 9).await.unwrap());
        assert!(!store.is_blocked(7, 8).await.unwrap(), "a blocker's other pairs stay unblocked");
        assert!(!store.is_blocked(9, 7).await.unwrap(), "blocking is one way");
        store.set_blocked(7, 9, false).await.unwrap();
        assert!(!store.is_blocked(7, 9).await.unwrap());
    }
}
