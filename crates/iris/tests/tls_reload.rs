//! SIGHUP on the real `iris serve` binary with TLS: the certificate files are read again, new
//! handshakes on both listeners get the new certificate, and a connection opened before keeps
//! working. (`iris-server`'s `tests/tls.rs` calls the reload directly; this is the signal path.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use iris_testkit::tls::{IssuedCert, TestCa};
use iris_testkit::wait::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;

/// A client that trusts `ca` only, with a session cache of its own (a resumed session would
/// keep the certificate of the handshake it resumes).
fn connector(ca: &TestCa) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr`, verifying the name `127.0.0.1`.
async fn tls_connect(tls: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
}

/// The certificate a new handshake with `addr` gets.
async fn presented_by(ca: &TestCa, addr: SocketAddr) -> Vec<u8> {
    let stream = tls_connect(&connector(ca), addr).await;
    stream.get_ref().1.peer_certificates().expect("a server certificate")[0].to_vec()
}

fn der_of(cert: &IssuedCert) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap().to_vec()
}

/// `GET /healthz` on a kept-alive HTTP/1.1 connection; the status. Reads exactly one response
/// (headers, then `content-length` bytes), so the connection can carry the next request.
async fn healthz(stream: &mut TlsStream<TcpStream>) -> u16 {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a content length"));
    let mut body = buf.len() - head_end;
    while body < length {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the connection closed inside a body");
        body += n;
    }
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_iris_serve_present_the_new_certificate_and_keeps_open_connections() {
    // Proves: `iris serve` with [tls], sent SIGHUP (to its own pid) after its certificate files
    // were replaced, presents the new certificate to new handshakes on the HTTP and framed TCP
    // listeners, while an HTTPS connection opened before keeps answering (so the process lives on).
    let ca = TestCa::new("iris sighup test CA");
    let (old, new) = (ca.issue(), ca.issue());
    let served = ca.issue(); // the files the server reads; their content is swapped below
    std::fs::copy(&old.cert_path, &served.cert_path).unwrap();
    std::fs::copy(&old.key_path, &served.key_path).unwrap();
    let toml = format!(
        "[tls]\ncert_path = {:?}\nkey_path = {:?}\n",
        served.cert_path.to_str().unwrap(),
        served.key_path.to_str().unwrap()
    );
    let server = Process::start_with_config(&toml).await;
    for addr in [server.http, server.tcp] {
        assert_eq!(presented_by(&ca, addr).await, der_of(&old), "{addr} before the reload");
    }
    let mut open = tls_connect(&connector(&ca), server.http).await;
    assert_eq!(healthz(&mut open).await, 200);

    std::fs::copy(&new.cert_path, &served.cert_path).unwrap();
    std::fs::copy(&new.key_path, &served.key_path).unwrap();
    server.signal("HUP");

    let want = der_of(&new);
    for addr in [server.http, server.tcp] {
        // The reload runs on the server's own task once the signal arrives: poll new handshakes.
        wait_until(&format!("{addr} presents the new certificate"), PATIENCE, || {
            let (ca, want) = (&ca, &want);
            async move { presented_by(ca, addr).await == *want }
        })
        .await;
    }
    assert_eq!(healthz(&mut open).await, 200, "the connection opened before the reload still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_tls_leaves_iris_serve_running() {
    // Proves: a server without [tls] catches SIGHUP (nothing to reload) instead of meeting the
    // default action, which ends the process: after two SIGHUPs it still stops cleanly on
    // SIGTERM. (Before, the handler was installed only with TLS, and SIGHUP killed the server.)
    let mut server = Process::start().await;
    server.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = server.terminate();
    assert!(status.success(), "the server did not survive SIGHUP: {status:?}");
}
