//! Push notifications end to end: a real server wakes offline devices through each provider,
//! pointed at an HTTPS receiver this test starts (rustls, a test CA made with rcgen; HTTP/1.1
//! and HTTP/2 behind one listener). Checked: a wake-up carries the badge and no content and is
//! coalesced per device; FCM's OAuth2 assertion (RS256) is exchanged once and verified; APNs
//! goes over HTTP/2 with a verified ES256 provider token; 5xx answers are retried; invalid-token
//! answers remove the token; revoking a device removes its target; bad registrations get their
//! typed errors; webhook hosts that are or resolve to inward addresses are refused unless
//! allowed; test wake-ups are rate-limited per account; registration over HTTP; and, on two nodes of a cluster, only the committing node
//! wakes a device, and only once no node holds it.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use iris_client::pb::{ErrorCode, PushProvider};
use iris_client::{Client, ClientError};
use iris_proto::http::{PushTargetRequest, PushTargetView};
use iris_server::config::Config;
use iris_store::DeviceAddr;
use iris_testkit::engine::ClusterEngine;
use ring::signature::{self, UnparsedPublicKey};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

/// A throwaway RSA key standing in for a Google service account's (rcgen cannot make RSA keys
/// on ring).
const RSA_KEY: &str = include_str!("push_test_rsa.pem");

/// One request the receiver got.
#[derive(Debug)]
struct Seen {
    version: hyper::Version,
    path: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("JSON body: {:?}", self.body))
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// A local HTTPS receiver: records every request and answers from a script (200 `{}` when the
/// script is empty; the FCM token path always gets an access token).
struct Receiver {
    addr: SocketAddr,
    ca_file: PathBuf,
    seen: mpsc::UnboundedReceiver<Seen>,
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    _dir: tempfile::TempDir,
}

impl Receiver {
    async fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap())
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let script: Arc<Mutex<VecDeque<(u16, &'static str)>>> = Arc::default();
        let answers = script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, tx, answers) = (acceptor.clone(), tx.clone(), answers.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (tx, answers) = (tx.clone(), answers.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let path = parts.uri.path().to_owned();
                            let (status, text) = if path == "/token" {
                                (200, r#"{"access_token":"at-1","expires_in":3600,"token_type":"Bearer"}"#)
                            } else {
                                answers.lock().unwrap().pop_front().unwrap_or((200, "{}"))
                            };
                            let _ = tx.send(Seen { version: parts.version, path, headers: parts.headers, body });
                            let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, ca_file, seen, script, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    fn answer(&self, status: u16, body: &'static str) {
        self.script.lock().unwrap().push_back((status, body));
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(PATIENCE, self.seen.recv()).await.expect("a request in time").expect("receiver alive")
    }
}

/// Push settings every test shares: the receiver's CA, fast retries.
fn base(c: &mut Config, r: &Receiver) {
    c.push.ca_file = r.ca_file.clone();
    c.push.backoff_initial_ms = 10;
    c.push.backoff_max_ms = 50;
    c.push.request_timeout_ms = 5_000;
}

fn webhook(c: &mut Config, r: &Receiver) {
    base(c, r);
    c.push.webhook_enabled = true;
    c.push.webhook_private_hosts_allowed = true;
}

fn code(e: ClientError) -> ErrorCode {
    e.code().expect("a typed error")
}

/// Waits until `device` has no session on the server (its client closed).
async fn until_offline(server: &TestServer, device: DeviceAddr) {
    wait_until(&format!("{device} disconnected"), PATIENCE, || async { !server.ctx().router.is_connected(device) })
        .await;
}

async fn connect_device(server: &TestServer, phone: &str) -> (Client, iris_client::Events, DeviceAddr) {
    let creds = server.login(phone, "phone").await;
    let (client, events) = connect(&server.base_url(), &creds).await;
    (client, events, DeviceAddr::new(creds.account_id, creds.device_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_one_wake_up_now_and_one_coalesced_with_the_badge() {
    // Proves: a message to a device without a connection sends a webhook wake-up at once; more
    // messages within the interval give exactly one more, at its end, whose badge counts all
    // waiting entries; no wake-up carries content; the metrics count them per provider.
    let mut r = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        webhook(c, &r);
        c.push.interval_ms = 1_000;
    })
    .await;
    let (bob, _bob_events, bob_addr) = connect_device(&server, "+14155550401").await;
    let answer = bob.push_register(PushProvider::Webhook, r.url("/up/bob")).await.unwrap();
    assert_eq!(answer.provider(), PushProvider::Webhook);
    bob.close().await;
    until_offline(&server, bob_addr).await;

    let (alice, _alice_events, _) = connect_device(&server, "+14155550402").await;
    for text in ["secret one", "secret two", "secret three"] {
        alice.send(bob_addr.account, text.as_bytes().to_vec()).await.unwrap();
    }
    let first = r.next().await;
    assert_eq!((first.path.as_str(), first.json()["type"].as_str()), ("/up/bob", Some("wake")));
    let second = r.next().await;
    assert_eq!(second.json(), serde_json::json!({"type": "wake", "badge": 3}), "coalesced, with every entry counted");
    for seen in [&first, &second] {
        assert!(!String::from_utf8_lossy(&seen.body).contains("secret"), "no content in a wake-up");
    }
    webhook_sent_reaches(&server, 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_an_invalid_token_is_removed() {
    // Proves: 503 answers are retried (with backoff) until one succeeds, each failure counted;
    // a 410 answer removes the token (the test wake-up reports it), so nothing more is sent.
    let mut r = Receiver::start().await;
    let server = TestServer::start_with(|c| webhook(c, &r)).await;
    let (bob, _bob_events, bob_addr) = connect_device(&server, "+14155550411").await;
    bob.push_register(PushProvider::Webhook, r.url("/up/b")).await.unwrap();
    bob.close().await;
    until_offline(&server, bob_addr).await;
    r.answer(503, "{}");
    r.answer(500, "{}");
    let (alice, _alice_events, _) = connect_device(&server, "+14155550412").await;
    alice.send(bob_addr.account, b"hi".to_vec()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(r.next().await.path, "/up/b");
    }
    webhook_sent_reaches(&server, 1.0).await;
    let metrics = scrape_metrics(&server.base_url()).await;
    assert_eq!(metric_value(&metrics, r#"iris_push_failed_total{provider="webhook"}"#), 2.0);

    let (bob, _bob_events) = connect(&server.base_url(), &server.login("+14155550411", "phone2").await).await;
    let bob2 = DeviceAddr::new(bob_addr.account, 2);
    bob.push_register(PushProvider::Webhook, r.url("/up/gone")).await.unwrap();
    r.answer(410, "{}");
    let refused = bob.push_test().await.expect_err("the provider refused");
    assert_eq!(code(refused), ErrorCode::PushDeliveryFailed);
    assert_eq!(r.next().await.path, "/up/gone");
    assert_eq!(server.ctx().store.push_target(bob2).await.unwrap(), None, "invalid token removed");
    assert!(server.ctx().store.push_target(bob_addr).await.unwrap().is_some(), "the other device keeps its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_exchanges_a_signed_assertion_once_and_sends_data_messages() {
    // Proves: the first FCM send exchanges an RS256 assertion (verified here with the service
    // account's public key: issuer, scope, audience) for an access token at the configured
    // token URI, then POSTs an HTTP v1 message with it; the token is reused for the next send;
    // an UNREGISTERED answer removes the device's token.
    let mut r = Receiver::start().await;
    let sa_dir = tempfile::tempdir().unwrap();
    let sa_file = sa_dir.path().join("sa.json");
    let account = serde_json::json!({
        "type": "service_account", "project_id": "p1", "client_email": "iris@p1.iam.example",
        "private_key": RSA_KEY, "private_key_id": "kid-1", "token_uri": "https://unused.example/token",
    });
    std::fs::write(&sa_file, account.to_string()).unwrap();
    let token_uri = r.url("/token");
    let server = TestServer::start_with(|c| {
        base(c, &r);
        c.push.fcm_service_account_file = Some(sa_file.clone());
        c.push.fcm_endpoint = r.url("");
        c.push.fcm_token_uri = Some(token_uri.clone());
    })
    .await;
    let (bob, _events, bob_addr) = connect_device(&server, "+14155550421").await;
    bob.push_register(PushProvider::Fcm, "fcm-token:1".into()).await.unwrap();
    let tested = bob.push_test().await.unwrap();
    assert!(tested.sent);

    let exchange = r.next().await;
    assert_eq!(exchange.path, "/token");
    let form = String::from_utf8(exchange.body.to_vec()).unwrap();
    let assertion = form.split("assertion=").nth(1).expect("an assertion");
    assert!(form.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&"));
    let parts: Vec<&str> = assertion.split('.').collect();
    let der = pem_der(RSA_KEY);
    let public = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap().public().as_ref().to_vec();
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("the assertion is signed by the service account");
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("RS256"), Some("kid-1")));
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "iris@p1.iam.example");
    assert_eq!(claims["aud"].as_str(), Some(token_uri.as_str()));
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/firebase.messaging");

    let send = r.next().await;
    assert_eq!(send.path, "/v1/projects/p1/messages:send");
    assert_eq!(send.header("authorization"), "Bearer at-1");
    let body = send.json();
    assert_eq!(body["message"]["token"], "fcm-token:1");
    assert_eq!(body["message"]["data"], serde_json::json!({"type": "wake", "badge": "0"}));

    r.answer(404, r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#);
    assert_eq!(code(bob.push_test().await.expect_err("unregistered")), ErrorCode::PushDeliveryFailed);
    assert_eq!(r.next().await.path, "/v1/projects/p1/messages:send", "no second token exchange");
    assert_eq!(server.ctx().store.push_target(bob_addr).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_speaks_http2_with_an_es256_provider_token() {
    // Proves: an APNs wake-up is an HTTP/2 POST to /3/device/<token> with the topic, an alert
    // push type, a badge and no content, authorised by an ES256 JWT (verified here: kid, iss);
    // a 410 answer removes the token.
    let mut r = Receiver::start().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("AuthKey.p8");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = TestServer::start_with(|c| {
        base(c, &r);
        c.push.apns_key_file = Some(key_file.clone());
        c.push.apns_key_id = "KEY123".into();
        c.push.apns_team_id = "TEAM42".into();
        c.push.apns_topic = "org.example.iris".into();
        c.push.apns_endpoint = r.url("");
    })
    .await;
    let (bob, _events, bob_addr) = connect_device(&server, "+14155550431").await;
    let token = "ab".repeat(32);
    bob.push_register(PushProvider::Apns, token.clone()).await.unwrap();
    assert!(bob.push_test().await.unwrap().sent);
    let push = r.next().await;
    assert_eq!(push.version, hyper::Version::HTTP_2);
    assert_eq!(push.path, format!("/3/device/{token}"));
    assert_eq!((push.header("apns-topic"), push.header("apns-push-type")), ("org.example.iris", "alert"));
    assert_eq!(push.json()["aps"]["badge"], 0);
    let jwt = push.header("authorization").strip_prefix("bearer ").expect("a bearer token");
    let parts: Vec<&str> = jwt.split('.').collect();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public_key_raw())
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("signed with the APNs key");
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("ES256"), Some("KEY123")));
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "TEAM42");

    r.answer(410, r#"{"reason":"Unregistered"}"#);
    assert_eq!(code(bob.push_test().await.expect_err("unregistered")), ErrorCode::PushDeliveryFailed);
    r.next().await;
    assert_eq!(server.ctx().store.push_target(bob_addr).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_get_typed_errors_and_revocation_drops_the_target() {
    // Proves: an unconfigured or unspecified provider is PUSH_PROVIDER_UNAVAILABLE, a malformed
    // token PUSH_TOKEN_INVALID, a test without a target NOT_FOUND; revoking a device deletes its
    // target.
    let r = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        base(c, &r);
        c.push.webhook_enabled = true;
    })
    .await;
    let (primary, _events, primary_addr) = connect_device(&server, "+14155550441").await;
    let unavailable = |e| code(e) == ErrorCode::PushProviderUnavailable;
    assert!(unavailable(primary.push_register(PushProvider::Fcm, "t".into()).await.unwrap_err()));
    assert!(unavailable(primary.push_register(PushProvider::Unspecified, "t".into()).await.unwrap_err()));
    for bad in ["http://up.example.org/x", "not a url", ""] {
        let e = primary.push_register(PushProvider::Webhook, bad.into()).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::PushTokenInvalid, "{bad:?}");
    }
    assert_eq!(code(primary.push_test().await.unwrap_err()), ErrorCode::NotFound);

    let linked = server.login("+14155550441", "tablet").await;
    let (tablet, _tablet_events) = connect(&server.base_url(), &linked).await;
    tablet.push_register(PushProvider::Webhook, "https://up.example.org/tablet".into()).await.unwrap();
    let tablet_addr = DeviceAddr::new(linked.account_id, linked.device_id);
    assert!(server.ctx().store.push_target(tablet_addr).await.unwrap().is_some());
    server
        .delete(&format!("/v1/devices/{}", linked.device_id), &primary_token(&server, primary_addr))
        .await
        .expect_status(204);
    assert_eq!(server.ctx().store.push_target(tablet_addr).await.unwrap(), None, "revoked: target gone");
}

/// A fresh access token of `device`.
fn primary_token(server: &TestServer, device: DeviceAddr) -> String {
    server
        .ctx()
        .auth
        .signer()
        .sign(iris_server::auth::token::TokenClaims { device, expires_at_ms: server.ctx().clock.now_ms() + 3_600_000 })
}

/// The DER of a PKCS#8 PEM.
fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_hosts_that_are_or_resolve_to_inward_addresses_are_refused_unless_allowed() {
    // Proves: without `webhook_private_hosts_allowed`, a webhook URL naming a private IP literal,
    // or a host name that resolves to loopback (`localhost`, through /etc/hosts), is refused
    // with PUSH_TARGET_FORBIDDEN over the socket and over HTTP (403), and nothing is stored;
    // with the flag, the same name is accepted and a wake-up reaches the receiver through it
    // (the connecting resolver lets loopback through only then).
    let mut r = Receiver::start().await;
    let by_name = format!("https://localhost:{}/up/name", r.addr.port());
    let strict = TestServer::start_with(|c| {
        base(c, &r);
        c.push.webhook_enabled = true;
    })
    .await;
    let (bob, _events, bob_addr) = connect_device(&strict, "+14155550451").await;
    for inward in
        [by_name.as_str(), "https://127.0.0.1/x", "https://[::1]/x", "https://10.0.0.7/x", "https://a.localhost/x"]
    {
        let e = bob.push_register(PushProvider::Webhook, inward.into()).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::PushTargetForbidden, "{inward}");
    }
    let creds = strict.login("+14155550451", "http").await;
    let body = PushTargetRequest { provider: "webhook".into(), token: by_name.clone() };
    strict
        .post_authorized("/v1/push/targets", Some(&creds.access_token), Some(&body))
        .await
        .expect_error(403, ErrorCode::PushTargetForbidden);
    assert_eq!(strict.ctx().store.push_target(bob_addr).await.unwrap(), None);

    let lenient = TestServer::start_with(|c| webhook(c, &r)).await;
    let (carol, _events, _) = connect_device(&lenient, "+14155550452").await;
    carol.push_register(PushProvider::Webhook, by_name.clone()).await.unwrap();
    assert!(carol.push_test().await.unwrap().sent);
    assert_eq!(r.next().await.path, "/up/name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_wake_ups_are_rate_limited_per_account() {
    // Proves: past `push_tests_per_account_per_hour`, a test is RATE_LIMITED with a wait and
    // reaches no provider, for every device of the account; another account still tests.
    let mut r = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        webhook(c, &r);
        c.rate_limits.push_tests_per_account_per_hour = 2;
    })
    .await;
    let url = format!("https://127.0.0.1:{}/up/limited", r.addr.port());
    let (bob, _events, _) = connect_device(&server, "+14155550461").await;
    bob.push_register(PushProvider::Webhook, url.clone()).await.unwrap();
    for _ in 0..2 {
        assert!(bob.push_test().await.unwrap().sent);
        assert_eq!(r.next().await.path, "/up/limited");
    }
    let refused = bob.push_test().await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::RateLimited));
    assert!(refused.retry_after_ms().is_some_and(|ms| ms > 0), "{refused:?}");
    let (laptop, _laptop_events, _) = connect_device(&server, "+14155550461").await;
    laptop.push_register(PushProvider::Webhook, url.clone()).await.unwrap();
    assert_eq!(code(laptop.push_test().await.unwrap_err()), ErrorCode::RateLimited, "the limit is the account's");
    let (carol, _carol_events, _) = connect_device(&server, "+14155550462").await;
    carol.push_register(PushProvider::Webhook, url).await.unwrap();
    assert!(carol.push_test().await.unwrap().sent);
    assert_eq!(r.next().await.path, "/up/limited");
    assert!(r.seen.try_recv().is_err(), "the refused tests reached no provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_targets_are_registered_and_removed_over_http() {
    // Proves: POST /v1/push/targets stores the caller's target with the protocol's checks (an
    // unknown or unconfigured provider PUSH_PROVIDER_UNAVAILABLE, a malformed token
    // PUSH_TOKEN_INVALID, no token UNAUTHENTICATED) and the device is woken through it;
    // DELETE /v1/push/targets/{device_id} removes the caller's own (then NOT_FOUND), a linked
    // device may not remove the primary's (PERMISSION_DENIED), the primary may remove a linked
    // device's.
    let mut r = Receiver::start().await;
    let server = TestServer::start_with(|c| webhook(c, &r)).await;
    let phone = "+14155550461";
    let primary = server.login(phone, "phone").await;
    let linked = server.login(phone, "tablet").await;
    let on = &server;
    let register = move |token: &str, provider: &str, url: String| {
        let body = PushTargetRequest { provider: provider.into(), token: url };
        let token = token.to_owned();
        async move { on.post_authorized("/v1/push/targets", Some(&token), Some(&body)).await }
    };
    let body = PushTargetRequest { provider: "webhook".into(), token: r.url("/x") };
    server.post_authorized("/v1/push/targets", None, Some(&body)).await.expect_error(401, ErrorCode::Unauthenticated);
    for provider in ["fcm", "pigeon", ""] {
        register(&primary.access_token, provider, r.url("/x"))
            .await
            .expect_error(400, ErrorCode::PushProviderUnavailable);
    }
    register(&primary.access_token, "webhook", "http://up.example.org/x".into())
        .await
        .expect_error(400, ErrorCode::PushTokenInvalid);

    let stored: PushTargetView = register(&primary.access_token, "webhook", r.url("/up/phone")).await.expect_json(200);
    assert_eq!((stored.device_id, stored.provider.as_str()), (primary.device_id, "webhook"));
    register(&linked.access_token, "webhook", r.url("/up/tablet")).await.expect_status(200);
    let primary_addr = DeviceAddr::new(primary.account_id, primary.device_id);
    let linked_addr = DeviceAddr::new(linked.account_id, linked.device_id);
    let target = server.ctx().store.push_target(primary_addr).await.unwrap().expect("stored");
    assert_eq!(target.token, r.url("/up/phone"));

    // The HTTP-registered target wakes the (unconnected) device.
    let (alice, _events, _) = connect_device(&server, "+14155550462").await;
    alice.send(primary.account_id, b"hi".to_vec()).await.unwrap();
    let mut paths = vec![r.next().await.path, r.next().await.path];
    paths.sort();
    assert_eq!(paths, ["/up/phone", "/up/tablet"]);

    let path = |d: u32| format!("/v1/push/targets/{d}");
    server.delete(&path(primary.device_id), &linked.access_token).await.expect_error(403, ErrorCode::PermissionDenied);
    server.delete(&path(primary.device_id), &primary.access_token).await.expect_status(204);
    server.delete(&path(primary.device_id), &primary.access_token).await.expect_error(404, ErrorCode::NotFound);
    assert_eq!(server.ctx().store.push_target(primary_addr).await.unwrap(), None);
    server.delete(&path(linked.device_id), &primary.access_token).await.expect_status(204);
    assert_eq!(server.ctx().store.push_target(linked_addr).await.unwrap(), None);
    server.delete("/v1/push/targets/x", &primary.access_token).await.expect_error(400, ErrorCode::InvalidArgument);
}

/// `iris_push_sent_total` of the webhook on `server`.
async fn webhook_sent(server: &TestServer) -> f64 {
    metric_value(&scrape_metrics(&server.base_url()).await, r#"iris_push_sent_total{provider="webhook"}"#)
}

/// Waits until `server` counted `n` webhook wake-ups sent, then checks it counted no more: the
/// count goes up once the provider answered, which can be just after the receiver saw the
/// request.
async fn webhook_sent_reaches(server: &TestServer, n: f64) {
    wait_until(&format!("{n} wake-ups counted"), PATIENCE, || async { webhook_sent(server).await >= n }).await;
    assert_eq!(webhook_sent(server).await, n, "no more than {n} wake-ups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_only_the_committing_node_wakes_a_device_no_node_holds() {
    // Proves, on two nodes sharing PostgreSQL and Redis: a device connected to node B gets its
    // messages from node A and no wake-up (A's forwarder found it in the session registry);
    // once it disconnected and its claim is gone, a message sent through A wakes it once at
    // once, and two more within the interval give exactly one more (coalesced), every wake-up
    // from A (the committing node), none from B.
    let mut r = Receiver::start().await;
    let engine = tokio::task::spawn_blocking(ClusterEngine::start).await.unwrap();
    let edit = |c: &mut Config| {
        webhook(c, &r);
        c.push.interval_ms = 1_000;
    };
    let a = TestServer::start_node(&engine, 1, edit).await;
    let b = TestServer::start_node(&engine, 2, edit).await;

    let bob_creds = a.login("+14155550471", "phone").await;
    let bob_addr = DeviceAddr::new(bob_creds.account_id, bob_creds.device_id);
    let (bob, mut bob_events) = connect(&b.base_url(), &bob_creds).await;
    bob.push_register(PushProvider::Webhook, r.url("/up/bob")).await.unwrap();
    let (alice, _alice_events, _) = connect_device(&a, "+14155550472").await;
    for text in ["one", "two", "three"] {
        alice.send(bob_addr.account, text.as_bytes().to_vec()).await.unwrap();
    }
    for _ in 0..3 {
        recv_until(&bob, &mut bob_events, |e| matches!(e, iris_client::Event::Message(_))).await;
    }

    bob.close().await;
    until_offline(&b, bob_addr).await;
    let bus = &a.ctx().cluster.as_ref().expect("cluster mode").bus;
    wait_until("the registry forgets bob", PATIENCE, || async {
        bus.lookup_devices(&[bob_addr]).await.is_ok_and(|nodes| nodes == [None])
    })
    .await;
    // A's forwarder trusts a registry answer for 1 s (`cluster/outbound.rs`); let the answer
    // that named B lapse. A wake-up while bob was on B would have been sent at once, so by now
    // it would be here.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert!(r.seen.try_recv().is_err(), "no wake-up while bob was connected to node B");
    assert_eq!((webhook_sent(&a).await, webhook_sent(&b).await), (0.0, 0.0));

    alice.send(bob_addr.account, b"four".to_vec()).await.unwrap();
    let first = r.next().await;
    assert_eq!((first.path.as_str(), first.json()["type"].as_str()), ("/up/bob", Some("wake")));
    for text in ["five", "six"] {
        alice.send(bob_addr.account, text.as_bytes().to_vec()).await.unwrap();
    }
    let second = r.next().await;
    assert_eq!(second.path, "/up/bob");
    assert!(second.json()["badge"].as_u64().unwrap() >= 3, "coalesced: {:?}", second.json());
    // Nothing more: a third wake-up would come within an interval of the last change.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert!(r.seen.try_recv().is_err(), "exactly one coalesced wake-up after the first");
    webhook_sent_reaches(&a, 2.0).await;
    assert_eq!(webhook_sent(&b).await, 0.0, "A, the committing node, woke bob");
}
