//! JSON handlers of device linking (approve, refuse, list, collect) and the registration PIN.
//! The flows are in `auth/link.rs` and `auth/pin.rs`; these only carry them over HTTP.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iris_proto::http::{
    ApiError as ErrorBody, Credentials, DeviceInfo, LinkCollectRequest, LinkPending, PendingLinkInfo, PinRequest,
};

use super::extract::{ApiJson, ApiPath};
use super::handlers::caller;
use super::ApiError;
use crate::auth::{link, pin};
use crate::context::Ctx;

type Shared = State<Arc<Ctx>>;

/// `POST /v1/auth/link`.
#[utoipa::path(post, path = "/v1/auth/link", tag = "auth", request_body = LinkCollectRequest,
    responses(
        (status = 200, description = "The primary approved: the new device's credentials (once)", body = Credentials),
        (status = 202, description = "Still waiting for the primary; ask again", body = LinkPending),
        (status = 400, description = "INVALID_ARGUMENT: not this JSON body", body = ErrorBody),
        (status = 403, description = "LINK_REFUSED (the primary refused) or DEVICE_REVOKED (approved, then \\
            revoked before collected)", body = ErrorBody),
        (status = 410, description = "LINK_EXPIRED: unknown, expired or already collected; log in again", body = ErrorBody)))]
pub async fn collect_link(State(ctx): Shared, ApiJson(req): ApiJson<LinkCollectRequest>) -> Result<Response, ApiError> {
    Ok(match link::collect(&ctx, &req).await? {
        link::Collected::Credentials(creds) => Json(creds).into_response(),
        link::Collected::Pending(pending) => (StatusCode::ACCEPTED, Json(pending)).into_response(),
    })
}

/// `GET /v1/devices/links`.
#[utoipa::path(get, path = "/v1/devices/links", tag = "devices", security(("bearer" = [])),
    responses(
        (status = 200, description = "Links waiting for this account's primary", body = Vec<PendingLinkInfo>),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (not the primary) or DEVICE_REVOKED", body = ErrorBody)))]
pub async fn links(State(ctx): Shared, headers: HeaderMap) -> Result<Json<Vec<PendingLinkInfo>>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    Ok(Json(link::pending(&ctx, me).await?))
}

/// `POST /v1/devices/links/{code}/approve`.
#[utoipa::path(post, path = "/v1/devices/links/{code}/approve", tag = "devices", security(("bearer" = [])),
    params(("code" = String, Path, description = "The code the new device shows (case and dashes do not matter)")),
    responses(
        (status = 200, description = "Approved: the device exists; the account's other devices get a \\
            `DeviceChange` ADDED", body = DeviceInfo),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (not the primary) or DEVICE_REVOKED", body = ErrorBody),
        (status = 409, description = "DEVICE_LIMIT", body = ErrorBody),
        (status = 410, description = "LINK_EXPIRED: no pending link with this code", body = ErrorBody)))]
pub async fn approve_link(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<DeviceInfo>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    Ok(Json(link::approve(&ctx, me, &code).await?))
}

/// `POST /v1/devices/links/{code}/refuse`.
#[utoipa::path(post, path = "/v1/devices/links/{code}/refuse", tag = "devices", security(("bearer" = [])),
    params(("code" = String, Path, description = "The code the new device shows")),
    responses(
        (status = 204, description = "Refused: the new device is told LINK_REFUSED"),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (not the primary) or DEVICE_REVOKED", body = ErrorBody),
        (status = 410, description = "LINK_EXPIRED: no pending link with this code", body = ErrorBody)))]
pub async fn refuse_link(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&ctx, &headers).await?;
    link::refuse(&ctx, me, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/account/pin`.
#[utoipa::path(put, path = "/v1/account/pin", tag = "devices", security(("bearer" = [])), request_body = PinRequest,
    responses(
        (status = 204, description = "Set: registering a new primary for this number now needs it"),
        (status = 400, description = "INVALID_ARGUMENT: not 4 to 32 digits", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (not the primary) or DEVICE_REVOKED", body = ErrorBody)))]
pub async fn set_pin(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PinRequest>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&ctx, &headers).await?;
    pin::set(&ctx, me, &req.pin).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/account/pin`.
#[utoipa::path(delete, path = "/v1/account/pin", tag = "devices", security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared"),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (not the primary) or DEVICE_REVOKED", body = ErrorBody)))]
pub async fn clear_pin(State(ctx): Shared, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let me = caller(&ctx, &headers).await?;
    pin::clear(&ctx, me).await?;
    Ok(StatusCode::NO_CONTENT)
}
