//! Admission toward hot devices (`send_gate.rs`): a 1:1 send to an online device that is
//! draining more than `session.hot_backlog_max` un-acked entries waits for its acks, at most
//! `session.hot_hold_ms`, before it is committed; a device that stopped acking or left holds
//! no one. Nothing held is lost or reordered.

mod common;

use std::time::Duration;

use common::*;
use iris_proto::http::Credentials;
use iris_proto::pb::{self, server_event};

/// Un-acked entries above which the test's recipient holds its senders.
const BOUND: u64 = 5;

async fn server(hold_ms: u64) -> TestServer {
    TestServer::start_with(|c| {
        c.session.hot_backlog_max = BOUND;
        c.session.hot_hold_ms = hold_ms;
    })
    .await
}

/// Alice (the sender) and Bob (the recipient), each logged in and connected.
struct Pair {
    bob: Credentials,
    a: RawConn,
    b: RawConn,
}

async fn pair(server: &TestServer) -> Pair {
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (a, _) = server.connect_as(&alice).await;
    let (b, _) = server.connect_as(&bob).await;
    Pair { bob, a, b }
}

/// Items delivered on `conn` until `n` arrived (no acks).
async fn delivered(conn: &mut RawConn, n: usize) -> Vec<pb::InboxItem> {
    let mut items = Vec::new();
    while items.len() < n {
        items.extend(conn.expect_delivery().await);
    }
    items
}

/// Sends `n` messages from `from` to `to`, each answered ACCEPTED before the next; request ids
/// and client ids start at `first`.
async fn send_accepted(from: &mut RawConn, to: &Credentials, first: u64, n: u64) {
    for i in first..first + n {
        from.send_accepted(i, text_to_account(&format!("m{i}"), to.account_id, b"hi")).await;
    }
}

/// Whether `conn` gets no answer (deliveries aside) within `wait`.
async fn no_answer_within(conn: &mut RawConn, wait: Duration) -> bool {
    tokio::time::timeout(wait, conn.answer()).await.is_err()
}

fn accepted(e: pb::ServerEvent, request_id: u64) {
    assert_eq!(e.request_id, request_id, "{e:?}");
    let Some(server_event::Event::SendResult(r)) = &e.event else { panic!("expected a SendResult: {e:?}") };
    assert_eq!(r.status, pb::SendStatus::Accepted as i32, "{r:?}");
}

fn device(creds: &Credentials) -> iris_store::DeviceAddr {
    iris_store::DeviceAddr::new(creds.account_id, creds.device_id)
}

fn client_ids(items: &[pb::InboxItem]) -> Vec<String> {
    items.iter().map(|i| as_message(i).expect("a message").client_msg_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_toward_a_device_over_its_backlog_waits_for_its_acks() {
    // Proves: with the recipient draining (connected, acking) and BOUND + 1 entries un-acked,
    // the next send is held, not answered, until the recipient acks; then it is ACCEPTED well
    // before the hold limit, and the recipient gets every message once, in order.
    let server = server(10_000).await;
    let Pair { bob, mut a, mut b } = pair(&server).await;
    send_accepted(&mut a, &bob, 1, BOUND + 1).await;

    a.send_ops(vec![send_op(100, text_to_account("held", bob.account_id, b"hi"))]).await;
    wait_until("the send is held", EVENT_TIMEOUT, || async { server.ctx().metrics.sends_held.get() == 1 }).await;
    assert!(no_answer_within(&mut a, Duration::from_millis(300)).await, "answered while held");

    let first = delivered(&mut b, BOUND as usize + 1).await;
    b.send_ops(vec![ack_op(1, first.last().expect("delivered").seq)]).await;
    accepted(a.answer().await, 100);
    assert_eq!(server.ctx().metrics.send_holds_expired.get(), 0, "released by the ack, not the hold limit");

    let last = delivered(&mut b, 1).await;
    let mut ids = client_ids(&first);
    ids.extend(client_ids(&last));
    let expected: Vec<String> = (1..=BOUND + 1).map(|i| format!("m{i}")).chain(["held".to_string()]).collect();
    assert_eq!(ids, expected, "every message once, in send order");
    assert_eq!(last[0].seq, BOUND + 2, "seqs stay dense");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_ends_at_its_limit_and_the_send_goes_through() {
    // Proves: a recipient that keeps acking but stays over its bound holds a send at most
    // hot_hold_ms; then the send is ACCEPTED and delivered after what was sent before it.
    let server = server(500).await;
    let Pair { bob, mut a, mut b } = pair(&server).await;
    send_accepted(&mut a, &bob, 1, BOUND + 1).await;
    let first = delivered(&mut b, BOUND as usize + 1).await;
    b.send_ops(vec![ack_op(1, first[0].seq)]).await; // draining, BOUND behind
    wait_until("the ack arrived", EVENT_TIMEOUT, || async {
        server.ctx().router.backlog_if(device(&bob), |b| b.unacked() == BOUND).is_some()
    })
    .await;
    send_accepted(&mut a, &bob, BOUND + 2, 1).await; // BOUND + 1 behind: the next one waits

    let sent = tokio::time::Instant::now();
    a.send_ops(vec![send_op(100, text_to_account("late", bob.account_id, b"hi"))]).await;
    accepted(a.answer().await, 100);
    assert!(sent.elapsed() >= Duration::from_millis(500), "held for the limit, answered after {:?}", sent.elapsed());
    assert_eq!(server.ctx().metrics.sends_held.get(), 1);
    assert_eq!(server.ctx().metrics.send_holds_expired.get(), 1);
    let last = delivered(&mut b, 2).await;
    assert_eq!(client_ids(&last), [format!("m{}", BOUND + 2), "late".to_string()]);
    assert_eq!(last[1].seq, BOUND + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stopped_acking_holds_no_one() {
    // Proves: a recipient that acked nothing for hot_hold_ms is not draining: sends to it are
    // not held however far behind it is (a client that never acks cannot slow its senders).
    let server = server(300).await;
    let Pair { bob, mut a, b: _b } = pair(&server).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    send_accepted(&mut a, &bob, 1, 3 * BOUND).await;
    assert_eq!(server.ctx().metrics.sends_held.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_leaves_releases_its_held_senders() {
    // Proves: when the hot device disconnects, a send held toward it goes through at once (long
    // before the hold limit) and waits in its inbox with everything else.
    let server = server(10_000).await;
    let Pair { bob, mut a, b } = pair(&server).await;
    send_accepted(&mut a, &bob, 1, BOUND + 1).await;
    a.send_ops(vec![send_op(100, text_to_account("held", bob.account_id, b"hi"))]).await;
    wait_until("the send is held", EVENT_TIMEOUT, || async { server.ctx().metrics.sends_held.get() == 1 }).await;

    drop(b);
    accepted(a.answer().await, 100);
    assert_eq!(server.ctx().metrics.send_holds_expired.get(), 0, "released by the disconnect");
    let (mut b, _) = server.connect_as(&bob).await;
    let items = delivered(&mut b, BOUND as usize + 2).await;
    assert_eq!(client_ids(&items).last().map(String::as_str), Some("held"));
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), (1..=BOUND + 2).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_own_devices_never_hold_it() {
    // Proves: a sender's linked device far behind on its copies of the sender's messages (sent
    // sync) does not hold the sender's sends; only other accounts' devices do.
    let server = server(10_000).await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await; // offline: holds no one
    let laptop = link_device(&server.base_url(), &alice, "laptop").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let (_laptop, _) = server.connect_as(&laptop).await; // connected, acks nothing
    send_accepted(&mut a, &bob, 1, 3 * BOUND).await;
    assert_eq!(server.ctx().metrics.sends_held.get(), 0);
}
