//! The HTTP listener as axum sees it: plain TCP, or TLS with the node's certificate
//! ([`super::tls::ServerTls`]). TLS handshakes run on their own tasks (at most
//! [`HANDSHAKES_MAX`] at once, each bounded by the handshake timeout), so a slow client never
//! holds up the accept loop; finished connections reach axum through a channel.
//!
//! Requests learn their peer through [`PeerAddr`] (axum's `ConnectInfo`); the client's real
//! address behind a proxy is decided per request (`client_addr.rs`), not here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// TLS handshakes in progress at once; past it, accepted connections wait for a slot.
pub const HANDSHAKES_MAX: usize = 1024;

/// A connection's byte stream, plain or TLS.
pub trait HttpIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> HttpIo for T {}

/// The address of the TCP peer of an HTTP connection (a proxy, or the client itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, HttpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Self {
        *stream.remote_addr()
    }
}

/// What `axum::serve` accepts from: connections already past their TLS handshake.
pub struct HttpListener {
    ready: mpsc::Receiver<(Box<dyn HttpIo>, PeerAddr)>,
    local_addr: SocketAddr,
}

impl HttpListener {
    /// Accepts on `listener` until `stop`, with TLS when `tls` is given.
    pub fn new(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        handshake_timeout: Duration,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, tls, handshake_timeout, tx, stop));
        Ok(Self { ready, local_addr })
    }
}

impl Listener for HttpListener {
    type Io = Box<dyn HttpIo>;
    type Addr = PeerAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerAddr(self.local_addr))
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    tx: mpsc::Sender<(Box<dyn HttpIo>, PeerAddr)>,
    stop: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let peer = PeerAddr(super::proxy_protocol::canonical(peer));
        let Some(acceptor) = tls.clone() else {
            if tx.send((Box::new(stream), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(slot) = handshakes.clone().acquire_owned().await else { return };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(tls_stream) = handshake(acceptor, stream, peer, handshake_timeout).await {
                let _ = tx.send((Box::new(tls_stream), peer)).await;
            }
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: PeerAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer.0, error = %e, "HTTP TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %peer.0, "HTTP TLS handshake timed out");
            None
        }
    }
}
