//! Bounds on what one HTTP request may bring before any handler runs: header bytes
//! (`limits.http_header_bytes_max`, else `431 HEADERS_TOO_LARGE`) and body bytes
//! (`limits.http_body_bytes_max`, else `413 BODY_TOO_LARGE`), both typed like every other error.
//! Media chunks are the exception: streamed to disk, bounded by their upload's declared size.
//!
//! A body announced too large is refused before it is buffered. Unless the client asked
//! `Expect: 100-continue` (it has not sent the body yet), the body is then read and thrown away,
//! up to [`DRAIN_BYTES_MAX`] and [`DRAIN_TIMEOUT`], before the answer: a client that writes its
//! whole body before reading (Python's `http.client`, curl without `Expect`) would otherwise
//! get a reset instead of the 413. Bodies without a length are cut at the limit by the JSON
//! extractor (`extract.rs`), which answers the same 413.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::ApiError;
use crate::error::ServiceError;

/// Most bytes of an oversized body read and dropped so its sender sees the 413.
pub const DRAIN_BYTES_MAX: u64 = 16 << 20;
/// Longest time spent draining an oversized body.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The configured bounds, also put in each request's extensions for the extractors.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// `limits.http_body_bytes_max`.
    pub body_bytes_max: usize,
    /// `limits.http_header_bytes_max`.
    pub header_bytes_max: usize,
}

/// Middleware: refuses oversized headers and announced-oversized bodies, passes the rest on.
pub async fn bound(State(limits): State<HttpLimits>, mut req: Request, next: Next) -> Response {
    if header_bytes(req.headers()) > limits.header_bytes_max {
        return refuse(ServiceError::HeadersTooLarge { max: limits.header_bytes_max });
    }
    let streamed = is_upload_chunk(&req);
    if !streamed && declared_length(req.headers()).is_some_and(|len| len > limits.body_bytes_max as u64) {
        let sent_already = !expects_continue(req.headers());
        if sent_already {
            drain(req.into_body()).await;
        }
        return refuse(ServiceError::BodyTooLarge { max: limits.body_bytes_max });
    }
    req.extensions_mut().insert(limits);
    next.run(req).await
}

/// Media chunks (`PATCH /v1/media/uploads/{id}`) are streamed to disk and bounded by their
/// upload's declared size, not by `http_body_bytes_max`.
fn is_upload_chunk(req: &Request) -> bool {
    req.method() == axum::http::Method::PATCH && req.uri().path().starts_with("/v1/media/uploads/")
}

/// Header bytes as on the wire: `name: value\r\n` for each.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads and drops up to [`DRAIN_BYTES_MAX`] of `body` within [`DRAIN_TIMEOUT`].
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut n_bytes = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(chunk)) = stream.next().await {
            n_bytes += chunk.len() as u64;
            if n_bytes > DRAIN_BYTES_MAX {
                return;
            }
        }
    })
    .await;
}

/// The typed error, with the connection closed after it (what is left of the request is unread).
fn refuse(e: ServiceError) -> Response {
    let mut response = ApiError(e).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
