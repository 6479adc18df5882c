//! The Redis Cluster bus against a real Redis Cluster (3 primaries + 3 replicas from the test
//! kit, or the one named by `IRIS_TEST_REDIS_URLS`): Pub/Sub routing, the session registry,
//! soft state, rate limits, and what happens when a primary or the whole cluster dies. Each test
//! uses its own namespace, so they can share one cluster.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iris_server::cluster::bus::{Bus, BusConfig, BusError};
use iris_store::DeviceAddr;
use iris_testkit::redis::RedisCluster;
use iris_testkit::wait::wait_until;
use tokio::sync::mpsc::Receiver;

/// Bound on waiting for something that should happen within milliseconds on a healthy cluster.
const QUICK: Duration = Duration::from_secs(5);

/// A namespace no other test (or earlier run against a shared cluster) uses.
fn namespace(test: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t-{test}-{}-{}-{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

async fn connect(cluster: &RedisCluster, ns: &str, node_id: u16) -> (Bus, Receiver<Bytes>) {
    let cfg = BusConfig {
        urls: cluster.urls(),
        namespace: ns.to_owned(),
        node_id,
        probe_interval_ms: 200,
        breaker_open_ms: 300,
        ..BusConfig::default()
    };
    Bus::connect(cfg).await.expect("bus connects")
}

async fn recv(rx: &mut Receiver<Bytes>, within: Duration) -> Option<Bytes> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

fn dev(account: u64, device: u32) -> DeviceAddr {
    DeviceAddr::new(account, device)
}

#[tokio::test]
async fn publish_to_node_reaches_only_that_node() {
    // Proves: a message to node 1 arrives at node 1's receiver and not at node 2's.
    let cluster = RedisCluster::start();
    let ns = namespace("p2n");
    let (bus1, mut rx1) = connect(&cluster, &ns, 1).await;
    let (_bus2, mut rx2) = connect(&cluster, &ns, 2).await;
    bus1.publish_to_node(1, Bytes::from_static(b"for-1")).await.unwrap();
    assert_eq!(recv(&mut rx1, QUICK).await.as_deref(), Some(&b"for-1"[..]));
    // Node 2's first message must be the one sent to it after, not "for-1".
    bus1.publish_to_node(2, Bytes::from_static(b"for-2")).await.unwrap();
    assert_eq!(recv(&mut rx2, QUICK).await.as_deref(), Some(&b"for-2"[..]));
    assert!(recv(&mut rx1, Duration::from_millis(200)).await.is_none(), "node 1 got node 2's message");
}

#[tokio::test]
async fn broadcast_reaches_every_node_including_the_sender() {
    // Proves: one broadcast arrives once at each of three nodes, the sender included.
    let cluster = RedisCluster::start();
    let ns = namespace("bcast");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(connect(&cluster, &ns, id).await);
    }
    nodes[1].0.broadcast(Bytes::from_static(b"all")).await.unwrap();
    for (_, rx) in &mut nodes {
        assert_eq!(recv(rx, QUICK).await.as_deref(), Some(&b"all"[..]));
    }
    for (_, rx) in &mut nodes {
        assert!(recv(rx, Duration::from_millis(100)).await.is_none(), "delivered twice");
    }
}

#[tokio::test]
async fn a_presence_round_larger_than_the_forwarding_queue_arrives_whole() {
    // Proves: a round of 100,000 presence reports (more than the 65,536 items the forwarding
    // queue holds, which used to drop the rest) reaches another node, every account once.
    use iris_server::cluster::outbound::broadcast_in_batches;
    use iris_server::cluster::wire::{self, node_item::Kind, NodeItem, WirePresence};
    use iris_server::metrics::Metrics;
    const ACCOUNTS: u64 = 100_000;
    let cluster = RedisCluster::start();
    let ns = namespace("presround");
    let (bus1, _rx1) = connect(&cluster, &ns, 1).await;
    let (_bus2, mut rx2) = connect(&cluster, &ns, 2).await;
    let items = (1..=ACCOUNTS)
        .map(|a| NodeItem::presence(a, WirePresence { online: true, last_seen_ms: 0, privacy: 0 }))
        .collect();
    let metrics = Metrics::new();
    broadcast_in_batches(&bus1, 1, items, &metrics).await;
    assert_eq!(metrics.cluster_items_out.get(), ACCOUNTS);
    let mut seen = vec![false; ACCOUNTS as usize + 1];
    let mut got = 0;
    while got < ACCOUNTS {
        let msg = recv(&mut rx2, QUICK).await.unwrap_or_else(|| panic!("round stopped after {got} accounts"));
        for item in wire::decode(&msg).expect("a node batch").items {
            assert!(matches!(item.kind, Some(Kind::Presence(_))));
            assert!(!std::mem::replace(&mut seen[item.account as usize], true), "account {} twice", item.account);
            got += 1;
        }
    }
}

#[tokio::test]
async fn claim_lookup_release_track_the_owner() {
    // Proves: claims report the previous owner, lookups span accounts (slots), refresh leaves a
    // device claimed elsewhere alone, and release deletes only this node's own entry.
    let cluster = RedisCluster::start();
    let ns = namespace("registry");
    let (bus1, _rx1) = connect(&cluster, &ns, 1).await;
    let (bus2, _rx2) = connect(&cluster, &ns, 2).await;
    let devices: Vec<DeviceAddr> = (1..=20).map(|acc| dev(acc, 1)).chain([dev(1, 2)]).collect();
    let ttl = 60_000;

    assert_eq!(bus1.claim_devices(&devices, ttl).await.unwrap(), vec![None; devices.len()]);
    assert_eq!(bus2.lookup_devices(&devices).await.unwrap(), vec![Some(1); devices.len()]);
    assert_eq!(bus2.claim_devices(&[dev(1, 1)], ttl).await.unwrap(), vec![Some(1)]);

    bus1.refresh_devices(&devices, ttl).await.unwrap();
    assert_eq!(bus1.lookup_devices(&[dev(1, 1), dev(1, 2)]).await.unwrap(), vec![Some(2), Some(1)]);

    bus1.release_devices(&[dev(1, 1)]).await.unwrap();
    assert_eq!(bus1.lookup_devices(&[dev(1, 1)]).await.unwrap(), vec![Some(2)], "released another node's claim");
    // One pipelined call over many slots releases this node's claims and no other node's.
    bus1.release_devices(&devices).await.unwrap();
    let expected: Vec<Option<u16>> = devices.iter().map(|d| (*d == dev(1, 1)).then_some(2)).collect();
    assert_eq!(bus1.lookup_devices(&devices).await.unwrap(), expected);
    bus2.release_devices(&[dev(1, 1)]).await.unwrap();
    assert_eq!(bus1.lookup_devices(&[dev(1, 1), dev(1, 2), dev(2, 1)]).await.unwrap(), vec![None, None, None]);
    assert_eq!(bus1.lookup_devices(&[]).await.unwrap(), Vec::<Option<u16>>::new());
}

#[tokio::test]
async fn entries_expire_after_their_ttl_unless_refreshed() {
    // Proves: registry entries and soft state vanish after their TTL; a refresh extends a claim
    // and re-creates one that vanished (as after a failover that lost the write).
    let cluster = RedisCluster::start();
    let ns = namespace("ttl");
    let (bus, _rx) = connect(&cluster, &ns, 7).await;
    bus.claim_devices(&[dev(5, 1), dev(5, 2)], 300).await.unwrap();
    bus.set_px("code", Bytes::from_static(b"123456"), 300).await.unwrap();
    bus.refresh_devices(&[dev(5, 2)], 60_000).await.unwrap();

    wait_until("the claim and the code expire after their TTL", QUICK, || async {
        let owners = bus.lookup_devices(&[dev(5, 1)]).await.unwrap();
        let code = bus.get("code").await.unwrap();
        owners == vec![None] && code.is_none()
    })
    .await;
    assert_eq!(bus.lookup_devices(&[dev(5, 2)]).await.unwrap(), vec![Some(7)], "the refreshed claim expired");

    bus.refresh_devices(&[dev(5, 1)], 60_000).await.unwrap();
    assert_eq!(bus.lookup_devices(&[dev(5, 1)]).await.unwrap(), vec![Some(7)]);
}

#[tokio::test]
async fn soft_state_spans_slots_and_take_is_one_time() {
    // Proves: get_many answers in order for keys in many slots (missing ones as None), take
    // returns a value once, del removes it.
    let cluster = RedisCluster::start();
    let ns = namespace("kv");
    let (bus, _rx) = connect(&cluster, &ns, 1).await;
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        bus.set_px(key, Bytes::from(format!("v{i}")), 60_000).await.unwrap();
    }
    let values = bus.get_many(&keys).await.unwrap();
    for (i, value) in values.iter().enumerate() {
        let expected = (i % 3 != 0).then(|| Bytes::from(format!("v{i}")));
        assert_eq!(value, &expected, "key {i}");
    }
    assert_eq!(bus.take("k1").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(bus.take("k1").await.unwrap(), None);
    bus.del("k2").await.unwrap();
    assert_eq!(bus.get("k2").await.unwrap(), None);
    assert_eq!(bus.get("k4").await.unwrap().as_deref(), Some(&b"v4"[..]));
}

#[tokio::test]
async fn rate_take_limits_then_allows_again() {
    // Proves: a bucket of 3 per 600 ms allows a burst of 3, refuses the 4th with a wait within
    // the window, and allows again once that wait has passed; other keys are independent.
    let cluster = RedisCluster::start();
    let ns = namespace("rate");
    let (bus, _rx) = connect(&cluster, &ns, 1).await;
    for _ in 0..3 {
        assert_eq!(bus.rate_take("login:{42}", 3, 600).await.unwrap(), None);
    }
    let refused_at = Instant::now();
    let wait_ms = bus.rate_take("login:{42}", 3, 600).await.unwrap().expect("4th take refused");
    assert!((1..=600).contains(&wait_ms), "retry after {wait_ms} ms");
    assert_eq!(bus.rate_take("login:{43}", 3, 600).await.unwrap(), None, "buckets are per key");
    // A refused take changes nothing (GCRA stores only the next arrival time), so polling is fair.
    wait_until("the 4th take is allowed after the wait", QUICK, || async {
        bus.rate_take("login:{42}", 3, 600).await.unwrap().is_none()
    })
    .await;
    // The wait is rounded up to whole ms: allowed no sooner than it said (1 ms of rounding).
    let waited = refused_at.elapsed() + Duration::from_millis(1);
    assert!(waited >= Duration::from_millis(wait_ms), "allowed after {waited:?}, before the {wait_ms} ms it said");
    assert!(matches!(bus.rate_take("x", 0, 600).await, Err(BusError::Config(_))));
}

#[tokio::test]
async fn rate_lease_grants_what_the_bucket_holds_to_any_node() {
    // Proves: leases take several tokens from one shared bucket in one call, two nodes draw from
    // the same bucket, a lease never exceeds what is left, and an empty bucket says how long to wait.
    let cluster = RedisCluster::start();
    let ns = namespace("lease");
    let ((bus1, _rx1), (bus2, _rx2)) = (connect(&cluster, &ns, 1).await, connect(&cluster, &ns, 2).await);
    let key = "sends:{7}";
    assert_eq!(bus1.rate_lease(key, 10, 60_000, 4).await.unwrap(), Ok(4));
    assert_eq!(bus2.rate_lease(key, 10, 60_000, 4).await.unwrap(), Ok(4));
    assert_eq!(bus1.rate_lease(key, 10, 60_000, 4).await.unwrap(), Ok(2), "only 2 of 10 were left");
    let wait_ms = bus2.rate_lease(key, 10, 60_000, 4).await.unwrap().expect_err("bucket empty");
    assert!((1..=6_000).contains(&wait_ms), "one token refills in 6 s; told {wait_ms} ms");
    assert_eq!(bus1.rate_take(key, 10, 60_000).await.unwrap().map(|w| w > 0), Some(true), "takes share it");
    assert!(matches!(bus1.rate_lease(key, 10, 60_000, 0).await, Err(BusError::Config(_))));
}

#[tokio::test]
async fn a_leased_limit_admits_its_quota_once_across_nodes() {
    // Proves: the send limit of one account, leased by three nodes at once, admits exactly its
    // burst in total (never a burst per node), and every refusal carries a wait.
    use iris_server::metrics::Metrics;
    use iris_server::ratelimit::{KeyedLimit, SharedLimit};
    let cluster = RedisCluster::start();
    let ns = namespace("leased");
    let mut limits = Vec::new();
    let mut buses = Vec::new();
    for node in 1..=3 {
        let (bus, rx) = connect(&cluster, &ns, node).await;
        let limit = KeyedLimit::new("sends per account", 40, Duration::from_secs(3600), &Metrics::new())
            .map(|l| l.leased(Some(&bus)));
        limits.push(SharedLimit::new(limit));
        buses.push((bus, rx));
    }
    let account = 99u64;
    let (mut admitted, mut refused) = (0, 0);
    for round in 0..30 {
        for limit in &limits {
            match limit.take(&account).await {
                Ok(()) => admitted += 1,
                Err(e) => {
                    refused += 1;
                    assert!(
                        matches!(e, iris_server::error::ServiceError::RateLimited { retry_after_ms, .. } if retry_after_ms > 0),
                        "round {round}: {e:?}"
                    );
                }
            }
        }
    }
    assert_eq!(admitted, 40, "the quota counts once across the three nodes");
    assert_eq!(refused, 90 - 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_channel_and_registry_survive_a_primary_failover() {
    // Proves: after the primary under node 1's channel is killed and its replica takes over, a
    // message to node 1 reaches it again (re-subscribed) and registry calls work again, within
    // seconds, and the bus reports healthy again.
    let mut cluster = RedisCluster::start_private();
    let ns = namespace("failover");
    let (bus1, mut rx1) = connect(&cluster, &ns, 1).await;
    let (bus2, _rx2) = connect(&cluster, &ns, 2).await;
    bus2.publish_to_node(1, Bytes::from_static(b"before")).await.unwrap();
    assert_eq!(recv(&mut rx1, QUICK).await.as_deref(), Some(&b"before"[..]));
    let devices: Vec<DeviceAddr> = (1..=30).map(|acc| dev(acc, 1)).collect();
    bus1.claim_devices(&devices, 60_000).await.unwrap();

    let victim = cluster.shard_of(&format!("{ns}:node:{{1}}"));
    let killed_at = Instant::now();
    cluster.kill_primary(victim);
    tokio::task::block_in_place(|| cluster.wait_until_healthy());
    eprintln!("failover took {:?}", killed_at.elapsed());

    let recovery = Duration::from_secs(15);
    let deadline = killed_at + recovery;
    let mut delivered = None;
    'retry: while Instant::now() < deadline {
        let _ = bus2.publish_to_node(1, Bytes::from_static(b"after")).await;
        while let Some(m) = recv(&mut rx1, Duration::from_millis(200)).await {
            if m.as_ref() == b"after" {
                delivered = Some(());
                break 'retry;
            }
        }
    }
    assert!(delivered.is_some(), "node 1 not reachable {:?} after the kill", killed_at.elapsed());
    eprintln!("node channel back after {:?}", killed_at.elapsed());

    wait_until("registry calls work again after the failover", recovery, || async {
        bus1.refresh_devices(&devices, 60_000).await.is_ok()
            && bus2.lookup_devices(&devices).await.is_ok_and(|owners| owners == vec![Some(1); devices.len()])
    })
    .await;
    eprintln!("registry back after {:?}", killed_at.elapsed());
    wait_until("the bus reports healthy again after the failover", recovery, || async { bus1.is_healthy() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_cluster_fails_fast_then_the_bus_recovers_when_it_returns() {
    // Proves: with every Redis node killed, calls fail within the command timeout (then at once,
    // circuit open) instead of hanging and is_healthy turns false; when the nodes come back (long
    // enough later that the bus gave up on its old connections), the same bus works again by
    // itself: registry calls, and messages to its channel.
    let mut cluster = RedisCluster::start_private();
    let ns = namespace("dead");
    let (bus, mut rx) = connect(&cluster, &ns, 1).await;
    assert!(bus.is_healthy());
    cluster.kill_all();

    let bound = Duration::from_millis(250 + 150);
    let mut circuit_opened = false;
    for i in 0..20u64 {
        let started = Instant::now();
        let result = bus.claim_devices(&[dev(i + 1, 1)], 1_000).await;
        let took = started.elapsed();
        assert!(took < bound, "call {i} took {took:?}: {result:?}");
        match result {
            Err(BusError::CircuitOpen) => {
                circuit_opened = true;
                assert!(took < Duration::from_millis(20), "open circuit still waited {took:?}");
            }
            Err(BusError::Timeout | BusError::Unavailable(_)) => {}
            other => panic!("call {i} against a dead cluster: {other:?}"),
        }
    }
    assert!(circuit_opened, "the circuit never opened");
    assert!(!bus.is_healthy());
    let started = Instant::now();
    assert!(bus.publish_to_node(2, Bytes::from_static(b"x")).await.is_err());
    assert!(started.elapsed() < bound);

    // The outage lasts past the bus's 5 s rebuild threshold, so it replaces its connections while
    // Redis is still gone: the outage's length is this test's input, not an event to wait for.
    tokio::time::sleep(Duration::from_secs(6)).await;
    tokio::task::block_in_place(|| cluster.restart_killed());
    let restarted = Instant::now();
    wait_until("the bus works again after the cluster came back", Duration::from_secs(20), || async {
        bus.claim_devices(&[dev(1, 1)], 60_000).await.is_ok()
            && bus.publish_to_node(1, Bytes::from_static(b"back")).await.is_ok()
    })
    .await;
    let mut got = None;
    while let Some(m) = recv(&mut rx, QUICK).await {
        if m.as_ref() == b"back" {
            got = Some(m);
            break;
        }
    }
    assert!(got.is_some(), "no message on the node channel after the cluster came back");
    wait_until("the bus reports healthy after the cluster came back", Duration::from_secs(10), || async {
        bus.is_healthy()
    })
    .await;
    eprintln!("bus back {:?} after the restart", restarted.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_failing_over_in_turn_keeps_the_bus_working() {
    // Proves: the bus follows three topology changes in a row (each shard's primary killed once,
    // one at a time: Redis needs a majority of primaries alive to promote a replica), and
    // afterwards node messages, broadcasts and the registry all work.
    let mut cluster = RedisCluster::start_private();
    let ns = namespace("rolling");
    let (bus1, mut rx1) = connect(&cluster, &ns, 1).await;
    let (bus2, mut rx2) = connect(&cluster, &ns, 2).await;
    for shard in 0..3 {
        cluster.kill_primary(shard);
        tokio::task::block_in_place(|| cluster.wait_until_healthy());
    }
    wait_until("both buses healthy after the failovers", Duration::from_secs(15), || async {
        bus1.is_healthy() && bus2.is_healthy()
    })
    .await;

    bus2.publish_to_node(1, Bytes::from_static(b"to-1")).await.unwrap();
    assert_eq!(recv(&mut rx1, QUICK).await.as_deref(), Some(&b"to-1"[..]));
    bus1.broadcast(Bytes::from_static(b"all")).await.unwrap();
    assert_eq!(recv(&mut rx1, QUICK).await.as_deref(), Some(&b"all"[..]));
    assert_eq!(recv(&mut rx2, QUICK).await.as_deref(), Some(&b"all"[..]));
    let devices: Vec<DeviceAddr> = (1..=30).map(|acc| dev(acc, 1)).collect();
    let started = Instant::now();
    let last = std::sync::Mutex::new(String::new());
    wait_until("registry calls work after the failovers", Duration::from_secs(10), || async {
        let outcome = match bus1.claim_devices(&devices, 60_000).await {
            Ok(_) => bus2.lookup_devices(&devices).await.map(|owners| owners == vec![Some(1); devices.len()]),
            Err(e) => Err(e),
        };
        // Each new outcome on stderr, so a failure shows how the calls were failing.
        let text = format!("{outcome:?}");
        if *last.lock().unwrap() != text {
            eprintln!("registry calls after {:?}: {text}", started.elapsed());
            *last.lock().unwrap() = text;
        }
        matches!(outcome, Ok(true))
    })
    .await;
    eprintln!("registry calls worked after {:?}", started.elapsed());
}

#[tokio::test]
async fn reconnect_swaps_the_connection_without_losing_or_doubling_the_channel() {
    // Proves: replacing the connection (what the bus does by itself when calls keep failing)
    // leaves the node subscribed exactly once, and calls work on the new connection.
    let cluster = RedisCluster::start();
    let ns = namespace("reconnect");
    let (bus, mut rx) = connect(&cluster, &ns, 1).await;
    bus.reconnect().await.unwrap();
    bus.reconnect().await.unwrap();
    bus.publish_to_node(1, Bytes::from_static(b"once")).await.unwrap();
    assert_eq!(recv(&mut rx, QUICK).await.as_deref(), Some(&b"once"[..]));
    assert!(recv(&mut rx, Duration::from_millis(300)).await.is_none(), "delivered twice");
    assert_eq!(bus.claim_devices(&[dev(9, 1)], 60_000).await.unwrap(), vec![None]);
    assert!(bus.is_healthy());
}

#[tokio::test]
async fn the_bus_works_over_verified_tls_and_refuses_a_foreign_certificate() {
    // Proves: with rediss:// seeds and the test CA, the bus connects over TLS (verifying each
    // node's address against its certificate) and carries messages between nodes; with a CA that did not sign the nodes' certificates it does not connect.
    let ca = iris_testkit::tls::TestCa::new("iris test CA");
    let cluster = RedisCluster::start_tls(&ca);
    assert!(cluster.urls().iter().all(|u| u.starts_with("rediss://")), "{:?}", cluster.urls());
    let ns = namespace("tls");
    let tls_connect = |ca_pem: &str, node_id: u16| BusConfig {
        urls: cluster.urls(),
        ca_pem: Some(ca_pem.as_bytes().to_vec()),
        namespace: ns.clone(),
        node_id,
        connect_timeout_ms: 3_000,
        ..BusConfig::default()
    };
    let (bus1, mut rx1) = Bus::connect(tls_connect(ca.ca_pem(), 1)).await.expect("bus connects over TLS");
    let (bus2, _rx2) = Bus::connect(tls_connect(ca.ca_pem(), 2)).await.expect("bus connects over TLS");
    for i in 0..3u8 {
        bus2.publish_to_node(1, Bytes::from(vec![i])).await.unwrap();
        assert_eq!(recv(&mut rx1, QUICK).await.as_deref(), Some(&[i][..]));
    }
    drop((bus1, bus2));

    let other = iris_testkit::tls::TestCa::new("another CA");
    assert!(Bus::connect(tls_connect(other.ca_pem(), 3)).await.is_err(), "a certificate of another CA must be refused");
}
