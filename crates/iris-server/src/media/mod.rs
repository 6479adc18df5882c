//! The media service: resumable uploads into content-addressed blobs, signed downloads, and the
//! sweep that forgets abandoned uploads and collects blobs no message references.
//!
//! An upload is started with its kind, size, SHA-256 and an idempotency key (limits per kind,
//! the hourly quota and the upload rate are checked then); its bytes arrive in `PATCH` chunks
//! at an offset, each streamed to a staging file on disk and synced before the offset moves
//! (`staging.rs`), so a dropped connection loses nothing that arrived and the client continues
//! from the offset it asks for. When the last byte is in, the whole file is hashed and compared,
//! a plaintext file is sniffed against its kind (`iris_proto::media`), a plaintext image is
//! re-encoded without metadata with a thumbnail (`image.rs`), and the bytes go to the blob store
//! (`blobs.rs`) under their hash, unless a blob with that hash is stored already. Downloads are
//! signed URLs (`signing.rs`) served with ranges and ETags (`download.rs`).
//!
//! Knows the store's media records, the blob store, the clock and the metrics; nothing of
//! messages (references are recorded by `media_refs.rs` on the send path), sockets or sessions.
//! **Invariant:** no blob is ever held whole in memory, except plaintext images, which are
//! bounded by `media.image_bytes_max` and the decoder's limits.

pub mod blobs;
pub mod download;
pub mod image;
pub mod s3_http;
pub mod signing;
pub mod staging;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use iris_proto::http::{MediaInfo, UploadRequest, UploadState};
use iris_proto::media::{kind_from_name, kind_matches, kind_name, sniff};
use iris_proto::pb::MediaKind;
use iris_store::{upload_account, AccountId, BlobRecord, MediaId, MediaStore, UploadId, UploadRecord};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::config::MediaConfig;
use crate::error::ServiceError;
use crate::ids::IdGenerator;
use crate::metrics::Metrics;
use crate::ratelimit::KeyedLimit;
use blobs::{BlobError, Blobs};
use signing::UrlSigner;
use staging::{BodyEnd, Staging};

/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Blobs collected and uploads forgotten per sweep step.
const SWEEP_BATCH: usize = 1000;
/// One hour, the quota window.
const HOUR_MS: u64 = 3_600_000;
/// Running hashes kept between an upload's chunks (about 100 bytes each); when full they are
/// dropped and those uploads are hashed from their file at the end instead.
const RUNNING_HASHES_MAX: usize = 4096;

/// The parts the media service is built from.
pub struct MediaDeps {
    /// Media records.
    pub store: Arc<dyn MediaStore>,
    /// The blob bytes.
    pub blobs: Blobs,
    /// Partial uploads on this node.
    pub staging: Staging,
    /// Signs download URLs.
    pub signer: UrlSigner,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Metrics of this node.
    pub metrics: Arc<Metrics>,
    /// Upload starts per account.
    pub upload_limit: Option<KeyedLimit<AccountId>>,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Abandoned (or done and old) uploads forgotten.
    pub uploads: u64,
    /// Message references expired with the inbox TTL.
    pub refs: u64,
    /// Unreferenced blobs deleted.
    pub blobs: u64,
}

/// The media service of one node.
pub struct Media {
    deps: MediaDeps,
    config: MediaConfig,
    /// Bounds the upload bodies received at once (`media.uploads_in_progress_max`).
    in_progress: Semaphore,
    /// Uploads with a body being received right now: one body per upload at a time.
    active: Mutex<HashSet<UploadId>>,
    /// The SHA-256 of each upload's bytes so far, with the offset it covers, for uploads whose
    /// chunks all arrived on this node since its start: the end needs no second read.
    hashes: Mutex<std::collections::HashMap<UploadId, (u64, Sha256)>>,
}

/// Removes an upload from the active set when its body is done, however it ends.
struct ActiveGuard<'a> {
    media: &'a Media,
    id: UploadId,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.media.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        self.media.deps.metrics.media_uploads_in_progress.dec();
    }
}

impl Media {
    /// The service over these parts.
    pub fn new(deps: MediaDeps, config: MediaConfig) -> Self {
        let in_progress = Semaphore::new(config.uploads_in_progress_max);
        Self { deps, config, in_progress, active: Mutex::new(HashSet::new()), hashes: Mutex::default() }
    }

    /// The blob store (bench and tests read it).
    pub fn blobs(&self) -> &Blobs {
        &self.deps.blobs
    }

    fn kind_limit(&self, kind: MediaKind) -> u64 {
        let c = &self.config;
        match kind {
            MediaKind::Image => c.image_bytes_max,
            MediaKind::Voice => c.voice_bytes_max,
            MediaKind::Video => c.video_bytes_max,
            MediaKind::Document => c.document_bytes_max,
            MediaKind::Thumbnail => c.thumbnail_bytes_max,
            MediaKind::Unspecified => 0,
        }
    }

    /// Starts an upload for `account`, or answers the one started with the same idempotency key.
    pub async fn start_upload(&self, account: AccountId, req: UploadRequest) -> Result<UploadState, ServiceError> {
        let invalid = |m: &str| ServiceError::InvalidArgument(m.to_owned());
        let kind = kind_from_name(&req.kind)
            .ok_or_else(|| invalid("kind must be image, voice, video, document or thumbnail"))?;
        if req.idempotency_key.is_empty() || req.idempotency_key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(invalid("idempotency_key must be 1 to 128 bytes"));
        }
        let sha256 = parse_hex32(&req.sha256).ok_or_else(|| invalid("sha256 must be 64 hex digits"))?;
        if req.size_bytes == 0 {
            return Err(invalid("size_bytes must be positive"));
        }
        let max = self.kind_limit(kind);
        if req.size_bytes > max {
            return Err(ServiceError::MediaTooLarge { what: kind_name(kind), size: req.size_bytes, max });
        }
        if req.mime.len() > 255 {
            return Err(invalid("mime is longer than 255 bytes"));
        }
        crate::ratelimit::check(&self.deps.upload_limit, &account)?;
        let now = self.deps.clock.now_ms();
        let mut id: UploadId = [0; 16];
        id[..8].copy_from_slice(&account.to_be_bytes());
        id[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        let record = UploadRecord {
            id,
            account,
            idempotency_key: req.idempotency_key,
            kind: kind as u8,
            size_bytes: req.size_bytes,
            sha256,
            encrypted: req.encrypted,
            mime: req.mime,
            offset: 0,
            created_at_ms: now,
            media: None,
        };
        let upload = self.deps.store.create_upload(record).await?;
        if upload.id != id {
            return self.state_of(&upload).await;
        }
        let window = now - now % HOUR_MS;
        let max_bytes = self.config.quota_per_account_per_hour_mb.saturating_mul(1 << 20);
        if !self.deps.store.charge_quota(account, window, req.size_bytes, max_bytes).await? {
            self.deps.store.delete_upload(id).await?;
            let retry_after_ms = u32::try_from(window + HOUR_MS - now).unwrap_or(u32::MAX);
            return Err(ServiceError::MediaQuotaExceeded {
                max_mb: self.config.quota_per_account_per_hour_mb,
                retry_after_ms,
            });
        }
        self.state_of(&upload).await
    }

    /// Where `account`'s upload `upload_hex` stands.
    pub async fn upload_state(&self, account: AccountId, upload_hex: &str) -> Result<UploadState, ServiceError> {
        let upload = self.load_upload(account, upload_hex).await?;
        self.state_of(&upload).await
    }

    /// Appends a chunk starting at `offset` to `account`'s upload `upload_hex`; when it
    /// completes the upload, checks and stores the blob.
    pub async fn write_chunk<S, E>(
        &self,
        account: AccountId,
        upload_hex: &str,
        offset: u64,
        body: S,
    ) -> Result<UploadState, ServiceError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let upload = self.load_upload(account, upload_hex).await?;
        if upload.media.is_some() {
            return self.state_of(&upload).await;
        }
        if offset != upload.offset {
            return Err(ServiceError::MediaOffsetMismatch { offset: upload.offset, sent: offset });
        }
        let _permit = self.in_progress.try_acquire().map_err(|_| ServiceError::Overloaded { retry_after_ms: 1000 })?;
        let _active = self.activate(upload.id, upload.offset)?;
        let metrics = &self.deps.metrics;
        let remaining = upload.size_bytes - upload.offset;
        let mut hasher = self.take_hash(upload.id, upload.offset);
        let (written, end) = self
            .deps
            .staging
            .append(upload_hex, offset, remaining, body, |piece| {
                metrics.media_bytes_in.inc_by(piece.len() as u64);
                if let Some(h) = &mut hasher {
                    h.update(piece);
                }
            })
            .await
            .map_err(internal("staging an upload"))?;
        if let BodyEnd::TooLong = end {
            return Err(ServiceError::MediaTooLarge {
                what: "upload body",
                size: upload.offset + written + 1,
                max: upload.size_bytes,
            });
        }
        let new_offset = upload.offset + written;
        self.deps.store.update_upload(upload.id, new_offset, None).await?;
        if let Some(h) = hasher {
            self.keep_hash(upload.id, new_offset, h);
        }
        if let BodyEnd::Interrupted(why) = end {
            return Err(ServiceError::InvalidArgument(format!(
                "the body ended early ({why}); the upload stands at offset {new_offset}"
            )));
        }
        let upload = UploadRecord { offset: new_offset, ..upload };
        if new_offset < upload.size_bytes {
            return self.state_of(&upload).await;
        }
        let media = self.finish(&upload, upload_hex).await?;
        self.deps.store.update_upload(upload.id, new_offset, Some(media)).await?;
        self.deps.staging.remove(upload_hex).await;
        self.state_of(&UploadRecord { media: Some(media), ..upload }).await
    }

    /// The running hash of upload `id` if it covers exactly its first `offset` bytes (a fresh
    /// one at offset 0).
    fn take_hash(&self, id: UploadId, offset: u64) -> Option<Sha256> {
        let mut hashes = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
        match hashes.remove(&id) {
            Some((covered, h)) if covered == offset => Some(h),
            _ => (offset == 0).then(Sha256::new),
        }
    }

    fn keep_hash(&self, id: UploadId, offset: u64, h: Sha256) {
        let mut hashes = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
        if hashes.len() >= RUNNING_HASHES_MAX {
            hashes.clear();
        }
        hashes.insert(id, (offset, h));
    }

    /// Marks `id` as receiving a body, or refuses a second body for it.
    fn activate(&self, id: UploadId, offset: u64) -> Result<ActiveGuard<'_>, ServiceError> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if !active.insert(id) {
            // The previous body (perhaps of a connection that dropped unnoticed) is still
            // being received: the client asks again and continues from the offset then.
            return Err(ServiceError::MediaOffsetMismatch { offset, sent: offset });
        }
        self.deps.metrics.media_uploads_in_progress.inc();
        Ok(ActiveGuard { media: self, id })
    }

    /// Checks the complete staging file and stores its blob; on a refusal the upload is gone.
    async fn finish(&self, upload: &UploadRecord, upload_hex: &str) -> Result<MediaId, ServiceError> {
        // The running hash when every chunk arrived here, else one read of the whole file.
        let running = {
            let mut hashes = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
            hashes.remove(&upload.id).filter(|(covered, _)| *covered == upload.size_bytes).map(|(_, h)| h)
        };
        let (digest, head) = match running {
            Some(h) => {
                let head = self.deps.staging.head(upload_hex).await.map_err(internal("reading an upload"))?;
                (h.finalize().into(), head)
            }
            None => self.deps.staging.digest(upload_hex).await.map_err(internal("hashing an upload"))?,
        };
        let refused = |e: ServiceError| async move {
            let _ = self.deps.store.delete_upload(upload.id).await;
            self.deps.staging.remove(upload_hex).await;
            Err(e)
        };
        if digest != upload.sha256 {
            let e =
                ServiceError::MediaHashMismatch { declared: hex::encode(upload.sha256), actual: hex::encode(digest) };
            return refused(e).await;
        }
        let kind = MediaKind::try_from(i32::from(upload.kind)).unwrap_or(MediaKind::Unspecified);
        let sniffed = sniff(&head);
        if !upload.encrypted && !kind_matches(kind, &head) {
            let found = sniffed.map_or_else(|| "not a known media format".to_owned(), |s| s.mime.to_owned());
            return refused(ServiceError::MediaKindMismatch { declared: kind_name(kind), found }).await;
        }
        let now = self.deps.clock.now_ms();
        let base = BlobRecord {
            id: digest,
            size_bytes: upload.size_bytes,
            kind: upload.kind,
            encrypted: upload.encrypted,
            mime: match (upload.encrypted, sniffed) {
                (false, Some(s)) => s.mime.to_owned(),
                _ if !upload.mime.is_empty() => upload.mime.clone(),
                _ => "application/octet-stream".to_owned(),
            },
            width: 0,
            height: 0,
            thumbnail: None,
            owner: upload.account,
            created_at_ms: now,
            touched_at_ms: now,
        };
        if upload.encrypted || kind != MediaKind::Image {
            let path = self.deps.staging.path(upload_hex);
            self.store_blob(base, BlobSource::File(path)).await?;
            return Ok(digest);
        }
        let bounds = image::ImageBounds {
            dimension_px_max: self.config.image_dimension_px_max,
            decode_bytes_max: self.config.image_decode_bytes_max,
            timeout: Duration::from_millis(self.config.image_decode_timeout_ms),
            thumbnail_px_max: self.config.thumbnail_dimension_px_max,
        };
        let processed = match image::process(&self.deps.staging.path(upload_hex), bounds).await {
            Ok(p) => p,
            Err(why) => return refused(ServiceError::MediaRejected(why)).await,
        };
        let thumbnail_id: MediaId = Sha256::digest(&processed.thumbnail).into();
        let thumbnail = BlobRecord {
            id: thumbnail_id,
            size_bytes: processed.thumbnail.len() as u64,
            kind: MediaKind::Thumbnail as u8,
            mime: "image/jpeg".into(),
            ..base.clone()
        };
        self.store_blob(thumbnail, BlobSource::Bytes(processed.thumbnail)).await?;
        let id: MediaId = Sha256::digest(&processed.bytes).into();
        let image = BlobRecord {
            id,
            size_bytes: processed.bytes.len() as u64,
            mime: processed.mime.into(),
            width: processed.width,
            height: processed.height,
            thumbnail: Some(thumbnail_id),
            ..base
        };
        self.store_blob(image, BlobSource::Bytes(processed.bytes)).await?;
        Ok(id)
    }

    /// Stores the bytes of `record` unless a blob with its hash is stored already (then only
    /// touches it): content addressing. The record is written after the bytes, so a record
    /// always has its bytes.
    async fn store_blob(&self, record: BlobRecord, source: BlobSource) -> Result<(), ServiceError> {
        let id_hex = hex::encode(record.id);
        let stored = self.deps.store.blob(record.id).await?.is_some();
        if !stored || !self.deps.blobs.exists(&id_hex).await.map_err(blob_error)? {
            match source {
                BlobSource::File(path) => self.deps.blobs.put_file(&id_hex, &path).await,
                BlobSource::Bytes(bytes) => self.deps.blobs.put_bytes(&id_hex, bytes).await,
            }
            .map_err(blob_error)?;
        }
        let size = record.size_bytes;
        if self.deps.store.put_blob(record).await? {
            self.deps.metrics.media_stored_bytes.inc_by(size as i64);
        }
        Ok(())
    }

    async fn load_upload(&self, account: AccountId, upload_hex: &str) -> Result<UploadRecord, ServiceError> {
        let not_found = ServiceError::NotFound("upload");
        let id: UploadId = hex::decode(upload_hex).ok().and_then(|b| b.try_into().ok()).ok_or(not_found.clone())?;
        if upload_account(&id) != account {
            return Err(not_found);
        }
        self.deps.store.upload(id).await?.ok_or(not_found)
    }

    async fn state_of(&self, upload: &UploadRecord) -> Result<UploadState, ServiceError> {
        let media = match upload.media {
            Some(id) => Some(self.info(id).await?),
            None => None,
        };
        Ok(UploadState {
            upload_id: hex::encode(upload.id),
            offset: upload.offset,
            size_bytes: upload.size_bytes,
            media,
        })
    }

    /// The metadata of blob `id`.
    pub async fn info(&self, id: MediaId) -> Result<MediaInfo, ServiceError> {
        let blob = self.deps.store.blob(id).await?.ok_or(ServiceError::NotFound("media"))?;
        Ok(info_of(&blob))
    }

    /// A signed URL for blob `id_hex`, valid for `media.url_ttl_s`. Any authenticated device
    /// may ask: a media id is the hash of the bytes, so only someone who was given it (in a
    /// message) or has the bytes can name it.
    pub async fn signed_url(&self, id_hex: &str) -> Result<iris_proto::http::MediaUrl, ServiceError> {
        let id = parse_hex32(id_hex).ok_or(ServiceError::NotFound("media"))?;
        let media = self.info(id).await?;
        let expires_at_ms = self.deps.clock.now_ms() + self.config.url_ttl_s * 1000;
        let sig = self.deps.signer.sign(id_hex, expires_at_ms);
        Ok(iris_proto::http::MediaUrl {
            url: format!("/v1/media/{id_hex}?exp={expires_at_ms}&sig={sig}"),
            expires_at_ms,
            media,
        })
    }

    /// Forgets uploads older than `media.upload_ttl_hours` (with their staging files), expires
    /// references of messages older than `inbox_ttl_ms`, and deletes blobs no message
    /// references that were untouched for `media.gc_grace_hours`.
    pub async fn sweep(&self, inbox_ttl_ms: u64) -> Result<SweepReport, ServiceError> {
        let now = self.deps.clock.now_ms();
        let mut report = SweepReport::default();
        let cutoff = now.saturating_sub(self.config.upload_ttl_hours * HOUR_MS);
        loop {
            let stale = self.deps.store.stale_uploads(cutoff, SWEEP_BATCH).await?;
            for upload in &stale {
                self.deps.store.delete_upload(upload.id).await?;
                self.deps.staging.remove(&hex::encode(upload.id)).await;
                self.hashes.lock().unwrap_or_else(|p| p.into_inner()).remove(&upload.id);
            }
            report.uploads += stale.len() as u64;
            if stale.len() < SWEEP_BATCH {
                break;
            }
        }
        report.refs =
            self.deps.store.expire_media_refs(IdGenerator::floor_of(now.saturating_sub(inbox_ttl_ms))).await?;
        let touched_before = now.saturating_sub(self.config.gc_grace_hours * HOUR_MS);
        loop {
            let blobs = self.deps.store.collectable_blobs(touched_before, SWEEP_BATCH).await?;
            let mut deleted = 0;
            for blob in &blobs {
                if self.deps.store.delete_blob(blob.id, touched_before).await? {
                    self.deps.blobs.delete(&hex::encode(blob.id)).await.map_err(blob_error)?;
                    self.deps.metrics.media_stored_bytes.dec_by(blob.size_bytes as i64);
                    deleted += 1;
                }
            }
            report.blobs += deleted;
            if blobs.len() < SWEEP_BATCH || deleted == 0 {
                break;
            }
        }
        self.recount_storage().await;
        Ok(report)
    }

    /// Sets the stored-bytes gauge from a listing of the blob store.
    async fn recount_storage(&self) {
        use futures_util::StreamExt;
        let mut total = 0u64;
        let mut listing = self.deps.blobs.list();
        while let Some(item) = listing.next().await {
            match item {
                Ok((_, size)) => total += size,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the media store");
                    return;
                }
            }
        }
        self.deps.metrics.media_stored_bytes.set(total as i64);
    }

    /// Deletes every reference held by `account`'s messages (the account is being deleted);
    /// its blobs are then collected like any unreferenced blob.
    pub async fn release_account(&self, account: AccountId) -> Result<u64, ServiceError> {
        Ok(self.deps.store.release_account_media(account).await?)
    }

    /// The parts downloads need.
    pub(crate) fn download_parts(&self) -> (&UrlSigner, &Blobs, &Arc<dyn MediaStore>, &Arc<dyn Clock>, &Metrics) {
        (&self.deps.signer, &self.deps.blobs, &self.deps.store, &self.deps.clock, &self.deps.metrics)
    }
}

/// Where a blob's bytes come from.
enum BlobSource {
    /// A complete staging file.
    File(PathBuf),
    /// Bytes made by the server (bounded: re-encoded images, thumbnails).
    Bytes(Vec<u8>),
}

/// The HTTP view of a blob record.
pub fn info_of(blob: &BlobRecord) -> MediaInfo {
    let kind = MediaKind::try_from(i32::from(blob.kind)).unwrap_or(MediaKind::Unspecified);
    MediaInfo {
        media_id: hex::encode(blob.id),
        kind: kind_name(kind).to_owned(),
        size_bytes: blob.size_bytes,
        mime: blob.mime.clone(),
        encrypted: blob.encrypted,
        width: blob.width,
        height: blob.height,
        thumbnail_id: blob.thumbnail.map(hex::encode),
    }
}

/// 32 bytes from 64 hex digits (either case).
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

fn internal(what: &'static str) -> impl Fn(std::io::Error) -> ServiceError {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        ServiceError::Unavailable
    }
}

fn blob_error(e: BlobError) -> ServiceError {
    tracing::error!(error = %e, "media blob store failed");
    ServiceError::Unavailable
}
