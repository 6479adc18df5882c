//! The session driver over an in-memory byte stream, on paused tokio time: its deadlines
//! (handshake, heartbeat, write) fire exactly when configured, with no socket and no real wait.
//! The same behaviours are checked end to end over TCP in `tests/protocol.rs`.
//!
//! Paused time is sound here because nothing leaves the runtime while a deadline is pending:
//! the embedded engine's reads run inline or on `spawn_blocking` (which holds the clock still),
//! and the messages a test needs are committed before its session starts. Like the session,
//! these tests reach durable state through services only.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iris_proto::frame::{self, FrameDecoder};
use iris_proto::pb::{self, client_op, server_event, ErrorCode};
use iris_store::DeviceAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::gateway::framed::Framed;
use crate::testing::Parts;

/// Bytes the in-memory stream buffers in each direction (about a loopback socket's).
const PIPE_BYTES: usize = 64 * 1024;

/// The client end of a session's stream, speaking frames by hand.
struct Client {
    io: DuplexStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Client {
    async fn send(&mut self, ops: Vec<pb::ClientOp>) {
        let mut bytes = BytesMut::new();
        frame::encode(&pb::ClientFrame { ops }, &mut bytes);
        self.send_raw(&bytes).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write to the session");
    }

    /// The next event, `None` once the session closed the stream.
    async fn next(&mut self) -> Option<pb::ServerEvent> {
        loop {
            if let Some(body) = self.decoder.decode(&mut self.buf).expect("a valid frame prefix") {
                let f: pb::ServerFrame = frame::decode_body(&body).expect("a valid ServerFrame");
                assert_eq!(f.events.len(), 1, "one event per frame in these tests: {f:?}");
                return f.events.into_iter().next();
            }
            if self.io.read_buf(&mut self.buf).await.expect("read from the session") == 0 {
                assert!(self.buf.is_empty(), "the session closed in the middle of a frame");
                return None;
            }
        }
    }

    /// Expects a fatal `Error` with `code`, then the end of the stream.
    async fn expect_fatal(&mut self, code: ErrorCode) {
        let e = self.next().await.expect("an error before the close");
        let Some(server_event::Event::Error(err)) = e.event else { panic!("expected {code:?}, got {e:?}") };
        assert_eq!((err.error_code(), err.fatal), (code, true), "{err:?}");
        assert!(self.next().await.is_none(), "the session must close after a fatal error");
    }

    /// Pings and expects the Pong.
    async fn ping(&mut self, request_id: u64) {
        let ping = pb::Ping { client_time_ms: request_id };
        self.send(vec![pb::ClientOp { request_id, op: Some(client_op::Op::Ping(ping)) }]).await;
        let e = self.next().await.expect("a Pong");
        assert!(matches!(e.event, Some(server_event::Event::Pong(_))) && e.request_id == request_id, "{e:?}");
    }
}

/// Starts a session of `parts` on a fresh in-memory stream; returns its client end and the
/// session's task (which ends when the session does).
fn open(parts: &Parts) -> (Client, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    let transport = Framed::new(server, parts.services.limits.max_frame_bytes);
    let session = tokio::spawn(super::run(parts.services.clone(), transport, IpAddr::V4(Ipv4Addr::LOCALHOST)));
    (Client { io: client, buf: BytesMut::new(), decoder: FrameDecoder::new(64 << 20) }, session)
}

/// `Hello` for `device`, with a token of the parts' authenticator.
fn hello(parts: &Parts, device: DeviceAddr) -> pb::ClientOp {
    let hello = pb::Hello {
        versions: vec![iris_proto::version::CURRENT],
        token: parts.access_token(device),
        device_id: device.device,
        capabilities: vec![],
        resume_after_seq: 0,
        receipts_unwanted: vec![],
    };
    pb::ClientOp { request_id: 1, op: Some(client_op::Op::Hello(hello)) }
}

/// A session that completed the handshake as `device`.
async fn welcomed(parts: &Parts, device: DeviceAddr) -> Client {
    let (mut client, _) = open(parts);
    client.send(vec![hello(parts, device)]).await;
    let e = client.next().await.expect("an answer to the Hello");
    assert!(matches!(e.event, Some(server_event::Event::Welcome(_))), "expected Welcome, got {e:?}");
    client
}

/// Asserts that `elapsed` is `at` (timers fire on whole milliseconds: up to one late).
fn assert_at(elapsed: Duration, at: Duration) {
    assert!(elapsed >= at && elapsed <= at + Duration::from_millis(1), "at {elapsed:?}, expected {at:?}");
}

#[tokio::test(start_paused = true)]
async fn no_hello_by_the_handshake_deadline_is_a_fatal_timeout() {
    // Proves: a silent connection and one stalled inside its first frame both get a fatal
    // TIMEOUT exactly at handshake_timeout_ms.
    let parts = Parts::with_config(|c| c.session.handshake_timeout_ms = 500);
    let started = Instant::now();
    let (mut silent, _) = open(&parts);
    let (mut stalled, _) = open(&parts);
    stalled.send_raw(&[0, 0, 0, 50, 0x0a]).await;
    silent.expect_fatal(ErrorCode::Timeout).await;
    assert_at(started.elapsed(), Duration::from_millis(500));
    stalled.expect_fatal(ErrorCode::Timeout).await;
    assert_at(started.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_hello_just_before_the_handshake_deadline_is_welcomed() {
    // Proves: the handshake deadline is not shorter than configured: a Hello 1 ms before it is
    // answered with a Welcome and the session serves on.
    let parts = Parts::with_config(|c| c.session.handshake_timeout_ms = 500);
    let alice = parts.account("+15550000001", 1).await[0];
    let (mut client, _) = open(&parts);
    tokio::time::sleep(Duration::from_millis(499)).await;
    client.send(vec![hello(&parts, alice)]).await;
    let e = client.next().await.expect("an answer to the Hello");
    assert!(matches!(e.event, Some(server_event::Event::Welcome(_))), "expected Welcome, got {e:?}");
    client.ping(2).await;
}

#[tokio::test(start_paused = true)]
async fn silence_past_twice_the_heartbeat_ends_the_session_and_pings_keep_one_open() {
    // Proves: with heartbeat_interval_ms = 300, a session that hears nothing for more than
    // 600 ms ends with a fatal HEARTBEAT_TIMEOUT at the first check after that (checks run every
    // half heartbeat: 750 ms), while one pinging every 150 ms outlives it.
    let parts = Parts::with_config(|c| c.session.heartbeat_interval_ms = 300);
    let (alice, bob) = (parts.account("+15550000001", 1).await[0], parts.account("+15550000002", 1).await[0]);
    let mut silent = welcomed(&parts, alice).await;
    let mut chatty = welcomed(&parts, bob).await;
    let started = Instant::now();
    let keep_alive = tokio::spawn(async move {
        for i in 1..=8 {
            chatty.ping(i).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        chatty
    });
    silent.expect_fatal(ErrorCode::HeartbeatTimeout).await;
    assert_at(started.elapsed(), Duration::from_millis(750));
    let mut chatty = keep_alive.await.expect("the pinging client");
    assert_at(started.elapsed(), Duration::from_millis(1200));
    chatty.ping(100).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_reads_nothing_is_cut_off_at_the_write_timeout() {
    // Proves: when the client reads nothing and the stream's buffers are full, the session
    // abandons the write after write_timeout_ms and ends (holding no backlog for it), and the
    // undelivered messages stay in the inbox for the next connection.
    let parts = Parts::with_config(|c| c.session.write_timeout_ms = 500);
    let (alice, bob) = (parts.account("+15550000001", 1).await[0], parts.account("+15550000002", 1).await[0]);
    for i in 0..4 {
        let msg = pb::SendMessage {
            client_msg_id: format!("big-{i}"),
            to_account_id: bob.account,
            body: Some(pb::send_message::Body::Payload(Bytes::from(vec![b'x'; 60 * 1024]))),
            ..Default::default()
        };
        parts.messaging().send(alice, msg).await.expect("accepted");
    }
    let (mut client, session) = open(&parts);
    client.send(vec![hello(&parts, bob)]).await;
    let started = Instant::now();
    session.await.expect("the session ends by itself");
    assert_at(started.elapsed(), Duration::from_millis(500));
    let cursor = parts.services.inbox.cursor(bob).await.expect("the cursor");
    assert_eq!((cursor.acked, cursor.last), (0, 4), "nothing delivered is lost");
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_go_away_at_once_to_idle_and_handshaking_connections() {
    // Proves: when the server stops, a session with nothing in flight and a connection that has
    // not sent its Hello are both told GoAway (with a 0.5-3 s reconnect delay) and closed at
    // once: nothing waits for the drain bound or the handshake deadline.
    let parts = Parts::new();
    let alice = parts.account("+15550000001", 1).await[0];
    let mut idle = welcomed(&parts, alice).await;
    let (mut handshaking, _) = open(&parts);
    tokio::task::yield_now().await; // the new connection is waiting for its Hello
    let started = Instant::now();
    parts.services.shutdown.cancel();
    for client in [&mut idle, &mut handshaking] {
        let e = client.next().await.expect("GoAway");
        let Some(server_event::Event::GoAway(g)) = e.event else { panic!("expected GoAway, got {e:?}") };
        assert!((500..3000).contains(&g.reconnect_after_ms), "{g:?}");
        assert!(client.next().await.is_none(), "closed after the GoAway");
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_suspended_accounts_hello_is_refused_at_once_until_an_operator_lifts_it() {
    // Proves: the Hello of a suspended account is answered with a fatal ACCOUNT_SUSPENDED and the
    // connection closed without waiting for any deadline; once the suspension is lifted the next
    // Hello is welcomed. (The refusal of sends is checked end to end in tests/abuse.rs.)
    let parts = Parts::new();
    let alice = parts.account("+15550000001", 1).await[0];
    let abuse = &parts.services.abuse;
    assert!(abuse.suspend(alice.account, "review").await.unwrap());
    let (mut refused, _) = open(&parts);
    let started = Instant::now();
    refused.send(vec![hello(&parts, alice)]).await;
    refused.expect_fatal(ErrorCode::AccountSuspended).await;
    assert_eq!(started.elapsed(), Duration::ZERO);

    assert!(abuse.unsuspend(alice.account).await.unwrap());
    welcomed(&parts, alice).await;
}
