//! The media endpoints: start an upload, ask where it stands, send a chunk (tus-like: `PATCH`
//! with `Upload-Offset`, the body streamed to disk), get a signed URL, download by it (ranges,
//! ETag). The work is the media service's (`crate::media`); this file turns HTTP into calls and
//! answers into HTTP.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iris_proto::http::{ApiError as ErrorBody, MediaUrl, UploadRequest, UploadState};
use serde::Deserialize;

use super::extract::{ApiJson, ApiPath};
use super::handlers::caller;
use super::ApiError;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::media::download::{Download, DownloadAsk};

type Shared = State<Arc<Ctx>>;

/// The header naming where a chunk starts, and, in answers, where the upload stands.
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// `POST /v1/media/uploads`.
#[utoipa::path(post, path = "/v1/media/uploads", tag = "media", security(("bearer" = [])), request_body = UploadRequest,
    responses(
        (status = 200, description = "The upload (a new one, or the one started before with this idempotency key): \
            send its bytes with PATCH from `offset`", body = UploadState),
        (status = 400, description = "INVALID_ARGUMENT: unknown kind, bad hash, empty size or idempotency key", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 413, description = "MEDIA_TOO_LARGE: the size exceeds the kind's limit (media.*_bytes_max)", body = ErrorBody),
        (status = 429, description = "MEDIA_QUOTA_EXCEEDED (the hourly byte quota) or RATE_LIMITED (uploads per \
            minute); `retry_after_ms` says when", body = ErrorBody)))]
pub async fn start_upload(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UploadRequest>,
) -> Result<Json<UploadState>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    Ok(Json(ctx.media.start_upload(me.account, req).await?))
}

/// `GET /v1/media/uploads/{upload_id}`.
#[utoipa::path(get, path = "/v1/media/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(("upload_id" = String, Path, description = "From the start of the upload")),
    responses(
        (status = 200, description = "How many bytes arrived (resume from `offset`), and the blob once complete",
            body = UploadState),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such upload of this account (or it was refused or expired)",
            body = ErrorBody)))]
pub async fn upload_state(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(upload_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let me = caller(&ctx, &headers).await?;
    Ok(with_offset(ctx.media.upload_state(me.account, &upload_id).await?))
}

/// `PATCH /v1/media/uploads/{upload_id}`: the bytes from `Upload-Offset` on.
#[utoipa::path(patch, path = "/v1/media/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(
        ("upload_id" = String, Path, description = "From the start of the upload"),
        ("Upload-Offset" = u64, Header, description = "Where this chunk starts: the upload's current `offset`")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream",
        description = "Any number of the remaining bytes; streamed to disk as they arrive, so a dropped connection \
            keeps what arrived"),
    responses(
        (status = 200, description = "Where the upload stands; with `media` once the last byte arrived and was \
            checked (hash, kind; plaintext images re-encoded without metadata)", body = UploadState),
        (status = 400, description = "INVALID_ARGUMENT: no Upload-Offset, or the body ended early", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such upload of this account", body = ErrorBody),
        (status = 409, description = "MEDIA_OFFSET_MISMATCH: the upload stands elsewhere (or another body for it \
            is still arriving); ask its state and continue", body = ErrorBody),
        (status = 413, description = "MEDIA_TOO_LARGE: more bytes than declared", body = ErrorBody),
        (status = 415, description = "MEDIA_KIND_MISMATCH: plaintext bytes that are not of the declared kind; the \
            upload is discarded", body = ErrorBody),
        (status = 422, description = "MEDIA_HASH_MISMATCH (the bytes are not the declared SHA-256) or \
            MEDIA_REJECTED (an image that cannot be decoded within bounds); the upload is discarded", body = ErrorBody),
        (status = 503, description = "OVERLOADED: too many uploads in progress on this node", body = ErrorBody)))]
pub async fn upload_chunk(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(upload_id): ApiPath<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let me = caller(&ctx, &headers).await?;
    let offset = headers
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| ServiceError::InvalidArgument("Upload-Offset must be a byte offset".into()))?;
    let state = ctx.media.write_chunk(me.account, &upload_id, offset, body.into_data_stream()).await?;
    Ok(with_offset(state))
}

fn with_offset(state: UploadState) -> Response {
    let offset = HeaderValue::from(state.offset);
    let mut response = Json(state).into_response();
    response.headers_mut().insert(UPLOAD_OFFSET, offset);
    response
}

/// `GET /v1/media/{media_id}/url`.
#[utoipa::path(get, path = "/v1/media/{media_id}/url", tag = "media", security(("bearer" = [])),
    params(("media_id" = String, Path, description = "A blob id (hex SHA-256), e.g. from a message's media_ids")),
    responses(
        (status = 200, description = "A signed URL, valid for media.url_ttl_s, and the blob's metadata", body = MediaUrl),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such blob (never stored, or collected)", body = ErrorBody)))]
pub async fn media_url(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(media_id): ApiPath<String>,
) -> Result<Json<MediaUrl>, ApiError> {
    caller(&ctx, &headers).await?;
    Ok(Json(ctx.media.signed_url(&media_id).await?))
}

/// The query of a signed URL (missing parts make a URL that fails its check, answered
/// MEDIA_URL_EXPIRED like any bad signature).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct Signed {
    /// When the URL expires, ms since the Unix epoch.
    pub exp: u64,
    /// HMAC-SHA256 of the blob id and `exp`, hex.
    pub sig: String,
}

/// `GET /v1/media/{media_id}?exp=…&sig=…`: the bytes.
#[utoipa::path(get, path = "/v1/media/{media_id}", tag = "media",
    params(("media_id" = String, Path, description = "The blob id"), Signed,
        ("Range" = Option<String>, Header, description = "One range: bytes=a-b, bytes=a- or bytes=-n"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the client has")),
    responses(
        (status = 200, description = "The whole blob; ETag is its hash", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for, with Content-Range", content_type = "application/octet-stream"),
        (status = 304, description = "The client's copy is current"),
        (status = 403, description = "MEDIA_URL_EXPIRED: wrong signature or past `exp`; ask for a new URL", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: the blob is gone", body = ErrorBody),
        (status = 416, description = "The range is beyond the blob; Content-Range says its size")))]
pub async fn download(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(media_id): ApiPath<String>,
    Query(signed): Query<Signed>,
) -> Result<Response, ApiError> {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let ask = DownloadAsk {
        id_hex: &media_id,
        expires_at_ms: signed.exp,
        sig: &signed.sig,
        range: text(header::RANGE),
        if_none_match: text(header::IF_NONE_MATCH),
    };
    let response = match ctx.media.download(ask).await? {
        Download::NotModified { etag } => (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response(),
        Download::Unsatisfiable { size } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))]).into_response()
        }
        Download::Bytes { etag, mime, size, range, body } => {
            let mut r = Response::new(Body::from_stream(body));
            let h = r.headers_mut();
            let value = |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("invalid"));
            h.insert(header::ETAG, value(etag));
            h.insert(header::CONTENT_TYPE, value(mime));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
            match range {
                Some(part) => {
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(part.end - part.start));
                    h.insert(header::CONTENT_RANGE, value(format!("bytes {}-{}/{size}", part.start, part.end - 1)));
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                }
                None => {
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                }
            }
            r
        }
    };
    Ok(response)
}
