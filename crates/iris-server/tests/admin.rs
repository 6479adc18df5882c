//! The operators' admin API: the router called without a socket (token, lookup, revocation), the
//! public port refusing its routes, the review queue, and a lookup in cluster mode naming the node that holds each
//! device. Runs on the engine `IRIS_TEST_ENGINE` names (embedded or cluster), except the
//! two-node test, which always starts its own PostgreSQL shards and Redis Cluster.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt as _;
use iris_client::{Event, HttpApi};
use iris_proto::admin::{AdminAbuseChange, AdminAccount, AdminDeviceRevoked, AdminReports, AdminReviewQueue};
use iris_proto::http::ApiError;
use iris_proto::pb::{inbox_item, DeviceChangeType, ErrorCode};
use iris_server::admin::{admin_router, AdminState};
use iris_server::config::Config;
use iris_testkit::wait::wait_until;
use tower::ServiceExt as _;

const TOKEN: &str = "operator-token-0123456789";
const ALICE: &str = "+15550000701";
const BOB: &str = "+15550000702";

/// An admin listener on port 0 with [`TOKEN`].
fn with_admin(c: &mut Config) {
    c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    c.admin.token = Some(TOKEN.to_owned());
}

/// One request through the admin router of `server`, without a socket: status and body.
async fn call(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
    call_with(server, method, path, token, None).await
}

/// [`call`] with a JSON body.
async fn call_with(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    json_body: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let router = admin_router(AdminState::new(server.ctx().clone(), TOKEN));
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match json_body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_owned())
        }
        None => Body::empty(),
    };
    let resp = router.oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn json<T: serde::de::DeserializeOwned>((status, body): (StatusCode, Vec<u8>), want: StatusCode) -> T {
    assert_eq!(status, want, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

fn error(reply: (StatusCode, Vec<u8>), want: StatusCode, code: ErrorCode) -> ApiError {
    let e: ApiError = json(reply, want);
    assert_eq!(e.code, code.as_str_name(), "{e:?}");
    assert!(!e.message.is_empty());
    e
}

async fn lookup(server: &TestServer, key: &str) -> AdminAccount {
    json(call(server, "GET", &format!("/admin/v1/accounts/{key}"), Some(TOKEN)).await, StatusCode::OK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_are_refused_before_any_route() {
    // Proves: no token, a wrong token, a token differing in its last character or a non-bearer
    // scheme are 401 UNAUTHENTICATED with `WWW-Authenticate: Bearer` on known and unknown routes
    // alike, and are counted; with the token an unknown route is 404 and /metrics answers.
    let server = TestServer::start().await;
    let creds = server.login(ALICE, "phone").await;
    let path = format!("/admin/v1/accounts/{}", creds.account_id);
    let wrong = &TOKEN[..TOKEN.len() - 1];
    for token in [None, Some("nope"), Some(wrong), Some(&format!("{TOKEN}9")[..])] {
        error(call(&server, "GET", &path, token).await, StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated);
    }
    error(call(&server, "GET", "/admin/v1/nothing", None).await, StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated);
    let router = admin_router(AdminState::new(server.ctx().clone(), TOKEN));
    let basic = Request::get(&path).header("authorization", format!("Basic {TOKEN}")).body(Body::empty()).unwrap();
    let resp = router.oneshot(basic).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");

    error(call(&server, "GET", "/admin/v1/nothing", Some(TOKEN)).await, StatusCode::NOT_FOUND, ErrorCode::NotFound);
    let (status, body) = call(&server, "GET", "/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("iris_admin_refused_total 6\n"), "six refusals counted:\n{text}");
    let found: AdminAccount = json(call(&server, "GET", &path, Some(TOKEN)).await, StatusCode::OK);
    assert_eq!(found.phone, ALICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_shows_devices_connections_inbox_depth_and_limits_hit() {
    // Proves: an account is found by id and by phone alike; each active device shows its link
    // time, the node its connection is on (this one) or none, its inbox depth (two more after
    // two messages to a device that never connected) and, once a session ended, when; the code
    // limit that refused the phone is listed; an unknown account is 404, a malformed key 400.
    let server = TestServer::start_with(|c| c.rate_limits.code_requests_per_phone_per_hour = 3).await;
    let url = server.base_url();
    let alice = server.login(ALICE, "phone").await;
    let laptop = link_device(&url, &alice, "laptop").await;
    let bob = server.login(BOB, "bob").await;
    let (alice_client, _alice_events) = connect(&url, &alice).await;
    let by_id = lookup(&server, &alice.account_id.to_string()).await;
    let by_phone = lookup(&server, "%2B15550000701").await;
    assert_eq!(by_phone, by_id);
    assert_eq!((by_id.account_id, by_id.phone.as_str(), by_id.answered_by_node), (alice.account_id, ALICE, 0));
    let expected_source = if iris_testkit::engine::is_cluster() { "cluster registry" } else { "this node" };
    assert_eq!(by_id.connections_from, expected_source);
    let ids: Vec<(u32, bool, &str)> = by_id.devices.iter().map(|d| (d.device_id, d.primary, d.name.as_str())).collect();
    assert_eq!(ids, [(1, true, "phone"), (laptop.device_id, false, "laptop")]);
    assert_eq!(by_id.devices[0].connected_node, Some(0));
    assert_eq!(by_id.devices[1].connected_node, None);
    assert!(by_id.devices.iter().all(|d| d.linked_at_ms > 0 && d.linked_at_ms <= by_id.devices[1].linked_at_ms));
    assert_eq!(by_id.devices[1].last_seen_ms, None);
    let depth_before = by_id.devices[1].inbox_depth;

    let (bob_client, _bob_events) = connect(&url, &bob).await;
    for text in ["one", "two"] {
        bob_client.send(alice.account_id, text.as_bytes().to_vec()).await.unwrap();
    }
    let after = lookup(&server, ALICE).await;
    assert_eq!(after.devices[1].inbox_depth, depth_before + 2);
    assert!(after.limits_hit.is_empty(), "{:?}", after.limits_hit);

    let http = HttpApi::new(&url).unwrap();
    let mut refused = 0;
    for _ in 0..5 {
        if http.request_code(ALICE).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 1, "the third code of the hour is the last one");
    let hits = lookup(&server, ALICE).await.limits_hit;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!((hits[0].limit.as_str(), hits[0].subject.as_str()), ("code requests per phone", "phone"));
    assert_eq!(hits[0].refusals, refused);

    alice_client.close().await;
    wait_until("alice's phone is seen leaving", Duration::from_secs(10), || async {
        lookup(&server, ALICE).await.devices[0].last_seen_ms.is_some()
    })
    .await;

    error(
        call(&server, "GET", "/admin/v1/accounts/%2B15559999999", Some(TOKEN)).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    error(
        call(&server, "GET", "/admin/v1/accounts/999999999", Some(TOKEN)).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    error(
        call(&server, "GET", "/admin/v1/accounts/alice", Some(TOKEN)).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidArgument,
    );
    error(
        call(&server, "GET", "/admin/v1/accounts/%2B12", Some(TOKEN)).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidArgument,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_closes_the_devices_session_and_tells_the_others() {
    // Proves: an operator's revocation ends the device's connection for good (DEVICE_REVOKED),
    // its token stops working, the primary gets a durable DeviceChange REMOVED by the server
    // (by 0), the lookup no longer lists it; revoking it again, or a device that never existed,
    // is 404, and a device number that is not one is 400.
    let server = TestServer::start().await;
    let url = server.base_url();
    let alice = server.login(ALICE, "phone").await;
    let (phone, mut phone_events) = connect(&url, &alice).await;
    let laptop = link_device(&url, &alice, "laptop").await;
    let (_laptop, mut laptop_events) = connect(&url, &laptop).await;
    let change = |event: &Event| match event.item().and_then(|i| i.body.clone()) {
        Some(inbox_item::Body::DeviceChange(c)) => Some((c.device_id, c.r#type, c.by_device_id)),
        _ => None,
    };
    let added = recv_until(&phone, &mut phone_events, |e| matches!(e, Event::Account(_))).await;
    assert_eq!(change(&added), Some((laptop.device_id, DeviceChangeType::Added as i32, 1)));

    let path = format!("/admin/v1/accounts/{}/devices/{}/revoke", alice.account_id, laptop.device_id);
    let revoked: AdminDeviceRevoked = json(call(&server, "POST", &path, Some(TOKEN)).await, StatusCode::OK);
    assert_eq!(
        revoked,
        AdminDeviceRevoked { account_id: alice.account_id, device_id: laptop.device_id, name: "laptop".into() }
    );

    let end = tokio::time::timeout(PATIENCE, async {
        loop {
            match laptop_events.next().await {
                Some(Event::Fatal(e)) => return e,
                Some(_) => continue,
                None => panic!("the laptop's events ended without a fatal error"),
            }
        }
    })
    .await
    .expect("the laptop's session is closed");
    assert_eq!(end.code, ErrorCode::DeviceRevoked as i32, "{end:?}");
    let removed = recv_until(&phone, &mut phone_events, |e| matches!(e, Event::Account(_))).await;
    assert_eq!(change(&removed), Some((laptop.device_id, DeviceChangeType::Removed as i32, 0)));
    server.get("/v1/devices", Some(&laptop.access_token)).await.expect_status(403);
    let ids: Vec<u32> = lookup(&server, ALICE).await.devices.iter().map(|d| d.device_id).collect();
    assert_eq!(ids, [1]);

    error(call(&server, "POST", &path, Some(TOKEN)).await, StatusCode::NOT_FOUND, ErrorCode::NotFound);
    let never = format!("/admin/v1/accounts/{}/devices/9/revoke", alice.account_id);
    error(call(&server, "POST", &never, Some(TOKEN)).await, StatusCode::NOT_FOUND, ErrorCode::NotFound);
    let bad = format!("/admin/v1/accounts/{}/devices/x/revoke", alice.account_id);
    error(call(&server, "POST", &bad, Some(TOKEN)).await, StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument);
    let text = server.get("/metrics", None).await.text();
    assert!(text.contains("iris_admin_revocations_total 1\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_port_serves_no_admin_route_and_metrics_move_to_the_admin_listener() {
    // Proves: over real sockets, the public HTTP port answers the admin routes 404 even with
    // the admin token, and no longer serves /metrics once the admin listener does (unless
    // `metrics_on_public_port`); the admin listener serves them with the token only.
    let server = TestServer::start_with(with_admin).await;
    let alice = server.login(ALICE, "phone").await;
    let http = iris_client::TlsTrust::none().http_builder().build().unwrap();
    let admin_path = format!("/admin/v1/accounts/{}", alice.account_id);
    let public = http.get(server.url(&admin_path)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let revoke = format!("{admin_path}/devices/1/revoke");
    assert_eq!(http.post(server.url(&revoke)).bearer_auth(TOKEN).send().await.unwrap().status(), 404);
    server.get("/metrics", None).await.expect_error(404, ErrorCode::NotFound);
    assert_eq!(
        server.get("/v1/devices", Some(&alice.access_token)).await.expect_json::<Vec<serde_json::Value>>(200).len(),
        1
    );

    let admin = server.admin_url();
    let found: AdminAccount =
        http.get(format!("{admin}{admin_path}")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(found.account_id, alice.account_id);
    assert_eq!(http.get(format!("{admin}/metrics")).send().await.unwrap().status(), 401);
    let metrics = http.get(format!("{admin}/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("iris_sessions "));

    let both = TestServer::start_with(|c| {
        with_admin(c);
        c.admin.metrics_on_public_port = true;
    })
    .await;
    both.get("/metrics", None).await.expect_status(200);
    let plain = TestServer::start().await;
    assert!(plain.admin_addr.is_none());
    plain.get("/metrics", None).await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_the_lookup_names_the_node_holding_each_device() {
    // Proves: with two nodes on one PostgreSQL store and Redis Cluster, a lookup on node 1
    // names node 2 for a device connected there (the session registry), and none once it left.
    let pg = iris_testkit::postgres::PgShards::start(2);
    let redis = iris_testkit::redis::RedisCluster::start();
    let namespace = format!("admin{}", std::process::id());
    let node = |id: u16| {
        let (pg, redis, namespace) = (pg.urls(), redis.urls(), namespace.clone());
        move |c: &mut Config| {
            c.node_id = id;
            c.cluster.store_urls = pg;
            c.cluster.redis_urls = redis;
            c.cluster.namespace = namespace;
            c.auth.token_key_hex = Some("7a".repeat(32));
        }
    };
    let one = TestServer::start_with(node(1)).await;
    let two = TestServer::start_with(node(2)).await;
    let alice = two.login(ALICE, "phone").await;
    let (client, _events) = connect(&two.base_url(), &alice).await;
    let key = alice.account_id.to_string();
    wait_until("node 1 sees alice's phone on node 2", Duration::from_secs(10), || async {
        lookup(&one, &key).await.devices[0].connected_node == Some(2)
    })
    .await;
    let seen = lookup(&one, &key).await;
    assert_eq!((seen.connections_from.as_str(), seen.answered_by_node), ("cluster registry", 1));
    client.close().await;
    wait_until("alice's phone leaves the registry", Duration::from_secs(10), || async {
        lookup(&one, &key).await.devices[0].connected_node.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_restrictions_and_reports_through_the_admin_api() {
    // Proves: a clean account looks clean; `suspend` records `operator: <reason>` and refuses
    // the account's sends, a second `suspend` keeps the first (`changed: false`); `unsuspend`
    // lifts it; `lift` of a restriction not in force is `changed: false`; `reports` of an account
    // nobody reported is empty; bad input is 400 INVALID_ARGUMENT (no body, an empty or too long
    // reason, an unknown restriction, a limit of 0 or 101) and an unknown account 404.
    let server = TestServer::start().await;
    let url = server.base_url();
    let alice = server.login(ALICE, "phone").await;
    let bob = server.login(BOB, "bob").await;
    let (client, _events) = connect(&url, &alice).await;
    let base = format!("/admin/v1/accounts/{}", alice.account_id);
    assert_eq!(lookup(&server, ALICE).await.abuse, Default::default());

    let suspend = |reason: &'static str| {
        let (server, path) = (&server, format!("{base}/suspend"));
        async move {
            let body = serde_json::json!({ "reason": reason }).to_string();
            call_with(server, "POST", &path, Some(TOKEN), Some(&body)).await
        }
    };
    let first: AdminAbuseChange = json(suspend("ticket 1").await, StatusCode::OK);
    assert!(first.changed);
    assert_eq!(first.abuse.suspended.as_ref().map(|s| s.reason.as_str()), Some("operator: ticket 1"));
    let again: AdminAbuseChange = json(suspend("ticket 2").await, StatusCode::OK);
    assert_eq!((again.changed, again.abuse.suspended), (false, first.abuse.suspended));
    let refused = client.send(bob.account_id, "x").await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::AccountSuspended));
    let lifted: AdminAbuseChange =
        json(call(&server, "POST", &format!("{base}/unsuspend"), Some(TOKEN)).await, StatusCode::OK);
    assert!(lifted.changed && lifted.abuse.suspended.is_none());
    client.send(bob.account_id, "back").await.unwrap();
    let lift: AdminAbuseChange =
        json(call(&server, "POST", &format!("{base}/restrictions/forwarding/lift"), Some(TOKEN)).await, StatusCode::OK);
    assert!(!lift.changed);
    let reports: AdminReports =
        json(call(&server, "GET", &format!("{base}/reports"), Some(TOKEN)).await, StatusCode::OK);
    assert_eq!(
        (reports.account_id, reports.distinct_reporters_in_window, reports.reports.len()),
        (alice.account_id, 0, 0)
    );

    let bad = StatusCode::BAD_REQUEST;
    error(call(&server, "POST", &format!("{base}/suspend"), Some(TOKEN)).await, bad, ErrorCode::InvalidArgument);
    error(suspend(" ").await, bad, ErrorCode::InvalidArgument);
    let long = serde_json::json!({ "reason": "x".repeat(501) }).to_string();
    let reply = call_with(&server, "POST", &format!("{base}/suspend"), Some(TOKEN), Some(&long)).await;
    error(reply, bad, ErrorCode::InvalidArgument);
    let path = format!("{base}/restrictions/everything/lift");
    error(call(&server, "POST", &path, Some(TOKEN)).await, bad, ErrorCode::InvalidArgument);
    for limit in [0, 101] {
        let path = format!("{base}/reports?limit={limit}");
        error(call(&server, "GET", &path, Some(TOKEN)).await, bad, ErrorCode::InvalidArgument);
    }
    let path = "/admin/v1/accounts/999999999/unsuspend";
    error(call(&server, "POST", path, Some(TOKEN)).await, StatusCode::NOT_FOUND, ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_queue_lists_suspended_and_recently_reported_accounts_newest_first() {
    // Proves: GET /admin/v1/review lists suspended accounts and accounts reported within
    // abuse.report_window_s, once each with their phone, recent report count and suspension,
    // newest first (the later of suspension and latest report); `next` pages through it with
    // limit=1 and is absent after a page that was not full; once the window has passed, only
    // the suspended account remains; a limit of 0 or 101, or half a cursor, is 400.
    let server = TestServer::start_with_manual_clock(|c| c.abuse.report_window_s = 3_600).await;
    let url = server.base_url();
    let alice = server.login(ALICE, "phone").await;
    let bob = server.login(BOB, "phone").await;
    let carol = server.login("+15550000703", "phone").await;
    let dave = server.login("+15550000704", "phone").await;
    let (bob_client, _bob_events) = connect(&url, &bob).await;
    let (dave_client, _dave_events) = connect(&url, &dave).await;
    let review = |query: String| {
        let server = &server;
        async move { call(server, "GET", &format!("/admin/v1/review{query}"), Some(TOKEN)).await }
    };
    let empty: AdminReviewQueue = json(review(String::new()).await, StatusCode::OK);
    assert!(empty.accounts.is_empty() && empty.next.is_none(), "{empty:?}");

    bob_client.report(carol.account_id, "spam".into(), vec![]).await.unwrap();
    server.advance_clock_ms(1_000);
    let body = serde_json::json!({ "reason": "ticket 9" }).to_string();
    let path = format!("/admin/v1/accounts/{}/suspend", alice.account_id);
    let _: AdminAbuseChange = json(call_with(&server, "POST", &path, Some(TOKEN), Some(&body)).await, StatusCode::OK);
    server.advance_clock_ms(1_000);
    dave_client.report(carol.account_id, "scam".into(), vec![]).await.unwrap();

    let queue: AdminReviewQueue = json(review(String::new()).await, StatusCode::OK);
    let listed: Vec<(u64, &str, u64)> =
        queue.accounts.iter().map(|a| (a.account_id, a.phone.as_str(), a.recent_reports)).collect();
    assert_eq!(listed, [(carol.account_id, "+15550000703", 2), (alice.account_id, ALICE, 0)]);
    assert!(queue.next.is_none(), "a page that is not full is the last");
    let (reported, suspended) = (&queue.accounts[0], &queue.accounts[1]);
    assert!(reported.suspended.is_none() && reported.at_ms == reported.last_reported_at_ms);
    assert_eq!(suspended.suspended.as_ref().map(|s| s.reason.as_str()), Some("operator: ticket 9"));
    assert_eq!(reported.at_ms - suspended.at_ms, 1_000);

    let first: AdminReviewQueue = json(review("?limit=1".into()).await, StatusCode::OK);
    assert_eq!(first.accounts[0].account_id, carol.account_id);
    let c = first.next.expect("a full page has a next");
    let query = format!("?limit=1&before_ms={}&before_account={}", c.before_ms, c.before_account);
    let second: AdminReviewQueue = json(review(query).await, StatusCode::OK);
    assert_eq!(second.accounts.iter().map(|a| a.account_id).collect::<Vec<_>>(), [alice.account_id]);
    let c = second.next.expect("a full page has a next");
    let query = format!("?limit=1&before_ms={}&before_account={}", c.before_ms, c.before_account);
    let third: AdminReviewQueue = json(review(query).await, StatusCode::OK);
    assert!(third.accounts.is_empty() && third.next.is_none(), "{third:?}");

    server.advance_clock_ms(3_600_001);
    let later: AdminReviewQueue = json(review(String::new()).await, StatusCode::OK);
    assert_eq!(later.accounts.iter().map(|a| a.account_id).collect::<Vec<_>>(), [alice.account_id]);

    let bad = StatusCode::BAD_REQUEST;
    for query in ["?limit=0", "?limit=101", "?before_ms=5", "?before_account=5"] {
        error(review(query.into()).await, bad, ErrorCode::InvalidArgument);
    }
    error(call(&server, "GET", "/admin/v1/review", None).await, StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated);
}
