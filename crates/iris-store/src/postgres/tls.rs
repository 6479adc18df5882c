//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` read from each shard URL
//! (tokio-postgres itself knows only `disable`, `prefer` and `require`, and no CA file):
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | no (as libpq) |
//! | `require` | always | no; with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca` | always | chain to `sslrootcert` (else the system's roots) |
//! | `verify-full` | always | chain, and the host name or address of the URL |
//!
//! The connector is rustls with ring, like every TLS in Iris; the URL handed to tokio-postgres
//! has both parameters removed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{StoreError, StoreResult};

/// A shard URL taken apart: what tokio-postgres parses, and the TLS connector its `sslmode`
/// and `sslrootcert` call for.
pub(super) fn parse_url(url: &str) -> StoreResult<(tokio_postgres::Config, PgTls)> {
    let bad = |why: String| StoreError::Unavailable(format!("bad PostgreSQL URL: {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root_cert) = ("prefer".to_owned(), None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => mode = percent_decode(value),
            "sslrootcert" => root_cert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    let mut config: tokio_postgres::Config = format!("{base}{rest}").parse().map_err(|e| bad(format!("{e}")))?;
    let verify = match mode.as_str() {
        "disable" | "prefer" | "require" if root_cert.is_none() || mode != "require" => Verify::Nothing,
        "require" | "verify-ca" => Verify::Chain,
        "verify-full" => Verify::ChainAndName,
        other => return Err(bad(format!("sslmode={other} (disable, prefer, require, verify-ca or verify-full)"))),
    };
    config.ssl_mode(match mode.as_str() {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let roots = match (&verify, root_cert) {
        (Verify::Nothing, _) => RootCertStore::empty(),
        (_, Some(path)) => load_roots(&path).map_err(bad)?,
        (_, None) => system_roots().map_err(bad)?,
    };
    Ok((config, PgTls::new(verify, roots)))
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Encryption only (`prefer`, `require`): the certificate is not checked.
    Nothing,
    /// The chain ends in a trusted root (`verify-ca`).
    Chain,
    /// The chain, and the certificate names the host dialled (`verify-full`).
    ChainAndName,
}

/// The TLS connector of one shard (cheap to clone: pools clone it per connection).
#[derive(Clone)]
pub struct PgTls {
    config: Arc<rustls::ClientConfig>,
}

impl PgTls {
    fn new(verify: Verify, roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let config = match verify {
            Verify::ChainAndName => builder.with_root_certificates(roots).with_no_client_auth(),
            _ => {
                let chain = match verify {
                    Verify::Chain => Some(
                        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                            .build()
                            .expect("a verifier over a non-empty root store"),
                    ),
                    _ => None,
                };
                let verifier = Arc::new(Lenient { chain, provider });
                builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
            }
        };
        Self { config: Arc::new(config) }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for PgTls {
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, Self::Error> {
        Ok(PgTlsConnect { config: self.config.clone(), name: ServerName::try_from(domain.to_owned())? })
    }
}

/// One connection's TLS handshake, to `name`.
pub struct PgTlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for PgTlsConnect {
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(PgTlsStream) })
    }
}

/// A TLS stream to a shard.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding is optional (`channel_binding=prefer`); none is offered.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The verifier of `prefer`/`require` (no check) and `verify-ca` (the chain, not the name).
/// Handshake signatures are always verified: the peer must hold the certificate's key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificates of a PEM file (`sslrootcert`).
fn load_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
    for cert in certs {
        roots
            .add(cert.map_err(|e| format!("sslrootcert {path}: {e}"))?)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path}: no certificate in the file"));
    }
    Ok(roots)
}

/// The system's root certificates, for `verify-ca`/`verify-full` without `sslrootcert`.
fn system_roots() -> Result<RootCertStore, String> {
    let native = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        return Err(format!("no system root certificates for sslmode verify-ca/verify-full ({:?})", native.errors));
    }
    Ok(roots)
}

/// `%2F` → `/` (URL parameters may be percent-encoded; paths often are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url_and_honoured() {
        // Proves: every libpq sslmode maps to tokio-postgres's mode, the TLS parameters never
        // reach tokio-postgres (which would reject them), others are kept, bad modes are errors.
        let mode = |url: &str| parse_url(url).map(|(c, _)| c.get_ssl_mode());
        assert!(matches!(mode("postgres://u@h/db"), Ok(SslMode::Prefer)));
        assert!(matches!(mode("postgres://u@h/db?sslmode=disable"), Ok(SslMode::Disable)));
        assert!(matches!(mode("postgres://u@h/db?sslmode=require"), Ok(SslMode::Require)));
        assert!(matches!(mode("postgres://u@h/db?connect_timeout=3&sslmode=verify-full"), Ok(SslMode::Require)));
        assert!(mode("postgres://u@h/db?sslmode=allow-everything").is_err());
        assert!(mode("postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fnonexistent%2Fca.pem").is_err());
        let (config, _) = parse_url("postgres://u@h/db?application_name=x&sslmode=require").unwrap();
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(percent_decode("%2Ftmp%2fa b%"), "/tmp/a b%");
    }
}
