//! The HTTP API: auth, devices and push targets (JSON), media uploads and downloads, the WebSocket endpoint,
//! health and info; and the web client's page at `/` (`web.rs`, outside the OpenAPI document).
//!
//! `app(ctx)` builds the whole router so handlers can be tested without a socket. Every error
//! goes through [`api_error::ApiError`], the one place that picks status codes. Every route is
//! registered through [`routes`], together with its OpenAPI description, so the published
//! document ([`openapi`], `/v1/openapi.json`) lists exactly the routes that exist.

mod api_error;
mod client;
mod devices;
mod extract;
mod handlers;
mod limits;
mod media;
mod openapi;
mod profiles;
mod push;
mod web;
mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::context::Ctx;

pub use api_error::{status_of, ApiError};
pub use handlers::metrics_response;

/// Every route with its OpenAPI description.
fn routes() -> OpenApiRouter<Arc<Ctx>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(handlers::info))
        .routes(routes!(handlers::request_code))
        .routes(routes!(handlers::verify))
        .routes(routes!(handlers::refresh))
        .routes(routes!(handlers::devices))
        .routes(routes!(handlers::revoke_device))
        .routes(routes!(devices::collect_link))
        .routes(routes!(devices::links))
        .routes(routes!(devices::approve_link))
        .routes(routes!(devices::refuse_link))
        .routes(routes!(devices::set_pin, devices::clear_pin))
        .routes(routes!(profiles::update))
        .routes(routes!(profiles::view))
        .routes(routes!(push::register))
        .routes(routes!(push::unregister))
        .routes(routes!(handlers::account))
        .routes(routes!(handlers::request_deletion_code))
        .routes(routes!(handlers::delete_account))
        .routes(routes!(media::start_upload))
        .routes(routes!(media::upload_state, media::upload_chunk))
        .routes(routes!(media::media_url))
        .routes(routes!(media::download))
        .routes(routes!(ws::upgrade))
        .routes(routes!(openapi::serve))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
}

/// The OpenAPI document of this API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().split_for_parts().1;
    openapi::complete(&mut doc);
    doc
}

/// All HTTP routes of a node.
pub fn app(ctx: Arc<Ctx>) -> Router {
    let l = &ctx.config.limits;
    let http_limits =
        limits::HttpLimits { body_bytes_max: l.http_body_bytes_max, header_bytes_max: l.http_header_bytes_max };
    let (router, _) = routes().split_for_parts();
    router
        .merge(web::routes())
        .fallback(extract::not_found)
        .layer(DefaultBodyLimit::max(http_limits.body_bytes_max))
        .layer(axum::middleware::from_fn_with_state(http_limits, limits::bound))
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), client::resolve))
        .with_state(ctx)
}
