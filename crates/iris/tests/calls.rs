//! Call signaling end to end through the SDK against a real server: every device of the callee
//! rings, the first answer takes the call and the other device hears "answered elsewhere", ICE
//! both ways, hang-up; missed calls (ring timeout, cancelled, callee offline) as inbox items;
//! a blocked caller sees an offline callee; the participant bound, the offer rate limit and
//! TURN credentials in coturn's format; and all of it across two nodes of a cluster, where a
//! callee device on the other node that loses its connection leaves the call.

mod common;

use bytes::Bytes;
use common::*;
use iris_client::pb::{self, CallEndReason, CallEventType, ErrorCode};
use iris_client::{CallTarget, Event};
use iris_testkit::engine::ClusterEngine;

const TURN_SECRET: &str = "coturn-shared-secret";

/// A server with TURN configured and a ring timeout of `ring_timeout_ms`.
async fn server(ring_timeout_ms: u64) -> TestServer {
    TestServer::start_with(|c| {
        c.calls.ring_timeout_ms = ring_timeout_ms;
        c.calls.turn_secret = Some(TURN_SECRET.into());
        c.calls.turn_uris = vec!["turn:127.0.0.1:3478".into()];
    })
    .await
}

impl Dev {
    /// The next call event of type `t`, skipping others (acking inbox items on the way).
    async fn next_call(&mut self, t: CallEventType) -> pb::CallEvent {
        let e =
            recv_until(&self.client, &mut self.events, |e| matches!(e, Event::Call(c) if c.r#type == t as i32)).await;
        let Event::Call(c) = e else { unreachable!() };
        c
    }

    /// The next missed call in the inbox.
    async fn next_missed(&mut self) -> pb::MissedCall {
        let e = recv_until(&self.client, &mut self.events, |e| matches!(e, Event::MissedCall(_))).await;
        *e.missed_call().expect("a missed call")
    }
}

fn sdp(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[tokio::test]
async fn both_devices_ring_the_first_answer_takes_the_call_then_ice_and_hang_up() {
    let s = server(60_000).await;
    let url = s.base_url();
    let mut alice = Dev::new(&url, "+15550000001").await;
    let mut bob1 = Dev::new(&url, "+15550000002").await;
    let mut bob2 = Dev::new(&url, "+15550000002").await;
    let bob = bob1.id();

    let started = alice.client.call_offer(CallTarget::Accounts(vec![bob]), true, sdp("offer-sdp")).await.unwrap();
    assert_eq!(started.r#type, CallEventType::Started as i32);
    assert_eq!(started.participant_account_ids, [alice.id(), bob]);
    let turn = started.turn.expect("TURN configured");
    let (expiry, account) = turn.username.split_once(':').unwrap();
    assert_eq!(account, alice.id().to_string());
    assert!(expiry.parse::<u64>().unwrap() > 1_700_000_000);
    assert_eq!(turn.uris, ["turn:127.0.0.1:3478"]);
    let call = started.call_id;

    for dev in [&mut bob1, &mut bob2] {
        let incoming = dev.next_call(CallEventType::Incoming).await;
        assert_eq!((incoming.call_id, incoming.from_account_id, incoming.video), (call, alice.id(), true));
        assert_eq!(incoming.payload, sdp("offer-sdp"), "the SDP offer passes untouched");
        assert!(incoming.turn.as_ref().is_some_and(|t| t.username.ends_with(&format!(":{bob}"))));
    }
    assert_eq!(alice.next_call(CallEventType::Ringing).await.from_account_id, bob);

    bob2.client.call_answer(call, sdp("answer-sdp")).await.unwrap();
    let answered = alice.next_call(CallEventType::Answered).await;
    assert_eq!((answered.from_account_id, answered.from_device_id), (bob, bob2.creds.device_id));
    assert_eq!(answered.payload, sdp("answer-sdp"));
    let elsewhere = bob1.next_call(CallEventType::AnsweredElsewhere).await;
    assert_eq!((elsewhere.call_id, elsewhere.from_device_id), (call, bob2.creds.device_id));
    let late = bob1.client.call_answer(call, sdp("too late")).await.unwrap_err();
    assert_eq!(late.code(), Some(ErrorCode::CallAnsweredElsewhere));

    alice.client.call_ice(call, sdp("candidate:a"), None).await.unwrap();
    assert_eq!(bob2.next_call(CallEventType::Ice).await.payload, sdp("candidate:a"));
    bob2.client.call_ice(call, sdp("candidate:b"), Some((alice.id(), alice.creds.device_id))).await.unwrap();
    assert_eq!(alice.next_call(CallEventType::Ice).await.payload, sdp("candidate:b"));
    let stranger = bob1.client.call_ice(call, sdp("x"), None).await.unwrap_err();
    assert_eq!(stranger.code(), Some(ErrorCode::CallNotFound), "a device not in the call");

    alice.client.call_hangup(call).await.unwrap();
    assert_eq!(bob2.next_call(CallEventType::Hangup).await.from_account_id, alice.id());
    let ended = bob2.next_call(CallEventType::Ended).await;
    assert_eq!(ended.reason, CallEndReason::Hangup as i32);
    let gone = bob2.client.call_hangup(call).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::CallNotFound));
}

#[tokio::test]
async fn a_call_nobody_answers_is_a_missed_call_on_every_device() {
    // A short real ring timeout: the missed calls are appended when it fires, which a paused
    // clock would not wait for (the ring timeout itself is tested on injected time in
    // `calls/machine/tests.rs`). The test waits on the events, not on the time.
    let s = server(500).await;
    let url = s.base_url();
    let mut alice = Dev::new(&url, "+15550000011").await;
    let mut bob1 = Dev::new(&url, "+15550000012").await;
    let mut bob2 = Dev::new(&url, "+15550000012").await;
    let started = alice.client.call_offer(CallTarget::Accounts(vec![bob1.id()]), false, sdp("o")).await.unwrap();
    let ended = alice.next_call(CallEventType::Ended).await;
    assert_eq!((ended.call_id, ended.reason), (started.call_id, CallEndReason::NoAnswer as i32));
    for dev in [&mut bob1, &mut bob2] {
        let ended = dev.next_call(CallEventType::Ended).await;
        assert_eq!(ended.reason, CallEndReason::NoAnswer as i32);
        let missed = dev.next_missed().await;
        assert_eq!((missed.call_id, missed.from_account_id, missed.video), (started.call_id, alice.id(), false));
    }
}

#[tokio::test]
async fn a_cancelled_call_and_a_call_to_an_offline_callee_are_missed_calls() {
    let s = server(60_000).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+15550000021").await;
    let mut bob = Dev::new(&url, "+15550000022").await;
    let carol_creds = login(&url, "+15550000023", "d").await; // never connected

    let to_bob = alice.client.call_offer(CallTarget::Accounts(vec![bob.id()]), false, sdp("o")).await.unwrap();
    bob.next_call(CallEventType::Incoming).await;
    alice.client.call_hangup(to_bob.call_id).await.unwrap();
    assert_eq!(bob.next_call(CallEventType::Ended).await.reason, CallEndReason::Cancelled as i32);
    assert_eq!(bob.next_missed().await.call_id, to_bob.call_id);

    let carol = carol_creds.account_id;
    let to_carol = alice.client.call_offer(CallTarget::Accounts(vec![carol]), true, sdp("o")).await.unwrap();
    alice.client.call_hangup(to_carol.call_id).await.unwrap();
    let (client, events) = connect(&url, &carol_creds).await;
    let mut carol = Dev { creds: carol_creds, client, events };
    let missed = carol.next_missed().await;
    assert_eq!((missed.call_id, missed.from_account_id, missed.video), (to_carol.call_id, alice.id(), true));
}

#[tokio::test]
async fn a_declined_call_ends_for_the_caller_and_every_callee_device() {
    let s = server(60_000).await;
    let url = s.base_url();
    let mut alice = Dev::new(&url, "+15550000031").await;
    let mut bob1 = Dev::new(&url, "+15550000032").await;
    let mut bob2 = Dev::new(&url, "+15550000032").await;
    let call = alice.client.call_offer(CallTarget::Accounts(vec![bob1.id()]), false, sdp("o")).await.unwrap().call_id;
    bob1.next_call(CallEventType::Incoming).await;
    bob2.next_call(CallEventType::Incoming).await;
    bob1.client.call_reject(call).await.unwrap();
    assert_eq!(bob2.next_call(CallEventType::RejectedElsewhere).await.call_id, call);
    assert_eq!(alice.next_call(CallEventType::Rejected).await.from_account_id, bob1.id());
    assert_eq!(alice.next_call(CallEventType::Ended).await.reason, CallEndReason::Rejected as i32);
}

#[tokio::test]
async fn a_blocked_caller_sees_an_unanswered_call_and_the_blocker_nothing() {
    let s = server(500).await;
    let url = s.base_url();
    let mut alice = Dev::new(&url, "+15550000041").await;
    let mut bob = Dev::new(&url, "+15550000042").await;
    bob.client.block(alice.id()).await.unwrap();
    let call = alice.client.call_offer(CallTarget::Accounts(vec![bob.id()]), false, sdp("o")).await.unwrap().call_id;
    // No RINGING (it would say Bob is online), then the same end as a callee who never answers.
    let first = recv_until(&alice.client, &mut alice.events, |e| matches!(e, Event::Call(_))).await;
    let Event::Call(first) = first else { unreachable!() };
    assert_eq!((first.r#type, first.call_id), (CallEventType::NoAnswer as i32, call));
    assert_eq!(alice.next_call(CallEventType::Ended).await.reason, CallEndReason::NoAnswer as i32);
    // Bob heard nothing and has no missed call: a marker message sent after proves the order.
    let carol = Dev::new(&url, "+15550000043").await;
    carol.client.send(bob.id(), "marker").await.unwrap();
    let next = recv_until(&bob.client, &mut bob.events, |e| !matches!(e, Event::Connected(_))).await;
    assert!(next.message().is_some(), "the blocker got {next:?} before the marker");
}

#[tokio::test]
async fn offers_are_bounded_by_participants_and_a_rate_limit() {
    let s = TestServer::start_with(|c| c.calls.offers_per_account_per_minute = 4).await;
    let url = s.base_url();
    let alice = Dev::without_retries(&url, "+15550000051").await;
    let bob = Dev::new(&url, "+15550000052").await;
    let many: Vec<u64> = (1..=32).map(|i| 1_000_000 + i).collect();
    let e = alice.client.call_offer(CallTarget::Accounts(many), false, sdp("o")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::CallTooManyParticipants), "{e}");
    let e = alice.client.call_offer(CallTarget::Accounts(vec![alice.id()]), false, sdp("o")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let mut last = 0;
    for _ in 0..2 {
        // The two refusals above counted too: 4 offers a minute.
        let c = alice.client.call_offer(CallTarget::Accounts(vec![bob.id()]), false, sdp("o")).await.unwrap();
        alice.client.call_hangup(c.call_id).await.unwrap();
        last = c.call_id;
    }
    let e = alice.client.call_offer(CallTarget::Accounts(vec![bob.id()]), false, sdp("o")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited));
    // An id this node never issued (same node bits, so in cluster mode it is not forwarded).
    let unknown = last + (1 << 20);
    assert_eq!(bob.client.call_answer(unknown, sdp("a")).await.unwrap_err().code(), Some(ErrorCode::CallNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_nodes_both_devices_ring_one_answers_and_a_lost_connection_leaves_the_call() {
    // Proves, with the caller and one callee device on node A (the call's node) and the other
    // callee device on node B, sharing PostgreSQL and Redis: both devices ring; B's answer
    // (forwarded to A) takes the call and A's device hears "answered elsewhere"; ICE flows both
    // ways; B's hang-up ends it and a second one is CALL_NOT_FOUND (A's error, carried back);
    // when B's device loses its connection in a call it answered, A learns it (B forwards a
    // hang-up) and the call ends; a call nobody answers is a missed call on both devices.
    let engine = tokio::task::spawn_blocking(ClusterEngine::start).await.unwrap();
    let edit = |c: &mut iris_server::config::Config| {
        // Long enough for an answer through the bus on a busy machine; the missed call waits it.
        c.calls.ring_timeout_ms = 4_000;
        c.calls.turn_secret = Some(TURN_SECRET.into());
        c.calls.turn_uris = vec!["turn:127.0.0.1:3478".into()];
    };
    let a = TestServer::start_node(&engine, 1, edit).await;
    let b = TestServer::start_node(&engine, 2, edit).await;
    let (url_a, url_b) = (a.base_url(), b.base_url());
    let mut alice = Dev::new(&url_a, "+15550000071").await;
    let mut bob1 = Dev::new(&url_a, "+15550000072").await;
    let mut bob2 = Dev::new(&url_b, "+15550000072").await;
    let (bob, bob2_device) = (bob1.id(), bob2.creds.device_id);
    let offer = |alice: &Dev| {
        let to = CallTarget::Accounts(vec![bob]);
        let client = alice.client.clone();
        async move { client.call_offer(to, true, sdp("offer-sdp")).await.unwrap().call_id }
    };

    let call = offer(&alice).await;
    assert_eq!(iris_server::ids::IdGenerator::node_of(call), 1, "the call lives on the caller's node");
    for dev in [&mut bob1, &mut bob2] {
        let incoming = dev.next_call(CallEventType::Incoming).await;
        assert_eq!((incoming.call_id, incoming.payload.clone()), (call, sdp("offer-sdp")));
        assert!(incoming.turn.is_some(), "TURN credentials on either node");
    }
    bob2.client.call_answer(call, sdp("answer-sdp")).await.unwrap();
    let answered = alice.next_call(CallEventType::Answered).await;
    assert_eq!((answered.from_device_id, answered.payload), (bob2_device, sdp("answer-sdp")));
    assert_eq!(bob1.next_call(CallEventType::AnsweredElsewhere).await.from_device_id, bob2_device);
    let late = bob1.client.call_answer(call, sdp("late")).await.unwrap_err();
    assert_eq!(late.code(), Some(ErrorCode::CallAnsweredElsewhere));
    alice.client.call_ice(call, sdp("candidate:a"), None).await.unwrap();
    assert_eq!(bob2.next_call(CallEventType::Ice).await.payload, sdp("candidate:a"));
    bob2.client.call_ice(call, sdp("candidate:b"), Some((alice.id(), alice.creds.device_id))).await.unwrap();
    assert_eq!(alice.next_call(CallEventType::Ice).await.payload, sdp("candidate:b"));
    bob2.client.call_hangup(call).await.unwrap();
    assert_eq!(alice.next_call(CallEventType::Hangup).await.from_device_id, bob2_device);
    assert_eq!(alice.next_call(CallEventType::Ended).await.reason, CallEndReason::Hangup as i32);
    let gone = bob2.client.call_hangup(call).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::CallNotFound), "answered by node A through the bus");

    // B's device answers, then its connection ends: node A hears it and the call ends.
    let call = offer(&alice).await;
    bob2.next_call(CallEventType::Incoming).await;
    bob2.client.call_answer(call, sdp("answer-sdp")).await.unwrap();
    alice.next_call(CallEventType::Answered).await;
    bob2.client.close().await;
    let left = alice.next_call(CallEventType::Hangup).await;
    assert_eq!((left.call_id, left.from_device_id), (call, bob2_device));
    let ended = alice.next_call(CallEventType::Ended).await;
    assert_eq!((ended.call_id, ended.reason), (call, CallEndReason::Hangup as i32));

    // Nobody answers: a missed call on both devices, B's through the shared store.
    let (client, events) = connect(&url_b, &bob2.creds).await;
    let mut bob2 = Dev { creds: bob2.creds, client, events };
    let call = offer(&alice).await;
    bob2.next_call(CallEventType::Incoming).await;
    let ended = alice.next_call(CallEventType::Ended).await;
    assert_eq!((ended.call_id, ended.reason), (call, CallEndReason::NoAnswer as i32));
    for dev in [&mut bob1, &mut bob2] {
        let missed = dev.next_missed().await;
        assert_eq!((missed.call_id, missed.from_account_id, missed.video), (call, alice.id(), true));
    }
}
