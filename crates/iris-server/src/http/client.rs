//! The client's real address for every HTTP request: a middleware resolves it once (the TCP
//! peer, or what a trusted proxy's `Forwarded` / `X-Forwarded-For` says, see
//! `gateway/client_addr.rs`), runs the request inside a span that names it (so every log line
//! of the request carries it), and hands it to handlers as [`ClientIp`].

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::ApiError;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::gateway::http_listener::PeerAddr;

/// The address per-IP limits count for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Middleware: resolves the client's address and runs the request in a span naming it.
pub async fn resolve(State(ctx): State<Arc<Ctx>>, mut req: Request, next: Next) -> Response {
    let Some(ConnectInfo(PeerAddr(peer))) = req.extensions().get::<ConnectInfo<PeerAddr>>().copied() else {
        // Only a router driven without a socket (unit tests) lands here; it has no client.
        return next.run(req).await;
    };
    let client = ctx.trusted_proxies.client_of(peer.ip(), req.headers());
    req.extensions_mut().insert(ClientIp(client));
    let span = tracing::info_span!("http", client = %client);
    next.run(req).instrument(span).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ClientIp>().copied().ok_or_else(|| {
            tracing::error!("no client address: the router was served without its connect info");
            ServiceError::Internal.into()
        })
    }
}
