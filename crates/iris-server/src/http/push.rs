//! JSON handlers of push registration: the HTTP form of the socket's `PushOp` register and
//! unregister, for apps that set up push before (or without) opening a connection. The rules
//! and checks are the push service's (`push/mod.rs`), the same for both.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use iris_proto::http::{ApiError as ErrorBody, PushTargetRequest, PushTargetView};
use iris_proto::pb::{self, push_op, PushProvider};
use iris_store::DeviceAddr;

use super::extract::{ApiJson, ApiPath};
use super::handlers::caller;
use super::ApiError;
use crate::context::Ctx;
use crate::error::ServiceError;

type Shared = State<Arc<Ctx>>;

/// The wire provider named `name` (`webhook`, `fcm`, `apns`).
fn provider_named(name: &str) -> Result<PushProvider, ServiceError> {
    match name {
        "webhook" => Ok(PushProvider::Webhook),
        "fcm" => Ok(PushProvider::Fcm),
        "apns" => Ok(PushProvider::Apns),
        other => Err(ServiceError::PushProviderUnavailable(format!(
            "push provider {other:?} is unknown: webhook, fcm or apns"
        ))),
    }
}

/// `POST /v1/push/targets`.
#[utoipa::path(post, path = "/v1/push/targets", tag = "push", security(("bearer" = [])),
    request_body = PushTargetRequest,
    responses(
        (status = 200, description = "Stored as the calling device's push target (replacing any earlier one); \\
            the device is woken through it while it has no open connection", body = PushTargetView),
        (status = 400, description = "PUSH_PROVIDER_UNAVAILABLE (unknown or not configured here), \\
            PUSH_TOKEN_INVALID (malformed for its provider) or INVALID_ARGUMENT (not this JSON body)",
            body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: missing, malformed or expired access token", body = ErrorBody),
        (status = 403, description = "PUSH_TARGET_FORBIDDEN (a webhook host that is or resolves to a loopback, \\
            private or link-local address) or DEVICE_REVOKED", body = ErrorBody)))]
pub async fn register(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PushTargetRequest>,
) -> Result<Json<PushTargetView>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    let provider = provider_named(&req.provider)?;
    let register = pb::PushRegister { provider: provider as i32, token: req.token };
    let op = pb::PushOp { op: Some(push_op::Op::Register(register)) };
    ctx.sessions.push.op(me, op).await?;
    Ok(Json(PushTargetView { device_id: me.device, provider: req.provider }))
}

/// `DELETE /v1/push/targets/{device_id}`.
#[utoipa::path(delete, path = "/v1/push/targets/{device_id}", tag = "push", security(("bearer" = [])),
    params(("device_id" = u32, Path, description = "Whose target to remove: the caller itself, or from the \\
        primary any device of the account")),
    responses(
        (status = 204, description = "Removed: the device is no longer woken"),
        (status = 400, description = "INVALID_ARGUMENT: not a device number", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: missing, malformed or expired access token", body = ErrorBody),
        (status = 403, description = "PERMISSION_DENIED (a linked device removing another's) or DEVICE_REVOKED",
            body = ErrorBody),
        (status = 404, description = "NOT_FOUND: that device has no push target", body = ErrorBody)))]
pub async fn unregister(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(device_id): ApiPath<u32>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&ctx, &headers).await?;
    if device_id != me.device {
        let actor = ctx.store.device(me).await?.ok_or(ServiceError::DeviceRevoked)?;
        if !actor.primary {
            return Err(ServiceError::PermissionDenied(
                "only the primary device may remove another's push target".into(),
            )
            .into());
        }
    }
    if !ctx.sessions.push.unregister(DeviceAddr::new(me.account, device_id)).await? {
        return Err(ServiceError::NotFound("push target").into());
    }
    Ok(StatusCode::NO_CONTENT)
}
