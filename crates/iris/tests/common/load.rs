//! Bounded send/receive load for the failure tests (`cluster.rs`, `standby.rs`): senders that
//! record what was ACCEPTED, a receiver that records and acks what arrives, and the check that
//! every ACCEPTED message arrived exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iris_client::pb::inbox_item;
use iris_client::{Client, Event, Events};
use iris_testkit_server::{wait_until, PATIENCE};

/// Client id → server id of every ACCEPTED send.
pub type Accepted = Arc<Mutex<HashMap<String, u64>>>;
/// (server id, client id) of every delivery, in arrival order.
pub type Delivered = Arc<Mutex<Vec<(u64, String)>>>;

/// Sends from `client` to `to` until stopped or `max_sends` were tried, recording what was
/// ACCEPTED. A send fails only after the SDK's retries gave up (a store shard down, a primary
/// mid-failover): not ACCEPTED, so not counted (it may still be delivered, once, if its commit
/// landed); the next id is tried.
pub fn spawn_sender(
    client: Client,
    to: &'static str,
    tag: &'static str,
    accepted: Accepted,
    stop: Arc<AtomicBool>,
    max_sends: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..max_sends {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let id = format!("{tag}-{i}");
            if let Ok(r) = client.send_with_id(to, id.clone(), id.clone()).await {
                accepted.lock().unwrap().insert(id, r.server_msg_id);
            }
        }
    })
}

/// Collects (server id, client id) of every message delivered to `client`, acking each.
pub fn spawn_receiver(client: Client, mut events: Events, delivered: Delivered) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Event::Message(item) = event {
                client.ack(item.seq);
                if let Some(inbox_item::Body::Message(m)) = item.body {
                    delivered.lock().unwrap().push((item.server_msg_id, m.client_msg_id));
                }
            }
        }
    })
}

/// Every ACCEPTED message delivered, each exactly once, none that was not accepted twice.
pub fn check_exactly_once(accepted: &HashMap<String, u64>, delivered: &[(u64, String)]) {
    let mut by_client_id: HashMap<&str, u64> = HashMap::new();
    for (server_id, client_id) in delivered {
        if let Some(other) = by_client_id.insert(client_id, *server_id) {
            panic!("{client_id} delivered twice (server ids {other} and {server_id})");
        }
    }
    for (client_id, server_id) in accepted {
        assert_eq!(by_client_id.get(client_id.as_str()), Some(server_id), "ACCEPTED message {client_id} was lost");
    }
}

/// Sends one more message from `client` to `to` and waits until it is among `delivered`, then
/// takes it out: a wrong extra delivery (a retry stored twice) sits in the inbox before it, so
/// this is the event that ends the check instead of a quiet period.
pub async fn fence(client: &Client, to: &str, delivered: &Mutex<Vec<(u64, String)>>) {
    let fence = client.send_with_id(to, "fence".to_owned(), "fence").await.expect("the fence is accepted");
    wait_until("the fence is delivered", PATIENCE, || async {
        delivered.lock().unwrap().iter().any(|(id, _)| *id == fence.server_msg_id)
    })
    .await;
    delivered.lock().unwrap().retain(|(id, _)| *id != fence.server_msg_id);
}

/// Stops the senders of `client`, waits until everything they got ACCEPTED was delivered to
/// `to`, then checks it was delivered exactly once. Returns how many were accepted.
pub async fn stop_and_check(
    (client, to): (&Client, &str),
    stop: Arc<AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
    accepted: &Mutex<HashMap<String, u64>>,
    delivered: &Mutex<Vec<(u64, String)>>,
    receiver: tokio::task::JoinHandle<()>,
) -> usize {
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(PATIENCE, s).await.expect("senders finish").unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    wait_for("every accepted message delivered", || delivered.lock().unwrap().len() >= accepted.len()).await;
    fence(client, to, delivered).await;
    receiver.abort();
    check_exactly_once(&accepted, &delivered.lock().unwrap());
    accepted.len()
}

/// Waits for `cond` with the patience of these tests (failovers take seconds).
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(90), || std::future::ready(cond())).await;
}
