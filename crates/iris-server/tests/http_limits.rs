//! Bounds of the HTTP API: an oversized body is a typed 413 that even a client which writes its
//! whole body before reading gets to see, oversized headers are a typed 431, and both bounds come
//! from the config.

mod common;

use std::net::SocketAddr;

use common::*;
use iris_proto::http::ApiError;
use iris_proto::pb::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw connection.
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn error(&self) -> ApiError {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a typed error ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Writes `head` and then all of `body` before reading anything, the way simple clients
/// (Python's `http.client`, curl without `Expect`) do, then reads one response.
async fn write_all_then_read(addr: SocketAddr, head: &str, body: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write the head");
    if let Err(e) = stream.write_all(body).await {
        panic!("the server dropped the connection while the body was being written: {e}");
    }
    let mut raw = Vec::new();
    let read = tokio::time::timeout(EVENT_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) => panic!("reading the response failed: {e} (after {} bytes)", raw.len()),
            }
            if response_complete(&raw) {
                return;
            }
        }
    })
    .await;
    read.expect("a response in time");
    parse_response(&raw)
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = head_end(raw) else { return false };
    let reply = parse_head(&raw[..end]);
    let len: usize = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    raw.len() >= end + len
}

fn parse_head(head: &[u8]) -> RawReply {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    RawReply { status, headers, body: Vec::new() }
}

fn parse_response(raw: &[u8]) -> RawReply {
    let end = head_end(raw).unwrap_or_else(|| panic!("no complete response: {:?}", String::from_utf8_lossy(raw)));
    let mut reply = parse_head(&raw[..end]);
    reply.body = raw[end..].to_vec();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_body_is_a_typed_413_not_a_dropped_connection() {
    // Proves: a body announced larger than the limit is answered 413 BODY_TOO_LARGE, and a client
    // that writes all 10 MB before reading still gets that answer (the body is drained, bounded).
    let server = TestServer::start().await;
    let body = vec![b' '; 10 * 1024 * 1024];
    let head = format!(
        "POST /v1/auth/request-code HTTP/1.1\r\nhost: iris\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let reply = write_all_then_read(server.http_addr, &head, &body).await;
    assert_eq!(reply.status, 413, "body: {}", String::from_utf8_lossy(&reply.body));
    let error = reply.error();
    assert_eq!(error.code, ErrorCode::BodyTooLarge.as_str_name(), "{error:?}");
    assert!(error.message.contains("65536"), "the message names the limit: {error:?}");
    assert_eq!(reply.header("connection"), Some("close"));

    // The server is fine afterwards.
    server.get("/v1/info", None).await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_past_the_limit_is_a_typed_413() {
    // Proves: a body without a length that grows past the limit is 413 BODY_TOO_LARGE as well,
    // even when it is otherwise a valid request.
    let server = TestServer::start().await;
    let json = format!(r#"{{"phone":"+15550000001","pad":"{}"}}"#, "a".repeat(100 * 1024));
    let body = format!("{:x}\r\n{json}\r\n0\r\n\r\n", json.len());
    let head = "POST /v1/auth/request-code HTTP/1.1\r\nhost: iris\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let reply = write_all_then_read(server.http_addr, head, body.as_bytes()).await;
    assert_eq!(reply.status, 413, "body: {}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.error().code, ErrorCode::BodyTooLarge.as_str_name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kb_header_is_a_typed_431() {
    // Proves: headers larger than the limit are answered 431 HEADERS_TOO_LARGE with the typed body;
    // ordinary headers (a bearer token) pass.
    let server = TestServer::start().await;
    let reply = iris_client::TlsTrust::none()
        .http_builder()
        .build()
        .unwrap()
        .get(server.url("/v1/info"))
        .header("x-padding", "a".repeat(100 * 1024))
        .send()
        .await
        .expect("an answer");
    assert_eq!(reply.status().as_u16(), 431);
    let error: ApiError = reply.json().await.expect("a typed error");
    assert_eq!(error.code, ErrorCode::HeadersTooLarge.as_str_name(), "{error:?}");

    let alice = server.login("+15550000001", "laptop").await;
    server.get("/v1/devices", Some(&alice.access_token)).await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounds_come_from_the_config() {
    // Proves: `limits.http_body_bytes_max` and `limits.http_header_bytes_max` set the bounds and
    // the refusals name them; a request within them is served.
    let server = TestServer::start_with(|c| {
        c.limits.http_body_bytes_max = 1024;
        c.limits.http_header_bytes_max = 2048;
    })
    .await;
    let http = iris_client::TlsTrust::none().http_builder().build().unwrap();
    let body = format!(r#"{{"phone":"+15550000001","pad":"{}"}}"#, "a".repeat(2000));
    let reply = http.post(server.url("/v1/auth/request-code")).body(body).send().await.expect("an answer");
    assert_eq!(reply.status().as_u16(), 413);
    let error: ApiError = reply.json().await.expect("a typed error");
    assert!(error.message.contains("1024"), "{error:?}");

    let reply = http.get(server.url("/v1/info")).header("x-padding", "a".repeat(3000)).send().await.expect("an answer");
    assert_eq!(reply.status().as_u16(), 431);
    let error: ApiError = reply.json().await.expect("a typed error");
    assert_eq!(error.code, ErrorCode::HeadersTooLarge.as_str_name(), "{error:?}");
    assert!(error.message.contains("2048"), "{error:?}");

    server.request_code("+15550000001").await.expect_status(200);
}
