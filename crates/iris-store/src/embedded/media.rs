//! Media metadata on fjall ([`MediaStore`]): ordinary keyspaces beside the inbox log, written
//! directly with fdatasync'd batches (durable before returning), read-modify-write steps under
//! one mutex. The blob bytes are never here (the server keeps them in an object store).
//!
//! Keyspaces (integers big-endian):
//! - `media_blobs`: media id → blob record (versioned).
//! - `media_refs`: media id ‖ msg id → account; `media_refs_by_msg`: msg id ‖ media id →
//!   account (expiry by id range); `media_refs_by_account`: account ‖ media id ‖ msg id → ∅
//!   (account deletion).
//! - `media_uploads`: upload id → upload record; `media_upload_keys`: account ‖ idempotency
//!   key → upload id.
//! - `media_quota`: account ‖ window start → bytes used.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use super::codec::{Reader, Writer, RECORD_V1};
use super::{blocking, keys, unavailable, FjallStore};
use crate::{AccountId, BlobRecord, MediaId, MediaStore, StoreResult, UploadId, UploadRecord};

/// Media-side state of [`FjallStore`]; cheap to clone.
#[derive(Clone)]
pub(super) struct Media {
    db: Database,
    blobs: Keyspace,
    refs: Keyspace,
    refs_by_msg: Keyspace,
    refs_by_account: Keyspace,
    uploads: Keyspace,
    upload_keys: Keyspace,
    quota: Keyspace,
    /// Serialises read-modify-write steps (idempotent starts, quota, ref checks, collection).
    lock: Arc<Mutex<()>>,
}

impl Media {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let open = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(unavailable);
        Ok(Self {
            blobs: open("media_blobs")?,
            refs: open("media_refs")?,
            refs_by_msg: open("media_refs_by_msg")?,
            refs_by_account: open("media_refs_by_account")?,
            uploads: open("media_uploads")?,
            upload_keys: open("media_upload_keys")?,
            quota: open("media_quota")?,
            db: db.clone(),
            lock: Arc::new(Mutex::new(())),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(batch: OwnedWriteBatch) -> StoreResult<()> {
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    fn blob(&self, id: &MediaId) -> StoreResult<Option<BlobRecord>> {
        self.blobs.get(id).map_err(unavailable)?.map(|v| decode_blob(*id, &v)).transpose()
    }

    fn upload(&self, id: &UploadId) -> StoreResult<Option<UploadRecord>> {
        self.uploads.get(id).map_err(unavailable)?.map(|v| decode_upload(*id, &v)).transpose()
    }

    fn is_referenced(&self, id: &MediaId) -> StoreResult<bool> {
        Ok(self.refs.prefix(id).next().is_some())
    }

    fn remove_ref(&self, batch: &mut OwnedWriteBatch, id: &MediaId, msg: u64, account: AccountId) {
        batch.remove(&self.refs, ref_key(id, msg));
        batch.remove(&self.refs_by_msg, msg_key(msg, id));
        batch.remove(&self.refs_by_account, account_key(account, id, msg));
    }

    fn create_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord> {
        let _g = self.guard();
        let key = upload_key(upload.account, &upload.idempotency_key);
        if let Some(existing) = self.upload_keys.get(&key).map_err(unavailable)? {
            let id: UploadId = keys::array(&existing)?;
            if let Some(found) = self.upload(&id)? {
                return Ok(found);
            }
        }
        let mut batch = self.db.batch();
        batch.insert(&self.uploads, upload.id, encode_upload(&upload));
        batch.insert(&self.upload_keys, key, upload.id);
        Self::commit(batch)?;
        Ok(upload)
    }

    fn update_upload(&self, id: UploadId, offset: u64, media: Option<MediaId>) -> StoreResult<bool> {
        let _g = self.guard();
        let Some(mut upload) = self.upload(&id)? else { return Ok(false) };
        upload.offset = offset;
        upload.media = media.or(upload.media);
        let mut batch = self.db.batch();
        batch.insert(&self.uploads, id, encode_upload(&upload));
        Self::commit(batch)?;
        Ok(true)
    }

    fn delete_upload(&self, id: UploadId) -> StoreResult<()> {
        let _g = self.guard();
        let Some(upload) = self.upload(&id)? else { return Ok(()) };
        let mut batch = self.db.batch();
        batch.remove(&self.uploads, id);
        batch.remove(&self.upload_keys, upload_key(upload.account, &upload.idempotency_key));
        Self::commit(batch)
    }

    fn stale_uploads(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<UploadRecord>> {
        let mut out = Vec::new();
        for guard in self.uploads.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let upload = decode_upload(keys::array(&k)?, &v)?;
            if upload.created_at_ms < created_before_ms {
                out.push(upload);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn charge_quota(&self, account: AccountId, window: u64, bytes: u64, max_bytes: u64) -> StoreResult<bool> {
        let _g = self.guard();
        let key = quota_key(account, window);
        let used = match self.quota.get(key).map_err(unavailable)? {
            Some(v) => u64::from_be_bytes(keys::array(&v)?),
            None => 0,
        };
        let mut batch = self.db.batch();
        // Older windows of this account are done with.
        for guard in self.quota.range(quota_key(account, 0)..quota_key(account, window)) {
            batch.remove(&self.quota, guard.key().map_err(unavailable)?);
        }
        let ok = used.saturating_add(bytes) <= max_bytes;
        if ok {
            batch.insert(&self.quota, key, (used + bytes).to_be_bytes());
        }
        Self::commit(batch)?;
        Ok(ok)
    }

    fn put_blob(&self, blob: BlobRecord) -> StoreResult<bool> {
        let _g = self.guard();
        let (record, created) = match self.blob(&blob.id)? {
            Some(existing) => (BlobRecord { touched_at_ms: blob.touched_at_ms, ..existing }, false),
            None => (blob, true),
        };
        let mut batch = self.db.batch();
        batch.insert(&self.blobs, record.id, encode_blob(&record));
        Self::commit(batch)?;
        Ok(created)
    }

    fn add_refs(&self, msg: u64, account: AccountId, ids: &[MediaId]) -> StoreResult<Vec<MediaId>> {
        let _g = self.guard();
        let mut missing = Vec::new();
        let mut batch = self.db.batch();
        for id in ids {
            if self.blob(id)?.is_none() {
                missing.push(*id);
                continue;
            }
            batch.insert(&self.refs, ref_key(id, msg), account.to_be_bytes());
            batch.insert(&self.refs_by_msg, msg_key(msg, id), account.to_be_bytes());
            batch.insert(&self.refs_by_account, account_key(account, id, msg), []);
        }
        if missing.is_empty() {
            Self::commit(batch)?;
        }
        Ok(missing)
    }

    fn remove_refs(&self, msg: u64, account: AccountId, ids: &[MediaId]) -> StoreResult<u64> {
        let _g = self.guard();
        let mut batch = self.db.batch();
        let mut n = 0;
        for id in ids {
            if self.refs.get(ref_key(id, msg)).map_err(unavailable)?.is_some_and(|v| *v == account.to_be_bytes()) {
                self.remove_ref(&mut batch, id, msg, account);
                n += 1;
            }
        }
        Self::commit(batch)?;
        Ok(n)
    }

    fn expire_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        let _g = self.guard();
        let mut batch = self.db.batch();
        let mut n = 0;
        for guard in self.refs_by_msg.range(..before_msg_id.to_be_bytes()) {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let msg = u64::from_be_bytes(keys::array(k.get(..8).unwrap_or_default())?);
            let id: MediaId = keys::array(k.get(8..).unwrap_or_default())?;
            self.remove_ref(&mut batch, &id, msg, u64::from_be_bytes(keys::array(&v)?));
            n += 1;
        }
        Self::commit(batch)?;
        Ok(n)
    }

    fn release_account(&self, account: AccountId) -> StoreResult<u64> {
        let _g = self.guard();
        let mut batch = self.db.batch();
        let mut n = 0;
        for guard in self.refs_by_account.prefix(account.to_be_bytes()) {
            let k = guard.key().map_err(unavailable)?;
            let id: MediaId = keys::array(k.get(8..40).unwrap_or_default())?;
            let msg = u64::from_be_bytes(keys::array(k.get(40..).unwrap_or_default())?);
            self.remove_ref(&mut batch, &id, msg, account);
            n += 1;
        }
        Self::commit(batch)?;
        Ok(n)
    }

    /// Account erasure: references, uploads and quota windows of `account` go; blobs it
    /// uploaded stay for the messages of others that reference them, their owner cleared.
    pub(super) fn erase_account(&self, account: AccountId) -> StoreResult<()> {
        self.release_account(account)?;
        let _g = self.guard();
        let mut batch = self.db.batch();
        let prefix = account.to_be_bytes();
        for ks in [&self.uploads, &self.upload_keys, &self.quota] {
            for guard in ks.prefix(prefix) {
                batch.remove(ks, guard.key().map_err(unavailable)?);
            }
        }
        for guard in self.blobs.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let mut blob = decode_blob(keys::array(&k)?, &v)?;
            if blob.owner == account {
                blob.owner = 0;
                batch.insert(&self.blobs, k, encode_blob(&blob));
            }
        }
        Self::commit(batch)
    }

    fn collectable(&self, touched_before_ms: u64, limit: usize) -> StoreResult<Vec<BlobRecord>> {
        let mut out = Vec::new();
        for guard in self.blobs.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let blob = decode_blob(keys::array(&k)?, &v)?;
            if blob.touched_at_ms < touched_before_ms && !self.is_referenced(&blob.id)? {
                out.push(blob);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn delete_blob(&self, id: MediaId, touched_before_ms: u64) -> StoreResult<bool> {
        let _g = self.guard();
        match self.blob(&id)? {
            Some(b) if b.touched_at_ms < touched_before_ms && !self.is_referenced(&id)? => {
                let mut batch = self.db.batch();
                batch.remove(&self.blobs, id);
                Self::commit(batch)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn ref_key(id: &MediaId, msg: u64) -> [u8; 40] {
    let mut k = [0; 40];
    k[..32].copy_from_slice(id);
    k[32..].copy_from_slice(&msg.to_be_bytes());
    k
}

fn msg_key(msg: u64, id: &MediaId) -> [u8; 40] {
    let mut k = [0; 40];
    k[..8].copy_from_slice(&msg.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

fn account_key(account: AccountId, id: &MediaId, msg: u64) -> [u8; 48] {
    let mut k = [0; 48];
    k[..8].copy_from_slice(&account.to_be_bytes());
    k[8..40].copy_from_slice(id);
    k[40..].copy_from_slice(&msg.to_be_bytes());
    k
}

fn upload_key(account: AccountId, idempotency_key: &str) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.extend_from_slice(idempotency_key.as_bytes());
    k
}

fn quota_key(account: AccountId, window: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&account.to_be_bytes());
    k[8..].copy_from_slice(&window.to_be_bytes());
    k
}

fn encode_blob(b: &BlobRecord) -> Vec<u8> {
    let mut w = Writer::new(RECORD_V1)
        .u64(b.size_bytes)
        .u8(b.kind)
        .u8(u8::from(b.encrypted))
        .str(&b.mime)
        .u32(b.width)
        .u32(b.height)
        .u8(u8::from(b.thumbnail.is_some()));
    w.0.extend_from_slice(&b.thumbnail.unwrap_or_default());
    w.u64(b.owner).u64(b.created_at_ms).u64(b.touched_at_ms).0
}

fn decode_blob(id: MediaId, value: &[u8]) -> StoreResult<BlobRecord> {
    let mut r = Reader::versioned(value, "media blob")?;
    let size_bytes = r.u64()?;
    let kind = r.u8()?;
    let encrypted = r.bool()?;
    let mime = r.str()?;
    let (width, height) = (r.u32()?, r.u32()?);
    let has_thumbnail = r.bool()?;
    let thumbnail: MediaId = keys::array(r.take(32)?)?;
    let (owner, created_at_ms, touched_at_ms) = (r.u64()?, r.u64()?, r.u64()?);
    r.end()?;
    Ok(BlobRecord {
        id,
        size_bytes,
        kind,
        encrypted,
        mime,
        width,
        height,
        thumbnail: has_thumbnail.then_some(thumbnail),
        owner,
        created_at_ms,
        touched_at_ms,
    })
}

fn encode_upload(u: &UploadRecord) -> Vec<u8> {
    let mut w = Writer::new(RECORD_V1).u64(u.account).str(&u.idempotency_key).u8(u.kind).u64(u.size_bytes);
    w.0.extend_from_slice(&u.sha256);
    let mut w =
        w.u8(u8::from(u.encrypted)).str(&u.mime).u64(u.offset).u64(u.created_at_ms).u8(u8::from(u.media.is_some()));
    w.0.extend_from_slice(&u.media.unwrap_or_default());
    w.0
}

fn decode_upload(id: UploadId, value: &[u8]) -> StoreResult<UploadRecord> {
    let mut r = Reader::versioned(value, "media upload")?;
    let account = r.u64()?;
    let idempotency_key = r.str()?;
    let kind = r.u8()?;
    let size_bytes = r.u64()?;
    let sha256 = keys::array(r.take(32)?)?;
    let encrypted = r.bool()?;
    let mime = r.str()?;
    let (offset, created_at_ms) = (r.u64()?, r.u64()?);
    let done = r.bool()?;
    let media: MediaId = keys::array(r.take(32)?)?;
    r.end()?;
    Ok(UploadRecord {
        id,
        account,
        idempotency_key,
        kind,
        size_bytes,
        sha256,
        encrypted,
        mime,
        offset,
        created_at_ms,
        media: done.then_some(media),
    })
}

#[async_trait]
impl MediaStore for FjallStore {
    async fn create_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord> {
        let m = self.media.clone();
        blocking(move || m.create_upload(upload)).await
    }

    async fn upload(&self, id: UploadId) -> StoreResult<Option<UploadRecord>> {
        self.media.upload(&id)
    }

    async fn update_upload(&self, id: UploadId, offset: u64, media: Option<MediaId>) -> StoreResult<bool> {
        let m = self.media.clone();
        blocking(move || m.update_upload(id, offset, media)).await
    }

    async fn delete_upload(&self, id: UploadId) -> StoreResult<()> {
        let m = self.media.clone();
        blocking(move || m.delete_upload(id)).await
    }

    async fn stale_uploads(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<UploadRecord>> {
        let m = self.media.clone();
        blocking(move || m.stale_uploads(created_before_ms, limit)).await
    }

    async fn charge_quota(
        &self,
        account: AccountId,
        window_start_ms: u64,
        bytes: u64,
        max_bytes: u64,
    ) -> StoreResult<bool> {
        let m = self.media.clone();
        blocking(move || m.charge_quota(account, window_start_ms, bytes, max_bytes)).await
    }

    async fn put_blob(&self, blob: BlobRecord) -> StoreResult<bool> {
        let m = self.media.clone();
        blocking(move || m.put_blob(blob)).await
    }

    async fn blob(&self, id: MediaId) -> StoreResult<Option<BlobRecord>> {
        self.media.blob(&id)
    }

    async fn add_media_refs(
        &self,
        server_msg_id: u64,
        account: AccountId,
        ids: &[MediaId],
    ) -> StoreResult<Vec<MediaId>> {
        let (m, ids) = (self.media.clone(), ids.to_vec());
        blocking(move || m.add_refs(server_msg_id, account, &ids)).await
    }

    async fn remove_media_refs(&self, server_msg_id: u64, account: AccountId, ids: &[MediaId]) -> StoreResult<u64> {
        let (m, ids) = (self.media.clone(), ids.to_vec());
        blocking(move || m.remove_refs(server_msg_id, account, &ids)).await
    }

    async fn media_ref_count(&self, id: MediaId) -> StoreResult<u64> {
        Ok(self.media.refs.prefix(id).count() as u64)
    }

    async fn expire_media_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        let m = self.media.clone();
        blocking(move || m.expire_refs(before_msg_id)).await
    }

    async fn release_account_media(&self, account: AccountId) -> StoreResult<u64> {
        let m = self.media.clone();
        blocking(move || m.release_account(account)).await
    }

    async fn collectable_blobs(&self, touched_before_ms: u64, limit: usize) -> StoreResult<Vec<BlobRecord>> {
        let m = self.media.clone();
        blocking(move || m.collectable(touched_before_ms, limit)).await
    }

    async fn delete_blob(&self, id: MediaId, touched_before_ms: u64) -> StoreResult<bool> {
        let m = self.media.clone();
        blocking(move || m.delete_blob(id, touched_before_ms)).await
    }
}
