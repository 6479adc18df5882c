//! JSON handlers of the auth, device and info endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use iris_proto::http::{
    AccountInfo, CodeRequest, CodeRequested, Credentials, DeviceInfo, RefreshRequest, ServerInfo, VerifyRequest,
};
use iris_store::DeviceAddr;

use super::extract::{ApiJson, ApiPath};
use super::ApiError;
use crate::auth;
use crate::context::Ctx;
use crate::error::ServiceError;

type Shared = State<Arc<Ctx>>;

/// `GET /v1/info`.
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
pub async fn request_code(
    State(ctx): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<Json<CodeRequested>, ApiError> {
    let expires_in_s = auth::request_code(&ctx, &req.phone, peer.ip()).await?;
    Ok(Json(CodeRequested { expires_in_s }))
}

/// `POST /v1/auth/verify`.
pub async fn verify(
    State(ctx): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<Credentials>, ApiError> {
    Ok(Json(auth::verify(&ctx, &req.phone, &req.code, &req.device_name, peer.ip()).await?))
}

/// `POST /v1/auth/refresh`.
pub async fn refresh(State(ctx): Shared, ApiJson(req): ApiJson<RefreshRequest>) -> Result<Json<Credentials>, ApiError> {
    Ok(Json(auth::refresh(&ctx, &req.refresh_token).await?))
}

/// The device behind `Authorization: Bearer <access token>`.
async fn caller(ctx: &Ctx, headers: &HeaderMap) -> Result<DeviceAddr, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ServiceError::Unauthenticated("missing Authorization: Bearer token".into()))?;
    Ok(auth::authenticate(ctx, token).await?)
}

/// `GET /v1/devices`: the caller's account's active devices.
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
pub async fn account(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(phone): ApiPath<String>,
) -> Result<Json<AccountInfo>, ApiError> {
    caller(&ctx, &headers).await?;
    let phone = iris_proto::phone::validate(&phone).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    let view = ctx.directory.by_phone(&phone).await?.ok_or(ServiceError::NotFound("account"))?;
    Ok(Json(AccountInfo { account_id: view.id, phone: view.phone.clone(), device_ids: view.devices.clone() }))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(ctx): Shared) -> ([(&'static str, &'static str); 1], String) {
    if let Some(cluster) = &ctx.cluster {
        ctx.metrics.cluster_bus_up.set(i64::from(cluster.bus.is_healthy()));
    }
    let text = ctx.metrics.render(ctx.router.len(), ctx.store.queue_depth());
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the node can take traffic (store healthy, not shutting down).
pub async fn readyz(State(ctx): Shared) -> (StatusCode, &'static str) {
    if ctx.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !ctx.store.is_healthy() {
        (StatusCode::SERVICE_UNAVAILABLE, "store unhealthy")
    } else {
        (StatusCode::OK, "ready")
    }
}
