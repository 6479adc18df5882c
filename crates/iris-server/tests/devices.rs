//! Device linking with the primary's approval, the account's "device added / removed" notices,
//! the registration PIN and re-registration, over the real HTTP API and the SDK: each refusal
//! with its exact status and code, and a notice the store could not take sent later.

mod common;

use common::*;
use iris_client::{Event, HttpApi};
use iris_proto::http::{Credentials, DeviceInfo, LinkPending, PinRequest, VerifyRequest};
use iris_proto::pb::{inbox_item, DeviceChangeType, ErrorCode};
use iris_store::AccountStore;

const ALICE: &str = "+15550000101";

async fn devices(server: &TestServer, creds: &Credentials) -> Vec<u32> {
    let list: Vec<DeviceInfo> = server.get("/v1/devices", Some(&creds.access_token)).await.expect_json(200);
    list.iter().map(|d| d.device_id).collect()
}

/// Verifies a new login of `phone`, expecting a pending link.
async fn start_link(server: &TestServer, phone: &str, name: &str) -> LinkPending {
    server.request_code(phone).await.expect_status(200);
    server.verify(phone, DEV_CODE, name).await.expect_json(202)
}

async fn verify_new_primary(server: &TestServer, phone: &str, pin: Option<&str>) -> Reply {
    server.request_code(phone).await.expect_status(200);
    let body = VerifyRequest {
        phone: phone.to_owned(),
        code: DEV_CODE.to_owned(),
        device_name: "new phone".to_owned(),
        new_primary: true,
        pin: pin.map(str::to_owned),
    };
    server.post("/v1/auth/verify", &body).await
}

/// The next `DeviceChange` the client gets.
async fn next_device_change(client: &iris_client::Client, events: &mut iris_client::Events) -> (u32, i32, u32) {
    let event = recv_until(client, events, |e| matches!(e, Event::Account(_))).await;
    match event.item().and_then(|i| i.body.clone()) {
        Some(inbox_item::Body::DeviceChange(c)) => (c.device_id, c.r#type, c.by_device_id),
        other => panic!("expected a DeviceChange, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companion_waits_for_the_primarys_approval_and_the_account_hears_of_it() {
    // Proves: a second login gets a link code (202) and no device until the primary approves;
    // collecting before is 202, a wrong code is 410 LINK_EXPIRED, a companion cannot approve
    // (403); after approval the new device collects its credentials once; the primary gets a
    // durable DeviceChange ADDED, and REMOVED when the companion is revoked.
    let server = TestServer::start().await;
    let alice = server.login(ALICE, "phone").await;
    let (client, mut events) = connect(&server.url(""), &alice).await;
    let pending = start_link(&server, ALICE, "laptop").await;
    assert_eq!(pending.account_id, alice.account_id);
    assert_eq!(pending.link_code.len(), 9, "XXXX-XXXX: {}", pending.link_code);
    server.collect_link(&pending).await.expect_json::<LinkPending>(202);
    assert_eq!(devices(&server, &alice).await, vec![1], "no device before the approval");
    server.approve_link(&alice.access_token, "ZZZZ-ZZZZ").await.expect_error(410, ErrorCode::LinkExpired);

    let lower = pending.link_code.to_lowercase().replace('-', " ");
    let approved: DeviceInfo = server.approve_link(&alice.access_token, &lower).await.expect_json(200);
    assert_eq!((approved.device_id, approved.primary, approved.name.as_str()), (2, false, "laptop"));
    let laptop: Credentials = server.collect_link(&pending).await.expect_json(200);
    assert_eq!((laptop.account_id, laptop.device_id), (alice.account_id, 2));
    server.collect_link(&pending).await.expect_error(410, ErrorCode::LinkExpired);
    assert_eq!(devices(&server, &laptop).await, vec![1, 2]);
    let added = DeviceChangeType::Added as i32;
    assert_eq!(next_device_change(&client, &mut events).await, (2, added, 1));

    let tablet = start_link(&server, ALICE, "tablet").await;
    server.approve_link(&laptop.access_token, &tablet.link_code).await.expect_error(403, ErrorCode::PermissionDenied);
    server.delete("/v1/devices/2", &alice.access_token).await.expect_status(204);
    assert_eq!(next_device_change(&client, &mut events).await, (2, DeviceChangeType::Removed as i32, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_expired_and_too_many_links_are_typed() {
    // Proves: a refused link is 403 LINK_REFUSED for the new device; a link older than
    // devices.link_code_ttl_s can be neither approved nor collected (410 LINK_EXPIRED); a fourth
    // waiting link is 429 LINK_LIMIT until one expires.
    let server = TestServer::start_with_manual_clock(|_| {}).await;
    let alice = server.login(ALICE, "phone").await;
    let refused = start_link(&server, ALICE, "intruder").await;
    let path = format!("/v1/devices/links/{}/refuse", refused.link_code);
    server.post_with_token(&path, &alice.access_token).await.expect_status(204);
    server.collect_link(&refused).await.expect_error(403, ErrorCode::LinkRefused);

    let late = start_link(&server, ALICE, "late").await;
    let _second = start_link(&server, ALICE, "b").await;
    let _third = start_link(&server, ALICE, "c").await;
    server.request_code(ALICE).await.expect_status(200);
    server.verify(ALICE, DEV_CODE, "d").await.expect_error(429, ErrorCode::LinkLimit);
    server.advance_clock_ms(60_001);
    server.approve_link(&alice.access_token, &late.link_code).await.expect_error(410, ErrorCode::LinkExpired);
    server.collect_link(&late).await.expect_error(410, ErrorCode::LinkExpired);
    start_link(&server, ALICE, "d").await;
    assert_eq!(devices(&server, &alice).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_collects_is_revoked_when_its_link_expires() {
    // Proves: an approved link whose device never collects its credentials does not leave a
    // device nobody can sign in as: a collection after the deadline is 410 LINK_EXPIRED and
    // revokes it at once; a device that never comes back is revoked by the sweep (every
    // devices.link_code_ttl_s). Both leave the list and the primary hears them REMOVED by the
    // server (0).
    let server = TestServer::start_with_manual_clock(|c| c.devices.link_code_ttl_s = 10).await;
    let alice = server.login(ALICE, "phone").await;
    let (client, mut events) = connect(&server.url(""), &alice).await;
    let laptop = start_link(&server, ALICE, "laptop").await;
    let tablet = start_link(&server, ALICE, "tablet").await;
    for pending in [&laptop, &tablet] {
        server.approve_link(&alice.access_token, &pending.link_code).await.expect_status(200);
    }
    let (added, removed) = (DeviceChangeType::Added as i32, DeviceChangeType::Removed as i32);
    assert_eq!(next_device_change(&client, &mut events).await, (2, added, 1));
    assert_eq!(next_device_change(&client, &mut events).await, (3, added, 1));
    assert_eq!(devices(&server, &alice).await, vec![1, 2, 3]);

    server.advance_clock_ms(10_001);
    server.collect_link(&tablet).await.expect_error(410, ErrorCode::LinkExpired);
    assert!(!devices(&server, &alice).await.contains(&3), "the late collection revoked its device");
    // The sweep may have run meanwhile, so the two notices come in either order.
    let mut heard =
        vec![next_device_change(&client, &mut events).await, next_device_change(&client, &mut events).await];
    heard.sort();
    assert_eq!(heard, [(2, removed, 0), (3, removed, 0)], "the sweep revoked the laptop");
    assert_eq!(devices(&server, &alice).await, vec![1]);
    server.collect_link(&laptop).await.expect_error(410, ErrorCode::LinkExpired);
    let uncollected = server.ctx().metrics.devices_links.get_or_create(&vec![("outcome", "uncollected")]).clone();
    // Counted after each revocation's notice went out, so waited for rather than read.
    wait_until("both revocations counted", PATIENCE, || async { uncollected.get() == 2 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_approved_over_the_device_limit_stays_pending() {
    // Proves: links started below the device limit are approved while room is left; the one
    // that would pass it is 409 DEVICE_LIMIT and still pending (202 to its device), and once a
    // device is revoked the same code is approved and collected.
    let server = TestServer::start().await;
    let alice = server.login(ALICE, "phone").await;
    for name in ["b", "c", "d"] {
        server.login(ALICE, name).await;
    }
    let fifth = start_link(&server, ALICE, "e").await;
    let sixth = start_link(&server, ALICE, "f").await;
    server.approve_link(&alice.access_token, &fifth.link_code).await.expect_status(200);
    server.approve_link(&alice.access_token, &sixth.link_code).await.expect_error(409, ErrorCode::DeviceLimit);
    server.collect_link(&sixth).await.expect_json::<LinkPending>(202);
    server.delete("/v1/devices/5", &alice.access_token).await.expect_status(204);
    let approved: DeviceInfo = server.approve_link(&alice.access_token, &sixth.link_code).await.expect_json(200);
    assert_eq!((approved.device_id, approved.name.as_str()), (6, "f"));
    let f: Credentials = server.collect_link(&sixth).await.expect_json(200);
    assert_eq!(devices(&server, &f).await, vec![1, 2, 3, 4, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_cut_short_is_finished_by_the_server() {
    // Proves: when a revocation's follow-ups fail after the store revoked the device (here the
    // inbox takes no write: no purge, no notice), the answer is an error but the revocation is
    // not left half done: the device is revoked at once, and ten seconds later the server runs
    // the rest, so the primary hears REMOVED by the device that revoked it, once, and nothing
    // stays recorded as unfinished.
    let (store, faults) = faulty_store();
    let shared: std::sync::Arc<dyn iris_store::Store> = store.clone();
    let server = TestServer::start_with_store_and_manual_clock(|c| c.devices.link_code_ttl_s = 10, shared).await;
    let alice = server.login(ALICE, "phone").await;
    let laptop = server.login(ALICE, "laptop").await;
    let (client, mut events) = connect(&server.url(""), &alice).await;
    let (added, removed) = (DeviceChangeType::Added as i32, DeviceChangeType::Removed as i32);
    assert_eq!(next_device_change(&client, &mut events).await, (laptop.device_id, added, 1));

    faults.set(Some(AppendFault::Unavailable));
    let path = format!("/v1/devices/{}", laptop.device_id);
    server.delete(&path, &alice.access_token).await.expect_error(503, ErrorCode::Unavailable);
    assert!(faults.injected() >= 1, "the follow-ups failed");
    faults.set(None);
    assert_eq!(devices(&server, &alice).await, vec![1], "revoked at once");
    assert_eq!(store.unfinished_revocations(u64::MAX, 10).await.unwrap().len(), 1);

    server.advance_clock_ms(10_001);
    assert_eq!(next_device_change(&client, &mut events).await, (laptop.device_id, removed, 1));
    // Counted once its record is dropped, so the count is what to wait for.
    let resumed = &server.ctx().metrics.devices_revocations_resumed;
    wait_until("the revocation is finished", PATIENCE, || async { resumed.get() == 1 }).await;
    assert!(store.unfinished_revocations(u64::MAX, 10).await.unwrap().is_empty());
    server.delete(&path, &alice.access_token).await.expect_error(404, ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_notice_failed_at_approval_is_announced_when_it_collects() {
    // Proves: when the store cannot take the DeviceChange ADDED at approval, the approval still
    // stands (200: the device exists), and the notice reaches the primary when the new device
    // collects its credentials, once (the next change it hears of is the revocation).
    let (store, faults) = faulty_store();
    let server = TestServer::start_with_store(|_| {}, store).await;
    let alice = server.login(ALICE, "phone").await;
    let (client, mut events) = connect(&server.url(""), &alice).await;
    let pending = start_link(&server, ALICE, "laptop").await;
    faults.set(Some(AppendFault::Unavailable));
    let approved: DeviceInfo = server.approve_link(&alice.access_token, &pending.link_code).await.expect_json(200);
    assert!(faults.injected() >= 1, "the notice failed");
    faults.set(None);
    let laptop: Credentials = server.collect_link(&pending).await.expect_json(200);
    assert_eq!(laptop.device_id, approved.device_id);
    let added = DeviceChangeType::Added as i32;
    assert_eq!(next_device_change(&client, &mut events).await, (approved.device_id, added, 1));
    server.delete(&format!("/v1/devices/{}", approved.device_id), &alice.access_token).await.expect_status(204);
    let removed = DeviceChangeType::Removed as i32;
    assert_eq!(next_device_change(&client, &mut events).await, (approved.device_id, removed, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_primary_needs_the_pin_which_locks_after_wrong_guesses() {
    // Proves: only the primary sets a PIN (4-32 digits); a re-registration without it is 401
    // PIN_REQUIRED, a wrong one too (attempts counted), the last wrong one locks (429
    // PIN_LOCKED with retry_after_ms) even for the right PIN, until the lockout ends; then the
    // right PIN makes a new primary and every old device is revoked.
    let server = TestServer::start_with_manual_clock(|c| {
        c.devices.pin_attempts_max = 2;
        c.devices.pin_lockout_s = 600;
    })
    .await;
    let alice = server.login(ALICE, "phone").await;
    let laptop = server.login(ALICE, "laptop").await;
    let pin = |p: &str| PinRequest { pin: p.to_owned() };
    let path = "/v1/account/pin";
    server.put_with_token(path, &alice.access_token, &pin("12ab")).await.expect_error(400, ErrorCode::InvalidArgument);
    let by_laptop = server.put_with_token(path, &laptop.access_token, &pin("123456")).await;
    by_laptop.expect_error(403, ErrorCode::PermissionDenied);
    server.put_with_token(path, &alice.access_token, &pin("123456")).await.expect_status(204);

    verify_new_primary(&server, ALICE, None).await.expect_error(401, ErrorCode::PinRequired);
    let wrong = verify_new_primary(&server, ALICE, Some("000000")).await.expect_error(401, ErrorCode::PinRequired);
    assert!(wrong.message.contains("1 attempts left"), "{}", wrong.message);
    let locked = verify_new_primary(&server, ALICE, Some("111111")).await.expect_error(429, ErrorCode::PinLocked);
    assert_eq!(locked.retry_after_ms, Some(600_000));
    verify_new_primary(&server, ALICE, Some("123456")).await.expect_error(429, ErrorCode::PinLocked);
    assert_eq!(devices(&server, &alice).await, vec![1, 2], "nothing changed");

    server.advance_clock_ms(600_000);
    let new: Credentials = verify_new_primary(&server, ALICE, Some("123456")).await.expect_json(200);
    assert_eq!((new.account_id, new.device_id), (alice.account_id, 3));
    assert_eq!(devices(&server, &new).await, vec![3]);
    server.get("/v1/devices", Some(&alice.access_token)).await.expect_error(403, ErrorCode::DeviceRevoked);
    server.get("/v1/devices", Some(&laptop.access_token)).await.expect_error(403, ErrorCode::DeviceRevoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pin_a_new_primary_replaces_the_devices_and_links_are_approved_by_it() {
    // Proves: with no PIN set, `new_primary` registers at once and revokes the old devices; the
    // new primary is the one that approves later links; the SDK's link helper and
    // wait_for_link carry the whole flow.
    let server = TestServer::start().await;
    let url = server.url("");
    let old = server.login(ALICE, "phone").await;
    let new: Credentials = verify_new_primary(&server, ALICE, None).await.expect_json(200);
    assert_eq!(devices(&server, &new).await, vec![2]);
    server.get("/v1/devices", Some(&old.access_token)).await.expect_error(403, ErrorCode::DeviceRevoked);

    let http = HttpApi::new(&url).unwrap();
    http.request_code(ALICE).await.unwrap();
    let err = http.verify(ALICE, DEV_CODE, "laptop").await.unwrap_err();
    let iris_client::ClientError::LinkPending(pending) = err else { panic!("expected a pending link: {err}") };
    let links = http.pending_links(&new.access_token).await.unwrap();
    assert_eq!(links.iter().map(|l| l.link_code.as_str()).collect::<Vec<_>>(), vec![pending.link_code.as_str()]);
    http.approve_link(&old.access_token, &pending.link_code).await.unwrap_err();
    http.approve_link(&new.access_token, &pending.link_code).await.unwrap();
    let laptop = http.wait_for_link(&pending, std::time::Duration::from_millis(10)).await.unwrap();
    assert_eq!(laptop.device_id, 3);
    let tablet = link_device(&url, &new, "tablet").await;
    assert_eq!(devices(&server, &tablet).await, vec![2, 3, 4]);
}
