//! The HTTPS client of the push providers: hyper's pooled client over rustls (ring), trusting
//! the CAs of one PEM bundle (`push.ca_file`; tests point it at their own CA). HTTP/1.1 for the
//! webhook and FCM, HTTP/2 only for APNs, which speaks nothing else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::PushError;

/// Largest provider answer read (errors are small JSON documents).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// A pooled HTTPS client.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What a provider answered.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most 64 KiB of it).
    pub body: Bytes,
}

/// TLS settings trusting the certificates in `ca_file`.
pub fn tls_config(ca_file: &Path) -> Result<ClientConfig, PushError> {
    let bad = |why: String| PushError::Config(format!("push.ca_file {}: {why}", ca_file.display()));
    let pem = std::fs::read(ca_file).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificates".into()));
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// A client for HTTP/1.1 endpoints (`http2` false) or HTTP/2-only ones (APNs).
pub fn client(tls: ClientConfig, http2: bool) -> HttpsClient {
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_only();
    let mut client = Client::builder(TokioExecutor::new());
    if http2 {
        client.http2_only(true);
        client.build(builder.enable_http2().build())
    } else {
        client.build(builder.enable_http1().build())
    }
}

/// Sends `req` and reads the answer, all within `timeout`. `Err` is a failure before an answer
/// (connect, TLS, timeout): worth a retry.
pub async fn call(client: &HttpsClient, req: Request<Full<Bytes>>, timeout: Duration) -> Result<Answer, String> {
    let exchange = async {
        let response = client.request(req).await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let limited = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES_MAX);
        let body = limited.collect().await.map_err(|e| format!("reading the answer failed: {e}"))?.to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
