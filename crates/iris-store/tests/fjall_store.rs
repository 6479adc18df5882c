//! Behaviour of the embedded engine through the store traits: durability across reopen, seq
//! order, dedup, group commit, account atomicity. Every test uses its own temporary directory.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use iris_store::embedded::{FjallConfig, FjallStore};
use iris_store::{
    AccountStore, AppendOutcome, AppendRequest, DedupKey, DeviceAddr, InboxCursor, InboxStore, NewEntry,
    RefreshTokenRecord, StoreError,
};

const ALICE: DeviceAddr = DeviceAddr { account: 1, device: 1 };
const BOB: DeviceAddr = DeviceAddr { account: 2, device: 1 };
const BOB_LAPTOP: DeviceAddr = DeviceAddr { account: 2, device: 2 };

fn open(dir: &Path) -> FjallStore {
    open_with(dir, FjallConfig::default())
}

fn open_with(dir: &Path, config: FjallConfig) -> FjallStore {
    FjallStore::open(dir, config).expect("open store")
}

/// An append of one entry per device in `to`, carrying `text`, without dedup.
fn send(to: &[DeviceAddr], text: &str) -> AppendRequest {
    AppendRequest {
        dedup: None,
        server_msg_id: 0,
        server_ts_ms: 1_000,
        entries: to.iter().map(|&device| NewEntry { device, item: Bytes::from(text.to_owned()) }).collect(),
    }
}

/// Like [`send`], deduplicated by Alice's `client_msg_id`, with server id `id` and time `ts`.
fn send_once(to: &[DeviceAddr], client_msg_id: &str, id: u64, ts: u64) -> AppendRequest {
    AppendRequest {
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

async fn append(store: &FjallStore, req: AppendRequest) -> Vec<u64> {
    seqs(store.append(req).await.expect("append"))
}

/// The seqs and texts of a device's inbox after `after`.
async fn inbox(store: &FjallStore, device: DeviceAddr, after: u64) -> Vec<(u64, String)> {
    let entries = store.read(device, after, 100).await.expect("read");
    entries.into_iter().map(|e| (e.seq, String::from_utf8(e.item.to_vec()).expect("utf-8"))).collect()
}

fn texts(seq_texts: &[(u64, &str)]) -> Vec<(u64, String)> {
    seq_texts.iter().map(|&(seq, text)| (seq, text.to_owned())).collect()
}

#[tokio::test]
async fn append_read_ack() {
    // Proves the basic cycle: appended entries read back in order; acked ones disappear.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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

#[tokio::test]
async fn ack_is_clamped_and_never_moves_back() {
    // Proves acks beyond `last` stop at `last` and acks at or below the cursor change nothing.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, send(&[BOB, BOB], "x")).await;
    store.ack(BOB, 99).await.unwrap();
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 2, last: 2 });
    store.ack(BOB, 1).await.unwrap();
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 2, last: 2 });
    assert_eq!(append(&store, send(&[BOB], "y")).await, [3]);
    store.ack(BOB_LAPTOP, 5).await.unwrap();
    assert_eq!(store.cursor(BOB_LAPTOP).await.unwrap(), InboxCursor::default());
}

#[tokio::test]
async fn seqs_follow_request_and_entry_order() {
    // Proves seqs are per device, gap-free, and in the order of awaited requests and of entries.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(append(&store, send(&[BOB, BOB, BOB_LAPTOP, BOB], "m")).await, [1, 2, 1, 3]);
    for expected in 4..10 {
        assert_eq!(append(&store, send(&[BOB], "n")).await, [expected]);
    }
    assert_eq!(append(&store, send(&[], "nobody")).await, Vec::<u64>::new());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 0, last: 9 });
}

#[tokio::test]
async fn retry_returns_original_answer() {
    // Proves a dedup key is stored once and a retry gets the original id and time.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(append(&store, send_once(&[BOB], "m1", 10, 500)).await, [1]);
    let retry = store.append(send_once(&[BOB], "m1", 11, 600)).await.unwrap();
    assert_eq!(retry, AppendOutcome::Duplicate { server_msg_id: 10, server_ts_ms: 500 });
    assert_eq!(store.cursor(BOB).await.unwrap().last, 1);
    assert_eq!(append(&store, send_once(&[BOB], "m2", 12, 700)).await, [2]);
    let stats = store.stats();
    assert_eq!((stats.appends, stats.duplicates), (2, 1));
}

#[tokio::test]
async fn two_retries_in_one_batch() {
    // Proves that two requests with one dedup key in the same batch store it once.
    let dir = tempfile::tempdir().unwrap();
    let config = FjallConfig { batch_max_wait_us: 5_000_000, batch_max_ops: 2, ..FjallConfig::default() };
    let store = open_with(dir.path(), config);
    let (first, second) =
        tokio::join!(store.append(send_once(&[BOB], "m1", 10, 500)), store.append(send_once(&[BOB], "m1", 11, 600)),);
    assert_eq!(store.commit_count(), 1, "both requests should share one batch");
    assert_eq!(first.unwrap(), AppendOutcome::Appended { seqs: vec![1] });
    assert_eq!(second.unwrap(), AppendOutcome::Duplicate { server_msg_id: 10, server_ts_ms: 500 });
    assert_eq!(inbox(&store, BOB, 0).await.len(), 1);
}

#[tokio::test]
async fn dedup_survives_reopen() {
    // Proves dedup records are durable: a retry after a restart is still a duplicate.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, send_once(&[BOB], "m1", 10, 500)).await;
    drop(store);
    let store = open(dir.path());
    let retry = store.append(send_once(&[BOB], "m1", 11, 600)).await.unwrap();
    assert_eq!(retry, AppendOutcome::Duplicate { server_msg_id: 10, server_ts_ms: 500 });
}

#[tokio::test]
async fn entries_survive_reopen_and_seqs_continue() {
    // Proves appended entries and cursors are durable and seqs continue after a restart.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, send(&[BOB], "a")).await;
    append(&store, send(&[BOB], "b")).await;
    store.ack(BOB, 1).await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(2, "b")]));
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 1, last: 2 });
    assert_eq!(append(&store, send(&[BOB], "c")).await, [3]);
}

#[tokio::test]
async fn seqs_are_not_reused_after_ack_all_and_reopen() {
    // Proves an empty inbox after acking everything still remembers its seqs across restarts.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, send(&[BOB, BOB, BOB], "a")).await;
    store.ack(BOB, 3).await.unwrap();
    assert!(inbox(&store, BOB, 0).await.is_empty());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 3, last: 3 });
    assert_eq!(append(&store, send(&[BOB], "b")).await, [4]);
    drop(store);
    let store = open(dir.path());
    assert_eq!(inbox(&store, BOB, 0).await, texts(&[(4, "b")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_unique_increasing_seqs() {
    // Proves many concurrent senders get unique, gap-free seqs per device, increasing per sender.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits() {
    // Proves group commit: concurrent appends need fewer commits (fsyncs) than appends.
    let dir = tempfile::tempdir().unwrap();
    let config = FjallConfig { batch_max_wait_us: 20_000, ..FjallConfig::default() };
    let store = Arc::new(open_with(dir.path(), config));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_device_enforces_limit_under_concurrency() {
    // Proves registration is atomic: 20 racing logins to a 5-device account yield exactly 5.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
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
    assert!(devices.iter().all(|(account, d)| *account == 1 && d.primary == (d.addr.device == 1)));
    assert_eq!(store.devices(1).await.unwrap().len(), 5);
    let account = store.account_by_phone("+15550001").await.unwrap().unwrap();
    assert_eq!((account.id, account.created_at_ms), (1, 7));
}

#[tokio::test]
async fn accounts_are_durable_and_distinct() {
    // Proves accounts, devices and the phone index survive a restart and ids keep growing.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (alice, _) = store.register_device("+1555000A", "phone", 1, 5).await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.account(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.account_by_phone("+1555000A").await.unwrap(), Some(alice.clone()));
    let (bob, bob_phone) = store.register_device("+1555000B", "phone", 2, 5).await.unwrap();
    assert_eq!((bob.id, bob_phone.addr.device, bob_phone.primary), (alice.id + 1, 1, true));
    let (_, alice_laptop) = store.register_device("+1555000A", "laptop", 3, 5).await.unwrap();
    assert_eq!((alice_laptop.addr, alice_laptop.primary), (DeviceAddr::new(alice.id, 2), false));
    assert_eq!(store.account_by_phone("+1555000C").await.unwrap(), None);
    assert!(matches!(store.register_device("+1555000C", "x", 1, 0).await, Err(StoreError::DeviceLimit { max: 0 })));
    assert_eq!(store.account_by_phone("+1555000C").await.unwrap(), None);
}

#[tokio::test]
async fn revoke_device_removes_its_tokens_and_frees_a_slot() {
    // Proves revocation marks the device, deletes only its tokens, and ids are never reused.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (account, phone) = store.register_device("+15550002", "phone", 1, 2).await.unwrap();
    let (_, laptop) = store.register_device("+15550002", "laptop", 2, 2).await.unwrap();
    let token = |hash: u8, device: DeviceAddr| RefreshTokenRecord { hash: [hash; 32], device, expires_at_ms: 9 };
    store.put_refresh_token(token(1, phone.addr)).await.unwrap();
    store.put_refresh_token(token(2, laptop.addr)).await.unwrap();
    store.put_refresh_token(token(3, laptop.addr)).await.unwrap();
    assert!(store.revoke_device(laptop.addr, 50).await.unwrap());
    assert!(!store.revoke_device(laptop.addr, 60).await.unwrap());
    assert!(!store.revoke_device(DeviceAddr::new(account.id, 9), 60).await.unwrap());
    assert_eq!(store.device(laptop.addr).await.unwrap().unwrap().revoked_at_ms, Some(50));
    assert_eq!(store.devices(account.id).await.unwrap(), vec![phone.clone()]);
    assert_eq!(store.take_refresh_token(&[2; 32]).await.unwrap(), None);
    assert_eq!(store.take_refresh_token(&[3; 32]).await.unwrap(), None);
    assert_eq!(store.take_refresh_token(&[1; 32]).await.unwrap(), Some(token(1, phone.addr)));
    let (_, tablet) = store.register_device("+15550002", "tablet", 3, 2).await.unwrap();
    assert_eq!((tablet.addr.device, tablet.primary), (3, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_token_is_taken_once() {
    // Proves a refresh token is single-use, even when two refreshes race, and durable.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let token = RefreshTokenRecord { hash: [7; 32], device: BOB, expires_at_ms: 100 };
    store.put_refresh_token(token.clone()).await.unwrap();
    let store = Arc::into_inner(store).unwrap();
    drop(store);
    let store = Arc::new(open(dir.path()));
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

#[tokio::test]
async fn expire_removes_old_entries_and_dedup_records() {
    // Proves expiry deletes by age, counts what it removed, and leaves cursors alone.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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

#[tokio::test]
async fn purge_empties_the_inbox_without_reusing_seqs() {
    // Proves purge deletes everything, moves the cursor to `last`, and seqs continue.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, send(&[BOB, BOB, BOB], "a")).await;
    store.ack(BOB, 1).await.unwrap();
    store.purge(BOB).await.unwrap();
    assert!(inbox(&store, BOB, 0).await.is_empty());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 3, last: 3 });
    assert_eq!(append(&store, send(&[BOB], "b")).await, [4]);
}

#[tokio::test]
async fn close_flushes_and_rejects_later_calls() {
    // Proves close is idempotent, keeps what was appended, and later appends fail with Closed.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, send(&[BOB], "a")).await;
    store.ack(BOB, 1).await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.append(send(&[BOB], "b")).await, Err(StoreError::Closed)));
    assert!(matches!(store.ack(BOB, 1).await, Err(StoreError::Closed)));
    assert!(store.is_healthy());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 1, last: 1 });
}
