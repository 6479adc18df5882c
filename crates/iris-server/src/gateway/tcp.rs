//! The TCP listener (SO_REUSEPORT, TCP_NODELAY, optional PROXY header, optional TLS): accepts
//! within the connection budget and hands each connection to a session task, under the client's
//! real address.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::framed::Framed;
use super::proxy_protocol;
use crate::config::ProxyProtocolMode;
use crate::context::Ctx;
use crate::session;

/// Accepts until shutdown; each connection runs as a session tracked by `tasks` (admission
/// happens in the session, so refusals get a typed answer).
pub async fn accept_loop(ctx: Arc<Ctx>, listener: TcpListener, tls: Option<TlsAcceptor>, tasks: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let (ctx, tls) = (ctx.clone(), tls.clone());
        tasks.spawn(serve_stream(ctx, stream, peer, tls));
    }
}

async fn serve_stream(ctx: Arc<Ctx>, mut stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let handshake = std::time::Duration::from_millis(ctx.config.session.handshake_timeout_ms);
    let client = match tokio::time::timeout(handshake, client_addr(&ctx, &mut stream, peer)).await {
        Ok(Some(client)) => client,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%peer, "PROXY header timed out");
            return;
        }
    };
    let max = ctx.limits.max_frame_bytes;
    // No span around the session: `session::run` has the connection's one span (a span is
    // entered on every wake-up of the task, so nesting two costs twice).
    match tls {
        None => session::run(ctx.sessions.clone(), Framed::new(stream, max), client.ip()).await,
        Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => session::run(ctx.sessions.clone(), Framed::new(tls_stream, max), client.ip()).await,
            Ok(Err(e)) => tracing::debug!(client = %client.ip(), error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(client = %client.ip(), "TLS handshake timed out"),
        },
    }
}

/// The client behind `peer`: `peer` itself, or what its PROXY header says when `peer` is a
/// trusted proxy and the listener speaks the PROXY protocol. `None`: the connection is refused
/// (an untrusted peer under `required`, or a trusted one without a valid header) and is closed
/// without an answer (nothing was said in any protocol yet).
async fn client_addr(ctx: &Ctx, stream: &mut TcpStream, peer: SocketAddr) -> Option<SocketAddr> {
    let peer = proxy_protocol::canonical(peer);
    let mode = ctx.config.proxy.tcp_proxy_protocol;
    if mode == ProxyProtocolMode::Off {
        return Some(peer);
    }
    if !ctx.trusted_proxies.trusts(peer.ip()) {
        if mode == ProxyProtocolMode::Required {
            ctx.metrics.proxy_refused.get_or_create(&vec![("reason", "untrusted")]).inc();
            tracing::info!(%peer, "connection refused: not from a trusted proxy (proxy.tcp_proxy_protocol = required)");
            return None;
        }
        return Some(peer);
    }
    match proxy_protocol::read_header(stream).await {
        Ok(Some(client)) => Some(client),
        Ok(None) => Some(peer),
        Err(e) => {
            ctx.metrics.proxy_refused.get_or_create(&vec![("reason", "bad_header")]).inc();
            tracing::info!(%peer, error = %e, "connection refused: bad PROXY header from a trusted proxy");
            None
        }
    }
}
