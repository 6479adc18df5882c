//! `Hello.resume_after_seq`, the cursor a reconnecting device sends: it acknowledges what the
//! device processed on an earlier connection, so it must produce the same `DELIVERED` receipts as
//! an `Ack`, and a cursor beyond the device's inbox must be refused without losing anything.

mod common;

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

/// Sends a fence message from `from` to `to` (the account of `to_creds`) and expects it as the
/// very next delivery on `to`, alone: an inbox delivers in seq order, so anything the server
/// wrongly queued for `to` before the fence would arrive first. The event that ends the check,
/// instead of a quiet period.
async fn expect_only_the_fence(from: &mut RawConn, request_id: u64, to: &mut RawConn, to_creds: &Credentials) {
    let fence = from.send_accepted(request_id, text_to_account("fence", to_creds.account_id, b"fence")).await;
    let items = to.expect_delivery().await;
    assert_eq!(items.len(), 1, "delivered before or with the fence: {items:?}");
    assert_eq!(items[0].server_msg_id, fence.server_msg_id, "delivered before the fence: {items:?}");
}

/// Waits until the store applied `creds`'s device's ack up to `seq` (its receipts go first).
async fn wait_acked(server: &TestServer, creds: &Credentials, seq: u64) {
    let device = iris_store::DeviceAddr::new(creds.account_id, creds.device_id);
    wait_until(&format!("{device} acked up to {seq}"), EVENT_TIMEOUT, || async {
        server.ctx().store.cursor(device).await.expect("read the cursor").acked >= seq
    })
    .await;
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
    expect_only_the_fence(&mut b, 10, &mut a, &alice).await;
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

    let (mut b, _) = server.connect_as(&bob).await;
    let items = delivered(&mut b, 3).await;
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    // No receipt reached Alice for the refused cursors: the fence is the first thing she gets.
    expect_only_the_fence(&mut b, 10, &mut a, &alice).await;
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
    wait_acked(&server, &bob, 2).await;

    let mut b = server.connect().await;
    let welcome = b.hello_resuming(&bob, 1).await;
    assert!(matches!(welcome.event, Some(server_event::Event::Welcome(_))), "{welcome:?}");
    // Nothing acked comes back to Bob, and no receipt repeats to Alice.
    expect_only_the_fence(&mut a, 5, &mut b, &bob).await;
    expect_only_the_fence(&mut b, 6, &mut a, &alice).await;
}
