//! TLS on both listeners (framed TCP and HTTP/WebSocket) from one `[tls]` certificate, made for
//! the test by a test CA, and its reload without dropping open connections.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use iris_proto::frame::{decode_body, encode, FrameDecoder};
use iris_proto::http::Credentials;
use iris_proto::pb::{self, server_event};
use iris_server::config::TlsConfig;
use iris_testkit::tls::{IssuedCert, TestCa};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A client that trusts `ca` only.
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
async fn tls_connect(tls: &TlsConnector, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().expect("a server certificate")[0].to_vec()
}

fn der_of(cert: &IssuedCert) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap().to_vec()
}

/// An HTTP/1.1 connection (kept alive) over an established stream.
async fn http_over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// One request on `sender`; the status and body.
async fn request(sender: &mut SendRequest<Full<Bytes>>, method: &str, path: &str, body: &str) -> (u16, String) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    sender.ready().await.expect("the connection is still open");
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Logs in over HTTPS with the dev-mode code.
async fn login_https(sender: &mut SendRequest<Full<Bytes>>, phone: &str) -> Credentials {
    let (status, _) = request(sender, "POST", "/v1/auth/request-code", &format!(r#"{{"phone":"{phone}"}}"#)).await;
    assert_eq!(status, 200);
    let verify = format!(r#"{{"phone":"{phone}","code":"{DEV_CODE}","device_name":"tls"}}"#);
    let (status, body) = request(sender, "POST", "/v1/auth/verify", &verify).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Writes `ops` as one frame and reads the next frame.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, ops: Vec<pb::ClientOp>) -> pb::ServerFrame {
    let mut out = BytesMut::new();
    encode(&pb::ClientFrame { ops }, &mut out);
    stream.write_all(&out).await.unwrap();
    let decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    loop {
        if let Some(body) = decoder.decode(&mut buf).unwrap() {
            return decode_body(&body).unwrap();
        }
        assert_ne!(stream.read_buf(&mut buf).await.unwrap(), 0, "closed before an answer");
    }
}

/// A server with `[tls]` set to `cert`.
async fn tls_server(cert: &IssuedCert) -> TestServer {
    let tls = TlsConfig::new(cert.cert_path.clone(), cert.key_path.clone());
    TestServer::start_with(|c| c.tls = Some(tls)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_speak_tls_and_refuse_plaintext() {
    // Proves: with [tls] configured, a client that trusts the CA logs in over HTTPS and completes
    // the protocol handshake over TLS on the framed port and over WSS; plaintext clients get nowhere on
    // either port and the server lives on.
    let ca = TestCa::new("iris test CA");
    let cert = ca.issue();
    let server = tls_server(&cert).await;
    let tls = connector(&ca);

    let mut https = http_over(tls_connect(&tls, server.http_addr).await.unwrap()).await;
    let creds = login_https(&mut https, "+14155550301").await;
    let (status, info) = request(&mut https, "GET", "/v1/info", "").await;
    assert_eq!(status, 200);
    assert!(info.contains(r#""tls":true"#), "{info}");

    let mut framed = tls_connect(&tls, server.tcp_addr).await.unwrap();
    let frame = round_trip(&mut framed, vec![hello_op(7, &creds.access_token, creds.device_id)]).await;
    assert!(
        matches!(&frame.events[0], pb::ServerEvent { request_id: 7, event: Some(server_event::Event::Welcome(w)) } if w.account_id == creds.account_id),
        "{frame:?}"
    );

    // WSS: the WebSocket endpoint on the same TLS listener.
    let mut req = format!("wss://127.0.0.1:{}/v1/ws", server.http_addr.port()).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "iris.v1.proto".parse().unwrap());
    let wss_stream = tls_connect(&tls, server.http_addr).await.unwrap();
    let (mut wss, _) = tokio_tungstenite::client_async(req, wss_stream).await.expect("WebSocket upgrade over TLS");
    let hello = pb::ClientFrame { ops: vec![hello_op(8, &creds.access_token, creds.device_id)] };
    wss.send(Message::Binary(hello.encode_to_vec().into())).await.unwrap();
    let Some(Ok(Message::Binary(bytes))) = wss.next().await else { panic!("no binary answer over WSS") };
    let frame: pb::ServerFrame = decode_body(&bytes).unwrap();
    assert!(matches!(frame.events[0].event, Some(server_event::Event::Welcome(_))), "{frame:?}");

    let mut out = BytesMut::new();
    encode(&pb::ClientFrame { ops: vec![hello_op(7, &creds.access_token, creds.device_id)] }, &mut out);
    let mut plain = TcpStream::connect(server.tcp_addr).await.unwrap();
    plain.write_all(&out).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(EVENT_TIMEOUT, plain.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server must close a plaintext connection on its TLS port");
    assert!(reply.first().is_none_or(|&b| b == 0x15), "only a TLS alert may come back: {reply:?}");

    let mut plain_http = TcpStream::connect(server.http_addr).await.unwrap();
    plain_http.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(EVENT_TIMEOUT, plain_http.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server must close a plaintext connection on its HTTPS port");
    assert!(!String::from_utf8_lossy(&reply).contains("200 OK"), "plain HTTP answered: {reply:?}");

    let untrusting = connector(&TestCa::new("another CA"));
    assert!(tls_connect(&untrusting, server.http_addr).await.is_err(), "a client of another CA must refuse");
    assert_eq!(request(&mut https, "GET", "/healthz", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_to_new_handshakes_and_keeps_open_connections() {
    // Proves: after the certificate files are swapped and reloaded (what SIGHUP does), new TLS
    // handshakes on both listeners get the new certificate, connections opened before keep
    // working on both, and a broken replacement is refused while the last good one stays.
    let ca = TestCa::new("iris test CA");
    let (old, new) = (ca.issue(), ca.issue());
    let served = ca.issue(); // the files the server reads; their content is swapped below
    std::fs::copy(&old.cert_path, &served.cert_path).unwrap();
    std::fs::copy(&old.key_path, &served.key_path).unwrap();
    let server = tls_server(&served).await;
    let tls = connector(&ca);

    let https_stream = tls_connect(&tls, server.http_addr).await.unwrap();
    assert_eq!(presented(&https_stream), der_of(&old));
    let mut https = http_over(https_stream).await;
    let creds = login_https(&mut https, "+14155550302").await;
    let mut framed = tls_connect(&tls, server.tcp_addr).await.unwrap();
    assert_eq!(presented(&framed), der_of(&old));
    let welcome = round_trip(&mut framed, vec![hello_op(1, &creds.access_token, creds.device_id)]).await;
    assert!(matches!(welcome.events[0].event, Some(server_event::Event::Welcome(_))), "{welcome:?}");

    std::fs::copy(&new.cert_path, &served.cert_path).unwrap();
    std::fs::copy(&new.key_path, &served.key_path).unwrap();
    server.running().reload_tls().unwrap();

    // A client of its own: one that connected before may resume its TLS session, which keeps
    // the authentication of the handshake it resumes.
    let fresh_client = connector(&ca);
    for addr in [server.tcp_addr, server.http_addr] {
        let fresh = tls_connect(&fresh_client, addr).await.unwrap();
        assert_eq!(presented(&fresh), der_of(&new), "a new handshake on {addr} gets the new certificate");
    }
    let pong = round_trip(&mut framed, vec![ping_op(2, 5)]).await;
    assert!(matches!(pong.events[0].event, Some(server_event::Event::Pong(_))), "{pong:?}");
    assert_eq!(request(&mut https, "GET", "/healthz", "").await.0, 200, "the open HTTPS connection still works");

    // A key that does not belong to the certificate: refused, the new certificate stays.
    std::fs::copy(&old.key_path, &served.key_path).unwrap();
    assert!(server.running().reload_tls().is_err());
    let fresh = tls_connect(&connector(&ca), server.http_addr).await.unwrap();
    assert_eq!(presented(&fresh), der_of(&new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_logs_in_connects_and_messages_over_tls() {
    // Proves: the SDK trusting the test CA logs in over HTTPS, connects to the TLS framed
    // listener (found through /v1/info, checked against the API's host name) and a message
    // goes from one TLS client to another; an SDK trusting another CA cannot even log in.
    let ca = TestCa::new("iris test CA");
    let cert = ca.issue();
    let server = tls_server(&cert).await;
    let url = format!("https://127.0.0.1:{}", server.http_addr.port());
    let trust = iris_client::TlsTrust::from_ca_pem(ca.ca_pem()).unwrap();
    let http = iris_client::HttpApi::with_trust(&url, Some(&trust)).unwrap();
    let login = |phone: &'static str| {
        let http = http.clone();
        async move {
            http.request_code(phone).await.unwrap();
            http.verify(phone, DEV_CODE, "tls").await.unwrap()
        }
    };
    let (alice, bob) = (login("+14155550311").await, login("+14155550312").await);
    let connect = |creds: Credentials| {
        let mut config = iris_client::ClientConfig::new(url.clone(), creds);
        config.tls = Some(trust.clone());
        config.auto_ack = true;
        iris_client::Client::connect(config)
    };
    let (alice_client, _alice_events) = connect(alice).await.expect("TLS connect");
    let (_bob_client, mut bob_events) = connect(bob.clone()).await.expect("TLS connect");
    alice_client.send(bob.account_id, "over TLS").await.unwrap();
    let got = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            if let Some(iris_client::Event::Message(item)) = bob_events.next().await {
                return item;
            }
        }
    })
    .await
    .expect("bob gets the message");
    let Some(pb::inbox_item::Body::Message(m)) = got.body else { panic!("{got:?}") };
    assert_eq!(&m.payload[..], b"over TLS");

    let other = iris_client::TlsTrust::from_ca_pem(TestCa::new("another CA").ca_pem()).unwrap();
    let untrusting = iris_client::HttpApi::with_trust(&url, Some(&other)).unwrap();
    assert!(matches!(untrusting.server_info().await, Err(iris_client::ClientError::Http(_))));
}
