//! Disappearing messages on both engines: entries and message-index records stored with an
//! expiry are deleted by the bounded sweep once due, delivered or not, wherever they sit in an
//! inbox (expiry is not monotonic in seq); read-back carries the expiry so readers can skip an
//! entry due before the sweep ran; conversation timers are durable.

mod common;

use bytes::Bytes;
use common::{Engine, Env, Opened};
use iris_store::{
    AppendOutcome, AppendRequest, Chat, ChatTimer, Conversation, DeviceAddr, InboxCursor, MessageRef, NewEntry,
};

const BOB: DeviceAddr = DeviceAddr { account: 2, device: 1 };
const BOB_LAPTOP: DeviceAddr = DeviceAddr { account: 2, device: 2 };

/// An append of `text` to each of `to`, disappearing at `expires_at_ms` if set.
fn send(to: &[DeviceAddr], text: &str, id: u64, expires_at_ms: Option<u64>) -> AppendRequest {
    AppendRequest {
        expires_at_ms,
        dedup: None,
        server_msg_id: id,
        server_ts_ms: 1_000,
        entries: to.iter().map(|&device| NewEntry { device, item: Bytes::from(text.to_owned()) }).collect(),
    }
}

async fn append(store: &Opened, req: AppendRequest) -> Vec<u64> {
    match store.append(req).await.expect("append") {
        AppendOutcome::Appended { seqs } => seqs,
        other => panic!("expected Appended, got {other:?}"),
    }
}

/// (seq, text, expiry) of a device's inbox.
async fn inbox(store: &Opened, device: DeviceAddr) -> Vec<(u64, String, Option<u64>)> {
    let entries = store.read(device, 0, 100).await.expect("read");
    entries.into_iter().map(|e| (e.seq, String::from_utf8(e.item.to_vec()).unwrap(), e.expires_at_ms)).collect()
}

fn row(seq: u64, text: &str, expires: Option<u64>) -> (u64, String, Option<u64>) {
    (seq, text.to_owned(), expires)
}

async fn expired_entries_go_in_bounded_passes_wherever_they_sit(engine: Engine) {
    // Proves: the sweep deletes exactly the entries due (in the middle of an inbox, delivered
    // or not), at most `limit` per pass, keeps seqs dense for what follows, and reads carry
    // each entry's expiry.
    let env = Env::new(engine);
    let store = env.open().await;
    append(&store, send(&[BOB], "plain", 1, None)).await;
    append(&store, send(&[BOB, BOB_LAPTOP], "week", 2, Some(7_000))).await;
    append(&store, send(&[BOB], "day", 3, Some(3_000))).await;
    append(&store, send(&[BOB], "after", 4, None)).await;
    assert_eq!(
        inbox(&store, BOB).await,
        vec![row(1, "plain", None), row(2, "week", Some(7_000)), row(3, "day", Some(3_000)), row(4, "after", None)]
    );
    assert_eq!(store.expire_due(2_999, 100).await.unwrap(), 0, "nothing is due yet");
    assert_eq!(store.expire_due(3_000, 100).await.unwrap(), 1, "due at its expiry, not after");
    assert_eq!(
        inbox(&store, BOB).await,
        vec![row(1, "plain", None), row(2, "week", Some(7_000)), row(4, "after", None)]
    );
    // Delivered (acked past) or not, the laptop's copy goes too: two entries, one per pass.
    store.ack(BOB_LAPTOP, 0).await.unwrap();
    assert_eq!(store.expire_due(10_000, 1).await.unwrap(), 1, "bounded per pass");
    assert_eq!(store.expire_due(10_000, 1).await.unwrap(), 1);
    assert_eq!(store.expire_due(10_000, 1).await.unwrap(), 0);
    assert_eq!(inbox(&store, BOB).await, vec![row(1, "plain", None), row(4, "after", None)]);
    assert!(inbox(&store, BOB_LAPTOP).await.is_empty());
    assert_eq!(store.cursor(BOB).await.unwrap(), InboxCursor { acked: 0, last: 4 });
    assert_eq!(append(&store, send(&[BOB], "next", 5, None)).await, [5], "seqs are never reused");
}

async fn an_entry_due_before_a_restart_is_swept_after_it(engine: Engine) {
    // Proves: expiry survives a reopen (the log replays it, PostgreSQL stores it), so the
    // first pass after a restart deletes what became due meanwhile.
    let env = Env::new(engine);
    {
        let store = env.open().await;
        append(&store, send(&[BOB], "gone", 1, Some(5_000))).await;
        append(&store, send(&[BOB], "kept", 2, None)).await;
        store.close().await.unwrap();
    }
    let store = env.open().await;
    assert_eq!(inbox(&store, BOB).await, vec![row(1, "gone", Some(5_000)), row(2, "kept", None)]);
    assert_eq!(store.expire_due(5_000, 10).await.unwrap(), 1);
    assert_eq!(inbox(&store, BOB).await, vec![row(2, "kept", None)]);
}

async fn message_refs_with_an_expiry_go_by_the_sweep(engine: Engine) {
    // Proves: the message index keeps each record's expiry and the sweep deletes the due ones,
    // bounded per pass, leaving the rest.
    let env = Env::new(engine);
    let store = env.open().await;
    let r = |expires_at_ms| MessageRef {
        sender: 1,
        conversation: Conversation::Direct(2),
        sent_at_ms: 1_000,
        deleted: false,
        expires_at_ms,
    };
    store.put_message_ref(11, r(Some(4_000))).await.unwrap();
    store.put_message_ref(12, r(Some(9_000))).await.unwrap();
    store.put_message_ref(13, r(None)).await.unwrap();
    // The refs ride the next synced commit, as with a send.
    append(&store, send(&[BOB], "carrier", 14, None)).await;
    assert_eq!(store.message_ref(11).await.unwrap(), Some(r(Some(4_000))));
    assert_eq!(store.expire_due_refs(3_999, 10).await.unwrap(), 0);
    assert_eq!(store.expire_due_refs(9_000, 1).await.unwrap(), 1);
    assert_eq!(store.expire_due_refs(9_000, 10).await.unwrap(), 1);
    assert_eq!(store.message_ref(11).await.unwrap(), None);
    assert_eq!(store.message_ref(12).await.unwrap(), None);
    assert_eq!(store.message_ref(13).await.unwrap(), Some(r(None)));
}

async fn timers_are_per_conversation_and_durable(engine: Engine) {
    // Proves: a 1:1 timer is one setting whichever side names the pair, groups have their own,
    // an unset conversation is off, and timers survive a reopen.
    let env = Env::new(engine);
    let (alice, bob, carol, group) = (1 << 8, 2 << 8, 3 << 8, 7 << 8);
    let day = ChatTimer { seconds: 86_400, set_by: bob, set_at_ms: 10 };
    let week = ChatTimer { seconds: 604_800, set_by: carol, set_at_ms: 20 };
    {
        let store = env.open().await;
        assert_eq!(store.timer(Chat::direct(alice, bob)).await.unwrap(), ChatTimer::default());
        store.set_timer(Chat::direct(bob, alice), day).await.unwrap();
        store.set_timer(Chat::Group(group), week).await.unwrap();
        store.close().await.unwrap();
    }
    let store = env.open().await;
    assert_eq!(store.timer(Chat::direct(alice, bob)).await.unwrap(), day);
    assert_eq!(store.timer(Chat::direct(alice, carol)).await.unwrap(), ChatTimer::default());
    assert_eq!(store.timer(Chat::Group(group)).await.unwrap(), week);
    let off = ChatTimer { seconds: 0, set_by: alice, set_at_ms: 30 };
    store.set_timer(Chat::direct(alice, bob), off).await.unwrap();
    assert_eq!(store.timer(Chat::direct(bob, alice)).await.unwrap(), off);
}

both_engines!(
    expired_entries_go_in_bounded_passes_wherever_they_sit,
    an_entry_due_before_a_restart_is_swept_after_it,
    message_refs_with_an_expiry_go_by_the_sweep,
    timers_are_per_conversation_and_durable,
);
