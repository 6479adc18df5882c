//! Profiles over the HTTP API: bounds and typed refusals, who may see a profile (everyone /
//! contacts / nobody, blocks), and the `ProfileChange` items a change puts in the inboxes of the
//! owner's other devices and of its contacts.

mod common;

use common::*;
use iris_client::{Event, HttpApi};
use iris_proto::http::{ProfilePrivacy, ProfileUpdate, ProfileView};
use iris_proto::pb::{inbox_item, ErrorCode, ProfileChange};

const ALICE: &str = "+15550000201";
const BOB: &str = "+15550000202";
const CAROL: &str = "+15550000203";

fn named(name: &str) -> ProfileUpdate {
    ProfileUpdate { display_name: Some(name.to_owned()), ..ProfileUpdate::default() }
}

async fn next_profile_change(client: &iris_client::Client, events: &mut iris_client::Events) -> ProfileChange {
    let event = recv_until(client, events, |e| matches!(e, Event::Account(_))).await;
    match event.item().and_then(|i| i.body.clone()) {
        Some(inbox_item::Body::ProfileChange(c)) => c,
        other => panic!("expected a ProfileChange, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_bounded_and_typed() {
    // Proves: a display name or about text over its bound, a control character, or a photo that
    // is no uploaded image is 400 PROFILE_INVALID and changes nothing; absent fields stay.
    let server = TestServer::start_with(|c| c.profiles.about_chars_max = 10).await;
    let url = server.url("");
    let alice = server.login(ALICE, "phone").await;
    let http = HttpApi::new(&url).unwrap();
    let code = |r: Result<ProfileView, iris_client::ClientError>| match r.unwrap_err() {
        iris_client::ClientError::Api { status, code, .. } => (status, code),
        other => panic!("{other}"),
    };
    let view = http.set_profile(&alice.access_token, &named("Alice")).await.unwrap();
    assert_eq!((view.display_name.as_str(), view.privacy), ("Alice", Some(ProfilePrivacy::Everyone)));
    let invalid = (400, ErrorCode::ProfileInvalid);
    assert_eq!(code(http.set_profile(&alice.access_token, &named(&"x".repeat(65))).await), invalid);
    assert_eq!(code(http.set_profile(&alice.access_token, &named("a\u{7}b")).await), invalid);
    let about = ProfileUpdate { about: Some("é".repeat(11)), ..ProfileUpdate::default() };
    assert_eq!(code(http.set_profile(&alice.access_token, &about).await), invalid);
    let photo = ProfileUpdate { photo_media_id: Some("ab".repeat(32)), ..ProfileUpdate::default() };
    assert_eq!(code(http.set_profile(&alice.access_token, &photo).await), invalid);
    let ok_about = ProfileUpdate { about: Some("é".repeat(10)), ..ProfileUpdate::default() };
    let view = http.set_profile(&alice.access_token, &ok_about).await.unwrap();
    assert_eq!((view.display_name.as_str(), view.about.chars().count()), ("Alice", 10));
    assert_eq!(code(http.profile(&alice.access_token, 999_999).await), (404, ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_decides_who_sees_a_profile_and_changes_reach_contacts() {
    // Proves: everyone sees an EVERYONE profile; CONTACTS shows it only to the owner's contacts;
    // NOBODY and a block hide it (empty, visible false); a change reaches the owner's other
    // device and its contacts' devices as a ProfileChange, and a change to NOBODY tells the
    // contacts with an empty profile.
    let server = TestServer::start().await;
    let url = server.url("");
    let alice = server.login(ALICE, "phone").await;
    let alice_laptop = server.login(ALICE, "laptop").await;
    let bob = server.login(BOB, "phone").await;
    let carol = server.login(CAROL, "phone").await;
    let http = HttpApi::new(&url).unwrap();
    let (alice_client, _alice_events) = connect(&url, &alice).await;
    let (laptop_client, mut laptop_events) = connect(&url, &alice_laptop).await;
    let (bob_client, mut bob_events) = connect(&url, &bob).await;
    alice_client.contacts_add(vec![bob.account_id]).await.unwrap();

    http.set_profile(&alice.access_token, &named("Alice")).await.unwrap();
    assert_eq!(next_profile_change(&laptop_client, &mut laptop_events).await.display_name, "Alice");
    let seen = next_profile_change(&bob_client, &mut bob_events).await;
    assert_eq!((seen.account_id, seen.phone.as_str(), seen.display_name.as_str()), (alice.account_id, ALICE, "Alice"));
    let by_carol = http.profile(&carol.access_token, alice.account_id).await.unwrap();
    assert!(by_carol.visible && by_carol.display_name == "Alice" && by_carol.privacy.is_none());

    let contacts = ProfileUpdate { privacy: Some(ProfilePrivacy::Contacts), ..named("Alice C") };
    http.set_profile(&alice.access_token, &contacts).await.unwrap();
    assert_eq!(next_profile_change(&bob_client, &mut bob_events).await.display_name, "Alice C");
    let by_carol = http.profile(&carol.access_token, alice.account_id).await.unwrap();
    assert_eq!(by_carol, ProfileView { account_id: alice.account_id, ..ProfileView::default() });
    assert!(http.profile(&bob.access_token, alice.account_id).await.unwrap().visible);

    let nobody = ProfileUpdate { privacy: Some(ProfilePrivacy::Nobody), ..ProfileUpdate::default() };
    http.set_profile(&alice.access_token, &nobody).await.unwrap();
    let hidden = next_profile_change(&bob_client, &mut bob_events).await;
    assert_eq!((hidden.account_id, hidden.display_name.as_str()), (alice.account_id, ""));
    assert!(!http.profile(&bob.access_token, alice.account_id).await.unwrap().visible);
    let own = http.profile(&alice_laptop.access_token, alice.account_id).await.unwrap();
    assert_eq!((own.display_name.as_str(), own.privacy), ("Alice C", Some(ProfilePrivacy::Nobody)));

    let everyone = ProfileUpdate { privacy: Some(ProfilePrivacy::Everyone), ..ProfileUpdate::default() };
    http.set_profile(&alice.access_token, &everyone).await.unwrap();
    alice_client.block(carol.account_id).await.unwrap();
    assert!(!http.profile(&carol.access_token, alice.account_id).await.unwrap().visible, "a block hides it");
    assert!(http.profile(&bob.access_token, alice.account_id).await.unwrap().visible);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_reads_of_strangers_count_against_the_discovery_limit() {
    // Proves: GET /v1/profiles/{id} of an account that is neither the caller's nor one of its
    // contacts, found or not, takes one of discover_requests_per_account_per_day, shared with
    // phone lookups and contact additions (429 RATE_LIMITED past it, retry in hours), so
    // sequential account ids cannot be walked, not even by adding them as contacts first; one's
    // own profile and contacts' profiles stay readable; others keep their budget.
    let server = TestServer::start_with(|c| c.rate_limits.discover_requests_per_account_per_day = 4).await;
    let url = server.url("");
    let alice = server.login(ALICE, "phone").await;
    let bob = server.login(BOB, "phone").await;
    let carol = server.login(CAROL, "phone").await;
    let http = HttpApi::new(&url).unwrap();
    let refused = |r: Result<ProfileView, iris_client::ClientError>| match r.unwrap_err() {
        iris_client::ClientError::Api { status, code, retry_after_ms, .. } => (status, code, retry_after_ms),
        other => panic!("{other}"),
    };
    let (alice_client, _events) = connect(&url, &alice).await;
    alice_client.contacts_add(vec![carol.account_id]).await.unwrap();
    http.profile(&alice.access_token, bob.account_id).await.unwrap();
    let missing = http.profile(&alice.access_token, 999_999).await.unwrap_err();
    assert!(matches!(missing, iris_client::ClientError::Api { status: 404, .. }), "{missing}");
    server
        .get(&format!("/v1/accounts/{}", BOB.replace('+', "%2B")), Some(&alice.access_token))
        .await
        .expect_status(200);
    let (status, code, retry_after_ms) = refused(http.profile(&alice.access_token, bob.account_id).await);
    assert_eq!((status, code), (429, ErrorCode::RateLimited), "a stranger read twice is charged twice");
    assert!(retry_after_ms.unwrap() > 3_600_000, "{retry_after_ms:?}");
    // Through the service: the SDK would wait out the retry time of a rate-limited operation.
    let add = iris_proto::pb::ContactsUpdate { add_account_ids: vec![bob.account_id], ..Default::default() };
    let me = iris_store::DeviceAddr::new(alice.account_id, alice.device_id);
    let refused = server.ctx().sessions.contacts.update(me, add).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::RateLimited, "nor can a stranger be made a contact");

    assert!(http.profile(&alice.access_token, alice.account_id).await.unwrap().visible);
    assert!(http.profile(&alice.access_token, carol.account_id).await.unwrap().visible);
    assert!(http.profile(&bob.access_token, alice.account_id).await.unwrap().visible);
}
