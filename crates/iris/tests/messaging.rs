//! End-to-end messaging through the SDK against a real server: online and offline delivery,
//! restarts, multi-device fan-out and sent-sync, dedup, receipts and order.

mod common;

use std::time::Duration;

use common::*;
use iris_client::pb::{inbox_item, ReceiptType};
use iris_client::Event;

const ALICE: &str = "+14155550001";
const BOB: &str = "+14155550002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_delivery_carries_sender_and_payload() {
    // Proves: a message to an online device arrives with its sender, recipient and payload.
    let server = TestServer::start().await;
    let (alice, bob) = (login(&server.base_url(), ALICE, "a").await, login(&server.base_url(), BOB, "b").await);
    let (a, _a_events) = connect(&server.base_url(), &alice).await;
    let (b, mut b_events) = connect(&server.base_url(), &bob).await;
    let sent = a.send(BOB, "hello bob").await.unwrap();
    assert!(!sent.duplicate);
    let got = recv_messages(&b, &mut b_events, 1).await;
    assert_eq!(got[0].server_msg_id, sent.server_msg_id);
    let Some(inbox_item::Body::Message(m)) = &got[0].body else { panic!("not a message") };
    assert_eq!((m.from_account_id, m.from_phone.as_str(), m.to_account_id), (alice.account_id, ALICE, bob.account_id));
    assert_eq!(&m.payload[..], b"hello bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_in_order_after_connect() {
    // Proves: 350 messages to an offline device arrive, all and in send order, when it connects
    // (several sync batches and windows of flow control).
    let server = TestServer::start().await;
    let (alice, bob) = (login(&server.base_url(), ALICE, "a").await, login(&server.base_url(), BOB, "b").await);
    let (a, _ae) = connect(&server.base_url(), &alice).await;
    let mut ids = Vec::new();
    for i in 0..350 {
        ids.push(a.send(BOB, format!("m{i}")).await.unwrap().server_msg_id);
    }
    let (b, mut be) = connect(&server.base_url(), &bob).await;
    let got = recv_messages(&b, &mut be, 350).await;
    assert_eq!(got.iter().map(|i| i.server_msg_id).collect::<Vec<_>>(), ids);
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    expect_no_message(&mut be, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_keep_their_order() {
    // Proves: sends issued concurrently on one connection are stored and delivered in issue order.
    let server = TestServer::start().await;
    let (alice, bob) = (login(&server.base_url(), ALICE, "a").await, login(&server.base_url(), BOB, "b").await);
    let (a, _ae) = connect(&server.base_url(), &alice).await;
    let (b, mut be) = connect(&server.base_url(), &bob).await;
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.send(BOB, format!("{i:04}")).await.unwrap() })
        })
        .collect();
    // Wait until all were issued (the SDK queues them in spawn order only loosely), then compare
    // the delivered order with the server's acceptance order (ids increase with commit order).
    let mut results = Vec::new();
    for s in sends {
        results.push(s.await.unwrap());
    }
    let got = recv_messages(&b, &mut be, 300).await;
    let delivered: Vec<u64> = got.iter().map(|i| i.server_msg_id).collect();
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    assert_eq!(delivered, sorted, "delivery order must follow acceptance order");
    assert_eq!(delivered.len(), results.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_restart() {
    // Proves: accepted messages to an offline device are delivered after a server restart.
    let mut server = TestServer::start().await;
    let (alice, bob) = (login(&server.base_url(), ALICE, "a").await, login(&server.base_url(), BOB, "b").await);
    {
        let (a, _ae) = connect(&server.base_url(), &alice).await;
        for i in 0..20 {
            a.send(BOB, format!("m{i}")).await.unwrap();
        }
        a.close().await;
    }
    server.restart().await;
    let (b, mut be) = connect(&server.base_url(), &bob).await;
    let got = recv_messages(&b, &mut be, 20).await;
    assert_eq!(
        &got[19].body.as_ref().map(|b| matches!(b, inbox_item::Body::Message(m) if &m.payload[..] == b"m19")),
        &Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_gets_it_and_my_other_devices_get_a_copy() {
    // Proves: multi-device fan-out (both of Bob's devices) and sent-sync (Alice's other device),
    // and that the sending device itself gets nothing.
    let server = TestServer::start().await;
    let url = server.base_url();
    let alice1 = login(&url, ALICE, "phone").await;
    let alice2 = login(&url, ALICE, "laptop").await;
    let bob1 = login(&url, BOB, "phone").await;
    let bob2 = login(&url, BOB, "laptop").await;
    let (a1, mut a1e) = connect(&url, &alice1).await;
    let (a2, mut a2e) = connect(&url, &alice2).await;
    let (b1, mut b1e) = connect(&url, &bob1).await;
    let (b2, mut b2e) = connect(&url, &bob2).await;
    let sent = a1.send(BOB, "to all of bob").await.unwrap();
    for (client, events) in [(&b1, &mut b1e), (&b2, &mut b2e), (&a2, &mut a2e)] {
        let got = recv_messages(client, events, 1).await;
        assert_eq!(got[0].server_msg_id, sent.server_msg_id);
    }
    expect_no_message(&mut a1e, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_id_is_answered_with_the_original() {
    // Proves: dedup of retries: same client_msg_id → same server id, duplicate=true, one delivery.
    let server = TestServer::start().await;
    let (alice, bob) = (login(&server.base_url(), ALICE, "a").await, login(&server.base_url(), BOB, "b").await);
    let (a, _ae) = connect(&server.base_url(), &alice).await;
    let first = a.send_with_id(BOB, "retry-1", "once").await.unwrap();
    let again = a.send_with_id(BOB, "retry-1", "once").await.unwrap();
    assert_eq!(
        (again.server_msg_id, again.server_ts_ms, again.duplicate),
        (first.server_msg_id, first.server_ts_ms, true)
    );
    let (b, mut be) = connect(&server.base_url(), &bob).await;
    recv_messages(&b, &mut be, 1).await;
    expect_no_message(&mut be, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_read_receipts_reach_the_sender() {
    // Proves: an ack produces a DELIVERED receipt for the sender; a READ receipt reaches the
    // sender and is synced to the reader's other device.
    let server = TestServer::start().await;
    let url = server.base_url();
    let alice = login(&url, ALICE, "a").await;
    let bob1 = login(&url, BOB, "phone").await;
    let bob2 = login(&url, BOB, "laptop").await;
    let (a, mut ae) = connect(&url, &alice).await;
    let (b1, mut b1e) = connect(&url, &bob1).await;
    let (b2, mut b2e) = connect(&url, &bob2).await;
    let sent = a.send(BOB, "read me").await.unwrap();
    recv_messages(&b1, &mut b1e, 1).await;
    let is_receipt = |kind: ReceiptType| move |e: &Event| e.receipt().is_some_and(|r| r.r#type == kind as i32);
    let delivered = recv_until(&a, &mut ae, is_receipt(ReceiptType::Delivered)).await;
    let r = delivered.receipt().unwrap();
    assert_eq!((r.from_account_id, r.server_msg_ids.clone()), (bob1.account_id, vec![sent.server_msg_id]));

    b1.send_read_receipt(alice.account_id, vec![sent.server_msg_id]).await.unwrap();
    let read = recv_until(&a, &mut ae, is_receipt(ReceiptType::Read)).await;
    assert_eq!(read.receipt().unwrap().server_msg_ids, vec![sent.server_msg_id]);
    let sync = recv_until(&b2, &mut b2e, is_receipt(ReceiptType::Read)).await;
    assert_eq!(sync.receipt().unwrap().peer_account_id, alice.account_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_come_back_after_reconnect_but_the_app_sees_them_once() {
    // Proves: at-least-once delivery with client-side dedup: messages delivered but not acked are
    // redelivered on a new connection, and acked ones are not.
    let server = TestServer::start().await;
    let (alice, bob) = (login(&server.base_url(), ALICE, "a").await, login(&server.base_url(), BOB, "b").await);
    let (a, _ae) = connect(&server.base_url(), &alice).await;
    for i in 0..10 {
        a.send(BOB, format!("m{i}")).await.unwrap();
    }
    let (b, mut be) = connect(&server.base_url(), &bob).await;
    let first = recv_messages(&b, &mut be, 4).await; // acks 4
    let acked = b.last_acked_seq();
    b.close().await;
    assert_eq!(acked, first[3].seq);
    let mut config = iris_client::ClientConfig::new(server.base_url(), bob.clone());
    config.resume_after_seq = acked;
    let (b, mut be) = iris_client::Client::connect(config).await.unwrap();
    let rest = recv_messages(&b, &mut be, 6).await;
    assert_eq!(rest[0].seq, first[3].seq + 1);
    expect_no_message(&mut be, Duration::from_millis(300)).await;
}
