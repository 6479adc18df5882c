//! TLS for the SDK: which certificate authorities it trusts, for `https://` API URLs and for a
//! server whose framed TCP listener speaks TLS (`/v1/info` says `"tls": true`).
//!
//! By default the system's CA certificates (`rustls-native-certs`), so a server with a public
//! certificate needs nothing; `SSL_CERT_FILE` / `SSL_CERT_DIR` replace them as they do for
//! OpenSSL tools, which is how the CLI trusts a private CA. An app can pass its own CA
//! ([`TlsTrust::from_ca_pem`]). rustls on the ring provider, like the server.

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use crate::error::ClientError;

/// The CAs a client trusts, as a ready rustls configuration. Cheap to clone.
#[derive(Clone)]
pub struct TlsTrust {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTrust")
    }
}

impl TlsTrust {
    /// The app's choice when it made one, else the system's CAs: what every HTTPS and TLS
    /// connection of the SDK trusts.
    pub(crate) fn chosen_or_system(chosen: Option<&TlsTrust>) -> Result<Self, ClientError> {
        match chosen {
            Some(t) => Ok(t.clone()),
            None => Self::system(),
        }
    }

    /// The system's CA certificates (or those of `SSL_CERT_FILE` / `SSL_CERT_DIR` when set),
    /// loaded once per process.
    pub fn system() -> Result<Self, ClientError> {
        static SYSTEM: OnceLock<Result<TlsTrust, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
                    return Err(format!("no CA certificates found on this system{why}; set SSL_CERT_FILE"));
                }
                Self::with_roots(roots).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(ClientError::Tls)
    }

    /// Only the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks): for a server
    /// with a private CA.
    pub fn from_ca_pem(pem: &str) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ClientError::Tls(format!("unreadable CA certificate: {e}")))?;
            roots.add(cert).map_err(|e| ClientError::Tls(format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Tls("no CA certificate in the PEM text".into()));
        }
        Self::with_roots(roots)
    }

    /// Trusts no CA: for a client that only speaks plain HTTP (loopback, tests). reqwest in this
    /// workspace has no TLS provider of its own, so even such a client needs a TLS setting.
    pub fn none() -> Self {
        Self::with_roots(RootCertStore::empty()).expect("ring supports the default protocol versions")
    }

    /// A reqwest builder speaking TLS with these CAs: every HTTP client in the workspace starts
    /// from one (`reqwest::Client::new()` panics here: it would look for a process-wide
    /// provider, and Iris installs none).
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_backend_preconfigured(self.rustls_config())
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// The rustls configuration (for reqwest, which takes it as it is).
    fn rustls_config(&self) -> rustls::ClientConfig {
        (*self.config).clone()
    }

    /// A connector for the framed TCP listener.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

/// The name a certificate must carry for the server at `url` (`https://chat.example.com:7701`
/// → `chat.example.com`; an IP address as an IP name): the framed listener is checked against
/// the API's host name, since `/v1/info` may give its address as an IP.
pub(crate) fn server_name_of(url: &str) -> Result<ServerName<'static>, ClientError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    ServerName::try_from(host.to_owned()).map_err(|_| ClientError::Tls(format!("no server name in {url:?}")))
}

/// A reqwest builder for the server at `base_url`: `trust` when given, else the system's CAs
/// for `https://` (none needed for `http://`). Every HTTP client of the SDK starts here.
pub(crate) fn http_builder_for(
    base_url: &str,
    trust: Option<&TlsTrust>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    // Trusting no CA, a plain-HTTP client could not follow a redirect to https:// anywhere,
    // which an http:// API never sends.
    let trust = match trust {
        None if !base_url.trim().starts_with("https://") => TlsTrust::none(),
        chosen => TlsTrust::chosen_or_system(chosen)?,
    };
    Ok(trust.http_builder())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_urls_host() {
        let name = |u: &str| server_name_of(u).map(|n| n.to_str().into_owned()).unwrap();
        assert_eq!(name("https://chat.example.com:7701/"), "chat.example.com");
        assert_eq!(name("https://chat.example.com"), "chat.example.com");
        assert_eq!(name("https://127.0.0.1:7701"), "127.0.0.1");
        assert_eq!(name("https://[::1]:7701/v1"), "::1");
        assert_eq!(name("https://user@host.example:1"), "host.example");
        assert!(server_name_of("https://:7701").is_err());
    }

    #[test]
    fn a_pem_without_a_certificate_is_refused() {
        assert!(matches!(TlsTrust::from_ca_pem("not a certificate"), Err(ClientError::Tls(_))));
    }
}
