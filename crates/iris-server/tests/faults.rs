//! Failing dependencies, against the real server: when the store cannot make a send durable (disk
//! full, fsync error) the send fails with a typed `UNAVAILABLE` instead of being acknowledged,
//! `/readyz` goes red, nothing unacknowledged is delivered, and everything acknowledged survives.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use iris_proto::pb::{self, server_event, ErrorCode};

const ALICE: &str = "+15550002001";
const BOB: &str = "+15550002002";

/// Pings and expects the `Pong` as the very next event (nothing was delivered before it).
async fn ping_with_nothing_before(conn: &mut RawConn, request_id: u64) {
    conn.send_ops(vec![ping_op(request_id, 1)]).await;
    let e = conn.event().await;
    assert!(
        matches!(e, pb::ServerEvent { request_id: r, event: Some(server_event::Event::Pong(_)) } if r == request_id),
        "expected only a Pong, got {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_makes_sends_unavailable_and_readyz_red_until_it_recovers() {
    // Proves: while the store fails appends (disk full, fsync error) every send is UNAVAILABLE (not fatal, retry_after_ms > 0), nothing is delivered for them, /readyz is 503; after recovery /readyz is 200 and a send is ACCEPTED and delivered alone.
    let (store, faults) = faulty_store();
    let server = TestServer::start_with_store(|_| {}, store).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;
    server.get("/readyz", None).await.expect_status(200);

    faults.set(Some(AppendFault::Unavailable));
    for i in 1..=3 {
        a.send_ops(vec![send_op(i, text_to_account(&format!("lost-{i}"), bob.account_id, b"x"))]).await;
        let err = a.expect_request_error(i, ErrorCode::Unavailable).await;
        assert!(err.retry_after_ms > 0, "{err:?}");
    }
    assert_eq!(server.get("/readyz", None).await.expect_status(503).text(), "store unhealthy");
    server.get("/healthz", None).await.expect_status(200);
    ping_with_nothing_before(&mut b, 1).await;

    faults.set(None);
    server.get("/readyz", None).await.expect_status(200);
    let accepted = a.send_accepted(10, text_to_account("kept", bob.account_id, b"x")).await;
    let items = b.expect_delivery().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].server_msg_id, accepted.server_msg_id);
    assert_eq!(as_message(&items[0]).expect("a message").client_msg_id, "kept");
    ping_with_nothing_before(&mut b, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_whose_receipts_failed_is_retried_and_no_later_ack_deletes_without_them() {
    // Proves: when the DELIVERED receipts of an ack cannot be written, its entries stay, and a
    // later ack does not delete them without their receipts: once the store recovers, the sender
    // learns that every message was delivered.
    let (store, faults) = faulty_store();
    let server = TestServer::start_with_store(|_| {}, store.clone()).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (mut b, _) = server.connect_as(&bob).await;
    let first = a.send_accepted(1, text_to_account("m1", bob.account_id, b"x")).await;
    assert_eq!(b.expect_delivery().await[0].seq, 1);

    faults.set(Some(AppendFault::Unavailable));
    b.send_ops(vec![ack_op(2, 1)]).await;
    b.ping(3).await;
    wait_until("the ack's receipts fail", EVENT_TIMEOUT, || async { faults.injected() >= 1 }).await;
    faults.set(None);

    let second = a.send_accepted(4, text_to_account("m2", bob.account_id, b"x")).await;
    assert_eq!(b.expect_delivery().await[0].seq, 2);
    b.send_ops(vec![ack_op(5, 2)]).await;
    let mut ids: Vec<u64> = Vec::new();
    while ids.len() < 2 {
        for item in a.expect_delivery().await {
            let Some(pb::inbox_item::Body::Receipt(r)) = &item.body else { panic!("expected a receipt: {item:?}") };
            assert_eq!(r.r#type, pb::ReceiptType::Delivered as i32);
            ids.extend(&r.server_msg_ids);
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![first.server_msg_id, second.server_msg_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_failing_inbox_reads_and_delivers_once_they_succeed() {
    // Proves: when the inbox cannot be read (the store not answering, as a PostgreSQL shard
    // that is down), the connection stays up and answers; once reads succeed again the queued
    // messages are delivered, in order, without a reconnect.
    let (store, faults) = faulty_store();
    let server = TestServer::start_with_store(|_| {}, store.clone()).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    for i in 1..=3 {
        a.send_accepted(i, text_to_account(&format!("queued-{i}"), bob.account_id, b"x")).await;
    }

    faults.set_reads_fail(true);
    let (mut b, _) = server.connect_as(&bob).await;
    wait_until("bob's first read fails", EVENT_TIMEOUT, || async { faults.reads_failed() >= 1 }).await;
    ping_with_nothing_before(&mut b, 1).await;
    faults.set_reads_fail(false);

    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        seqs.extend(b.expect_delivery().await.iter().map(|item| item.seq));
    }
    assert_eq!(seqs, vec![1, 2, 3]);
}

/// A tmpfs mounted for the length of a test; lazily unmounted on drop (the server may still hold
/// files open while it winds down).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_really_full_disk_fails_sends_with_a_typed_error_and_loses_nothing_accepted() {
    // Proves: on a real 4 MiB tmpfs filled by 60 KiB messages, sends start failing with UNAVAILABLE (or OVERLOADED), never a crash or a dropped connection; /readyz turns 503; and the recipient then receives exactly the ACCEPTED messages.
    let dir = tempfile::tempdir().expect("temporary mount point");
    let _tmpfs = match Tmpfs::mount(dir.path(), "4m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: a real disk-full test needs `mount -t tmpfs` (root, CAP_SYS_ADMIN): {why}");
            return;
        }
    };
    let data_dir = dir.path().to_owned();
    let server = TestServer::start_with(|c| c.data_dir = data_dir).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;

    let mut accepted: BTreeSet<u64> = BTreeSet::new();
    let mut failures = 0u32;
    let mut request_id = 0u64;
    // 4 MiB hold about 70 such messages; stop 20 sends after the first failure.
    while failures < 20 {
        request_id += 1;
        assert!(request_id < 1_000, "the disk never filled up ({} accepted)", accepted.len());
        let payload: Vec<u8> = (0..60 * 1024).map(|_| rand::random::<u8>()).collect();
        let msg = text_to_account(&format!("fill-{request_id}"), bob.account_id, &payload);
        match a.send_message(request_id, msg).await.event {
            Some(server_event::Event::SendResult(r)) => {
                assert_eq!(r.status, pb::SendStatus::Accepted as i32, "{r:?}");
                assert_eq!(failures, 0, "a send was accepted after the store had failed: {r:?}");
                accepted.insert(r.server_msg_id);
            }
            Some(server_event::Event::Error(e)) => {
                assert!(
                    matches!(e.error_code(), ErrorCode::Unavailable | ErrorCode::Overloaded),
                    "a full disk must be UNAVAILABLE or OVERLOADED: {e:?}"
                );
                assert!(!e.fatal && e.retry_after_ms > 0, "{e:?}");
                failures += 1;
            }
            other => panic!("expected SendResult or Error, got {other:?}"),
        }
    }
    eprintln!("full disk: {} sends accepted, then {failures} refused", accepted.len());
    assert!(!accepted.is_empty(), "the disk was full before the first send");
    assert_eq!(server.get("/readyz", None).await.expect_status(503).text(), "store unhealthy");
    server.get("/healthz", None).await.expect_status(200);
    a.ping(10_000).await;

    let (mut b, _) = server.connect_as(&bob).await;
    let mut delivered: BTreeSet<u64> = BTreeSet::new();
    while delivered.len() < accepted.len() {
        for item in b.expect_delivery().await {
            assert!(delivered.insert(item.server_msg_id), "delivered twice: {}", item.server_msg_id);
        }
    }
    assert_eq!(delivered, accepted, "the recipient must get exactly the ACCEPTED messages");
    ping_with_nothing_before(&mut b, 1).await;
}
