//! The session state machine through its real entry point: a started server, framed TCP
//! connections carrying arbitrary bytes, or a valid Hello followed by arbitrary bytes, or a valid
//! Hello followed by structurally valid but arbitrary operations.
//!
//! The first input byte picks the mode (`% 3`) and, with its top bit, which of two registered
//! users says Hello (so messages sent by one are delivered to, and acked by, the other).
//! A panic anywhere in the process (including a session task, which tokio would otherwise catch)
//! aborts, so libFuzzer reports it as a crash; every `LIVENESS_EVERY` inputs a fresh connection
//! must still get its Welcome.
#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use iris_proto::frame::{decode_body, encode, FrameDecoder};
use iris_proto::http::Credentials;
use iris_proto::pb::{self, client_op, server_event};
use iris_server::config::Config;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::{timeout, Instant};

/// How long to read the server's answers after half-closing.
const READ_FOR: Duration = Duration::from_millis(300);
/// A liveness check every this many inputs.
const LIVENESS_EVERY: u64 = 50;

struct Harness {
    rt: Runtime,
    tcp_addr: SocketAddr,
    users: [Credentials; 2],
    // Keep the server (and its store) alive for the process lifetime; the data dir outlives the
    // server (statics are never dropped, so it is left behind in the temp dir on exit).
    _server: iris_server::RunningServer,
    _data_dir: tempfile::TempDir,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
static INPUTS: AtomicU64 = AtomicU64::new(0);

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        // A session task's panic is caught by tokio and would only drop that connection: make
        // every panic, on every thread, fatal so libFuzzer sees it.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            std::process::abort();
        }));

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let data_dir = tempfile::tempdir().expect("temporary data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().expect("literal"),
            http: "127.0.0.1:0".parse().expect("literal"),
            dev: true,
            ..Config::default()
        };
        // Every limit off: all connections come from loopback, dozens per second.
        config.rate_limits = iris_server::config::RateLimitConfig::unlimited();
        config.session.handshake_timeout_ms = 200;

        let (server, users) = rt.block_on(async {
            let server = iris_server::start(config, Default::default()).await.expect("server starts");
            let a = login(server.http_addr, "+15550100001", "fuzz-a").await;
            let b = login(server.http_addr, "+15550100002", "fuzz-b").await;
            (server, [a, b])
        });
        let h = Harness { rt, tcp_addr: server.tcp_addr, users, _server: server, _data_dir: data_dir };
        h.rt.block_on(assert_alive(h.tcp_addr, &h.users[0]));
        h
    })
}

/// One HTTP/1.1 POST with a JSON body over a raw socket; returns the status and the body.
async fn post(http: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(http).await.expect("connect to the HTTP listener");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read response");
    let resp = String::from_utf8(resp).expect("UTF-8 response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_owned())
}

async fn login(http: SocketAddr, phone: &str, device_name: &str) -> Credentials {
    let (status, body) = post(http, "/v1/auth/request-code", &format!(r#"{{"phone":"{phone}"}}"#)).await;
    assert_eq!(status, 200, "request-code: {body}");
    let verify = format!(r#"{{"phone":"{phone}","code":"000000","device_name":"{device_name}"}}"#);
    let (status, body) = post(http, "/v1/auth/verify", &verify).await;
    assert_eq!(status, 200, "verify: {body}");
    serde_json::from_str(&body).expect("credentials JSON")
}

fn hello_frame(creds: &Credentials, out: &mut BytesMut) {
    let hello = pb::Hello {
        versions: vec![iris_proto::version::CURRENT],
        token: creds.access_token.clone(),
        device_id: creds.device_id,
        capabilities: vec![],
        resume_after_seq: 0,
    };
    let frame = pb::ClientFrame { ops: vec![pb::ClientOp { request_id: 1, op: Some(client_op::Op::Hello(hello)) }] };
    encode(&frame, out);
}

/// A fresh connection's valid Hello is answered with a Welcome.
async fn assert_alive(tcp: SocketAddr, creds: &Credentials) {
    let check = async {
        let mut s = TcpStream::connect(tcp).await.expect("the server accepts connections");
        let mut out = BytesMut::new();
        hello_frame(creds, &mut out);
        s.write_all(&out).await.expect("write Hello");
        let dec = FrameDecoder::new(u32::MAX >> 1);
        let mut buf = BytesMut::new();
        loop {
            while let Some(body) = dec.decode(&mut buf).expect("server frames are valid") {
                let frame: pb::ServerFrame = decode_body(&body).expect("server frames decode");
                for e in frame.events {
                    match e.event {
                        Some(server_event::Event::Welcome(_)) => return,
                        Some(server_event::Event::Error(err)) => panic!("valid Hello refused: {err:?}"),
                        _ => {}
                    }
                }
            }
            let n = s.read_buf(&mut buf).await.expect("read from the server");
            assert!(n > 0, "server closed the connection before Welcome");
        }
    };
    timeout(Duration::from_secs(10), check).await.expect("server answered a valid Hello within 10 s");
}

/// Mode (c): `[len u8][len bytes]...` chunks, each a `ClientOp` if it decodes; a zero length ends
/// the current frame.
fn ops_frames(mut data: &[u8], out: &mut BytesMut) {
    let mut ops = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let len = (len as usize).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        data = rest;
        if len == 0 {
            if !ops.is_empty() {
                encode(&pb::ClientFrame { ops: std::mem::take(&mut ops) }, out);
            }
            continue;
        }
        if let Ok(op) = pb::ClientOp::decode(chunk) {
            ops.push(op);
        }
    }
    if !ops.is_empty() {
        encode(&pb::ClientFrame { ops }, out);
    }
}

async fn run_one(tcp: SocketAddr, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(tcp).await else { panic!("the server stopped accepting connections") };
    // The server may close early (fatal error): a failed write is an answer, not a bug.
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let deadline = Instant::now() + READ_FOR;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let Some((&selector, rest)) = data.split_first() else { return };
    let creds = &h.users[(selector >> 7) as usize];
    let mut bytes = BytesMut::new();
    match selector % 3 {
        0 => bytes.extend_from_slice(rest),
        1 => {
            hello_frame(creds, &mut bytes);
            bytes.extend_from_slice(rest);
        }
        _ => {
            hello_frame(creds, &mut bytes);
            ops_frames(rest, &mut bytes);
        }
    }
    h.rt.block_on(run_one(h.tcp_addr, &bytes));
    if INPUTS.fetch_add(1, Ordering::Relaxed) % LIVENESS_EVERY == LIVENESS_EVERY - 1 {
        h.rt.block_on(assert_alive(h.tcp_addr, &h.users[0]));
    }
});
