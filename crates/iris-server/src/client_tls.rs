//! TLS for the server's own outgoing connections (the SMS gateway, an S3 endpoint): rustls with
//! the ring provider, trusting the certificates of one PEM file or else the system's roots.
//! One place, so every client verifies the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Why no TLS client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {why}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// No CA file was given and the system's root certificates could not be loaded.
    #[error("no system root certificates: {0}")]
    NoRoots(String),
    /// rustls refused the settings.
    #[error("TLS client: {0}")]
    Client(String),
}

/// The certificates of PEM file `ca_file`, or the system's roots when there is none.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, ClientTlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca = |why: String| ClientTlsError::Ca { path: path.to_owned(), why };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca(e.to_string()))? {
                roots.add(cert.map_err(|e| ca(e.to_string()))?).map_err(|e| ca(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca("no certificate in the file".into()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(ClientTlsError::NoRoots(format!("{:?}", native.errors)));
            }
        }
    }
    Ok(roots)
}

/// A client configuration trusting `roots`, with rustls' safe protocol versions.
pub fn config(roots: RootCertStore) -> Result<ClientConfig, ClientTlsError> {
    Ok(ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientTlsError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
