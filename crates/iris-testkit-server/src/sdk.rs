//! Devices through the SDK (`iris-client`), the way apps use Iris: log in over HTTP, connect,
//! receive and ack. Every helper takes the server's base URL, so it works the same against a
//! [`crate::TestServer`], the `iris` binary ([`crate::Process`]) or a balancer in front of nodes.

use std::time::Duration;

use iris_client::api::Credentials;
use iris_client::pb::InboxItem;
use iris_client::{Client, ClientConfig, Event, Events, HttpApi, Verified};

use crate::server::DEV_CODE;
use crate::PATIENCE;

/// Registers a device for `phone` with the dev code. The first device of an account is its
/// primary; a later one is a companion, which the test kit approves at once with the primary's
/// access token (remembered per server and phone by [`crate::primaries`]), as the person would
/// on the primary. Tests about the approval itself use [`HttpApi`] directly.
pub async fn login(url: &str, phone: &str, device_name: &str) -> Credentials {
    let http = HttpApi::new(url).expect("a valid base URL");
    http.request_code(phone).await.expect("request a code");
    match http.verify_or_link(phone, DEV_CODE, device_name).await.expect("verify the dev code") {
        Verified::Registered(creds) => {
            crate::primaries::remember(url, &creds);
            creds
        }
        Verified::LinkPending(pending) => {
            let primary = crate::primaries::token(url, phone)
                .unwrap_or_else(|| panic!("{phone} has an account whose primary this test kit did not log in"));
            http.approve_link(&primary, &pending.link_code).await.expect("the primary approves the link");
            http.collect_link(&pending).await.expect("collect the link").expect("the link was approved")
        }
    }
}

/// Links a companion of `primary`'s account: verify, approve with the primary's token, collect.
pub async fn link_device(url: &str, primary: &Credentials, device_name: &str) -> Credentials {
    let http = HttpApi::new(url).expect("a valid base URL");
    http.request_code(&primary.phone).await.expect("request a code");
    http.link_approved_by(&primary.phone, DEV_CODE, device_name, &primary.access_token).await.expect("link a device")
}

/// Connects a device with fast reconnects (a test restarts servers; it should not wait for
/// production backoff).
pub async fn connect(url: &str, creds: &Credentials) -> (Client, Events) {
    let mut config = ClientConfig::new(url, creds.clone());
    config.reconnect.initial_delay = Duration::from_millis(20);
    config.reconnect.max_delay = Duration::from_millis(300);
    Client::connect(config).await.expect("connect")
}

/// Receives `n` messages (ignoring receipts and connection events), acking each.
pub async fn recv_messages(client: &Client, events: &mut Events, n: usize) -> Vec<InboxItem> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", got.len()))
            .expect("event stream ended");
        if let Event::Message(item) = event {
            client.ack(item.seq);
            got.push(item);
        }
    }
    got
}

/// Receives events until `pred` matches one, acking inbox items on the way.
pub async fn recv_until(client: &Client, events: &mut Events, mut pred: impl FnMut(&Event) -> bool) -> Event {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.next()).await.expect("timed out").expect("stream ended");
        if let Some(seq) = event.seq() {
            client.ack(seq);
        }
        if pred(&event) {
            return event;
        }
    }
}

/// Asserts that no message arrives within `wait`. A quiet period, not an event: use it only to
/// prove an absence that has no event of its own.
pub async fn expect_no_message(events: &mut Events, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        assert!(!matches!(event, Event::Message(_)), "unexpected message: {event:?}");
    }
}
