//! Disappearing messages end to end, on whichever engine `IRIS_TEST_ENGINE` picks (the
//! embedded log by default, PostgreSQL + Redis with `cluster`), with the server's clock
//! injected: a timer change is a durable event for both parties (or every member), only
//! messages sent after it carry an expiry, an expired entry is never delivered even before the
//! sweep ran, and the periodic sweep deletes it and its message-index record, delivered or not.

mod common;

use std::time::Duration;

use common::*;
use iris_proto::pb::{self, client_op, group_op, group_result, inbox_item, server_event, ErrorCode};

const DAY_MS: u64 = 86_400_000;

fn timer_op(request_id: u64, account_id: u64, group_id: u64, seconds: u32) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::SetTimer(pb::SetTimer { account_id, group_id, seconds })) }
}

/// Sets a timer and expects it accepted.
async fn set_timer(conn: &mut RawConn, request_id: u64, account_id: u64, group_id: u64, seconds: u32) {
    conn.send_ops(vec![timer_op(request_id, account_id, group_id, seconds)]).await;
    let e = conn.answer().await;
    assert_eq!(e.request_id, request_id, "{e:?}");
    match e.event {
        Some(server_event::Event::TimerResult(r)) => assert_eq!(r.seconds, seconds),
        other => panic!("expected TimerResult, got {other:?}"),
    }
}

fn timer_changed(item: &pb::InboxItem) -> &pb::TimerChanged {
    match &item.body {
        Some(inbox_item::Body::TimerChanged(t)) => t,
        other => panic!("expected TimerChanged, got {other:?}"),
    }
}

/// Waits (bounded) until the server's sweep has deleted at least `entries` inbox entries and
/// `refs` message-index records: the sweep runs on its own interval, so the test waits for its
/// effect, as observed by the node's own counters.
async fn swept(server: &TestServer, entries: u64, refs: u64) {
    let m = &server.ctx().metrics;
    wait_until("the sweep ran", Duration::from_secs(20), || async {
        m.expiry_entries_deleted.get() >= entries && m.expiry_refs_deleted.get() >= refs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_later_messages_disappear_and_never_after_their_expiry() {
    // Proves: either party sets a 1:1 timer as an event both get; a message sent before it has
    // no expiry, one sent after carries sent time + timer; once the (injected) clock passes
    // that, the entry is not delivered even though no sweep ran yet, a reply to it is refused
    // (its index record is gone too), and the sweep then deletes entry and record though the
    // entry was never acked. Values outside the set are INVALID_TIMER.
    let server = TestServer::start_with_manual_clock(|c| {
        c.disappearing.sweep_interval_ms = 20;
        c.auth.access_token_ttl_s = 7 * 86_400; // the devices stay logged in across the day
    })
    .await;
    let alice = server.login("+15550000001", "alice").await;
    let bob = server.login("+15550000002", "bob").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;

    let before = a.send_accepted(1, text_to_account("m0", bob.account_id, b"before")).await;
    let got = b.expect_delivery().await;
    assert_eq!((got[0].server_msg_id, got[0].expires_at_ms), (before.server_msg_id, 0));

    a.send_ops(vec![timer_op(2, bob.account_id, 0, 3_600)]).await;
    a.expect_request_error(2, ErrorCode::InvalidTimer).await;
    a.send_ops(vec![timer_op(3, 0, 0, 86_400)]).await;
    a.expect_request_error(3, ErrorCode::InvalidArgument).await;
    set_timer(&mut a, 4, bob.account_id, 0, 86_400).await;
    let got = b.expect_delivery().await;
    let t = timer_changed(&got[0]);
    assert_eq!(
        (t.by_account_id, t.to_account_id, t.group_id, t.seconds),
        (alice.account_id, bob.account_id, 0, 86_400)
    );

    let timed = a.send_accepted(5, text_to_account("m1", bob.account_id, b"gone tomorrow")).await;
    let got = b.expect_delivery().await;
    assert_eq!(got[0].server_msg_id, timed.server_msg_id);
    assert_eq!(got[0].expires_at_ms, timed.server_ts_ms + DAY_MS);
    drop(b); // never acked: the entry stays undelivered as far as the inbox knows

    server.advance_clock_ms(DAY_MS);
    // Bob turns the timer off (either party may); the next message is kept.
    let (mut b, _) = server.connect_as(&bob).await;
    let got = b.expect_delivery().await;
    assert!(got.iter().all(|i| i.server_msg_id != timed.server_msg_id), "expired entry delivered: {got:?}");
    set_timer(&mut b, 1, alice.account_id, 0, 0).await;
    let after = a.send_accepted(6, text_to_account("m2", bob.account_id, b"kept")).await;
    let got = b.expect_delivery().await;
    let last = got.iter().find(|i| i.server_msg_id == after.server_msg_id).expect("the later message");
    assert_eq!(last.expires_at_ms, 0);

    let mut reply = text_to_account("r1", bob.account_id, b"re");
    reply.reply_to_server_msg_id = timed.server_msg_id;
    a.send_ops(vec![send_op(7, reply)]).await;
    a.expect_request_error(7, ErrorCode::NotFound).await;

    swept(&server, 1, 1).await;
    let store = &server.ctx().store;
    let left = store.read(iris_store::DeviceAddr::new(bob.account_id, bob.device_id), 0, 100).await.unwrap();
    assert!(left.iter().all(|e| e.expires_at_ms.is_none()), "an expired entry is still stored: {left:?}");
    assert_eq!(store.message_ref(timed.server_msg_id).await.unwrap(), None);
    assert!(store.message_ref(after.server_msg_id).await.unwrap().is_some());
}

fn group_op(request_id: u64, op: group_op::Op) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Group(pb::GroupOp { op: Some(op) })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_timer_follows_the_groups_edit_setting() {
    // Proves: in a group whose info only admins may edit, a member cannot set the timer and an
    // admin can; every member device gets the event, and group messages then carry the expiry.
    let server = TestServer::start_with_manual_clock(|_| {}).await;
    let alice = server.login("+15550000011", "alice").await;
    let bob = server.login("+15550000012", "bob").await;
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;
    let create = pb::GroupCreate {
        name: "timed".into(),
        member_account_ids: vec![bob.account_id],
        settings: Some(pb::GroupSettings { admins_only_edit: true, ..Default::default() }),
        ..Default::default()
    };
    a.send_ops(vec![group_op(1, group_op::Op::Create(create))]).await;
    let group_id = match a.answer().await.event {
        Some(server_event::Event::GroupResult(pb::GroupResult { result: Some(group_result::Result::Info(i)) })) => {
            i.group_id
        }
        other => panic!("expected the group, got {other:?}"),
    };
    b.expect_delivery().await; // the creation event

    b.send_ops(vec![timer_op(1, 0, group_id, 604_800)]).await;
    b.expect_request_error(1, ErrorCode::PermissionDenied).await;
    set_timer(&mut a, 2, 0, group_id, 604_800).await;
    let got = b.expect_delivery().await;
    let t = timer_changed(&got[0]);
    assert_eq!((t.by_account_id, t.group_id, t.seconds), (alice.account_id, group_id, 604_800));

    let send = pb::GroupSend {
        group_id,
        client_msg_id: "g1".into(),
        body: Some(pb::group_send::Body::Payload(b"for a week".to_vec().into())),
        ..Default::default()
    };
    a.send_ops(vec![group_op(3, group_op::Op::Send(send))]).await;
    let sent = match a.answer().await.event {
        Some(server_event::Event::GroupResult(pb::GroupResult { result: Some(group_result::Result::Sent(s)) })) => s,
        other => panic!("expected the send result, got {other:?}"),
    };
    let got = b.expect_delivery().await;
    assert_eq!(got[0].server_msg_id, sent.server_msg_id);
    assert_eq!(got[0].expires_at_ms, sent.server_ts_ms + 7 * DAY_MS);
}
