//! Validation of `Send` and `Receipt` over a raw connection: every malformed or stale request is
//! answered with its exact typed error, never fatal, and a correct one is accepted and delivered.

mod common;

use bytes::Bytes;
use common::*;
use iris_proto::http::Credentials;
use iris_proto::pb::{self, client_op, server_event, ErrorCode};

const ALICE: &str = "+15550000001";
const BOB: &str = "+15550000002";

/// Alice (one device, connected) and Bob (one device, not connected).
struct Pair {
    server: TestServer,
    alice: RawConn,
    bob: Credentials,
    bob_account: u64,
}

async fn pair() -> Pair {
    let server = TestServer::start().await;
    let alice = server.login(ALICE, "alice").await;
    let bob = server.login(BOB, "bob").await;
    let (alice, _) = server.connect_as(&alice).await;
    Pair { server, alice, bob_account: bob.account_id, bob }
}

/// Sends `msg` as request `rid` and expects a non-fatal `code`; then proves the connection works.
async fn check(conn: &mut RawConn, rid: u64, msg: pb::SendMessage, code: ErrorCode) -> pb::Error {
    let e = conn.send_message(rid, msg).await;
    let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected {code:?}, got {e:?}"));
    assert_eq!(err.error_code(), code, "{err:?}");
    assert!(!err.fatal, "{err:?}");
    conn.ping(rid + 1000).await;
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_too_long_client_msg_id_is_invalid_argument() {
    // Proves: client_msg_id is required and at most 64 bytes (64 is accepted, 65 is INVALID_ARGUMENT).
    let Pair { server: _server, mut alice, bob_account, .. } = pair().await;
    check(&mut alice, 1, text_to_account("", bob_account, b"x"), ErrorCode::InvalidArgument).await;
    check(&mut alice, 2, text_to_account(&"m".repeat(65), bob_account, b"x"), ErrorCode::InvalidArgument).await;
    alice.send_accepted(3, text_to_account(&"m".repeat(64), bob_account, b"x")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_recipient_is_invalid_argument() {
    // Proves: a send with neither to_account_id nor to_phone is INVALID_ARGUMENT.
    let Pair { server: _server, mut alice, .. } = pair().await;
    check(&mut alice, 1, text_to_account("m1", 0, b"x"), ErrorCode::InvalidArgument).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payload_is_invalid_argument() {
    // Proves: a send without a body (neither payload nor per_device), or with an empty per_device list, is INVALID_ARGUMENT.
    let Pair { server: _server, mut alice, bob_account, .. } = pair().await;
    let mut msg = text_to_account("m1", bob_account, b"x");
    msg.body = None;
    check(&mut alice, 1, msg, ErrorCode::InvalidArgument).await;
    check(&mut alice, 2, per_device_to_account("m2", bob_account, &[]), ErrorCode::InvalidArgument).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_64_kib_is_payload_too_large() {
    // Proves: a 64 KiB payload is accepted and 64 KiB + 1 is PAYLOAD_TOO_LARGE (also inside per_device).
    let Pair { server: _server, mut alice, bob_account, .. } = pair().await;
    let max = iris_proto::Limits::default().max_payload_bytes as usize;
    assert_eq!(max, 64 * 1024);
    let big = vec![7u8; max + 1];
    let err = check(&mut alice, 1, text_to_account("m1", bob_account, &big), ErrorCode::PayloadTooLarge).await;
    assert_eq!(err.message, format!("payload of {} bytes exceeds the limit of {max} bytes", max + 1));
    let per_device = per_device_to_account("m2", bob_account, &[(bob_account, 1, &big)]);
    check(&mut alice, 2, per_device, ErrorCode::PayloadTooLarge).await;
    alice.send_accepted(3, text_to_account("m3", bob_account, &big[..max])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipient_is_unknown_recipient() {
    // Proves: a well-formed but unregistered phone, or an account id that does not exist, is UNKNOWN_RECIPIENT.
    let Pair { server: _server, mut alice, bob_account, .. } = pair().await;
    check(&mut alice, 1, text_to_phone("m1", "+15559999999", b"x"), ErrorCode::UnknownRecipient).await;
    check(&mut alice, 2, text_to_account("m2", bob_account + 1_000_000, b"x"), ErrorCode::UnknownRecipient).await;
    alice.send_accepted(3, text_to_phone("m3", BOB, b"x")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_phone_is_invalid_argument() {
    // Proves: a to_phone that is not E.164 is INVALID_ARGUMENT, not UNKNOWN_RECIPIENT.
    let Pair { server: _server, mut alice, .. } = pair().await;
    for (i, phone) in ["15550000002", "+1555-000", "+123", "+0155500000"].into_iter().enumerate() {
        check(&mut alice, i as u64 + 1, text_to_phone("m", phone, b"x"), ErrorCode::InvalidArgument).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_payloads_must_name_exactly_the_current_devices() {
    // Proves: per-device payloads missing a device or naming an extra one are STALE_DEVICES listing exactly the missing/extra ids per account.
    let server = TestServer::start().await;
    let alice1 = server.login(ALICE, "alice 1").await;
    let alice2 = server.login(ALICE, "alice 2").await;
    let bob1 = server.login(BOB, "bob 1").await;
    let _bob2 = server.login(BOB, "bob 2").await;
    let (a, b) = (alice1.account_id, bob1.account_id);
    assert_eq!(alice2.device_id, 2);
    let (mut conn, _) = server.connect_as(&alice1).await;
    let p: &[u8] = b"p";
    let mismatch = |account_id, missing: &[u32], extra: &[u32]| pb::DeviceMismatch {
        account_id,
        missing_devices: missing.to_vec(),
        extra_devices: extra.to_vec(),
    };

    // Bob's device 2 missing.
    let msg = per_device_to_account("m1", b, &[(b, 1, p), (a, 2, p)]);
    let err = check(&mut conn, 1, msg, ErrorCode::StaleDevices).await;
    assert_eq!(err.device_mismatches, vec![mismatch(b, &[2], &[])]);

    // Bob's device 3 does not exist.
    let msg = per_device_to_account("m2", b, &[(b, 1, p), (b, 2, p), (b, 3, p), (a, 2, p)]);
    let err = check(&mut conn, 2, msg, ErrorCode::StaleDevices).await;
    assert_eq!(err.device_mismatches, vec![mismatch(b, &[], &[3])]);

    // Alice's other device missing, and her sending device named as a target.
    let msg = per_device_to_account("m3", b, &[(b, 1, p), (b, 2, p), (a, 1, p)]);
    let err = check(&mut conn, 3, msg, ErrorCode::StaleDevices).await;
    assert_eq!(err.device_mismatches, vec![mismatch(a, &[2], &[1])]);

    // Both accounts wrong at once: one entry per account, recipient first.
    let msg = per_device_to_account("m4", b, &[(b, 2, p), (b, 9, p)]);
    let err = check(&mut conn, 4, msg, ErrorCode::StaleDevices).await;
    assert_eq!(err.device_mismatches, vec![mismatch(b, &[1], &[9]), mismatch(a, &[2], &[])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_per_device_send_gives_each_device_its_own_payload() {
    // Proves: a per-device send naming exactly the current devices is ACCEPTED and each device receives the payload meant for it.
    let server = TestServer::start().await;
    let alice1 = server.login(ALICE, "alice 1").await;
    let alice2 = server.login(ALICE, "alice 2").await;
    let bob1 = server.login(BOB, "bob 1").await;
    let bob2 = server.login(BOB, "bob 2").await;
    let (a, b) = (alice1.account_id, bob1.account_id);
    let (mut sender, _) = server.connect_as(&alice1).await;
    let (mut a2, _) = server.connect_as(&alice2).await;
    let (mut b1, _) = server.connect_as(&bob1).await;
    let (mut b2, _) = server.connect_as(&bob2).await;
    let added = b1.expect_delivery().await; // bob 2's link, announced to bob's primary
    assert!(matches!(added[0].body, Some(pb::inbox_item::Body::DeviceChange(_))), "{added:?}");

    let msg = per_device_to_account("m1", b, &[(b, 1, b"for bob 1"), (b, 2, b"for bob 2"), (a, 2, b"for alice 2")]);
    let result = sender.send_accepted(1, msg).await;
    assert!(!result.duplicate);
    assert_eq!(result.client_msg_id, "m1");

    for (conn, want) in [(&mut b1, "for bob 1"), (&mut b2, "for bob 2"), (&mut a2, "for alice 2")] {
        let items = conn.expect_delivery().await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].server_msg_id, result.server_msg_id);
        let m = as_message(&items[0]).expect("a message");
        assert_eq!(m.payload, Bytes::from(want));
        assert_eq!((m.from_account_id, m.from_device_id, m.to_account_id), (a, 1, b));
        assert_eq!((m.from_phone.as_str(), m.to_phone.as_str(), m.client_msg_id.as_str()), (ALICE, BOB, "m1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_naming_a_third_account_is_invalid_argument() {
    // Proves: a per-device payload for an account outside the conversation is INVALID_ARGUMENT (not a stale list).
    let server = TestServer::start().await;
    let alice = server.login(ALICE, "alice").await;
    let bob = server.login(BOB, "bob").await;
    let carol = server.login("+15550000003", "carol").await;
    let (mut conn, _) = server.connect_as(&alice).await;
    let msg = per_device_to_account("m1", bob.account_id, &[(bob.account_id, 1, b"p"), (carol.account_id, 1, b"p")]);
    check(&mut conn, 1, msg, ErrorCode::InvalidArgument).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_only_send_read_receipts() {
    // Proves: a receipt of type DELIVERED (or unspecified) from a client is INVALID_ARGUMENT, while READ (of a message received from that account) is accepted.
    let Pair { server, mut alice, bob, bob_account } = pair().await;
    let (mut b, _) = server.connect_as(&bob).await;
    let from_bob = b.send_accepted(1, text_to_phone("b1", ALICE, b"hi")).await.server_msg_id;
    let receipt = |rid, r#type: pb::ReceiptType| pb::ClientOp {
        request_id: rid,
        op: Some(client_op::Op::Receipt(pb::SendReceipt {
            r#type: r#type as i32,
            to_account_id: bob_account,
            server_msg_ids: vec![from_bob],
        })),
    };
    alice.send_ops(vec![receipt(1, pb::ReceiptType::Delivered)]).await;
    alice.expect_request_error(1, ErrorCode::InvalidArgument).await;
    alice.send_ops(vec![receipt(2, pb::ReceiptType::Unspecified)]).await;
    alice.expect_request_error(2, ErrorCode::InvalidArgument).await;
    alice.send_ops(vec![receipt(3, pb::ReceiptType::Read)]).await;
    let e = alice.answer().await;
    assert_eq!(e.request_id, 3);
    assert!(matches!(e.event, Some(server_event::Event::ReceiptResult(_))), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_send_reaches_the_recipient_once_and_a_retry_is_deduplicated() {
    // Proves: an ACCEPTED send waits in the inbox of an offline device and is delivered once; resending the same client_msg_id answers the original result with duplicate=true.
    let Pair { server, mut alice, bob, bob_account } = pair().await;
    let first = alice.send_accepted(1, text_to_account("m1", bob_account, b"hi")).await;
    let again = alice.send_accepted(2, text_to_account("m1", bob_account, b"hi")).await;
    assert!(again.duplicate);
    assert_eq!((again.server_msg_id, again.server_ts_ms), (first.server_msg_id, first.server_ts_ms));

    let (mut b, _) = server.connect_as(&bob).await;
    let items = b.expect_delivery().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].server_msg_id, first.server_msg_id);
    assert_eq!(as_message(&items[0]).unwrap().payload, Bytes::from_static(b"hi"));
    b.ping(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_is_per_sending_device_across_recipients() {
    // Proves: the dedup scope PROTOCOL.md states: a client_msg_id reused by the same device for
    // another recipient is answered as the first send (duplicate, nothing sent to the second),
    // while another device of the same account may use the same id for a new message.
    let Pair { server, mut alice, bob_account, .. } = pair().await;
    let carol = server.login("+15550000003", "phone").await;
    let first = alice.send_accepted(1, text_to_account("m1", bob_account, b"for bob")).await;
    let reused = alice.send_accepted(2, text_to_account("m1", carol.account_id, b"for carol")).await;
    assert!(reused.duplicate, "{reused:?}");
    assert_eq!(reused.server_msg_id, first.server_msg_id);

    let alice_laptop = server.login(ALICE, "laptop").await;
    let (mut laptop, _) = server.connect_as(&alice_laptop).await;
    let other_device = laptop.send_accepted(1, text_to_account("m1", carol.account_id, b"for carol")).await;
    assert!(!other_device.duplicate && other_device.server_msg_id != first.server_msg_id, "{other_device:?}");
    let (mut c, _) = server.connect_as(&carol).await;
    let items = c.expect_delivery().await;
    assert_eq!(items.len(), 1, "only the other device's message reaches carol: {items:?}");
    assert_eq!(items[0].server_msg_id, other_device.server_msg_id);
}
