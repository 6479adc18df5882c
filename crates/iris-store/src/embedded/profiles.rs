//! Profiles, registration PINs and pending device links on fjall (`ProfileStore`): one record
//! per account (profile, PIN) and one per account ‖ link code, each change an fdatasync'd batch.
//! Read-check-write steps (the pending-link bound, taking a link, counting a PIN attempt) run
//! under one mutex.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{blocking, unavailable, FjallStore};
use crate::profiles::count_pin_attempt;
use crate::{
    AccountId, Device, LinkState, PendingLink, PinAttempt, PinRecord, Profile, ProfileStore, StoreError, StoreResult,
};

/// Record layout version of every value here.
const VERSION: u8 = 1;

/// Profile-side state of [`FjallStore`].
pub(super) struct Profiles {
    db: Database,
    /// Account (u64 BE) → profile.
    profiles: Keyspace,
    /// Account (u64 BE) → PIN record.
    pins: Keyspace,
    /// Account (u64 BE) ‖ code → link.
    links: Keyspace,
    /// Serialises read-check-write steps.
    lock: Mutex<()>,
}

impl Profiles {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let open = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(unavailable);
        Ok(Self {
            db: db.clone(),
            profiles: open("profiles")?,
            pins: open("registration_pins")?,
            links: open("pending_links")?,
            lock: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn commit(&self, batch: fjall::OwnedWriteBatch) -> StoreResult<()> {
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    fn pin_record(&self, account: AccountId) -> StoreResult<Option<PinRecord>> {
        let value = self.pins.get(account.to_be_bytes()).map_err(unavailable)?;
        value.map(|v| decode_pin(&v)).transpose()
    }

    /// `account`'s link `code`, if stored (expired or not).
    fn stored_link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        let value = self.links.get(link_key(account, code)).map_err(unavailable)?;
        value.map(|v| decode_link(account, code.to_owned(), &v)).transpose()
    }

    fn account_links(&self, account: AccountId) -> StoreResult<Vec<PendingLink>> {
        let mut out = Vec::new();
        for guard in self.links.prefix(account.to_be_bytes()) {
            let (key, value) = guard.into_inner().map_err(unavailable)?;
            let code = String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned();
            out.push(decode_link(account, code, &value)?);
        }
        Ok(out)
    }
}

fn link_key(account: AccountId, code: &str) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.extend_from_slice(code.as_bytes());
    k
}

/// Appends length-prefixed fields and fixed-width numbers.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Self(vec![VERSION])
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads what [`Writer`] wrote; any shortfall is a corrupt record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(v: &'a [u8], what: &str) -> StoreResult<Self> {
        match v.split_first() {
            Some((&VERSION, rest)) => Ok(Self(rest)),
            _ => Err(StoreError::Corrupt(format!("{what} record of an unknown version"))),
        }
    }
    fn take(&mut self, n: usize) -> StoreResult<&'a [u8]> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("short profile-store record".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u64(&mut self) -> StoreResult<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn str(&mut self) -> StoreResult<String> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()) as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

fn encode_profile(p: &Profile) -> Vec<u8> {
    Writer::new().str(&p.display_name).str(&p.about).str(&p.photo_media_id).bytes(&[p.privacy]).u64(p.updated_at_ms).0
}

fn decode_profile(v: &[u8]) -> StoreResult<Profile> {
    let mut r = Reader::new(v, "profile")?;
    Ok(Profile {
        display_name: r.str()?,
        about: r.str()?,
        photo_media_id: r.str()?,
        privacy: r.take(1)?[0],
        updated_at_ms: r.u64()?,
    })
}

fn encode_pin(p: &PinRecord) -> Vec<u8> {
    Writer::new().str(&p.hash).u64(u64::from(p.failed_attempts)).u64(p.locked_until_ms).0
}

fn decode_pin(v: &[u8]) -> StoreResult<PinRecord> {
    let mut r = Reader::new(v, "PIN")?;
    Ok(PinRecord { hash: r.str()?, failed_attempts: r.u64()? as u32, locked_until_ms: r.u64()? })
}

/// State as (tag, device): 0 pending, 1 approved, 2 refused.
fn encode_link(l: &PendingLink) -> Vec<u8> {
    let (tag, device) = match l.state {
        LinkState::Pending => (0u8, 0u32),
        LinkState::Approved { device } => (1, device),
        LinkState::Refused => (2, 0),
    };
    Writer::new()
        .bytes(&l.secret_hash)
        .str(&l.device_name)
        .u64(l.expires_at_ms)
        .bytes(&[tag])
        .bytes(&device.to_be_bytes())
        .0
}

fn decode_link(account: AccountId, code: String, v: &[u8]) -> StoreResult<PendingLink> {
    let mut r = Reader::new(v, "link")?;
    let secret_hash: [u8; 32] = r.take(32)?.try_into().unwrap_or_default();
    let device_name = r.str()?;
    let expires_at_ms = r.u64()?;
    let tag = r.take(1)?[0];
    let device = u32::from_be_bytes(r.take(4)?.try_into().unwrap_or_default());
    let state = match tag {
        0 => LinkState::Pending,
        1 => LinkState::Approved { device },
        2 => LinkState::Refused,
        other => return Err(StoreError::Corrupt(format!("link state {other}"))),
    };
    Ok(PendingLink { account, code, secret_hash, device_name, expires_at_ms, state })
}

#[async_trait]
impl ProfileStore for FjallStore {
    async fn profile(&self, account: AccountId) -> StoreResult<Option<Profile>> {
        let value = self.profiles.profiles.get(account.to_be_bytes()).map_err(unavailable)?;
        value.map(|v| decode_profile(&v)).transpose()
    }

    async fn set_profile(&self, account: AccountId, profile: &Profile) -> StoreResult<()> {
        let (p, value) = (Arc::clone(&self.profiles), encode_profile(profile));
        blocking(move || {
            let mut batch = p.db.batch();
            batch.insert(&p.profiles, account.to_be_bytes(), value);
            p.commit(batch)
        })
        .await
    }

    async fn pin(&self, account: AccountId) -> StoreResult<Option<PinRecord>> {
        self.profiles.pin_record(account)
    }

    async fn set_pin(&self, account: AccountId, hash: Option<&str>) -> StoreResult<()> {
        let p = Arc::clone(&self.profiles);
        let value = hash.map(|h| encode_pin(&PinRecord { hash: h.to_owned(), failed_attempts: 0, locked_until_ms: 0 }));
        blocking(move || {
            let _guard = p.lock();
            let mut batch = p.db.batch();
            match value {
                Some(v) => batch.insert(&p.pins, account.to_be_bytes(), v),
                None => batch.remove(&p.pins, account.to_be_bytes()),
            }
            p.commit(batch)
        })
        .await
    }

    async fn count_pin_attempt(
        &self,
        account: AccountId,
        now_ms: u64,
        attempts_max: u32,
        lockout_ms: u64,
    ) -> StoreResult<PinAttempt> {
        let p = Arc::clone(&self.profiles);
        blocking(move || {
            let _guard = p.lock();
            let (after, attempt) = count_pin_attempt(p.pin_record(account)?, now_ms, attempts_max, lockout_ms);
            if let Some(rec) = after {
                let mut batch = p.db.batch();
                batch.insert(&p.pins, account.to_be_bytes(), encode_pin(&rec));
                p.commit(batch)?;
            }
            Ok(attempt)
        })
        .await
    }

    async fn reset_pin_attempts(&self, account: AccountId) -> StoreResult<()> {
        let p = Arc::clone(&self.profiles);
        blocking(move || {
            let _guard = p.lock();
            let Some(mut rec) = p.pin_record(account)? else { return Ok(()) };
            rec.failed_attempts = 0;
            rec.locked_until_ms = 0;
            let mut batch = p.db.batch();
            batch.insert(&p.pins, account.to_be_bytes(), encode_pin(&rec));
            p.commit(batch)
        })
        .await
    }

    async fn put_link(&self, link: &PendingLink, now_ms: u64, max_pending: u32) -> StoreResult<bool> {
        let (p, link) = (Arc::clone(&self.profiles), link.clone());
        blocking(move || {
            let _guard = p.lock();
            let mut batch = p.db.batch();
            let mut live = 0u32;
            for old in p.account_links(link.account)? {
                if old.expires_at_ms <= now_ms {
                    if !matches!(old.state, LinkState::Approved { .. }) {
                        batch.remove(&p.links, link_key(old.account, &old.code));
                    }
                } else if old.code != link.code {
                    live += 1;
                }
            }
            let stored = live < max_pending;
            if stored {
                batch.insert(&p.links, link_key(link.account, &link.code), encode_link(&link));
            }
            p.commit(batch)?;
            Ok(stored)
        })
        .await
    }

    async fn link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        self.profiles.stored_link(account, code)
    }

    async fn take_link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        let (p, code) = (Arc::clone(&self.profiles), code.to_owned());
        blocking(move || {
            let _guard = p.lock();
            let Some(link) = p.stored_link(account, &code)? else { return Ok(None) };
            let mut batch = p.db.batch();
            batch.remove(&p.links, link_key(account, &code));
            p.commit(batch)?;
            Ok(Some(link))
        })
        .await
    }

    async fn approve_link(
        &self,
        account: AccountId,
        code: &str,
        now_ms: u64,
        collect_by_ms: u64,
        max_devices: u32,
    ) -> StoreResult<Option<Device>> {
        let (p, accounts, code) = (Arc::clone(&self.profiles), Arc::clone(&self.accounts), code.to_owned());
        blocking(move || {
            // Accounts before links, the one order any step takes both in.
            let _devices = accounts.lock();
            let _links = p.lock();
            let Some(link) = p.stored_link(account, &code)? else { return Ok(None) };
            if !link.is_waiting_at(now_ms) {
                return Ok(None);
            }
            // One batch of one database: the device and the approved link commit together.
            let mut batch = p.db.batch();
            let Some(device) =
                accounts.stage_linked_device(&mut batch, account, &link.device_name, now_ms, max_devices)?
            else {
                return Ok(None);
            };
            let approved = PendingLink {
                state: LinkState::Approved { device: device.addr.device },
                expires_at_ms: collect_by_ms,
                ..link
            };
            batch.insert(&p.links, link_key(account, &code), encode_link(&approved));
            accounts.commit(batch)?;
            Ok(Some(device))
        })
        .await
    }

    async fn refuse_link(&self, account: AccountId, code: &str, now_ms: u64) -> StoreResult<bool> {
        let (p, code) = (Arc::clone(&self.profiles), code.to_owned());
        blocking(move || {
            let _guard = p.lock();
            let Some(link) = p.stored_link(account, &code)? else { return Ok(false) };
            if !link.is_waiting_at(now_ms) {
                return Ok(false);
            }
            let mut batch = p.db.batch();
            batch.insert(
                &p.links,
                link_key(account, &code),
                encode_link(&PendingLink { state: LinkState::Refused, ..link }),
            );
            p.commit(batch)?;
            Ok(true)
        })
        .await
    }

    async fn links(&self, account: AccountId) -> StoreResult<Vec<PendingLink>> {
        self.profiles.account_links(account)
    }

    async fn expired_links(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<PendingLink>> {
        let p = Arc::clone(&self.profiles);
        blocking(move || {
            // Links live minutes and are bounded per account, so the whole keyspace is small.
            let mut out = Vec::new();
            for guard in p.links.iter() {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = guard.into_inner().map_err(unavailable)?;
                let Some((account, code)) = key.split_first_chunk::<8>() else { continue };
                let link =
                    decode_link(u64::from_be_bytes(*account), String::from_utf8_lossy(code).into_owned(), &value)?;
                if link.expires_at_ms <= now_ms {
                    out.push(link);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn erase_profile_rows(&self, account: AccountId) -> StoreResult<()> {
        let p = Arc::clone(&self.profiles);
        blocking(move || {
            let _guard = p.lock();
            let mut batch = p.db.batch();
            batch.remove(&p.profiles, account.to_be_bytes());
            batch.remove(&p.pins, account.to_be_bytes());
            for link in p.account_links(account)? {
                batch.remove(&p.links, link_key(account, &link.code));
            }
            p.commit(batch)
        })
        .await
    }
}
