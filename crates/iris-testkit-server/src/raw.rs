//! A client connection that speaks frames by hand ([`RawConn`]): it sends exactly the bytes a
//! test wants and exposes every event the server sends, in order; and the builders of the
//! operations it sends. For tests of the protocol's edges, where the SDK would hide them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iris_proto::frame::{self, FrameDecoder};
use iris_proto::http::Credentials;
use iris_proto::pb::{self, client_op, server_event, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::TestServer;
use crate::EVENT_TIMEOUT;

impl TestServer {
    /// A raw connection to the framed TCP listener, before any Hello.
    pub async fn connect(&self) -> RawConn {
        RawConn::connect(self.tcp_addr).await
    }

    /// A connection that completed the handshake as `creds`.
    pub async fn connect_as(&self, creds: &Credentials) -> (RawConn, pb::Welcome) {
        let mut conn = self.connect().await;
        let welcome = conn.hello(creds).await;
        (conn, welcome)
    }
}

/// A client connection that speaks frames by hand: it sends exactly the bytes a test wants and
/// exposes every event the server sends, in order.
pub struct RawConn {
    stream: TcpStream,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    pending: VecDeque<pb::ServerEvent>,
    closed: bool,
}

impl RawConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect to the TCP listener"))
    }

    /// Speaks frames on a connection the test opened itself (from a chosen local address,
    /// after bytes of its own such as a PROXY header).
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Self {
            stream,
            read_buf: BytesMut::new(),
            // The server's frames are never larger than its limit; be generous on this side.
            decoder: FrameDecoder::new(64 * 1024 * 1024),
            pending: VecDeque::new(),
            closed: false,
        }
    }

    /// Sends one frame with `ops`.
    pub async fn send_ops(&mut self, ops: Vec<pb::ClientOp>) {
        self.send_frame(&pb::ClientFrame { ops }).await;
    }

    /// Sends one frame.
    pub async fn send_frame(&mut self, f: &pb::ClientFrame) {
        let mut buf = BytesMut::new();
        frame::encode(f, &mut buf);
        self.send_raw(&buf).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the server");
        self.stream.flush().await.expect("flush");
    }

    /// Closes the sending half (the server sees end of stream); reading still works.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.expect("shutdown the write half");
    }

    /// The next event, `None` once the server closed the connection. Fails the test if nothing
    /// arrives within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<pb::ServerEvent> {
        match tokio::time::timeout(wait, self.read_event()).await {
            Ok(e) => e,
            Err(_) => panic!("no event and no close within {wait:?}"),
        }
    }

    async fn read_event(&mut self) -> Option<pb::ServerEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            if let Some(body) = self.decoder.decode(&mut self.read_buf).expect("server sent a valid frame prefix") {
                let f: pb::ServerFrame = frame::decode_body(&body).expect("server sent a valid ServerFrame");
                assert!(!f.events.is_empty(), "server sent an empty frame");
                self.pending.extend(f.events);
                continue;
            }
            match self.stream.read_buf(&mut self.read_buf).await {
                Ok(0) => {
                    assert!(self.read_buf.is_empty(), "server closed in the middle of a frame");
                    self.closed = true;
                }
                // A reset after the server closed with our bytes unread is a close as well.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => self.closed = true,
                Err(e) => panic!("read from the server failed: {e}"),
                Ok(_) => {}
            }
        }
    }

    /// The next event, which must be there (not a close).
    pub async fn event(&mut self) -> pb::ServerEvent {
        self.next_event(EVENT_TIMEOUT).await.expect("expected an event, the server closed the connection")
    }

    /// The next event that is not a `Delivery` (deliveries may interleave with answers).
    pub async fn answer(&mut self) -> pb::ServerEvent {
        loop {
            let e = self.event().await;
            if !matches!(e.event, Some(server_event::Event::Delivery(_))) {
                return e;
            }
        }
    }

    /// Sends `Hello` for `creds` and returns the `Welcome`.
    pub async fn hello(&mut self, creds: &Credentials) -> pb::Welcome {
        self.send_ops(vec![hello_op(1, &creds.access_token, creds.device_id)]).await;
        match self.event().await {
            pb::ServerEvent { request_id: 1, event: Some(server_event::Event::Welcome(w)) } => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends `Hello` for `creds` resuming after `resume_after_seq`; returns the first answer
    /// (a `Welcome`, or the `Error` refusing the Hello).
    pub async fn hello_resuming(&mut self, creds: &Credentials, resume_after_seq: u64) -> pb::ServerEvent {
        let mut op = hello_op(1, &creds.access_token, creds.device_id);
        if let Some(client_op::Op::Hello(h)) = &mut op.op {
            h.resume_after_seq = resume_after_seq;
        }
        self.send_ops(vec![op]).await;
        self.event().await
    }

    /// Expects an `Error` event answering `request_id` with `code`; returns it.
    pub async fn expect_error(&mut self, request_id: u64, code: ErrorCode) -> pb::Error {
        let e = self.answer().await;
        let err =
            as_error(e.clone()).unwrap_or_else(|| panic!("expected {code:?} for request {request_id}, got {e:?}"));
        assert_eq!(err.error_code(), code, "unexpected error: {err:?}");
        assert_eq!(e.request_id, request_id, "error answers the wrong request: {e:?}");
        err
    }

    /// Expects a non-fatal `Error` for `request_id` with `code`; returns it.
    pub async fn expect_request_error(&mut self, request_id: u64, code: ErrorCode) -> pb::Error {
        let err = self.expect_error(request_id, code).await;
        assert!(!err.fatal, "error must not be fatal: {err:?}");
        err
    }

    /// Expects a fatal `Error` with `code` followed by the server closing the connection.
    pub async fn expect_fatal(&mut self, code: ErrorCode) -> pb::Error {
        let e = self.event().await;
        let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected fatal {code:?}, got {e:?}"));
        assert_eq!(err.error_code(), code, "unexpected error: {err:?}");
        assert!(err.fatal, "error must be fatal: {err:?}");
        self.expect_closed().await;
        err
    }

    /// Expects the server to close the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        if let Some(e) = self.next_event(EVENT_TIMEOUT).await {
            panic!("expected the connection to be closed, got {e:?}");
        }
    }

    /// Pings with `request_id` and expects the matching `Pong` (proves the connection works).
    pub async fn ping(&mut self, request_id: u64) -> pb::Pong {
        self.send_ops(vec![ping_op(request_id, request_id * 1000)]).await;
        match self.answer().await {
            pb::ServerEvent { request_id: rid, event: Some(server_event::Event::Pong(p)) } if rid == request_id => {
                assert_eq!(p.client_time_ms, request_id * 1000);
                p
            }
            other => panic!("expected Pong for request {request_id}, got {other:?}"),
        }
    }

    /// Sends one message and returns the `SendResult` or `Error` event answering it.
    pub async fn send_message(&mut self, request_id: u64, msg: pb::SendMessage) -> pb::ServerEvent {
        self.send_ops(vec![send_op(request_id, msg)]).await;
        let e = self.answer().await;
        assert_eq!(e.request_id, request_id, "answer to the wrong request: {e:?}");
        e
    }

    /// Sends one message and expects it `ACCEPTED`.
    pub async fn send_accepted(&mut self, request_id: u64, msg: pb::SendMessage) -> pb::SendResult {
        match self.send_message(request_id, msg).await.event {
            Some(server_event::Event::SendResult(r)) => {
                assert_eq!(r.status, pb::SendStatus::Accepted as i32, "{r:?}");
                r
            }
            other => panic!("expected SendResult, got {other:?}"),
        }
    }

    /// The next `Delivery`'s items (skipping nothing: the next event must be a delivery).
    pub async fn expect_delivery(&mut self) -> Vec<pb::InboxItem> {
        match self.event().await.event {
            Some(server_event::Event::Delivery(d)) => d.items,
            other => panic!("expected Delivery, got {other:?}"),
        }
    }
}

/// The error carried by `e`, if it is one.
pub fn as_error(e: pb::ServerEvent) -> Option<pb::Error> {
    match e.event {
        Some(server_event::Event::Error(err)) => Some(err),
        _ => None,
    }
}

/// The message carried by an inbox item, if it is one.
pub fn as_message(item: &pb::InboxItem) -> Option<&pb::Message> {
    match &item.body {
        Some(pb::inbox_item::Body::Message(m)) => Some(m),
        _ => None,
    }
}

// -------------------------------------------------------------------------------------------------
// Operation builders
// -------------------------------------------------------------------------------------------------

/// `Hello` offering the current protocol version.
pub fn hello_op(request_id: u64, token: &str, device_id: u32) -> pb::ClientOp {
    hello_with_versions(request_id, token, device_id, vec![iris_proto::version::CURRENT])
}

/// `Hello` offering `versions`.
pub fn hello_with_versions(
    request_id: u64,
    token: &str,
    device_id: u32,
    versions: Vec<pb::ProtocolVersion>,
) -> pb::ClientOp {
    let hello = pb::Hello { versions, token: token.to_owned(), device_id, ..Default::default() };
    pb::ClientOp { request_id, op: Some(client_op::Op::Hello(hello)) }
}

/// `Ping`.
pub fn ping_op(request_id: u64, client_time_ms: u64) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Ping(pb::Ping { client_time_ms })) }
}

/// `Send`.
pub fn send_op(request_id: u64, msg: pb::SendMessage) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Send(msg)) }
}

/// `Ack`.
pub fn ack_op(request_id: u64, up_to_seq: u64) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Ack(pb::Ack { up_to_seq })) }
}

/// A message with one payload for every device, to an account id.
pub fn text_to_account(client_msg_id: &str, to_account_id: u64, payload: &[u8]) -> pb::SendMessage {
    pb::SendMessage {
        client_msg_id: client_msg_id.to_owned(),
        to_account_id,
        to_phone: String::new(),
        body: Some(pb::send_message::Body::Payload(Bytes::copy_from_slice(payload))),
        ..Default::default()
    }
}

/// A message with one payload for every device, to a phone number.
pub fn text_to_phone(client_msg_id: &str, to_phone: &str, payload: &[u8]) -> pb::SendMessage {
    pb::SendMessage {
        client_msg_id: client_msg_id.to_owned(),
        to_account_id: 0,
        to_phone: to_phone.to_owned(),
        body: Some(pb::send_message::Body::Payload(Bytes::copy_from_slice(payload))),
        ..Default::default()
    }
}

/// A per-device message to an account id: `(account, device, payload)` triples.
pub fn per_device_to_account(
    client_msg_id: &str,
    to_account_id: u64,
    payloads: &[(u64, u32, &[u8])],
) -> pb::SendMessage {
    let payloads = payloads
        .iter()
        .map(|&(account_id, device_id, p)| pb::DevicePayload {
            account_id,
            device_id,
            payload: Bytes::copy_from_slice(p),
        })
        .collect();
    pb::SendMessage {
        client_msg_id: client_msg_id.to_owned(),
        to_account_id,
        to_phone: String::new(),
        body: Some(pb::send_message::Body::PerDevice(pb::DevicePayloads { payloads })),

        ..Default::default()
    }
}

// Admission answers: what a refused connection hears before any Hello.
impl RawConn {
    /// Expects a `GoAway` (sent before any Hello when the node refuses a connection) followed by
    /// the close; returns it.
    pub async fn expect_go_away(&mut self) -> pb::GoAway {
        let e = self.event().await;
        let Some(server_event::Event::GoAway(g)) = e.event else { panic!("expected GoAway, got {e:?}") };
        self.expect_closed().await;
        g
    }

    /// The first event after connecting: `Some(GoAway)` when the node refused the connection,
    /// `None` when it was admitted (proved by a Hello answered with a Welcome for `creds`).
    pub async fn admitted_or_go_away(&mut self, creds: &Credentials) -> Option<pb::GoAway> {
        self.send_ops(vec![hello_op(1, &creds.access_token, creds.device_id)]).await;
        let e = self.event().await;
        match e.event {
            Some(server_event::Event::Welcome(_)) => None,
            Some(server_event::Event::GoAway(g)) => {
                self.expect_closed().await;
                Some(g)
            }
            _ => panic!("expected Welcome or GoAway, got {e:?}"),
        }
    }
}
