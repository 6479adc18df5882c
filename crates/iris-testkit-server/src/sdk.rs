//! Devices through the SDK (`iris-client`), the way apps use Iris: log in over HTTP, connect,
//! receive and ack. Every helper takes the server's base URL, so it works the same against a
//! [`crate::TestServer`], the `iris` binary ([`crate::Process`]) or a balancer in front of nodes.

use std::time::Duration;

use iris_client::api::Credentials;
use iris_client::pb::InboxItem;
use iris_client::{Client, ClientConfig, Event, Events, HttpApi};

use crate::server::DEV_CODE;
use crate::PATIENCE;

/// Registers a device for `phone` with the dev code.
pub async fn login(url: &str, phone: &str, device_name: &str) -> Credentials {
    let http = HttpApi::new(url).expect("a valid base URL");
    http.request_code(phone).await.expect("request a code");
    http.verify(phone, DEV_CODE, device_name).await.expect("verify the dev code")
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
