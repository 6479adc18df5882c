//! Receipts over raw connections: what a client's `READ` may name (only messages the peer sent
//! to the reader's account), which receipt kinds a device asked in `Hello` not to receive, and
//! that an ack covering several messages of one sender owes that sender one receipt item.

mod common;

use common::*;
use iris_proto::http::Credentials;
use iris_proto::pb::{self, client_op, server_event, ErrorCode};

/// `SendReceipt` READ of `ids`, sent to `to_account_id`.
fn read_op(request_id: u64, to_account_id: u64, ids: &[u64]) -> pb::ClientOp {
    let receipt = pb::SendReceipt { r#type: pb::ReceiptType::Read as i32, to_account_id, server_msg_ids: ids.to_vec() };
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

/// A connection of `creds` whose `Hello` declines the receipt kinds `unwanted`.
async fn connect_declining(server: &TestServer, creds: &Credentials, unwanted: &[pb::ReceiptType]) -> RawConn {
    let mut conn = server.connect().await;
    let hello = pb::Hello {
        versions: vec![iris_proto::version::CURRENT],
        token: creds.access_token.clone(),
        device_id: creds.device_id,
        receipts_unwanted: unwanted.iter().map(|&k| k as i32).collect(),
        ..Default::default()
    };
    conn.send_ops(vec![pb::ClientOp { request_id: 1, op: Some(client_op::Op::Hello(hello)) }]).await;
    let e = conn.event().await;
    assert!(matches!(e.event, Some(server_event::Event::Welcome(_))), "{e:?}");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_declined_delivered_receipts_gets_none_while_its_other_device_does() {
    // Proves: a connection whose Hello declined DELIVERED gets no DELIVERED receipt in its inbox
    // (the next delivery after the peer's ack is a fence message), still gets the READ it did
    // not decline, and the account's other device, which declined nothing, gets the DELIVERED.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice bot").await;
    let alice_phone = server.login("+15550000001", "alice phone").await;
    let bob = server.login("+15550000002", "bob").await;
    let mut a = connect_declining(&server, &alice, &[pb::ReceiptType::Delivered]).await;
    let (mut b, _) = server.connect_as(&bob).await;
    let m1 = a.send_accepted(1, text_to_account("m1", bob.account_id, b"one")).await.server_msg_id;
    let items = b.expect_delivery().await;
    assert_eq!(items[0].server_msg_id, m1);
    b.send_ops(vec![ack_op(2, items[0].seq), read_op(3, alice.account_id, &[m1])]).await;
    expect_receipt_result(&mut b, 3).await;
    // The ack and its receipts are one write: once the cursor moved, any DELIVERED is queued.
    let bob_device = iris_store::DeviceAddr::new(bob.account_id, bob.device_id);
    wait_until("bob's ack applied", EVENT_TIMEOUT, || async {
        server.ctx().store.cursor(bob_device).await.expect("read the cursor").acked >= items[0].seq
    })
    .await;
    let fence = b.send_accepted(4, text_to_account("fence", alice.account_id, b"fence")).await.server_msg_id;

    let items = a.expect_delivery().await;
    let r = receipt_of(&items[0]);
    assert_eq!((r.r#type, r.server_msg_ids.clone()), (pb::ReceiptType::Read as i32, vec![m1]), "{items:?}");
    let mut rest: Vec<pb::InboxItem> = items[1..].to_vec();
    if rest.is_empty() {
        rest = a.expect_delivery().await;
    }
    assert_eq!(rest[0].server_msg_id, fence, "no DELIVERED before the fence: {rest:?}");

    let (mut phone, _) = server.connect_as(&alice_phone).await;
    let delivered = (pb::ReceiptType::Delivered as i32, vec![m1]);
    let mut kinds = Vec::new();
    while !kinds.contains(&delivered) {
        kinds.extend(phone.expect_delivery().await.into_iter().map(|item| match &item.body {
            Some(pb::inbox_item::Body::Receipt(r)) => (r.r#type, r.server_msg_ids.clone()),
            _ => (0, vec![item.server_msg_id]),
        }));
    }
    // (expect_delivery panics if the DELIVERED never comes.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_receipt_stored_while_the_device_was_away_is_never_delivered() {
    // Proves: a DELIVERED receipt stored while the declining device had no session (as on
    // another node of a cluster) is left out when the device comes back declining, and acked by
    // the server itself, so it does not wait in the inbox; what follows arrives as usual.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice bot").await;
    let bob = server.login("+15550000002", "bob").await;
    let alice_device = iris_store::DeviceAddr::new(alice.account_id, alice.device_id);
    let bob_device = iris_store::DeviceAddr::new(bob.account_id, bob.device_id);
    let mut a = connect_declining(&server, &alice, &[pb::ReceiptType::Delivered]).await;
    let m1 = a.send_accepted(1, text_to_account("m1", bob.account_id, b"one")).await.server_msg_id;
    drop(a);
    wait_until("alice gone", EVENT_TIMEOUT, || async { !server.ctx().router.is_connected(alice_device) }).await;

    let (mut b, _) = server.connect_as(&bob).await;
    let items = b.expect_delivery().await;
    assert_eq!(items[0].server_msg_id, m1);
    b.send_ops(vec![ack_op(2, items[0].seq)]).await;
    wait_until("bob's ack applied", EVENT_TIMEOUT, || async {
        server.ctx().store.cursor(bob_device).await.expect("read the cursor").acked >= items[0].seq
    })
    .await;
    let stored = server.ctx().store.cursor(alice_device).await.expect("read the cursor");
    assert!(stored.last > stored.acked, "the DELIVERED waits in alice's inbox: {stored:?}");

    let mut a = connect_declining(&server, &alice, &[pb::ReceiptType::Delivered]).await;
    wait_until("the receipt acked by the server", EVENT_TIMEOUT, || async {
        server.ctx().store.cursor(alice_device).await.expect("read the cursor").acked >= stored.last
    })
    .await;
    let fence = b.send_accepted(3, text_to_account("fence", alice.account_id, b"fence")).await.server_msg_id;
    let items = a.expect_delivery().await;
    assert_eq!(items[0].server_msg_id, fence, "no DELIVERED before the fence: {items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ack_owes_each_sender_one_receipt_naming_all_its_messages() {
    // Proves: an ack covering three messages of alice and one of carol puts one DELIVERED item
    // with the three ids in alice's inbox (not three), and one with carol's id in carol's.
    let server = TestServer::start().await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let carol = server.login("+15550000003", "carol").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut c, _) = server.connect_as(&carol).await;
    let mut from_alice = Vec::new();
    for i in 1..=3 {
        from_alice
            .push(a.send_accepted(i, text_to_account(&format!("a{i}"), bob.account_id, b"hi")).await.server_msg_id);
    }
    let from_carol = c.send_accepted(1, text_to_account("c1", bob.account_id, b"hi")).await.server_msg_id;
    let (mut b, _) = server.connect_as(&bob).await;
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        seqs.extend(b.expect_delivery().await.iter().map(|i| i.seq));
    }
    b.send_ops(vec![ack_op(2, *seqs.last().unwrap())]).await;

    let items = a.expect_delivery().await;
    assert_eq!(items.len(), 1, "one receipt item: {items:?}");
    let r = receipt_of(&items[0]);
    assert_eq!((r.r#type, &r.server_msg_ids), (pb::ReceiptType::Delivered as i32, &from_alice));
    let items = c.expect_delivery().await;
    assert_eq!(receipt_of(&items[0]).server_msg_ids, vec![from_carol]);
    // Nothing else was queued for alice: a fence is next.
    let fence = b.send_accepted(3, text_to_account("fence", alice.account_id, b"fence")).await.server_msg_id;
    assert_eq!(a.expect_delivery().await[0].server_msg_id, fence);
}
