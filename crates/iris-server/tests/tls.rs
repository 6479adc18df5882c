//! TLS on the framed TCP listener, with a certificate made for the test.

mod common;

use std::sync::Arc;

use bytes::BytesMut;
use common::*;
use iris_proto::frame::{decode_body, encode, FrameDecoder};
use iris_proto::pb::{self, server_event};
use iris_server::config::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_over_tls_gets_a_welcome_and_plain_tcp_is_refused() {
    // Proves: with [tls] configured, a client that trusts the certificate completes the protocol
    // handshake over TLS; a plaintext client on the same port gets nowhere and the server lives.
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start_with(|c| c.tls = Some(TlsConfig { cert_path, key_path })).await;
    let creds = server.login("+14155550301", "tls").await;

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(cert.cert.der().to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.tcp_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();

    let mut out = BytesMut::new();
    encode(&pb::ClientFrame { ops: vec![hello_op(7, &creds.access_token, creds.device_id)] }, &mut out);
    tls.write_all(&out).await.unwrap();
    let decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    let frame: pb::ServerFrame = loop {
        if let Some(body) = decoder.decode(&mut buf).unwrap() {
            break decode_body(&body).unwrap();
        }
        assert_ne!(tls.read_buf(&mut buf).await.unwrap(), 0, "closed before Welcome");
    };
    assert!(
        matches!(&frame.events[0], pb::ServerEvent { request_id: 7, event: Some(server_event::Event::Welcome(w)) } if w.account_id == creds.account_id),
        "{frame:?}"
    );

    let mut plain = TcpStream::connect(server.tcp_addr).await.unwrap();
    plain.write_all(&out).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(EVENT_TIMEOUT, plain.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server must close a plaintext connection on its TLS port");
    assert!(reply.first().is_none_or(|&b| b == 0x15), "only a TLS alert may come back: {reply:?}");
    server.get("/healthz", None).await.expect_status(200);
}
