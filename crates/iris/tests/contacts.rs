//! Contacts end to end through the SDK against a real server: a durable contact list, contact
//! discovery (registered numbers only, blocks honoured, bounded and rate-limited) and the
//! "my contacts" presence privacy.

mod common;

use common::*;
use iris_client::pb::{self, ErrorCode, PresencePrivacy};
use iris_client::{ClientError, Event};

impl Dev {
    /// Waits for a presence push equal to `want` (a flush may first repeat the current state).
    async fn until_presence(&mut self, want: &pb::PresenceUpdate) {
        recv_until(&self.client, &mut self.events, |e| matches!(e, Event::Presence(p) if p == want)).await;
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    r.expect_err("expected a refusal").code().expect("a typed refusal")
}

fn ids(contacts: &[pb::Contact]) -> Vec<u64> {
    contacts.iter().map(|c| c.account_id).collect()
}

#[tokio::test]
async fn contacts_are_added_removed_listed_and_survive_a_restart() {
    // Proves: add/remove answer the new list, the list is durable across a restart, unknown
    // accounts and oneself are refused.
    let mut server = TestServer::start().await;
    let url = server.base_url();
    let alice = login(&url, "+14155550301", "d").await;
    let bob = login(&url, "+14155550302", "d").await;
    let carol = login(&url, "+14155550303", "d").await;
    let (client, _events) = connect(&url, &alice).await;
    let list = client.contacts_add(vec![bob.account_id, carol.account_id]).await.unwrap();
    assert_eq!(ids(&list), vec![bob.account_id, carol.account_id]);
    assert_eq!(list[0].phone, "+14155550302");
    let list = client.contacts_remove(vec![carol.account_id]).await.unwrap();
    assert_eq!(ids(&list), vec![bob.account_id]);
    assert_eq!(code(client.contacts_add(vec![999_999]).await), ErrorCode::NotFound);
    assert_eq!(code(client.contacts_add(vec![alice.account_id]).await), ErrorCode::InvalidArgument);
    client.close().await;

    server.restart().await;
    let (client, _events) = connect(&url, &alice).await;
    assert_eq!(ids(&client.contacts().await.unwrap()), vec![bob.account_id]);
}

#[tokio::test]
async fn discovery_answers_registered_numbers_except_those_that_blocked_me() {
    // Proves: registered numbers come back with their accounts; unregistered and malformed ones
    // do not; a number whose account blocked the asker looks unregistered; the list is bounded.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let alice = Dev::without_retries(&url, "+14155550311").await;
    let bob = Dev::without_retries(&url, "+14155550312").await;
    let carol = Dev::without_retries(&url, "+14155550313").await;
    carol.client.block(alice.id()).await.unwrap();
    let phones = ["+14155550312", "+14155550313", "+14155550319", "not a phone"];
    let found = alice.client.discover(phones.iter().map(|p| p.to_string()).collect()).await.unwrap();
    assert_eq!(ids(&found), vec![bob.id()]);
    // Carol still finds Alice: a block hides the blocker, not the blocked.
    assert_eq!(ids(&carol.client.discover(vec!["+14155550311".into()]).await.unwrap()), vec![alice.id()]);
    let too_many = (0..1001).map(|i| format!("+1415556{i:04}")).collect();
    assert_eq!(code(alice.client.discover(too_many).await), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn discovery_is_rate_limited_per_account_per_day() {
    // Proves: past `discover_requests_per_account_per_day` requests an account is refused with a
    // retry time in hours, while another account is not.
    let server = TestServer::start_with(|c| {
        c.presence.push_interval_ms = 100;
        c.rate_limits.discover_requests_per_account_per_day = 2;
    })
    .await;
    let url = server.base_url();
    let alice = Dev::without_retries(&url, "+14155550321").await;
    let bob = Dev::without_retries(&url, "+14155550322").await;
    for _ in 0..2 {
        alice.client.discover(vec!["+14155550322".into()]).await.unwrap();
    }
    let refused = alice.client.discover(vec!["+14155550322".into()]).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::RateLimited));
    assert!(refused.retry_after_ms().unwrap() > 3_600_000, "{refused:?}");
    bob.client.discover(vec!["+14155550321".into()]).await.unwrap();
}

#[tokio::test]
async fn my_contacts_privacy_shows_presence_to_contacts_only() {
    // Proves: with CONTACTS privacy, a contact sees online, a stranger sees nothing; removing
    // the contact hides it from them at once (a push), adding one reveals it.
    let server = TestServer::start_with(|c| c.presence.push_interval_ms = 100).await;
    let url = server.base_url();
    let alice = Dev::without_retries(&url, "+14155550331").await;
    let mut bob = Dev::without_retries(&url, "+14155550332").await;
    let mut carol = Dev::without_retries(&url, "+14155550333").await;
    alice.client.contacts_add(vec![bob.id()]).await.unwrap();
    alice.client.set_presence(false, Some(PresencePrivacy::Contacts)).await.unwrap();

    let hidden = pb::PresenceUpdate { account_id: alice.id(), online: false, last_seen_ms: 0 };
    let shown = pb::PresenceUpdate { account_id: alice.id(), online: true, last_seen_ms: 0 };
    assert_eq!(bob.client.presence_subscribe(vec![alice.id()]).await.unwrap(), vec![shown]);
    assert_eq!(carol.client.presence_subscribe(vec![alice.id()]).await.unwrap(), vec![hidden]);

    alice.client.contacts_remove(vec![bob.id()]).await.unwrap();
    bob.until_presence(&hidden).await;
    alice.client.contacts_add(vec![carol.id()]).await.unwrap();
    carol.until_presence(&shown).await;
    // Adding Carol reveals nothing to Bob: a fresh subscription (answered from the state now,
    // after both changes were pushed) still shows Alice hidden.
    assert_eq!(bob.client.presence_subscribe(vec![alice.id()]).await.unwrap(), vec![hidden]);
}

#[tokio::test]
async fn the_privacy_choice_survives_a_restart() {
    // Proves: presence privacy is durable: after a restart a CONTACTS account is still hidden
    // from strangers and shown to its contacts.
    let mut server = TestServer::start().await;
    let url = server.base_url();
    let alice = login(&url, "+14155550341", "d").await;
    let bob = login(&url, "+14155550342", "d").await;
    let carol = login(&url, "+14155550343", "d").await;
    let (client, _events) = connect(&url, &alice).await;
    client.contacts_add(vec![bob.account_id]).await.unwrap();
    client.set_presence(false, Some(PresencePrivacy::Contacts)).await.unwrap();
    client.close().await;

    server.restart().await;
    let (alice_client, _alice_events) = connect(&url, &alice).await;
    let (bob_client, _bob_events) = connect(&url, &bob).await;
    let (carol_client, _carol_events) = connect(&url, &carol).await;
    let shown = pb::PresenceUpdate { account_id: alice.account_id, online: true, last_seen_ms: 0 };
    let hidden = pb::PresenceUpdate { account_id: alice.account_id, online: false, last_seen_ms: 0 };
    assert_eq!(bob_client.presence_subscribe(vec![alice.account_id]).await.unwrap(), vec![shown]);
    assert_eq!(carol_client.presence_subscribe(vec![alice.account_id]).await.unwrap(), vec![hidden]);
    alice_client.close().await;
}
