//! The framed TCP protocol at its edges: framing errors, the handshake, limits, timeouts,
//! heartbeats and per-operation errors, each answered with its exact typed code — and a broken
//! connection never disturbs the others.

mod common;

use std::time::Duration;

use common::*;
use iris_proto::pb::{self, server_event, ErrorCode};

/// Two users, each with one connected device.
async fn two_connected(server: &TestServer) -> (RawConn, RawConn) {
    let alice = server.login("+15550000001", "alice phone").await;
    let bob = server.login("+15550000002", "bob phone").await;
    let (a, _) = server.connect_as(&alice).await;
    let (b, _) = server.connect_as(&bob).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_length_prefix_is_frame_too_large_and_closes_only_that_connection() {
    // Proves: a length word above max_frame_bytes is FRAME_TOO_LARGE (fatal, closed) without the body being sent, and a bystander keeps working.
    let server = TestServer::start().await;
    let (mut bystander, mut victim) = two_connected(&server).await;
    let max = iris_proto::Limits::default().max_frame_bytes;
    victim.send_raw(&(max + 1).to_be_bytes()).await;
    let err = victim.expect_fatal(ErrorCode::FrameTooLarge).await;
    assert_eq!(err.message, format!("frame of {} bytes exceeds the limit of {max} bytes", max + 1));
    bystander.ping(7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_length_prefix_before_hello_is_frame_too_large() {
    // Proves: the size check also guards the handshake (no Hello needed to be refused).
    let server = TestServer::start().await;
    let mut conn = server.connect().await;
    conn.send_raw(&0x7fff_ffff_u32.to_be_bytes()).await;
    conn.expect_fatal(ErrorCode::FrameTooLarge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_body_is_bad_frame() {
    // Proves: a valid length followed by bytes that are not a ClientFrame is BAD_FRAME (fatal, closed); others unaffected.
    let server = TestServer::start().await;
    let (mut bystander, mut victim) = two_connected(&server).await;
    victim.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    victim.expect_fatal(ErrorCode::BadFrame).await;
    bystander.ping(1).await;

    let mut fresh = server.connect().await;
    fresh.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    fresh.expect_fatal(ErrorCode::BadFrame).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_bit_is_bad_frame() {
    // Proves: the reserved compression bit in the length word is refused as BAD_FRAME (fatal, closed), before and after Hello.
    let server = TestServer::start().await;
    let (mut bystander, mut victim) = two_connected(&server).await;
    victim.send_raw(&(iris_proto::frame::COMPRESSED_FLAG | 2).to_be_bytes()).await;
    victim.expect_fatal(ErrorCode::BadFrame).await;
    bystander.ping(1).await;

    let mut fresh = server.connect().await;
    fresh.send_raw(&iris_proto::frame::COMPRESSED_FLAG.to_be_bytes()).await;
    fresh.expect_fatal(ErrorCode::BadFrame).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_then_close_only_ends_that_connection() {
    // Proves: a client that leaves mid-frame (half-close or full drop) is just closed; the server keeps serving old and new connections.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let carol = server.login("+15550000003", "carol").await;
    let (mut bystander, _) = server.connect_as(&alice).await;

    let whole = iris_proto::frame::encode_to_bytes(&pb::ClientFrame { ops: vec![ping_op(9, 9)] });
    let (mut half_closed, _) = server.connect_as(&bob).await;
    half_closed.send_raw(&whole[..whole.len() - 2]).await;
    half_closed.shutdown_write().await;
    // The server may say why before closing; if it does, it is BAD_FRAME and fatal.
    if let Some(e) = half_closed.next_event(EVENT_TIMEOUT).await {
        let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected BAD_FRAME or a close, got {e:?}"));
        assert_eq!(err.error_code(), ErrorCode::BadFrame);
        assert!(err.fatal);
        half_closed.expect_closed().await;
    }

    let (mut dropped, _) = server.connect_as(&carol).await;
    dropped.send_raw(&whole[..3]).await;
    drop(dropped);

    let mut before_hello = server.connect().await;
    before_hello.send_raw(&whole[..5]).await;
    drop(before_hello);

    bystander.ping(1).await;
    let (mut again, _) = server.connect_as(&carol).await;
    again.ping(2).await;
    server.get("/healthz", None).await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_before_hello_is_handshake_required() {
    // Proves: any first operation other than Hello is HANDSHAKE_REQUIRED, fatal, and closes the connection.
    let server = TestServer::start().await;
    let bob = server.login("+15550000002", "bob").await;
    let mut conn = server.connect().await;
    conn.send_ops(vec![send_op(3, text_to_account("m1", bob.account_id, b"hi"))]).await;
    conn.expect_fatal(ErrorCode::HandshakeRequired).await;

    let mut conn = server.connect().await;
    conn.send_ops(vec![ping_op(4, 4)]).await;
    conn.expect_fatal(ErrorCode::HandshakeRequired).await;

    let mut conn = server.connect().await;
    conn.send_ops(vec![]).await;
    conn.expect_fatal(ErrorCode::HandshakeRequired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_hello_is_handshake_required() {
    // Proves: a Hello after the handshake (in a later frame or in the same frame) is HANDSHAKE_REQUIRED, fatal.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let (mut conn, _) = server.connect_as(&alice).await;
    conn.send_ops(vec![hello_op(2, &alice.access_token, alice.device_id)]).await;
    conn.expect_fatal(ErrorCode::HandshakeRequired).await;

    let mut conn = server.connect().await;
    let hello = hello_op(1, &alice.access_token, alice.device_id);
    conn.send_ops(vec![hello.clone(), hello]).await;
    conn.expect_fatal(ErrorCode::HandshakeRequired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_version_lists_the_supported_ones() {
    // Proves: a Hello with no common version is UNSUPPORTED_VERSION, fatal, with supported_versions = [1.0].
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    for offered in [vec![pb::ProtocolVersion { major: 9, minor: 0 }], vec![]] {
        let mut conn = server.connect().await;
        conn.send_ops(vec![hello_with_versions(1, &alice.access_token, alice.device_id, offered)]).await;
        let err = conn.expect_fatal(ErrorCode::UnsupportedVersion).await;
        assert_eq!(err.supported_versions, vec![pb::ProtocolVersion { major: 1, minor: 0 }]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forged_and_empty_tokens_are_unauthenticated() {
    // Proves: a malformed, forged (other key or edited claims) or empty token is UNAUTHENTICATED, fatal, closed.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let other_server = TestServer::start().await;
    let stranger = other_server.login("+15550000001", "alice").await;
    assert_eq!(
        (stranger.account_id, stranger.device_id),
        (alice.account_id, alice.device_id),
        "same claims, other key"
    );

    // Same MAC, claims edited to device 2.
    let (payload, mac) = alice.access_token.strip_prefix("v1.").unwrap().split_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims = b64.decode(payload).unwrap();
    claims[11] = 2;
    let edited = format!("v1.{}.{mac}", b64.encode(&claims));

    for (token, device_id) in [
        ("not-a-token".to_owned(), alice.device_id),
        (stranger.access_token.clone(), alice.device_id),
        (edited, 2),
        (String::new(), alice.device_id),
    ] {
        let mut conn = server.connect().await;
        conn.send_ops(vec![hello_op(1, &token, device_id)]).await;
        conn.expect_fatal(ErrorCode::Unauthenticated).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_id_not_matching_the_token_is_unauthenticated() {
    // Proves: Hello.device_id must be the token's device; otherwise UNAUTHENTICATED, fatal.
    let server = TestServer::start().await;
    let alice1 = server.login("+15550000001", "alice 1").await;
    let alice2 = server.login("+15550000001", "alice 2").await;
    assert_eq!((alice1.device_id, alice2.device_id), (1, 2));
    for device_id in [2, 0, 77] {
        let mut conn = server.connect().await;
        conn.send_ops(vec![hello_op(1, &alice1.access_token, device_id)]).await;
        conn.expect_fatal(ErrorCode::Unauthenticated).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_ops_than_the_announced_limit_is_too_many_ops() {
    // Proves: a frame with max_ops_per_frame + 1 ops is TOO_MANY_OPS (fatal, none of its ops run) while exactly the limit is fine.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let (mut conn, welcome) = server.connect_as(&alice).await;
    let max = welcome.limits.unwrap().max_ops_per_frame as u64;
    assert!(max > 1);

    conn.send_ops((1..=max).map(|i| ping_op(i, i)).collect()).await;
    for i in 1..=max {
        let e = conn.event().await;
        assert_eq!(e.request_id, i);
        assert!(matches!(e.event, Some(server_event::Event::Pong(_))), "{e:?}");
    }

    conn.send_ops((1..=max + 1).map(|i| ping_op(i, i)).collect()).await;
    conn.expect_fatal(ErrorCode::TooManyOps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_frame_counts_towards_the_ops_limit() {
    // Proves: the ops limit counts every op of a frame, the Hello included.
    let server = TestServer::start_with(|c| c.limits.ops_per_frame_max = 3).await;
    let alice = server.login("+15550000001", "alice").await;
    let mut conn = server.connect().await;
    let mut ops = vec![hello_op(1, &alice.access_token, alice.device_id)];
    ops.extend((2..=4).map(|i| ping_op(i, i)));
    conn.send_ops(ops).await;
    conn.expect_fatal(ErrorCode::TooManyOps).await;
}

#[tokio::test]
async fn no_hello_within_the_handshake_timeout_is_timeout() {
    // Proves: a silent connection, or one that stalls inside its first frame, gets TIMEOUT (fatal) after handshake_timeout_ms.
    pause_time_unless_cluster();
    let server = TestServer::start_with(|c| c.session.handshake_timeout_ms = 500).await;
    let started = tokio::time::Instant::now();
    let mut silent = server.connect().await;
    let mut stalled = server.connect().await;
    stalled.send_raw(&[0, 0, 0, 50, 0x0a]).await;
    let err = silent.expect_fatal(ErrorCode::Timeout).await;
    assert!(err.fatal);
    stalled.expect_fatal(ErrorCode::Timeout).await;
    assert!(started.elapsed() >= Duration::from_millis(450), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn silence_past_twice_the_heartbeat_is_heartbeat_timeout() {
    // Proves: a connection silent for 2 × heartbeat_interval_ms gets HEARTBEAT_TIMEOUT (fatal), while one that pings in time stays open.
    pause_time_unless_cluster();
    let server = TestServer::start_with(|c| c.session.heartbeat_interval_ms = 300).await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (mut silent, welcome) = server.connect_as(&alice).await;
    assert_eq!(welcome.heartbeat_interval_ms, 300);
    let (mut chatty, _) = server.connect_as(&bob).await;
    let started = tokio::time::Instant::now();

    let keep_alive = tokio::spawn(async move {
        // The client's pace is this test's input: a ping every half heartbeat.
        let mut pace = tokio::time::interval(Duration::from_millis(150));
        for i in 1..=8 {
            pace.tick().await;
            chatty.ping(i).await;
        }
        pace.tick().await;
        chatty
    });
    silent.expect_fatal(ErrorCode::HeartbeatTimeout).await;
    assert!(started.elapsed() >= Duration::from_millis(550), "closed too early: {:?}", started.elapsed());
    let mut chatty = keep_alive.await.unwrap();
    chatty.ping(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong_echoing_time_and_request_id() {
    // Proves: Pong echoes client_time_ms and request_id and carries the server's time.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let (mut conn, _) = server.connect_as(&alice).await;
    conn.send_ops(vec![ping_op(42, 123_456_789)]).await;
    let e = conn.event().await;
    assert_eq!(e.request_id, 42);
    let Some(server_event::Event::Pong(pong)) = e.event else { panic!("expected Pong, got {e:?}") };
    assert_eq!(pong.client_time_ms, 123_456_789);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(pong.server_time_ms.abs_diff(now) < 60_000, "server time {} vs {now}", pong.server_time_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_without_a_body_is_invalid_argument_and_not_fatal() {
    // Proves: ClientOp{op: None} is answered INVALID_ARGUMENT with its request_id, and the connection keeps working.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let (mut conn, _) = server.connect_as(&alice).await;
    conn.send_ops(vec![pb::ClientOp { request_id: 5, op: None }]).await;
    conn.expect_request_error(5, ErrorCode::InvalidArgument).await;
    conn.ping(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_carries_identity_limits_and_heartbeat() {
    // Proves: Welcome answers the Hello's request_id with version 1.0, the token's account and device, the configured limits and heartbeat.
    let server = TestServer::start_with(|c| {
        c.session.heartbeat_interval_ms = 12_345;
        c.limits.ops_per_frame_max = 17;
    })
    .await;
    let _first = server.login("+15550000009", "someone else").await;
    let alice1 = server.login("+15550000001", "alice 1").await;
    let alice2 = server.login("+15550000001", "alice 2").await;
    let mut conn = server.connect().await;
    conn.send_ops(vec![hello_op(77, &alice2.access_token, alice2.device_id)]).await;
    let e = conn.event().await;
    assert_eq!(e.request_id, 77);
    let Some(server_event::Event::Welcome(w)) = e.event else { panic!("expected Welcome, got {e:?}") };
    assert_eq!(w.version, Some(pb::ProtocolVersion { major: 1, minor: 0 }));
    assert_eq!(w.account_id, alice1.account_id);
    assert_eq!(w.account_id, alice2.account_id);
    assert_eq!(w.device_id, 2);
    assert_eq!(w.heartbeat_interval_ms, 12_345);
    let expected = pb::Limits { max_ops_per_frame: 17, ..iris_proto::Limits::default().into() };
    assert_eq!(w.limits, Some(expected));
    assert_eq!(w.node_id, "node-0");
    assert!(w.server_time_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_the_same_device_replaces_the_first() {
    // Proves: when a device connects again, the older connection gets SESSION_REPLACED (fatal, closed) and the new one works.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let (mut first, _) = server.connect_as(&alice).await;
    let (mut second, _) = server.connect_as(&alice).await;
    first.expect_fatal(ErrorCode::SessionReplaced).await;
    second.ping(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_beyond_what_was_delivered_is_invalid_argument() {
    // Proves: acking a seq never delivered is INVALID_ARGUMENT (not fatal); acking what was delivered is silent.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    b.send_ops(vec![ack_op(3, 1)]).await;
    b.expect_request_error(3, ErrorCode::InvalidArgument).await;

    a.send_accepted(1, text_to_account("m1", bob.account_id, b"hello")).await;
    let items = b.expect_delivery().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].seq, 1);
    b.send_ops(vec![ack_op(4, 2)]).await;
    b.expect_request_error(4, ErrorCode::InvalidArgument).await;
    b.send_ops(vec![ack_op(5, 1), ping_op(6, 6)]).await;
    let e = b.event().await;
    assert_eq!(e.request_id, 6, "a valid ack has no answer: {e:?}");
    b.ping(7).await;

    // The valid ack produced a DELIVERED receipt for the sender.
    let items = a.expect_delivery().await;
    let Some(pb::inbox_item::Body::Receipt(r)) = &items[0].body else { panic!("expected a receipt, got {items:?}") };
    assert_eq!(r.r#type, pb::ReceiptType::Delivered as i32);
    assert_eq!((r.from_account_id, r.from_device_id), (bob.account_id, bob.device_id));
    assert_eq!(r.server_msg_ids.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_after_hello_in_the_same_frame_are_answered_after_the_welcome() {
    // Proves: a Hello frame may carry more ops; they run after the handshake and are answered after the Welcome.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let mut conn = server.connect().await;
    conn.send_ops(vec![hello_op(1, &alice.access_token, alice.device_id), ping_op(2, 2)]).await;
    let e = conn.event().await;
    assert!(matches!(e.event, Some(server_event::Event::Welcome(_))), "{e:?}");
    let e = conn.event().await;
    assert_eq!(e.request_id, 2);
    assert!(matches!(e.event, Some(server_event::Event::Pong(_))), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_is_answered_after_every_earlier_operation_of_the_connection() {
    // Proves: a Sync after N sends is answered (Synced, its request id) only after all N send
    // results (a Ping after it may overtake them); a Sync with nothing in flight is answered at
    // once.
    let server = TestServer::start().await;
    let (mut a, _) = two_connected(&server).await;
    let bob = server.login("+15550000002", "bob phone 2").await;
    const N: u64 = 20;
    let sync_op = |request_id| pb::ClientOp { request_id, op: Some(pb::client_op::Op::Sync(pb::Sync {})) };
    let mut ops: Vec<pb::ClientOp> =
        (1..=N).map(|i| send_op(i, text_to_account(&format!("m{i}"), bob.account_id, b"hi"))).collect();
    ops.push(sync_op(100));
    ops.push(ping_op(101, 1));
    a.send_ops(ops).await;
    let mut results = 0;
    loop {
        let e = a.answer().await;
        match e.event {
            Some(server_event::Event::SendResult(_)) => {
                assert!((1..=N).contains(&e.request_id), "{e:?}");
                results += 1;
            }
            Some(server_event::Event::Synced(_)) => {
                assert_eq!(e.request_id, 100);
                break;
            }
            Some(server_event::Event::Pong(_)) => assert_eq!(e.request_id, 101),
            _ => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(results, N, "every send was answered before the Synced");

    a.send_ops(vec![sync_op(102)]).await;
    let e = a.answer().await;
    assert_eq!(e.request_id, 102, "nothing in flight: answered at once: {e:?}");
    assert!(matches!(e.event, Some(server_event::Event::Synced(_))), "{e:?}");
}
