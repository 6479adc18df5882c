//! The HTTP API: auth and devices (JSON), the WebSocket endpoint, health and info.
//!
//! `app(ctx)` builds the whole router so handlers can be tested without a socket. Every error
//! goes through [`api_error::ApiError`], the one place that picks status codes.

mod api_error;
mod extract;
mod handlers;
mod limits;
mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::context::Ctx;

pub use api_error::ApiError;

/// All HTTP routes of a node.
pub fn app(ctx: Arc<Ctx>) -> Router {
    let l = &ctx.config.limits;
    let http_limits =
        limits::HttpLimits { body_bytes_max: l.http_body_bytes_max, header_bytes_max: l.http_header_bytes_max };
    Router::new()
        .route("/v1/info", get(handlers::info))
        .route("/v1/auth/request-code", post(handlers::request_code))
        .route("/v1/auth/verify", post(handlers::verify))
        .route("/v1/auth/refresh", post(handlers::refresh))
        .route("/v1/devices", get(handlers::devices))
        .route("/v1/devices/{device_id}", delete(handlers::revoke_device))
        .route("/v1/accounts/{phone}", get(handlers::account))
        .route(ws::PATH, get(ws::upgrade))
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .fallback(extract::not_found)
        .layer(DefaultBodyLimit::max(http_limits.body_bytes_max))
        .layer(axum::middleware::from_fn_with_state(http_limits, limits::bound))
        .with_state(ctx)
}
