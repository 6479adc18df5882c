//! Moving blobs over the HTTP media API: resumable uploads in chunks (after a failure the client
//! asks where the upload stands and continues from there) and downloads by signed URL that
//! continue with a `Range` after a failure. Files are read and written in chunks, never held
//! whole.

use std::path::Path;
use std::time::Duration;

use iris_proto::http::{MediaInfo, MediaUrl, UploadRequest, UploadState};
use iris_proto::pb::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::ClientError;
use crate::http::api_error;

/// Bytes per `PATCH`: what a dropped connection can cost at most, and the memory one upload
/// holds.
pub const CHUNK_BYTES: usize = 8 << 20;
/// Failed chunks (network, overload, a body still arriving) retried before giving up.
const ATTEMPTS_MAX: u32 = 8;
/// Longest one chunk or download request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What to upload.
#[derive(Debug, Clone)]
pub struct UploadSpec {
    /// `image`, `voice`, `video`, `document` or `thumbnail`.
    pub kind: String,
    /// Client-encrypted bytes (stored as they are) or plaintext (checked, images processed).
    pub encrypted: bool,
    /// MIME type to record (the server sniffs plaintext uploads itself).
    pub mime: String,
    /// Unique per upload of this account: a retried start finds the same upload.
    pub idempotency_key: String,
}

/// The media API of one server, for one device's access token.
#[derive(Debug, Clone)]
pub struct MediaApi {
    base: String,
    token: String,
    http: reqwest::Client,
    /// Bytes per `PATCH`.
    pub chunk_bytes: usize,
}

impl MediaApi {
    /// The media API at `base_url` (`http://127.0.0.1:7701`) with `access_token`; an
    /// `https://` server is checked against the system's CAs (or `SSL_CERT_FILE`'s).
    pub fn new(base_url: &str, access_token: &str) -> Result<Self, ClientError> {
        Self::with_trust(base_url, access_token, None)
    }

    /// [`MediaApi::new`], trusting `trust` (when given) instead of the system's CAs.
    pub fn with_trust(
        base_url: &str,
        access_token: &str,
        trust: Option<&crate::TlsTrust>,
    ) -> Result<Self, ClientError> {
        let builder = crate::tls::http_builder_for(base_url, trust)?;
        let http = builder.timeout(REQUEST_TIMEOUT).connect_timeout(Duration::from_secs(10)).build()?;
        Ok(Self {
            base: base_url.trim().trim_end_matches('/').to_owned(),
            token: access_token.to_owned(),
            http,
            chunk_bytes: CHUNK_BYTES,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/media/uploads`.
    pub async fn start(&self, req: &UploadRequest) -> Result<UploadState, ClientError> {
        json(self.http.post(self.url("/v1/media/uploads")).bearer_auth(&self.token).json(req).send().await?).await
    }

    /// `GET /v1/media/uploads/{id}`.
    pub async fn state(&self, upload_id: &str) -> Result<UploadState, ClientError> {
        let url = self.url(&format!("/v1/media/uploads/{upload_id}"));
        json(self.http.get(url).bearer_auth(&self.token).send().await?).await
    }

    /// `PATCH /v1/media/uploads/{id}` with `chunk` at `offset`.
    pub async fn patch(&self, upload_id: &str, offset: u64, chunk: Vec<u8>) -> Result<UploadState, ClientError> {
        let url = self.url(&format!("/v1/media/uploads/{upload_id}"));
        let req = self
            .http
            .patch(url)
            .bearer_auth(&self.token)
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(chunk);
        json(req.send().await?).await
    }

    /// Uploads the file at `path` (its SHA-256 is `sha256`), resuming after failures;
    /// `progress(sent, total)` hears every step. The stored blob.
    pub async fn upload_file(
        &self,
        path: &Path,
        sha256: [u8; 32],
        spec: &UploadSpec,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<MediaInfo, ClientError> {
        let size = tokio::fs::metadata(path).await?.len();
        let req = UploadRequest {
            kind: spec.kind.clone(),
            size_bytes: size,
            sha256: hex::encode(sha256),
            encrypted: spec.encrypted,
            mime: spec.mime.clone(),
            idempotency_key: spec.idempotency_key.clone(),
        };
        let mut state = self.start(&req).await?;
        let mut file = tokio::fs::File::open(path).await?;
        let mut failures = 0;
        loop {
            progress(state.offset, size);
            if let Some(media) = state.media.take() {
                return Ok(media);
            }
            let len = (size - state.offset).min(self.chunk_bytes as u64) as usize;
            let mut chunk = vec![0u8; len];
            file.seek(std::io::SeekFrom::Start(state.offset)).await?;
            file.read_exact(&mut chunk).await?;
            match self.patch(&state.upload_id, state.offset, chunk).await {
                Ok(next) => {
                    state = next;
                    failures = 0;
                }
                Err(e) if resumable(&e) && failures < ATTEMPTS_MAX => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                    state = self.state(&state.upload_id).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET /v1/media/{id}/url`.
    pub async fn url_of(&self, media_id: &str) -> Result<MediaUrl, ClientError> {
        json(self.http.get(self.url(&format!("/v1/media/{media_id}/url"))).bearer_auth(&self.token).send().await?).await
    }

    /// Downloads blob `media_id` into `dst`, continuing with a range after a failure;
    /// `progress(received, total)` hears every chunk.
    pub async fn download_to(
        &self,
        media_id: &str,
        dst: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<MediaInfo, ClientError> {
        let signed = self.url_of(media_id).await?;
        let total = signed.media.size_bytes;
        let mut file = tokio::fs::File::create(dst).await?;
        let mut have = 0u64;
        let mut failures = 0;
        while have < total {
            let mut req = self.http.get(self.url(&signed.url));
            if have > 0 {
                req = req.header("range", format!("bytes={have}-"));
            }
            let result = async {
                let mut resp = check(req.send().await?).await?;
                while let Some(chunk) = resp.chunk().await? {
                    file.write_all(&chunk).await?;
                    have += chunk.len() as u64;
                    progress(have, total);
                }
                Ok::<(), ClientError>(())
            }
            .await;
            match result {
                Ok(()) => {}
                Err(e) if resumable(&e) && failures < ATTEMPTS_MAX => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                }
                Err(e) => return Err(e),
            }
        }
        file.flush().await?;
        Ok(signed.media)
    }

    /// Streams blob `media_id` to `on_chunk` without keeping it (one try, no resume); the
    /// number of bytes.
    pub async fn stream(&self, media_id: &str, mut on_chunk: impl FnMut(&[u8]) + Send) -> Result<u64, ClientError> {
        let signed = self.url_of(media_id).await?;
        let mut resp = check(self.http.get(self.url(&signed.url)).send().await?).await?;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            n += chunk.len() as u64;
            on_chunk(&chunk);
        }
        Ok(n)
    }

    /// The bytes of a small blob (thumbnails).
    pub async fn fetch_small(&self, media_id: &str) -> Result<Vec<u8>, ClientError> {
        let signed = self.url_of(media_id).await?;
        Ok(check(self.http.get(self.url(&signed.url)).send().await?).await?.bytes().await?.to_vec())
    }
}

/// Whether asking the upload's state and continuing can help.
fn resumable(e: &ClientError) -> bool {
    e.is_retryable() || e.code() == Some(ErrorCode::MediaOffsetMismatch)
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    Err(api_error(status.as_u16(), &body))
}

async fn json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let body = check(resp).await?.bytes().await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("unexpected media API body: {e}")))
}
