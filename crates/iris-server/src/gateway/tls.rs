//! Server-side TLS for both listeners (framed TCP and HTTP/WebSocket): one certificate, loaded
//! from the `[tls]` PEM files, and swapped in place by [`ServerTls::reload`] (SIGHUP in `iris
//! serve`).
//!
//! The acceptor's rustls config never changes; its certificate resolver hands every new
//! handshake the certificate current at that moment. A reload therefore touches no open
//! connection: sessions keep the keys they negotiated, and only later handshakes see the new
//! certificate. A reload that fails (a missing file, a key that does not match) keeps the old
//! certificate and says why.

use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::{rustls, TlsAcceptor};

use super::listen::ListenError;
use crate::config::TlsConfig;

/// The TLS side of a node's listeners: the acceptor they share and the handle that reloads its
/// certificate.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    cert: Arc<ReloadableCert>,
}

impl ServerTls {
    /// Loads the certificate and key named by `tls`; fails if they cannot be read or do not
    /// belong together.
    pub fn load(tls: &TlsConfig) -> Result<Self, ListenError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = Arc::new(ReloadableCert {
            current: RwLock::new(load_certified_key(tls, &provider)?),
            paths: tls.clone(),
            provider: provider.clone(),
        });
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ListenError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), cert })
    }

    /// The acceptor both listeners hand their connections to.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the certificate and key files again; later handshakes use them, open connections
    /// are untouched. On error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), ListenError> {
        let fresh = load_certified_key(&self.cert.paths, &self.cert.provider)?;
        *self.cert.current.write().expect("certificate lock") = fresh;
        tracing::info!(cert = %self.cert.paths.cert_path.display(), "TLS certificate reloaded");
        Ok(())
    }
}

/// The certificate resolver: one certificate for every server name, replaceable at run time.
#[derive(Debug)]
struct ReloadableCert {
    /// What `resolve` hands out; replaced whole by a reload (a handshake holds its own `Arc`).
    current: RwLock<Arc<CertifiedKey>>,
    paths: TlsConfig,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

/// The PEM chain and key of `tls` as a signing-ready certificate, checked to belong together.
fn load_certified_key(tls: &TlsConfig, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, ListenError> {
    let certs = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ListenError::Tls(format!("{}: {e}", tls.cert_path.display())))?;
    if certs.is_empty() {
        return Err(ListenError::Tls(format!("{}: no certificate in the file", tls.cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .map_err(|e| ListenError::Tls(format!("{}: {e}", tls.key_path.display())))?;
    let certified = CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| ListenError::Tls(format!("{} and {}: {e}", tls.cert_path.display(), tls.key_path.display())))?;
    Ok(Arc::new(certified))
}
