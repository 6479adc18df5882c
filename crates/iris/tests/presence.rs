//! Presence, typing and blocks end to end through the SDK against a real server: current state
//! on subscribe, pushes on change, last seen, "nobody" privacy, coalescing, the subscription
//! bound, typing only to online devices and never stored, and what a block hides.

mod common;

use std::time::Duration;

use common::*;
use iris_client::api::Credentials;
use iris_client::pb::{self, ErrorCode, PresencePrivacy};
use iris_client::{Client, ClientConfig, Event, Recipient};
use tokio::time::Instant;

/// How long a test listens to be sure something does not arrive (several push intervals).
const QUIET: Duration = Duration::from_millis(600);

impl Dev {
    /// A device that was registered but is not connected.
    async fn offline(url: &str, phone: &str) -> Credentials {
        login(url, phone, "d").await
    }

    /// The next presence push about `account`, skipping other events (acking inbox items).
    async fn next_presence(&mut self, account: u64) -> pb::PresenceUpdate {
        let e =
            recv_until(&self.client, &mut self.events, |e| matches!(e, Event::Presence(p) if p.account_id == account))
                .await;
        let Event::Presence(p) = e else { unreachable!() };
        p
    }

    /// Every presence or typing event and inbox item arriving within `wait`.
    async fn collect(&mut self, wait: Duration) -> Vec<Event> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.next()).await {
            if let Some(seq) = event.seq() {
                self.client.ack(seq);
            }
            if !matches!(event, Event::Connected(_) | Event::Disconnected(_)) {
                got.push(event);
            }
        }
        got
    }
}

fn offline(account_id: u64) -> pb::PresenceUpdate {
    pb::PresenceUpdate { account_id, online: false, last_seen_ms: 0 }
}

fn online(account_id: u64) -> pb::PresenceUpdate {
    pb::PresenceUpdate { account_id, online: true, last_seen_ms: 0 }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits until the server holds no presence subscription (they end with their connections).
async fn until_no_subscribers(server: &TestServer) {
    wait_until("subscriptions end with their connection", PATIENCE, || async { server.ctx().presence.sizes().1 == 0 })
        .await;
}

/// Waits until the server processed the disconnect of `account`'s last device (its presence
/// hub then holds it offline, with a last seen).
async fn until_gone(server: &TestServer, account: u64) {
    wait_until("the last device's disconnect is processed", PATIENCE, || async {
        server.ctx().presence.local_snapshot().iter().all(|p| p.account != account)
    })
    .await;
}

#[tokio::test]
async fn subscribe_answers_the_current_state_then_pushes_changes_and_last_seen() {
    // Proves: the answer holds each account's state now; connect, away and disconnect are pushed;
    // last_seen is set when the last device goes; subscriptions end with the connection.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, "+14155550101").await;
    let bob = Dev::new(&url, "+14155550102").await;
    let carol = Dev::offline(&url, "+14155550103").await;

    let state = alice.client.presence_subscribe(vec![bob.id(), carol.account_id, 999_999]).await.unwrap();
    assert_eq!(state, vec![online(bob.id()), offline(carol.account_id), offline(999_999)]);

    let before = now_ms();
    bob.client.close().await;
    let p = alice.next_presence(bob.id()).await;
    assert!(!p.online);
    assert!(p.last_seen_ms >= before && p.last_seen_ms <= now_ms(), "last seen {} not around {before}", p.last_seen_ms);

    let (bob_client, _bob_events) = connect(&url, &bob.creds).await;
    assert_eq!(alice.next_presence(bob.id()).await, online(bob.id()));

    bob_client.set_presence(true, None).await.unwrap();
    let p = alice.next_presence(bob.id()).await;
    assert!(!p.online && p.last_seen_ms >= before, "away is offline with a last seen: {p:?}");
    bob_client.set_presence(false, None).await.unwrap();
    assert_eq!(alice.next_presence(bob.id()).await, online(bob.id()));

    // A fresh subscription sees last seen of an account that went offline.
    bob_client.close().await;
    let p = alice.next_presence(bob.id()).await;
    let state = alice.client.presence_subscribe(vec![bob.id()]).await.unwrap();
    assert_eq!(state, vec![p]);

    // Unsubscribed: no more pushes.
    alice.client.presence_unsubscribe(vec![bob.id()]).await.unwrap();
    let (bob_client, _bob_events) = connect(&url, &bob.creds).await;
    let got = alice.collect(QUIET).await;
    assert!(got.iter().all(|e| !matches!(e, Event::Presence(_))), "pushed after unsubscribe: {got:?}");
    bob_client.close().await;

    alice.client.close().await;
    until_no_subscribers(&server).await;
}

#[tokio::test]
async fn nobody_privacy_reveals_nothing_in_answers_or_pushes() {
    // Proves: an account whose privacy is NOBODY looks offline with no last seen to everyone
    // else, whatever it does; switching back to EVERYONE shows the real state again.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, "+14155550111").await;
    let bob = Dev::new(&url, "+14155550112").await;
    bob.client.set_presence(false, Some(PresencePrivacy::Nobody)).await.unwrap();

    assert_eq!(alice.client.presence_subscribe(vec![bob.id()]).await.unwrap(), vec![offline(bob.id())]);
    bob.client.set_presence(true, None).await.unwrap();
    bob.client.set_presence(false, None).await.unwrap();
    bob.client.close().await;
    let (bob_client, _bob_events) = connect(&url, &bob.creds).await;
    let got = alice.collect(QUIET).await;
    assert!(got.iter().all(|e| !matches!(e, Event::Presence(_))), "a nobody account leaked: {got:?}");

    // Offline with a last seen, still hidden from a new subscription.
    bob_client.close().await;
    until_gone(&server, bob.id()).await;
    assert_eq!(alice.client.presence_subscribe(vec![bob.id()]).await.unwrap(), vec![offline(bob.id())]);

    let (bob_client, _bob_events) = connect(&url, &bob.creds).await;
    bob_client.set_presence(false, Some(PresencePrivacy::Everyone)).await.unwrap();
    assert_eq!(alice.next_presence(bob.id()).await, online(bob.id()));
}

#[tokio::test]
async fn rapid_changes_are_coalesced_per_push_interval() {
    // Proves: 200 state changes in a burst reach a subscriber as at most one push per interval
    // (plus one for the interval in progress), and the last push is the final state.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 200).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, "+14155550121").await;
    let bob = Dev::new(&url, "+14155550122").await;
    alice.client.presence_subscribe(vec![bob.id()]).await.unwrap();

    let started = Instant::now();
    for i in 0..200 {
        bob.client.set_presence(i % 2 == 0, None).await.unwrap();
    }
    let burst = started.elapsed();
    let got = alice.collect(Duration::from_millis(700)).await;
    let pushes: Vec<&pb::PresenceUpdate> =
        got.iter().filter_map(|e| if let Event::Presence(p) = e { Some(p) } else { None }).collect();
    let intervals = (burst + Duration::from_millis(700)).as_millis() as usize / 200 + 2;
    assert!(!pushes.is_empty() && pushes.len() <= intervals, "{} pushes for {intervals} intervals", pushes.len());
    assert!(pushes.last().unwrap().online, "the last push carries the final state (online)");
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    // Proves: at most 1,000 accounts are watched per connection; beyond is INVALID_ARGUMENT and
    // the bound counts what is already watched; a new connection starts from zero.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let alice = Dev::new(&url, "+14155550131").await;
    let too_many: Vec<u64> = (1..=1001).collect();
    let e = alice.client.presence_subscribe(too_many).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    assert_eq!(alice.client.presence_subscribe((1..=1000).collect()).await.unwrap().len(), 1000);
    assert_eq!(alice.client.presence_subscribe(vec![5]).await.unwrap().len(), 1, "already watched: no new slot");
    let e = alice.client.presence_subscribe(vec![5000]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));

    alice.client.close().await;
    until_no_subscribers(&server).await;
    let (client, _events) = connect(&url, &alice.creds).await;
    assert_eq!(client.presence_subscribe(vec![5000]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn typing_reaches_online_devices_only_and_is_never_stored() {
    // Proves: a typing indicator reaches the peer's connected devices (1:1 and group), the
    // sender's other devices, and nobody who connects later.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let alice = Dev::new(&url, "+14155550141").await;
    let mut bob = Dev::new(&url, "+14155550142").await;
    let carol = Dev::offline(&url, "+14155550143").await;

    alice.client.typing(bob.id(), true).await.unwrap();
    let e = recv_until(&bob.client, &mut bob.events, |e| matches!(e, Event::Typing(_))).await;
    let Event::Typing(t) = e else { unreachable!() };
    assert_eq!((t.from_account_id, t.group_id, t.typing), (alice.id(), 0, true));

    alice.client.typing(carol.account_id, true).await.unwrap();
    let (carol_client, carol_events) = connect(&url, &carol).await;
    let mut carol_dev = Dev { creds: carol.clone(), client: carol_client, events: carol_events };
    let got = carol_dev.collect(QUIET).await;
    assert!(got.is_empty(), "typing was stored for an offline device: {got:?}");

    let group = alice
        .client
        .group_create(
            "g",
            "",
            vec![Recipient::Account(bob.id()), Recipient::Account(carol.account_id)],
            Default::default(),
        )
        .await
        .unwrap();
    alice.client.group_typing(group.group_id, true).await.unwrap();
    for dev in [&mut bob, &mut carol_dev] {
        let e = recv_until(&dev.client, &mut dev.events, |e| matches!(e, Event::Typing(_))).await;
        let Event::Typing(t) = e else { unreachable!() };
        assert_eq!((t.from_account_id, t.group_id), (alice.id(), group.group_id));
    }

    let e = alice.client.typing(0, true).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let outsider = Dev::new(&url, "+14155550144").await;
    let e = outsider.client.group_typing(group.group_id, true).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn typing_is_rate_limited_per_account() {
    // Proves: past the burst of `typing_per_account_per_second`, typing is RATE_LIMITED.
    let server = TestServer::start_with(|c| {
        c.presence.push_interval_ms = 100;
        c.rate_limits.typing_per_account_per_second = 3;
    })
    .await;
    let url = server.base_url();
    let creds = login(&url, "+14155550151", "d").await;
    let mut config = ClientConfig::new(&url, creds);
    config.retry.max_attempts = 1;
    let (alice, _events) = Client::connect(config).await.unwrap();
    let bob = Dev::new(&url, "+14155550152").await;
    for _ in 0..3 {
        alice.typing(bob.id(), true).await.unwrap();
    }
    let e = alice.typing(bob.id(), true).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited));
}

#[tokio::test]
async fn a_blocked_account_reaches_the_blocker_through_no_path() {
    // Proves: after Bob blocks Alice, Alice's messages are ACCEPTED and copied to her other
    // device but never reach Bob; her receipts, typing and presence do not either, and Bob's
    // presence is hidden from her. Unblocking restores delivery.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, "+14155550161").await;
    let alice2_creds = login(&url, "+14155550161", "d2").await;
    let (alice2_client, alice2_events) = connect(&url, &alice2_creds).await;
    let mut alice2 = Dev { creds: alice2_creds, client: alice2_client, events: alice2_events };
    let mut bob = Dev::new(&url, "+14155550162").await;

    bob.client.block(alice.id()).await.unwrap();
    assert_eq!(bob.client.presence_subscribe(vec![alice.id()]).await.unwrap(), vec![offline(alice.id())]);
    assert_eq!(alice.client.presence_subscribe(vec![bob.id()]).await.unwrap(), vec![offline(bob.id())]);

    let sent = alice.client.send(bob.id(), "hello?").await.unwrap();
    assert_eq!(sent.status, pb::SendStatus::Accepted as i32);
    assert!(!sent.duplicate);
    let copy = recv_messages(&alice2.client, &mut alice2.events, 1).await;
    assert_eq!(copy[0].server_msg_id, sent.server_msg_id, "the sender's other device got its copy");

    // Bob writes to Alice; her delivered and read receipts must not come back.
    bob.client.send(alice.id(), "you are blocked").await.unwrap();
    let got = recv_messages(&alice.client, &mut alice.events, 1).await;
    alice.client.send_read_receipt(bob.id(), vec![got[0].server_msg_id]).await.unwrap();
    alice.client.typing(bob.id(), true).await.unwrap();
    alice.client.close().await;
    let (alice_client, _alice_events) = connect(&url, &alice.creds).await;

    let got = bob.collect(QUIET).await;
    assert!(got.is_empty(), "the blocker received something from the blocked account: {got:?}");

    // Unblocked: messages flow again.
    bob.client.unblock(alice.id()).await.unwrap();
    alice_client.send(bob.id(), "hi again").await.unwrap();
    let got = recv_messages(&bob.client, &mut bob.events, 1).await;
    let Some(pb::inbox_item::Body::Message(m)) = &got[0].body else { panic!("not a message: {:?}", got[0]) };
    assert_eq!((m.from_account_id, &m.payload[..]), (alice.id(), &b"hi again"[..]));
    let _ = alice2.client.close().await;
}

#[tokio::test]
async fn a_block_survives_a_restart() {
    // Proves: the block list is durable: after a restart the blocked account's messages are
    // still ACCEPTED and still kept from the blocker.
    let mut server = TestServer::start().await;
    let url = server.base_url();
    let alice = login(&url, "+14155550171", "d").await;
    let bob = Dev::new(&url, "+14155550172").await;
    bob.client.block(alice.account_id).await.unwrap();
    bob.client.close().await;
    server.restart().await;

    let (alice_client, _alice_events) = connect(&url, &alice).await;
    let (bob_client, mut bob_events) = connect(&url, &bob.creds).await;
    let sent = alice_client.send(bob.id(), "still there?").await.unwrap();
    assert_eq!(sent.status, pb::SendStatus::Accepted as i32);
    expect_no_message(&mut bob_events, QUIET).await;
    bob_client.unblock(alice.account_id).await.unwrap();
    alice_client.send(bob.id(), "now?").await.unwrap();
    let got = recv_messages(&bob_client, &mut bob_events, 1).await;
    let Some(pb::inbox_item::Body::Message(m)) = &got[0].body else { panic!("not a message: {:?}", got[0]) };
    assert_eq!(&m.payload[..], b"now?", "the message sent while blocked never arrives, the next one does");
}

#[tokio::test]
async fn the_sdk_subscribes_again_after_a_reconnect() {
    // Proves: after the server restarts (every subscription gone with its connection), the SDK
    // subscribes again on its own: the app gets the watched account's current state right after
    // `Connected`, then pushes on the new connection; an account it unsubscribed stays forgotten.
    let mut server = TestServer::start().await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, "+14155550181").await;
    let bob = Dev::new(&url, "+14155550182").await;
    let carol = Dev::offline(&url, "+14155550183").await;
    alice.client.presence_subscribe(vec![bob.id(), carol.account_id]).await.unwrap();
    alice.client.presence_unsubscribe(vec![carol.account_id]).await.unwrap();
    assert_eq!(alice.client.presence_watched(), vec![bob.id()]);

    server.restart().await;
    recv_until(&alice.client, &mut alice.events, |e| matches!(e, Event::Disconnected(_))).await;
    recv_until(&alice.client, &mut alice.events, |e| matches!(e, Event::Connected(_))).await;
    // The very next event is the restored state (online or not, depending on bob's reconnect).
    let next = tokio::time::timeout(PATIENCE, alice.events.next()).await.expect("no state after reconnect");
    assert!(matches!(&next, Some(Event::Presence(p)) if p.account_id == bob.id()), "got {next:?}");
    let mut p = match next {
        Some(Event::Presence(p)) => p,
        _ => unreachable!(),
    };
    while !p.online {
        p = alice.next_presence(bob.id()).await;
    }

    // Pushes flow on the new connection: bob leaving arrives with a last seen.
    bob.client.close().await;
    let p = alice.next_presence(bob.id()).await;
    assert!(!p.online && p.last_seen_ms > 0, "bob's departure after the reconnect: {p:?}");
    let (carol_client, _carol_events) = connect(&url, &carol).await;
    let got = alice.collect(QUIET * 2).await;
    let about_carol = got.iter().any(|e| matches!(e, Event::Presence(p) if p.account_id == carol.account_id));
    assert!(!about_carol, "an unsubscribed account was restored: {got:?}");
    carol_client.close().await;
}

#[tokio::test]
async fn an_away_device_is_away_again_after_a_reconnect() {
    // Proves: the server forgets "away" with the connection, the SDK sets it again: after a
    // restart the away device's reconnect ends as "offline, last seen" for its watchers (a new
    // server knows no last seen of a device it never saw, so only the restored away sets one).
    let mut server = TestServer::start().await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, "+14155550191").await;
    let mut bob = Dev::new(&url, "+14155550192").await;
    bob.client.set_presence(true, None).await.unwrap();
    alice.client.presence_subscribe(vec![bob.id()]).await.unwrap();

    server.restart_with(|c| c.presence.push_interval_ms = 100).await;
    recv_until(&bob.client, &mut bob.events, |e| matches!(e, Event::Disconnected(_))).await;
    recv_until(&bob.client, &mut bob.events, |e| matches!(e, Event::Connected(_))).await;
    let mut p = alice.next_presence(bob.id()).await;
    while p.online || p.last_seen_ms == 0 {
        p = alice.next_presence(bob.id()).await;
    }
    bob.client.set_presence(false, None).await.unwrap();
    assert_eq!(alice.next_presence(bob.id()).await, online(bob.id()), "back from away");
}
