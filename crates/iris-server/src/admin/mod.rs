//! The operators' admin API: account lookup, device revocation, suspension, restrictions, user
//! reports, the review queue and `/metrics`, JSON over HTTP
//! on a listener of its own (`[admin] listen`, off unless configured), never mounted on the
//! public HTTP port (`http::app` does not know this module). Every request needs the bearer
//! token from `[admin] token` / `token_file` (`token.rs`); every failure goes through
//! [`AdminError`] (`error.rs`).
//!
//! `admin_router(state)` builds the whole router, so it is tested without a socket. Routes are
//! grouped by resource under `/admin/v1/accounts/{account}` (an id or a `+phone`); operations on
//! an account are one line each in [`account_routes`]; `/admin/v1/review` lists the accounts to
//! look at (`review.rs`).

mod abuse;
mod accounts;
mod error;
mod review;
mod token;

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use error::AdminError;
pub use token::AdminToken;

use crate::context::Ctx;

/// What admin handlers share: the node's state and the token requests must carry.
pub struct AdminState {
    /// The node's shared state.
    pub ctx: Arc<Ctx>,
    /// The configured token (its hash).
    token: AdminToken,
}

impl AdminState {
    /// The admin API of the node behind `ctx`, opened by `token`.
    pub fn new(ctx: Arc<Ctx>, token: &str) -> Self {
        Self { ctx, token: AdminToken::new(token) }
    }
}

/// Operations on one account, under `/admin/v1/accounts/{account}`.
fn account_routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/", get(accounts::lookup))
        .route("/devices/{device_id}/revoke", post(accounts::revoke))
        .route("/suspend", post(abuse::suspend))
        .route("/unsuspend", post(abuse::unsuspend))
        .route("/restrictions/{which}/lift", post(abuse::lift))
        .route("/reports", get(abuse::reports))
}

/// Every admin route, behind the token check (unknown routes too: 401 before 404, so the
/// routes are not probed without the token).
pub fn admin_router(state: AdminState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .nest("/admin/v1/accounts/{account}", account_routes())
        .route("/admin/v1/review", get(review::queue))
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), token::require))
        .with_state(state)
}

/// `GET /metrics` on the admin listener: the node's Prometheus text.
async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    crate::http::metrics_response(&state.ctx)
}

async fn unknown_route() -> AdminError {
    AdminError::UnknownRoute
}
