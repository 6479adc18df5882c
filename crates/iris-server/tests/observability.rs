//! What the server tells its operators: the Prometheus `/metrics` exposition has the documented
//! families, and its counters move by exactly what happened on the wire.

mod common;

use common::*;
use iris_proto::pb::ErrorCode;

const ALICE: &str = "+15550003001";
const BOB: &str = "+15550003002";

async fn scrape(server: &TestServer) -> String {
    let reply = server.get("/metrics", None).await;
    reply.expect_status(200);
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_documented_families_and_count_exactly() {
    // Proves: /metrics is Prometheus text with connections, handshakes, sends and the commit histogram, and one accepted plus one too-large send move the counters by exactly one each.
    let server = TestServer::start().await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    let (_b, _) = server.connect_as(&bob).await;

    let reply = server.get("/metrics", None).await;
    reply.expect_status(200);
    let before = reply.text();
    for family in [
        "# TYPE iris_connections_open gauge",
        "# TYPE iris_sends_accepted counter",
        "# TYPE iris_commit_seconds histogram",
        "# TYPE iris_handshakes counter",
        "iris_commit_seconds_bucket{le=",
        "iris_handshakes_total{result=\"ok\"} 2",
        "iris_connections_open 2",
        "iris_sends_accepted_total 0",
    ] {
        assert!(before.contains(family), "missing {family:?} in:\n{before}");
    }

    let too_large = ErrorCode::PayloadTooLarge.as_str_name();
    let rejected_series = format!("iris_sends_rejected_total{{code=\"{too_large}\"}}");
    let commits_before = metric_value(&before, "iris_commit_seconds_count");
    a.send_accepted(1, text_to_account("ok", bob.account_id, b"hello")).await;
    let max = iris_proto::Limits::default().max_payload_bytes as usize;
    a.send_ops(vec![send_op(2, text_to_account("big", bob.account_id, &vec![0u8; max + 1]))]).await;
    a.expect_request_error(2, ErrorCode::PayloadTooLarge).await;

    let after = scrape(&server).await;
    let moved = |series: &str| metric_value(&after, series) - metric_value(&before, series);
    assert_eq!(moved("iris_sends_accepted_total"), 1.0, "{after}");
    assert_eq!(moved(&rejected_series), 1.0, "{after}");
    assert!(metric_value(&after, "iris_commit_seconds_count") > commits_before, "{after}");
    assert_eq!(moved("iris_handshakes_total{result=\"ok\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_their_code() {
    // Proves: a handshake refused for a bad token is counted under its error code, next to the ok ones.
    let server = TestServer::start().await;
    let alice = server.login(ALICE, "a").await;
    let _ok = server.connect_as(&alice).await;
    let mut bad = server.connect().await;
    bad.send_ops(vec![hello_op(1, "v1.forged.token", alice.device_id)]).await;
    bad.expect_fatal(ErrorCode::Unauthenticated).await;

    let text = scrape(&server).await;
    assert_eq!(metric_value(&text, "iris_handshakes_total{result=\"ok\"}"), 1.0, "{text}");
    let series = format!("iris_handshakes_total{{result=\"{}\"}}", ErrorCode::Unauthenticated.as_str_name());
    assert_eq!(metric_value(&text, &series), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_sends_are_counted_by_limit() {
    // Proves: each send refused by the per-account limit shows in iris_rate_limited_total{limit="sends per account"} and in the rejected sends by code.
    let server = TestServer::start_with(|c| c.rate_limits.sends_per_account_per_minute = 1).await;
    let (alice, bob) = (server.login(ALICE, "a").await, server.login(BOB, "b").await);
    let (mut a, _) = server.connect_as(&alice).await;
    a.send_accepted(1, text_to_account("first", bob.account_id, b"x")).await;
    for i in 2..=3 {
        a.send_ops(vec![send_op(i, text_to_account(&format!("m{i}"), bob.account_id, b"x"))]).await;
        a.expect_request_error(i, ErrorCode::RateLimited).await;
    }

    let text = scrape(&server).await;
    assert_eq!(metric_value(&text, "iris_rate_limited_total{limit=\"sends per account\"}"), 2.0, "{text}");
    let series = format!("iris_sends_rejected_total{{code=\"{}\"}}", ErrorCode::RateLimited.as_str_name());
    assert_eq!(metric_value(&text, &series), 2.0, "{text}");
    assert_eq!(metric_value(&text, "iris_sends_accepted_total"), 1.0, "{text}");
}
