//! Real client addresses behind a load balancer: the PROXY protocol on the framed TCP listener
//! and `Forwarded` / `X-Forwarded-For` on HTTP, believed only from `[proxy] trusted_networks`.
//! The "proxy" here is a client bound to 127.0.0.2 (trusted); 127.0.0.1 is an untrusted peer.
//! What proves which address the server used is its per-IP limits and its log lines.

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use common::*;
use iris_proto::frame::encode;
use iris_proto::pb::{self, server_event, ErrorCode};
use iris_server::config::ProxyProtocolMode;
use tokio::net::{TcpSocket, TcpStream};

const PROXY_IP: &str = "127.0.0.2";

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TCP connection to `to` from the local address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

fn hello_bytes(creds: &iris_proto::http::Credentials) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(&pb::ClientFrame { ops: vec![hello_op(1, &creds.access_token, creds.device_id)] }, &mut out);
    out.to_vec()
}

/// A PROXY v2 header naming `client` (IPv4) as the source.
fn v2_header(client: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = client else { panic!("IPv4 only") };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&v4.ip().octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&v4.port().to_be_bytes());
    h.extend_from_slice(&7700u16.to_be_bytes());
    h
}

/// Sends `bytes` on a raw stream and reads the first server event (`None`: closed silently).
async fn first_event(stream: TcpStream, bytes: &[u8]) -> Option<pb::ServerEvent> {
    let mut conn = RawConn::from_stream(stream);
    conn.send_raw(bytes).await;
    conn.next_event(EVENT_TIMEOUT).await
}

fn is_welcome(e: &Option<pb::ServerEvent>) -> bool {
    matches!(e, Some(pb::ServerEvent { event: Some(server_event::Event::Welcome(_)), .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_listener_takes_the_client_address_from_a_trusted_proxy_only() {
    // Proves: under `required`, a trusted proxy's PROXY v1/v2 header names the client that
    // per-IP limits count (one connection per IP here) and log lines name; a trusted proxy
    // without a header and any untrusted peer are closed without an answer.
    let log = LogBuffer::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter("warn,iris_server=debug")
        .init();
    let server = TestServer::start_with(|c| {
        c.proxy.trusted_networks = vec![format!("{PROXY_IP}/32").parse().unwrap()];
        c.proxy.tcp_proxy_protocol = ProxyProtocolMode::Required;
        c.rate_limits.concurrent_connections_per_ip = 1;
    })
    .await;
    let creds = server.login("+14155550401", "proxy").await;
    let hello = hello_bytes(&creds);

    let v1 = [b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 7700\r\n".as_slice(), &hello].concat();
    let mut first = RawConn::from_stream(connect_from(PROXY_IP, server.tcp_addr).await);
    first.send_raw(&v1).await;
    assert!(is_welcome(&first.next_event(EVENT_TIMEOUT).await), "a client behind the proxy is served");

    let again = first_event(connect_from(PROXY_IP, server.tcp_addr).await, &v1).await;
    let refused = again.and_then(as_error).map(|e| e.error_code());
    assert_eq!(refused, Some(ErrorCode::RateLimited), "the same client's second connection hits its per-IP limit");

    let other = [v2_header("203.0.113.8:1234".parse().unwrap()), hello.clone()].concat();
    let third = first_event(connect_from(PROXY_IP, server.tcp_addr).await, &other).await;
    assert!(is_welcome(&third), "another client behind the same proxy has its own budget: {third:?}");

    let no_header = first_event(connect_from(PROXY_IP, server.tcp_addr).await, &hello).await;
    assert!(no_header.is_none(), "a trusted proxy must send the header: {no_header:?}");
    let untrusted = first_event(connect_from("127.0.0.1", server.tcp_addr).await, &v1).await;
    assert!(untrusted.is_none(), "required: an untrusted peer is refused: {untrusted:?}");
    let metrics = scrape_metrics(&server.base_url()).await;
    assert_eq!(metric_value(&metrics, r#"iris_proxy_refused_total{reason="untrusted"}"#), 1.0);
    assert_eq!(metric_value(&metrics, r#"iris_proxy_refused_total{reason="bad_header"}"#), 1.0);
    let log_text = log.text();
    let started = log_text.lines().find(|l| l.contains("session started")).unwrap_or_default();
    assert!(started.contains("client=203.0.113.7"), "log lines name the real client: {log_text}");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_optional_an_untrusted_peer_is_its_own_client_and_its_header_is_not_read() {
    // Proves: `optional` serves direct clients as themselves; a PROXY header from an untrusted
    // peer is not honoured (it is just bad bytes to the session), so nobody picks an address.
    let server = TestServer::start_with(|c| {
        c.proxy.trusted_networks = vec![format!("{PROXY_IP}/32").parse().unwrap()];
        c.proxy.tcp_proxy_protocol = ProxyProtocolMode::Optional;
    })
    .await;
    let creds = server.login("+14155550402", "proxy").await;
    let hello = hello_bytes(&creds);
    let direct = first_event(connect_from("127.0.0.1", server.tcp_addr).await, &hello).await;
    assert!(is_welcome(&direct), "{direct:?}");
    let forged = [b"PROXY TCP4 203.0.113.9 127.0.0.1 1 2\r\n".as_slice(), &hello].concat();
    let answer = first_event(connect_from("127.0.0.1", server.tcp_addr).await, &forged).await;
    assert!(!is_welcome(&answer), "an untrusted peer's PROXY header must not be parsed: {answer:?}");
    let behind = [v2_header("203.0.113.10:9".parse().unwrap()), hello].concat();
    assert!(is_welcome(&first_event(connect_from(PROXY_IP, server.tcp_addr).await, &behind).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_takes_forwarded_headers_from_a_trusted_proxy_only() {
    // Proves: with one code request per IP per hour, requests through the trusted proxy count
    // per forwarded client (X-Forwarded-For and Forwarded), while an untrusted peer's headers
    // are ignored: it is limited as itself whatever address it claims.
    let server = TestServer::start_with(|c| {
        c.proxy.trusted_networks = vec![format!("{PROXY_IP}/32").parse().unwrap()];
        c.rate_limits.code_requests_per_ip_per_hour = 1;
    })
    .await;
    let client_from = |ip: &str| {
        iris_client::TlsTrust::none().http_builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
    };
    let request = |client: reqwest::Client, phone: &'static str, header: (&'static str, &'static str)| {
        let url = server.url("/v1/auth/request-code");
        async move {
            let body = serde_json::json!({ "phone": phone });
            client.post(url).header(header.0, header.1).json(&body).send().await.unwrap().status().as_u16()
        }
    };
    let (proxy, direct) = (client_from(PROXY_IP), client_from("127.0.0.1"));

    assert_eq!(request(proxy.clone(), "+14155550403", ("x-forwarded-for", "6.6.6.6, 198.51.100.1")).await, 200);
    assert_eq!(request(proxy.clone(), "+14155550404", ("x-forwarded-for", "198.51.100.1")).await, 429);
    assert_eq!(request(proxy.clone(), "+14155550405", ("forwarded", "for=198.51.100.2;proto=https")).await, 200);
    assert_eq!(request(proxy.clone(), "+14155550406", ("x-forwarded-for", "198.51.100.3")).await, 200);

    assert_eq!(request(direct.clone(), "+14155550407", ("x-forwarded-for", "198.51.100.4")).await, 200);
    assert_eq!(
        request(direct.clone(), "+14155550408", ("x-forwarded-for", "198.51.100.5")).await,
        429,
        "an untrusted peer's header is ignored: its second request is its own second"
    );
    assert_eq!(request(direct, "+14155550409", ("forwarded", "for=198.51.100.6")).await, 429);
}
