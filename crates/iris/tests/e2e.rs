//! End-to-end encryption through the SDK against a real server (embedded store; with
//! `IRIS_TEST_ENGINE=cluster` on PostgreSQL and Redis): the server stores only ciphertext, keys
//! run out into the fallback key and `KeysLow`, linked and revoked devices get exactly what they
//! should, a removed group member cannot read what follows, tampering is a visible error, bad
//! signatures are refused, identity-change notices reach the right devices once.

mod common;

use std::time::Duration;

use common::{connect, faulty_store, login, AppendFault, TestServer, PATIENCE};
use iris_client::api::Credentials;
use iris_client::pb::{self, ErrorCode, IdentityChangeType, InboxItem};
use iris_client::{Client, E2e, Event, Events, MemberAction, Opened};
use tempfile::TempDir;

/// One device with end-to-end encryption, its events and its key store.
struct Device {
    e2e: E2e,
    events: Events,
    creds: Credentials,
}

impl Device {
    async fn link(s: &TestServer, dir: &TempDir, phone: &str, name: &str) -> Device {
        let creds = login(&s.base_url(), phone, name).await;
        let (client, events) = connect(&s.base_url(), &creds).await;
        let store = dir.path().join(format!("{phone}-{}.keys", creds.device_id));
        let e2e = E2e::open(client, &store, format!("secret of {phone}").as_bytes()).await.expect("open e2e");
        Device { e2e, events, creds }
    }

    fn client(&self) -> &Client {
        self.e2e.client()
    }

    fn id(&self) -> u64 {
        self.creds.account_id
    }

    /// The next inbox item (message, action or key notice) and what it opens to, acked.
    async fn next(&mut self) -> (InboxItem, Opened) {
        loop {
            let event =
                tokio::time::timeout(PATIENCE, self.events.next()).await.expect("an event in time").expect("events");
            let item = match event {
                Event::Message(item) | Event::Keys(item) => item,
                Event::Fatal(e) => panic!("client stopped: {e}"),
                other => {
                    if let Some(seq) = other.seq() {
                        self.client().ack(seq);
                    }
                    continue;
                }
            };
            let opened = self.e2e.decrypt(&item).await;
            self.client().ack(item.seq);
            if opened != Opened::Control {
                return (item, opened);
            }
        }
    }

    /// The next text shown to the person, skipping key notices.
    async fn next_text(&mut self) -> (InboxItem, String) {
        loop {
            match self.next().await {
                (item, Opened::Text { text, encrypted: true }) => return (item, text),
                (_, Opened::KeysLow(_) | Opened::IdentityChange(_)) => continue,
                (item, other) => panic!("expected an encrypted text, got {other:?} for {item:?}"),
            }
        }
    }

    /// Identity-change notices that arrive within `wait` (other items are a failure).
    async fn notices(&mut self, wait: Duration) -> Vec<pb::IdentityChange> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.next()).await {
            if let Event::Keys(item) = &event {
                self.client().ack(item.seq);
                if let Opened::IdentityChange(c) = self.e2e.decrypt(item).await {
                    out.push(c);
                }
            } else if let Some(seq) = event.seq() {
                self.client().ack(seq);
            }
        }
        out
    }
}

/// Two linked devices of two accounts that have exchanged a message (so each is the other's
/// partner for identity notices).
async fn partners(s: &TestServer, dir: &TempDir, a: &str, b: &str) -> (Device, Device) {
    let alice = Device::link(s, dir, a, "phone").await;
    let mut bob = Device::link(s, dir, b, "phone").await;
    alice.e2e.send_text(bob.id(), "hi").await.unwrap();
    bob.next_text().await;
    (alice, bob)
}

fn text(t: &'static str) -> &'static str {
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_exchange_leaves_only_ciphertext_on_the_server() {
    // Proves: 1:1 (both ways, to two devices and a sent-copy) and group messages decrypt on
    // every device, while the server's data (the embedded data directory, or every PostgreSQL
    // table) holds none of their texts; a plaintext canary sent the same way is found there, so
    // the search can see what is stored.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let mut alice = Device::link(&s, &dir, "+14155550201", "phone").await;
    let mut alice_laptop = Device::link(&s, &dir, "+14155550201", "laptop").await;
    let mut bob = Device::link(&s, &dir, "+14155550202", "phone").await;
    let secrets = [text("SECRET-ONE-to-bob"), "SECRET-TWO-to-alice", "SECRET-THREE-to-group"];
    alice.e2e.send_text(bob.id(), secrets[0]).await.unwrap();
    assert_eq!(bob.next_text().await.1, secrets[0]);
    assert_eq!(alice_laptop.next_text().await.1, secrets[0], "the sent-copy on my other device");
    bob.e2e.send_text(alice.id(), secrets[1]).await.unwrap();
    assert_eq!(alice.next_text().await.1, secrets[1]);
    assert_eq!(alice_laptop.next_text().await.1, secrets[1]);
    let group = alice.client().group_create("g", "", vec![bob.id().into()], Default::default()).await.unwrap();
    alice.e2e.group_send_text(group.group_id, secrets[2]).await.unwrap();
    assert_eq!(bob.next_text().await.1, secrets[2]);
    assert_eq!(alice_laptop.next_text().await.1, secrets[2]);
    let canary = "PLAINTEXT-CANARY-visible";
    alice.client().send(bob.id(), canary).await.unwrap();
    match bob.next().await.1 {
        Opened::Text { text, encrypted: false } => assert_eq!(text, canary),
        other => panic!("expected the plaintext canary, got {other:?}"),
    }
    let stored = server_bytes(&s).await;
    assert!(contains(&stored, canary.as_bytes()), "the search must see stored plaintext");
    for secret in secrets {
        assert!(!contains(&stored, secret.as_bytes()), "{secret} is readable on the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_key_exhaustion_falls_back_and_raises_keys_low() {
    // Proves: once a device's 50 one-time keys are claimed, claims get its fallback key; the
    // device is told (KeysLow, below the watermark and again when the fallback is used) and
    // uploads a fresh pool and fallback by itself; a session started on the fallback key works.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let mut bob = Device::link(&s, &dir, "+14155550212", "phone").await;
    let alice = Device::link(&s, &dir, "+14155550211", "phone").await;
    assert_eq!(bob.client().keys_count().await.unwrap().one_time_keys, 50);
    let mut fallbacks = 0;
    for _ in 0..51 {
        let bundles = alice.client().keys_claim(vec![bob.id()], vec![]).await.unwrap();
        assert_eq!(bundles.len(), 1);
        fallbacks += usize::from(bundles[0].fallback);
    }
    assert_eq!(fallbacks, 1, "the 51st claim gets the fallback key");
    let mut lows = Vec::new();
    while lows.len() < 2 {
        if let (_, Opened::KeysLow(low)) = bob.next().await {
            lows.push(low);
        }
    }
    assert_eq!(lows[0], pb::KeysLow { one_time_keys: 9, fallback_key_used: false });
    assert_eq!(lows[1], pb::KeysLow { one_time_keys: 0, fallback_key_used: true });
    let count = bob.client().keys_count().await.unwrap();
    assert!(count.one_time_keys >= 50 && count.fallback_key, "{count:?}");
    // Alice's own session with Bob starts from a fresh key and works.
    alice.e2e.send_text(bob.id(), "after the refill").await.unwrap();
    assert_eq!(bob.next_text().await.1, "after the refill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_devices_get_later_messages_revoked_ones_do_not_and_partners_are_told_once() {
    // Proves: a device linked mid-conversation receives the next message (the sender's next
    // send encrypts for it without being told); revoking it stops it; each change reaches the
    // partner's devices exactly once, and an unrelated account hears nothing.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let mut alice = Device::link(&s, &dir, "+14155550221", "phone").await;
    let mut bob = Device::link(&s, &dir, "+14155550222", "phone").await;
    let mut carol = Device::link(&s, &dir, "+14155550223", "phone").await;
    alice.e2e.send_text(bob.id(), "before").await.unwrap();
    assert_eq!(bob.next_text().await.1, "before");
    let mut bob_laptop = Device::link(&s, &dir, "+14155550222", "laptop").await;
    let added = alice.notices(Duration::from_secs(2)).await;
    assert_eq!(added.len(), 1, "one notice for the new device: {added:?}");
    assert_eq!((added[0].account_id, added[0].device_id), (bob.id(), bob_laptop.creds.device_id));
    assert_eq!(added[0].r#type, IdentityChangeType::DeviceAdded as i32);
    alice.e2e.send_text(bob.id(), "after linking").await.unwrap();
    assert_eq!(bob.next_text().await.1, "after linking");
    assert_eq!(bob_laptop.next_text().await.1, "after linking");
    let token = bob.client().credentials().access_token;
    bob.client().http().revoke_device(&token, bob_laptop.creds.device_id).await.unwrap();
    let removed = alice.notices(Duration::from_secs(2)).await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].r#type, IdentityChangeType::DeviceRemoved as i32);
    alice.e2e.send_text(bob.id(), "after revoking").await.unwrap();
    assert_eq!(bob.next_text().await.1, "after revoking");
    loop {
        match tokio::time::timeout(PATIENCE, bob_laptop.events.next()).await.expect("the revoked device hears") {
            Some(Event::Fatal(e)) => {
                assert_eq!(e.error_code(), ErrorCode::DeviceRevoked);
                break;
            }
            Some(Event::Message(item)) => panic!("a revoked device got a message: {item:?}"),
            Some(_) => {}
            None => break,
        }
    }
    assert!(carol.notices(Duration::from_millis(500)).await.is_empty(), "carol has no conversation with bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_is_announced_once_even_when_its_upload_is_retried() {
    // Proves: the DEVICE_ADDED notice of an identity is deduplicated per identity, so an upload
    // retried after a failure (the server announces before it stores) tells partners once,
    // while another identity of the same device is announced.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let (mut alice, _bob) = partners(&s, &dir, "+14155550231", "+14155550232").await;
    let laptop = Device::link(&s, &dir, "+14155550232", "laptop").await;
    assert_eq!(alice.notices(Duration::from_secs(2)).await.len(), 1);
    let addr = iris_store::DeviceAddr::new(laptop.id(), laptop.creds.device_id);
    let stored = s.ctx().store.identities(&[addr]).await.unwrap().pop().flatten().expect("published");
    let identity =
        pb::IdentityKeys { curve25519: stored.curve25519, ed25519: stored.ed25519, signature: stored.signature };
    let notices = s.ctx().sessions.keys.notices();
    notices.announce_added(addr, identity.clone()).await.unwrap();
    assert!(alice.notices(Duration::from_millis(500)).await.is_empty(), "the same identity again: no notice");
    // Another identity of the device is another notice (read raw: its signature does not verify).
    let other = pb::IdentityKeys { curve25519: "another key".into(), ..identity };
    notices.announce_added(addr, other).await.unwrap();
    let event = tokio::time::timeout(PATIENCE, alice.events.next()).await.expect("a notice").expect("events");
    let Event::Keys(item) = event else { panic!("expected a key notice, got {event:?}") };
    let Some(pb::inbox_item::Body::IdentityChange(c)) = &item.body else { panic!("{item:?}") };
    assert_eq!(c.identity.as_ref().map(|i| i.curve25519.as_str()), Some("another key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_whose_notice_failed_is_announced_when_published_again() {
    // Proves: when the store cannot take the DEVICE_ADDED notice, the identity is not stored
    // either, so the device's next publication announces it: the partner hears of the new
    // device once, never zero times.
    let (store, faults) = faulty_store();
    let s = TestServer::start_with_store(|_| {}, store).await;
    let dir = TempDir::new().unwrap();
    let (mut alice, _bob) = partners(&s, &dir, "+14155550233", "+14155550234").await;
    let creds = login(&s.base_url(), "+14155550234", "laptop").await;
    let keys = dir.path().join("laptop.keys");
    faults.set(Some(AppendFault::Unavailable));
    let (client, _events) = connect(&s.base_url(), &creds).await;
    let failed = E2e::open(client, &keys, b"secret").await;
    assert!(failed.is_err(), "the notice could not be written");
    assert!(faults.injected() >= 1);
    faults.set(None);
    let addr = iris_store::DeviceAddr::new(creds.account_id, creds.device_id);
    assert_eq!(s.ctx().store.identities(&[addr]).await.unwrap(), vec![None], "nothing stored without its notice");
    let (client, _events) = connect(&s.base_url(), &creds).await;
    E2e::open(client, &keys, b"secret").await.expect("published once the store is back");
    let added = alice.notices(Duration::from_secs(2)).await;
    assert_eq!(added.iter().map(|n| n.device_id).collect::<Vec<_>>(), [creds.device_id], "{added:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_group_member_cannot_decrypt_what_follows() {
    // Proves: the group's session is replaced when a member is removed, so even holding the
    // ciphertext of a later message (here taken from a remaining member's inbox) the removed
    // member cannot decrypt it, while the remaining members can.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let alice = Device::link(&s, &dir, "+14155550231", "phone").await;
    let mut bob = Device::link(&s, &dir, "+14155550232", "phone").await;
    let mut carol = Device::link(&s, &dir, "+14155550233", "phone").await;
    let members = vec![bob.id().into(), carol.id().into()];
    let g = alice.client().group_create("g", "", members, Default::default()).await.unwrap().group_id;
    alice.e2e.group_send_text(g, "for all three").await.unwrap();
    assert_eq!(bob.next_text().await.1, "for all three");
    assert_eq!(carol.next_text().await.1, "for all three");
    alice.client().group_members(g, MemberAction::Remove, vec![carol.id().into()]).await.unwrap();
    alice.e2e.group_send_text(g, "carol is gone").await.unwrap();
    let (later, got) = bob.next_text().await;
    assert_eq!(got, "carol is gone");
    match carol.e2e.decrypt(&later).await {
        Opened::Undecryptable { reason } => assert!(reason.contains("no key"), "{reason}"),
        other => panic!("a removed member read a later message: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_a_visible_error_and_bad_signatures_are_refused() {
    // Proves: a ciphertext changed in transit, or one relabelled as another sender's, is
    // Undecryptable with a reason (no panic, and the next genuine message still decrypts); keys
    // whose signatures do not verify are refused at upload with INVALID_SIGNATURE and nothing
    // is stored.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let alice = Device::link(&s, &dir, "+14155550241", "phone").await;
    let mut bob = Device::link(&s, &dir, "+14155550242", "phone").await;
    let carol = Device::link(&s, &dir, "+14155550243", "phone").await;
    alice.e2e.send_text(bob.id(), "first").await.unwrap();
    let (item, _) = bob.next_text().await;
    alice.e2e.send_text(bob.id(), "second").await.unwrap();
    let mut second = None;
    while second.is_none() {
        let event = tokio::time::timeout(PATIENCE, bob.events.next()).await.unwrap().unwrap();
        if let Event::Message(i) = event {
            second = Some(i);
        }
    }
    let second = second.unwrap();
    let tampered = with_payload(&second, |p| {
        let mut env: serde_json::Value = serde_json::from_slice(p).unwrap();
        let body = env["body"].as_str().unwrap().to_owned();
        let flipped = if body.ends_with('A') { "B" } else { "A" };
        env["body"] = format!("{}{flipped}", &body[..body.len() - 1]).into();
        serde_json::to_vec(&env).unwrap()
    });
    assert!(matches!(bob.e2e.decrypt(&tampered).await, Opened::Undecryptable { .. }));
    let relabelled = with_sender(&item, carol.id());
    match bob.e2e.decrypt(&relabelled).await {
        Opened::Undecryptable { reason } => assert!(reason.contains("sender"), "{reason}"),
        other => panic!("a relabelled message opened: {other:?}"),
    }
    assert_eq!(bob.e2e.decrypt(&second).await, Opened::Text { text: "second".into(), encrypted: true });
    // A raw client uploads keys with a signature by another key.
    let mallory = Device::link(&s, &dir, "+14155550244", "phone").await;
    let before = mallory.client().keys_count().await.unwrap();
    let stranger = vodozemac::olm::Account::new();
    let key = pb::SignedKey {
        key_id: "forged".into(),
        key: stranger.curve25519_key().to_base64(),
        signature: stranger.sign("iris.v1.otk|0|0|forged|x").to_base64(),
    };
    let upload = pb::KeysUpload { one_time_keys: vec![key.clone()], ..Default::default() };
    let refused = mallory.client().keys_upload(upload).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidSignature), "{refused}");
    let upload = pb::KeysUpload { fallback_key: Some(key), ..Default::default() };
    assert_eq!(mallory.client().keys_upload(upload).await.unwrap_err().code(), Some(ErrorCode::InvalidSignature));
    let identity = pb::IdentityKeys {
        curve25519: stranger.curve25519_key().to_base64(),
        ed25519: stranger.ed25519_key().to_base64(),
        signature: stranger.sign("something else").to_base64(),
    };
    let upload = pb::KeysUpload { identity: Some(identity.clone()), ..Default::default() };
    assert_eq!(mallory.client().keys_upload(upload).await.unwrap_err().code(), Some(ErrorCode::InvalidSignature));
    // Well signed, but another identity than the device published: a new identity is a new device.
    let signature = stranger.sign(format!("iris.v1.identity|{}|{}", identity.curve25519, identity.ed25519)).to_base64();
    let upload = pb::KeysUpload { identity: Some(pb::IdentityKeys { signature, ..identity }), ..Default::default() };
    assert_eq!(mallory.client().keys_upload(upload).await.unwrap_err().code(), Some(ErrorCode::IdentityMismatch));
    assert_eq!(mallory.client().keys_count().await.unwrap(), before, "nothing stored");
    let _ = (alice, carol);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_and_forwards_go_encrypted() {
    // Proves: an edit and a reaction of a 1:1 message travel as per-device ciphertexts and open
    // on the other side, a group reaction as a Megolm ciphertext, and a forward to a person and
    // a group gives each chat its own ciphertext.
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let mut alice = Device::link(&s, &dir, "+14155550251", "phone").await;
    let mut bob = Device::link(&s, &dir, "+14155550252", "phone").await;
    let sent = alice.e2e.send_text(bob.id(), "typo").await.unwrap();
    bob.next_text().await;
    alice.e2e.edit(sent.server_msg_id, "fixed", None).await.unwrap();
    assert_eq!(bob.next().await.1, Opened::Edit { text: "fixed".into(), encrypted: true });
    bob.e2e.react(sent.server_msg_id, "👍", None).await.unwrap();
    assert_eq!(alice.next().await.1, Opened::React { emoji: "👍".into(), encrypted: true });
    let g = alice.client().group_create("g", "", vec![bob.id().into()], Default::default()).await.unwrap().group_id;
    let in_group = alice.e2e.group_send_text(g, "group text").await.unwrap();
    bob.next_text().await;
    bob.e2e.react(in_group.server_msg_id, "🎉", None).await.unwrap();
    assert_eq!(alice.next().await.1, Opened::React { emoji: "🎉".into(), encrypted: true });
    let results = alice.e2e.forward("look at this", &[bob.id()], &[g]).await.unwrap();
    assert_eq!(results.len(), 2);
    for _ in 0..2 {
        let (item, text) = bob.next_text().await;
        assert_eq!(text, "look at this");
        let forwarded = match item.body {
            Some(pb::inbox_item::Body::Message(m)) => m.forwarded,
            Some(pb::inbox_item::Body::GroupMessage(m)) => m.forwarded,
            other => panic!("{other:?}"),
        };
        assert!(forwarded);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_media_goes_encrypted_with_its_ids_outside() {
    // Proves: `forward_media` puts the `MediaMessage` (with its keys) inside each chat's
    // ciphertext and the blob ids outside, where the server counts them: the recipient opens
    // the same media and the server holds a reference per copy, never the key.
    use iris_client::media::{upload_media, MediaApi};
    let s = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let alice = Device::link(&s, &dir, "+14155550253", "phone").await;
    let mut bob = Device::link(&s, &dir, "+14155550254", "phone").await;
    let file = dir.path().join("photo.bin");
    std::fs::write(&file, vec![7u8; 50_000]).unwrap();
    let api = MediaApi::new(&s.base_url(), &alice.creds.access_token).unwrap();
    let up = upload_media(&api, &file, &Default::default(), &|_, _| {}).await.unwrap();
    let media = pb::MediaMessage { media: vec![up.media.clone()], caption: "seen this?".into() };
    let results = alice.e2e.forward_media(&media, up.media_ids.clone(), &[bob.id()], &[]).await.unwrap();
    assert_eq!(results.len(), 1);
    let (item, opened) = bob.next().await;
    assert_eq!(opened, Opened::Media { media, encrypted: true });
    let Some(pb::inbox_item::Body::Message(m)) = &item.body else { panic!("{item:?}") };
    assert_eq!((m.media_ids.clone(), m.forwarded), (up.media_ids.clone(), true));
    let id: [u8; 32] = hex::decode(&up.media_ids[0]).unwrap().try_into().unwrap();
    assert_eq!(s.ctx().store.media_ref_count(id).await.unwrap(), 1);
    let key = &up.media.key;
    assert!(!server_bytes(&s).await.windows(key.len()).any(|w| w == &key[..]), "the key never reaches the server");
}

/// `item` with its payload changed by `change`.
fn with_payload(item: &InboxItem, change: impl Fn(&[u8]) -> Vec<u8>) -> InboxItem {
    let mut item = item.clone();
    if let Some(pb::inbox_item::Body::Message(m)) = &mut item.body {
        m.payload = change(&m.payload).into();
    }
    item
}

/// `item` claiming to come from device 1 of `account`.
fn with_sender(item: &InboxItem, account: u64) -> InboxItem {
    let mut item = item.clone();
    if let Some(pb::inbox_item::Body::Message(m)) = &mut item.body {
        (m.from_account_id, m.from_device_id) = (account, 1);
    }
    item
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let hex: Vec<u8> = needle.iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect();
    haystack.windows(needle.len()).any(|w| w == needle) || haystack.windows(hex.len()).any(|w| w == hex.as_slice())
}

/// Everything the server stored: every file of the data directory, or (cluster mode) every
/// row of every table of every PostgreSQL shard as text (bytea in hex).
async fn server_bytes(s: &TestServer) -> Vec<u8> {
    if !s.config().cluster.store_urls.is_empty() {
        let mut out = Vec::new();
        for url in &s.config().cluster.store_urls {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            let tables = client
                .query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'", &[])
                .await
                .unwrap();
            for t in tables {
                let name: String = t.get(0);
                for row in client.query(&format!("SELECT t::text FROM \"{name}\" t"), &[]).await.unwrap() {
                    out.extend(row.get::<_, String>(0).into_bytes());
                }
            }
        }
        return out;
    }
    let mut out = Vec::new();
    let mut stack = vec![s.config().data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}
