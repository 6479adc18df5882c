//! Disappearing messages through the SDK: `Client::set_timer` (what `iris timer` calls), the
//! `Event::Timer` both sides get, the typed refusal of a value outside the set, and the expiry a
//! later message carries.

mod common;

use common::*;
use iris_client::pb::ErrorCode;
use iris_client::{Event, TimerChat};

#[tokio::test]
async fn a_timer_set_through_the_sdk_reaches_the_peer_and_times_later_messages() {
    // Proves: the SDK sets a 1:1 timer, the peer's SDK hands it over as Event::Timer, 1 hour is
    // refused as INVALID_TIMER, and the next message carries sent time + 7 days.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+14155550301").await;
    let mut bob = Dev::new(&url, "+14155550302").await;

    let refused = alice.client.set_timer(TimerChat::Direct(bob.id()), 3_600).await;
    assert_eq!(refused.expect_err("refused").code(), Some(ErrorCode::InvalidTimer));
    let set = alice.client.set_timer(TimerChat::Direct(bob.id()), 604_800).await.unwrap();
    assert_eq!(set.seconds, 604_800);
    let e = recv_until(&bob.client, &mut bob.events, |e| matches!(e, Event::Timer(_))).await;
    let Some(iris_client::pb::inbox_item::Body::TimerChanged(t)) = &e.item().unwrap().body else { panic!("{e:?}") };
    assert_eq!((t.by_account_id, t.to_account_id, t.seconds), (alice.id(), bob.id(), 604_800));

    let sent = alice.client.send(bob.id(), "for a week").await.unwrap();
    let got = recv_messages(&bob.client, &mut bob.events, 1).await.remove(0);
    assert_eq!(got.server_msg_id, sent.server_msg_id);
    assert_eq!(got.expires_at_ms, sent.server_ts_ms + 7 * 86_400_000);
    assert_eq!(iris_client::timers::expires_at(&got), Some(got.expires_at_ms));
}
