//! Binding the server's listening sockets (the client port, HTTP, admin) and why setting a
//! listener up can fail: shared by the accept loops and the TLS loader, which sit above it.

use std::net::SocketAddr;

use tokio::net::TcpListener;

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
