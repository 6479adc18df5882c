//! The key directory on fjall ([`KeyStore`]): identity keys, one-time keys, the fallback key and
//! the notice flags per device, and the key-exchange peers per account. Ordinary keyspaces
//! beside the inbox log (never through it), every write an fdatasync'd batch.
//!
//! Exactly-once claims: one mutex serialises every read-modify-write of a device's pool (claim,
//! upload, fallback, delete), and a claim's removal is synced before the key is returned, so no
//! two claims can get one key and a crash cannot bring a handed-out key back.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::keys::{array, device as device_key, ADDR_LEN};
use super::{blocking, unavailable, FjallStore};
use crate::{
    AccountId, ClaimOutcome, ClaimedKey, DeviceAddr, DeviceIdentity, IdentityOutcome, KeyCounts, KeyStore, LowKeys,
    SignedKeyRecord, StoreError, StoreResult,
};

/// Flag bit of the state record: the low-keys notice was given since the pool was last full.
const LOW_NOTIFIED: u8 = 1;
/// Flag bit: the "fallback used" notice was given since the fallback key was last set.
const FALLBACK_NOTIFIED: u8 = 2;

/// Key-directory side of [`FjallStore`]; shared with blocking tasks.
pub(super) struct KeyDirectory {
    db: Database,
    /// Device address → curve25519 ‖ ed25519 ‖ signature.
    identities: Keyspace,
    /// Device address ‖ key id → key ‖ signature.
    one_time: Keyspace,
    /// Device address → flags ‖ (fallback key id ‖ key ‖ signature, when set).
    state: Keyspace,
    /// Account ‖ peer (u64 BE each) → last exchange, ms (u64 BE).
    peers: Keyspace,
    /// Serialises every change of a device's pool and state (see the module doc).
    lock: Mutex<()>,
}

/// A device's flags and fallback key.
#[derive(Default)]
struct State {
    flags: u8,
    fallback: Option<SignedKeyRecord>,
}

impl KeyDirectory {
    pub(super) fn open(db: &Database) -> StoreResult<Arc<Self>> {
        let open = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(unavailable);
        Ok(Arc::new(Self {
            identities: open("key_identities")?,
            one_time: open("key_one_time")?,
            state: open("key_state")?,
            peers: open("key_peers")?,
            db: db.clone(),
            lock: Mutex::new(()),
        }))
    }

    fn state(&self, device: DeviceAddr) -> StoreResult<State> {
        let Some(bytes) = self.state.get(device_key(device)).map_err(unavailable)? else { return Ok(State::default()) };
        let (&flags, rest) = bytes.split_first().ok_or_else(|| corrupt("key state"))?;
        let fallback = if rest.is_empty() {
            None
        } else {
            let [key_id, key, signature] = decode_fields::<3>(rest)?;
            Some(SignedKeyRecord { key_id, key, signature })
        };
        Ok(State { flags, fallback })
    }

    fn encode_state(state: &State) -> Vec<u8> {
        let mut out = vec![state.flags];
        if let Some(f) = &state.fallback {
            out.extend(encode_fields(&[&f.key_id, &f.key, &f.signature]));
        }
        out
    }

    fn one_time_count(&self, device: DeviceAddr) -> StoreResult<u32> {
        let mut n = 0;
        for guard in self.one_time.prefix(device_key(device)) {
            guard.key().map_err(unavailable)?;
            n += 1;
        }
        Ok(n)
    }

    fn set_identity(&self, device: DeviceAddr, identity: DeviceIdentity) -> StoreResult<IdentityOutcome> {
        let _guard = self.lock.lock().expect("key directory lock");
        if let Some(existing) = self.identity(device)? {
            return Ok(if existing == identity {
                IdentityOutcome::Unchanged
            } else {
                IdentityOutcome::Conflict(existing)
            });
        }
        let value = encode_fields(&[&identity.curve25519, &identity.ed25519, &identity.signature]);
        let mut batch = self.db.batch();
        batch.insert(&self.identities, device_key(device), value);
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        Ok(IdentityOutcome::Published)
    }

    fn identity(&self, device: DeviceAddr) -> StoreResult<Option<DeviceIdentity>> {
        let Some(bytes) = self.identities.get(device_key(device)).map_err(unavailable)? else { return Ok(None) };
        let [curve25519, ed25519, signature] = decode_fields::<3>(&bytes)?;
        Ok(Some(DeviceIdentity { curve25519, ed25519, signature }))
    }

    fn add_one_time_keys(
        &self,
        device: DeviceAddr,
        keys: &[SignedKeyRecord],
        pool_max: u32,
        low_watermark: u32,
    ) -> StoreResult<u32> {
        let _guard = self.lock.lock().expect("key directory lock");
        let count = self.one_time_count(device)?;
        let mut fresh = Vec::new();
        for k in keys {
            let key = one_time_key(device, &k.key_id);
            let seen_in_batch = fresh.iter().any(|(seen, _): &(Vec<u8>, &SignedKeyRecord)| seen == &key);
            if !seen_in_batch && !self.one_time.contains_key(&key).map_err(unavailable)? {
                fresh.push((key, k));
            }
        }
        let would_hold = count + fresh.len() as u32;
        if would_hold > pool_max {
            return Err(StoreError::PoolFull { max: pool_max, would_hold });
        }
        let mut batch = self.db.batch();
        for (key, k) in &fresh {
            batch.insert(&self.one_time, key.as_slice(), encode_fields(&[&k.key, &k.signature]));
        }
        let mut state = self.state(device)?;
        if would_hold >= low_watermark && state.flags & LOW_NOTIFIED != 0 {
            state.flags &= !LOW_NOTIFIED;
            batch.insert(&self.state, device_key(device), Self::encode_state(&state));
        }
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        Ok(would_hold)
    }

    fn set_fallback_key(&self, device: DeviceAddr, key: SignedKeyRecord) -> StoreResult<()> {
        let _guard = self.lock.lock().expect("key directory lock");
        let mut state = self.state(device)?;
        state.flags &= !FALLBACK_NOTIFIED;
        state.fallback = Some(key);
        let mut batch = self.db.batch();
        batch.insert(&self.state, device_key(device), Self::encode_state(&state));
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    fn key_counts(&self, device: DeviceAddr) -> StoreResult<KeyCounts> {
        Ok(KeyCounts {
            one_time_keys: self.one_time_count(device)?,
            fallback_key: self.state(device)?.fallback.is_some(),
        })
    }

    fn claim_key(&self, device: DeviceAddr, low_watermark: u32) -> StoreResult<ClaimOutcome> {
        let _guard = self.lock.lock().expect("key directory lock");
        let mut state = self.state(device)?;
        let first = self.one_time.prefix(device_key(device)).next();
        let mut batch = self.db.batch();
        let (key, left, notify) = match first {
            Some(guard) => {
                let (k, v) = guard.into_inner().map_err(unavailable)?;
                let key_id = String::from_utf8(k[ADDR_LEN..].to_vec()).map_err(|_| corrupt("one-time key id"))?;
                let [key, signature] = decode_fields::<2>(&v)?;
                batch.remove(&self.one_time, k.to_vec());
                let left = self.one_time_count(device)? - 1;
                let notify = left < low_watermark && state.flags & LOW_NOTIFIED == 0;
                if notify {
                    state.flags |= LOW_NOTIFIED;
                    batch.insert(&self.state, device_key(device), Self::encode_state(&state));
                }
                let claimed = ClaimedKey::OneTime(SignedKeyRecord { key_id, key, signature });
                (Some(claimed), left, notify.then_some(LowKeys { one_time_keys: left, fallback_key_used: false }))
            }
            None => match state.fallback.clone() {
                None => (None, 0, None),
                Some(fallback) => {
                    let notify = state.flags & FALLBACK_NOTIFIED == 0;
                    if notify {
                        state.flags |= FALLBACK_NOTIFIED | LOW_NOTIFIED;
                        batch.insert(&self.state, device_key(device), Self::encode_state(&state));
                    }
                    let low = LowKeys { one_time_keys: 0, fallback_key_used: true };
                    (Some(ClaimedKey::Fallback(fallback)), 0, notify.then_some(low))
                }
            },
        };
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        Ok(ClaimOutcome { key, one_time_keys_left: left, notify })
    }

    fn delete_keys(&self, device: DeviceAddr) -> StoreResult<()> {
        let _guard = self.lock.lock().expect("key directory lock");
        let mut batch = self.db.batch();
        for guard in self.one_time.prefix(device_key(device)) {
            batch.remove(&self.one_time, guard.key().map_err(unavailable)?.to_vec());
        }
        batch.remove(&self.state, device_key(device));
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    fn record_key_peers(&self, account: AccountId, peers: &[AccountId], now_ms: u64) -> StoreResult<()> {
        let mut batch = self.db.batch();
        for &peer in peers.iter().filter(|&&p| p != account) {
            batch.insert(&self.peers, pair_key(account, peer), now_ms.to_be_bytes());
            batch.insert(&self.peers, pair_key(peer, account), now_ms.to_be_bytes());
        }
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    fn key_peers(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        let mut out = Vec::new();
        for guard in self.peers.prefix(account.to_be_bytes()) {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let last = u64::from_be_bytes(array(&v)?);
            if last >= since_ms {
                out.push(u64::from_be_bytes(array(&k[8..])?));
            }
        }
        Ok(out)
    }
}

fn one_time_key(device: DeviceAddr, key_id: &str) -> Vec<u8> {
    let mut key = device_key(device).to_vec();
    key.extend_from_slice(key_id.as_bytes());
    key
}

fn pair_key(account: AccountId, peer: AccountId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&account.to_be_bytes());
    k[8..].copy_from_slice(&peer.to_be_bytes());
    k
}

/// Strings as `u16 BE length ‖ bytes`, one after another.
fn encode_fields(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// Inverse of [`encode_fields`] for exactly `N` fields.
fn decode_fields<const N: usize>(mut bytes: &[u8]) -> StoreResult<[String; N]> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for slot in &mut out {
        let len =
            bytes.get(..2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize).ok_or_else(|| corrupt("key field"))?;
        let field = bytes.get(2..2 + len).ok_or_else(|| corrupt("key field"))?;
        *slot = String::from_utf8(field.to_vec()).map_err(|_| corrupt("key field"))?;
        bytes = &bytes[2 + len..];
    }
    Ok(out)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what} record"))
}

#[async_trait]
impl KeyStore for FjallStore {
    async fn set_identity(&self, device: DeviceAddr, identity: DeviceIdentity) -> StoreResult<IdentityOutcome> {
        let keys = Arc::clone(&self.key_directory);
        blocking(move || keys.set_identity(device, identity)).await
    }

    async fn identities(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<Option<DeviceIdentity>>> {
        devices.iter().map(|&d| self.key_directory.identity(d)).collect()
    }

    async fn add_one_time_keys(
        &self,
        device: DeviceAddr,
        keys: &[SignedKeyRecord],
        pool_max: u32,
        low_watermark: u32,
    ) -> StoreResult<u32> {
        let (dir, keys) = (Arc::clone(&self.key_directory), keys.to_vec());
        blocking(move || dir.add_one_time_keys(device, &keys, pool_max, low_watermark)).await
    }

    async fn set_fallback_key(&self, device: DeviceAddr, key: SignedKeyRecord) -> StoreResult<()> {
        let dir = Arc::clone(&self.key_directory);
        blocking(move || dir.set_fallback_key(device, key)).await
    }

    async fn key_counts(&self, device: DeviceAddr) -> StoreResult<KeyCounts> {
        self.key_directory.key_counts(device)
    }

    async fn claim_key(&self, device: DeviceAddr, low_watermark: u32) -> StoreResult<ClaimOutcome> {
        let dir = Arc::clone(&self.key_directory);
        blocking(move || dir.claim_key(device, low_watermark)).await
    }

    async fn delete_keys(&self, device: DeviceAddr) -> StoreResult<()> {
        let dir = Arc::clone(&self.key_directory);
        blocking(move || dir.delete_keys(device)).await
    }

    async fn record_key_peers(&self, account: AccountId, peers: &[AccountId], now_ms: u64) -> StoreResult<()> {
        let (dir, peers) = (Arc::clone(&self.key_directory), peers.to_vec());
        blocking(move || dir.record_key_peers(account, &peers, now_ms)).await
    }

    async fn key_peers(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        self.key_directory.key_peers(account, since_ms)
    }
}
