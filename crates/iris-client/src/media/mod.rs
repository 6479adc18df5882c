//! Media for apps: send a file as a message's media, save a received message's media.
//!
//! Sending: the file's kind and MIME type are sniffed from its first bytes; by default it is
//! encrypted with a fresh key (`crypto.rs`) and the ciphertext uploaded (`transfer.rs`), with
//! an optional client-made thumbnail encrypted and uploaded beside it; in plaintext mode the
//! file goes up as it is and the server strips metadata and makes the thumbnail. The result is a
//! [`pb::MediaRef`] for the message's payload (a [`pb::MediaMessage`], carrying the keys) and
//! the ids for `SendMessage.media_ids` (what the server sees and counts as references).
//!
//! Receiving: a message whose `media_ids` is set carries a `MediaMessage` payload; each
//! `MediaRef` is downloaded (resuming by range), decrypted and checked against its hash.

pub mod crypto;
pub mod transfer;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use iris_proto::media::{kind_from_name, kind_name, sniff, SNIFF_BYTES};
use iris_proto::pb::{self, MediaKind};
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::ClientError;
pub use transfer::{MediaApi, UploadSpec};

/// How to send a file.
#[derive(Debug, Clone, Default)]
pub struct MediaOptions {
    /// Encrypt on the client (the server stores ciphertext). False: plaintext mode.
    pub plaintext: bool,
    /// The kind to declare; by default sniffed from the bytes (anything unknown is a document).
    pub kind: Option<MediaKind>,
    /// Encrypted mode: a thumbnail the app made (JPEG), encrypted and uploaded beside the file.
    pub thumbnail: Option<Vec<u8>>,
    /// Pixels, when the app knows them (plaintext images: the server fills them in).
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Voice and video length.
    pub duration_ms: u32,
}

/// A file uploaded as media: what goes in the payload and what goes in `media_ids`.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// For the payload's [`pb::MediaMessage`].
    pub media: pb::MediaRef,
    /// For `SendMessage.media_ids`: the blob and its thumbnail.
    pub media_ids: Vec<String>,
}

/// A unique scratch file for encrypted copies.
fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("iris-{tag}-{}.tmp", hex::encode(rand::random::<[u8; 8]>())))
}

/// Removes its file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn head_and_hash(path: &Path) -> Result<(Vec<u8>, [u8; 32]), ClientError> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if head.len() < SNIFF_BYTES {
            head.extend_from_slice(&buf[..n.min(SNIFF_BYTES - head.len())]);
        }
        hasher.update(&buf[..n]);
    }
    Ok((head, hasher.finalize().into()))
}

/// Uploads the file at `path` as media; `progress(sent, total)` hears the upload.
pub async fn upload_media(
    api: &MediaApi,
    path: &Path,
    options: &MediaOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Uploaded, ClientError> {
    let (head, plain_sha) = head_and_hash(path).await?;
    let sniffed = sniff(&head);
    let kind = options.kind.unwrap_or_else(|| sniffed.map_or(MediaKind::Document, |s| s.kind));
    let mime = sniffed.map_or("application/octet-stream", |s| s.mime).to_owned();
    let size_bytes = tokio::fs::metadata(path).await?.len();
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let key_of = |sha: &[u8; 32]| hex::encode(&sha[..16]);
    let mut media = pb::MediaRef {
        kind: kind as i32,
        size_bytes,
        sha256: Bytes::copy_from_slice(&plain_sha),
        mime: mime.clone(),
        width: options.width,
        height: options.height,
        duration_ms: options.duration_ms,
        file_name,
        ..Default::default()
    };
    if options.plaintext {
        let spec =
            UploadSpec { kind: kind_name(kind).into(), encrypted: false, mime, idempotency_key: key_of(&plain_sha) };
        let info = api.upload_file(path, plain_sha, &spec, progress).await?;
        media.media_id = info.media_id.clone();
        // The server may have re-encoded an image: the stored bytes are what recipients check.
        media.sha256 = Bytes::from(hex::decode(&info.media_id).unwrap_or_default());
        media.size_bytes = info.size_bytes;
        media.mime = info.mime;
        (media.width, media.height) = (info.width.max(media.width), info.height.max(media.height));
        media.thumbnail_id = info.thumbnail_id.unwrap_or_default();
    } else {
        let blob = Scratch(scratch("media"));
        let sealed = crypto::encrypt_file(path, &blob.0).await.map_err(|e| ClientError::Media(e.to_string()))?;
        let spec = UploadSpec {
            kind: kind_name(kind).into(),
            encrypted: true,
            mime: "application/octet-stream".into(),
            idempotency_key: key_of(&sealed.blob_sha256),
        };
        let info = api.upload_file(&blob.0, sealed.blob_sha256, &spec, progress).await?;
        media.media_id = info.media_id;
        media.key = Bytes::copy_from_slice(&sealed.key);
        if let Some(thumb) = &options.thumbnail {
            let key: [u8; 32] = rand::random();
            let sealed_thumb = crypto::encrypt_bytes(thumb, key);
            let file = Scratch(scratch("thumb"));
            tokio::fs::write(&file.0, &sealed_thumb).await?;
            let sha: [u8; 32] = Sha256::digest(&sealed_thumb).into();
            let spec = UploadSpec {
                kind: kind_name(MediaKind::Thumbnail).into(),
                encrypted: true,
                mime: "application/octet-stream".into(),
                idempotency_key: key_of(&sha),
            };
            let info = api.upload_file(&file.0, sha, &spec, &|_, _| {}).await?;
            media.thumbnail_id = info.media_id;
            media.thumbnail_key = Bytes::copy_from_slice(&key);
        }
    }
    let media_ids = ids_of_ref(&media).cloned().collect();
    Ok(Uploaded { media, media_ids })
}

/// The payload of a media message.
pub fn media_payload(media: Vec<pb::MediaRef>, caption: &str) -> Bytes {
    Bytes::from(pb::MediaMessage { media, caption: caption.to_owned() }.encode_to_vec())
}

/// What a message carrying `media` names in `media_ids`: every blob and its thumbnail, each
/// once, in order. A forward names them again, so each copy holds references of its own.
pub fn ids_of(media: &pb::MediaMessage) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in media.media.iter().flat_map(ids_of_ref) {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

/// The ids one medium names: its blob, and its thumbnail when it has one.
fn ids_of_ref(media: &pb::MediaRef) -> impl Iterator<Item = &String> {
    [&media.media_id, &media.thumbnail_id].into_iter().filter(|id| !id.is_empty())
}

/// The media of a received message: `Some` when its `media_ids` is set and its payload decodes.
pub fn media_of(message: &pb::Message) -> Option<pb::MediaMessage> {
    decode_media(&message.media_ids, &message.payload)
}

/// The media of a received group message, as [`media_of`].
pub fn group_media_of(message: &pb::GroupMessage) -> Option<pb::MediaMessage> {
    decode_media(&message.media_ids, &message.payload)
}

fn decode_media(media_ids: &[String], payload: &Bytes) -> Option<pb::MediaMessage> {
    if media_ids.is_empty() {
        return None;
    }
    pb::MediaMessage::decode(payload.clone()).ok()
}

/// A short human description: `[photo 1280×960, 312 KiB]`, `[video …]`, `[document name.pdf …]`.
pub fn describe(media: &pb::MediaRef) -> String {
    let kind = MediaKind::try_from(media.kind).unwrap_or(MediaKind::Document);
    let word = match kind {
        MediaKind::Image | MediaKind::Thumbnail => "photo",
        MediaKind::Voice => "voice",
        MediaKind::Video => "video",
        _ => "document",
    };
    let size = match media.size_bytes {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n => format!("{} KiB", n.div_ceil(1024)),
    };
    let mut parts = vec![word.to_owned()];
    if kind == MediaKind::Document && !media.file_name.is_empty() {
        parts.push(media.file_name.clone());
    }
    if media.width > 0 && media.height > 0 {
        parts.push(format!("{}×{}", media.width, media.height));
    }
    if media.duration_ms > 0 {
        parts.push(format!("{:.1} s", f64::from(media.duration_ms) / 1000.0));
    }
    parts.push(size);
    format!("[{}]", parts.join(" "))
}

/// A safe file name for a received medium: its own name without any directory, else its id
/// and an extension from its MIME type.
pub fn file_name_for(media: &pb::MediaRef) -> String {
    let own = Path::new(&media.file_name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !own.is_empty() && !own.starts_with('.') {
        return own;
    }
    let ext = match media.mime.as_str() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        _ => "bin",
    };
    format!("{}.{ext}", media.media_id.get(..16).unwrap_or("media"))
}

/// Downloads (and decrypts, and checks) `media` into `dir`; the saved file's path. An existing
/// file of the same name is not overwritten: the id is put in front.
pub async fn save_media(
    api: &MediaApi,
    media: &pb::MediaRef,
    dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<PathBuf, ClientError> {
    if !iris_proto::media::is_media_id(&media.media_id) {
        return Err(ClientError::Media(format!("{:?} is not a media id", media.media_id)));
    }
    tokio::fs::create_dir_all(dir).await?;
    let mut dst = dir.join(file_name_for(media));
    if tokio::fs::try_exists(&dst).await.unwrap_or(false) {
        dst = dir.join(format!("{}-{}", &media.media_id[..8], file_name_for(media)));
    }
    let want = (!media.sha256.is_empty()).then_some(&media.sha256[..]);
    if media.key.is_empty() {
        api.download_to(&media.media_id, &dst, progress).await?;
        let (_, sha) = head_and_hash(&dst).await?;
        if want.is_some_and(|w| w != sha) {
            let _ = tokio::fs::remove_file(&dst).await;
            return Err(ClientError::Media("the downloaded file does not have the promised SHA-256".into()));
        }
    } else {
        let blob = Scratch(scratch("download"));
        api.download_to(&media.media_id, &blob.0, progress).await?;
        crypto::decrypt_file(&blob.0, &dst, &media.key, want).await.map_err(|e| ClientError::Media(e.to_string()))?;
    }
    Ok(dst)
}

/// The kind named `name` (`image`, `video`, …), for command-line flags.
pub fn parse_kind(name: &str) -> Option<MediaKind> {
    kind_from_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_describe_themselves() {
        let media = pb::MediaRef {
            media_id: "ab".repeat(32),
            kind: MediaKind::Image as i32,
            size_bytes: 300 * 1024,
            mime: "image/jpeg".into(),
            width: 1280,
            height: 960,
            ..Default::default()
        };
        let message = pb::Message {
            payload: media_payload(vec![media.clone()], "look"),
            media_ids: vec![media.media_id.clone()],
            ..Default::default()
        };
        let got = media_of(&message).unwrap();
        assert_eq!((got.media[0].clone(), got.caption.as_str()), (media.clone(), "look"));
        assert_eq!(describe(&media), "[photo 1280×960 300 KiB]");
        assert_eq!(file_name_for(&media), format!("{}.jpg", "ab".repeat(8)));
        let sneaky = pb::MediaRef { file_name: "../../etc/passwd".into(), ..media };
        assert_eq!(file_name_for(&sneaky), "passwd");
        assert!(media_of(&pb::Message { payload: Bytes::from_static(b"text"), ..Default::default() }).is_none());
    }
}
