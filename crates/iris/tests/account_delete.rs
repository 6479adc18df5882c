//! Account deletion end to end against a real server (the engine `IRIS_TEST_ENGINE` names):
//! re-verification with a deletion code and its typed refusals, the devices closed with
//! ACCOUNT_DELETED and their tokens dead, the groups told (with the longest-standing member
//! promoted when the last admin goes, and an emptied group removed), the phone registering
//! again as a new account, the rate limit, a deletion interrupted after its mark finished by
//! the next start, and `iris account delete` through the binary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use iris_client::pb::{self, ErrorCode, GroupEventType, GroupRole};
use iris_client::{Event, Recipient};
use iris_proto::http::{AccountDeleteRequest, CodeRequested};

const ALICE: &str = "+14155550301";
const BOB: &str = "+14155550302";
const CAROL: &str = "+14155550303";

async fn request_code(server: &TestServer, token: &str) -> Reply {
    server.post_authorized::<()>("/v1/account/delete/request-code", Some(token), None).await
}

async fn delete(server: &TestServer, token: &str, code: &str) -> Reply {
    let body = AccountDeleteRequest { code: code.to_owned() };
    server.post_authorized("/v1/account/delete", Some(token), Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_closed_leaves_its_groups_and_its_phone_starts_afresh() {
    // Proves: a wrong code is INVALID_CODE and changes nothing; the right one deletes: the
    // connected device gets a fatal ACCOUNT_DELETED, both devices' tokens stop working, the
    // groups get MEMBER_LEFT and (last admin gone) ADMINS_PROMOTED for the longest-standing
    // member, its join request elsewhere is announced as JOIN_DECLINED, a group it was alone
    // in is removed, the phone is unknown to others, and it logs in again as a new account
    // with a new id and nothing of the old one.
    let server = TestServer::start().await;
    let url = server.base_url();
    let mut alice = Dev::without_retries(&url, ALICE).await;
    let alice_laptop = server.login(ALICE, "laptop").await;
    let mut bob = Dev::new(&url, BOB).await;
    let carol = Dev::new(&url, CAROL).await;
    let members = vec![Recipient::Phone(BOB.into()), Recipient::Phone(CAROL.into())];
    let group = alice.client.group_create("team", "", members, pb::GroupSettings::default()).await.unwrap();
    let alone = alice.client.group_create("notes", "", vec![], pb::GroupSettings::default()).await.unwrap();
    bob.group_event(GroupEventType::Created).await;
    let approval = pb::GroupSettings { join_approval: true, ..Default::default() };
    let closed = bob.client.group_create("closed", "", vec![], approval).await.unwrap();
    let invite = bob.client.group_invite(closed.group_id, false).await.unwrap();
    assert!(alice.client.group_join(&invite).await.unwrap().is_none(), "alice's request waits");
    alice.client.send(Recipient::Account(bob.id()), "bye").await.unwrap();

    let token = &alice.creds.access_token;
    delete(&server, token, "000000").await.expect_error(401, ErrorCode::CodeExpired);
    let requested: CodeRequested = request_code(&server, token).await.expect_json(200);
    assert_eq!(requested.expires_in_s, 300);
    let wrong = delete(&server, token, "123456").await.expect_error(401, ErrorCode::InvalidCode);
    assert!(wrong.message.contains("attempts left"), "{}", wrong.message);
    // A login code is not a deletion code.
    server.request_code(ALICE).await.expect_status(200);
    assert_eq!(server.get("/v1/devices", Some(token)).await.expect_json::<Vec<serde_json::Value>>(200).len(), 2);

    delete(&server, token, DEV_CODE).await.expect_status(204);

    let fatal = recv_until(&alice.client, &mut alice.events, |e| matches!(e, Event::Fatal(_))).await;
    let Event::Fatal(error) = fatal else { unreachable!() };
    assert_eq!(error.code, ErrorCode::AccountDeleted as i32, "{error:?}");
    for creds in [&alice.creds, &alice_laptop] {
        let refused = server.get("/v1/devices", Some(&creds.access_token)).await;
        assert!(matches!(refused.status, 401 | 403), "a token of the deleted account still works: {refused:?}");
        let body = iris_proto::http::RefreshRequest { refresh_token: creds.refresh_token.clone() };
        server.post("/v1/auth/refresh", &body).await.expect_error(401, ErrorCode::Unauthenticated);
    }

    let left = bob.group_event(GroupEventType::MemberLeft).await;
    assert_eq!((left.group_id, left.account_ids.clone()), (group.group_id, vec![alice.id()]));
    let promoted = bob.group_event(GroupEventType::AdminsPromoted).await;
    assert_eq!(promoted.account_ids, vec![bob.id()], "the longest-standing member becomes admin");
    let declined = bob.group_event(GroupEventType::JoinDeclined).await;
    let about = (declined.group_id, declined.by_account_id, declined.account_ids.clone());
    assert_eq!(about, (closed.group_id, alice.id(), vec![alice.id()]), "the dropped request is announced");
    assert!(bob.client.group_info(closed.group_id).await.unwrap().pending_account_ids.is_empty());
    let info = carol.client.group_info(group.group_id).await.unwrap();
    let roster: Vec<(u64, i32)> = info.members.iter().map(|m| (m.account_id, m.role)).collect();
    assert_eq!(roster, vec![(bob.id(), GroupRole::Admin as i32), (carol.id(), GroupRole::Member as i32)]);
    assert_eq!(server.ctx().store.group(alone.group_id).await.unwrap(), None, "an emptied group is removed");

    let path = format!("/v1/accounts/{}", ALICE.replace('+', "%2B"));
    server.get(&path, Some(&bob.creds.access_token)).await.expect_error(404, ErrorCode::NotFound);
    let again = server.login(ALICE, "new phone").await;
    assert_ne!(again.account_id, alice.id());
    assert_eq!(again.device_id, 1);
    let fresh = Dev::new(&url, BOB).await;
    let kept = [group.group_id, closed.group_id];
    assert!(fresh.client.group_list().await.unwrap().iter().all(|g| kept.contains(&g.group_id)));
    let alice_again = Dev::without_retries_with(&url, again).await;
    assert!(alice_again.client.group_list().await.unwrap().is_empty(), "the new account has no groups");
    assert!(server.ctx().store.erasures_pending().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deletion_code_is_code_expired() {
    // Proves: a code past its lifetime is CODE_EXPIRED (ask for a new one), and nothing is
    // deleted.
    let server = TestServer::start_with_manual_clock(|_| {}).await;
    let alice = server.login(ALICE, "phone").await;
    request_code(&server, &alice.access_token).await.expect_status(200);
    server.advance_clock_ms(301_000);
    let e = delete(&server, &alice.access_token, DEV_CODE).await.expect_error(401, ErrorCode::CodeExpired);
    assert!(e.message.contains("request a new one"), "{}", e.message);
    server.get("/v1/devices", Some(&alice.access_token)).await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_codes_are_rate_limited_per_account() {
    // Proves: past `account.deletion_codes_per_account_per_hour` a request is RATE_LIMITED with
    // a retry time; a bad body is INVALID_ARGUMENT; no token is UNAUTHENTICATED.
    let server = TestServer::start_with(|c| c.account.deletion_codes_per_account_per_hour = 2).await;
    let alice = server.login(ALICE, "phone").await;
    for _ in 0..2 {
        request_code(&server, &alice.access_token).await.expect_status(200);
    }
    let limited = request_code(&server, &alice.access_token).await.expect_error(429, ErrorCode::RateLimited);
    assert!(limited.retry_after_ms.unwrap_or(0) > 0);
    delete(&server, &alice.access_token, "").await.expect_error(400, ErrorCode::InvalidArgument);
    let anonymous = server.post_authorized::<()>("/v1/account/delete/request-code", None, None).await;
    anonymous.expect_error(401, ErrorCode::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_interrupted_after_its_mark_is_finished_by_the_next_start() {
    // Proves: with only the durable mark written (a crash right after it), the phone cannot
    // log in (ACCOUNT_DELETING, retryable), and the restarted server finishes the deletion:
    // the account is gone and the phone logs in as a new account.
    let mut server = TestServer::start().await;
    let alice = server.login(ALICE, "phone").await;
    let account = server.ctx().store.account(alice.account_id).await.unwrap().unwrap();
    server.ctx().store.begin_erasure(&account, 1).await.unwrap();
    server.request_code(ALICE).await.expect_status(200);
    let refused = server.verify(ALICE, DEV_CODE, "x").await.expect_error(409, ErrorCode::AccountDeleting);
    assert!(refused.retry_after_ms.is_some());

    server.restart().await;
    let store = server.ctx().store.clone();
    wait_until("the interrupted deletion finished", Duration::from_secs(20), || {
        let store = store.clone();
        async move { store.erasures_pending().await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(server.ctx().store.account(alice.account_id).await.unwrap(), None);
    let again = server.login(ALICE, "phone").await;
    assert_ne!(again.account_id, alice.account_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iris_account_delete_deletes_and_removes_the_profile() {
    // Proves: `iris account delete` refuses without --yes, then (dev server: the fixed code)
    // deletes the profile's account, prints its id and removes the profile.
    let server = TestServer::start().await;
    let url = server.base_url();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("alice.json");
    let profile_arg = profile.to_string_lossy().into_owned();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_iris")).args(args).output().unwrap();
    let login = run(&["login", "--server", &url, "--phone", ALICE, "--profile", &profile_arg, "--plaintext"]);
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));

    let unconfirmed = run(&["account", "delete", "--profile", &profile_arg]);
    assert!(!unconfirmed.status.success());
    assert!(profile.exists());
    let deleted = run(&["account", "delete", "--profile", &profile_arg, "--yes"]);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let line: serde_json::Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(line["phone"], ALICE);
    let account = line["deleted_account_id"].as_u64().unwrap();
    assert!(!profile.exists(), "the profile of a deleted account is removed");
    assert_eq!(server.ctx().store.account(account).await.unwrap(), None);
}
