//! One-time codes through an HTTP SMS gateway (`[sms]`), against a gateway the test runs: the
//! request it gets (template, credentials), retries with backoff on 5xx and timeouts, the final
//! `CODE_DELIVERY_FAILED`, and HTTPS to a gateway with a private CA.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::*;
use iris_proto::http::{CodeRequested, Credentials};
use iris_proto::pb::ErrorCode;
use iris_server::config::{SmsConfig, TlsConfig};
use iris_server::gateway::http_listener::HttpListener;
use iris_server::gateway::tls::ServerTls;
use iris_testkit::tls::TestCa;
use tokio_util::sync::CancellationToken;

/// What the gateway does with each request, in order; once the script runs out it answers 200.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answers (the sender's timeout must cut it).
    Hang,
}

/// A request the gateway received.
#[derive(Debug, Clone)]
struct Received {
    authorization: String,
    content_type: String,
    body: String,
}

#[derive(Clone, Default)]
struct Gateway {
    script: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Gateway {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(State(gw): State<Gateway>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    gw.received.lock().unwrap().push(Received {
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    });
    let answer = gw.script.lock().unwrap().pop_front().unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Hang => std::future::pending().await,
    }
}

/// Starts a gateway on `127.0.0.1:0` (HTTPS with `tls`) answering by `script`.
async fn start_gateway(script: &[Answer], tls: Option<&TlsConfig>, stop: &CancellationToken) -> (Gateway, SocketAddr) {
    let gw = Gateway { script: Arc::new(Mutex::new(script.iter().copied().collect())), ..Gateway::default() };
    let app = Router::new().route("/sms", post(receive)).with_state(gw.clone());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let acceptor = tls.map(|t| ServerTls::load(t).unwrap().acceptor());
    let listener = HttpListener::new(tcp, acceptor, Duration::from_secs(5), stop.clone()).unwrap();
    let stop = stop.clone();
    tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });
    (gw, addr)
}

fn sms_config(url: String) -> SmsConfig {
    SmsConfig {
        url,
        method: "POST".into(),
        body_template: r#"{"to":"{phone}","text":"Your Iris code is {code}"}"#.into(),
        content_type: "application/json".into(),
        basic_user: None,
        basic_password: None,
        bearer_token: Some("t0k3n".into()),
        ca_path: None,
        timeout_ms: 300,
        attempts_max: 3,
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
    }
}

/// The code in a body the template made.
fn code_in(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["text"].as_str().unwrap().rsplit(' ').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_reach_the_gateway_after_retries_and_the_delivered_code_logs_in() {
    // Proves: the request is the template filled in with the phone and a fresh code, with the
    // bearer credentials; 503 and a hung attempt are retried; the code the gateway got is the
    // one that verifies; the retries are counted.
    let stop = CancellationToken::new();
    let (gw, addr) = start_gateway(&[Answer::Status(503), Answer::Hang], None, &stop).await;
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.sms = Some(sms_config(format!("http://{addr}/sms")));
    })
    .await;
    let phone = "+14155550501";
    let _: CodeRequested = server.request_code(phone).await.expect_json(200);
    let received = gw.received();
    assert_eq!(received.len(), 3, "two failures, then delivered: {received:?}");
    for r in &received {
        assert_eq!(r.authorization, "Bearer t0k3n");
        assert_eq!(r.content_type, "application/json");
        assert!(r.body.starts_with(&format!(r#"{{"to":"{phone}","text":"Your Iris code is "#)), "{}", r.body);
    }
    let code = code_in(&received[2].body);
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let _: Credentials = server.verify(phone, &code, "sms").await.expect_json(200);
    let metrics = scrape_metrics(&server.base_url()).await;
    assert_eq!(metric_value(&metrics, r#"iris_sms_requests_total{result="retried"}"#), 2.0);
    assert_eq!(metric_value(&metrics, r#"iris_sms_requests_total{result="ok"}"#), 1.0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_keeps_failing_gives_the_client_a_typed_error() {
    // Proves: after `attempts_max` 5xx answers the client gets 502 CODE_DELIVERY_FAILED with a
    // retry hint; a 4xx is final at once (retrying cannot help); basic auth is sent as such.
    let stop = CancellationToken::new();
    let (gw, addr) = start_gateway(&[Answer::Status(500); 3], None, &stop).await;
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.sms = Some(sms_config(format!("http://{addr}/sms")));
    })
    .await;
    let error = server.request_code("+14155550502").await.expect_error(502, ErrorCode::CodeDeliveryFailed);
    assert!(error.retry_after_ms.is_some_and(|ms| ms > 0), "{error:?}");
    assert!(error.message.contains("500"), "{error:?}");
    assert_eq!(gw.received().len(), 3);

    let (gw, addr) = start_gateway(&[Answer::Status(401)], None, &stop).await;
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.sms = Some(SmsConfig {
            bearer_token: None,
            basic_user: Some("iris".into()),
            basic_password: Some("s3cret".into()),
            ..sms_config(format!("http://{addr}/sms"))
        });
    })
    .await;
    server.request_code("+14155550503").await.expect_error(502, ErrorCode::CodeDeliveryFailed);
    let received = gw.received();
    assert_eq!(received.len(), 1, "a 4xx is not retried");
    assert_eq!(received[0].authorization, "Basic aXJpczpzM2NyZXQ=");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_gateway_is_verified_against_its_ca() {
    // Proves: `https://` gateways are reached over TLS, trusting `ca_path`; a gateway whose
    // certificate another CA signed is never sent the code.
    let stop = CancellationToken::new();
    let ca = TestCa::new("gateway CA");
    let cert = ca.issue();
    let tls = TlsConfig::new(cert.cert_path.clone(), cert.key_path.clone());
    let (gw, addr) = start_gateway(&[], Some(&tls), &stop).await;
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.sms = Some(SmsConfig {
            ca_path: Some(ca.ca_path()),
            ..sms_config(format!("https://127.0.0.1:{}/sms", addr.port()))
        });
    })
    .await;
    let _: CodeRequested = server.request_code("+14155550504").await.expect_json(200);
    assert_eq!(gw.received().len(), 1);

    let other = TestCa::new("another CA");
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.sms = Some(SmsConfig {
            ca_path: Some(other.ca_path()),
            ..sms_config(format!("https://localhost:{}/sms", addr.port()))
        });
    })
    .await;
    server.request_code("+14155550505").await.expect_error(502, ErrorCode::CodeDeliveryFailed);
    assert_eq!(gw.received().len(), 1, "nothing reaches a gateway whose certificate does not verify");
    stop.cancel();
}
