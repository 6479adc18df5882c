//! Behaviour of both engines through the store traits: durability across reopen, seq order,
//! dedup, group commit, account atomicity. Every test runs on fjall (its own temporary
//! directory) and on PostgreSQL (two fresh shards); see `common/mod.rs`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use common::{Engine, Env, Opened, Tuning};
use iris_store::{
    AppendOutcome, AppendRequest, DedupKey, DeviceAddr, InboxCursor, NewEntry, RefreshTokenRecord, StoreError,
};

const ALICE: DeviceAddr = DeviceAddr { account: 1, device: 1 };
const BOB: DeviceAddr = DeviceAddr { account: 2, device: 1 };
const BOB_LAPTOP: DeviceAddr = DeviceAddr { account: 2, device: 2 };

/// An append of one entry per device in `to`, carrying `text`, without dedup.
fn send(to: &[DeviceAddr], text: &str) -> AppendRequest {
    AppendRequest {
        expires_at_ms: None,
        dedup: None,
        server_msg_id: 0,
        server_ts_ms: 1_000,
        entries: to.iter().map(|&device| NewEntry { device, item: Bytes::from(text.to_owned()) }).collect(),
    }
}

/// Like [`send`], deduplicated by Alice's `client_msg_id`, with server id `id` and time `ts`.
fn send_once(to: &[DeviceAddr], client_msg_id: &str, id: u64, ts: u64) -> AppendRequest {
    AppendRequest {
        expires_at_ms: None,
        dedup: Some(DedupKey { sender: ALICE, client_msg_id: client_msg_id.into() }),
        server_msg_id: id,
        server_ts_ms: ts,
        ..send(to, client_msg_id)
    }
}

fn seqs(outcome: AppendOutcome) -> Vec<u64> {
    match outcome {
        AppendOutcome::Appended { seqs } => seqs,
        other => panic!("expected Appended, got {other:?}"),
    }
}

async fn append(store: &Opened, req: AppendRequest) -> Vec<u64> {
    seqs(store.append(req).await.expect("append"))
}

/// The seqs and texts of a device's inbox after `after`.
async fn inbox(store: &Opened, device: DeviceAddr, after: u64) -> Vec<(u64, String)> {
    let entries = store.read(device, after, 100).await.expect("read");
    entries.into_iter().map(|e| (e.seq, String::from_utf8(e.item.to_vec()).expect("utf-8"))).collect()
}

fn texts(seq_texts: &[(u64, &str)]) -> Vec<(u64, String)> {
    seq_texts.iter().map(|&(seq, text)| (seq, text.to_owned())).collect()
}

async fn append_read_ack(engine: Engine) {
    // Proves the basic cycle: appended entries read back in order; acked ones disappear.
    let env = Env::new(engine);
    let store = env.open().await;
    assert_eq!(append(&store, send(&[BOB], "a")).await, [1]);
    assert_eq!(append(&store, send(&[BOB, BOB_LAPTOP], "b")).await, [2, 1]);
    assert_eq!(append(&store, send(&[BOB], "c")).await, [3]);
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(1, "a"), (2, "b"), (3, "c")]));
    assert_eq!(inbox(&store, BOB, 1).await, texts(&[(2, "b"), (3, "c")]));
    assert_eq!(store.read(BOB, 0, 2).await.unwrap().len(), 2);
    store.ack(BOB, 2).await.unwrap();
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(3, "c")]));
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 2, last: 3 });
    assert_eq!(inbox(&store, BOB_LAPTOP, 0).await, texts(&[(1, "b")]));
}

async fn ack_is_clamped_and_never_moves_back(engine: Engine) {
    // Proves acks beyond `last` stop at `last` and acks at or below the cursor change nothing.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB, BOB], "x")).await;
    store.ack(BOB, 99).await.unwrap();
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 2, last: 2 });
    store.ack(BOB, 1).await.unwrap();
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 2, last: 2 });
    assert_eq!(append(&store, send(&[BOB], "y")).await, [3]);
    store.ack(BOB_LAPTOP, 5).await.unwrap();
    assert_eq!(store.cursor(BOB_LAPTOP).await.unwrap(), InboxCursor::default());
}

async fn seqs_follow_request_and_entry_order(engine: Engine) {
    // Proves seqs are per device, gap-free, and in the order of awaited requests and of entries.
    let env = Env::new(engine);
    let store = env.open().await;
    assert_eq!(append(&store, send(&[BOB, BOB, BOB_LAPTOP, BOB], "m")).await, [1, 2, 1, 3]);
    for expected in 4..10 {
        assert_eq!(append(&store, send(&[BOB], "n")).await, [expected]);
    }
    assert_eq!(append(&store, send(&[], "nobody")).await, Vec::<u64>::new());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 0, last: 9 });
}

async fn retry_returns_original_answer(engine: Engine) {
    // Proves a dedup key is stored once and a retry gets the original id and time.
    let env = Env::new(engine);
    let store = env.open().await;
    assert_eq!(append(&store, send_once(&[BOB], "m1", 10, 500)).await, [1]);
    let retry = store.append(send_once(&[BOB], "m1", 11, 600)).await.unwrap();
    assert_eq!(retry, AppendOutcome::Duplicate { server_msg_id: 10, server_ts_ms: 500 });
    assert_eq!(store.cursor(BOB).await.unwrap().last, 1);
    assert_eq!(append(&store, send_once(&[BOB], "m2", 12, 700)).await, [2]);
    let stats = store.stats();
    assert_eq!((stats.appends, stats.duplicates), (2, 1));
}

async fn two_retries_in_one_batch(engine: Engine) {
    // Proves that two requests with one dedup key in the same batch store it once.
    let env = Env::with_tuning(engine, Tuning { batch_wait_us: 5_000_000, batch_ops_max: 2 });
    let store = env.open().await;
    let (first, second) =
        tokio::join!(store.append(send_once(&[BOB], "m1", 10, 500)), store.append(send_once(&[BOB], "m1", 11, 600)),);
    // One batch per shard involved (fjall: one).
    assert!(store.stats().commits <= env.n_shards(), "both requests should share one batch per shard");
    assert_eq!(first.unwrap(), AppendOutcome::Appended { seqs: vec![1] });
    assert_eq!(second.unwrap(), AppendOutcome::Duplicate { server_msg_id: 10, server_ts_ms: 500 });
    assert_eq!(inbox(&store, BOB, 0).await.len(), 1);
}

async fn dedup_survives_reopen(engine: Engine) {
    // Proves dedup records are durable: a retry after a restart is still a duplicate.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send_once(&[BOB], "m1", 10, 500)).await;
    drop(store);
    let store = env.open().await;
    let retry = store.append(send_once(&[BOB], "m1", 11, 600)).await.unwrap();
    assert_eq!(retry, AppendOutcome::Duplicate { server_msg_id: 10, server_ts_ms: 500 });
}

async fn entries_survive_reopen_and_seqs_continue(engine: Engine) {
    // Proves appended entries and cursors are durable and seqs continue after a restart.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB], "a")).await;
    append(&store, send(&[BOB], "b")).await;
    store.ack(BOB, 1).await.unwrap();
    drop(store);
    let store = env.open().await;
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(2, "b")]));
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 1, last: 2 });
    assert_eq!(append(&store, send(&[BOB], "c")).await, [3]);
}

async fn seqs_are_not_reused_after_ack_all_and_reopen(engine: Engine) {
    // Proves an empty inbox after acking everything still remembers its seqs across restarts.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB, BOB, BOB], "a")).await;
    store.ack(BOB, 3).await.unwrap();
    assert!(inbox(&store, BOB, 0).await.is_empty());
    drop(store);
    let store = env.open().await;
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 3, last: 3 });
    assert_eq!(append(&store, send(&[BOB], "b")).await, [4]);
    drop(store);
    let store = env.open().await;
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(4, "b")]));
}

async fn concurrent_appends_get_unique_increasing_seqs(engine: Engine) {
    // Proves many concurrent senders get unique, gap-free seqs per device, increasing per sender.
    let env = Env::new(engine);
    let store = Arc::new(env.open().await);
    let (n_tasks, n_each) = (32, 10);
    let tasks: Vec<_> = (0..n_tasks)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..n_each {
                    mine.push(append(&store, send(&[BOB, BOB_LAPTOP], "x")).await);
                }
                mine
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0][0] < w[1][0] && w[0][1] < w[1][1]), "{mine:?}");
        all.extend(mine.into_iter().map(|s| s[0]));
    }
    assert_eq!(all, (1..=n_tasks * n_each).collect::<HashSet<u64>>());
    let last = n_tasks * n_each;
    assert_eq!(store.cursor(BOB_LAPTOP).await.unwrap(), InboxCursor { acked: 0, last });
}

async fn concurrent_appends_share_commits(engine: Engine) {
    // Proves group commit: concurrent appends need fewer commits (fsyncs) than appends.
    let env = Env::with_tuning(engine, Tuning { batch_wait_us: 20_000, ..Tuning::default() });
    let store = Arc::new(env.open().await);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { append(&store, send(&[BOB], "x")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.appends, 200);
    assert!(stats.commits < stats.appends, "{stats:?}");
}

async fn register_device_enforces_limit_under_concurrency(engine: Engine) {
    // Proves registration is atomic: 20 racing logins to a 5-device account yield exactly 5.
    let env = Env::new(engine);
    let store = Arc::new(env.open().await);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.register_device("+15550001", &format!("d{i}"), 7, 5).await })
        })
        .collect();
    let (mut devices, mut limited) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok((account, device)) => devices.push((account.id, device)),
            Err(StoreError::DeviceLimit { max: 5 }) => limited += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((devices.len(), limited), (5, 15));
    let ids: HashSet<_> = devices.iter().map(|(_, d)| d.addr.device).collect();
    assert_eq!(ids, (1..=5).collect());
    let first = devices[0].0;
    assert!(devices.iter().all(|(account, d)| *account == first && d.primary == (d.addr.device == 1)));
    assert_eq!(store.devices(first).await.unwrap().len(), 5);
    let account = store.account_by_phone("+15550001").await.unwrap().unwrap();
    assert_eq!((account.id, account.created_at_ms), (first, 7));
}

async fn accounts_are_durable_and_distinct(engine: Engine) {
    // Proves accounts, devices and the phone index survive a restart and ids keep growing.
    let env = Env::new(engine);
    let store = env.open().await;
    let (alice, _) = store.register_device("+1555000A", "phone", 1, 5).await.unwrap();
    drop(store);
    let store = env.open().await;
    assert_eq!(store.account(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.account_by_phone("+1555000A").await.unwrap(), Some(alice.clone()));
    let (bob, bob_phone) = store.register_device("+1555000B", "phone", 2, 5).await.unwrap();
    assert_ne!(bob.id, alice.id);
    assert_eq!((bob_phone.addr.device, bob_phone.primary), (1, true));
    if engine == Engine::Fjall {
        assert_eq!(bob.id, alice.id + 1, "fjall hands out ids in sequence");
    }
    let (_, alice_laptop) = store.register_device("+1555000A", "laptop", 3, 5).await.unwrap();
    assert_eq!((alice_laptop.addr, alice_laptop.primary), (DeviceAddr::new(alice.id, 2), false));
    assert_eq!(store.account_by_phone("+1555000C").await.unwrap(), None);
    assert!(matches!(store.register_device("+1555000C", "x", 1, 0).await, Err(StoreError::DeviceLimit { max: 0 })));
    assert_eq!(store.account_by_phone("+1555000C").await.unwrap(), None);
}

async fn revoke_device_removes_its_tokens_and_frees_a_slot(engine: Engine) {
    // Proves revocation marks the device, deletes only its tokens, and ids are never reused.
    let env = Env::new(engine);
    let store = env.open().await;
    let (account, phone) = store.register_device("+15550002", "phone", 1, 2).await.unwrap();
    let (_, laptop) = store.register_device("+15550002", "laptop", 2, 2).await.unwrap();
    let token = |hash: u8, device: DeviceAddr| RefreshTokenRecord { hash: [hash; 32], device, expires_at_ms: 9 };
    store.put_refresh_token(token(1, phone.addr)).await.unwrap();
    store.put_refresh_token(token(2, laptop.addr)).await.unwrap();
    store.put_refresh_token(token(3, laptop.addr)).await.unwrap();
    assert!(store.revoke_device(laptop.addr, 50, Some(1)).await.unwrap());
    assert!(!store.revoke_device(laptop.addr, 60, Some(1)).await.unwrap());
    assert!(!store.revoke_device(DeviceAddr::new(account.id, 9), 60, Some(1)).await.unwrap());
    assert_eq!(store.device(laptop.addr).await.unwrap().unwrap().revoked_at_ms, Some(50));
    assert_eq!(store.devices(account.id).await.unwrap(), vec![phone.clone()]);
    assert_eq!(store.take_refresh_token(&[2; 32]).await.unwrap(), None);
    assert_eq!(store.take_refresh_token(&[3; 32]).await.unwrap(), None);
    assert_eq!(store.take_refresh_token(&[1; 32]).await.unwrap(), Some(token(1, phone.addr)));
    let (_, tablet) = store.register_device("+15550002", "tablet", 3, 2).await.unwrap();
    assert_eq!((tablet.addr.device, tablet.primary), (3, false));
}

async fn a_revocation_stays_unfinished_until_confirmed(engine: Engine) {
    // Proves: a revocation (one device, or every device by a re-registration) is recorded as
    // unfinished in its own durable step, with who announces it (`None` for a
    // re-registration); it is listed once its time is at or before the bound, survives a
    // reopen, is listed at most `limit` at a time, and is gone once finished.
    let env = Env::new(engine);
    let (laptop, tablet, phone) = {
        let store = env.open().await;
        store.register_device("+15550003", "phone", 1, 5).await.unwrap();
        let (_, laptop) = store.register_device("+15550003", "laptop", 2, 5).await.unwrap();
        let (_, tablet) = store.register_device("+15550003", "tablet", 3, 5).await.unwrap();
        assert!(store.revoke_device(laptop.addr, 50, Some(1)).await.unwrap());
        assert!(store.unfinished_revocations(49, 10).await.unwrap().is_empty(), "made after the bound");
        let (_, _, revoked) = store.register_primary("+15550003", "new phone", 60).await.unwrap().unwrap();
        let phone = revoked.iter().find(|d| d.primary).unwrap().clone();
        (laptop, tablet, phone)
    };
    let store = env.open().await;
    let mut listed: Vec<_> = store
        .unfinished_revocations(60, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.device.addr.device, r.device.revoked_at_ms, r.announce_by))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (phone.addr.device, Some(60), None),
            (laptop.addr.device, Some(50), Some(1)),
            (tablet.addr.device, Some(60), None)
        ]
    );
    assert_eq!(store.unfinished_revocations(60, 2).await.unwrap().len(), 2, "at most the limit");
    store.finish_revocation(laptop.addr).await.unwrap();
    store.finish_revocation(laptop.addr).await.unwrap();
    let left: HashSet<_> =
        store.unfinished_revocations(60, 10).await.unwrap().into_iter().map(|r| r.device.addr).collect();
    assert_eq!(left, HashSet::from([phone.addr, tablet.addr]));
}

async fn refresh_token_is_taken_once(engine: Engine) {
    // Proves a refresh token is single-use, even when two refreshes race, and durable.
    let env = Env::new(engine);
    let store = Arc::new(env.open().await);
    let token = RefreshTokenRecord { hash: [7; 32], device: BOB, expires_at_ms: 100 };
    store.put_refresh_token(token.clone()).await.unwrap();
    let store = Arc::into_inner(store).unwrap();
    drop(store);
    let store = Arc::new(env.open().await);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take_refresh_token(&[7; 32]).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for racer in racers {
        taken.extend(racer.await.unwrap());
    }
    assert_eq!(taken, vec![token]);
}

async fn expire_removes_old_entries_and_dedup_records(engine: Engine) {
    // Proves expiry deletes by age, counts what it removed, and leaves cursors alone.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send_once(&[BOB, BOB_LAPTOP], "old", 1, 100)).await;
    append(&store, send_once(&[BOB], "new", 2, 300)).await;
    assert_eq!(store.expire(200, 200).await.unwrap(), 3);
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(2, "new")]));
    assert!(inbox(&store, BOB_LAPTOP, 0).await.is_empty());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 0, last: 2 });
    assert_eq!(append(&store, send_once(&[BOB], "old", 3, 400)).await, [3]);
    let retry = store.append(send_once(&[BOB], "new", 4, 400)).await.unwrap();
    assert_eq!(retry, AppendOutcome::Duplicate { server_msg_id: 2, server_ts_ms: 300 });
    assert_eq!(store.expire(0, 0).await.unwrap(), 0);
}

async fn purge_empties_the_inbox_without_reusing_seqs(engine: Engine) {
    // Proves purge deletes everything, moves the cursor to `last`, and seqs continue.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB, BOB, BOB], "a")).await;
    store.ack(BOB, 1).await.unwrap();
    store.purge(BOB).await.unwrap();
    assert!(inbox(&store, BOB, 0).await.is_empty());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 3, last: 3 });
    assert_eq!(append(&store, send(&[BOB], "b")).await, [4]);
}

async fn close_flushes_and_rejects_later_calls(engine: Engine) {
    // Proves close is idempotent, keeps what was appended, and later appends fail with Closed.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB], "a")).await;
    store.ack(BOB, 1).await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.append(send(&[BOB], "b")).await, Err(StoreError::Closed)));
    assert!(matches!(store.ack(BOB, 1).await, Err(StoreError::Closed)));
    assert!(store.is_healthy());
    drop(store);
    let store = env.open().await;
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 1, last: 1 });
}

async fn an_ack_with_its_receipts_does_both_and_survives_reopen(engine: Engine) {
    // Proves: ack_with_receipts deletes the acked entries and appends the receipts (answering
    // their seqs), and both are durable across a reopen.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB, BOB], "m")).await;
    let outcome = store.ack_with_receipts(BOB, 1, send(&[ALICE], "delivered 1")).await.expect("ack with receipts");
    assert_eq!(seqs(outcome), [1]);
    drop(store);
    let store = env.open().await;
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(2, "m")]));
    assert_eq!(inbox(&store, ALICE, 0).await, texts(&[(1, "delivered 1")]));
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 1, last: 2 });
}

both_engines!(
    an_ack_with_its_receipts_does_both_and_survives_reopen,
    append_read_ack,
    ack_is_clamped_and_never_moves_back,
    seqs_follow_request_and_entry_order,
    retry_returns_original_answer,
    two_retries_in_one_batch,
    dedup_survives_reopen,
    entries_survive_reopen_and_seqs_continue,
    seqs_are_not_reused_after_ack_all_and_reopen,
    concurrent_appends_get_unique_increasing_seqs,
    concurrent_appends_share_commits,
    register_device_enforces_limit_under_concurrency,
    accounts_are_durable_and_distinct,
    revoke_device_removes_its_tokens_and_frees_a_slot,
    a_revocation_stays_unfinished_until_confirmed,
    refresh_token_is_taken_once,
    expire_removes_old_entries_and_dedup_records,
    purge_empties_the_inbox_without_reusing_seqs,
    close_flushes_and_rejects_later_calls,
);
