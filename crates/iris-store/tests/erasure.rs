//! Account erasure through `ErasureStore`, on both engines: after `erase_account` no record of
//! the account is left anywhere — every fjall keyspace and the inbox log's memory (embedded),
//! every table found in `information_schema` (PostgreSQL, so a table added later is covered
//! without touching this test) — searched by account id, device ids and phone; the mark
//! refuses the phone's registration until the erasure finished, after which the phone
//! registers as a new account; the other account keeps its own records.

mod common;

use bytes::Bytes;
use common::{Engine, Env, Opened};
use iris_store::{
    Account, AccountId, AppendRequest, BlobRecord, Conversation, DedupKey, DeviceAddr, DeviceIdentity, Group, GroupId,
    GroupMember, GroupRole, GroupSettings, MessageRef, NewEntry, PendingErasure, PendingJoin, RefreshTokenRecord,
    SignedKeyRecord, StoreError, UploadRecord,
};

const DOOMED_PHONE: &str = "+15550009999";
const OTHER_PHONE: &str = "+15550008888";
const NOW: u64 = 1_700_000_000_000;
/// Accounts registered before the two of the test, so that their ids are distinctive: a byte
/// search for a small id would also find sequence numbers and counters.
const FILLERS: usize = 300;

fn msg_id(n: u64) -> u64 {
    (NOW << 20) | n
}

/// Registers the fillers, then the doomed account (two devices) and the other (one).
async fn accounts(store: &Opened) -> (Account, [DeviceAddr; 2], Account, DeviceAddr) {
    for i in 0..FILLERS {
        store.register_device(&format!("+1444{i:07}"), "filler", NOW, 5).await.unwrap();
    }
    let (doomed, d1) = store.register_device(DOOMED_PHONE, "phone", NOW, 5).await.unwrap();
    let (_, d2) = store.register_device(DOOMED_PHONE, "laptop", NOW, 5).await.unwrap();
    let (other, o1) = store.register_device(OTHER_PHONE, "phone", NOW, 5).await.unwrap();
    (doomed, [d1.addr, d2.addr], other, o1.addr)
}

/// Gives the doomed account a record of every kind the store keeps, most of them involving
/// the other account too. Returns the group where it asked to join.
async fn populate(
    store: &Opened,
    doomed: AccountId,
    devices: [DeviceAddr; 2],
    other: AccountId,
    o1: DeviceAddr,
) -> GroupId {
    let (d, [d1, d2]) = (doomed, devices);
    for (i, device) in [d1, d2, o1].into_iter().enumerate() {
        let token = RefreshTokenRecord { hash: [i as u8 + 1; 32], device, expires_at_ms: NOW + 1000 };
        store.put_refresh_token(token).await.unwrap();
    }
    // d → o (deduplicated, copy to d2), o → d (both devices), one acked by d1.
    let to_other = AppendRequest {
        dedup: Some(DedupKey { sender: d1, client_msg_id: "c1".into() }),
        server_msg_id: msg_id(1),
        server_ts_ms: NOW,
        expires_at_ms: None,
        entries: vec![
            NewEntry { device: o1, item: Bytes::from_static(b"hello") },
            NewEntry { device: d2, item: Bytes::from_static(b"hello") },
        ],
    };
    store.append(to_other).await.unwrap();
    let to_doomed = AppendRequest {
        dedup: Some(DedupKey { sender: o1, client_msg_id: "c2".into() }),
        server_msg_id: msg_id(2),
        server_ts_ms: NOW,
        // A disappearing message: its expiry is indexed too, and must go with the account.
        expires_at_ms: Some(NOW + 86_400_000),
        entries: vec![
            NewEntry { device: d1, item: Bytes::from_static(b"hi") },
            NewEntry { device: d2, item: Bytes::from_static(b"hi") },
        ],
    };
    store.append(to_doomed).await.unwrap();
    store.ack(d1, 1).await.unwrap();
    // A push target, a profile and a registration PIN: rows of later features go too.
    let target = iris_store::PushTarget {
        device: d1,
        provider: "webhook".into(),
        token: "https://push.example/t".into(),
        updated_at_ms: NOW,
    };
    store.set_push_target(target).await.unwrap();
    let profile = iris_store::Profile {
        display_name: "Doomed".into(),
        about: "gone soon".into(),
        photo_media_id: String::new(),
        privacy: 0,
        updated_at_ms: NOW,
    };
    store.set_profile(d1.account, &profile).await.unwrap();
    store.set_pin(d1.account, Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")).await.unwrap();
    let r = |sender, conversation| MessageRef {
        sender,
        conversation,
        sent_at_ms: NOW,
        deleted: false,
        expires_at_ms: None,
    };
    store.put_message_ref(msg_id(1), r(d, Conversation::Direct(other))).await.unwrap();
    store.put_message_ref(msg_id(2), r(other, Conversation::Direct(d))).await.unwrap();
    store.set_contacts(d, &[other], true).await.unwrap();
    store.set_contacts(other, &[d], true).await.unwrap();
    store.set_presence_privacy(d, 2).await.unwrap();
    store.set_blocked(d, other, true).await.unwrap();
    store.set_blocked(other, d, true).await.unwrap();
    let identity = DeviceIdentity { curve25519: "c".into(), ed25519: "e".into(), signature: "s".into() };
    store.set_identity(d1, identity).await.unwrap();
    let key = |id: &str| SignedKeyRecord { key_id: id.into(), key: format!("k{id}"), signature: "s".into() };
    store.add_one_time_keys(d1, &[key("a"), key("b")], 100, 10).await.unwrap();
    store.set_fallback_key(d1, key("fb")).await.unwrap();
    store.record_key_peers(d, &[other], NOW).await.unwrap();
    store.record_key_peers(other, &[d], NOW).await.unwrap();
    // A group of the other account where the doomed one asked to join (the server removes
    // memberships; the store lists the pending requests), and receipts both ways.
    let member = GroupMember { account: other, role: GroupRole::Creator, joined_at_ms: NOW, joined_version: 1 };
    let group = Group {
        id: 0,
        name: "g".into(),
        description: String::new(),
        settings: GroupSettings::default(),
        created_at_ms: NOW,
        version: 1,
        members: vec![member],
        pending: vec![PendingJoin { account: d, requested_at_ms: NOW }],
        invite_token: None,
    };
    let group = common::create_group(&**store, group).await;
    assert_eq!(store.groups_pending_for(d).await.unwrap(), vec![group.id]);
    store.start_group_receipts(group.id, msg_id(3), d, &[other]).await.unwrap();
    store.start_group_receipts(group.id, msg_id(4), other, &[d]).await.unwrap();
    store.mark_group_receipt(group.id, msg_id(4), d, false, NOW).await.unwrap();
    // Media: an upload, a quota window, a blob it owns and a reference from its message.
    let upload_id = {
        let mut id = [7u8; 16];
        id[..8].copy_from_slice(&d.to_be_bytes());
        id
    };
    let upload = UploadRecord {
        id: upload_id,
        account: d,
        idempotency_key: "up-1".into(),
        kind: 1,
        size_bytes: 10,
        sha256: [1; 32],
        encrypted: true,
        mime: "application/octet-stream".into(),
        offset: 0,
        created_at_ms: NOW,
        media: None,
    };
    store.create_upload(upload).await.unwrap();
    assert!(store.charge_quota(d, NOW, 10, 1000).await.unwrap());
    let blob = BlobRecord {
        id: [9; 32],
        size_bytes: 10,
        kind: 1,
        encrypted: true,
        mime: "application/octet-stream".into(),
        width: 0,
        height: 0,
        thumbnail: None,
        owner: d,
        created_at_ms: NOW,
        touched_at_ms: NOW,
    };
    store.put_blob(blob).await.unwrap();
    assert!(store.add_media_refs(msg_id(1), d, &[[9; 32]]).await.unwrap().is_empty());
    group.id
}

/// The server's part between the mark and the store's erasure: group records name members and
/// join requests, which the groups service changes (with events); here the request goes.
async fn leave_groups(store: &Opened, doomed: AccountId) {
    for id in store.groups_pending_for(doomed).await.unwrap() {
        let mut group = store.group(id).await.unwrap().unwrap();
        group.version += 1;
        group.pending.retain(|p| p.account != doomed);
        assert!(store.update_group(&group).await.unwrap());
    }
}

/// Where the doomed account is still named, as readable descriptions (empty: nowhere).
async fn traces(env: &Env, store: &Opened, doomed: AccountId, devices: [DeviceAddr; 2]) -> Vec<String> {
    match store {
        Opened::Fjall(s) => {
            let id = doomed.to_be_bytes();
            let mut found = Vec::new();
            for (ks, k, v) in s.all_records().unwrap() {
                for (what, bytes) in [("key", &k), ("value", &v)] {
                    if contains(bytes, &id) || contains(bytes, DOOMED_PHONE.as_bytes()) {
                        found.push(format!("fjall {ks} {what}: {k:02x?} → {v:02x?}"));
                    }
                }
            }
            for d in devices {
                if s.log_mentions(d) {
                    found.push(format!("inbox log holds device {d}"));
                }
            }
            found.extend(s.log_devices().into_iter().filter(|d| d.account == doomed).map(|d| format!("log {d}")));
            found
        }
        Opened::Pg(_) => pg_traces(env, doomed).await,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every bigint and bigint[] column of every table of every shard compared with the account
/// id (device rows carry it too), every text column with the phone.
async fn pg_traces(env: &Env, doomed: AccountId) -> Vec<String> {
    let mut found = Vec::new();
    for url in env.pg.as_ref().unwrap().urls() {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let columns = client
            .query(
                "SELECT table_name::text, column_name::text, data_type::text, udt_name::text
                 FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
                &[],
            )
            .await
            .unwrap();
        assert!(columns.len() > 50, "the schema was not found: {} columns", columns.len());
        for c in &columns {
            let (table, column, data_type, udt): (String, String, String, String) =
                (c.get(0), c.get(1), c.get(2), c.get(3));
            let condition = match (data_type.as_str(), udt.as_str()) {
                ("bigint", _) => format!("\"{column}\" = $1::bigint"),
                ("ARRAY", "_int8") => format!("$1::bigint = ANY(\"{column}\")"),
                ("text", _) => format!("\"{column}\" = $2::text"),
                _ => continue,
            };
            let sql = format!("SELECT count(*) FROM \"{table}\" WHERE {condition}");
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&(doomed as i64), &DOOMED_PHONE];
            let uses_phone = data_type == "text";
            let n: i64 = if uses_phone {
                client.query_one(&sql.replace("$2", "$1"), &params[1..]).await.unwrap().get(0)
            } else {
                client.query_one(&sql, &params[..1]).await.unwrap().get(0)
            };
            if n > 0 {
                found.push(format!("{url}: {table}.{column} ({n} rows)"));
            }
        }
    }
    found
}

async fn erasure_leaves_no_trace_and_frees_the_phone(engine: Engine) {
    // Proves: every kind of record of the account is gone after the erasure (and it was there
    // before: the search finds it), the mark blocks the phone until then, a second erasure is
    // harmless, the phone registers again as a new account, the other account is intact.
    let env = Env::new(engine);
    let store = env.open().await;
    let (doomed, devices, other, o1) = accounts(&store).await;
    let group = populate(&store, doomed.id, devices, other.id, o1).await;
    let before = traces(&env, &store, doomed.id, devices).await;
    assert!(before.len() > 10, "the search must see the account before: {before:#?}");
    // Asked before the erasure, so an engine that remembers answers must forget this one.
    assert!(store.is_blocked(other.id, doomed.id).await.unwrap());

    store.begin_erasure(&doomed, NOW).await.unwrap();
    store.begin_erasure(&doomed, NOW + 5).await.unwrap();
    let pending = store.erasures_pending().await.unwrap();
    let erasure = PendingErasure { account: doomed.id, phone: DOOMED_PHONE.into(), started_at_ms: NOW };
    assert_eq!(pending, vec![erasure.clone()], "one mark, the first time kept");
    let refused = store.register_device(DOOMED_PHONE, "new", NOW, 5).await;
    assert!(matches!(refused, Err(StoreError::AccountDeleting)), "{refused:?}");

    leave_groups(&store, doomed.id).await;
    store.erase_account(&erasure).await.unwrap();
    store.erase_account(&erasure).await.unwrap();
    assert_eq!(store.erasures_pending().await.unwrap(), vec![]);
    let left = traces(&env, &store, doomed.id, devices).await;
    assert!(left.is_empty(), "records of the erased account remain: {left:#?}");
    assert_eq!(store.account_by_phone(DOOMED_PHONE).await.unwrap(), None);
    assert_eq!(store.devices(doomed.id).await.unwrap(), vec![]);

    // The other account keeps its own records, minus those naming the erased one.
    assert_eq!(store.devices(other.id).await.unwrap().len(), 1);
    assert_eq!(store.contacts(other.id).await.unwrap(), Vec::<AccountId>::new());
    assert_eq!(store.blocked_by(other.id).await.unwrap(), Vec::<AccountId>::new());
    assert!(!store.is_blocked(other.id, doomed.id).await.unwrap());
    let inbox = store.read(o1, 0, 10).await.unwrap();
    assert_eq!(inbox.len(), 1, "the other's copy of the message stays");
    let blob = store.blob([9; 32]).await.unwrap().expect("the blob stays for the other's message");
    assert_eq!(blob.owner, 0);
    assert_eq!(store.group(group).await.unwrap().unwrap().members.len(), 1, "the group stays");
    // A group with no members left is removed (the server asks once the last one left).
    let mut emptied = store.group(group).await.unwrap().unwrap();
    emptied.version += 1;
    emptied.members.clear();
    assert!(store.update_group(&emptied).await.unwrap());
    store.delete_group(group).await.unwrap();
    assert_eq!(store.group(group).await.unwrap(), None);
    assert!(store.groups_of(other.id).await.unwrap().is_empty());

    // The phone registers again: a new account, with nothing of the old one.
    let (again, device) = store.register_device(DOOMED_PHONE, "new", NOW, 5).await.unwrap();
    assert_ne!(again.id, doomed.id);
    assert_eq!(device.addr.device, 1, "a first, primary device");
    assert!(store.contacts(again.id).await.unwrap().is_empty());
}

async fn erasure_survives_a_reopen_midway(engine: Engine) {
    // Proves: the mark is durable (a crash after it leaves a deletion to finish) and the
    // erased log state stays erased across a reopen that replays the log.
    let env = Env::new(engine);
    let (doomed, devices) = {
        let store = env.open().await;
        let (doomed, devices, other, o1) = accounts(&store).await;
        populate(&store, doomed.id, devices, other.id, o1).await;
        store.begin_erasure(&doomed, NOW).await.unwrap();
        drop(store);
        (doomed, devices)
    };
    let store = env.open().await;
    let pending = store.erasures_pending().await.unwrap();
    assert_eq!(pending.len(), 1, "the mark survived the restart");
    leave_groups(&store, doomed.id).await;
    store.erase_account(&pending[0]).await.unwrap();
    drop(store);
    let store = env.open().await;
    let left = traces(&env, &store, doomed.id, devices).await;
    assert!(left.is_empty(), "after a reopen that replayed the log: {left:#?}");
    assert_eq!(store.erasures_pending().await.unwrap(), vec![]);
}

both_engines!(erasure_leaves_no_trace_and_frees_the_phone, erasure_survives_a_reopen_midway);
