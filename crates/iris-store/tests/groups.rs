//! The group records of both engines: ids, version checks, indexes, payloads, receipts,
//! expiry, and that all of it survives a reopen.

mod common;

use bytes::Bytes;
use common::{Engine, Env};
use iris_store::{AppendRequest, DeviceAddr, Group, GroupMember, GroupRole, NewEntry};

fn group(members: &[u64]) -> Group {
    Group {
        id: 0,
        name: "g".into(),
        description: String::new(),
        settings: Default::default(),
        created_at_ms: 1,
        version: 1,
        members: members
            .iter()
            .map(|&account| GroupMember { account, role: GroupRole::Member, joined_at_ms: 1, joined_version: 1 })
            .collect(),
        pending: vec![],
        invite_token: None,
    }
}

/// A group change's events as the store takes them: one entry, `item`, for `device`.
fn one_event(device: DeviceAddr, server_msg_id: u64, item: &'static [u8]) -> AppendRequest {
    AppendRequest {
        expires_at_ms: None,
        dedup: None,
        server_msg_id,
        server_ts_ms: 1,
        entries: vec![NewEntry { device, item: Bytes::from_static(item) }],
    }
}

async fn updates_follow_versions_and_keep_the_indexes(engine: Engine) {
    // Proves: ids are fresh, an update must carry the next version, the member and invite
    // indexes follow every update, and everything survives a reopen.
    let env = Env::new(engine);
    let store = env.open().await;
    let g = common::create_group(&*store, group(&[1, 2])).await;
    let h = common::create_group(&*store, group(&[2])).await;
    assert_ne!(g.id, h.id);
    let mut both = vec![g.id, h.id];
    both.sort_unstable();
    assert_eq!(store.groups_of(2).await.unwrap(), both);
    let mut next = g.clone();
    next.members.retain(|m| m.account != 2);
    next.invite_token = Some("tok".into());
    assert!(!store.update_group(&next).await.unwrap(), "same version is refused");
    next.version = 2;
    assert!(store.update_group(&next).await.unwrap());
    assert!(!store.update_group(&next).await.unwrap(), "a replayed version is refused");
    assert_eq!(store.groups_of(2).await.unwrap(), vec![h.id]);
    let member = |id, account| {
        let store = &store;
        async move { store.is_group_member(id, account).await.unwrap() }
    };
    assert!(member(g.id, 1).await && member(h.id, 2).await);
    assert!(!member(g.id, 2).await, "a removed member is not one");
    assert!(!member(g.id + h.id + 1, 1).await, "nor anyone of a group that does not exist");
    assert_eq!(store.group_by_invite("tok").await.unwrap(), Some(g.id));
    drop(store);
    let store = env.open().await;
    assert_eq!(store.group(g.id).await.unwrap(), Some(next.clone()));
    next.version = 3;
    next.invite_token = None;
    assert!(store.update_group(&next).await.unwrap());
    assert_eq!(store.group_by_invite("tok").await.unwrap(), None);
}

async fn payloads_and_receipts_count_and_expire(engine: Engine) {
    // Proves: receipts count each recipient once, report "all delivered/read" exactly once, and
    // payloads and receipts below the id cutoff expire.
    let env = Env::new(engine);
    let store = env.open().await;
    store.put_group_payload(7, 100, Bytes::from_static(b"p")).await.unwrap();
    store.start_group_receipts(7, 100, 1, &[2, 3]).await.unwrap();
    let p = store.mark_group_receipt(7, 100, 2, false, 5).await.unwrap().unwrap();
    assert!(!p.all_delivered_now);
    let p = store.mark_group_receipt(7, 100, 2, false, 6).await.unwrap().unwrap();
    assert!(!p.all_delivered_now, "a repeat does not count");
    let p = store.mark_group_receipt(7, 100, 3, true, 7).await.unwrap().unwrap();
    assert!(p.all_delivered_now && !p.all_read_now);
    assert!(store.mark_group_receipt(7, 100, 9, true, 7).await.unwrap().is_none(), "not a recipient");
    assert!(store.mark_group_receipt(7, 555, 2, true, 7).await.unwrap().is_none(), "not tracked");
    let p = store.mark_group_receipt(7, 100, 2, true, 8).await.unwrap().unwrap();
    assert!(!p.all_delivered_now && p.all_read_now && p.sender == 1);
    let p = store.mark_group_receipt(7, 100, 2, true, 9).await.unwrap().unwrap();
    assert!(!p.all_delivered_now && !p.all_read_now, "a repeated read does not count");
    let (sender, rows) = store.group_receipts(7, 100).await.unwrap().unwrap();
    assert_eq!((sender, rows.len(), rows[0].delivered_at_ms, rows[0].read_at_ms, rows[1].read_at_ms), (1, 2, 5, 8, 7));
    assert_eq!(store.group_payload(7, 100).await.unwrap(), Some(Bytes::from_static(b"p")));
    assert_eq!(store.expire_group_messages(100).await.unwrap(), 0);
    // The payload, the counters and both rows; fjall also keeps the recipient list as a record,
    // and its two rows are one block record once a settle (the checkpointer's, every second)
    // has folded them, two records until then.
    let records = store.expire_group_messages(101).await.unwrap();
    match engine {
        Engine::Fjall => assert!((4..=5).contains(&records), "{records} records"),
        Engine::Postgres => assert_eq!(records, 4),
    }
    assert_eq!(store.group_payload(7, 100).await.unwrap(), None);
    assert_eq!(store.group_receipts(7, 100).await.unwrap(), None, "the rows went too");
}

async fn concurrent_receipts_count_every_member_once(engine: Engine) {
    // Proves: 64 members marking one message at the same time (each read, so each delivers and
    // reads in one call) are each counted once: exactly one call sees "all delivered" and one
    // "all read", and every row holds its times.
    let env = Env::new(engine);
    let store = env.open().await;
    let members: Vec<u64> = (2..66).collect();
    store.start_group_receipts(7, 200, 1, &members).await.unwrap();
    let marks = members.iter().map(|&m| store.mark_group_receipt(7, 200, m, true, 10 + m));
    let progress: Vec<_> =
        futures_util::future::join_all(marks).await.into_iter().map(|p| p.unwrap().unwrap()).collect();
    assert_eq!(progress.iter().filter(|p| p.all_delivered_now).count(), 1);
    assert_eq!(progress.iter().filter(|p| p.all_read_now).count(), 1);
    let (_, rows) = store.group_receipts(7, 200).await.unwrap().unwrap();
    assert!(rows.iter().all(|r| r.delivered_at_ms == 10 + r.account && r.read_at_ms == 10 + r.account));
}

async fn one_call_marks_the_messages_an_ack_covers_each_as_alone(engine: Engine) {
    // Proves: `mark_group_receipts` answers per message, in order, as single marks would: an
    // untracked message and a non-recipient's get none, the last member's gets "all
    // delivered", a repeat within the call counts once, and the rows hold the times.
    let env = Env::new(engine);
    let store = env.open().await;
    store.start_group_receipts(7, 300, 1, &[2, 3]).await.unwrap();
    store.start_group_receipts(8, 301, 1, &[3, 4]).await.unwrap();
    store.mark_group_receipt(7, 300, 2, false, 5).await.unwrap().unwrap();
    let marks = [(7, 300), (7, 999), (8, 301), (8, 301)];
    let progress = store.mark_group_receipts(3, &marks, false, 6).await.unwrap();
    assert_eq!(progress.len(), 4);
    assert!(progress[0].is_some_and(|p| p.all_delivered_now && p.sender == 1));
    assert!(progress[1].is_none(), "not tracked");
    assert!(progress[2].is_some_and(|p| !p.all_delivered_now));
    assert!(progress[3].is_some_and(|p| !p.all_delivered_now), "a repeat counts once");
    assert!(store.mark_group_receipts(9, &[(7, 300)], true, 7).await.unwrap()[0].is_none(), "not a recipient");
    let (_, rows) = store.group_receipts(8, 301).await.unwrap().unwrap();
    assert_eq!(rows.iter().map(|r| (r.account, r.delivered_at_ms)).collect::<Vec<_>>(), [(3, 6), (4, 0)]);
    let p = store.mark_group_receipts(4, &[(8, 301)], false, 8).await.unwrap()[0].unwrap();
    assert!(p.all_delivered_now, "counted once, so the other member completes it");
}

async fn a_group_update_and_its_events_commit_together(engine: Engine) {
    // Proves: enqueue_group_update makes the new record readable at once, refuses a stale
    // version without queueing anything, and commits the record, its indexes and the events in
    // one durable batch (both are there after a reopen).
    use iris_store::{AppendOutcome, DeviceAddr};
    let env = Env::new(engine);
    let store = env.open().await;
    let g = common::create_group(&*store, group(&[1, 2])).await;
    let mut next = g.clone();
    next.version = 2;
    next.members.retain(|m| m.account != 2);
    let device = DeviceAddr::new(1, 1);
    let events = |item| one_event(device, 9, item);
    let pending = store.enqueue_group_update(&next, events(b"removed 2")).await.unwrap().expect("version fits");
    assert_eq!(store.group(g.id).await.unwrap(), Some(next.clone()), "readable before the commit");
    assert!(!store.is_group_member(g.id, 2).await.unwrap(), "membership too");
    assert!(store.enqueue_group_update(&next, events(b"stale")).await.unwrap().is_none(), "same version refused");
    assert!(matches!(pending.await.unwrap(), AppendOutcome::Appended { .. }));
    drop(store);

    let store = env.open().await;
    assert_eq!(store.group(g.id).await.unwrap(), Some(next));
    assert_eq!(store.groups_of(2).await.unwrap(), Vec::<u64>::new());
    let inbox = store.read(device, 0, 10).await.unwrap();
    assert_eq!(inbox.iter().map(|e| &e.item[..]).collect::<Vec<_>>(), vec![&b"removed 2"[..]]);
}

async fn a_new_group_and_its_creation_events_commit_together(engine: Engine) {
    // Proves creation is atomic with its events: a reserved id takes a version-1 record through
    // enqueue_group_update with the CREATED events (both there after a reopen); the same id
    // cannot be created twice, an unknown id cannot skip to a later version, and reserved ids
    // are fresh, also after a reopen.
    use iris_store::{AppendOutcome, DeviceAddr};
    let env = Env::new(engine);
    let store = env.open().await;
    let device = DeviceAddr::new(2, 1);
    let events = |item| one_event(device, 11, item);
    let mut g = group(&[1, 2]);
    g.id = store.reserve_group_id().await.unwrap();
    let other = store.reserve_group_id().await.unwrap();
    assert_ne!(g.id, other, "reserved ids are fresh");
    assert_eq!(store.group(g.id).await.unwrap(), None, "a reservation stores no group");
    let pending = store.enqueue_group_update(&g, events(b"created")).await.unwrap().expect("a new group fits");
    assert_eq!(store.group(g.id).await.unwrap(), Some(g.clone()), "readable before the commit");
    assert!(store.enqueue_group_update(&g, events(b"again")).await.unwrap().is_none(), "created once");
    assert!(matches!(pending.await.unwrap(), AppendOutcome::Appended { .. }));
    let mut skipped = group(&[1]);
    skipped.id = other;
    skipped.version = 2;
    assert!(store.enqueue_group_update(&skipped, events(b"skip")).await.unwrap().is_none(), "no record to follow");
    drop(store);

    let store = env.open().await;
    assert_eq!(store.group(g.id).await.unwrap(), Some(g.clone()));
    assert_eq!(store.groups_of(2).await.unwrap(), vec![g.id]);
    let inbox = store.read(device, 0, 10).await.unwrap();
    assert_eq!(inbox.iter().map(|e| &e.item[..]).collect::<Vec<_>>(), vec![&b"created"[..]]);
    let after = store.reserve_group_id().await.unwrap();
    assert!(after != g.id && after != other, "ids reserved before the reopen are not handed out again");
}

both_engines!(
    updates_follow_versions_and_keep_the_indexes,
    a_new_group_and_its_creation_events_commit_together,
    payloads_and_receipts_count_and_expire,
    concurrent_receipts_count_every_member_once,
    one_call_marks_the_messages_an_ack_covers_each_as_alone,
    a_group_update_and_its_events_commit_together,
);
