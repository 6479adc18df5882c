//! Partial uploads on this node's disk: one file per upload id, appended chunk by chunk as the
//! body streams in, fdatasync'd before the new offset is recorded, so a dropped connection
//! keeps every byte that arrived and a crash keeps every byte that was acknowledged.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// How a body ended.
#[derive(Debug)]
pub enum BodyEnd {
    /// The body was complete.
    Complete,
    /// The connection dropped or the body failed mid-way (what arrived is kept).
    Interrupted(String),
    /// The body carried more than the bytes still due; nothing past them was kept.
    TooLong,
}

/// The staging directory.
#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Staging files under `dir` (created if missing).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// The staging file of an upload.
    pub fn path(&self, upload_hex: &str) -> PathBuf {
        self.dir.join(format!("{upload_hex}.part"))
    }

    /// Writes `body` at `offset` of the upload's file (cutting anything past `offset` left by a
    /// crash), at most `max_bytes` of it, and syncs. Returns the bytes written and how the body
    /// ended; `on_bytes` hears every written piece (metrics, the running hash).
    pub async fn append<S, E>(
        &self,
        upload_hex: &str,
        offset: u64,
        max_bytes: u64,
        mut body: S,
        mut on_bytes: impl FnMut(&[u8]),
    ) -> std::io::Result<(u64, BodyEnd)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file =
            tokio::fs::OpenOptions::new().create(true).write(true).truncate(false).open(self.path(upload_hex)).await?;
        file.set_len(offset).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut written = 0u64;
        let end = loop {
            match body.next().await {
                None => break BodyEnd::Complete,
                Some(Err(e)) => break BodyEnd::Interrupted(e.to_string()),
                Some(Ok(chunk)) => {
                    let room = max_bytes - written;
                    let take = (chunk.len() as u64).min(room) as usize;
                    file.write_all(&chunk[..take]).await?;
                    written += take as u64;
                    on_bytes(&chunk[..take]);
                    if take < chunk.len() {
                        break BodyEnd::TooLong;
                    }
                }
            }
        };
        file.flush().await?;
        file.sync_data().await?;
        Ok((written, end))
    }

    /// SHA-256 and first bytes of the upload's whole file, read in 1 MiB steps.
    pub async fn digest(&self, upload_hex: &str) -> std::io::Result<([u8; 32], Vec<u8>)> {
        let mut file = tokio::fs::File::open(self.path(upload_hex)).await?;
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if head.len() < iris_proto::media::SNIFF_BYTES {
                let want = (iris_proto::media::SNIFF_BYTES - head.len()).min(n);
                head.extend_from_slice(&buf[..want]);
            }
            hasher.update(&buf[..n]);
        }
        Ok((hasher.finalize().into(), head))
    }

    /// The first bytes of the upload's file (for sniffing).
    pub async fn head(&self, upload_hex: &str) -> std::io::Result<Vec<u8>> {
        let mut file = tokio::fs::File::open(self.path(upload_hex)).await?;
        let mut head = vec![0u8; iris_proto::media::SNIFF_BYTES];
        let mut n = 0;
        while n < head.len() {
            let got = file.read(&mut head[n..]).await?;
            if got == 0 {
                break;
            }
            n += got;
        }
        head.truncate(n);
        Ok(head)
    }

    /// Deletes the upload's file (absent is fine).
    pub async fn remove(&self, upload_hex: &str) {
        match tokio::fs::remove_file(self.path(upload_hex)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, upload = upload_hex, "cannot delete a staging file"),
        }
    }
}
