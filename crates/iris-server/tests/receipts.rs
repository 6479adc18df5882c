//! Receipts over raw connections: what a client's `READ` may name (only messages the peer sent
//! to the reader's account), which receipt kinds a device asked in `Hello` not to receive, and
//! that an ack covering several messages of one sender owes that sender one receipt item.

mod common;

use common::*;
use iris_proto::pb::{self, client_op, server_event, ErrorCode};

/// `SendReceipt` READ of `ids`, sent to `to_account_id`.
fn read_op(request_id: u64, to_account_id: u64, ids: &[u64]) -> pb::ClientOp {
    let receipt =
        pb::SendReceipt { r#type: pb::ReceiptType::Read as i32, to_account_id, server_msg_ids: ids.to_vec() };
    pb::ClientOp { request_id, op: Some(client_op::Op::Receipt(receipt)) }
}

/// The receipt carried by `item`; panics on anything else.
fn receipt_of(item: &pb::InboxItem) -> &pb::Receipt {
    match &item.body {
        Some(pb::inbox_item::Body::Receipt(r)) => r,
        _ => panic!("expected a receipt, got {item:?}"),
    }
}

/// Expects the answer to `request_id` to be a `ReceiptResult`.
async fn expect_receipt_result(conn: &mut RawConn, request_id: u64) {
    let e = conn.answer().await;
    assert_eq!(e.request_id, request_id, "{e:?}");
    assert!(matches!(e.event, Some(server_event::Event::ReceiptResult(_))), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_receipt_passes_only_ids_the_peer_sent_to_the_reader() {
    // Proves: a READ reaches the peer with only the ids of messages that peer sent to the
    // reader's account (another sender's message, the reader's own message, an unknown id and a
    // repeat are dropped), and a READ naming none of them is NOT_FOUND and reaches nobody.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let carol = server.login("+15550000003", "carol").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;
    let (mut c, _) = server.connect_as(&carol).await;
    let from_bob = b.send_accepted(1, text_to_account("b1", alice.account_id, b"hi alice")).await.server_msg_id;
    let from_carol = c.send_accepted(1, text_to_account("c1", alice.account_id, b"hi alice")).await.server_msg_id;
    let to_bob = a.send_accepted(1, text_to_account("a1", bob.account_id, b"hi bob")).await.server_msg_id;
    assert_eq!(b.expect_delivery().await[0].server_msg_id, to_bob);

    a.send_ops(vec![read_op(2, bob.account_id, &[from_bob, from_carol, to_bob, 12345, from_bob])]).await;
    expect_receipt_result(&mut a, 2).await;
    let items = b.expect_delivery().await;
    let r = receipt_of(&items[0]);
    assert_eq!(r.r#type, pb::ReceiptType::Read as i32);
    assert_eq!(r.server_msg_ids, vec![from_bob], "only bob's message to alice may be called read");

    // Nothing acceptable: refused, and nothing reaches bob (the fence is the next delivery).
    a.send_ops(vec![read_op(3, bob.account_id, &[from_carol, 12345])]).await;
    a.expect_request_error(3, ErrorCode::NotFound).await;
    c.send_ops(vec![read_op(2, bob.account_id, &[from_bob])]).await;
    c.expect_request_error(2, ErrorCode::NotFound).await;
    let fence = a.send_accepted(4, text_to_account("fence", bob.account_id, b"fence")).await.server_msg_id;
    let items = b.expect_delivery().await;
    assert_eq!(items.iter().map(|i| i.server_msg_id).collect::<Vec<_>>(), vec![fence], "{items:?}");
}
