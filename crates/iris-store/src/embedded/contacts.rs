//! Contact lists on fjall: one empty record per (owner ‖ contact) pair, written with fdatasync.

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{unavailable, FjallStore};
use crate::{AccountId, ContactStore, StoreResult};

/// Contact-side state of [`FjallStore`].
pub(super) struct Contacts {
    db: Database,
    /// Owner ‖ contact (u64 BE each) → empty.
    pairs: Keyspace,
    /// Account (u64 BE) → presence privacy code (one byte).
    privacy: Keyspace,
}

impl Contacts {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let pairs = db.keyspace("contacts", KeyspaceCreateOptions::default).map_err(unavailable)?;
        let privacy = db.keyspace("presence_privacy", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self { db: db.clone(), pairs, privacy })
    }
}

fn key(owner: AccountId, contact: AccountId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&owner.to_be_bytes());
    k[8..].copy_from_slice(&contact.to_be_bytes());
    k
}

#[async_trait]
impl ContactStore for FjallStore {
    async fn set_contacts(&self, owner: AccountId, contacts: &[AccountId], on: bool) -> StoreResult<()> {
        let c = &self.contacts;
        let mut batch = c.db.batch();
        for &contact in contacts {
            if on {
                batch.insert(&c.pairs, key(owner, contact), []);
            } else {
                batch.remove(&c.pairs, key(owner, contact));
            }
        }
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    async fn contacts(&self, owner: AccountId) -> StoreResult<Vec<AccountId>> {
        let mut ids = Vec::new();
        for guard in self.contacts.pairs.prefix(owner.to_be_bytes()) {
            let k = guard.key().map_err(unavailable)?;
            let tail: [u8; 8] = k.get(8..16).and_then(|t| t.try_into().ok()).unwrap_or_default();
            ids.push(u64::from_be_bytes(tail));
        }
        Ok(ids)
    }

    async fn is_contact(&self, owner: AccountId, contact: AccountId) -> StoreResult<bool> {
        self.contacts.pairs.contains_key(key(owner, contact)).map_err(unavailable)
    }

    async fn set_presence_privacy(&self, account: AccountId, code: u8) -> StoreResult<()> {
        let c = &self.contacts;
        let mut batch = c.db.batch();
        batch.insert(&c.privacy, account.to_be_bytes(), [code]);
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    async fn presence_privacy(&self, account: AccountId) -> StoreResult<Option<u8>> {
        let value = self.contacts.privacy.get(account.to_be_bytes()).map_err(unavailable)?;
        Ok(value.and_then(|v| v.first().copied()))
    }
}

#[cfg(test)]
mod tests {
    use crate::embedded::{FjallConfig, FjallStore};
    use crate::ContactStore;

    #[tokio::test]
    async fn contacts_are_pairs_that_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
            store.set_contacts(1, &[2, 3, 4], true).await.unwrap();
            store.set_contacts(1, &[3], false).await.unwrap();
            store.set_contacts(2, &[1], true).await.unwrap();
            store.set_presence_privacy(1, 2).await.unwrap();
        }
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        assert_eq!(store.contacts(1).await.unwrap(), vec![2, 4]);
        assert!(store.is_contact(2, 1).await.unwrap());
        assert!(!store.is_contact(1, 3).await.unwrap());
        assert_eq!(store.presence_privacy(1).await.unwrap(), Some(2));
        assert_eq!(store.presence_privacy(2).await.unwrap(), None);
    }
}
