//! Push targets on fjall: one record per device (account ‖ device → versioned record), written
//! with fdatasync. Per-account erasure is a prefix scan.

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{unavailable, FjallStore};
use crate::{AccountId, DeviceAddr, PushStore, PushTarget, StoreError, StoreResult};

/// Layout version of a target record.
const VERSION: u8 = 1;

/// Push-side state of [`FjallStore`].
pub(super) struct Push {
    db: Database,
    /// Account (u64 BE) ‖ device (u32 BE) → version ‖ updated_at_ms (u64 BE) ‖ provider length
    /// (u8) ‖ provider ‖ token.
    targets: Keyspace,
    /// Serialises read-check-delete (`delete_push_target` with a token) against registrations.
    lock: std::sync::Mutex<()>,
}

impl Push {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let targets = db.keyspace("push_targets", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self { db: db.clone(), targets, lock: std::sync::Mutex::new(()) })
    }

    fn get(&self, device: DeviceAddr) -> StoreResult<Option<PushTarget>> {
        match self.targets.get(key(device)).map_err(unavailable)? {
            Some(v) => decode(device, &v).map(Some),
            None => Ok(None),
        }
    }
}

fn key(d: DeviceAddr) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&d.account.to_be_bytes());
    k[8..].copy_from_slice(&d.device.to_be_bytes());
    k
}

fn encode(t: &PushTarget) -> StoreResult<Vec<u8>> {
    let provider_len = u8::try_from(t.provider.len())
        .map_err(|_| StoreError::Corrupt(format!("push provider name of {} bytes", t.provider.len())))?;
    let mut v = Vec::with_capacity(10 + t.provider.len() + t.token.len());
    v.push(VERSION);
    v.extend_from_slice(&t.updated_at_ms.to_be_bytes());
    v.push(provider_len);
    v.extend_from_slice(t.provider.as_bytes());
    v.extend_from_slice(t.token.as_bytes());
    Ok(v)
}

fn decode(device: DeviceAddr, v: &[u8]) -> StoreResult<PushTarget> {
    let bad = || StoreError::Corrupt(format!("push target of {device}"));
    if v.first() != Some(&VERSION) || v.len() < 10 {
        return Err(bad());
    }
    let updated_at_ms = u64::from_be_bytes(v[1..9].try_into().map_err(|_| bad())?);
    let n = usize::from(v[9]);
    let provider = v.get(10..10 + n).ok_or_else(bad)?;
    let token = &v[10 + n..];
    Ok(PushTarget {
        device,
        provider: String::from_utf8(provider.to_vec()).map_err(|_| bad())?,
        token: String::from_utf8(token.to_vec()).map_err(|_| bad())?,
        updated_at_ms,
    })
}

#[async_trait]
impl PushStore for FjallStore {
    async fn set_push_target(&self, target: PushTarget) -> StoreResult<()> {
        let p = &self.push;
        let value = encode(&target)?;
        let _guard = p.lock.lock().expect("push lock");
        let mut batch = p.db.batch();
        batch.insert(&p.targets, key(target.device), value);
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    async fn push_target(&self, device: DeviceAddr) -> StoreResult<Option<PushTarget>> {
        self.push.get(device)
    }

    async fn delete_push_target(&self, device: DeviceAddr, only_token: Option<&str>) -> StoreResult<bool> {
        let p = &self.push;
        let _guard = p.lock.lock().expect("push lock");
        let Some(current) = p.get(device)? else { return Ok(false) };
        if only_token.is_some_and(|t| t != current.token) {
            return Ok(false);
        }
        let mut batch = p.db.batch();
        batch.remove(&p.targets, key(device));
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        Ok(true)
    }

    async fn delete_account_push_targets(&self, account: AccountId) -> StoreResult<u64> {
        let p = &self.push;
        let _guard = p.lock.lock().expect("push lock");
        let mut batch = p.db.batch();
        let mut n = 0;
        for guard in p.targets.prefix(account.to_be_bytes()) {
            let k = guard.key().map_err(unavailable)?;
            batch.remove(&p.targets, k.to_vec());
            n += 1;
        }
        if n > 0 {
            batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        }
        Ok(n)
    }
}
