//! The WebSocket transport on the HTTP port: JSON text frames (`iris.v1.json`, protobuf canonical
//! JSON) and binary protobuf frames (`iris.v1.proto`) run the same sessions as TCP, and talk to
//! TCP clients. One format per connection, chosen by a subprotocol the upgrade must name; unknown
//! fields are ignored in both formats (and over TCP).

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use iris_proto::http::{ApiError, Credentials};
use iris_proto::pb::{self, server_event, ErrorCode};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const JSON: &str = "iris.v1.json";
const PROTO: &str = "iris.v1.proto";

/// A WebSocket client speaking one subprotocol.
struct WsConn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    json: bool,
    pending: VecDeque<pb::ServerEvent>,
    /// The text of every JSON frame received, for checks of the JSON mapping itself.
    texts: Vec<String>,
}

impl WsConn {
    async fn connect(http_addr: SocketAddr, subprotocol: &str) -> Self {
        let mut req = format!("ws://{http_addr}/v1/ws").into_client_request().unwrap();
        req.headers_mut().insert("sec-websocket-protocol", subprotocol.parse().unwrap());
        let (ws, response) = tokio_tungstenite::connect_async(req).await.expect("WebSocket upgrade");
        let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        assert_eq!(chosen, Some(subprotocol), "the server must accept the offered subprotocol");
        Self { ws, json: subprotocol == JSON, pending: VecDeque::new(), texts: Vec::new() }
    }

    async fn send_ops(&mut self, ops: Vec<pb::ClientOp>) {
        let frame = pb::ClientFrame { ops };
        let msg = if self.json {
            Message::text(serde_json::to_string(&frame).unwrap())
        } else {
            Message::binary(frame.encode_to_vec())
        };
        self.ws.send(msg).await.expect("send a WebSocket message");
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send a WebSocket message");
    }

    /// The next event, `None` once the server closed.
    async fn next_event(&mut self) -> Option<pb::ServerEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let msg = tokio::time::timeout(EVENT_TIMEOUT, self.ws.next()).await.expect("no event and no close in time");
            let frame: pb::ServerFrame = match msg {
                None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return None,
                Some(Ok(Message::Text(text))) => {
                    assert!(self.json, "text frame on the binary subprotocol: {text}");
                    self.texts.push(text.as_str().to_owned());
                    serde_json::from_str(text.as_str()).expect("a ServerFrame in canonical JSON")
                }
                Some(Ok(Message::Binary(bytes))) => {
                    assert!(!self.json, "binary frame on the JSON subprotocol");
                    pb::ServerFrame::decode(bytes).expect("a ServerFrame in protobuf")
                }
                Some(Ok(_)) => continue,
            };
            self.pending.extend(frame.events);
        }
    }

    async fn event(&mut self) -> pb::ServerEvent {
        self.next_event().await.expect("expected an event, the server closed")
    }

    async fn hello(&mut self, creds: &Credentials) -> pb::Welcome {
        self.send_ops(vec![hello_op(1, &creds.access_token, creds.device_id)]).await;
        match self.event().await {
            pb::ServerEvent { request_id: 1, event: Some(server_event::Event::Welcome(w)) } => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    async fn expect_fatal(&mut self, code: ErrorCode) -> pb::Error {
        let e = self.event().await;
        let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected fatal {code:?}, got {e:?}"));
        assert_eq!(err.error_code(), code, "{err:?}");
        assert!(err.fatal, "{err:?}");
        if let Some(e) = self.next_event().await {
            panic!("expected the connection to close, got {e:?}");
        }
        err
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_websocket_handshakes_and_exchanges_messages_with_a_tcp_client() {
    // Proves: over iris.v1.json a JSON Hello gets a JSON Welcome, and messages flow both ways between a WebSocket client and a TCP client.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "browser").await;
    let bob = server.login("+15550000002", "phone").await;
    let (mut bob_tcp, _) = server.connect_as(&bob).await;
    let mut alice_ws = WsConn::connect(server.http_addr, JSON).await;

    let welcome = alice_ws.hello(&alice).await;
    assert_eq!((welcome.account_id, welcome.device_id), (alice.account_id, 1));
    // Canonical JSON: camelCase names, 64-bit integers as strings.
    let raw: serde_json::Value = serde_json::from_str(&alice_ws.texts[0]).unwrap();
    assert_eq!(raw["events"][0]["requestId"], serde_json::json!("1"));
    assert_eq!(raw["events"][0]["welcome"]["accountId"], serde_json::json!(alice.account_id.to_string()));
    assert_eq!(raw["events"][0]["welcome"]["deviceId"], serde_json::json!(1));

    alice_ws.send_ops(vec![send_op(2, text_to_account("w1", bob.account_id, b"from the browser"))]).await;
    let e = alice_ws.event().await;
    assert_eq!(e.request_id, 2);
    let Some(server_event::Event::SendResult(result)) = e.event else { panic!("expected SendResult, got {e:?}") };
    assert_eq!(result.status, pb::SendStatus::Accepted as i32);
    let items = bob_tcp.expect_delivery().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].server_msg_id, result.server_msg_id);
    assert_eq!(as_message(&items[0]).unwrap().payload, Bytes::from_static(b"from the browser"));

    bob_tcp.send_accepted(1, text_to_account("t1", alice.account_id, b"from tcp")).await;
    let e = alice_ws.event().await;
    let Some(server_event::Event::Delivery(d)) = e.event else { panic!("expected Delivery, got {e:?}") };
    assert_eq!(as_message(&d.items[0]).unwrap().payload, Bytes::from_static(b"from tcp"));

    // A frame written by hand the way a browser would.
    alice_ws.send_text(r#"{"ops":[{"requestId":"3","ping":{"clientTimeMs":"42"}}]}"#).await;
    let e = alice_ws.event().await;
    assert_eq!(e.request_id, 3);
    let Some(server_event::Event::Pong(pong)) = e.event else { panic!("expected Pong, got {e:?}") };
    assert_eq!(pong.client_time_ms, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_websocket_speaks_protobuf_frames() {
    // Proves: over iris.v1.proto binary messages carry protobuf frames: Hello, Ping and Send work and reach a TCP client.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "browser").await;
    let bob = server.login("+15550000002", "phone").await;
    let (mut bob_tcp, _) = server.connect_as(&bob).await;
    let mut alice_ws = WsConn::connect(server.http_addr, PROTO).await;

    let welcome = alice_ws.hello(&alice).await;
    assert_eq!(welcome.account_id, alice.account_id);
    alice_ws.send_ops(vec![ping_op(2, 99)]).await;
    let e = alice_ws.event().await;
    assert_eq!(e.request_id, 2);
    assert!(matches!(e.event, Some(server_event::Event::Pong(pb::Pong { client_time_ms: 99, .. }))), "{e:?}");

    alice_ws.send_ops(vec![send_op(3, text_to_phone("b1", "+15550000002", b"binary"))]).await;
    let e = alice_ws.event().await;
    assert!(matches!(e.event, Some(server_event::Event::SendResult(_))), "{e:?}");
    let items = bob_tcp.expect_delivery().await;
    assert_eq!(as_message(&items[0]).unwrap().payload, Bytes::from_static(b"binary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_is_bad_frame() {
    // Proves: a text message that is not a ClientFrame in JSON is BAD_FRAME, fatal, before or after Hello; other clients are unaffected.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "browser").await;
    let bob = server.login("+15550000002", "phone").await;
    let (mut bob_tcp, _) = server.connect_as(&bob).await;

    let mut before = WsConn::connect(server.http_addr, JSON).await;
    before.send_text("{not json").await;
    before.expect_fatal(ErrorCode::BadFrame).await;

    let mut after = WsConn::connect(server.http_addr, JSON).await;
    after.hello(&alice).await;
    after.send_text(r#"{"ops": 7}"#).await;
    after.expect_fatal(ErrorCode::BadFrame).await;

    bob_tcp.ping(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_message_is_frame_too_large() {
    // Proves: a WebSocket message larger than max_frame_bytes is FRAME_TOO_LARGE, fatal, like an oversized TCP frame.
    let server = TestServer::start_with(|c| {
        c.limits.frame_bytes_max = 8 * 1024;
        c.limits.payload_bytes_max = 4 * 1024;
    })
    .await;
    let alice = server.login("+15550000001", "browser").await;
    let mut ws = WsConn::connect(server.http_addr, PROTO).await;
    ws.hello(&alice).await;
    ws.ws.send(Message::binary(vec![0u8; 8 * 1024 + 1])).await.expect("send");
    ws.expect_fatal(ErrorCode::FrameTooLarge).await;
}

/// The upgrade of `GET /v1/ws` offering `subprotocols` (none when empty), expected to be refused:
/// its HTTP status and typed body.
async fn refused_upgrade(http_addr: SocketAddr, subprotocols: &str) -> (u16, ApiError) {
    let mut req = format!("ws://{http_addr}/v1/ws").into_client_request().unwrap();
    if !subprotocols.is_empty() {
        req.headers_mut().insert("sec-websocket-protocol", subprotocols.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, response)) => panic!("upgrade offering {subprotocols:?} was accepted: {response:?}"),
        Err(WsError::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let error = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("not a typed error ({e}): {}", String::from_utf8_lossy(&body)));
            (response.status().as_u16(), error)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_must_name_a_known_subprotocol() {
    // Proves: an upgrade offering no subprotocol, or only unknown ones, is refused with a typed
    // 400 UNSUPPORTED_SUBPROTOCOL naming the two it speaks; a known one among unknown ones is chosen.
    let server = TestServer::start().await;
    for offered in ["", "iris.v2.json", "chat, superchat"] {
        let (status, error) = refused_upgrade(server.http_addr, offered).await;
        assert_eq!(status, 400, "offering {offered:?}: {error:?}");
        assert_eq!(error.code, ErrorCode::UnsupportedSubprotocol.as_str_name(), "{error:?}");
        assert!(error.message.contains(JSON) && error.message.contains(PROTO), "{error:?}");
    }
    let mut req = format!("ws://{}/v1/ws", server.http_addr).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "iris.v2.json, iris.v1.json".parse().unwrap());
    let (_, response) = tokio_tungstenite::connect_async(req).await.expect("upgrade with a known subprotocol");
    assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), JSON);

    // A plain GET (no upgrade at all) is a typed error too.
    let reply = server.get("/v1/ws", None).await;
    reply.expect_error(400, ErrorCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_speaks_only_its_own_format() {
    // Proves: a binary message on iris.v1.json and a text message on iris.v1.proto are BAD_FRAME,
    // fatal, answered in the connection's own format, even when they hold a valid frame.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "browser").await;
    let ping = pb::ClientFrame { ops: vec![ping_op(2, 5)] };

    let mut json = WsConn::connect(server.http_addr, JSON).await;
    json.hello(&alice).await;
    json.ws.send(Message::binary(ping.encode_to_vec())).await.expect("send");
    let e = json.expect_fatal(ErrorCode::BadFrame).await;
    assert!(e.message.contains("binary"), "{e:?}");

    let mut proto = WsConn::connect(server.http_addr, PROTO).await;
    proto.hello(&alice).await;
    proto.send_text(&serde_json::to_string(&ping).unwrap()).await;
    let e = proto.expect_fatal(ErrorCode::BadFrame).await;
    assert!(e.message.contains("text"), "{e:?}");
}

/// A `ClientFrame` with one `Ping` whose frame, operation and ping all carry fields from a newer
/// schema (numbers this schema does not use, each wire type).
fn ping_with_unknown_fields(request_id: u64, client_time_ms: u64) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let unknown = {
        let mut b = Vec::new();
        encode_key(1000, WireType::Varint, &mut b);
        encode_varint(7, &mut b);
        encode_key(1001, WireType::LengthDelimited, &mut b);
        encode_varint(3, &mut b);
        b.extend_from_slice(b"new");
        encode_key(1002, WireType::SixtyFourBit, &mut b);
        b.extend_from_slice(&[1; 8]);
        encode_key(1003, WireType::ThirtyTwoBit, &mut b);
        b.extend_from_slice(&[2; 4]);
        b
    };
    let nested = |field: u32, mut body: Vec<u8>| {
        body.extend_from_slice(&unknown);
        let mut b = Vec::new();
        encode_key(field, WireType::LengthDelimited, &mut b);
        encode_varint(body.len() as u64, &mut b);
        b.extend(body);
        b
    };
    let ping = nested(6, pb::Ping { client_time_ms }.encode_to_vec());
    let mut op = pb::ClientOp { request_id, op: None }.encode_to_vec();
    op.extend(ping);
    let mut frame = nested(1, op);
    frame.extend_from_slice(&unknown);
    assert!(pb::ClientFrame::decode(&frame[..]).is_ok(), "the test frame itself must be valid protobuf");
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_ignored_on_every_path() {
    // Proves: fields, operations and enum names from a newer schema are ignored over JSON as over
    // protobuf (WebSocket binary and TCP): the connection stays up, an unknown operation is a
    // non-fatal INVALID_ARGUMENT and an unknown enum name reads as UNSPECIFIED.
    let server = TestServer::start().await;
    let (browser, web_binary, native) = (
        // Three accounts: a linked device would start with its account's DeviceChange notices.
        server.login("+15550000001", "browser").await,
        server.login("+15550000002", "web").await,
        server.login("+15550000003", "native").await,
    );

    let mut json = WsConn::connect(server.http_addr, JSON).await;
    json.hello(&browser).await;
    json.send_text(r#"{"ops":[{"requestId":"5","ping":{"clientTimeMs":"7","zzz":{"a":[1,2]}},"zzz":1}],"yyy":true}"#)
        .await;
    let e = json.event().await;
    assert_eq!(e.request_id, 5, "{e:?}");
    assert!(matches!(e.event, Some(server_event::Event::Pong(pb::Pong { client_time_ms: 7, .. }))), "{e:?}");
    json.send_text(r#"{"ops":[{"requestId":"6","teleport":{"to":"mars"}}]}"#).await;
    let e = json.event().await;
    let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected an error, got {e:?}"));
    assert_eq!((e.request_id, err.error_code(), err.fatal), (6, ErrorCode::InvalidArgument, false), "{err:?}");
    json.send_text(
        r#"{"ops":[{"requestId":"7","receipt":{"type":"RECEIPT_TYPE_SEEN_TWICE","toAccountId":"1","serverMsgIds":["1"]}}]}"#,
    )
    .await;
    let e = json.event().await;
    let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected an error, got {e:?}"));
    assert_eq!((e.request_id, err.error_code(), err.fatal), (7, ErrorCode::InvalidArgument, false), "{err:?}");

    let mut binary = WsConn::connect(server.http_addr, PROTO).await;
    binary.hello(&web_binary).await;
    binary.ws.send(Message::binary(ping_with_unknown_fields(8, 9))).await.expect("send");
    let e = binary.event().await;
    assert_eq!(e.request_id, 8, "{e:?}");
    assert!(matches!(e.event, Some(server_event::Event::Pong(pb::Pong { client_time_ms: 9, .. }))), "{e:?}");

    let (mut tcp, _) = server.connect_as(&native).await;
    let body = ping_with_unknown_fields(10, 11);
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend(body);
    tcp.send_raw(&framed).await;
    let e = tcp.answer().await;
    assert_eq!(e.request_id, 10, "{e:?}");
    assert!(matches!(e.event, Some(server_event::Event::Pong(pb::Pong { client_time_ms: 11, .. }))), "{e:?}");
}
