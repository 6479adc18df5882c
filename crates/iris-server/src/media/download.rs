//! Serving a blob through its signed URL: the signature and expiry, `If-None-Match` against the
//! ETag (the blob's hash, which never changes), and one `Range` (`bytes=a-b`, `bytes=a-`,
//! `bytes=-n`; several ranges are answered with the whole blob, as RFC 9110 allows). The bytes
//! are streamed from the blob store, never buffered.

use std::ops::Range;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

use super::{parse_hex32, Media};
use crate::error::ServiceError;

/// What a `Range` header asks of a blob of some size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range, or one this server answers with everything.
    Whole,
    /// These bytes.
    Part(Range<u64>),
    /// Nothing the blob has (416).
    Unsatisfiable,
}

/// Reads a `Range` header against a blob of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeAsk::Whole };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last `n` bytes.
        let Ok(n) = last.parse::<u64>() else { return RangeAsk::Whole };
        if n == 0 || size == 0 {
            return RangeAsk::Unsatisfiable;
        }
        size.saturating_sub(n)..size
    } else {
        let Ok(start) = first.parse::<u64>() else { return RangeAsk::Whole };
        let end = if last.is_empty() {
            size
        } else {
            match last.parse::<u64>() {
                Ok(l) if l >= start => l.saturating_add(1).min(size),
                _ => return RangeAsk::Whole,
            }
        };
        if start >= size {
            return RangeAsk::Unsatisfiable;
        }
        start..end
    };
    RangeAsk::Part(range)
}

/// A download ready to be answered.
pub enum Download {
    /// The client's copy is current (304).
    NotModified {
        /// The ETag.
        etag: String,
    },
    /// The range asks for nothing the blob has (416).
    Unsatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// Bytes to send: all (200) or `range` (206).
    Bytes {
        /// The ETag.
        etag: String,
        /// MIME type.
        mime: String,
        /// The blob's size.
        size: u64,
        /// The part sent, when a range was asked.
        range: Option<Range<u64>>,
        /// The bytes.
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

/// The request's parts a download reads.
pub struct DownloadAsk<'a> {
    /// The blob id in the path.
    pub id_hex: &'a str,
    /// `exp` of the URL.
    pub expires_at_ms: u64,
    /// `sig` of the URL.
    pub sig: &'a str,
    /// The `Range` header.
    pub range: Option<&'a str>,
    /// The `If-None-Match` header.
    pub if_none_match: Option<&'a str>,
}

impl Media {
    /// Checks a signed URL and opens what it asks for.
    pub async fn download(&self, ask: DownloadAsk<'_>) -> Result<Download, ServiceError> {
        let (signer, blobs, store, clock, metrics) = self.download_parts();
        if !signer.verify(ask.id_hex, ask.expires_at_ms, ask.sig, clock.now_ms()) {
            return Err(ServiceError::MediaUrlExpired);
        }
        let id = parse_hex32(ask.id_hex).ok_or(ServiceError::NotFound("media"))?;
        let blob = store.blob(id).await?.ok_or(ServiceError::NotFound("media"))?;
        let etag = format!("\"{}\"", ask.id_hex);
        if ask.if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
            return Ok(Download::NotModified { etag });
        }
        let range = match parse_range(ask.range, blob.size_bytes) {
            RangeAsk::Whole => None,
            RangeAsk::Part(r) => Some(r),
            RangeAsk::Unsatisfiable => return Ok(Download::Unsatisfiable { size: blob.size_bytes }),
        };
        let stream = blobs.get(ask.id_hex, range.clone()).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read a media blob");
            ServiceError::Unavailable
        })?;
        let counter = metrics.media_bytes_out.clone();
        let body = stream
            .map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                counter.inc_by(chunk.len() as u64);
                Ok(chunk)
            })
            .boxed();
        Ok(Download::Bytes { etag, mime: blob.mime, size: blob.size_bytes, range, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let check = |h: Option<&str>, want: RangeAsk| assert_eq!(parse_range(h, 100), want, "{h:?}");
        check(None, RangeAsk::Whole);
        check(Some("bytes=0-9"), RangeAsk::Part(0..10));
        check(Some("bytes=90-"), RangeAsk::Part(90..100));
        check(Some("bytes=90-500"), RangeAsk::Part(90..100));
        check(Some("bytes=-10"), RangeAsk::Part(90..100));
        check(Some("bytes=-500"), RangeAsk::Part(0..100));
        check(Some("bytes=100-"), RangeAsk::Unsatisfiable);
        check(Some("bytes=-0"), RangeAsk::Unsatisfiable);
        check(Some("bytes=0-1,5-6"), RangeAsk::Whole);
        check(Some("bytes=5-2"), RangeAsk::Whole);
        check(Some("items=0-1"), RangeAsk::Whole);
    }
}
