//! Media metadata: blob records (by content hash), the references messages hold on them,
//! resumable upload sessions and per-account upload quotas.
//!
//! The blob bytes themselves never enter the store: the server keeps them in an object store
//! (`object_store`: local files or S3) under their hash. This trait keeps what decides their
//! life: which blobs exist, who references them until when, which uploads are under way.

use async_trait::async_trait;

use crate::{AccountId, StoreResult};

/// A blob's id: the SHA-256 of its stored bytes (content addressing: the same bytes are one
/// blob however often they are uploaded).
pub type MediaId = [u8; 32];

/// An upload session's id: its account (u64 big-endian) ‖ 64 random bits, so engines can keep
/// an upload with its account's other records.
pub type UploadId = [u8; 16];

/// The account an upload id belongs to (its first 8 bytes).
pub fn upload_account(id: &UploadId) -> AccountId {
    let mut account = [0; 8];
    account.copy_from_slice(&id[..8]);
    AccountId::from_be_bytes(account)
}

/// The message id under which `account`'s profile photo holds its media references. Server
/// message ids start with their time, so ids this high are never issued (their time is past
/// 2100) and never reached by [`MediaStore::expire_media_refs`]: a profile photo is kept as
/// long as the profile names it. One id per account, so accounts sharing a photo hold one
/// reference each.
pub fn profile_photo_ref_id(account: AccountId) -> u64 {
    u64::MAX - account
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// SHA-256 of the stored bytes.
    pub id: MediaId,
    /// Stored size.
    pub size_bytes: u64,
    /// The media kind's wire number (`iris.v1.MediaKind`); the store does not interpret it.
    pub kind: u8,
    /// Whether the bytes are client-encrypted.
    pub encrypted: bool,
    /// MIME type.
    pub mime: String,
    /// Pixels, for plaintext images (0 otherwise).
    pub width: u32,
    /// Pixels, for plaintext images (0 otherwise).
    pub height: u32,
    /// The server-made thumbnail of a plaintext image.
    pub thumbnail: Option<MediaId>,
    /// The account whose upload first stored it.
    pub owner: AccountId,
    /// When it was first stored, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was last stored or uploaded again; a blob no message references is collected
    /// only once this is older than the grace period.
    pub touched_at_ms: u64,
}

/// A resumable upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Its id.
    pub id: UploadId,
    /// Who uploads.
    pub account: AccountId,
    /// The client's idempotency key (unique per account).
    pub idempotency_key: String,
    /// The media kind's wire number.
    pub kind: u8,
    /// Declared size.
    pub size_bytes: u64,
    /// Declared SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// Whether the bytes are client-encrypted.
    pub encrypted: bool,
    /// MIME type the client claimed.
    pub mime: String,
    /// Bytes received and made durable so far.
    pub offset: u64,
    /// When it started, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Once finished: the blob it produced.
    pub media: Option<MediaId>,
}

/// Blob records, message references, upload sessions and quotas. Every write is durable when it
/// returns.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// Starts `upload`, unless its account already has an upload with the same idempotency key:
    /// then that one is returned unchanged (a retried start).
    async fn create_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord>;

    /// The upload with this id, if it exists.
    async fn upload(&self, id: UploadId) -> StoreResult<Option<UploadRecord>>;

    /// Records that `offset` bytes of the upload are durable; `media` once it produced a blob.
    /// False if the upload does not exist.
    async fn update_upload(&self, id: UploadId, offset: u64, media: Option<MediaId>) -> StoreResult<bool>;

    /// Forgets an upload (abandoned, refused, or done and past its idempotency window).
    async fn delete_upload(&self, id: UploadId) -> StoreResult<()>;

    /// Uploads started before `created_before_ms`, at most `limit` (for the sweep that deletes
    /// them with their partial bytes).
    async fn stale_uploads(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<UploadRecord>>;

    /// Adds `bytes` to `account`'s usage in the quota window starting at `window_start_ms`,
    /// unless that would exceed `max_bytes`: then nothing is added and the answer is false.
    /// Windows before `window_start_ms` are forgotten on the way.
    async fn charge_quota(
        &self,
        account: AccountId,
        window_start_ms: u64,
        bytes: u64,
        max_bytes: u64,
    ) -> StoreResult<bool>;

    /// Records `blob` if no blob with its id exists (true); otherwise marks the existing one as
    /// touched at `blob.touched_at_ms` and leaves it as it is (false).
    async fn put_blob(&self, blob: BlobRecord) -> StoreResult<bool>;

    /// The blob with this id, if stored.
    async fn blob(&self, id: MediaId) -> StoreResult<Option<BlobRecord>>;

    /// Records that message `server_msg_id`, sent by `account`, references `ids`. Only ids
    /// of stored blobs get a reference; the answer lists the ids that are not stored (nothing
    /// is recorded for them, and the caller refuses the send).
    async fn add_media_refs(
        &self,
        server_msg_id: u64,
        account: AccountId,
        ids: &[MediaId],
    ) -> StoreResult<Vec<MediaId>>;

    /// Deletes the references `server_msg_id` of `account` holds on `ids` (absent ones are
    /// ignored): a profile photo replaced or removed lets its blob go. Returns how many.
    async fn remove_media_refs(&self, server_msg_id: u64, account: AccountId, ids: &[MediaId]) -> StoreResult<u64>;

    /// Number of messages referencing `id`.
    async fn media_ref_count(&self, id: MediaId) -> StoreResult<u64>;

    /// Deletes the references of messages with ids below `before_msg_id` (server message ids
    /// start with their time, so this expires them with the inbox TTL). Returns how many.
    async fn expire_media_refs(&self, before_msg_id: u64) -> StoreResult<u64>;

    /// Deletes every reference held by messages `account` sent (the account is deleted).
    /// Returns how many.
    async fn release_account_media(&self, account: AccountId) -> StoreResult<u64>;

    /// Blobs that no message references and that were last touched before
    /// `touched_before_ms`, at most `limit`: candidates for collection.
    async fn collectable_blobs(&self, touched_before_ms: u64, limit: usize) -> StoreResult<Vec<BlobRecord>>;

    /// Deletes the record of blob `id` if it is still collectable (unreferenced, touched before
    /// `touched_before_ms`); true if deleted, after which the caller deletes the bytes.
    async fn delete_blob(&self, id: MediaId, touched_before_ms: u64) -> StoreResult<bool>;
}
