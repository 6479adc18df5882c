//! The HTTP API: one-time codes, device registration and limits, token refresh and expiry,
//! revocation, account lookup, health and info — each error with its exact status and code.

mod common;

use common::*;
use iris_proto::http::{AccountInfo, CodeRequested, Credentials, DeviceInfo, RefreshRequest, ServerInfo};
use iris_proto::pb::ErrorCode;
use iris_server::config::{ConfigError, RateLimitConfig};
use iris_server::StartError;

const ALICE: &str = "+15550000001";
const BOB: &str = "+15550000002";

async fn refresh(server: &TestServer, refresh_token: &str) -> Reply {
    server.post("/v1/auth/refresh", &RefreshRequest { refresh_token: refresh_token.to_owned() }).await
}

async fn devices(server: &TestServer, creds: &Credentials) -> Vec<DeviceInfo> {
    server.get("/v1/devices", Some(&creds.access_token)).await.expect_json(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_phone_is_invalid_argument() {
    // Proves: request-code and verify refuse a non-E.164 phone with 400 ERROR_CODE_INVALID_ARGUMENT.
    let server = TestServer::start().await;
    for phone in ["15550000001", "+1555-0000", "+123", ""] {
        server.request_code(phone).await.expect_error(400, ErrorCode::InvalidArgument);
        server.verify(phone, DEV_CODE, "x").await.expect_error(400, ErrorCode::InvalidArgument);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_an_api_error() {
    // Proves: a body that is not the expected JSON is 400 with an ApiError body (code ERROR_CODE_INVALID_ARGUMENT), like every other error.
    let server = TestServer::start().await;
    server.post_raw("/v1/auth/request-code", "{not json").await.expect_error(400, ErrorCode::InvalidArgument);
    server
        .post_raw("/v1/auth/verify", r#"{"phone": "+15550000001"}"#)
        .await
        .expect_error(400, ErrorCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_is_invalid_code_and_five_wrong_guesses_burn_the_code() {
    // Proves: a wrong code is 401 ERROR_CODE_INVALID_CODE, and after 5 wrong guesses even the right code fails (no account is created).
    let server = TestServer::start().await;
    server.verify(ALICE, DEV_CODE, "x").await.expect_error(401, ErrorCode::InvalidCode);

    let requested: CodeRequested = server.request_code(ALICE).await.expect_json(200);
    assert_eq!(requested.expires_in_s, 300);
    for left in (0..5).rev() {
        let e = server.verify(ALICE, "123456", "x").await.expect_error(401, ErrorCode::InvalidCode);
        assert_eq!(e.message, format!("wrong code, {left} attempts left"));
    }
    server.verify(ALICE, DEV_CODE, "x").await.expect_error(401, ErrorCode::InvalidCode);

    let bob = server.login(BOB, "bob").await;
    server.get(&format!("/v1/accounts/{ALICE}"), Some(&bob.access_token)).await.expect_error(404, ErrorCode::NotFound);

    // A fresh code works, and is single-use.
    server.request_code(ALICE).await.expect_status(200);
    server.verify(ALICE, "999999", "x").await.expect_error(401, ErrorCode::InvalidCode);
    let alice: Credentials = server.verify(ALICE, DEV_CODE, "x").await.expect_json(200);
    assert_eq!(alice.device_id, 1);
    server.verify(ALICE, DEV_CODE, "x").await.expect_error(401, ErrorCode::InvalidCode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_expires_after_five_minutes() {
    // Proves: a code is valid until 5 min - 1 ms after it was issued and refused (401 INVALID_CODE) at 5 min + 1 ms.
    let server = TestServer::start_with_manual_clock(|_| {}).await;
    server.request_code(ALICE).await.expect_status(200);
    server.request_code(BOB).await.expect_status(200);
    server.advance_clock_ms(5 * 60 * 1000 - 1);
    server.verify(ALICE, DEV_CODE, "alice").await.expect_status(200);
    server.advance_clock_ms(2);
    server.verify(BOB, DEV_CODE, "bob").await.expect_error(401, ErrorCode::InvalidCode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_are_rate_limited_per_phone() {
    // Proves: past code_requests_per_phone_per_hour a phone gets 429 ERROR_CODE_RATE_LIMITED with retry_after_ms > 0 and Retry-After; other phones are unaffected.
    let server = TestServer::start_with(|c| c.rate_limits.code_requests_per_phone_per_hour = 2).await;
    server.request_code(ALICE).await.expect_status(200);
    server.request_code(ALICE).await.expect_status(200);
    let reply = server.request_code(ALICE).await;
    let e = reply.expect_error(429, ErrorCode::RateLimited);
    let retry_after_ms = e.retry_after_ms.expect("retry_after_ms is set");
    assert!(retry_after_ms > 0);
    assert!(retry_after_ms <= 30 * 60 * 1000, "one token per 30 min: {retry_after_ms}");
    let header: u64 = reply.retry_after.as_deref().expect("Retry-After header").parse().unwrap();
    assert_eq!(header, retry_after_ms.div_ceil(1000));
    server.request_code(BOB).await.expect_status(200);
    // The code issued before the limit still works.
    server.verify(ALICE, DEV_CODE, "alice").await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_attempts_are_rate_limited_per_ip() {
    // Proves: past verify_attempts_per_ip_per_minute, verify answers 429 ERROR_CODE_RATE_LIMITED even for a right code.
    let server = TestServer::start_with(|c| c.rate_limits.verify_attempts_per_ip_per_minute = 3).await;
    server.request_code(ALICE).await.expect_status(200);
    for _ in 0..3 {
        server.verify(ALICE, "123456", "x").await.expect_error(401, ErrorCode::InvalidCode);
    }
    let e = server.verify(ALICE, DEV_CODE, "x").await.expect_error(429, ErrorCode::RateLimited);
    assert!(e.retry_after_ms.unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_are_the_seeds() {
    // Proves: with the default [rate_limits], a phone gets 3 codes per hour (seed 001), the 4th is 429 ERROR_CODE_RATE_LIMITED.
    let server = TestServer::start_with(|c| c.rate_limits = RateLimitConfig::default()).await;
    for _ in 0..3 {
        server.request_code(ALICE).await.expect_status(200);
    }
    let e = server.request_code(ALICE).await.expect_error(429, ErrorCode::RateLimited);
    assert!(e.retry_after_ms.unwrap() > 0);
    assert_eq!(
        RateLimitConfig::default().registrations_per_ip_per_day,
        10,
        "seed 001: 10 registrations per IP per day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_accounts_are_rate_limited_per_ip() {
    // Proves: past registrations_per_ip_per_day a verify that would create an account is 429 ERROR_CODE_RATE_LIMITED with retry_after_ms, and nothing is created; linking a device to an existing account still works.
    let server = TestServer::start_with(|c| c.rate_limits.registrations_per_ip_per_day = 2).await;
    let alice = server.login(ALICE, "alice").await;
    server.request_code(BOB).await.expect_status(200);
    server.verify(BOB, DEV_CODE, "phone").await.expect_status(200);
    let carol = "+15550000003";
    server.request_code(carol).await.expect_status(200);
    let e = server.verify(carol, DEV_CODE, "phone").await.expect_error(429, ErrorCode::RateLimited);
    assert!(e.retry_after_ms.unwrap() > 60 * 60 * 1000, "2 per day: one back in 12 h");
    server
        .get(&format!("/v1/accounts/{}", carol.replace('+', "%2B")), Some(&alice.access_token))
        .await
        .expect_error(404, ErrorCode::NotFound);
    server.request_code(ALICE).await.expect_status(200);
    // A companion of an existing account: a pending link (202), not a registration.
    server.verify(ALICE, DEV_CODE, "laptop").await.expect_status(202);
    assert_eq!(server.login(ALICE, "laptop").await.device_id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_device_is_primary_and_an_account_has_at_most_five() {
    // Proves: the first verify creates device 1 (primary), later ones get 2..=5 (not primary), the 6th is 409 ERROR_CODE_DEVICE_LIMIT, and ids are not reused after a revoke.
    let server = TestServer::start().await;
    let mut creds = Vec::new();
    for i in 1..=5u32 {
        let c = server.login(ALICE, &format!("device {i}")).await;
        assert_eq!(c.device_id, i);
        assert_eq!(c.phone, ALICE);
        creds.push(c);
    }
    assert!(creds.iter().all(|c| c.account_id == creds[0].account_id));
    let listed = devices(&server, &creds[3]).await;
    let summary: Vec<(u32, bool, &str)> = listed.iter().map(|d| (d.device_id, d.primary, d.name.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (1, true, "device 1"),
            (2, false, "device 2"),
            (3, false, "device 3"),
            (4, false, "device 4"),
            (5, false, "device 5")
        ]
    );

    server.request_code(ALICE).await.expect_status(200);
    server.verify(ALICE, DEV_CODE, "device 6").await.expect_error(409, ErrorCode::DeviceLimit);

    server.delete("/v1/devices/5", &creds[0].access_token).await.expect_status(204);
    let sixth = server.login(ALICE, "device 6").await;
    assert_eq!(sixth.device_id, 6);
    let ids: Vec<u32> = devices(&server, &sixth).await.iter().map(|d| d.device_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_the_refresh_token() {
    // Proves: a refresh token buys new credentials once; reusing it is 401 ERROR_CODE_UNAUTHENTICATED, and the new one works.
    let server = TestServer::start().await;
    let first = server.login(ALICE, "alice").await;
    let second: Credentials = refresh(&server, &first.refresh_token).await.expect_json(200);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!((second.account_id, second.device_id, second.phone.as_str()), (first.account_id, 1, ALICE));
    assert_eq!(devices(&server, &second).await.len(), 1);
    let (mut conn, _) = server.connect_as(&second).await;
    conn.ping(1).await;

    refresh(&server, &first.refresh_token).await.expect_error(401, ErrorCode::Unauthenticated);
    refresh(&server, "not a token").await.expect_error(401, ErrorCode::Unauthenticated);
    let third: Credentials = refresh(&server, &second.refresh_token).await.expect_json(200);
    assert_ne!(third.refresh_token, second.refresh_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_unauthenticated() {
    // Proves: an access token works until its TTL and then fails Hello and HTTP with UNAUTHENTICATED; a refresh gives a working one.
    let server = TestServer::start_with_manual_clock(|c| c.auth.access_token_ttl_s = 600).await;
    let alice = server.login(ALICE, "alice").await;
    server.advance_clock_ms(600_000 - 1);
    let (mut conn, _) = server.connect_as(&alice).await;
    conn.ping(1).await;

    server.advance_clock_ms(1);
    let mut late = server.connect().await;
    late.send_ops(vec![hello_op(1, &alice.access_token, alice.device_id)]).await;
    let err = late.expect_fatal(ErrorCode::Unauthenticated).await;
    assert!(err.message.contains("expired"), "{err:?}");
    server.get("/v1/devices", Some(&alice.access_token)).await.expect_error(401, ErrorCode::Unauthenticated);

    let renewed: Credentials = refresh(&server, &alice.refresh_token).await.expect_json(200);
    let (mut conn, _) = server.connect_as(&renewed).await;
    conn.ping(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_primary_revokes_other_devices_and_revocation_is_immediate() {
    // Proves: a linked device revoking another is 403 PERMISSION_DENIED; the primary's revoke is 204, closes the device's live connection with DEVICE_REVOKED and makes its tokens useless.
    let server = TestServer::start().await;
    let primary = server.login(ALICE, "phone").await;
    let laptop = server.login(ALICE, "laptop").await;
    let tablet = server.login(ALICE, "tablet").await;
    let (mut laptop_conn, _) = server.connect_as(&laptop).await;
    let (mut tablet_conn, _) = server.connect_as(&tablet).await;
    let added = laptop_conn.expect_delivery().await; // the tablet's link, announced to the laptop
    assert!(matches!(added[0].body, Some(iris_proto::pb::inbox_item::Body::DeviceChange(_))), "{added:?}");

    server.delete("/v1/devices/3", &laptop.access_token).await.expect_error(403, ErrorCode::PermissionDenied);
    server.delete("/v1/devices/1", &laptop.access_token).await.expect_error(403, ErrorCode::PermissionDenied);
    tablet_conn.ping(1).await;

    server.delete("/v1/devices/2", &primary.access_token).await.expect_status(204);
    laptop_conn.expect_fatal(ErrorCode::DeviceRevoked).await;
    let mut again = server.connect().await;
    again.send_ops(vec![hello_op(1, &laptop.access_token, laptop.device_id)]).await;
    again.expect_fatal(ErrorCode::DeviceRevoked).await;
    server.get("/v1/devices", Some(&laptop.access_token)).await.expect_error(403, ErrorCode::DeviceRevoked);
    refresh(&server, &laptop.refresh_token).await.expect_error(401, ErrorCode::Unauthenticated);
    server.delete("/v1/devices/2", &primary.access_token).await.expect_error(404, ErrorCode::NotFound);
    server.delete("/v1/devices/9", &primary.access_token).await.expect_error(404, ErrorCode::NotFound);

    tablet_conn.ping(2).await;
    let ids: Vec<u32> = devices(&server, &primary).await.iter().map(|d| d.device_id).collect();
    assert_eq!(ids, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_may_revoke_itself() {
    // Proves: a linked device may revoke itself (204), after which its token is DEVICE_REVOKED.
    let server = TestServer::start().await;
    let _primary = server.login(ALICE, "phone").await;
    let laptop = server.login(ALICE, "laptop").await;
    server.delete("/v1/devices/2", &laptop.access_token).await.expect_status(204);
    server.get("/v1/devices", Some(&laptop.access_token)).await.expect_error(403, ErrorCode::DeviceRevoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_cannot_revoke_itself() {
    // Proves: the primary's self-revocation is refused (403 PERMISSION_DENIED) and it stays usable.
    let server = TestServer::start().await;
    let primary = server.login(ALICE, "phone").await;
    server.delete("/v1/devices/1", &primary.access_token).await.expect_error(403, ErrorCode::PermissionDenied);
    server.get("/v1/devices", Some(&primary.access_token)).await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_lookup_returns_current_devices() {
    // Proves: GET /v1/accounts/{phone} returns the account id and current device ids, 404 NOT_FOUND for an unknown phone, 400 for a malformed one and 401 without a token.
    let server = TestServer::start().await;
    let alice1 = server.login(ALICE, "phone").await;
    let _alice2 = server.login(ALICE, "laptop").await;
    let bob = server.login(BOB, "bob").await;

    for path in [format!("/v1/accounts/{ALICE}"), format!("/v1/accounts/{}", ALICE.replace('+', "%2B"))] {
        let info: AccountInfo = server.get(&path, Some(&bob.access_token)).await.expect_json(200);
        assert_eq!(
            info,
            AccountInfo { account_id: alice1.account_id, phone: ALICE.to_owned(), device_ids: vec![1, 2] }
        );
    }
    server.delete("/v1/devices/2", &alice1.access_token).await.expect_status(204);
    let info: AccountInfo =
        server.get(&format!("/v1/accounts/{ALICE}"), Some(&bob.access_token)).await.expect_json(200);
    assert_eq!(info.device_ids, vec![1]);

    server.get("/v1/accounts/%2B15559999999", Some(&bob.access_token)).await.expect_error(404, ErrorCode::NotFound);
    server.get("/v1/accounts/12345", Some(&bob.access_token)).await.expect_error(400, ErrorCode::InvalidArgument);
    server.get(&format!("/v1/accounts/{ALICE}"), None).await.expect_error(401, ErrorCode::Unauthenticated);
    server.get(&format!("/v1/accounts/{ALICE}"), Some("v1.bogus")).await.expect_error(401, ErrorCode::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_200() {
    // Proves: /healthz and /readyz answer 200 on a running server.
    let server = TestServer::start().await;
    assert_eq!(server.get("/healthz", None).await.expect_status(200).text(), "ok");
    assert_eq!(server.get("/readyz", None).await.expect_status(200).text(), "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_says_where_and_how_to_connect() {
    // Proves: /v1/info gives the node, the bound TCP address, TLS off, the WebSocket path, versions ["1.0"] and dev mode.
    let server = TestServer::start().await;
    let info: ServerInfo = server.get("/v1/info", None).await.expect_json(200);
    assert_eq!(
        info,
        ServerInfo {
            node_id: "node-0".into(),
            tcp_addr: server.tcp_addr.to_string(),
            tls: false,
            ws_path: "/v1/ws".into(),
            versions: vec!["1.0".into()],
            dev: true,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_non_loopback_addresses() {
    // Proves: start() with dev=true and a non-loopback HTTP or TCP address fails with a config error instead of serving.
    let dir = tempfile::tempdir().unwrap();
    for public in [true, false] {
        let mut config = test_config(dir.path());
        if public {
            config.http = "0.0.0.0:0".parse().unwrap();
        } else {
            config.listen = "0.0.0.0:0".parse().unwrap();
        }
        match iris_server::start(config, iris_server::Dependencies::default()).await {
            Err(StartError::Config(ConfigError::Invalid(why))) => assert!(why.contains("loopback"), "{why}"),
            Err(other) => panic!("expected a config error, got {other}"),
            Ok(_) => panic!("dev mode must not serve on 0.0.0.0"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_additions_count_against_the_discovery_limit() {
    // Proves: a ContactsUpdate that makes accounts contacts takes one discovery request (as a
    // discovery of their phones would), while one that adds only existing contacts or only
    // removes is free; past the limit the addition is RATE_LIMITED and changes nothing; so
    // adding sequential account ids cannot learn phones (the list answers them) or profiles
    // (contacts read them free) outside the limit.
    let server = TestServer::start_with(|c| c.rate_limits.discover_requests_per_account_per_day = 2).await;
    let alice = server.login(ALICE, "alice").await;
    let bob = server.login(BOB, "bob").await;
    let carol = server.login("+15550000003", "carol").await;
    let dave = server.login("+15550000004", "dave").await;
    let contacts = &server.ctx().sessions.contacts;
    let me = iris_store::DeviceAddr::new(alice.account_id, alice.device_id);
    let update = |add: Vec<u64>, remove: Vec<u64>| iris_proto::pb::ContactsUpdate {
        add_account_ids: add,
        remove_account_ids: remove,
    };
    let listed = |l: iris_proto::pb::ContactList| l.contacts.iter().map(|c| c.account_id).collect::<Vec<_>>();
    let (b, c, d) = (bob.account_id, carol.account_id, dave.account_id);
    assert_eq!(listed(contacts.update(me, update(vec![b, c], vec![])).await.unwrap()).len(), 2, "one request");
    contacts.update(me, update(vec![b], vec![c])).await.unwrap();
    contacts.update(me, update(vec![b], vec![])).await.unwrap();
    assert_eq!(listed(contacts.update(me, update(vec![c], vec![])).await.unwrap()).len(), 2, "the second");
    let refused = contacts.update(me, update(vec![d], vec![])).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::RateLimited, "{refused}");
    assert!(!listed(contacts.list(alice.account_id).await.unwrap()).contains(&d), "nothing changed");
    let bobs = iris_store::DeviceAddr::new(bob.account_id, bob.device_id);
    contacts.update(bobs, update(vec![d], vec![])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_lookups_count_against_the_discovery_limit() {
    // Proves: GET /v1/accounts/{phone} of a stranger, found or not, takes one of discover_requests_per_account_per_day (429 ERROR_CODE_RATE_LIMITED past it, retry in hours); the caller's own phone and its contacts stay free; other accounts have their own budget.
    let server = TestServer::start_with(|c| c.rate_limits.discover_requests_per_account_per_day = 3).await;
    let alice = server.login(ALICE, "alice").await;
    let bob = server.login(BOB, "bob").await;
    let carol = server.login("+15550000003", "carol").await;
    // Adding a contact takes one request too (see `contact_additions_count_against_the_discovery_limit`).
    let add = iris_proto::pb::ContactsUpdate { add_account_ids: vec![carol.account_id], ..Default::default() };
    let me = iris_store::DeviceAddr::new(alice.account_id, alice.device_id);
    server.ctx().sessions.contacts.update(me, add).await.unwrap();
    let lookup = |who: &Credentials, phone: &str| {
        let path = format!("/v1/accounts/{}", phone.replace('+', "%2B"));
        let token = who.access_token.clone();
        let server = &server;
        async move { server.get(&path, Some(&token)).await }
    };
    lookup(&alice, BOB).await.expect_status(200);
    lookup(&alice, "+15550000099").await.expect_error(404, ErrorCode::NotFound);
    let e = lookup(&alice, BOB).await.expect_error(429, ErrorCode::RateLimited);
    assert!(e.retry_after_ms.unwrap() > 3_600_000, "{e:?}");
    lookup(&alice, ALICE).await.expect_status(200);
    let info: AccountInfo = lookup(&alice, "+15550000003").await.expect_json(200);
    assert_eq!(info.account_id, carol.account_id);
    lookup(&bob, ALICE).await.expect_status(200);
}
