//! Synchronous replication end to end: an `iris serve` node on one PostgreSQL shard that has a
//! synchronous streaming standby (the test kit's `PgShards::start_replicated`), its shard URL
//! listing both hosts. Under load the primary is killed with SIGKILL and the standby promoted
//! with `pg_ctl promote`; the node must move to it by itself, and every ACCEPTED message must be
//! delivered exactly once (the standby had flushed each before its sender heard ACCEPTED).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use iris_client::pb::inbox_item;
use iris_client::{Client, Event, Events};
use iris_testkit::postgres::PgShards;

const ALICE: &str = "+14155550301";
const BOB: &str = "+14155550302";
const TOKEN_KEY: &str = "7a1f0c6a7b2d4e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";
/// Most messages one sender sends: the load is bounded even if a wait below never ends.
const SENDS_PER_SENDER_MAX: usize = 5_000;

/// Client id → server id of every ACCEPTED send.
type Accepted = Arc<Mutex<HashMap<String, u64>>>;
/// (server id, client id) of every delivery, in arrival order.
type Delivered = Arc<Mutex<Vec<(u64, String)>>>;

/// Sends from `client` to `to` until stopped (or [`SENDS_PER_SENDER_MAX`]), recording what was
/// ACCEPTED. A send the SDK gave up on (the shard mid-failover) is not counted; it may still be
/// delivered, once, if its commit reached the standby.
fn spawn_sender(
    client: Client,
    tag: &'static str,
    accepted: Accepted,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..SENDS_PER_SENDER_MAX {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let id = format!("{tag}-{i}");
            if let Ok(r) = client.send_with_id(BOB, id.clone(), id.clone()).await {
                accepted.lock().unwrap().insert(id, r.server_msg_id);
            }
        }
    })
}

/// Collects (server id, client id) of every message delivered to `client`, acking each.
fn spawn_receiver(client: Client, mut events: Events, delivered: Delivered) -> tokio::task::JoinHandle<()> {
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

/// Waits for `cond` with the patience a failover needs.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(90), || std::future::ready(cond())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_to_its_synchronous_standby_and_nothing_accepted_is_lost() {
    // Proves: with the shard URL naming primary and standby, kill -9 of the primary and
    // `pg_ctl promote` of the standby under load lose no ACCEPTED message and duplicate none;
    // the node finds the promoted standby by itself, says so in its metrics, and sends go on.
    let mut pg = tokio::task::spawn_blocking(|| PgShards::start_replicated(1)).await.unwrap();
    let store = pg.urls().join(",");
    assert!(store.contains(','), "the shard URL lists primary and standby: {store}");
    let args = vec!["--store".into(), store, "--token-key".into(), TOKEN_KEY.into()];
    let node = Process::start_with_args("[cluster]\ninbox_poll_interval_ms = 300\n", args).await;
    let url = node.url();
    let (alice, bob) = (login(&url, ALICE, "a").await, login(&url, BOB, "b").await);
    let (a, _ae) = connect(&url, &alice).await;
    let (b, be) = connect(&url, &bob).await;
    let accepted: Accepted = Arc::default();
    let delivered: Delivered = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> =
        ["f0", "f1", "f2"].into_iter().map(|t| spawn_sender(a.clone(), t, accepted.clone(), stop.clone())).collect();
    let receiver = spawn_receiver(b.clone(), be, delivered.clone());

    wait_for("first messages", || accepted.lock().unwrap().len() >= 200).await;
    tokio::task::block_in_place(|| pg.kill_primary(0));
    let at_kill = accepted.lock().unwrap().len();
    tokio::task::block_in_place(|| pg.promote_standby(0));
    wait_for("sends on the promoted standby", || accepted.lock().unwrap().len() >= at_kill + 300).await;
    let metrics = scrape_metrics(&url).await;
    assert!(metric_value(&metrics, "iris_store_failovers_total") >= 1.0, "the node counted its move to the standby");

    stop.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(PATIENCE, s).await.expect("senders finish").unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    wait_for("every accepted message delivered", || delivered.lock().unwrap().len() >= accepted.len()).await;
    // A fence: a retry stored twice would sit in the inbox before it.
    let fence = a.send_with_id(BOB, "fence".to_owned(), "fence").await.expect("the fence is accepted");
    wait_for("the fence is delivered", || delivered.lock().unwrap().iter().any(|(id, _)| *id == fence.server_msg_id))
        .await;
    receiver.abort();
    let delivered = delivered.lock().unwrap().clone();
    let mut by_client_id: HashMap<&str, u64> = HashMap::new();
    for (server_id, client_id) in &delivered {
        if let Some(other) = by_client_id.insert(client_id, *server_id) {
            panic!("{client_id} delivered twice (server ids {other} and {server_id})");
        }
    }
    for (client_id, server_id) in &accepted {
        assert_eq!(by_client_id.get(client_id.as_str()), Some(server_id), "ACCEPTED message {client_id} was lost");
    }
    eprintln!("primary killed at {at_kill} accepted; {} accepted in all, each delivered once", accepted.len());
}
