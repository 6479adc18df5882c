//! [`ErasureStore`] on the embedded engine. The mark is a fjall record (phone → account ‖
//! start) written with fdatasync before anything is deleted and removed last (`accounts.rs`).
//! Erasing: the devices' inboxes are purged through the log; the message index and group
//! receipt records are deleted through the log too (`Writes` records), so a recovery that
//! replays older side writes replays their deletion after them; every other keyspace (keys,
//! contacts, blocks, privacy, media) is deleted directly with an fdatasync'd batch, since
//! nothing replays into them. Each step can run again, so an interrupted erasure is finished
//! by running it again from the start.

use async_trait::async_trait;
use fjall::{Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{blocking, unavailable, FjallStore};
use crate::{Account, AccountId, ErasureStore, GroupId, InboxStore, MediaStore as _, PendingErasure, StoreResult};

/// Keyspaces keyed by the account id first (its own records): deleted by prefix.
const BY_ACCOUNT: &[&str] = &[
    "presence_privacy",
    "key_identities",
    "key_one_time",
    "key_state",
    "push_targets",
    "profiles",
    "registration_pins",
    "pending_links",
    "abuse_states",
    "abuse_reports",
];
/// Keyspaces of account pairs (`a ‖ b`, u64 BE each): rows naming the account on either side.
const PAIRS: &[&str] = &["contacts", "blocks", "key_peers"];
/// Side writes per log record while erasing (bounds one record).
pub(super) const WRITES_PER_RECORD: usize = 4096;

/// Deletes what `account` left in the keyspaces outside the log other than media and the
/// account records. Blocking.
fn erase_direct(db: &fjall::Database, account: AccountId) -> StoreResult<()> {
    {
        let open = |name: &str| -> StoreResult<Keyspace> {
            db.keyspace(name, KeyspaceCreateOptions::default).map_err(unavailable)
        };
        let mut batch = db.batch();
        let id = account.to_be_bytes();
        for name in BY_ACCOUNT {
            let ks = open(name)?;
            for guard in ks.prefix(id) {
                batch.remove(&ks, guard.key().map_err(unavailable)?);
            }
        }
        for name in PAIRS {
            let ks = open(name)?;
            for guard in ks.iter() {
                let key = guard.key().map_err(unavailable)?;
                if key.get(..8) == Some(&id[..]) || key.get(8..16) == Some(&id[..]) {
                    batch.remove(&ks, key);
                }
            }
        }
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }
}

#[async_trait]
impl ErasureStore for FjallStore {
    async fn begin_erasure(&self, account: &Account, now_ms: u64) -> StoreResult<()> {
        let (accounts, account) = (std::sync::Arc::clone(&self.accounts), account.clone());
        blocking(move || accounts.begin_erasure(&account, now_ms)).await
    }

    async fn erasures_pending(&self) -> StoreResult<Vec<PendingErasure>> {
        let accounts = std::sync::Arc::clone(&self.accounts);
        blocking(move || accounts.erasures()).await
    }

    async fn groups_pending_for(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        let groups = std::sync::Arc::clone(&self.groups);
        blocking(move || groups.pending_for(account)).await
    }

    async fn delete_group(&self, group: GroupId) -> StoreResult<()> {
        let (groups, log) = (std::sync::Arc::clone(&self.groups), self.side_writer()?);
        blocking(move || groups.delete_empty(group, &log)).await
    }

    async fn erase_account(&self, erasure: &PendingErasure) -> StoreResult<()> {
        let account = erasure.account;
        let accounts = std::sync::Arc::clone(&self.accounts);
        let devices = blocking(move || accounts.all_devices(account)).await?;
        for device in devices {
            self.purge(device).await?;
            self.request(|reply| super::committer::Command::Forget { device, reply }).await?;
        }
        // An empty batch logs every index record staged so far, so the settle the scan starts
        // with puts them all on disk (the account's sessions are gone: nothing new names it).
        self.request(|reply| super::committer::Command::Writes { writes: Vec::new(), reply }).await?;
        let index = std::sync::Arc::clone(&self.message_index);
        let writes = blocking(move || index.erasures(account)).await?;
        for chunk in writes.chunks(WRITES_PER_RECORD) {
            let (log, chunk) = (self.side_writer()?, chunk.to_vec());
            blocking(move || log.write_blocking(chunk)).await?;
        }
        let (groups, log) = (std::sync::Arc::clone(&self.groups), self.side_writer()?);
        blocking(move || groups.erase_receipts(account, &log)).await?;
        let media = self.media.clone();
        blocking(move || media.erase_account(account)).await?;
        self.release_account_media(account).await?;
        let db = self.accounts.db();
        let erased = blocking(move || erase_direct(&db, account)).await;
        self.blocks.forget_cached();
        erased?;
        self.abuse.forget_reporter(account)?;
        let (accounts, erasure) = (std::sync::Arc::clone(&self.accounts), erasure.clone());
        blocking(move || accounts.erase(&erasure)).await
    }
}

/// One record as [`FjallStore::all_records`] lists it: keyspace name, key, value.
pub type KeyspaceRecord = (String, Vec<u8>, Vec<u8>);

impl FjallStore {
    /// Every record of every fjall keyspace, as (keyspace, key, value): for audits, like the
    /// test that proves an erased account leaves nothing behind. Reads everything: not for a
    /// request path.
    pub fn all_records(&self) -> StoreResult<Vec<KeyspaceRecord>> {
        let db = self.accounts.db();
        let mut out = Vec::new();
        for name in db.list_keyspace_names() {
            let name = name.to_string();
            let ks = db.keyspace(&name, KeyspaceCreateOptions::default).map_err(unavailable)?;
            for guard in ks.iter() {
                let (k, v) = guard.into_inner().map_err(unavailable)?;
                out.push((name.clone(), k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Whether the inbox log holds anything of `device` in memory (its inbox state, or dedup
    /// records of its sends): with [`all_records`](Self::all_records), what an audit reads.
    pub fn log_mentions(&self, device: crate::DeviceAddr) -> bool {
        self.log.mentions(device)
    }

    /// The devices whose inbox state the log holds in memory now (audits).
    pub fn log_devices(&self) -> Vec<crate::DeviceAddr> {
        self.log.devices_in_memory()
    }
}
