//! Protection under load, against the real server: per-account send limits, per-IP connection
//! limits, the node's connection budget, the global accept rate (reconnect storms), the partial
//! frame deadline (slowloris) and an overloaded committer. Each refusal carries its exact typed
//! code and a wait time, and the clients that did nothing wrong carry on.

mod common;

use std::time::Duration;

use common::*;
use iris_proto::pb::{self, server_event, ErrorCode};
use tokio::time::Instant;

const ALICE: &str = "+15550001001";
const BOB: &str = "+15550001002";
const CAROL: &str = "+15550001003";

/// Reads deliveries until `n` messages arrived; returns their `client_msg_id`s in order.
async fn receive_messages(conn: &mut RawConn, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        for item in conn.expect_delivery().await {
            ids.push(as_message(&item).expect("a message").client_msg_id.clone());
        }
    }
    assert_eq!(ids.len(), n, "more messages than expected: {ids:?}");
    ids
}

/// Pings and expects the `Pong` as the very next event: proves the connection works and that
/// nothing (no stray delivery) was queued before it.
async fn ping_with_nothing_before(conn: &mut RawConn, request_id: u64) {
    conn.send_ops(vec![ping_op(request_id, 1)]).await;
    let e = conn.event().await;
    assert!(
        matches!(e, pb::ServerEvent { request_id: r, event: Some(server_event::Event::Pong(_)) } if r == request_id),
        "expected only a Pong, got {e:?}"
    );
}

/// Waits until the server counts exactly `n` open connections (its admission slots are freed
/// when a session task ends, just after the socket closes).
async fn wait_connections_open(server: &TestServer, n: u32) {
    wait_until(&format!("iris_connections_open is {n}"), EVENT_TIMEOUT, || async {
        metric_value(&server.get("/metrics", None).await.text(), "iris_connections_open") == f64::from(n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_past_the_per_account_limit_is_rate_limited_and_the_connection_lives_on() {
    // Proves: with 3 sends per account per minute the 4th is RATE_LIMITED (not fatal, with retry_after_ms), nothing is stored for it, the connection still works and another account's budget is untouched.
    let server = TestServer::start_with(|c| c.rate_limits.sends_per_account_per_minute = 3).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;
    for i in 1..=3 {
        a.send_accepted(i, text_to_account(&format!("m{i}"), bob.account_id, b"hi")).await;
    }
    a.send_ops(vec![send_op(4, text_to_account("m4", bob.account_id, b"hi"))]).await;
    let err = a.expect_request_error(4, ErrorCode::RateLimited).await;
    assert!(err.retry_after_ms > 0, "{err:?}");
    // 3 per minute refill one every 20 s.
    assert!(err.retry_after_ms <= 20_000, "{err:?}");
    a.ping(5).await;

    assert_eq!(receive_messages(&mut b, 3).await, ["m1", "m2", "m3"]);
    ping_with_nothing_before(&mut b, 6).await;
    b.send_accepted(7, text_to_account("from-bob", alice.account_id, b"hey")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_concurrent_limit_per_ip_is_rate_limited_before_hello() {
    // Proves: with 2 concurrent connections per IP a 3rd gets a fatal RATE_LIMITED with retry_after_ms before any Hello and is closed; once one closes, a new connection is admitted, and the others never noticed.
    let server = TestServer::start_with(|c| c.rate_limits.concurrent_connections_per_ip = 2).await;
    let (alice, bob, carol) =
        (server.login(ALICE, "a").await, server.login(BOB, "b").await, server.login(CAROL, "c").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    let mut third = server.connect().await;
    let err = third.expect_fatal(ErrorCode::RateLimited).await;
    assert!(err.retry_after_ms > 0, "{err:?}");
    a.ping(1).await;
    b.ping(2).await;

    a.shutdown_write().await;
    a.expect_closed().await;
    wait_connections_open(&server, 1).await;
    let (mut c, _) = server.connect_as(&carol).await;
    c.ping(3).await;
    b.ping(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_past_the_per_ip_rate_is_rate_limited() {
    // Proves: with 2 new connections per IP per minute the 3rd is refused with a fatal RATE_LIMITED and retry_after_ms, while the first two keep working.
    let server = TestServer::start_with(|c| c.rate_limits.connections_per_ip_per_minute = 2).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    let mut third = server.connect().await;
    let err = third.expect_fatal(ErrorCode::RateLimited).await;
    assert!(err.retry_after_ms > 0, "{err:?}");
    // 2 per minute refill one every 30 s.
    assert!(err.retry_after_ms <= 30_000, "{err:?}");
    a.ping(1).await;
    b.ping(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_node_budget_gets_go_away() {
    // Proves: with connections_max = 2 the 3rd connection gets GoAway with reconnect_after_ms in 1000..5000 and is closed; the two admitted ones keep working, and a freed slot admits again.
    let server = TestServer::start_with(|c| c.session.connections_max = 2).await;
    let (alice, bob, carol) =
        (server.login(ALICE, "a").await, server.login(BOB, "b").await, server.login(CAROL, "c").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    let go_away = server.connect().await.expect_go_away().await;
    assert!((1_000..5_000).contains(&go_away.reconnect_after_ms), "{go_away:?}");
    assert!(!go_away.reason.is_empty());
    a.ping(1).await;
    b.send_accepted(2, text_to_account("still-here", alice.account_id, b"x")).await;
    assert_eq!(receive_messages(&mut a, 1).await, ["still-here"]);

    b.shutdown_write().await;
    b.expect_closed().await;
    wait_connections_open(&server, 1).await;
    let (mut c, _) = server.connect_as(&carol).await;
    c.ping(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_past_the_accept_rate_gets_jittered_go_aways() {
    // Proves: with accepts_per_second = 1, rapid new connections are answered GoAway with reconnect_after_ms in 1000..5000, jittered (not all the same), and an admitted client is unaffected.
    let server = TestServer::start_with(|c| {
        c.rate_limits.accepts_per_second = 1;
        // An admitted connection that sends nothing is told TIMEOUT quickly, so every storm
        // connection has a first event to read without the test writing to a refused socket.
        c.session.handshake_timeout_ms = 300;
    })
    .await;
    let alice = server.login(ALICE, "a").await;
    let (mut a, _) = server.connect_as(&alice).await;

    let mut storm = Vec::new();
    for _ in 0..5 {
        storm.push(server.connect().await);
    }
    let mut delays = Vec::new();
    let mut admitted = 0;
    for conn in &mut storm {
        let e = conn.event().await;
        match e.event {
            Some(server_event::Event::GoAway(g)) => {
                assert!((1_000..5_000).contains(&g.reconnect_after_ms), "{g:?}");
                conn.expect_closed().await;
                delays.push(g.reconnect_after_ms);
            }
            Some(server_event::Event::Error(err)) if err.error_code() == ErrorCode::Timeout && err.fatal => {
                admitted += 1
            }
            other => panic!("expected GoAway or a handshake TIMEOUT, got {other:?}"),
        }
    }
    eprintln!("storm of 5: {} GoAway {delays:?}, {admitted} admitted", delays.len());
    assert!(!delays.is_empty(), "no connection of the storm was turned away");
    if delays.len() >= 2 {
        assert!(delays.iter().any(|&d| d != delays[0]), "GoAway delays are not jittered: {delays:?}");
    }
    a.ping(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_left_incomplete_after_hello_is_timeout() {
    // Proves: after the handshake, a frame whose prefix and first bytes arrived but whose rest never comes is a fatal TIMEOUT within frame_timeout_ms (slowloris), long before the heartbeat, and a bystander keeps working.
    let server = TestServer::start_with(|c| {
        c.session.frame_timeout_ms = 300;
        c.session.heartbeat_interval_ms = 60_000;
    })
    .await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    let started = Instant::now();
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[0u8; 10]);
    a.send_raw(&partial).await;
    a.expect_fatal(ErrorCode::Timeout).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(280), "closed before the deadline: {took:?}");
    assert!(took < Duration::from_secs(2), "slowloris connection lived {took:?}");
    b.ping(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_committer_is_overloaded_with_its_wait_and_the_retry_is_stored_once() {
    // Proves: a committer queue past its deadline (store Overloaded{250}) answers the send OVERLOADED (not fatal, retry_after_ms 250) and stores nothing; the retry under the same client_msg_id is ACCEPTED and delivered exactly once.
    let (store, faults) = faulty_store();
    let server = TestServer::start_with_store(|_| {}, store).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    faults.set(Some(AppendFault::Overloaded { retry_after_ms: 250 }));
    let msg = text_to_account("retry-me", bob.account_id, b"payload");
    a.send_ops(vec![send_op(1, msg.clone())]).await;
    let err = a.expect_request_error(1, ErrorCode::Overloaded).await;
    assert_eq!(err.retry_after_ms, 250, "{err:?}");
    a.ping(2).await;
    ping_with_nothing_before(&mut b, 1).await;

    faults.set(None);
    let accepted = a.send_accepted(3, msg).await;
    assert!(!accepted.duplicate, "nothing was stored by the refused attempt: {accepted:?}");
    assert_eq!(accepted.client_msg_id, "retry-me");
    let items = b.expect_delivery().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].server_msg_id, accepted.server_msg_id);
    assert_eq!(as_message(&items[0]).expect("a message").client_msg_id, "retry-me");
    ping_with_nothing_before(&mut b, 2).await;
}
