//! Synchronous replication end to end: an `iris serve` node on one PostgreSQL shard that has a
//! synchronous streaming standby (the test kit's `PgShards::start_replicated`), its shard URL
//! listing both hosts. Under load the primary is killed with SIGKILL and the standby promoted
//! with `pg_ctl promote`; the node must move to it by itself, and every ACCEPTED message must be
//! delivered exactly once (the standby had flushed each before its sender heard ACCEPTED).

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use iris_testkit::postgres::PgShards;

const ALICE: &str = "+14155550301";
const BOB: &str = "+14155550302";
const TOKEN_KEY: &str = "7a1f0c6a7b2d4e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";
/// Most messages one sender sends: the load is bounded even if a wait below never ends.
const SENDS_PER_SENDER_MAX: usize = 5_000;

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
    let senders: Vec<_> = ["f0", "f1", "f2"]
        .into_iter()
        .map(|t| spawn_sender(a.clone(), BOB, t, accepted.clone(), stop.clone(), SENDS_PER_SENDER_MAX))
        .collect();
    let receiver = spawn_receiver(b.clone(), be, delivered.clone());

    wait_for("first messages", || accepted.lock().unwrap().len() >= 200).await;
    tokio::task::block_in_place(|| pg.kill_primary(0));
    let at_kill = accepted.lock().unwrap().len();
    tokio::task::block_in_place(|| pg.promote_standby(0));
    wait_for("sends on the promoted standby", || accepted.lock().unwrap().len() >= at_kill + 300).await;
    let metrics = scrape_metrics(&url).await;
    assert!(metric_value(&metrics, "iris_store_failovers_total") >= 1.0, "the node counted its move to the standby");

    let accepted = stop_and_check((&a, BOB), stop, senders, &accepted, &delivered, receiver).await;
    eprintln!("primary killed at {at_kill} accepted; {accepted} accepted in all, each delivered once");
}
