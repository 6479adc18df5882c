//! The SDK's connection logic against a scripted fake server on an ephemeral loopback port:
//! handshake, pipelined sends, resends after a drop, retryable refusals, redelivery dedup,
//! token refresh, GoAway and fatal errors, heartbeats and reconnect backoff. The real server's
//! behaviour is tested elsewhere.
//!
//! Every test runs on paused tokio time: the SDK's waits (backoff, retry hints, heartbeats)
//! pass in no real time, and the tests check them to the millisecond. Sound because the fake
//! server lives in the same runtime and loopback I/O completes inside the kernel at once (the
//! runtime sees it before it lets the clock jump to the next timer).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iris_client::api::Credentials;
use iris_client::pb::{self, client_op, inbox_item, server_event, ErrorCode};
use iris_client::{Client, ClientConfig, ClientError, DisconnectReason, Event, Events, ReconnectPolicy};
use iris_proto::frame::{self, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// Upper bound for any single wait in these tests; nothing here should come close.
const WAIT: Duration = Duration::from_secs(5);

struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    async fn start() -> Self {
        Self { listener: TcpListener::bind("127.0.0.1:0").await.expect("bind") }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().expect("addr").to_string()
    }

    /// Accepts the next connection and reads its Hello.
    async fn accept(&self) -> (FakeConn, pb::Hello) {
        let (stream, _) = timeout(WAIT, self.listener.accept()).await.expect("client connects").expect("accept");
        let mut conn = FakeConn { stream, buf: BytesMut::new() };
        let op = conn.next_op().await.expect("hello");
        let Some(client_op::Op::Hello(hello)) = op.op else { panic!("first op is not Hello: {op:?}") };
        (conn, hello)
    }

    /// Accepts a connection and welcomes it.
    async fn accept_welcome(&self) -> (FakeConn, pb::Hello) {
        let (mut conn, hello) = self.accept().await;
        conn.send(0, welcome()).await;
        (conn, hello)
    }
}

struct FakeConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl FakeConn {
    /// The ops of the next whole frame the client wrote, or `None` once it closed.
    async fn next_frame(&mut self) -> Option<Vec<pb::ClientOp>> {
        let decoder = FrameDecoder::new(1 << 20);
        loop {
            if let Some(body) = decoder.decode(&mut self.buf).expect("valid frame") {
                let frame: pb::ClientFrame = frame::decode_body(&body).expect("valid ClientFrame");
                return Some(frame.ops);
            }
            let n = timeout(WAIT, self.stream.read_buf(&mut self.buf)).await.expect("client writes").ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// The next op the client sent, or `None` when it closed the connection.
    async fn next_op(&mut self) -> Option<pb::ClientOp> {
        loop {
            // Ops of one frame are returned one by one; push the rest back as a frame.
            let mut ops = self.next_frame().await?.into_iter();
            let Some(first) = ops.next() else { continue };
            let rest: Vec<_> = ops.collect();
            if !rest.is_empty() {
                let mut again = BytesMut::new();
                frame::encode(&pb::ClientFrame { ops: rest }, &mut again);
                again.extend_from_slice(&self.buf);
                self.buf = again;
            }
            return Some(first);
        }
    }

    /// The next op that is not a Ping or an Ack.
    async fn next_request(&mut self) -> pb::ClientOp {
        loop {
            let op = self.next_op().await.expect("connection open");
            if !matches!(op.op, Some(client_op::Op::Ping(_)) | Some(client_op::Op::Ack(_))) {
                return op;
            }
        }
    }

    /// The next Ack's cursor.
    async fn next_ack(&mut self) -> u64 {
        loop {
            if let Some(client_op::Op::Ack(ack)) = self.next_op().await.expect("connection open").op {
                return ack.up_to_seq;
            }
        }
    }

    async fn send(&mut self, request_id: u64, event: server_event::Event) {
        self.send_all(vec![pb::ServerEvent { request_id, event: Some(event) }]).await;
    }

    async fn send_all(&mut self, events: Vec<pb::ServerEvent>) {
        let bytes = frame::encode_to_bytes(&pb::ServerFrame { events });
        self.stream.write_all(&bytes).await.expect("write to client");
    }
}

fn welcome() -> server_event::Event {
    welcome_with_heartbeat(10_000)
}

fn welcome_with_heartbeat(heartbeat_interval_ms: u32) -> server_event::Event {
    server_event::Event::Welcome(pb::Welcome {
        version: Some(iris_proto::version::CURRENT),
        heartbeat_interval_ms,
        limits: Some(iris_proto::Limits::default().into()),
        account_id: 1,
        device_id: 1,
        ..Default::default()
    })
}

fn accepted(msg: &pb::SendMessage, server_msg_id: u64) -> server_event::Event {
    server_event::Event::SendResult(pb::SendResult {
        status: pb::SendStatus::Accepted as i32,
        server_msg_id,
        server_ts_ms: 1,
        client_msg_id: msg.client_msg_id.clone(),
        duplicate: false,
    })
}

fn delivery(items: &[(u64, u64)]) -> server_event::Event {
    let items = items
        .iter()
        .map(|&(seq, id)| pb::InboxItem {
            seq,
            expires_at_ms: 0,
            server_msg_id: id,
            server_ts_ms: 1,
            body: Some(inbox_item::Body::Message(pb::Message {
                from_account_id: 2,
                payload: Bytes::from("hi"),
                ..Default::default()
            })),
        })
        .collect();
    server_event::Event::Delivery(pb::Delivery { items })
}

fn as_send(op: &pb::ClientOp) -> &pb::SendMessage {
    match &op.op {
        Some(client_op::Op::Send(m)) => m,
        other => panic!("expected a send, got {other:?}"),
    }
}

fn credentials(access_token: &str) -> Credentials {
    Credentials {
        account_id: 1,
        device_id: 1,
        phone: "+14155550100".into(),
        access_token: access_token.into(),
        access_expires_at_ms: 0,
        refresh_token: "refresh-1".into(),
    }
}

fn config(server: &FakeServer, http_url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(http_url, credentials("token-1"));
    config.tcp_addr = Some(server.addr());
    config.reconnect = ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..Default::default()
    };
    config
}

/// Connects a client to `server` while the server side accepts and welcomes it.
async fn connect(server: &FakeServer) -> (Client, Events, FakeConn, pb::Hello) {
    let (client, (conn, hello)) =
        tokio::join!(Client::connect(config(server, "http://127.0.0.1:9")), server.accept_welcome());
    let (client, mut events) = client.expect("connect");
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));
    (client, events, conn, hello)
}

async fn next_event(events: &mut Events) -> Event {
    timeout(WAIT, events.next()).await.expect("an event in time").expect("stream open")
}

#[tokio::test(start_paused = true)]
async fn hello_carries_token_device_and_cursor() {
    // Proves the handshake sends what the server needs to authenticate and resume.
    let server = FakeServer::start().await;
    let mut cfg = config(&server, "http://127.0.0.1:9");
    cfg.resume_after_seq = 41;
    let (client, (_conn, hello)) = tokio::join!(Client::connect(cfg), server.accept_welcome());
    let client = client.expect("connect").0;
    assert_eq!((hello.token.as_str(), hello.device_id, hello.resume_after_seq), ("token-1", 1, 41));
    assert_eq!(hello.versions, vec![iris_proto::version::CURRENT]);
    assert_eq!(client.welcome().map(|w| w.account_id), Some(1));
}

#[tokio::test(start_paused = true)]
async fn pipelined_sends_are_answered_by_request_id_in_any_order() {
    // Proves many sends share the connection and each caller gets its own result.
    let server = FakeServer::start().await;
    let (client, _events, mut conn, _) = connect(&server).await;
    let sends = (0..50).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.send(2u64, format!("m{i}")).await })
    });
    let handles: Vec<_> = sends.collect();
    let mut ops = Vec::new();
    for _ in 0..50 {
        ops.push(conn.next_request().await);
    }
    for (n, op) in ops.iter().enumerate().rev() {
        conn.send(op.request_id, accepted(as_send(op), 1000 + n as u64)).await;
    }
    let mut ids = Vec::new();
    for h in handles {
        let result = h.await.expect("task").expect("accepted");
        assert_eq!(result.status, pb::SendStatus::Accepted as i32);
        ids.push(result.server_msg_id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1000..1050).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_send_is_resent_with_the_same_client_msg_id_after_a_drop() {
    // Proves at-least-once sending: the retry after a reconnect reuses the client_msg_id.
    let server = FakeServer::start().await;
    let (client, mut events, mut conn, _) = connect(&server).await;
    let send = tokio::spawn(async move { client.send(2u64, "hello").await });
    let first = conn.next_request().await;
    drop(conn);
    assert!(matches!(next_event(&mut events).await, Event::Disconnected(_)));
    let dropped = Instant::now();
    let (mut conn, _) = server.accept_welcome().await;
    // The first reconnect waits a jittered delay up to initial_delay (10 ms), no longer.
    assert!(dropped.elapsed() <= Duration::from_millis(10), "reconnected after {:?}", dropped.elapsed());
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));
    let again = conn.next_request().await;
    assert_eq!(as_send(&again).client_msg_id, as_send(&first).client_msg_id);
    conn.send(again.request_id, accepted(as_send(&again), 77)).await;
    assert_eq!(send.await.expect("task").expect("accepted").server_msg_id, 77);
}

#[tokio::test(start_paused = true)]
async fn retryable_refusals_wait_and_retry_final_ones_fail() {
    // Proves RATE_LIMITED is retried with the same id after retry_after_ms; UNKNOWN_RECIPIENT is not.
    let server = FakeServer::start().await;
    let (client, _events, mut conn, _) = connect(&server).await;
    let c = client.clone();
    let send = tokio::spawn(async move { c.send(2u64, "x").await });
    let op = conn.next_request().await;
    let refused = pb::Error::new(ErrorCode::RateLimited, "slow down").with_retry_after(20);
    conn.send(op.request_id, server_event::Event::Error(refused)).await;
    let refused_at = Instant::now();
    let retry = conn.next_request().await;
    // The hint plus up to a quarter more of jitter (timers fire on whole ms: one more).
    let waited = refused_at.elapsed();
    assert!(waited >= Duration::from_millis(20) && waited <= Duration::from_millis(26), "retried after {waited:?}");
    assert_eq!(as_send(&retry).client_msg_id, as_send(&op).client_msg_id);
    conn.send(retry.request_id, accepted(as_send(&retry), 5)).await;
    assert_eq!(send.await.expect("task").expect("accepted").server_msg_id, 5);

    let c = client.clone();
    let send = tokio::spawn(async move { c.send("+14155550199", "x").await });
    let op = conn.next_request().await;
    conn.send(op.request_id, server_event::Event::Error(pb::Error::new(ErrorCode::UnknownRecipient, "no"))).await;
    let err = send.await.expect("task").expect_err("refused");
    assert_eq!(err.code(), Some(ErrorCode::UnknownRecipient));
}

#[tokio::test(start_paused = true)]
async fn redeliveries_after_a_reconnect_reach_the_app_once_and_acks_resume() {
    // Proves exactly-once handover: items redelivered after a drop are dropped by the SDK, and the
    // next Hello resumes from the app's ack.
    let server = FakeServer::start().await;
    let (client, mut events, mut conn, _) = connect(&server).await;
    conn.send(0, delivery(&[(1, 101), (2, 102), (3, 103)])).await;
    for seq in 1..=3 {
        assert_eq!(next_event(&mut events).await.seq(), Some(seq));
    }
    client.ack(2);
    assert_eq!(conn.next_ack().await, 2);
    drop(conn);
    assert!(matches!(next_event(&mut events).await, Event::Disconnected(_)));
    let (mut conn, hello) = server.accept_welcome().await;
    assert_eq!(hello.resume_after_seq, 2);
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));
    conn.send(0, delivery(&[(3, 103), (4, 104)])).await;
    let event = next_event(&mut events).await;
    assert_eq!((event.seq(), event.message().map(|m| m.from_account_id)), (Some(4), Some(2)));
    assert!(events.try_next().is_none(), "seq 3 was not handed out twice");
    client.ack(4);
    assert_eq!(conn.next_ack().await, 4);
    assert_eq!(client.last_acked_seq(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_ack_rides_with_the_next_send_or_goes_alone_after_the_delay_or_at_the_batch_size() {
    // Proves the three ways an ack leaves: alone only once `ack_delay` is over, at once with a
    // send that goes anyway (in the same frame), and at once when ACK_BATCH_ENTRIES wait.
    let server = FakeServer::start().await;
    let mut cfg = config(&server, "http://127.0.0.1:9");
    cfg.ack_delay = Duration::from_millis(50);
    let (client, (mut conn, _)) = tokio::join!(Client::connect(cfg), server.accept_welcome());
    let (client, mut events) = client.expect("connect");
    next_event(&mut events).await; // Connected

    conn.send(0, delivery(&[(1, 11), (2, 12)])).await;
    next_event(&mut events).await;
    next_event(&mut events).await;
    let acked_at = Instant::now();
    client.ack(2);
    assert_eq!(conn.next_ack().await, 2);
    let waited = acked_at.elapsed();
    assert!(waited >= Duration::from_millis(50) && waited <= Duration::from_millis(51), "ack after {waited:?}");

    conn.send(0, delivery(&[(3, 13)])).await;
    next_event(&mut events).await;
    let acked_at = Instant::now();
    client.ack(3);
    let c = client.clone();
    let _send = tokio::spawn(async move { c.send(2u64, "riding").await });
    let mut frame = Vec::new();
    while frame.is_empty() {
        frame = conn.next_frame().await.expect("connection open");
    }
    let kinds: Vec<_> =
        frame.iter().map(|op| matches!(op.op, Some(client_op::Op::Ack(pb::Ack { up_to_seq: 3 })))).collect();
    assert_eq!(kinds, [true, false], "the ack and the send share one frame: {frame:?}");
    assert_eq!(acked_at.elapsed(), Duration::ZERO);

    let batch = iris_client::ACK_BATCH_ENTRIES;
    let items: Vec<_> = (4..4 + batch).map(|seq| (seq, 10 + seq)).collect();
    conn.send(0, delivery(&items)).await;
    for _ in 0..batch {
        next_event(&mut events).await;
    }
    let acked_at = Instant::now();
    client.ack(3 + batch);
    assert_eq!(conn.next_ack().await, 3 + batch);
    assert_eq!(acked_at.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn auto_ack_acks_what_the_app_takes() {
    // Proves auto_ack acks each item as Events::next returns it.
    let server = FakeServer::start().await;
    let mut cfg = config(&server, "http://127.0.0.1:9");
    cfg.auto_ack = true;
    let (client, (mut conn, _)) = tokio::join!(Client::connect(cfg), server.accept_welcome());
    let (client, mut events) = client.expect("connect");
    conn.send(0, delivery(&[(1, 11), (2, 12)])).await;
    next_event(&mut events).await; // Connected
    next_event(&mut events).await;
    next_event(&mut events).await;
    let mut acked = conn.next_ack().await;
    while acked < 2 {
        acked = conn.next_ack().await;
    }
    assert_eq!(client.last_acked_seq(), 2);
}

#[tokio::test(start_paused = true)]
async fn go_away_reconnects_and_session_replaced_stops() {
    // Proves GoAway is a reconnect, while SESSION_REPLACED ends the client and fails its calls.
    let server = FakeServer::start().await;
    let (client, mut events, mut conn, _) = connect(&server).await;
    conn.send(0, server_event::Event::GoAway(pb::GoAway { reconnect_after_ms: 20, reason: "restart".into() })).await;
    let told_at = Instant::now();
    let event = next_event(&mut events).await;
    assert!(matches!(event, Event::Disconnected(DisconnectReason::GoAway { .. })), "{event:?}");
    let (mut conn, _) = server.accept_welcome().await;
    let waited = told_at.elapsed();
    assert!(waited >= Duration::from_millis(20) && waited <= Duration::from_millis(26), "came back after {waited:?}");
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));

    conn.send(0, server_event::Event::Error(pb::Error::new(ErrorCode::SessionReplaced, "another connection"))).await;
    let event = next_event(&mut events).await;
    assert!(matches!(&event, Event::Fatal(e) if e.error_code() == ErrorCode::SessionReplaced), "{event:?}");
    assert!(timeout(WAIT, events.next()).await.expect("stream ends").is_none());
    let err = client.send(2u64, "late").await.expect_err("client stopped");
    assert!(matches!(err, ClientError::Fatal(e) if e.error_code() == ErrorCode::SessionReplaced));
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_refreshed_over_http_and_reported() {
    // Proves UNAUTHENTICATED at Hello triggers one refresh, the new token is used and handed to
    // the app through on_credentials and Client::credentials.
    let server = FakeServer::start().await;
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let http_url = format!("http://{}", http.local_addr().expect("addr"));
    let fresh = Credentials { refresh_token: "refresh-2".into(), ..credentials("token-2") };
    let http_task = tokio::spawn(serve_one_refresh(http, fresh.clone()));

    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = config(&server, &http_url);
    cfg.on_credentials = Some(iris_client::CredentialsHook::new(move |c| drop(seen_tx.send(c.clone()))));
    let server_side = async {
        let (mut conn, hello) = server.accept().await;
        assert_eq!(hello.token, "token-1");
        conn.send(1, server_event::Event::Error(pb::Error::new(ErrorCode::Unauthenticated, "expired"))).await;
        server.accept_welcome().await
    };
    let (client, (_conn, hello)) = tokio::join!(Client::connect(cfg), server_side);
    let (client, _events) = client.expect("connect after refresh");
    assert_eq!(hello.token, "token-2");
    assert_eq!(http_task.await.expect("http task"), "refresh-1");
    assert_eq!(client.credentials(), fresh);
    assert_eq!(seen_rx.try_recv().ok(), Some(fresh));
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_pings_at_half_the_heartbeat_and_leaves_a_server_silent_for_two() {
    // Proves: with a 2 s heartbeat an idle client pings 1 s after its last write, and a server
    // silent for 4 s (twice the heartbeat) is given up with HeartbeatTimeout and reconnected to.
    let server = FakeServer::start().await;
    let (client, (mut conn, _)) = tokio::join!(Client::connect(config(&server, "http://127.0.0.1:9")), async {
        let (mut conn, hello) = server.accept().await;
        conn.send(0, welcome_with_heartbeat(2_000)).await;
        (conn, hello)
    });
    let (_client, mut events) = client.expect("connect");
    let welcomed = Instant::now();
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));
    for n in 1..=3u64 {
        let op = conn.next_op().await.expect("a ping");
        assert!(matches!(op.op, Some(client_op::Op::Ping(_))), "{op:?}");
        let at = welcomed.elapsed();
        let due = Duration::from_secs(n);
        assert!(at >= due && at <= due + Duration::from_millis(1), "ping {n} at {at:?}");
    }
    let event = next_event(&mut events).await;
    assert!(matches!(event, Event::Disconnected(DisconnectReason::HeartbeatTimeout)), "{event:?}");
    let at = welcomed.elapsed();
    assert!(at >= Duration::from_secs(4) && at <= Duration::from_millis(4_001), "given up at {at:?}");
    let (_conn, _) = server.accept_welcome().await;
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));
}

#[tokio::test(start_paused = true)]
async fn reconnects_back_off_under_a_doubling_ceiling_and_give_up_after_max_attempts() {
    // Proves: while every reconnect fails, attempt n waits at most initial_delay × 2^(n-1), and
    // after max_attempts the client stops with a fatal UNAVAILABLE instead of trying forever.
    let server = FakeServer::start().await;
    let mut cfg = config(&server, "http://127.0.0.1:9");
    cfg.reconnect = ReconnectPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(10),
        max_attempts: Some(3),
        ..Default::default()
    };
    let (client, (conn, _)) = tokio::join!(Client::connect(cfg), server.accept_welcome());
    let (_client, mut events) = client.expect("connect");
    assert!(matches!(next_event(&mut events).await, Event::Connected(_)));
    drop(conn);
    assert!(matches!(next_event(&mut events).await, Event::Disconnected(_)));
    let mut last = Instant::now();
    for ceiling_ms in [100, 200, 400] {
        let (conn, _) = server.accept().await; // and closed before any Welcome
        let waited = last.elapsed();
        assert!(waited <= Duration::from_millis(ceiling_ms + 1), "attempt after {waited:?} > {ceiling_ms} ms");
        drop(conn);
        last = Instant::now();
    }
    let event = next_event(&mut events).await;
    assert!(matches!(&event, Event::Fatal(e) if e.error_code() == ErrorCode::Unavailable), "{event:?}");
    assert!(timeout(WAIT, events.next()).await.expect("stream ends").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_refusal_without_a_hint_is_retried_after_the_default_delay_until_attempts_run_out() {
    // Proves: OVERLOADED without retry_after_ms is retried with the same client_msg_id after
    // RetryPolicy::default_delay (plus up to a quarter), and after max_attempts the caller gets
    // the server's error.
    let server = FakeServer::start().await;
    let mut cfg = config(&server, "http://127.0.0.1:9");
    cfg.retry =
        iris_client::RetryPolicy { max_attempts: 3, default_delay: Duration::from_millis(200), ..Default::default() };
    let (client, (mut conn, _)) = tokio::join!(Client::connect(cfg), server.accept_welcome());
    let (client, _events) = client.expect("connect");
    let c = client.clone(); // this one keeps the connection open after the send gave up
    let mut send = tokio::spawn(async move { c.send(2u64, "x").await });
    let mut attempts: Vec<pb::ClientOp> = Vec::new();
    let mut refused_at = None;
    let result = loop {
        tokio::select! {
            result = &mut send => break result.expect("task"),
            op = conn.next_request() => {
                if let Some(at) = refused_at {
                    let waited = Instant::elapsed(&at);
                    assert!(
                        waited >= Duration::from_millis(200) && waited <= Duration::from_millis(251),
                        "retried after {waited:?}"
                    );
                }
                let refused = pb::Error::new(ErrorCode::Overloaded, "busy");
                conn.send(op.request_id, server_event::Event::Error(refused)).await;
                refused_at = Some(Instant::now());
                attempts.push(op);
            }
        }
    };
    let err = result.expect_err("refused for good");
    assert_eq!(err.code(), Some(ErrorCode::Overloaded));
    assert_eq!(attempts.len(), 3, "max_attempts sends in all");
    assert!(attempts.iter().all(|op| as_send(op).client_msg_id == as_send(&attempts[0]).client_msg_id));
}

/// Answers one `POST /v1/auth/refresh` with `fresh`; returns the refresh token it was sent.
async fn serve_one_refresh(listener: TcpListener, fresh: Credentials) -> String {
    let (mut stream, _) = timeout(WAIT, listener.accept()).await.expect("refresh call").expect("accept");
    let mut req = Vec::new();
    let body = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "request ended early");
        req.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&req).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("POST /v1/auth/refresh "), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("length"))
                })
                .unwrap_or(0);
            if body.len() >= len {
                break body.to_owned();
            }
        }
    };
    let sent: iris_client::api::RefreshRequest = serde_json::from_str(&body).expect("refresh body");
    let json = serde_json::to_string(&fresh).expect("json");
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(resp.as_bytes()).await.expect("write response");
    sent.refresh_token
}

#[tokio::test(start_paused = true)]
async fn abuse_refusals_fail_at_once_with_their_hint_and_the_connection_stays() {
    // Proves: SENDING_RESTRICTED with a retry hint of a week is not retried (the SDK would sit on
    // the send for days): it fails at once and hands the hint to the app; ACCOUNT_SUSPENDED on a
    // send fails at once too and ends nothing: the next send goes out on the same connection.
    let server = FakeServer::start().await;
    let (client, _events, mut conn, _) = connect(&server).await;
    let week_ms: u32 = 7 * 24 * 3600 * 1000;
    for (code, hint) in [(ErrorCode::SendingRestricted, Some(week_ms)), (ErrorCode::AccountSuspended, None)] {
        let c = client.clone();
        let send = tokio::spawn(async move { c.send(2u64, "x").await });
        let op = conn.next_request().await;
        let mut refused = pb::Error::new(code, "refused by an abuse rule");
        if let Some(ms) = hint {
            refused = refused.with_retry_after(ms);
        }
        conn.send(op.request_id, server_event::Event::Error(refused)).await;
        let refused_at = Instant::now();
        let err = send.await.expect("task").expect_err("refused");
        assert_eq!((err.code(), err.retry_after_ms()), (Some(code), hint.map(u64::from)), "{err}");
        assert_eq!(refused_at.elapsed(), Duration::ZERO, "{code:?} is final: no wait");
    }
    let c = client.clone();
    let send = tokio::spawn(async move { c.send(2u64, "after").await });
    let op = conn.next_request().await;
    conn.send(op.request_id, accepted(as_send(&op), 9)).await;
    assert_eq!(send.await.expect("task").expect("accepted on the same connection").server_msg_id, 9);
}
