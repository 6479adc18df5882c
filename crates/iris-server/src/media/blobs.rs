//! The blob bytes: content-addressed objects (`blobs/<hex sha256>`) behind `object_store`, on
//! the local filesystem by default or in any S3-compatible bucket in cluster mode. Uploads are
//! streamed from their staging file in parts and downloads streamed back, so no blob is ever
//! held whole in memory.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;
use tokio_rustls::rustls;

use crate::client_tls::{self, ClientTlsError};
use crate::config::MediaConfig;

/// Bytes read from a staging file per write into a multipart upload (also S3's part size).
const PART_BYTES: usize = 8 << 20;
/// Parts in flight to the object store during one put.
const PARTS_IN_FLIGHT_MAX: usize = 2;

/// Why the blob store failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The object store (disk, S3) failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The staging file could not be read.
    #[error("staging file: {0}")]
    Io(#[from] std::io::Error),
    /// No TLS client for the S3 endpoint (`media.s3_ca_file`, or the system's roots).
    #[error("S3 endpoint TLS: {0}")]
    Tls(#[from] ClientTlsError),
}

/// TLS for the S3 endpoint: `media.s3_ca_file`'s certificates, else the system's roots; an
/// `http://` endpoint without a CA file needs none.
fn s3_tls(config: &MediaConfig) -> Result<rustls::ClientConfig, BlobError> {
    let roots = match &config.s3_ca_file {
        None if config.s3_endpoint.starts_with("http://") => rustls::RootCertStore::empty(),
        ca_file => client_tls::roots(ca_file.as_deref())?,
    };
    Ok(client_tls::config(roots)?)
}

/// Content-addressed blobs in an object store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store: a complete staging file on the same filesystem is
    /// renamed into place (synced) instead of copied.
    local_root: Option<std::path::PathBuf>,
}

impl Blobs {
    /// The store `config` names: S3 when `s3_bucket` is set, else files under `local_dir`.
    pub fn open(config: &MediaConfig, local_dir: &Path) -> Result<Self, BlobError> {
        let local_root = config.s3_bucket.is_none().then(|| local_dir.to_owned());
        let store: Arc<dyn ObjectStore> = match &config.s3_bucket {
            Some(bucket) => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&config.s3_region)
                    .with_access_key_id(&config.s3_access_key_id)
                    .with_secret_access_key(&config.s3_secret_access_key)
                    .with_http_connector(super::s3_http::HyperConnector::new(s3_tls(config)?));
                if !config.s3_endpoint.is_empty() {
                    b = b
                        .with_endpoint(&config.s3_endpoint)
                        .with_allow_http(config.s3_endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(b.build()?)
            }
            None => {
                std::fs::create_dir_all(local_dir)?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(local_dir)?)
            }
        };
        Ok(Self { store, local_root })
    }

    /// Over any object store (tests).
    pub fn over(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, local_root: None }
    }

    /// The object path of blob `id` (hex SHA-256).
    pub fn path(id_hex: &str) -> ObjectPath {
        ObjectPath::from(format!("blobs/{id_hex}"))
    }

    /// Stores the file at `file` as blob `id_hex`: on a local store, by renaming it into place
    /// (the file is gone afterwards) and syncing the directory; elsewhere (or across
    /// filesystems) by streaming it in parts.
    pub async fn put_file(&self, id_hex: &str, file: &Path) -> Result<(), BlobError> {
        if let Some(root) = &self.local_root {
            let dir = root.join("blobs");
            tokio::fs::create_dir_all(&dir).await?;
            if tokio::fs::rename(file, dir.join(id_hex)).await.is_ok() {
                tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                    .await
                    .map_err(std::io::Error::other)??;
                return Ok(());
            }
        }
        let mut f = tokio::fs::File::open(file).await?;
        let upload = self.store.put_multipart(&Self::path(id_hex)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT_MAX).await {
                return Err(e.into());
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// Stores small bytes (thumbnails, re-encoded images) as blob `id_hex`.
    pub async fn put_bytes(&self, id_hex: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.store.put(&Self::path(id_hex), Bytes::from(bytes).into()).await?;
        Ok(())
    }

    /// Whether blob `id_hex` exists.
    pub async fn exists(&self, id_hex: &str) -> Result<bool, BlobError> {
        match self.store.head(&Self::path(id_hex)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes of blob `id_hex` in `range` (all of it when `None`), as a stream.
    pub async fn get(
        &self,
        id_hex: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, BlobError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&Self::path(id_hex), options).await?;
        Ok(result.into_stream().boxed())
    }

    /// Deletes blob `id_hex` (absent already is fine).
    pub async fn delete(&self, id_hex: &str) -> Result<(), BlobError> {
        match self.store.delete(&Self::path(id_hex)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ids and sizes of every stored blob (the media sweep recounts storage with it).
    pub fn list(&self) -> BoxStream<'static, Result<(String, u64), object_store::Error>> {
        self.store
            .list(Some(&ObjectPath::from("blobs")))
            .map(|meta| meta.map(|m| (m.location.filename().unwrap_or_default().to_owned(), m.size)))
            .boxed()
    }
}
