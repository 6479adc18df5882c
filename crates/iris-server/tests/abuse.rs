//! Abuse rules, reports and suspension end to end, through the SDK and raw frames, with small
//! thresholds: the message rate suspends, the suspension refuses sends, Hellos and logins and
//! survives a restart until an operator lifts it; new non-contact recipients restrict sending
//! to non-contacts (contacts still work); one message forwarded to too many chats limits
//! forwarding; reports from distinct accounts suspend (the same reporter counts once), bad
//! reports are REPORT_INVALID; and with two nodes on Redis the message rate is counted across
//! nodes. Runs on the embedded store, and on PostgreSQL + Redis with `IRIS_TEST_ENGINE=cluster`.

mod common;

use common::*;
use iris_client::pb::{self, ErrorCode};
use iris_client::ClientError;
use iris_store::Restriction;

const ALICE: &str = "+15550000801";
const BOB: &str = "+15550000802";
const CAROL: &str = "+15550000803";
const DAVE: &str = "+15550000804";
const ERIN: &str = "+15550000805";

fn code(e: ClientError) -> ErrorCode {
    e.code().unwrap_or_else(|| panic!("not a server error: {e}"))
}

/// A rule's hits as `/metrics` counts them.
async fn rule_hits(server: &TestServer, rule: &str) -> f64 {
    let text = scrape_metrics(&server.url("")).await;
    metric_value(&text, &format!("iris_abuse_rule_hits_total{{rule=\"{rule}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_suspends_until_an_operator_lifts_it_across_restarts() {
    // Proves: with a threshold of 5 per hour the 5th message is refused ACCOUNT_SUSPENDED and so
    // is everything after (1:1 and group); after a restart the suspension still holds: a Hello
    // is refused (fatal ACCOUNT_SUSPENDED) and so is a login (403); the operator's unsuspend
    // lets the account connect and send again; the rule hit is counted in /metrics.
    let mut server = TestServer::start_with(|c| c.abuse.messages_per_account_per_hour = 5).await;
    let url = server.url("");
    let alice = server.login(ALICE, "phone").await;
    let bob = server.login(BOB, "phone").await;
    let (client, _events) = connect(&url, &alice).await;
    client.contacts_add(vec![bob.account_id]).await.unwrap();
    for i in 0..4 {
        client.send(bob.account_id, format!("hi {i}")).await.unwrap();
    }
    assert_eq!(code(client.send(bob.account_id, "5th").await.unwrap_err()), ErrorCode::AccountSuspended);
    assert_eq!(code(client.send(bob.account_id, "6th").await.unwrap_err()), ErrorCode::AccountSuspended);
    let group = client.group_create("g", "", vec![bob.account_id.into()], Default::default()).await.unwrap();
    assert_eq!(code(client.group_send(group.group_id, "x").await.unwrap_err()), ErrorCode::AccountSuspended);
    assert_eq!(rule_hits(&server, "message_rate").await, 1.0);
    let state = server.ctx().sessions.abuse.state(alice.account_id).await.unwrap();
    assert_eq!(state.suspended.map(|s| s.reason), Some("message rate".to_owned()));
    client.close().await;

    server.restart().await;
    let mut conn = server.connect().await;
    conn.send_ops(vec![hello_op(1, &alice.access_token, alice.device_id)]).await;
    let fatal = conn.expect_fatal(ErrorCode::AccountSuspended).await;
    assert!(fatal.message.contains("suspended"), "{fatal:?}");
    server.request_code(ALICE).await.expect_status(200);
    server.verify(ALICE, DEV_CODE, "laptop").await.expect_error(403, ErrorCode::AccountSuspended);

    assert!(server.ctx().sessions.abuse.unsuspend(alice.account_id).await.unwrap());
    let (_conn, welcome) = server.connect_as(&alice).await;
    assert_eq!(welcome.account_id, alice.account_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_non_contact_recipients_restrict_sending_to_non_contacts() {
    // Proves: with a threshold of 3 new recipients a day, the send to the 3rd distinct
    // non-contact is refused SENDING_RESTRICTED (retry after about 7 days) and so is any later
    // send to a non-contact, even one messaged before; contacts (in either's list) can still be
    // messaged; the operator can lift the restriction.
    let server = TestServer::start_with(|c| c.abuse.new_recipients_per_day = 3).await;
    let url = server.url("");
    let alice = server.login(ALICE, "phone").await;
    let bob = server.login(BOB, "phone").await;
    let carol = server.login(CAROL, "phone").await;
    let dave = server.login(DAVE, "phone").await;
    let erin = server.login(ERIN, "phone").await;
    let (client, _events) = connect(&url, &alice).await;
    client.contacts_add(vec![erin.account_id]).await.unwrap();
    let (dave_client, _dave_events) = connect(&url, &dave).await;
    dave_client.contacts_add(vec![alice.account_id]).await.unwrap();

    client.send(bob.account_id, "1").await.unwrap();
    client.send(bob.account_id, "1 again").await.unwrap();
    let third = server.login("+15550000806", "phone").await;
    client.send(third.account_id, "2").await.unwrap();
    let refused = client.send(carol.account_id, "3").await.unwrap_err();
    let retry = refused.retry_after_ms().unwrap();
    assert_eq!(code(refused), ErrorCode::SendingRestricted);
    assert!((6 * 86_400_000..=7 * 86_400_000).contains(&retry), "retry after {retry} ms");
    assert_eq!(code(client.send(bob.account_id, "known").await.unwrap_err()), ErrorCode::SendingRestricted);
    client.send(erin.account_id, "my contact").await.unwrap();
    client.send(dave.account_id, "has me as contact").await.unwrap();
    assert_eq!(rule_hits(&server, "new_recipients").await, 1.0);

    server.ctx().sessions.abuse.lift_restriction(alice.account_id, Restriction::Sending).await.unwrap();
    client.send(bob.account_id, "lifted").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_forwarded_to_too_many_chats_limits_forwarding() {
    // Proves: with at most 3 chats per forwarded message a day, forwarding message 42 to 2 and
    // then 2 more chats is refused FORWARDING_LIMITED; then any forward is refused (another
    // message too) while plain sends still work; a forward of the same bytes without a
    // reference is recognised by its digest.
    let server = TestServer::start_with(|c| c.abuse.forward_chats_per_message_per_day = 3).await;
    let url = server.url("");
    let alice = server.login(ALICE, "phone").await;
    let mut others = Vec::new();
    for p in [BOB, CAROL, DAVE, ERIN] {
        others.push(server.login(p, "phone").await.account_id);
    }
    let (client, _events) = connect(&url, &alice).await;
    client.contacts_add(others.clone()).await.unwrap();

    // Another message by its bytes: 3 chats are fine.
    client.forward("meme", others[..3].to_vec(), vec![]).await.unwrap();
    client.forward_of(42, "fwd", others[..2].to_vec(), vec![]).await.unwrap();
    let refused = client.forward_of(42, "fwd", others[2..].to_vec(), vec![]).await.unwrap_err();
    assert_eq!(code(refused), ErrorCode::ForwardingLimited);
    assert_eq!(
        code(client.forward_of(7, "other", vec![others[0]], vec![]).await.unwrap_err()),
        ErrorCode::ForwardingLimited
    );
    client.send(others[0], "plain sends still work").await.unwrap();
    assert_eq!(rule_hits(&server, "forwards").await, 1.0);

    // The same bytes again, to a 4th chat: over the limit by digest (after a lift).
    server.ctx().sessions.abuse.lift_restriction(alice.account_id, Restriction::Forwarding).await.unwrap();
    assert_eq!(code(client.forward("meme", vec![others[3]], vec![]).await.unwrap_err()), ErrorCode::ForwardingLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_distinct_accounts_suspend_and_bad_reports_are_refused() {
    // Proves: with 3 reports to suspend, the same reporter twice counts once (the second is
    // `repeated`), the 3rd distinct reporter suspends the account (its sends are then refused);
    // reports keep what was disclosed, newest first; a report of oneself, of an unknown account,
    // or with too many disclosed messages is REPORT_INVALID.
    let server = TestServer::start_with(|c| {
        c.abuse.reports_to_suspend = 3;
        c.abuse.report_messages_max = 2;
    })
    .await;
    let url = server.url("");
    let spammer = server.login(ALICE, "phone").await;
    let mut reporters = Vec::new();
    for p in [BOB, CAROL, DAVE] {
        let creds = server.login(p, "phone").await;
        let (client, events) = connect(&url, &creds).await;
        reporters.push((client, events, creds.account_id));
    }
    let (spam_client, _spam_events) = connect(&url, &spammer).await;
    let disclosed =
        |text: &str| pb::ReportedMessage { server_msg_id: 9, sent_at_ms: 1, content: text.as_bytes().to_vec().into() };

    let first = reporters[0].0.report(spammer.account_id, "spam".into(), vec![disclosed("buy")]).await.unwrap();
    assert!(!first.repeated);
    let again = reporters[0].0.report(spammer.account_id, "more spam".into(), vec![]).await.unwrap();
    assert!(again.repeated);
    reporters[1].0.report(spammer.account_id, "spam".into(), vec![]).await.unwrap();
    assert!(server.ctx().sessions.abuse.state(spammer.account_id).await.unwrap().suspended.is_none(), "2 distinct");
    spam_client.send(reporters[0].2, "still allowed").await.unwrap();
    reporters[2].0.report(spammer.account_id, "scam".into(), vec![disclosed("send money")]).await.unwrap();
    let state = server.ctx().sessions.abuse.state(spammer.account_id).await.unwrap();
    assert_eq!(state.suspended.map(|s| s.reason), Some("reports".to_owned()));
    assert_eq!(code(spam_client.send(reporters[0].2, "x").await.unwrap_err()), ErrorCode::AccountSuspended);
    assert_eq!(rule_hits(&server, "reports").await, 1.0);

    let reports = server.ctx().sessions.abuse.reports(spammer.account_id, 10).await.unwrap();
    assert_eq!(reports.len(), 4);
    assert_eq!(reports[0].reason, "scam");
    assert_eq!(reports[0].messages[0].content, b"send money");
    assert_eq!(reports[3].messages[0].content, b"buy");

    let bob = &reporters[0].0;
    let me = reporters[0].2;
    assert_eq!(code(bob.report(me, String::new(), vec![]).await.unwrap_err()), ErrorCode::ReportInvalid);
    assert_eq!(code(bob.report(999_999_999, String::new(), vec![]).await.unwrap_err()), ErrorCode::ReportInvalid);
    let three = vec![disclosed("a"), disclosed("b"), disclosed("c")];
    assert_eq!(code(bob.report(spammer.account_id, String::new(), three).await.unwrap_err()), ErrorCode::ReportInvalid);
    assert_eq!(
        code(bob.report(spammer.account_id, "x".repeat(501), vec![]).await.unwrap_err()),
        ErrorCode::ReportInvalid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_is_counted_across_nodes() {
    // Proves: two nodes on one PostgreSQL and one Redis Cluster share the message count: with a
    // threshold of 6, 3 sends through node 1 and 2 through node 2 pass, and the 6th (on node 2,
    // which alone saw only 3) suspends the account; node 1 then refuses its Hello.
    let pg = iris_testkit::postgres::PgShards::start(2);
    let redis = iris_testkit::redis::RedisCluster::start();
    let namespace = format!("abuse-{}-{}", std::process::id(), std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    let key = "ab".repeat(32);
    let shared = |c: &mut iris_server::config::Config, node_id: u16| {
        c.cluster.store_urls = pg.urls();
        c.cluster.redis_urls = redis.urls();
        c.cluster.namespace = namespace.clone();
        c.auth.token_key_hex = Some(key.clone());
        c.node_id = node_id;
        c.abuse.messages_per_account_per_hour = 6;
    };
    let node1 = TestServer::start_with(|c| shared(c, 1)).await;
    let node2 = TestServer::start_with(|c| shared(c, 2)).await;
    let alice = node1.login(ALICE, "phone").await;
    let bob = node1.login(BOB, "phone").await;

    let (client, _events) = connect(&node1.url(""), &alice).await;
    for i in 0..3 {
        client.send(bob.account_id, format!("via 1: {i}")).await.unwrap();
    }
    client.close().await;
    let (client, _events) = connect(&node2.url(""), &alice).await;
    for i in 0..2 {
        client.send(bob.account_id, format!("via 2: {i}")).await.unwrap();
    }
    assert_eq!(code(client.send(bob.account_id, "6th").await.unwrap_err()), ErrorCode::AccountSuspended);
    assert_eq!(rule_hits(&node2, "message_rate").await, 1.0);
    client.close().await;
    let mut conn = node1.connect().await;
    conn.send_ops(vec![hello_op(1, &alice.access_token, alice.device_id)]).await;
    conn.expect_fatal(ErrorCode::AccountSuspended).await;
}
