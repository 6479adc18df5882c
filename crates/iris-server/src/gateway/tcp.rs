//! The TCP listener (SO_REUSEPORT, TCP_NODELAY, optional TLS): accepts within the connection
//! budget and hands each connection to a session task.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{rustls, TlsAcceptor};
use tokio_util::task::TaskTracker;

use super::framed::Framed;
use crate::config::TlsConfig;
use crate::context::Ctx;
use crate::session;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Binds `addr` with SO_REUSEPORT (so several processes can share a port during upgrades).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError::Bind { addr, source };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    #[cfg(unix)]
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

/// Loads a PEM certificate chain and key into a TLS acceptor.
pub fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ListenError> {
    let certs = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ListenError::Tls(format!("{}: {e}", tls.cert_path.display())))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .map_err(|e| ListenError::Tls(format!("{}: {e}", tls.key_path.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

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

async fn serve_stream(ctx: Arc<Ctx>, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let max = ctx.limits.max_frame_bytes;
    match tls {
        None => session::run(ctx.sessions.clone(), Framed::new(stream, max), peer.ip()).await,
        Some(acceptor) => {
            let handshake = std::time::Duration::from_millis(ctx.config.session.handshake_timeout_ms);
            match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => session::run(ctx.sessions.clone(), Framed::new(tls_stream, max), peer.ip()).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}
