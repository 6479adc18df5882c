//! `Hello.resume_after_seq`, the cursor a reconnecting device sends: it acknowledges what the
//! device processed on an earlier connection, so it must produce the same `DELIVERED` receipts as
//! an `Ack`, and a cursor beyond the device's inbox must be refused without losing anything.

mod common;

use std::time::Duration;

use common::*;
use iris_proto::http::Credentials;
use iris_proto::pb::{self, server_event, ErrorCode};

/// Items delivered on `conn` until `n` arrived.
async fn delivered(conn: &mut RawConn, n: usize) -> Vec<pb::InboxItem> {
    let mut items = Vec::new();
    while items.len() < n {
        items.extend(conn.expect_delivery().await);
    }
    assert_eq!(items.len(), n, "more deliveries than expected: {items:?}");
    items
}

/// The message ids of every `DELIVERED` receipt `conn` receives until it holds `n` ids.
async fn delivered_receipt_ids(conn: &mut RawConn, n: usize, from: &Credentials) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        for item in conn.expect_delivery().await {
            let Some(pb::inbox_item::Body::Receipt(r)) = &item.body else { panic!("expected a receipt, got {item:?}") };
            assert_eq!(r.r#type, pb::ReceiptType::Delivered as i32, "{r:?}");
            assert_eq!((r.from_account_id, r.from_device_id), (from.account_id, from.device_id));
            ids.extend(&r.server_msg_ids);
        }
    }
    ids.sort_unstable();
    ids
}

/// Pings and expects the Pong to be the very next event: nothing was delivered meanwhile.
async fn expect_nothing_delivered(conn: &mut RawConn, request_id: u64) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.send_ops(vec![ping_op(request_id, 1)]).await;
    let e = conn.event().await;
    assert!(matches!(e.event, Some(server_event::Event::Pong(_))), "expected only a Pong, got {e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_cursor_produces_the_delivered_receipts_an_ack_would_have() {
    // Proves: when a device's Ack died with its connection, resuming after the seqs it processed
    // tells their senders DELIVERED (as the Ack would have), deletes only those entries, and
    // delivery continues after the cursor.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(a.send_accepted(i, text_to_account(&format!("m{i}"), bob.account_id, b"hi")).await.server_msg_id);
    }
    let (mut b, _) = server.connect_as(&bob).await;
    let items = delivered(&mut b, 3).await;
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    drop(b); // the app processed seqs 1 and 2, but its Ack never left

    let mut b = server.connect().await;
    let welcome = b.hello_resuming(&bob, 2).await;
    assert!(matches!(welcome.event, Some(server_event::Event::Welcome(_))), "{welcome:?}");
    assert_eq!(delivered_receipt_ids(&mut a, 2, &bob).await, ids[..2].to_vec());
    let again = delivered(&mut b, 1).await;
    assert_eq!((again[0].seq, again[0].server_msg_id), (3, ids[2]), "delivery resumes after the cursor");
    expect_nothing_delivered(&mut a, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_cursor_beyond_the_inbox_is_refused_and_deletes_nothing() {
    // Proves: Hello.resume_after_seq past the last seq this device's inbox ever held is refused
    // with a fatal INVALID_ARGUMENT (as an Ack past what was delivered is refused), produces no
    // receipt, and the waiting messages are all delivered to the next, honest connection.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (mut a, _) = server.connect_as(&alice).await;
    for i in 1..=3 {
        a.send_accepted(i, text_to_account(&format!("m{i}"), bob.account_id, b"hi")).await;
    }
    for cursor in [u64::MAX, 4] {
        let mut b = server.connect().await;
        let refused = b.hello_resuming(&bob, cursor).await;
        let err = as_error(refused.clone()).unwrap_or_else(|| panic!("expected an error, got {refused:?}"));
        assert_eq!(err.error_code(), ErrorCode::InvalidArgument, "{err:?}");
        assert!(err.fatal, "a refused Hello ends the connection: {err:?}");
        b.expect_closed().await;
    }
    expect_nothing_delivered(&mut a, 10).await;

    let (mut b, _) = server.connect_as(&bob).await;
    let items = delivered(&mut b, 3).await;
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_cursor_at_or_below_what_was_acked_changes_nothing() {
    // Proves: resuming after a seq already acked (an old cursor) repeats no receipt and
    // redelivers nothing that was acked.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (mut a, _) = server.connect_as(&alice).await;
    for i in 1..=2 {
        a.send_accepted(i, text_to_account(&format!("m{i}"), bob.account_id, b"hi")).await;
    }
    let (mut b, _) = server.connect_as(&bob).await;
    delivered(&mut b, 2).await;
    b.send_ops(vec![ack_op(3, 2)]).await;
    assert_eq!(delivered_receipt_ids(&mut a, 2, &bob).await.len(), 2);
    b.ping(4).await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await; // the inbox ack follows its receipts

    let mut b = server.connect().await;
    let welcome = b.hello_resuming(&bob, 1).await;
    assert!(matches!(welcome.event, Some(server_event::Event::Welcome(_))), "{welcome:?}");
    expect_nothing_delivered(&mut b, 5).await;
    expect_nothing_delivered(&mut a, 10).await;
}
