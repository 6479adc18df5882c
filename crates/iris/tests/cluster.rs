//! Cluster mode end to end: three `iris serve` processes on two real PostgreSQL shards and a
//! real Redis Cluster (3 primaries + 3 replicas), clients behind a small TCP load balancer the
//! test runs (as a deployment would put HAProxy or nginx in front). Each test kills something
//! while clients send and checks that every ACCEPTED message is delivered exactly once.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use iris_client::{Client, ClientConfig, Event, Events};
use iris_testkit::postgres::PgShards;
use iris_testkit::redis::RedisCluster;
use tokio::net::{TcpListener, TcpStream};

const ALICE: &str = "+14155550201";
const BOB: &str = "+14155550202";
const CAROL: &str = "+14155550203";
const TOKEN_KEY: &str = "5e1f0c6a7b2d4e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";

/// Round-robin TCP forwarding to whichever backends accept: the "load balancer" in front of the
/// nodes. A dead backend is skipped; connections to it simply end. Bound first (the nodes
/// advertise its address), given its backends as the nodes come up on ports of their own.
struct Balancer {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let shared = backends.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let (backends, next) = (shared.lock().unwrap().clone(), next.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for i in 0..backends.len() {
                        let target = backends[(first + i) % backends.len()];
                        let connect = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(target));
                        if let Ok(Ok(mut server)) = connect.await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, backends, task }
    }

    /// Forwards to `backend` too from now on.
    fn add(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().push(backend);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// PostgreSQL, Redis Cluster, N nodes and the balancers in front of them.
struct Fixture {
    pg: PgShards,
    redis: RedisCluster,
    nodes: Vec<Process>,
    /// Kept alive: the TCP address every node advertises.
    _tcp_lb: Balancer,
    http_lb: Balancer,
}

impl Fixture {
    async fn start(n_nodes: u16) -> Self {
        Self::start_with(n_nodes, "").await
    }

    /// Like [`Fixture::start`] with extra lines for every node's `[cluster]` table.
    async fn start_with(n_nodes: u16, cluster_toml: &str) -> Self {
        // Servers of our own even when the run shares some (`scripts/test.sh`): these tests kill
        // them.
        let pg = tokio::task::spawn_blocking(|| PgShards::start_dedicated(2)).await.unwrap();
        let redis = tokio::task::spawn_blocking(RedisCluster::start_private).await.unwrap();
        let (tcp_lb, http_lb) = (Balancer::start().await, Balancer::start().await);
        let namespace = format!("t{}", std::process::id());
        let config =
            format!("[cluster]\nnamespace = \"{namespace}\"\nregistry_ttl_ms = 3000\ninbox_poll_interval_ms = 300\n{cluster_toml}\n");
        let mut nodes = Vec::new();
        for i in 0..n_nodes {
            let args = vec![
                "--store".into(),
                pg.urls().join(","),
                "--redis".into(),
                redis.urls().join(","),
                "--node-id".into(),
                (i + 1).to_string(),
                "--advertise".into(),
                tcp_lb.addr.to_string(),
                "--token-key".into(),
                TOKEN_KEY.into(),
            ];
            let node = Process::start_with_args(&config, args).await;
            tcp_lb.add(node.tcp);
            http_lb.add(node.http);
            nodes.push(node);
        }
        Self { pg, redis, nodes, _tcp_lb: tcp_lb, http_lb }
    }

    /// The balanced HTTP URL clients use.
    fn url(&self) -> String {
        format!("http://{}", self.http_lb.addr)
    }
}

/// A client that reconnects quickly, through the balancer.
async fn connect_lb(url: &str, creds: &iris_client::api::Credentials) -> (Client, Events) {
    let mut config = ClientConfig::new(url, creds.clone());
    config.reconnect.initial_delay = Duration::from_millis(20);
    config.reconnect.max_delay = Duration::from_millis(300);
    Client::connect(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_and_survive_kill_9_of_a_node() {
    // Proves: clients on different nodes exchange messages through the shared store and the bus;
    // when a node is SIGKILLed its clients reconnect to the others through the balancer, and
    // every ACCEPTED message is delivered exactly once.
    let mut f = Fixture::start(3).await;
    let (alice, bob) = (login(&f.nodes[0].url(), ALICE, "a").await, login(&f.nodes[1].url(), BOB, "b").await);

    // Direct placement first: alice on node 1, bob on node 2, one message each way.
    let (a1, mut a1e) = connect(&f.nodes[0].url(), &alice).await;
    let (b2, mut b2e) = connect(&f.nodes[1].url(), &bob).await;
    a1.send(BOB, "hello from node 1").await.unwrap();
    assert_eq!(recv_messages(&b2, &mut b2e, 1).await.len(), 1);
    b2.send(ALICE, "hello from node 2").await.unwrap();
    assert_eq!(recv_messages(&a1, &mut a1e, 1).await.len(), 1);
    drop((a1, a1e, b2, b2e));

    // Then load through the balancer, and a node dies.
    let url = f.url();
    let (a, _ae) = connect_lb(&url, &alice).await;
    let (b, be) = connect_lb(&url, &bob).await;
    let accepted: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = ["s0", "s1", "s2", "s3"]
        .into_iter()
        .map(|t| spawn_sender(a.clone(), BOB, t, accepted.clone(), stop.clone(), usize::MAX))
        .collect();
    let receiver = spawn_receiver(b.clone(), be, delivered.clone());

    wait_for("first messages", || accepted.lock().unwrap().len() >= 200).await;
    f.nodes[0].kill9();
    let after_kill = accepted.lock().unwrap().len();
    wait_for("sends after the kill", || accepted.lock().unwrap().len() >= after_kill + 300).await;
    let n = stop_and_check((&a, BOB), stop, senders, &accepted, &delivered, receiver).await;
    eprintln!("node kill: {n} accepted, all delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_primary_dies_and_nothing_accepted_is_lost() {
    // Proves: killing Redis Cluster primaries (each shard's, one after another) under load loses
    // no ACCEPTED message (acks never depend on Redis) and delivery goes on after each failover.
    let mut f = Fixture::start(2).await;
    let (alice, bob) = (login(&f.nodes[0].url(), ALICE, "a").await, login(&f.nodes[1].url(), BOB, "b").await);
    let (a, _ae) = connect(&f.nodes[0].url(), &alice).await;
    let (b, be) = connect(&f.nodes[1].url(), &bob).await;
    let accepted: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = ["r0", "r1"]
        .into_iter()
        .map(|t| spawn_sender(a.clone(), BOB, t, accepted.clone(), stop.clone(), usize::MAX))
        .collect();
    let receiver = spawn_receiver(b.clone(), be, delivered.clone());

    wait_for("first messages", || accepted.lock().unwrap().len() >= 200).await;
    // One primary at a time (a failover needs a majority of primaries alive to elect the
    // replica), so every shard, and with it every node's channel, fails over once.
    for shard in 0..3 {
        f.redis.kill_primary(shard);
        let during = accepted.lock().unwrap().len();
        wait_for("sends go on while Redis fails over", || accepted.lock().unwrap().len() >= during + 100).await;
        tokio::task::block_in_place(|| f.redis.wait_until_healthy());
    }
    let after = accepted.lock().unwrap().len();
    wait_for("sends after the failovers", || accepted.lock().unwrap().len() >= after + 200).await;
    let n = stop_and_check((&a, BOB), stop, senders, &accepted, &delivered, receiver).await;
    eprintln!("redis primaries killed: {n} accepted, all delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_shard_down_refuses_sends_then_they_resume() {
    // Proves: while a PostgreSQL shard is stopped, sends that need it fail with a typed,
    // retryable error (nothing is acknowledged); after it restarts sends resume, and every
    // ACCEPTED message is delivered exactly once.
    let mut f = Fixture::start(2).await;
    let url = f.nodes[0].url();
    let (alice, bob) = (login(&url, ALICE, "a").await, login(&url, BOB, "b").await);
    let alice_dev = Dev::without_retries_with(&url, alice.clone()).await;
    let (b, be) = connect(&f.nodes[1].url(), &bob).await;
    let delivered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let receiver = spawn_receiver(b.clone(), be, delivered.clone());
    let mut accepted = HashMap::new();
    for i in 0..50 {
        let id = format!("p-before-{i}");
        let r = alice_dev.client.send_with_id(BOB, id.clone(), id.clone()).await.unwrap();
        accepted.insert(id, r.server_msg_id);
    }

    for shard in 0..2 {
        tokio::task::block_in_place(|| f.pg.stop_shard(shard));
    }
    let refused = alice_dev.client.send_with_id(BOB, "p-down".to_owned(), "down".to_owned()).await;
    let err = refused.expect_err("a send must not be ACCEPTED while its shards are down");
    assert!(err.to_string().contains("UNAVAILABLE"), "typed error, got {err}");
    for shard in 0..2 {
        tokio::task::block_in_place(|| f.pg.start_shard(shard));
    }

    // Sends resume once the shards are back: each accepted send is the event its loop waits for.
    let mut i = 0;
    while accepted.len() < 100 {
        let (id, server_msg_id) = wait_until("a send is accepted after the shards restart", PATIENCE * 3, || {
            i += 1;
            let (id, client) = (format!("p-after-{i}"), &alice_dev.client);
            async move { client.send_with_id(BOB, id.clone(), id.clone()).await.ok().map(|r| (id, r.server_msg_id)) }
        })
        .await;
        accepted.insert(id, server_msg_id);
    }
    wait_for("every accepted message delivered", || delivered.lock().unwrap().len() >= accepted.len()).await;
    fence(&alice_dev.client, BOB, &delivered).await;
    receiver.abort();
    let delivered = delivered.lock().unwrap().clone();
    assert!(delivered.iter().all(|(_, c)| c != "p-down"), "a refused send was delivered");
    check_exactly_once(&accepted, &delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_in_on_one_node_and_sends_and_receives_on_others() {
    // Proves: `iris login --server` on node 1, `iris send` through node 2 and `iris recv` through
    // node 3 work together (the access token and the data are the cluster's, not a node's).
    let f = Fixture::start(3).await;
    let home = tempfile::TempDir::new().unwrap();
    let iris = |server: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_iris"))
            .args(args)
            .env("IRIS_SERVER", server)
            .env("IRIS_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "iris {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (carol, bob) = (home.path().join("carol.json"), home.path().join("bob.json"));
    let (carol, bob) = (carol.to_str().unwrap(), bob.to_str().unwrap());
    let (n1, n2, n3) = (f.nodes[0].url(), f.nodes[1].url(), f.nodes[2].url());
    iris(&n1, &["login", "--phone", CAROL, "--profile", carol]);
    iris(&n1, &["login", "--phone", BOB, "--profile", bob]);
    iris(&n2, &["send", "--profile", carol, "--to", BOB, "across the cluster"]);
    let out = iris(&n3, &["recv", "--profile", bob, "--count", "1", "--timeout", "20"]);
    assert!(out.contains("across the cluster"), "recv printed {out:?}");
}

/// The next event from `events` matching `pred`, acking inbox items on the way.
async fn next_matching(client: &Client, events: &mut Events, mut pred: impl FnMut(&Event) -> bool) -> Event {
    recv_until(client, events, |e| pred(e)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_nodes() {
    // Proves: a watcher on node 1 sees a user on node 2 come online and go offline (with a last
    // seen), and typing sent from node 2 reaches node 1; both travel over Redis only.
    let f = Fixture::start(2).await;
    let (n1, n2) = (f.nodes[0].url(), f.nodes[1].url());
    let (alice, bob) = (login(&n1, ALICE, "a").await, login(&n2, BOB, "b").await);
    let (a, mut ae) = connect(&n1, &alice).await;
    let state = a.presence_subscribe(vec![bob.account_id]).await.unwrap();
    assert!(!state[0].online, "bob is not connected yet: {state:?}");

    let (b, _be) = connect(&n2, &bob).await;
    let bob_id = bob.account_id;
    next_matching(&a, &mut ae, |e| matches!(e, Event::Presence(p) if p.account_id == bob_id && p.online)).await;

    b.typing(alice.account_id, true).await.unwrap();
    next_matching(&a, &mut ae, |e| matches!(e, Event::Typing(t) if t.from_account_id == bob_id && t.typing)).await;

    b.close().await;
    let Event::Presence(p) =
        next_matching(&a, &mut ae, |e| matches!(e, Event::Presence(p) if p.account_id == bob_id && !p.online)).await
    else {
        unreachable!()
    };
    assert!(p.last_seen_ms > 0, "offline with a last seen: {p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_clients_do_not_starve_a_small_store_pool() {
    // Proves: with 2 PostgreSQL connections per shard, 16 clients that send to each other with 8
    // sends in flight while receiving and acking all get through. Store calls must not keep
    // pooled connections while their session is busy elsewhere: before calls ran on tasks of
    // their own this stalled until the pool's wait timed out.
    let f = Fixture::start_with(1, "store_pool_size = 2").await;
    let url = f.nodes[0].url();
    const CLIENTS: usize = 16;
    let phones: Vec<String> = (0..CLIENTS).map(|i| format!("+1415556{:04}", 1000 + i)).collect();
    let delivered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    let mut clients = Vec::new();
    for phone in &phones {
        let dev = Dev::without_retries_with(&url, login(&url, phone, "a").await).await;
        receivers.push(spawn_receiver(dev.client.clone(), dev.events, delivered.clone()));
        clients.push(dev.client);
    }
    for (i, client) in clients.iter().enumerate() {
        // 8 pipelines of 5 sends each to the next client: 8 in flight per client.
        for p in 0..8 {
            let (client, to) = (client.clone(), phones[(i + 1) % CLIENTS].clone());
            senders.push(tokio::spawn(async move {
                for m in 0..5 {
                    client.send(to.as_str(), format!("{i}-{p}-{m}")).await.expect("send accepted");
                }
            }));
        }
    }
    for s in senders {
        tokio::time::timeout(Duration::from_secs(60), s).await.expect("sends finish in time").unwrap();
    }
    wait_for("every message delivered", || delivered.lock().unwrap().len() >= CLIENTS * 40).await;
    receivers.iter().for_each(|r| r.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_on_three_nodes_gets_its_send_quota_once() {
    // Proves: the sends-per-account and group-creations-per-account limits are counted
    // cluster-wide: one account whose three devices sit on three nodes is admitted each quota
    // in total, not three times it, and every refusal is RATE_LIMITED. (Per-node counting would
    // admit 30 of these 30 sends and 9 of the 9 group creations.)
    let quota = 12;
    let groups_quota = 3;
    let f = Fixture::start_with(
        3,
        &format!(
            "[rate_limits]\nsends_per_account_per_minute = {quota}\ngroup_creations_per_account_per_hour = {groups_quota}"
        ),
    )
    .await;
    let mut devices = Vec::new();
    for (i, node) in f.nodes.iter().enumerate() {
        let creds = login(&node.url(), ALICE, &format!("a{i}")).await;
        let mut config = ClientConfig::new(node.url(), creds);
        config.retry.max_attempts = 1; // see each refusal instead of waiting it out
        devices.push(Client::connect(config).await.unwrap());
    }
    let _bob = login(&f.nodes[0].url(), BOB, "b").await;
    let started = std::time::Instant::now();
    let (mut accepted, mut refused) = (0u32, 0u32);
    for round in 0..10 {
        for (i, (client, _events)) in devices.iter().enumerate() {
            match client.send(BOB, format!("round {round} from device {i}")).await {
                Ok(_) => accepted += 1,
                Err(e) => {
                    assert_eq!(e.code(), Some(iris_client::pb::ErrorCode::RateLimited), "{e}");
                    refused += 1;
                }
            }
        }
    }
    // One token refills every 60/quota s; allow for the ones that refilled while we sent.
    let refilled = u32::try_from(started.elapsed().as_secs() / (60 / u64::from(quota))).unwrap();
    assert!(
        (quota..=quota + refilled).contains(&accepted),
        "accepted {accepted} of 30 (quota {quota}, {refilled} refilled)"
    );
    assert_eq!(accepted + refused, 30);

    // One group creation refills every 20 min: none does within the test.
    let mut created = 0;
    for round in 0..3 {
        for (i, (client, _events)) in devices.iter().enumerate() {
            match client.group_create(&format!("g{round}.{i}"), "", vec![], Default::default()).await {
                Ok(_) => created += 1,
                Err(e) => assert_eq!(e.code(), Some(iris_client::pb::ErrorCode::RateLimited), "{e}"),
            }
        }
    }
    assert_eq!(created, groups_quota, "group creations admitted across three nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_declined_on_one_node_is_not_delivered_from_another() {
    // Proves: a device connected to node 2 that declined DELIVERED receipts gets none of those
    // built on node 1 (where nobody knows of the decline), while the READ it did not decline
    // arrives: its session leaves the declined kind out and acks it itself.
    use iris_client::pb::{inbox_item::Body, ReceiptType};
    let f = Fixture::start(2).await;
    let (alice, bob) = (login(&f.nodes[0].url(), ALICE, "a").await, login(&f.nodes[0].url(), BOB, "b").await);
    let mut config = ClientConfig::new(f.nodes[1].url(), alice.clone());
    config.receipts_unwanted = vec![ReceiptType::Delivered];
    let (a, mut ae) = Client::connect(config).await.unwrap();
    let (b, mut be) = connect(&f.nodes[0].url(), &bob).await;
    let m1 = a.send(BOB, "m1").await.unwrap().server_msg_id;
    let got = recv_messages(&b, &mut be, 1).await;
    assert_eq!(got[0].server_msg_id, m1);
    b.send_read_receipt(alice.account_id, vec![m1]).await.unwrap();

    let kind = |event: &Event| match event {
        Event::Receipt(item) => match &item.body {
            Some(Body::Receipt(r)) => Some(r.r#type),
            _ => None,
        },
        _ => None,
    };
    let read = next_matching(&a, &mut ae, |e| kind(e).is_some()).await;
    assert_eq!(kind(&read), Some(ReceiptType::Read as i32), "the READ, and no DELIVERED before it: {read:?}");
    // A DELIVERED left in would come within milliseconds of bob's ack; none comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, ae.next()).await {
        assert_ne!(kind(&event), Some(ReceiptType::Delivered as i32), "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_member_group_spread_over_three_nodes_receives_and_aggregates_receipts() {
    // Proves: a group whose 200 members sit on three nodes gets every message to every other
    // member (each exactly once), and the sender gets DELIVERED_TO_ALL for each once all 199
    // acked, although the acks were taken on three nodes.
    const MEMBERS: usize = 200;
    const MESSAGES: usize = 3;
    let f = Fixture::start_with(3, "[rate_limits]\ngroup_member_adds_per_account_per_minute = 0").await;
    let phones: Vec<String> = (0..MEMBERS).map(|i| format!("+1415556{i:04}")).collect();
    let mut members = Vec::new();
    for (i, phone) in phones.iter().enumerate() {
        let url = f.nodes[i % 3].url();
        let creds = login(&url, phone, "d").await;
        members.push(connect(&url, &creds).await);
    }
    let (sender, mut sender_events) = members.remove(0);
    let others: Vec<iris_client::Recipient> = phones[1..].iter().map(|p| p.as_str().into()).collect();
    let group = sender.group_create("spread", "", others, Default::default()).await.unwrap().group_id;
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        sent.push(sender.group_send(group, format!("to all {i}")).await.unwrap().server_msg_id);
    }
    let mut receivers = Vec::new();
    for (client, mut events) in members {
        let sent = sent.clone();
        receivers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < sent.len() {
                let e = recv_until(&client, &mut events, |e| e.group_message().is_some()).await;
                let Event::Message(item) = e else { unreachable!() };
                got.push(item.server_msg_id);
            }
            assert_eq!(got, sent, "every message once, in order");
            (client, events)
        }));
    }
    // Kept connected: a dropped client could take its last ack with it.
    let mut connected = Vec::new();
    for r in receivers {
        connected.push(r.await.unwrap());
    }
    let mut pending: std::collections::HashSet<u64> = sent.iter().copied().collect();
    while !pending.is_empty() {
        let e = recv_until(&sender, &mut sender_events, |e| {
            e.group_receipt().is_some_and(|r| r.r#type == iris_client::pb::GroupReceiptType::DeliveredToAll as i32)
        })
        .await;
        for id in &e.group_receipt().unwrap().server_msg_ids {
            pending.remove(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entirely_down_for_30_s_loses_nothing_and_presence_recovers() {
    // Proves: with every Redis node killed for 30 s under load, sends keep being ACCEPTED and
    // delivered across nodes (the inbox check replaces the bus), nothing ACCEPTED is lost or
    // doubled; after Redis returns, presence changes cross nodes again.
    let mut f = Fixture::start(2).await;
    let (n1, n2) = (f.nodes[0].url(), f.nodes[1].url());
    let (alice, bob) = (login(&n1, ALICE, "a").await, login(&n2, BOB, "b").await);
    let (a, _ae) = connect(&n1, &alice).await;
    let (b, be) = connect(&n2, &bob).await;
    let accepted: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = ["d0", "d1"]
        .into_iter()
        .map(|t| spawn_sender(a.clone(), BOB, t, accepted.clone(), stop.clone(), usize::MAX))
        .collect();
    let receiver = spawn_receiver(b.clone(), be, delivered.clone());
    wait_for("first messages", || accepted.lock().unwrap().len() >= 100).await;

    f.redis.kill_all();
    let down_at = std::time::Instant::now();
    let at_kill = (accepted.lock().unwrap().len(), delivered.lock().unwrap().len());
    wait_for("sends accepted while Redis is down", || accepted.lock().unwrap().len() >= at_kill.0 + 100).await;
    wait_for("deliveries across nodes while Redis is down", || delivered.lock().unwrap().len() >= at_kill.1 + 100)
        .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed())).await; // the outage's length
    let before_restart = delivered.lock().unwrap().len();
    assert!(before_restart > at_kill.1 + 100, "delivery went on for the whole outage");
    tokio::task::block_in_place(|| f.redis.restart_killed());
    let n = stop_and_check((&a, BOB), stop, senders, &accepted, &delivered, receiver).await;
    eprintln!("redis down 30 s: {n} accepted, all delivered once");

    // Presence degrades while Redis is away and recovers: a watcher on node 1 sees bob (node 2)
    // go away and come back.
    let (w, mut we) = connect(&n1, &alice).await;
    let bob_id = bob.account_id;
    w.presence_subscribe(vec![bob_id]).await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        b.set_presence(true, None).await.unwrap();
        b.set_presence(false, None).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(2), async {
            next_matching(&w, &mut we, |e| matches!(e, Event::Presence(p) if p.account_id == bob_id && p.online)).await
        })
        .await;
        if seen.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "presence did not cross nodes after Redis returned");
    }
}
