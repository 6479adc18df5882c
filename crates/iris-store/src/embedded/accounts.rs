//! Accounts, devices and refresh tokens on fjall. Every change runs under one mutex (they are
//! rare, and it makes "check the device limit, then add" atomic) and is committed with fdatasync
//! before returning. Reads go straight to fjall.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fjall::{OwnedWriteBatch, PersistMode};

use super::codec::{self, AccountRecord};
use super::{keys, unavailable, Keyspaces, Shared};
use crate::{
    Account, AccountId, Device, DeviceAddr, DeviceId, RefreshTokenRecord, StoreError, StoreResult, UnfinishedRevocation,
};

/// Account-side operations of [`super::FjallStore`].
pub(super) struct Accounts {
    ks: Keyspaces,
    shared: Arc<Shared>,
    /// Serialises every change, so read-check-write sequences cannot interleave.
    lock: Mutex<()>,
}

impl Accounts {
    pub(super) fn new(ks: Keyspaces, shared: Arc<Shared>) -> Self {
        Self { ks, shared, lock: Mutex::new(()) }
    }

    /// The database, for erasing the keyspaces other modules own (`erasure.rs`).
    pub(super) fn db(&self) -> fjall::Database {
        self.ks.db.clone()
    }

    /// The account registered under `phone`.
    pub(super) fn by_phone(&self, phone: &str) -> StoreResult<Option<Account>> {
        let Some(id) = self.phone_id(phone)? else {
            return Ok(None);
        };
        let rec = self.record(id)?.ok_or_else(|| dangling_phone(phone, id))?;
        Ok(Some(rec.account))
    }

    /// The account record with this id.
    pub(super) fn record(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let value = self.ks.accounts.get(keys::account(id)).map_err(unavailable)?;
        value.map(|v| codec::decode_account(id, &v)).transpose()
    }

    /// Creates the account if needed, then links a new device, enforcing `max_devices`.
    pub(super) fn register_device(
        &self,
        phone: &str,
        name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<(Account, Device)> {
        let _guard = self.lock();
        let mut batch = self.ks.db.batch();
        if self.ks.erasures.get(phone).map_err(unavailable)?.is_some() {
            return Err(StoreError::AccountDeleting);
        }
        let mut rec = match self.phone_id(phone)? {
            Some(id) => self.record(id)?.ok_or_else(|| dangling_phone(phone, id))?,
            None => self.new_account(&mut batch, phone, now_ms)?,
        };
        let device = self.stage_device(&mut batch, &mut rec, name, now_ms, max_devices)?;
        self.commit(batch)?;
        Ok((rec.account, device))
    }

    /// Adds a device named `name` to `rec`'s account in `batch`, enforcing `max_devices`; the
    /// caller holds [`Accounts::lock`] and commits (so another record can join the same commit).
    fn stage_device(
        &self,
        batch: &mut OwnedWriteBatch,
        rec: &mut AccountRecord,
        name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<Device> {
        if self.devices(rec.account.id)?.len() >= max_devices as usize {
            return Err(StoreError::DeviceLimit { max: max_devices });
        }
        let device = Device {
            addr: DeviceAddr::new(rec.account.id, rec.next_device_id),
            name: name.to_owned(),
            primary: rec.next_device_id == 1,
            created_at_ms: now_ms,
            revoked_at_ms: None,
        };
        rec.next_device_id = rec
            .next_device_id
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("account {} ran out of device ids", rec.account.id)))?;
        batch.insert(&self.ks.accounts, keys::account(rec.account.id), codec::encode_account(rec));
        batch.insert(&self.ks.devices, keys::device(device.addr), codec::encode_device(&device));
        Ok(device)
    }

    /// Adds a device named `name` to the existing account `id` in `batch` (not committed):
    /// [`Accounts::register_device`] for a caller that commits it with a record of its own (an
    /// approved link). `None` when the account is gone; `AccountDeleting` while it is erased.
    /// The caller holds [`Accounts::lock`].
    pub(super) fn stage_linked_device(
        &self,
        batch: &mut OwnedWriteBatch,
        id: AccountId,
        name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<Option<Device>> {
        let Some(mut rec) = self.record(id)? else { return Ok(None) };
        if self.ks.erasures.get(&rec.account.phone).map_err(unavailable)?.is_some() {
            return Err(StoreError::AccountDeleting);
        }
        self.stage_device(batch, &mut rec, name, now_ms, max_devices).map(Some)
    }

    /// Revokes every active device of `phone`'s account and adds a new primary.
    pub(super) fn register_primary(
        &self,
        phone: &str,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<Option<(Account, Device, Vec<Device>)>> {
        let _guard = self.lock();
        let Some(id) = self.phone_id(phone)? else { return Ok(None) };
        let mut rec = self.record(id)?.ok_or_else(|| dangling_phone(phone, id))?;
        let mut batch = self.ks.db.batch();
        let mut revoked = self.devices(id)?;
        for old in &mut revoked {
            self.stage_revocation(&mut batch, old, now_ms, None)?;
        }
        let device = Device {
            addr: DeviceAddr::new(id, rec.next_device_id),
            name: name.to_owned(),
            primary: true,
            created_at_ms: now_ms,
            revoked_at_ms: None,
        };
        rec.next_device_id = rec
            .next_device_id
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("account {id} ran out of device ids")))?;
        batch.insert(&self.ks.accounts, keys::account(id), codec::encode_account(&rec));
        batch.insert(&self.ks.devices, keys::device(device.addr), codec::encode_device(&device));
        self.commit(batch)?;
        Ok(Some((rec.account, device, revoked)))
    }

    /// Active devices of `account`, ordered by id (key order).
    pub(super) fn devices(&self, account: AccountId) -> StoreResult<Vec<Device>> {
        let mut active = Vec::new();
        for guard in self.ks.devices.prefix(keys::account(account)) {
            let (key, value) = guard.into_inner().map_err(unavailable)?;
            let device = codec::decode_device(keys::parse_device(&key)?, &value)?;
            if device.revoked_at_ms.is_none() {
                active.push(device);
            }
        }
        Ok(active)
    }

    /// One device, revoked or not.
    pub(super) fn device(&self, addr: DeviceAddr) -> StoreResult<Option<Device>> {
        let value = self.ks.devices.get(keys::device(addr)).map_err(unavailable)?;
        value.map(|v| codec::decode_device(addr, &v)).transpose()
    }

    /// Marks the device revoked and deletes its refresh tokens; false if absent or revoked.
    pub(super) fn revoke_device(
        &self,
        addr: DeviceAddr,
        now_ms: u64,
        announce_by: Option<DeviceId>,
    ) -> StoreResult<bool> {
        let _guard = self.lock();
        let mut device = match self.device(addr)? {
            Some(d) if d.revoked_at_ms.is_none() => d,
            _ => return Ok(false),
        };
        let mut batch = self.ks.db.batch();
        self.stage_revocation(&mut batch, &mut device, now_ms, announce_by)?;
        self.commit(batch)?;
        Ok(true)
    }

    /// Adds `device`'s revocation to `batch`: the record marked revoked, its refresh tokens
    /// deleted, and the mark of unfinished follow-ups. The caller holds the lock and commits.
    fn stage_revocation(
        &self,
        batch: &mut OwnedWriteBatch,
        device: &mut Device,
        now_ms: u64,
        announce_by: Option<DeviceId>,
    ) -> StoreResult<()> {
        device.revoked_at_ms = Some(now_ms);
        let key = keys::device(device.addr);
        batch.insert(&self.ks.devices, key, codec::encode_device(device));
        for guard in self.ks.token_index.prefix(key) {
            let index_key = guard.key().map_err(unavailable)?;
            batch.remove(&self.ks.tokens, keys::token_index_hash(&index_key)?);
            batch.remove(&self.ks.token_index, index_key);
        }
        batch.insert(&self.ks.revocations, key, codec::encode_revocation_mark(now_ms, announce_by));
        Ok(())
    }

    /// Revocations made at or before `before_ms` whose follow-ups are not confirmed, at most
    /// `limit`.
    pub(super) fn unfinished_revocations(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> StoreResult<Vec<UnfinishedRevocation>> {
        let mut out = Vec::new();
        for guard in self.ks.revocations.iter() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = guard.into_inner().map_err(unavailable)?;
            let addr = keys::parse_device(&key)?;
            let (at, announce_by) = codec::decode_revocation_mark(&value)?;
            if at > before_ms {
                continue;
            }
            // An erased account's device records are gone with their marks; a mark without its
            // record is not expected, and is skipped rather than failing the sweep.
            if let Some(device) = self.device(addr)? {
                out.push(UnfinishedRevocation { device, announce_by });
            }
        }
        Ok(out)
    }

    /// Forgets the mark of `addr`'s revocation.
    pub(super) fn finish_revocation(&self, addr: DeviceAddr) -> StoreResult<()> {
        let mut batch = self.ks.db.batch();
        batch.remove(&self.ks.revocations, keys::device(addr));
        self.commit(batch)
    }

    /// Stores a refresh token and its index entry.
    pub(super) fn put_token(&self, token: &RefreshTokenRecord) -> StoreResult<()> {
        let _guard = self.lock();
        let mut batch = self.ks.db.batch();
        batch.insert(&self.ks.tokens, token.hash, codec::encode_token(token));
        batch.insert(&self.ks.token_index, keys::token_index(token.device, &token.hash), Vec::<u8>::new());
        self.commit(batch)
    }

    /// Removes and returns a refresh token: at most one caller gets it.
    pub(super) fn take_token(&self, hash: &[u8; 32]) -> StoreResult<Option<RefreshTokenRecord>> {
        let _guard = self.lock();
        let Some(value) = self.ks.tokens.get(hash).map_err(unavailable)? else {
            return Ok(None);
        };
        let token = codec::decode_token(*hash, &value)?;
        let mut batch = self.ks.db.batch();
        batch.remove(&self.ks.tokens, *hash);
        batch.remove(&self.ks.token_index, keys::token_index(token.device, hash));
        self.commit(batch)?;
        Ok(Some(token))
    }

    /// Marks `account` as being deleted (under the lock `register_device` takes, so a
    /// registration either came before and is erased too, or sees the mark). Keeps an earlier
    /// mark's time.
    pub(super) fn begin_erasure(&self, account: &Account, now_ms: u64) -> StoreResult<()> {
        let _guard = self.lock();
        if self.ks.erasures.get(&account.phone).map_err(unavailable)?.is_some() {
            return Ok(());
        }
        let mut value = Vec::with_capacity(16);
        value.extend_from_slice(&account.id.to_be_bytes());
        value.extend_from_slice(&now_ms.to_be_bytes());
        let mut batch = self.ks.db.batch();
        batch.insert(&self.ks.erasures, account.phone.as_str(), value);
        self.commit(batch)
    }

    /// Deletions started and not finished.
    pub(super) fn erasures(&self) -> StoreResult<Vec<crate::PendingErasure>> {
        let mut out = Vec::new();
        for guard in self.ks.erasures.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let phone = String::from_utf8(k.to_vec()).map_err(|_| StoreError::Corrupt("erasure phone".into()))?;
            let account = u64::from_be_bytes(keys::array(v.get(..8).unwrap_or_default())?);
            let started_at_ms = u64::from_be_bytes(keys::array(v.get(8..).unwrap_or_default())?);
            out.push(crate::PendingErasure { account, phone, started_at_ms });
        }
        Ok(out)
    }

    /// Every device of `account`, revoked or not.
    pub(super) fn all_devices(&self, account: AccountId) -> StoreResult<Vec<DeviceAddr>> {
        let mut out = Vec::new();
        for guard in self.ks.devices.prefix(keys::account(account)) {
            out.push(keys::parse_device(&guard.key().map_err(unavailable)?)?);
        }
        Ok(out)
    }

    /// Deletes the account record, its phone index, devices and refresh tokens, with the
    /// cold store's dedup records of its devices; then, in a batch of its own, the mark.
    pub(super) fn erase(&self, erasure: &crate::PendingErasure) -> StoreResult<()> {
        let _guard = self.lock();
        let mut batch = self.ks.db.batch();
        let account = erasure.account;
        for guard in self.ks.devices.prefix(keys::account(account)) {
            let key = guard.key().map_err(unavailable)?;
            for token in self.ks.token_index.prefix(&key) {
                let tkey = token.key().map_err(unavailable)?;
                batch.remove(&self.ks.tokens, keys::token_index_hash(&tkey)?);
                batch.remove(&self.ks.token_index, tkey);
            }
            for dedup in self.ks.dedup.prefix(&key) {
                batch.remove(&self.ks.dedup, dedup.key().map_err(unavailable)?);
            }
            batch.remove(&self.ks.revocations, key.clone());
            batch.remove(&self.ks.devices, key);
        }
        batch.remove(&self.ks.accounts, keys::account(account));
        if self.phone_id(&erasure.phone)? == Some(account) {
            batch.remove(&self.ks.phones, erasure.phone.as_str());
        }
        self.commit(batch)?;
        let mut batch = self.ks.db.batch();
        batch.remove(&self.ks.erasures, erasure.phone.as_str());
        self.commit(batch)
    }

    fn phone_id(&self, phone: &str) -> StoreResult<Option<AccountId>> {
        let value = self.ks.phones.get(phone).map_err(unavailable)?;
        value.map(|v| Ok(u64::from_be_bytes(keys::array(&v)?))).transpose()
    }

    /// Adds a new account for `phone` to `batch` and returns its record.
    fn new_account(&self, batch: &mut OwnedWriteBatch, phone: &str, now_ms: u64) -> StoreResult<AccountRecord> {
        let next = self.ks.meta.get(keys::NEXT_ACCOUNT_ID).map_err(unavailable)?;
        let id = match next {
            Some(v) => u64::from_be_bytes(keys::array(&v)?),
            None => 1,
        };
        batch.insert(&self.ks.meta, keys::NEXT_ACCOUNT_ID, (id + 1).to_be_bytes());
        batch.insert(&self.ks.phones, phone, keys::account(id));
        let account = Account { id, phone: phone.to_owned(), created_at_ms: now_ms };
        Ok(AccountRecord { account, next_device_id: 1 })
    }

    /// Commits with fdatasync, so the change is durable when the caller returns.
    pub(super) fn commit(&self, batch: OwnedWriteBatch) -> StoreResult<()> {
        let result = batch.durability(Some(PersistMode::SyncData)).commit();
        self.shared.set_healthy(result.is_ok());
        result.map_err(|e| {
            tracing::error!(error = %e, "account commit failed");
            unavailable(e)
        })
    }

    /// The mutation lock. Poisoning is ignored: it guards no data, only ordering.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn dangling_phone(phone: &str, id: AccountId) -> StoreError {
    StoreError::Corrupt(format!("phone {phone} points to missing account {id}"))
}
