//! JSON handlers of the auth, device and info endpoints.
//!
//! Each carries its `#[utoipa::path]`: the route, the body types and every answer a client can
//! get, which is what `/v1/openapi.json` publishes (`openapi.rs`). Errors are always the
//! `ApiError` body; 413 and 431 apply to every route and are added there.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iris_proto::http::{
    AccountDeleteRequest, AccountInfo, ApiError as ErrorBody, CodeRequest, CodeRequested, Credentials, DeviceInfo,
    LinkPending, RefreshRequest, ServerInfo, VerifyRequest,
};
use iris_store::DeviceAddr;

use super::client::ClientIp;
use super::extract::{ApiJson, ApiPath};
use super::ApiError;
use crate::auth;
use crate::context::Ctx;
use crate::error::ServiceError;

type Shared = State<Arc<Ctx>>;

/// `GET /v1/info`.
#[utoipa::path(get, path = "/v1/info", tag = "info",
    responses((status = 200, description = "Where and how to connect: the TCP address, the WebSocket path, \
        the protocol versions, dev mode", body = ServerInfo)))]
pub async fn info(State(ctx): Shared) -> Json<ServerInfo> {
    Json(ServerInfo {
        node_id: ctx.node_name.clone(),
        tcp_addr: ctx.advertised_tcp_addr.clone(),
        tls: ctx.config.tls.is_some(),
        ws_path: super::ws::PATH.to_owned(),
        versions: iris_proto::version::supported().iter().map(|v| format!("{}.{}", v.major, v.minor)).collect(),
        dev: ctx.config.dev,
    })
}

/// `POST /v1/auth/request-code`.
#[utoipa::path(post, path = "/v1/auth/request-code", tag = "auth", request_body = CodeRequest,
    responses(
        (status = 200, description = "A one-time code is on its way (on a dev-mode server it is always 000000)",
            body = CodeRequested),
        (status = 400, description = "INVALID_ARGUMENT: not an E.164 phone number, or not this JSON body", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many codes for this phone or address; `retry_after_ms` \
            and `Retry-After` say when to retry", body = ErrorBody),
        (status = 502, description = "CODE_DELIVERY_FAILED: the SMS gateway did not take the code after every \
            retry; retry after `retry_after_ms`", body = ErrorBody),
        (status = 503, description = "OVERLOADED (too many pending codes) or UNAVAILABLE; retry after \
            `retry_after_ms`", body = ErrorBody)))]
pub async fn request_code(
    State(ctx): Shared,
    ClientIp(client): ClientIp,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<Json<CodeRequested>, ApiError> {
    let expires_in_s = auth::request_code(&ctx, &req.phone, client).await?;
    Ok(Json(CodeRequested { expires_in_s }))
}

/// `POST /v1/auth/verify`.
#[utoipa::path(post, path = "/v1/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses(
        (status = 200, description = "Credentials of a device that needs no approval: the first login of a phone \
            creates the account and its primary device 1; `new_primary` replaces every device of the account by a \
            new primary", body = Credentials),
        (status = 202, description = "A companion of an existing account: it waits for the primary's approval. \
            Show `link_code`; collect the credentials with `POST /v1/auth/link`", body = LinkPending),
        (status = 400, description = "INVALID_ARGUMENT: malformed phone or body", body = ErrorBody),
        (status = 401, description = "INVALID_CODE (wrong, expired or used-up code) or PIN_REQUIRED (`new_primary` \
            for a number with a registration PIN, without the right `pin`)", body = ErrorBody),
        (status = 409, description = "DEVICE_LIMIT: the account already has its maximum of devices", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (too many attempts, or too many new accounts today, from this \
            address), LINK_LIMIT (too many links waiting for approval) or PIN_LOCKED (too many wrong PINs); \
            `retry_after_ms` says when to retry", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store failed; nothing was created", body = ErrorBody)))]
pub async fn verify(
    State(ctx): Shared,
    ClientIp(client): ClientIp,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let args = auth::VerifyArgs {
        phone: &req.phone,
        code: &req.code,
        device_name: &req.device_name,
        new_primary: req.new_primary,
        pin: req.pin.as_deref(),
    };
    Ok(match auth::verify(&ctx, args, client).await? {
        auth::Verified::Registered(creds) => Json(creds).into_response(),
        auth::Verified::LinkPending(pending) => (StatusCode::ACCEPTED, Json(pending)).into_response(),
    })
}

/// `POST /v1/auth/refresh`.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token and a new refresh token (the old one is used up)",
            body = Credentials),
        (status = 400, description = "INVALID_ARGUMENT: not this JSON body", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: unknown, used or expired refresh token", body = ErrorBody),
        (status = 403, description = "DEVICE_REVOKED: the device was revoked", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store failed", body = ErrorBody)))]
pub async fn refresh(State(ctx): Shared, ApiJson(req): ApiJson<RefreshRequest>) -> Result<Json<Credentials>, ApiError> {
    Ok(Json(auth::refresh(&ctx, &req.refresh_token).await?))
}

/// The device behind `Authorization: Bearer <access token>`.
pub(super) async fn caller(ctx: &Ctx, headers: &HeaderMap) -> Result<DeviceAddr, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ServiceError::Unauthenticated("missing Authorization: Bearer token".into()))?;
    Ok(auth::authenticate(ctx, token).await?)
}

/// `GET /v1/devices`: the caller's account's active devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    responses(
        (status = 200, description = "The account's active devices", body = Vec<DeviceInfo>),
        (status = 401, description = "UNAUTHENTICATED: missing, malformed or expired access token", body = ErrorBody),
        (status = 403, description = "DEVICE_REVOKED: the token's device was revoked", body = ErrorBody)))]
pub async fn devices(State(ctx): Shared, headers: HeaderMap) -> Result<Json<Vec<DeviceInfo>>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    let devices = ctx.store.devices(me.account).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d| DeviceInfo {
                device_id: d.addr.device,
                name: d.name,
                primary: d.primary,
                created_at_ms: d.created_at_ms,
            })
            .collect(),
    ))
}

/// `DELETE /v1/devices/{device_id}`.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "devices", security(("bearer" = [])),
    params(("device_id" = u32, Path, description = "The device to revoke: any other device from the primary, \
        or the caller itself from a linked device")),
    responses(
        (status = 204, description = "Revoked: its connections are closed, its tokens rejected, its inbox deleted; \
            the account's other devices get a `DeviceChange` REMOVED"),
        (status = 400, description = "INVALID_ARGUMENT: not a device number", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: missing, malformed or expired access token", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (a linked device revoking another, the primary revoking \
            itself) or DEVICE_REVOKED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such active device", body = ErrorBody)))]
pub async fn revoke_device(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(device_id): ApiPath<u32>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&ctx, &headers).await?;
    auth::revoke(&ctx, me, device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/accounts/{phone}`: account id and current devices (for per-device payloads).
#[utoipa::path(get, path = "/v1/accounts/{phone}", tag = "accounts", security(("bearer" = [])),
    params(("phone" = String, Path, description = "E.164 phone number", example = "+14155550102")),
    responses(
        (status = 200, description = "The account and its current device ids", body = AccountInfo),
        (status = 400, description = "INVALID_ARGUMENT: not an E.164 phone number", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: missing, malformed or expired access token", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no account has this phone", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: a lookup of a phone that is neither the caller's nor one of its \
            contacts counts as a contact discovery request (`rate_limits.discover_requests_per_account_per_day`); \
            `retry_after_ms` says when to retry", body = ErrorBody)))]
pub async fn account(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(phone): ApiPath<String>,
) -> Result<Json<AccountInfo>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    let phone = iris_proto::phone::validate(&phone).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    let view = ctx.sessions.contacts.lookup(me.account, &phone).await?.ok_or(ServiceError::NotFound("account"))?;
    Ok(Json(AccountInfo { account_id: view.id, phone: view.phone.clone(), device_ids: view.devices.clone() }))
}

/// `POST /v1/account/delete/request-code`: a code to re-verify an account deletion.
#[utoipa::path(post, path = "/v1/account/delete/request-code", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "A deletion code is on its way to the account's phone (on a dev-mode server \
            it is always 000000); it is not a login code, and a login code does not delete", body = CodeRequested),
        (status = 401, description = "UNAUTHENTICATED: missing, malformed or expired access token", body = ErrorBody),
        (status = 403, description = "DEVICE_REVOKED: the token's device was revoked", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many deletion codes for this account \
            (`account.deletion_codes_per_account_per_hour`); `retry_after_ms` says when to retry", body = ErrorBody),
        (status = 503, description = "OVERLOADED (too many pending codes) or UNAVAILABLE", body = ErrorBody)))]
pub async fn request_deletion_code(State(ctx): Shared, headers: HeaderMap) -> Result<Json<CodeRequested>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    let expires_in_s = auth::erasure::request_code(&ctx, me).await?;
    Ok(Json(CodeRequested { expires_in_s }))
}

/// `POST /v1/account/delete`: erase the caller's account.
#[utoipa::path(post, path = "/v1/account/delete", tag = "accounts", security(("bearer" = [])),
    request_body = AccountDeleteRequest,
    responses(
        (status = 204, description = "Deleted: every device closed (`ACCOUNT_DELETED`), tokens, keys, inboxes, \
            contacts, blocks, group memberships (with events), message index entries, media references and presence \
            erased; the phone can register again as a new account"),
        (status = 400, description = "INVALID_ARGUMENT: not this JSON body, or an empty or overlong code", body = ErrorBody),
        (status = 401, description = "INVALID_CODE (wrong code; the message says how many guesses are left), \
            CODE_EXPIRED (none pending: expired, never requested or guesses used up) or UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "DEVICE_REVOKED: the token's device was revoked", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store failed midway; the deletion is finished by the next \
            start of the server (the phone cannot register until then)", body = ErrorBody)))]
pub async fn delete_account(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AccountDeleteRequest>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&ctx, &headers).await?;
    auth::erasure::delete(&ctx, me, &req.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /metrics`: Prometheus text exposition (on the admin listener instead when one is
/// configured, unless `admin.metrics_on_public_port`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "This node's metrics in the Prometheus text format", body = String,
            content_type = "text/plain"),
        (status = 404, description = "NOT_FOUND: this node serves its metrics on its admin listener only",
            body = ErrorBody)))]
pub async fn metrics(State(ctx): Shared) -> Result<Response, ApiError> {
    if !ctx.config.admin.metrics_on_public_port() {
        return Err(ServiceError::NotFound("route").into());
    }
    Ok(metrics_response(&ctx))
}

/// This node's metrics as a Prometheus text response (for the public port and the admin
/// listener alike).
pub fn metrics_response(ctx: &Ctx) -> Response {
    if let Some(cluster) = &ctx.cluster {
        ctx.metrics.cluster_bus_up.set(i64::from(cluster.bus.is_healthy()));
    }
    let text = ctx.metrics.render(ctx.router.len(), ctx.store.queue_depth());
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the node can take traffic (store healthy, not shutting down).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = String, content_type = "text/plain"),
        (status = 503, description = "Shutting down, or the store failed (sends would be UNAVAILABLE)", body = String,
            content_type = "text/plain")))]
pub async fn readyz(State(ctx): Shared) -> (StatusCode, &'static str) {
    if ctx.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !ctx.store.is_healthy() {
        (StatusCode::SERVICE_UNAVAILABLE, "store unhealthy")
    } else {
        (StatusCode::OK, "ready")
    }
}
